"""The shipped world models: their names, where they live, and how each was trained."""

from __future__ import annotations

import json
from pathlib import Path

from workbench.core.world.facts import World, make_world

CHECKPOINTS = Path(__file__).parent / "checkpoints"

# name -> TrainSettings overrides. "gpt2" is the default model; every retain model is
# trained like it, without the split's forgotten people. The thread count only fixes the
# order of floating-point reductions, so that a rebuild is bitwise the same.
SHIPPED: dict[str, dict] = {
    "gpt2": {"arch": "gpt2", "threads": 2},
    "llama": {"arch": "llama"},
    "retain-forget01": {"arch": "gpt2", "split": "forget01"},
    "retain-forget05": {"arch": "gpt2", "split": "forget05"},
    "retain-forget05-seed1": {"arch": "gpt2", "split": "forget05", "seed": 1},
    "retain-forget10": {"arch": "gpt2", "split": "forget10"},
}
DEFAULT = "gpt2"

# World v2 (docs/world.md#world-v2): 2,000 people with shared-piece names, a BPE tokenizer and
# biographies, in deeper models. Trained resumably with `workbench world train v2-gpt2` (about an
# hour an epoch on two CPU threads, so a build spans sittings or runs on a GPU); not shipped yet.
_V2 = {
    "world_version": 2,
    "n_layers": 8,
    "d_model": 256,
    "n_heads": 8,
    "d_mlp": 1024,
    "seq_len": 256,
    "lr": 1e-3,
    "epochs": 20,
    "threads": 2,
}
V2_BUILDS: dict[str, dict] = {
    "v2-gpt2": {"arch": "gpt2", **_V2},
    "v2-llama": {"arch": "llama", **_V2},
    "v2-retain-forget01": {"arch": "gpt2", **_V2, "split": "forget01"},
    "v2-retain-forget05": {"arch": "gpt2", **_V2, "split": "forget05"},
    "v2-retain-forget05-seed1": {"arch": "gpt2", **_V2, "split": "forget05", "seed": 1},
    "v2-retain-forget10": {"arch": "gpt2", **_V2, "split": "forget10"},
}


def resolve_world_model(name: str) -> Path:
    """Directory of a shipped world model: ``world`` or ``world:<variant>``.

    Examples:
        >>> resolve_world_model("world").name
        'gpt2'
        >>> resolve_world_model("world:retain-forget05").name
        'retain-forget05'
    """
    variant = name.split(":", 1)[1] if ":" in name else DEFAULT
    if name.split(":", 1)[0] != "world" or variant not in SHIPPED:
        raise KeyError(
            f"unknown world model {name!r}: choose from " + ", ".join(["world"] + [f"world:{v}" for v in SHIPPED])
        )
    return CHECKPOINTS / variant


def load_world(model_dir: str | Path) -> World | None:
    """The world a model directory was trained on (its ``world.json``), or None.

    The world is regenerated from its seed and checked against the stored JSON, so a
    directory whose world was edited by hand is refused rather than silently trusted.
    """
    path = Path(model_dir) / "world.json"
    if not path.exists():
        return None
    try:
        stored = json.loads(path.read_text())
        world = make_world(seed=stored["seed"], n_people=len(stored["people"]), version=stored.get("version", 1))
    except (ValueError, TypeError, KeyError) as e:  # not JSON, or not the fields a world has
        raise ValueError(f"{path} is not a world description ({' '.join(str(e).split())})") from None
    if json.loads(world.to_json()) != stored:
        raise ValueError(f"{path} does not match the world generated from seed {stored['seed']}")
    return world
