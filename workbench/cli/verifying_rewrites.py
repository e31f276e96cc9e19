"""``workbench verify --patch P`` on a model without a fact world: a rewrite, from its requests' prompts.

Examples:
    >>> print(render_rewrite_report({"model": "m", "verdict": "rewritten", "reason": "1 of 1 requests rewritten",
    ...     "states": {}, "checks": {}, "requests": [], "cannot_conclude": [], "caveats": [], "seconds": 1.0}))
    rewrite on m: REWRITTEN
      1 of 1 requests rewritten
      1s
"""

from __future__ import annotations

from workbench.cli.common import CliError, Output


def render_rewrite_report(o: dict) -> str:
    """The human-readable form of a :class:`~workbench.verify.rewrite_texts.RewriteTextReport`'s dict."""
    lines = [f"rewrite on {o['model']}: {o['verdict'].upper()}", f"  {o['reason']}"]
    if o["states"]:
        lines.append(f"  {'score':<16}{'edited':>8}{'before':>8}")
        for k in ("efficacy", "paraphrase", "neighbourhood"):
            e, b = (o["states"][s]["counterfact"][k] for s in ("edited", "original"))
            if e["n"]:
                lines.append(f"  {k:<16}{e['prob']:>8.1%}{b['prob']:>8.1%}")
        g = {s: o["states"][s]["generation"] for s in ("edited", "original")}
        lines.append(f"  {'greedy: new':<16}{g['edited']['new']:>8.1%}{g['original']['new']:>8.1%}")
        lines.append(f"  {'greedy: old':<16}{g['edited']['old']:>8.1%}{g['original']['old']:>8.1%}")
    for check, c in o["checks"].items():
        lines.append(f"  old object returns under {check}: {c['old_returns']:.0%} of requests")
    for r in o["requests"]:
        if r["verdict"] != "rewritten":
            back = f" (old object back under {', '.join(r['old_returns_under'])})" if r["old_returns_under"] else ""
            lines.append(f"    {r['subject']}: {r['verdict']}{back}")
    lines += [f"  cannot conclude: {c}" for c in o["cannot_conclude"]]
    lines += [f"  caveat: {c}" for c in o["caveats"]]
    if o.get("html"):
        lines.append(f"  report written to {o['html']}")
    lines.append(f"  {o['seconds']:.0f}s")
    return "\n".join(lines)


def verify_rewrite_patch(h, edit, as_json: bool, html: str | None) -> None:
    """Apply ``edit`` to ``h`` and print its rewrite report (CliError for what cannot be verified this way)."""
    from edit.edit import EditError
    from workbench.verify.report import VerifyError
    from workbench.verify.rewrite_texts import verify_rewrite_texts

    try:
        edit.apply(h.model)
    except EditError as e:
        raise CliError(f"{e} (the patch was made on another model; pass --model)") from None
    try:
        report = verify_rewrite_texts(h, edit)
    except VerifyError as e:
        raise CliError(str(e)) from None
    out = report.to_dict()
    out["html"] = str(report.write_html(html)) if html else None
    Output(as_json).emit(out, render_rewrite_report)
