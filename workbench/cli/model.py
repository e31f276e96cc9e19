"""``workbench info`` and ``workbench ask``: what a model is, and what it says next.

Both work on any model; on a world model ``info`` adds the world it was trained on and ``ask``
the candidates of the prompt's relation.

Examples:
    >>> info("world", dtype=None, device=None, as_json=False)  # doctest: +ELLIPSIS
           name: world
    ...
"""

from __future__ import annotations

import typer

from workbench.cli.common import DEVICE, DTYPE, JSON, MODEL, CliError, Output, format_probs, load_model


def info(model: str = MODEL, dtype: str | None = DTYPE, device: str | None = DEVICE, as_json: bool = JSON) -> None:
    """Model, architecture, layers and (for world models) the facts it was trained on."""
    out = load_model(model, dtype, device).info()
    Output(as_json).emit(out, lambda o: "\n".join(f"{k:>11}: {v}" for k, v in o.items()))


def ask(
    prompt: str,
    model: str = MODEL,
    dtype: str | None = DTYPE,
    device: str | None = DEVICE,
    k: int = typer.Option(5, "-k", min=1, help="How many to show."),
    as_json: bool = JSON,
) -> None:
    """Top next tokens for PROMPT, and for world prompts the top candidates of its relation."""
    if not prompt.strip():
        raise CliError("PROMPT is empty: give the text to continue")
    h = load_model(model, dtype, device)
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
        lines = [
            f"{o['prompt']} ...",
            "next tokens:",
            format_probs([(t["token"], t["prob"]) for t in o["top_tokens"]]),
        ]
        if "top_candidates" in o:
            lines += [
                f"candidates for {o['relation']}:",
                format_probs([(c["object"], c["prob"]) for c in o["top_candidates"]]),
            ]
        if o.get("true_object"):
            lines.append(f"world says: {o['true_object']}")
        return "\n".join(lines)

    Output(as_json).emit(out, render)
