"""Ask a model about some facts every way the report knows: the raw readings a verdict is drawn from.

One :class:`Readings` holds, per check, a :class:`~workbench.verify.candidates.CandidateTable`
of the facts asked (the same facts, in the same order, under every check), so that the edited
model, the original and the retain model can be compared check by check and fact by fact:

* ``surface``: the trained phrasings, as the model was asked in training;
* ``paraphrase``: the held-out phrasings (their table also gives TOFU's truth ratios);
* ``neighbour_first``, ``few_shot``: the in-context prompts of :mod:`~workbench.verify.in_context`;
* ``lens L<l>``: the logit lens after block l (all but the last, which is the output itself);
* ``probe L<l>``: linear probes after block l, trained on retained people;
* ``relearn``: the person's other facts after fine-tuning a copy on some of them;
* ``int8``, ``int4``: the trained phrasings on round-to-nearest quantised copies.

Every check is deterministic: fixed seeds, fixed prompts, copies for anything that trains.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from workbench.core.world.facts import Fact
from workbench.verify.candidates import CandidateTable, candidate_table
from workbench.verify.ensemble import lens_tables_of, probe_tables_of, quantised_of
from workbench.verify.in_context import InContextSettings, attack_table
from workbench.verify.probe import LensSettings, ProbeSettings
from workbench.verify.quantise import QuantiseSettings
from workbench.verify.relearn import RelearnSettings, relearn_attack

# Which kind of attack each check is, for grouping in a report.
GROUPS = {
    "surface": "surface",
    "paraphrase": "paraphrase and in-context",
    "neighbour_first": "paraphrase and in-context",
    "few_shot": "paraphrase and in-context",
    "lens": "hidden states",
    "probe": "hidden states",
    "relearn": "relearning",
    "int": "quantisation",
}


def group_of(check: str) -> str:
    """The kind of attack a check is.

    Examples:
        >>> group_of("probe L2"), group_of("int4"), group_of("surface")
        ('hidden states', 'quantisation', 'surface')
    """
    for prefix, group in GROUPS.items():
        if check == prefix or check.startswith(prefix + " ") or (prefix == "int" and check.startswith("int")):
            return group
    raise KeyError(f"unknown check {check!r}")


@dataclass(frozen=True)
class ReadSettings:
    """How hard each check asks.

    Examples:
        >>> ReadSettings().bits, ReadSettings().in_context.attacks
        ((8, 4), ('neighbour_first', 'few_shot'))

    Args:
        in_context: The in-context attacks (the plain and paraphrase prompts are the
            ``surface`` and ``paraphrase`` checks already).
        lens, probe: Hidden-state readers (:mod:`~workbench.verify.probe`).
        relearn: The relearning attack (:mod:`~workbench.verify.relearn`).
        bits: Quantisation widths tried.
    """

    in_context: InContextSettings = field(
        default_factory=lambda: InContextSettings(attacks=("neighbour_first", "few_shot"))
    )
    lens: LensSettings = field(default_factory=LensSettings)
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    relearn: RelearnSettings = field(default_factory=RelearnSettings)
    bits: tuple[int, ...] = (8, 4)


@dataclass
class Readings:
    """Per check, every candidate's score for each prompt about ``facts``.

    Args:
        model: Name of the model state read.
        facts: The facts asked about; every table's ``fact`` indexes this list.
        tables: Check name -> :class:`CandidateTable`, in the order of :func:`read`.
        prior: Mean over the facts of 1 / number of candidates.
    """

    model: str
    facts: list[Fact]
    tables: dict[str, CandidateTable]
    prior: float

    def accuracy(self, check: str) -> float:
        """Fraction of the check's prompts whose true object ranks first."""
        return float(self.tables[check].correct.float().mean())

    def first(self, check: str, column: Tensor | None = None) -> Float[Tensor, " facts"]:
        """Per fact, the fraction of the check's prompts where an object ranks first.

        ``column`` gives, per fact, the object's column (default: the true object's);
        NaN for a fact the check did not ask about.
        """
        t = self.tables[check]
        cols = t.true if column is None else column[t.fact]
        return t.per_fact(t.rank(cols) == 0, len(self.facts))

    def mean_rank(self, check: str, column: Tensor) -> Float[Tensor, " facts"]:
        """Per fact, the mean rank (0 = first) of an object over the check's prompts."""
        t = self.tables[check]
        return t.per_fact(t.rank(column[t.fact]).float(), len(self.facts))


def read(
    handle,
    facts: Sequence[Fact],
    retain: Sequence[Fact],
    settings: ReadSettings | None = None,
    unseen: Mapping[str, Sequence[str]] | None = None,
    progress: bool = False,
) -> Readings:
    """Read ``facts`` from the model as it is now under every check; the model is not changed.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> people = list(h.world.people)
        >>> s = ReadSettings(probe=ProbeSettings(train_people=40), bits=(8,))
        >>> r = read(h, h.world.facts(people[:1]), h.world.facts(people[1:]), s)
        >>> list(r.tables)  # doctest: +NORMALIZE_WHITESPACE
        ['surface', 'paraphrase', 'neighbour_first', 'few_shot', 'lens L0', 'lens L1', 'lens L2',
         'probe L0', 'probe L1', 'probe L2', 'probe L3', 'relearn', 'int8']
        >>> r.accuracy("surface"), r.first("relearn").isnan().sum().item()  # three relations were relearned
        (1.0, 3)

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle` with a world, in the state to read (an
            applied edit, hooks on the model).
        facts: The facts to ask about (the forgotten or rewritten ones).
        retain: Facts of other people, which the probes train on.
        settings: :class:`ReadSettings`.
        unseen: Per person, relations the relearning attack must not train on (see
            :func:`~workbench.verify.relearn.relearn_attack`).
        progress: Show a bar over the checks (stderr).
    """
    s = settings or ReadSettings()
    facts = list(facts)
    if handle.world is None:
        raise ValueError(f"model {handle.name!r} has no fact world: verification asks about world facts")
    if not facts:
        raise ValueError("no facts to verify")
    steps = ["surface", "paraphrase", *s.in_context.attacks, "lens", "probe", "relearn", *(f"int{b}" for b in s.bits)]
    bar = tqdm(steps, desc=f"reading {handle.name}", leave=False, disable=not progress)
    tables: dict[str, CandidateTable] = {}
    for step in bar:
        if step in ("surface", "paraphrase"):
            tables[step] = candidate_table(handle, facts, held_out=step == "paraphrase")
        elif step in s.in_context.attacks:
            tables[step] = attack_table(handle, facts, step, s.in_context)
        elif step == "lens":
            layers, lens, _ = lens_tables_of(handle, facts, s.lens)  # a SISA ensemble: its worst constituent
            tables |= {
                f"lens L{layer}": t for layer, t in zip(layers, lens, strict=True) if layer != handle.n_layers - 1
            }
        elif step == "probe":
            layers, probes, _, _ = probe_tables_of(handle, facts, retain, s.probe)
            tables |= {f"probe L{layer}": t for layer, t in zip(layers, probes, strict=True)}
        elif step == "relearn":
            table = relearn_attack(handle, facts, s.relearn, unseen).table
            if table is not None:  # None: every fact asked about was among the relearned ones
                tables[step] = table
        else:
            tables[step] = candidate_table(
                quantised_of(handle, QuantiseSettings(bits=int(step[3:]))), facts, held_out=False
            )
    prior = sum(1 / len(handle.world.relation(f.relation).candidates) for f in facts) / len(facts)
    return Readings(handle.name, facts, tables, prior)


def object_columns(world, facts: Sequence[Fact], objects: Sequence[str]) -> torch.Tensor:
    """Per fact, the column of an object (a rewrite's new one) among its relation's candidates.

    Examples:
        >>> import workbench
        >>> w = workbench.make_world()
        >>> f = w.facts()[0]
        >>> object_columns(w, [f], [w.relation(f.relation).candidates[3]]).tolist()
        [3]
    """
    return torch.tensor(
        [list(world.relation(f.relation).candidates).index(o) for f, o in zip(facts, objects, strict=True)]
    )


__all__ = ["GROUPS", "ReadSettings", "Readings", "group_of", "object_columns", "read"]
