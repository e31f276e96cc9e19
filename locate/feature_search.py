"""Find SAE features by a word or a person, and measure what ablating one does to chosen facts.

For the feature browser: a person's name finds the features that carry that person's facts
(:func:`locate.features.locate_person_features`); any other single-token word finds the
features whose decoder direction promotes it most through the unembedding (the reading
:func:`locate.feature_data.feature_data` uses); a number is a feature index. The ablation
effect is the real one: P(object) with the SAE spliced in (error term kept), with and without
the feature zeroed at every position.
"""

from __future__ import annotations

import torch

from locate.features import locate_person_features
from locate.sae_splice import SaeError, load_sae, object_prob_with
from locate.sae_train import SaeSettings


def decoder_logits(handle, sae) -> torch.Tensor:
    """Each feature's decoder direction read through the final norm's gain and the unembedding: [d_sae, vocab].

    Examples:
        >>> import workbench
        >>> h = workbench.load("world", device="cpu")
        >>> decoder_logits(h, load_sae()).shape[0]
        512
    """
    direction = sae.W_dec.detach().float().cpu()
    norm = handle.model.get_submodule(handle.sites.final_norm_path)
    if getattr(norm, "weight", None) is not None:
        direction = direction * norm.weight.detach().float().cpu()
    unembed = handle.model.get_submodule(handle.sites.unembed_path).weight.detach().float().cpu()
    return direction @ unembed.T


def search_features(handle, query: str, sae_settings: SaeSettings | None = None, top: int = 10, sae=None) -> list[dict]:
    """Features for a query: a feature index, a person of the world, or a word their decoders promote.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world", device="cpu")
        >>> search_features(h, "cat", top=2)[0]["why"]
        "promotes 'cat'"
        >>> search_features(h, "7")
        [{'feature': 7, 'score': 0.0, 'why': 'feature 7'}]

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle`.
        query: "17", "Goudest Drudriox", "cat", ...
        sae_settings: Which shipped SAE (default layer 0's residual stream).
        top: How many features to return.
        sae: An sae-lens SAE to use instead of loading the shipped one.

    Returns:
        Dicts of feature, score (attribution or logit) and why, best first.

    Raises:
        SaeError: a feature index out of range, a word that is not one token.
    """
    s = sae_settings or SaeSettings()
    sae = sae if sae is not None else load_sae(s)
    query = query.strip()
    if query.isdigit():
        if int(query) >= sae.cfg.d_sae:
            raise SaeError(f"feature {query} out of range 0..{sae.cfg.d_sae - 1}")
        return [{"feature": int(query), "score": 0.0, "why": f"feature {query}"}]
    if handle.world is not None and query in handle.world.people:
        loc = locate_person_features(handle, query, s)
        return [
            {"feature": site.feature, "score": site.score, "why": f"carries {query}'s facts"}
            for site in loc.sites[:top]
        ]
    ids = handle.tokenizer(query, add_special_tokens=False).input_ids
    if len(ids) != 1:
        raise SaeError(f"{query!r} is {len(ids)} tokens: search for a feature index, a person or a one-token word")
    scores = decoder_logits(handle, sae)[:, ids[0]]
    best = scores.topk(top)
    return [
        {"feature": int(i), "score": float(v), "why": f"promotes {query!r}"}
        for v, i in zip(best.values, best.indices, strict=True)
    ]


def ablation_effect(handle, feature: int, facts: list, sae_settings: SaeSettings | None = None, sae=None) -> list[dict]:
    """P(object) of each fact (first trained phrasing) with the SAE spliced in, before and after zeroing ``feature``.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world", device="cpu")
        >>> rows = ablation_effect(h, 3, h.world.facts()[:2])
        >>> [sorted(r) for r in rows][0], rows[0]["before"] > 0.9
        (['after', 'before', 'object', 'prompt', 'relation', 'subject'], True)

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle` with a world.
        feature: The feature to zero.
        facts: World facts to measure.
        sae_settings, sae: Which SAE, as in :func:`search_features`.
    """
    s = sae_settings or SaeSettings()
    sae = sae if sae is not None else load_sae(s)
    rows = []
    for f in facts:
        prompt = handle.world.phrasings(f.relation)[0].prompt(f.subject)
        rows.append(
            {
                "subject": f.subject,
                "relation": f.relation,
                "object": f.object,
                "prompt": prompt,
                "before": object_prob_with(handle, sae, s, prompt, f.object),
                "after": object_prob_with(handle, sae, s, prompt, f.object, [feature]),
            }
        )
    return rows


__all__ = ["ablation_effect", "decoder_logits", "search_features"]
