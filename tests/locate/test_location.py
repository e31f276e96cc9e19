"""Location: the ranked-sites result type, its queries, masks and JSON round trip."""

import doctest
import json

import pytest
import torch
from tiny_models import FAMILIES
from tiny_models import tiny_model as family_model
from transformers import AutoModelForCausalLM, GPT2Config

import locate.location
from locate.location import (
    Location,
    LocationError,
    Site,
    component_totals,
    neuron_totals,
    parameter_sites,
    unit_axis,
    unit_totals,
)
from workbench.core.sites import site_map


def example() -> Location:
    return Location(
        "causal_trace",
        {"samples": 10, "noise": 3.0},
        {"subject": "Ann Lee", "relation": "pet", "object": "cat"},
        [
            Site("activation", 1, "mlp", 2, score=0.25),
            Site("activation", 3, "attn", 4, score=0.9),
            Site("parameter", param="transformer.h.0.mlp.c_fc.weight", score=0.5),
            Site("feature", 2, "resid", feature=17, score=0.1),
            Site("activation", 1, "resid", 2, score=1 / 3),
        ],
        grids={"mlp": torch.rand(5, 4), "attn": [[0.1, 0.2], [0.3, 0.4]]},
        tokens=["[BOS]", "Ann", "Lee", "has", "a"],
        extras={"clean": 0.99, "span": [1, 3]},
    )


def tiny_model():
    return AutoModelForCausalLM.from_config(GPT2Config(n_layer=4, n_embd=32, n_head=4, vocab_size=50))


def test_sites_are_ranked_best_first():
    loc = example()
    assert [s.score for s in loc.sites] == sorted((s.score for s in loc.sites), reverse=True)
    assert loc.best() == Site("activation", 3, "attn", 4, score=0.9)


def test_top_keeps_everything_but_the_tail():
    loc = example()
    top = loc.top(2)
    assert [s.score for s in top.sites] == [0.9, 0.5]
    assert (top.method, top.settings, top.grids, top.tokens) == (loc.method, loc.settings, loc.grids, loc.tokens)
    assert len(loc.sites) == 5 and loc.top(0).sites == [] and len(loc.top(99).sites) == 5
    with pytest.raises(LocationError):
        loc.top(-1)


def test_layers_ordered_by_best_score():
    # attn@3 (0.9) first; layer 1 via resid (1/3); parameter sites have no layer.
    assert example().layers() == [3, 1, 2]


def test_best_of_empty_location_is_a_clear_error():
    with pytest.raises(LocationError, match="no sites"):
        Location("m").best()


def test_json_round_trip_is_exact(tmp_path):
    loc = example()
    again = Location.from_json(loc.to_json())
    assert again == loc
    assert json.loads(again.to_json()) == json.loads(loc.to_json())
    assert Location.load(loc.save(tmp_path / "sub" / "loc.json")) == loc
    # Tensors never reach the JSON: grids are plain floats.
    assert all(isinstance(x, float) for row in loc.grids["mlp"] for x in row)


def test_bad_sites_and_json_are_rejected():
    with pytest.raises(LocationError, match="kind"):
        Site("neuron", 1, "mlp")
    with pytest.raises(LocationError, match="parameter name"):
        Site("parameter")
    with pytest.raises(LocationError, match="feature index"):
        Site("feature", 1, "resid")
    with pytest.raises(LocationError, match="invalid JSON"):
        Location.from_json("{not json")
    with pytest.raises(LocationError, match="not a location"):
        Location.from_json('{"sites": []}')


def test_parameter_mask_maps_mlp_sites_to_the_output_projection():
    model = tiny_model()
    masks = example().parameter_mask(model)
    params = dict(model.named_parameters())
    assert set(masks) == {
        "transformer.h.1.mlp.c_proj.weight",
        "transformer.h.3.attn.c_proj.weight",
        "transformer.h.0.mlp.c_fc.weight",
    }
    for name, mask in masks.items():
        assert mask.dtype == torch.bool and mask.shape == params[name].shape and bool(mask.all())


def test_parameter_mask_errors():
    model = tiny_model()
    with pytest.raises(LocationError, match="not in"):
        Location("m", sites=[Site("parameter", param="no.such.weight")]).parameter_mask(model)
    with pytest.raises(LocationError, match="out of range"):
        Location("m", sites=[Site("activation", 9, "mlp", 0)]).parameter_mask(model)
    assert Location("m", sites=[Site("activation", 1, "resid", 0)]).parameter_mask(model) == {}


def test_sparse_and_unit_masks_select_exactly_their_elements(tmp_path):
    model = tiny_model()
    fc, proj = "transformer.h.0.mlp.c_fc.weight", "transformer.h.2.mlp.c_proj.weight"  # Conv1D: [in, out]
    loc = Location(
        "fisher",
        sites=[
            Site("parameter", 0, "mlp", param=fc, score=2.0),
            Site("parameter", 2, "mlp", param=proj, feature=7, score=1.0),
            Site("parameter", 2, "mlp", param=proj, feature=9, score=0.5),
        ],
        masks={fc: torch.tensor([40, 3, 3, 4095])},
    )
    assert loc.masks == {fc: [3, 40, 4095]}  # sorted, deduplicated, plain ints
    masks = loc.parameter_mask(model)
    assert masks[fc].flatten().nonzero().flatten().tolist() == [3, 40, 4095]
    # c_proj's neuron axis is its input axis: rows 7 and 9 of the stored [d_mlp, d_model] weight.
    assert masks[proj].any(1).nonzero().flatten().tolist() == [7, 9] and bool(masks[proj][[7, 9]].all())
    again = Location.from_json(loc.to_json())
    assert again == loc and Location.load(loc.save(tmp_path / "l.json")) == loc
    assert Location.from_json(Location("m").to_json()).masks == {}
    assert set(loc.top(1).masks) == {fc} and loc.top(0).masks == {}
    # A whole-tensor site on the same tensor as a unit site selects the whole tensor.
    whole = Location("m", sites=loc.sites + [Site("parameter", param=proj)], masks=loc.masks)
    assert bool(whole.parameter_mask(model)[proj].all())


def test_bad_masks_are_location_errors():
    model, fc = tiny_model(), "transformer.h.0.mlp.c_fc.weight"
    with pytest.raises(LocationError, match="outside"):
        Location("m", sites=[Site("parameter", param=fc)], masks={fc: [32 * 128]}).parameter_mask(model)
    with pytest.raises(LocationError, match="out of range"):
        Location("m", sites=[Site("parameter", param=fc, feature=128)]).parameter_mask(model)
    with pytest.raises(LocationError, match="not a location"):
        Location.from_json('{"method": "m", "masks": {"w": ["x"]}}')


@pytest.mark.parametrize("family", FAMILIES)
def test_units_neurons_and_components_follow_each_family(family):
    model = family_model(family)
    sm = site_map(model)
    torch.manual_seed(0)
    rand = {n: torch.rand_like(p).detach() for n, p in model.named_parameters()}
    layer, t = 1, sm.weight_is_transposed()
    ins, out = sm.mlp_in_paths(layer), sm.mlp_out_path(layer) + ".weight"
    assert all(unit_axis(sm, p + ".weight", 2) == (1 if t else 0) for p in ins)
    assert unit_axis(sm, out, 2) == (0 if t else 1)
    manual = sum(rand[p + ".weight"].sum(0 if t else 1) + rand.get(p + ".bias", 0) for p in ins)
    torch.testing.assert_close(neuron_totals(rand, sm)[layer], manual + rand[out].sum(1 if t else 0))
    assert neuron_totals(rand, sm).shape == (2, sm.d_mlp)
    units = unit_totals(rand, sm)
    assert all(len(units[p + ".weight"]) == sm.d_mlp for p in ins) and len(units[out]) == sm.d_mlp
    totals = component_totals(rand, sm)
    assert sum(totals.values()) == pytest.approx(sum(float(v.double().sum()) for v in rand.values()), rel=1e-9)
    where = parameter_sites(sm)
    assert where[out] == (layer, "mlp") and (None, "embed") in totals
    assert {c for site_layer, c in where.values() if site_layer == 0} == {"attn", "mlp", "resid"}


def test_docstring_examples():
    assert doctest.testmod(locate.location, optionflags=doctest.ELLIPSIS).failed == 0
