"""A strength sweep: each unlearning method at each value of its strength setting, beside the retain model.

Every method of :data:`edit.forget.METHODS` names one settings field that sets how hard it
pushes and the values to try (weakest first). :func:`strength_sweep` makes the edit at each
value on the unedited model, scores it with :func:`edit.forget_figures.forget_figures`, and
reverts it; the retain model (trained without the forgotten people) is scored on the same
facts. A :class:`Sweep` can also be read back from the committed benchmark,
``benchmarks/results/unlearning.json`` (forget05, every method), with :func:`load_sweep`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edit.forget import METHODS, method, reference_figures
from edit.forget_figures import FigureSettings, forget_figures
from edit.forget_request import ForgetRequest, forget_request


@dataclass
class Sweep:
    """Forget and retain figures of each method at each strength, with the two baselines.

    Examples:
        >>> s = Sweep("forget05", [{"method": "ssd", "strength": {"alpha": 10.0}, "forget": 0.1, "retain": 1.0}])
        >>> s.methods(), s.values("ssd"), s.setting("ssd")
        (['ssd'], [10.0], 'alpha')

    Args:
        split: What was forgotten (a split or a person).
        rows: One per (method, value): method, strength ({field: value}), the figures, seconds.
        reference: The retain model's figures on the same facts (None where none ships).
        original: The unedited model's figures.
        reference_model: The retain model's name.
    """

    split: str
    rows: list[dict] = field(default_factory=list)
    reference: dict | None = None
    original: dict | None = None
    reference_model: str | None = None

    def methods(self) -> list[str]:
        """The methods swept, in the order they were run."""
        return list(dict.fromkeys(r["method"] for r in self.rows))

    def points(self, name: str) -> list[dict]:
        """One method's rows, weakest first."""
        return [r for r in self.rows if r["method"] == name]

    def setting(self, name: str) -> str:
        """The settings field swept for a method."""
        return next(iter(self.points(name)[0]["strength"]))

    def values(self, name: str) -> list:
        """The strength values swept for a method, weakest first."""
        return [next(iter(r["strength"].values())) for r in self.points(name)]

    def to_dict(self) -> dict:
        """JSON-able; :func:`load_sweep` reads it back."""
        return asdict(self)


def load_sweep(path: str | Path) -> Sweep:
    """The sweep of ``benchmarks/unlearning.py`` from its JSON results (or a saved :meth:`Sweep.to_dict`).

    Examples:
        >>> s = load_sweep(Path(__file__).parents[1] / "benchmarks" / "results" / "unlearning.json")
        >>> s.split, s.reference_model, "ssd" in s.methods()
        ('forget05', 'world:retain-forget05', True)
    """
    data = json.loads(Path(path).read_text())
    if "sweep" not in data:
        return Sweep(**data)
    sweep = data["sweep"]
    original = next((b["original"] for b in data.get("table", []) if b["split"] == sweep["split"]), None)
    return Sweep(sweep["split"], sweep["rows"], sweep.get("retain_model"), original, f"world:retain-{sweep['split']}")


def strength_sweep(
    handle,
    what: str | list | ForgetRequest,
    methods: list[str] | None = None,
    values: dict[str, tuple] | None = None,
    figures: FigureSettings | None = None,
    reference: bool = True,
    fixed: dict[str, dict] | None = None,
) -> Sweep:
    """Run each method at each strength value on ``handle`` (reverting after each) and score it.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world", device="cpu")
        >>> fig = FigureSettings(retain_facts=20, neighbour_facts=20, heldout_loss=False)
        >>> s = strength_sweep(h, "forget01", ["ssd"], {"ssd": (3000.0,)}, fig, fixed={"ssd": {"retain_examples": 200}})
        >>> s.values("ssd"), s.points("ssd")[0]["forget"] < s.original["forget"], s.reference_model
        ([3000.0], True, 'world:retain-forget01')

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle` with a world; left as it was.
        what: A split, a person, people or facts (:func:`edit.forget_request.forget_request`), or a request.
        methods: Names in :data:`edit.forget.METHODS`; default all.
        values: Method -> strength values, instead of the registry's.
        figures: How much to score per point (the fewer facts, the faster).
        reference: Score the split's retain model too, where one ships.
        fixed: Method -> settings fields held at every point (fewer retain examples, say, for a quick look).
    """
    request = what if isinstance(what, ForgetRequest) else forget_request(handle.world, what)
    figures = figures or FigureSettings()
    ref, ref_name = reference_figures(handle, request, figures) if reference else (None, None)
    out = Sweep(request.name, [], ref, forget_figures(handle, request, figures), ref_name)
    for name in methods or list(METHODS):
        m = method(name)
        key, default = m.strength
        for v in (values or {}).get(name, default):
            t0 = time.perf_counter()
            settings = m.make_settings(**{**(fixed or {}).get(name, {}), key: v})
            e = m.editor(handle, request, settings=settings, apply=True, progress=False)
            seconds = time.perf_counter() - t0
            try:
                scores = forget_figures(handle, request, figures)
            finally:
                e.revert(handle.model)
            out.rows.append({"method": name, "strength": {key: v}, "seconds": round(seconds, 2), **scores})
    return out


__all__ = ["Sweep", "load_sweep", "strength_sweep"]
