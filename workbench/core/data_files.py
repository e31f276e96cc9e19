"""Forget, retain and evaluation sets read from the file formats people already have.

Three kinds of record, each read strictly (a bad record is a one-line :class:`DataFileError`
naming the file and the line or record):

- texts: JSON Lines or a JSON list of ``{"text": ...}`` records, TOFU question-answer records
  (read as their :attr:`QA.text`), a plain ``.txt``/``.md`` file (one document), or a folder
  (one document per ``*.txt``/``*.md`` file, sorted by name);
- TOFU question-answer pairs: ``{"question", "answer", "paraphrased_answer"?, "perturbed_answer"?,
  "paraphrased_question"?}``;
- WMDP-style multiple choice: ``{"question", "choices": [...], "answer"}``, the answer a 0-based
  index or a letter ("A" is the first choice).

A ``.jsonl`` file is JSON Lines; a ``.json`` file may hold a JSON list, one object, or JSON
Lines (TOFU's own ``.json`` files are JSON Lines), told apart by its first character. Keys a record carries beyond
those read are ignored, so the files of the benchmarks read as they are.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
DOCUMENT_SUFFIXES = (".txt", ".md")
RECORD_SUFFIXES = (".json", ".jsonl")


class DataFileError(ValueError):
    """A data file that cannot be read: missing, not UTF-8, not JSON, empty, or a malformed record."""


@dataclass(frozen=True)
class QA:
    """A question with its answer, as in TOFU; :attr:`text` is how the pair is trained on.

    Examples:
        >>> qa = QA("Where was Ada born?", "In Paris.", perturbed_answers=("In Rome.",))
        >>> qa.text
        'Where was Ada born? In Paris.'
        >>> qa.to_dict()
        {'question': 'Where was Ada born?', 'answer': 'In Paris.', 'perturbed_answer': ['In Rome.']}

    Args:
        question, answer: The pair.
        paraphrased_answer: The answer said another way (TOFU's truth ratio compares it with
            the perturbed answers); None where there is none.
        perturbed_answers: Wrong answers of the same form.
        paraphrased_question: The question asked another way (TOFU's perturbed files carry
            one); None where there is none.
    """

    question: str
    answer: str
    paraphrased_answer: str | None = None
    perturbed_answers: tuple[str, ...] = ()
    paraphrased_question: str | None = None

    @property
    def text(self) -> str:
        """Question, a space, answer: TOFU's prompt format without a chat template."""
        return f"{self.question} {self.answer}"

    def to_dict(self) -> dict:
        """The record under TOFU's key names (absent fields left out)."""
        out: dict = {"question": self.question, "answer": self.answer}
        if self.paraphrased_answer is not None:
            out["paraphrased_answer"] = self.paraphrased_answer
        if self.perturbed_answers:
            out["perturbed_answer"] = list(self.perturbed_answers)
        if self.paraphrased_question is not None:
            out["paraphrased_question"] = self.paraphrased_question
        return out


@dataclass(frozen=True)
class Choice:
    """A multiple-choice question, as in WMDP: the choices and the 0-based index of the right one.

    Examples:
        >>> c = Choice("2 + 2 =", ("3", "4", "5"), 1)
        >>> c.correct, c.to_dict()["answer"]
        ('4', 1)
    """

    question: str
    choices: tuple[str, ...]
    answer: int

    @property
    def correct(self) -> str:
        return self.choices[self.answer]

    def to_dict(self) -> dict:
        return {"question": self.question, "choices": list(self.choices), "answer": self.answer}


def read_texts(path: str | os.PathLike) -> list[str]:
    """The documents of a text file, a folder of them, or a JSON(L) of text or TOFU records.

    Examples:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> _ = (d / "a.jsonl").write_text('{"text": "one"}\\n{"question": "Q?", "answer": "A."}\\n')
        >>> read_texts(d / "a.jsonl")
        ['one', 'Q? A.']
        >>> _ = (d / "b.txt").write_text("A whole document.\\n")
        >>> read_texts(d / "b.txt"), read_texts(d)
        (['A whole document.\\n'], ['A whole document.\\n'])

    Raises:
        DataFileError: a missing path, a file that is not UTF-8 or not JSON, an empty file or
            folder, a record with neither ``text`` nor ``question`` and ``answer``.
    """
    p = Path(path)
    if p.is_dir():
        docs = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in DOCUMENT_SUFFIXES)
        if not docs:
            raise DataFileError(f"{p}: no documents: expected *.txt or *.md files in the folder")
        return [_document(q) for q in docs]
    if p.suffix.lower() in DOCUMENT_SUFFIXES:
        return [_document(p)]
    return _read_records(p, _text, "records with a 'text', or a 'question' and an 'answer'")


def read_qa(path: str | os.PathLike) -> list[QA]:
    """TOFU question-answer records from a JSON list or JSON Lines file.

    Examples:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "forget.json"
        >>> _ = p.write_text('[{"question": "Q?", "answer": "A.", "perturbed_answer": ["B.", "C."]}]')
        >>> [(q.question, q.answer, q.perturbed_answers, q.paraphrased_question) for q in read_qa(p)]
        [('Q?', 'A.', ('B.', 'C.'), None)]

    Raises:
        DataFileError: as :func:`read_texts`, and a record without a non-empty ``question`` and
            ``answer``, or a ``perturbed_answer`` that is not a list of non-empty strings.
    """
    return _read_records(Path(path), _qa, "TOFU records with a 'question' and an 'answer'")


def read_choices(path: str | os.PathLike) -> list[Choice]:
    """WMDP-style multiple-choice records from a JSON list or JSON Lines file.

    Examples:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "mc.jsonl"
        >>> _ = p.write_text('{"question": "2 + 2 =", "choices": ["3", "4"], "answer": "B"}\\n')
        >>> read_choices(p)
        [Choice(question='2 + 2 =', choices=('3', '4'), answer=1)]

    Raises:
        DataFileError: as :func:`read_texts`, and fewer than two choices, or an answer that is
            neither an index of a choice nor the letter of one.
    """
    return _read_records(Path(path), _choice, "records with a 'question', 'choices' and an 'answer'")


# -- reading ---------------------------------------------------------------------------------


def _read(p: Path) -> str:
    if not p.exists():
        raise DataFileError(f"{p}: no such file or folder")
    if p.is_dir():
        raise DataFileError(f"{p}: a folder: expected a .json or .jsonl file")
    try:
        return p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataFileError(f"{p}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start})") from None


def _document(p: Path) -> str:
    text = _read(p)
    if not text.strip():
        raise DataFileError(f"{p}: empty: expected a document")
    return text


def json_records(path: str | os.PathLike, expected: str) -> list[tuple[str, object]]:
    """(where, value) of every record of a JSON list, one JSON object, or JSON Lines.

    ``where`` names the record for messages: ``FILE:LINE`` in JSON Lines (always so for a
    ``.jsonl`` file), ``FILE: record N`` (counted from 0, as ``jq '.[N]'`` counts) in a list.
    Every request, forget-set and choice file is read through here, so all of them fail the
    same way.

    Examples:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "r.jsonl"
        >>> _ = p.write_text('{"a": 1}\\n\\n{"b": 2}\\n')
        >>> [(w.rsplit("/", 1)[1], r) for w, r in json_records(p, "records")]
        [('r.jsonl:1', {'a': 1}), ('r.jsonl:3', {'b': 2})]

    Raises:
        DataFileError: no such file, not UTF-8, empty, not JSON, or no records.
    """
    p = Path(path)
    text = _read(p)
    if not text.strip():
        raise DataFileError(f"{p}: empty: expected {expected}")
    if text.lstrip().startswith("[") and p.suffix.lower() != ".jsonl":
        whole = _whole(p, text)
        items = [(f"{p}: record {i}", r) for i, r in enumerate(whole)]
    else:
        items = _lines(p, text)
        if items is None:  # one pretty-printed object spans lines
            items = [(f"{p}: record 0", _whole(p, text))]
    if not items:
        raise DataFileError(f"{p}: no records: expected {expected}")
    return items


def _read_records(p: Path, convert: Callable[[str, dict], T], expected: str) -> list[T]:
    """Each record converted, where the records are a JSON list, one JSON object, or JSON Lines."""
    if p.suffix.lower() not in RECORD_SUFFIXES and not p.is_dir():
        raise DataFileError(f"{p}: unsupported file type {p.suffix!r}: expected .json or .jsonl of {expected}")
    items = json_records(p, expected)
    out = []
    for where, record in items:
        if not isinstance(record, dict):
            raise DataFileError(f"{where}: expected a JSON object, got {type(record).__name__}")
        out.append(convert(where, record))
    return out


def _whole(p: Path, text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataFileError(f"{p}:{e.lineno}: not JSON ({e.msg} at column {e.colno})") from None


def _lines(p: Path, text: str) -> list[tuple[str, object]] | None:
    """(where, value) per non-blank line; None when the file is one JSON object over several lines."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append((f"{p}:{n}", json.loads(line)))
        except json.JSONDecodeError as e:
            if not out and _is_object(text):
                return None
            raise DataFileError(f"{p}:{n}: not JSON ({e.msg} at column {e.colno})") from None
    return out


def _is_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except json.JSONDecodeError:
        return False


# -- records ---------------------------------------------------------------------------------


def _string(where: str, record: dict, key: str, required: bool = True) -> str | None:
    value = record.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        got = "missing" if key not in record else f"got {json.dumps(value)[:40]}"
        raise DataFileError(f"{where}: expected a non-empty string {key!r} ({got})")
    return value


def _text(where: str, record: dict) -> str:
    if "text" in record:
        return _string(where, record, "text")
    if "question" in record or "answer" in record:
        return _qa(where, record).text
    keys = ", ".join(map(repr, list(record)[:5])) or "none"
    raise DataFileError(f"{where}: expected a 'text', or a 'question' and an 'answer' (keys: {keys})")


def _qa(where: str, record: dict) -> QA:
    perturbed = record.get("perturbed_answer", [])
    if isinstance(perturbed, str):
        perturbed = [perturbed]
    if not isinstance(perturbed, list) or not all(isinstance(a, str) and a.strip() for a in perturbed):
        raise DataFileError(f"{where}: expected 'perturbed_answer' to be a list of non-empty strings")
    return QA(
        _string(where, record, "question"),
        _string(where, record, "answer"),
        _string(where, record, "paraphrased_answer", required=False),
        tuple(perturbed),
        _string(where, record, "paraphrased_question", required=False),
    )


def _choice(where: str, record: dict) -> Choice:
    question = _string(where, record, "question")
    choices = record.get("choices")
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
        raise DataFileError(f"{where}: expected 'choices' to be a list of at least two strings")
    answer = record.get("answer")
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[: len(choices)]
    if isinstance(answer, str) and len(answer.strip()) == 1 and answer.strip().upper() in letters:
        answer = letters.index(answer.strip().upper())
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise DataFileError(
            f"{where}: expected 'answer' to be an index 0..{len(choices) - 1} or a letter "
            f"{letters[0]}..{letters[-1]} (got {json.dumps(answer)[:40]})"
        )
    return Choice(question, tuple(choices), answer)


__all__ = ["QA", "Choice", "DataFileError", "read_choices", "read_qa", "read_texts"]
