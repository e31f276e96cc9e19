"""Sparse autoencoders on a model's activations, trained offline with sae-lens, and their quality.

Activations come from text through the hooked view (the world's training sentences by default)
and stay in memory: the world corpus is about 200k tokens. sae-lens' own ``SAETrainer`` trains
a BatchTopK SAE (Bussmann et al. 2024: the k x batch largest pre-activations across the batch)
from an in-memory data provider; for inference sae-lens turns it into a JumpReLU SAE with one
threshold per feature, and writes its own format, so ``sae_lens.SAE.load_from_disk`` reads the
result. Against plain TopK at the same L0 on the default model it leaves far fewer features
that never fire and explains more variance (see docs/locate.md#shipped-saes).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from workbench.core.handle import load
from workbench.core.metrics import heldout_loss
from workbench.core.padding import pad_right
from workbench.core.tokens import token_batches, window_length, windows
from workbench.core.world.registry import CHECKPOINTS


@dataclass(frozen=True)
class SaeSettings:
    """Where an SAE reads and how it is trained.

    Examples:
        >>> SaeSettings().hook_name(), SaeSettings(layer=2, component="mlp").hook_name()
        ('blocks.0.hook_resid_post', 'blocks.2.hook_mlp_out')

    Args:
        layer: Block index.
        component: "resid" (block output) or "mlp" (MLP output).
        d_sae: Number of features (4x the default model's 128 dimensions: the world corpus has
            a few hundred distinct words; at 8x the extra features mostly never fire).
        k: Mean active features per token (BatchTopK's k).
        samples: Activation vectors seen in training (about ten passes over the world corpus).
        batch_size: Vectors per step.
        lr: Adam learning rate, decayed to a tenth over the last fifth of training.
        seed: Seed of the initialisation and of the order of activations.
    """

    layer: int = 0
    component: Literal["resid", "mlp"] = "resid"
    d_sae: int = 512
    k: int = 16
    samples: int = 2_000_000
    batch_size: int = 1024
    lr: float = 1e-3
    seed: int = 0

    def hook_name(self) -> str:
        return f"blocks.{self.layer}.hook_{'resid_post' if self.component == 'resid' else 'mlp_out'}"


# The SAEs shipped with the default world model: where its facts are looked up (layer 0, at the
# prompt's last token) and the residual stream two layers later.
SHIPPED_SAES = (SaeSettings(0, "resid"), SaeSettings(0, "mlp"), SaeSettings(2, "resid"))


def sae_dir(settings: SaeSettings, model_dir: str | Path | None = None) -> Path:
    """Where an SAE of a model lives: ``<model dir>/saes/<hook name>``.

    Examples:
        >>> sae_dir(SaeSettings(), "/m").as_posix()
        '/m/saes/blocks.0.hook_resid_post'
    """
    return Path(model_dir or CHECKPOINTS / "gpt2") / "saes" / settings.hook_name()


@torch.no_grad()
def activations(handle, hook_name: str, texts: list[str], batch_size: int = 256) -> Float[Tensor, "token d"]:
    """Every real token's activation at ``hook_name`` over ``texts`` (padding dropped), in order.

    A text longer than the model reads is read in consecutive windows (:func:`text_windows`).

    Examples:
        >>> import workbench
        >>> h = workbench.load("world", device="cpu")
        >>> activations(h, "blocks.0.hook_resid_post", h.world.training_sentences()[:3]).shape[1]
        128
    """
    return window_activations(handle, hook_name, [w for ws in text_windows(handle, texts) for w in ws], batch_size)


def text_windows(handle, texts: list[str]) -> list[list[list[int]]]:
    """Each text's token ids cut into windows the model can read (one window for a short text).

    Examples:
        >>> import workbench
        >>> h = workbench.load("world", device="cpu")
        >>> [len(w) for w in text_windows(h, ["a b c " * 100])[0]]
        [128, 128, 45]
    """
    width = window_length(handle.sites.context_length)
    return [[w for w in windows(ids, width) if w] for ids in handle.tokenizer(list(texts)).input_ids]


@torch.no_grad()
def window_activations(
    handle, hook_name: str, rows: list[list[int]], batch_size: int = 256
) -> Float[Tensor, "token d"]:
    """Every token's activation at ``hook_name`` over windows of token ids, in order."""
    out = []
    pad = handle.tokenizer.pad_token_id or 0
    for start, stop in token_batches([len(r) for r in rows], batch_size):
        ids, mask = pad_right(rows[start:stop], pad)
        _, cache = handle.hooked.run_with_cache(
            ids.to(handle.device), attention_mask=mask.to(handle.device), names_filter=lambda n: n == hook_name
        )
        out.append(cache[hook_name][mask.bool().to(handle.device)].float().cpu())
    return torch.cat(out) if out else torch.zeros(0, handle.sites.d_model)


def _batches(acts: Tensor, batch_size: int, seed: int) -> Iterator[Tensor]:
    g = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(len(acts), generator=g)
        for i in range(0, len(acts) - batch_size + 1, batch_size):
            yield acts[perm[i : i + batch_size]]


def train_sae(handle, settings: SaeSettings | None = None, texts: list[str] | None = None, progress: bool = True):
    """Train a TopK SAE with sae-lens on ``handle``'s activations; returns the inference SAE.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world", device="cpu")
        >>> sae = train_sae(h, SaeSettings(d_sae=64, k=4, samples=4096, batch_size=512), progress=False)
        >>> sae.cfg.d_sae, sae.cfg.d_in
        (64, 128)

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle`.
        settings: :class:`SaeSettings`.
        texts: Training text; default the world's training sentences.
        progress: Show sae-lens' progress bar.
    """
    from sae_lens import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    s = settings or SaeSettings()
    if not 0 <= s.layer < handle.n_layers:
        raise ValueError(f"layer {s.layer} out of range 0..{handle.n_layers - 1}")
    if texts is None:
        if handle.world is None:
            raise ValueError(f"model {handle.name!r} has no fact world: pass texts to train an SAE on")
        texts = handle.world.training_sentences()
    acts = activations(handle, s.hook_name(), texts)
    if len(acts) < s.k:
        raise ValueError(f"{len(acts)} token(s) of text to train on; an SAE with k={s.k} needs more")
    # A corpus smaller than a batch would never fill one: the batch shrinks to the corpus.
    batch = min(s.batch_size, len(acts), s.samples)
    state = torch.random.get_rng_state()
    torch.manual_seed(s.seed)
    try:
        # Activations are scaled to a fixed mean norm while training (folded back in at the end),
        # so one learning rate suits every site whatever its scale.
        sae = BatchTopKTrainingSAE(
            BatchTopKTrainingSAEConfig(
                d_in=acts.shape[1],
                d_sae=s.d_sae,
                k=s.k,
                dtype="float32",
                device="cpu",
                normalize_activations="expected_average_only_in",
            )
        )
        steps = s.samples // batch
        # A feature silent for 200 steps (200k vectors, one pass over the corpus) counts as dead
        # and gets the auxiliary loss that revives it.
        cfg = SAETrainerConfig(
            total_training_samples=s.samples,
            train_batch_size_samples=batch,
            lr=s.lr,
            lr_end=s.lr / 10,
            lr_decay_steps=max(1, steps // 5),
            n_batches_for_norm_estimate=10,
            dead_feature_window=200,
            logger=LoggingConfig(log_to_wandb=False),
        )
        trainer = SAETrainer(cfg, sae, _batches(acts, batch, s.seed))
        if not progress:
            import sae_lens.training.sae_trainer as st

            real, st.tqdm = st.tqdm, lambda *a, **k: real(*a, **dict(k, disable=True))
            try:
                sae = trainer.fit()
            finally:
                st.tqdm = real
        else:
            sae = trainer.fit()
    finally:
        torch.random.set_rng_state(state)
    return _to_inference(sae)


def _to_inference(training_sae):
    import tempfile

    from sae_lens import SAE

    with tempfile.TemporaryDirectory() as d:
        training_sae.save_inference_model(d)
        return SAE.load_from_disk(d)


@torch.no_grad()
def evaluate_sae(
    handle, sae, settings: SaeSettings, texts: list[str] | None = None, ignore: list[str] | None = None
) -> dict:
    """Reconstruction quality: fraction of variance explained, L0, dead features, and the model's
    loss with the SAE's reconstruction spliced in (and with the activation zeroed) against without.

    Examples:
        >>> import workbench
        >>> from locate.sae_splice import load_sae
        >>> h = workbench.load("world", device="cpu")
        >>> r = evaluate_sae(h, load_sae(SaeSettings()), SaeSettings(), h.world.heldout_text()[:50])
        >>> r["fraction_variance_explained"] > 0.99, 10 < r["l0"] < 20
        (True, True)
    """
    if texts is None:
        statements = handle.world.heldout_statements()
        texts = [f.sentence(ph) for f, ph in statements]
        ignore = [f.subject for f, _ in statements]
    x = activations(handle, settings.hook_name(), texts)
    f = sae.encode(x)
    recon = sae.decode(f)
    fve = 1 - float(((x - recon) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())
    fired = (f > 0).any(0)
    losses = {}
    for mode in ("clean", "spliced", "zero"):
        with _replaced(handle, sae, settings, mode):
            losses[mode] = heldout_loss(handle.model, handle.tokenizer, texts, ignore=ignore)
    return {
        "fraction_variance_explained": fve,
        "l0": float((f > 0).float().sum(-1).mean()),
        "dead_fraction": 1 - float(fired.float().mean()),
        "tokens": len(x),
        "loss_clean": losses["clean"],
        "loss_spliced": losses["spliced"],
        "loss_zero_ablated": losses["zero"],
    }


class _replaced:
    """Replace an activation by the SAE's reconstruction (no error term) or by zeros, on the HF model."""

    def __init__(self, handle, sae, settings: SaeSettings, mode: str):
        self.handle, self.sae, self.mode = handle, sae, mode
        # The module whose output is the hook point: the block for "resid", the MLP for "mlp".
        self.module = handle.sites.module(handle.model, settings.layer, settings.component)

    def __enter__(self):
        def swap(module, args, out):
            x = out[0] if isinstance(out, tuple) else out
            y = torch.zeros_like(x) if self.mode == "zero" else self.sae.decode(self.sae.encode(x.float())).to(x.dtype)
            return (y, *out[1:]) if isinstance(out, tuple) else y

        self.hook = self.module.register_forward_hook(swap) if self.mode != "clean" else None
        return self

    def __exit__(self, *exc):
        if self.hook is not None:
            self.hook.remove()


def train_shipped_saes(model_dir: str | Path | None = None, progress: bool = True) -> dict:
    """Rebuild the SAEs shipped with the default world model, with a report of their quality.

    Writes ``<model dir>/saes/<hook>/`` (sae-lens format) and ``<model dir>/saes/report.json``.
    """
    model_dir = Path(model_dir or CHECKPOINTS / "gpt2")
    h = load(str(model_dir), device="cpu")
    report = {}
    for s in SHIPPED_SAES:
        t0 = time.perf_counter()
        sae = train_sae(h, s, progress=progress)
        seconds = time.perf_counter() - t0
        sae.save_model(sae_dir(s, model_dir))
        report[s.hook_name()] = {"settings": asdict(s), "train_seconds": seconds, **evaluate_sae(h, sae, s)}
    (model_dir / "saes" / "report.json").write_text(json.dumps(report, indent=1))
    return report


def train_text_sae(handle, settings: SaeSettings, texts: list[str], out: str | Path, progress: bool = True) -> dict:
    """Train one SAE on ``handle``'s activations over ``texts``; write it and its quality report under ``out``.

    Any model, any text: the SAE goes to ``<out>/<hook name>/`` (sae-lens format, where
    :func:`locate.sae_splice.load_sae` looks) and its report into ``<out>/report.json`` beside the
    others'. From ten texts on, every tenth is held out of training and the quality is measured
    on those; with fewer, on the training text itself (``evaluated_on`` says which).

    Examples:
        >>> import tempfile, workbench
        >>> h = workbench.load("world", device="cpu")
        >>> s = SaeSettings(d_sae=32, k=4, samples=2048, batch_size=256)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     r = train_text_sae(h, s, h.world.training_sentences()[:50], d, progress=False)
        ...     sorted(p.name for p in Path(d).iterdir())
        ['blocks.0.hook_resid_post', 'report.json']
        >>> r["evaluated_on"], r["texts"]
        ('held-out texts', {'train': 45, 'evaluated': 5})
    """
    held = texts[9::10] if len(texts) >= 10 else []
    train = [t for i, t in enumerate(texts) if i % 10 != 9] if held else list(texts)
    t0 = time.perf_counter()
    sae = train_sae(handle, settings, train, progress=progress)
    seconds = time.perf_counter() - t0
    out = Path(out)
    sae.save_model(out / settings.hook_name())
    report = {
        "settings": asdict(settings),
        "train_seconds": seconds,
        "evaluated_on": "held-out texts" if held else "training text",
        "texts": {"train": len(train), "evaluated": len(held or train)},
        **evaluate_sae(handle, sae, settings, held or train),
    }
    path = out / "report.json"
    before = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps({**before, settings.hook_name(): report}, indent=1))
    return report
