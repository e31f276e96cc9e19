"""Registers: lists in which a name is followed at once by one of the person's facts.

In biographies and questions a relation phrase stands between the name and the fact, so a
model can fetch the name to the phrase's last token and look the fact up there. Real text
also has tables, indexes and lists ("Ada Lovelace, mathematician"), where the very next
token after a name depends on who it is: a model predicting it must know the person's facts
at the name's last token, which is where real models enrich a subject. A register document
names one relation in its heading, then lists people each followed directly by their object,
so that pressure exists in the world's corpus too. Registers use no relation phrase in a
frame, so held-out phrasings stay unseen. Everything is drawn from the world's seed.
"""

from __future__ import annotations

import random

from workbench.core.world.biographies import Document, listed_people_left_out
from workbench.core.world.facts import World

# The heading names the relation by its first phrase; the words are the corpus's own.
HEADING = "The index of who {phrase} , by name ."
ENTRIES = 8  # people listed in one register


def registers(world: World, split: str | None = None, per_person: int = 2) -> list[Document]:
    """Register documents: each person listed ``per_person`` times for every relation, forgotten people left out.

    A split's retain model gets the same registers less the forgotten people's entries, so it
    sees exactly what the full model saw about everybody else.

    Examples:
        >>> from workbench.core.world.facts import make_world
        >>> w = make_world(n_people=100, version=2)
        >>> docs = registers(w)
        >>> docs[0].text[:80]
        'The index of who was born in , by name . Roufurk Nubahaist Dehol , Vaidro Wuheth'
        >>> len(docs), sum(len(d.people) for d in docs) == 2 * len(w.people) * len(w.relations)
        (150, True)
        >>> gone = set(w.split("forget05").forget)
        >>> any(p in gone for d in registers(w, "forget05") for p in d.people)
        False
    """
    forgotten = listed_people_left_out(world, split, per_person, "registers")
    docs = []
    for name, rel in world.relations.items():
        rng = random.Random(f"{world.seed}/registers/{name}")
        listed = [p for _ in range(per_person) for p in rng.sample(list(world.people), len(world.people))]
        for i in range(0, len(listed), ENTRIES):
            people = tuple(p for p in listed[i : i + ENTRIES] if p not in forgotten)
            if people:
                docs.append(_register(world, rel.phrases[0], name, people))
    return docs


def _register(world: World, phrase: str, relation: str, people: tuple[str, ...]) -> Document:
    heading = HEADING.format(phrase=phrase)
    text, spans = heading, []
    for k, person in enumerate(people):
        text += " " if k == 0 else " , "
        spans.append((len(text), len(text) + len(person)))
        text += f"{person} {world.people[person][relation]}"
    return Document(text + " .", people, tuple(spans))
