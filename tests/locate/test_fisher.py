"""Fisher locator: exact per-example Fisher, aggregates, masks, reproducibility, and the world model."""

import json
import math
from dataclasses import replace

import pytest
import torch
from tiny_models import FAMILIES, tiny_model

from locate.fisher import FisherError, FisherSettings, fisher, fisher_diagonal, fisher_ratio, forget_retain, ssd_mask
from locate.fisher_settings import chunk_size
from locate.location import Location, unit_axis
from workbench.core.handle import ModelHandle


@pytest.fixture(scope="module")
def person(world):
    return world.split("forget01").forget[0]


@pytest.fixture(scope="module")
def scores(handle, world, person):
    # One person against five others: 54 forget and 270 retain examples.
    return fisher(handle, world.facts([person]), world.facts(world.split("forget01").retain[:5]), progress=False)


def tiny_world_handle(handle, family: str) -> ModelHandle:
    """A tiny random model of ``family`` over the world's tokenizer, so world facts can be scored."""
    tok = handle.tokenizer
    model = tiny_model(
        family,
        vocab_size=len(tok),
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    return ModelHandle(model, tok, f"tiny-{family}", "config", world=handle.world)


def brute_force_fisher(h: ModelHandle, examples, names) -> dict[str, torch.Tensor]:
    """Mean of squared per-example gradients, one plain backward per example, no padding."""
    params = dict(h.model.named_parameters())
    sums = {n: torch.zeros_like(params[n]) for n in names}
    for ex in examples:
        if isinstance(ex, str):
            ids = h.tokenizer(ex).input_ids
            scored = range(1, len(ids))
        else:
            p, o = h.encode_fact(*ex)
            ids, scored = p + o, range(len(p), len(p) + len(o))
        logp = torch.log_softmax(h.model(torch.tensor([ids])).logits[0].float(), -1)
        loglik = sum(logp[t - 1, ids[t]] for t in scored)
        for n, g in zip(names, torch.autograd.grad(loglik, [params[n] for n in names]), strict=True):
            sums[n] += g**2
    return {n: s.detach() / len(examples) for n, s in sums.items()}


def as_examples(world, facts):
    return [(ph.prompt(f.subject), f.object) for f in facts for ph in world.phrasings(f.relation)]


def assert_fisher_close(got, want):
    assert set(got) == set(want)
    for n in want:
        torch.testing.assert_close(got[n], want[n], rtol=1e-4, atol=1e-6 * float(want[n].abs().max()) + 1e-12)


@pytest.mark.parametrize("batch_size", [4, 1])
@pytest.mark.parametrize("family", FAMILIES)
def test_fisher_is_the_mean_squared_per_example_gradient(handle, world, family, batch_size):
    # Facts, pairs and texts of different lengths share padded chunks; embeddings (tied in GPT-2)
    # included. batch_size 1 takes one plain backward per example, squared as each gradient lands.
    h = tiny_world_handle(handle, family)
    facts = world.facts(world.split("forget01").forget[:1], ["pet"])
    texts = world.sentences(world.split("forget01").forget[1:2])[:3]
    school = world.fact(world.split("forget01").forget[2], "school")  # a two-token object
    pairs = [(world.phrasings("school", held_out=True)[0].prompt(school.subject), school.object)]
    settings = FisherSettings(batch_size=batch_size, params="all")
    got = fisher_diagonal(h, facts + texts + pairs, settings, progress=False)
    want = brute_force_fisher(h, as_examples(world, facts) + texts + pairs, list(got))
    assert set(got) == {n for n, _ in h.model.named_parameters()}
    assert_fisher_close(got, want)


def test_world_model_fisher_matches_brute_force_and_ignores_chunking(handle, world, person):
    facts = world.facts([person], ["birthplace"])
    got = fisher_diagonal(handle, facts, FisherSettings(batch_size=4), progress=False)
    assert_fisher_close(got, brute_force_fisher(handle, as_examples(world, facts), list(got)))
    assert all(n.startswith("transformer.h.") for n in got)  # default: the blocks only
    one_by_one = fisher_diagonal(handle, facts, FisherSettings(batch_size=1), progress=False)
    assert_fisher_close(one_by_one, got)


def test_one_by_one_leaves_gradients_and_frozen_parameters_as_they_were(handle, world):
    h = tiny_world_handle(handle, "llama")
    params = dict(h.model.named_parameters())
    frozen, stale = "model.layers.0.mlp.up_proj.weight", "model.layers.1.mlp.down_proj.weight"
    params[frozen].requires_grad_(False)
    params[stale].grad = torch.full_like(params[stale], 7.0)
    facts = world.facts(world.split("forget01").forget[:1], ["pet"])
    one = fisher_diagonal(h, facts, FisherSettings(batch_size=1), progress=False)
    chunked = fisher_diagonal(h, facts, FisherSettings(batch_size=8), progress=False)
    assert_fisher_close(one, chunked)
    assert bool(one[frozen].sum() > 0) and not params[frozen].requires_grad
    assert bool((params[stale].grad == 7.0).all())
    assert all(p.grad is None for n, p in params.items() if n != stale)


def test_the_default_chunk_of_a_124m_model_is_one_example():
    assert chunk_size([torch.empty(124_439_808, device="meta")]) == 1
    assert chunk_size([torch.empty(876_672, device="meta")]) == 32  # the world model


def test_location_is_the_flat_sorts_choice(handle, scores):
    # The selection streams the ratio a piece at a time; the plain way joins every score in float64.
    for settings in (scores.settings, replace(scores.settings, score="forget", top_fraction=0.003)):
        names = list(scores.forget)
        flat = torch.cat([scores.forget[n].flatten().double() for n in names])
        if settings.score == "ratio":
            flat /= torch.cat([scores.retain[n].flatten().double() for n in names]) + settings.eps
        k = math.ceil(settings.top_fraction * len(flat))
        order = torch.sort(flat, descending=True, stable=True).indices[:k]
        want = torch.zeros(len(flat), dtype=torch.bool)
        want[order] = True
        loc = scores.to_location(settings)
        masks = loc.parameter_mask(handle.model)
        got = torch.cat(
            [
                masks[n].flatten() if n in masks else torch.zeros(scores.forget[n].numel(), dtype=torch.bool)
                for n in names
            ]
        )
        assert torch.equal(got, want) and loc.extras["threshold"] == float(flat[order[-1]])


def test_aggregates_sum_to_the_element_totals(scores):
    total = sum(float(t.double().sum()) for t in scores.forget.values())
    comps = scores.components("forget")
    assert set(comps) == {(layer, c) for layer in range(4) for c in ("attn", "mlp", "resid")}
    assert sum(comps.values()) == pytest.approx(total, rel=1e-9)
    for n, u in scores.units("forget").items():
        assert float(u.double().sum()) == pytest.approx(float(scores.forget[n].double().sum()), rel=1e-5)
    # GPT-2 neuron j: column j of c_fc (Conv1D, in x out), its bias, row j of c_proj.
    F, layer = scores.forget, 2
    p = f"transformer.h.{layer}.mlp."
    manual = F[p + "c_fc.weight"].sum(0) + F[p + "c_fc.bias"] + F[p + "c_proj.weight"].sum(1)
    torch.testing.assert_close(scores.neurons("forget")[layer], manual)
    ratio = scores.components("ratio")
    assert ratio[(0, "mlp")] == pytest.approx(comps[(0, "mlp")] / scores.components("retain")[(0, "mlp")], rel=1e-6)


def test_top_fraction_keeps_exactly_the_best_elements(handle, scores):
    loc = scores.to_location()
    total = sum(t.numel() for t in scores.forget.values())
    k = math.ceil(0.01 * total)
    masks = loc.parameter_mask(handle.model)
    assert sum(int(m.sum()) for m in masks.values()) == k == loc.extras["elements"] == loc.extras["selected"]
    assert set(masks) == {s.param for s in loc.sites} and loc.masks
    # Every selected element scores at least as high as every element left out.
    ratio = fisher_ratio(scores.forget, scores.retain, scores.settings.eps)
    kept = torch.cat([ratio[n][masks[n]] for n in masks])
    left = torch.cat([ratio[n][~masks[n]] if n in masks else ratio[n].flatten() for n in ratio])
    assert float(kept.min()) >= float(left.max())
    assert float(kept.min()) == pytest.approx(loc.extras["threshold"], rel=1e-6)
    scores_desc = [s.score for s in loc.sites]
    assert scores_desc == sorted(scores_desc, reverse=True)


def test_fisher_masks_are_reproducible(handle, world, person, scores):
    again = fisher(handle, world.facts([person]), world.facts(world.split("forget01").retain[:5]), progress=False)
    a, b = scores.to_location(), again.to_location()
    assert a.to_json() == b.to_json() and a.masks == b.masks
    ma, mb = a.parameter_mask(handle.model), b.parameter_mask(handle.model)
    assert all(torch.equal(ma[n], mb[n]) for n in ma)
    # Sampling with max_examples draws the same examples for the same seed, others for another.
    s = FisherSettings(max_examples=20, seed=3)
    f1, f2 = (fisher_diagonal(handle, world.facts([person]), s, progress=False) for _ in range(2))
    f3 = fisher_diagonal(handle, world.facts([person]), replace(s, seed=4), progress=False)
    n = "transformer.h.1.mlp.c_fc.weight"
    assert torch.equal(f1[n], f2[n]) and not torch.equal(f1[n], f3[n])


def test_location_round_trips_with_masks(handle, scores, tmp_path):
    loc = scores.to_location()
    again = Location.from_json(loc.to_json())
    assert again == loc and Location.load(loc.save(tmp_path / "fisher.json")) == loc
    ma, mb = loc.parameter_mask(handle.model), again.parameter_mask(handle.model)
    assert set(ma) == set(mb) and all(torch.equal(ma[n], mb[n]) for n in ma)
    assert len(loc.to_json()) < 200_000  # ~8k flat indices
    assert loc.method == "fisher" and loc.settings == json.loads(loc.to_json())["settings"]
    assert loc.target["forget"]["examples"] == 54 and loc.target["retain"]["n_people"] == 5


def test_row_and_tensor_granularity(handle, scores):
    rows = scores.to_location(replace(scores.settings, granularity="row", top_fraction=0.02))
    n_units = sum(len(u) for u in scores.units().values())
    assert len(rows.sites) == math.ceil(0.02 * n_units) and not rows.masks
    assert all(s.feature is not None and s.kind == "parameter" for s in rows.sites)
    masks = rows.parameter_mask(handle.model)
    sm = handle.sites
    for s in rows.sites[:20]:
        assert bool(masks[s.param].select(unit_axis(sm, s.param, masks[s.param].ndim), s.feature).all())
    assert sum(int(m.sum()) for m in masks.values()) == rows.extras["elements"]
    tensors = scores.to_location(replace(scores.settings, granularity="tensor", top_fraction=0.1))
    assert len(tensors.sites) == math.ceil(0.1 * len(scores.forget)) and not tensors.masks
    assert all(bool(m.all()) for m in tensors.parameter_mask(handle.model).values())
    everything = scores.to_location(replace(scores.settings, top_fraction=None))
    assert not everything.masks and len(everything.sites) == len(scores.forget)


def test_ratio_and_ssd_criterion(scores):
    f = {"w": torch.tensor([0.0, 1.0, 5.0, 30.0])}
    r = {"w": torch.tensor([0.0, 1.0, 1.0, 1.0])}
    assert ssd_mask(f, r, alpha=10)["w"].tolist() == [False, False, False, True]
    assert ssd_mask(f, r, alpha=2)["w"].tolist() == [False, False, True, True]
    assert fisher_ratio(f, r, eps=1.0)["w"].tolist() == [0.0, 0.5, 2.5, 15.0]
    n = "transformer.h.2.mlp.c_proj.weight"
    strict, loose = scores.ssd_mask(), scores.ssd_mask(alpha=1.0)
    assert torch.equal(strict[n], scores.forget[n] > 10 * scores.retain[n])
    assert bool((strict[n] <= loose[n]).all()) and int(loose[n].sum()) > int(strict[n].sum()) > 0
    assert scores.to_location().extras["ssd_elements"] == sum(int(m.sum()) for m in strict.values())
    # Ranking by the ratio and by forget importance pick different elements.
    by_forget = scores.to_location(replace(scores.settings, score="forget"))
    assert by_forget.masks != scores.to_location().masks


def test_world_model_forget_fisher_is_specific_to_the_person(handle, world, person, scores):
    # Forget and retain Fisher differ, and the ratio mask sits mostly in MLP weights, beyond their share.
    n = "transformer.h.1.mlp.c_fc.weight"
    assert not torch.allclose(scores.forget[n], scores.retain[n])
    masks = scores.to_location(replace(scores.settings, top_fraction=0.03)).parameter_mask(handle.model)
    in_mlp = sum(int(m.sum()) for k, m in masks.items() if ".mlp." in k) / sum(int(m.sum()) for m in masks.values())
    mlp_share = sum(t.numel() for k, t in scores.forget.items() if ".mlp." in k) / sum(
        t.numel() for t in scores.forget.values()
    )
    assert in_mlp > mlp_share
    # Zeroing the selected weights costs the person's facts far more than other people's.
    others = world.facts(world.split("forget01").retain[100:110])
    params = dict(handle.model.named_parameters())
    saved = {k: params[k].detach().clone() for k in masks}
    try:
        with torch.no_grad():
            for k, m in masks.items():
                params[k][m] = 0.0
        forgotten, kept = handle.score(world.facts([person])).prob.mean(), handle.score(others).prob.mean()
    finally:
        with torch.no_grad():
            for k, v in saved.items():
                params[k].copy_(v)
    assert float(1 - forgotten) > 3 * float(1 - kept) and float(1 - forgotten) > 0.05


def test_forget_retain_by_split_or_person(world, person):
    forget, retain = forget_retain(world, "forget05")
    assert {f.subject for f in forget} == set(world.split("forget05").forget) and len(retain) == 285 * 6
    forget, retain = forget_retain(world, person)
    assert {f.subject for f in forget} == {person} and person not in {f.subject for f in retain}


def test_named_forget_set_and_forget_only_scores(handle, person):
    s = fisher(handle, person, settings=FisherSettings(max_examples=8), progress=False)
    assert (s.n_forget, s.n_retain) == (8, 8) and s.target["forget"]["name"] == person
    alone = fisher(handle, [f"{person} was born in"], settings=FisherSettings(score="forget"), progress=False)
    assert alone.retain is None and alone.to_location().masks
    with pytest.raises(FisherError, match="retain"):
        alone.ssd_mask()


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda h, w: fisher(h, "Nobody Atall"), "unknown split or person"),
        (lambda h, w: fisher(h, [], w.facts()[:1]), "no forget examples"),
        (lambda h, w: fisher(h, w.facts()[:1], []), "no retain examples"),
        (lambda h, w: fisher(h, w.facts()[:1]), "needs retain data"),
        (lambda h, w: fisher(h, [3], settings=FisherSettings(score="forget")), "texts, facts or"),
        (lambda h, w: FisherSettings(top_fraction=0), r"top_fraction must be in \(0, 1\]"),
        (lambda h, w: FisherSettings(top_fraction=1.01), "top_fraction"),
        (lambda h, w: FisherSettings(granularity="neuron"), "granularity"),
        (lambda h, w: FisherSettings(batch_size=0), "batch_size"),
    ],
)
def test_bad_input_is_a_one_line_fisher_error(handle, world, call, match):
    with pytest.raises(FisherError, match=match) as e:
        call(handle, world)
    assert "\n" not in str(e.value) and isinstance(e.value, ValueError)
