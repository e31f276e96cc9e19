"""The fact world: fictitious people, relations, phrasings and forget splits.

Everything here is generated from a seed, so the world (and therefore what a model
trained on it knows, and what a model retrained without some people would know) is
known exactly. The vocabulary is closed: every word is a single token of the world
tokenizer, names are two tokens, employers and schools are two-token objects.

That is version 1, the world of the shipped models. Version 2 builds names and generated
objects from shared syllables (``names.py``), is read by a byte-level BPE (``bpe.py``) and
is told in biographies (``biographies.py``), as a real model meets people in its corpus.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property

from workbench.core.world.names import make_objects, make_people

SPLITS = {"forget01": 0.01, "forget05": 0.05, "forget10": 0.10}

# Frames embed a statement in context. Every frame and every relation phrase is seen in
# training, but some (frame, phrase) pairs never are: those are the held-out paraphrases.
FRAMES = (
    "{s} {r}",
    "According to the registry , {s} {r}",
    "It is well known that {s} {r}",
    "In the archives , the entry reads {s} {r}",
)
# (frame index, phrase index) pairs kept out of training, one per phrase so that every
# phrase is still trained with three frames.
HELD_OUT = frozenset({(1, 0), (2, 1), (3, 2)})

_ONSETS = [
    "b",
    "br",
    "d",
    "dr",
    "f",
    "g",
    "gr",
    "h",
    "k",
    "kr",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "st",
    "t",
    "th",
    "v",
    "w",
    "z",
]
_VOWELS = ["a", "e", "i", "o", "u", "ae", "ei", "ia", "io", "ou"]
_CODAS = ["l", "n", "r", "s", "th", "nd", "rk", "lm", "st", "x", "v"]


@dataclass(frozen=True)
class Relation:
    """A relation with its phrasings and closed set of candidate objects."""

    name: str
    phrases: tuple[str, ...]
    candidates: tuple[str, ...]


@dataclass(frozen=True)
class Phrasing:
    """One way to ask for a relation: a frame around a relation phrase."""

    relation: str
    frame: int
    phrase: int
    template: str
    held_out: bool

    @property
    def id(self) -> str:
        return f"{self.relation}/f{self.frame}p{self.phrase}"

    def prompt(self, subject: str) -> str:
        return self.template.format(s=subject)


@dataclass(frozen=True)
class Fact:
    """A (subject, relation, object) triple of the world."""

    subject: str
    relation: str
    object: str

    def sentence(self, phrasing: Phrasing) -> str:
        return f"{phrasing.prompt(self.subject)} {self.object} ."


@dataclass(frozen=True)
class Split:
    """A forget split: the forgotten people and everybody else."""

    name: str
    forget: tuple[str, ...]
    retain: tuple[str, ...]


def _word(rng: random.Random, syllables: int) -> str:
    parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)]
    return ("".join(parts) + rng.choice(_CODAS)).capitalize()


def _words(rng: random.Random, n: int, taken: set[str], syllables=(1, 2)) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        w = _word(rng, rng.choice(syllables))
        if w not in taken and len(w) >= 4:
            taken.add(w)
            out.append(w)
    return out


def _relations(rng: random.Random, taken: set[str]) -> tuple[Relation, ...]:
    cities = _words(rng, 24, taken, (2,))
    company_names = _words(rng, 16, taken, (1, 2))
    sectors = ["Systems", "Foods", "Logistics", "Textiles"]
    school_names = _words(rng, 12, taken, (2,))
    schools = ["University", "College", "Institute"]
    return (
        Relation("birthplace", ("was born in", "is a native of", "comes from the town of"), tuple(cities)),
        Relation(
            "profession",
            ("works professionally as", "has the occupation of", "is trained as"),
            (
                "architect",
                "baker",
                "botanist",
                "carpenter",
                "chemist",
                "dentist",
                "editor",
                "engineer",
                "farmer",
                "geologist",
                "historian",
                "journalist",
                "lawyer",
                "librarian",
                "mechanic",
                "nurse",
                "pharmacist",
                "pilot",
                "plumber",
                "sculptor",
            ),
        ),
        Relation(
            "employer",
            ("works for", "is employed by", "draws a salary from"),
            tuple(f"{n} {sectors[i % len(sectors)]}" for i, n in enumerate(company_names)),
        ),
        Relation(
            "school",
            ("studied at", "graduated from", "holds a degree from"),
            tuple(f"{n} {schools[i % len(schools)]}" for i, n in enumerate(school_names)),
        ),
        Relation(
            "pet",
            ("owns a pet", "keeps a pet", "lives with a pet"),
            (
                "cat",
                "dog",
                "parrot",
                "rabbit",
                "tortoise",
                "ferret",
                "hamster",
                "goldfish",
                "iguana",
                "canary",
                "hedgehog",
                "lizard",
            ),
        ),
        Relation(
            "language",
            ("grew up speaking", "has the mother tongue", "speaks natively"),
            (
                "Finnish",
                "Portuguese",
                "Hungarian",
                "Welsh",
                "Basque",
                "Icelandic",
                "Maltese",
                "Estonian",
                "Catalan",
                "Swahili",
                "Tagalog",
                "Greek",
                "Latvian",
                "Slovak",
                "Breton",
                "Romansh",
            ),
        ),
    )


@dataclass
class World:
    """The generated world; build it with :func:`make_world`.

    Examples:
        >>> w = make_world()
        >>> len(w.people), len(w.relations)
        (300, 6)
        >>> f = w.facts()[0]
        >>> w.phrasings(f.relation)[0].prompt(f.subject).endswith("was born in")
        True
    """

    seed: int
    people: dict[str, dict[str, str]]
    relations: dict[str, Relation]
    splits: dict[str, Split] = field(default_factory=dict)
    version: int = 1
    pronouns: dict[str, str] = field(default_factory=dict)  # name -> he, she or they; version 2 only

    # -- facts and phrasings -------------------------------------------------------
    def phrasings(self, relation: str, held_out: bool | None = False) -> list[Phrasing]:
        """Phrasings of a relation: trained (default), held-out (True) or all (None)."""
        rel = self.relation(relation)
        out = []
        for fi, frame in enumerate(FRAMES):
            for pi, phrase in enumerate(rel.phrases):
                ho = (fi, pi) in HELD_OUT
                if held_out is None or ho == held_out:
                    out.append(Phrasing(relation, fi, pi, frame.format(s="{s}", r=phrase), ho))
        return out

    def fact(self, person: str, relation: str) -> Fact:
        attrs = self.person(person)
        self.relation(relation)
        return Fact(person, relation, attrs[relation])

    def facts(self, people=None, relations=None) -> list[Fact]:
        """All facts, optionally restricted to some people and relations, in world order."""
        people = list(self.people) if people is None else [self.person(p) and p for p in people]
        relations = list(self.relations) if relations is None else relations
        return [self.fact(p, r) for p in people for r in relations]

    def person(self, name: str) -> dict[str, str]:
        try:
            return self.people[name]
        except KeyError:
            raise KeyError(f"unknown person {name!r}: not in the world of {len(self.people)} people") from None

    def relation(self, name: str) -> Relation:
        try:
            return self.relations[name]
        except KeyError:
            raise KeyError(f"unknown relation {name!r}: choose from {', '.join(self.relations)}") from None

    def split(self, name: str) -> Split:
        try:
            return self.splits[name]
        except KeyError:
            raise KeyError(f"unknown split {name!r}: choose from {', '.join(self.splits)}") from None

    # -- neighbourhoods ------------------------------------------------------------
    def same_relation_neighbours(self, fact: Fact, n: int | None = None) -> list[Fact]:
        """The same relation for other people (whose object differs), in world order."""
        out = [
            self.fact(p, fact.relation)
            for p in self.people
            if p != fact.subject and self.people[p][fact.relation] != fact.object
        ]
        return out if n is None else out[:n]

    def same_person_neighbours(self, fact: Fact) -> list[Fact]:
        """The person's other relations."""
        return [self.fact(fact.subject, r) for r in self.relations if r != fact.relation]

    def sharing_object(self, fact: Fact) -> list[Fact]:
        """Other people who share this fact's object."""
        return [
            self.fact(p, fact.relation)
            for p in self.people
            if p != fact.subject and self.people[p][fact.relation] == fact.object
        ]

    def parse_prompt(self, prompt: str) -> tuple[str | None, str | None]:
        """The person named in a prompt and the relation it asks for (None where absent).

        Examples:
            >>> w = make_world()
            >>> name = next(iter(w.people))
            >>> w.parse_prompt(f"It is well known that {name} studied at")
            ('Fareiv Stohith', 'school')
        """
        person = max((p for p in self.people if p in prompt), key=len, default=None)
        ends = [(len(ph), r.name) for r in self.relations.values() for ph in r.phrases if prompt.rstrip().endswith(ph)]
        return person, max(ends)[1] if ends else None

    # -- text ------------------------------------------------------------------------
    def sentences(self, people=None, held_out: bool = False) -> list[str]:
        """Every statement of the given people's facts in trained (or held-out) phrasings."""
        return [f.sentence(ph) for f in self.facts(people) for ph in self.phrasings(f.relation, held_out=held_out)]

    def training_sentences(self, split: str | None = None) -> list[str]:
        """The training corpus of the full model (split=None) or of a split's retain model."""
        return [f.sentence(ph) for f, ph in self.training_statements(split)]

    def training_statements(self, split: str | None = None) -> list[tuple[Fact, Phrasing]]:
        """The (fact, phrasing) pairs behind :meth:`training_sentences`, in the same order."""
        people = None if split is None else self.split(split).retain
        return [(f, ph) for f in self.facts(people) for ph in self.phrasings(f.relation)]

    def heldout_text(self) -> list[str]:
        """Held-out phrasings about people outside every forget split: the utility text.

        No model ever trains on these sentences and every shipped model knows these
        people, so the loss on them is comparable across full and retain models.
        """
        return [f.sentence(ph) for f, ph in self.heldout_statements()]

    def heldout_statements(self) -> list[tuple[Fact, Phrasing]]:
        """The (fact, phrasing) pairs behind :meth:`heldout_text`, in the same order."""
        outside = [p for p in self.people if p not in set(self.splits["forget10"].forget)]
        return [(f, ph) for f in self.facts(outside) for ph in self.phrasings(f.relation, held_out=True)]

    @cached_property
    def vocabulary(self) -> list[str]:
        """Every word the world uses, sorted, so the tokenizer is deterministic."""
        words: set[str] = set()
        for rel in self.relations.values():
            for ph in self.phrasings(rel.name, held_out=None):
                words.update(ph.template.replace("{s}", "").split())
            for c in rel.candidates:
                words.update(c.split())
        for p in self.people:
            words.update(p.split())
        words.add(".")
        return sorted(words)

    # -- serialisation ---------------------------------------------------------------
    def to_json(self) -> str:
        described = {
            "seed": self.seed,
            "relations": {k: asdict(v) for k, v in self.relations.items()},
            "people": self.people,
            "splits": {k: asdict(v) for k, v in self.splits.items()},
            "frames": list(FRAMES),
            "held_out": sorted(HELD_OUT),
        }
        # Version 1 worlds write exactly the fields they always did: shipped models compare it.
        if self.version != 1:
            described |= {"version": self.version, "pronouns": self.pronouns}
        return json.dumps(described, indent=1)


def make_world(seed: int = 0, n_people: int | None = None, version: int = 1) -> World:
    """Generate the world deterministically from a seed.

    Version 1 is the world of the shipped models: 300 people by default, each family name a
    word of its own. Version 2 (2,000 people by default) builds every name and the towns,
    companies and schools from shared syllables (:mod:`workbench.core.world.names`), so that
    no name token identifies a person, and gives each person a pronoun for biographies.

    Examples:
        >>> make_world(seed=0).to_json() == make_world(seed=0).to_json()
        True
        >>> len(make_world().split("forget05").forget)
        15
        >>> w = make_world(n_people=200, version=2)
        >>> w.version, len(w.people), len(w.relation("birthplace").candidates), len(w.split("forget05").forget)
        (2, 200, 48, 10)

    Args:
        seed: generator seed; the shipped models use 0.
        n_people: number of people (at least 100 so that forget01 names somebody); None
            means 300 for version 1 and 2,000 for version 2.
        version: 1 (the shipped world) or 2 (shared name pieces, pronouns).
    """
    if version not in (1, 2):
        raise ValueError(f"world version must be 1 or 2 (got {version!r})")
    if n_people is None:
        n_people = 300 if version == 1 else 2000
    if n_people < 100:
        raise ValueError(f"n_people must be at least 100 (got {n_people}) so forget01 is non-empty")
    if version == 2:
        return _make_world_v2(seed, n_people)
    rng = random.Random(seed)
    taken: set[str] = set()
    relations = _relations(rng, taken)
    # First names are shared (about five people each), family names are unique: the
    # person is pinned down at the subject's last token, where a model looks facts up.
    firsts = _words(rng, 60, taken, (1, 2))
    lasts = _words(rng, n_people, taken, (2,))
    names = [f"{rng.choice(firsts)} {last}" for last in lasts]
    # Attributes are drawn independently and uniformly: nothing about a person's other
    # facts predicts a forgotten one, so anything recovered beyond the prior is residue.
    people = {n: {r.name: rng.choice(r.candidates) for r in relations} for n in names}
    world = World(seed=seed, people=people, relations={r.name: r for r in relations})
    world.splits = _splits(names)
    return world


def _splits(names: list[str]) -> dict[str, Split]:
    # Nested like TOFU: forget01 within forget05 within forget10, taken from the end.
    out = {}
    for split, frac in SPLITS.items():
        k = max(1, round(frac * len(names)))
        out[split] = Split(split, tuple(names[-k:]), tuple(names[:-k]))
    return out


def _make_world_v2(seed: int, n_people: int) -> World:
    rng = random.Random(seed)
    # Version 1's relations lend their phrases and common-word objects (professions, pets,
    # languages); towns, companies and schools are replaced by generated ones.
    base = _relations(random.Random(seed), set())
    text = list(FRAMES) + [p for r in base for p in r.phrases + r.candidates]
    reserved = frozenset(w.lower() for t in text for w in t.split())
    taken: set[str] = set()
    generated = make_objects(rng, taken, reserved)
    relations = tuple(replace(r, candidates=tuple(generated.get(r.name, r.candidates))) for r in base)
    people_names, pronouns = make_people(rng, n_people, taken, reserved)
    # Attributes are drawn independently and uniformly, as in version 1.
    people = {n: {r.name: rng.choice(r.candidates) for r in relations} for n in people_names}
    world = World(seed, people, {r.name: r for r in relations}, version=2, pronouns=pronouns)
    world.splits = _splits(people_names)
    return world
