"""One cell of a causal trace, looked at closely: what the model predicts with that state restored.

A trace grid says how much of P(object) comes back when one hidden state is restored under the
corruption. To see what that state carries, :func:`restore_state` runs the same corrupted pass
(the same noise samples, or the same counterfactual subject) with only that state restored and
reads the whole next-token distribution after the prompt, not just the object's probability.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from locate.causal_trace import TraceResult
from locate.trace_problem import TraceError, corrupt_from, layer_window, object_prob, prepare, set_rows


@dataclass(frozen=True)
class RestoredState:
    """The model's prediction with one state of a trace restored under the corruption.

    Args:
        component, token, layer: The cell of the trace grid.
        layers: The layers actually restored (the trace's window around ``layer``).
        prob: P(object) with the state restored, averaged over noise samples: the grid's value.
        top: The most likely next tokens after the prompt, (token, probability averaged over samples).
    """

    component: str
    token: int
    layer: int
    layers: tuple[int, ...]
    prob: float
    top: list[tuple[str, float]]


@torch.no_grad()
def restore_state(handle, result: TraceResult, component: str, token: int, layer: int, k: int = 5) -> RestoredState:
    """Restore one state of ``result``'s trace under its corruption and read the top next tokens.

    Examples:
        >>> import workbench
        >>> from locate.causal_trace import TraceSettings, trace
        >>> h = workbench.load("world", device="cpu")
        >>> f = h.world.facts()[0]
        >>> r = trace(h, h.world.phrasings(f.relation)[0].prompt(f.subject), f.subject, f.object,
        ...           TraceSettings(samples=2), components=("mlp",))
        >>> s = restore_state(h, r, "mlp", len(r.tokens) - 1, 0)
        >>> abs(s.prob - float(r.scores["mlp"][-1, 0])) < 1e-4, s.top[0][0] == f.object
        (True, True)

    Args:
        handle: The :class:`workbench.core.handle.ModelHandle` the trace was made on.
        result: The :class:`~locate.causal_trace.TraceResult`; its settings fix the corruption.
        component: "resid", "mlp" or "attn".
        token, layer: The cell.
        k: How many next tokens to list.

    Raises:
        TraceError: an unknown component, a cell outside the grid.
    """
    n_layers = handle.sites.n_layers
    if not (0 <= token < len(result.tokens) and 0 <= layer < n_layers):
        raise TraceError(f"cell ({token}, {layer}) outside the {len(result.tokens)} x {n_layers} grid")
    s = result.settings
    problem = prepare(handle, result.prompt, result.subject, result.target_object, s, (component,))
    layers = layer_window(layer, s.window if component != "resid" else 1, n_layers)
    bridge, sites = handle.hooked, handle.sites
    names = {sites.hook_name(restored, component): restored for restored in layers}
    _, cache = bridge.run_with_cache(problem.ids[:1], names_filter=lambda n: n in names)
    n = problem.corrupt.shape[0]
    samples = torch.arange(n)
    rows = (samples, torch.full((n,), token))
    hooks = [(sites.hook_name(None, "embed"), lambda x, hook: corrupt_from(x, problem, samples, 0))]
    hooks += [(name, lambda x, hook, name=name: set_rows(x, rows, cache[name][0])) for name in names]
    logits = bridge.run_with_hooks(problem.ids.expand(n, -1), fwd_hooks=hooks)
    probs = torch.softmax(logits[:, problem.n_prompt - 1].float(), -1).mean(0).cpu()
    top = probs.topk(k)
    return RestoredState(
        component,
        token,
        layer,
        layers,
        float(object_prob(logits, problem).mean()),
        [(handle.tokenizer.decode([int(i)]), float(p)) for p, i in zip(top.values, top.indices, strict=True)],
    )


__all__ = ["RestoredState", "restore_state"]
