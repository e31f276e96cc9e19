"""Names for the second world: people, towns, companies and schools built from shared syllables.

In the first world every family name is a word of its own, so one token names one person.
Here every word of a person's name is used by several people (a first name by about
twenty, a family name by about six) and words are built from one pool of syllables, so
whatever a tokenizer makes of them, each name token is shared and only the whole name,
in order, identifies somebody. Towns, company words and school words come from the same
syllables, so objects are several tokens, as invented names are for a real model.
"""

from __future__ import annotations

import random

ONSETS = ("b", "br", "d", "dr", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "st", "t", "th", "v", "w", "z")
VOWELS = ("a", "e", "i", "o", "u", "ai", "ei", "ou")
CODAS = ("l", "n", "r", "s", "m", "th", "nd", "rk", "st", "x")
PEOPLE_PER_FIRST = 20  # about this many people share a first name
PEOPLE_PER_FAMILY = 6  # and at least this many a family name
SECTORS = ("Systems", "Foods", "Logistics", "Textiles")
SCHOOLS = ("University", "College", "Institute")


def syllable_word(rng: random.Random, syllables: int, coda: float = 0.5) -> str:
    """A capitalised word of onset-vowel syllables, closed by a coda with probability ``coda``.

    Examples:
        >>> syllable_word(random.Random(0), 2)
        'Reibru'
    """
    parts = [rng.choice(ONSETS) + rng.choice(VOWELS) for _ in range(syllables)]
    end = rng.choice(CODAS) if rng.random() < coda else ""
    return ("".join(parts) + end).capitalize()


def new_words(
    rng: random.Random, n: int, taken: set[str], syllables=(2,), coda: float = 0.5, reserved=frozenset()
) -> list[str]:
    """``n`` fresh words, none a prefix of another or of a word in ``taken`` (updated), none in ``reserved``.

    Prefix-free words keep one name from being a substring of another ("Ka Tor" inside
    "Ka Torvik"), so a name found in a text is the name written there. ``reserved`` holds
    the lower-cased words of the world's other text, which no generated word may equal.

    Examples:
        >>> taken = set()
        >>> words = new_words(random.Random(0), 3, taken)
        >>> words, sorted(taken) == sorted(w.lower() for w in words)
        (['Saloum', 'Pothin', 'Vime'], True)
    """
    prefixes = {w[:i] for w in taken for i in range(1, len(w) + 1)}
    out: list[str] = []
    while len(out) < n:
        w = syllable_word(rng, rng.choice(syllables), coda)
        low = w.lower()
        if len(low) < 3 or low in reserved or low in prefixes or any(low[:i] in taken for i in range(1, len(low))):
            continue
        taken.add(low)
        prefixes.update(low[:i] for i in range(1, len(low) + 1))
        out.append(w)
    return out


def make_people(rng: random.Random, n: int, taken: set[str], reserved=frozenset()) -> tuple[list[str], dict[str, str]]:
    """``n`` unique "First Family" names, in random order, and each person's pronoun.

    Every first name is used by about PEOPLE_PER_FIRST people and every family name by
    PEOPLE_PER_FAMILY or more, never twice with the same first name. A first name has a
    pronoun (``he`` or ``she``); one person in ten is ``they`` whatever the first name.

    Examples:
        >>> names, pronouns = make_people(random.Random(0), 120, set())
        >>> len(set(names)), sorted(set(pronouns.values()))
        (120, ['he', 'she', 'they'])
        >>> from collections import Counter
        >>> min(Counter(n.split()[1] for n in names).values())
        6
    """
    n_family = max(1, n // PEOPLE_PER_FAMILY)
    firsts = new_words(rng, max(PEOPLE_PER_FAMILY + 2, n // PEOPLE_PER_FIRST), taken, (2,), 0.5, reserved)
    families = new_words(rng, n_family, taken, (2, 3), 0.8, reserved)
    sizes = [n // n_family + (i < n % n_family) for i in range(n_family)]
    used = dict.fromkeys(firsts, 0)
    names = []
    for family, size in zip(families, sizes, strict=True):
        # The least-used first names, ties broken at random, keep first names evenly shared.
        for first in sorted(firsts, key=lambda f: (used[f], rng.random()))[:size]:
            used[first] += 1
            names.append(f"{first} {family}")
    rng.shuffle(names)
    gender = {f: ("she", "he")[i % 2] for i, f in enumerate(firsts)}
    pronouns = {name: "they" if rng.random() < 0.1 else gender[name.split()[0]] for name in names}
    return names, pronouns


def make_objects(
    rng: random.Random, taken: set[str], reserved=frozenset(), towns: int = 48, companies: int = 32, schools: int = 24
) -> dict[str, list[str]]:
    """Generated candidates of the birthplace, employer and school relations.

    Towns are single words of two or three syllables; a company is two words of a shared
    pool and a sector ("Dorvan Keith Foods"); a school is a word and a kind of school.

    Examples:
        >>> objs = make_objects(random.Random(0), set())
        >>> {r: len(c) for r, c in objs.items()}
        {'birthplace': 48, 'employer': 32, 'school': 24}
        >>> objs["employer"][0].split()[-1], objs["school"][1].split()[-1]
        ('Systems', 'College')
    """
    places = new_words(rng, towns, taken, (2, 3), 0.6, reserved)
    pieces = new_words(rng, max(8, companies * 2 // 3), taken, (1, 2), 0.7, reserved)
    pairs = [(a, b) for a in pieces for b in pieces if a != b]
    firms = [f"{a} {b} {SECTORS[i % len(SECTORS)]}" for i, (a, b) in enumerate(rng.sample(pairs, companies))]
    school_words = new_words(rng, schools, taken, (2,), 0.6, reserved)
    colleges = [f"{w} {SCHOOLS[i % len(SCHOOLS)]}" for i, w in enumerate(school_words)]
    return {"birthplace": places, "employer": firms, "school": colleges}
