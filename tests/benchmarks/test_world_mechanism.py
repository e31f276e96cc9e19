"""The mechanism benchmark reads the default world model as its docs describe it."""

from benchmarks.world_mechanism import KINDS, measure, token_kinds


def test_token_kinds_split_a_prompt_around_its_subject():
    assert token_kinds(8, (2, 5)) == {
        "subject_first": [2],
        "subject_middle": [3],
        "subject_last": [4],
        "after_subject": [5, 6],
        "last": [7],
    }
    assert token_kinds(4, (1, 2))["subject_first"] == token_kinds(4, (1, 2))["subject_last"] == [1]


def test_the_default_world_looks_facts_up_at_the_prompts_last_token():
    r = measure("world", n_facts=6)
    t = r["trace"]
    assert t["facts"] == 6 and set(t["indirect_effect"]["mlp"]) == set(KINDS)
    assert t["best_mlp_effect"]["last"] > 0.5 > 10 * t["best_mlp_effect"]["subject_last"]
    probes = r["probe_at_name_last_token"]["relations"]
    assert list(probes) == ["birthplace", "profession", "employer", "school", "pet", "language"]
    assert all(v["prior"] < max(v["accuracy_by_layer"]) <= 1 for v in probes.values())
    assert all(len(v["accuracy_by_layer"]) == r["layers"] for v in probes.values())
