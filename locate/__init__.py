"""Locators: where in a model a fact lives. Every locator returns a :class:`Location`.

``fisher`` is imported from its module (``from locate.fisher import fisher``): a function here
named like its module would hide it.
"""

from locate.attribution_patching import attribute, attribute_many
from locate.causal_trace import TraceError, TraceResult, TraceSettings, trace, trace_nnsight, trace_reference
from locate.feature_data import feature_data
from locate.features import FeatureSettings, locate_features, locate_person_features
from locate.fisher import FisherError, FisherScores, FisherSettings, fisher_diagonal, forget_retain
from locate.location import Location, LocationError, Site
from locate.registry import TRACERS, tracer
from locate.sae_splice import SaeError, load_sae, splice_hook
from locate.sae_train import SHIPPED_SAES, SaeSettings, evaluate_sae, train_sae

__all__ = [
    "Location",
    "LocationError",
    "Site",
    "TraceError",
    "TraceResult",
    "TraceSettings",
    "trace",
    "trace_nnsight",
    "trace_reference",
    "attribute",
    "attribute_many",
    "FisherError",
    "FisherScores",
    "FisherSettings",
    "fisher_diagonal",
    "forget_retain",
    "TRACERS",
    "tracer",
    "FeatureSettings",
    "feature_data",
    "locate_features",
    "locate_person_features",
    "SaeError",
    "load_sae",
    "splice_hook",
    "SHIPPED_SAES",
    "SaeSettings",
    "evaluate_sae",
    "train_sae",
]
