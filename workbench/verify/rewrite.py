"""Did a rewrite take, and does the old object come back? The checks of a ROME or MEMIT rewrite.

A rewrite ("Ava Lund was born in Oslo" becomes Lima) is verified against the model before the
edit, since no model was trained on the new fact: CounterFact's efficacy, paraphrase and
neighbourhood scores; the probability mass left on the old object; where the old and the new
object rank under every check of :mod:`~workbench.verify.readings` (held-out phrasings,
in-context prompts, the logit lens and probes, relearning the person's other facts,
quantisation); and greedy generation, which asks for the answer itself rather than
scoring the candidates teacher-forced.

A request is ``rewritten`` when its edit prompt gives the new object and no check brings the old
one back first (on a majority of the check's prompts), ``partly rewritten`` when some check
does, ``not rewritten`` when the edit prompt still gives the old object.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from edit.counterfact import score_requests
from edit.edit_request import EditRequest, Mixed, Rewrite
from edit.request import Request
from workbench.core.metrics import sequence_logprobs
from workbench.core.tokens import encode_object, encode_prompts

REWRITE_VERDICTS = ("rewritten", "partly rewritten", "not rewritten")


def requests_of(request: EditRequest) -> list[Request] | None:
    """The rewrite requests an Edit's request holds (ROME: one, MEMIT: a batch); None if it holds none.

    Examples:
        >>> from edit.edit_request import Forget
        >>> r = Request("Ann Lee", "Ann Lee was born in", "Oslo", "Lima", "birthplace", ("Ann Lee is from",))
        >>> requests_of(Rewrite.one(r)) == [r], requests_of(Forget("forget01"))
        (True, None)
    """
    if isinstance(request, Mixed):
        request = request.rewrite
    return list(request.requests) if isinstance(request, Rewrite) else None


@torch.no_grad()
def greedy_continuations(handle, prompts: Sequence[str], max_new_tokens: int, batch_size: int = 256) -> list[list[int]]:
    """Greedy-decoded token ids after each prompt (no sampling: the model's own first answer).

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> f = h.world.facts()[0]
        >>> prompt = h.world.phrasings(f.relation)[0].prompt(f.subject)
        >>> out = greedy_continuations(h, [prompt], 2)
        >>> out[0][:1] == encode_object(h.tokenizer, prompt, f.object)[:1]
        True
    """
    tok = handle.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = encode_prompts(tok, list(prompts))
    out: list[list[int]] = []
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        # Left padding: every row's next token is then predicted at the same, last column.
        width = max(map(len, chunk))
        x = torch.tensor([[pad] * (width - len(c)) + c for c in chunk], device=handle.device)
        mask = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in chunk], device=handle.device)
        gen = handle.model.generate(
            input_ids=x, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad
        )
        out += [row[width:].tolist() for row in gen]
    return out


@dataclass(frozen=True)
class GenerationResult:
    """Greedy generation after the edit prompts and their paraphrases.

    Attributes:
        new: Fraction of prompts whose greedy answer starts with the new object.
        old: Fraction whose greedy answer starts with the old (true) object.
        prompts: Prompts generated from.
        examples: A few (prompt, answer) pairs, for reading.
    """

    new: float
    old: float
    prompts: int
    examples: list[tuple[str, str]]


def greedy_matches(handle, requests: Sequence[Request]) -> tuple[list[tuple[str, str]], list[bool], list[bool]]:
    """Greedy answers after every request's prompt and paraphrases (request by request, the prompt first).

    Returns (prompt, answer) pairs, and per pair whether the answer starts with the new object
    and whether it starts with the old (true) one.

    Examples:
        >>> import workbench
        >>> from edit.request import world_request
        >>> h = workbench.load("world")
        >>> p = list(h.world.people)[0]
        >>> new = "cat" if h.world.fact(p, "pet").object != "cat" else "dog"
        >>> answers, starts_new, starts_old = greedy_matches(h, [world_request(h.world, p, "pet", new)])
        >>> len(answers), starts_new[0], starts_old[0]
        (4, False, True)
    """
    tok = handle.tokenizer
    rows = [(q, r) for r in requests for q in (r.prompt, *r.paraphrases)]
    want = [(encode_object(tok, q, r.target), encode_object(tok, q, r.true_object)) for q, r in rows]
    longest = max(max(len(a), len(b)) for a, b in want)
    got = greedy_continuations(handle, [q for q, _ in rows], longest)
    new = [g[: len(a)] == a for g, (a, _) in zip(got, want, strict=True)]
    old = [g[: len(b)] == b for g, (_, b) in zip(got, want, strict=True)]
    answers = [(q, tok.decode(g, skip_special_tokens=True).strip()) for (q, _), g in zip(rows, got, strict=True)]
    return answers, new, old


def generation(handle, requests: Sequence[Request], examples: int = 3, matches=None) -> GenerationResult:
    """Greedy answers after every request's prompt and paraphrases; do they start with the new object?

    Examples:
        >>> import workbench
        >>> from edit.request import world_request
        >>> h = workbench.load("world")
        >>> p = list(h.world.people)[0]
        >>> new = "cat" if h.world.fact(p, "pet").object != "cat" else "dog"
        >>> g = generation(h, [world_request(h.world, p, "pet", new)])
        >>> g.new, g.old, g.prompts  # before any edit the model answers with the true object
        (0.0, 1.0, 4)

    Args:
        matches: :func:`greedy_matches` of these requests on this model, if the caller has them.
    """
    answers, new, old = matches or greedy_matches(handle, requests)
    # Only the first `examples` rows are shown.
    return GenerationResult(sum(new) / len(answers), sum(old) / len(answers), len(answers), answers[:examples])


def old_mass(handle, requests: Sequence[Request]) -> float:
    """Mean P(old object | prompt) over the edit prompts and their paraphrases, multi-token objects multiplied out.

    Examples:
        >>> import workbench
        >>> from edit.request import world_request
        >>> h = workbench.load("world")
        >>> p = list(h.world.people)[0]
        >>> new = "cat" if h.world.fact(p, "pet").object != "cat" else "dog"
        >>> old_mass(h, [world_request(h.world, p, "pet", new)]) > 0.5
        True
    """
    tok = handle.tokenizer
    rows = [(q, r.true_object) for r in requests for q in (r.prompt, *r.paraphrases)]
    prefixes = encode_prompts(tok, [q for q, _ in rows])
    targets = [encode_object(tok, q, o) for q, o in rows]
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    return float(sequence_logprobs(handle.model, prefixes, targets, pad_id=pad).exp().mean())


def efficacy(handle, requests: Sequence[Request]) -> list[bool]:
    """Per request, whether the new object ranks first among the candidates on the edit prompt
    (CounterFact's efficacy by rank, :func:`edit.counterfact.score_requests`).

    Examples:
        >>> import workbench
        >>> from edit.request import world_request
        >>> h = workbench.load("world")
        >>> p = list(h.world.people)[0]
        >>> efficacy(h, [world_request(h.world, p, "pet", "cat" if h.world.fact(p, "pet").object != "cat" else "dog")])
        [False]
    """
    return score_requests(handle, list(requests), per_request=True)["efficacy"]["each"]


def surface_figures(handle, requests: Sequence[Request], matches=None) -> dict:
    """CounterFact scores, per-request efficacy, the old object's probability and greedy generation.

    All are read from the model as it is now; ``matches`` (:func:`greedy_matches` of the same
    requests on the same model) spares generating the greedy answers again.
    """
    scores = score_requests(handle, list(requests), per_request=True)
    each = scores["efficacy"].pop("each")
    return {
        "counterfact": scores,
        "efficacy": each,
        "old_mass": old_mass(handle, requests),
        "generation": asdict(generation(handle, requests, matches=matches)),
    }


def request_verdicts(
    requests: Sequence[Request], edited, new_columns: torch.Tensor, efficacy: Sequence[bool], majority: float = 0.5
) -> tuple[list[dict], dict]:
    """Per request its verdict and the checks that bring the old object back; per check the summary.

    Args:
        requests: The rewrite requests, in the order of ``edited.facts``.
        edited: :class:`~workbench.verify.readings.Readings` of the edited model on the requests' facts.
        new_columns: Per fact, the new object's column among the candidates.
        efficacy: Per request, whether the edit prompt now gives the new object.
        majority: An object is first under a check when it ranks first on more than this
            fraction of the check's prompts.

    Returns:
        (rows, checks): rows of {subject, relation, old, new, verdict, old_returns_under}, and per
        check {old_first, new_first, old_mean_rank} as fractions / means over requests.
    """
    old_first = {c: edited.first(c) for c in edited.tables}
    new_first = {c: edited.first(c, new_columns) for c in edited.tables}
    true_columns = _true_columns(edited)
    ranks = {c: edited.mean_rank(c, true_columns) for c in edited.tables}
    rows = []
    for i, r in enumerate(requests):
        back = [c for c in edited.tables if not torch.isnan(old_first[c][i]) and old_first[c][i] > majority]
        verdict = "not rewritten" if not efficacy[i] else "partly rewritten" if back else "rewritten"
        rows.append(
            {
                "subject": r.subject,
                "relation": r.relation,
                "old": r.true_object,
                "new": r.new_object,
                "verdict": verdict,
                "old_returns_under": back,
            }
        )
    checks = {
        c: {
            "old_first": _nanmean(old_first[c] > majority, old_first[c]),
            "new_first": _nanmean(new_first[c] > majority, new_first[c]),
            "old_mean_rank": _nanmean(ranks[c], ranks[c]),
        }
        for c in edited.tables
    }
    return rows, checks


def _true_columns(readings) -> torch.Tensor:
    columns = torch.zeros(len(readings.facts), dtype=torch.long)
    for t in readings.tables.values():
        columns[t.fact] = t.true
    return columns


def _nanmean(values: torch.Tensor, mask_from: torch.Tensor) -> float:
    keep = ~torch.isnan(mask_from)
    return float(values[keep].float().mean()) if bool(keep.any()) else float("nan")


def overall_rewrite(rows: Sequence[dict]) -> tuple[str, str]:
    """The verdict over all requests and a sentence with the counts.

    Examples:
        >>> overall, sentence = overall_rewrite([{"verdict": "rewritten"}, {"verdict": "partly rewritten"}])
        >>> overall
        'partly rewritten'
        >>> sentence
        '1 of 2 requests rewritten, 1 partly (the old object returns under some check), 0 not rewritten'
    """
    counts = {v: sum(r["verdict"] == v for r in rows) for v in REWRITE_VERDICTS}
    overall = max((v for v in REWRITE_VERDICTS if counts[v]), key=REWRITE_VERDICTS.index, default="rewritten")
    return overall, (
        f"{counts['rewritten']} of {len(rows)} requests rewritten, {counts['partly rewritten']} partly "
        f"(the old object returns under some check), {counts['not rewritten']} not rewritten"
    )


__all__ = [
    "GenerationResult",
    "REWRITE_VERDICTS",
    "efficacy",
    "generation",
    "greedy_continuations",
    "greedy_matches",
    "old_mass",
    "overall_rewrite",
    "request_verdicts",
    "requests_of",
    "surface_figures",
]
