"""Load a shipped SAE and splice it into the hooked view, keeping its error term.

Spliced with the error term, the activation becomes decode(f') + (x - decode(f)) where f are
the SAE's features of x and f' the features after any intervention: with no intervention the
model computes exactly what it did without the SAE, so every change is the intervention's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from locate.sae_train import SaeSettings, sae_dir


class SaeError(ValueError):
    """No SAE where one was asked for, or a feature index out of range."""


def load_sae(settings: SaeSettings | None = None, model_dir: str | Path | None = None, saes: str | Path | None = None):
    """An SAE from disk with sae-lens' own loader: a shipped one by default.

    Examples:
        >>> sae = load_sae(SaeSettings(0, "mlp"))
        >>> sae.cfg.d_in, sae.cfg.d_sae
        (128, 512)
        >>> load_sae(SaeSettings(0, "mlp"), saes="/no/saes")
        Traceback (most recent call last):
        locate.sae_splice.SaeError: no SAE at /no/saes/blocks.0.hook_mlp_out: train one with `workbench sae train`

    Args:
        settings: Which SAE (its layer and component).
        model_dir: The model directory whose ``saes/`` folder holds it (default: the shipped model's).
        saes: A folder of SAEs to read instead, one ``<hook name>/`` folder each (as
            ``workbench sae train --out`` writes).
    """
    from sae_lens import SAE

    s = settings or SaeSettings()
    path = Path(saes) / s.hook_name() if saes is not None else sae_dir(s, model_dir)
    if not (path / "cfg.json").exists():
        raise SaeError(f"no SAE at {path}: train one with `workbench sae train`")
    return SAE.load_from_disk(path)


def intervene(
    f: Float[Tensor, "... d_sae"],
    features: list[int] | None,
    mode: Literal["zero", "clamp_negative"] = "zero",
    value: float = -1.0,
) -> Tensor:
    """Features ``features`` set to zero, or clamped to ``value`` (negative: pushed against them)."""
    if not features:
        return f
    f = f.clone()
    f[..., features] = 0.0 if mode == "zero" else value
    return f


def splice_hook(
    sae,
    features: list[int] | None = None,
    mode: Literal["zero", "clamp_negative"] = "zero",
    value: float = -1.0,
    record: dict | None = None,
):
    """A hook function for ``handle.hooked`` that routes the activation through the SAE.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world", device="cpu")
        >>> s = SaeSettings()
        >>> ids = h.encode(h.world.training_sentences()[0])
        >>> same = h.hooked.run_with_hooks(ids, fwd_hooks=[(s.hook_name(), splice_hook(load_sae(s)))])
        >>> bool(torch.allclose(same, h.hooked(ids), atol=1e-4))
        True

    Args:
        sae: An sae-lens SAE.
        features: Features to intervene on (None: none; the model is unchanged up to rounding).
        mode: "zero" or "clamp_negative" (set them to ``value`` < 0).
        record: If given, ``record["features"]`` receives the features before intervention.
    """
    if features and max(features) >= sae.cfg.d_sae:
        raise SaeError(f"feature {max(features)} out of range 0..{sae.cfg.d_sae - 1}")

    def hook(x, hook=None):
        f = sae.encode(x.float())
        if record is not None:
            record["features"] = f.detach()
        error = x.float() - sae.decode(f)
        return (sae.decode(intervene(f, features, mode, value)) + error).to(x.dtype)

    return hook


def gradient_splice(sae, box: dict):
    """A forward hook for a module whose output is routed through the SAE with its features as a leaf.

    Each forward pass leaves the features in ``box["f"]`` (requiring grad), so a backward pass
    from any output gives every feature's gradient; the SAE's error term is added back (without
    a gradient), so the output is the module's own up to rounding.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world", device="cpu")
        >>> s = SaeSettings()
        >>> box = {}
        >>> m = h.sites.module(h.model, s.layer, s.component)
        >>> hook = m.register_forward_hook(gradient_splice(load_sae(s), box))
        >>> _ = h.model(h.encode(h.world.training_sentences()[0]))
        >>> hook.remove()
        >>> box["f"].requires_grad, box["f"].shape[-1] == load_sae(s).cfg.d_sae
        (True, True)
    """

    def splice(module, args, out):
        x = out[0] if isinstance(out, tuple) else out
        f = sae.encode(x.float()).detach().requires_grad_(True)
        box["f"] = f
        # The error term keeps the forward pass exact; only f carries a gradient.
        y = (sae.decode(f) + (x.float() - sae.decode(f)).detach()).to(x.dtype)
        return (y, *out[1:]) if isinstance(out, tuple) else y

    return splice


@torch.no_grad()
def object_prob_with(
    handle, sae, settings: SaeSettings, prompt: str, obj: str, features: list[int] | None = None, mode: str = "zero"
) -> float:
    """P(object | prompt) with the SAE spliced in and ``features`` intervened on."""
    p, o = handle.encode_fact(prompt, obj)
    ids = torch.tensor([p + o[:-1]], device=handle.device)
    logits = handle.hooked.run_with_hooks(ids, fwd_hooks=[(settings.hook_name(), splice_hook(sae, features, mode))])
    logp = torch.log_softmax(logits[0].float(), -1)
    return float(sum(logp[len(p) - 1 + k, t] for k, t in enumerate(o)).exp())
