"""``workbench world``: the embedded fact world: a person's facts, and rebuilding its models.

Examples:
    >>> world_train("gpt5", as_json=False)
    Traceback (most recent call last):
    workbench.cli.common.CliError: unknown world model 'gpt5': choose from all, ...
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from workbench.cli.common import (
    DEVICE,
    DTYPE,
    JSON,
    MODEL,
    CliError,
    Output,
    check_device,
    check_new_folder,
    load_model,
    world_of,
)
from workbench.core.world.registry import CHECKPOINTS, SHIPPED, V2_BUILDS

# The editors, locators and checks load when a command runs, not when the CLI starts: they pull
# in transformers' model classes and scipy, seconds that --help and a mistyped option should not
# wait for.

world_app = typer.Typer(no_args_is_help=True, help="The embedded fact world and its models.")


@world_app.command("facts")
def world_facts(
    person: str,
    model: str = MODEL,
    dtype: str | None = DTYPE,
    device: str | None = DEVICE,
    as_json: bool = JSON,
) -> None:
    """The facts of PERSON and whether the model gets each right."""
    h = load_model(model, dtype, device)
    world = world_of(h)
    facts = world.facts([person])
    trained, held = h.score(facts), h.score(facts, held_out=True)
    n_tr = len(trained.correct) // len(facts)
    n_ho = len(held.correct) // len(facts)
    rows = [
        {
            "relation": f.relation,
            "object": f.object,
            "trained_accuracy": float(trained.correct[i * n_tr : (i + 1) * n_tr].float().mean()),
            "heldout_accuracy": float(held.correct[i * n_ho : (i + 1) * n_ho].float().mean()),
            "mean_prob": float(trained.prob[i * n_tr : (i + 1) * n_tr].mean()),
        }
        for i, f in enumerate(facts)
    ]
    splits = [s for s, v in world.splits.items() if person in v.forget]
    out = {"person": person, "in_forget_splits": splits, "facts": rows}
    Output(as_json).emit(
        out,
        lambda o: "\n".join(
            [f"{person} (forget splits: {', '.join(splits) or 'none'})"]
            + [
                f"  {r['relation']:>10}: {r['object']:<22} trained {r['trained_accuracy']:.0%}  "
                f"held-out {r['heldout_accuracy']:.0%}  p={r['mean_prob']:.2f}"
                for r in rows
            ]
        ),
    )


@world_app.command("train")
def world_train(
    name: str = typer.Argument(
        "all", help="A shipped model name, 'all', a world v2 build (v2-gpt2, ...), or 'sisa' (with --shards)."
    ),
    out: str | None = typer.Option(
        None, help="Parent directory (default: the shipped checkpoints); for sisa the ensemble's folder."
    ),
    epochs: int | None = typer.Option(None, min=1, help="Override the number of epochs."),
    shards: int | None = typer.Option(None, help="sisa: the number of shards S (constituent models)."),
    slices: int = typer.Option(1, help="sisa: slices R per shard (checkpoints a forgotten person restarts from)."),
    people: int | None = typer.Option(None, help="sisa: train on a seeded sample of this many people only."),
    without: str | None = typer.Option(
        None,
        help="sisa: a split or comma-separated people no stage trains on (the reference for their forgetting).",
    ),
    steps: int | None = typer.Option(
        None, min=1, help="Stop each model after this many steps; run the same command again to resume."
    ),
    device: str | None = typer.Option(
        None, "--device", help="cpu (default) or cuda[:N]: a GPU build is the same recipe, not the same bits."
    ),
    as_json: bool = JSON,
) -> None:
    """Rebuild shipped world models deterministically from the generator, or train a SISA ensemble.

    Training is resumable: a run keeps its state in the model's folder every few minutes and
    when ``--steps`` or a Ctrl-C stops it (after the step in progress), and the same command
    goes on from there (a killed run loses at most the minutes since its last save).
    """
    from workbench.cli.world_sisa import train_sisa_command
    from workbench.core.world.train import TrainSettings, train
    from workbench.core.world.train_progress import ProgressMismatch

    if name == "sisa":
        if steps is not None:
            raise CliError("--steps goes with the shipped models; `world train sisa` resumes by slice")
        if device not in (None, "cpu"):
            raise CliError("`world train sisa` trains on the CPU (its shards must repeat bit for bit)")
        train_sisa_command(shards, slices, out, epochs, people, as_json, without)
        return
    builds = SHIPPED | V2_BUILDS
    names = list(SHIPPED) if name == "all" else [name]
    for n in names:
        if n not in builds:
            raise CliError(f"unknown world model {n!r}: choose from all, {', '.join(builds)}, sisa")
    if shards is not None or people is not None or without is not None:
        raise CliError("--shards, --people and --without go with `world train sisa`")
    if out:  # training takes minutes: a place the models cannot go is refused first
        check_new_folder(out, "--out")
    if device is not None:
        check_device(device)
    parent = Path(out) if out else CHECKPOINTS
    reports = {}
    for n in names:
        settings = TrainSettings(**builds[n])
        if epochs is not None:
            settings.epochs = epochs
        try:
            reports[n] = train(settings, parent / n, steps_this_run=steps, device=device)
        except (ProgressMismatch, ValueError) as e:  # a mismatched run to resume, a device it cannot train on
            raise CliError(str(e)) from None
        reports[n]["path"] = str(parent / n)

    def render(r: dict) -> str:
        return "\n".join(
            f"{n}: {v['train_seconds']:.0f}s -> {v['path']}  {json.dumps(v['eval'])}"
            if v.get("finished", True)
            else f"{n}: stopped at step {v['step']} of {v['steps']}; run the command again to resume ({v['progress']})"
            for n, v in r.items()
        )

    Output(as_json).emit(reports, render)
