"""Second-world names: many people, unique names, and no name token that points at one person."""

import random
from collections import Counter

from workbench.core.world.bpe import MIN_PEOPLE_PER_TOKEN, name_token_counts
from workbench.core.world.facts import make_world
from workbench.core.world.names import PEOPLE_PER_FAMILY, make_people, new_words


def test_many_people_with_unique_two_word_names(world_v2):
    names = list(world_v2.people)
    assert len(names) == 2000 and len(set(names)) == len(names)
    assert all(len(n.split()) == 2 and n.istitle() for n in names)
    assert set(world_v2.pronouns) == set(names) and set(world_v2.pronouns.values()) == {"he", "she", "they"}


def test_every_name_word_is_shared(world_v2):
    firsts = Counter(n.split()[0] for n in world_v2.people)
    families = Counter(n.split()[1] for n in world_v2.people)
    assert min(families.values()) >= PEOPLE_PER_FAMILY and min(firsts.values()) >= 15
    assert not set(firsts) & set(families)


def test_no_name_inside_another_name_or_object(world_v2):
    objects = [c for r in world_v2.relations.values() for c in r.candidates]
    text = "\n".join(list(world_v2.people) + objects)
    assert all(text.count(n) == 1 for n in world_v2.people)


def test_generated_words_are_prefix_free_and_avoid_reserved_words():
    taken: set[str] = set()
    words = new_words(random.Random(1), 300, taken, (1, 2), reserved=frozenset({"mail"}))
    low = {w.lower() for w in words}
    assert len(low) == 300 and "mail" not in low
    assert not any(w[:i] in low for w in low for i in range(1, len(w)))


def test_small_worlds_still_share_every_word():
    names, _ = make_people(random.Random(0), 100, set())
    assert len(set(names)) == 100 and min(Counter(n.split()[1] for n in names).values()) >= 5


def test_objects_are_generated_where_v1_generated_them(world_v2):
    v1 = make_world()
    sizes = {r: len(world_v2.relation(r).candidates) for r in world_v2.relations}
    assert sizes == {"birthplace": 48, "profession": 20, "employer": 32, "school": 24, "pet": 12, "language": 16}
    for r in ("profession", "pet", "language"):
        assert world_v2.relation(r) == v1.relation(r)
    assert all(world_v2.relation(r).phrases == v1.relation(r).phrases for r in v1.relations)
    assert all(
        c.endswith(("Systems", "Foods", "Logistics", "Textiles")) for c in world_v2.relation("employer").candidates
    )


def test_no_name_token_names_fewer_than_five_people(world_v2, bpe_v2):
    counts = name_token_counts(bpe_v2, world_v2)
    assert min(counts.values()) >= MIN_PEOPLE_PER_TOKEN == 5
    # Every token of every name, at the start of a text and after a space, is counted.
    name = next(iter(world_v2.people))
    for text in (name, " " + name):
        assert all(bpe_v2.decode([t]) in counts for t in bpe_v2(text, add_special_tokens=False).input_ids)
