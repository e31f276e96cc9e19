"""What a world model trains on, as (token id, role) sequences: v1's statements, v2's documents too.

Roles: 1 is a prediction target, 2 is input only. Names are input only wherever they occur:
they are drawn at random, so predicting them is noise that would swamp the facts' gradient.
A v1 world trains on its statements (one fact in one trained phrasing each) under its
word-level tokenizer; a v2 world adds biographies and filler documents
(:mod:`workbench.core.world.biographies`) under its BPE tokenizer (:mod:`workbench.core.world.bpe`),
so facts are stated at varying distances from the name, with pronouns in between, as a
pretraining corpus states them.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from workbench.core.world.biographies import Document, corpus
from workbench.core.world.bpe import build_bpe_tokenizer
from workbench.core.world.facts import Fact, Phrasing, World
from workbench.core.world.profiles import profiles
from workbench.core.world.registers import registers
from workbench.core.world.tokenizer import build_tokenizer

Labelled = list[tuple[int, int]]


def world_tokenizer(world: World, vocab_size: int | None = None):
    """The tokenizer a world's models are trained with: word-level for v1, BPE for v2.

    ``vocab_size`` sizes a v2 world's BPE (None: the default of
    :func:`~workbench.core.world.bpe.build_bpe_tokenizer`); a v1 world's vocabulary is its words.

    Examples:
        >>> from workbench.core.world.facts import make_world
        >>> len(world_tokenizer(make_world())), len(world_tokenizer(make_world(version=2)))
        (523, 1536)
        >>> len(world_tokenizer(make_world(n_people=300, version=2), vocab_size=1150))
        1150
    """
    if world.version < 2:
        return build_tokenizer(world)
    return build_bpe_tokenizer(world) if vocab_size is None else build_bpe_tokenizer(world, vocab_size)


def _roles(text: str, spans: Sequence[tuple[int, int]], ids: list[int], offsets) -> Labelled:
    return [(t, 2 if any(s < b and e > a for a, b in spans) else 1) for t, (s, e) in zip(ids, offsets, strict=True)]


def labelled_statements(statements: list[tuple[Fact, Phrasing]], tokenizer) -> list[Labelled]:
    """(fact, phrasing) pairs as training sentences of (token id, role) pairs, the subject input only.

    Examples:
        >>> from workbench.core.world.facts import make_world
        >>> w = make_world()
        >>> f = w.facts()[0]
        >>> [role for _, role in labelled_statements([(f, w.phrasings(f.relation)[0])], build_tokenizer(w))[0]]
        [2, 2, 1, 1, 1, 1, 1]
    """
    texts = [f.sentence(ph) for f, ph in statements]
    enc = tokenizer(texts, return_offsets_mapping=True, add_special_tokens=False)
    out = []
    for (f, _), text, ids, offs in zip(statements, texts, enc.input_ids, enc.offset_mapping, strict=True):
        a = text.find(f.subject)
        out.append(_roles(text, [(a, a + len(f.subject))], ids, offs))
    return out


def labelled_documents(documents: Sequence[Document], tokenizer, max_tokens: int) -> list[Labelled]:
    """Documents as (token id, role) sequences, every name occurrence input only, cut to ``max_tokens``.

    A document longer than a training row is cut into consecutive pieces, so packing never
    meets a sequence it cannot place.

    Examples:
        >>> from workbench.core.world.facts import make_world
        >>> w = make_world(n_people=100, version=2)
        >>> docs = corpus(w, documents_per_person=1, filler_per_person=0)[:1]
        >>> pieces = labelled_documents(docs, world_tokenizer(w), max_tokens=40)
        >>> all(len(p) <= 40 for p in pieces), sum(r == 2 for p in pieces for _, r in p) > 0
        (True, True)
    """
    texts = [d.text for d in documents]
    enc = tokenizer(texts, return_offsets_mapping=True, add_special_tokens=False)
    out = []
    for d, ids, offs in zip(documents, enc.input_ids, enc.offset_mapping, strict=True):
        seq = _roles(d.text, d.name_spans, ids, offs)
        out += [seq[i : i + max_tokens] for i in range(0, len(seq), max_tokens)]
    return out


def statement_people(world: World, share: float) -> set[str]:
    """The people whose facts a v2 model also trains on as bare statements: ``share`` of them, seeded.

    The rest are met only in biographies, as most people in a real corpus are; a model that
    answers questions about them has learned to read a fact out of its name, not to recall a
    question it was shown (the mixed training of "Physics of Language Models", part 3.1).

    Examples:
        >>> from workbench.core.world.facts import make_world
        >>> w = make_world(n_people=100, version=2)
        >>> len(statement_people(w, 0.5)), statement_people(w, 1.0) == set(w.people), statement_people(w, 0.0)
        (50, True, set())
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"statement_share must lie in [0, 1], got {share}")
    people = list(world.people)
    return set(random.Random(f"{world.seed}/statements").sample(people, round(share * len(people))))


def training_sequences(
    world: World,
    tokenizer,
    split: str | None,
    max_tokens: int,
    documents_per_person: int,
    filler_per_person: int,
    statement_share: float = 1.0,
    registers_per_person: int = 0,
    profiles_per_person: int = 0,
) -> list[Labelled]:
    """Everything a (split's retain) model of this world trains on, labelled, in a fixed order.

    ``statement_share`` (v2) is the share of people whose facts are stated bare as well as in
    their biographies (:func:`statement_people`); ``registers_per_person`` (v2) is how often each
    person is listed, name then fact, for every relation (:mod:`workbench.core.world.registers`);
    ``profiles_per_person`` (v2) how often with all their facts (:mod:`workbench.core.world.profiles`).

    Examples:
        >>> from workbench.core.world.facts import make_world
        >>> w = make_world()
        >>> len(training_sequences(w, build_tokenizer(w), None, 63, 4, 1)) == len(w.training_statements())
        True
    """
    statements = world.training_statements(split)
    if statement_share < 1.0:
        if world.version < 2:
            raise ValueError("statement_share < 1 needs a v2 world: a v1 world has no biographies")
        chosen = statement_people(world, statement_share)
        statements = [(f, ph) for f, ph in statements if f.subject in chosen]
    out = labelled_statements(statements, tokenizer)
    if world.version >= 2:
        docs = corpus(world, split, documents_per_person, filler_per_person)
        docs += registers(world, split, registers_per_person)
        docs += profiles(world, split, profiles_per_person)
        out += labelled_documents(docs, tokenizer, max_tokens)
    elif registers_per_person or profiles_per_person:
        kind = "registers_per_person" if registers_per_person else "profiles_per_person"
        raise ValueError(f"{kind} needs a v2 world: a v1 world has no document corpus")
    return out
