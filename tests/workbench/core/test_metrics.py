"""Fact metrics: batched scores equal a plain per-prompt computation."""

import math

import pytest
import torch

from workbench.core.metrics import candidate_logprobs, heldout_loss, score_facts, sequence_logprobs


def _by_hand(model, ids: list[int], obj: list[int]) -> float:
    """log P(obj | ids) from one unbatched forward pass."""
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids + obj])).logits[0], -1)
    return float(sum(logp[len(ids) - 1 + k, t] for k, t in enumerate(obj)))


@pytest.mark.parametrize("relation", ["pet", "employer"])  # single- and two-token objects
def test_candidate_logprobs_equal_unbatched(handle, world, relation):
    facts = world.facts(list(world.people)[:5], [relation])
    prompts = [world.phrasings(relation)[i % 9].prompt(f.subject) for i, f in enumerate(facts)]
    cands = list(world.relation(relation).candidates)
    lp = candidate_logprobs(handle.model, handle.tokenizer, prompts, cands, batch_size=7)
    for i, p in enumerate(prompts[:2]):
        for j, c in enumerate(cands[:4]):
            pid, oid = handle.encode_fact(p, c)
            assert float(lp[i, j]) == pytest.approx(_by_hand(handle.model, pid, oid), abs=1e-4)


def test_score_facts_rows_and_ranks(handle, world):
    facts = world.facts(list(world.people)[:4])
    s = score_facts(handle.model, handle.tokenizer, world, facts)
    assert len(s.correct) == len(facts) * 9
    # row order: fact by fact, phrasing by phrasing
    f = facts[7]
    pid, oid = handle.encode_fact(world.phrasings(f.relation)[2].prompt(f.subject), f.object)
    assert float(s.prob[7 * 9 + 2]) == pytest.approx(
        float(sequence_logprobs(handle.model, [pid], [oid]).exp()), rel=1e-4
    )
    assert bool(((s.rank == 0) == s.correct).all())


def test_heldout_loss_skips_names_and_is_low_on_known_people(handle, world):
    statements = world.heldout_statements()[:200]
    texts = [f.sentence(ph) for f, ph in statements]
    with_names = heldout_loss(handle.model, handle.tokenizer, texts)
    without = heldout_loss(handle.model, handle.tokenizer, texts, ignore=[f.subject for f, _ in statements])
    # Names are random draws the model was never asked to predict: they dominate the raw loss.
    # What remains is mostly the surprise of (frame, phrase) pairs never seen in training,
    # far below a uniform guess over the vocabulary.
    assert 0 < without < with_names - 1.0
    assert without < 0.5 * math.log(len(handle.tokenizer))
    assert handle.heldout_loss() == pytest.approx(
        heldout_loss(
            handle.model,
            handle.tokenizer,
            world.heldout_text(),
            ignore=[f.subject for f, _ in world.heldout_statements()],
        )
    )


def test_a_text_longer_than_the_context_is_scored_window_by_window(tmp_path):
    from tiny_models import save_tiny_byte_model

    import workbench

    save_tiny_byte_model(tmp_path / "m", "gpt2")  # 256 positions, one token per byte
    h = workbench.load(tmp_path / "m", device="cpu")
    piece = "the quick brown fox jumps over the lazy dog. " * 5  # 225 bytes: with BOS, one window
    long = heldout_loss(h.model, h.tokenizer, [piece * 26])  # about 5,850 tokens: 23 windows
    assert math.isfinite(long) and abs(long - heldout_loss(h.model, h.tokenizer, [piece])) < 0.05
