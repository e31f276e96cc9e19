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
    length: Int[Tensor, "row"]
    last_logits: Float[Tensor, "row vocab"]

    @staticmethod
    @torch.no_grad()
    def run(model, prefixes: list[list[int]], pad: int) -> Prefixes:
        """Run ``prefixes`` (token id lists; empty ones allowed) once, left-padded, keeping the cache.

        Raises:
            PrefixCacheError: the model left its key-value cache empty.
        """
        from transformers import DynamicCache

        device = next(model.parameters()).device
        length = torch.tensor([len(p) for p in prefixes])
        width = max(1, int(length.max()))
        ids = torch.full((len(prefixes), width), pad, dtype=torch.long)
        mask = torch.zeros(len(prefixes), width, dtype=torch.long)
        for i, p in enumerate(prefixes):
            if p:
                ids[i, width - len(p):], mask[i, width - len(p):] = torch.tensor(p), 1
        # Left padding shifts tokens right: position ids say where each one really is.
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        # Only the last position's logits are kept: the others would cost rows x width x vocab.
        last_only = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
        cache = DynamicCache()
        out = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                    past_key_values=cache, use_cache=True, **last_only)
        past = [(layer.keys, layer.values) for layer in getattr(cache, "layers", [])]
        if not past or past[0][0] is None or past[0][0].shape[-2] != width:
            raise PrefixCacheError("the model did not fill its key-value cache")
        return Prefixes(past, mask.to(device), length.to(device), out.logits[:, -1])

    def extend(self, model, rows: Int[Tensor, "n"], ids: Int[Tensor, "n t"], mask: Int[Tensor, "n t"] | None = None):
        """One forward pass of ``ids`` after prefix ``rows[i]`` for each row i; the model's output.

        ``ids`` are right-padded continuations (``mask`` marks their real tokens). Hooks on the
        model act as usual, on the continuation's tokens only.
        """
        from transformers import DynamicCache

        rows = rows.to(self.mask.device)
        ids = ids.to(self.mask.device)
        mask = torch.ones_like(ids) if mask is None else mask.to(ids.device)
        cache = DynamicCache()
        for i, (k, v) in enumerate(self.past):
            cache.update(k[rows], v[rows], i)
        positions = self.length[rows, None] + torch.arange(ids.shape[1], device=ids.device)
        return model(input_ids=ids, attention_mask=torch.cat([self.mask[rows], mask], 1), position_ids=positions,
                     past_key_values=cache, use_cache=True)
