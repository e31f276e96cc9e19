"""Locators: where in a model a fact lives. Every locator returns a :class:`Location`."""

from locate.causal_trace import TraceError, TraceResult, TraceSettings, trace, trace_nnsight, trace_reference
from locate.location import Location, LocationError, Site

__all__ = ["Location", "LocationError", "Site", "TraceError", "TraceResult", "TraceSettings", "trace",
           "trace_nnsight", "trace_reference"]
