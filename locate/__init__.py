"""Locators: where in a model a fact lives. Every locator returns a :class:`Location`."""

from locate.attribution_patching import attribute, attribute_many
from locate.causal_trace import TraceError, TraceResult, TraceSettings, trace, trace_nnsight, trace_reference
from locate.fisher import FisherError, FisherScores, FisherSettings, fisher, fisher_diagonal, forget_retain
from locate.location import Location, LocationError, Site
from locate.registry import TRACERS, tracer

__all__ = ["Location", "LocationError", "Site", "TraceError", "TraceResult", "TraceSettings", "trace",
           "trace_nnsight", "trace_reference", "attribute", "attribute_many", "FisherError", "FisherScores",
           "FisherSettings", "fisher", "fisher_diagonal", "forget_retain", "TRACERS", "tracer"]
