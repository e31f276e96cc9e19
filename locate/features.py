"""SAE features of a fact or a person: which fire, which carry the answer, confirmed by ablation.

With the SAE spliced in (error term kept, so the model is unchanged), the object's log-odds
(log P - log(1 - P): unlike log P it does not flatten where the model is sure, and the world
model is sure of nearly every fact) is attributed to each feature at each position as
activation x gradient, the first-order effect of removing that feature. Features are ranked by their summed attribution
over the prompt; the top few are then ablated for real (zeroed at every position) and the
measured drop in P(object) is kept beside the estimate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from locate.location import Location, Site
from locate.sae_splice import intervene, load_sae, object_prob_with, splice_hook
from locate.sae_train import SaeSettings


@dataclass(frozen=True)
class FeatureSettings:
    """Settings of an SAE feature search.

    Examples:
        >>> FeatureSettings().top, FeatureSettings().confirm
        (20, 5)

    Args:
        top: Features kept in the Location, by attribution.
        confirm: How many of the best are ablated to measure their real effect.
        firing: Features listed per position as "firing" (largest activations).
    """

    top: int = 20
    confirm: int = 5
    firing: int = 5


def _attribution(handle, sae, s: SaeSettings, prompt: str, obj: str):
    p, o = handle.encode_fact(prompt, obj)
    ids = torch.tensor([p + o[:-1]], device=handle.device)
    grads: dict = {}

    def hook(x, hook=None):
        f = sae.encode(x.float()).detach().requires_grad_(True)
        grads["f"] = f
        error = (x.float() - sae.decode(f)).detach()
        return (sae.decode(f) + error).to(x.dtype)

    with torch.enable_grad():
        logits = handle.hooked.run_with_hooks(ids, fwd_hooks=[(s.hook_name(), hook)])
        logp = torch.log_softmax(logits[0].float(), -1)
        lp = sum(logp[len(p) - 1 + k, t] for k, t in enumerate(o)).clamp(max=-1e-6)
        log_odds = lp - torch.log(-torch.expm1(lp))
        (g,) = torch.autograd.grad(log_odds, [grads["f"]])
    f = grads["f"].detach()[0, : len(p)]
    return f, (f * g[0, : len(p)]), len(p), float(lp.detach().exp())


def locate_features(
    handle,
    prompt: str,
    subject: str,
    obj: str,
    sae_settings: SaeSettings | None = None,
    settings: FeatureSettings | None = None,
    sae=None,
) -> Location:
    """SAE features that carry ``obj`` after ``prompt``, as a Location of feature sites.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world", device="cpu")
        >>> f = h.world.facts()[0]
        >>> loc = locate_features(h, h.world.phrasings(f.relation)[0].prompt(f.subject), f.subject, f.object)
        >>> loc.method, loc.best().kind, loc.extras["ablation"][0]["prob_after"] < loc.extras["prob"]
        ('sae_features', 'feature', True)

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle`.
        prompt, subject, obj: The fact.
        sae_settings: Which shipped SAE (default: layer 0's residual stream, where the world
            model looks facts up).
        settings: :class:`FeatureSettings`.
        sae: An sae-lens SAE to use instead of loading the shipped one.
    """
    s, fs = sae_settings or SaeSettings(), settings or FeatureSettings()
    sae = sae if sae is not None else load_sae(s)
    span = handle.subject_span(prompt, subject)
    acts, attr, n, prob = _attribution(handle, sae, s, prompt, obj)
    total = attr.sum(0)
    order = total.argsort(descending=True)[: fs.top].tolist()
    sites = [Site("feature", s.layer, s.component, feature=i, score=float(total[i])) for i in order]
    ablation = []
    for i in order[: fs.confirm]:
        after = object_prob_with(handle, sae, s, prompt, obj, [i])
        ablation.append({"feature": i, "estimated_log_odds_change": -float(total[i]), "prob_after": after})
    tokens = handle.tokens(prompt)
    firing = {
        t: [
            {"feature": int(i), "activation": float(acts[t, i])}
            for i in acts[t].argsort(descending=True)[: fs.firing]
            if acts[t, i] > 0
        ]
        for t in list(range(*span)) + [n - 1]
    }
    return Location(
        "sae_features",
        {**asdict(fs), "sae": asdict(s)},
        {"prompt": prompt, "subject": subject, "object": obj},
        sites,
        tokens=tokens,
        extras={
            "prob": prob,
            "subject_span": list(span),
            "ablation": ablation,
            "firing": {str(t): v for t, v in firing.items()},
            "attribution_by_token": {str(t): float(attr[t].sum()) for t in range(n)},
        },
    )


@torch.no_grad()
def locate_prompt_features(
    handle,
    prompt: str,
    subject: str,
    sae_settings: SaeSettings | None = None,
    settings: FeatureSettings | None = None,
    sae=None,
) -> Location:
    """SAE features most active where ``prompt`` reads ``subject`` and at its last token (no object needed).

    With no object there is nothing to attribute to: features are ranked by their largest
    activation over the subject's tokens and the last token, the positions a fact is read at.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world", device="cpu")
        >>> fs = FeatureSettings(top=3)
        >>> loc = locate_prompt_features(h, "Waen Neibeind owns a pet", "Waen Neibeind", settings=fs)
        >>> loc.method, len(loc.sites), loc.sites[0].score >= loc.sites[1].score > 0
        ('sae_features', 3, True)

    Args:
        handle, sae_settings, settings, sae: As for :func:`locate_features`.
        prompt, subject: The prompt and the subject it contains.
    """
    s, fs = sae_settings or SaeSettings(), settings or FeatureSettings()
    sae = sae if sae is not None else load_sae(s)
    span = handle.subject_span(prompt, subject)
    record: dict = {}
    handle.hooked.run_with_hooks(handle.encode(prompt), fwd_hooks=[(s.hook_name(), splice_hook(sae, record=record))])
    acts = record["features"][0].float().cpu()  # [token, d_sae]
    n = len(acts)
    positions = list(range(*span)) + ([n - 1] if n - 1 >= span[1] else [])
    best = acts[positions].max(0).values
    order = [i for i in best.argsort(descending=True)[: fs.top].tolist() if best[i] > 0]
    sites = [Site("feature", s.layer, s.component, feature=i, score=float(best[i])) for i in order]
    firing = {
        str(t): [
            {"feature": int(i), "activation": float(acts[t, i])}
            for i in acts[t].argsort(descending=True)[: fs.firing]
            if acts[t, i] > 0
        ]
        for t in positions
    }
    return Location(
        "sae_features",
        {**asdict(fs), "sae": asdict(s)},
        {"prompt": prompt, "subject": subject},
        sites,
        tokens=handle.tokens(prompt),
        extras={"subject_span": list(span), "firing": firing, "ranked_by": "max activation"},
    )


def locate_person_features(
    handle,
    person: str,
    sae_settings: SaeSettings | None = None,
    settings: FeatureSettings | None = None,
    sae=None,
) -> Location:
    """Features carrying a person's facts: attributions summed over every fact (first trained phrasing)."""
    world = handle.world
    if world is None or person not in world.people:
        raise ValueError(f"unknown person {person!r}: not in the world")
    s, fs = sae_settings or SaeSettings(), settings or FeatureSettings()
    sae = sae if sae is not None else load_sae(s)
    total, per_fact = None, {}
    for f in world.facts([person]):
        prompt = world.phrasings(f.relation)[0].prompt(person)
        _, attr, _, _ = _attribution(handle, sae, s, prompt, f.object)
        a = attr.sum(0)
        total = a if total is None else total + a
        per_fact[f.relation] = [int(i) for i in a.argsort(descending=True)[: fs.firing]]
    order = total.argsort(descending=True)[: fs.top].tolist()
    sites = [Site("feature", s.layer, s.component, feature=i, score=float(total[i])) for i in order]
    return Location(
        "sae_features",
        {**asdict(fs), "sae": asdict(s)},
        {"person": person},
        sites,
        extras={"top_features_by_relation": per_fact},
    )


__all__ = ["FeatureSettings", "intervene", "locate_features", "locate_person_features", "locate_prompt_features"]
