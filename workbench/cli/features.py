"""The SAE commands of the ``workbench`` CLI: ``sae train`` and ``features``, on any model.

Registered on the app by :mod:`workbench.cli.app`; same conventions: ``--json`` prints one
object, bad input is one line on stderr and exit status 2. An SAE lives in a folder of SAEs, one
``<hook name>/`` folder each in sae-lens' format: the model directory's ``saes/`` by default
(where the default world model ships its own), or the folder ``--out`` / ``--sae`` names.

Examples:
    >>> sae_folder("world", None).name
    'saes'
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from workbench.cli.common import (
    DEVICE,
    DTYPE,
    JSON,
    MODEL,
    CliError,
    Output,
    check_new_folder,
    load_model,
    read_texts_option,
    world_of,
)
from workbench.core.handle import ModelLoadError, resolve_model

# The locators load when a command runs, not when the CLI starts: they pull in sae-lens and
# transformers' model classes, seconds that --help and a mistyped option should not wait for.

sae_app = typer.Typer(no_args_is_help=True, help="Sparse autoencoders: train one on any model and text.")
COMPONENT = typer.Option("resid", help="resid (the block's output) | mlp (the MLP's output).")
SAE = typer.Option(None, "--sae", help="A folder of SAEs, as `sae train --out` writes it (default: the model's saes/).")


def sae_folder(model: str, sae: str | None) -> Path:
    """The folder of SAEs a command reads: ``--sae``, or the model directory's ``saes/``, checked before loading.

    Examples:
        >>> sae_folder("world", "/no/such/saes")
        Traceback (most recent call last):
        workbench.cli.common.CliError: --sae: no folder /no/such/saes
    """
    if sae is not None:
        if not Path(sae).is_dir():
            raise CliError(f"--sae: no folder {sae}")
        return Path(sae)
    try:
        path, _ = resolve_model(model)
    except ModelLoadError as e:
        raise CliError(str(e)) from None
    return Path(path) / "saes"


def check_sae(folder: Path, model: str, layer: int, component: str) -> None:
    """Refuse, before the model loads, a folder without the SAE at this site; say how to train one."""
    from locate.sae_train import SaeSettings

    hook = SaeSettings(layer, component).hook_name()
    if not (folder / hook / "cfg.json").is_file():
        raise CliError(
            f"no SAE at {folder / hook}: train one with `workbench sae train --model {model} --texts FILE "
            f"--layer {layer} --component {component}`"
        )


def _load_sae(h, folder: Path, settings):
    from locate.sae_splice import load_sae

    sae = load_sae(settings, saes=folder)
    if sae.cfg.d_in != h.sites.d_model:
        raise CliError(
            f"the SAE at {folder / settings.hook_name()} reads {sae.cfg.d_in} dimensions; "
            f"model {h.name!r} has {h.sites.d_model}"
        )
    return sae


@sae_app.command("train")
def sae_train_cmd(
    model: str | None = typer.Option(
        None, "--model", "-m", help="Train one SAE on this model over --texts (default: rebuild the shipped SAEs)."
    ),
    texts: str | None = typer.Option(None, help="With --model: the text (JSONL {text}, TOFU QA, .txt, a folder)."),
    layer: int | None = typer.Option(None, help="With --model: the block the SAE reads (default 0)."),
    component: str | None = typer.Option(None, help="With --model: resid (default) | mlp."),
    width: int | None = typer.Option(None, help="With --model: features (default 4 x the model's width)."),
    k: int | None = typer.Option(None, help="With --model: mean active features per token (default 16)."),
    tokens: int | None = typer.Option(
        None, help="With --model: activation vectors seen in training (default 2,000,000; passes repeat the text)."
    ),
    out: str | None = typer.Option(
        None,
        help="With --model: the folder of SAEs to write (default: the model's saes/). "
        "Without: the model directory whose saes/ to rebuild.",
    ),
    dtype: str | None = DTYPE,
    device: str | None = DEVICE,
    as_json: bool = JSON,
) -> None:
    """Train an SAE with sae-lens, offline, and report its reconstruction quality (or rebuild the shipped ones)."""
    if model is None:
        given = [f"--{n}" for n, v in (("texts", texts), ("layer", layer), ("component", component),
                                        ("width", width), ("k", k), ("tokens", tokens)) if v is not None]  # fmt: skip
        if given:
            raise CliError(f"{', '.join(given)} need --model DIR: without it the shipped SAEs are rebuilt as they are")
        return _rebuild_shipped(out, as_json)
    from locate.sae_train import SaeSettings, train_text_sae

    component = component or "resid"
    if component not in ("resid", "mlp"):
        raise CliError(f"unknown component {component!r}: choose resid or mlp")
    for name, value in (("--width", width), ("--k", k), ("--tokens", tokens)):
        if value is not None and value < 1:
            raise CliError(f"{name} must be at least 1, got {value}")
    if width is not None and k is not None and k > width:
        raise CliError(f"--k {k} is more than --width {width}: at most every feature is active")
    if texts is None:
        raise CliError("--model needs --texts FILE: the text to train the SAE on")
    corpus = read_texts_option(texts, "--texts")
    folder = _output_folder(model, out)
    h = load_model(model, dtype, device)
    layer = 0 if layer is None else layer
    if not 0 <= layer < h.n_layers:
        raise CliError(f"layer {layer} out of range 0..{h.n_layers - 1}")
    width = width or 4 * h.sites.d_model
    if (k or 16) > width:
        raise CliError(f"--k {k or 16} is more than --width {width}: give a smaller --k")
    settings = SaeSettings(layer, component, d_sae=width, k=k or 16, samples=tokens or SaeSettings.samples)
    report = train_text_sae(h, settings, corpus, folder, progress=not as_json)
    o = {"sae": settings.hook_name(), "folder": str(folder), **report}
    Output(as_json).emit(
        o,
        lambda r: (
            f"{r['sae']} written to {r['folder']}\n"
            f"on the {r['evaluated_on']}: {_quality(r)}\n"
            f"use it: workbench features -m {model} --subject S --prompt P"
            + ("" if out is None else f" --sae {folder}")
            + ("" if (layer, component) == (0, "resid") else f" --layer {layer} --component {component}")
        ),
    )


def _output_folder(model: str, out: str | None) -> Path:
    if out is not None:
        check_new_folder(out, "--out")
        if Path(out).is_dir() and not os.access(out, os.W_OK):
            raise CliError(f"--out: {out} cannot be written (permission denied)")
        return Path(out)
    try:
        path, local = resolve_model(model)
    except ModelLoadError as e:
        raise CliError(str(e)) from None
    folder = Path(path) / "saes"
    if not local or not os.access(folder if folder.exists() else path, os.W_OK):
        raise CliError(
            f"model {model!r} cannot take an saes/ folder (not a writable directory): give --out DIR, "
            "then --sae DIR to features and forget"
        )
    return folder


def _quality(v: dict) -> str:
    return (
        f"variance explained {v['fraction_variance_explained']:.3f}, L0 {v['l0']:.0f}, dead "
        f"{v['dead_fraction']:.0%}, loss {v['loss_clean']:.3f} clean / {v['loss_spliced']:.3f} spliced / "
        f"{v['loss_zero_ablated']:.3f} zeroed, {v['train_seconds']:.0f}s"
    )


def _rebuild_shipped(out: str | None, as_json: bool) -> None:
    from locate.sae_train import train_shipped_saes

    if out is not None:  # training takes minutes: a folder it cannot use is refused first
        try:
            resolve_model(out)
        except ModelLoadError as e:
            raise CliError(f"--out must be a model directory: {e}") from None
        if not os.access(out, os.W_OK):
            raise CliError(f"--out: {out} cannot be written (permission denied)")
    report = train_shipped_saes(out, progress=not as_json)
    Output(as_json).emit(report, lambda r: "\n".join(f"{hook}: {_quality(v)}" for hook, v in r.items()))


def features_cmd(
    person: str | None = typer.Argument(None, help="A person of the world (world models; or --subject)."),
    relation: str | None = typer.Argument(None, help="A relation; omit for all of the person's facts."),
    subject: str | None = typer.Option(None, help="Any model: the subject of --prompt (instead of PERSON)."),
    prompt: str | None = typer.Option(None, help="Any model: a prompt that contains --subject."),
    obj: str | None = typer.Option(
        None, "--object", help="Rank by attribution to this object's log-odds after --prompt (else by activation)."
    ),
    layer: int = typer.Option(0, help="Layer of the SAE."),
    component: str = COMPONENT,
    feature: int | None = typer.Option(None, help="Describe this feature instead."),
    texts: str | None = typer.Option(
        None, help="With --feature: find its strongest tokens in these texts (default: the world's sentences)."
    ),
    sae: str | None = SAE,
    top: int = typer.Option(10, min=1, help="How many to list."),
    model: str = MODEL,
    dtype: str | None = DTYPE,
    device: str | None = DEVICE,
    as_json: bool = JSON,
) -> None:
    """Which SAE features carry PERSON's RELATION or --subject in --prompt (any model); or what --feature is about."""
    from locate.sae_train import SaeSettings

    if component not in ("resid", "mlp"):
        raise CliError(f"unknown component {component!r}: choose resid or mlp")
    if texts is not None and feature is None:
        raise CliError("--texts goes with --feature N: the texts to find that feature's strongest tokens in")
    free = subject is not None or prompt is not None or obj is not None
    if feature is None:
        if free and (person is not None or relation is not None):
            raise CliError("name the subject once: PERSON [RELATION], or --subject with --prompt")
        if free and not (subject and prompt):
            raise CliError("--subject and --prompt go together (and --object with them)")
        if free and subject not in prompt:
            raise CliError(f"the subject {subject!r} does not occur in --prompt {prompt!r}")
        if not free and person is None:
            raise CliError("give PERSON [RELATION] (a world model), or --subject S --prompt P (any model)")
    corpus = read_texts_option(texts, "--texts") if texts is not None else None
    s = SaeSettings(layer, component)
    # The world's own questions keep the shipped SAEs unless --sae says otherwise; any other
    # question reads the model's own saes/ (or --sae), refused here if the SAE is not there.
    world_question = feature is None and not free
    folder = None if world_question and sae is None else sae_folder(model, sae)
    if folder is not None and layer >= 0:
        check_sae(folder, model, layer, component)
    h = load_model(model, dtype, device)
    if not 0 <= layer < h.n_layers:
        raise CliError(f"layer {layer} out of range 0..{h.n_layers - 1}")
    if feature is not None:
        if corpus is None and h.world is None:
            raise CliError(f"model {h.name!r} has no fact world: give --texts FILE to find feature {feature} in")
        _describe(h, feature, s, corpus, top, _load_sae(h, folder, s), as_json)
        return
    from locate.features import FeatureSettings, locate_features, locate_person_features, locate_prompt_features

    fs = FeatureSettings(top=top)
    loaded = _load_sae(h, folder, s) if folder is not None else None
    if free:
        if obj is None:
            loc = locate_prompt_features(h, prompt, subject, s, fs, sae=loaded)
        else:
            loc = locate_features(h, prompt, subject, obj, s, fs, sae=loaded)
    else:
        world = world_of(h)
        if person not in world.people:
            raise CliError(f"unknown person {person!r}: not in the world")
        if relation is None:
            loc = locate_person_features(h, person, s, fs, sae=loaded)
        else:
            if relation not in world.relations:
                raise CliError(f"unknown relation {relation!r}: choose from {', '.join(world.relations)}")
            f = world.fact(person, relation)
            loc = locate_features(h, world.phrasings(relation)[0].prompt(person), person, f.object, s, fs, loaded)
    by = "activation" if loc.extras.get("ranked_by") == "max activation" else "attribution"
    o = {
        "target": loc.target,
        "sae": s.hook_name(),
        "ranked_by": by,
        "features": [{"feature": x.feature, by: x.score} for x in loc.sites],
        "extras": loc.extras,
    }

    def render(d: dict) -> str:
        what = "log-odds attribution" if by == "attribution" else "largest activation on the subject and last token"
        lines = [
            f"features of {d['sae']} carrying " + ", ".join(f"{k}={v}" for k, v in d["target"].items()),
            f"  feature  {what}",
            *(f"  {x['feature']:7d}  {x[by]:+.3g}" for x in d["features"]),
        ]
        for a in d["extras"].get("ablation", []):
            lines.append(f"  ablating {a['feature']}: P(object) {d['extras']['prob']:.3f} -> {a['prob_after']:.3f}")
        return "\n".join(lines)

    Output(as_json).emit(o, render)


def _describe(h, feature: int, s, corpus: list[str] | None, top: int, sae, as_json: bool) -> None:
    from locate.feature_data import feature_data

    o = feature_data(h, feature, s, texts=corpus, top=top, sae=sae)

    def short(text: str, n: int = 100) -> str:
        text = " ".join(text.split())
        return text if len(text) <= n else "..." + text[-n:]

    Output(as_json).emit(
        o,
        lambda d: "\n".join(
            [
                f"feature {feature} of {d['sae']}: fires on {d['fires_on_fraction']:.1%} of tokens",
                "strongest tokens (with what precedes them):",
                *(f"  {t['activation']:8.3g}  {t['token']!r} in {short(t['context'])!r}" for t in d["top_tokens"]),
                "top contexts:",
                *(f"  {c['max']:8.3g}  {short(c['text'])}" for c in d["top_contexts"]),
                "promotes: " + ", ".join(repr(t["token"]) for t in d["promotes"]),
                "suppresses: " + ", ".join(repr(t["token"]) for t in d["suppresses"]),
                *(["people: " + ", ".join(d["people"])] if d["people"] else []),
            ]
        ),
    )
