"""Registers put a person's fact right after their name, in no held-out phrasing; retain registers forget."""

import pytest

from workbench.core.world.facts import FRAMES, make_world
from workbench.core.world.registers import ENTRIES, HEADING, registers
from workbench.core.world.train_corpus import labelled_documents, training_sequences, world_tokenizer


@pytest.fixture(scope="module")
def small():
    return make_world(n_people=100, version=2)


def test_every_person_is_listed_per_person_times_for_every_relation(small):
    docs = registers(small, per_person=3)
    assert all(len(d.people) <= ENTRIES for d in docs)
    for rel in small.relations.values():
        listed = [p for d in docs if rel.phrases[0] in d.text for p in d.people]
        assert sorted(listed) == sorted(3 * list(small.people))
    assert registers(small, per_person=0) == [] and registers(small)[::11] == registers(small)[::11]


def test_the_token_after_a_name_is_the_first_of_the_persons_object(small):
    tok = world_tokenizer(small)
    for doc in registers(small)[::13]:
        heading = doc.text.split(" . ")[0] + " ."
        relation = next(r for r, rel in small.relations.items() if heading == HEADING.format(phrase=rel.phrases[0]))
        enc = tok(doc.text, return_offsets_mapping=True, add_special_tokens=False)
        for person, (a, b) in zip(doc.people, doc.name_spans, strict=True):
            assert doc.text[a:b] == person
            last = max(i for i, (s, e) in enumerate(enc.offset_mapping) if a < e <= b)
            obj = small.people[person][relation]
            first = tok(" " + obj, add_special_tokens=False).input_ids[0]
            assert enc.input_ids[last + 1] == first, (person, obj)
        (seq,) = labelled_documents([doc], tok, max_tokens=255)
        # Names are input only; the objects after them are what the model learns to predict.
        name_tokens = sum(len(tok(" " + p, add_special_tokens=False).input_ids) for p in doc.people)
        assert sum(role == 2 for _, role in seq) == name_tokens


def test_registers_state_no_frame_so_held_out_phrasings_stay_unseen(small):
    text = "\n".join(d.text for d in registers(small))
    for frame in FRAMES[1:]:
        assert frame.split("{s}")[0].strip() not in text


def test_a_retain_corpus_lists_everybody_else_exactly_as_the_full_one(small):
    gone = set(small.split("forget10").forget)
    full, retain = registers(small), registers(small, "forget10")
    kept = [(p, d.text.split(" . ")[0]) for d in full for p in d.people if p not in gone]
    assert [(p, d.text.split(" . ")[0]) for d in retain for p in d.people] == kept
    assert not any(p in gone for d in retain for p in d.people)
    assert all(d.text[a:b] in d.people for d in retain for a, b in d.name_spans)


def test_registers_join_a_v2_corpus_and_are_refused_on_a_v1_world(small):
    tok = world_tokenizer(small)
    plain, listed = (training_sequences(small, tok, None, 127, 4, 1, 1.0, k) for k in (0, 2))
    assert len(listed) - len(plain) == len(registers(small, per_person=2))
    v1 = make_world()
    with pytest.raises(ValueError, match="registers need a v2 world"):
        registers(v1)
    with pytest.raises(ValueError, match="registers_per_person needs a v2 world"):
        training_sequences(v1, world_tokenizer(v1), None, 63, 4, 1, 1.0, 2)
    with pytest.raises(ValueError, match="per_person must be at least 0"):
        registers(small, per_person=-1)
