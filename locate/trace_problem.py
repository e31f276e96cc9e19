"""What a causal trace asks: the prompt's tokens, the corrupted subject, and the cells to restore.

:func:`prepare` checks a trace's input and builds its :class:`TraceProblem` once; every way of
running the trace (batched, one forward at a time, nnsight, attribution patching, a single
restoration) reads the same problem, so they corrupt and score alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

TRACE_COMPONENTS = ("resid", "mlp", "attn")


class TraceError(ValueError):
    """Bad causal-trace input: unknown component, window out of range, no counterfactual subject."""


@dataclass(frozen=True)
class TraceSettings:
    """Settings of a causal trace; defaults follow ROME where a 4-layer model allows.

    Examples:
        >>> TraceSettings().noise, TraceSettings(window=3).window
        (3.0, 3)

    Args:
        noise: Gaussian noise std, as a multiple of the std of all entries of the token embedding
            matrix (ROME: 3x the std of subject-token embeddings over a corpus; the matrix-wide std
            needs no corpus and comes close to the name tokens' own: see docs/locate.md#noise-scale).
        samples: Noise samples; probabilities are averaged over them (ROME: 10).
        window: Consecutive layers restored together for "mlp" and "attn", centred as in ROME
            (layers l - window // 2 .. l + ceil(window / 2) - 1, clipped). "resid" always restores
            one layer, as ROME does. ROME used 10 on 48 layers; 1 suits 4 layers.
        seed: Seed of the noise generator (a CPU generator: same noise on every device).
        corruption: "noise" (embeddings plus noise) or "counterfactual" (another person's name
            of the same token length; deterministic, so ``samples`` is ignored and 1 is used).
        counterfactual: The replacement subject; default the next person after the subject, in
            world order, whose name has as many tokens and whose object for the relation differs.
        batch_size: Rows per batched forward pass, to bound memory.
    """

    noise: float = 3.0
    samples: int = 10
    window: int = 1
    seed: int = 0
    corruption: Literal["noise", "counterfactual"] = "noise"
    counterfactual: str | None = None
    batch_size: int = 256


@dataclass
class TraceProblem:
    ids: Int[Tensor, "1 seq"]  # prompt + object tokens but the last (teacher forcing)
    n_prompt: int
    obj: list[int]
    span: tuple[int, int]
    corrupt: Float[Tensor, "sample span d_model"]  # token embeddings at the subject, per sample
    cells: list[tuple[str, int, int, tuple[int, ...]]]  # (component, token, layer, layers restored)
    replacement: str | None = None
    sites: list[tuple[int, str]] = field(default_factory=list)  # (layer, component) ever restored


def layer_window(layer: int, window: int, n_layers: int) -> tuple[int, ...]:
    return tuple(range(max(0, layer - window // 2), min(n_layers, layer - (-window // 2))))


def _replacement(handle, prompt: str, subject: str, obj: str, span: tuple[int, int]) -> str:
    world = handle.world
    if world is None:
        raise TraceError("counterfactual corruption needs a fact world or settings.counterfactual")
    relation = world.parse_prompt(prompt)[1]
    people = list(world.people)
    start = people.index(subject) + 1 if subject in people else 0
    for p in people[start:] + people[:start]:
        if p == subject or (relation and world.people[p][relation] == obj):
            continue
        if handle.subject_span(_swap(prompt, subject, p), p) == span:
            return p
    raise TraceError(f"no person with as many tokens as {subject!r} for a counterfactual")


def _swap(prompt: str, subject: str, other: str) -> str:
    i = prompt.rfind(subject)
    return prompt[:i] + other + prompt[i + len(subject) :]


def prepare(
    handle, prompt: str, subject: str, target_object: str, settings: TraceSettings, components: tuple[str, ...]
) -> TraceProblem:
    n_layers = handle.sites.n_layers
    bad = [c for c in components if c not in TRACE_COMPONENTS]
    if bad or not components:
        raise TraceError(f"unknown component {bad[0] if bad else None!r}; expected some of {TRACE_COMPONENTS}")
    if not 1 <= settings.window <= n_layers:
        raise TraceError(f"window {settings.window} out of range 1..{n_layers} for a {n_layers}-layer model")
    if settings.samples < 1 or settings.batch_size < 1 or settings.noise < 0:
        raise TraceError("samples and batch_size must be >= 1 and noise >= 0")
    if settings.corruption not in ("noise", "counterfactual"):
        raise TraceError(f"unknown corruption {settings.corruption!r}; expected 'noise' or 'counterfactual'")
    prompt_ids, obj = handle.encode_fact(prompt, target_object)
    span = handle.subject_span(prompt, subject)
    wte = handle.sites.module(handle.model, None, "embed").weight.detach()
    replacement = None
    if settings.corruption == "noise":
        g = torch.Generator().manual_seed(settings.seed)
        noise = torch.randn(settings.samples, span[1] - span[0], wte.shape[1], generator=g)
        clean = wte[torch.tensor(prompt_ids[span[0] : span[1]], device=wte.device)].float().cpu()
        corrupt = clean + settings.noise * wte.float().std().cpu() * noise
    else:
        replacement = settings.counterfactual or _replacement(handle, prompt, subject, target_object, span)
        swapped = _swap(prompt, subject, replacement)
        if handle.subject_span(swapped, replacement) != span or len(handle.encode(swapped)[0]) != len(prompt_ids):
            raise TraceError(f"counterfactual {replacement!r} does not tokenize like {subject!r}")
        corrupt = wte[handle.encode(swapped)[0, span[0] : span[1]]].float().cpu()[None]
    cells = [
        (c, t, layer, layer_window(layer, settings.window if c != "resid" else 1, n_layers))
        for c in components
        for t in range(len(prompt_ids))
        for layer in range(n_layers)
    ]
    ids = torch.tensor([prompt_ids + obj[:-1]], device=handle.device)
    used = sorted({(layer, c) for c, _, _, ls in cells for layer in ls})
    return TraceProblem(ids, len(prompt_ids), obj, span, corrupt.to(handle.dtype), cells, replacement, used)


def object_prob(
    logits: Float[Tensor, "batch seq vocab"], problem: TraceProblem, start: int = 0
) -> Float[Tensor, " batch"]:
    # Position j predicts token j + 1: object token k is read at n_prompt - 1 + k (less `start`
    # when the logits begin at position `start`).
    pos = torch.arange(len(problem.obj), device=logits.device) + problem.n_prompt - 1 - start
    logp = torch.log_softmax(logits[:, pos].float(), -1)[:, torch.arange(len(problem.obj)), problem.obj]
    return logp.sum(-1).exp().cpu()


def corrupt_from(x: Tensor, problem: TraceProblem, samples: Tensor, start: int) -> Tensor:
    # Token embeddings from position `start` on, with the subject's replaced per row.
    a, b = problem.span
    if b <= start:
        return x
    x = x.clone()
    x[:, max(a, start) - start : b - start] = problem.corrupt[samples, max(a, start) - a :].to(x.device, x.dtype)
    return x


def set_rows(x: Tensor, idx: tuple[Tensor, Tensor], clean: Float[Tensor, "seq d_model"], start: int = 0) -> Tensor:
    # x holds positions from `start` on; token indices are absolute.
    rows, toks = idx
    x = x.clone()
    x[rows.to(x.device), (toks - start).to(x.device)] = clean[toks.to(clean.device)].to(x.device, x.dtype)
    return x
