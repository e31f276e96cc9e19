"""An SAE feature ablation in its two forms: run with a hook, or baked into one weight for export.

Runtime form: the SAE is spliced in at its site with its error term kept, and the chosen features
are zeroed (or, where they fire, clamped to a negative value). The decoder is affine, so
decode(f') + (x - decode(f)) is x + c W_dec[S], with S the ablated features and c = f'_S - f_S:
the hook adds only that change, and with no features the model is bitwise unchanged.

Baked form: c W_dec[S] lies in the span of |S| decoder rows, so a change W_dec[S]^T A to the
output projection of the site's block stands in for it as far as c is a linear function of the
key h that projection reads (the MLP's hidden activation): A = E[c h^T] (E[h h^T] + lambda I)^-1,
the ridge regression of c on h over tokens where the model should act ablated (the world corpus,
the forget statements weighted up). A residual-stream SAE after block l needs no other weight:
block l's MLP output adds into that stream. The change has rank |S| at most and is kept as
factors. Both moments are summed in float64 in one pass over the same tokens with the same
weights, so the solve is exactly that weighted fit (:func:`edit.covariance.key_statistics`
averages other tokens, unweighted). c is a thresholded function of the activation, so no linear
map is exact: :class:`BakeFit` reports the share of the change the fit explains.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from edit.edit import EditError
from locate.sae_splice import SaeError, load_sae
from locate.sae_train import SaeSettings, text_windows
from workbench.core.metrics import FactScores
from workbench.core.padding import pad_right
from workbench.core.tokens import token_batches

Mode = Literal["zero", "clamp_negative"]


class AblationError(EditError):
    """An ablation that cannot be made: no such SAE, a feature out of range, a bad request or setting."""


@dataclass(frozen=True)
class Ablation:
    """The runtime form: which SAE, which of its features, and what they are set to.

    Examples:
        >>> a = Ablation(SaeSettings(0, "mlp"), (12, 3))
        >>> a.hook_name, a.to_dict()["features"]
        ('blocks.0.hook_mlp_out', [12, 3])
        >>> Ablation.from_dict(a.to_dict()) == a
        True

    Args:
        sae: Which shipped SAE (its layer and component).
        features: Feature indices to ablate.
        mode: "zero", or "clamp_negative": set to ``value`` where the feature fires.
        value: The clamp value (< 0) of "clamp_negative".
    """

    sae: SaeSettings = field(default_factory=lambda: SaeSettings(0, "mlp"))
    features: tuple[int, ...] = ()
    mode: Mode = "zero"
    value: float = -5.0

    def __post_init__(self):
        object.__setattr__(self, "features", tuple(int(i) for i in self.features))
        if self.mode not in ("zero", "clamp_negative"):
            raise AblationError(f"unknown mode {self.mode!r}; expected 'zero' or 'clamp_negative'")
        if self.mode == "clamp_negative" and not self.value < 0:
            raise AblationError(f"clamp_negative needs a negative value, got {self.value}")

    @property
    def hook_name(self) -> str:
        return self.sae.hook_name()

    def to_dict(self) -> dict:
        return {"sae": asdict(self.sae), "features": list(self.features), "mode": self.mode, "value": self.value}

    @classmethod
    def from_dict(cls, d: dict) -> Ablation:
        return cls(SaeSettings(**d["sae"]), tuple(d["features"]), d["mode"], d["value"])


def sae_for(handle, settings: SaeSettings, saes: str | None = None):
    """The SAE at ``settings``' site of ``handle``'s model (loaded once per process).

    Read from the model directory's ``saes/`` folder, or from ``saes``: a folder of SAEs as
    ``workbench sae train --out`` writes it.

    Examples:
        >>> import workbench
        >>> sae_for(workbench.load("world"), SaeSettings(2, "resid")).cfg.d_sae
        512
    """
    folder = Path(saes) if saes is not None else Path(handle.source) / "saes"
    if not (folder / settings.hook_name() / "cfg.json").exists():
        found = sorted(p.parent.name for p in folder.glob("*/cfg.json"))
        raise AblationError(
            f"no SAE at {settings.hook_name()} for {handle.name!r} (found: {', '.join(found) or 'none'}); train one "
            f"with `workbench sae train --model DIR --texts FILE --layer {settings.layer} "
            f"--component {settings.component}`"
        )
    return _load(str(folder), settings)


@lru_cache(maxsize=8)
def _load(folder: str, settings: SaeSettings):
    try:
        sae = load_sae(settings, saes=folder)
    except SaeError as e:
        raise AblationError(str(e)) from None
    for p in sae.parameters():
        p.requires_grad_(False)
    return sae


def sae_of(handle, ablation: Ablation, saes: str | None = None):
    """The SAE an ablation runs on (from ``saes`` as in :func:`sae_for`), its features checked against its size."""
    sae = sae_for(handle, ablation.sae, saes)
    bad = [i for i in ablation.features if not 0 <= i < sae.cfg.d_sae]
    if bad:
        raise AblationError(f"feature {bad[0]} out of range 0..{sae.cfg.d_sae - 1} of {ablation.hook_name}")
    return sae


def ablation_hook(sae, ablation: Ablation):
    """A hook function (TransformerLens or plain tensor) adding the ablation's change to an activation."""
    feats = list(ablation.features)

    def hook(x, hook=None):
        if not feats:
            return x
        return x + (feature_change(sae, x, feats, ablation.mode, ablation.value) @ sae.W_dec[feats]).to(x.dtype)

    return hook


def feature_change(
    sae, x: Float[Tensor, "... d_model"], features: list[int], mode: Mode = "zero", value: float = -5.0
) -> Float[Tensor, "... k"]:
    """c = f'_S - f_S: how the ablation moves each of ``features`` at each activation.

    "zero" sets a feature to 0; "clamp_negative" sets it to ``value`` (< 0) where it fires and
    leaves it at 0 where it does not, so tokens that never used the feature are untouched.

    Examples:
        >>> from locate.sae_splice import load_sae
        >>> sae = load_sae(SaeSettings(0, "mlp"))
        >>> x = torch.randn(3, 128) * 20
        >>> f = sae.encode(x)[:, [5, 9]]
        >>> bool(torch.equal(feature_change(sae, x, [5, 9]), -f))
        True
        >>> bool(torch.allclose(feature_change(sae, x, [5, 9], "clamp_negative", -4.0) + f, -4.0 * (f > 0)))
        True
    """
    f = sae.encode(x.float())[..., features]
    if mode == "zero":
        return -f
    return torch.where(f > 0, value - f, torch.zeros_like(f))


@contextmanager
def ablated(handle, ablation: Ablation) -> Iterator:
    """Run ``handle.model`` with the ablation active inside a ``with`` block: every score sees it.

    The hook sits on the Hugging Face module whose output is the SAE's hook point, so
    ``handle.score``, :func:`edit.forget_figures.forget_figures` and the held-out loss all run
    the runtime form; ``handle.hooked`` is left alone (see :func:`run_ablated`).

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> facts = h.world.facts(["Brur Theistuv"])
        >>> with ablated(h, Ablation(SaeSettings(0, "mlp"), (141, 316, 202, 240, 272, 510))):
        ...     h.score(facts).accuracy < 1.0
        True
    """
    fn = ablation_hook(sae_of(handle, ablation), ablation)

    def forward_hook(module, args, out):
        x = out[0] if isinstance(out, tuple) else out
        return (fn(x), *out[1:]) if isinstance(out, tuple) else fn(x)

    module = handle.sites.module(handle.model, ablation.sae.layer, ablation.sae.component)
    hook = module.register_forward_hook(forward_hook)
    try:
        yield handle
    finally:
        hook.remove()


def run_ablated(handle, ablation: Ablation, ids: Int[Tensor, "b t"], **kwargs) -> Float[Tensor, "b t vocab"]:
    """Logits of the hooked view (TransformerLens) with the ablation spliced in at its hook point.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> ids = h.encode(h.world.training_sentences()[0])
        >>> bool(torch.equal(run_ablated(h, Ablation(SaeSettings(0, "mlp")), ids), h.hooked(ids)))
        True
    """
    fn = ablation_hook(sae_of(handle, ablation), ablation)
    return handle.hooked.run_with_hooks(ids, fwd_hooks=[(ablation.hook_name, fn)], **kwargs)


def score_ablated(handle, ablation: Ablation, facts, held_out: bool = False) -> FactScores:
    """Facts scored among their candidates (as ``handle.score``) with the ablation active."""
    with ablated(handle, ablation):
        return handle.score(list(facts), held_out=held_out)


# -- the baked form -----------------------------------------------------------------------------
@dataclass
class BakeFit:
    """The baked change and how well it stands in for the runtime ablation on the fitted tokens.

    Args:
        left, right: Factors of the weight change, out x in: ``left @ right.T`` is [d_model, d_mlp].
        bias: Change to the projection's bias ([d_model]), or None when the bias is not fitted.
        explained: 1 - weighted squared error of the baked change over that of the runtime change
            itself, in the residual space (1: the bake reproduces the ablation on these tokens).
        tokens: Tokens fitted; ``weight`` their total weight.
    """

    left: Float[Tensor, "d_model k"]
    right: Float[Tensor, "d_mlp k"]
    bias: Float[Tensor, " d_model"] | None
    explained: float
    tokens: int
    weight: float


@torch.no_grad()
def bake(
    handle,
    sae,
    site: SaeSettings,
    features: list[int],
    texts: list[str],
    weights: list[float],
    mode: Mode = "zero",
    value: float = -5.0,
    ridge: float = 1e-3,
    bias: bool = False,
    batch_size: int = 256,
    progress: bool = False,
) -> BakeFit:
    """Fit the output-projection change of block ``site.layer`` that mimics the ablation over ``texts``.

    Examples:
        >>> import workbench
        >>> from locate.sae_splice import load_sae
        >>> h = workbench.load("world", device="cpu")
        >>> s = SaeSettings(0, "mlp")
        >>> texts = h.world.training_sentences()[:200]
        >>> fit = bake(h, load_sae(s), s, [3, 7], texts, [1.0] * len(texts))
        >>> tuple(fit.left.shape), tuple(fit.right.shape), 0.0 < fit.explained <= 1.0
        ((128, 2), (512, 2), True)

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle`; its model is only read.
        sae: The sae-lens SAE at ``site``.
        site: Where the SAE reads (block ``layer``, "resid" or "mlp").
        features, mode, value: The ablation (see :func:`feature_change`).
        texts, weights: Text to fit on and one weight per text (all of its tokens).
        ridge: lambda, as a fraction of the mean diagonal of E[h h^T]: keeps directions of h
            the text hardly visits (keys the fit never saw) from getting large coefficients.
        bias: Also fit a change to the projection's bias (a constant added at every token).
        batch_size: Texts per forward pass.
        progress: Show a progress bar on stderr.
    """
    if len(texts) != len(weights) or not texts:
        raise ValueError(f"bake needs texts with one weight each (got {len(texts)} texts, {len(weights)} weights)")
    sites, model = handle.sites, handle.model
    d_key = sites.d_mlp + (1 if bias else 0)
    k = len(features)
    hh = torch.zeros(d_key, d_key, dtype=torch.float64)
    ch = torch.zeros(k, d_key, dtype=torch.float64)
    cc = torch.zeros(k, k, dtype=torch.float64)
    seen = {"tokens": 0, "weight": 0.0}
    # A text longer than the model reads is fitted window by window, each with the text's weight.
    per_text = text_windows(handle, texts)
    rows = [w for ws in per_text for w in ws]
    row_weights = [wt for ws, wt in zip(per_text, weights, strict=True) for _ in ws]
    now: dict = {}

    def grab_key(module, args):
        now["h"] = args[0].detach()

    def grab_site(module, args, out):
        x = out[0] if isinstance(out, tuple) else out
        keep = now["mask"]
        h = now["h"][keep].double()
        if bias:
            h = torch.cat([h, h.new_ones(len(h), 1)], 1)
        c = feature_change(sae, x.detach()[keep], features, mode, value).double()
        w = now["w"][:, None].expand_as(keep)[keep].double()[:, None]
        hh.add_((h * w).T @ h)
        ch.add_((c * w).T @ h)
        cc.add_((c * w).T @ c)
        seen["tokens"] += len(h)
        seen["weight"] += float(w.sum())

    hooks = [
        model.get_submodule(sites.key_module_path(site.layer)).register_forward_pre_hook(grab_key),
        sites.module(model, site.layer, site.component).register_forward_hook(grab_site),
    ]
    try:
        batches = token_batches([len(r) for r in rows], batch_size)
        for start, stop in tqdm(batches, desc="bake", disable=not progress, leave=False):
            ids, mask = pad_right(rows[start:stop], handle.tokenizer.pad_token_id or 0)
            now["mask"] = mask.bool().to(handle.device)
            now["w"] = torch.tensor(row_weights[start:stop], device=handle.device)
            model(input_ids=ids.to(handle.device), attention_mask=mask.to(handle.device))
    finally:
        for hk in hooks:
            hk.remove()
    # Ridge on the keys only: the bias column (if any) is not shrunk.
    scale = ridge * float(hh.diagonal()[: sites.d_mlp].mean())
    reg = torch.diag(torch.tensor([scale] * sites.d_mlp + [0.0] * (d_key - sites.d_mlp), dtype=torch.float64))
    a = torch.linalg.solve(hh + reg, ch.T).T  # [k, d_key], hh symmetric
    dec = sae.W_dec.detach()[features].double()  # [k, d_model]
    gram = dec @ dec.T
    resid = cc - a @ ch.T - ch @ a.T + a @ hh @ a.T  # weighted E[(c - A h)(c - A h)^T]
    total = float(torch.trace(gram @ cc))
    explained = 1.0 - float(torch.trace(gram @ resid)) / total if total > 0 else 1.0
    return BakeFit(
        left=dec.T.float(),
        right=a[:, : sites.d_mlp].T.float(),
        bias=(dec.T @ a[:, -1]).float() if bias else None,
        explained=explained,
        tokens=seen["tokens"],
        weight=seen["weight"],
    )


__all__ = [
    "Ablation",
    "AblationError",
    "BakeFit",
    "Mode",
    "ablated",
    "ablation_hook",
    "bake",
    "feature_change",
    "run_ablated",
    "sae_for",
    "sae_of",
    "score_ablated",
]
