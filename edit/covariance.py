"""Second moment of the keys an MLP output projection reads: C = E[k k^T], streamed and cached.

ROME and MEMIT solve for weight updates that change the output for new keys while disturbing the
outputs for typical keys as little as possible; "typical" is C, estimated from text. The sum is
accumulated in float64 over batches, so memory is one d_key x d_key matrix whatever the sample
count. Results are cached on disk, keyed by a hash of every weight the keys depend on, the
layer, the sample count and the text, so a second edit at the same layer costs nothing; an
edited model has other weights and so gets its own entry.

Samples: C is d_key x d_key; Meng et al. used 100,000 Wikipedia tokens for GPT-2 XL, and later
work (e.g. Gupta et al. 2024 on MEMIT's statistics) found a few multiples of d_key already give
nearly the same edits. The default is 16 x d_key tokens, capped by the text available.
"""

from __future__ import annotations

import contextlib
import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from jaxtyping import Float
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm

from workbench.core.files import cache_dir, write_atomically
from workbench.core.hashing import tensor_hash
from workbench.core.tokens import token_batches, window_length, windows

SAMPLES_PER_KEY_DIM = 16


@dataclass
class KeyStats:
    """C = E[k k^T] (and the mean key) at one layer, and how it was estimated.

    Args:
        second_moment: E[k k^T], float64, [d_key, d_key].
        mean: E[k], float64, [d_key].
        count: Tokens averaged over.
        layer: The layer whose MLP output projection reads k.
        key: The cache key (hash of weights, layer, samples, text).
    """

    second_moment: Float[Tensor, "d_key d_key"]
    mean: Float[Tensor, " d_key"]
    count: int
    layer: int
    key: str


def default_samples(d_key: int) -> int:
    """Default token count for C: a few multiples of the key dimension.

    Examples:
        >>> default_samples(512)
        8192
    """
    return SAMPLES_PER_KEY_DIM * d_key


def weights_hash(model, sites, layer: int) -> str:
    """Hash of every parameter the keys at ``layer`` depend on: embeddings and blocks up to ``layer``.

    Examples:
        >>> from transformers import AutoModelForCausalLM, GPT2Config
        >>> from workbench.core.sites import site_map
        >>> m = AutoModelForCausalLM.from_config(GPT2Config(n_layer=2, n_embd=8, n_head=2))
        >>> a = weights_hash(m, site_map(m), 0)
        >>> _ = m.transformer.h[1].mlp.c_fc.weight.data.add_(1)
        >>> weights_hash(m, site_map(m), 0) == a, weights_hash(m, site_map(m), 1) == a
        (True, False)
    """
    later = tuple(sites.module_path(after, "resid") + "." for after in range(layer + 1, sites.n_layers))
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        if not name.startswith(later) and _before_final_norm(name, sites):
            h.update(name.encode())
            h.update(tensor_hash(p).encode())
    return h.hexdigest()[:16]


def _before_final_norm(name: str, sites) -> bool:
    return not (name.startswith(sites.final_norm_path + ".") or name.startswith(sites.unembed_path + "."))


# (id of a world, position) -> (that world, its texts, their hash). Holding the world keeps its id
# from being reused by another one.
_WORLD_TEXTS: dict[tuple[int, str], tuple[object, list[str], str]] = {}


def _world_texts(world, position: str) -> tuple[list[str], str]:
    """A world's texts for the statistics and their hash, built once per world: every edit asks again."""
    key = (id(world), position)
    if key not in _WORLD_TEXTS or _WORLD_TEXTS[key][0] is not world:
        texts = (
            world.training_sentences()
            if position == "all"
            else [ph.prompt(p) for p in world.people for r in world.relations for ph in world.phrasings(r)]
        )
        _WORLD_TEXTS[key] = world, texts, _text_hash(texts)
    return _WORLD_TEXTS[key][1:]


def _text_hash(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


@torch.no_grad()
def key_statistics(
    handle,
    layer: int,
    texts: list[str] | None = None,
    samples: int | None = None,
    batch_size: int = 64,
    use_cache: bool = True,
    progress: bool = True,
    position: Literal["all", "last"] = "all",
) -> KeyStats:
    """E[k k^T] of the keys read by ``layer``'s MLP output projection, over tokens of ``texts``.

    The keys k are the output projection's inputs. The texts are shuffled (with a fixed seed)
    and run in batches; a hook sums k k^T and k over every real token (or each text's last
    one), in float64, until ``samples`` tokens are in; C and the mean are those sums over the
    count. The result is cached on disk under a hash of the weights up to ``layer``, the layer,
    the sample count, the text and the position. For several layers at once, one pass:
    :func:`layer_statistics`.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world", device="cpu")
        >>> s = key_statistics(h, 1, samples=2000, use_cache=False, progress=False)
        >>> tuple(s.second_moment.shape), s.count >= 2000, bool(torch.allclose(s.second_moment, s.second_moment.T))
        ((512, 512), True, True)

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle`.
        layer: Block index (negative counts from the end).
        texts: Text to draw keys from; default: the world's training sentences, or with
            ``position="last"`` every trained prompt of the world (needed for a model without a world).
        samples: Tokens to average over; default :func:`default_samples` of the key dimension.
            Streaming stops once this many are seen; all of the text if it has fewer.
        batch_size: Texts per forward pass.
        use_cache: Read and write the on-disk cache (:func:`workbench.core.files.cache_dir`).
        progress: Show a progress bar on stderr.
        position: "all" tokens of each text (ROME, MEMIT), or only each text's "last" token:
            the typical keys of an editor keyed at the prompt's end are those of prompts' ends.

    Raises:
        ValueError: no text for a model without a world, layer out of range.
    """
    stats = layer_statistics(handle, [layer], texts, samples, batch_size, use_cache, progress, position)
    return next(iter(stats.values()))


@torch.no_grad()
def layer_statistics(
    handle,
    layers: list[int] | tuple[int, ...],
    texts: list[str] | None = None,
    samples: int | None = None,
    batch_size: int = 64,
    use_cache: bool = True,
    progress: bool = True,
    position: Literal["all", "last"] = "all",
) -> dict[int, KeyStats]:
    """:func:`key_statistics` at several layers from one pass over the text.

    MEMIT needs C at every edited layer. The keys of all of them come from the same batches,
    so the text runs through the model once, as far as the highest layer that is not cached,
    instead of once per layer; each layer's result is the one :func:`key_statistics` gives and
    goes to the same cache entry.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world", device="cpu")
        >>> both = layer_statistics(h, [0, 1], samples=2000, use_cache=False, progress=False)
        >>> one = key_statistics(h, 1, samples=2000, use_cache=False, progress=False)
        >>> sorted(both), bool(torch.equal(both[1].second_moment, one.second_moment))
        ([0, 1], True)

    Args:
        layers: Block indices (negative counts from the end); the result is keyed by each
            one's non-negative index. The other arguments are :func:`key_statistics`'s.

    Raises:
        ValueError: no text for a model without a world, no layers, a layer out of range.
    """
    sites = handle.sites
    if not len(layers):
        raise ValueError("no layers to estimate key statistics at")
    for layer in layers:
        if not -sites.n_layers <= layer < sites.n_layers:
            raise ValueError(f"layer {layer} out of range 0..{sites.n_layers - 1}")
    wanted = sorted({layer % sites.n_layers for layer in layers})
    if position not in ("all", "last"):
        raise ValueError(f"unknown position {position!r}; expected 'all' or 'last'")
    if texts is None:
        if handle.world is None:
            raise ValueError(f"model {handle.name!r} has no fact world: pass texts for the key statistics")
        texts, text_hash = _world_texts(handle.world, position)
    else:
        text_hash = _text_hash(texts)
    if not texts:
        raise ValueError("no text to estimate key statistics from")
    samples = samples or default_samples(sites.d_mlp)
    # Each layer's cache key: the weights its keys depend on, the layer, the sample count, the text.
    keys = {
        layer: f"{weights_hash(handle.model, sites, layer)}-L{layer}-n{samples}-t{text_hash}-{position}"
        for layer in wanted
    }
    paths = {layer: cache_dir() / "covariance" / f"{key}.safetensors" for layer, key in keys.items()}
    out: dict[int, KeyStats] = {}
    for layer in wanted:
        cached = _read_entry(paths[layer], sites.d_mlp) if use_cache and paths[layer].exists() else None
        if cached is not None:
            out[layer] = KeyStats(*cached, layer, keys[layer])
    missing = [layer for layer in wanted if layer not in out]
    if missing:
        # Not cached: stream the text through the model once, summing k k^T at every missing layer.
        sums, count = _stream_key_sums(handle, missing, texts, samples, batch_size, position, progress)
        for layer, (outer_sum, key_sum) in sums.items():
            out[layer] = stats = KeyStats(outer_sum / count, key_sum / count, count, layer, keys[layer])
            if use_cache:
                _write_entry(paths[layer], stats)
    return {layer: out[layer] for layer in wanted}


def _write_entry(path: Path, stats: KeyStats) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # A half-written file never looks like a finished one, even with two processes on one key.
    write_atomically(
        path,
        lambda tmp: save_file(
            {"second_moment": stats.second_moment, "mean": stats.mean, "count": torch.tensor(stats.count)}, tmp
        ),
    )


class _KeysRead(Exception):
    """Raised by the key hook once a batch's keys are summed, to stop the forward pass there."""


class CacheWarning(UserWarning):
    """A damaged cache entry was found and is being rebuilt."""


def _read_entry(path: Path, d_key: int) -> tuple[Tensor, Tensor, int] | None:
    """A cache entry's (second moment, mean, count), or None, with one warning, if it is damaged.

    A truncated, mis-shaped or non-finite entry would make every edit at its layer fail (or give
    non-finite weights) for a reason that names neither the cache nor the file: it is rebuilt.
    """
    try:
        cached = load_file(path)
        second, mean, count = cached["second_moment"], cached["mean"], int(cached["count"])
        if tuple(second.shape) != (d_key, d_key) or tuple(mean.shape) != (d_key,) or count <= 0:
            raise ValueError(f"shapes {tuple(second.shape)}, {tuple(mean.shape)} and count {count}")
        if not (torch.isfinite(second).all() and torch.isfinite(mean).all()):
            raise ValueError("non-finite values")
    except Exception as e:  # noqa: BLE001 - whatever is wrong with the file, the answer is to rebuild it
        warnings.warn(f"key statistics cache entry {path} is damaged ({e}); rebuilding it", CacheWarning, stacklevel=3)
        return None
    return second, mean, count


def token_windows(tokenizer, texts: list[str], context: int, position: str) -> list[list[int]]:
    """The texts' token ids cut to what the model reads: windows of at most ``context`` tokens.

    A document longer than the model's context is read window by window when every token's key
    counts (``position="all"``), and only its last window when the key at the last token does:
    never padded to the longest text, never past the positions the model has.

    Examples:
        >>> from workbench.core.handle import load
        >>> tok = load("world").tokenizer
        >>> [len(w) for w in token_windows(tok, ["It is well known that " * 30], 128, "all")]
        [128, 23]
        >>> [len(w) for w in token_windows(tok, ["It is well known that " * 30], 128, "last")]
        [128]
    """
    out = []
    for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]:
        if position == "last":
            out.append(ids[-context:])
        else:
            out.extend(windows(ids, context))
    return [w for w in out if w]


@torch.no_grad()
def _stream_key_sums(
    handle, layers: list[int], texts: list[str], samples: int, batch_size: int, position: str, progress: bool
) -> tuple[dict[int, tuple[Float[Tensor, "d_key d_key"], Float[Tensor, " d_key"]]], int]:
    """Per layer, sums of k k^T and of k over the shuffled texts' tokens; their count. Whole batches, to ``samples``."""
    sites = handle.sites
    d = sites.d_mlp
    sums = {layer: [torch.zeros(d, d, dtype=torch.float64), torch.zeros(d, dtype=torch.float64)] for layer in layers}
    top = max(layers)
    count = 0
    batch_mask: list[Tensor] = []  # the attention mask of the batch being run

    def accumulate(layer: int, args) -> None:
        nonlocal count
        mask = batch_mask[0].to(args[0].device).bool()
        if position == "last":  # padded on the right: a row's last real token is at its length - 1
            last = mask.sum(1) - 1
            mask = torch.zeros_like(mask)
            mask[torch.arange(len(last), device=mask.device), last] = True
        keys = args[0].detach()[mask].to(torch.float64)  # real tokens only
        acc = sums[layer]
        if acc[0].device != keys.device:  # summed where the layer runs (a GPU, or a shard's)
            acc[:] = [acc[0].to(keys.device), acc[1].to(keys.device)]
        acc[0] += keys.T @ keys
        acc[1] += keys.sum(0)
        if layer == top:
            count += keys.shape[0]
            # The blocks above the highest layer cannot change its keys: running them would be wasted work.
            raise _KeysRead

    # Shuffle deterministically: world sentences come grouped by person and relation.
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(0)).tolist()
    hooks = [
        handle.model.get_submodule(sites.key_module_path(layer)).register_forward_pre_hook(
            lambda module, args, layer=layer: accumulate(layer, args)
        )
        for layer in layers
    ]
    tok = handle.tokenizer
    where = f"layer {layers[0]}" if len(layers) == 1 else f"layers {', '.join(map(str, layers))}"
    bar = tqdm(total=samples, desc=f"key statistics, {where}", unit="tok", disable=not progress, leave=False)
    read = token_windows(tok, [texts[i] for i in order], window_length(sites.context_length), position)
    try:
        # Batches of about BATCH_TOKENS tokens: 64 windows of 1,024 would hold gigabytes of activations.
        for start, stop in token_batches([len(w) for w in read], batch_size):
            # Right padding whatever the tokenizer's default: positions then count from 0 in every row.
            enc = tok.pad(
                {"input_ids": read[start:stop]},
                padding=True,
                padding_side="right",
                return_tensors="pt",
            )
            batch_mask[:] = [enc["attention_mask"]]
            before = count
            with contextlib.suppress(_KeysRead):
                handle.model(
                    input_ids=enc["input_ids"].to(handle.device), attention_mask=enc["attention_mask"].to(handle.device)
                )
            bar.update(count - before)
            if count >= samples:
                break
    finally:
        for hook in hooks:
            hook.remove()
        bar.close()
    return {layer: (acc[0].cpu(), acc[1].cpu()) for layer, acc in sums.items()}, count
