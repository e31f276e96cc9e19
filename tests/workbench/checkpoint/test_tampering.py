"""Property-based tampering: any changed byte, manifest value or patch field is caught or refused.

Hypothesis picks the file, the byte and the value, or the manifest path and what goes there;
the examples are derived from the test's name, so CI sees the same ones every run (the
profiles are in ``tests/conftest.py``; ``HYPOTHESIS_PROFILE=thorough`` searches far wider).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from edit.edit import Delta, Edit, EditError
from edit.patch import load_patch, save_patch
from workbench.checkpoint.audit import AuditError, audit
from workbench.checkpoint.export import export
from workbench.checkpoint.manifest import NAME, manifest_text

MLP = "transformer.h.1.mlp.c_proj.weight"

# Any JSON value: what a hand-edited manifest could hold in place of the real one.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=70),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def made(handle, tmp_path_factory):
    """A patch of the default model and an export of it; the model is left as it was."""
    root = tmp_path_factory.mktemp("tampering")
    g = torch.Generator().manual_seed(1)
    e = Edit(
        "nudge",
        {"note": "x"},
        {MLP: Delta(left=torch.randn(512, 1, generator=g), right=torch.randn(128, 1, generator=g))},
    )
    e.apply(handle.model)
    try:
        save_patch(e, root / "p")
        export(handle, root / "export", edits=[e])
    finally:
        e.revert(handle.model)
    return root


def _paths(value, prefix=()):
    """Every path into a JSON value, leaves and containers alike."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


def _replaced(document, path, value):
    """``document`` with the value at ``path`` replaced (the root itself when ``path`` is empty)."""
    if not path:
        return value
    copy = json.loads(json.dumps(document))
    node = copy
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return copy


def _fresh_copy(src: Path, dst: Path) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    return dst


def _caught(directory: Path) -> bool:
    try:
        return not audit(directory).ok
    except AuditError:
        return True


@given(data=st.data())
def test_any_changed_byte_of_any_exported_file_is_caught(made, tmp_path, data):
    copy = _fresh_copy(made / "export", tmp_path / "copy")
    files = sorted(p for p in copy.rglob("*") if p.is_file())
    target = data.draw(st.sampled_from(files), label="file")
    raw = bytearray(target.read_bytes())
    at = data.draw(st.integers(0, len(raw) - 1), label="byte")
    raw[at] ^= data.draw(st.integers(1, 255), label="xor")
    target.write_bytes(bytes(raw))
    assert _caught(copy), f"{target.name} byte {at} changed and audit passed"


@given(data=st.data())
def test_any_changed_manifest_value_is_caught(made, tmp_path, data):
    copy = _fresh_copy(made / "export", tmp_path / "copy")
    manifest = json.loads((copy / NAME).read_text())
    path = data.draw(st.sampled_from(list(_paths(manifest))), label="path")
    value = data.draw(JSON_VALUES, label="value")
    changed = _replaced(manifest, path, value)
    if changed == manifest:
        return  # drew the value already there
    (copy / NAME).write_text(manifest_text(changed))  # as export writes it: only the content differs
    assert _caught(copy), f"manifest at {path} set to {value!r} and audit passed"


@given(data=st.data())
def test_a_patch_with_any_changed_field_is_refused_or_means_the_same(made, tmp_path, data):
    """A patch either loads to the same tensors and hashes, or is refused in one EditError."""
    original = load_patch(made / "p")
    manifest = json.loads((made / "p.json").read_text())
    path = data.draw(st.sampled_from(list(_paths(manifest))), label="path")
    value = data.draw(JSON_VALUES, label="value")
    (tmp_path / "q.json").write_text(json.dumps(_replaced(manifest, path, value)))
    shutil.copyfile(made / "p.safetensors", tmp_path / "q.safetensors")
    try:
        edit = load_patch(tmp_path / "q")
    except EditError as e:
        assert "\n" not in str(e)
        return
    assert edit.names == original.names
    assert edit.hashes_before == original.hashes_before
    # Without its result hashes a patch still applies to its base only; it just cannot be
    # reverted from the file (revert_patch refuses it).
    assert edit.hashes_after in (original.hashes_after, {})
    for name in edit.names:
        assert torch.equal(edit.deltas[name].tensor(), original.deltas[name].tensor())
