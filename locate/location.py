"""The one result type of every locator and the one input of every editor: a ranked list of sites.

A causal trace, attribution patching, a Fisher mask or an SAE search all answer "where in the
model does this fact live?". They answer with a :class:`Location`: which method, with which
settings, for which target, and a list of :class:`Site` sorted best first. Everything in it is
plain JSON (no tensors), so a location can be saved next to an edit and read back exactly.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from torch import Tensor, nn

from workbench.sites import site_map

SiteKind = Literal["activation", "parameter", "feature"]
SITE_KINDS: tuple[SiteKind, ...] = get_args(SiteKind)
_FIELDS = ("kind", "layer", "component", "token", "param", "feature", "score")


class LocationError(ValueError):
    """A malformed site or location (unknown kind, missing field, unreadable JSON)."""


@dataclass(frozen=True)
class Site:
    """One place in a model with a score: an activation, a parameter tensor or a feature.

    Examples:
        >>> Site("activation", layer=2, component="mlp", token=4, score=0.8)
        Site(kind='activation', layer=2, component='mlp', token=4, param=None, feature=None, score=0.8)
        >>> Site("parameter", param="transformer.h.1.mlp.c_proj.weight", score=3.0).layer is None
        True

    Args:
        kind: "activation" (layer, component, token), "parameter" (param) or "feature" (layer, component, feature).
        layer: Block index, or None where the site has none (a parameter, the embedding).
        component: "resid", "mlp", "attn" or "embed", as in :mod:`workbench.sites`.
        token: Position in the traced prompt, or None for all positions.
        param: A name from ``model.named_parameters()``.
        feature: Index of a dictionary feature (SAE latent, neuron).
        score: Larger is more important; its meaning is the method's (the Location says which).
    """

    kind: SiteKind
    layer: int | None = None
    component: str | None = None
    token: int | None = None
    param: str | None = None
    feature: int | None = None
    score: float = 0.0

    def __post_init__(self):
        if self.kind not in SITE_KINDS:
            raise LocationError(f"unknown site kind {self.kind!r}; expected one of {SITE_KINDS}")
        if self.kind == "parameter" and not self.param:
            raise LocationError("a parameter site needs a parameter name (param=...)")
        if self.kind == "feature" and self.feature is None:
            raise LocationError("a feature site needs a feature index (feature=...)")
        # JSON has one number type: keep the score a Python float so round trips compare equal.
        object.__setattr__(self, "score", float(self.score))


@dataclass
class Location:
    """Where a locator found a fact: ranked sites plus what produced them.

    Sites are kept sorted by score, best first (ties keep their given order).

    Examples:
        >>> loc = Location("causal_trace", {"samples": 10}, {"subject": "Ann Lee"},
        ...                [Site("activation", 1, "mlp", 2, score=0.3), Site("activation", 2, "mlp", 2, score=0.9)])
        >>> loc.best().layer, loc.layers()
        (2, [2, 1])
        >>> len(loc.top(1).sites)
        1
        >>> Location.from_json(loc.to_json()) == loc
        True

    Args:
        method: The locator's name ("causal_trace", "attribution_patching", ...).
        settings: The locator's settings, as a JSON-able dict.
        target: What was located: a fact (subject, relation, object, prompt) or a forget set.
        sites: The sites, any order; stored best first.
        grids: Named 2-D score grids (lists of lists of floats), e.g. causal-trace token x layer maps.
        tokens: The prompt's tokens, so grids and token indices can be read.
        extras: Anything else JSON-able the method wants to keep (baselines, timings).
    """

    method: str
    settings: dict[str, Any] = field(default_factory=dict)
    target: dict[str, Any] = field(default_factory=dict)
    sites: list[Site] = field(default_factory=list)
    grids: dict[str, list[list[float]]] = field(default_factory=dict)
    tokens: list[str] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.sites = sorted(self.sites, key=lambda s: -s.score if not math.isnan(s.score) else math.inf)
        self.grids = {k: _plain_grid(v) for k, v in self.grids.items()}
        self.tokens = [str(t) for t in self.tokens]

    def top(self, k: int) -> Location:
        """A copy keeping only the ``k`` best sites.

        Examples:
            >>> loc = Location("m", sites=[Site("activation", i, "mlp", 0, score=i) for i in range(5)])
            >>> [s.layer for s in loc.top(2).sites]
            [4, 3]
        """
        if k < 0:
            raise LocationError(f"top(k) needs k >= 0, got {k}")
        return replace(self, sites=self.sites[:k])

    def best(self) -> Site:
        """The highest-scoring site.

        Examples:
            >>> Location("m", sites=[Site("activation", 0, "attn", 1, score=0.2)]).best().component
            'attn'
        """
        if not self.sites:
            raise LocationError(f"location of method {self.method!r} has no sites")
        return self.sites[0]

    def layers(self) -> list[int]:
        """Distinct layers of the sites, ordered by each layer's best score.

        Examples:
            >>> Location("m", sites=[Site("activation", 3, "mlp", 0, score=0.1),
            ...                      Site("activation", 1, "mlp", 0, score=0.5),
            ...                      Site("activation", 3, "attn", 2, score=0.4)]).layers()
            [1, 3]
        """
        return list(dict.fromkeys(s.layer for s in self.sites if s.layer is not None))

    def parameter_mask(self, model: nn.Module) -> dict[str, Tensor]:
        """Boolean masks over ``model``'s parameters that the sites point at (whole tensors).

        Parameter sites mask their own tensor; activation and feature sites of component "mlp"
        mask that layer's MLP output projection (the weight ROME and MEMIT rewrite), "attn" the
        attention output projection. Sites of "resid" or "embed" own no weight and are skipped.

        Examples:
            >>> from transformers import AutoModelForCausalLM, GPT2Config
            >>> model = AutoModelForCausalLM.from_config(GPT2Config(n_layer=2, n_embd=32, n_head=4))
            >>> loc = Location("m", sites=[Site("activation", 1, "mlp", 3, score=1.0)])
            >>> {k: bool(v.all()) for k, v in loc.parameter_mask(model).items()}
            {'transformer.h.1.mlp.c_proj.weight': True}

        Args:
            model: The Hugging Face causal LM whose parameter names the masks use.
        """
        sites, params = site_map(model), dict(model.named_parameters())
        names: list[str] = []
        for s in self.sites:
            if s.kind == "parameter":
                if s.param not in params:
                    raise LocationError(f"parameter {s.param!r} is not in {type(model).__name__}")
                names.append(s.param)
            elif s.component in ("mlp", "attn"):
                try:
                    names.append(_out_projection(sites, s.layer, s.component))
                except IndexError as e:
                    raise LocationError(str(e)) from None
        return {n: torch.ones_like(params[n], dtype=torch.bool) for n in dict.fromkeys(names)}

    # -- persistence -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "settings": self.settings, "target": self.target,
                "sites": [asdict(s) for s in self.sites], "grids": self.grids,
                "tokens": self.tokens, "extras": self.extras}

    def to_json(self, indent: int | None = None) -> str:
        """The location as JSON; :meth:`from_json` reads it back equal.

        Examples:
            >>> Location("m").to_json()[:18]
            '{"method": "m", "s'
        """
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Location:
        try:
            sites = [Site(**{k: s.get(k) for k in _FIELDS if k in s}) for s in d.get("sites", [])]
            return cls(d["method"], d.get("settings", {}), d.get("target", {}), sites,
                       d.get("grids", {}), d.get("tokens", []), d.get("extras", {}))
        except (KeyError, TypeError) as e:
            raise LocationError(f"not a location: {e}") from None

    @classmethod
    def from_json(cls, s: str) -> Location:
        """Read a location written by :meth:`to_json`.

        Examples:
            >>> Location.from_json('{"method": "m", "sites": [{"kind": "parameter", "param": "w", "score": 2}]}').best().score
            2.0
        """
        try:
            return cls.from_dict(json.loads(s))
        except json.JSONDecodeError as e:
            raise LocationError(f"not a location: invalid JSON ({e})") from None

    def save(self, path: str | Path) -> Path:
        """Write the location as indented JSON to ``path`` (parents created); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json(indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Location:
        """Read a location saved by :meth:`save`."""
        return cls.from_json(Path(path).read_text())


def _out_projection(sites, layer: int | None, component: str) -> str:
    if layer is None:
        raise LocationError(f"a {component!r} site needs a layer to map to a weight")
    return (sites.mlp_out_path(layer) if component == "mlp" else sites.attn_out_path(layer)) + ".weight"


def _plain_grid(grid: Any) -> list[list[float]]:
    # Tensors and arrays become nested lists of Python floats: JSON-able and exactly comparable.
    if hasattr(grid, "tolist"):
        grid = grid.tolist()
    return [[float(x) for x in row] for row in grid]
