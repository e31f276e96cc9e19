"""A prefix run once and continued gives the logits of running every row whole, on every family."""

import pytest
import torch
from tiny_models import FAMILIES, tiny_tokenizer, tiny_word_model

from workbench.core.metrics import candidate_logprobs
from workbench.core.padding import length_buckets
from workbench.core.prefix_cache import PrefixCacheError, Prefixes


def _whole(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


@pytest.mark.parametrize("family", FAMILIES)
def test_continuations_match_whole_rows(family):
    # Rotary families need left-padded prefixes' position ids right.
    model, tok = tiny_word_model(family), tiny_tokenizer()
    prefixes = [tok(t).input_ids for t in ["the cat sat on", "Paris", "the capital of Italy is"]]
    pre = Prefixes.run(model, prefixes, tok.pad_token_id)
    for i, p in enumerate(prefixes):
        torch.testing.assert_close(pre.last_logits[i], _whole(model, p)[-1], atol=1e-5, rtol=1e-4)
    rows = torch.tensor([2, 0, 1, 0])
    tails = [[7, 8], [9], [10, 11], [12, 13]]
    ids = torch.tensor([t + [0] * (2 - len(t)) for t in tails])
    mask = torch.tensor([[1] * len(t) + [0] * (2 - len(t)) for t in tails])
    with torch.no_grad():
        out = pre.extend(model, rows, ids, mask).logits
    for r, (i, t) in enumerate(zip(rows.tolist(), tails, strict=True)):
        whole = _whole(model, prefixes[i] + t)[len(prefixes[i]) :]
        torch.testing.assert_close(out[r, : len(t)], whole, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_prefixes_of_very_different_lengths_run_apart_and_continue_as_whole_rows(family):
    # Enough rows that short and long prefixes run in passes of their own, then share one cache.
    model, tok = tiny_word_model(family), tiny_tokenizer()
    short, long = tok("Paris").input_ids, tok("the cat sat on the mat in the capital of Italy").input_ids
    prefixes = [short, long, []] * 200
    assert len(length_buckets([len(p) for p in prefixes])) > 1
    calls = []
    handle = model.register_forward_pre_hook(lambda m, args, kwargs: calls.append(1), with_kwargs=True)
    pre = Prefixes.run(model, prefixes, tok.pad_token_id)
    handle.remove()
    assert len(calls) > 1 and pre.mask.shape[1] == len(long)
    rows = torch.tensor([0, 1, 3, 4, 598])
    with torch.no_grad():
        out = pre.extend(model, rows, torch.tensor([[7, 8]] * len(rows))).logits
    for r, i in enumerate(rows.tolist()):
        p = prefixes[i]
        torch.testing.assert_close(pre.last_logits[i], _whole(model, p)[-1], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(out[r], _whole(model, p + [7, 8])[len(p) :], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_multi_token_candidates_match_teacher_forcing(family):
    model, tok = tiny_word_model(family), tiny_tokenizer()
    prompts = ["the cat sat on", "the capital of Italy is", "a dog is in"]
    cands = ["Paris France", "Rome", "the mat is"]  # one, two and three tokens
    lp = candidate_logprobs(model, tok, prompts, cands, batch_size=4)  # several prompt batches
    for i, p in enumerate(prompts):
        for j, c in enumerate(cands):
            ids, obj = tok(p).input_ids, tok(" " + c, add_special_tokens=False).input_ids
            logp = _whole(model, ids + obj).log_softmax(-1)
            want = sum(float(logp[len(ids) - 1 + k, t]) for k, t in enumerate(obj))
            assert float(lp[i, j]) == pytest.approx(want, abs=1e-4)


class _NoCache(torch.nn.Module):
    """A model wrapper that ignores ``use_cache``, as some wrapped or remote models do."""

    def __init__(self, model):
        super().__init__()
        self.inner = model

    def forward(self, input_ids, attention_mask=None, **_):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask)


def test_a_model_without_a_cache_is_scored_whole():
    model, tok = tiny_word_model("gpt2"), tiny_tokenizer()
    with pytest.raises(PrefixCacheError):
        Prefixes.run(_NoCache(model), [[2, 5]], 0)
    prompts, cands = ["the cat sat on", "a dog is in"], ["Paris France", "Rome"]
    torch.testing.assert_close(
        candidate_logprobs(_NoCache(model), tok, prompts, cands),
        candidate_logprobs(model, tok, prompts, cands),
        atol=1e-4,
        rtol=1e-4,
    )
