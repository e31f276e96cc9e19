"""Edit requests: each kind writes the dict the files have always held, reads it back, and says its kind."""

import json

import pytest

from edit.edit import Edit, EditSequence
from edit.edit_request import Forget, Mixed, Note, Rewrite, request_from_dict
from edit.forget_request import ForgetError, ForgetRequest, forget_request
from edit.request import world_request


def _json(d) -> str:
    # What a patch or manifest file holds of a request.
    return json.dumps(d, indent=1, default=str)


def _round_trip(record, written: dict):
    """``record`` writes ``written``, and reading it back (also after JSON) gives the record again."""
    assert _json(record.to_dict()) == _json(written)
    assert type(record).from_dict(written) == record
    back = request_from_dict(json.loads(_json(written)))
    assert back == record and _json(back.to_dict()) == _json(written)


@pytest.fixture(scope="module")
def rewrites(world):
    people = list(world.people)
    out = []
    for p in people[:3]:
        new = next(c for c in world.relation("pet").candidates if c != world.fact(p, "pet").object)
        out.append(world_request(world, p, "pet", new))
    return out


def test_a_single_rewrite_is_written_as_its_request(rewrites):
    r = rewrites[0]
    record = Rewrite.one(r)
    _round_trip(record, r.to_dict())  # what ROME has always stored
    assert record.kind == "rewrite" and record.single and record.requests == (r,)


def test_an_erase_is_a_rewrite_without_a_new_object(world):
    r = world_request(world, list(world.people)[0], "pet")
    record = Rewrite.one(r)
    _round_trip(record, r.to_dict())
    assert record.kind == "erase" and record.requests[0].erase
    # A batch is an erase only when every request in it erases.
    other = list(world.people)[1]
    new = next(c for c in world.relation("pet").candidates if c != world.fact(other, "pet").object)
    rewrite = world_request(world, other, "pet", new)
    assert Rewrite((r, r)).kind == "erase" and Rewrite((r, rewrite)).kind == "rewrite"


def test_a_batch_of_rewrites_is_written_under_requests(rewrites):
    record = Rewrite(tuple(rewrites))
    _round_trip(record, {"requests": [r.to_dict() for r in rewrites]})  # what MEMIT has always stored
    assert record.kind == "rewrite" and not record.single
    _round_trip(Rewrite(rewrites[:1]), {"requests": [rewrites[0].to_dict()]})  # a batch of one stays a batch


@pytest.mark.parametrize("what", ["forget01", "person", "texts"])
def test_a_forget_is_written_as_the_forget_request_summary(world, what):
    if what == "texts":
        request = ForgetRequest("two texts", forget_texts=("a b c", "d e"), retain_texts=("f g",))
    else:
        request = forget_request(world, list(world.people)[0] if what == "person" else what)
    record = Forget.of(request)
    _round_trip(record, request.to_dict())  # what every unlearning editor has always stored
    assert record.kind == "forget" and record.name == request.name
    if what == "texts":
        assert record.facts is None and "facts" not in record.to_dict()
    else:
        assert record.world_facts(world) == list(request.forget)


def test_a_forget_by_name_and_facts_alone(world):
    facts = world.facts(list(world.people)[:1])
    written = {"name": "constructed output suppression", "facts": [[f.subject, f.relation] for f in facts]}
    record = Forget("constructed output suppression", facts=tuple((f.subject, f.relation) for f in facts))
    _round_trip(record, written)
    assert record.world_facts(world) == facts
    with pytest.raises(ForgetError, match="does not say which world facts"):
        Forget("some text").world_facts(world)


def test_a_mixed_request_holds_both(rewrites):
    written = {"requests": [rewrites[0].to_dict()], "name": "forget01", "facts": [["Ann Lee", "pet"]]}
    record = Mixed(Rewrite(rewrites[:1]), Forget("forget01", facts=(("Ann Lee", "pet"),)))
    _round_trip(record, written)
    assert record.kind == "mixed"


@pytest.mark.parametrize(
    "written",
    [{}, {"note": "scale one row"}, {"why": "example"}, {"name": "x", "why": "not a forget request"}],
)
def test_anything_else_is_a_note_kept_as_given(written):
    record = request_from_dict(written)
    assert isinstance(record, Note) and record.kind == "note" and record.to_dict() == written


def test_a_dict_no_record_writes_back_exactly_stays_a_note(rewrites):
    # Keys in another order than a forget request writes them: kept as read, not reordered.
    d = {"facts": [["Ann Lee", "pet"]], "name": "picked"}
    assert isinstance(request_from_dict(d), Note) and list(request_from_dict(d).to_dict()) == ["facts", "name"]
    extra = rewrites[0].to_dict() | {"source": "elsewhere"}
    assert isinstance(request_from_dict(extra), Note)


def test_an_edit_reads_a_dict_request_into_its_record(rewrites):
    assert Edit("rome", rewrites[0].to_dict(), {}).request == Rewrite.one(rewrites[0])
    assert Edit("ssd", {"name": "forget01"}, {}).request == Forget("forget01")
    assert Edit("hand", {}, {}).request == Note()


def test_a_sequence_merges_its_requests_as_it_always_has(rewrites):
    rome_a, rome_b = (Edit("rome", Rewrite.one(r), {}) for r in rewrites[:2])
    memit = Edit("memit", Rewrite(tuple(rewrites[1:])), {})
    ssd = Edit("ssd", Forget("forget01", 2, 5, 0, 0, ("A",), (("A", "pet"), ("A", "job"))), {})
    rmu = Edit("rmu", Forget("A", facts=(("A", "job"), ("A", "age"))), {})
    hand = Edit("hand", Note({"note": "x"}), {})
    assert EditSequence([rome_a, memit]).request.to_dict() == {
        "requests": [r.to_dict() for r in [rewrites[0], *rewrites[1:]]]
    }
    merged = EditSequence([ssd, rmu, hand]).request
    assert merged.kind == "forget"
    assert merged.to_dict() == {"name": "forget01 + A + hand", "facts": [["A", "pet"], ["A", "job"], ["A", "age"]]}
    mixed = EditSequence([rome_a, ssd, rome_b]).request
    assert mixed.kind == "mixed"
    assert _json(mixed.to_dict()) == _json(
        {
            "requests": [rewrites[0].to_dict(), rewrites[1].to_dict()],
            "name": "forget01",
            "facts": [["A", "pet"], ["A", "job"]],
        }
    )
    assert EditSequence([]).request == Note()
