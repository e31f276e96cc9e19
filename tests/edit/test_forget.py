"""forget(): one call gives the edit, the figures before and after, and the retain model's beside them."""

import pytest

from edit.forget import METHODS, forget, method, retain_model_name
from edit.forget_figures import FigureSettings
from edit.forget_request import ForgetError, forget_request

SMALL = FigureSettings(retain_facts=40, neighbour_facts=40, heldout_loss=False)


def test_every_method_is_registered_with_its_editor_and_settings():
    assert set(METHODS) == {
        "rmu",
        "ablate",
        "ga",
        "gradiff",
        "npo",
        "kl",
        "dpo",
        "idk",
        "ssd",
        "erase",
        "sisa",
        "task-vector",
        "whp",
    }
    for name, m in METHODS.items():
        assert callable(m.editor) and isinstance(m.make_settings(), m.settings), name
        field, values = m.strength
        if field:
            assert hasattr(m.make_settings(), field) and len(values) >= 3
    assert method("npo").make_settings().method == "npo"
    with pytest.raises(ForgetError, match="unknown method 'sgd'"):
        method("sgd")


def test_ssd_on_forget01_with_reference(handle):
    res = forget(handle, "forget01", "ssd", figures=SMALL, progress=False)
    try:
        assert res.before["forget"] == 1.0 and res.after["forget"] <= 0.15 and res.after["retain"] >= 0.98
        assert res.reference_model == "world:retain-forget01" and res.reference["forget"] < 0.2
        d = res.to_dict()
        assert d["method"] == "ssd" and d["request"]["people"] == res.request.people and d["seconds"] > 0
        assert "forget01" in repr(res)
    finally:
        res.edit.revert(handle.model)


def test_reference_only_for_whole_splits(handle, world):
    whole = forget_request(world, "forget05")
    assert retain_model_name(handle, whole) == "world:retain-forget05"
    part = forget_request(world, list(whole.forget)[:10])
    assert retain_model_name(handle, part) is None
    assert retain_model_name(handle, forget_request(world, list(world.people)[0])) is None


def test_settings_overrides(handle, world):
    res = forget(
        handle, list(world.people)[40], "ssd", figures=SMALL, reference=False, progress=False, retain_examples=200
    )
    try:
        assert res.edit.settings["retain_examples"] == 200 and res.reference is None
    finally:
        res.edit.revert(handle.model)
