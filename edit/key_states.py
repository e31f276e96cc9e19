"""States at an edit prompt's key position, averaged over prefixes: ROME and MEMIT's keys, MEMIT's residuals.

A key k* is a module's input (the MLP output projection's) at the key position of each prefixed
prompt, averaged over the prefixes; MEMIT also reads the residual stream there before and after
each layer's update. A causal model's state at a position does not depend on what follows it,
so each text is cut after its key position, and each pass stops at the module it reads. The
texts are tokenised once per set of requests (:class:`KeyRows`): MEMIT reads them after every
layer. A request's repeated texts (sampled prefixes repeat) run once, weighted by how often
they occur, so the mean over prefixes is unchanged.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from edit.request import Request
from workbench.core.padding import pad_right
from workbench.core.tokens import encode_prompts, subject_span

TokenRole = Literal["subject_last", "last"]


def with_context(context: str, prompt: str) -> str:
    """``prompt`` after ``context`` (one space between; none for the empty context)."""
    return f"{context} {prompt}" if context else prompt


def key_position(tokenizer, text: str, subject: str, role: TokenRole) -> int:
    """Token index of the key: the subject's last token (ROME) or the prompt's last token."""
    return (
        subject_span(tokenizer, text, subject)[1] - 1 if role == "subject_last" else len(tokenizer(text).input_ids) - 1
    )


def distinct(texts: list[tuple[int, str]]) -> tuple[list[tuple[int, str]], list[int]]:
    """Each (request, text) pair once, in first-seen order, and how often it occurred.

    Examples:
        >>> distinct([(0, "a"), (0, "b"), (0, "a"), (1, "a")])
        ([(0, 'a'), (0, 'b'), (1, 'a')], [2, 1, 1])
    """
    seen: dict[tuple[int, str], int] = {}
    for t in texts:
        seen[t] = seen.get(t, 0) + 1
    return list(seen), list(seen.values())


def weighted_mean(
    x: Float[Tensor, " row *d"], owner: Tensor, weight: Float[Tensor, " row"], n: int
) -> Float[Tensor, " n *d"]:
    """Per owner, the mean of its rows, each counted ``weight`` times.

    Examples:
        >>> weighted_mean(torch.tensor([1.0, 4.0, 5.0]), torch.tensor([0, 0, 1]), torch.tensor([2.0, 1.0, 1.0]), 2)
        tensor([2., 5.])
    """
    shape = (-1, *[1] * (x.dim() - 1))
    total = torch.zeros(n, *x.shape[1:], dtype=x.dtype, device=x.device).index_add_(
        0, owner, x * weight.to(x.dtype).reshape(shape)
    )
    count = torch.zeros(n, dtype=x.dtype, device=x.device).index_add_(0, owner, weight.to(x.dtype))
    return total / count.clamp(min=1e-12).reshape(shape)


@dataclass(frozen=True)
class KeyRows:
    """The prefixed prompts of some requests, tokenised and cut after their key position.

    Args:
        ids: Per row, the tokens up to and including the key position.
        owner: Per row, the request it belongs to.
        weight: Per row, how many of its request's texts it stands for.
        n_requests: How many requests.
    """

    ids: list[list[int]]
    owner: list[int]
    weight: list[int]
    n_requests: int

    @staticmethod
    def of(tokenizer, requests: list[Request], role: TokenRole, ctxs: list[str]) -> KeyRows:
        """Every request's prompt after every context.

        Examples:
            >>> import workbench
            >>> from edit.request import world_request
            >>> h = workbench.load("world")
            >>> p = list(h.world.people)[0]
            >>> r = world_request(h.world, p, "pet")
            >>> rows = KeyRows.of(h.tokenizer, [r], "last", ["", "It is well known that"] * 2)
            >>> len(rows.ids), rows.weight
            (2, [2, 2])
        """
        texts, weight = distinct([(b, with_context(c, r.prompt)) for b, r in enumerate(requests) for c in ctxs])
        ids = encode_prompts(tokenizer, [t for _, t in texts])
        if role != "last":
            ids = [
                i[: key_position(tokenizer, t, requests[b].subject, role) + 1]
                for i, (b, t) in zip(ids, texts, strict=True)
            ]
        return KeyRows(ids, [b for b, _ in texts], weight, len(requests))


class _Read(Exception):
    """Raised by the reading hook: the pass has what it came for."""


@torch.no_grad()
def mean_states(
    handle,
    requests: list[Request],
    role: TokenRole,
    ctxs: list[str],
    path: str,
    which: Literal["input", "output"],
    rows: KeyRows | None = None,
) -> Float[Tensor, "request d"]:
    """Per request, a module's input or output at the key position, averaged over the contexts (float64).

    The ROME/MEMIT key k* is ``mean_states(..., sites.key_module_path(layer), "input")``.

    Examples:
        >>> import workbench
        >>> from edit.request import world_request
        >>> h = workbench.load("world")
        >>> r = world_request(h.world, list(h.world.people)[0], "pet")
        >>> k = mean_states(h, [r], "last", ["", "It is well known that"], h.sites.key_module_path(0), "input")
        >>> tuple(k.shape) == (1, h.sites.d_mlp), k.dtype
        (True, torch.float64)

    Args:
        rows: ``KeyRows.of(handle.tokenizer, requests, role, ctxs)``, when it is already at hand.
    """
    rows = rows or KeyRows.of(handle.tokenizer, requests, role, ctxs)
    ids, mask = pad_right(rows.ids, handle.tokenizer.pad_token_id or 0)
    ids, mask = ids.to(handle.device), mask.to(handle.device)
    pos = torch.tensor([len(i) - 1 for i in rows.ids], device=handle.device)
    got: list[Tensor] = []
    now: list[Tensor] = []  # the key positions of the rows in the current pass

    def read(module, args, out=None):
        x = args[0] if which == "input" else (out[0] if isinstance(out, tuple) else out)
        got.append(x[torch.arange(len(now[0]), device=x.device), now[0]].double().cpu())
        raise _Read  # nothing after this module is needed

    module = handle.model.get_submodule(path)
    hook = module.register_forward_pre_hook(read) if which == "input" else module.register_forward_hook(read)
    try:
        for start in range(0, len(rows.ids), 512):
            sl = slice(start, start + 512)
            now[:] = [pos[sl]]
            with contextlib.suppress(_Read):
                handle.model(input_ids=ids[sl], attention_mask=mask[sl])
    finally:
        hook.remove()
    if len(got) != -(-len(rows.ids) // 512):
        raise RuntimeError(f"module {path!r} did not run in the model's forward pass")
    return weighted_mean(
        torch.cat(got), torch.tensor(rows.owner), torch.tensor(rows.weight, dtype=torch.float64), rows.n_requests
    )
