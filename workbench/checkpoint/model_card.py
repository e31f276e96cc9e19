"""The model card of an export: in plain words what was changed, how, what verification found, what it does not show.

Written from the edit manifest and the verification report's dict (if there was one), so the
card never claims more than the files beside it hold.
"""

from __future__ import annotations

from edit.edit_request import EditRequest, Forget, Mixed, Rewrite, request_from_dict
from workbench.checkpoint.manifest import canonical

FRONT_MATTER = "---\nlibrary_name: transformers\ntags:\n- knowledge-editing\n- knowledge-workbench\n---\n"
NO_REPORT_LIMITS = (
    "that the edit took effect, or generalises beyond the prompts it was made from",
    "that the rest of the model's knowledge and fluency are unharmed",
    "that removed information cannot be recovered (by fine-tuning, probing or clever prompts)",
)
# A report on a user's own files says what it cannot conclude; these hold for any such report.
TEXT_LIMITS = (
    "that a stronger attack (longer fine-tuning, other quantisers, white-box extraction) recovers nothing "
    "the listed checks miss",
    "that knowledge outside the forget and retain files is unharmed: only the retain set was measured",
)
REWRITE_LIMIT = "that facts beyond the requests' own neighbourhood prompts are unharmed: only those were measured"
REPORT_KINDS = {
    "forget": "forgetting of world facts",
    "rewrite": "rewriting of world facts",
    "forget texts": "forgetting of a forget set of texts or question-answer pairs",
    "rewrite requests": "rewriting of facts given as requests, from their own prompts",
}


def describe_request(request: EditRequest | dict) -> str:
    """One sentence for what an edit was asked to do (a rewrite, an erasure, a forget set, several).

    A dict is read as a manifest or patch file holds it (:func:`~edit.edit_request.request_from_dict`).

    Examples:
        >>> from edit.request import Request
        >>> describe_request(Rewrite.one(Request("Ann Lee", "Ann Lee's pet is a", "cat", "dog", "pet")))
        "rewrote Ann Lee's pet from 'cat' to 'dog'"
        >>> describe_request(Request("Ann Lee", "Ann Lee's pet is a", "cat", None, "pet").to_dict())
        "erased Ann Lee's pet ('cat')"
        >>> describe_request({"name": "forget01", "forget_facts": 18, "retain_facts": 1782, "people": ["Ann Lee"]})
        'removed 18 facts about Ann Lee (forget01), with 1782 facts held as the retain set'
    """
    if isinstance(request, dict):
        request = request_from_dict(request)
    if isinstance(request, Mixed):
        request = request.rewrite
    if isinstance(request, Rewrite) and not request.single:
        parts = [describe_request(Rewrite.one(r)) for r in request.requests]
        more = f"; and {len(parts) - 5} more" if len(parts) > 5 else ""
        return f"{len(parts)} facts at once: " + "; ".join(parts[:5]) + more
    if isinstance(request, Rewrite):
        r = request.requests[0]
        what = f"{r.subject}'s {r.relation or 'fact'}"
        if r.new_object is None:
            return f"erased {what} ({r.true_object!r})"
        return f"rewrote {what} from {r.true_object!r} to {r.new_object!r}"
    if isinstance(request, Forget) and request.forget_facts is not None:
        who = ", ".join(request.people or ()) or (request.name if request.name is not None else "a forget set")
        return (
            f"removed {request.forget_facts} facts about {who} ({request.name}), "
            f"with {request.retain_facts or 0} facts held as the retain set"
        )
    text = canonical(request.to_dict())
    return "asked for " + (text if len(text) <= 200 else text[:200] + "...")


def report_verdict(report: dict) -> tuple[str, str]:
    """The verdict and its reason from a verification report's JSON, of any kind.

    Examples:
        >>> report_verdict({"kind": "forget texts", "verdict": "undecided", "reason": "no reference model"})
        ('undecided', 'no reference model')
        >>> report_verdict({"verdict": {"overall": "removed", "reason": "no check recovers them"}})
        ('removed', 'no check recovers them')
    """
    v = report.get("verdict")
    if isinstance(v, dict):  # world reports written before the verdict became one word held its details there
        return str(v.get("overall", "unknown")), str(v.get("reason", ""))
    return str(v or "unknown"), str(report.get("reason") or "")


def _num(v) -> str:
    return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def _edits(manifest: dict) -> list[str]:
    lines = []
    for i, e in enumerate(manifest["edits"], 1):
        tensors = ", ".join(
            f"`{n}`" + (f" (rank {d['rank']})" if d["rank"] is not None else " (dense)") for n, d in e["deltas"].items()
        )
        settings = {
            k: v for k, v in (e["settings"] or {}).items() if isinstance(v, (int, float, str, bool, type(None)))
        }
        shown = ", ".join(f"{k}={v}" for k, v in list(settings.items())[:8])
        where = f" at the sites of a {e['location']['method']} location" if e.get("location") else ""
        lines.append(
            f"{i}. **{e['method']}**{where}: {describe_request(e['request'])}. Changed {tensors}"
            + (f"; settings {shown}" if shown else "")
            + "."
        )
    if manifest.get("reverted"):
        lines.append(
            f"{len(manifest['reverted'])} earlier edit(s) were reverted before export ("
            + "; ".join(f"{r['method']}: {describe_request(r['request'])}" for r in manifest["reverted"])
            + "); each reverted tensor was checked bitwise against the weights that edit was made on."
        )
    return lines or ["Nothing: the weights are those of the base model."]


def _verification(report: dict | None, files: dict) -> list[str]:
    if report is None:
        return [
            "**No verification was run.** Nothing in this directory shows that the edit does what was asked, "
            "that it generalises, or that the rest of the model is unharmed; read the list of changes above "
            "as what was requested, not as a measured result."
        ]
    verdict, reason = report_verdict(report)
    base, kept, kind = report.get("baseline") or {}, report.get("retained") or {}, report.get("kind")
    if kind == "forget texts":
        ref = report.get("reference")
        base = {
            "model": ref or "no reference model",
            "description": "trained without the forget set" if ref else "no verdict without one",
        }
    if kind == "rewrite requests":
        base = {"model": "the model before the edit", "description": NO_NEW_FACT_MODEL}
    lines = [
        f"**Verdict: {verdict}.** {reason}".rstrip(),
        "",
        f"Report kind: {REPORT_KINDS.get(kind, kind or 'unknown')}.",
        "",
        f"Compared with: {base.get('model') or 'no baseline model'}"
        + (f" ({base['description']})" if base.get("description") else "")
        + ".",
    ]
    if kind == "rewrite requests":
        return lines + _rewrite_lines(report, files)
    checks = report.get("checks") or []
    if checks:
        meaning = {
            "forget": "the fraction of prompts on which the forgotten (true) object still ranks first, "
            "except forget quality (a KS p-value) and membership AUC",
            "rewrite": "the fraction of prompts on which the old object still ranks first",
            "forget texts": "the fraction of forget items the model still answers, "
            "except forget quality (a KS p-value) and membership AUC",
        }.get(kind)
        if meaning:
            lines += ["", f"Each check asks about the edited facts another way; its figure is {meaning}."]
        other = "reference" if kind == "forget texts" else "retain"
        lines += ["", f"| check | edited | original | {other} | status |", "|---|---|---|---|---|"]
        lines += [
            f"| {c.get('check')} | {_num(c.get('edited'))} | {_num(c.get('original'))} | "
            f"{_num(c.get('retain'))} | {c.get('status')} |"
            for c in checks
        ]
    if kept:
        lines += [
            "",
            f"Retained performance: accuracy {_num(kept.get('accuracy_before'))} before, "
            f"{_num(kept.get('accuracy_after'))} after; held-out loss {_num(kept.get('heldout_loss_before'))} "
            f"before, {_num(kept.get('heldout_loss_after'))} after.",
        ]
    states = report.get("states") or {}
    if kind == "forget texts" and states.get("edited"):
        before, after = states.get("original") or {}, states["edited"]
        lines += [
            "",
            f"Retain set: answer probability {_num(before.get('retain_answer_probability'))} before, "
            f"{_num(after.get('retain_answer_probability'))} after; model utility "
            f"{_num(before.get('model_utility'))} before, {_num(after.get('model_utility'))} after.",
        ]
    caveats = report.get("caveats") or []
    if caveats:
        lines += ["", "Caveats:", *(f"- {c}" for c in caveats)]
    lines += ["", "The full report: " + ", ".join(f"`{f}`" for f in files.values()) + "."]
    return lines


NO_NEW_FACT_MODEL = "no model was trained on the new facts"


def _rewrite_lines(report: dict, files: dict) -> list[str]:
    """The CounterFact scores before and after and the checks under which old objects return, as card lines."""
    states = report.get("states") or {}
    lines = []
    if states.get("edited") and states.get("original"):
        lines += ["", "| score | edited | original |", "|---|---|---|"]
        for k in ("efficacy", "paraphrase", "neighbourhood"):
            after, before = (states[s].get("counterfact", {}).get(k, {}) for s in ("edited", "original"))
            if after.get("n"):
                lines.append(f"| {k} | {_num(after.get('prob'))} | {_num(before.get('prob'))} |")
    checks = report.get("checks") or {}
    if checks:
        lines += ["", "Fraction of requests whose old object still outranks the new one under each check:", ""]
        lines += [f"- {c}: {_num((v or {}).get('old_returns'))}" for c, v in checks.items()]
    caveats = report.get("caveats") or []
    if caveats:
        lines += ["", "Caveats:", *(f"- {c}" for c in caveats)]
    lines += ["", "The full report: " + ", ".join(f"`{f}`" for f in files.values()) + "."]
    return lines


def model_card(manifest: dict, report: dict | None = None) -> str:
    """The README.md of an export, from its manifest and the verification report's dict.

    Examples:
        >>> from workbench.checkpoint.manifest import build
        >>> card = model_card(build({"name": "world", "source": "/m"}, [], {}, {}))
        >>> "No verification was run" in card, card.startswith("---")
        (True, True)

    Args:
        manifest: The export's manifest (:func:`workbench.checkpoint.manifest.build`).
        report: ``to_dict()`` of the verification report (a world ``Report`` or a ``TextReport``),
            or None if none was run.
    """
    base = manifest["base"]
    n = len(manifest["edits"])
    limits = list((report or {}).get("not_guaranteed") or ([] if report else NO_REPORT_LIMITS))
    if (report or {}).get("kind") == "forget texts":
        limits = [*report.get("cannot_conclude", []), *TEXT_LIMITS]
    if (report or {}).get("kind") == "rewrite requests":
        limits = [*report.get("cannot_conclude", []), TEXT_LIMITS[0], REWRITE_LIMIT]
    limits.append("the hashes show which weights these are and how they were made, not what the model knows")
    files = (manifest.get("report") or {}).get("files") or {}
    lines = [
        f"# Edited model: {base.get('name')}",
        "",
        f"A Hugging Face checkpoint (safetensors) made from **{base.get('name')}** (`{base.get('source')}`) "
        f"by {n} edit{'s' if n != 1 else ''}, written by knowledge-workbench "
        f"{manifest['versions'].get('knowledge-workbench')}. `AutoModelForCausalLM.from_pretrained` loads it "
        "without custom code.",
        "",
        "## What was changed",
        "",
        *_edits(manifest),
        "",
        "## Verification",
        "",
        *_verification(report, files),
        "",
        "## Not guaranteed",
        "",
        *(f"- {x[:1].upper() + x[1:]}" for x in limits),
        "",
        "## Checking this directory",
        "",
        "`workbench audit <this directory>` recomputes the hash of every tensor and file and the hash chain "
        "of the edits against `edit_manifest.json`. The manifest's `chain_head` (which `workbench audit` "
        "prints) commits to every tensor, every file, this card included, the base and every edit. Keep a "
        "copy of it elsewhere: whoever can rewrite the manifest can rewrite its hashes too.",
        "",
    ]
    return FRONT_MATTER + "\n".join(lines)
