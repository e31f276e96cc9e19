"""The world generator: determinism, splits, held-out phrasings, neighbourhoods."""

import pytest

from workbench.core.world.facts import FRAMES, make_world


@pytest.fixture(scope="module")
def world():
    return make_world()


def test_generator_is_deterministic_and_seeded():
    assert make_world(seed=0).to_json() == make_world(seed=0).to_json()
    assert make_world(seed=1).to_json() != make_world(seed=0).to_json()


def test_world_size(world):
    assert len(world.people) >= 300
    assert len(world.relations) >= 6
    assert all(len(p.split()) >= 2 for p in world.people)
    assert len(world.facts()) == len(world.people) * len(world.relations)
    assert any(len(c.split()) > 1 for r in world.relations.values() for c in r.candidates)


def test_objects_come_from_candidate_sets(world):
    for f in world.facts():
        assert f.object in world.relation(f.relation).candidates


def test_phrasings_hold_out_some_but_train_every_frame_and_phrase(world):
    for rel in world.relations.values():
        trained = world.phrasings(rel.name)
        held = world.phrasings(rel.name, held_out=True)
        assert len(trained) + len(held) >= 8 and held
        assert {p.id for p in trained}.isdisjoint({p.id for p in held})
        # Paraphrases are learnable only if each part was seen in training.
        assert {p.frame for p in trained} == set(range(len(FRAMES)))
        assert {p.phrase for p in trained} == set(range(len(rel.phrases)))


def test_heldout_sentences_never_in_training(world):
    train = set(world.training_sentences())
    assert not train & set(world.sentences(held_out=True))
    assert not train & set(world.heldout_text())


def test_splits_disjoint_nested_and_sized(world):
    n = len(world.people)
    prev = set()
    for name, frac in (("forget01", 0.01), ("forget05", 0.05), ("forget10", 0.10)):
        s = world.split(name)
        assert len(s.forget) == round(frac * n)
        assert set(s.forget).isdisjoint(s.retain)
        assert set(s.forget) | set(s.retain) == set(world.people)
        assert prev <= set(s.forget)
        prev = set(s.forget)


def test_retain_corpus_excludes_forgotten_people(world):
    forgotten = world.split("forget05").forget
    corpus = world.training_sentences("forget05")
    assert not any(p in s for s in corpus for p in forgotten)
    assert len(corpus) == len(world.training_sentences()) * 285 // 300


def test_neighbourhoods(world):
    f = world.facts()[0]
    same_rel = world.same_relation_neighbours(f)
    assert same_rel and all(
        g.relation == f.relation and g.subject != f.subject and g.object != f.object for g in same_rel
    )
    assert {g.relation for g in world.same_person_neighbours(f)} == set(world.relations) - {f.relation}
    assert all(g.object == f.object and g.subject != f.subject for g in world.sharing_object(f))


def test_unknown_names_give_clear_errors(world):
    with pytest.raises(KeyError, match="unknown person 'Nobody Here'"):
        world.fact("Nobody Here", "pet")
    with pytest.raises(KeyError, match="unknown relation 'shoe size'"):
        world.fact(next(iter(world.people)), "shoe size")


def test_parse_prompt(world):
    f = world.facts()[3]
    prompt = world.phrasings(f.relation, held_out=True)[0].prompt(f.subject)
    assert world.parse_prompt(prompt) == (f.subject, f.relation)
    assert world.parse_prompt("nothing here") == (None, None)
