"""World v2 design trials: train a configuration, then measure whether real models' mechanism appears.

Each trial is a named :class:`~workbench.core.world.train.TrainSettings` on a version-2 world
(people, depth, width, corpus mix). The model trains resumably under ``runs/v2-trials/NAME``
(``--steps`` bounds a sitting; run again to go on), and once trained it is measured by
:func:`benchmarks.world_mechanism.measure`: the indirect effect by kind of token, ROME's layer,
probes at the name's last token, beside its accuracy on trained and held-out phrasings. Results
are merged into benchmarks/results/world_v2_trials.json under the trial's name; the trials and
their figures are in docs/world.md.

Run: ``.venv/bin/python -m benchmarks.world_v2_trials TRIAL [--steps N] [--facts 120] [--device cuda]``
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import torch

import workbench
from benchmarks.rome import run as rome_edits
from benchmarks.world_mechanism import measure, pick_facts, traced
from edit.rome import RomeSettings
from workbench.core.world.registers import HEADING
from workbench.core.world.train import TrainSettings, train
from workbench.core.world.train_corpus import statement_people

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results" / "world_v2_trials.json"
_SMALL = dict(world_version=2, n_people=300, d_model=128, n_heads=4, d_mlp=512, seq_len=256, threads=1)
# the register trials' common recipe: names in pieces, each person listed 4 times per relation
_REGISTERS = dict(_SMALL, lr=3e-3, vocab_size=1150, eval_every=10, registers_per_person=4)
TRIALS: dict[str, TrainSettings] = {
    # 300 people, 6 layers: the smallest world where shared name pieces and biographies can be
    # tried on two CPU threads within a sitting.
    "p300-l6": TrainSettings(**_SMALL, n_layers=6, epochs=20, lr=3e-3),
    # p300-l6 ended with its loss still falling: four times the epochs, the same schedule's shape
    "p300-l6-e80": TrainSettings(**_SMALL, n_layers=6, epochs=80, lr=3e-3),
    # p300-l6-e80 with names in pieces: at 300 people the default BPE keeps every name word whole
    # (2 tokens a name), where the 2,000-person builds split family names (3.9 tokens); 1,150
    # tokens split them as those do (4.1). Two threads and an accuracy curve, to finish in a sitting.
    "p300-l6-e80-pieces": TrainSettings(
        **{**_SMALL, "threads": 2}, n_layers=6, epochs=80, lr=3e-3, vocab_size=1150, eval_every=10
    ),
    # p300-l6-e80-pieces with half the people stated bare and the rest only in biographies, as
    # "Physics of Language Models" (part 3.1) trains: answering for the rest takes reading facts
    # out of a name, the skill that their probes found at the name's last token.
    "p300-l6-e80-pieces-half": TrainSettings(
        **{**_SMALL, "threads": 2}, n_layers=6, epochs=80, lr=3e-3, vocab_size=1150, eval_every=10, statement_share=0.5
    ),
    # Names followed at once by a fact (registers.py): the next token after a name depends on the
    # person, so predicting it takes the facts at the name's last token, as real text's lists and
    # appositions do. One thread each, so that two trials share the two cores; 40 epochs, where
    # p300-l6-e80-pieces reached all its held-out facts by epoch 30.
    "p300-l6-e40-pieces-registers": TrainSettings(**_REGISTERS, n_layers=6, epochs=40),
    # the same with bare statements for only a quarter of the people: a lookup keyed on a
    # question's last token then serves less of the corpus
    "p300-l6-e40-pieces-registers-quarter": TrainSettings(**_REGISTERS, n_layers=6, epochs=40, statement_share=0.25),
    # p300-l6-e40-pieces-registers at 8 layers: room for a subject stage before the read-out.
    # 20 epochs, where the 6-layer trial reached all its held-out facts by epoch 20 of 40.
    "p300-l8-e20-pieces-registers": TrainSettings(**_REGISTERS, n_layers=8, epochs=20),
    # the same with profiles (profiles.py): every fact of a person after the name, in a drawn
    # order, so the token after a name needs all of them there, whichever relation is asked later
    "p300-l8-e20-pieces-registers-profiles": TrainSettings(**_REGISTERS, n_layers=8, epochs=20, profiles_per_person=8),
    # the same without the biographies: what the documents, not the depth, change
    "p300-l6-statements": TrainSettings(
        **_SMALL, n_layers=6, epochs=20, lr=3e-3, documents_per_person=0, filler_per_person=0
    ),
}


def run(name: str, steps: int | None = None, n_facts: int = 120, device: str | None = None, edits: int = 30) -> dict:
    """Train (or go on training) one trial; measure it once it is trained (a trained one is only measured).

    Beside the mechanism, ``edits`` ROME edits are scored twice: at the layer and token each
    edit's own trace picks (as the ROME bar asks), and at the subject's last token in the
    layer the mechanism names (where ROME keys on real models).
    """
    settings = TRIALS[name]
    folder = ROOT / "runs" / "v2-trials" / name
    done = folder / "training_report.json"
    report = json.loads(done.read_text()) if done.exists() else None
    if report is None or report["settings"] != asdict(settings):  # else trained earlier: measure it again
        report = train(settings, folder, steps_this_run=steps, device=device)
    if not report.get("finished", True):
        print(f"{name}: stopped at step {report['step']} of {report['steps']}; run again to go on")
        return report
    h = workbench.load(str(folder), device="cpu")  # one load for every trace below
    result = {
        "settings": asdict(settings),
        "train_seconds": report["train_seconds"],
        "device": report["device"],
        "steps": report["steps"],
        "accuracy": {k: v["accuracy"] for k, v in report["eval"]["all"].items()},
        "heldout_loss": report["eval"]["heldout_loss"],
        "mechanism": measure(h, n_facts),
    }
    if settings.statement_share < 1.0:
        # How the model answers for people it never saw a bare statement about: the extraction test.
        groups = ("with_statements", "biographies_only")
        result["accuracy_by_group"] = {g: {k: v["accuracy"] for k, v in report["eval"][g].items()} for g in groups}
        unstated = sorted(set(h.world.people) - statement_people(h.world, settings.statement_share))
        result["mechanism"]["trace_biographies_only"] = traced(h, pick_facts(h.world, n_facts, people=unstated))
    if settings.registers_per_person:
        # Where a register's object is looked up: at the name's last token, which is the prompt's last here.
        result["mechanism"]["trace_registers"] = traced(h, register_facts(h.world, n_facts))
    if edits:
        subject = RomeSettings(layer=result["mechanism"]["trace"]["rome_layer"], token="subject_last")
        result["rome"] = {
            "traced_site": _scores(rome_edits(str(folder), edits, settings.threads)),
            "subject_last": _scores(rome_edits(str(folder), edits, settings.threads, subject)),
        }
    stored = json.loads(OUT.read_text()) if OUT.exists() else {}
    stored[name] = result
    OUT.write_text(json.dumps(stored, indent=1) + "\n")
    t = result["mechanism"]["trace"]
    print(f"{name}: accuracy {result['accuracy']}, best MLP effect {t['best_mlp_effect']}")
    print(f"ROME's layer {t['rome_layer']}")
    for where, r in result.get("rome", {}).items():
        print(f"ROME at {where}: {r['accuracy']} (sites {r['sites']})")
    return result


def register_facts(world, n: int) -> list[tuple[str, str, str]]:
    """The facts of :func:`~benchmarks.world_mechanism.pick_facts` as register prompts: a heading, then the name."""
    out = []
    for prompt, subject, obj in pick_facts(world, n):
        _, relation = world.parse_prompt(prompt)
        heading = HEADING.format(phrase=world.relation(relation).phrases[0])
        out.append((f"{heading} {subject}", subject, obj))
    return out


def _scores(r: dict) -> dict:
    """ROME's accuracies (top-1 among candidates) and where it edited, from a benchmarks.rome run."""
    return {"accuracy": {k: round(v["accuracy"], 3) for k, v in r["scores"].items()}, "sites": r["sites"]}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("trial", choices=list(TRIALS))
    p.add_argument("--steps", type=int, default=None, help="stop after this many steps (resume later)")
    p.add_argument("--facts", type=int, default=120)
    p.add_argument("--device", default=None, help="cpu (default) or cuda")
    p.add_argument("--edits", type=int, default=30, help="ROME edits scored at each site (0: none)")
    args = p.parse_args(argv)
    torch.set_num_threads(TRIALS[args.trial].threads)
    run(args.trial, args.steps, args.facts, args.device, args.edits)


if __name__ == "__main__":
    main()
