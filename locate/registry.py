"""Locators by name, so the CLI and notebooks pick one without growing ``if method == ...`` chains.

Fact tracers take ``(handle, prompt, subject, object, settings)`` and return a
:class:`~locate.causal_trace.TraceResult`; ``.to_location()`` turns any of them into a Location.
Adding a tracer is one function and one line here.

Examples:
    >>> sorted(TRACERS)
    ['attribution', 'causal', 'nnsight', 'reference']
    >>> tracer("causal").__name__
    'trace'
"""

from __future__ import annotations

from collections.abc import Callable

from locate.attribution_patching import attribute
from locate.causal_trace import TraceResult, trace, trace_nnsight, trace_reference

Tracer = Callable[..., TraceResult]

TRACERS: dict[str, Tracer] = {
    "causal": trace,  # exact, batched on the hooked view
    "attribution": attribute,  # gradient estimate: one forward and one backward
    "nnsight": trace_nnsight,  # exact, through nnsight (the route to remote models)
    "reference": trace_reference,  # exact, one plain forward per cell: slow, for checking
}


def tracer(name: str) -> Tracer:
    """The tracer called ``name``; a one-line ValueError naming the choices otherwise.

    Examples:
        >>> tracer("attribution").__name__
        'attribute'
        >>> tracer("magic")
        Traceback (most recent call last):
        ValueError: unknown trace method 'magic'; choose from attribution, causal, nnsight, reference
    """
    try:
        return TRACERS[name]
    except KeyError:
        raise ValueError(f"unknown trace method {name!r}; choose from {', '.join(sorted(TRACERS))}") from None
