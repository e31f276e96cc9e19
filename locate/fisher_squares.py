"""Squared per-example gradients added into running sums: the two ways :mod:`locate.fisher` takes them.

The diagonal Fisher needs each example's own gradient squared, not the square of a batch
gradient. :func:`add_chunk_squares` takes a chunk of examples at once through ``torch.func``
(``vmap`` of ``grad`` over a functional call of the model): fast on a small model, but the chunk
holds one whole gradient per example. :func:`add_example_squares` runs one plain backward pass
per example and squares each tensor's gradient the moment autograd has accumulated it, then drops
it, so no whole gradient is ever held: on a 124M model that halves the Fisher's peak memory at
the speed of a vmapped chunk of two. Both give the same sums up to float rounding.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import partial

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from workbench.core.examples import Example, pad_examples

Scores = dict[str, Tensor]


@contextmanager
def per_example_mode(model: nn.Module) -> Iterator[None]:
    """The model in eval mode, and vmap's fallback warning silenced, for the duration of a ``with`` block.

    Dropout would make the Fisher random (and vmap refuses random ops). vmap runs the fused
    attention kernels through its per-example fallback, as fast here as eager attention, but warns.

    Examples:
        >>> m = nn.Dropout(0.5)
        >>> with per_example_mode(m):
        ...     m.training
        False
        >>> m.training
        True
    """
    training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="There is a performance drop because we have not yet")
            yield
    finally:
        model.train(training)


def add_chunk_squares(model: nn.Module, theta: Scores, sums: Scores, chunks: Iterable[list[Example]], pad: int) -> None:
    """Add each chunk's squared per-example gradients into ``sums``, the gradients from ``vmap`` of ``grad``.

    Examples:
        >>> from transformers import GPT2Config, GPT2LMHeadModel
        >>> m = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=11)).eval()
        >>> w = "transformer.h.0.mlp.c_fc.weight"
        >>> p = m.get_parameter(w)
        >>> examples = [([1, 2, 3], [2]), ([4, 5], [1])]
        >>> chunked, one_by_one = {w: torch.zeros(8, 32)}, {w: torch.zeros(8, 32)}
        >>> with per_example_mode(m):
        ...     add_chunk_squares(m, {w: p.detach()}, chunked, [examples], pad=0)
        ...     add_example_squares(m, {w: p}, one_by_one, examples)
        >>> torch.allclose(chunked[w], one_by_one[w], rtol=1e-4, atol=1e-10), bool(chunked[w].sum() > 0)
        (True, True)

    Args:
        model: The Hugging Face causal LM.
        theta: Parameter name -> detached tensor: the parameters to differentiate.
        sums: Parameter name -> float32 running sum of the squares, updated in place.
        chunks: Lists of (token ids, scored positions); each list is one vmapped chunk.
        pad: Token id that right-pads a chunk's shorter examples.
    """
    per_example = vmap(grad(partial(_loglik, model)), in_dims=(None, 0, 0))
    device = next(iter(sums.values())).device
    # torch.func's grad ignores an outer no_grad; the outer one keeps the parameters left out of
    # theta (which still require grad) from growing an autograd graph through every gradient.
    with torch.no_grad():
        for chunk in chunks:
            ids, _, scored = pad_examples(chunk, pad)
            grads = per_example(theta, ids.to(device), scored.to(device))
            for n in theta:
                # addcmul over the chunk adds the squares without materialising them (docs/locate.md#fisher-scores);
                # each tensor's gradients go as soon as they are summed, so a chunk's peak is its gradients once.
                g = grads.pop(n)
                for one in g:
                    one = one.float()  # one example at a time: a half-precision chunk is never copied whole
                    sums[n].addcmul_(one, one)
                del g
            del grads


def add_example_squares(
    model: nn.Module, params: dict[str, nn.Parameter], sums: Scores, examples: Iterable[Example]
) -> None:
    """Add each example's squared gradients into ``sums``, from one plain backward pass per example.

    A hook on each parameter squares its gradient into its sum as soon as autograd has
    accumulated it (once, also for a tied tensor used twice) and drops it. Each parameter's own
    ``.grad`` and ``requires_grad`` are put back as they were, whatever happens.

    Examples:
        >>> m = nn.Linear(3, 4)  # any model called as model(input_ids=..., ...).logits
        >>> class LM(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.embed, self.out = nn.Embedding(4, 3), m
        ...     def forward(self, input_ids, attention_mask, use_cache):
        ...         return type("Out", (), {"logits": self.out(self.embed(input_ids))})
        >>> lm = LM()
        >>> sums = {"out.weight": torch.zeros(4, 3)}
        >>> add_example_squares(lm, {"out.weight": m.weight}, sums, [([0, 1, 2], [1, 2])])
        >>> bool(sums["out.weight"].sum() > 0), m.weight.grad is None
        (True, True)

    Args:
        model: The Hugging Face causal LM.
        params: Parameter name -> the model's parameter: the ones to differentiate.
        sums: Parameter name -> float32 running sum of the squares, updated in place.
        examples: (token ids, scored positions) per example.
    """

    def square_into(name: str):
        def hook(p: Tensor) -> None:
            g = p.grad.float()
            sums[name].addcmul_(g, g)
            p.grad = None

        return hook

    device = next(iter(sums.values())).device
    saved = {n: (p.grad, p.requires_grad) for n, p in params.items()}
    hooks = []
    try:
        for n, p in params.items():
            p.grad = None
            p.requires_grad_(True)
            hooks.append(p.register_post_accumulate_grad_hook(square_into(n)))
        inputs = list(params.values())
        for ids, positions in examples:
            ids_t = torch.tensor(ids, device=device)
            scored = torch.zeros(len(ids), device=device)
            scored[positions] = 1.0
            mask = torch.ones(1, len(ids), dtype=torch.long, device=device)
            logits = model(input_ids=ids_t[None], attention_mask=mask, use_cache=False).logits[0]
            _scored_sum(logits, ids_t, scored).backward(inputs=inputs)
    finally:
        for h in hooks:
            h.remove()
        for n, p in params.items():
            p.grad, requires_grad = saved[n]
            p.requires_grad_(requires_grad)


def _loglik(
    model: nn.Module, theta: Scores, ids: Int[Tensor, " seq"], scored: Float[Tensor, " seq"]
) -> Float[Tensor, ""]:
    # An all-ones mask, built from the shape alone, keeps transformers from inspecting the
    # (vmapped) ids for padding; right padding never reaches a scored token under causal attention.
    mask = torch.ones(1, ids.shape[-1], dtype=torch.long, device=ids.device)
    logits = functional_call(model, theta, (ids[None],), {"attention_mask": mask, "use_cache": False}).logits[0]
    return _scored_sum(logits, ids, scored)


def _scored_sum(
    logits: Float[Tensor, "seq vocab"], ids: Int[Tensor, " seq"], scored: Float[Tensor, " seq"]
) -> Float[Tensor, ""]:
    logp = torch.log_softmax(logits[:-1].float(), -1).gather(-1, ids[1:, None])[:, 0]
    return (logp * scored[1:]).sum()


__all__ = ["add_chunk_squares", "add_example_squares", "per_example_mode"]
