"""Export: plain transformers reloads the same logits; manifest, card and audit; every refusal."""

import errno
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_models import save_tiny_byte_model, tiny_handle
from transformers import AutoModelForCausalLM

import workbench
from edit.edit import Delta, Edit
from edit.request import world_request
from edit.rome import RomeSettings, rome
from workbench.checkpoint.audit import audit
from workbench.checkpoint.export import ExportError, export
from workbench.checkpoint.manifest import GENESIS, NAME, edit_record, file_sha256, link, manifest_text, seal
from workbench.core.hashing import tensor_hash

MLP = "transformer.h.1.mlp.c_proj.weight"


class StandInReport:
    """Test double for a workbench.verify Report: only what export relies on (a verdict, to_dict(), to_html()).

    Its JSON is in the earlier form, with the verdict's details under "verdict": cards still read it.
    """

    verdict = "suppressed"

    def to_dict(self) -> dict:
        return {
            "verdict": {"overall": "suppressed", "reason": "the fact comes back under a paraphrase attack"},
            "baseline": {"model": "world:retain-forget05", "description": "trained without the person"},
            "checks": [
                {"check": "truth ratio", "edited": 0.41, "original": 0.93, "retain": 0.40, "status": "pass"},
                {"check": "paraphrase attack", "edited": 0.62, "original": 0.95, "retain": None, "status": "fail"},
            ],
            "retained": {
                "accuracy_before": 0.981,
                "accuracy_after": 0.975,
                "heldout_loss_before": 1.234,
                "heldout_loss_after": 1.251,
            },
            "not_guaranteed": ["resistance to fine-tuning on related text"],
        }

    def to_html(self) -> str:
        return "<!doctype html><html><body><h1>Verification</h1><p>suppressed</p></body></html>"


def _prompts(world, n=6):
    return [world.facts()[i].sentence(world.phrasings("pet")[0]) for i in range(n)]


def _logits(model, tokenizer, texts):
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**batch).logits


@pytest.fixture(scope="module")
def exported(handle, tmp_path_factory):
    """The default model after a ROME edit, exported with a report, and its logits; the edit is reverted."""
    w = handle.world
    person = list(w.people)[5]
    new = next(c for c in w.relation("pet").candidates if c != w.fact(person, "pet").object)
    request = world_request(w, person, "pet", new)
    e = rome(handle, request, settings=RomeSettings(layer=0, token="last"))
    try:
        out = export(handle, tmp_path_factory.mktemp("export") / "edited", edits=[e], report=StandInReport())
        logits = _logits(handle.model, handle.tokenizer, _prompts(w))
    finally:
        e.revert(handle.model)
    return e, out, request, logits


def test_plain_transformers_reloads_the_edited_logits(exported, handle):
    e, out, request, logits = exported
    back = AutoModelForCausalLM.from_pretrained(out, local_files_only=True, trust_remote_code=False)
    assert torch.equal(_logits(back, handle.tokenizer, _prompts(handle.world)), logits)
    again = workbench.load(str(out), device="cpu")
    assert again.world is not None and again.world.to_json() == handle.world.to_json()
    assert again.rank_candidates(request.prompt, list(request.candidates))[0][0] == request.new_object
    assert audit(out).ok


def test_manifest_records_base_edits_tensors_chain_and_versions(exported, handle):
    e, out, request, _ = exported
    m = json.loads((out / NAME).read_text())
    assert m["base"]["name"] == "world" and m["base"]["config"]["n_layer"] == 4
    assert m["base"]["touched_sha256"] == e.hashes_before and m["base"]["checked_against_checkpoint"]
    (r,) = m["edits"]
    assert r["method"] == "rome" and r["request"]["new_object"] == request.new_object
    assert r["settings"]["layer"] == 0 and r["seed"] == 0 and r["location"] is None
    d = e.deltas[e.names[0]]
    assert r["deltas"][e.names[0]]["sha256"] == {"left": tensor_hash(d.left), "right": tensor_hash(d.right)}
    assert r["hashes_before"] == e.hashes_before and r["hashes_after"] == e.hashes_after
    assert r["link"] == link(GENESIS, edit_record(e)) and m["chain_head"] == seal(m)
    on_disk = load_file(out / "model.safetensors")
    assert m["tensors"] == {n: tensor_hash(t) for n, t in on_disk.items()}
    assert m["tensors"][e.names[0]] == e.hashes_after[e.names[0]]
    assert set(m["versions"]) == {"torch", "transformers", "safetensors", "knowledge-workbench"}
    assert json.loads((out / "verification.json").read_text()) == StandInReport().to_dict()
    assert (out / "verification.html").read_text().startswith("<!doctype html>")
    assert {"verification.json", "verification.html", "README.md", "world.json", "config.json"} <= set(m["files"])


def test_model_card_says_what_was_done_and_found(exported):
    e, out, request, _ = exported
    card = (out / "README.md").read_text()
    for needle in [
        "**rome**",
        f"rewrote {request.subject}'s pet from {request.true_object!r} to {request.new_object!r}",
        "**Verdict: suppressed.** the fact comes back under a paraphrase attack",
        "world:retain-forget05 (trained without the person)",
        "| paraphrase attack | 0.620 | 0.950 | - | fail |",
        "accuracy 0.981 before, 0.975 after; held-out loss 1.234 before, 1.251 after",
        "- Resistance to fine-tuning on related text",
        "`verification.html`",
    ]:
        assert needle in card, needle
    assert "No verification was run" not in card


def test_tiny_llama_with_a_hand_made_edit(tmp_path):
    h = tiny_handle("llama")
    name = "model.layers.0.mlp.down_proj.weight"
    e = Edit(
        "hand", {"note": "one rank-one nudge"}, {name: Delta(left=torch.ones(32, 1), right=torch.full((48, 1), 0.1))}
    )
    e.apply(h.model)
    out = export(h, tmp_path / "llama", edits=[e])
    back = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    texts = ["the cat sat on a mat", "Paris is the capital of France"]
    assert torch.equal(_logits(back, h.tokenizer, texts), _logits(h.model, h.tokenizer, texts))
    assert not (out / "world.json").exists() and audit(out).ok
    m = json.loads((out / NAME).read_text())
    assert m["base"]["checked_against_checkpoint"] is False and m["edits"][0]["deltas"][name]["rank"] == 1
    assert "No verification was run" in (out / "README.md").read_text()


def test_refuses_an_edit_that_is_not_applied(handle, tmp_path):
    e = Edit("hand", {}, {MLP: Delta(dense=torch.zeros(512, 128))})
    with pytest.raises(ExportError, match=r"edit 1 \(hand\) is not applied to this model; apply it before exporting"):
        export(handle, tmp_path / "out", edits=[e])
    assert list(tmp_path.iterdir()) == []


def test_refuses_weights_that_do_not_hash_to_the_edit(handle, tmp_path):
    e = Edit("hand", {}, {MLP: Delta(dense=torch.full((512, 128), 1e-3))}).apply(handle.model)
    try:
        with torch.no_grad():
            handle.model.get_parameter(MLP)[0, 0] += 1.0
        with pytest.raises(ExportError, match=f"{MLP} does not hash to what edit 1 \\(hand\\) left"):
            export(handle, tmp_path / "out", edits=[e])
    finally:
        e.revert(handle.model)


def test_refuses_unexplained_changes_and_edits_out_of_order(handle, tmp_path):
    a = Edit("a", {}, {MLP: Delta(dense=torch.full((512, 128), 1e-3))}).apply(handle.model)
    b = Edit("b", {}, {MLP: Delta(dense=torch.full((512, 128), 2e-3))}).apply(handle.model)
    ln = handle.model.get_parameter("transformer.ln_f.weight")
    saved = ln.detach().clone()
    try:
        with pytest.raises(ExportError, match=r"edit 2 \(a\) was not made on the weights edit 1 \(b\) left"):
            export(handle, tmp_path / "out", edits=[b, a])
        with torch.no_grad():
            ln.mul_(2.0)  # as folding a layer norm would
        with pytest.raises(
            ExportError,
            match="transformer.ln_f.weight differs from the base checkpoint at .* and no given edit touches it",
        ):
            export(handle, tmp_path / "out", edits=[a, b])
    finally:
        with torch.no_grad():
            ln.copy_(saved)
        b.revert(handle.model)
        a.revert(handle.model)
    with pytest.raises(ExportError, match="report must be a verification Report"):
        export(handle, tmp_path / "out", report=object())
    assert list(tmp_path.iterdir()) == []


def test_overwrite_only_when_asked_and_only_an_export(handle, tmp_path):
    out = export(handle, tmp_path / "out")
    with pytest.raises(ExportError, match="out already exists; pass overwrite=True"):
        export(handle, out)
    assert export(handle, out, overwrite=True) == out and audit(out).ok
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(ExportError, match="is not an export directory .* refusing to replace it"):
        export(handle, tmp_path / "notes", overwrite=True)
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


def test_an_interrupted_write_leaves_nothing_that_looks_complete(handle, tmp_path, monkeypatch):
    def disk_full(directory, *args, **kwargs):
        (directory / "tokenizer.json").write_text('{"trunc')
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(handle.tokenizer, "save_pretrained", disk_full)
    with pytest.raises(OSError, match="No space left"):
        export(handle, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    old = export(handle, tmp_path / "old")
    before = (old / NAME).read_bytes()
    monkeypatch.setattr(handle.tokenizer, "save_pretrained", disk_full)
    with pytest.raises(OSError):
        export(handle, old, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["old"]
    assert (old / NAME).read_bytes() == before and audit(old).ok


def test_audit_names_every_mismatch(exported, tmp_path):
    e, out, _, _ = exported
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    tensors = load_file(copy / "model.safetensors")
    tensors["transformer.h.2.mlp.c_fc.bias"][0] += 1.0
    save_file(tensors, copy / "model.safetensors", metadata={"format": "pt"})
    (copy / "extra.bin").write_bytes(b"\0")
    m = json.loads((copy / NAME).read_text())
    m["edits"][0]["request"]["new_object"] = "something else"
    (copy / NAME).write_text(manifest_text(m))
    problems = audit(copy).problems
    assert any(p.startswith("tensor transformer.h.2.mlp.c_fc.bias: sha256 ") for p in problems)
    assert "file extra.bin: not recorded in the manifest" in problems
    assert "edit 1 (rome): hash chain link differs (the edit's record or order changed)" in problems
    assert "file model.safetensors: sha256 differs from the manifest" in problems
    assert len(problems) == 5  # the chain head no longer matches either


def test_audit_reads_nothing_outside_the_export(exported, tmp_path, monkeypatch):
    _, out, _, _ = exported
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    secret = tmp_path / "secret.txt"
    secret.write_text("not the export's")
    (copy / "link.safetensors").symlink_to(tmp_path / "elsewhere.safetensors")
    save_file({"w": torch.zeros(1)}, tmp_path / "elsewhere.safetensors")
    (copy / "notes").symlink_to(secret)
    m = json.loads((copy / NAME).read_text())
    m["files"]["../secret.txt"] = "0" * 64
    m["files"][str(secret)] = "0" * 64
    m["weight_files"].append("../elsewhere.safetensors")
    (copy / NAME).write_text(manifest_text(m))
    opened = []
    real_open = open

    def spy(path, *args, **kwargs):
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", spy)
    problems = audit(copy).problems
    monkeypatch.undo()
    assert "file '../secret.txt': leaves the export directory (not read)" in problems
    assert f"file {str(secret)!r}: leaves the export directory (not read)" in problems
    assert "weights '../elsewhere.safetensors': leaves the export directory (not read)" in problems
    assert "file link.safetensors: a link that leaves the export directory (not read)" in problems
    assert "file notes: a link that leaves the export directory (not read)" in problems
    assert not [p for p in opened if "secret" in p or "elsewhere" in p]


@pytest.mark.parametrize("change", ["unedited tensor", "base name", "file", "report"])
def test_the_chain_head_commits_to_every_hash_and_the_base(exported, tmp_path, change):
    _, out, _, _ = exported
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    m = json.loads((copy / NAME).read_text())
    if change == "unedited tensor":  # zeroed, and its new hashes written into the manifest
        tensors = load_file(copy / "model.safetensors")
        tensors["transformer.wpe.weight"].zero_()
        save_file(tensors, copy / "model.safetensors", metadata={"format": "pt"})
        m["tensors"]["transformer.wpe.weight"] = tensor_hash(tensors["transformer.wpe.weight"])
        m["files"]["model.safetensors"] = file_sha256(copy / "model.safetensors")
    elif change == "base name":
        m["base"]["name"] = "another model"
    elif change == "file":
        (copy / "config.json").write_text((copy / "config.json").read_text() + " ")
        m["files"]["config.json"] = file_sha256(copy / "config.json")
    else:
        m["report"] = None
    (copy / NAME).write_text(manifest_text(m))
    assert audit(copy).problems == [
        "chain head: differs from the hash over the edits, base, tensors and files recorded"
    ]


def test_a_killed_exports_folder_is_cleared_and_files_are_readable(handle, tmp_path):
    # What a SIGKILL mid-write leaves: a hidden folder of a process that no longer exists.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    abandoned = tmp_path / f".out.{int(dead.stdout)}-0a0b0c0d.partial"
    abandoned.mkdir()
    (abandoned / "model.safetensors").write_bytes(b"half")
    out = export(handle, tmp_path / "out")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    umask = os.umask(0)
    os.umask(umask)
    assert (out / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask
    assert all(p.stat().st_mode & 0o777 == 0o666 & ~umask for p in out.iterdir())


@pytest.mark.parametrize("family", ["gpt2", "llama", "gpt_neox"])
def test_each_family_round_trips_an_edit_checked_against_its_saved_base(family, tmp_path):
    # Loaded from a directory, so the base check reads the checkpoint; GPT-NeoX saves its output
    # embedding under another name (embed_out) than its state dict's (lm_head), tied GPT-2 not at all.
    save_tiny_byte_model(tmp_path / "base", family)
    h = workbench.load(tmp_path / "base", device="cpu")
    mlp = h.sites.mlp_out_path(0) + ".weight"
    rows, cols = dict(h.model.named_parameters())[mlp].shape
    out_name = next(n for n, p in h.model.named_parameters() if p is h.model.get_output_embeddings().weight)
    vocab, width = h.model.get_output_embeddings().weight.shape
    edits = [
        Edit("hand", {"note": "mlp"}, {mlp: Delta(left=torch.ones(rows, 1), right=torch.full((cols, 1), 0.01))}),
        Edit("hand", {"note": "out"}, {out_name: Delta(left=torch.ones(vocab, 1), right=torch.full((width, 1), 0.01))}),
    ]
    for e in edits:
        e.apply(h.model)
    out = export(h, tmp_path / "edited", edits=edits)
    back = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    texts = ["the cat sat on a mat", "Paris is the capital of France"]
    assert torch.equal(_logits(back, h.tokenizer, texts), _logits(h.model, h.tokenizer, texts))
    m = json.loads((out / NAME).read_text())
    assert m["base"]["checked_against_checkpoint"] is True and audit(out).ok
    with torch.no_grad():  # a change no edit explains is refused, whatever name it is saved under
        h.model.get_output_embeddings().weight[0, 0] += 1.0
    with pytest.raises(ExportError, match="not the model's tensor|does not hash to what"):
        export(h, tmp_path / "again", edits=edits)
