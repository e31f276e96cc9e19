"""Sequential editing without collapse: updates confined to the null space of preserved keys (AlphaEdit).

Edits that arrive batch after batch disturb what earlier batches and the rest of the model
rely on; plain MEMIT degrades after a few hundred. AlphaEdit (Fang et al. 2025) projects each
update onto the null space of the preserved keys' second moment, so W k is unchanged for every
preserved key k, and keeps the keys of earlier edits in the solve so that later batches do not
undo them. AlphaEdit drops MEMIT's preservation term lambda C from the solve, as the projection
is meant to do its work; here it is kept by default (``keep_statistics``), within the null space.
The world models' keys show why: the directions a fact's neighbours depend on have small
eigenvalues, so the projection leaves them free, and without lambda C only the identity
regulariser holds them. With it, 1,000 edits in 100 batches of 10 on a 2,048- or 4,096-wide
world model keep clearly more of their neighbours; on the shipped 512-wide models it trades
edits for neighbours (see docs/edit.md#null-space-mode and docs/edit.md#memit-capacity).

That state (the projections and the earlier keys) lives in one :class:`NullSpace`, created per
session and passed explicitly to :func:`edit.memit.memit`: it can be saved, loaded and reset,
and nothing is shared between two of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from jaxtyping import Float
from safetensors.torch import load_file, save_file
from torch import Tensor

from edit.covariance import layer_statistics


@dataclass
class NullSpace:
    """Projections onto the preserved keys' null space, per layer, and the keys edited so far.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world", device="cpu")
        >>> ns = NullSpace.for_layers(h, [0], samples=4000)
        >>> p = ns.projection(0)
        >>> bool(torch.allclose(p @ p, p, atol=1e-6)), ns.edited(0)
        (True, 0)

    Args:
        projections: Layer -> P [d_mlp, d_mlp].
        keys: Layer -> keys of the edits made so far [n, d_mlp] (one per edit, or per edit and context).
        threshold: Eigenvalues of C below ``threshold`` x the largest span the null space.
        keep_statistics: Keep MEMIT's lambda C (the edit's ``mom2_weight``) in the solve, within
            the null space; False: AlphaEdit's solve, which has no C term. Either way preserved
            keys in the projection's complement map exactly as before.
    """

    projections: dict[int, Float[Tensor, "d_mlp d_mlp"]]
    keys: dict[int, Float[Tensor, "n d_mlp"]] = field(default_factory=dict)
    threshold: float = 1e-2
    keep_statistics: bool = True

    @classmethod
    def for_layers(
        cls,
        handle,
        layers: list[int],
        texts: list[str] | None = None,
        samples: int | None = None,
        threshold: float = 1e-2,
        position: str = "all",
        keep_statistics: bool = True,
    ) -> NullSpace:
        """Projections from the key statistics of ``layers`` (the world's sentences by default).

        AlphaEdit keeps eigenvectors of C whose eigenvalues are below 1e-2, absolute, on its
        models; here the threshold is relative to the largest, so it does not depend on the
        keys' scale. It protects preserved keys only as far as the edits' keys reach into the
        null space more than they do: on the world models they do not (the edited facts are
        prompts like the preserved ones), and every threshold trades edits for neighbours
        (see docs/edit.md#one-layers-keys).
        """
        proj = {}
        stats = layer_statistics(handle, layers, texts, samples=samples, progress=False, position=position)
        for layer, s in stats.items():
            vals, vecs = torch.linalg.eigh(s.second_moment.double())
            small = vecs[:, vals < threshold * vals.max()]
            proj[layer] = small @ small.T
        return cls(proj, {}, threshold, keep_statistics)

    def projection(self, layer: int) -> Tensor:
        if layer not in self.projections:
            raise KeyError(f"no null-space projection for layer {layer}; built for {sorted(self.projections)}")
        return self.projections[layer]

    def previous_keys(self, layer: int) -> Tensor | None:
        return self.keys.get(layer)

    def add_keys(self, layer: int, keys: Float[Tensor, "n d_mlp"]) -> None:
        keys = keys.detach().double().cpu()
        self.keys[layer] = torch.cat([self.keys[layer], keys]) if layer in self.keys else keys

    def edited(self, layer: int) -> int:
        """Earlier keys the state holds for ``layer``: one per edit (a context each with MEMIT's keys="each")."""
        return len(self.keys.get(layer, ()))

    def describe(self) -> dict:
        """What an Edit's settings record of the null space it was made in."""
        return {"threshold": self.threshold, "keep_statistics": self.keep_statistics}

    def reset(self) -> None:
        """Forget the earlier edits' keys (the projections stay: they depend on the base model only)."""
        self.keys = {}

    def save(self, path: str | Path) -> None:
        """Write to ``path`` (safetensors) and ``path.json``; :meth:`load` reads both back."""
        path = Path(path)
        tensors = {f"projection.{layer}": p.contiguous() for layer, p in self.projections.items()}
        tensors |= {f"keys.{layer}": k.contiguous() for layer, k in self.keys.items()}
        save_file(tensors, str(path))
        path.with_suffix(path.suffix + ".json").write_text(json.dumps(self.describe()))

    @classmethod
    def load(cls, path: str | Path) -> NullSpace:
        path = Path(path)
        t = load_file(str(path))
        meta = json.loads(path.with_suffix(path.suffix + ".json").read_text())
        proj = {int(k.split(".")[1]): v for k, v in t.items() if k.startswith("projection.")}
        keys = {int(k.split(".")[1]): v for k, v in t.items() if k.startswith("keys.")}
        # States saved before keep_statistics existed were made with AlphaEdit's solve.
        return cls(proj, keys, meta["threshold"], meta.get("keep_statistics", False))
