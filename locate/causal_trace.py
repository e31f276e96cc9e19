"""ROME-style causal tracing: which hidden states carry a fact from the subject to the answer.

Meng et al. (2022) corrupt the subject's token embeddings, then restore one clean hidden state
at a time and measure how much of P(object) comes back. A state that restores a lot carries the
fact. Here every restoration is one row of a batch: a forward hook overwrites, per row, one
(token, layer window) of one component with its clean value, so a whole grid costs a handful of
batched passes. :func:`trace_reference` computes the same numbers one forward at a time with
plain torch hooks (the specification), :func:`trace_nnsight` through nnsight (the route to remote
models); the tests hold all three equal.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial

import torch
from einops import reduce
from jaxtyping import Float, Int
from torch import Tensor
from transformers import DynamicCache

from locate.location import Location, Site
from locate.trace_problem import (
    TRACE_COMPONENTS,
    TraceError,
    TraceProblem,
    TraceSettings,
    corrupt_from,
    object_prob,
    prepare,
    set_rows,
)
from workbench.core.views import envoy_at, nnsight_module

# Within a block, attention runs before the MLP, and both before the block output: nnsight
# must be asked for them in that order.
_EXECUTION_ORDER = ("attn", "mlp", "resid")


@dataclass
class TraceResult:
    """A causal trace of one prompt: P(object) with each state restored, and its two baselines.

    Args:
        scores: Component -> [token, layer] P(object) when that state is restored (prompt tokens only).
        clean: P(object) of the clean run.
        corrupted: P(object) with the subject corrupted and nothing restored.
        subject_span: Token span [start, end) of the subject.
        tokens: The prompt's tokens.
        settings: The settings used.
        prompt, subject, target_object: The traced fact.
        replacement: The counterfactual subject, if that corruption was used.
        method: The locator that produced the scores ("causal_trace", "attribution_patching").
    """

    scores: dict[str, Float[Tensor, "token layer"]]
    clean: float
    corrupted: float
    subject_span: tuple[int, int]
    tokens: list[str]
    settings: TraceSettings
    prompt: str = ""
    subject: str = ""
    target_object: str = ""
    replacement: str | None = None
    method: str = "causal_trace"

    def indirect_effect(self, component: str) -> Float[Tensor, "token layer"]:
        """P(object) restored minus P(object) corrupted, for one component."""
        return self.scores[component] - self.corrupted

    def to_location(self) -> Location:
        """The trace as a :class:`Location`: activation sites ranked by indirect effect, grids attached.

        Grids hold the raw restored probabilities; site scores subtract the corrupted baseline.
        """
        sites = [
            Site("activation", layer=layer, component=c, token=t, score=float(ie[t, layer]))
            for c in self.scores
            for ie in [self.indirect_effect(c)]
            for t, layer in itertools.product(range(ie.shape[0]), range(ie.shape[1]))
        ]
        return Location(
            self.method,
            asdict(self.settings),
            {"prompt": self.prompt, "subject": self.subject, "object": self.target_object},
            sites,
            grids={c: g for c, g in self.scores.items()},
            tokens=self.tokens,
            extras={
                "clean": self.clean,
                "corrupted": self.corrupted,
                "subject_span": list(self.subject_span),
                "replacement": self.replacement,
            },
        )


# A runner does one forward with the subject corrupted by noise samples `samples` (one row each)
# and, for each (layer, component), rows[i] at token toks[i] set to the clean state. It returns
# the logits from position `start` on: every restoration in the pass is at token `start` or later,
# so earlier positions are those of the corrupted run and a runner may reuse them. The first call
# is always the plain corrupted run of every sample (start 0, nothing restored).
Restores = dict[tuple[int, str], tuple[Tensor, Tensor]]
Runner = Callable[[Tensor, Restores, int], Tensor]


def _grid(
    problem: TraceProblem,
    clean_logits: Tensor,
    run: Runner,
    settings: TraceSettings,
    handle,
    components,
    prompt,
    subject,
    target_object,
    skip_unchanged: bool = True,
) -> TraceResult:
    samples, batch_size = problem.corrupt.shape[0], settings.batch_size
    baseline = object_prob(run(torch.arange(samples), {}, 0), problem)
    probs = baseline[:, None].repeat(1, len(problem.cells))
    by_token: dict[int, list[int]] = {}
    for i, (_, t, _, _) in enumerate(problem.cells):
        # The model is causal and only the subject is corrupted: states before it are already
        # clean, so restoring one changes nothing and the row would equal the baseline.
        if t >= problem.span[0] or not skip_unchanged:
            by_token.setdefault(t, []).append(i)
    for t, cells in by_token.items():
        start = t if skip_unchanged else 0
        rows = list(itertools.product(range(samples), cells))
        for first in range(0, len(rows), batch_size):
            chunk = rows[first : first + batch_size]
            restores: dict[tuple[int, str], list[tuple[int, int]]] = {}
            for i, (_, cell) in enumerate(chunk):
                c, t, _, layers = problem.cells[cell]
                for layer in layers:
                    restores.setdefault((layer, c), []).append((i, t))
            idx = {k: tuple(torch.tensor(x) for x in zip(*v, strict=True)) for k, v in restores.items()}
            rows_s, rows_c = (torch.tensor(x) for x in zip(*chunk, strict=True))
            probs[rows_s, rows_c] = object_prob(run(rows_s, idx, start), problem, start)
    mean = reduce(
        probs, "sample (comp token layer) -> comp token layer", "mean", comp=len(components), token=problem.n_prompt
    )
    return TraceResult(
        {c: mean[i] for i, c in enumerate(components)},
        float(object_prob(clean_logits, problem)[0]),
        float(baseline.mean()),
        problem.span,
        handle.tokens(prompt),
        settings,
        prompt,
        subject,
        target_object,
        problem.replacement,
    )


def _on_first(output, fn):
    # Attention modules return (output, weights, ...): only the first element is the state.
    return (fn(output[0]), *output[1:]) if isinstance(output, tuple) else fn(output)


# -- batched, through TransformerLens' bridge ------------------------------------------------
@torch.no_grad()
def trace(
    handle,
    prompt: str,
    subject: str,
    target_object: str,
    settings: TraceSettings | None = None,
    components: tuple[str, ...] = TRACE_COMPONENTS,
) -> TraceResult:
    """Causal trace of one fact, every restoration a row of a batched pass on ``handle.hooked``.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world", device="cpu")
        >>> f = h.world.facts()[0]
        >>> r = trace(h, h.world.phrasings(f.relation)[0].prompt(f.subject), f.subject, f.object,
        ...           TraceSettings(samples=2))
        >>> tuple(r.scores["mlp"].shape) == (len(r.tokens), h.n_layers), r.clean > r.corrupted
        (True, True)

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle`.
        prompt: The prompt, ending where the object should follow.
        subject: The subject as it appears in the prompt (its last occurrence is corrupted).
        target_object: The object whose probability is measured; multi-token objects are
            teacher-forced and their token probabilities multiplied.
        settings: :class:`TraceSettings`; defaults if None.
        components: Which of "resid", "mlp", "attn" to trace.

    Raises:
        TraceError: unknown component, window out of range, bad settings.
        EncodingError: subject not in the prompt, words the tokenizer does not know.
    """
    settings = settings or TraceSettings()
    problem = prepare(handle, prompt, subject, target_object, settings, tuple(components))
    bridge, sites = handle.hooked, handle.sites
    names = {sites.hook_name(layer, c): (layer, c) for layer, c in problem.sites}
    clean_logits, cache = bridge.run_with_cache(problem.ids[:1], names_filter=lambda n: n in names)
    clean = {site: cache[name][0] for name, site in names.items()}
    embed = sites.hook_name(None, "embed")
    corrupted = DynamicCache()  # keys and values of every sample's corrupted run, filled by the first pass

    def run(samples, idx, start):
        past = _rows_of(corrupted, samples, start) if start else corrupted if not idx else None
        hooks = [(embed, lambda x, hook: corrupt_from(x, problem, samples, start))]
        hooks += [
            (sites.hook_name(layer, c), lambda x, hook, i=i, k=(layer, c): set_rows(x, i, clean[k], start))
            for (layer, c), i in idx.items()
        ]
        n = len(samples)
        return bridge.run_with_hooks(
            problem.ids[:, start:].expand(n, -1), fwd_hooks=hooks, past_key_values=past, use_cache=True
        )

    return _grid(problem, clean_logits, run, settings, handle, tuple(components), prompt, subject, target_object)


def _rows_of(cache: DynamicCache, samples: Int[Tensor, " row"], start: int) -> DynamicCache:
    """The corrupted run's keys and values before ``start``, one copy per row's noise sample."""
    if cache.get_seq_length() < start:
        # Some transformers / TransformerLens pairs pass the cache under a name the other ignores;
        # continuing would score every cell against an empty prefix.
        raise TraceError(
            "the hooked view did not fill the key-value cache of the corrupted run "
            "(a transformers / transformer-lens version mismatch); see pyproject.toml's pins"
        )
    out = DynamicCache()
    for i, layer in enumerate(cache.layers):
        out.update(layer.keys[samples, :, :start], layer.values[samples, :, :start], i)
    return out


# -- reference: one plain forward per cell ---------------------------------------------------
@torch.no_grad()
def trace_reference(
    handle,
    prompt: str,
    subject: str,
    target_object: str,
    settings: TraceSettings | None = None,
    components: tuple[str, ...] = TRACE_COMPONENTS,
) -> TraceResult:
    """The same trace, one forward of the Hugging Face model per (sample, cell): slow and obvious.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world", device="cpu")
        >>> f = h.world.facts()[0]
        >>> p = h.world.phrasings(f.relation)[0].prompt(f.subject)
        >>> s = TraceSettings(samples=1)
        >>> bool(torch.allclose(trace_reference(h, p, f.subject, f.object, s, ("mlp",)).scores["mlp"],
        ...                     trace(h, p, f.subject, f.object, s, ("mlp",)).scores["mlp"], atol=1e-5))
        True

    Arguments and errors are those of :func:`trace`.
    """
    settings = settings or TraceSettings()
    problem = prepare(handle, prompt, subject, target_object, settings, tuple(components))
    model, sites = handle.model, handle.sites
    clean: dict[tuple[int, str], Tensor] = {}
    hooks = [
        sites.module(model, layer, c).register_forward_hook(
            lambda m, args, out, k=(layer, c): clean.__setitem__(k, (out[0] if isinstance(out, tuple) else out)[0])
        )
        for layer, c in problem.sites
    ]
    try:
        clean_logits = model(problem.ids[:1]).logits
    finally:
        for h in hooks:
            h.remove()

    def set_embed(module, args, out, samples):
        return corrupt_from(out, problem, samples, 0)

    def run_one(sample, idx):
        hooks = [sites.module(model, None, "embed").register_forward_hook(partial(set_embed, samples=sample))]
        hooks += [
            sites.module(model, layer, c).register_forward_hook(
                lambda m, args, out, i=i, k=(layer, c): _on_first(out, lambda x: set_rows(x, i, clean[k]))
            )
            for (layer, c), i in idx.items()
        ]
        try:
            return model(problem.ids).logits
        finally:
            for h in hooks:
                h.remove()

    def run(samples, idx, start):
        # Unbatch: row r alone, with only its own restorations, the whole prompt every time.
        rows = []
        for r in range(len(samples)):
            mine = {k: (torch.zeros_like(rs[rs == r]), ts[rs == r]) for k, (rs, ts) in idx.items() if (rs == r).any()}
            rows.append(run_one(samples[r : r + 1], mine))
        return torch.cat(rows)[:, start:]

    return _grid(
        problem,
        clean_logits,
        run,
        settings,
        handle,
        tuple(components),
        prompt,
        subject,
        target_object,
        skip_unchanged=False,
    )


# -- through nnsight -------------------------------------------------------------------------
@torch.no_grad()
def trace_nnsight(
    handle,
    prompt: str,
    subject: str,
    target_object: str,
    settings: TraceSettings | None = None,
    components: tuple[str, ...] = TRACE_COMPONENTS,
) -> TraceResult:
    """The same batched trace, with the interventions written as nnsight code on ``handle.nnsight``.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world", device="cpu")
        >>> f = h.world.facts()[0]
        >>> r = trace_nnsight(h, h.world.phrasings(f.relation)[0].prompt(f.subject), f.subject, f.object,
        ...                   TraceSettings(samples=1), components=("mlp",))
        >>> list(r.scores)
        ['mlp']

    Arguments and errors are those of :func:`trace`.
    """
    settings = settings or TraceSettings()
    problem = prepare(handle, prompt, subject, target_object, settings, tuple(components))
    lm, sites = handle.nnsight, handle.sites
    order = sorted(problem.sites, key=lambda s: (s[0], _EXECUTION_ORDER.index(s[1])))
    # nnsight runs the body elsewhere: only mutated outer objects and .save()d values come back.
    saved: dict[tuple[int, str], Tensor] = {}
    with lm.trace(problem.ids[:1]):
        for layer, c in order:
            out = nnsight_module(lm, sites, layer, c).output
            saved[(layer, c)] = (out[0] if isinstance(out, tuple) else out)[0].save()
        clean_logits = envoy_at(lm, sites.unembed_path).output.save()
    clean = {k: torch.as_tensor(v) for k, v in saved.items()}
    a, b = problem.span

    def run(samples, idx, start):
        with lm.trace(problem.ids.expand(len(samples), -1)):
            emb = nnsight_module(lm, sites, None, "embed").output
            emb[:, a:b] = problem.corrupt[samples].to(emb.device, emb.dtype)
            for layer, c in order:
                if (layer, c) in idx:
                    out = nnsight_module(lm, sites, layer, c).output
                    x = out[0] if isinstance(out, tuple) else out
                    rows, toks = idx[(layer, c)]
                    x[rows, toks] = clean[(layer, c)][toks].to(x.dtype)
            logits = envoy_at(lm, sites.unembed_path).output.save()
        return logits[:, start:]

    return _grid(problem, clean_logits, run, settings, handle, tuple(components), prompt, subject, target_object)
