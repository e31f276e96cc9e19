"""Attribution patching: the first-order estimate of a causal trace from one forward and one backward.

Restoring the clean state ``a`` at a site of the corrupted run changes P(object) by about
``(a_clean - a_corrupt) . dP/da``, the gradient taken on the corrupted run (Nanda 2023; Syed et
al. 2023). One backward pass gives that gradient at every (component, layer, token), so the whole
grid costs two forwards (clean, corrupted) and one backward, however long the prompt. The
estimate is exact for a linear model and degrades where restoring a state moves the network far
from the corrupted run (large noise, saturated softmax): how well it ranks sites against the
exact trace on the world's facts is in docs/locate.md#speed-and-agreement.

The result is a :class:`~locate.causal_trace.TraceResult` with the same grids and baselines as
:func:`locate.causal_trace.trace`, so both read, plot and become a Location the same way.
"""

from __future__ import annotations

from functools import partial

import torch
from einops import einsum, reduce
from jaxtyping import Float
from torch import Tensor

from locate.causal_trace import TraceResult
from locate.trace_problem import TRACE_COMPONENTS, TraceSettings, object_prob, prepare


def attribute(
    handle,
    prompt: str,
    subject: str,
    target_object: str,
    settings: TraceSettings | None = None,
    components: tuple[str, ...] = TRACE_COMPONENTS,
) -> TraceResult:
    """Estimate the causal trace of one fact with gradients: every cell from one backward pass.

    Scores are ``corrupted + estimated change``, on the same scale as :func:`~locate.causal_trace.trace`
    (P(object) with that state restored); a window of layers sums the estimates of its layers.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world", device="cpu")
        >>> f = h.world.facts()[0]
        >>> r = attribute(h, h.world.phrasings(f.relation)[0].prompt(f.subject), f.subject, f.object,
        ...               TraceSettings(samples=2))
        >>> r.method, tuple(r.scores["attn"].shape) == (len(r.tokens), h.n_layers)
        ('attribution_patching', True)
        >>> r.to_location().method
        'attribution_patching'

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle`.
        prompt: The prompt, ending where the object should follow.
        subject: The subject as it appears in the prompt (its last occurrence is corrupted).
        target_object: The object; multi-token objects are teacher-forced.
        settings: The corruption, as for the exact trace (noise scale, samples, window, seed, or a
            counterfactual subject); ``batch_size`` is unused: all samples go in one pass.
        components: Which of "resid", "mlp", "attn" to score.

    Raises:
        TraceError: unknown component, window out of range, bad settings.
        EncodingError: subject not in the prompt, words the tokenizer does not know.
    """
    return attribute_many(handle, [(prompt, subject, target_object)], settings, components)[0]


def attribute_many(
    handle,
    facts: list[tuple[str, str, str]],
    settings: TraceSettings | None = None,
    components: tuple[str, ...] = TRACE_COMPONENTS,
    batch_size: int = 512,
) -> list[TraceResult]:
    """:func:`attribute` for many facts at once: facts whose prompts tokenize alike share one pass.

    A forget set of hundreds of facts is located in a few forward and backward passes; each result
    equals what :func:`attribute` gives for that fact alone.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world", device="cpu")
        >>> facts = [(h.world.phrasings(f.relation)[0].prompt(f.subject), f.subject, f.object)
        ...          for f in h.world.facts(relations=["pet"])[:4]]
        >>> [r.subject for r in attribute_many(h, facts, TraceSettings(samples=2))] == [f[1] for f in facts]
        True

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle`.
        facts: (prompt, subject, object) triples.
        settings: As for :func:`attribute`.
        components: Which of "resid", "mlp", "attn" to score.
        batch_size: Most rows (facts x noise samples) in one pass, to bound memory.
    """
    settings = settings or TraceSettings()
    problems = [prepare(handle, p, s, o, settings, tuple(components)) for p, s, o in facts]
    groups: dict[tuple, list[int]] = {}
    for i, pr in enumerate(problems):
        groups.setdefault((pr.ids.shape[1], pr.span, len(pr.obj), pr.corrupt.shape[0]), []).append(i)
    if not problems:
        return []
    per_pass = max(1, batch_size // problems[0].corrupt.shape[0])
    results: list[TraceResult | None] = [None] * len(facts)
    for members in groups.values():
        for start in range(0, len(members), per_pass):
            chunk = members[start : start + per_pass]
            for i, r in zip(chunk, _attribute_group(handle, [problems[i] for i in chunk], components), strict=True):
                p, s, o = facts[i]
                results[i] = TraceResult(
                    r[0],
                    r[1],
                    r[2],
                    problems[i].span,
                    handle.tokens(p),
                    settings,
                    p,
                    s,
                    o,
                    problems[i].replacement,
                    method="attribution_patching",
                )
    return results


def _attribute_group(handle, problems: list, components: tuple[str, ...]) -> list[tuple[dict, float, float]]:
    # Every problem here has the same length, subject span, object length and sample count.
    bridge, sites, first = handle.hooked, handle.sites, problems[0]
    names = {sites.hook_name(layer, c): (layer, c) for layer, c in first.sites}
    n, samples = len(problems), first.corrupt.shape[0]
    ids = torch.cat([pr.ids for pr in problems])
    with torch.no_grad():
        clean_logits, cache = bridge.run_with_cache(ids, names_filter=lambda x: x in names)
    clean = {site: cache[name] for name, site in names.items()}
    a, b = first.span
    corrupt = torch.cat([pr.corrupt for pr in problems])  # (fact sample) span d_model
    kept: dict[tuple[int, str], Tensor] = {}

    def set_embed(x, hook):
        x = x.clone()
        x[:, a:b] = corrupt.to(x.device, x.dtype)
        return x

    def keep(x, hook, site):
        kept[site] = x  # stays in the graph: the backward pass below asks for its gradient

    hooks = [(sites.hook_name(None, "embed"), set_embed)]
    hooks += [(name, partial(keep, site=site)) for name, site in names.items()]
    with torch.enable_grad():
        logits = bridge.run_with_hooks(ids.repeat_interleave(samples, 0), fwd_hooks=hooks)
        probs = torch.cat([object_prob(logits[i * samples : (i + 1) * samples], pr) for i, pr in enumerate(problems)])
        # Rows are independent, so the gradient of the sum is each row's own gradient.
        grads = torch.autograd.grad(probs.sum(), [kept[s] for s in names.values()])
    change = {s: _change(clean[s], kept[s].detach(), g, samples) for s, g in zip(names.values(), grads, strict=True)}
    probs = probs.detach().reshape(n, samples).mean(1)
    out = []
    for i, pr in enumerate(problems):
        grid = torch.zeros(len(pr.cells))
        for j, (c, t, _, layers) in enumerate(pr.cells):
            grid[j] = sum(float(change[(layer, c)][i, t]) for layer in layers)
        grid = float(probs[i]) + reduce(
            grid, "(comp token layer) -> comp token layer", "sum", comp=len(components), token=pr.n_prompt
        )
        out.append(
            (
                {c: grid[k] for k, c in enumerate(components)},
                float(object_prob(clean_logits[i : i + 1], pr)[0]),
                float(probs[i]),
            )
        )
    return out


def _change(
    clean: Float[Tensor, "fact seq d"],
    corrupt: Float[Tensor, "row seq d"],
    grad: Float[Tensor, "row seq d"],
    samples: int,
) -> Float[Tensor, "fact seq"]:
    # Mean over noise samples, as the exact trace averages P(object) over them.
    per_row = einsum(
        (clean.repeat_interleave(samples, 0) - corrupt).float(), grad.float(), "row seq d, row seq d -> row seq"
    )
    return reduce(per_row, "(fact sample) seq -> fact seq", "mean", sample=samples).cpu()
