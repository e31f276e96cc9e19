"""Round-to-nearest weight quantisation: does forgotten knowledge come back at 4 or 8 bits?

Unlearning that moves weights by less than a quantisation step can be undone by quantising
(Zhang et al., 2024, "Catastrophic failure of LLM unlearning via quantization"): the edited and
the original weights round to the same grid. This simulates the simplest quantiser, RTN: every
projection weight inside the transformer blocks (nn.Linear, or GPT-2's Conv1D) is rounded per
output channel to 2^bits levels and stored back dequantised, in a deep copy of the model. As in
GPTQ, AWQ and RTN pipelines, embeddings, the unembedding (tied to the embedding in the world
models), norms and biases stay in full precision.

An output channel is a row of an nn.Linear weight [out, in] and a column of a Conv1D weight
[in, out]; the module type decides, so a model mixing both is handled.

The default world model loses nothing: forget05 and retained facts stay at accuracy 1.0 at 8, 4
and even 3 bits, so knowledge that comes back under quantisation was hidden by the edit, not
put there by rounding.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor, nn
from transformers.pytorch_utils import Conv1D

from workbench.core.handle import ModelHandle
from workbench.core.world.facts import Fact


@dataclass(frozen=True)
class QuantiseSettings:
    """How weights are rounded.

    Examples:
        >>> QuantiseSettings().bits, QuantiseSettings().symmetric
        (4, False)

    Args:
        bits: Bits per weight: 2^bits levels per output channel (2 to 16).
        symmetric: Levels symmetric around zero, scale max|w| / (2^(bits-1) - 1); the default
            is asymmetric min-max with a zero point, which wastes no level on a skewed channel.
    """

    bits: int = 4
    symmetric: bool = False

    def __post_init__(self):
        if not 2 <= self.bits <= 16:
            raise ValueError(f"bits must be between 2 and 16, got {self.bits}")


@torch.no_grad()
def quantise_rows(w: Float[Tensor, "out in"], settings: QuantiseSettings | None = None) -> Float[Tensor, "out in"]:
    """Round each row to its own grid of 2^bits levels and return the dequantised values.

    Examples:
        >>> w = torch.tensor([[0.0, 0.1, 0.26, 1.0], [-2.0, 0.0, 0.9, 1.0]])
        >>> quantise_rows(w, QuantiseSettings(bits=2)).tolist()  # row 0: levels 0, 1/3, 2/3, 1
        [[0.0, 0.0, 0.3333333432674408, 1.0], [-2.0, 0.0, 1.0, 1.0]]
    """
    s = settings or QuantiseSettings()
    x = w.float()
    if s.symmetric:
        top = 2 ** (s.bits - 1) - 1
        scale = x.abs().amax(1, keepdim=True) / top
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        q = (x / safe).round().clamp(-top - 1, top) * safe
    else:
        top = 2**s.bits - 1
        lo, hi = x.amin(1, keepdim=True), x.amax(1, keepdim=True)
        scale = (hi - lo) / top
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        zero = (-lo / safe).round()
        q = ((x / safe).round() + zero).clamp(0, top)
        q = (q - zero) * safe
    # A constant row has no range to spread levels over and is exactly representable as it is.
    return torch.where(scale > 0, q, x).to(w.dtype)


def block_projections(model: nn.Module, sites) -> dict[str, nn.Module]:
    """Every nn.Linear and Conv1D inside the transformer blocks, by dotted module name.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> sorted(block_projections(h.model, h.sites))[:2]
        ['transformer.h.0.attn.c_attn', 'transformer.h.0.attn.c_proj']
        >>> len(block_projections(h.model, h.sites))  # 4 blocks x (qkv, attn out, mlp in, mlp out)
        16
    """
    out = {}
    for layer in range(sites.n_layers):
        prefix = sites.module_path(layer, "resid")
        for name, module in model.get_submodule(prefix).named_modules():
            if isinstance(module, (nn.Linear, Conv1D)):
                out[f"{prefix}.{name}"] = module
    return out


@torch.no_grad()
def quantise_model(model: nn.Module, sites, settings: QuantiseSettings | None = None) -> nn.Module:
    """A deep copy of ``model`` whose block projection weights are RTN-quantised; ``model`` is untouched.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> q = quantise_model(h.model, h.sites, QuantiseSettings(bits=2))
        >>> w = q.get_submodule(h.sites.mlp_out_path(0)).weight  # Conv1D: [in, out]
        >>> int(w[:, 0].unique().numel()) <= 4, q is not h.model
        (True, True)
    """
    s = settings or QuantiseSettings()
    copied = copy.deepcopy(model)
    for module in block_projections(copied, sites).values():
        w = module.weight
        # Conv1D stores [in, out], so its output channels are columns.
        q = quantise_rows(w.T, s).T if isinstance(module, Conv1D) else quantise_rows(w, s)
        w.copy_(q)
    return copied


def quantised(handle, settings: QuantiseSettings | None = None) -> ModelHandle:
    """A new handle over a quantised copy of the model, sharing tokenizer and world.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> q = quantised(h, QuantiseSettings(bits=8))
        >>> q.name, q.score(h.world.facts()[:6]).accuracy
        ('world (RTN int8)', 1.0)
    """
    s = settings or QuantiseSettings()
    kind = "symmetric " if s.symmetric else ""
    return ModelHandle(
        model=quantise_model(handle.model, handle.sites, s).eval(),
        tokenizer=handle.tokenizer,
        name=f"{handle.name} ({kind}RTN int{s.bits})",
        source=handle.source,
        world=handle.world,
    )


@torch.no_grad()
def quantised_accuracy(
    handle, facts: Sequence[Fact], bits: Sequence[int] = (8, 4), held_out: bool = False, symmetric: bool = False
) -> dict:
    """Accuracy and mean P(true object) of some facts at full precision and at each bit width.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> out = quantised_accuracy(h, h.world.facts()[:6], bits=(8,))
        >>> out["full"]["accuracy"], out["int8"]["accuracy"]
        (1.0, 1.0)

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle` with a world.
        facts: World facts, scored in every trained (or held-out) phrasing among their candidates.
        bits: The bit widths to try.
        held_out: Score the held-out phrasings instead.
        symmetric: See :class:`QuantiseSettings`.

    Returns:
        ``{"full": {...}, "int8": {...}, ...}``, each the :meth:`FactScores.summary` dict, and
        ``settings``.
    """
    out = {"full": handle.score(list(facts), held_out).summary()}
    for b in bits:
        s = QuantiseSettings(bits=b, symmetric=symmetric)
        out[f"int{b}"] = quantised(handle, s).score(list(facts), held_out).summary()
    out["settings"] = {"bits": list(bits), "held_out": held_out, "symmetric": symmetric}
    return out


__all__ = [
    "QuantiseSettings",
    "block_projections",
    "quantise_model",
    "quantise_rows",
    "quantised",
    "quantised_accuracy",
]
