"""The locate commands of the ``workbench`` CLI: ``trace`` and ``fisher`` (SAEs: :mod:`workbench.cli.features`).

Registered on the app by :mod:`workbench.cli.app`; shares its conventions: ``--json`` prints one
object, bad input is one line on stderr and exit status 2.
"""

from __future__ import annotations

import typer

from workbench.cli.common import (
    DEVICE,
    DTYPE,
    JSON,
    MODEL,
    CliError,
    Output,
    build_settings,
    check_output_file,
    load_model,
    read_texts_option,
    world_of,
)
from workbench.core.handle import ModelHandle

# The editors, locators and checks load when a command runs, not when the CLI starts: they pull
# in transformers' model classes and scipy, seconds that --help and a mistyped option should not
# wait for.


def fact_prompt(
    h: ModelHandle, person: str, relation: str | None, prompt: str | None, obj: str | None, phrasing: int
) -> tuple[str, str]:
    """The prompt and object to trace: a world fact's, or the ones given (any model, any prompt).

    Examples:
        >>> h = load_model("world")
        >>> fact_prompt(h, "Waen Neibeind", "pet", None, None, 0)
        ('Waen Neibeind owns a pet', 'tortoise')
        >>> fact_prompt(h, "Waen Neibeind", None, "Waen Neibeind keeps a", "cat", 0)
        ('Waen Neibeind keeps a', 'cat')
    """
    if relation is None or h.world is None:
        if not (prompt and obj):
            where = f"model {h.name!r} has no fact world" if h.world is None else "without a RELATION"
            raise CliError(f"{where}: give --prompt and --object (and the subject)")
        if person not in prompt:
            raise CliError(f"the subject {person!r} does not occur in --prompt {prompt!r}")
        return prompt, obj
    world = h.world
    if person not in world.people:
        raise CliError(f"unknown person {person!r}: not in the world (try `workbench world facts` with a listed name)")
    if relation not in world.relations:
        raise CliError(f"unknown relation {relation!r}: choose from {', '.join(world.relations)}")
    phrasings = world.phrasings(relation, held_out=None)
    if not 0 <= phrasing < len(phrasings):
        raise CliError(f"phrasing {phrasing} out of range 0..{len(phrasings) - 1}")
    fact = world.fact(person, relation)
    return prompt or phrasings[phrasing].prompt(person), obj or fact.object


def trace_cmd(
    person: str | None = typer.Argument(None, help="The subject, e.g. a person of the world (or --subject)."),
    relation: str | None = typer.Argument(None, help="A relation of the world, e.g. birthplace."),
    subject: str | None = typer.Option(None, help="The subject of --prompt (instead of PERSON)."),
    method: str = typer.Option("causal", help="causal | attribution | nnsight | reference."),
    model: str = MODEL,
    dtype: str | None = DTYPE,
    device: str | None = DEVICE,
    prompt: str | None = typer.Option(None, help="Trace this prompt instead (must contain the subject)."),
    obj: str | None = typer.Option(None, "--object", help="Object to measure (default: the world's)."),
    phrasing: int = typer.Option(0, help="Which of the relation's phrasings (world models)."),
    samples: int = typer.Option(10, min=1, help="Noise samples."),
    noise: float = typer.Option(3.0, min=0.0, help="Noise std as a multiple of the embedding std."),
    window: int = typer.Option(1, min=1, help="Layers restored together (mlp, attn)."),
    corruption: str = typer.Option("noise", help="noise | counterfactual."),
    seed: int = typer.Option(0),
    as_json: bool = JSON,
) -> None:
    """Where does the model keep PERSON's RELATION? Grid of restored P(object) and the best site."""
    from locate.causal_trace import TraceSettings
    from locate.registry import tracer

    fn = tracer(method)
    if corruption not in ("noise", "counterfactual"):
        raise CliError(f"unknown corruption {corruption!r}: choose noise or counterfactual")
    if (person is None) == (subject is None):
        raise CliError("name the subject once: PERSON, or --subject with --prompt")
    person = person if person is not None else subject
    if relation is None and not (prompt and obj):
        raise CliError("give a RELATION, or --prompt and --object to trace a prompt of your own")
    h = load_model(model, dtype, device)
    text, target = fact_prompt(h, person, relation, prompt, obj, phrasing)
    if window > h.n_layers:
        raise CliError(f"window {window} out of range 1..{h.n_layers} for a {h.n_layers}-layer model")
    result = fn(
        h,
        text,
        person,
        target,
        TraceSettings(noise=noise, samples=samples, window=window, seed=seed, corruption=corruption),
    )
    loc = result.to_location()
    best = loc.best()
    out = {
        "method": loc.method,
        "prompt": text,
        "subject": person,
        "object": target,
        "tokens": result.tokens,
        "subject_span": list(result.subject_span),
        "clean": result.clean,
        "corrupted": result.corrupted,
        "replacement": result.replacement,
        "grids": {c: g.tolist() for c, g in result.scores.items()},
        "best": {
            "component": best.component,
            "layer": best.layer,
            "token": best.token,
            "token_text": result.tokens[best.token],
            "effect": best.score,
        },
    }

    def render(o: dict) -> str:
        a, b = o["subject_span"]
        lines = [
            f"{o['method']}: {o['prompt']!r} -> {o['object']!r}  P clean {o['clean']:.3f}, "
            f"corrupted {o['corrupted']:.3f}"
            + (f" (subject replaced by {o['replacement']})" if o["replacement"] else "")
        ]
        width = max(len(t) for t in o["tokens"]) + 2
        for c, grid in o["grids"].items():
            lines.append(f"{c}: P(object) with one state restored, rows tokens (* subject), columns layers")
            lines.append(" " * width + "".join(f"{layer:>7}" for layer in range(len(grid[0]))))
            for t, row in enumerate(grid):
                mark = "*" if a <= t < b else " "
                lines.append(f"{mark}{o['tokens'][t]:<{width - 1}}" + "".join(f"{v:7.3f}" for v in row))
        w = o["best"]
        lines.append(
            f"best site: {w['component']} layer {w['layer']} at token {w['token']} {w['token_text']!r} "
            f"(+{w['effect']:.3f})"
        )
        return "\n".join(lines)

    Output(as_json).emit(out, render)


def fisher_cmd(
    forget: str = typer.Argument(
        ..., help="A person of the world, a forget split (forget01/05/10), or with --retain a file of texts."
    ),
    retain: str | None = typer.Option(
        None, "--retain", help="Any model: FORGET and this are files of texts (JSONL {text}, TOFU QA, .txt, folder)."
    ),
    model: str = MODEL,
    dtype: str | None = DTYPE,
    device: str | None = DEVICE,
    top_fraction: float = typer.Option(0.01, help="Fraction of parameters the mask keeps (0, 1]."),
    granularity: str = typer.Option("element", help="element | row | tensor."),
    score: str = typer.Option("ratio", help="ratio (forget / retain) | forget."),
    alpha: float = typer.Option(10.0, help="Selective Synaptic Dampening threshold."),
    max_examples: int | None = typer.Option(None, min=1, help="At most this many examples per set."),
    out: str | None = typer.Option(None, help="Write the Location (JSON) here."),
    top: int = typer.Option(10, min=1, help="How many sites to list."),
    as_json: bool = JSON,
) -> None:
    """Which parameters does FORGET lean on, compared with everything else? A Fisher parameter mask."""
    from locate.fisher import FisherSettings, fisher

    settings = build_settings(
        FisherSettings,
        max_examples=max_examples,
        top_fraction=top_fraction,
        granularity=granularity,
        score=score,
        alpha=alpha,
    )
    if out:  # the Location is written at the end: refuse a place it cannot go before the work
        check_output_file(out, "--out")
    texts = (read_texts_option(forget, "FORGET"), read_texts_option(retain, "--retain")) if retain else None
    h = load_model(model, dtype, device)
    if texts is None:
        world_of(h)
    data = (forget,) if texts is None else texts
    scores = fisher(h, *data, settings=settings, progress=not as_json)
    loc = scores.to_location()
    if out:
        loc.save(out)
    f, r = scores.components("forget"), scores.components("retain")
    comps = [
        {
            "layer": layer,
            "component": c,
            "forget": f[(layer, c)],
            "retain": r[(layer, c)],
            "ratio": f[(layer, c)] / (r[(layer, c)] + settings.eps),
        }
        for layer, c in sorted(f, key=lambda k: (k[0] is None, k))
    ]
    o = {
        "target": loc.target,
        "examples": loc.extras["examples"],
        "seconds": scores.seconds,
        "selected_elements": loc.extras["elements"],
        "total_elements": loc.extras["total_elements"],
        "ssd_elements": loc.extras.get("ssd_elements"),
        "components": comps,
        "sites": [
            {
                "param": s.param,
                "layer": s.layer,
                "component": s.component,
                "unit": s.feature,
                "elements": len(loc.masks[s.param]) if s.param in loc.masks else None,
                "score": s.score,
            }
            for s in loc.sites[:top]
        ],
        "location_file": out,
    }

    def render(o: dict) -> str:
        lines = [
            f"fisher of {forget}: {o['examples']['forget']} forget and {o['examples']['retain']} retain "
            f"examples in {o['seconds']:.1f}s",
            f"mask: {o['selected_elements']:,} of {o['total_elements']:,} parameters "
            f"({o['selected_elements'] / o['total_elements']:.2%}); SSD (forget > {alpha:g} x retain): "
            f"{o['ssd_elements']:,}",
            "per component (summed Fisher):  layer component  forget  retain  ratio",
        ]
        lines += [
            f"  {str(c['layer']):>5} {c['component']:<9} {c['forget']:.2e} {c['retain']:.2e} {c['ratio']:7.2f}"
            for c in o["components"]
        ]
        lines.append(f"top {len(o['sites'])} sites:")
        lines += [
            f"  {s['score']:10.3g}  {s['param']}"
            + (f" unit {s['unit']}" if s["unit"] is not None else "")
            + (f" ({s['elements']} elements)" if s["elements"] else "")
            for s in o["sites"]
        ]
        if o["location_file"]:
            lines.append(f"location written to {o['location_file']}")
        return "\n".join(lines)

    Output(as_json).emit(o, render)
