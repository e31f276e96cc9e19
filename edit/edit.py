"""The one result type of every editor: a reversible patch on named parameter tensors.

An :class:`Edit` says what changed (the request, a record of :mod:`edit.edit_request`; the
Location used; the settings) and how: one :class:`Delta` per touched tensor, as low-rank factors
where the method has them (ROME, MEMIT) or as a dense difference of that tensor only. ``apply``
checks every new tensor before writing any (all or nothing); ``revert`` writes back the saved
originals, so weights are bitwise what they were. Hashes of every touched tensor before and after
tie an edit to the weights it was made on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor, nn

from edit.edit_request import EditRequest, Forget, Mixed, Note, Rewrite, request_from_dict
from locate.location import Location
from workbench.core.hashing import tensor_hash


class EditError(ValueError):
    """An edit that cannot be made: non-finite weights, wrong model, applied twice, bad request."""


@dataclass
class Delta:
    """The change to one parameter tensor: ``left @ right.T`` (low rank) or ``dense``.

    Shapes are those of the parameter as stored (a Conv1D weight is in x out), so applying needs
    no knowledge of the architecture.

    Examples:
        >>> d = Delta(left=torch.ones(3, 1), right=torch.full((2, 1), 0.5))
        >>> d.tensor().tolist(), d.rank
        ([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]], 1)
        >>> Delta(dense=torch.eye(2)).rank is None
        True
    """

    left: Float[Tensor, "rows rank"] | None = None
    right: Float[Tensor, "cols rank"] | None = None
    dense: Tensor | None = None

    def __post_init__(self):
        if (self.dense is None) == (self.left is None or self.right is None):
            raise EditError("a delta is either dense or a pair of factors (left, right)")

    @property
    def rank(self) -> int | None:
        return None if self.left is None else self.left.shape[1]

    def parts(self) -> dict[str, Tensor]:
        """The stored tensors by field name: ``dense``, or ``left`` and ``right`` (``Delta(**parts)`` rebuilds it)."""
        return {"dense": self.dense} if self.dense is not None else {"left": self.left, "right": self.right}

    def tensor(self) -> Tensor:
        """The full difference, in float32 at least."""
        if self.dense is not None:
            return self.dense
        return self.left.double().mm(self.right.double().T).to(torch.promote_types(self.left.dtype, torch.float32))


@dataclass
class Edit:
    """A reversible change to named tensors of a model, with everything that produced it.

    Examples:
        >>> from transformers import AutoModelForCausalLM, GPT2Config
        >>> model = AutoModelForCausalLM.from_config(GPT2Config(n_layer=1, n_embd=8, n_head=2))
        >>> name = "transformer.h.0.mlp.c_proj.weight"
        >>> before = model.get_parameter(name).detach().clone()
        >>> delta = Delta(left=torch.eye(32)[:, :1], right=torch.ones(8, 1))
        >>> e = Edit("demo", Note({"note": "scale one row"}), {name: delta})
        >>> e.apply(model).applied, bool((model.get_parameter(name)[0] - before[0] - 1).abs().max() < 1e-6)
        (True, True)
        >>> bool(torch.equal(e.revert(model) and model.get_parameter(name), before))
        True

    Args:
        method: The editor's name ("rome", "memit", "rmu", ...).
        request: What was asked: a :class:`~edit.edit_request.Rewrite`, ``Forget``, ``Mixed`` or
            ``Note``; a dict (as a patch file holds it) is read with
            :func:`~edit.edit_request.request_from_dict`.
        deltas: Parameter name -> :class:`Delta`; the only tensors the edit touches.
        location: The Location the editor used, if any.
        settings: The editor's settings, JSON-able.
        metrics: Anything the editor measured (losses, times), JSON-able.
    """

    method: str
    request: EditRequest
    deltas: dict[str, Delta]
    location: Location | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    hashes_before: dict[str, str] = field(default_factory=dict)
    hashes_after: dict[str, str] = field(default_factory=dict)
    _originals: dict[str, Tensor] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if isinstance(self.request, dict):
            self.request = request_from_dict(self.request)

    @property
    def applied(self) -> bool:
        return bool(self._originals)

    @property
    def names(self) -> list[str]:
        """The touched parameter names, in a fixed order."""
        return sorted(self.deltas)

    def original(self, name: str) -> Tensor:
        """The tensor ``name`` as it was before :meth:`apply` (only while the edit is applied).

        Examples:
            >>> m = nn.Linear(2, 2, bias=False)
            >>> e = Edit("demo", Note(), {"weight": Delta(dense=torch.ones(2, 2))})
            >>> w = m.weight.detach().clone()
            >>> bool(torch.equal(e.apply(m).original("weight"), w))
            True
        """
        if not self.applied:
            raise EditError(f"{self.method} edit is not applied: it holds no original tensors")
        return self._originals[name]

    def apply(self, model: nn.Module) -> Edit:
        """Add every delta to ``model`` in place; nothing is written unless every result is finite.

        Raises:
            EditError: already applied, a tensor the model lacks, a shape mismatch, weights
                other than those the edit was made on, or a non-finite result.
        """
        if self.applied:
            raise EditError(f"{self.method} edit is already applied; revert it first")
        params = _params(model, self.names)
        # An edit made here records its base on first apply; one that names a base must name all of it.
        unnamed = [n for n in self.names if n not in self.hashes_before]
        if self.hashes_before and unnamed:
            raise EditError(f"{self.method} edit names no base hash for {', '.join(unnamed)}; nothing was written")
        for name in self.names:
            if self.hashes_before and tensor_hash(params[name]) != self.hashes_before[name]:
                raise EditError(f"{name} differs from the weights this {self.method} edit was made on")
        # Every new tensor is checked before any is written, and made again to write it: holding
        # them all between the two would be one more copy of every touched tensor.
        for name in self.names:
            p, d = params[name], self.deltas[name].tensor()
            if tuple(d.shape) != tuple(p.shape):
                raise EditError(f"delta for {name} has shape {tuple(d.shape)}, the parameter {tuple(p.shape)}")
            if not torch.isfinite(_added(p, d)).all():
                raise EditError(f"{self.method} edit gives non-finite values in {name}; the model is unchanged")
        originals = {}
        with torch.no_grad():
            for name in self.names:
                originals[name] = params[name].detach().clone()
                params[name].copy_(_added(params[name], self.deltas[name].tensor()))
        self._originals = originals
        self.hashes_before = self.hashes_before or {n: tensor_hash(t) for n, t in originals.items()}
        self.hashes_after = {n: tensor_hash(params[n]) for n in self.names}
        return self

    def revert(self, model: nn.Module) -> Edit:
        """Write the original tensors back: the model is bitwise as before :meth:`apply`."""
        if not self.applied:
            raise EditError(f"{self.method} edit is not applied")
        params = _params(model, self.names)
        with torch.no_grad():
            for name in self.names:
                params[name].copy_(self._originals[name])
        self._originals = {}
        return self

    @contextmanager
    def applied_to(self, model: nn.Module) -> Iterator[nn.Module]:
        """Apply for the duration of a ``with`` block, then revert (also on error).

        Examples:
            >>> from transformers import AutoModelForCausalLM, GPT2Config
            >>> m = AutoModelForCausalLM.from_config(GPT2Config(n_layer=1, n_embd=8, n_head=2))
            >>> n = "transformer.h.0.attn.c_proj.bias"
            >>> e = Edit("demo", Note(), {n: Delta(dense=torch.ones(8))})
            >>> with e.applied_to(m):
            ...     float(m.get_parameter(n).detach().sum())
            8.0
            >>> float(m.get_parameter(n).detach().sum())
            0.0
        """
        self.apply(model)
        try:
            yield model
        finally:
            self.revert(model)


@dataclass
class EditSequence:
    """Edits applied in order and reverted in reverse order; all of them or none.

    Each edit keeps the hashes of the weights it was made on, so a sequence only applies in the
    order its edits were made.

    Examples:
        >>> m = nn.Linear(2, 2, bias=False)
        >>> w = m.weight.detach().clone()
        >>> seq = EditSequence([Edit("a", Note(), {"weight": Delta(dense=torch.ones(2, 2))}),
        ...                     Edit("b", Note(), {"weight": Delta(dense=torch.full((2, 2), float("nan")))})])
        >>> seq.apply(m)  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        EditError: b edit gives non-finite values in weight; the model is unchanged
        >>> bool(torch.equal(m.weight, w)), seq.edits[0].applied
        (True, False)
    """

    edits: list[Edit]

    @property
    def names(self) -> list[str]:
        return sorted({n for e in self.edits for n in e.names})

    @property
    def applied(self) -> bool:
        return bool(self.edits) and all(e.applied for e in self.edits)

    @property
    def method(self) -> str:
        return "+".join(dict.fromkeys(e.method for e in self.edits))

    @property
    def request(self) -> EditRequest:
        """The edits' requests as one: every rewrite request, and every forgotten fact.

        Examples:
            >>> from edit.request import Request
            >>> a = Edit("rome", Rewrite.one(Request("A", "A was born in", "x", "y")), {})
            >>> b = Edit("ssd", Forget("f", facts=(("B", "pet"),)), {})
            >>> EditSequence([a, a]).request.requests[1].subject, EditSequence([b, b]).request.facts
            ('A', (('B', 'pet'),))
            >>> EditSequence([a, b]).request.kind, EditSequence([b, Edit("hand", Note(), {})]).request.name
            ('mixed', 'f + hand')
        """
        rewrites = [r for e in self.edits for r in _rewrites(e.request)]
        # A note joins the forget part as the merge always had it: no facts, its edit's method for a name.
        forgets = [
            (e.method, e.request.forget if isinstance(e.request, Mixed) else e.request)
            for e in self.edits
            if not isinstance(e.request, Rewrite)
        ]
        facts = dict.fromkeys(f for _, r in forgets if isinstance(r, Forget) for f in r.facts or ())
        names = [str(r.name) if isinstance(r, Forget) and r.name is not None else m for m, r in forgets]
        rewrite = Rewrite(tuple(rewrites)) if rewrites else None
        forget = Forget(" + ".join(names), facts=tuple(facts)) if forgets else None
        if rewrite is not None and forget is not None:
            return Mixed(rewrite, forget)
        return rewrite or forget or Note()

    @contextmanager
    def applied_to(self, model: nn.Module) -> Iterator[nn.Module]:
        """Apply all for the duration of a ``with`` block, then revert all (also on error)."""
        self.apply(model)
        try:
            yield model
        finally:
            self.revert(model)

    def apply(self, model: nn.Module) -> EditSequence:
        done: list[Edit] = []
        try:
            for e in self.edits:
                e.apply(model)
                done.append(e)
        except BaseException:
            for e in reversed(done):
                e.revert(model)
            raise
        return self

    def revert(self, model: nn.Module) -> EditSequence:
        for e in reversed(self.edits):
            e.revert(model)
        return self


def _rewrites(request: EditRequest) -> tuple:
    if isinstance(request, Mixed):
        return request.rewrite.requests
    return request.requests if isinstance(request, Rewrite) else ()


def summed(deltas: list[Delta]) -> Delta:
    """One delta equal to the sum of ``deltas``: their factors side by side while that is smaller than the tensor.

    Examples:
        >>> a = Delta(left=torch.ones(8, 1), right=torch.ones(6, 1))
        >>> s = summed([a, a])
        >>> s.rank, s.tensor()[0].tolist()
        (2, [2.0, 2.0, 2.0, 2.0, 2.0, 2.0])
        >>> summed([a] * 4).rank is None  # 4 x (8 + 6) factor entries would outgrow the 8 x 6 tensor
        True
    """
    if not deltas:
        raise EditError("nothing to sum")
    if all(d.dense is None for d in deltas):
        rows, cols = deltas[0].left.shape[0], deltas[0].right.shape[0]
        if sum(d.rank for d in deltas) * (rows + cols) < rows * cols:
            return Delta(left=torch.cat([d.left for d in deltas], 1), right=torch.cat([d.right for d in deltas], 1))
    tensors = [d.tensor() for d in deltas]
    return Delta(dense=sum(t.double() for t in tensors).to(tensors[0].dtype))


def _added(p: Tensor, delta: Tensor) -> Tensor:
    """``p + delta`` in the wider of the two dtypes, stored back in ``p``'s."""
    return (p.detach().to(delta.dtype) + delta.to(p.device)).to(p.dtype)


def _params(model: nn.Module, names: list[str]) -> dict[str, nn.Parameter]:
    params = dict(model.named_parameters())
    missing = [n for n in names if n not in params]
    if missing:
        raise EditError(f"{type(model).__name__} has no parameter {missing[0]!r}")
    return {n: params[n] for n in names}


@contextmanager
def restored_on_failure(model: nn.Module, names: list[str]) -> Iterator[dict[str, Tensor]]:
    """Snapshot the named tensors; if the block raises (or is interrupted), write them back.

    Editors that change weights while they work (gradient methods) run inside this, so a NaN, a
    bad request or Ctrl-C leaves the model bitwise as it was.

    Examples:
        >>> m = nn.Linear(2, 2)
        >>> w = m.weight.detach().clone()
        >>> try:
        ...     with restored_on_failure(m, ["weight"]):
        ...         _ = m.weight.data.add_(1.0)
        ...         raise KeyboardInterrupt
        ... except KeyboardInterrupt:
        ...     pass
        >>> bool(torch.equal(m.weight, w))
        True
    """
    params = _params(model, names)
    saved = {n: p.detach().clone() for n, p in params.items()}
    try:
        yield saved
    except BaseException:
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(saved[n])
        raise
