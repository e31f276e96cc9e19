"""Run shared prefixes once: left-padded prompts' keys and values, reused by every continuation.

Scoring every candidate object after a prompt, or optimising a value at one position step after
step, runs the same prefix tokens again and again. A causal model's state over a prefix does not
depend on what follows it, so the prefix is run once, its keys and values are kept, and each
continuation is run against them alone. Prefixes are left-padded to one width so that every
row's continuation starts in the same column; position ids say where each token really is
(rotary families need them right).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from workbench.core.padding import length_buckets, pad_left


class PrefixCacheError(RuntimeError):
    """The model did not fill a key-value cache (it does not support ``use_cache``)."""


@dataclass
class Prefixes:
    """Keys and values of left-padded prefixes, and the logits after each.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> ids = [h.tokenizer(t).input_ids for t in ["Ann was born", "It is well known that Ann"]]
        >>> pre = Prefixes.run(h.model, ids, h.tokenizer.pad_token_id)
        >>> out = pre.extend(h.model, torch.tensor([0, 1, 1]), torch.tensor([[9], [9], [3]]))
        >>> tuple(out.logits.shape[:2]), tuple(pre.length.tolist())
        ((3, 1), (4, 7))

    Args:
        past: Per layer, keys and values over the prefixes [row, head, width, d_head].
        mask: Attention mask of the left-padded prefixes.
        length: Real tokens per prefix.
        last_logits: The next-token logits after each prefix's last token.
    """

    past: list[tuple[Tensor, Tensor]]
    mask: Int[Tensor, "row width"]
    length: Int[Tensor, " row"]
    last_logits: Float[Tensor, "row vocab"]

    @staticmethod
    @torch.no_grad()
    def run(model, prefixes: list[list[int]], pad: int) -> Prefixes:
        """Run ``prefixes`` (token id lists; empty ones allowed) once, left-padded, keeping the cache.

        Rows of very different lengths run in separate passes (:func:`workbench.core.padding.length_buckets`),
        each padded only to its own longest; their keys and values are then laid side by side,
        left-padded to the longest of all, so a continuation starts in the same column for every row.

        Raises:
            PrefixCacheError: the model left its key-value cache empty.
        """
        device = next(model.parameters()).device
        ids, mask = pad_left(prefixes, pad)
        length, width = mask.sum(1), mask.shape[1]
        buckets = length_buckets(length.tolist())
        if len(buckets) == 1:
            past, logits = _run_left_padded(model, ids, mask, device)
            return Prefixes(past, mask.to(device), length.to(device), logits)
        past = []
        last_logits = None
        for bucket in buckets:
            # Left-padded: a bucket padded to its own longest (w) is the last w columns of the whole.
            rows = torch.tensor(bucket)
            w = max(1, int(length[rows].max()))
            keys, logits = _run_left_padded(model, ids[rows, width - w :], mask[rows, width - w :], device)
            rows = rows.to(device)
            if not past:
                past = [
                    (
                        k.new_zeros(len(prefixes), *k.shape[1:-2], width, k.shape[-1]),
                        v.new_zeros(len(prefixes), *v.shape[1:-2], width, v.shape[-1]),
                    )
                    for k, v in keys
                ]
                last_logits = logits.new_zeros(len(prefixes), logits.shape[-1])
            for (k, v), (k_b, v_b) in zip(past, keys, strict=True):
                k[rows, ..., width - w :, :], v[rows, ..., width - w :, :] = k_b, v_b
            last_logits[rows] = logits
        return Prefixes(past, mask.to(device), length.to(device), last_logits)

    def extend(
        self,
        model,
        rows: Int[Tensor, " n"],
        ids: Int[Tensor, "n t"],
        mask: Int[Tensor, "n t"] | None = None,
        skip: int = 0,
    ):
        """One forward pass of ``ids`` after prefix ``rows[i]`` for each row i; the model's output.

        ``ids`` are right-padded continuations (``mask`` marks their real tokens). Hooks on the
        model act as usual, on the continuation's tokens only. ``skip``: blocks below it will not
        run (:func:`workbench.core.block_skip.blocks_skipped`), so their keys and values are not copied
        out for the rows; a one-row placeholder gives the cache its length.
        """
        from transformers import DynamicCache

        rows = rows.to(self.mask.device)
        ids = ids.to(self.mask.device)
        mask = torch.ones_like(ids) if mask is None else mask.to(ids.device)
        cache = DynamicCache()
        # Every row in order (a first pass over all of them) needs no gathered copy of the cache.
        every = len(rows) == len(self.mask) and bool((rows == torch.arange(len(rows), device=rows.device)).all())
        for i, (k, v) in enumerate(self.past):
            if i < skip:
                cache.update(k[:1], v[:1], i)
            else:
                cache.update(k, v, i) if every else cache.update(k[rows], v[rows], i)
        positions = self.length[rows, None] + torch.arange(ids.shape[1], device=ids.device)
        return model(
            input_ids=ids,
            attention_mask=torch.cat([self.mask[rows], mask], 1),
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
        )


def _run_left_padded(
    model, ids: Int[Tensor, "n w"], mask: Int[Tensor, "n w"], device
) -> tuple[list[tuple[Tensor, Tensor]], Tensor]:
    """One pass of left-padded prefixes: per layer its keys and values, and the last position's logits."""
    from transformers import DynamicCache

    # Left padding shifts tokens right: position ids say where each one really is.
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    # Only the last position's logits are kept: the others would cost rows x width x vocab.
    last_only = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    cache = DynamicCache()
    out = model(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        position_ids=positions.to(device),
        past_key_values=cache,
        use_cache=True,
        **last_only,
    )
    past = [(layer.keys, layer.values) for layer in getattr(cache, "layers", [])]
    if not past or past[0][0] is None or past[0][0].shape[-2] != ids.shape[1]:
        raise PrefixCacheError("the model did not fill its key-value cache")
    return past, out.logits[:, -1]
