"""Biographies and filler documents: the second world's facts as a pretraining corpus reads them.

A statement per line teaches a model to complete "<name> was born in"; a real model meets a
person in documents where the name comes once and the facts follow in some order, most of
them about "she" or "he" several sentences later. Each person gets several biographies,
each stating all of the person's facts in the world's trained phrasings (never a held-out
one, so that held-out phrasings stay unseen), and filler documents name people without
stating anything about them. Everything is drawn from the world's seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from workbench.core.world.facts import FRAMES, World

# Sentence openings that may precede a statement in the bare "{s} {r}" frame.
CONNECTORS = ("Also , ", "Before that , ", "Later , ", "Besides , ", "At the time , ")
# Openings that name the person and state nothing.
OPENINGS = (
    "This is a short profile of {name} .",
    "{name} is the subject of this note .",
    "Here is what is known about {name} .",
    "The following concerns {name} .",
)
# Sentences about the person that state no fact; {S}/{s} subject, {o} object, {p} possessive.
ASIDES = (
    "{S} spent a long summer by the sea .",
    "{S} kept a diary for many years .",
    "{S} liked to walk in the evening .",
    "Friends remember {o} as patient and kind .",
    "{P} neighbours describe {o} as quiet .",
    "Before that , {s} travelled a great deal .",
    "{S} once ran a marathon in the rain .",
    "Few people knew {o} well .",
    "{P} letters were short and polite .",
    "{S} grew tomatoes in a small garden .",
    "{S} rarely spoke about the past .",
    "Colleagues found {o} easy to work with .",
    "{P} handwriting was hard to read .",
    "{S} collected old maps and postcards .",
)
# Documents that mention people ({a}, {b}) without any of their facts.
FILLERS = (
    "{a} attended the meeting on {day} .",
    "{a} and {b} shared a table at lunch on {day} .",
    "{a} sent a letter to {b} in {month} .",
    "A parcel arrived for {a} on {day} .",
    "{a} thanked {b} for the help in {month} .",
    "{a} missed the early bus on {day} .",
    "The minutes of the club list {a} among those present .",
)
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("January", "March", "April", "June", "August", "October", "December")
PRONOUNS = {"he": ("he", "him", "his"), "she": ("she", "her", "her"), "they": ("they", "them", "their")}
# "they" takes the plural verb: the first word of a relation phrase is conjugated.
PLURAL_VERBS = {"was": "were", "is": "are", "has": "have"}


@dataclass(frozen=True)
class Document:
    """One training document: its text, the people it names, and where each name occurs.

    ``name_spans`` are [start, end) character spans of every name occurrence, so that a
    trainer can keep name tokens out of the loss, as statements keep their subjects out.
    """

    text: str
    people: tuple[str, ...]
    name_spans: tuple[tuple[int, int], ...]


def agree(phrase: str, pronoun: str) -> str:
    """A relation phrase with its verb agreeing with ``pronoun`` (only "they" changes it).

    Examples:
        >>> agree("was born in", "they"), agree("works for", "they"), agree("studied at", "they")
        ('were born in', 'work for', 'studied at')
        >>> agree("works for", "she")
        'works for'
    """
    if pronoun != "they":
        return phrase
    verb, _, rest = phrase.partition(" ")
    verb = PLURAL_VERBS.get(verb, verb[:-1] if verb.endswith("s") else verb)
    return f"{verb} {rest}".strip()


class _Writer:
    """Sentences joined by spaces, recording the character span of every name written."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.spans: list[tuple[int, int]] = []

    def add(self, sentence: str, names: tuple[str, ...] = ()) -> None:
        """Append a sentence that contains ``names`` in this order."""
        start = self.length + (1 if self.parts else 0)
        cursor = 0
        for name in names:
            at = sentence.index(name, cursor)
            self.spans.append((start + at, start + at + len(name)))
            cursor = at + len(name)
        self.length = start + len(sentence)
        self.parts.append(sentence)

    def document(self, people: tuple[str, ...]) -> Document:
        return Document(" ".join(self.parts), people, tuple(self.spans))


def biography(world: World, person: str, index: int) -> Document:
    """The ``index``-th biography of ``person``: all facts, shuffled, mostly about a pronoun.

    Examples:
        >>> from workbench.core.world.facts import make_world
        >>> w = make_world(n_people=100, version=2)
        >>> doc = biography(w, "Deimu Holumeith", 0)
        >>> doc.text[:57]
        'It is well known that Deimu Holumeith owns a pet parrot .'
        >>> [doc.text[a:b] for a, b in doc.name_spans]
        ['Deimu Holumeith', 'Deimu Holumeith']
    """
    return _biography(world, person, index, {r: world.phrasings(r) for r in world.relations})


def _biography(world: World, person: str, index: int, phrasings: dict) -> Document:
    rng = random.Random(f"{world.seed}/biography/{person}/{index}")
    asides = rng.sample(ASIDES, len(ASIDES))  # drawn without repeats within a document
    pronoun = world.pronouns.get(person, "they")
    s, o, p = PRONOUNS[pronoun]
    out = _Writer()
    name_written = rng.random() < 0.5  # half the documents open with a sentence that only names the person
    if name_written:
        out.add(rng.choice(OPENINGS).format(name=person), (person,))
    relations = list(world.relations)
    rng.shuffle(relations)
    for i, rel in enumerate(relations):
        # Facts come at varying distances from the name: none to two asides before each.
        for _ in range(rng.choice((0, 0, 1, 1, 2)) if i else 0):
            out.add(asides.pop().format(S=s.capitalize(), s=s, o=o, P=p.capitalize()))
        phrasing = rng.choice(phrasings[rel])
        # The first statement names the person if nothing has yet; later ones mostly say "she".
        by_name = not name_written or rng.random() < 0.15
        name_written = True
        phrase = world.relation(rel).phrases[phrasing.phrase]
        frame = FRAMES[phrasing.frame]
        if phrasing.frame == 0 and rng.random() < 0.4:
            frame = rng.choice(CONNECTORS) + frame
        subject = person if by_name else (s if frame.index("{s}") else s.capitalize())
        sentence = frame.format(s=subject, r=phrase if by_name else agree(phrase, pronoun))
        out.add(f"{sentence} {world.people[person][rel]} .", (person,) if by_name else ())
    return out.document((person,))


def filler(world: World, person: str, index: int) -> Document:
    """The ``index``-th filler document about ``person``: named, sometimes beside another, no facts.

    Examples:
        >>> from workbench.core.world.facts import make_world
        >>> w = make_world(n_people=100, version=2)
        >>> filler(w, "Deimu Holumeith", 0).text
        'Deimu Holumeith sent a letter to Vaidro Woututol in April .'
    """
    rng = random.Random(f"{world.seed}/filler/{person}/{index}")
    template = rng.choice(FILLERS)
    other = None
    while "{b}" in template and other in (None, person):
        other = rng.choice(list(world.people))
    people = (person,) if other is None else (person, other)
    out = _Writer()
    out.add(template.format(a=person, b=other, day=rng.choice(DAYS), month=rng.choice(MONTHS)), people)
    return out.document(people)


def corpus(
    world: World, split: str | None = None, documents_per_person: int = 4, filler_per_person: int = 1
) -> list[Document]:
    """Every person's biographies, then the filler documents, without any that name a forgotten person.

    ``split=None`` gives the full model's corpus; a split's retain model gets the same
    documents less every one that names somebody the split forgets.

    Examples:
        >>> from workbench.core.world.facts import make_world
        >>> w = make_world(n_people=100, version=2)
        >>> len(corpus(w)), len(corpus(w, documents_per_person=1, filler_per_person=0))
        (500, 100)
        >>> gone = set(w.split("forget05").forget)
        >>> any(p in gone for d in corpus(w, "forget05") for p in d.people)
        False
    """
    forgotten = set() if split is None else set(world.split(split).forget)
    phrasings = {r: world.phrasings(r) for r in world.relations}
    docs = [_biography(world, p, k, phrasings) for p in world.people for k in range(documents_per_person)]
    docs += [filler(world, p, k) for p in world.people for k in range(filler_per_person)]
    return [d for d in docs if forgotten.isdisjoint(d.people)]


def listed_people_left_out(world: World, split: str | None, per_person: int, kind: str) -> set[str]:
    """The people a list corpus (registers, profiles) leaves out for ``split``, once its settings are checked.

    Examples:
        >>> from workbench.core.world.facts import make_world
        >>> w = make_world(n_people=100, version=2)
        >>> len(listed_people_left_out(w, None, 2, "registers")), len(listed_people_left_out(w, "forget05", 2, "x"))
        (0, 5)
        >>> listed_people_left_out(make_world(), None, 2, "profiles")
        Traceback (most recent call last):
        ValueError: profiles need a v2 world: a v1 world has no document corpus
    """
    if world.version < 2:
        raise ValueError(f"{kind} need a v2 world: a v1 world has no document corpus")
    if per_person < 0:
        raise ValueError(f"per_person must be at least 0, got {per_person}")
    return set() if split is None else set(world.split(split).forget)


def template_text() -> list[str]:
    """The fixed English text of biographies and fillers, names left out, for training a tokenizer on.

    Examples:
        >>> lines = template_text()
        >>> "They kept a diary for many years ." in lines, "attended the meeting on Tuesday ." in lines
        (True, True)
    """
    lines = [c.strip() for c in CONNECTORS] + [" ".join(PLURAL_VERBS.values())]
    for s, o, p in PRONOUNS.values():
        lines += [a.format(S=s.capitalize(), s=s, o=o, P=p.capitalize()) for a in ASIDES]
    blank = dict(name="", a="", b="")
    lines += [t.format(**blank) for t in OPENINGS]
    lines += [t.format(day=d, month=m, **blank) for t in FILLERS for d, m in zip(DAYS, MONTHS, strict=True)]
    return [" ".join(line.split()) for line in lines]
