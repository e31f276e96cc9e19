"""The shipping commands: export, patch show/apply/revert, audit; exit codes and one-line errors."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from edit.edit import Delta, Edit
from edit.patch import save_patch
from workbench.cli import main
from workbench.core.world.registry import resolve_world_model

MLP = "transformer.h.1.mlp.c_proj.weight"


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def patches(handle, tmp_path_factory):
    """Two rank-one patches of the default model, the second made on top of the first."""
    d = tmp_path_factory.mktemp("patches")
    g = torch.Generator().manual_seed(0)
    edits = [
        Edit(
            f"nudge{i}",
            {"note": f"nudge {i}"},
            {MLP: Delta(left=torch.randn(512, 1, generator=g) * 0.2, right=torch.randn(128, 1, generator=g))},
        )
        for i in (1, 2)
    ]
    for i, e in enumerate(edits):
        e.apply(handle.model)
        save_patch(e, d / f"p{i + 1}")
    for e in reversed(edits):
        e.revert(handle.model)
    return d / "p1", d / "p2"


def test_export_then_audit_and_a_tampered_tensor(capsys, patches, tmp_path):
    code, out, _ = run(
        capsys, "export", "--patch", patches[0], "--patch", patches[1], "--out", tmp_path / "e", "--json"
    )
    assert code == 0
    o = json.loads(out)
    assert [e["method"] for e in o["edits"]] == ["nudge1", "nudge2"] and o["tensors"] == 52
    assert {"model.safetensors", "edit_manifest.json", "README.md", "world.json"} <= set(o["files"])
    code, out, _ = run(capsys, "audit", tmp_path / "e", "--json")
    assert code == 0 and json.loads(out)["ok"] and json.loads(out)["chain_head"] == o["chain_head"]
    weights = load_file(tmp_path / "e" / "model.safetensors")
    weights["transformer.wpe.weight"][3, 4] += 1e-3
    save_file(weights, tmp_path / "e" / "model.safetensors", metadata={"format": "pt"})
    code, out, _ = run(capsys, "audit", tmp_path / "e")
    lines = out.strip().splitlines()
    assert code == 1 and lines[0].endswith("2 mismatch(es)"), out
    assert lines[1].startswith("tensor transformer.wpe.weight: sha256 ")
    assert lines[2] == "file model.safetensors: sha256 differs from the manifest" and len(lines) == 3


def test_patch_show(capsys, patches):
    code, out, _ = run(capsys, "patch", "show", patches[0], "--json")
    assert code == 0
    o = json.loads(out)
    assert o["method"] == "nudge1" and o["revertible_from_file"]
    (t,) = o["tensors"]
    assert t["name"] == MLP and t["shape"] == [512, 128] and t["rank"] == 1
    assert t["delta_bytes"] == (512 + 128) * 4 and t["restore_bytes"] < 512 * 128
    code, out, _ = run(capsys, "patch", "show", f"{patches[0]}.json")
    assert code == 0 and "rank 1" in out and "revertible from the file alone: yes" in out


def test_patch_apply_then_revert_is_bitwise_the_base(capsys, patches, tmp_path):
    code, _, err = run(capsys, "patch", "apply", *patches, "--out", tmp_path / "a")
    assert code == 0, err
    assert not torch.equal(
        load_file(tmp_path / "a" / "model.safetensors")[MLP],
        load_file(resolve_world_model("world") / "model.safetensors")[MLP],
    )
    code, out, err = run(
        capsys, "patch", "revert", *patches, "--model", tmp_path / "a", "--out", tmp_path / "r", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["reverted"] == [str(patches[1]), str(patches[0])]
    base = load_file(resolve_world_model("world") / "model.safetensors")
    back = load_file(tmp_path / "r" / "model.safetensors")
    assert base.keys() == back.keys() and all(torch.equal(base[k], back[k]) for k in base)
    assert run(capsys, "audit", tmp_path / "r")[0] == 0
    code, _, err = run(capsys, "patch", "revert", patches[0], "--model", tmp_path / "a", "--out", tmp_path / "r2")
    assert code == 2 and "is not what this nudge1 patch produced" in err and not (tmp_path / "r2").exists()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["export", "--patch", "@p1", "--out", "@exists"], "already exists; pass overwrite=True (--overwrite)"),
        (["export", "--patch", "@p2", "--out", "@new"], "differs from the weights this nudge2 edit was made on"),
        (["export", "--patch", "@p1", "--out", "@new", "--model", "world:retain-forget05"], "differs from the weights"),
        (["export", "--out", "@new"], "give at least one patch file"),
        (["export", "--patch", "/no/such.patch", "--out", "@new"], "no patch at /no/such.patch"),
        (["patch", "show", "/no/such.patch"], "no patch at /no/such.patch"),
        (["audit", "@exists"], "is not an export (no edit_manifest.json)"),
        (["audit", "/no/such/dir"], "no such directory: /no/such/dir"),
    ],
)
def test_bad_input_is_one_line(capsys, patches, tmp_path, args, needle):
    (tmp_path / "exists").mkdir()
    subs = {"@p1": patches[0], "@p2": patches[1], "@exists": tmp_path / "exists", "@new": tmp_path / "new"}
    code, out, err = run(capsys, *[subs.get(a, a) for a in args], "--json")
    assert code == 2, err
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert needle in json.loads(out)["error"]
    assert not (tmp_path / "new").exists()


def test_overwrite_replaces_an_earlier_export(capsys, patches, tmp_path):
    assert run(capsys, "patch", "apply", patches[0], "--out", tmp_path / "x")[0] == 0
    code, out, _ = run(
        capsys, "export", "--patch", patches[0], "--patch", patches[1], "--out", tmp_path / "x", "--overwrite", "--json"
    )
    assert code == 0 and len(json.loads(out)["edits"]) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["x"]


def test_verify_needs_patches_that_name_world_facts(capsys, patches, tmp_path):
    code, _, err = run(capsys, "export", "--patch", patches[0], "--out", tmp_path / "v", "--verify")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--verify:" in err and "world facts" in err
    assert not (tmp_path / "v").exists()


def test_a_patch_with_its_base_hashes_removed_applies_to_no_model(capsys, patches, tmp_path):
    # Emptied, it would have skipped the base check and applied to another model.
    manifest = json.loads(patches[0].with_name("p1.json").read_text())
    manifest["hashes_before"] = {}
    (tmp_path / "p.json").write_text(json.dumps(manifest))
    (tmp_path / "p.safetensors").write_bytes(patches[0].with_name("p1.safetensors").read_bytes())
    code, out, err = run(
        capsys, "patch", "apply", tmp_path / "p", "-m", "world:retain-forget05", "--out", tmp_path / "o"
    )
    assert code == 2 and "names no base hash" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_revert_and_apply_refuse_an_export_that_fails_its_audit(capsys, patches, tmp_path):
    code, _, err = run(capsys, "patch", "apply", patches[0], "--out", tmp_path / "a")
    assert code == 0, err
    weights = load_file(tmp_path / "a" / "model.safetensors")
    weights["transformer.wpe.weight"][3, 4] += 1e-3  # a flipped value the revert would carry along
    save_file(weights, tmp_path / "a" / "model.safetensors", metadata={"format": "pt"})
    for args in (
        ["patch", "revert", patches[0], "--model", tmp_path / "a", "--out", tmp_path / "r"],
        ["patch", "apply", patches[1], "--model", tmp_path / "a", "--out", tmp_path / "r"],
    ):
        code, _, err = run(capsys, *args)
        assert code == 2 and "fails its audit" in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "r").exists()
