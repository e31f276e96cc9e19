"""The ``workbench`` command.

Every command takes ``--json`` and then prints exactly one JSON object on stdout. Bad input
exits with status 2 and one line on stderr naming what was wrong (and, with ``--json``,
``{"error": ...}`` on stdout); progress bars go to stderr.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Locate, edit and verify knowledge in language models.",
)
world_app = typer.Typer(no_args_is_help=True, help="The embedded fact world and its models.")
app.add_typer(world_app, name="world")

MODEL = typer.Option("world", "--model", "-m", help="world[:variant], a model directory, or a hub id.")
JSON = typer.Option(False, "--json", help="Print exactly one JSON object on stdout.")


class CliError(Exception):
    """An input error reported as one line."""


@dataclass
class _Output:
    as_json: bool

    def emit(self, payload: dict, render: Callable[[dict], str]) -> None:
        print(json.dumps(payload) if self.as_json else render(payload))


def _load(model: str):
    import workbench

    return workbench.load(model)


def _world_of(h):
    if h.world is None:
        raise CliError(f"model {h.name!r} has no fact world (world commands need a world model)")
    return h.world


def _fmt(rows: list[tuple[str, float]]) -> str:
    return "\n".join(f"  {p:7.2%}  {t}" for t, p in rows)


@app.command()
def info(model: str = MODEL, as_json: bool = JSON) -> None:
    """Model, architecture, layers and (for world models) the facts it was trained on."""
    out = _load(model).info()
    _Output(as_json).emit(out, lambda o: "\n".join(f"{k:>11}: {v}" for k, v in o.items()))


@app.command()
def ask(
    prompt: str,
    model: str = MODEL,
    k: int = typer.Option(5, "-k", min=1, help="How many to show."),
    as_json: bool = JSON,
) -> None:
    """Top next tokens for PROMPT, and for world prompts the top candidates of its relation."""
    h = _load(model)
    h.encode(prompt)  # fails early, with the unknown words named, if the prompt cannot be encoded
    out: dict = {"prompt": prompt, "top_tokens": [{"token": t, "prob": p} for t, p in h.top_tokens(prompt, k)]}
    if h.world is not None:
        person, relation = h.world.parse_prompt(prompt)
        out.update(person=person, relation=relation)
        if relation is not None:
            ranked = h.rank_candidates(prompt, list(h.world.relation(relation).candidates))[:k]
            out["top_candidates"] = [{"object": c, "prob": p} for c, p in ranked]
            if person is not None:
                out["true_object"] = h.world.fact(person, relation).object

    def render(o: dict) -> str:
        lines = [f"{o['prompt']} ...", "next tokens:", _fmt([(t["token"], t["prob"]) for t in o["top_tokens"]])]
        if "top_candidates" in o:
            lines += [f"candidates for {o['relation']}:", _fmt([(c["object"], c["prob"]) for c in o["top_candidates"]])]
        if o.get("true_object"):
            lines.append(f"world says: {o['true_object']}")
        return "\n".join(lines)

    _Output(as_json).emit(out, render)


@world_app.command("facts")
def world_facts(person: str, model: str = MODEL, as_json: bool = JSON) -> None:
    """The facts of PERSON and whether the model gets each right."""
    h = _load(model)
    world = _world_of(h)
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
    _Output(as_json).emit(
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
    name: str = typer.Argument("all", help="A shipped model name, or 'all'."),
    out: str | None = typer.Option(None, help="Parent directory (default: the shipped checkpoints)."),
    epochs: int | None = typer.Option(None, min=1, help="Override the number of epochs."),
    as_json: bool = JSON,
) -> None:
    """Rebuild shipped world models deterministically from the generator."""
    from pathlib import Path

    from workbench.core.world.registry import CHECKPOINTS, SHIPPED
    from workbench.core.world.train import TrainSettings, train

    names = list(SHIPPED) if name == "all" else [name]
    for n in names:
        if n not in SHIPPED:
            raise CliError(f"unknown world model {n!r}: choose from all, {', '.join(SHIPPED)}")
    parent = Path(out) if out else CHECKPOINTS
    reports = {}
    for n in names:
        settings = TrainSettings(**SHIPPED[n])
        if epochs is not None:
            settings.epochs = epochs
        reports[n] = train(settings, parent / n)
        reports[n]["path"] = str(parent / n)

    def render(r: dict) -> str:
        return "\n".join(
            f"{n}: {v['train_seconds']:.0f}s -> {v['path']}  {json.dumps(v['eval'])}" for n, v in r.items()
        )

    _Output(as_json).emit(reports, render)


@app.command()
def demo(model: str = MODEL, as_json: bool = JSON) -> None:
    """Load the world model, pick a fact, show what it predicts and where the fact lives, and summarise."""
    t0 = time.perf_counter()
    h = _load(model)
    world = _world_of(h)
    fact = world.fact(list(world.people)[7], "employer")
    prompt = world.phrasings(fact.relation, held_out=True)[0].prompt(fact.subject)
    span = h.subject_span(prompt, fact.subject)
    ranked = h.rank_candidates(prompt, list(world.relation(fact.relation).candidates))[:3]
    from locate.causal_trace import TraceSettings, trace

    tr = trace(h, prompt, fact.subject, fact.object, TraceSettings(samples=5))
    ranked_sites = tr.to_location().sites  # best first: the first of each component is its peak
    where = {}
    for site in ranked_sites:
        if site.component not in where:
            where[site.component] = {
                "layer": site.layer,
                "token": site.token,
                "token_text": tr.tokens[site.token],
                "effect": site.score,
            }
    from edit.counterfact import score_requests
    from edit.request import world_request
    from edit.rome import rome
    from workbench.core.hashing import tensor_hash

    new = next(c for c, _ in ranked if c != fact.object)
    request = world_request(world, fact.subject, fact.relation, new)
    edit = rome(h, request, tr.to_location())  # the trace says where
    edited = score_requests(h, [request])
    now = h.rank_candidates(prompt, list(world.relation(fact.relation).candidates))[0]
    edit.revert(h.model)
    restored = all(tensor_hash(h.model.get_parameter(n)) == edit.hashes_before[n] for n in edit.names)
    sample = world.facts(list(world.people)[:50])
    trained, held = h.score(sample), h.score(sample, held_out=True)
    out = {
        "model": h.info(),
        "fact": {"subject": fact.subject, "relation": fact.relation, "object": fact.object},
        "prompt": prompt,
        "tokens": h.tokens(prompt),
        "subject_span": list(span),
        "top_candidates": [{"object": c, "prob": p} for c, p in ranked],
        "causal_trace": {"clean": tr.clean, "corrupted": tr.corrupted, "strongest": where},
        "edit": {
            "method": "rome",
            "new_object": new,
            "layer": edit.settings["layer"],
            "token": edit.settings["token"],
            "top_after": {"object": now[0], "prob": now[1]},
            "scores": edited,
            "seconds": edit.metrics["seconds"],
            "reverted_bitwise": restored,
        },
        "summary": {
            "people_sampled": 50,
            "trained_accuracy": trained.accuracy,
            "heldout_accuracy": held.accuracy,
            "heldout_loss": h.heldout_loss(),
        },
        "seconds": round(time.perf_counter() - t0, 1),
    }

    def render(o: dict) -> str:
        m, s = o["model"], o["summary"]
        return "\n".join(
            [
                f"model      {m['name']} ({m['architecture']}, {m['layers']} layers, {m['parameters']:,} parameters, {m['device']})",
                f"world      {m['world']['people']} people, {m['world']['facts']} facts, relations: {', '.join(m['world']['relations'])}",
                f"fact       {fact.subject} / {fact.relation} / {fact.object}",
                f"prompt     {prompt!r}  (held-out phrasing, never trained on)",
                f"subject    tokens {span[0]}..{span[1] - 1}: {' '.join(o['tokens'][span[0] : span[1]])}",
                "predicts",
                _fmt([(c["object"], c["prob"]) for c in o["top_candidates"]]),
                f"where      causal trace (subject noised, one state restored): P={tr.clean:.2f} clean, "
                f"{tr.corrupted:.2f} corrupted; strongest restorations:",
                *(
                    f"  {c:>5}: layer {w['layer']} at token {w['token']} {w['token_text']!r}  (+{w['effect']:.2f})"
                    for c, w in o["causal_trace"]["strongest"].items()
                ),
                f"edit       ROME at layer {o['edit']['layer']}, {o['edit']['token'].replace('_', ' ')} token "
                f"({o['edit']['seconds']:.1f}s): now {o['edit']['top_after']['object']!r} "
                f"({o['edit']['top_after']['prob']:.2f}); held-out paraphrases "
                f"{o['edit']['scores']['paraphrase']['accuracy']:.0%} new object, neighbours kept "
                f"{o['edit']['scores']['neighbourhood']['accuracy']:.0%}; reverted: "
                + ("weights bitwise as before" if o["edit"]["reverted_bitwise"] else "WEIGHTS DIFFER FROM BEFORE"),
                f"summary    accuracy among candidates on {s['people_sampled']} people: trained phrasings "
                f"{s['trained_accuracy']:.1%}, held-out phrasings {s['heldout_accuracy']:.1%}; held-out loss {s['heldout_loss']:.3f}",
                f"time       {o['seconds']}s",
            ]
        )

    _Output(as_json).emit(out, render)


def _one_line(e: BaseException) -> str:
    if isinstance(e, KeyError) and e.args:
        msg = e.args[0]
    else:
        msg = e.format_message() if hasattr(e, "format_message") else str(e)
    return " ".join(str(msg).split()) or type(e).__name__


# Commands of the other steps live beside this file; importing them registers them on `app`.
import workbench.cli_edit  # noqa: E402,F401
import workbench.cli_export  # noqa: E402,F401
import workbench.cli_forget  # noqa: E402,F401
import workbench.cli_locate  # noqa: E402,F401
import workbench.cli_verify  # noqa: E402,F401


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app and turns every input error into one line and exit status 2."""
    args = sys.argv[1:] if argv is None else argv
    from transformers.utils import logging as hf_logging

    # Loading bars and library warnings would break the one-line error and clean stdout promises.
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    with warnings.catch_warnings():  # restores the caller's warning display afterwards
        # The workbench's own warnings (an edit too large for its layer, ...) as one line each.
        warnings.showwarning = lambda message, *_: print(f"workbench: warning: {message}", file=sys.stderr)
        return _run(args)


def _run(args: list[str]) -> int:
    try:
        # Without standalone mode click returns a command's typer.Exit status instead of raising it.
        code = app(args=args, prog_name="workbench", standalone_mode=False)
        return code if isinstance(code, int) else 0
    except typer.Exit as e:
        return e.exit_code
    except typer.TyperException as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # help was already printed for a bare command
            return 0
        return _fail(e, args)
    except (typer.Abort, KeyboardInterrupt):
        print("workbench: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the CLI promises one line, never a traceback
        return _fail(e, args)


def _fail(e: Exception, args: list[str]) -> int:
    from workbench.core.handle import ModelLoadError
    from workbench.core.tokens import EncodingError

    known = (CliError, typer.TyperException, KeyError, ValueError, ModelLoadError, EncodingError)
    msg = _one_line(e)
    if not isinstance(e, known):
        msg = f"internal error ({type(e).__name__}): {msg}"
    if "--json" in args:
        print(json.dumps({"error": msg}))
    print(f"workbench: {msg}", file=sys.stderr)
    return 2 if isinstance(e, known) else 1


if __name__ == "__main__":
    # Run as a script this file is a second module, whose app the subcommand modules never see.
    from workbench.cli import main as _registered_main

    sys.exit(_registered_main())
