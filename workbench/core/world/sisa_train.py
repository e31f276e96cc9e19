"""Train a SISA ensemble of world models: Sharded, Isolated, Sliced, Aggregated (Bourtoule et al., 2021).

The world's people are split by a seeded partition into S disjoint shards, and each shard's
people into R slices. One constituent model per shard trains on its shard alone (isolated),
incrementally: stage r trains the model of stage r-1 on the statements of slices 0..r, and the
model after every stage is saved. The world's corpus is all statements about people, so a
shard's corpus is its people's statements and nothing else.

Everything a stage does depends only on the seeds and on the statements it trains on: a fresh
optimiser and learning-rate schedule per stage, its own seed for data order. So retraining a
shard from the checkpoint before the earliest slice holding a forgotten person, without that
person's statements (:func:`retrain_shard`), gives bitwise the model that training the shard from
scratch without them would give: no constituent keeps any trace of the forgotten people.

Each stage trains ``slice_epochs`` epochs, by default ceil(2 E / (R + 1)) for the single model's
E epochs, so that a shard's people are seen about E times over its R stages, as in the paper.
"""

from __future__ import annotations

import hashlib
import math
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM

from workbench.core.files import cache_dir
from workbench.core.world.facts import Fact, Phrasing, World, make_world
from workbench.core.world.registry import SHIPPED
from workbench.core.world.sisa_manifest import (
    FORMAT,
    SisaFolderError,
    checkpoint_dir,
    is_complete,
    is_sisa_dir,
    read_manifest,
    same_plan,
    total_seconds,
    trained_without,
    write_manifest,
)
from workbench.core.world.tokenizer import build_tokenizer
from workbench.core.world.train import TrainSettings, model_config, optimiser, pack, train_step
from workbench.core.world.train_corpus import labelled_statements


@dataclass(frozen=True)
class SisaSettings:
    """How the people are sharded and sliced.

    Examples:
        >>> SisaSettings(shards=5, slices=4).shards
        5
        >>> SisaSettings(shards=0)
        Traceback (most recent call last):
        ValueError: shards must be at least 1, got 0

    Args:
        shards: S, the number of constituent models (each trains on about 1/S of the people).
        slices: R, the stages each shard trains in; a forgotten person costs the stages from their
            slice on.
        seed: Seed of the partition of people into shards and slices.
        slice_epochs: Epochs of each stage; None: ceil(2 E / (R + 1)) of the model's E epochs.
        max_people: Train on a seeded sample of this many people only (small ensembles for tests);
            None: everybody.
        without: People whose statements no stage trains on. They keep their place in the
            partition, so the ensemble is exactly what SISA forgetting them from the full
            ensemble must give: the reference its verification compares with.
    """

    shards: int = 5
    slices: int = 1
    seed: int = 0
    slice_epochs: int | None = None
    max_people: int | None = None
    without: tuple[str, ...] = ()

    def __post_init__(self):
        for name in ("shards", "slices", "slice_epochs", "max_people"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        object.__setattr__(self, "without", tuple(sorted(set(self.without))))


def stage_epochs(train: TrainSettings, s: SisaSettings) -> int:
    """Epochs each stage trains.

    Examples:
        >>> stage_epochs(TrainSettings(epochs=32), SisaSettings(slices=4))
        13
        >>> stage_epochs(TrainSettings(epochs=32), SisaSettings(slices=1))
        32
    """
    return s.slice_epochs or max(1, math.ceil(2 * train.epochs / (s.slices + 1)))


def partition(world: World, s: SisaSettings) -> list[list[list[str]]]:
    """Shard -> slice -> people: a seeded shuffle dealt round the shards, each shard cut into slices.

    Examples:
        >>> plan = partition(make_world(), SisaSettings(shards=5, slices=4))
        >>> [len(shard) for shard in plan], [len(part) for part in plan[0]]
        ([4, 4, 4, 4, 4], [15, 15, 15, 15])
        >>> sorted(p for shard in plan for part in shard for p in part) == sorted(make_world().people)
        True
    """
    people = list(world.people)
    random.Random(s.seed).shuffle(people)
    if s.max_people is not None:
        people = people[: s.max_people]
    if len(people) < s.shards * s.slices:
        raise ValueError(f"{len(people)} people cannot fill {s.shards} shards of {s.slices} slices each")
    plan = []
    for k in range(s.shards):
        mine = people[k :: s.shards]
        plan.append([mine[r * len(mine) // s.slices : (r + 1) * len(mine) // s.slices] for r in range(s.slices)])
    return plan


def shard_statements(
    world: World, slices: list[list[str]], stage: int, excluded: frozenset[Fact] = frozenset()
) -> list[tuple[Fact, Phrasing]]:
    """The (fact, phrasing) pairs stage ``stage`` of a shard trains on: slices 0..stage, less ``excluded``.

    Examples:
        >>> w = make_world()
        >>> plan = partition(w, SisaSettings(shards=2, slices=2, max_people=4))
        >>> len(shard_statements(w, plan[0], 0)), len(shard_statements(w, plan[0], 1))  # 9 phrasings x 6 relations
        (54, 108)
        >>> len(shard_statements(w, plan[0], 1, frozenset(w.facts(plan[0][0]))))
        54
    """
    people = [p for part in slices[: stage + 1] for p in part]
    return [(f, ph) for f in world.facts(people) if f not in excluded for ph in world.phrasings(f.relation)]


def default_folder(train: TrainSettings, s: SisaSettings) -> Path:
    """Where ``workbench world train sisa`` puts an ensemble by default: under the workbench cache.

    The cache is ``$WORKBENCH_CACHE`` or ``~/.cache/knowledge-workbench``, as for the editors'
    statistics; the folder name holds what makes one ensemble differ from another.

    Examples:
        >>> default_folder(TrainSettings(epochs=32), SisaSettings(shards=5, slices=4)).name
        'sisa-s5-r4-e32-seed0'
        >>> default_folder(TrainSettings(epochs=32), SisaSettings(shards=5, without=("A",))).name
        'sisa-s5-r1-e32-seed0-without1-559aead0'
    """
    cache = cache_dir()
    people = "" if s.max_people is None else f"-p{s.max_people}"
    without = f"-without{len(s.without)}-{_digest(s.without)}" if s.without else ""
    return cache / f"sisa-s{s.shards}-r{s.slices}-e{train.epochs}-seed{s.seed}{people}{without}"


def _digest(people: tuple[str, ...]) -> str:
    return hashlib.sha256("\n".join(people).encode()).hexdigest()[:8]


def _seed(*parts) -> int:
    # A string seed is hashed with SHA-512 by random.Random: the same on every run and machine.
    return random.Random("sisa/" + "/".join(map(str, parts))).getrandbits(63)


@contextmanager
def pinned(threads: int) -> Iterator[None]:
    """Fixed thread count and deterministic algorithms (so training repeats bitwise), restored after."""
    before, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(before)
        torch.use_deterministic_algorithms(deterministic)


def new_model(train: TrainSettings, tokenizer, shard: int):
    """A freshly initialised constituent for ``shard`` (seeded by the training seed and the shard)."""
    torch.manual_seed(_seed(train.seed, shard, "init"))
    model = AutoModelForCausalLM.from_config(model_config(train, tokenizer))
    model.loss_type = "ForCausalLM"  # named, so transformers does not warn that it guessed
    return model.eval()


def load_checkpoint(folder: str | Path, shard: int, stage: int):
    """The constituent of ``shard`` as saved after ``stage``."""
    model = AutoModelForCausalLM.from_pretrained(checkpoint_dir(folder, shard, stage), use_safetensors=True)
    model.loss_type = "ForCausalLM"  # named, so transformers does not warn that it guessed
    return model.eval()


def fit_stage(model, sentences, train: TrainSettings, epochs: int, seed: int, tokenizer, desc: str = "") -> int:
    """Train ``model`` in place on labelled sentences for ``epochs`` (fresh AdamW, warm-up, cosine); the steps taken.

    The optimiser and schedule are those of :func:`workbench.core.world.train.train`.
    """
    if not sentences:  # every person of the slices so far was forgotten: nothing to learn from
        return 0
    torch.manual_seed(seed)
    rng = random.Random(seed)
    bos, pad = tokenizer.bos_token_id, tokenizer.pad_token_id
    rows, _ = pack(sentences, train.seq_len, bos, pad, random.Random(0))
    total = math.ceil(len(rows) / train.batch_size) * epochs
    opt, sched = optimiser(model, train, total)
    model.train()
    steps = 0
    for _ in tqdm(range(epochs), desc=desc, leave=False, disable=not desc):
        ids, roles = pack(sentences, train.seq_len, bos, pad, rng)
        for b in range(0, len(ids), train.batch_size):
            train_step(model, opt, sched, ids[b : b + train.batch_size], roles[b : b + train.batch_size])
            steps += 1
    model.eval()
    return steps


def _save(model, folder: Path, shard: int, stage: int) -> None:
    # Written beside and renamed: a checkpoint that exists is whole, so resuming can trust it.
    final = checkpoint_dir(folder, shard, stage)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


_TRAIN_DEFAULTS = asdict(TrainSettings())


def reference_folders(folder: str | Path, people, exact: bool = False) -> list[Path]:
    """Complete SISA folders planned as ``folder``'s but trained without all of ``people``, fewest left out first.

    ``exact``: only those trained without exactly ``people`` (and whoever ``folder`` itself left out).

    Looked for beside ``folder`` and under the workbench cache: a reference ensemble is
    the exact answer for forgetting those people from ``folder``'s ensemble, with nothing of the
    forgetting itself reused (``workbench world train sisa --without SPLIT`` trains one).

    Examples:
        >>> reference_folders("/tmp/no-such-ensemble", ["A"])
        []
    """
    folder = Path(folder)
    try:
        mine = read_manifest(folder)
    except SisaFolderError:
        return []
    found, wanted = {}, set(people) | set(trained_without(mine))
    for root in (folder.parent, cache_dir()):
        for d in sorted(root.iterdir()) if root.is_dir() else []:
            if d.resolve() == folder.resolve() or not is_sisa_dir(d):
                continue
            try:
                theirs = read_manifest(d)
            except SisaFolderError:
                continue
            left_out = set(trained_without(theirs))
            if (
                same_plan(mine, theirs, without=False, train_defaults=_TRAIN_DEFAULTS)
                and is_complete(theirs)
                and (left_out == wanted if exact else wanted <= left_out)
            ):
                found[d.resolve()] = len(left_out)
    return sorted(found, key=lambda d: (found[d], str(d)))


def _plan(train: TrainSettings, s: SisaSettings, world: World) -> dict:
    plan = partition(world, s)
    return {
        "format": FORMAT,
        "version": 1,
        "world": {"seed": world.seed, "people": len(world.people)},
        "train": asdict(train),
        "sisa": asdict(s) | {"without": list(s.without)},
        "slice_epochs": stage_epochs(train, s),
        "shards": [{"slices": parts, "seconds": [None] * s.slices, "steps": [None] * s.slices} for parts in plan],
    }


def train_sisa(
    out: str | Path,
    train: TrainSettings | None = None,
    settings: SisaSettings | None = None,
    world: World | None = None,
    progress: bool = True,
) -> dict:
    """Train (or resume training) a SISA ensemble in ``out``; returns the manifest.

    A shard and slice whose checkpoint the manifest records is not trained again, so an
    interrupted run picks up where it stopped and a finished one returns at once.

    Examples:
        >>> manifest = train_sisa("/tmp/wb-sisa", settings=SisaSettings(shards=5, slices=4))  # doctest: +SKIP

    Args:
        out: The ensemble's folder (new, or one this function wrote with the same settings).
        train: The constituents' settings; default those of the shipped default model.
        settings: :class:`SisaSettings` (``without`` people: the reference ensemble that forgetting
            them must reproduce).
        world: The world; default the shipped one.
        progress: Bars over shards and epochs (stderr).

    Raises:
        SisaFolderError: ``out`` holds something else, or an ensemble trained with other settings.
        ValueError: a ``without`` name that is no person of the world.
    """
    train = train or TrainSettings(**SHIPPED["gpt2"])
    s = settings or SisaSettings()
    world = world or make_world()
    unknown = [p for p in s.without if p not in world.people]
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not a person of the world: nobody to train without")
    out = Path(out)
    wanted = _plan(train, s, world)
    never = frozenset(world.facts(s.without))
    tokenizer = build_tokenizer(world)
    if is_sisa_dir(out):
        manifest = read_manifest(out)
        if not same_plan(manifest, wanted, train_defaults=_TRAIN_DEFAULTS):
            raise SisaFolderError(f"{out} holds a SISA ensemble trained with other settings: choose another --out")
    elif out.exists() and any(out.iterdir()):
        raise SisaFolderError(f"{out} is not empty and holds no SISA manifest: choose another --out")
    else:
        out.mkdir(parents=True, exist_ok=True)
        tokenizer.save_pretrained(out)
        (out / "world.json").write_text(world.to_json())
        manifest = wanted
        write_manifest(out, manifest)
    with pinned(train.threads):
        for k, shard in enumerate(tqdm(manifest["shards"], desc="sisa shards", disable=not progress)):
            first = 0
            while first < s.slices and shard["seconds"][first] is not None:
                first += 1
            if first == s.slices:
                continue
            model = load_checkpoint(out, k, first - 1) if first else new_model(train, tokenizer, k)
            for r in range(first, s.slices):
                t0 = time.perf_counter()
                steps = _stage(model, world, tokenizer, train, manifest, k, r, never, progress)
                shard["seconds"][r], shard["steps"][r] = round(time.perf_counter() - t0, 2), steps
                _save(model, out, k, r)
                write_manifest(out, manifest)
    manifest["total_seconds"] = round(total_seconds(manifest), 2)
    write_manifest(out, manifest)
    return manifest


def _stage(model, world, tokenizer, train, manifest, shard: int, stage: int, excluded, progress: bool) -> int:
    statements = shard_statements(world, manifest["shards"][shard]["slices"], stage, excluded)
    desc = f"shard {shard} slice {stage}" if progress else ""
    seed = _seed(train.seed, shard, stage)
    return fit_stage(
        model, labelled_statements(statements, tokenizer), train, manifest["slice_epochs"], seed, tokenizer, desc
    )


@dataclass
class Retrained:
    """A shard retrained without some facts: the new constituent and what it cost.

    Attributes:
        model: The retrained constituent (the final stage's model).
        shard: Its shard.
        first_slice: The stage retraining started at (it loaded the checkpoint before it, if any).
        slices: Stages retrained.
        seconds: Wall time of the retraining.
        steps: Optimiser steps of the retraining.
    """

    model: torch.nn.Module
    shard: int
    first_slice: int
    slices: int
    seconds: float
    steps: int


def retrain_shard(
    folder: str | Path,
    shard: int,
    excluded: frozenset[Fact],
    world: World,
    progress: bool = False,
    start: int | None = None,
) -> Retrained:
    """Retrain one shard of a SISA folder without the ``excluded`` facts, from the last checkpoint that never saw them.

    Examples:
        >>> w = make_world()
        >>> r = retrain_shard("/tmp/wb-sisa", 0, frozenset(w.facts(["Fareiv Stohith"])), w)  # doctest: +SKIP

    Args:
        folder: A SISA folder (:func:`train_sisa`).
        shard: The shard to retrain.
        excluded: Facts whose statements it must not train on.
        world: The world it was trained on.
        progress: A bar over each stage's epochs (stderr).
        start: Retrain from this stage instead (0: from scratch); no later than the earliest slice
            holding an excluded fact's person. The result is the same, bit for bit, at more cost.

    The folder's own ``without`` people stay excluded, and its checkpoints never saw them, so
    only the other excluded people decide where retraining starts.

    Raises:
        ValueError: none of the excluded facts is about a person of the shard, or ``start`` too late.
    """
    manifest = read_manifest(folder)
    train, slices = TrainSettings(**manifest["train"]), manifest["shards"][shard]["slices"]
    never = frozenset(world.facts(trained_without(manifest)))
    held = [r for r, part in enumerate(slices) if {f.subject for f in excluded - never} & set(part)]
    excluded = excluded | never
    if not held:
        raise ValueError(f"shard {shard} holds none of the excluded facts' people: nothing to retrain")
    first = min(held) if start is None else start
    if not 0 <= first <= min(held):
        raise ValueError(f"start must be between 0 and {min(held)} (the earliest slice to retrain), got {start}")
    tokenizer = build_tokenizer(world)
    t0 = time.perf_counter()
    steps = 0
    with pinned(train.threads):
        model = load_checkpoint(folder, shard, first - 1) if first else new_model(train, tokenizer, shard)
        for r in range(first, len(slices)):
            steps += _stage(model, world, tokenizer, train, manifest, shard, r, excluded, progress)
    return Retrained(model, shard, first, len(slices) - first, time.perf_counter() - t0, steps)


__all__ = [
    "Retrained",
    "SisaSettings",
    "default_folder",
    "fit_stage",
    "load_checkpoint",
    "new_model",
    "partition",
    "pinned",
    "reference_folders",
    "retrain_shard",
    "shard_statements",
    "stage_epochs",
    "train_sisa",
]
