"""Version 1 of the world stays what the shipped models know; version 2 is seeded and reloads."""

import json
from pathlib import Path

import pytest

from workbench.core.world.facts import make_world
from workbench.core.world.registry import CHECKPOINTS, load_world


def test_version_1_is_unchanged():
    stored = (CHECKPOINTS / "gpt2" / "world.json").read_text()
    assert make_world().to_json() == stored
    assert make_world(seed=0, n_people=300, version=1).to_json() == stored
    assert "version" not in json.loads(stored) and make_world().version == 1 and make_world().pronouns == {}


def test_version_2_is_deterministic_and_seeded(world_v2):
    assert make_world(version=2).to_json() == world_v2.to_json()
    assert make_world(seed=1, version=2).to_json() != world_v2.to_json()
    described = json.loads(world_v2.to_json())
    assert described["version"] == 2 and described["pronouns"] == world_v2.pronouns


def test_unknown_version_is_refused():
    with pytest.raises(ValueError, match="world version must be 1 or 2"):
        make_world(version=3)


def test_version_2_splits_are_nested_from_the_end(world_v2):
    people = list(world_v2.people)
    assert world_v2.split("forget01").forget == tuple(people[-20:])
    assert set(world_v2.split("forget05").forget) < set(world_v2.split("forget10").forget)
    assert len(world_v2.split("forget10").forget) == 200 == len(people) - len(world_v2.split("forget10").retain)


def test_load_world_round_trips_version_2(tmp_path: Path, world_v2):
    (tmp_path / "world.json").write_text(world_v2.to_json())
    again = load_world(tmp_path)
    assert again.version == 2 and again.to_json() == world_v2.to_json()
    edited = json.loads(world_v2.to_json())
    edited["pronouns"][next(iter(edited["pronouns"]))] = "it"
    (tmp_path / "world.json").write_text(json.dumps(edited))
    with pytest.raises(ValueError, match="does not match the world generated from seed 0"):
        load_world(tmp_path)


def test_version_2_serves_the_workbench_as_version_1_does(world_v2):
    f = world_v2.facts()[0]
    assert len(world_v2.phrasings(f.relation)) == 9 and len(world_v2.phrasings(f.relation, held_out=True)) == 3
    assert world_v2.parse_prompt(world_v2.phrasings("school")[4].prompt(f.subject)) == (f.subject, "school")
    assert world_v2.same_relation_neighbours(f, 3) and world_v2.sharing_object(f)
    assert len(world_v2.training_statements("forget05")) == 1900 * 6 * 9
