"""SAE features that carry one set of texts more than another: any model, no fact world needed.

With the SAE spliced in at its site (error term kept, so the model is unchanged), each text's
log-likelihood (its summed next-token log-probabilities) is attributed to each feature at each
token as activation x gradient: the first-order drop in log-likelihood from zeroing that
feature there. Summed over a set's tokens and divided by their number, it is a per-token figure
that does not grow with the set, so a forget set of a few texts and a retain set of thousands
compare directly: features that carry the forget texts more, per token, than the retain texts.
Texts longer than the model reads are read in windows.
"""

from __future__ import annotations

from dataclasses import asdict

import torch
from jaxtyping import Float
from torch import Tensor

from locate.location import Location, Site
from locate.sae_splice import gradient_splice
from locate.sae_train import SaeSettings, text_windows
from workbench.core.padding import pad_right
from workbench.core.tokens import token_batches


def text_attribution(
    handle, sae, site: SaeSettings, texts: list[str], batch_size: int = 64
) -> tuple[Float[Tensor, " d_sae"], int]:
    """Each feature's attribution to the texts' log-likelihood, summed over their tokens, and the tokens scored.

    Examples:
        >>> import workbench
        >>> from locate.sae_splice import load_sae
        >>> h = workbench.load("world", device="cpu")
        >>> total, n = text_attribution(h, load_sae(), SaeSettings(), h.world.training_sentences()[:4])
        >>> tuple(total.shape), n > 0
        ((512,), True)
    """
    rows = [w for ws in text_windows(handle, texts) for w in ws]
    module = handle.sites.module(handle.model, site.layer, site.component)
    box: dict = {}  # each batch's forward pass leaves its features here
    splice = gradient_splice(sae, box)

    total, scored = torch.zeros(sae.cfg.d_sae), 0
    pad = handle.tokenizer.pad_token_id or 0
    for start, stop in token_batches([len(r) for r in rows], batch_size):
        ids, mask = pad_right(rows[start:stop], pad)
        ids, mask = ids.to(handle.device), mask.to(handle.device)
        hook = module.register_forward_hook(splice)
        try:
            with torch.enable_grad():
                logits = handle.model(input_ids=ids, attention_mask=mask).logits
                logp = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, ids[:, 1:, None])[..., 0]
                keep = mask[:, 1:].bool()
                (g,) = torch.autograd.grad(logp[keep].sum(), [box["f"]])
        finally:
            hook.remove()
        total += (box["f"].detach() * g * mask[..., None]).sum((0, 1)).cpu()
        scored += int(keep.sum())
    return total, scored


def locate_text_features(
    handle,
    forget_texts: list[str],
    retain_texts: list[str],
    sae_settings: SaeSettings,
    sae,
    top: int = 20,
) -> Location:
    """Features whose per-token attribution on ``forget_texts`` most exceeds that on ``retain_texts``.

    Only features with a positive difference are kept, best first, at most ``top``.

    Examples:
        >>> import workbench
        >>> from locate.sae_splice import load_sae
        >>> h = workbench.load("world", device="cpu")
        >>> texts = h.world.training_sentences()
        >>> loc = locate_text_features(h, texts[:3], texts[100:130], SaeSettings(), load_sae(), top=4)
        >>> loc.method, len(loc.sites), loc.best().kind
        ('sae_text_features', 4, 'feature')

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle`.
        forget_texts, retain_texts: The two sets (at least one token each).
        sae_settings: The SAE's site.
        sae: The sae-lens SAE there.
        top: At most this many features.
    """
    (f_sum, f_n), (r_sum, r_n) = (text_attribution(handle, sae, sae_settings, t) for t in (forget_texts, retain_texts))
    if not f_n or not r_n:
        raise ValueError("the forget and retain texts need at least two tokens each to attribute features")
    forget, retain = f_sum / f_n, r_sum / r_n
    score = forget - retain
    order = [i for i in score.argsort(descending=True)[:top].tolist() if score[i] > 0]
    return Location(
        "sae_text_features",
        {"top": top, "sae": asdict(sae_settings)},
        {"forget_texts": len(forget_texts), "retain_texts": len(retain_texts)},
        [Site("feature", sae_settings.layer, sae_settings.component, feature=i, score=float(score[i])) for i in order],
        extras={
            "forget_attribution": {str(i): float(forget[i]) for i in order},
            "retain_attribution": {str(i): float(retain[i]) for i in order},
            "tokens": {"forget": f_n, "retain": r_n},
        },
    )


__all__ = ["locate_text_features", "text_attribution"]
