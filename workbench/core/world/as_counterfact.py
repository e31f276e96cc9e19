"""The world's facts written as edit-request files of other work: CounterFact, zsRE, and a plain JSONL form.

A tool built for those files can then run on the world, where every answer is known, and a
reader of them can be checked against the world's own requests. The examples shipped in
``examples/`` are :func:`write_examples` of the default world.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from workbench.core.world.facts import Fact, World, make_world

EXAMPLES = Path(__file__).parent / "examples"
# Rewrite is a (fact, new object) pair; None as the new object erases the fact.
Rewrite = tuple[Fact, str | None]


def draw_rewrites(world: World, n: int, seed: int = 0) -> list[Rewrite]:
    """``n`` distinct random facts, each with a random other candidate of its relation as the new object.

    The same draw as the benchmarks' random rewrites: the same ``seed`` picks the same facts and objects.

    Examples:
        >>> from workbench.core.world.facts import make_world
        >>> w = make_world()
        >>> rs = draw_rewrites(w, 3)
        >>> len({(f.subject, f.relation) for f, _ in rs}), all(new != f.object for f, new in rs)
        (3, True)
    """
    facts = world.facts()
    if not 0 < n <= len(facts):
        raise ValueError(f"n={n}: the world has {len(facts)} facts")
    rng = random.Random(seed)
    return [
        (f, rng.choice([c for c in world.relation(f.relation).candidates if c != f.object]))
        for f in rng.sample(facts, n)
    ]


def counterfact_records(world: World, rewrites: list[Rewrite], n_neighbours: int = 10) -> list[dict]:
    """The rewrites as CounterFact records: the edit prompt with ``{}``, held-out paraphrases, neighbours.

    The edit prompt is the relation's first trained phrasing; paraphrase prompts are its held-out
    phrasings of the subject; neighbourhood prompts put other people who share the true object
    into the edit prompt, and attribute prompts people who have the new one. ROME's and MEMIT's
    evaluation read every key written here. An erasure is written without ``target_new``.

    Examples:
        >>> from workbench.core.world.facts import make_world
        >>> w = make_world()
        >>> rec = counterfact_records(w, draw_rewrites(w, 1))[0]
        >>> rec["requested_rewrite"]["prompt"], len(rec["paraphrase_prompts"]), len(rec["neighborhood_prompts"])
        ('{} works professionally as', 3, 10)
    """
    out = []
    for i, (fact, new) in enumerate(rewrites):
        template = world.phrasings(fact.relation)[0].template.replace("{s}", "{}")
        rewrite = {"prompt": template, "subject": fact.subject, "relation_id": fact.relation}
        if new is not None:
            rewrite["target_new"] = {"str": new}
        rewrite["target_true"] = {"str": fact.object}
        having_new = [
            f for f in world.facts(relations=[fact.relation]) if f.object == new and f.subject != fact.subject
        ]
        out.append(
            {
                "case_id": i,
                "requested_rewrite": rewrite,
                "paraphrase_prompts": _paraphrases(world, fact),
                "neighborhood_prompts": [template.format(f.subject) for f in _neighbours(world, fact, n_neighbours)],
                "attribute_prompts": [
                    template.format(f.subject) for f in _sample(world, fact, having_new, n_neighbours)
                ],
                "generation_prompts": [p.prompt(fact.subject) for p in world.phrasings(fact.relation)[1:]],
            }
        )
    return out


def zsre_records(world: World, rewrites: list[Rewrite]) -> list[dict]:
    """The rewrites as zsRE records (ROME's form): the edit prompt as ``src``, one rephrase, one neighbour as ``loc``.

    The world asks no questions: ``src`` is the edit prompt, ``rephrase`` the first held-out
    phrasing, and ``loc`` / ``loc_ans`` the first CounterFact neighbour and its (shared) object.

    Examples:
        >>> from workbench.core.world.facts import make_world
        >>> w = make_world()
        >>> rec = zsre_records(w, draw_rewrites(w, 1))[0]
        >>> rec["src"], rec["answers"] == [rec["loc_ans"]], rec["alt"] != rec["loc_ans"]
        ('Studrirk Boniav works professionally as', True, True)
    """
    out = []
    for i, (fact, new) in enumerate(rewrites):
        if new is None:
            raise ValueError(f"{fact.subject} / {fact.relation}: a zsRE record rewrites, it cannot erase")
        prompt = world.phrasings(fact.relation)[0]
        near = _neighbours(world, fact, 1)
        out.append(
            {
                "case_id": i,
                "subject": fact.subject,
                "src": prompt.prompt(fact.subject),
                "answers": [fact.object],
                "alt": new,
                "rephrase": _paraphrases(world, fact)[0],
                **({"loc": prompt.prompt(near[0].subject), "loc_ans": near[0].object} if near else {}),
            }
        )
    return out


def plain_records(world: World, rewrites: list[Rewrite], n_neighbours: int = 10) -> list[dict]:
    """The rewrites in the plain form: subject, prompt with ``{}``, targets, relation, paraphrases, neighbours.

    Examples:
        >>> from workbench.core.world.facts import make_world
        >>> w = make_world()
        >>> rec = plain_records(w, draw_rewrites(w, 1))[0]
        >>> list(rec), rec["neighbours"][0][1] == rec["target_true"]
        (['subject', 'prompt', 'target_true', 'target_new', 'relation', 'paraphrases', 'neighbours'], True)
    """
    out = []
    for cf in counterfact_records(world, rewrites, n_neighbours):
        rw = cf["requested_rewrite"]
        true = rw["target_true"]["str"]
        rec = {"subject": rw["subject"], "prompt": rw["prompt"], "target_true": true}
        rec.update({"target_new": rw["target_new"]["str"]} if "target_new" in rw else {"erase": True})
        rec["relation"] = rw["relation_id"]
        rec["paraphrases"] = cf["paraphrase_prompts"]
        rec["neighbours"] = [[q, true] for q in cf["neighborhood_prompts"]]
        out.append(rec)
    return out


def write_counterfact(world: World, path: str | Path, n: int = 20, seed: int = 0) -> Path:
    """Write ``n`` random rewrites (:func:`draw_rewrites`) as a CounterFact JSON list.

    Examples:
        >>> import json, tempfile
        >>> from workbench.core.world.facts import make_world
        >>> p = write_counterfact(make_world(), Path(tempfile.mkdtemp()) / "cf.json", n=2)
        >>> [r["case_id"] for r in json.loads(p.read_text())]
        [0, 1]
    """
    return _write(path, _json_list(counterfact_records(world, draw_rewrites(world, n, seed))))


def write_zsre(world: World, path: str | Path, n: int = 20, seed: int = 0) -> Path:
    """Write ``n`` random rewrites (:func:`draw_rewrites`) as a zsRE JSON list.

    Examples:
        >>> import json, tempfile
        >>> from workbench.core.world.facts import make_world
        >>> p = write_zsre(make_world(), Path(tempfile.mkdtemp()) / "zsre.json", n=2)
        >>> len(json.loads(p.read_text()))
        2
    """
    return _write(path, _json_list(zsre_records(world, draw_rewrites(world, n, seed))))


def write_plain_jsonl(world: World, path: str | Path, n: int = 20, seed: int = 0) -> Path:
    """Write ``n`` random rewrites (:func:`draw_rewrites`) in the plain form, one JSON object per line.

    Examples:
        >>> import tempfile
        >>> from workbench.core.world.facts import make_world
        >>> p = write_plain_jsonl(make_world(), Path(tempfile.mkdtemp()) / "requests.jsonl", n=2)
        >>> len(p.read_text().splitlines())
        2
    """
    return _write(path, _jsonl(plain_records(world, draw_rewrites(world, n, seed))))


def write_examples(folder: str | Path = EXAMPLES, world: World | None = None) -> list[Path]:
    """Write the shipped example files (20 rewrites each, seed 0) of ``world`` (the default one) into ``folder``.

    Examples:
        >>> import tempfile
        >>> [p.name for p in write_examples(tempfile.mkdtemp())]
        ['counterfact.json', 'zsre.json', 'requests.jsonl']
    """
    # make_world() is the default world model's world: it was trained on make_world(seed=0).
    world = world or make_world()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return [
        write_counterfact(world, folder / "counterfact.json"),
        write_zsre(world, folder / "zsre.json"),
        write_plain_jsonl(world, folder / "requests.jsonl"),
    ]


def _paraphrases(world: World, fact: Fact) -> list[str]:
    return [p.prompt(fact.subject) for p in world.phrasings(fact.relation, held_out=True)]


def _neighbours(world: World, fact: Fact, n: int) -> list[Fact]:
    # CounterFact's neighbours share the true object: an edit that leaks moves them to the new one.
    return _sample(world, fact, world.sharing_object(fact), n)


def _sample(world: World, fact: Fact, facts: list[Fact], n: int) -> list[Fact]:
    # Drawn from the whole world, the same ones for a given fact (as the world's own requests are).
    return random.Random(f"{world.seed}/{fact.subject}/{fact.relation}").sample(facts, min(n, len(facts)))


def _json_list(records: list[dict]) -> str:
    # One record a line: valid JSON that still diffs record by record.
    return "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n]\n"


def _jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def _write(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.write_text(text, encoding="utf-8")
    return path


if __name__ == "__main__":
    for written in write_examples():
        print(written)
