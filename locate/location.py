"""The one result type of every locator and the one input of every editor: a ranked list of sites.

A causal trace, attribution patching, a Fisher mask or an SAE search all answer "where in the
model does this fact live?". They answer with a :class:`Location`: which method, with which
settings, for which target, and a list of :class:`Site` sorted best first. Everything in it is
plain JSON (no tensors), so a location can be saved next to an edit and read back exactly.

A parameter site may select less than its whole tensor: one unit (``feature``, see
:func:`unit_axis`) or the elements listed in the location's sparse ``masks``. Editors read every
kind through :meth:`Location.parameter_mask`. Locators that score weights (a Fisher, a gradient)
sum their per-parameter scores by unit, MLP neuron or (layer, component) with the functions at
the end of this file.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from jaxtyping import Float
from torch import Tensor, nn

from workbench.core.sites import SiteMap, site_map

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
        component: "resid", "mlp", "attn" or "embed", as in :mod:`workbench.core.sites`.
        token: Position in the traced prompt, or None for all positions.
        param: A name from ``model.named_parameters()``.
        feature: Index of a dictionary feature (SAE latent, neuron). On a parameter site: the one
            unit of the tensor the site selects, indexed along :func:`unit_axis` (for MLP weights,
            the neuron), instead of the whole tensor.
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
        masks: Sparse element masks: parameter name -> sorted flat indices into the tensor as
            stored (row-major). A parameter site whose tensor has an entry selects only those
            elements; without one it selects the whole tensor.
    """

    method: str
    settings: dict[str, Any] = field(default_factory=dict)
    target: dict[str, Any] = field(default_factory=dict)
    sites: list[Site] = field(default_factory=list)
    grids: dict[str, list[list[float]]] = field(default_factory=dict)
    tokens: list[str] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    masks: dict[str, list[int]] = field(default_factory=dict)

    def __post_init__(self):
        self.sites = sorted(self.sites, key=lambda s: -s.score if not math.isnan(s.score) else math.inf)
        self.grids = {k: _plain_grid(v) for k, v in self.grids.items()}
        self.tokens = [str(t) for t in self.tokens]
        self.masks = {str(k): _plain_indices(v) for k, v in self.masks.items()}

    def top(self, k: int) -> Location:
        """A copy keeping only the ``k`` best sites.

        Examples:
            >>> loc = Location("m", sites=[Site("activation", i, "mlp", 0, score=i) for i in range(5)])
            >>> [s.layer for s in loc.top(2).sites]
            [4, 3]
        """
        if k < 0:
            raise LocationError(f"top(k) needs k >= 0, got {k}")
        kept = {s.param for s in self.sites[:k]}
        return replace(self, sites=self.sites[:k], masks={n: v for n, v in self.masks.items() if n in kept})

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
        """Boolean masks over ``model``'s parameters that the sites point at.

        A parameter site masks its whole tensor, or only its unit ``feature`` (along
        :func:`unit_axis`), or only the elements listed in ``masks``; sites on one tensor add up.
        Activation and feature sites of component "mlp" mask that layer's whole MLP output
        projection (the weight ROME and MEMIT rewrite), "attn" the attention output projection.
        Sites of "resid" or "embed" own no weight and are skipped.

        Examples:
            >>> from transformers import AutoModelForCausalLM, GPT2Config
            >>> model = AutoModelForCausalLM.from_config(GPT2Config(n_layer=2, n_embd=32, n_head=4))
            >>> loc = Location("m", sites=[Site("activation", 1, "mlp", 3, score=1.0)])
            >>> {k: bool(v.all()) for k, v in loc.parameter_mask(model).items()}
            {'transformer.h.1.mlp.c_proj.weight': True}
            >>> w = "transformer.h.0.mlp.c_fc.weight"
            >>> sparse = Location("m", sites=[Site("parameter", param=w)], masks={w: [5, 0, 7]})
            >>> sparse.parameter_mask(model)[w].flatten().nonzero().flatten().tolist()
            [0, 5, 7]
            >>> neuron = Location("m", sites=[Site("parameter", param=w, feature=3)]).parameter_mask(model)[w]
            >>> neuron.shape, int(neuron.sum()), bool(neuron[:, 3].all())
            (torch.Size([32, 128]), 32, True)

        Args:
            model: The Hugging Face causal LM whose parameter names the masks use.
        """
        sites, params = site_map(model), dict(model.named_parameters())
        out: dict[str, Tensor] = {}
        for s in self.sites:
            if s.kind == "parameter":
                if s.param not in params:
                    raise LocationError(f"parameter {s.param!r} is not in {type(model).__name__}")
                mask = out.setdefault(s.param, _no_elements(params[s.param]))
                if s.feature is not None:
                    _select_unit(mask, unit_axis(sites, s.param, mask.ndim), s.feature, s.param)
                elif s.param in self.masks:
                    _select_elements(mask, self.masks[s.param], s.param)
                else:
                    mask.fill_(True)
            elif s.component in ("mlp", "attn"):
                try:
                    name = _out_projection(sites, s.layer, s.component)
                except IndexError as e:
                    raise LocationError(str(e)) from None
                out[name] = torch.ones_like(params[name], dtype=torch.bool)
        return out

    # -- persistence -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "settings": self.settings,
            "target": self.target,
            "sites": [asdict(s) for s in self.sites],
            "grids": self.grids,
            "tokens": self.tokens,
            "extras": self.extras,
            "masks": self.masks,
        }

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
            return cls(
                d["method"],
                d.get("settings", {}),
                d.get("target", {}),
                sites,
                d.get("grids", {}),
                d.get("tokens", []),
                d.get("extras", {}),
                d.get("masks", {}),
            )
        except LocationError:
            raise
        except (KeyError, TypeError, ValueError) as e:
            raise LocationError(f"not a location: {e}") from None

    @classmethod
    def from_json(cls, s: str) -> Location:
        """Read a location written by :meth:`to_json`.

        Examples:
            >>> text = '{"method": "m", "sites": [{"kind": "parameter", "param": "w", "score": 2}]}'
            >>> Location.from_json(text).best().score
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


# -- parameter scores by site: shared by every locator that scores weights -------------------
def unit_axis(sites: SiteMap, name: str, ndim: int) -> int:
    """The axis of a parameter tensor, as stored, whose index names one unit of the model.

    For an MLP weight that is the neuron (the output axis of the input projections, the input
    axis of the output projection); for any other weight inside a block the output feature;
    for an embedding (or any tensor outside the blocks) the token or position; for a vector
    its one axis. GPT-2's Conv1D stores weights [d_in, d_out], so its output axis is 1.

    Examples:
        >>> from transformers import AutoModelForCausalLM, GPT2Config
        >>> sm = site_map(AutoModelForCausalLM.from_config(GPT2Config(n_layer=2, n_embd=32, n_head=4)))
        >>> unit_axis(sm, "transformer.h.0.mlp.c_fc.weight", 2), unit_axis(sm, "transformer.h.0.mlp.c_proj.weight", 2)
        (1, 0)
        >>> unit_axis(SiteMap("llama", 2, 32, 64, 4), "model.layers.1.mlp.down_proj.weight", 2)
        1

    Args:
        sites: The model's :class:`~workbench.core.sites.SiteMap`.
        name: A parameter name from ``model.named_parameters()``.
        ndim: The tensor's number of dimensions.
    """
    if ndim < 2:
        return 0
    layer = _block_of(sites, name)
    if layer is None:
        return 0
    out_axis = 1 if sites.weight_is_transposed() else 0
    return 1 - out_axis if name == sites.mlp_out_path(layer) + ".weight" else out_axis


def unit_totals(scores: dict[str, Tensor], sites: SiteMap) -> dict[str, Float[Tensor, " unit"]]:
    """Per tensor, the sum of its scores over each unit (see :func:`~locate.location.unit_axis`).

    Examples:
        >>> w = "transformer.h.0.mlp.c_fc.weight"  # Conv1D: [d_model, d_mlp]
        >>> unit_totals({w: torch.ones(32, 128)}, SiteMap("gpt2", 2, 32, 128, 4))[w].shape
        torch.Size([128])
    """
    out = {}
    for n, s in scores.items():
        axis = unit_axis(sites, n, s.ndim)
        out[n] = s.sum(dim=[d for d in range(s.ndim) if d != axis]) if s.ndim > 1 else s.clone()
    return out


def neuron_totals(scores: dict[str, Tensor], sites: SiteMap) -> Float[Tensor, "layer d_mlp"]:
    """Per MLP neuron, the summed scores of its input-projection rows (and biases) and output column.

    Examples:
        >>> ones = {"model.layers.0.mlp.gate_proj.weight": torch.ones(64, 32),
        ...         "model.layers.0.mlp.up_proj.weight": torch.ones(64, 32),
        ...         "model.layers.0.mlp.down_proj.weight": torch.ones(32, 64)}
        >>> neuron_totals(ones, SiteMap("llama", 2, 32, 64, 4))[:, :2].tolist()  # 32 gate + 32 up + 32 down
        [[96.0, 96.0], [0.0, 0.0]]
    """
    out = torch.zeros(sites.n_layers, sites.d_mlp)
    units = unit_totals(scores, sites)
    for layer in range(sites.n_layers):
        mine = [p + end for p in sites.mlp_in_paths(layer) for end in (".weight", ".bias")]
        for n in mine + [sites.mlp_out_path(layer) + ".weight"]:
            if n in units:
                out[layer] += units[n].float()
    return out


def component_totals(scores: dict[str, Tensor], sites: SiteMap) -> dict[tuple[int | None, str | None], float]:
    """Summed scores per (layer, component), as :func:`parameter_sites` places each parameter.

    Examples:
        >>> from transformers import AutoModelForCausalLM, GPT2Config
        >>> model = AutoModelForCausalLM.from_config(GPT2Config(n_layer=2, n_embd=32, n_head=4))
        >>> ones = {n: torch.ones_like(p) for n, p in model.named_parameters()}
        >>> totals = component_totals(ones, site_map(model))
        >>> totals[(1, "mlp")] == 32 * 128 + 128 + 128 * 32 + 32, totals[(1, "resid")]
        (True, 128.0)
    """
    where = parameter_sites(sites)
    out: dict[tuple[int | None, str | None], float] = {}
    for n, s in scores.items():
        key = where.get(n, (None, None))
        out[key] = out.get(key, 0.0) + float(s.double().sum())
    return out


def parameter_sites(sites: SiteMap) -> dict[str, tuple[int | None, str | None]]:
    """The (layer, component) of every parameter of the site map's model.

    Inside a block: "attn", "mlp" or "resid" (the block's own norms). Outside: (None, "embed")
    for the token embedding, (None, None) for anything else (positions, final norm, unembedding).

    Examples:
        >>> from transformers import AutoModelForCausalLM, GPT2Config
        >>> sm = site_map(AutoModelForCausalLM.from_config(GPT2Config(n_layer=2, n_embd=32, n_head=4)))
        >>> where = parameter_sites(sm)
        >>> [where[f"transformer.{n}"] for n in ("h.1.ln_2.weight", "h.0.attn.c_attn.bias", "wpe.weight")]
        [(1, 'resid'), (0, 'attn'), (None, None)]
    """
    embed = sites.module_path(None, "embed") + "."
    out = {n: (None, "embed" if n.startswith(embed) else None) for n in sites.all_param_names}
    for layer in range(sites.n_layers):
        for c in ("resid", "attn", "mlp"):  # "resid" is the whole block: attn and mlp refine it
            for n in sites.param_names(layer, c):
                out[n] = (layer, c)
    return out


def _block_of(sites: SiteMap, name: str) -> int | None:
    for layer in range(sites.n_layers):
        if name.startswith(sites.module_path(layer, "resid") + "."):
            return layer
    return None


def _no_elements(param: Tensor) -> Tensor:
    # Contiguous whatever the parameter's strides: flat mask indices are row-major positions.
    return torch.zeros(param.shape, dtype=torch.bool, device=param.device)


def _select_unit(mask: Tensor, axis: int, unit: int, name: str) -> None:
    if not 0 <= unit < mask.shape[axis]:
        raise LocationError(f"unit {unit} out of range for {name} ({mask.shape[axis]} units along axis {axis})")
    mask.select(axis, unit).fill_(True)


def _select_elements(mask: Tensor, indices: list[int], name: str) -> None:
    if indices and not 0 <= min(indices) <= max(indices) < mask.numel():
        raise LocationError(f"mask of {name} indexes outside its {mask.numel()} elements")
    mask.view(-1)[torch.tensor(indices, dtype=torch.long, device=mask.device)] = True


def _plain_indices(indices: Any) -> list[int]:
    # Sorted and deduplicated, so equal masks compare and serialise equal whatever their origin.
    if hasattr(indices, "tolist"):
        indices = indices.tolist()
    return sorted({int(i) for i in indices})


def _out_projection(sites, layer: int | None, component: str) -> str:
    if layer is None:
        raise LocationError(f"a {component!r} site needs a layer to map to a weight")
    return (sites.mlp_out_path(layer) if component == "mlp" else sites.attn_out_path(layer)) + ".weight"


def _plain_grid(grid: Any) -> list[list[float]]:
    # Tensors and arrays become nested lists of Python floats: JSON-able and exactly comparable.
    if hasattr(grid, "tolist"):
        grid = grid.tolist()
    return [[float(x) for x in row] for row in grid]
