"""What one SAE feature is about: where it fires in a corpus (the world's by default) and what it writes.

For inspection (and the feature browser): the contexts that activate it most, with every
token's activation (a long text is cut into windows the model can read); its strongest tokens
with what precedes them; a histogram of its non-zero activations; the tokens its decoder
direction promotes and suppresses when read straight through the unembedding (scaled by the
final layer norm's gain; the norm's centring and division are ignored, as in the usual
logit-lens reading); and, in a fact world, the people whose sentences it fires on.
"""

from __future__ import annotations

import torch

from locate.sae_splice import SaeError, load_sae
from locate.sae_train import SaeSettings, text_windows, window_activations

# Tokens shown before each of a feature's strongest tokens.
CONTEXT = 10


@torch.no_grad()
def feature_data(
    handle,
    feature: int,
    sae_settings: SaeSettings | None = None,
    texts: list[str] | None = None,
    top: int = 10,
    bins: int = 20,
    sae=None,
) -> dict:
    """Top contexts, activation histogram, promoted/suppressed tokens and people of one feature (JSON-able).

    Examples:
        >>> import workbench
        >>> h = workbench.load("world", device="cpu")
        >>> d = feature_data(h, 3, top=2, texts=h.world.training_sentences()[:300])
        >>> len(d["top_contexts"]), len(d["promotes"]), d["feature"]
        (2, 2, 3)

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle`.
        feature: Feature index.
        sae_settings: Which shipped SAE.
        texts: Corpus to search; default the world's training sentences (needed without a world).
        top: Contexts and tokens to list.
        bins: Histogram bins.
        sae: An sae-lens SAE to use instead of loading the shipped one.
    """
    s = sae_settings or SaeSettings()
    sae = sae if sae is not None else load_sae(s)
    if not 0 <= feature < sae.cfg.d_sae:
        raise SaeError(f"feature {feature} out of range 0..{sae.cfg.d_sae - 1}")
    if texts is None:
        if handle.world is None:
            raise SaeError(f"model {handle.name!r} has no fact world: pass texts to find the feature's contexts in")
        texts = handle.world.training_sentences()
    # A text longer than the model reads is read, and shown, window by window.
    per_text = text_windows(handle, texts)
    rows = [w for ws in per_text for w in ws]
    owner = [i for i, ws in enumerate(per_text) for _ in ws]
    if not rows:
        raise SaeError("the texts hold no tokens to find the feature in")
    acts = sae.encode(window_activations(handle, s.hook_name(), rows))[:, feature]
    per_row = torch.split(acts, [len(r) for r in rows])
    best = torch.stack([a.max() for a in per_row])
    decode = handle.tokenizer.decode
    contexts = []
    for j in best.argsort(descending=True)[:top].tolist():
        contexts.append(
            {
                "text": texts[owner[j]] if len(per_text[owner[j]]) == 1 else decode(rows[j]),
                "tokens": [decode([i]) for i in rows[j]],
                "activations": [round(float(a), 4) for a in per_row[j]],
                "max": float(best[j]),
            }
        )
    starts = torch.tensor([0] + [len(r) for r in rows]).cumsum(0)
    strongest = acts.topk(min(top, len(acts)))
    top_tokens = []
    for v, at in zip(strongest.values.tolist(), strongest.indices.tolist(), strict=True):
        if v <= 0:
            break
        j = int(torch.searchsorted(starts, at, right=True)) - 1
        t = at - int(starts[j])
        top_tokens.append(
            {"token": decode([rows[j][t]]), "activation": v, "context": decode(rows[j][max(0, t - CONTEXT) : t + 1])}
        )
    nonzero = acts[acts > 0]
    counts, edges = torch.histogram(nonzero, bins=bins) if len(nonzero) else (torch.zeros(bins), torch.zeros(bins + 1))
    direction = sae.W_dec[feature].float()
    norm = handle.model.get_submodule(handle.sites.final_norm_path)
    if getattr(norm, "weight", None) is not None:
        direction = direction * norm.weight.detach().float().cpu()
    unembed = handle.model.get_submodule(handle.sites.unembed_path).weight.detach().float().cpu()
    logits = unembed @ direction
    promote, suppress = logits.topk(top), (-logits).topk(top)
    people: dict[str, float] = {}
    if handle.world is not None:
        for j, a in enumerate(best.tolist()):
            if a > 0:
                person = handle.world.parse_prompt(texts[owner[j]])[0]
                if person:
                    people[person] = max(people.get(person, 0.0), a)
    return {
        "feature": feature,
        "sae": s.hook_name(),
        "fires_on_fraction": float((acts > 0).float().mean()),
        "top_contexts": contexts,
        "top_tokens": top_tokens,
        "histogram": {"counts": [int(c) for c in counts.tolist()], "edges": [float(e) for e in edges.tolist()]},
        "promotes": [
            {"token": handle.tokenizer.decode([int(i)]), "logit": float(v)}
            for v, i in zip(promote.values, promote.indices, strict=True)
        ],
        "suppresses": [
            {"token": handle.tokenizer.decode([int(i)]), "logit": -float(v)}
            for v, i in zip(suppress.values, suppress.indices, strict=True)
        ],
        "people": dict(sorted(people.items(), key=lambda kv: -kv[1])[:top]),
    }
