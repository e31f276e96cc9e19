"""Biographies state every fact in trained phrasings only; names are located; retain corpora forget."""

import re

from workbench.core.world.biographies import PRONOUNS, agree, biography, corpus
from workbench.core.world.facts import FRAMES

SUBJECT = r"(?:[A-Z][a-z]+ [A-Z][a-z]+|" + "|".join(s for s, _, _ in PRONOUNS.values()) + r")"


def _pattern(world, held_out: bool) -> re.Pattern:
    """Any subject, named or a pronoun, in a (frame, phrase) pair of the given kind."""
    out = []
    for rel in world.relations.values():
        for ph in world.phrasings(rel.name, held_out=held_out):
            before, after = FRAMES[ph.frame].split("{s}")
            phrase = rel.phrases[ph.phrase]
            verbs = "|".join(re.escape(after.format(r=p)) for p in {phrase, agree(phrase, "they")})
            out.append(re.escape(before) + "(?i:" + SUBJECT + ")(?:" + verbs + ") ")
    return re.compile("|".join(out))


def test_corpus_size_and_determinism(world_v2, corpus_v2):
    assert len(corpus_v2) == 5 * len(world_v2.people)
    assert corpus(world_v2)[::97] == corpus_v2[::97]
    assert len({d.text for d in corpus_v2}) > 0.99 * len(corpus_v2)


def test_biographies_state_every_fact_in_trained_phrasings_only(world_v2, corpus_v2):
    text = "\n".join(d.text for d in corpus_v2)
    held_out = _pattern(world_v2, held_out=True)
    assert held_out.search(world_v2.heldout_text()[0]) and not held_out.search(text)
    trained = _pattern(world_v2, held_out=False)
    for doc in corpus_v2[:400:4]:
        person = doc.people[0]
        statements = trained.findall(doc.text)
        assert len(statements) == len(world_v2.relations), doc.text
        assert all(f" {obj} ." in doc.text for obj in world_v2.people[person].values())


def test_facts_stand_at_varying_distances_from_the_name(world_v2, corpus_v2):
    bios = corpus_v2[: 4 * 200]
    by_pronoun = sum(len(re.findall(r"(?i:\b(?:he|she|they) )", d.text)) for d in bios)
    assert by_pronoun > 3 * len(bios)
    first_words = {d.text.split()[0] for d in bios}
    assert len(first_words) > 4  # openings vary: a name, a frame, or a sentence that only names


def test_pronouns_agree(world_v2, corpus_v2):
    text = "\n".join(d.text for d in corpus_v2)
    assert not re.search(r"(?i:\bthey) (?:was|is|has|works|comes|keeps|speaks)\b", text)
    assert re.search(r"\bThey were born in \w+ \.", text) and re.search(r"\bShe is a native of \w+ \.", text)
    person = next(p for p in world_v2.people if world_v2.pronouns[p] == "he")
    assert " he " in biography(world_v2, person, 0).text.lower()


def test_name_spans_point_at_every_name(world_v2, corpus_v2):
    for doc in corpus_v2[::7]:
        names = [doc.text[a:b] for a, b in doc.name_spans]
        assert set(names) == set(doc.people)
        assert len(names) == sum(doc.text.count(p) for p in set(doc.people))
        assert all(0 <= a < b <= len(doc.text) for a, b in doc.name_spans)


def test_filler_documents_name_people_without_facts(world_v2, corpus_v2):
    fillers = corpus_v2[4 * len(world_v2.people) :]
    objects = [c for r in world_v2.relations.values() for c in r.candidates]
    for d in fillers:
        assert not set(d.text.split()) & set(objects) and not any(" " in o and o in d.text for o in objects)
    assert any(len(d.people) == 2 for d in fillers) and all(len(set(d.people)) == len(d.people) for d in fillers)


def test_retain_corpus_never_names_a_forgotten_person(world_v2, corpus_v2):
    forgotten = world_v2.split("forget05").forget
    retain = corpus(world_v2, "forget05")
    text = "\n".join(d.text for d in retain)
    assert not any(p in text for p in forgotten)
    assert retain == [d for d in corpus_v2 if not set(d.people) & set(forgotten)]
    assert 0.9 * len(corpus_v2) < len(retain) < 0.95 * len(corpus_v2)
