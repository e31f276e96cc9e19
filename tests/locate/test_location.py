"""Location: the ranked-sites result type, its queries, masks and JSON round trip."""

import doctest
import json

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config

import locate.location
from locate.location import Location, LocationError, Site


def example() -> Location:
    return Location(
        "causal_trace", {"samples": 10, "noise": 3.0}, {"subject": "Ann Lee", "relation": "pet", "object": "cat"},
        [Site("activation", 1, "mlp", 2, score=0.25), Site("activation", 3, "attn", 4, score=0.9),
         Site("parameter", param="transformer.h.0.mlp.c_fc.weight", score=0.5),
         Site("feature", 2, "resid", feature=17, score=0.1), Site("activation", 1, "resid", 2, score=1 / 3)],
        grids={"mlp": torch.rand(5, 4), "attn": [[0.1, 0.2], [0.3, 0.4]]},
        tokens=["[BOS]", "Ann", "Lee", "has", "a"], extras={"clean": 0.99, "span": [1, 3]})


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
    assert set(masks) == {"transformer.h.1.mlp.c_proj.weight", "transformer.h.3.attn.c_proj.weight",
                          "transformer.h.0.mlp.c_fc.weight"}
    for name, mask in masks.items():
        assert mask.dtype == torch.bool and mask.shape == params[name].shape and bool(mask.all())


def test_parameter_mask_errors():
    model = tiny_model()
    with pytest.raises(LocationError, match="not in"):
        Location("m", sites=[Site("parameter", param="no.such.weight")]).parameter_mask(model)
    with pytest.raises(LocationError, match="out of range"):
        Location("m", sites=[Site("activation", 9, "mlp", 0)]).parameter_mask(model)
    assert Location("m", sites=[Site("activation", 1, "resid", 0)]).parameter_mask(model) == {}


def test_docstring_examples():
    assert doctest.testmod(locate.location, optionflags=doctest.ELLIPSIS).failed == 0
