"""The checks of a report on a SISA ensemble: the output as one model, the hidden states per constituent.

Checks that read only the output distribution (the plain and paraphrased questions, the
in-context attacks, relearning, membership, truth ratios, held-out loss) run on the ensemble as
they run on any model: its logits are the log of the mean of its constituents' softmaxes.
Quantisation rounds every constituent and averages the rounded ones. The logit lens and the
probes need one model's residual stream, which an average of distributions does not have: they
read each constituent, and per layer the constituent that reads the forgotten objects best
counts, so one constituent that kept a person cannot hide behind the others.

For any other model these functions are the plain checks.
"""

from __future__ import annotations

from collections.abc import Sequence

from workbench.core.handle import ModelHandle
from workbench.core.world.facts import Fact
from workbench.core.world.sisa_manifest import is_sisa_dir
from workbench.core.world.sisa_model import SisaEnsemble, reference_of
from workbench.verify.candidates import CandidateTable
from workbench.verify.probe import LensSettings, ProbeSettings, lens_tables, probe_tables
from workbench.verify.quantise import QuantiseSettings, quantise_model, quantised

NOTE = (
    "The model is a SISA ensemble: the logit lens and the probes read each constituent and the "
    "constituent that reads the forgotten objects best counts; every other check reads the "
    "averaged output."
)


def is_ensemble(handle) -> bool:
    """Whether the handle's model is a SISA ensemble.

    Examples:
        >>> import workbench
        >>> is_ensemble(workbench.load("world"))
        False
    """
    return isinstance(handle.model, SisaEnsemble)


def constituents(handle) -> list[ModelHandle]:
    """One handle per constituent of an ensemble (sharing its tensors, tokenizer and world); else the handle.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> constituents(h) == [h]
        True
    """
    if not is_ensemble(handle):
        return [handle]
    return [
        ModelHandle(
            model=m,
            tokenizer=handle.tokenizer,
            name=f"{handle.name} shard {k}",
            source=handle.source,
            world=handle.world,
        )
        for k, m in enumerate(handle.model.shards)
    ]


def worst(tables: Sequence[Sequence[CandidateTable]]) -> list[CandidateTable]:
    """Per layer, the table (one list per constituent) whose true object ranks first most often.

    Examples:
        >>> import torch
        >>> t = lambda right: CandidateTable(torch.tensor([[0.0, right]]), torch.ones(1, 2), torch.tensor([1]),
        ...                                  torch.tensor([0]))
        >>> [float(x.logprob[0, 1]) for x in worst([[t(-1.0)], [t(1.0)]])]
        [1.0]
    """
    return [max(per_layer, key=lambda t: float(t.correct.float().mean())) for per_layer in zip(*tables, strict=True)]


def lens_tables_of(
    handle, facts: Sequence[Fact], settings: LensSettings | None = None
) -> tuple[tuple[int, ...], list[CandidateTable], float]:
    """:func:`~workbench.verify.probe.lens_tables`, on each constituent of an ensemble, the worst counting."""
    read = [lens_tables(c, facts, settings) for c in constituents(handle)]
    return read[0][0], worst([r[1] for r in read]), read[0][2]


def probe_tables_of(
    handle, forget: Sequence[Fact], retain: Sequence[Fact], settings: ProbeSettings | None = None
) -> tuple[tuple[int, ...], list[CandidateTable], float, tuple[float, ...]]:
    """:func:`~workbench.verify.probe.probe_tables`, on each constituent of an ensemble, the worst counting.

    The training accuracy returned is the lowest of any constituent's, per layer.
    """
    read = [probe_tables(c, forget, retain, settings) for c in constituents(handle)]
    train = tuple(min(accs) for accs in zip(*(r[3] for r in read), strict=True))
    return read[0][0], worst([r[1] for r in read]), read[0][2], train


def quantised_of(handle, settings: QuantiseSettings | None = None) -> ModelHandle:
    """:func:`~workbench.verify.quantise.quantised`; an ensemble is quantised constituent by constituent."""
    if not is_ensemble(handle):
        return quantised(handle, settings)
    s = settings or QuantiseSettings()
    model = SisaEnsemble([quantise_model(c.model, c.sites, s) for c in constituents(handle)], handle.model.manifest)
    return ModelHandle(
        model=model.eval(),
        tokenizer=handle.tokenizer,
        name=f"{handle.name} (RTN int{s.bits})",
        source=handle.source,
        world=handle.world,
    )


def reference_ensemble(handle, people: Sequence[str]) -> str | None:
    """The folder of an ensemble planned as the handle's and trained without all of ``people``, or None.

    That ensemble is the exact answer SISA forgetting must reproduce: the same shards, slices and
    seeds, the people's statements never in any stage. A single retain model is not: averaged
    distributions differ from one model's, so the truth ratios of the two are not comparable.

    Examples:
        >>> import workbench
        >>> reference_ensemble(workbench.load("world"), ["anyone"]) is None
        True
    """
    return reference_of(handle.model, people)


def notes(handle, reference: str | None = None) -> list[str]:
    """What a report must say about how its checks ran on this model (nothing for a single model)."""
    if not is_ensemble(handle):
        return []
    if reference is not None and is_sisa_dir(reference):
        return [NOTE]
    return [
        NOTE,
        f"The reference ({reference or 'none'}) is not an ensemble trained without the forgotten people, "
        "so the comparisons with it are not like with like: train one with `workbench world train sisa "
        "--without SPLIT` (same --shards, --slices and --epochs, beside this one) and verify again.",
    ]


__all__ = [
    "NOTE",
    "constituents",
    "is_ensemble",
    "lens_tables_of",
    "notes",
    "probe_tables_of",
    "quantised_of",
    "reference_ensemble",
    "worst",
]
