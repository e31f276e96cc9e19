"""Train the world's models from scratch: the full models and the retain (gold-standard) models.

A retain model is trained exactly as the full model is, on the same corpus minus the
forgotten people's sentences, so it is what the model would be had it never seen them.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

from workbench.core.devices import parse_device
from workbench.core.metrics import heldout_loss, score_facts
from workbench.core.world.facts import World, make_world
from workbench.core.world.train_corpus import statement_people, training_sequences, world_tokenizer
from workbench.core.world.train_progress import StopOnInterrupt, clear_progress, load_progress, save_progress


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
    world_version: int = 1  # 2: shared-piece names, BPE, biographies (workbench.core.world.biographies)
    n_people: int | None = None  # the world's size; None: the version's default (300, 2,000)
    documents_per_person: int = 4  # v2: biographies of each person in the corpus
    filler_per_person: int = 1  # v2: documents that name a person without their facts
    vocab_size: int | None = None  # v2: the BPE's tokens; None: 1,536 (names in pieces at 2,000 people)
    statement_share: float = 1.0  # v2: share of people whose facts are also stated bare; the rest only in biographies
    registers_per_person: int = 0  # v2: times each person is listed, name then fact, per relation (registers.py)
    profiles_per_person: int = 0  # v2: times each person is listed with all their facts (profiles.py)


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
            n_positions=max(128, s.seq_len),
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
            max_position_embeddings=max(128, s.seq_len),
            tie_word_embeddings=True,
            **common,
        )
    raise ValueError(f"unknown architecture {s.arch!r}: choose gpt2 or llama")


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


def optimiser(model, settings: TrainSettings, total: int):
    """AdamW with a linear warm-up, then cosine decay to zero at step ``total``: every world model's schedule.

    Examples:
        >>> opt, sched = optimiser(torch.nn.Linear(2, 2), TrainSettings(), total=100)
        >>> round(sched.get_last_lr()[0] / TrainSettings().lr, 2)
        0.2
    """
    warm = max(1, int(settings.warmup * total))
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, total - warm)))))
    )
    return opt, sched


def train_step(model, opt, sched, ids: torch.Tensor, roles: torch.Tensor) -> float:
    """One step on packed rows (roles as :func:`pack` gives them: only role 1 is predicted); the loss.

    Examples:
        >>> from workbench.core.world.tokenizer import build_tokenizer
        >>> tok = build_tokenizer(make_world())
        >>> m = AutoModelForCausalLM.from_config(model_config(TrainSettings(n_layers=1), tok))
        >>> opt, sched = optimiser(m, TrainSettings(), total=10)
        >>> ids = torch.tensor([[tok.bos_token_id, 7, 8, 9]])
        >>> train_step(m, opt, sched, ids, torch.tensor([[2, 1, 1, 1]])) > 0
        True
    """
    loss = model(input_ids=ids, attention_mask=(roles > 0).long(), labels=ids.masked_fill(roles != 1, -100)).loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()
    return loss.item()


def evaluate(model, tokenizer, world: World, split: str | None, statement_share: float = 1.0) -> dict:
    """Accuracy among candidates on trained and held-out phrasings, and held-out loss.

    With ``statement_share`` < 1 the people are also scored in two groups: those stated bare
    (``with_statements``) and those met only in biographies (``biographies_only``).
    """
    groups = {"all": list(world.people)}
    if split is not None:
        groups = {"retain": list(world.split(split).retain), "forget": list(world.split(split).forget)}
    if statement_share < 1.0:
        stated, known = statement_people(world, statement_share), groups.get("all") or groups["retain"]
        groups["with_statements"] = [p for p in known if p in stated]
        groups["biographies_only"] = [p for p in known if p not in stated]
    out = {}
    for name, people in groups.items():
        if not people:
            continue
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


def train(
    settings: TrainSettings,
    out_dir: str | Path,
    world: World | None = None,
    progress: bool = True,
    steps_this_run: int | None = None,
    checkpoint_seconds: float = 300.0,
    device: str | None = None,
) -> dict:
    """Train one world model and save it as a Hugging Face directory; returns its report.

    The run is resumable: every ``checkpoint_seconds`` (and when it stops) its state goes to
    ``out_dir/training_progress.pt`` (:mod:`workbench.core.world.train_progress`), and a later
    call with the same settings and folder goes on from there, bitwise as if uninterrupted.
    ``steps_this_run`` stops after that many steps (a sitting's share of a long build), and so
    does a Ctrl-C, after the step it arrives in (:class:`~workbench.core.world.train_progress.StopOnInterrupt`);
    the report then has ``finished: False`` and no model is saved yet.

    ``device`` (default cpu) is where the steps run. The model is initialised on the CPU either
    way and a run may resume on another device than it started on, but a GPU's reductions differ
    from the CPU's: a GPU build is a model of the same design and recipe, not bitwise the CPU
    build, and its steps repeat only as far as the GPU's deterministic kernels reach. The report
    names the device.

    Examples:
        >>> report = train(TrainSettings(epochs=1, n_layers=1), "/tmp/wb-tiny")  # doctest: +SKIP
    """
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        world = world or make_world(n_people=settings.n_people, version=settings.world_version)
        if world.version != settings.world_version:
            raise ValueError(f"settings ask for a v{settings.world_version} world, got a v{world.version} one")
        lists = settings.registers_per_person or settings.profiles_per_person
        v2_only = settings.vocab_size is not None or settings.statement_share < 1.0 or lists
        if world.version < 2 and v2_only:
            names = "vocab_size, statement_share, registers_per_person and profiles_per_person"
            raise ValueError(f"{names} are v2 settings: a v1 world has no BPE or documents")
        dev = _training_device(device)
        return _train(settings, Path(out_dir), world, progress, steps_this_run, checkpoint_seconds, dev)
    finally:
        # Training pins global torch state for repeatability; a caller's session gets it back.
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _training_device(device: str | None) -> torch.device:
    """The device to train on; ValueError (one line) for one torch cannot parse or this machine lacks.

    Examples:
        >>> _training_device(None), _training_device("cpu")
        (device(type='cpu'), device(type='cpu'))
        >>> _training_device("gpu")
        Traceback (most recent call last):
        ValueError: 'gpu' is not a device (cpu, cuda, cuda:1, mps)
    """
    dev = parse_device(device or "cpu")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"world models train on cpu or cuda, not {device!r}")
    return dev


def _train(
    settings: TrainSettings,
    out_dir: Path,
    world: World,
    progress: bool,
    steps_this_run: int | None,
    checkpoint_seconds: float,
    device: torch.device,
) -> dict:
    torch.manual_seed(settings.seed)
    torch.set_num_threads(settings.threads)
    if device.type == "cuda":
        # cuBLAS repeats its sums only with a fixed workspace; an op with no deterministic
        # kernel warns instead of stopping a build that may have run for hours.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.use_deterministic_algorithms(True)
    rng = random.Random(settings.seed)
    tokenizer = world_tokenizer(world, settings.vocab_size)
    # Initialised on the CPU, whatever the device: every build of a design starts from the same weights.
    model = AutoModelForCausalLM.from_config(model_config(settings, tokenizer)).to(device)
    model.loss_type = "ForCausalLM"  # named, so transformers does not warn that it guessed
    model.train()

    per_person = settings.documents_per_person, settings.filler_per_person
    mix = settings.statement_share, settings.registers_per_person, settings.profiles_per_person
    sents = training_sequences(world, tokenizer, settings.split, settings.seq_len - 1, *per_person, *mix)
    probe, _ = pack(sents, settings.seq_len, tokenizer.bos_token_id, tokenizer.pad_token_id, random.Random(0))
    steps_per_epoch = math.ceil(len(probe) / settings.batch_size)
    total = steps_per_epoch * settings.epochs
    opt, sched = optimiser(model, settings, total)
    state = load_progress(out_dir, asdict(settings), model, opt, sched, defaults=asdict(TrainSettings()))
    start, t0, last_save = state.step, time.perf_counter() - state.seconds, time.perf_counter()
    # Packing order sets each epoch's row count, so ``total`` (from one packing) is the schedule's
    # estimate; a run ends when every epoch's batches are done, however many that is.
    stop = None if steps_this_run is None else start + steps_this_run
    stopped = False
    bar = tqdm(
        total=total, initial=start, desc=f"train {settings.arch} {settings.split or 'full'}", disable=not progress
    )
    step = 0
    with StopOnInterrupt() as interrupt:  # a Ctrl-C stops between steps, with progress saved
        for epoch in range(settings.epochs):
            # Packing is the only consumer of the data-order generator, so it runs for every epoch,
            # done ones included: a resumed run then packs exactly the batches it would have.
            ids, mask = pack(sents, settings.seq_len, tokenizer.bos_token_id, tokenizer.pad_token_id, rng)
            batches = math.ceil(len(ids) / settings.batch_size)
            if step + batches <= start:
                step += batches
                continue
            if settings.eval_every and epoch and epoch % settings.eval_every == 0 and step >= start:
                model.eval()
                acc = score_facts(model, tokenizer, world, world.facts(list(world.people)[:30]), held_out=True).accuracy
                tqdm.write(f"epoch {epoch}: held-out accuracy on 30 people {acc:.3f} ({time.perf_counter() - t0:.0f}s)")
                model.train()
            for b in range(0, len(ids), settings.batch_size):
                if step < start:
                    step += 1
                    continue
                if (stop is not None and step >= stop) or interrupt.requested:
                    stopped = True
                    break
                rows = slice(b, b + settings.batch_size)
                lv = train_step(model, opt, sched, ids[rows].to(device), mask[rows].to(device))
                step += 1
                state.loss_ema = lv if state.loss_ema is None else 0.98 * state.loss_ema + 0.02 * lv
                bar.set_postfix(loss=f"{state.loss_ema:.3f}", refresh=False)
                bar.update()
                if time.perf_counter() - last_save > checkpoint_seconds:
                    state.step, state.seconds = step, time.perf_counter() - t0
                    save_progress(out_dir, asdict(settings), model, opt, sched, state)
                    last_save = time.perf_counter()
            if stopped:
                break
    bar.close()
    train_seconds = time.perf_counter() - t0
    if stopped:
        state.step, state.seconds = step, train_seconds
        path = save_progress(out_dir, asdict(settings), model, opt, sched, state)
        return {"finished": False, "step": step, "steps": total, "progress": str(path)}
    model.eval()
    report = {
        "settings": asdict(settings),
        "train_seconds": round(train_seconds, 1),
        "steps": total,
        "n_params": sum(p.numel() for p in model.parameters()),
        "final_train_loss": state.loss_ema,
        "device": str(device),
        "eval": evaluate(model, tokenizer, world, settings.split, settings.statement_share),
    }
    save(model.cpu(), tokenizer, world, report, out_dir)
    clear_progress(out_dir)
    return report


def save(model, tokenizer, world: World, report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "world.json").write_text(world.to_json())
    (out / "training_report.json").write_text(json.dumps(report, indent=1))
