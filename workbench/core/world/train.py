"""Train the world's models from scratch: the full models and the retain (gold-standard) models.

A retain model is trained exactly as the full model is, on the same corpus minus the
forgotten people's sentences, so it is what the model would be had it never seen them.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

from workbench.core.metrics import heldout_loss, score_facts
from workbench.core.world.facts import Fact, Phrasing, World, make_world
from workbench.core.world.tokenizer import build_tokenizer


@dataclass
class TrainSettings:
    """How a world model is built; the defaults are those of the shipped models."""

    arch: str = "gpt2"  # "gpt2" or "llama"
    split: str | None = None  # None: the full model; "forget05": its retain model
    seed: int = 0  # initialisation and data order (the world itself uses seed 0)
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    d_mlp: int = 512
    seq_len: int = 64  # sentences are packed into sequences of this many tokens
    batch_size: int = 32  # sequences per step
    epochs: int = 32  # passes over the (split's) training sentences
    lr: float = 5e-3
    warmup: float = 0.05  # fraction of steps with linear warm-up, then cosine decay
    weight_decay: float = 0.01
    threads: int = 1  # fixed so that CPU reductions, and so the weights, repeat
    eval_every: int = 0  # epochs between progress evaluations on 30 people (0: none)


def model_config(s: TrainSettings, tokenizer):
    common = dict(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    if s.arch == "gpt2":
        # gelu_pytorch_tanh is GPT-2's tanh GELU as one fused kernel: same function, about a third
        # faster on CPU than the elementwise "gelu_new".
        return GPT2Config(
            n_embd=s.d_model,
            n_layer=s.n_layers,
            n_head=s.n_heads,
            n_inner=s.d_mlp,
            activation_function="gelu_pytorch_tanh",
            n_positions=128,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            **common,
        )
    if s.arch == "llama":
        return LlamaConfig(
            hidden_size=s.d_model,
            num_hidden_layers=s.n_layers,
            num_attention_heads=s.n_heads,
            num_key_value_heads=s.n_heads,
            intermediate_size=s.d_mlp,
            max_position_embeddings=128,
            tie_word_embeddings=True,
            **common,
        )
    raise ValueError(f"unknown architecture {s.arch!r}: choose gpt2 or llama")


def _labelled_sentences(world: World, tokenizer, split: str | None) -> list[list[tuple[int, int]]]:
    """Training sentences as (token id, role) pairs: role 1 = predicted, 2 = subject token.

    Subject names are drawn at random, so predicting them is noise that would swamp the
    gradient of the facts; they stay in the input but are not prediction targets.
    """
    return labelled_statements(world.training_statements(split), tokenizer)


def labelled_statements(statements: list[tuple[Fact, Phrasing]], tokenizer) -> list[list[tuple[int, int]]]:
    """(fact, phrasing) pairs as training sentences of (token id, role) pairs, as :func:`train` reads them.

    Examples:
        >>> from workbench.core.world.tokenizer import build_tokenizer
        >>> w = make_world()
        >>> f = w.facts()[0]
        >>> [role for _, role in labelled_statements([(f, w.phrasings(f.relation)[0])], build_tokenizer(w))[0]]
        [2, 2, 1, 1, 1, 1, 1]
    """
    texts = [f.sentence(ph) for f, ph in statements]
    enc = tokenizer(texts, return_offsets_mapping=True, add_special_tokens=False)
    out = []
    for (f, _), text, ids, offs in zip(statements, texts, enc.input_ids, enc.offset_mapping, strict=True):
        a = text.find(f.subject)
        b = a + len(f.subject)
        out.append([(t, 2 if (s < b and e > a) else 1) for t, (s, e) in zip(ids, offs, strict=True)])
    return out


def pack(
    sentences: list[list[tuple[int, int]]], seq_len: int, bos: int, pad: int, rng: random.Random
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle sentences and pack them greedily behind a [BOS] into padded sequences.

    Returns token ids and roles (0 = padding, 1 = predicted, 2 = input only).
    """
    order = list(range(len(sentences)))
    rng.shuffle(order)
    rows, cur = [], [(bos, 2)]
    for i in order:
        s = sentences[i]
        if len(cur) + len(s) > seq_len:
            rows.append(cur)
            cur = [(bos, 2)]
        cur = cur + s
    rows.append(cur)
    ids = torch.full((len(rows), seq_len), pad, dtype=torch.long)
    roles = torch.zeros((len(rows), seq_len), dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, : len(row)] = torch.tensor([t for t, _ in row])
        roles[r, : len(row)] = torch.tensor([k for _, k in row])
    return ids, roles


def evaluate(model, tokenizer, world: World, split: str | None) -> dict:
    """Accuracy among candidates on trained and held-out phrasings, and held-out loss."""
    groups = {"all": list(world.people)}
    if split is not None:
        groups = {"retain": list(world.split(split).retain), "forget": list(world.split(split).forget)}
    out = {}
    for name, people in groups.items():
        facts = world.facts(people)
        out[name] = {
            "trained_phrasings": score_facts(model, tokenizer, world, facts).summary(),
            "heldout_phrasings": score_facts(model, tokenizer, world, facts, held_out=True).summary(),
        }
    statements = world.heldout_statements()
    out["heldout_loss"] = heldout_loss(
        model, tokenizer, [f.sentence(ph) for f, ph in statements], ignore=[f.subject for f, _ in statements]
    )
    return out


def train(settings: TrainSettings, out_dir: str | Path, world: World | None = None, progress: bool = True) -> dict:
    """Train one world model and save it as a Hugging Face directory; returns its report.

    Examples:
        >>> report = train(TrainSettings(epochs=1, n_layers=1), "/tmp/wb-tiny")  # doctest: +SKIP
    """
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        return _train(settings, Path(out_dir), world or make_world(), progress)
    finally:
        # Training pins global torch state for repeatability; a caller's session gets it back.
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _train(settings: TrainSettings, out_dir: Path, world: World, progress: bool) -> dict:
    torch.manual_seed(settings.seed)
    torch.set_num_threads(settings.threads)
    torch.use_deterministic_algorithms(True)
    rng = random.Random(settings.seed)
    tokenizer = build_tokenizer(world)
    model = AutoModelForCausalLM.from_config(model_config(settings, tokenizer))
    model.loss_type = "ForCausalLM"  # named, so transformers does not warn that it guessed
    model.train()

    sents = _labelled_sentences(world, tokenizer, settings.split)
    probe, _ = pack(sents, settings.seq_len, tokenizer.bos_token_id, tokenizer.pad_token_id, random.Random(0))
    steps_per_epoch = math.ceil(len(probe) / settings.batch_size)
    total = steps_per_epoch * settings.epochs
    warm = max(1, int(settings.warmup * total))
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, total - warm)))))
    )
    t0 = time.perf_counter()
    bar = tqdm(total=total, desc=f"train {settings.arch} {settings.split or 'full'}", disable=not progress)
    loss_ema = None
    for epoch in range(settings.epochs):
        if settings.eval_every and epoch and epoch % settings.eval_every == 0:
            model.eval()
            acc = score_facts(model, tokenizer, world, world.facts(list(world.people)[:30]), held_out=True).accuracy
            tqdm.write(f"epoch {epoch}: held-out accuracy on 30 people {acc:.3f} ({time.perf_counter() - t0:.0f}s)")
            model.train()
        ids, mask = pack(sents, settings.seq_len, tokenizer.bos_token_id, tokenizer.pad_token_id, rng)
        for b in range(0, len(ids), settings.batch_size):
            x, m = ids[b : b + settings.batch_size], mask[b : b + settings.batch_size]
            labels = x.masked_fill(m != 1, -100)
            loss = model(input_ids=x, attention_mask=(m > 0).long(), labels=labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            lv = loss.item()
            loss_ema = lv if loss_ema is None else 0.98 * loss_ema + 0.02 * lv
            bar.set_postfix(loss=f"{loss_ema:.3f}", refresh=False)
            bar.update()
    bar.close()
    train_seconds = time.perf_counter() - t0
    model.eval()
    report = {
        "settings": asdict(settings),
        "train_seconds": round(train_seconds, 1),
        "steps": total,
        "n_params": sum(p.numel() for p in model.parameters()),
        "final_train_loss": loss_ema,
        "eval": evaluate(model, tokenizer, world, settings.split),
    }
    save(model, tokenizer, world, report, out_dir)
    return report


def save(model, tokenizer, world: World, report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "world.json").write_text(world.to_json())
    (out / "training_report.json").write_text(json.dumps(report, indent=1))
