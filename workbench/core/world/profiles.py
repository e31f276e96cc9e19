"""Profiles: a name followed by all of the person's facts, in an order drawn for each listing.

Registers (registers.py) put one fact after a name, but their heading names the relation
first, so the model can look up that one relation at the name's last token, late. Real text
also has who's-who entries, captions and infoboxes ("Ada Lovelace, mathematician, London,
1815") where nothing before the name says which fact comes next. Predicting the token after
the name then takes every one of the person's facts at the name's last token, whatever the
question, which is what real models' subject enrichment computes, and the facts after the
first are there to be read back from that token. A profile document lists a few people, each
name followed by the person's objects in a fresh order. Profiles state no relation phrase, so
held-out phrasings stay unseen. Everything is drawn from the world's seed.
"""

from __future__ import annotations

import random

from workbench.core.world.biographies import Document, listed_people_left_out
from workbench.core.world.facts import World

HEADING = "Who is who ."  # words the corpus already has, so the BPE needs no new pieces
ENTRIES = 4  # people in one profile document


def profiles(world: World, split: str | None = None, per_person: int = 2) -> list[Document]:
    """Profile documents: each person listed ``per_person`` times with all their facts, forgotten people left out.

    A split's retain model gets the same profiles less the forgotten people's entries, so it
    sees exactly what the full model saw about everybody else.

    Examples:
        >>> from workbench.core.world.facts import make_world
        >>> w = make_world(n_people=100, version=2)
        >>> docs = profiles(w)
        >>> docs[0].text[:72]
        'Who is who . Houtail Zalus Salouru , Voth Teizo Logistics , Maltese , he'
        >>> len(docs), sum(len(d.people) for d in docs) == 2 * len(w.people)
        (50, True)
        >>> gone = set(w.split("forget05").forget)
        >>> any(p in gone for d in profiles(w, "forget05") for p in d.people)
        False
    """
    forgotten = listed_people_left_out(world, split, per_person, "profiles")
    rng = random.Random(f"{world.seed}/profiles")
    docs = []
    for _ in range(per_person):
        listed = rng.sample(list(world.people), len(world.people))
        # Orders are drawn for everyone, forgotten or not, so a retain corpus orders the rest alike.
        orders = [rng.sample(list(world.relations), len(world.relations)) for _ in listed]
        pairs = list(zip(listed, orders, strict=True))
        for i in range(0, len(pairs), ENTRIES):
            entries = [(p, o) for p, o in pairs[i : i + ENTRIES] if p not in forgotten]
            if entries:
                docs.append(_profile(world, entries))
    return docs


def _profile(world: World, entries: list[tuple[str, list[str]]]) -> Document:
    text, spans = HEADING, []
    for person, order in entries:
        text += " "
        spans.append((len(text), len(text) + len(person)))
        text += f"{person} " + " , ".join(world.people[person][r] for r in order) + " ."
    return Document(text, tuple(p for p, _ in entries), tuple(spans))
