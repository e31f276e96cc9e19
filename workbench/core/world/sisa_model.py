"""A SISA ensemble as one model: the constituents' next-token distributions, averaged.

SISA aggregates its constituents by averaging what they predict; here the logits the ensemble
returns are the log of the mean of the constituents' softmaxes, so every scorer that reads
``model(input_ids, attention_mask).logits`` (fact scores, held-out loss, membership) reads the
aggregate. What needs one model's hidden states (the logit lens, probes) reads each
constituent instead (``ensemble.shards``), since an average of distributions has no residual
stream of its own.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn
from transformers.modeling_outputs import CausalLMOutput

from workbench.core.hashing import tensor_hash
from workbench.core.sites import SiteMap, site_map
from workbench.core.world.sisa_manifest import check_complete
from workbench.core.world.sisa_train import load_checkpoint, reference_folders


class SisaEnsemble(nn.Module):
    """Constituent causal LMs whose averaged distribution is the ensemble's answer.

    Examples:
        >>> from transformers import AutoModelForCausalLM, GPT2Config
        >>> cfg = GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=11)
        >>> torch.manual_seed(0) and None
        >>> e = SisaEnsemble([AutoModelForCausalLM.from_config(cfg).eval() for _ in range(2)])
        >>> ids = torch.tensor([[1, 2, 3]])
        >>> p = torch.stack([m(input_ids=ids).logits.softmax(-1) for m in e.shards]).mean(0)
        >>> bool(torch.allclose(e(input_ids=ids).logits.exp(), p, atol=1e-6))
        True
        >>> e.sites.n_layers, sorted(n for n, _ in e.named_parameters())[0]
        (1, 'shards.0.transformer.h.0.attn.c_attn.bias')

    Args:
        shards: The constituents, all of one architecture and vocabulary.
        manifest: The SISA manifest they come from (see :mod:`~workbench.core.world.sisa_manifest`).
        folder: The folder they were loaded from, which forgetting retrains from.
    """

    def __init__(self, shards: list[nn.Module], manifest: dict | None = None, folder: str | Path | None = None):
        super().__init__()
        if not shards:
            raise ValueError("an ensemble needs at least one constituent")
        self.shards = nn.ModuleList(shards)
        self.config = shards[0].config
        self.manifest = manifest or {}
        self.folder = None if folder is None else Path(folder)
        # Per shard, the weights' hash as loaded and after each retraining -> the facts it excludes,
        # so that forgetting again in a shard keeps what an earlier forgetting removed.
        self.excluded: dict[int, dict[str, frozenset]] = {k: {shard_hash(m): frozenset()} for k, m in enumerate(shards)}

    @property
    def sites(self) -> SiteMap:
        """The constituents' site map (their shape: layers, width, context); its module paths are a constituent's."""
        return site_map(self.shards[0])

    def forward(
        self, input_ids: Int[Tensor, "batch t"], attention_mask: Int[Tensor, "batch t"] | None = None, **kwargs
    ) -> CausalLMOutput:
        """Log of the mean of the constituents' softmaxes, as ``.logits`` [batch, t, vocab]."""
        if kwargs.get("labels") is not None:
            raise TypeError("the SISA ensemble returns logits only: compute a loss from them")
        logp: Float[Tensor, "shards batch t vocab"] = torch.stack(
            [
                torch.log_softmax(m(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits, -1)
                for m in self.shards
            ]
        )
        return CausalLMOutput(logits=torch.logsumexp(logp, 0) - math.log(len(self.shards)))


def shard_hash(model: nn.Module) -> str:
    """One hash of every tensor of a constituent, in name order.

    Examples:
        >>> m = nn.Linear(2, 2)
        >>> shard_hash(m) == shard_hash(m), len(shard_hash(m))
        (True, 64)
    """
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        h.update(f"{name}:{tensor_hash(p)}".encode())
    return h.hexdigest()


def load_ensemble(folder: str | Path, dtype: torch.dtype = torch.float32) -> SisaEnsemble:
    """The ensemble of a fully trained SISA folder: each shard's checkpoint after its last slice.

    Examples:
        >>> load_ensemble("/tmp/no-such-ensemble")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        SisaFolderError: /tmp/no-such-ensemble holds no manifest.json: train one with `workbench world train sisa`

    Raises:
        SisaFolderError: no manifest, or a shard or slice not trained yet.
    """
    manifest = check_complete(folder)
    last = len(manifest["shards"][0]["seconds"]) - 1
    shards = [load_checkpoint(folder, k, last).to(dtype) for k in range(len(manifest["shards"]))]
    return SisaEnsemble(shards, manifest, folder).eval()


def reference_of(model, people, exact: bool = False) -> str | None:
    """The folder of a complete ensemble planned as ``model``'s and trained without ``people``, or None.

    None as well when ``model`` is no ensemble loaded from a folder. ``exact`` and the order
    of preference are :func:`~workbench.core.world.sisa_train.reference_folders`'s.

    Examples:
        >>> reference_of(nn.Linear(1, 1), ["A"]) is None
        True
    """
    folder = getattr(model, "folder", None)
    if not isinstance(model, SisaEnsemble) or folder is None:
        return None
    found = reference_folders(folder, people, exact=exact)
    return str(found[0]) if found else None


__all__ = ["SisaEnsemble", "load_ensemble", "reference_of", "shard_hash"]
