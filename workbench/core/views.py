"""Analysis views (TransformerLens' bridge, nnsight) over a Hugging Face model, sharing its weights.

Both libraries rewrite the model they are given: TransformerBridge swaps every submodule for a
wrapper (parameter names gain ``_original_component``) and forces eager attention on the config;
nnsight installs a controller as each module's ``forward``. So each view gets a *shadow*: a copy of
the module tree whose parameters and buffers are the very same tensors as the caller's. In-place
edits of the caller's weights show in every view at once, while the caller's model keeps its
structure, names and config, which editors, :mod:`workbench.core.sites` and export rely on. Do not
``.to()`` a view (it would move shared parameters but not the caller's buffers): move the model
and create fresh views.
"""

from __future__ import annotations

import copy
import itertools
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from workbench.core.sites import Component, SiteMap, site_map

if TYPE_CHECKING:
    from nnsight import TransformersModel
    from transformer_lens.model_bridge import TransformerBridge


def _shadow(model: nn.Module) -> nn.Module:
    """A copy of ``model``'s module tree (and config) holding the same Parameter and buffer objects."""
    memo = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    # Views are for analysis: no dropout, whatever mode the caller's model is in.
    return copy.deepcopy(model, memo).eval()


def _bridge_tokenizer(tokenizer: Any) -> Any:
    # boot_transformers re-downloads any tokenizer whose init_kwargs lack add_bos_token=True (by
    # init_kwargs["name_or_path"], which an in-memory tokenizer lacks: KeyError), and may set its
    # special tokens. A private copy that claims add_bos_token stays offline and leaves the
    # caller's tokenizer alone; the bridge still probes whether BOS is really prepended.
    tok = copy.deepcopy(tokenizer)
    tok.init_kwargs = {**tok.init_kwargs, "name_or_path": tokenizer.name_or_path, "add_bos_token": True}
    return tok


class _LiveQKV(nn.Module):
    """Q, K or V of a fused projection, sliced from the model's current weight at every call."""

    def __init__(self, model: nn.Module, sites: SiteMap, layer: int, index: int):
        super().__init__()
        # A plain attribute, not a submodule: the bridge lives inside a shadow of this model.
        object.__setattr__(self, "_model", model)
        self._sites, self._layer, self._index = sites, layer, index

    @property
    def weight(self) -> torch.Tensor:
        return self._sites.qkv(self._model, self._layer)[self._index][0]

    @property
    def bias(self) -> torch.Tensor | None:
        return self._sites.qkv(self._model, self._layer)[self._index][1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self._sites.qkv(self._model, self._layer)[self._index]
        return F.linear(x, w, b)


def _relink_split_qkv(bridge: TransformerBridge, model: nn.Module, sites: SiteMap) -> None:
    # Adapters split a fused QKV weight into new q/k/v Linears at boot. GPT-2's split is a view,
    # but NeoX's per-head interleaving forces a copy that an in-place edit of query_key_value
    # would never reach; such copies are replaced by slices read live from the model.
    storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    for layer, block in enumerate(bridge.blocks):
        for index, name in enumerate("qkv"):
            linear = getattr(block.attn, name, None)
            weight = getattr(getattr(linear, "original_component", None), "weight", None)
            if weight is not None and weight.untyped_storage().data_ptr() not in storages:
                linear.set_original_component(_LiveQKV(model, sites, layer, index))


def hooked_view(hf_model: nn.Module, tokenizer: Any) -> TransformerBridge:
    """A TransformerLens ``TransformerBridge`` running on ``hf_model``'s own weights, offline.

    No weight processing is applied (no layer-norm folding, no ``enable_compatibility_mode``),
    so hook values are those of the Hugging Face model; hook names come from
    :meth:`SiteMap.hook_name`. ``to_tokens`` adds BOS exactly when the tokenizer does. The
    caller's model and tokenizer are not modified.

    Examples:
        >>> from tokenizers import Tokenizer, models, pre_tokenizers
        >>> from transformers import AutoModelForCausalLM, GPT2Config, PreTrainedTokenizerFast
        >>> raw = Tokenizer(models.WordLevel({"<s>": 0, "hi": 1, "<unk>": 2}, unk_token="<unk>"))
        >>> raw.pre_tokenizer = pre_tokenizers.Whitespace()
        >>> tok = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="<s>", unk_token="<unk>")
        >>> model = AutoModelForCausalLM.from_config(GPT2Config(n_layer=2, n_embd=32, n_head=4))
        >>> _, cache = hooked_view(model, tok).run_with_cache(torch.tensor([[0, 1, 1]]))
        >>> cache[site_map(model).hook_name(1, "mlp")].shape
        torch.Size([1, 3, 32])

    Args:
        hf_model: A causal LM of a family :func:`workbench.core.sites.site_map` supports.
        tokenizer: Its tokenizer; the bridge gets a private copy.

    Raises:
        UnsupportedArchitecture: for a model outside the site registry.
    """
    sites = site_map(hf_model)  # fail on an unsupported family before the slow import
    from transformer_lens.model_bridge import TransformerBridge

    first = next(hf_model.parameters())
    bridge = TransformerBridge.boot_transformers(
        # With hf_model given, model_name is only a label: config and weights come from the model.
        model_name=hf_model.config.name_or_path or hf_model.config.model_type,
        hf_model=_shadow(hf_model),
        tokenizer=_bridge_tokenizer(tokenizer),
        device=first.device,
        dtype=first.dtype,
    )
    _relink_split_qkv(bridge, hf_model, sites)
    # Tokenize as the tokenizer does, as the rest of the workbench does (TransformerLens would
    # otherwise add or strip BOS by family, e.g. strip it for NeoX), so positions line up.
    bridge.cfg.default_prepend_bos = bool(bridge.cfg.tokenizer_prepends_bos)
    return bridge


def nnsight_view(hf_model: nn.Module, tokenizer: Any) -> TransformersModel:
    """An nnsight model tracing ``hf_model``'s own weights; read sites with :func:`nnsight_module`.

    Built as ``TransformersModel(..., task="text-generation")``, which nnsight 0.8 recommends over
    the deprecated ``LanguageModel`` (same tracing API). The caller's model and tokenizer are not
    modified (nnsight would left-pad the tokenizer and patch every module's ``forward``).
    Inside a trace, read sites in execution order (e.g. a key input before that MLP's output).

    Examples:
        >>> from tokenizers import Tokenizer, models, pre_tokenizers
        >>> from transformers import AutoModelForCausalLM, GPT2Config, PreTrainedTokenizerFast
        >>> raw = Tokenizer(models.WordLevel({"<s>": 0, "hi": 1, "<unk>": 2}, unk_token="<unk>"))
        >>> raw.pre_tokenizer = pre_tokenizers.Whitespace()
        >>> tok = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="<s>", unk_token="<unk>")
        >>> model = AutoModelForCausalLM.from_config(GPT2Config(n_layer=2, n_embd=32, n_head=4))
        >>> lm = nnsight_view(model, tok)
        >>> with lm.trace(torch.tensor([[0, 1, 1]])):
        ...     out = nnsight_module(lm, site_map(model), 1, "mlp").output.save()
        >>> out.shape
        torch.Size([1, 3, 32])

    Args:
        hf_model: A Hugging Face causal LM.
        tokenizer: Its tokenizer; nnsight gets a private copy.
    """
    from nnsight import TransformersModel

    return TransformersModel(_shadow(hf_model), task="text-generation", tokenizer=copy.deepcopy(tokenizer))


def envoy_at(lm: TransformersModel, path: str) -> Any:
    """The nnsight envoy at a dotted module path such as :meth:`SiteMap.key_module_path` gives.

    Examples:
        >>> from transformers import AutoModelForCausalLM, GPT2Config, PreTrainedTokenizerFast
        >>> from tokenizers import Tokenizer, models
        >>> tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>")))
        >>> lm = nnsight_view(AutoModelForCausalLM.from_config(GPT2Config(n_layer=2, n_embd=32, n_head=4)), tok)
        >>> envoy_at(lm, "transformer.h.1.mlp.c_proj").path
        'model.transformer.h.1.mlp.c_proj'
    """
    node = lm
    for part in path.split("."):
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    return node


def nnsight_module(lm: TransformersModel, sites: SiteMap, layer: int | None, component: Component) -> Any:
    """The nnsight envoy of a site, found through :meth:`SiteMap.module_path`.

    Examples:
        >>> from transformers import AutoModelForCausalLM, GPT2Config, PreTrainedTokenizerFast
        >>> from tokenizers import Tokenizer, models
        >>> tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>")))
        >>> model = AutoModelForCausalLM.from_config(GPT2Config(n_layer=2, n_embd=32, n_head=4))
        >>> nnsight_module(nnsight_view(model, tok), site_map(model), 0, "attn").path
        'model.transformer.h.0.attn'

    Args:
        lm: A view from :func:`nnsight_view`.
        sites: The site map of the model behind it.
        layer, component: The site, as in :meth:`SiteMap.module_path`.
    """
    return envoy_at(lm, sites.module_path(layer, component))
