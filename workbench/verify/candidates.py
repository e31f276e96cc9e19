"""Every check's raw reading: per prompt, a score for each candidate object of the fact asked about.

A verification check asks the model about a fact in some way (a trained phrasing, a held-out
one, an in-context prompt, a hidden state read by a lens or a probe, a quantised copy) and gets
back one score per candidate of the fact's relation. A :class:`CandidateTable` holds those
scores for many prompts, each tagged with its fact, so that one table answers both questions a
report asks: is the true object still first (forgetting), and where do the old and the new
object rank (rewriting).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from workbench.core.metrics import relation_logprobs
from workbench.core.tokens import encode_object
from workbench.core.world.facts import Fact


@dataclass(frozen=True)
class CandidateTable:
    """Per prompt of some facts: every candidate's score and token count, and the truth.

    Rows are ordered fact by fact; columns follow each relation's candidate order and are
    padded with -inf where a relation has fewer candidates than the widest one. Scores are
    log-probabilities (summed over a candidate's tokens) for the model's own output, or any
    score that ranks the candidates (a lens's logits, a probe's).
    """

    logprob: Float[Tensor, "rows candidates"]  # score of each candidate after the row's prompt
    length: Float[Tensor, "rows candidates"]  # tokens per candidate (1 in padded columns)
    true: Int[Tensor, " rows"]  # column of the true object
    fact: Int[Tensor, " rows"]  # index of the row's fact in the facts given

    @property
    def normalised(self) -> Float[Tensor, "rows candidates"]:
        """log P̄ = log P / |tokens|, TOFU's length normalisation."""
        return self.logprob / self.length

    @property
    def correct(self) -> Tensor:
        """Whether the true object is the top candidate, ranked by its unnormalised log-probability
        as :func:`workbench.core.metrics.score_facts` ranks it."""
        return self.rank(self.true) == 0

    def rank(self, column: Int[Tensor, " rows"]) -> Int[Tensor, " rows"]:
        """Rank of the given column in each row: 0 is the top candidate (ties favour it)."""
        return (self.logprob > self.logprob.gather(1, column[:, None])).sum(1)

    def per_fact(self, values: Tensor, n_facts: int) -> Float[Tensor, " n_facts"]:
        """Mean of a per-row value over each fact's rows; NaN for a fact without rows.

        Examples:
            >>> t = CandidateTable(torch.zeros(3, 2), torch.ones(3, 2), torch.zeros(3, dtype=torch.long),
            ...                    torch.tensor([0, 0, 2]))
            >>> t.per_fact(torch.tensor([1.0, 0.0, 1.0]), 3).tolist()
            [0.5, nan, 1.0]
        """
        sums = torch.zeros(n_facts).index_add_(0, self.fact, values.float())
        counts = torch.zeros(n_facts).index_add_(0, self.fact, torch.ones(len(self.fact)))
        return sums / counts


def concat_tables(tables: Sequence[CandidateTable]) -> CandidateTable:
    """Rows of several tables in one, columns padded to the widest.

    Examples:
        >>> a = CandidateTable(torch.zeros(1, 2), torch.ones(1, 2), torch.tensor([0]), torch.tensor([0]))
        >>> b = CandidateTable(torch.zeros(1, 3), torch.ones(1, 3), torch.tensor([2]), torch.tensor([1]))
        >>> concat_tables([a, b]).logprob.tolist()
        [[0.0, 0.0, -inf], [0.0, 0.0, 0.0]]
    """
    width = max(t.logprob.shape[1] for t in tables)

    def pad(x: Tensor, value: float) -> Tensor:
        return torch.nn.functional.pad(x, (0, width - x.shape[1]), value=value)

    return CandidateTable(
        torch.cat([pad(t.logprob, float("-inf")) for t in tables]),
        torch.cat([pad(t.length, 1.0) for t in tables]),
        torch.cat([t.true for t in tables]),
        torch.cat([t.fact for t in tables]),
    )


def prompts_table(
    handle, facts: Sequence[Fact], prompts: Sequence[tuple[int, str]], batch_size: int = 512
) -> CandidateTable:
    """Score every candidate of each fact's relation after the given (fact index, prompt) pairs.

    Rows come in the order of ``prompts`` after a stable sort by fact.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> f = h.world.facts()[:2]
        >>> t = prompts_table(h, f, [(1, "It is well known that " + f[1].subject + " was born in"),
        ...                          (0, f[0].subject + " was born in")])
        >>> t.fact.tolist(), bool(t.correct.all())
        ([0, 1], True)
    """
    world = handle.world
    if world is None:
        raise ValueError(f"model {handle.name!r} has no fact world to phrase facts with")
    if not prompts:
        raise ValueError("no facts to score")
    relations = [facts[i].relation for i, _ in prompts]
    texts = [p for _, p in prompts]
    logprob = relation_logprobs(handle.model, handle.tokenizer, world, relations, texts, batch_size)
    length = torch.ones_like(logprob)
    for rel in dict.fromkeys(relations):
        rows = [r for r, x in enumerate(relations) if x == rel]
        cands = world.relation(rel).candidates
        length[torch.tensor(rows), : len(cands)] = torch.tensor(
            [float(len(encode_object(handle.tokenizer, texts[rows[0]], c))) for c in cands]
        )
    true = torch.tensor([list(world.relation(facts[i].relation).candidates).index(facts[i].object) for i, _ in prompts])
    fact = torch.tensor([i for i, _ in prompts])
    order = torch.argsort(fact, stable=True)
    return CandidateTable(logprob[order], length[order], true[order], fact[order])


def candidate_table(handle, facts: Sequence[Fact], held_out: bool) -> CandidateTable:
    """Score every candidate of each fact's relation after each of its (held-out) phrasings.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> t = candidate_table(h, h.world.facts()[:6], held_out=True)
        >>> t.logprob.shape, bool(t.correct.all())
        (torch.Size([18, 24]), True)
    """
    world = handle.world
    if world is None:
        raise ValueError(f"model {handle.name!r} has no fact world to phrase facts with")
    if not facts:
        raise ValueError("no facts to score")
    facts = list(facts)
    prompts = [
        (i, ph.prompt(f.subject)) for i, f in enumerate(facts) for ph in world.phrasings(f.relation, held_out=held_out)
    ]
    return prompts_table(handle, facts, prompts)


__all__ = ["CandidateTable", "candidate_table", "concat_tables", "prompts_table"]
