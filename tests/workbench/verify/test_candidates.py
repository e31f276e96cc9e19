"""Candidate tables: any prompts, tagged by fact, ranked the way the fact scorer ranks."""

import torch

from workbench.core.metrics import score_facts
from workbench.verify.candidates import CandidateTable, candidate_table, concat_tables, prompts_table


def test_candidate_table_agrees_with_the_fact_scorer(handle, world):
    facts = world.facts(list(world.people)[:3])
    t = candidate_table(handle, facts, held_out=False)
    s = score_facts(handle.model, handle.tokenizer, world, facts)
    assert torch.equal(t.correct, s.correct) and torch.equal(t.rank(t.true), s.rank)
    assert t.fact.tolist() == [i for i in range(len(facts)) for _ in range(9)]


def test_prompts_table_sorts_rows_by_fact_and_ranks_any_column(handle, world):
    facts = world.facts(list(world.people)[:2], ["pet"])
    prompts = [
        (1, world.phrasings("pet")[0].prompt(facts[1].subject)),
        (0, world.phrasings("pet")[1].prompt(facts[0].subject)),
    ]
    t = prompts_table(handle, facts, prompts)
    assert t.fact.tolist() == [0, 1] and bool(t.correct.all())
    other = (t.true + 1) % t.logprob.shape[1]
    assert bool((t.rank(other) > 0).all())
    assert t.per_fact(t.correct, 3)[:2].tolist() == [1.0, 1.0] and torch.isnan(t.per_fact(t.correct, 3)[2])


def test_concat_pads_to_the_widest_relation(handle, world):
    p = list(world.people)[0]
    a = candidate_table(handle, world.facts([p], ["pet"]), held_out=True)  # 12 candidates
    b = candidate_table(handle, world.facts([p], ["birthplace"]), held_out=True)  # 24
    both = concat_tables([a, b])
    assert both.logprob.shape == (6, 24) and bool(torch.isinf(both.logprob[:3, 12:]).all())
    assert torch.equal(both.correct, torch.cat([a.correct, b.correct]))
    assert isinstance(both, CandidateTable)
