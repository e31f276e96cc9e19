"""The world's facts written in the formats of TOFU and WMDP, as a user's own data would come.

A forget split becomes TOFU question-answer records, a retain set (a seeded sample of everyone
else's facts) the same, both also as plain ``{"text": ...}`` JSON Lines, and the forget split
as WMDP-style multiple choice. Read back with :mod:`workbench.core.data_files`, they let the
text path of unlearning be checked on a model whose exact answer is known.

The world has no question phrasings (its closed vocabulary has no "Where" or "?"), so the
question is the fact's plain trained prompt ("X was born in") and the answer its object, which
makes :attr:`~workbench.core.data_files.QA.text` a sentence the world model was trained on
(without the final " ."). The paraphrased question is one of the relation's held-out phrasings
(never trained on), drawn per fact, as the world's own paraphrase test asks. An object's name
has no paraphrase, so ``paraphrased_answer`` is left out. The perturbed answers, as in TOFU,
are five wrong answers of the same kind: other candidates of the relation.

Regenerate the shipped files with ``python -m workbench.core.world.as_tofu``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

from workbench.core.data_files import QA, Choice
from workbench.core.world.facts import Fact, World, make_world

EXAMPLES = Path(__file__).with_name("examples")
PERTURBED = 5  # TOFU's perturbed files carry five wrong answers per question
CHOICES = 4  # WMDP's questions have four choices


def _rng(seed: int, fact: Fact, what: str) -> random.Random:
    # Seeded per fact (a string seed is hashed the same in every process), so one fact's draws
    # do not depend on which other facts are written with it.
    return random.Random(f"{seed}/{what}/{fact.subject}/{fact.relation}")


def _prompt(world: World, fact: Fact) -> str:
    # Frame 0, phrase 0: the bare statement ("X was born in"), trained for every relation.
    return world.phrasings(fact.relation)[0].prompt(fact.subject)


def _paraphrase(world: World, fact: Fact, seed: int) -> str:
    return _rng(seed, fact, "paraphrase").choice(world.phrasings(fact.relation, held_out=True)).prompt(fact.subject)


def _wrong(world: World, fact: Fact, n: int, seed: int, what: str) -> list[str]:
    others = [c for c in world.relation(fact.relation).candidates if c != fact.object]
    return _rng(seed, fact, what).sample(others, min(n, len(others)))


def qa_records(world: World, facts: Sequence[Fact], seed: int = 0) -> list[QA]:
    """One TOFU question-answer record per fact: its plain prompt, its object, five wrong objects, a paraphrase.

    Examples:
        >>> w = make_world()
        >>> qa = qa_records(w, w.facts()[:1])[0]
        >>> qa.question, qa.answer, len(qa.perturbed_answers), qa.answer in qa.perturbed_answers
        ('Fareiv Stohith was born in', 'Grouhor', 5, False)
        >>> w.facts()[0].sentence(w.phrasings("birthplace")[0]) == qa.text + " ."
        True
        >>> qa.paraphrased_question
        'It is well known that Fareiv Stohith is a native of'
    """
    return [
        QA(
            _prompt(world, f),
            f.object,
            None,
            tuple(_wrong(world, f, PERTURBED, seed, "perturbed")),
            _paraphrase(world, f, seed),
        )
        for f in facts
    ]


def choice_records(world: World, facts: Sequence[Fact], seed: int = 0) -> list[Choice]:
    """One four-way multiple-choice question per fact: its prompt, its object among three others.

    Examples:
        >>> w = make_world()
        >>> c = choice_records(w, w.facts()[:1])[0]
        >>> len(c.choices), c.correct == w.facts()[0].object
        (4, True)
    """
    out = []
    for f in facts:
        choices = [f.object, *_wrong(world, f, CHOICES - 1, seed, "distractors")]
        _rng(seed, f, "order").shuffle(choices)
        out.append(Choice(_prompt(world, f), tuple(choices), choices.index(f.object)))
    return out


def texts(world: World, facts: Sequence[Fact]) -> list[str]:
    """Each fact as the sentence the world model was trained on, in its plain phrasing.

    Examples:
        >>> w = make_world()
        >>> texts(w, w.facts()[:1])
        ['Fareiv Stohith was born in Grouhor .']
    """
    return [f.sentence(world.phrasings(f.relation)[0]) for f in facts]


def retain_sample(world: World, split: str, n: int = 200, seed: int = 0) -> list[Fact]:
    """``n`` facts of the split's retained people, drawn with ``seed``, in world order.

    Examples:
        >>> w = make_world()
        >>> r = retain_sample(w, "forget05")
        >>> len(r), any(f.subject in w.split("forget05").forget for f in r)
        (200, False)
    """
    facts = world.facts(world.split(split).retain)
    return [facts[i] for i in sorted(random.Random(seed).sample(range(len(facts)), min(n, len(facts))))]


def example_files(world: World, split: str = "forget05", retain: int = 200, seed: int = 0) -> dict[str, str]:
    """The contents of the example files of a split, by file name.

    Examples:
        >>> files = example_files(make_world())
        >>> sorted(files)  # doctest: +NORMALIZE_WHITESPACE
        ['forget05_choices.jsonl', 'forget05_texts.jsonl', 'retain_texts.jsonl',
         'tofu_forget05.json', 'tofu_retain.json']
        >>> files["forget05_texts.jsonl"].count("\\n"), files["tofu_retain.json"].count('"question"')
        (90, 200)
    """
    forget = world.facts(world.split(split).forget)
    kept = retain_sample(world, split, retain, seed)
    return {
        f"tofu_{split}.json": _json_list([q.to_dict() for q in qa_records(world, forget, seed)]),
        "tofu_retain.json": _json_list([q.to_dict() for q in qa_records(world, kept, seed)]),
        f"{split}_texts.jsonl": _jsonl([{"text": t} for t in texts(world, forget)]),
        "retain_texts.jsonl": _jsonl([{"text": t} for t in texts(world, kept)]),
        f"{split}_choices.jsonl": _jsonl([c.to_dict() for c in choice_records(world, forget, seed)]),
    }


def write_examples(folder: str | Path = EXAMPLES, world: World | None = None, **kwargs) -> list[Path]:
    """Write :func:`example_files` (of the default world unless given) into ``folder``.

    Examples:
        >>> import tempfile
        >>> [p.name for p in write_examples(tempfile.mkdtemp())][:2]
        ['tofu_forget05.json', 'tofu_retain.json']
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, content in example_files(world or make_world(), **kwargs).items():
        (folder / name).write_text(content, encoding="utf-8")
        out.append(folder / name)
    return out


def _json_list(records: list[dict]) -> str:
    # One record a line: valid JSON that still diffs line by line.
    return "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n]\n"


def _jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


__all__ = ["EXAMPLES", "choice_records", "example_files", "qa_records", "retain_sample", "texts", "write_examples"]

if __name__ == "__main__":
    for path in write_examples():
        print(path)
