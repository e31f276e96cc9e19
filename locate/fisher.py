"""Diagonal Fisher information of a forget set and a retain set: which parameters a fact set leans on.

The diagonal empirical Fisher of parameter j over N examples, each scored on its own answer, is
F_j = 1/N sum_i (d log p(y_i | x_i) / d theta_j)^2: the mean of squared per-example gradients,
not the square of a batch gradient. The gradients come from ``torch.func`` (``vmap`` of ``grad``
over a functional call of the model) a chunk at a time, or, where one example's gradient is
already most of the chunk budget, from one plain backward pass per example whose gradients are
squared tensor by tensor as they arrive (:mod:`locate.fisher_squares`). Their squares go into
one running sum per parameter, so memory does not grow with N.

Over a forget set and a retain set that gives forget importance, retain importance and their
ratio; Selective Synaptic Dampening (Foster et al., 2024) dampens exactly the parameters where
forget > alpha x retain. :func:`fisher` returns the raw tensors as :class:`FisherScores`, which
aggregates them per (layer, component), unit and MLP neuron, and keeps the top fraction as a
:class:`~locate.location.Location` whose ``parameter_mask`` a gradient editor restricts itself to.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor
from tqdm.auto import tqdm

from locate.fisher_settings import FisherError, FisherSettings, chunk_size
from locate.fisher_squares import add_chunk_squares, add_example_squares, per_example_mode
from locate.location import Location, Site, component_totals, neuron_totals, parameter_sites, unit_totals
from locate.top_k import top_k_ratio
from workbench.core.examples import Datum, ExampleError, encode_examples
from workbench.core.sites import SiteMap
from workbench.core.world.facts import Fact, World

Scores = dict[str, Tensor]
Which = Literal["forget", "retain", "ratio"]
GRID_ROWS = ("attn", "mlp", "resid")
# Below this many chunks a progress bar is more noise than help.
_QUIET_CHUNKS = 4
# Scores one pass of the top-k selection computes at a time (32 MB of float64).
_PIECE = 2**22


# -- data -------------------------------------------------------------------------------------
def forget_retain(world: World, name: str) -> tuple[list[Fact], list[Fact]]:
    """Forget and retain facts of a world split ("forget05") or of one person (vs everybody else).

    Examples:
        >>> from workbench.core.world.facts import make_world
        >>> w = make_world()
        >>> forget, retain = forget_retain(w, "forget05")
        >>> len(forget), len(retain)
        (90, 1710)
        >>> forget, retain = forget_retain(w, "Tikrelm Robreir")
        >>> {f.subject for f in forget}, len(retain)
        ({'Tikrelm Robreir'}, 1794)

    Args:
        world: The fact world.
        name: A split name (``world.splits``) or a person's full name.
    """
    if name in world.splits:
        split = world.splits[name]
        return world.facts(split.forget), world.facts(split.retain)
    if name in world.people:
        return world.facts([name]), world.facts([p for p in world.people if p != name])
    raise FisherError(
        f"unknown split or person {name!r}: splits are {', '.join(world.splits)}; "
        f"people are full names such as {next(iter(world.people))!r}"
    )


def _examples(handle, data: Sequence[Datum], settings: FisherSettings, what: str) -> list[tuple[list[int], list[int]]]:
    """(token ids, positions whose token is scored) per example, cut to ``max_examples``."""
    try:
        return encode_examples(handle, data, settings.max_examples, settings.seed, what)
    except ExampleError as e:
        raise FisherError(str(e)) from None


def _describe(data: Sequence[Datum], name: str | None, n_examples: int) -> dict:
    people = list(dict.fromkeys(d.subject for d in data if isinstance(d, Fact)))
    out = {"name": name} if name else {}
    out.update(items=len(data), examples=n_examples, n_people=len(people))
    if 0 < len(people) <= 20:
        out["people"] = people
    return out


# -- the estimator ----------------------------------------------------------------------------
def _param_names(handle, which: str) -> list[str]:
    sites: SiteMap = handle.sites
    blocks = tuple(sites.module_path(layer, "resid") + "." for layer in range(sites.n_layers))
    return [n for n, _ in handle.model.named_parameters() if which == "all" or n.startswith(blocks)]


def _diagonal(
    handle,
    examples: list[tuple[list[int], list[int]]],
    names: list[str],
    batch_size: int | None,
    progress: bool,
    desc: str,
) -> Scores:
    model = handle.model
    params = dict(model.named_parameters())
    theta = {n: params[n].detach() for n in names}
    batch_size = chunk_size(list(theta.values()), batch_size)
    sums = {n: torch.zeros(p.shape, dtype=torch.float32, device=p.device) for n, p in theta.items()}
    pad = handle.tokenizer.pad_token_id or 0
    # Similar lengths share a chunk, so little of each chunk is padding.
    order = sorted(range(len(examples)), key=lambda i: len(examples[i][0]))
    chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    bar = tqdm(chunks, desc=desc, disable=not progress or len(chunks) <= _QUIET_CHUNKS)
    with per_example_mode(model):
        if batch_size == 1:
            add_example_squares(model, {n: params[n] for n in names}, sums, (examples[c[0]] for c in bar))
        else:
            add_chunk_squares(model, theta, sums, ([examples[i] for i in chunk] for chunk in bar), pad)
    # In place: the sums become the means, with no second copy of them.
    return {n: s.div_(len(examples)).cpu() for n, s in sums.items()}


def fisher_diagonal(
    handle, data: Sequence[Datum], settings: FisherSettings | None = None, progress: bool = True
) -> Scores:
    """Diagonal empirical Fisher, mean over examples of squared per-example log-likelihood gradients.

    For a fact or a (prompt, object) pair the log-likelihood is log P(object tokens | prompt),
    teacher-forced: the model's own answer is not sampled, the data's answer is scored (the
    empirical Fisher). For a text it is the sum of log P(token | previous tokens) over every
    token after the first. Gradients are exact per example, not per batch.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world", device="cpu")
        >>> F = fisher_diagonal(h, h.world.facts(["Tikrelm Robreir"])[:2])
        >>> name = "transformer.h.0.mlp.c_fc.weight"
        >>> F[name].shape, bool((F[name] >= 0).all()), bool(F[name].sum() > 0)
        (torch.Size([128, 512]), True, True)

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle` (facts need its world).
        data: Texts, world facts (each in all its trained phrasings) or (prompt, object) pairs.
        settings: Uses ``batch_size``, ``max_examples``, ``seed`` and ``params``.
        progress: Show a progress bar (stderr) when there are more than a few chunks.

    Returns:
        Parameter name -> Fisher tensor of the parameter's shape (float32, on the CPU).
    """
    settings = settings or FisherSettings()
    examples = _examples(handle, data, settings, "fisher")
    return _diagonal(handle, examples, _param_names(handle, settings.params), settings.batch_size, progress, "fisher")


def fisher(
    handle,
    forget: str | Sequence[Datum],
    retain: Sequence[Datum] | None = None,
    settings: FisherSettings | None = None,
    progress: bool = True,
) -> FisherScores:
    """Fisher scores of a forget set and, if given, a retain set, with what the Location needs.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world", device="cpu")
        >>> forget, retain = forget_retain(h.world, "Tikrelm Robreir")
        >>> scores = fisher(h, forget[:3], retain[:6])
        >>> scores.n_forget, scores.n_retain
        (27, 54)
        >>> loc = scores.to_location()
        >>> loc.method, loc.best().kind, sum(len(m) for m in loc.masks.values())
        ('fisher', 'parameter', 7931)

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle`.
        forget: Forget data (see :func:`fisher_diagonal`), or a split or person name of the world,
            which also supplies the retain data when ``retain`` is None (see :func:`forget_retain`).
        retain: Retain data; without it only the "forget" score is available.
        settings: :class:`FisherSettings`; defaults if None.
        progress: Show progress bars (stderr) for long runs.

    Raises:
        FisherError: unknown person or split, empty data, "ratio" scoring without retain data.
    """
    settings = settings or FisherSettings()
    name = None
    if isinstance(forget, str):
        if handle.world is None:
            raise FisherError(f"model {handle.name!r} has no fact world to look {forget!r} up in")
        name = forget
        forget, named_retain = forget_retain(handle.world, forget)
        retain = named_retain if retain is None else retain
    if retain is None and settings.score == "ratio":
        raise FisherError("score 'ratio' needs retain data; pass retain=... or use score='forget'")
    start = time.perf_counter()
    names = _param_names(handle, settings.params)
    f_ex = _examples(handle, forget, settings, "forget")
    r_ex = _examples(handle, retain, settings, "retain") if retain is not None else []
    f = _diagonal(handle, f_ex, names, settings.batch_size, progress, "fisher (forget)")
    r = _diagonal(handle, r_ex, names, settings.batch_size, progress, "fisher (retain)") if r_ex else None
    target = {"forget": _describe(forget, name, len(f_ex))}
    if retain is not None:
        target["retain"] = _describe(retain, name, len(r_ex))
    return FisherScores(f, r, settings, handle.sites, target, len(f_ex), len(r_ex), time.perf_counter() - start)


@dataclass(eq=False)
class FisherScores:
    """Diagonal Fisher of a forget set and a retain set, per parameter element; made by :func:`fisher`.

    Scores are "forget", "retain" or "ratio" (forget / (retain + eps)). Aggregates (units,
    neurons, components) sum the Fisher first; their ratio is a ratio of sums.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world", device="cpu")
        >>> forget, retain = forget_retain(h.world, "Tikrelm Robreir")
        >>> s = fisher(h, forget[:2], retain[:4])
        >>> s.neurons("ratio").shape, s.components("forget")[(0, "mlp")] > 0
        (torch.Size([4, 512]), True)
        >>> n = "transformer.h.0.mlp.c_proj.weight"
        >>> bool((s.ssd_mask()[n] == (s.forget[n] > 10 * s.retain[n])).all())
        True

    Args:
        forget: Parameter name -> forget Fisher (float32, on the CPU, the parameter's shape).
        retain: The same over the retain set, or None.
        settings: The settings used; :meth:`to_location` reads the selection fields.
        sites: The model's site map: units, neurons and components are read through it.
        target: What the sets were (names, people, counts), JSON-able.
        n_forget, n_retain: Examples scored in each set.
        seconds: Wall time of encoding and both passes; kept out of the Location, so that stays
            reproducible.
    """

    forget: Scores = field(repr=False)
    retain: Scores | None = field(repr=False)
    settings: FisherSettings
    sites: SiteMap = field(repr=False)
    target: dict = field(default_factory=dict)
    n_forget: int = 0
    n_retain: int = 0
    seconds: float = 0.0

    def score(self, which: Which | None = None) -> Scores:
        """Per-element scores: "forget", "retain" or "ratio"; default the settings' ``score``."""
        return self._aggregate(lambda x: x, which)

    def ssd_mask(self, alpha: float | None = None) -> dict[str, Bool[Tensor, ...]]:
        """Elements where forget > alpha x retain; ``alpha`` defaults to the settings'."""
        return ssd_mask(self.forget, self._need_retain(), self.settings.alpha if alpha is None else alpha)

    def units(self, which: Which | None = None) -> dict[str, Tensor]:
        """Per tensor, scores summed over each unit (MLP neuron, output feature); see :func:`unit_totals`."""
        return self._aggregate(partial(unit_totals, sites=self.sites), which)

    def neurons(self, which: Which | None = None) -> Float[Tensor, "layer d_mlp"]:
        """Per layer and MLP neuron, scores summed over the neuron's weights; see :func:`neuron_totals`."""
        return self._aggregate(partial(neuron_totals, sites=self.sites), which)

    def components(self, which: Which | None = None) -> dict:
        """Per (layer, component), summed scores; see :func:`component_totals`."""
        return self._aggregate(partial(component_totals, sites=self.sites), which)

    def _aggregate(self, total, which):
        which = which or self.settings.score
        if which not in ("forget", "retain", "ratio"):
            raise FisherError(f"unknown score {which!r}; expected 'forget', 'retain' or 'ratio'")
        if which != "ratio":
            return total(self.forget if which == "forget" else self._need_retain())
        f, r, eps = total(self.forget), total(self._need_retain()), self.settings.eps
        return {k: f[k] / (r[k] + eps) for k in f} if isinstance(f, dict) else f / (r + eps)

    def _need_retain(self) -> Scores:
        if self.retain is None:
            raise FisherError("these scores have no retain set: only the 'forget' score is available")
        return self.retain

    def to_location(self, settings: FisherSettings | None = None) -> Location:
        """The top fraction of elements, units or tensors as a Location of parameter sites.

        "element": one site per tensor holding selected elements (scored by the selection's
        forget sum, or its ratio of sums), the elements themselves in ``masks``. "row": one site
        per selected unit (``feature`` = its index). "tensor": one site per selected tensor.
        Same scores and settings give the same Location, JSON included.

        Examples:
            >>> import workbench
            >>> from dataclasses import replace
            >>> h = workbench.load("world", device="cpu")
            >>> s = fisher(h, h.world.facts(["Tikrelm Robreir"])[:2], settings=FisherSettings(score="forget"))
            >>> rows = s.to_location(replace(s.settings, granularity="row", top_fraction=0.001))
            >>> len(rows.sites), rows.best().feature is not None
            (13, True)

        Args:
            settings: Selection settings (``top_fraction``, ``granularity``, ``score``, ``eps``);
                default the ones the scores were computed with.
        """
        s = settings or self.settings
        names = list(self.forget)
        f_c = _candidates(self.forget, s.granularity, self.sites)
        r_c = _candidates(self._need_retain(), s.granularity, self.sites) if s.score == "ratio" else None
        n = sum(f_c[name].numel() for name in names)
        k = n if s.top_fraction is None else max(1, math.ceil(s.top_fraction * n))
        # Ranked a piece at a time: one flat float64 copy of every element's score would be twice
        # the model's size (docs/forget.md#memory-on-a-124m-model).
        chosen_of, threshold = top_k_ratio(f_c, r_c, k, s.eps)
        where, sites, masks, elements = parameter_sites(self.sites), [], {}, 0
        for name in names:
            chosen = chosen_of.pop(name)
            # How many elements each candidate covers.
            elements += len(chosen) * (self.forget[name].numel() // max(f_c[name].numel(), 1))
            layer, comp = where.get(name, (None, None))
            if s.granularity == "row":
                unit_scores = f_c[name].double() if r_c is None else f_c[name].double() / (r_c[name].double() + s.eps)
                sites += [
                    Site("parameter", layer, comp, param=name, feature=int(u), score=float(unit_scores[u]))
                    for u in chosen
                ]
            elif len(chosen):
                f_sum = float(self.forget[name].flatten()[chosen].double().sum())
                site_score = (
                    f_sum
                    if s.score == "forget"
                    else f_sum / (float(self._need_retain()[name].flatten()[chosen].double().sum()) + s.eps)
                )
                sites.append(Site("parameter", layer, comp, param=name, score=site_score))
                if s.granularity == "element" and len(chosen) < self.forget[name].numel():
                    masks[name] = chosen.tolist()
        grids = {"forget": _grid(self.components("forget"), self.sites.n_layers)}
        if self.retain is not None:
            grids["retain"] = _grid(self.components("retain"), self.sites.n_layers)
        extras = {
            "grid_rows": list(GRID_ROWS),
            "candidates": n,
            "selected": k,
            "threshold": threshold,
            "elements": elements,
            "total_elements": sum(t.numel() for t in self.forget.values()),
            "examples": {"forget": self.n_forget, "retain": self.n_retain},
        }
        if self.retain is not None:
            # A piece at a time: the masks of every tensor at once are a quarter of the model's size.
            f, r = self.forget, self.retain
            extras["ssd_elements"] = sum(
                int((f[name].flatten()[a : a + _PIECE] > s.alpha * r[name].flatten()[a : a + _PIECE]).sum())
                for name in f
                for a in range(0, f[name].numel(), _PIECE)
            )
        return Location("fisher", asdict(s), self.target, sites, grids=grids, extras=extras, masks=masks)


def _candidates(scores: Scores, granularity: str, sites: SiteMap) -> Scores:
    if granularity == "element":
        return scores
    if granularity == "row":
        return unit_totals(scores, sites)
    return {n: t.double().sum().reshape(1) for n, t in scores.items()}


def _grid(totals: dict, n_layers: int) -> list[list[float]]:
    return [[float(totals.get((layer, c), 0.0)) for layer in range(n_layers)] for c in GRID_ROWS]


# -- criteria: pure functions of the Fisher tensors --------------------------------------------
def fisher_ratio(forget: Scores, retain: Scores, eps: float = 1e-12) -> Scores:
    """Forget importance over retain importance, forget / (retain + eps), per element.

    Examples:
        >>> fisher_ratio({"w": torch.tensor([2.0, 0.0])}, {"w": torch.tensor([1.0, 1.0])})["w"].tolist()
        [2.0, 0.0]
    """
    return {n: f / (retain[n] + eps) for n, f in forget.items()}


def ssd_mask(forget: Scores, retain: Scores, alpha: float = 10.0) -> dict[str, Bool[Tensor, ...]]:
    """Selective Synaptic Dampening's selection: the elements where forget > alpha x retain.

    Examples:
        >>> m = ssd_mask({"w": torch.tensor([5.0, 20.0, 1.0])}, {"w": torch.tensor([1.0, 1.0, 0.0])}, alpha=10)
        >>> m["w"].tolist()
        [False, True, True]
    """
    return {n: f > alpha * retain[n] for n, f in forget.items()}
