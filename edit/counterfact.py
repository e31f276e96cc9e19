"""CounterFact-style scores of edit requests: did the edit take, generalise, and spare neighbours?

For a rewrite (Meng et al. 2022): efficacy is P(new) > P(true) on the edit prompt, paraphrase
the same on the request's paraphrases (never seen by the editor), neighbourhood P(true) >
P(new) on other subjects' prompts (leaving out subjects whose fact is edited in the same
batch). Each also as accuracy among the relation's candidates:
the new object (or, for neighbours, their own true object) ranks first. For an erasure the
edit and paraphrase prompts count as a success when the true object is no longer first, in
probability against the best other candidate and among candidates alike.

All prompts of all requests are scored in shared batched passes.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from edit.request import Request
from workbench.core.metrics import candidate_logprobs

KINDS = ("efficacy", "paraphrase", "neighbourhood")


def score_requests(handle, requests: list[Request], per_request: bool = False) -> dict[str, dict]:
    """Efficacy, paraphrase and neighbourhood scores of ``requests`` on ``handle``'s model as it is now.

    Examples:
        >>> import workbench
        >>> from edit.request import world_request
        >>> h = workbench.load("world", device="cpu")
        >>> p = list(h.world.people)[0]
        >>> new = [c for c in h.world.relation("pet").candidates if c != h.world.fact(p, "pet").object][0]
        >>> s = score_requests(h, [world_request(h.world, p, "pet", new)])
        >>> s["efficacy"]["prob"], s["neighbourhood"]["accuracy"]  # before any edit
        (0.0, 1.0)

    Returns:
        kind -> {"prob": fraction by the probability comparison, "accuracy": fraction by rank
        among candidates, "n": prompts scored}; with ``per_request``, efficacy also has "each":
        per request, whether its edit prompt passes by rank among candidates.
    """
    # (kind, prompt, object that should win, object that should lose (None: any other), candidates)
    rows: list[tuple[str, str, str, str | None, tuple[str, ...]]] = []
    # A neighbour whose own fact is edited in the same batch is no neighbour: its answer is
    # meant to change.
    edited: dict[str | None, set[str]] = defaultdict(set)
    for r in requests:
        edited[r.relation].add(r.subject)
    longest = max(len(r.subject.split()) for r in requests) if requests else 0
    for r in requests:
        cands = r.candidates or tuple(dict.fromkeys([r.true_object, r.target]))
        win, lose = (None, r.true_object) if r.erase else (r.new_object, r.true_object)
        rows += [("efficacy", r.prompt, win, lose, cands)]
        rows += [("paraphrase", q, win, lose, cands) for q in r.paraphrases]
        # Neighbours must keep their own object against the edit's new one (an erasure has none:
        # they must keep it against every other candidate).
        rows += [
            ("neighbourhood", q, o, None if r.erase else r.new_object, tuple(dict.fromkeys(cands + (o,))))
            for q, o in r.neighbours
            if not _names_edited(q, edited.get(r.relation, set()), longest)
        ]
    by_cands: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        by_cands[row[4]].append(i)
    prob_ok, acc_ok = torch.zeros(len(rows)), torch.zeros(len(rows))
    for cands, idx in by_cands.items():
        lp = candidate_logprobs(handle.model, handle.tokenizer, [rows[i][1] for i in idx], list(cands))
        for j, i in enumerate(idx):
            _, _, win, lose, _ = rows[i]
            scores = dict(zip(cands, lp[j].tolist(), strict=True))
            if win is None:  # erasure: the true object must lose to something
                others = max(v for c, v in scores.items() if c != lose)
                prob_ok[i] = acc_ok[i] = float(scores[lose] < others)
            else:
                prob_ok[i] = (
                    float(scores[win] > scores[lose])
                    if lose is not None
                    else float(scores[win] >= max(scores.values()))
                )
                acc_ok[i] = float(max(scores, key=scores.get) == win)
    out = {}
    for kind in KINDS:
        sel = torch.tensor([row[0] == kind for row in rows])
        n = int(sel.sum())
        out[kind] = {
            "prob": float(prob_ok[sel].mean()) if n else float("nan"),
            "accuracy": float(acc_ok[sel].mean()) if n else float("nan"),
            "n": n,
        }
    if per_request:  # one efficacy row per request, in request order
        out["efficacy"]["each"] = [bool(acc_ok[i]) for i, row in enumerate(rows) if row[0] == "efficacy"]
    return out


def _names_edited(prompt: str, subjects: set[str], longest: int) -> bool:
    # Word n-grams of the prompt (up to the longest subject) looked up in the set: linear in the
    # prompt, not in the batch.
    if not subjects:
        return False
    words = prompt.split()
    return any(" ".join(words[i : i + n]) in subjects for n in range(1, longest + 1) for i in range(len(words) - n + 1))
