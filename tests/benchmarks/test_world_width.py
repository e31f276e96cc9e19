"""The width-cost benchmark builds the family and width it names and times every operation."""

import workbench
from benchmarks.world_width import costs


def test_costs_time_a_model_of_the_given_family_and_width():
    h = workbench.load("world:llama", device="cpu")
    r = costs(h, 256, edits=2, rounds=1, facts=12)
    mlp = 3 * h.sites.d_model * 256 * h.n_layers  # gate, up and down projections
    shipped_mlp = 3 * h.sites.d_model * h.sites.d_mlp * h.n_layers
    assert r["parameters"] == sum(p.numel() for p in h.model.parameters()) - shipped_mlp + mlp
    assert r["checkpoint_mb"] == round(r["parameters"] * 4 / 2**20, 2)
    assert all(r[k] > 0 for k in ("score_every_fact_s", "train_step_s", "values_2_edits_10_steps_s"))
