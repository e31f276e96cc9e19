"""Preference unlearning (dpo, idk): pairs, refusals, the DPO loss, and runs on the world and on one's own model."""

import json
from dataclasses import replace

import pytest
import torch
from tiny_models import save_tiny_byte_model, tiny_byte_tokenizer, tiny_tokenizer
from torch.func import functional_call
from transformers import AutoModelForCausalLM, GPT2Config

from edit.forget import METHODS, forget
from edit.forget_figures import FigureSettings
from edit.forget_request import ForgetError, ForgetRequest, forget_request
from edit.masked_elements import masked_elements
from edit.preference_unlearn import (
    Pair,
    PreferenceSettings,
    dpo_loss,
    encode_pairs,
    pair_batches,
    preference_pairs,
    preference_unlearn,
)
from edit.refusal import REFUSALS, answer_prompts, refusal_rate, refusal_rates, refusals_for
from workbench.cli import main
from workbench.core.data_files import QA, read_qa
from workbench.core.hashing import tensor_hash
from workbench.core.world.as_counterfact import EXAMPLES

FAST = {
    "steps": 12,
    "lr": 1e-2,
    "floor": 0.8,
    "check_every": 3,
    "check_samples": 20,
    "retain_samples": 60,
    "fisher_examples": 32,
    "refusal_samples": 30,
}
SMALL = FigureSettings(retain_facts=20, neighbour_facts=20, heldout_loss=False)


def _hashes(model):
    return {n: tensor_hash(p) for n, p in model.named_parameters()}


@pytest.fixture(scope="module")
def person(world):
    return forget_request(world, list(world.people)[11])


def test_dpo_prefers_one_wrong_candidate_per_fact(handle, world, person):
    pairs = preference_pairs(handle, person, "dpo", seed=0)
    assert len(pairs) == sum(len(world.phrasings(f.relation)) for f in person.forget)
    for f in person.forget:
        mine = [p for p in pairs if p.rejected == f.object and f.subject in p.prompt]
        chosen = {p.chosen for p in mine}
        assert len(chosen) == 1 and f.object not in chosen and chosen <= set(world.relation(f.relation).candidates)
    assert preference_pairs(handle, person, "dpo", seed=0) == pairs
    draws = {tuple(p.chosen for p in preference_pairs(handle, person, "dpo", seed=s)) for s in range(4)}
    assert len(draws) > 1


def test_idk_on_the_world_prefers_the_unknown_token(handle, person):
    tok = handle.tokenizer
    assert tok(" I don't know", add_special_tokens=False).input_ids == [tok.unk_token_id] * 3
    assert refusals_for(tok) == (tok.unk_token,)
    pairs = preference_pairs(handle, person, "idk")
    assert {p.chosen for p in pairs} == {tok.unk_token}
    rejected, chosen = encode_pairs(handle, pairs)
    for (r_ids, r_scored), (c_ids, c_scored) in zip(rejected, chosen, strict=True):
        assert c_ids[: c_scored[0]] == r_ids[: r_scored[0]] and c_ids[c_scored[0] :] == [tok.unk_token_id]


def test_refusal_phrasings_follow_the_tokenizer():
    assert refusals_for(tiny_byte_tokenizer()) == REFUSALS  # bytes spell anything
    assert refusals_for(tiny_tokenizer()) == ("[UNK]",)  # none of the words
    assert refusals_for(tiny_tokenizer(), ["I don't know", "the cat is on a mat"]) == ("the cat is on a mat",)
    with pytest.raises(ForgetError, match="refusals must be non-empty phrasings"):
        PreferenceSettings(method="idk", refusals=("",))


def test_question_answer_records_give_pairs(handle):
    qa = (QA("Where was Ada born?", "Paris", perturbed_answers=("Rome", "Lyon")), QA("What is 2 + 2?", "four"))
    r = ForgetRequest("qa", forget_qa=qa, retain_texts=("Kept.",))
    assert r.forget_data() == [("Where was Ada born?", "Paris"), ("What is 2 + 2?", "four")]
    assert r.to_dict()["forget_texts"] == 2 and r.forget_documents == tuple(q.text for q in qa)
    idk = preference_pairs(handle, r, "idk", refusals=REFUSALS)
    assert [p.rejected for p in idk] == ["Paris", "four"] and {p.chosen for p in idk} <= {handle.tokenizer.unk_token}
    with pytest.raises(ForgetError, match="dpo needs a wrong answer to each question: 'What is 2 \\+ 2\\?'") as e:
        preference_pairs(handle, r, "dpo")
    assert "\n" not in str(e.value)
    one = ForgetRequest("qa", forget_qa=qa[:1], retain_texts=("Kept.",))
    assert preference_pairs(handle, one, "dpo")[0].chosen in ("Rome", "Lyon")
    with pytest.raises(ForgetError, match="overlaps the retain set"):
        ForgetRequest("qa", forget_qa=qa[:1], retain_texts=(qa[0].text,))


@pytest.mark.parametrize("name", ["dpo", "idk"])
def test_plain_texts_are_refused_in_one_line(handle, name):
    texts = ("Tikrelm Robreir was born in Krigril .",), ("Fareiv Stohith works for Nufiol Logistics .",)
    request = ForgetRequest("my data", forget_texts=texts[0], retain_texts=texts[1])
    with pytest.raises(ForgetError, match=f"{name} needs questions with answers") as e:
        forget(handle, request, name, figures=SMALL, progress=False)
    assert "\n" not in str(e.value) and "plain texts" in str(e.value)


def test_dpo_loss_is_dpo_against_the_original_model():
    config = GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=16, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    m = AutoModelForCausalLM.from_config(config).eval()
    name = "transformer.h.0.mlp.c_proj.weight"
    me = masked_elements(m, {name: torch.ones(m.get_parameter(name).shape, dtype=torch.bool)})
    originals = {name: m.get_parameter(name).detach().clone()}
    rejected, chosen = [([1, 2, 3], [2]), ([1, 4, 5, 6], [2, 3])], [([1, 2, 7], [2]), ([1, 4, 9], [2])]
    batch = next(pair_batches(rejected, chosen, batch_size=2, pad=0))
    s = PreferenceSettings(beta=0.5)
    with torch.no_grad():
        me.values[name].add_(0.1)
    me.write()

    def logp(weights=None):
        ids, mask, scored = batch
        out = functional_call(m, weights or {}, (), {"input_ids": ids, "attention_mask": mask}, strict=False)
        lp = torch.log_softmax(out.logits[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]
        return (lp * scored[:, 1:]).sum(-1)

    with torch.no_grad():
        ratio = logp() - logp(originals)
        r, c = ratio[:2], ratio[2:]
        want = -(2 / 0.5) * torch.nn.functional.logsigmoid(0.5 * (c - r)).mean()
    got = dpo_loss(m, s, batch, me)
    assert float(got.detach()) == pytest.approx(float(want), rel=1e-5)
    got.backward()
    assert torch.equal(m.get_parameter(name).detach().reshape(-1), me.values[name].detach())


def test_refusal_rate_counts_greedy_answers_that_start_with_a_phrasing(handle, world, person):
    f = person.forget[0]
    prompts = answer_prompts(handle, [f])
    assert refusal_rate(handle, prompts, [f.object]) == 1.0  # the model's answer is the true object
    assert refusal_rate(handle, prompts) == 0.0
    assert refusal_rates(handle, person, samples=10) == {"refusal_forget": 0.0, "refusal_retain": 0.0}


@pytest.mark.parametrize("name", ["dpo", "idk"])
def test_each_forgets_a_person_changes_declared_tensors_and_reverts_bitwise(handle, person, name):
    before = _hashes(handle.model)
    e = preference_unlearn(handle, person, settings=PreferenceSettings(method=name, **FAST), progress=False)
    try:
        assert e.method == name and e.location.method == "fisher" and e.applied
        assert handle.score(list(person.forget)).accuracy < 0.8
        assert {n for n, h in _hashes(handle.model).items() if h != before[n]} <= set(e.names)
        m = e.metrics
        assert m["refusals"] == [handle.tokenizer.unk_token] and m["refusal_unknown_token"] is True
        assert 0 <= m["refusal_forget"] <= 1 and 0 <= m["refusal_retain"] <= 1
        if name == "idk":  # it learns the stand-in where the true answer was, and not elsewhere
            assert m["refusal_forget"] > m["refusal_retain"]
    finally:
        e.revert(handle.model)
    assert _hashes(handle.model) == before


def test_unapplied_edit_still_reports_refusal_rates(handle, person):
    before = _hashes(handle.model)
    s = PreferenceSettings(method="idk", **{**FAST, "steps": 3, "check_every": 3})
    e = preference_unlearn(handle, person, settings=s, apply=False, progress=False)
    assert not e.applied and _hashes(handle.model) == before and "refusal_forget" in e.metrics


def _fast(monkeypatch, name):
    monkeypatch.setitem(METHODS, name, replace(METHODS[name], fixed={**METHODS[name].fixed, **FAST}))


@pytest.mark.parametrize("name", ["dpo", "idk"])
def test_forget_a_person_from_the_cli(capsys, monkeypatch, world, name):
    _fast(monkeypatch, name)
    code = main(["forget", list(world.people)[13], "--method", name, "--retain-facts", "20", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    o = json.loads(out)
    assert o["method"] == name and o["settings"]["method"] == name and o["tensors"]
    assert o["after"]["forget"] < o["before"]["forget"] and o["edit_metrics"]["refusal_unknown_token"] is True


def test_cli_refuses_dpo_on_plain_texts_in_one_line(capsys, tmp_path, world):
    (tmp_path / "f.jsonl").write_text('{"text": "Tikrelm Robreir was born in Krigril ."}\n')
    (tmp_path / "r.jsonl").write_text('{"text": "Fareiv Stohith works for Nufiol Logistics ."}\n')
    code = main(
        ["forget", "--forget", str(tmp_path / "f.jsonl"), "--retain", str(tmp_path / "r.jsonl"), "--method", "dpo"]
    )
    _, err = capsys.readouterr()
    assert code == 2 and "dpo needs questions with answers" in err and len(err.strip().splitlines()) == 1


def test_idk_on_ones_own_model_with_tofu_files(capsys, monkeypatch, tmp_path):
    save_tiny_byte_model(tmp_path / "m", "gpt2")
    _fast(monkeypatch, "idk")
    forget_file, retain_file = EXAMPLES / "tofu_forget05.json", EXAMPLES / "tofu_retain.json"
    args = ["forget", "--forget", str(forget_file), "--retain", str(retain_file), "-m", str(tmp_path / "m")]
    code = main([*args, "--method", "idk", "--retain-facts", "20", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    o = json.loads(out)
    m = o["edit_metrics"]
    assert o["method"] == "idk" and o["tensors"] and o["request"]["forget_texts"] == len(read_qa(forget_file))
    assert m["refusals"] == list(REFUSALS) and m["refusal_unknown_token"] is False
    assert 0 <= m["refusal_forget"] <= 1 and 0 <= m["refusal_retain"] <= 1
    assert {"forget_text_loss", "retain_text_loss"} <= set(o["after"])


def test_pairs_encode_row_for_row(handle):
    pairs = [
        Pair("Tikrelm Robreir was born in", "Krigril", "Tiarioth"),
        Pair("Tikrelm Robreir works for", "Gastial Systems", "[UNK]"),
    ]
    rejected, chosen = encode_pairs(handle, pairs)
    tok = handle.tokenizer
    assert [tok.decode([r[0][i] for i in r[1]]) for r in rejected] == ["Krigril", "Gastial Systems"]
    assert [tok.decode([c[0][i] for i in c[1]]) for c in chosen] == ["Tiarioth", "[UNK]"]
