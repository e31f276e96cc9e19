"""The figures a person deciding whether to ship an unlearning edit needs, in one call.

Accuracy among the relation's candidates on the forget facts (trained and held-out
phrasings), on the retain facts, and on neighbours (retained facts that share a forgotten
fact's object: the first to suffer from a method that erases the object instead of the
person's link to it), the mean probability left on the forgotten objects, and the held-out
loss on the world corpus. For a request made of texts the losses on the forget and retain
texts stand in for accuracies.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from edit.forget_request import ForgetRequest, subsample
from workbench.core import metrics


@dataclass(frozen=True)
class FigureSettings:
    """How much of each set to score.

    Examples:
        >>> FigureSettings().retain_facts
        300

    Args:
        retain_facts: Retained facts scored (each in all its trained phrasings), drawn with
            ``seed``; None scores them all (1,710 facts for forget05: about 20 s on 2 cores).
        neighbour_facts: Neighbour facts scored, drawn the same way; None: all.
        heldout_loss: Also measure the held-out loss on the world corpus (about 1.5 s).
        seed: Seed of the draws, fixed so that before and after score the same facts.
    """

    retain_facts: int | None = 300
    neighbour_facts: int | None = 300
    heldout_loss: bool = True
    seed: int = 0


def _text_loss(handle, texts) -> float:
    return metrics.heldout_loss(handle.model, handle.tokenizer, list(texts))


@torch.no_grad()
def forget_figures(handle, request: ForgetRequest, settings: FigureSettings | None = None) -> dict:
    """Forget, retain and neighbour accuracy, probability left on forgotten objects, held-out loss.

    Examples:
        >>> import workbench
        >>> from edit.forget_request import forget_request
        >>> h = workbench.load("world")
        >>> r = forget_request(h.world, "forget01")
        >>> f = forget_figures(h, r, FigureSettings(retain_facts=30, neighbour_facts=30, heldout_loss=False))
        >>> f["forget"], f["forget_heldout"], f["retain"], f["neighbours"]
        (1.0, 1.0, 1.0, 1.0)

    Returns:
        A JSON-able dict; accuracies are among each relation's candidates, per prompt.
    """
    s = settings or FigureSettings()
    out: dict = {}
    if request.forget:
        world = handle.world
        if world is None:
            raise ValueError(f"model {handle.name!r} has no fact world to score facts in")
        trained = handle.score(list(request.forget))
        held = handle.score(list(request.forget), held_out=True)
        out.update(
            forget=trained.accuracy,
            forget_heldout=held.accuracy,
            forget_prob=float(torch.cat([trained.prob, held.prob]).mean()),
        )
        if request.retain:
            out["retain"] = handle.score(subsample(request.retain, s.retain_facts, s.seed)).accuracy
        neighbours = request.neighbours(world)
        if neighbours:
            out["neighbours"] = handle.score(subsample(neighbours, s.neighbour_facts, s.seed)).accuracy
    if request.forget_documents:
        out["forget_text_loss"] = _text_loss(handle, request.forget_documents)
    if request.retain_documents:
        out["retain_text_loss"] = _text_loss(handle, subsample(request.retain_documents, s.retain_facts, s.seed))
    if s.heldout_loss and handle.world is not None:
        out["heldout_loss"] = handle.heldout_loss()
    return out


__all__ = ["FigureSettings", "forget_figures"]
