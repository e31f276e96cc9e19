"""Where sites ``(layer, component)`` live in a Hugging Face causal LM: the one place that knows architectures."""

from dataclasses import dataclass, field
from typing import Literal, get_args

import torch
from jaxtyping import Float
from torch import Tensor, nn

Component = Literal["resid", "mlp", "attn", "embed"]
Family = Literal["gpt2", "llama", "gpt_neox"]
COMPONENTS: tuple[Component, ...] = get_args(Component)


class UnsupportedArchitecture(ValueError):
    """A model whose ``config.model_type`` has no entry in the site registry."""


@dataclass(frozen=True)
class _Layout:
    """Module paths of one family; per-block paths are relative to the block."""

    blocks: str
    attn: str
    mlp: str
    mlp_in: tuple[str, ...]
    mlp_out: str
    attn_out: str
    qkv: tuple[str, ...]
    # How Q, K, V sit in `qkv`: three modules, one [Q|K|V] block, or NeoX's per-head [q0 k0 v0 | q1 ...].
    qkv_layout: Literal["split", "concat", "interleaved"]
    embed: str
    final_norm: str
    # Candidates, first present wins: transformers 5.14 renamed NeoX's embed_out to lm_head.
    unembed: tuple[str, ...]
    # GPT-2's Conv1D stores weights [d_in, d_out], the transpose of nn.Linear's.
    conv1d: bool


_LAYOUTS: dict[str, _Layout] = {
    "gpt2": _Layout(
        "transformer.h",
        "attn",
        "mlp",
        ("mlp.c_fc",),
        "mlp.c_proj",
        "attn.c_proj",
        ("attn.c_attn",),
        "concat",
        "transformer.wte",
        "transformer.ln_f",
        ("lm_head",),
        conv1d=True,
    ),
    "llama": _Layout(
        "model.layers",
        "self_attn",
        "mlp",
        ("mlp.gate_proj", "mlp.up_proj"),
        "mlp.down_proj",
        "self_attn.o_proj",
        ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
        "split",
        "model.embed_tokens",
        "model.norm",
        ("lm_head",),
        conv1d=False,
    ),
    "gpt_neox": _Layout(
        "gpt_neox.layers",
        "attention",
        "mlp",
        ("mlp.dense_h_to_4h",),
        "mlp.dense_4h_to_h",
        "attention.dense",
        ("attention.query_key_value",),
        "interleaved",
        "gpt_neox.embed_in",
        "gpt_neox.final_layer_norm",
        ("lm_head", "embed_out"),
        conv1d=False,
    ),
}
# Mistral and Qwen2 share Llama's module tree exactly (Qwen2 only adds q/k/v biases).
_FAMILY_OF: dict[str, Family] = {
    "gpt2": "gpt2",
    "llama": "llama",
    "mistral": "llama",
    "qwen2": "llama",
    "gpt_neox": "gpt_neox",
}
# TransformerBridge hook names do not depend on the family; checked on all three in the tests.
_HOOKS: dict[str, str] = {
    "resid": "blocks.{layer}.hook_resid_post",
    "mlp": "blocks.{layer}.hook_mlp_out",
    "attn": "blocks.{layer}.hook_attn_out",
    "embed": "hook_embed",
}
_KEY_HOOK = "blocks.{layer}.mlp.hook_post"


@dataclass(frozen=True)
class SiteMap:
    """Sizes and site addresses of one model of a layout ``family``; build it with :func:`site_map`.

    Examples:
        >>> SiteMap("gpt2", n_layers=12, d_model=768, d_mlp=3072, n_heads=12).module_path(3, "mlp")
        'transformer.h.3.mlp'
    """

    family: Family
    n_layers: int
    d_model: int
    d_mlp: int
    n_heads: int
    unembed_path: str = "lm_head"
    # Filled by site_map() from the model itself, so param_names() always matches named_parameters().
    all_param_names: tuple[str, ...] = field(default=(), repr=False, compare=False)
    # The longest sequence the position embeddings cover (None where the config does not say).
    context_length: int | None = field(default=None, compare=False)

    @property
    def _layout(self) -> _Layout:
        return _LAYOUTS[self.family]

    def _index(self, layer: int) -> int:
        if layer is None or not -self.n_layers <= layer < self.n_layers:
            raise IndexError(f"layer {layer!r} out of range for a {self.n_layers}-layer model")
        return int(layer) % self.n_layers

    def _block(self, layer: int, rel: str = "") -> str:
        return f"{self._layout.blocks}.{self._index(layer)}" + (f".{rel}" if rel else "")

    @property
    def final_norm_path(self) -> str:
        """Dotted path of the final norm before the unembedding (for the logit lens).

        Examples:
            >>> SiteMap("llama", 2, 32, 64, 4).final_norm_path
            'model.norm'
        """
        return self._layout.final_norm

    def module_path(self, layer: int | None, component: Component) -> str:
        """Dotted module path of a site; "resid" is the whole block, "embed" ignores ``layer``.

        Examples:
            >>> SiteMap("gpt_neox", 6, 512, 2048, 8).module_path(-1, "resid")
            'gpt_neox.layers.5'

        Args:
            layer: Block index (negative counts from the end); unused for "embed".
            component: One of "resid", "mlp", "attn", "embed".
        """
        rel = {"resid": "", "mlp": self._layout.mlp, "attn": self._layout.attn}
        if component == "embed":
            return self._layout.embed
        if component not in rel:
            raise ValueError(f"unknown component {component!r}; expected one of {COMPONENTS}")
        return self._block(layer, rel[component])

    def module(self, model: nn.Module, layer: int | None, component: Component) -> nn.Module:
        """The module at a site of ``model``.

        Examples:
            >>> from transformers import AutoModelForCausalLM, GPT2Config
            >>> model = AutoModelForCausalLM.from_config(GPT2Config(n_layer=2, n_embd=32, n_head=4))
            >>> type(site_map(model).module(model, 0, "mlp")).__name__
            'GPT2MLP'
        """
        return model.get_submodule(self.module_path(layer, component))

    def mlp_out_path(self, layer: int) -> str:
        """Path of the MLP output projection (c_proj / down_proj / dense_4h_to_h).

        Examples:
            >>> SiteMap("llama", 2, 32, 64, 4).mlp_out_path(1)
            'model.layers.1.mlp.down_proj'
        """
        return self._block(layer, self._layout.mlp_out)

    def key_module_path(self, layer: int) -> str:
        """Module whose forward *input* is the ROME/MEMIT key k: the MLP output projection.

        Examples:
            >>> SiteMap("gpt2", 2, 32, 128, 4).key_module_path(0)
            'transformer.h.0.mlp.c_proj'
        """
        return self.mlp_out_path(layer)

    def mlp_in_paths(self, layer: int) -> list[str]:
        """Paths of the MLP input projections (c_fc; gate_proj, up_proj; dense_h_to_4h).

        Examples:
            >>> SiteMap("llama", 2, 32, 64, 4).mlp_in_paths(0)
            ['model.layers.0.mlp.gate_proj', 'model.layers.0.mlp.up_proj']
        """
        return [self._block(layer, p) for p in self._layout.mlp_in]

    def attn_out_path(self, layer: int) -> str:
        """Path of the attention output projection.

        Examples:
            >>> SiteMap("gpt_neox", 2, 32, 64, 4).attn_out_path(1)
            'gpt_neox.layers.1.attention.dense'
        """
        return self._block(layer, self._layout.attn_out)

    def weight_is_transposed(self) -> bool:
        """Whether this family stores projection weights [d_in, d_out] (GPT-2's Conv1D).

        Examples:
            >>> SiteMap("gpt2", 2, 32, 128, 4).weight_is_transposed()
            True
        """
        return self._layout.conv1d

    def mlp_out_weight(self, model: nn.Module, layer: int) -> nn.Parameter:
        """The native MLP output weight, [d_mlp, d_model] if transposed else [d_model, d_mlp].

        Examples:
            >>> from transformers import AutoModelForCausalLM, GPT2Config
            >>> model = AutoModelForCausalLM.from_config(GPT2Config(n_layer=2, n_embd=32, n_head=4))
            >>> tuple(site_map(model).mlp_out_weight(model, 1).shape)
            (128, 32)
        """
        return model.get_submodule(self.mlp_out_path(layer)).weight

    def read_mlp_out(self, model: nn.Module, layer: int) -> Float[Tensor, "d_model d_mlp"]:
        """A copy of the MLP output weight, oriented out x in whatever the storage.

        Examples:
            >>> from transformers import AutoModelForCausalLM, GPT2Config
            >>> model = AutoModelForCausalLM.from_config(GPT2Config(n_layer=2, n_embd=32, n_head=4))
            >>> tuple(site_map(model).read_mlp_out(model, 1).shape)
            (32, 128)
        """
        w = self.mlp_out_weight(model, layer).detach()
        return (w.T if self._layout.conv1d else w).clone()

    def add_to_mlp_out(self, model: nn.Module, layer: int, delta: Float[Tensor, "d_model d_mlp"]) -> None:
        """Add ``delta`` (out x in) to the MLP output weight in place, so views sharing it see it.

        Examples:
            >>> from transformers import AutoModelForCausalLM, GPT2Config
            >>> model = AutoModelForCausalLM.from_config(GPT2Config(n_layer=2, n_embd=32, n_head=4))
            >>> sm = site_map(model); w = sm.read_mlp_out(model, 0)
            >>> sm.add_to_mlp_out(model, 0, torch.ones(32, 128))
            >>> bool(torch.allclose(sm.read_mlp_out(model, 0), w + 1))
            True

        Args:
            model: The model to edit; its Parameter objects are kept, only their values change.
            layer: Block index.
            delta: Update of shape [d_model, d_mlp]: output rows by key columns.
        """
        if tuple(delta.shape) != (self.d_model, self.d_mlp):
            raise ValueError(f"delta has shape {tuple(delta.shape)}, expected {(self.d_model, self.d_mlp)}")
        w = self.mlp_out_weight(model, layer)
        with torch.no_grad():
            w.add_((delta.T if self._layout.conv1d else delta).to(dtype=w.dtype, device=w.device))

    def qkv(self, model: nn.Module, layer: int) -> list[tuple[Float[Tensor, "d_qkv d_model"], Tensor | None]]:
        """The current (weight, bias) of Q, K and V, each weight out x in, read at call time.

        Examples:
            >>> from transformers import AutoModelForCausalLM, GPT2Config
            >>> model = AutoModelForCausalLM.from_config(GPT2Config(n_layer=2, n_embd=32, n_head=4))
            >>> [tuple(w.shape) for w, b in site_map(model).qkv(model, 0)]
            [(32, 32), (32, 32), (32, 32)]
        """
        mods = [model.get_submodule(self._block(layer, p)) for p in self._layout.qkv]
        if self._layout.qkv_layout == "split":
            return [(m.weight, m.bias) for m in mods]
        w, b = mods[0].weight.T if self._layout.conv1d else mods[0].weight, mods[0].bias
        if self._layout.qkv_layout == "concat":
            return list(zip(w.chunk(3), b.chunk(3) if b is not None else (None,) * 3, strict=True))
        # Per-head interleaved slices cannot be flattened as views, so these are fresh copies.
        w, b = w.view(self.n_heads, 3, -1, w.shape[-1]), b.view(self.n_heads, 3, -1) if b is not None else None
        return [(w[:, i].flatten(0, 1), b[:, i].flatten() if b is not None else None) for i in range(3)]

    def param_names(self, layer: int | None, component: Component) -> list[str]:
        """Names, as in ``model.named_parameters()``, of the parameters inside a site's module.

        Examples:
            >>> from transformers import AutoModelForCausalLM, GPT2Config
            >>> model = AutoModelForCausalLM.from_config(GPT2Config(n_layer=2, n_embd=32, n_head=4))
            >>> site_map(model).param_names(1, "mlp")[:2]
            ['transformer.h.1.mlp.c_fc.weight', 'transformer.h.1.mlp.c_fc.bias']
        """
        if not self.all_param_names:
            raise ValueError("param_names needs a SiteMap built by site_map(model)")
        prefix = self.module_path(layer, component) + "."
        return [n for n in self.all_param_names if n.startswith(prefix)]

    def hook_name(self, layer: int | None, component: Component) -> str:
        """TransformerBridge hook name of a site (see :func:`workbench.core.views.hooked_view`).

        Examples:
            >>> SiteMap("llama", 4, 32, 64, 4).hook_name(-1, "resid")
            'blocks.3.hook_resid_post'
        """
        if component not in _HOOKS:
            raise ValueError(f"unknown component {component!r}; expected one of {COMPONENTS}")
        return _HOOKS["embed"] if component == "embed" else _HOOKS[component].format(layer=self._index(layer))

    def key_hook_name(self, layer: int) -> str:
        """TransformerBridge hook of the MLP post-activation, i.e. the key k.

        Examples:
            >>> SiteMap("gpt2", 2, 32, 128, 4).key_hook_name(1)
            'blocks.1.mlp.hook_post'
        """
        return _KEY_HOOK.format(layer=self._index(layer))


def site_map(model: nn.Module) -> SiteMap:
    """The :class:`SiteMap` of a Hugging Face causal LM, detected from ``config.model_type``.

    Examples:
        >>> from transformers import AutoModelForCausalLM, LlamaConfig
        >>> cfg = LlamaConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=4)
        >>> site_map(AutoModelForCausalLM.from_config(cfg))  # doctest: +NORMALIZE_WHITESPACE
        SiteMap(family='llama', n_layers=2, d_model=32, d_mlp=64, n_heads=4, unembed_path='lm_head',
                context_length=2048)

    Raises:
        UnsupportedArchitecture: for any other model type or module tree.
    """
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    family = _FAMILY_OF.get(model_type)
    if family is None:
        raise UnsupportedArchitecture(
            f"model_type {model_type!r} is not supported; supported: {', '.join(sorted(_FAMILY_OF))}"
        )
    lay = _LAYOUTS[family]
    try:
        blocks = model.get_submodule(lay.blocks)
        w = blocks[0].get_submodule(lay.mlp_out).weight
    except AttributeError:
        raise UnsupportedArchitecture(
            f"{type(model).__name__} has no {lay.blocks}[0].{lay.mlp_out}; pass the *ForCausalLM model"
        ) from None
    modules = {n for n, _ in model.named_modules()}
    # d_mlp is read from the weight: GPT-2 configs leave n_inner=None to mean 4 * n_embd.
    return SiteMap(
        family,
        len(blocks),
        model.config.hidden_size,
        w.shape[0] if lay.conv1d else w.shape[1],
        model.config.num_attention_heads,
        next((p for p in lay.unembed if p in modules), lay.unembed[0]),
        tuple(n for n, _ in model.named_parameters()),
        # GPT-2's n_positions answers to this name too (transformers' attribute map).
        context_length=getattr(model.config, "max_position_embeddings", None),
    )
