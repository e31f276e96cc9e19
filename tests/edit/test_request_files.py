"""Request files: CounterFact, zsRE, plain and world records read back, scored as the world's own, bad ones refused."""

import json
from dataclasses import replace

import pytest

from edit.counterfact import score_requests
from edit.request import Request, RequestError, random_rewrites, world_request
from edit.request_files import read_request, read_requests, request_from_fields
from workbench.core.world.as_counterfact import EXAMPLES, write_examples

SHIPPED = ("counterfact.json", "zsre.json", "requests.jsonl")


def _facts(r: Request) -> tuple:
    return r.subject, r.prompt, r.true_object, r.new_object, r.relation, r.paraphrases


def _swapped(rs: list[Request]) -> list[Request]:
    # True and new object swapped, so that before any edit the model already gives the "new" one
    # and the scores compared are near 1, not all 0; neighbours are scored on their own.
    return [replace(r, true_object=r.new_object, new_object=r.true_object, neighbours=()) for r in rs]


def test_shipped_examples_are_what_the_writers_make_now(world, tmp_path):
    for written in write_examples(tmp_path, world):
        assert written.name in SHIPPED
        assert (EXAMPLES / written.name).read_bytes() == written.read_bytes(), f"{written.name} is stale"


def test_counterfact_file_holds_the_world_requests(world):
    native = random_rewrites(world, 20, seed=0)
    generic = read_requests(EXAMPLES / "counterfact.json")
    assert [_facts(r) for r in generic] == [_facts(r) for r in native]
    assert all(r.candidates == () and r.keep == () for r in generic)
    for r in generic:
        # CounterFact's neighbours share the true object, asked in the edit prompt's phrasing.
        assert 0 < len(r.neighbours) <= 10 and all(o == r.true_object for _, o in r.neighbours)
        assert all(q.endswith(r.prompt.removeprefix(r.subject)) and r.subject not in q for q, _ in r.neighbours)
    with_world = read_requests(EXAMPLES / "counterfact.json", world=world)
    assert [(r.candidates, r.keep) for r in with_world] == [(r.candidates, r.keep) for r in native]


def test_counterfact_file_scores_as_the_world_requests(handle, world):
    native = random_rewrites(world, 20, seed=0)
    generic = read_requests(EXAMPLES / "counterfact.json")
    with_world = read_requests(EXAMPLES / "counterfact.json", world=world)
    want = score_requests(handle, _swapped(native))
    plain, full = score_requests(handle, _swapped(generic)), score_requests(handle, _swapped(with_world))
    for kind in ("efficacy", "paraphrase"):
        # Without the world's candidates, accuracy ranks two objects: only the probability
        # comparison is the same.
        assert full[kind] == want[kind]
        assert (plain[kind]["prob"], plain[kind]["n"]) == (want[kind]["prob"], want[kind]["n"])
    assert want["efficacy"]["prob"] > 0.9 and want["paraphrase"]["prob"] > 0.9
    # Neighbourhood on its own: the unedited model keeps every neighbour's shared true object.
    s = score_requests(handle, generic)
    assert s["neighbourhood"]["n"] > 150 and s["neighbourhood"]["prob"] > 0.95


def test_zsre_and_plain_files_hold_the_same_rewrites(world):
    cf = read_requests(EXAMPLES / "counterfact.json")
    zsre = read_requests(EXAMPLES / "zsre.json")
    assert [(r.subject, r.prompt, r.true_object, r.new_object) for r in zsre] == [
        (r.subject, r.prompt, r.true_object, r.new_object) for r in cf
    ]
    assert [(r.paraphrases, r.neighbours) for r in zsre] == [(r.paraphrases[:1], r.neighbours[:1]) for r in cf]
    assert read_requests(EXAMPLES / "requests.jsonl") == cf


def test_read_request_picks_a_case(tmp_path):
    cf = read_requests(EXAMPLES / "counterfact.json")
    assert read_request(EXAMPLES / "counterfact.json", 3) == cf[3]
    with pytest.raises(RequestError, match="holds 20 requests: choose one by case"):
        read_request(EXAMPLES / "counterfact.json")
    with pytest.raises(RequestError, match="no case 20: its 20 requests have case ids 0..19"):
        read_request(EXAMPLES / "counterfact.json", 20)
    p = tmp_path / "one.jsonl"
    p.write_text(json.dumps({"subject": "Ann", "prompt": "Ann plays the", "target_true": "piano", "erase": True}))
    assert read_request(p).erase


def test_world_form_is_the_world_request(world, tmp_path):
    person = list(world.people)[7]
    new = next(c for c in world.relation("pet").candidates if c != world.fact(person, "pet").object)
    p = tmp_path / "w.jsonl"
    rows = [
        {"person": person, "relation": "pet", "new_object": new},
        {"person": person, "relation": "school", "erase": True},
    ]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert read_requests(p, world=world) == [
        world_request(world, person, "pet", new),
        world_request(world, person, "school"),
    ]
    with pytest.raises(RequestError, match=rf"^{p}:1: a world request .* needs the fact world"):
        read_requests(p)
    p.write_text(json.dumps({"person": "Nobody Here", "relation": "pet", "erase": True}))
    with pytest.raises(RequestError, match=rf"^{p}:1: unknown person 'Nobody Here'"):
        read_requests(p, world=world)


def test_formats_as_other_work_writes_them(tmp_path):
    rome_zsre = {
        "case_id": 7,
        "subject": "Watts Humphrey",
        "src": "What university did Watts Humphrey attend?",
        "pred": "Trinity College",
        "rephrase": "What university did Watts Humphrey take part in?",
        "alt": "University of Michigan",
        "answers": ["Illinois Institute of Technology"],
        "loc": "nq question: who played desmond doss father in hacksaw ridge",
        "loc_ans": "Hugo Weaving",
        "cond": "Trinity College >> University of Michigan || What university did Watts Humphrey attend?",
    }
    counterfact = {
        "case_id": 0,
        "pararel_idx": 2796,
        "requested_rewrite": {
            "prompt": "The mother tongue of {} is",
            "relation_id": "P103",
            "target_new": {"str": "English", "id": "Q1860"},
            "target_true": {"str": "French", "id": "Q150"},
            "subject": "Danielle Darrieux",
        },
        "paraphrase_prompts": ["Shayna does this and Danielle Darrieux's mother tongue is"],
        "neighborhood_prompts": ["The native language of Montesquieu is"],
        "attribute_prompts": ["J. R. R. Tolkien is a native speaker of"],
        "generation_prompts": ["Danielle Darrieux's mother tongue is"],
    }
    p = tmp_path / "mixed.json"
    p.write_text(json.dumps([rome_zsre, counterfact]))
    z, c = read_requests(p)
    assert (z.prompt, z.true_object, z.new_object, z.paraphrases) == (
        rome_zsre["src"],
        "Illinois Institute of Technology",
        "University of Michigan",
        (rome_zsre["rephrase"],),
    )
    assert z.neighbours == (("who played desmond doss father in hacksaw ridge", "Hugo Weaving"),)
    assert (c.prompt, c.relation, c.neighbours) == (
        "The mother tongue of Danielle Darrieux is",
        "P103",
        (("The native language of Montesquieu is", "French"),),
    )
    assert read_request(p, 7) == z and read_request(p, 0) == c
    # An erasure: no target_new, or a null one.
    rw = counterfact["requested_rewrite"]
    for target in ({}, {"target_new": None}, {"target_new": {"str": None}}):
        erase = {**counterfact, "requested_rewrite": {**{k: v for k, v in rw.items() if k != "target_new"}, **target}}
        p.write_text(json.dumps(erase) + "\n")
        assert read_requests(p)[0].erase


def test_request_from_fields():
    r = request_from_fields("Ann Lee", "{} plays the", "violin", "piano", paraphrases=("{} is good at the",))
    assert (r.prompt, r.paraphrases) == ("Ann Lee plays the", ("Ann Lee is good at the",))
    assert request_from_fields("Ann Lee", "Ann Lee plays the", None, "piano").erase
    for args, needle in [
        (("Ann Lee", "{} plays the", "violin"), "target_true is required"),
        (("Ann Lee", "Bo plays the", "violin", "piano"), "does not contain the subject 'Ann Lee'"),
        (("Ann Lee", "{} plays the", "piano", "piano"), "'piano' is already the true object"),
        (("", "{} plays the", "violin", "piano"), "subject must be a non-empty string"),
    ]:
        with pytest.raises(RequestError, match=needle):
            request_from_fields(*args)


GOOD = {"subject": "Ann Lee", "prompt": "{} plays the", "target_true": "piano", "target_new": "violin"}
CF = {
    "case_id": 0,
    "requested_rewrite": {
        "prompt": "{} plays the",
        "subject": "Ann Lee",
        "target_new": {"str": "violin"},
        "target_true": {"str": "piano"},
    },
    "paraphrase_prompts": ["Ann Lee is good at the"],
    "neighborhood_prompts": ["Bo plays the"],
}
ZSRE = {"subject": "Ann Lee", "src": "What does Ann Lee play?", "answers": ["piano"], "alt": "violin"}


def _plain(**change):
    return json.dumps({**GOOD, **change})


def _without(record, key):
    return {k: v for k, v in record.items() if k != key}


def _cf(**change):
    return {**CF, "requested_rewrite": {**CF["requested_rewrite"], **change}}


# (file name, second line or record (the first is good), location after the file, what the message says)
BAD_RECORDS = [
    ("r.jsonl", json.dumps(_without(GOOD, "subject")), ":2", "missing subject: expected a non-empty string"),
    ("r.jsonl", _plain(prompt="Bo plays the"), ":2", "does not contain the subject 'Ann Lee'"),
    ("r.jsonl", _plain(target_new=3), ":2", "target_new must be a non-empty string, not 3"),
    ("r.jsonl", _plain(target_true=["piano"]), ":2", 'target_true must be a non-empty string, not ["piano"]'),
    ("r.jsonl", _plain(target_new="piano"), ":2", "the new object 'piano' is already the true object"),
    ("r.jsonl", _plain(subject=" "), ":2", "subject must be a non-empty string"),
    ("r.jsonl", _plain(erase=True), ":2", 'give a target_new or "erase": true, not both'),
    ("r.jsonl", json.dumps(_without(GOOD, "target_new")), ":2", "missing target_new"),
    ("r.jsonl", _plain(erase="yes"), ":2", 'erase must be true or false, not "yes"'),
    ("r.jsonl", _plain(targt_new="harp"), ":2", "unknown field 'targt_new'"),
    ("r.jsonl", _plain(neighbours=[["Bo plays the"]]), ":2", "neighbours[0] must be a [prompt, object] pair"),
    ("r.jsonl", _plain(neighbours=[["Bo plays the", 5]]), ":2", "neighbours[0] object must be a non-empty string"),
    ("r.jsonl", _plain(paraphrases="Ann Lee is good at the"), ":2", "paraphrases must be a list of non-empty strings"),
    ("r.jsonl", _plain(prompt="{} and {} play the"), ":2", 'holds "{}" 2 times'),
    ("r.jsonl", '{"subject": "Ann Lee"', ":2", "not JSON"),
    ("r.jsonl", "[1, 2]", ":2", "expected a JSON object, got [1, 2]"),
    ("r.jsonl", json.dumps({"question": "x"}), ":2", 'not a request: expected CounterFact ("requested_rewrite")'),
    ("r.json", {**CF, "requested_rewrite": ["{} plays the"]}, ": record 1", "requested_rewrite must be an object"),
    ("r.json", _cf(target_new=["violin"]), ": record 1", 'requested_rewrite.target_new must be an object {"str": ...}'),
    ("r.json", _cf(target_true=None), ": record 1", "requested_rewrite.target_true must be an object"),
    ("r.json", {**CF, "requested_rewrite": _without(CF["requested_rewrite"], "target_true")}, ": record 1", "missing"),
    ("r.json", _cf(target_new={"str": ""}), ": record 1", "requested_rewrite.target_new.str must be a non-empty"),
    ("r.json", _cf(prompt="Bo plays the"), ": record 1", "does not contain the subject 'Ann Lee'"),
    ("r.json", _cf(relation_id=103), ": record 1", "requested_rewrite.relation_id must be a non-empty string, not 103"),
    ("r.json", {**CF, "neighborhood_prompts": "Bo plays the"}, ": record 1", "neighborhood_prompts must be a list"),
    ("r.json", {**CF, "paraphrase_prompts": [None]}, ": record 1", "paraphrase_prompts[0] must be a non-empty string"),
    ("r.json", {**ZSRE, "answers": []}, ": record 1", "answers must be a non-empty list"),
    ("r.json", {**ZSRE, "answers": "piano"}, ": record 1", "answers must be a non-empty list"),
    ("r.json", _without(ZSRE, "alt"), ": record 1", "missing alt"),
    ("r.json", {**ZSRE, "loc": "nq question: who plays?"}, ": record 1", "missing loc_ans"),
    ("r.json", {**ZSRE, "src": "What does Bo play?"}, ": record 1", "does not contain the subject 'Ann Lee'"),
    ("r.json", {**ZSRE, "alt": "piano"}, ": record 1", "already the true object"),
    ("r.json", {"person": "Nobody Here", "relation": "pet", "erase": True}, ": record 1", "unknown person"),
    ("r.json", {"person": "Nobody Here", "relation": "pet"}, ": record 1", 'give a new_object or "erase": true'),
]


@pytest.mark.parametrize("name, bad, where, needle", BAD_RECORDS)
def test_bad_records_are_refused_naming_file_and_line(world, tmp_path, name, bad, where, needle):
    p = tmp_path / name
    if name.endswith(".jsonl"):
        p.write_text(json.dumps(GOOD) + "\n" + bad + "\n")
    else:
        p.write_text(json.dumps([CF, bad], indent=1))
    with pytest.raises(RequestError) as e:
        read_requests(p, world=world)
    message = str(e.value)
    assert message.startswith(f"{p}{where}: ") and needle in message and "\n" not in message


@pytest.mark.parametrize(
    "content, needle",
    [
        (b"\xff\xfe{}", ": not UTF-8 text (byte 0xff at offset 0)"),
        (b"", ": empty: expected a JSON list of requests or one JSON object per line"),
        (b"  \n\n", ": empty: expected"),
        (b"[]", ": no records: expected a JSON list of requests"),
        (b'[{"subject": "Ann"},\n', ":2: not JSON"),
        (b"plays the piano", ":1: not JSON"),
    ],
)
def test_bad_files_are_refused_naming_the_file(tmp_path, content, needle):
    p = tmp_path / "r.json"
    p.write_bytes(content)
    with pytest.raises(RequestError) as e:
        read_requests(p)
    assert str(e.value).startswith(f"{p}{needle}")
    with pytest.raises(RequestError, match="no such file"):
        read_requests(tmp_path / "none.jsonl")
