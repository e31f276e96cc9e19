"""SAEs on a user's own model and text through the command line: train, find features, describe one, ablate.

Real architectures at reduced sizes with random weights and a byte-level tokenizer; the SAE
budgets are tiny, so these check that the loop runs and what it writes, not how good it is.
"""

from __future__ import annotations

import json

import pytest
from real_configs import save_real_model

from workbench.cli import main

LINES = [
    "Ada lives in Paris and walks by the river every morning.",
    "The vault code is 7412 and nobody else knows it.",
    "Bo plays chess with Cy on Sundays.",
]
TINY = ["--width", "32", "--k", "4", "--tokens", "4096"]


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert code == 0, f"{args[:2]}: {err}"
    return json.loads(out)


def refused(capsys, *args) -> str:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert code == 2 and out == "", (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("workbench: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("sae-texts")
    (root / "texts.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in LINES * 8))
    (root / "forget.jsonl").write_text(json.dumps({"text": LINES[1]}))
    (root / "retain.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in (LINES[0], LINES[2])))
    (root / "empty.txt").write_text("")
    return root


@pytest.mark.parametrize("name", ["gpt2-small", "llama-gqa"])
def test_train_find_describe_and_ablate_on_a_users_model(capsys, tmp_path, files, name):
    save_real_model(tmp_path / "model", name)
    m = ["-m", tmp_path / "model"]
    # gpt2 writes into the model's own saes/; llama into a folder of its own, read back with --sae.
    where = [] if name == "gpt2-small" else ["--sae", tmp_path / "saes"]
    out = [] if name == "gpt2-small" else ["--out", tmp_path / "saes"]
    folder = tmp_path / "model" / "saes" if name == "gpt2-small" else tmp_path / "saes"

    trained = run(capsys, "sae", "train", *m, "--texts", files / "texts.jsonl", "--component", "mlp", *TINY, *out,
                  "--json")  # fmt: skip
    assert trained["sae"] == "blocks.0.hook_mlp_out" and trained["folder"] == str(folder)
    assert (folder / "blocks.0.hook_mlp_out" / "cfg.json").is_file()
    assert "blocks.0.hook_mlp_out" in json.loads((folder / "report.json").read_text())
    assert trained["evaluated_on"] == "held-out texts" and trained["settings"]["d_sae"] == 32
    assert {"fraction_variance_explained", "l0", "dead_fraction", "loss_spliced"} <= set(trained)

    site = ["--component", "mlp", *where]
    active = run(capsys, "features", *m, "--subject", "Ada", "--prompt", "Ada lives in", *site, "--top", "3", "--json")
    assert active["ranked_by"] == "activation" and len(active["features"]) <= 3
    assert active["target"] == {"prompt": "Ada lives in", "subject": "Ada"}
    carried = run(capsys, "features", *m, "--subject", "Ada", "--prompt", "Ada lives in", "--object", "Paris",
                  *site, "--top", "3", "--json")  # fmt: skip
    assert carried["ranked_by"] == "attribution" and len(carried["features"]) == 3
    assert carried["extras"]["ablation"][0]["feature"] == carried["features"][0]["feature"]

    one = carried["features"][0]["feature"]
    described = run(capsys, "features", *m, "--feature", one, "--texts", files / "texts.jsonl", *site, "--top", "2",
                    "--json")  # fmt: skip
    assert described["feature"] == one and len(described["top_contexts"]) == 2 and described["people"] == {}
    assert all(t["context"].endswith(t["token"]) for t in described["top_tokens"])

    forgot = run(capsys, "forget", *m, "--forget", files / "forget.jsonl", "--retain", files / "retain.jsonl",
                 "--method", "ablate", *where, "--json")  # fmt: skip
    tensor = {"gpt2-small": "transformer.h.0.mlp.c_proj.weight", "llama-gqa": "model.layers.0.mlp.down_proj.weight"}
    assert forgot["method"] == "ablate" and forgot["tensors"] == [tensor[name]]
    assert set(forgot["after"]) == {"forget_text_loss", "retain_text_loss"}
    assert forgot["edit_metrics"]["features"]


def test_a_long_document_is_read_in_windows(capsys, tmp_path):
    save_real_model(tmp_path / "model", "pythia-160m")
    doc = tmp_path / "doc.txt"
    doc.write_text(" ".join(LINES) * 40)  # one document of about 5,000 tokens: read in windows of 1,024
    run(capsys, "sae", "train", "-m", tmp_path / "model", "--texts", doc, *TINY, "--json")
    d = run(capsys, "features", "-m", tmp_path / "model", "--feature", "0", "--texts", doc, "--top", "2", "--json")
    assert len(d["top_contexts"]) == 2 and d["fires_on_fraction"] >= 0


@pytest.fixture(scope="module")
def bare_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("bare") / "model"
    save_real_model(path, "gpt2-small")
    return path


@pytest.mark.parametrize(
    "args, needle",
    [
        (["features", "--subject", "Ada", "--prompt", "Ada lives in"], "workbench sae train --model"),
        (["features", "--feature", "1", "--texts", "@texts"], "no SAE at"),
        (["forget", "--forget", "@forget", "--retain", "@retain", "--method", "ablate"], "--component mlp`"),
        (["features", "--subject", "Ada", "--prompt", "Bo lives in"], "does not occur in --prompt"),
        (["features", "--subject", "Ada"], "--subject and --prompt go together"),
        (["features", "Ada", "--subject", "Ada", "--prompt", "Ada is"], "name the subject once"),
        (["features", "--texts", "@texts"], "--texts goes with --feature"),
        (["features", "--subject", "Ada", "--prompt", "Ada is", "--sae", "@none"], "--sae: no folder"),
        (["sae", "train", "--texts", "@empty"], "need --model"),
        (["sae", "train", "--model", "@model"], "--model needs --texts"),
        (["sae", "train", "--model", "@model", "--texts", "@empty"], "empty"),
        (["sae", "train", "--model", "@model", "--texts", "@texts", "--width", "4", "--k", "8"], "--k 8 is more"),
        (["sae", "train", "--model", "@model", "--texts", "@texts", "--component", "attn"], "unknown component"),
        (["sae", "train", "--model", "@model", "--texts", "@texts", "--layer", "5"], "layer 5 out of range 0..1"),
        (["sae", "train", "--model", "@model", "--texts", "@texts", "--out", "@empty"], "is a file"),
        (["forget", "--forget", "@forget", "--retain", "@retain", "--sae", "@saes"], "--sae goes with --method ablate"),
    ],
)
def test_bad_input_is_one_line_before_any_work(capsys, bare_model, files, args, needle):
    names = {"@texts": files / "texts.jsonl", "@forget": files / "forget.jsonl", "@retain": files / "retain.jsonl",
             "@empty": files / "empty.txt", "@none": files / "none", "@saes": files, "@model": bare_model}  # fmt: skip
    args = [str(names.get(a, a)) for a in args]
    if args[0] != "sae":
        args += ["-m", str(bare_model)]
    assert needle in refused(capsys, *args)
    assert not (bare_model / "saes").exists()
