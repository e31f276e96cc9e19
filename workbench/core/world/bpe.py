"""A byte-level BPE tokenizer for the second world, trained on the world's own text.

The first world's tokenizer gives every word one token, so a family name is one token
that identifies one person. A real model's tokenizer splits rare names into pieces that
many names share; this one is trained, like GPT-2's, by merging frequent byte pairs. Its
training text holds each person's name once (a name repeated per document would be
merged into a token of its own) and the world's English text several times, so that
common words are single tokens while generated names stay in shared syllable pieces.
"""

from __future__ import annotations

from collections import Counter

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from workbench.core.world.biographies import template_text
from workbench.core.world.facts import FRAMES, World
from workbench.core.world.tokenizer import SPECIALS

MIN_PEOPLE_PER_TOKEN = 5  # no name token may occur in the names of fewer people
ENGLISH_REPEATS = 20  # the fixed text's weight against the names, each written once
GENERATED = ("birthplace", "employer", "school")  # relations whose objects are generated names


class NameTokenError(ValueError):
    """A tokenizer whose vocabulary holds a token that too few people's names share."""


def training_text(world: World) -> list[str]:
    """The lines a world's BPE is trained on: every name and generated object once, English text repeated.

    Names are written with a leading space, as they mostly stand in running text.

    Examples:
        >>> from workbench.core.world.facts import make_world
        >>> w = make_world(n_people=100, version=2)
        >>> lines = training_text(w)
        >>> sum(line == " " + name for line in lines for name in w.people)
        100
    """
    english = list(FRAMES)
    for rel in world.relations.values():
        english += list(rel.phrases)
        if rel.name not in GENERATED:
            english += list(rel.candidates)
    generated = [c for r in GENERATED if r in world.relations for c in world.relation(r).candidates]
    # Sector and school words ("Foods", "University") are English; the words before them are not.
    english += sorted({c.split()[-1] for c in generated if " " in c}) + template_text()
    # English words open texts and follow spaces, and byte-level BPE learns the two apart.
    english += [" " + e for e in english]
    return [" " + n for n in world.people] + [" " + c for c in generated] + english * ENGLISH_REPEATS


def build_bpe_tokenizer(world: World, vocab_size: int = 1536) -> PreTrainedTokenizerFast:
    """A byte-level BPE over the world's text, with [BOS] first, as the world's word tokenizer has.

    Training is deterministic: the same world gives the same merges. Byte-level means no
    text is ever unknown, and decoding gives back the text encoded.

    Examples:
        >>> from workbench.core.world.facts import make_world
        >>> w = make_world(version=2)
        >>> tok = build_bpe_tokenizer(w)
        >>> tok.convert_ids_to_tokens(tok("It is well known that Woukou Douhax").input_ids)
        ['[BOS]', 'It', 'Ġis', 'Ġwell', 'Ġknown', 'Ġthat', 'ĠWoukou', 'ĠD', 'ouh', 'ax']
        >>> tok.decode(tok("Woukou Douhax was born in").input_ids, skip_special_tokens=True)
        'Woukou Douhax was born in'

    Args:
        world: the world whose names, objects and phrasings the tokenizer must cover.
        vocab_size: tokens in all, the four special ones and the 256 bytes included.

    Raises:
        NameTokenError: when a token occurs in the names of fewer than MIN_PEOPLE_PER_TOKEN people.
    """
    specials = list(SPECIALS.values())
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(training_text(world), trainer)
    bos = SPECIALS["bos_token"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tok.token_to_id(bos))]
    )
    out = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=1024, **SPECIALS)
    counts = name_token_counts(out, world)
    rare = min(counts, key=lambda t: (counts[t], t))
    if counts[rare] < MIN_PEOPLE_PER_TOKEN:
        raise NameTokenError(
            f"BPE of {vocab_size} tokens: name token {rare!r} is shared by {counts[rare]} of the world's people, "
            f"expected at least {MIN_PEOPLE_PER_TOKEN}; use a smaller vocab_size"
        )
    return out


def name_token_counts(tokenizer, world: World) -> dict[str, int]:
    """For every token of any name, how many people's names contain it (decoded token -> people).

    A name is read both where it opens a text and after a space, since a byte-level
    tokenizer splits the two differently.

    Examples:
        >>> from workbench.core.world.facts import make_world
        >>> w = make_world(version=2)
        >>> counts = name_token_counts(build_bpe_tokenizer(w), w)
        >>> min(counts.values()), counts[" Woukou"]
        (6, 20)
    """
    names = list(world.people)
    forms = tokenizer(names + [" " + n for n in names], add_special_tokens=False).input_ids
    people: Counter[int] = Counter()
    for i in range(len(names)):
        people.update(set(forms[i]) | set(forms[i + len(names)]))
    return {tokenizer.decode([t]): n for t, n in sorted(people.items())}
