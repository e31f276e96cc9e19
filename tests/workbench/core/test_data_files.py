"""Reading forget, retain and evaluation sets from TOFU, WMDP and plain text files, strictly."""

import json

import pytest

from workbench.core.data_files import QA, Choice, DataFileError, read_choices, read_qa, read_texts
from workbench.core.world.as_tofu import EXAMPLES, example_files, write_examples
from workbench.core.world.facts import make_world

TOFU = [
    {"question": "Who wrote it?", "answer": "Basil Mahfouz.", "paraphrased_answer": "It was Basil.",
     "perturbed_answer": ["Ann Lee.", "Bo Kim."], "paraphrased_question": "Whose is it?"},
    {"question": "Where was she born?", "answer": "In Kuwait City."},
]  # fmt: skip


def write(tmp_path, name, content) -> str:
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(p)


def test_texts_from_every_format(tmp_path):
    lines = '{"text": "first"}\n\n{"text": "second", "meta": 1}\n'
    assert read_texts(write(tmp_path, "a.jsonl", lines)) == ["first", "second"]
    assert read_texts(write(tmp_path, "b.json", json.dumps([{"text": "x"}, {"text": "y"}]))) == ["x", "y"]
    assert read_texts(write(tmp_path, "c.json", json.dumps({"text": "one"}, indent=2))) == ["one"]
    # TOFU ships its .json files as JSON Lines: both read, as "question answer".
    tofu_lines = "".join(json.dumps(r) + "\n" for r in TOFU)
    expected = ["Who wrote it? Basil Mahfouz.", "Where was she born? In Kuwait City."]
    assert read_texts(write(tmp_path, "forget.json", tofu_lines)) == expected
    assert read_texts(write(tmp_path, "forget2.json", json.dumps(TOFU, indent=1))) == expected
    assert read_texts(write(tmp_path, "bom.jsonl", b'\xef\xbb\xbf{"text": "bom"}\n')) == ["bom"]
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "b.md").write_text("# Second\n")
    (docs / "a.txt").write_text("First document.\n")
    (docs / "skip.csv").write_text("x,y\n")
    assert read_texts(docs) == ["First document.\n", "# Second\n"]
    assert read_texts(docs / "a.txt") == ["First document.\n"]


def test_qa_and_choices(tmp_path):
    qa = read_qa(write(tmp_path, "tofu.json", json.dumps(TOFU)))
    assert qa[0] == QA("Who wrote it?", "Basil Mahfouz.", "It was Basil.", ("Ann Lee.", "Bo Kim."), "Whose is it?")
    assert qa[1].paraphrased_answer is None and qa[1].perturbed_answers == () and qa[1].paraphrased_question is None
    assert "paraphrased_question" not in qa[1].to_dict() and qa[0].to_dict()["paraphrased_question"] == "Whose is it?"
    assert read_qa(write(tmp_path, "back.json", json.dumps([q.to_dict() for q in qa]))) == qa
    one = '{"question": "Q?", "answer": "A", "perturbed_answer": "B"}\n'
    assert read_qa(write(tmp_path, "one.jsonl", one))[0].perturbed_answers == ("B",)
    rows = [
        {"question": "Which?", "choices": ["a", "b", "c", "d"], "answer": 2},
        {"question": "Which?", "choices": ["a", "b", "c", "d"], "answer": "D"},
        {"question": "Which?", "choices": ["a", "b"], "answer": "a"},
    ]
    got = read_choices(write(tmp_path, "wmdp.jsonl", "".join(json.dumps(r) + "\n" for r in rows)))
    assert [c.answer for c in got] == [2, 3, 0] and got[1].correct == "d"
    assert got[0] == Choice("Which?", ("a", "b", "c", "d"), 2)


MC = '{"question": "Q", "choices": ["a", "b", "c", "d"], "answer": %s}\n'
MALFORMED = [
    # (reader, file name, content, what the one-line error must say)
    (read_texts, "a.jsonl", '{"text": "ok"}\n{"text": "no\n', "a.jsonl:2: not JSON"),
    (read_texts, "a.json", '[\n{"text": "ok"},\n{"text" "x"}\n]', "a.json:3: not JSON"),
    (read_texts, "a.jsonl", b'{"text": "caf\xe9"}\n', "a.jsonl: not UTF-8 text (byte 0xe9"),
    (read_texts, "a.jsonl", "", "a.jsonl: empty"),
    (read_texts, "a.jsonl", "\n  \n", "a.jsonl: empty"),
    (read_texts, "a.json", "[]", "a.json: no records"),
    (read_texts, "a.txt", " \n", "a.txt: empty: expected a document"),
    (read_texts, "a.csv", "text\nhello\n", "a.csv: unsupported file type '.csv'"),
    (read_texts, "a.jsonl", '{"text": "ok"}\n{"body": "x"}\n', "a.jsonl:2: expected a 'text', or a 'question'"),
    (read_texts, "a.jsonl", '{"text": 3}\n', "a.jsonl:1: expected a non-empty string 'text' (got 3)"),
    (read_texts, "a.jsonl", '{"text": "  "}\n', "a.jsonl:1: expected a non-empty string 'text'"),
    (read_texts, "a.jsonl", '["a list"]\n', "a.jsonl:1: expected a JSON object, got list"),
    (read_texts, "a.json", '[{"text": "ok"}, "bare"]', "a.json: record 1: expected a JSON object, got str"),
    (
        read_texts,
        "a.json",
        '[{"text": "ok"}, {"question": "Q?"}]',
        "a.json: record 1: expected a non-empty string 'answer' (missing)",
    ),
    (
        read_qa,
        "a.jsonl",
        '{"question": "Q?", "answer": "A"}\n{"question": "Q?"}\n',
        "a.jsonl:2: expected a non-empty string 'answer'",
    ),
    (
        read_qa,
        "a.json",
        '[{"question": "Q?", "answer": "A", "perturbed_answer": [1]}]',
        "a.json: record 0: expected 'perturbed_answer'",
    ),
    (
        read_qa,
        "a.json",
        '[{"question": "Q?", "answer": "A", "paraphrased_answer": 7}]',
        "a.json: record 0: expected a non-empty string 'paraphrased_answer'",
    ),
    (read_qa, "a.txt", "Q? A.", "a.txt: unsupported file type '.txt'"),
    (
        read_choices,
        "a.jsonl",
        '{"question": "Q", "choices": ["a"], "answer": 0}\n',
        "a.jsonl:1: expected 'choices' to be a list of at least two",
    ),
    (read_choices, "a.jsonl", '{"question": "Q", "choices": ["a", 2], "answer": 0}\n', "a.jsonl:1: expected 'choices'"),
    (read_choices, "a.jsonl", MC % "4", "a.jsonl:1: expected 'answer' to be an index 0..3 or a letter A..D (got 4)"),
    (read_choices, "a.jsonl", MC % '"E"', "a.jsonl:1: expected 'answer' to be an index 0..3"),
    (read_choices, "a.jsonl", MC % "true", "a.jsonl:1: expected 'answer'"),
    (read_choices, "a.jsonl", MC % "-1", "a.jsonl:1: expected 'answer'"),
    (
        read_choices,
        "a.jsonl",
        MC % "1" + '{"choices": ["a", "b"], "answer": 0}\n',
        "a.jsonl:2: expected a non-empty string 'question' (missing)",
    ),
]


@pytest.mark.parametrize("reader, name, content, says", MALFORMED)
def test_malformed_files_give_one_line_errors(tmp_path, reader, name, content, says):
    with pytest.raises(DataFileError) as e:
        reader(write(tmp_path, name, content))
    message = str(e.value)
    assert "\n" not in message and message.startswith(str(tmp_path / name))
    assert says in message, message


def test_missing_paths_and_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("")
    cases = [
        (read_texts, tmp_path / "nothing.jsonl", "nothing.jsonl: no such file or folder"),
        (read_texts, tmp_path / "empty", "empty: no documents: expected *.txt or *.md files"),
        (read_texts, tmp_path / "docs", "a.txt: empty: expected a document"),
        (read_qa, tmp_path / "empty", "empty: a folder: expected a .json or .jsonl file"),
    ]
    for reader, path, says in cases:
        with pytest.raises(DataFileError, match=says.replace("*", r"\*").replace(".", r"\.")) as e:
            reader(path)
        assert "\n" not in str(e.value) and isinstance(e.value, ValueError)


def test_shipped_examples_are_what_the_writer_gives():
    for name, content in example_files(make_world()).items():
        assert (EXAMPLES / name).read_text(encoding="utf-8") == content, f"regenerate {name}: see as_tofu.py"


def test_shipped_examples_read_back(tmp_path):
    world = make_world()
    forgotten = set(world.split("forget05").forget)
    qa = read_qa(EXAMPLES / "tofu_forget05.json")
    assert len(qa) == 90 and all(len(q.perturbed_answers) == 5 and q.answer not in q.perturbed_answers for q in qa)
    person, relation = world.parse_prompt(qa[0].question)
    assert person in forgotten and world.fact(person, relation).object == qa[0].answer
    # The paraphrased question asks the same fact in a phrasing the world model never trained on.
    for q in qa:
        subject, rel = world.parse_prompt(q.question)
        held_out = [ph.prompt(subject) for ph in world.phrasings(rel, held_out=True)]
        assert q.paraphrased_question in held_out and world.parse_prompt(q.paraphrased_question) == (subject, rel)
    texts = read_texts(EXAMPLES / "forget05_texts.jsonl")
    assert texts == [q.text + " ." for q in qa]
    retain = read_texts(EXAMPLES / "retain_texts.jsonl")
    assert len(retain) == 200 and not any(world.parse_prompt(t)[0] in forgotten for t in retain)
    assert retain == [q.text + " ." for q in read_qa(EXAMPLES / "tofu_retain.json")]
    choices = read_choices(EXAMPLES / "forget05_choices.jsonl")
    assert [c.correct for c in choices] == [q.answer for q in qa] and {len(c.choices) for c in choices} == {4}
    assert len({c.answer for c in choices}) == 4  # the right answer is not always in one place
    assert [p.name for p in write_examples(tmp_path, world, split="forget01", retain=10)][0] == "tofu_forget01.json"
    assert len(read_qa(tmp_path / "tofu_forget01.json")) == 18
    assert len(read_texts(tmp_path / "retain_texts.jsonl")) == 10
