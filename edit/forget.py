"""One call to forget: pick a method, get the Edit and the figures before, after and of the exact answer.

Every unlearning method takes the same :class:`~edit.forget_request.ForgetRequest`, an optional
Location, and its own settings, and returns an applied :class:`~edit.edit.Edit`. :func:`forget`
wraps them: it scores the model before, runs the method, scores it after, and, for a world split
with a shipped retain model (a model trained without the forgotten people, the answer unlearning
should reach), scores that model on the same facts, so every figure has its baseline beside it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from edit.edit import Edit
from edit.forget_erase import EraseSettings, memit_erase
from edit.forget_figures import FigureSettings, forget_figures
from edit.forget_request import ForgetError, ForgetRequest, forget_request
from edit.gradient_unlearn import GradientSettings, gradient_unlearn
from edit.kl_loss import KlSettings, kl_unlearn
from edit.preference_unlearn import PreferenceSettings, preference_pairs, preference_unlearn
from edit.rmu import RmuSettings, rmu
from edit.sae_ablation import AblationSettings, sae_ablate
from edit.sisa import SisaForgetSettings, check_sisa_request, sisa_forget
from edit.ssd import SsdSettings, ssd
from edit.task_vector import TaskVectorSettings, task_vector
from edit.whp import WhpSettings, whp
from locate.location import Location
from workbench.core.handle import load_shared
from workbench.core.world.registry import SHIPPED
from workbench.core.world.sisa_model import SisaEnsemble, reference_of


@dataclass(frozen=True)
class Method:
    """An unlearning method: its editor, its settings class, and what its name fixes and sweeps.

    Examples:
        >>> m = METHODS["npo"]
        >>> m.editor is gradient_unlearn, m.make_settings(floor=0.9).method, m.strength[0]
        (True, 'npo', 'floor')

    Args:
        editor: ``editor(handle, request, location, settings, apply, progress)`` returning an Edit.
        settings: Its settings dataclass.
        fixed: Settings fields this method name fixes (the gradient methods share one editor).
        strength: The settings field a strength sweep varies, and the values it takes (weakest first).
        summary: One line for help texts.
        check: ``check(handle, request)`` refuses, before any scoring, data or a model the
            method cannot take (a :class:`ForgetError`); None: the editor's own checks suffice.
    """

    editor: Callable[..., Edit]
    settings: type
    fixed: dict = field(default_factory=dict)
    strength: tuple[str, tuple] = ("", ())
    summary: str = ""
    check: Callable[[Any, ForgetRequest], Any] | None = None

    def make_settings(self, **overrides) -> Any:
        return self.settings(**{**self.fixed, **overrides})


METHODS: dict[str, Method] = {
    "rmu": Method(
        rmu,
        RmuSettings,
        strength=("steering_coefficient", (0.25, 0.5, 1.0, 2.0, 4.0)),
        summary="Representation misdirection: push forget states at one layer towards a random direction",
    ),
    "ablate": Method(
        sae_ablate,
        AblationSettings,
        strength=("retain_penalty", (0.02, 0.015, 0.01, 0.005, 0.0)),
        summary="Ablate the SAE features that carry the forgotten people, baked into the weights",
    ),
    **{
        name: Method(
            gradient_unlearn,
            GradientSettings,
            {"method": name},
            strength=("floor", (0.99, 0.98, 0.95, 0.9, 0.8)),
            summary=text,
        )
        for name, text in (
            ("ga", "Gradient ascent on the forget set, inside a Fisher mask"),
            ("gradiff", "Gradient difference: ascent on forget, descent on retain, in a Fisher mask"),
            ("npo", "Negative preference optimisation with a retain term, in a Fisher mask"),
        )
    },
    "kl": Method(
        kl_unlearn,
        KlSettings,
        strength=("floor", (0.99, 0.98, 0.95, 0.9, 0.8)),
        summary="KL minimisation: ascent on forget, retain predictions held to the original's, in a Fisher mask",
    ),
    **{
        name: Method(
            preference_unlearn,
            PreferenceSettings,
            {"method": name},
            strength=("floor", (0.99, 0.98, 0.95, 0.9, 0.8)),
            summary=text,
            check=partial(preference_pairs, method=name),
        )
        for name, text in (
            ("dpo", "DPO preferring a wrong answer to the true one, with a retain term, in a Fisher mask"),
            ("idk", "DPO preferring a refusal to the true answer (the unknown token on the world), in a Fisher mask"),
        )
    },
    "ssd": Method(
        ssd,
        SsdSettings,
        strength=("alpha", (30000.0, 10000.0, 3000.0, 1000.0, 300.0, 100.0)),
        summary="Selective Synaptic Dampening: shrink weights far more important to the forget set (no gradients)",
    ),
    "erase": Method(
        memit_erase,
        EraseSettings,
        strength=("mom2_weight", (1000.0, 300.0, 100.0, 30.0, 10.0, 3.0)),
        summary="MEMIT erase of every forgotten fact at once (the editing baseline)",
    ),
    "task-vector": Method(
        task_vector,
        TaskVectorSettings,
        strength=("alpha", (0.5, 1.0, 2.0, 4.0, 8.0)),
        summary="Task arithmetic: fine-tune on the forget set in a Fisher mask, subtract alpha x the change",
    ),
    "whp": Method(
        whp,
        WhpSettings,
        # The retain floor rarely binds here: the generic labels keep retained facts, so the run
        # ends on its step budget, and how far it goes is set by the steps towards the labels.
        strength=("steps", (5, 10, 20, 50, 150)),
        summary="Who's Harry Potter: fine-tune towards generic predictions (reinforced model, generic names)",
    ),
    "sisa": Method(
        sisa_forget,
        SisaForgetSettings,
        summary="SISA: retrain only the shards of a SISA ensemble that held the forgotten people (exact)",
        check=check_sisa_request,
    ),
}


class ForgetResult:
    """An unlearning edit with its figures: before, after, and the retain model's (where one exists).

    Attributes:
        request: The :class:`ForgetRequest`.
        method: The method's name.
        edit: The applied :class:`~edit.edit.Edit` (``edit.revert(model)`` undoes it bitwise).
        before, after: :func:`~edit.forget_figures.forget_figures` of the model before and after.
        reference: The same figures of the retain model, or None where the world has none.
        reference_model: That model's name.
        seconds: Wall time of the method alone.
    """

    def __init__(
        self,
        request: ForgetRequest,
        method: str,
        edit: Edit,
        before: dict,
        after: dict,
        reference: dict | None,
        reference_model: str | None,
        seconds: float,
    ):
        self.request, self.method, self.edit = request, method, edit
        self.before, self.after, self.reference = before, after, reference
        self.reference_model, self.seconds = reference_model, seconds

    def to_dict(self) -> dict:
        return {
            "request": self.request.to_dict(),
            "method": self.method,
            "seconds": self.seconds,
            "before": self.before,
            "after": self.after,
            "reference": self.reference,
            "reference_model": self.reference_model,
            "tensors": self.edit.names,
            "settings": self.edit.settings,
            "edit_metrics": self.edit.metrics,
        }

    def __repr__(self) -> str:
        keys = ("forget", "retain", "heldout_loss")
        return (
            f"ForgetResult({self.method} on {self.request.name!r}: "
            + ", ".join(
                f"{k} {self.before.get(k, float('nan')):.3f} -> {self.after.get(k, float('nan')):.3f}" for k in keys
            )
            + f", {self.seconds:.1f}s)"
        )


def retain_model_name(handle, request: ForgetRequest) -> str | None:
    """The model trained without the request's people: for a world split the shipped retain model.

    For a SISA ensemble, an ensemble of its plan trained without exactly those people (beside
    it or in the cache) comes first: it is what forgetting them must give, where one model is
    not like with like.
    """
    world = handle.world
    if world is None:
        return None
    ensemble = _reference_ensemble(handle, request)
    if ensemble is not None:
        return ensemble
    if request.name not in world.splits or f"retain-{request.name}" not in SHIPPED:
        return None
    split = world.splits[request.name]
    # Only the split as defined has an exact answer: a narrower forget set or another retain set has not.
    if set(request.forget) != set(world.facts(split.forget)):
        return None
    return f"world:retain-{request.name}"


def _reference_ensemble(handle, request: ForgetRequest) -> str | None:
    if not isinstance(handle.model, SisaEnsemble) or not request.forget:
        return None
    people = set(request.people)
    if set(request.forget) != set(handle.world.facts(sorted(people))):
        return None  # only whole people have an ensemble trained without them
    return reference_of(handle.model, people, exact=True)


def reference_figures(
    handle, request: ForgetRequest, figures: FigureSettings | None = None
) -> tuple[dict | None, str | None]:
    """Figures of the retain model on the same facts: what exact unlearning gives."""
    name = retain_model_name(handle, request)
    if name is None:
        return None, None
    return forget_figures(load_shared(name), request, figures), name


def method(name: str) -> Method:
    """The registered method ``name``; a one-line error naming the choices otherwise."""
    if name not in METHODS:
        raise ForgetError(f"unknown method {name!r}: choose from {', '.join(METHODS)}")
    return METHODS[name]


def forget(
    handle,
    what: str | list | ForgetRequest,
    method_name: str = "ssd",
    location: Location | None = None,
    settings: Any = None,
    figures: FigureSettings | None = None,
    reference: bool = True,
    progress: bool = True,
    **overrides,
) -> ForgetResult:
    """Forget a person, a split or chosen facts with one method; the edit stays applied.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world", device="cpu")
        >>> figures = FigureSettings(retain_facts=30, neighbour_facts=30)
        >>> res = forget(h, "forget01", "ssd", figures=figures, progress=False)
        >>> res.before["forget"], res.after["forget"] < 0.2, res.after["retain"] > 0.95, res.reference_model
        (1.0, True, True, 'world:retain-forget01')
        >>> _ = res.edit.revert(h.model)

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle`.
        what: A :class:`ForgetRequest`, or anything :func:`forget_request` takes (a split, a
            person, a list of people or facts).
        method_name: One of :data:`METHODS`.
        location: Where the method may act (each method's default locates for itself).
        settings: The method's settings object; or pass its fields as keyword ``overrides``.
        figures: How much to score (:class:`FigureSettings`).
        reference: Also score the split's retain model, where one ships.

    Raises:
        ForgetError: an unknown method, person or split, an empty or overlapping request.
    """
    m = method(method_name)
    request = what if isinstance(what, ForgetRequest) else forget_request(_world(handle), what)
    if settings is None:
        settings = m.make_settings(**overrides)
    elif overrides:
        settings = replace(settings, **overrides)
    if m.check is not None:  # minutes of scoring should not come before a refusal
        m.check(handle, request)
    before = forget_figures(handle, request, figures)
    t0 = time.perf_counter()
    edit = m.editor(handle, request, location=location, settings=settings, apply=True, progress=progress)
    seconds = time.perf_counter() - t0
    try:
        after = forget_figures(handle, request, figures)
    except BaseException:
        edit.revert(handle.model)
        raise
    ref, ref_name = reference_figures(handle, request, figures) if reference else (None, None)
    return ForgetResult(request, method_name, edit, before, after, ref, ref_name, seconds)


def _world(handle):
    if handle.world is None:
        raise ForgetError(f"model {handle.name!r} has no fact world: pass a ForgetRequest of texts")
    return handle.world


__all__ = ["METHODS", "ForgetResult", "Method", "forget", "method", "reference_figures", "retain_model_name"]
