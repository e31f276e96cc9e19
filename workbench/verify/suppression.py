"""A known-bad unlearning to calibrate the checks against: suppress the output, keep the knowledge.

Output suppression makes a model stop saying the forgotten objects while everything that
computes them stays in place; surface accuracy alone cannot tell it from real forgetting.
This builds it on purpose. Whenever a prompt names one of the given people, the residual
stream after one block (by default the last) is pushed, from the name's last token on, against
the directions that raise the person's objects' first tokens at the output:

    h <- h - strength * ||h|| * d_person,   d_person = unit( sum over the person's objects o of unit(u_o) )

with u_o = gamma * W_U[o] (the final norm's gain times the unembedding row), centred when the
final norm is a LayerNorm, which removes the mean. Nothing before that block changes, so a
probe or a logit lens at earlier layers still finds the objects, and a verification report
that only scores the output is fooled. It is a pair of forward hooks on the model, never a
weight change; remove them with :meth:`OutputSuppression.remove` or use it as a context manager.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor, nn

from edit.edit_request import Forget
from workbench.core.prefix_cache import PrefixCacheError
from workbench.core.tokens import encode_object, subject_span
from workbench.core.world.facts import Fact


@dataclass(frozen=True)
class SuppressionSettings:
    """How hard and where the output is suppressed.

    Examples:
        >>> SuppressionSettings().strength, SuppressionSettings().layer
        (4.0, -1)

    Args:
        strength: Norm of the push, in multiples of the residual's own norm at that position;
            on forget05, 4 leaves almost none of the forgotten facts' prompts right while every
            retained fact stays right (docs/verify.md#what-each-check-reads-on-the-known-answers).
        layer: The block whose output is pushed (negative counts from the end).
    """

    strength: float = 4.0
    layer: int = -1


def object_direction(handle, tokens: Sequence[int]) -> Float[Tensor, " d_model"]:
    """Unit vector in the residual stream that raises the given output tokens' logits together.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> float(object_direction(h, [7, 8]).norm())
        1.0
    """
    norm = handle.model.get_submodule(handle.sites.final_norm_path)
    w_u = handle.model.get_submodule(handle.sites.unembed_path).weight.detach().float()
    gain = norm.weight.detach().float() if getattr(norm, "weight", None) is not None else torch.ones(w_u.shape[1])
    total = torch.zeros(w_u.shape[1], device=w_u.device)
    for t in tokens:
        u = gain * w_u[t]
        if isinstance(norm, nn.LayerNorm):
            u = u - u.mean()  # a LayerNorm subtracts the mean, so that component would be lost
        total += u / u.norm()
    return (total / total.norm()).cpu()


class OutputSuppression:
    """Forward hooks on a model that suppress some people's objects at the output.

    Build it with :func:`suppress_output`.
    """

    def __init__(self, handle, names: dict[tuple[int, ...], Tensor], settings: SuppressionSettings):
        self.settings = settings
        self._push: Tensor | None = None
        dev = handle.device
        self._dirs = {k: v.to(dev) for k, v in names.items()}
        block = handle.sites.module(handle.model, settings.layer, "resid")
        self._hooks = [
            handle.model.register_forward_pre_hook(self._read_ids, with_kwargs=True),
            block.register_forward_hook(self._push_down),
        ]

    def _read_ids(self, module, args, kwargs):
        past = kwargs.get("past_key_values")
        if past is not None and past.get_seq_length() > 0:
            # Only the new tokens arrive: the name, read earlier, is not among them.
            raise PrefixCacheError("an output suppression reads the whole prompt; run whole sequences")
        ids = kwargs.get("input_ids", args[0] if args else None)
        self._push = None if ids is None else self._directions(ids)

    def _directions(self, ids: Tensor) -> Tensor | None:
        push = None
        rows = ids.tolist()
        for b, row in enumerate(rows):
            for name, d in self._dirs.items():
                k = len(name)
                ends = [i + k - 1 for i in range(len(row) - k + 1) if tuple(row[i : i + k]) == name]
                if ends:
                    if push is None:
                        push = torch.zeros(*ids.shape, d.shape[0], device=d.device)
                    # Causal: from the name's last token on, never before the name is read.
                    push[b, ends[0] :] += d
        return push

    def _push_down(self, module, args, output):
        if self._push is None:
            return None
        h = output[0] if isinstance(output, tuple) else output
        push = self._push[:, : h.shape[1]].to(h.dtype)
        h = h - self.settings.strength * h.norm(dim=-1, keepdim=True) * push
        return (h, *output[1:]) if isinstance(output, tuple) else h

    def remove(self) -> None:
        """Take the hooks off the model."""
        for hk in self._hooks:
            hk.remove()
        self._hooks = []

    def __enter__(self) -> OutputSuppression:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def suppress_output(handle, facts: Sequence[Fact], settings: SuppressionSettings | None = None) -> OutputSuppression:
    """Hook ``handle.model`` so that prompts naming the facts' people stop producing their objects.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> facts = h.world.facts(list(h.world.people)[:1])
        >>> with suppress_output(h, facts):
        ...     h.score(facts).accuracy
        0.0
        >>> h.score(facts).accuracy
        1.0

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle` with a world; its model gets two hooks.
        facts: World facts; each of their people has all of these facts' objects suppressed.
        settings: :class:`SuppressionSettings`.
    """
    s = settings or SuppressionSettings()
    world = handle.world
    if world is None:
        raise ValueError(f"model {handle.name!r} has no fact world to phrase facts with")
    tokens: dict[str, list[int]] = {}
    names: dict[str, tuple[int, ...]] = {}
    for f in facts:
        prompt = world.phrasings(f.relation)[0].prompt(f.subject)
        tokens.setdefault(f.subject, []).append(encode_object(handle.tokenizer, prompt, f.object)[0])
        ids = handle.tokenizer(prompt).input_ids
        a, b = subject_span(handle.tokenizer, prompt, f.subject)
        names[f.subject] = tuple(ids[a:b])
    directions = {names[p]: object_direction(handle, t) for p, t in tokens.items()}
    return OutputSuppression(handle, directions, s)


class ConstructedSuppression:
    """The output suppression as something a verification report can switch on and off like an Edit.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> facts = h.world.facts(list(h.world.people)[:1])
        >>> s = ConstructedSuppression(h, facts)
        >>> with s.applied_to(h.model):
        ...     h.score(facts).accuracy
        0.0
        >>> s.applied, h.score(facts).accuracy
        (False, 1.0)
    """

    method = "constructed suppression"

    def __init__(self, handle, facts: Sequence[Fact], settings: SuppressionSettings | None = None):
        self.handle, self.facts, self.settings = handle, list(facts), settings or SuppressionSettings()
        self.request = Forget(
            "constructed output suppression", facts=tuple((f.subject, f.relation) for f in self.facts)
        )
        self.applied = False

    @contextmanager
    def applied_to(self, model) -> Iterator:
        if model is not self.handle.model:
            raise ValueError("the suppression was built for another model")
        hooks = suppress_output(self.handle, self.facts, self.settings)
        self.applied = True
        try:
            yield model
        finally:
            hooks.remove()
            self.applied = False


__all__ = ["ConstructedSuppression", "OutputSuppression", "SuppressionSettings", "object_direction", "suppress_output"]
