"""The masked elements of some parameter tensors as small leaf tensors an optimiser moves, the rest untouched.

A gradient editor restricted to a parameter mask (1% of a model's elements by default) needs
Adam's state, the saved originals and the gradient only for those elements. Holding them for
whole tensors costs about four copies of the model; here each tensor's masked elements are
gathered into one flat leaf, Adam runs on the leaves, and the leaves are written back into the
parameters before each forward pass. A hook gathers each parameter's gradient into its leaf's
``.grad`` as soon as autograd has accumulated it, and drops it, so at most the gradients in
flight are ever whole. Since no other element is ever written, writing the originals back
restores the model bitwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor, nn


@dataclass
class MaskedElements:
    """Flat leaves holding the masked elements of named parameters; made by :func:`masked_elements`.

    Examples:
        >>> m = nn.Linear(3, 2)
        >>> w0 = m.weight.detach().clone()
        >>> me = masked_elements(m, {"weight": torch.tensor([[True, False, False], [False, False, True]])})
        >>> opt = torch.optim.SGD(list(me.values.values()), lr=0.1)
        >>> with me.gathering_gradients():
        ...     m(torch.ones(1, 3)).sum().backward()
        >>> me.values["weight"].grad.tolist(), m.weight.grad is None
        ([1.0, 1.0], True)
        >>> opt.step(); me.write()
        >>> moved = m.weight.detach() != w0
        >>> moved.tolist()
        [[True, False, False], [False, False, True]]
        >>> me.write(me.originals); bool(torch.equal(m.weight, w0))
        True

    Args:
        params: Parameter name -> the model's parameter.
        index: Parameter name -> flat indices of its masked elements, ascending; None: all of them.
        originals: Parameter name -> its masked elements as they were (flat).
        values: Parameter name -> a leaf of its masked elements as they are now (flat, requires grad).
    """

    params: dict[str, nn.Parameter]
    index: dict[str, Int[Tensor, " masked"] | None]
    originals: dict[str, Tensor]
    values: dict[str, Tensor]

    def take(self, name: str, tensor: Tensor) -> Tensor:
        """The masked elements of ``tensor`` (shaped like parameter ``name``), flat."""
        flat = tensor.detach().reshape(-1)
        return flat if self.index[name] is None else flat[self.index[name]]

    @torch.no_grad()
    def write(self, values: dict[str, Tensor] | None = None) -> None:
        """Write ``values`` (default: the leaves) into the masked elements of the parameters."""
        for name, p in self.params.items():
            v, i, flat = (values or self.values)[name], self.index[name], p.detach().view(-1)
            if i is None:
                flat.copy_(v)
            else:
                flat.index_copy_(0, i, v.to(flat.dtype))

    @contextmanager
    def gathering_gradients(self) -> Iterator[None]:
        """Within the block, each backward pass leaves the masked gradient on the leaves, none on the parameters.

        Each parameter's ``.grad`` and ``requires_grad`` are put back as they were on leaving.
        """
        saved = {n: (p.grad, p.requires_grad) for n, p in self.params.items()}
        hooks = []
        try:
            for name, p in self.params.items():
                p.grad = None
                p.requires_grad_(True)
                hooks.append(p.register_post_accumulate_grad_hook(self._gather_into(name)))
            yield
        finally:
            for h in hooks:
                h.remove()
            for name, p in self.params.items():
                p.grad, requires_grad = saved[name]
                p.requires_grad_(requires_grad)

    def _gather_into(self, name: str):
        def hook(p: Tensor) -> None:
            piece, leaf = self.take(name, p.grad), self.values[name]
            leaf.grad = piece if leaf.grad is None else leaf.grad + piece
            p.grad = None

        return hook


def masked_elements(model: nn.Module, masks: dict[str, Tensor]) -> MaskedElements:
    """Gather the elements of each named parameter that its boolean mask selects into a flat leaf.

    Examples:
        >>> m = nn.Linear(4, 1)
        >>> masks = {"weight": torch.tensor([[False, True, False, True]]), "bias": torch.tensor([True])}
        >>> me = masked_elements(m, masks)
        >>> me.index["weight"].tolist(), me.index["bias"], me.values["weight"].requires_grad
        ([1, 3], None, True)

    Args:
        model: The model whose parameters the masks name.
        masks: Parameter name -> boolean mask of the parameter's shape; a tensor whose mask
            selects every element is held whole, without an index.
    """
    params, index, originals, values = {}, {}, {}, {}
    for name, mask in masks.items():
        p = model.get_parameter(name)
        params[name] = p
        index[name] = None if bool(mask.all()) else mask.reshape(-1).nonzero().flatten().to(p.device)
    me = MaskedElements(params, index, originals, values)
    for name, p in params.items():
        originals[name] = me.take(name, p).clone()
        values[name] = originals[name].clone().requires_grad_(True)
    return me


__all__ = ["MaskedElements", "masked_elements"]
