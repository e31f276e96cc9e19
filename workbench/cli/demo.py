"""``workbench demo``: the three steps on one fact of the default world, in a few seconds.

Load the world model, pick a fact, show what the model predicts, trace where the fact lives,
rewrite it with ROME where the trace points, score the edit, revert it bitwise, and summarise
the model's accuracy.
"""

from __future__ import annotations

import time

from workbench.cli.common import DEVICE, DTYPE, JSON, MODEL, Output, format_probs, load_model, world_of
from workbench.core.hashing import tensor_hash

# The editors, locators and checks load when a command runs, not when the CLI starts: they pull
# in transformers' model classes and scipy, seconds that --help and a mistyped option should not
# wait for.


def demo(model: str = MODEL, dtype: str | None = DTYPE, device: str | None = DEVICE, as_json: bool = JSON) -> None:
    """Load the world model, pick a fact, show what it predicts and where the fact lives, and summarise."""
    from edit.counterfact import score_requests
    from edit.request import world_request
    from edit.rome import rome
    from locate.causal_trace import TraceSettings, trace

    t0 = time.perf_counter()
    h = load_model(model, dtype, device)
    world = world_of(h)
    fact = world.fact(list(world.people)[7], "employer")
    prompt = world.phrasings(fact.relation, held_out=True)[0].prompt(fact.subject)
    span = h.subject_span(prompt, fact.subject)
    ranked = h.rank_candidates(prompt, list(world.relation(fact.relation).candidates))[:3]
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
                f"model      {m['name']} ({m['architecture']}, {m['layers']} layers, "
                f"{m['parameters']:,} parameters, {m['device']})",
                f"world      {m['world']['people']} people, {m['world']['facts']} facts, "
                f"relations: {', '.join(m['world']['relations'])}",
                f"fact       {fact.subject} / {fact.relation} / {fact.object}",
                f"prompt     {prompt!r}  (held-out phrasing, never trained on)",
                f"subject    tokens {span[0]}..{span[1] - 1}: {' '.join(o['tokens'][span[0] : span[1]])}",
                "predicts",
                format_probs([(c["object"], c["prob"]) for c in o["top_candidates"]]),
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
                f"{s['trained_accuracy']:.1%}, held-out phrasings {s['heldout_accuracy']:.1%}; "
                f"held-out loss {s['heldout_loss']:.3f}",
                f"time       {o['seconds']}s",
            ]
        )

    Output(as_json).emit(out, render)
