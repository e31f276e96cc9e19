"""Checks the masked unlearning editors share: the person forgotten, only masked elements moved."""

from edit.forget_request import subsample
from workbench.core.hashing import tensor_hash


def hashes(model) -> dict[str, str]:
    """A hash of every parameter, to compare a model with itself after an edit or a revert."""
    return {n: tensor_hash(p) for n, p in model.named_parameters()}


def assert_forgotten_inside_the_mask(handle, request, e, before: dict, originals: dict) -> None:
    """Forget accuracy fell, retained facts held, and no element outside the Fisher mask moved."""
    assert handle.score(list(request.forget)).accuracy < 0.8
    assert handle.score(subsample(request.retain, 40, 1)).accuracy >= 0.85
    mask = e.location.parameter_mask(handle.model)
    assert e.location.method == "fisher" and set(e.names) == {n for n, m in mask.items() if m.any()}
    changed = {n for n, h in hashes(handle.model).items() if h != before[n]}
    assert changed and changed <= set(e.names)
    for n in e.names:
        moved = handle.model.get_parameter(n).detach() != originals[n]
        assert not (moved & ~mask[n]).any()
