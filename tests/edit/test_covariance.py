"""Key statistics: the right matrix, streamed to a sample count, cached by weights, layer and text."""

import pytest
import torch
from safetensors.torch import save_file
from tiny_models import tiny_handle

import workbench
from edit.covariance import CacheWarning, default_samples, key_statistics, layer_statistics


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    return tmp_path


@pytest.fixture()
def fresh():
    return workbench.load("world", device="cpu")


def _keys(handle, layer, texts):
    got = []
    module = handle.model.get_submodule(handle.sites.key_module_path(layer))
    hook = module.register_forward_pre_hook(lambda m, args: got.append(args[0][0].double()))
    try:
        with torch.no_grad():
            for t in texts:
                handle.model(handle.encode(t))
    finally:
        hook.remove()
    return torch.cat(got)


def test_equals_the_mean_outer_product_of_the_keys(fresh):
    texts = fresh.world.training_sentences()[:40]
    stats = key_statistics(fresh, 2, texts, samples=10**9, batch_size=7, progress=False)
    k = _keys(fresh, 2, texts)  # one text at a time: no padding to get wrong
    assert stats.count == k.shape[0]
    torch.testing.assert_close(
        stats.second_moment, k.T @ k / k.shape[0], atol=1e-6, rtol=1e-4
    )  # batched float32 forwards
    torch.testing.assert_close(stats.mean, k.mean(0), atol=1e-6, rtol=1e-4)


def test_stops_after_the_sample_count(fresh):
    stats = key_statistics(fresh, 0, samples=500, batch_size=8, progress=False)
    assert 500 <= stats.count < 500 + 8 * 64
    assert default_samples(fresh.sites.d_mlp) == 16 * 512


def test_cached_on_disk_and_reused(fresh, private_cache):
    texts = fresh.world.training_sentences()[:30]
    first = key_statistics(fresh, 1, texts, samples=10**9, progress=False)
    assert len(list((private_cache / "covariance").glob("*.safetensors"))) == 1
    calls = []
    h = fresh.model.register_forward_hook(lambda *a: calls.append(1))
    try:
        again = key_statistics(fresh, 1, texts, samples=10**9, progress=False)
    finally:
        h.remove()
    assert calls == [] and again.key == first.key
    assert torch.equal(again.second_moment, first.second_moment)


def test_cache_key_follows_weights_layer_samples_and_text(fresh):
    texts = fresh.world.training_sentences()[:20]
    base = key_statistics(fresh, 1, texts, samples=10**9, progress=False).key
    assert key_statistics(fresh, 2, texts, samples=10**9, progress=False).key != base
    assert key_statistics(fresh, 1, texts[:10], samples=10**9, progress=False).key != base
    assert key_statistics(fresh, 1, texts, samples=100, progress=False).key != base
    later = fresh.sites.mlp_out_path(3) + ".weight"
    fresh.model.get_parameter(later).data.add_(1.0)  # a later layer: keys at layer 1 are unchanged
    assert key_statistics(fresh, 1, texts, samples=10**9, progress=False).key == base
    earlier = fresh.sites.mlp_out_path(0) + ".weight"
    fresh.model.get_parameter(earlier).data.add_(1.0)
    assert key_statistics(fresh, 1, texts, samples=10**9, progress=False).key != base


@pytest.mark.parametrize("family", ["llama", "gpt_neox"])
def test_other_families(family):
    h = tiny_handle(family)
    stats = key_statistics(h, -1, ["the cat sat on a mat", "Paris is the capital of France"], progress=False)
    assert stats.layer == 1 and stats.second_moment.shape == (h.sites.d_mlp, h.sites.d_mlp)


def test_errors(fresh):
    with pytest.raises(ValueError, match="layer 4 out of range 0..3"):
        key_statistics(fresh, 4)
    with pytest.raises(ValueError, match="has no fact world"):
        key_statistics(tiny_handle("gpt2"), 0)


def test_last_position_takes_one_key_per_text(fresh):
    texts = [ph.prompt(p) for p in list(fresh.world.people)[:5] for ph in fresh.world.phrasings("pet")]
    stats = key_statistics(fresh, 0, texts, samples=10**9, batch_size=6, progress=False, position="last")
    k = torch.stack([_keys(fresh, 0, [t])[-1] for t in texts])
    assert stats.count == len(texts)
    torch.testing.assert_close(stats.second_moment, k.T @ k / len(texts), atol=1e-6, rtol=1e-4)
    assert key_statistics(fresh, 0, position="last", samples=300, progress=False).count >= 300
    with pytest.raises(ValueError, match="unknown position"):
        key_statistics(fresh, 0, texts, position="first")


@pytest.mark.parametrize("damage", ["truncated", "empty", "nan", "wrong shape"])
def test_a_damaged_cache_entry_is_named_and_rebuilt(fresh, private_cache, damage):
    texts = fresh.world.training_sentences()[:20]
    good = key_statistics(fresh, 1, texts, samples=10**9, progress=False)
    (entry,) = (private_cache / "covariance").iterdir()
    if damage == "truncated":
        entry.write_bytes(entry.read_bytes()[:100])
    elif damage == "empty":
        entry.write_bytes(b"")
    elif damage == "nan":
        save_file(
            {"second_moment": good.second_moment * float("nan"), "mean": good.mean, "count": torch.tensor(1)}, entry
        )
    else:
        save_file(
            {"second_moment": good.second_moment[:3, :3].contiguous(), "mean": good.mean, "count": torch.tensor(1)},
            entry,
        )
    with pytest.warns(CacheWarning, match=f"cache entry {entry} is damaged"):
        again = key_statistics(fresh, 1, texts, samples=10**9, progress=False)
    assert torch.equal(again.second_moment, good.second_moment) and again.count == good.count
    assert torch.equal(key_statistics(fresh, 1, texts, samples=10**9, progress=False).mean, good.mean)


@pytest.mark.parametrize("family", ["gpt2", "gpt_neox", "llama"])
def test_a_document_longer_than_the_context_is_read_window_by_window(family, tmp_path):
    from tiny_models import save_tiny_byte_model

    save_tiny_byte_model(tmp_path / "m", family)  # 256 positions, one token per byte
    h = workbench.load(tmp_path / "m", device="cpu")
    doc = "the quick brown fox jumps over the lazy dog. " * 135  # 6,075 bytes: 24 windows
    n_tokens = len(h.tokenizer(doc)["input_ids"])
    every = key_statistics(h, 0, texts=[doc], samples=10**6, position="all", use_cache=False, progress=False)
    last = key_statistics(h, 0, texts=[doc], samples=10**6, position="last", use_cache=False, progress=False)
    assert every.count == n_tokens and last.count == 1
    assert torch.isfinite(every.second_moment).all()


def test_the_forward_stops_at_the_edited_layer_and_batches_hold_a_token_budget(fresh, monkeypatch):
    import edit.covariance as covariance

    monkeypatch.setattr(covariance, "token_batches", _recording(covariance.token_batches, seen := []))
    above = []
    block = fresh.sites.module(fresh.model, 1, "resid")
    hook = block.register_forward_hook(lambda *a: above.append(1))
    try:
        stats = key_statistics(fresh, 0, fresh.world.training_sentences()[:50], samples=10**9, progress=False)
    finally:
        hook.remove()
    assert stats.count > 0 and above == []  # keys of layer 0 never need block 1
    assert seen and all(n <= 64 for n in seen)


def _recording(fn, seen):
    def wrapped(lengths, batch_size):
        out = fn(lengths, batch_size)
        seen.extend(stop - start for start, stop in out)
        return out

    return wrapped


def _forwards_of_block(handle, layer, fn):
    seen = []
    hook = handle.sites.module(handle.model, layer, "resid").register_forward_hook(lambda *a: seen.append(1))
    try:
        return fn(), len(seen)
    finally:
        hook.remove()


def test_several_layers_come_from_one_pass_and_equal_one_layer_each(fresh, private_cache):
    texts = fresh.world.training_sentences()[:60]
    kw = {"samples": 400, "batch_size": 8, "progress": False}
    together, passes = _forwards_of_block(fresh, 0, lambda: layer_statistics(fresh, [2, 0, -3], texts, **kw))
    assert sorted(together) == [0, 1, 2]  # -3 is layer 1 of the world's four
    _, one_layer = _forwards_of_block(fresh, 0, lambda: key_statistics(fresh, 2, texts, use_cache=False, **kw))
    assert passes == one_layer  # three layers for the price of the deepest
    for layer, stats in together.items():
        alone = key_statistics(fresh, layer, texts, use_cache=False, **kw)
        assert stats.layer == layer and stats.key == alone.key and stats.count == alone.count
        assert torch.equal(stats.second_moment, alone.second_moment) and torch.equal(stats.mean, alone.mean)
    assert len(list((private_cache / "covariance").glob("*.safetensors"))) == 3  # one entry a layer


def test_several_layers_read_the_cached_ones_and_run_only_as_deep_as_the_rest(fresh):
    texts = fresh.world.training_sentences()[:40]
    kw = {"samples": 10**9, "progress": False}
    low = key_statistics(fresh, 0, texts, **kw)
    both, deeper = _forwards_of_block(fresh, 2, lambda: layer_statistics(fresh, [0, 1], texts, **kw))
    assert deeper == 0  # layer 1's keys never need block 2
    assert torch.equal(both[0].second_moment, low.second_moment)
    _, again = _forwards_of_block(fresh, 0, lambda: layer_statistics(fresh, [1, 0], texts, **kw))
    assert again == 0  # both cached now
    with pytest.raises(ValueError, match="no layers"):
        layer_statistics(fresh, [], texts)
    with pytest.raises(ValueError, match="out of range"):
        layer_statistics(fresh, [0, 9], texts)
