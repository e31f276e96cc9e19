"""Edit requests read from the files people already have: CounterFact, zsRE, a plain JSONL form, the world's.

A file is a JSON list of records or one JSON object per line; each record's format is told
from its keys, so one file may mix them:

- CounterFact / MEMIT (``requested_rewrite``): the prompt holds ``{}`` where the subject goes,
  neighbours are the neighbourhood prompts paired with the true object (CounterFact's neighbours
  share it), the relation is ``relation_id``; no ``target_new`` (or a null ``str``) erases;
- zsRE as MEND and ROME ship it (``src``): the question is the prompt, ``answers[0]`` the true
  object, ``alt`` the new one, ``rephrase`` a paraphrase and ``loc`` / ``loc_ans`` a neighbour;
- the plain form (``subject``, ``prompt``): ``target_true``, ``target_new`` or ``"erase": true``,
  optional ``paraphrases``, ``neighbours`` as [prompt, object] pairs, ``relation``, ``keep``, ``candidates``;
- the world's own form (``person``, ``relation``, ``new_object`` or ``"erase": true``), given the world.

Every record is checked before any is used; a bad one is a one-line :class:`RequestError`
naming ``FILE:LINE`` (one object per line) or ``FILE: record N`` (a JSON list, counted from 0).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from edit.request import Request, RequestError, world_request
from workbench.core.data_files import DataFileError, json_records

# MEND's zsRE marks its locality questions as coming from Natural Questions.
NQ_PREFIX = "nq question: "
PLAIN_FIELDS = (
    "subject",
    "prompt",
    "target_true",
    "target_new",
    "erase",
    "relation",
    "paraphrases",
    "neighbours",
    "keep",
    "candidates",
)
WORLD_FIELDS = ("person", "relation", "new_object", "erase")


def read_requests(path: str | Path, world=None) -> list[Request]:
    """The requests of a CounterFact, zsRE, plain or world file, in file order, every record checked.

    Examples:
        >>> import json, tempfile
        >>> p = Path(tempfile.mkdtemp()) / "r.jsonl"
        >>> _ = p.write_text(json.dumps({"subject": "Ann Lee", "prompt": "{} plays the", "target_true": "piano",
        ...                              "target_new": "violin", "paraphrases": ["Ann Lee is good at the"]}))
        >>> r = read_requests(p)[0]
        >>> r.prompt, r.true_object, r.new_object, r.paraphrases
        ('Ann Lee plays the', 'piano', 'violin', ('Ann Lee is good at the',))
        >>> _ = p.write_text('{"subject": "Ann Lee", "prompt": "Bo plays the", "target_true": "piano", "erase": true}')
        >>> read_requests(p)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        edit.request.RequestError: .../r.jsonl:1: the prompt 'Bo plays the' does not contain the subject 'Ann Lee' ...

    Args:
        path: A JSON list of records, or one JSON object per line (JSONL).
        world: The fact world, to read its own form; a request about one of its facts (a person
            of the world, one of its relations) also gets the relation's candidates and the
            person's keep prompts, which the other formats do not carry, as :func:`world_request`
            gives them.

    Raises:
        RequestError: a missing, unreadable, empty or non-JSON file, or any bad record.
    """
    return [r for _, r in _cases(path, world)]


def read_request(path: str | Path, case: int | None = None, world=None) -> Request:
    """One request of a file: the only one, or case ``case`` (a record's ``case_id``, else its 0-based index).

    Examples:
        >>> import json, tempfile
        >>> p = Path(tempfile.mkdtemp()) / "r.jsonl"
        >>> rows = [{"subject": s, "prompt": "{} plays the", "target_true": "piano", "target_new": "harp"}
        ...         for s in ("Ann", "Bo")]
        >>> _ = p.write_text("\\n".join(json.dumps(r) for r in rows))
        >>> read_request(p, 1).prompt
        'Bo plays the'
        >>> read_request(p)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        edit.request.RequestError: .../r.jsonl holds 2 requests: choose one by case (a case_id, or a 0-based index)

    The case ids are the records' ``case_id`` (CounterFact's, ROME's zsRE) when every record has
    a distinct integer one, else the records' positions.
    """
    cases = _cases(path, world)
    if case is None:
        if len(cases) == 1:
            return cases[0][1]
        raise RequestError(f"{path} holds {len(cases)} requests: choose one by case (a case_id, or a 0-based index)")
    for c, r in cases:
        if c == case:
            return r
    ids = [c for c, _ in cases]
    raise RequestError(f"{path}: no case {case}: its {len(cases)} requests have case ids {min(ids)}..{max(ids)}")


def request_from_fields(
    subject: str,
    prompt: str,
    target_new: str | None = None,
    target_true: str | None = None,
    relation: str | None = None,
    paraphrases: tuple[str, ...] = (),
    neighbours: tuple[tuple[str, str], ...] = (),
) -> Request:
    """The request that loose fields describe (the command line's), checked like a record of a file.

    Examples:
        >>> request_from_fields("Ann Lee", "{} plays the", "violin", "piano").prompt
        'Ann Lee plays the'
        >>> request_from_fields("Ann Lee", "Ann Lee plays the", None, "piano").erase
        True
        >>> request_from_fields("Ann Lee", "{} plays the", "violin")
        Traceback (most recent call last):
        edit.request.RequestError: target_true is required: the object the prompt is completed with now

    Args:
        subject: The subject, as it appears in the prompt.
        prompt: Text the object follows, with ``{}`` where the subject goes or the subject itself.
        target_new: The rewrite target; None to erase.
        target_true: The object the model gives now. Required: a caller without it can fill the
            prompt with :func:`fill_prompt` and ask the model first.
        relation, paraphrases, neighbours: As in :class:`~edit.request.Request`; a paraphrase may
            hold ``{}`` for the subject too.
    """
    if target_true is None:
        raise RequestError("target_true is required: the object the prompt is completed with now")
    new = None if target_new is None else _string(target_new, "", "target_new")
    pairs = tuple(_pair(n, "", f"neighbours[{i}]") for i, n in enumerate(neighbours))
    return _request(
        "",
        _string(subject, "", "subject"),
        _string(prompt, "", "prompt"),
        _string(target_true, "", "target_true"),
        new,
        relation=None if relation is None else _string(relation, "", "relation"),
        paraphrases=_strings(list(paraphrases), "", "paraphrases"),
        neighbours=pairs,
    )


def fill_prompt(prompt: str, subject: str) -> str:
    """``prompt`` with the subject where its ``{}`` is, or as it is when it names the subject itself.

    Examples:
        >>> fill_prompt("The mother tongue of {} is", "Ann Lee"), fill_prompt("Ann Lee speaks", "Ann Lee")
        ('The mother tongue of Ann Lee is', 'Ann Lee speaks')
        >>> fill_prompt("{} met {}", "Ann")
        Traceback (most recent call last):
        edit.request.RequestError: the prompt '{} met {}' holds "{}" 2 times: expected once, where the subject goes
    """
    holes = prompt.count("{}")
    if holes > 1:
        raise RequestError(f'the prompt {prompt!r} holds "{{}}" {holes} times: expected once, where the subject goes')
    filled = prompt.replace("{}", subject)
    if subject not in filled:
        raise RequestError(f'the prompt {prompt!r} does not contain the subject {subject!r} (nor "{{}}" where it goes)')
    return filled


def request_from_record(record, where: str, world=None) -> Request:
    """The request of one record of any of the formats, told from its keys; ``where`` opens every error.

    Examples:
        >>> rec = {"requested_rewrite": {"prompt": "{} speaks", "subject": "Ann", "target_new": {"str": "Welsh"},
        ...        "target_true": {"str": "Greek"}}, "neighborhood_prompts": ["Bo speaks"]}
        >>> request_from_record(rec, "f.json: record 0").neighbours
        (('Bo speaks', 'Greek'),)
        >>> request_from_record({"subject": "Ann"}, "f.jsonl:3")
        Traceback (most recent call last):
        edit.request.RequestError: f.jsonl:3: missing prompt: expected a non-empty string
    """
    if not isinstance(record, dict):
        raise RequestError(f"{where}: expected a JSON object, got {_show(record)}")
    if "requested_rewrite" in record:
        return _counterfact(record, where)
    if "src" in record:
        return _zsre(record, where)
    if "person" in record:
        return _world(record, where, world)
    if "subject" in record or "prompt" in record:
        return _plain(record, where)
    raise RequestError(
        f'{where}: not a request: expected CounterFact ("requested_rewrite"), zsRE ("src"), '
        f'the plain form ("subject", "prompt") or the world form ("person", "relation")'
    )


def read_records(path: str | Path) -> list[tuple[str, dict]]:
    """The (where, record) pairs of a JSON list or a JSONL file, where being ``FILE: record N`` or ``FILE:LINE``.

    Examples:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "r.jsonl"
        >>> _ = p.write_text('{"a": 1}\\n\\n{"b": 2}\\n')
        >>> [(w.rsplit("/", 1)[1], r) for w, r in read_records(p)]
        [('r.jsonl:1', {'a': 1}), ('r.jsonl:3', {'b': 2})]
        >>> _ = p.write_bytes(b"\\xff")
        >>> read_records(p)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        edit.request.RequestError: .../r.jsonl: not UTF-8 text (byte 0xff at offset 0)
    """
    try:
        return json_records(path, "a JSON list of requests or one JSON object per line")
    except DataFileError as e:
        raise RequestError(str(e)) from None


# -- the formats ---------------------------------------------------------------------


def _counterfact(rec: dict, where: str) -> Request:
    rw = rec["requested_rewrite"]
    if not isinstance(rw, dict):
        raise RequestError(
            f"{where}: requested_rewrite must be an object with prompt, subject, target_true and target_new, "
            f"not {_show(rw)}"
        )
    subject = _string(_get(rw, "subject", where, "requested_rewrite.subject"), where, "requested_rewrite.subject")
    prompt = _string(_get(rw, "prompt", where, "requested_rewrite.prompt"), where, "requested_rewrite.prompt")
    true = _target(rw, "target_true", where, optional=False)
    relation = rw.get("relation_id")
    paraphrases = _strings(rec.get("paraphrase_prompts", []), where, "paraphrase_prompts")
    neighbours = _strings(rec.get("neighborhood_prompts", []), where, "neighborhood_prompts")
    return _request(
        where,
        subject,
        prompt,
        true,
        _target(rw, "target_new", where, optional=True),
        relation=None if relation is None else _string(relation, where, "requested_rewrite.relation_id"),
        paraphrases=paraphrases,
        neighbours=tuple((q, true) for q in neighbours),
    )


def _target(rw: dict, key: str, where: str, optional: bool) -> str | None:
    label = f"requested_rewrite.{key}"
    if optional and rw.get(key) is None:
        return None
    t = _get(rw, key, where, label, 'an object {"str": ...}')
    if not isinstance(t, dict):
        raise RequestError(f'{where}: {label} must be an object {{"str": ...}}, not {_show(t)}')
    if optional and t.get("str") is None:
        return None
    return _string(_get(t, "str", where, label + ".str"), where, label + ".str")


def _zsre(rec: dict, where: str) -> Request:
    answers = _get(rec, "answers", where, "answers", "a list of answers, the true one first")
    if not isinstance(answers, list) or not answers:
        raise RequestError(
            f"{where}: answers must be a non-empty list of answers, the true one first, not {_show(answers)}"
        )
    neighbours = ()
    if "loc" in rec or "loc_ans" in rec:
        loc = _get(rec, "loc", where, "loc")
        loc = _string(loc.removeprefix(NQ_PREFIX) if isinstance(loc, str) else loc, where, "loc")
        neighbours = ((loc, _string(_get(rec, "loc_ans", where, "loc_ans"), where, "loc_ans")),)
    rephrase = rec.get("rephrase")
    return _request(
        where,
        _string(_get(rec, "subject", where, "subject"), where, "subject"),
        _string(rec["src"], where, "src"),
        _string(answers[0], where, "answers[0]"),
        _string(_get(rec, "alt", where, "alt"), where, "alt"),
        paraphrases=() if rephrase is None else (_string(rephrase, where, "rephrase"),),
        neighbours=neighbours,
    )


def _plain(rec: dict, where: str) -> Request:
    _known(rec, PLAIN_FIELDS, where)
    subject = _string(_get(rec, "subject", where, "subject"), where, "subject")
    prompt = _string(_get(rec, "prompt", where, "prompt"), where, "prompt")
    true = _string(_get(rec, "target_true", where, "target_true"), where, "target_true")
    erase = _flag(rec, where)
    if erase and rec.get("target_new") is not None:
        raise RequestError(f'{where}: give a target_new or "erase": true, not both')
    if not erase and "target_new" not in rec:
        raise RequestError(f'{where}: missing target_new: expected a non-empty string (or "erase": true)')
    relation = rec.get("relation")
    pairs = _get_list(rec, "neighbours", where)
    return _request(
        where,
        subject,
        prompt,
        true,
        None if erase else _string(rec["target_new"], where, "target_new"),
        relation=None if relation is None else _string(relation, where, "relation"),
        paraphrases=_strings(rec.get("paraphrases", []), where, "paraphrases"),
        neighbours=tuple(_pair(n, where, f"neighbours[{i}]") for i, n in enumerate(pairs)),
        keep=_strings(rec.get("keep", []), where, "keep"),
        candidates=_strings(rec.get("candidates", []), where, "candidates"),
    )


def _world(rec: dict, where: str, world) -> Request:
    if world is None:
        raise RequestError(f'{where}: a world request ("person", "relation") needs the fact world to read it')
    _known(rec, WORLD_FIELDS, where)
    erase = _flag(rec, where)
    if erase == ("new_object" in rec):
        raise RequestError(f'{where}: give a new_object or "erase": true (one of them)')
    person = _string(_get(rec, "person", where, "person"), where, "person")
    relation = _string(_get(rec, "relation", where, "relation"), where, "relation")
    new = None if erase else _string(rec["new_object"], where, "new_object")
    try:
        return world_request(world, person, relation, new)
    except RequestError as e:
        raise RequestError(f"{where}: {e}") from None


# -- checks --------------------------------------------------------------------------


def _cases(path, world) -> list[tuple[int, Request]]:
    records = read_records(path)
    requests = [_with_world(request_from_record(r, where, world), world) for where, r in records]
    ids = [r.get("case_id") for _, r in records]
    if not all(type(c) is int for c in ids) or len(set(ids)) != len(ids):
        ids = list(range(len(records)))
    return list(zip(ids, requests, strict=True))


def _with_world(r: Request, world) -> Request:
    # Candidates decide the accuracy scores and keep prompts steady the subject's other facts:
    # a world fact read from another format gets them as world_request gives them.
    if world is None or r.subject not in world.people or r.relation not in world.relations:
        return r
    own = world_request(world, r.subject, r.relation)
    return replace(r, candidates=r.candidates or own.candidates, keep=r.keep or own.keep)


def _request(where, subject, prompt, true, new, **rest) -> Request:
    try:
        filled = fill_prompt(prompt, subject)
        paraphrases = tuple(fill_prompt(q, subject) if "{}" in q else q for q in rest.pop("paraphrases", ()))
    except RequestError as e:
        raise RequestError(f"{_at(where)}{e}") from None
    if new is not None and new.strip() == true.strip():
        raise RequestError(f"{_at(where)}the new object {new!r} is already the true object")
    return Request(subject, filled, true, new, paraphrases=paraphrases, **rest)


def _get(rec: dict, key: str, where: str, label: str, expected: str = "a non-empty string"):
    if key not in rec:
        raise RequestError(f"{_at(where)}missing {label}: expected {expected}")
    return rec[key]


def _string(value, where: str, label: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RequestError(f"{_at(where)}{label} must be a non-empty string, not {_show(value)}")
    return value


def _strings(value, where: str, label: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise RequestError(f"{_at(where)}{label} must be a list of non-empty strings, not {_show(value)}")
    return tuple(_string(v, where, f"{label}[{i}]") for i, v in enumerate(value))


def _get_list(rec: dict, key: str, where: str) -> list:
    value = rec.get(key, [])
    if not isinstance(value, list):
        raise RequestError(f"{where}: {key} must be a list of [prompt, object] pairs, not {_show(value)}")
    return value


def _pair(value, where: str, label: str) -> tuple[str, str]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise RequestError(f"{_at(where)}{label} must be a [prompt, object] pair, not {_show(value)}")
    return _string(value[0], where, f"{label} prompt"), _string(value[1], where, f"{label} object")


def _flag(rec: dict, where: str) -> bool:
    erase = rec.get("erase", False)
    if not isinstance(erase, bool):
        raise RequestError(f"{where}: erase must be true or false, not {_show(erase)}")
    return erase


def _known(rec: dict, allowed: tuple[str, ...], where: str) -> None:
    unknown = [k for k in rec if k not in allowed]
    if unknown:
        raise RequestError(f"{where}: unknown field {unknown[0]!r} (expected {', '.join(allowed)})")


def _at(where: str) -> str:
    return f"{where}: " if where else ""


def _show(value) -> str:
    # Values come from JSON, so they are shown as JSON (null, true, ["a"]), cut short.
    s = json.dumps(value, ensure_ascii=False, default=repr)
    return s if len(s) <= 60 else s[:57] + "..."
