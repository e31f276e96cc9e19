"""A catalogue of bad inputs, each refused the same way by the command line.

Every case must end with exit status 2, one line on stderr that starts ``workbench:`` and names
what was wrong, nothing on stdout, no traceback, nothing written or changed in its folder, and
the shipped models and the caches untouched. The cases are grouped by what is bad: the model,
an argument, a requests file, a patch file or an export.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from refusal_cases import (
    ARGUMENTS,
    AUDIT_MISMATCHES,
    EXPORT_MUTATIONS,
    MLP,
    MODEL_COMMANDS,
    MODEL_PROBLEMS,
    PATCH_COMMANDS,
    PATCH_MUTATIONS,
    REQUEST_LINES,
    bad_models,
)
from safetensors.torch import load_file, save_file

from edit.edit import Delta, Edit
from edit.patch import save_patch
from workbench.cli import main
from workbench.core.hashing import tensor_hash
from workbench.core.world.as_counterfact import EXAMPLES
from workbench.core.world.registry import CHECKPOINTS

# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def made(handle, world, tmp_path_factory):
    """What the cases copy from: two valid patches, an export of the first, bad models, a tiny model."""
    from tests.tiny_models import save_tiny_byte_model

    root = tmp_path_factory.mktemp("refusals")
    g = torch.Generator().manual_seed(0)
    for name in ("p1", "p2"):
        e = Edit(
            "nudge",
            {"note": name},
            {MLP: Delta(left=torch.randn(512, 1, generator=g), right=torch.randn(128, 1, generator=g))},
        )
        e.apply(handle.model)
        save_patch(e, root / name)
        e.revert(handle.model)
    assert main(["export", "--patch", str(root / "p1"), "--out", str(root / "export")]) == 0
    save_tiny_byte_model(root / "tiny", "gpt2")
    person, other = list(world.people)[:2]
    true_pet = world.fact(person, "pet").object
    pets = [c for c in world.relation("pet").candidates if c != true_pet]
    return {
        "root": root,
        "models": bad_models(root / "models", CHECKPOINTS / "gpt2"),
        "@p": person,
        "@q": other,
        "@same": true_pet,
        "@new": pets[0],
        "@new2": pets[1],
        "@long": " ".join(["It is well known that"] * 40),
    }


def _tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder``, by relative path, with the sha256 of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _stat_tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def case_dir(tmp_path, monkeypatch, made):
    """A folder for one case, caches pointed inside it, and a check afterwards that nothing changed."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "taken.json").write_text("{}")
    (work / "taken.safetensors").write_bytes(b"")
    (work / "full").mkdir()
    (work / "full" / "x").write_text("x")
    cache = tmp_path / "cache"
    (cache / "covariance").mkdir(parents=True)
    (cache / "covariance" / "entry").write_text("kept")
    monkeypatch.setenv("WORKBENCH_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    shipped = _stat_tree(CHECKPOINTS)
    yield work
    assert _tree(cache) == {"covariance/entry": hashlib.sha256(b"kept").hexdigest()}, "a cache was written"
    assert not (tmp_path / "hub").exists()
    assert _stat_tree(CHECKPOINTS) == shipped, "a shipped model changed"


def _write_patch(made, work: Path, name: str, damage=None) -> Path:
    target = work / name
    for suffix in (".json", ".safetensors"):
        shutil.copyfile(made["root"] / f"p1{suffix}", target.with_suffix(suffix))
    if damage is None:
        return target
    kind, f = damage
    js, ts = target.with_suffix(".json"), target.with_suffix(".safetensors")
    if kind == "json":
        m = json.loads(js.read_text())
        f(m)
        js.write_text(json.dumps(m))
    elif kind == "raw-json":
        js.write_bytes(f)
    elif kind == "no-json":
        js.unlink()
    elif kind == "raw-tensors":
        ts.write_bytes(f)
    elif kind == "cut-tensors":
        ts.write_bytes(ts.read_bytes()[:-100])
    elif kind == "forge":
        tensors = f(load_file(ts))
        save_file({k: v.contiguous() for k, v in tensors.items()}, ts)
        m = json.loads(js.read_text())
        for key, t in tensors.items():
            name, _, part = key.partition("::")
            if name in m["deltas"] and part in m["deltas"][name]["sha256"]:
                m["deltas"][name]["sha256"][part] = tensor_hash(t)
        m["tensors_sha256"] = hashlib.sha256(ts.read_bytes()).hexdigest()
        js.write_text(json.dumps(m))
    elif kind == "tensors":
        tensors = f(load_file(ts))
        if tensors:
            save_file({k: v.contiguous() for k, v in tensors.items()}, ts)
        else:
            ts.unlink()
    return target


def _fill(made, work: Path, args: list[str]) -> list[str]:
    out = []
    for a in args:
        if a == "@patch":
            a = str(_write_patch(made, work, "good"))
        elif a == "@patch2":
            shutil.copyfile(made["root"] / "p2.json", work / "second.json")
            shutil.copyfile(made["root"] / "p2.safetensors", work / "second.safetensors")
            a = str(work / "second")
        elif a == "@export":
            shutil.copytree(made["root"] / "export", work / "export")
            a = str(work / "export")
        elif a == "@requests":
            line = {"person": made["@p"], "relation": "pet", "new_object": made["@new"]}
            (work / "r.jsonl").write_text(json.dumps(line) + "\n")
            a = str(work / "r.jsonl")
        elif a == "@forget_texts":
            a = str(EXAMPLES / "forget05_texts.jsonl")
        elif a == "@counterfact":
            a = str(EXAMPLES / "counterfact.json")
        elif a == "@tinymodel":
            a = str(made["root"] / "tiny")
        elif a.startswith("@tmp"):
            a = str(work) + a[len("@tmp") :]
        else:
            a = made.get(a, a)
        out.append(a)
    return out


def _refused(capsys, work: Path, args: list[str], needle: str) -> None:
    before = _tree(work)
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 2, f"exit {code}: {err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("workbench: "), err
    assert "Traceback" not in err and "internal error" not in err, err
    assert needle.replace("@tmp", str(work)) in lines[0], lines[0]
    assert out == "", out
    assert _tree(work) == before, "a file was written or changed"


# --- the catalogue ----------------------------------------------------------------------------


@pytest.mark.parametrize("command", list(MODEL_COMMANDS))
@pytest.mark.parametrize("problem", list(MODEL_PROBLEMS))
def test_a_bad_model_is_refused(capsys, made, case_dir, problem, command):
    args = _fill(made, case_dir, MODEL_COMMANDS[command])
    model = made["models"][problem]
    args = [str(model) if a == "@m" else a for a in args]
    _refused(capsys, case_dir, args, MODEL_PROBLEMS[problem])


@pytest.mark.parametrize("command", list(PATCH_COMMANDS))
@pytest.mark.parametrize("damage", list(PATCH_MUTATIONS))
def test_a_damaged_patch_is_refused(capsys, made, case_dir, damage, command):
    how, needle = PATCH_MUTATIONS[damage]
    bad = _write_patch(made, case_dir, "bad", how)
    args = [str(bad) if a == "@bad" else a for a in _fill(made, case_dir, PATCH_COMMANDS[command])]
    _refused(capsys, case_dir, args, needle)


@pytest.mark.parametrize("name", list(REQUEST_LINES))
def test_a_malformed_requests_file_is_refused(capsys, made, case_dir, name):
    lines, needle = REQUEST_LINES[name]
    text = []
    for line in lines:
        if isinstance(line, dict):
            line = json.dumps({k: made.get(v, v) if isinstance(v, str) else v for k, v in line.items()})
        text.append(line if isinstance(line, bytes) else line.encode())
    (case_dir / "bad.jsonl").write_bytes(b"\n".join(text) + b"\n")
    _refused(capsys, case_dir, ["edit", "memit", "--requests", str(case_dir / "bad.jsonl")], needle)


@pytest.mark.parametrize("name, args, needle", ARGUMENTS, ids=[a[0] for a in ARGUMENTS])
def test_a_bad_argument_is_refused(capsys, made, case_dir, name, args, needle):
    _refused(capsys, case_dir, _fill(made, case_dir, args), needle)


@pytest.mark.parametrize(
    "damage, command",
    [(d, c) for d in EXPORT_MUTATIONS for c in ("audit", "revert") if not (c == "audit" and d in AUDIT_MISMATCHES)],
)
def test_a_broken_export_is_refused(capsys, made, case_dir, damage, command):
    export = Path(_fill(made, case_dir, ["@export"])[0])
    change, needle = EXPORT_MUTATIONS[damage]
    change(export)
    if command == "audit":
        args = ["audit", str(export)]
    else:
        args = [
            "patch",
            "revert",
            *_fill(made, case_dir, ["@patch"]),
            "--model",
            str(export),
            "--out",
            str(case_dir / "o"),
        ]
    _refused(capsys, case_dir, args, needle)


def test_the_catalogue_holds_at_least_150_cases():
    n = (
        len(MODEL_PROBLEMS) * len(MODEL_COMMANDS)
        + len(PATCH_MUTATIONS) * len(PATCH_COMMANDS)
        + len(REQUEST_LINES)
        + len(ARGUMENTS)
        + 2 * len(EXPORT_MUTATIONS)
        - len(AUDIT_MISMATCHES)
    )
    assert n >= 150, n
