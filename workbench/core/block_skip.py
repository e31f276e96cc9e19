"""Run a model from a block on: the blocks before it are not computed, their result is given.

An optimisation that changes the residual stream at block l's output, step after step (a ROME or
MEMIT value), cannot change anything blocks 0..l compute: the model is causal in depth as in
time. Their output is read once; after that each step starts at block l + 1. On a 4-layer model
edited at layer 0 this is a quarter of every step's forward pass; on GPT-2 XL edited at layer 17
of 48, more than a third.

Blocks are found through the site map, so this works on every family it knows. Their output must
be the residual stream itself (a tensor), as in every family listed there from transformers 5 on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from jaxtyping import Float
from torch import Tensor, nn


@contextmanager
def blocks_skipped(
    model: nn.Module, sites, through: int, output: Callable[[], Float[Tensor, "batch seq d_model"]]
) -> Iterator[None]:
    """While active, blocks ``0..through`` do not run and block ``through`` returns ``output()``.

    Earlier blocks pass their input on untouched (it is never read); hooks on the blocks still
    fire, hooks inside them do not. The model is restored on exit, also after an error.

    Examples:
        >>> import torch, workbench
        >>> h = workbench.load("world")
        >>> ids = h.tokenizer("Ann was born in", return_tensors="pt").input_ids
        >>> seen = []
        >>> hook = h.sites.module(h.model, 1, "resid").register_forward_hook(lambda m, a, out: seen.append(out))
        >>> with torch.no_grad():
        ...     full = h.model(ids).logits
        ...     with blocks_skipped(h.model, h.sites, 1, lambda: seen[0]):
        ...         resumed = h.model(ids).logits
        >>> hook.remove()
        >>> torch.allclose(full, resumed, atol=1e-5)
        True

    Args:
        model: A Hugging Face causal LM of a family the site map knows.
        sites: Its :class:`workbench.core.sites.SiteMap`.
        through: The last block not run (negative counts from the end).
        output: Called once per forward pass: block ``through``'s output for that pass's batch.
    """
    through = through + sites.n_layers if through < 0 else through
    blocks = [sites.module(model, i, "resid") for i in range(through + 1)]
    # An instance attribute may already be there (accelerate's offloading wraps forward so).
    saved = [b.__dict__.get("forward") for b in blocks]

    def passthrough(hidden_states, *args, **kwargs):
        return hidden_states

    try:
        for b in blocks[:-1]:
            b.forward = passthrough
        blocks[-1].forward = lambda hidden_states, *args, **kwargs: output()
        yield
    finally:
        for b, f in zip(blocks, saved, strict=True):
            if f is None:
                b.__dict__.pop("forward", None)
            else:
                b.forward = f
