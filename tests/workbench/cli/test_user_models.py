"""The whole loop through the command line on a user's model and files: real architectures, random weights.

Each real configuration (GPT-2 small, Pythia-160m, a GQA Llama, Qwen2) is built at reduced
sizes with its architecture intact, saved as a Hugging Face directory, and taken through
info, trace, a ROME edit from a request spelled out on the command line, MEMIT from a
CounterFact-format file, forgetting from TOFU files and verifying that (no reference: the
report says what it cannot conclude), export, audit and a bitwise revert.
``benchmarks/user_models.py`` runs the same loop at full size.
"""

from __future__ import annotations

import json

import pytest
import torch
from real_configs import REAL, save_real_model
from safetensors.torch import load_file

import workbench
from edit.edit import Delta, Edit
from edit.patch import save_patch
from workbench.cli import main
from workbench.core.world.as_counterfact import EXAMPLES
from workbench.verify.rewrite import REWRITE_VERDICTS

STATS = "The weather is mild in spring, and the rivers run high after the rain. " * 30


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert code == 0, f"{args[:2]}: {err}"
    return json.loads(out)


@pytest.fixture(scope="module", params=list(REAL))
def user_model(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    save_real_model(root / "model", request.param)
    (root / "stats.txt").write_text(STATS)
    requests = [
        {"requested_rewrite": {"prompt": "{} plays", "subject": s, "target_new": {"str": " chess"},
                               "target_true": {"str": " golf"}}, "paraphrase_prompts": [f"Every week {s} plays"],
         "neighborhood_prompts": ["Bo plays"]}
        for s in ("Ada", "Cy")
    ]  # fmt: skip
    (root / "counterfact.json").write_text(json.dumps(requests))
    for part in ("forget05", "retain"):  # a few records keep the loop fast; the formats are what is tested
        records = json.loads((EXAMPLES / f"tofu_{part}.json").read_text())[:8]
        (root / f"tofu_{part}.json").write_text(json.dumps(records))
    return request.param, root


def test_the_whole_loop_on_a_users_model(capsys, user_model):
    name, root = user_model
    m = ["-m", root / "model"]
    info = run(capsys, "info", *m, "--json")
    assert "world" not in info and info["layers"] == 2

    trace = run(
        capsys,
        "trace",
        "--subject",
        "Ada",
        "--prompt",
        "Ada plays",
        "--object",
        " golf",
        *m,
        "--samples",
        "2",
        "--json",
    )
    assert "".join(trace["tokens"][1:]) == "Ada plays" and not any("Ġ" in t for t in trace["tokens"])

    fisher = run(capsys, "fisher", root / "tofu_forget05.json", "--retain", root / "tofu_retain.json", *m, "--json")
    assert fisher["examples"] == {"forget": 8, "retain": 8} or fisher["selected_elements"] > 0

    fields = ["--subject", "Ada", "--prompt", "{} plays", "--target-new", " chess", "--target-true", " golf"]
    stats = ["--stats-text", root / "stats.txt"]
    rome = run(capsys, "edit", "rome", *fields, *stats, *m, "--save-patch", root / "rome", "--force", "--json")
    assert rome["tensors"] and rome["request"]["subject"] == "Ada"
    checked = run(capsys, "verify", "--patch", root / "rome", *m, "--json")  # from the request's own prompts
    assert checked["kind"] == "rewrite requests" and checked["verdict"] in REWRITE_VERDICTS
    assert checked["states"]["edited"]["counterfact"]["efficacy"]["n"] == 1 and checked["cannot_conclude"]

    memit = run(capsys, "edit", "memit", "--requests", root / "counterfact.json", *stats, *m, "--json")
    assert memit["requests"] == 2 and memit["after"]["paraphrase"]["n"] == 2

    forget = run(
        capsys, "forget", "--forget", root / "tofu_forget05.json", "--retain", root / "tofu_retain.json",
        "--method", "ga", "--retain-facts", "20", *m, "--save-patch", root / "forget", "--force", "--json",
    )  # fmt: skip
    assert forget["request"]["forget_texts"] == 8 and forget["tensors"]

    tofu = ["--forget", root / "tofu_forget05.json", "--retain", root / "tofu_retain.json"]
    report = run(capsys, "verify", *tofu, "--patch", root / "forget", "--quick", *m, "--json")
    assert report["verdict"] == "undecided" and report["cannot_conclude"]

    out = root / "exported"
    export = run(capsys, "export", "--patch", root / "rome", *m, "--out", out, "--overwrite", "--verify", "--json")
    assert export["tensors"] > 0 and run(capsys, "audit", out, "--json")["ok"]
    assert export["report_kind"] == "rewrite requests" and export["verdict"] == checked["verdict"]
    assert "rewriting of facts given as requests" in (out / "README.md").read_text()
    back = root / "reverted"
    run(capsys, "patch", "revert", root / "rome", "--model", out, "--out", back, "--overwrite", "--json")
    base, reverted = load_file(root / "model" / "model.safetensors"), load_file(back / "model.safetensors")
    assert base.keys() == reverted.keys() and all(torch.equal(base[k], reverted[k]) for k in base)


def test_export_ships_forgetting_verified_from_files_on_a_users_model(capsys, tmp_path):
    save_real_model(tmp_path / "model", "llama-gqa")
    h = workbench.load(str(tmp_path / "model"), device="cpu")
    name = h.sites.mlp_out_path(0) + ".weight"
    rows, cols = h.model.get_parameter(name).shape
    e = Edit("hand", {"note": "a nudge"}, {name: Delta(left=torch.ones(rows, 1), right=torch.full((cols, 1), 0.01))})
    save_patch(e.apply(h.model), tmp_path / "nudge")
    for part in ("forget05", "retain"):
        records = json.loads((EXAMPLES / f"tofu_{part}.json").read_text())[:4]
        (tmp_path / f"{part}.json").write_text(json.dumps(records))
    tofu = ["--forget", tmp_path / "forget05.json", "--retain", tmp_path / "retain.json"]
    export = ["export", "--patch", tmp_path / "nudge", "-m", tmp_path / "model", "--out", tmp_path / "out"]

    # The base model stands in for a reference model: only the mechanics are tested here.
    shipped = run(capsys, *export, "--verify", *tofu, "--reference", tmp_path / "model", "--quick", "--json")
    assert shipped["report_kind"] == "forget texts" and shipped["verdict"] in ("removed", "suppressed", "not forgotten")
    assert {"verification.json", "verification.html"} <= set(shipped["files"])
    report = json.loads((tmp_path / "out" / "verification.json").read_text(), parse_constant=_refuse_constant)
    assert report["verdict"] == shipped["verdict"] and report["reference"] == str(tmp_path / "model")
    assert f"**Verdict: {shipped['verdict']}.**" in (tmp_path / "out" / "README.md").read_text()
    assert run(capsys, "audit", tmp_path / "out", "--json")["ok"]

    assert main([str(a) for a in [*export[:-1], tmp_path / "again", "--verify"]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--forget FILE --retain FILE" in err[0] and not (tmp_path / "again").exists()


def _refuse_constant(name):
    raise ValueError(f"{name} is not JSON")
