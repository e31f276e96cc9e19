"""What an edit was asked to do: one small record per kind of request, and the JSON dict each is written as.

Every editor stores one of these as :attr:`~edit.edit.Edit.request`:

- :class:`Rewrite`: rewrite requests, one as ROME makes it or a batch as MEMIT does; its kind is
  ``"erase"`` when every request erases its fact instead (no new object);
- :class:`Forget`: a forget set by its name, with its sizes, people and facts where known (the
  unlearning editors, MEMIT erase of a forget set, the constructed suppression);
- :class:`Mixed`: rewrites and forgetting together, as a sequence of edits of both kinds merges them;
- :class:`Note`: anything else, kept as given (the description of a hand-made edit).

Code asks a request its type (or ``kind``), never which keys it holds. Patch files, export
manifests and reports hold ``to_dict()``, which names no kind: :func:`request_from_dict` reads
the kind back from the keys, in this one place, and keeps a dict that no record writes back
exactly as a :class:`Note`, so a request read from a file is written out as it was read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from edit.forget_request import ForgetError, ForgetRequest
from edit.request import Request, RequestError
from workbench.core.world.facts import Fact, World


@dataclass(frozen=True)
class Rewrite:
    """Rewrite requests: one, written as the request's own dict (ROME), or a batch under ``"requests"`` (MEMIT).

    Examples:
        >>> r = Request("Ann Lee", "Ann Lee was born in", "Oslo", "Lima")
        >>> Rewrite.one(r).kind, Rewrite.one(r).to_dict()["new_object"], list(Rewrite((r, r)).to_dict())
        ('rewrite', 'Lima', ['requests'])
        >>> Rewrite.from_dict(Rewrite((r,)).to_dict()) == Rewrite((r,)), Rewrite.from_dict(r.to_dict()).single
        (True, True)

    Args:
        requests: The requests (an erase is a request without a new object).
        single: Written as the one request's own dict, not as a list of one.
    """

    requests: tuple[Request, ...]
    single: bool = False

    @property
    def kind(self) -> str:
        """``"erase"`` when every request erases its fact (no new object), else ``"rewrite"``."""
        return "erase" if self.requests and all(r.erase for r in self.requests) else "rewrite"

    def __post_init__(self):
        # A list given (an editor's batch) is held as a tuple, so that records compare and hash.
        object.__setattr__(self, "requests", tuple(self.requests))
        if self.single and len(self.requests) != 1:
            raise RequestError(f"a single rewrite holds one request, not {len(self.requests)}")

    @classmethod
    def one(cls, request: Request) -> Rewrite:
        """The request of an editor that makes one rewrite at a time."""
        return cls((request,), single=True)

    def to_dict(self) -> dict:
        if self.single:
            return self.requests[0].to_dict()
        return {"requests": [r.to_dict() for r in self.requests]}

    @classmethod
    def from_dict(cls, d: dict) -> Rewrite:
        if "requests" in d:
            return cls(tuple(Request.from_dict(r) for r in d["requests"]))
        return cls.one(Request.from_dict(d))


@dataclass(frozen=True)
class Forget:
    """A forget set as an edit records it: its name and, where known, its sizes, people and facts.

    A field that is None is not written: an unlearning editor records every size (and the people
    and facts where it has them), a constructed suppression or a merged sequence a name and facts.

    Examples:
        >>> from edit.forget_request import forget_request
        >>> from workbench.core.world.facts import make_world
        >>> w = make_world()
        >>> f = Forget.of(forget_request(w, "forget01"))
        >>> f.kind, f.forget_facts, len(f.people), list(f.to_dict())[:3], len(f.world_facts(w))
        ('forget', 18, 3, ['name', 'forget_facts', 'retain_facts'], 18)
        >>> Forget("picked", facts=(("Ann Lee", "pet"),)).to_dict()
        {'name': 'picked', 'facts': [['Ann Lee', 'pet']]}

    Args:
        name: What was asked for: a split, a person, or a short description.
        forget_facts, retain_facts, forget_texts, retain_texts: The sizes of the request's sets.
        people: The people whose facts are forgotten.
        facts: The forgotten facts as (subject, relation) pairs.
    """

    kind: ClassVar[str] = "forget"
    name: str | None = None
    forget_facts: int | None = None
    retain_facts: int | None = None
    forget_texts: int | None = None
    retain_texts: int | None = None
    people: tuple[str, ...] | None = None
    facts: tuple[tuple[str, str], ...] | None = None

    @classmethod
    def of(cls, request: ForgetRequest) -> Forget:
        """The record of an unlearning request (its sets themselves stay with the request)."""
        return cls.from_dict(request.to_dict())

    def to_dict(self) -> dict:
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if v is not None:
                out[f.name] = [list(x) for x in v] if f.name == "facts" else list(v) if f.name == "people" else v
        return out

    @classmethod
    def from_dict(cls, d: dict) -> Forget:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise RequestError(f"a forget request has no field {sorted(unknown)[0]!r}")
        people, facts = d.get("people"), d.get("facts")
        return cls(
            **{k: d.get(k) for k in ("name", "forget_facts", "retain_facts", "forget_texts", "retain_texts")},
            people=None if people is None else tuple(people),
            facts=None if facts is None else tuple((s, r) for s, r in facts),
        )

    def world_facts(self, world: World) -> list[Fact]:
        """The forgotten facts, rebuilt from the world: the facts named, else the split, person or people.

        Raises:
            ForgetError: the record names no facts the world has.
        """
        try:
            if self.facts:
                return [world.fact(s, r) for s, r in self.facts]
            if self.name in world.splits:
                return world.facts(world.splits[self.name].forget)
            if self.name in world.people:
                return world.facts([self.name])
            if self.people:
                return world.facts(list(self.people))
        except KeyError as e:
            raise ForgetError(str(e.args[0])) from None
        raise ForgetError(f"the request {self.name!r} does not say which world facts it forgot")


@dataclass(frozen=True)
class Mixed:
    """Rewrites and forgetting in one request: what a sequence of edits of both kinds was asked.

    Examples:
        >>> r = Request("Ann Lee", "Ann Lee was born in", "Oslo", "Lima")
        >>> m = Mixed(Rewrite((r,)), Forget("picked", facts=(("Bo Ek", "pet"),)))
        >>> m.kind, list(m.to_dict()), Mixed.from_dict(m.to_dict()) == m
        ('mixed', ['requests', 'name', 'facts'], True)
    """

    kind: ClassVar[str] = "mixed"
    rewrite: Rewrite
    forget: Forget

    def __post_init__(self):
        if self.rewrite.single:
            raise RequestError("the rewrites of a mixed request are a batch")

    def to_dict(self) -> dict:
        return self.rewrite.to_dict() | self.forget.to_dict()

    @classmethod
    def from_dict(cls, d: dict) -> Mixed:
        rest = {k: v for k, v in d.items() if k != "requests"}
        return cls(Rewrite.from_dict({"requests": d["requests"]}), Forget.from_dict(rest))


@dataclass(frozen=True)
class Note:
    """Any other request, kept as given: the description of an edit made by hand.

    Examples:
        >>> Note({"note": "scale one row"}).to_dict(), Note().kind
        ({'note': 'scale one row'}, 'note')
    """

    kind: ClassVar[str] = "note"
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dict(self.data)

    @classmethod
    def from_dict(cls, d: dict) -> Note:
        return cls(dict(d))


EditRequest = Rewrite | Forget | Mixed | Note


def request_from_dict(d: dict) -> EditRequest:
    """The request record a ``to_dict()`` came from, as a patch, manifest or report holds it.

    The result always writes back ``d`` itself: a dict no record reproduces exactly becomes a :class:`Note`.

    Examples:
        >>> r = Request("Ann Lee", "Ann Lee was born in", "Oslo", "Lima")
        >>> [request_from_dict(x).kind for x in (r.to_dict(), {"requests": [r.to_dict()]}, {"name": "forget01"})]
        ['rewrite', 'rewrite', 'forget']
        >>> request_from_dict({"note": "by hand"}), request_from_dict({"name": "x", "why": "kept as given"}).kind
        (Note(data={'note': 'by hand'}), 'note')
    """
    if "requests" in d:
        kind = Mixed if "name" in d or "facts" in d else Rewrite
    else:
        kind = Rewrite if "true_object" in d else Forget if "name" in d or "facts" in d else Note
    try:
        record = kind.from_dict(d)
    except (TypeError, ValueError, KeyError, AttributeError):
        return Note(dict(d))
    return record if _json(record.to_dict()) == _json(d) else Note(dict(d))


def _json(d: dict) -> str:
    # As the files write it: tuples and lists alike, keys in their order.
    return json.dumps(d, default=str)


__all__ = ["EditRequest", "Forget", "Mixed", "Note", "Rewrite", "request_from_dict"]
