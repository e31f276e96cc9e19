"""The bad inputs of the refusal catalogue (``test_refusals.py``), grouped by what is bad.

A bad model argument, damage done to a valid patch, a malformed requests file, a bad argument
on an otherwise valid command line, or a broken export; each with the words its one-line
refusal must contain. "@" names are filled in by the catalogue's harness.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

MLP = "transformer.h.1.mlp.c_proj.weight"


# --- what the cases are made from -------------------------------------------------------------


def bad_models(tmp: Path, shipped: Path) -> dict[str, Path | str]:
    """Model arguments that cannot load, keyed by what is wrong with them."""

    def copy(name):
        d = tmp / name
        shutil.copytree(shipped, d, ignore=shutil.ignore_patterns("saes"))
        return d

    def weights_of(name, data: bytes):
        d = copy(name)
        (d / "model.safetensors").write_bytes(data)
        return d

    good = (shipped / "model.safetensors").read_bytes()
    out: dict[str, Path | str] = {
        "missing-dir": tmp / "no-such-model",
        "a-file": tmp / "plain.txt",
        "empty-dir": tmp / "empty",
        "unknown-world": "world:nope",
        "not-a-hub-id": "two words",
        "hub-id-offline": "someone/not-cached",
        "deep-path": "a/b/c",
        "empty-weights": weights_of("empty-weights", b""),
        "short-header": weights_of("short-header", good[:5]),
        "truncated": weights_of("truncated", good[: len(good) // 2]),
        "header-past-end": weights_of("header-past-end", (10**9).to_bytes(8, "little") + b"{}"),
        "garbage-header": weights_of("garbage-header", (8).to_bytes(8, "little") + b"notjson!"),
        "header-list": weights_of("header-list", (2).to_bytes(8, "little") + b"[]"),
    }
    (tmp / "plain.txt").write_text("not a model")
    (tmp / "empty").mkdir()
    d = copy("no-config")
    (d / "config.json").unlink()
    out["no-config"] = d
    d = copy("config-not-json")
    (d / "config.json").write_text("{not json")
    out["config-not-json"] = d
    d = copy("config-unknown-type")
    (d / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    out["config-unknown-type"] = d
    d = copy("pickle-only")
    (d / "model.safetensors").rename(d / "pytorch_model.bin")
    out["pickle-only"] = d
    d = copy("no-weights")
    (d / "model.safetensors").unlink()
    out["no-weights"] = d
    for name, text in {"world-not-json": "{oops", "world-a-list": "[1, 2]", "world-empty": ""}.items():
        d = copy(name)
        (d / "world.json").write_text(text)
        out[name] = d
    return out


MODEL_PROBLEMS = {
    "missing-dir": "no such model directory",
    "a-file": "no such model directory",
    "empty-dir": "holds no config.json",
    "unknown-world": "unknown world model",
    "not-a-hub-id": "not a directory, a world model or a hub id",
    "hub-id-offline": "HF_HUB_OFFLINE is set",
    "deep-path": "no such model directory",
    "empty-weights": "model.safetensors is empty or truncated",
    "short-header": "model.safetensors is empty or truncated",
    "truncated": "model.safetensors is truncated",
    "header-past-end": "model.safetensors is truncated",
    "garbage-header": "model.safetensors has a damaged header",
    "header-list": "model.safetensors has a damaged header",
    "no-config": "holds no config.json",
    "config-not-json": "cannot load model",
    "config-unknown-type": "cannot load model",
    "pickle-only": "its weights are pickles (pytorch_model.bin)",
    "no-weights": "holds no *.safetensors weights",
    "world-not-json": "world.json",
    "world-a-list": "world.json",
    "world-empty": "world.json",
}

# Commands that read a model, with the rest of a valid command line; "@m" is the model.
MODEL_COMMANDS = {
    "info": ["info", "-m", "@m"],
    "ask": ["ask", "It is well known that", "-m", "@m"],
    "rome": ["edit", "rome", "@p", "pet", "@new", "-m", "@m"],
    "apply": ["patch", "apply", "@patch", "-m", "@m", "--out", "@tmp/out"],
}


def patch_mutations() -> dict[str, tuple]:
    """Damage done to a valid patch: (what it does to the JSON or the tensors, the refusal)."""

    def js(f):
        return ("json", f)

    def drop(key):
        return js(lambda m: m.pop(key))

    def put(key, value):
        return js(lambda m: m.__setitem__(key, value))

    def delta(f):
        return js(lambda m: f(m["deltas"][MLP]))

    return {
        "json-not-json": (("raw-json", b"{nope"), "not JSON"),
        "json-empty": (("raw-json", b""), "not JSON"),
        "json-a-list": (("raw-json", b"[1, 2]"), "a JSON list where an object belongs"),
        "json-binary": (("raw-json", b"\xff\xfe\x00garbage"), "patch"),
        "no-format": (drop("format"), "format"),
        "format-unknown": (put("format", "knowledge-workbench/patch/99"), "format"),
        "format-number": (put("format", 2), "format"),
        "no-method": (drop("method"), "method"),
        "method-number": (put("method", 7), "method"),
        "request-a-list": (put("request", [1]), "request"),
        "settings-a-string": (put("settings", "x"), "settings"),
        "metrics-a-list": (put("metrics", []), "metrics"),
        "no-deltas": (drop("deltas"), "deltas"),
        "deltas-empty": (put("deltas", {}), "deltas"),
        "deltas-a-list": (put("deltas", []), "deltas"),
        "no-hashes-before": (drop("hashes_before"), "hashes_before"),
        "hashes-before-empty": (put("hashes_before", {}), "names no base hash"),
        "hashes-before-short": (put("hashes_before", {MLP: "abc"}), "names no base hash"),
        "hashes-before-other-tensor": (
            put("hashes_before", {"transformer.wte.weight": "0" * 64}),
            "names no base hash",
        ),
        "hashes-after-number": (put("hashes_after", {MLP: 5}), "hashes_after"),
        "no-tensors-sha": (drop("tensors_sha256"), "tensors_sha256"),
        "tensors-sha-wrong": (put("tensors_sha256", "0" * 64), "tensors"),
        "rank-a-string": (delta(lambda d: d.__setitem__("rank", "one")), "rank"),
        "rank-wrong": (delta(lambda d: d.__setitem__("rank", 3)), "rank"),
        "delta-sha-missing": (delta(lambda d: d.pop("sha256")), "names no parts"),
        "delta-sha-wrong": (delta(lambda d: d["sha256"].__setitem__("left", "0" * 64)), "left"),
        "restore-wrong": (delta(lambda d: d.__setitem__("restore", "0" * 64)), "revert data"),
        "unknown-tensor": (js(lambda m: m["deltas"].__setitem__("no.such.weight", m["deltas"].pop(MLP))), "no.such"),
        "tensors-missing": (("tensors", lambda t: {}), "patch"),
        "tensors-empty-file": (("raw-tensors", b""), "safetensors"),
        "tensors-truncated": (("cut-tensors", None), "safetensors"),
        "tensors-garbage": (("raw-tensors", (6).to_bytes(8, "little") + b"{oops}"), "safetensors"),
        "tensor-flipped": (("tensors", lambda t: {k: v.neg() for k, v in t.items()}), "does not match its manifest"),
        "tensor-nan": (("tensors", lambda t: {k: nan_filled(v) for k, v in t.items()}), "does not match its manifest"),
        # Forged: the tensors changed and every hash in the manifest recomputed to match, so only
        # the checks of what the tensors are (finite, floating, shapes, names) can catch it.
        "forged-nan": (("forge", lambda t: {k: nan_filled(v) for k, v in t.items()}), "not a finite floating-point"),
        "forged-int": (
            ("forge", lambda t: {k: v.int() if v.is_floating_point() else v for k, v in t.items()}),
            "floating",
        ),
        "forged-shapes": (("forge", lambda t: {k: widened(k, v) for k, v in t.items()}), "do not make a rank-1 delta"),
        "forged-extra": (
            ("forge", lambda t: {**t, "hidden": torch.ones(3)}),
            "holds hidden, which its manifest does not",
        ),
        "forged-missing-part": (
            ("forge", lambda t: {k: v for k, v in t.items() if not k.endswith("::right")}),
            "lacks",
        ),
        "tensor-reshaped": (
            ("tensors", lambda t: {k: v.reshape(v.shape[::-1]).clone() for k, v in t.items()}),
            "patch",
        ),
        "tensor-half": (("tensors", lambda t: {k: v.half() for k, v in t.items()}), "patch"),
        "tensor-extra": (("tensors", lambda t: {**t, "extra": torch.zeros(2)}), "patch"),
        "json-file-missing": (("no-json", None), "no patch"),
    }


def nan_filled(t):
    return t.clone().fill_(float("nan")) if t.is_floating_point() else t


def widened(key, t):
    return torch.cat([t, t], dim=1) if key.endswith("::left") else t


PATCH_MUTATIONS = patch_mutations()

# Commands that read a patch; "@bad" is the damaged patch.
PATCH_COMMANDS = {
    "show": ["patch", "show", "@bad"],
    "apply": ["patch", "apply", "@bad", "--out", "@tmp/out"],
    "export": ["export", "--patch", "@bad", "--out", "@tmp/out"],
}
REQUEST_LINES = {
    # name: (lines, where "@p" is a person, "@q" another, "@new" a pet @p does not have; the refusal)
    "not-json": (["{person"], ":1: not JSON"),
    "a-number": (["42"], "expected a JSON object, got int"),
    "a-null": (["null"], "expected a JSON object, got NoneType"),
    "a-bool": (["true"], "expected a JSON object, got bool"),
    "person-null": ([{"person": None, "relation": "pet", "new_object": "@new"}], '"person" must be a string'),
    "person-number": ([{"person": 3, "relation": "pet", "new_object": "@new"}], '"person" must be a string'),
    "relation-list": ([{"person": "@p", "relation": ["pet"], "new_object": "@new"}], '"relation" must be a string'),
    "relation-unknown": ([{"person": "@p", "relation": "hobby", "new_object": "@new"}], "hobby"),
    "relation-missing": ([{"person": "@p", "new_object": "@new"}], "missing field 'relation'"),
    "object-unknown": ([{"person": "@p", "relation": "pet", "new_object": "dragon"}], "'dragon' is not a pet"),
    "object-empty": ([{"person": "@p", "relation": "pet", "new_object": ""}], "'' is not a pet"),
    "object-same": ([{"person": "@p", "relation": "pet", "new_object": "@same"}], "already the true object"),
    "object-dict": ([{"person": "@p", "relation": "pet", "new_object": {"a": 1}}], '"new_object" must be a string'),
    "erase-string": ([{"person": "@p", "relation": "pet", "erase": "true"}], '"erase" must be true or false'),
    "erase-null": ([{"person": "@p", "relation": "pet", "erase": None}], '"erase" must be true or false'),
    "person-unknown": ([{"person": "Nobody Here", "relation": "pet", "erase": True}], "unknown person"),
    "person-blank": ([{"person": "  ", "relation": "pet", "erase": True}], "person"),
    "extra-field": ([{"person": "@p", "relation": "pet", "erase": True, "Erase": True}], "unknown field 'Erase'"),
    "conflict": (
        [
            {"person": "@p", "relation": "pet", "new_object": "@new"},
            {"person": "@p", "relation": "pet", "new_object": "@new2"},
        ],
        ":2:",
    ),
    "bad-third-line": (
        [{"person": "@p", "relation": "pet", "erase": True}, {"person": "@q", "relation": "pet", "erase": True}, "[]"],
        ":3: expected a JSON object",
    ),
    "blank-lines-only": (["", "   ", ""], "holds no requests"),
    "plain-conflict": (
        [
            {"subject": "@p", "prompt": "{} owns a pet", "target_true": "@same", "target_new": "@new"},
            {"subject": "@p", "prompt": "{} owns a pet", "target_true": "@same", "target_new": "@new2"},
        ],
        "requests 0 and 1 ask",
    ),
    "not-utf8": ([b"\xff\xfe{\x00"], "is not UTF-8 text"),
}

# An export of a valid patch to a new folder: the verification options are what is bad.
EXPORT_TO = ["export", "--patch", "@patch", "--out", "@tmp/o"]

# The rest: one bad argument each, on a command whose other arguments are valid.
ARGUMENTS = [
    # the command line itself
    ("unknown-command", ["nosuch"], "No such command 'nosuch'"),
    ("unknown-option", ["info", "--nosuch"], "No such option: --nosuch"),
    ("unknown-subcommand", ["edit", "nosuch"], "No such command 'nosuch'"),
    ("missing-argument", ["audit"], "Missing argument"),
    ("rome-no-relation", ["edit", "rome", "@p"], "give PERSON and RELATION"),
    ("rome-two-sources", ["edit", "rome", "@p", "pet", "--subject", "@p", "--prompt", "{} owns a pet"], "once"),
    ("rome-subject-no-prompt", ["edit", "rome", "--subject", "@p", "--target-new", "cat"], "needs --prompt"),
    ("rome-prompt-alone", ["edit", "rome", "@p", "pet", "@new", "--prompt", "{} owns"], "--prompt goes with"),
    ("rome-case-alone", ["edit", "rome", "@p", "pet", "@new", "--case", "3"], "--case goes with --request"),
    ("rome-fields-no-target", ["edit", "rome", "--subject", "@p", "--prompt", "{} owns a pet"], "--target-new"),
    ("rome-request-missing", ["edit", "rome", "--request", "@tmp/none.json"], "none.json"),
    ("rome-request-case-high", ["edit", "rome", "--request", "@counterfact", "--case", "999"], "999"),
    ("rome-request-and-object", ["edit", "rome", "--request", "@counterfact", "--erase"], "--request names"),
    ("rome-stats-text-missing", ["edit", "rome", "@p", "pet", "@new", "--stats-text", "@tmp/no"], "--stats-text"),
    (
        "memit-stats-text-empty-dir",
        ["edit", "memit", "--requests", "@requests", "--stats-text", "@tmp/full"],
        "--stats-text",
    ),
    ("extra-argument", ["info", "surplus"], "unexpected extra argument"),
    # --dtype and --device, on every command that loads a model
    ("dtype-info", ["info", "--dtype", "int8"], "--dtype must be one of float32, bfloat16, float16"),
    ("dtype-trace", ["trace", "@p", "pet", "--dtype", "double"], "--dtype must be one of"),
    ("dtype-rome", ["edit", "rome", "@p", "pet", "@new", "--dtype", "fp8"], "--dtype must be one of"),
    ("dtype-export", ["export", "--patch", "@patch", "--out", "@tmp/o", "--dtype", "half"], "--dtype must be one of"),
    ("device-unparsable", ["ask", "It is well known that", "--device", "gpu"], "--device 'gpu' is not a device"),
    ("device-absent", ["forget", "@p", "--device", "cuda:99"], "CUDA device(s)"),
    ("device-features", ["features", "@p", "pet", "--device", "tpu:0"], "is not a device"),
    # ask
    ("ask-unknown-word", ["ask", "It is well known that Zanzibar"], "cannot encode 'Zanzibar'"),
    ("ask-too-long", ["ask", "@long"], "tokens long"),
    ("ask-k-zero", ["ask", "It is well known that", "-k", "0"], "-k"),
    ("ask-k-text", ["ask", "It is well known that", "-k", "many"], "-k"),
    ("ask-empty", ["ask", " "], "PROMPT is empty"),
    # trace
    ("trace-unknown-person", ["trace", "Nobody Here", "pet"], "unknown person 'Nobody Here'"),
    ("trace-unknown-relation", ["trace", "@p", "hobby"], "hobby"),
    ("trace-method", ["trace", "@p", "pet", "--method", "magic"], "magic"),
    ("trace-phrasing-high", ["trace", "@p", "pet", "--phrasing", "99"], "phrasing"),
    ("trace-phrasing-negative", ["trace", "@p", "pet", "--phrasing", "-1"], "phrasing"),
    ("trace-samples-zero", ["trace", "@p", "pet", "--samples", "0"], "--samples"),
    ("trace-noise-negative", ["trace", "@p", "pet", "--noise", "-1"], "--noise"),
    ("trace-noise-nan", ["trace", "@p", "pet", "--noise", "nan"], "--noise"),
    ("trace-window-zero", ["trace", "@p", "pet", "--window", "0"], "--window"),
    ("trace-corruption", ["trace", "@p", "pet", "--corruption", "blur"], "blur"),
    ("trace-object-unknown", ["trace", "@p", "pet", "--object", "dragon"], "dragon"),
    ("trace-prompt-no-subject", ["trace", "@p", "pet", "--prompt", "It is well known that"], "does not occur"),
    ("trace-prompt-too-long", ["trace", "@p", "pet", "--prompt", "@long"], "tokens long"),
    ("trace-seed-text", ["trace", "@p", "pet", "--seed", "x"], "--seed"),
    ("trace-no-relation", ["trace", "@p"], "give a RELATION, or --prompt and --object"),
    ("trace-subject-twice", ["trace", "@p", "pet", "--subject", "@p"], "name the subject once"),
    ("trace-no-subject", ["trace", "--prompt", "It is well known that", "--object", "cat"], "name the subject once"),
    (
        "trace-subject-not-in-prompt",
        ["trace", "--subject", "@q", "--prompt", "It is well known that", "--object", "cat"],
        "does not occur in --prompt",
    ),
    # fisher
    ("fisher-forget-unknown", ["fisher", "nobody-or-nothing"], "nobody-or-nothing"),
    ("fisher-fraction-zero", ["fisher", "forget01", "--top-fraction", "0"], "--top-fraction"),
    ("fisher-fraction-over-one", ["fisher", "forget01", "--top-fraction", "1.5"], "--top-fraction"),
    ("fisher-fraction-nan", ["fisher", "forget01", "--top-fraction", "nan"], "--top-fraction"),
    ("fisher-granularity", ["fisher", "forget01", "--granularity", "atom"], "atom"),
    ("fisher-score", ["fisher", "forget01", "--score", "vibes"], "vibes"),
    ("fisher-alpha-negative", ["fisher", "forget01", "--alpha", "-1"], "--alpha"),
    ("fisher-max-examples-zero", ["fisher", "forget01", "--max-examples", "0"], "--max-examples"),
    ("fisher-out-in-missing-dir", ["fisher", "forget01", "--out", "@tmp/no/such/dir/loc.json"], "--out"),
    ("fisher-out-a-dir", ["fisher", "forget01", "--out", "@tmp"], "--out"),
    ("fisher-retain-missing", ["fisher", "@forget_texts", "--retain", "@tmp/none.jsonl"], "--retain:"),
    ("fisher-forget-not-a-file", ["fisher", "forget01", "--retain", "@forget_texts"], "FORGET:"),
    # features
    ("features-unknown-person", ["features", "Nobody Here", "pet"], "unknown person"),
    ("features-unknown-relation", ["features", "@p", "hobby"], "hobby"),
    ("features-layer-high", ["features", "@p", "pet", "--layer", "9"], "layer"),
    ("features-layer-negative", ["features", "@p", "pet", "--layer", "-1"], "layer"),
    ("features-component", ["features", "@p", "pet", "--component", "attn"], "attn"),
    ("features-feature-negative", ["features", "@p", "--feature", "-1"], "feature"),
    ("features-feature-high", ["features", "@p", "--feature", "999999"], "feature"),
    ("features-top-zero", ["features", "@p", "pet", "--top", "0"], "--top"),
    # forget
    ("forget-nothing", ["forget"], "name a PERSON or give --split"),
    ("forget-both", ["forget", "@p", "--split", "forget01"], "(not both)"),
    ("forget-unknown-person", ["forget", "Nobody Here"], "unknown person"),
    ("forget-split", ["forget", "--split", "forget99"], "forget99"),
    ("forget-method", ["forget", "@p", "--method", "amnesia"], "amnesia"),
    ("forget-file-and-person", ["forget", "@p", "--forget", "@counterfact", "--retain", "@counterfact"], "no PERSON"),
    ("forget-file-no-retain", ["forget", "--forget", "@forget_texts"], "--forget needs --retain FILE"),
    ("forget-file-missing", ["forget", "--forget", "@tmp/none.jsonl", "--retain", "@forget_texts"], "--forget:"),
    ("forget-retain-not-texts", ["forget", "--forget", "@forget_texts", "--retain", "@tmp/taken.json"], "--retain:"),
    ("forget-file-overlap", ["forget", "--forget", "@forget_texts", "--retain", "@forget_texts"], "overlaps"),
    ("forget-file-empty-dir", ["forget", "--forget", "@tmp/full", "--retain", "@forget_texts"], "--forget:"),
    ("forget-retain-unknown", ["forget", "@p", "--retain", "Nobody Here"], "Nobody Here"),
    ("forget-retain-facts-negative", ["forget", "@p", "--retain-facts", "-1"], "--retain-facts"),
    ("forget-save-patch-dir", ["forget", "@p", "--save-patch", "@tmp"], "is a directory"),
    ("forget-save-patch-exists", ["forget", "@p", "--save-patch", "@tmp/taken"], "already exists"),
    ("forget-save-patch-no-parent", ["forget", "@p", "--save-patch", "@tmp/no/such/p"], "no folder"),
    # edit rome
    ("rome-unknown-relation", ["edit", "rome", "@p", "hobby", "chess"], "hobby"),
    ("rome-token", ["edit", "rome", "@p", "pet", "@new", "--token", "first"], "first"),
    ("rome-phrasing", ["edit", "rome", "@p", "pet", "@new", "--phrasing", "99"], "phrasing"),
    ("rome-layer-negative", ["edit", "rome", "@p", "pet", "@new", "--layer", "-1"], "layer"),
    ("rome-save-patch-no-parent", ["edit", "rome", "@p", "pet", "@new", "--save-patch", "@tmp/no/p"], "no folder"),
    ("rome-save-patch-exists", ["edit", "rome", "@p", "pet", "@new", "--save-patch", "@tmp/taken"], "already exists"),
    ("rome-object-empty", ["edit", "rome", "@p", "pet", ""], "pet"),
    # edit memit options (the requests file is valid)
    ("memit-layers-text", ["edit", "memit", "--requests", "@requests", "--layers", "a,b"], "--layers"),
    ("memit-layers-high", ["edit", "memit", "--requests", "@requests", "--layers", "9"], "layer"),
    ("memit-layers-empty", ["edit", "memit", "--requests", "@requests", "--layers", ""], "--layers"),
    ("memit-layers-repeated", ["edit", "memit", "--requests", "@requests", "--layers", "1,1"], "--layers"),
    ("memit-mom2-negative", ["edit", "memit", "--requests", "@requests", "--mom2-weight", "-1"], "--mom2-weight"),
    ("memit-mom2-nan", ["edit", "memit", "--requests", "@requests", "--mom2-weight", "nan"], "--mom2-weight"),
    ("memit-mom2-inf", ["edit", "memit", "--requests", "@requests", "--mom2-weight", "inf"], "--mom2-weight"),
    ("memit-batch-negative", ["edit", "memit", "--requests", "@requests", "--batch-size", "-3"], "--batch-size"),
    ("memit-keys", ["edit", "memit", "--requests", "@requests", "--keys", "median"], "--keys"),
    ("memit-requests-dir", ["edit", "memit", "--requests", "@tmp"], "requests"),
    ("memit-save-patch-dir", ["edit", "memit", "--requests", "@requests", "--save-patch", "@tmp"], "is a directory"),
    # verify
    ("verify-nothing", ["verify"], "--patch"),
    ("verify-split", ["verify", "--split", "forget99"], "forget99"),
    ("verify-person", ["verify", "--person", "Nobody Here"], "Nobody Here"),
    ("verify-person-empty-item", ["verify", "--person", "@p,,"], "person"),
    ("verify-reference", ["verify", "--split", "forget01", "--reference", "@tmp/no-such-model"], "--reference"),
    ("verify-reference-world", ["verify", "--split", "forget01", "--reference", "world:nope"], "--reference"),
    ("verify-html-dir", ["verify", "--split", "forget01", "--html", "@tmp"], "--html"),
    ("verify-html-no-parent", ["verify", "--split", "forget01", "--html", "@tmp/no/r.html"], "--html"),
    ("verify-patch-missing", ["verify", "--patch", "@tmp/no-such"], "no patch"),
    ("verify-patch-not-world", ["verify", "--patch", "@patch"], "world facts"),
    ("verify-rewrite-patch-other-model", ["verify", "--patch", "@patch", "-m", "@tinymodel"], "another model"),
    # world
    ("world-facts-unknown", ["world", "facts", "Nobody Here"], "unknown person"),
    ("world-facts-not-world", ["world", "facts", "@p", "-m", "@tinymodel"], "no fact world"),
    ("world-train-name", ["world", "train", "gpt5"], "unknown world model 'gpt5'"),
    ("world-train-epochs", ["world", "train", "gpt2", "--epochs", "0"], "--epochs"),
    ("world-train-out-file", ["world", "train", "gpt2", "--out", "@tmp/taken.json"], "--out"),
    # sae
    ("sae-train-out-file", ["sae", "train", "--out", "@tmp/taken.json"], "--out"),
    ("sae-train-out-missing", ["sae", "train", "--out", "@tmp/no-such"], "--out"),
    # export / apply / revert / audit arguments (the patch is valid)
    ("export-out-a-file", ["export", "--patch", "@patch", "--out", "@tmp/taken.json"], "is a file, not an export"),
    ("export-out-no-parent", ["export", "--patch", "@patch", "--out", "@tmp/no/such/out"], "no folder"),
    ("export-same-patch-twice", ["export", "--patch", "@patch", "--patch", "@patch", "--out", "@tmp/o"], "differs"),
    ("export-forget-no-verify", [*EXPORT_TO, "--forget", "@forget_texts", "--retain", "@forget_texts"], "--verify"),
    ("export-retain-no-forget", [*EXPORT_TO, "--verify", "--retain", "@forget_texts"], "--retain goes with --forget"),
    ("export-reference-no-forget", [*EXPORT_TO, "--verify", "--reference", "world"], "--reference goes with --forget"),
    ("export-forget-no-retain", [*EXPORT_TO, "--verify", "--forget", "@forget_texts"], "--forget needs --retain"),
    (
        "export-forget-bad",
        [*EXPORT_TO, "--verify", "--forget", "@tmp/taken.json", "--retain", "@forget_texts"],
        "--forget",
    ),
    ("export-verify-no-world", [*EXPORT_TO, "--verify", "-m", "@tinymodel"], "--forget FILE --retain FILE"),
    (
        "export-forget-reference",
        [*EXPORT_TO, "--verify", "--forget", "@forget_texts", "--retain", "@forget_texts", "--reference", "world:nope"],
        "--reference",
    ),
    (
        "verify-forget-html-dir",
        ["verify", "--forget", "@forget_texts", "--retain", "@forget_texts", "--html", "@tmp"],
        "--html",
    ),
    ("apply-out-nonempty", ["patch", "apply", "@patch", "--out", "@tmp/full"], "already exists"),
    ("apply-no-files", ["patch", "apply", "--out", "@tmp/o"], "Missing argument"),
    ("revert-model-not-export", ["patch", "revert", "@patch", "--model", "world", "--out", "@tmp/o"], "export"),
    ("revert-model-missing", ["patch", "revert", "@patch", "--model", "@tmp/none", "--out", "@tmp/o"], "@tmp/none"),
    ("revert-wrong-patch", ["patch", "revert", "@patch2", "--model", "@export", "--out", "@tmp/o"], "patch"),
    ("audit-a-file", ["audit", "@tmp/taken.json"], "taken.json"),
    ("audit-not-export", ["audit", "@tmp/full"], "is not an export"),
]

EXPORT_MUTATIONS = {
    # Damage to an export's manifest that makes it no manifest at all: refused (exit 2) by
    # audit and by revert. Damage to a valid manifest's content is an audit mismatch (exit 1),
    # tested in test_shipping.
    "manifest-not-json": (lambda d: (d / "edit_manifest.json").write_text("{oops"), "edit_manifest.json"),
    "manifest-a-list": (lambda d: (d / "edit_manifest.json").write_text("[]"), "edit_manifest.json"),
    "manifest-empty": (lambda d: (d / "edit_manifest.json").write_text(""), "edit_manifest.json"),
    "manifest-format": (lambda d: edit_manifest(d, lambda m: m.__setitem__("format", "x/1")), "format"),
    "manifest-no-files": (lambda d: edit_manifest(d, lambda m: m.pop("files")), "files"),
    "manifest-no-edits": (lambda d: edit_manifest(d, lambda m: m.pop("edits")), "edits"),
    "manifest-edits-a-dict": (lambda d: edit_manifest(d, lambda m: m.__setitem__("edits", {})), "edits"),
    "manifest-removed": (lambda d: (d / "edit_manifest.json").unlink(), "not an export"),
}


# A well-formed manifest with a wrong value is an audit finding (exit 1, see test_shipping);
# revert refuses it all the same.
AUDIT_MISMATCHES = {"manifest-edits-a-dict"}


def edit_manifest(d: Path, change) -> None:
    m = json.loads((d / "edit_manifest.json").read_text())
    change(m)
    (d / "edit_manifest.json").write_text(json.dumps(m))
