"""Profiles put all of a person's facts after their name, in a drawn order and no held-out phrasing."""

import pytest

from workbench.core.world.facts import FRAMES, make_world
from workbench.core.world.profiles import ENTRIES, HEADING, profiles
from workbench.core.world.train_corpus import labelled_documents, training_sequences, world_tokenizer


@pytest.fixture(scope="module")
def small():
    return make_world(n_people=100, version=2)


def _entries(doc):
    """(person, the objects listed after the name) for each entry of a profile document."""
    ends = [a for a, _ in doc.name_spans[1:]] + [len(doc.text)]
    return [
        (doc.text[a:b], doc.text[b:end].strip().removesuffix(".").strip().split(" , "))
        for (a, b), end in zip(doc.name_spans, ends, strict=True)
    ]


def test_every_person_is_listed_per_person_times_with_all_their_facts(small):
    docs = profiles(small, per_person=3)
    assert all(d.text.startswith(HEADING) and len(d.people) <= ENTRIES for d in docs)
    entries = [e for d in docs for e in _entries(d)]
    assert sorted(p for p, _ in entries) == sorted(3 * list(small.people))
    for person, objects in entries:
        assert sorted(objects) == sorted(small.people[person].values()), person
    assert profiles(small, per_person=0) == [] and profiles(small) == profiles(small)


def test_the_order_of_facts_varies_so_no_relation_is_known_before_the_name(small):
    firsts = {}
    for d in profiles(small, per_person=4):
        for person, objects in _entries(d):
            relation = next(r for r, o in small.people[person].items() if o == objects[0])
            firsts[relation] = firsts.get(relation, 0) + 1
    # each of the six relations comes first for about a sixth of the 400 listings
    assert set(firsts) == set(small.relations) and min(firsts.values()) > 30


def test_the_token_after_a_name_is_the_first_of_one_of_the_persons_objects(small):
    tok = world_tokenizer(small)
    for doc in profiles(small)[::7]:
        enc = tok(doc.text, return_offsets_mapping=True, add_special_tokens=False)
        for person, (a, b) in zip(doc.people, doc.name_spans, strict=True):
            last = max(i for i, (s, e) in enumerate(enc.offset_mapping) if a < e <= b)
            firsts = {tok(" " + o, add_special_tokens=False).input_ids[0] for o in small.people[person].values()}
            assert enc.input_ids[last + 1] in firsts, person
        (seq,) = labelled_documents([doc], tok, max_tokens=255)
        # Names are input only; the objects after them are what the model learns to predict.
        name_tokens = sum(len(tok(" " + p, add_special_tokens=False).input_ids) for p in doc.people)
        assert sum(role == 2 for _, role in seq) == name_tokens


def test_profiles_state_no_frame_so_held_out_phrasings_stay_unseen(small):
    text = "\n".join(d.text for d in profiles(small))
    for frame in FRAMES[1:]:
        assert frame.split("{s}")[0].strip() not in text


def test_a_retain_corpus_lists_everybody_else_exactly_as_the_full_one(small):
    gone = set(small.split("forget10").forget)
    full, retain = profiles(small), profiles(small, "forget10")
    assert [e for d in retain for e in _entries(d)] == [e for d in full for e in _entries(d) if e[0] not in gone]
    assert not any(p in gone for d in retain for p in d.people)


def test_profiles_join_a_v2_corpus_and_are_refused_on_a_v1_world(small):
    tok = world_tokenizer(small)
    plain, listed = (training_sequences(small, tok, None, 127, 4, 1, 1.0, 0, k) for k in (0, 2))
    assert len(listed) - len(plain) == len(profiles(small, per_person=2))
    v1 = make_world()
    with pytest.raises(ValueError, match="profiles need a v2 world"):
        profiles(v1)
    with pytest.raises(ValueError, match="profiles_per_person needs a v2 world"):
        training_sequences(v1, world_tokenizer(v1), None, 63, 4, 1, 1.0, 0, 2)
    with pytest.raises(ValueError, match="per_person must be at least 0"):
        profiles(small, per_person=-1)
