"""The output-suppression control: only the named people, only from the name on, gone when removed."""

import pytest
import torch

from workbench.verify.suppression import SuppressionSettings, object_direction, suppress_output


def _logits(handle, prompt):
    with torch.no_grad():
        return handle.model(handle.encode(prompt)).logits[0]


def test_only_the_people_named_and_only_from_the_name_on(handle, world):
    people = list(world.people)
    facts = world.facts(people[:2])
    other = world.facts(people[2:4])
    prompt = world.phrasings("pet")[3].prompt(people[0])  # "According to the registry , <name> ..."
    start, end = handle.subject_span(prompt, people[0])
    before, kept = _logits(handle, prompt), _logits(handle, world.phrasings("pet")[3].prompt(people[2]))
    hooks = len(handle.model._forward_pre_hooks)
    with suppress_output(handle, facts) as s:
        assert s.settings == SuppressionSettings()
        after = _logits(handle, prompt)
        assert torch.equal(after[: end - 1], before[: end - 1])  # causal: nothing before the name is read
        assert not torch.allclose(after[end - 1 :], before[end - 1 :])
        assert torch.equal(_logits(handle, world.phrasings("pet")[3].prompt(people[2])), kept)
        assert handle.score(facts).accuracy == 0.0 and handle.score(other).accuracy == 1.0
        assert handle.score(facts, held_out=True).accuracy == 0.0
    assert torch.equal(_logits(handle, prompt), before)  # the hooks are gone
    assert len(handle.model._forward_pre_hooks) == hooks


def test_weaker_or_earlier_suppression(handle, world):
    facts = world.facts(list(world.people)[:3])
    with suppress_output(handle, facts, SuppressionSettings(strength=0.1)):
        weak = handle.score(facts).accuracy
    with suppress_output(handle, facts, SuppressionSettings(layer=1)):
        early = handle.score(facts).accuracy
    assert weak > 0.5 and early < 0.5


def test_direction_raises_its_tokens(handle):
    norm = handle.model.get_submodule(handle.sites.final_norm_path)
    unembed = handle.model.get_submodule(handle.sites.unembed_path)
    tokens = [10, 20]
    d = object_direction(handle, tokens)
    h = torch.randn(128)
    with torch.no_grad():
        gain = unembed(norm(h + 5 * h.norm() * d)) - unembed(norm(h))
    assert (gain[tokens] > 0).all() and float(gain[tokens].min()) > float(gain.median())


def test_two_token_objects_are_scored_whole_while_suppressed(handle, world):
    # The hooks find the name in each pass's tokens, so a continuation after a cached prompt
    # (which holds only the object's tokens) is refused and the pair is run whole instead.
    from workbench.core.metrics import candidate_logprobs, sequence_logprobs
    from workbench.core.prefix_cache import PrefixCacheError, Prefixes

    person = list(world.people)[0]
    prompt = world.phrasings("employer")[0].prompt(person)
    cands = list(world.relation("employer").candidates)[:3]
    with suppress_output(handle, world.facts([person])):
        pre = Prefixes.run(handle.model, [handle.tokenizer(prompt).input_ids], handle.tokenizer.pad_token_id)
        with pytest.raises(PrefixCacheError):
            pre.extend(handle.model, torch.tensor([0]), torch.tensor([[5]]))
        lp = candidate_logprobs(handle.model, handle.tokenizer, [prompt], cands)[0]
        whole = [
            float(sequence_logprobs(handle.model, *map(lambda x: [x], handle.encode_fact(prompt, c)))[0]) for c in cands
        ]
    assert lp.tolist() == pytest.approx(whole, abs=1e-4)
