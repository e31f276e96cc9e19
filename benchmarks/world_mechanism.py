"""Where a world model keeps its facts: the picture real models show, measured over many facts.

Real models (ROME's GPT-2 XL, GPT-J) enrich the subject's last token in early-to-middle MLPs and
read the attribute out at the prompt's last token later. For a world model this measures, over
``--facts`` facts (the same number per relation, the framed phrasings, so tokens come before the
subject):

* the causal trace's indirect effect (restored minus corrupted P(object), 10 noise samples) by
  layer, for each component, averaged over the facts at five kinds of token: the subject's
  first, middle and last tokens, the tokens after the subject, and the prompt's last token;
* where ROME's layer lands: the layer of the largest mean MLP effect at the subject's last token;
* linear-probe accuracy for each relation at the name's last token, by layer: a multinomial
  probe (``workbench.verify.probe.fit_probe``) trained on 80% of the people's states and tested
  on the other 20%, against the prior 1 / candidates. Knowledge read at the name means the
  model has enriched the subject; knowledge read only at the prompt's end means it looks the
  fact up there.

Results are merged into benchmarks/results/world_mechanism.json under the model's name.
Run: ``.venv/bin/python -m benchmarks.world_mechanism [--model world] [--facts 120]``
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch

import workbench
from locate.causal_trace import TraceSettings, trace
from workbench.core.handle import ModelHandle
from workbench.verify.probe import fit_probe, last_token_states

OUT = Path(__file__).parent / "results" / "world_mechanism.json"
KINDS = ("subject_first", "subject_middle", "subject_last", "after_subject", "last")


def pick_facts(world, n: int, seed: int = 0, people=None) -> list[tuple[str, str, str]]:
    """``n`` (prompt, subject, object) triples, as many per relation, in framed trained phrasings.

    ``people`` (default: everybody) limits the subjects to those people.
    """
    rng = random.Random(seed)
    out = []
    for relation in world.relations:
        framed = [ph for ph in world.phrasings(relation) if ph.frame > 0]
        facts = rng.sample(world.facts(people, relations=[relation]), n // len(world.relations))
        out += [(rng.choice(framed).prompt(f.subject), f.subject, f.object) for f in facts]
    return out


def token_kinds(n_tokens: int, span: tuple[int, int]) -> dict[str, list[int]]:
    """Positions of each kind of token; a one-token subject is its own first and last token."""
    a, b = span
    return {
        "subject_first": [a],
        "subject_middle": list(range(a + 1, b - 1)),
        "subject_last": [b - 1],
        "after_subject": list(range(b, n_tokens - 1)),
        "last": [n_tokens - 1],
    }


def traced(h, facts) -> dict:
    settings = TraceSettings()
    sums = {c: {k: torch.zeros(h.n_layers) for k in KINDS} for c in ("resid", "mlp", "attn")}
    counts = dict.fromkeys(KINDS, 0)
    t0 = time.perf_counter()
    for prompt, subject, obj in facts:
        r = trace(h, prompt, subject, obj, settings)
        kinds = token_kinds(len(r.tokens), r.subject_span)
        for kind, positions in kinds.items():
            if not positions:
                continue
            counts[kind] += 1
            for c in sums:
                sums[c][kind] += r.indirect_effect(c)[positions].mean(0)
    mean = {c: {k: (v / max(1, counts[k])).tolist() for k, v in per.items()} for c, per in sums.items()}
    mlp_subject = torch.tensor(mean["mlp"]["subject_last"])
    return {
        "facts": len(facts),
        "facts_with_kind": counts,
        "indirect_effect": mean,
        "rome_layer": int(mlp_subject.argmax()),
        "best_mlp_effect": {k: max(mean["mlp"][k]) for k in KINDS},
        "seconds": round(time.perf_counter() - t0, 1),
    }


def probed(h, seed: int = 0) -> dict:
    world = h.world
    people = list(world.people)
    random.Random(seed).shuffle(people)
    cut = int(0.8 * len(people))
    frame = "According to the registry , {s}"  # the name's last token is the prompt's last token
    states = last_token_states(h, [frame.format(s=p) for p in people])  # [layer, person, d]
    out = {}
    for relation in world.relations:
        candidates = list(world.relation(relation).candidates)
        y = torch.tensor([candidates.index(world.people[p][relation]) for p in people])
        accuracy = []
        for layer in range(states.shape[0]):
            x = states[layer]
            mu, sd = x[:cut].mean(0), x[:cut].std(0) + 1e-6
            w, b = fit_probe((x[:cut] - mu) / sd, y[:cut], len(candidates))
            pred = (((x[cut:] - mu) / sd) @ w + b).argmax(1)
            accuracy.append(round(float((pred == y[cut:]).float().mean()), 3))
        out[relation] = {"accuracy_by_layer": accuracy, "prior": round(1 / len(candidates), 3)}
    return {"train_people": cut, "test_people": len(people) - cut, "relations": out}


def measure(model: str | ModelHandle = "world", n_facts: int = 120) -> dict:
    """The trace by kind of token and the probes at the name, for one world model (a name or a loaded handle)."""
    h = workbench.load(model, device="cpu") if isinstance(model, str) else model
    if h.world is None:
        raise SystemExit(f"{h.name} has no fact world: this benchmark reads a world model")
    return {
        "layers": h.n_layers,
        "people": len(h.world.people),
        "trace": traced(h, pick_facts(h.world, n_facts)),
        "probe_at_name_last_token": probed(h),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="world")
    p.add_argument("--facts", type=int, default=120)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = measure(args.model, args.facts)
    stored = json.loads(OUT.read_text()) if OUT.exists() else {}
    stored[args.model] = result
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(stored, indent=1) + "\n")
    t = result["trace"]
    print(f"{args.model}: {t['facts']} facts traced in {t['seconds']} s; ROME's layer {t['rome_layer']}")
    for kind in KINDS:
        row = " ".join(f"{v:.3f}" for v in t["indirect_effect"]["mlp"][kind])
        print(f"  MLP indirect effect at {kind:>14}, by layer: {row}")
    for relation, v in result["probe_at_name_last_token"]["relations"].items():
        print(f"  probe at the name's last token, {relation:>10}: {v['accuracy_by_layer']} (prior {v['prior']})")
    return result


if __name__ == "__main__":
    main()
