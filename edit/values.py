"""Target values for rank-one editors: what an MLP should output, at one position, to make an edit true.

ROME and MEMIT first find, per request, a vector delta that, added to layer l's MLP output at the
key position, makes the prompt continue with the new object (or stop giving the true one),
across random short prefixes, while the subject's other facts keep their predictions (KL) and
delta stays small (weight decay, norm clamp). Requests are independent, so all of them are
optimised together in one batch: one forward and backward pass per step for every request,
rather than one optimisation after another as in the original MEMIT code. Adam is elementwise,
so each request's trajectory is the one it would have alone; a request that has converged is
frozen while the rest go on. The model is causal and the delta enters at the key position, so
every row's tokens before it are run once and kept as keys and values; each step runs only the
key position and the object's tokens after it (one or two tokens a row, instead of a dozen), and
starts after the edited layer: blocks up to it compute the same every step, so their output is
read once (:mod:`workbench.core.block_skip`).
A request's identical rows (sampled prefixes repeat: the world model's 10 are 3 distinct texts)
run once, weighted by how often they occur, so the objective is the same mean over prefixes.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from edit.key_states import TokenRole, distinct, key_position, weighted_mean, with_context
from edit.request import Request
from workbench.core.block_skip import blocks_skipped
from workbench.core.padding import pad_right
from workbench.core.prefix_cache import PrefixCacheError, Prefixes
from workbench.core.tokens import encode_objects, encode_prompts


@dataclass(frozen=True)
class ValueSettings:
    """Settings of the value optimisation; defaults are ROME's for GPT-2 XL.

    Examples:
        >>> ValueSettings().steps, ValueSettings().lr
        (20, 0.5)

    Args:
        steps: Most Adam steps.
        lr: Adam learning rate, in units of the RMS of the original output at the key (so one
            setting suits layers and models whose activations differ in scale by 100x).
        weight_decay: Weight of ||delta||^2 / ||original output||^2.
        clamp_norm: ||delta|| is kept at most this multiple of ||original output||.
        kl_factor: Weight of KL(original || edited) on the subject's other facts.
        erase_kl: For erasures, weight of KL between the original and edited distributions with
            the true object's first token removed: pushes the true object down without steering
            the model to one chosen wrong object.
        reference: What the norms in ``lr``, ``weight_decay`` and ``clamp_norm`` are taken of:
            "mlp", the MLP output at the key (ROME), or "resid", the residual stream after the
            layer (MEMIT, whose targets are residual states).
        early_stop: A request stops once its fit (the new object's NLL, or the erase loss) falls below this.
        batch_requests: Requests optimised together per batch (bounds memory).
        reuse_prefix: Run every row's tokens before the key position once, and each step only the
            key position and what follows it (the delta cannot change anything before it: the
            model is causal). Off: every step runs every token, as the original ROME and MEMIT
            code does; the values are the same up to float rounding.
    """

    steps: int = 20
    lr: float = 0.5
    weight_decay: float = 0.5
    clamp_norm: float = 4.0
    kl_factor: float = 0.0625
    erase_kl: float = 1.0
    early_stop: float = 0.05
    batch_requests: int = 64
    reference: Literal["mlp", "resid"] = "mlp"
    reuse_prefix: bool = True


@dataclass
class Values:
    """Optimised deltas and what they were optimised at.

    Args:
        delta: Per request, the vector added to the MLP output at the key position.
        original: Per request, the mean original state the norms refer to (MLP output or
            residual stream at the key, by ``reference``), over contexts.
        losses: Per request, the objective at each step it ran.
    """

    delta: Float[Tensor, "request d_model"]
    original: Float[Tensor, "request d_model"]
    losses: list[list[float]] = field(default_factory=list)


_CONTEXTS: dict[tuple, list[str]] = {}


@torch.no_grad()
def contexts(handle, n: int = 10, length: int = 5, seed: int = 0) -> list[str]:
    """The empty prefix plus ``n`` short texts sampled from the model, to vary what precedes a prompt.

    Sampled once per model and cached, as ROME does, so every edit in a session sees the same.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world", device="cpu")
        >>> c = contexts(h, n=3)
        >>> len(c), c[0], c == contexts(h, n=3)
        (4, '', True)
    """
    key = (id(handle.model), n, length, seed)
    if n == 0:
        return [""]
    if key not in _CONTEXTS:
        tok = handle.tokenizer
        start = torch.tensor(
            [[tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id]] * n, device=handle.device
        )
        g = torch.Generator(device="cpu").manual_seed(seed)
        ids = start
        for _ in range(length):
            probs = torch.softmax(handle.model(ids).logits[:, -1].float().cpu(), -1)
            ids = torch.cat([ids, torch.multinomial(probs, 1, generator=g).to(ids.device)], 1)
        texts = tok.batch_decode(ids[:, 1:], skip_special_tokens=True)
        _CONTEXTS[key] = [""] + [" ".join(t.split()) for t in texts]
    return _CONTEXTS[key]


@dataclass
class _Rows:
    ids: list[list[int]]
    pos: list[int]  # key position per row
    owner: list[int]  # request index per row
    target: list[list[int]]  # object tokens (edit rows) or [] (keep rows)
    n_prompt: list[int]
    weight: list[int]  # how many of the request's texts this row stands for


def _rows(handle, requests: list[Request], ctxs: list[str], role: TokenRole) -> tuple[_Rows, _Rows]:
    tok = handle.tokenizer
    # Every text of every request, tokenised in a few batched calls rather than one call per row.
    edit_texts, edit_weight = distinct([(b, with_context(c, r.prompt)) for b, r in enumerate(requests) for c in ctxs])
    keep_texts, keep_weight = distinct([(b, text) for b, r in enumerate(requests) for text in r.keep])
    texts = [t for _, t in edit_texts + keep_texts]
    ids = encode_prompts(tok, texts)
    objects = encode_objects(tok, [t for _, t in edit_texts], [requests[b].target for b, _ in edit_texts])
    pos = [
        len(p) - 1 if role == "last" else key_position(tok, t, requests[b].subject, role)
        for p, (b, t) in zip(ids, edit_texts + keep_texts)
    ]
    n = len(edit_texts)
    edit = _Rows(
        [p + o[:-1] for p, o in zip(ids[:n], objects)],
        pos[:n],
        [b for b, _ in edit_texts],
        objects,
        [len(p) for p in ids[:n]],
        edit_weight,
    )
    keep = _Rows(
        ids[n:], pos[n:], [b for b, _ in keep_texts], [[] for _ in keep_texts], [len(p) for p in ids[n:]], keep_weight
    )
    return edit, keep


def statistics_position(role: TokenRole) -> Literal["all", "last"]:
    """Which keys an editor keyed at ``role`` preserves: those at prompts' ends for "last", all tokens otherwise.

    Examples:
        >>> statistics_position("last"), statistics_position("subject_last")
        ('last', 'all')
    """
    return "last" if role == "last" else "all"


def _pad(ids: list[list[int]], pad: int, device) -> tuple[Tensor, Tensor]:
    out, mask = pad_right(ids, pad)
    return out.to(device), mask.to(device)


def optimise_values(
    handle,
    layer: int,
    requests: list[Request],
    role: TokenRole,
    ctxs: list[str],
    settings: ValueSettings | None = None,
    progress: bool = True,
) -> Values:
    """Find each request's delta at ``layer``'s MLP output, all requests in shared passes.

    Examples:
        >>> import workbench
        >>> from edit.request import world_request
        >>> h = workbench.load("world", device="cpu")
        >>> w = h.world
        >>> p = list(w.people)[0]
        >>> r = world_request(w, p, "pet", [c for c in w.relation("pet").candidates if c != w.fact(p, "pet").object][0])
        >>> v = optimise_values(h, 0, [r], "last", [""], ValueSettings(steps=5))
        >>> tuple(v.delta.shape) == (1, h.sites.d_model), v.losses[0][-1] < v.losses[0][0]
        (True, True)
    """
    settings = settings or ValueSettings()
    deltas, originals, losses = [], [], []
    step = settings.batch_requests
    # One batch takes a fraction of a second; many are worth a bar (stderr).
    bar = tqdm(
        total=len(requests),
        desc=f"values, layer {layer}",
        unit="edit",
        leave=False,
        disable=not progress or len(requests) <= step,
    )
    for start in range(0, len(requests), step):
        chunk = requests[start : start + step]
        v = _optimise(handle, layer, chunk, role, ctxs, settings)
        deltas.append(v.delta)
        originals.append(v.original)
        losses += v.losses
        bar.update(len(chunk))
    bar.close()
    return Values(torch.cat(deltas), torch.cat(originals), losses)


def _optimise(handle, layer, requests, role, ctxs, s: ValueSettings) -> Values:
    model, sites, dev = handle.model, handle.sites, handle.device
    edit, keep = _rows(handle, requests, ctxs, role)
    rows = _Rows(*(a + b for a, b in zip(vars(edit).values(), vars(keep).values())))
    n_rows, n_req = len(rows.ids), len(requests)
    frame = _Frame.of(model, rows, handle.tokenizer.pad_token_id or 0, dev, s.reuse_prefix)
    # Everything per row, so that a pass can take any subset of rows; positions are the frame's.
    t = _RowTable(
        owner=torch.tensor(rows.owner, device=dev),
        pos=frame.shift(rows.pos),
        last=frame.shift([n - 1 for n in rows.n_prompt]),
        is_edit=torch.arange(n_rows, device=dev) < len(edit.ids),
        erase=torch.tensor([requests[b].erase for b in rows.owner], device=dev),
        targets=_pad([tg or [0] for tg in rows.target], -1, dev)[0],
        n_tok=torch.tensor([max(len(tg), 1) for tg in rows.target], device=dev),
        weight=torch.tensor(rows.weight, dtype=torch.float32, device=dev),
    )
    # delta = scale * z: Adam moves z, whose unit is the RMS of the request's original state.
    z = torch.zeros(n_req, sites.d_model, device=dev, requires_grad=True)
    now: dict[str, Tensor] = {}
    seen: list[Tensor] = []

    def add_delta(module, args, out):
        x = _add_at(out[0] if isinstance(out, tuple) else out, now["pos"], now["delta"])
        return (x, *out[1:]) if isinstance(out, tuple) else x

    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    # The state the norms refer to, read once in the unedited pass (registered first, so on the
    # MLP it sees the output before any delta).
    capture = sites.module(model, layer, s.reference).register_forward_hook(
        lambda m, args, out: seen.append(
            (out[0] if isinstance(out, tuple) else out)[torch.arange(n_rows, device=dev), t.pos].detach()
        )
    )
    hook = sites.module(model, layer, "mlp").register_forward_hook(add_delta)
    # Block `layer`'s output in the unedited pass: steps start after it (see `_steps_from`).
    outputs: list = []
    grab = sites.module(model, layer, "resid").register_forward_hook(lambda m, args, out: outputs.append(out))
    try:
        for p in params:
            p.requires_grad_(False)  # only delta is optimised; the weights stay as they are
        with torch.no_grad():
            now.update(pos=t.pos, delta=torch.zeros(n_rows, sites.d_model, device=dev))
            logits = frame.run(model, torch.arange(n_rows, device=dev)).logits.float()
            t.base_last = logits[torch.arange(n_rows, device=dev), t.last].log_softmax(-1)
        capture.remove()
        grab.remove()
        skip, block_out = _steps_from(frame, layer % sites.n_layers, outputs[0])
        original = weighted_mean(seen[0][t.is_edit].float(), t.owner[t.is_edit], t.weight[t.is_edit], n_req)
        scale = original.pow(2).mean(-1, keepdim=True).sqrt().clamp(min=1e-6)
        opt = torch.optim.Adam([z], lr=s.lr)
        done = torch.zeros(n_req, dtype=torch.bool, device=dev)
        history: list[list[float]] = [[] for _ in requests]
        for _ in range(s.steps):
            # Requests that have converged are frozen and leave the passes.
            live_rows = (~done)[t.owner].nonzero().flatten()
            sub = t.take(live_rows)
            opt.zero_grad()
            delta = z * scale
            row_delta = delta[sub.owner]
            now.update(pos=sub.pos, delta=row_delta)
            with (
                blocks_skipped(model, sites, layer, lambda: _add_at(block_out[live_rows], sub.pos, row_delta))
                if skip
                else nullcontext()
            ):
                logp = frame.run(model, live_rows, skip).logits.float().log_softmax(-1)
            per_req, fit = _objective(logp, sub, n_req, delta, original, s)
            live = ~done
            for b in live.nonzero().flatten().tolist():
                history[b].append(float(per_req[b].detach()))
            done |= live & (fit.detach() < s.early_stop)
            if bool(done.all()):
                break
            kept = z.detach()[done].clone()
            (per_req * (~done).float()).sum().backward()
            opt.step()
            with torch.no_grad():
                limit = s.clamp_norm * original.norm(dim=-1, keepdim=True)
                z.mul_(torch.clamp(limit / (z * scale).norm(dim=-1, keepdim=True).clamp(min=1e-12), max=1.0))
                z[done] = kept
    finally:
        hook.remove()
        capture.remove()
        grab.remove()
        for p, f in zip(params, flags):
            p.requires_grad_(f)
    return Values((z * scale).detach(), original.detach(), history)


def _add_at(x: Float[Tensor, "row seq d"], pos: Tensor, delta: Float[Tensor, "row d"]) -> Float[Tensor, "row seq d"]:
    r = torch.arange(x.shape[0], device=x.device)
    return x.index_put((r, pos), x[r, pos] + delta.to(x.dtype))


def _steps_from(frame: _Frame, layer: int, block_out) -> tuple[int, Tensor | None]:
    """Blocks each step can skip, and block ``layer``'s unedited output they are replaced by.

    The delta enters at ``layer``'s MLP output, which every listed family adds to the residual
    stream as it is, so block ``layer``'s output moves by exactly delta and nothing up to it
    changes. Only with a prefix cache (each step runs the same suffix tokens) and where a block
    returns the residual stream itself; otherwise every block runs.
    """
    if frame.prefixes is None or not isinstance(block_out, Tensor):
        return 0, None
    return layer + 1, block_out.detach()


@dataclass
class _Frame:
    """The rows as the optimisation runs them: all tokens, or a cached prefix and the part the delta reaches.

    With a prefix, row i is split at its key position p_i: tokens before p_i are run once
    (:class:`workbench.core.prefix_cache.Prefixes`); each step runs tokens from p_i on
    (right-padded) against their keys and values, so the key position is every row's column 0.
    """

    ids: Tensor  # what each step runs: whole rows, or the suffixes
    mask: Tensor  # attention mask of those tokens
    offset: Tensor  # per row, the token index of the step's column 0
    prefixes: Prefixes | None = None

    @staticmethod
    def of(model, rows: _Rows, pad: int, device, reuse_prefix: bool) -> _Frame:
        if not reuse_prefix or max(rows.pos) == 0:
            ids, mask = _pad(rows.ids, pad, device)
            return _Frame(ids, mask, torch.zeros(len(rows.ids), dtype=torch.long, device=device))
        try:
            prefixes = Prefixes.run(model, [r[:c] for r, c in zip(rows.ids, rows.pos)], pad)
        except PrefixCacheError as e:
            raise RuntimeError(f"{e}; run with reuse_prefix=False") from None
        suffix, suffix_mask = _pad([r[c:] for r, c in zip(rows.ids, rows.pos)], pad, device)
        return _Frame(suffix, suffix_mask, torch.tensor(rows.pos, device=device), prefixes)

    def shift(self, index: list[int]) -> Tensor:
        """Token indices of the rows in the step's columns."""
        return torch.tensor(index, device=self.offset.device) - self.offset

    def run(self, model, rows: Tensor, skip: int = 0):
        """One forward pass of the given rows (the hooks on the model act as usual); ``skip``: see `_steps_from`."""
        if self.prefixes is None:
            return model(input_ids=self.ids[rows], attention_mask=self.mask[rows])
        return self.prefixes.extend(model, rows, self.ids[rows], self.mask[rows], skip)


@dataclass
class _RowTable:
    owner: Tensor  # request of each row
    pos: Tensor  # key position
    last: Tensor  # last prompt token (where the object's first token is predicted)
    is_edit: Tensor  # an edit row (prefixed prompt) or a keep row (another fact of the subject)
    erase: Tensor  # the row's request is an erasure
    targets: Tensor  # object tokens, -1 padded (keep rows: unused)
    n_tok: Tensor  # object length
    weight: Tensor  # how many texts of its request the row stands for
    base_last: Tensor | None = None  # unedited log-probabilities at `last`

    def take(self, idx: Tensor) -> _RowTable:
        return _RowTable(*(None if v is None else v[idx] for v in vars(self).values()))


def _objective(
    logp: Float[Tensor, "row seq vocab"], t: _RowTable, n_req: int, delta, original, s: ValueSettings
) -> tuple[Float[Tensor, " request"], Float[Tensor, " request"]]:
    """Per request: the whole objective, and its fit part (the early-stopping criterion)."""
    dev = logp.device
    rows = torch.arange(len(t.owner), device=dev)
    k = torch.arange(t.targets.shape[1], device=dev)
    # Object token k of a row is predicted at last + k.
    cols = (t.last[:, None] + k).clamp(max=logp.shape[1] - 1)
    tok_lp = logp[rows[:, None], cols, t.targets.clamp(min=0)] * (t.targets >= 0)
    row_lp = tok_lp.sum(-1)
    # Rewrite: mean token NLL of the new object. Erase: -log(1 - P(true object)), which is
    # small once the object is unlikely and does not reward pushing it to minus infinity.
    p_true = row_lp.exp().clamp(max=1 - 1e-6)
    row_loss = torch.where(t.erase, -torch.log1p(-p_true), -row_lp / t.n_tok)
    now_last = logp[rows, t.last]
    if bool((t.erase & t.is_edit).any()):
        # Keep the rest of the distribution: KL of the renormalised distributions without the
        # true object's first token.
        drop = torch.nn.functional.one_hot(t.targets[:, 0].clamp(min=0), now_last.shape[-1]).bool()
        b_ = t.base_last.masked_fill(drop, float("-inf")).log_softmax(-1)
        n_ = now_last.masked_fill(drop, float("-inf")).log_softmax(-1)
        row_loss = row_loss + s.erase_kl * (b_.exp() * (b_ - n_)).nan_to_num().sum(-1) * t.erase.float()
    loss = weighted_mean(row_loss[t.is_edit], t.owner[t.is_edit], t.weight[t.is_edit], n_req)
    fit = loss.detach()
    if bool((~t.is_edit).any()):
        kl = (t.base_last.exp() * (t.base_last - now_last)).sum(-1)[~t.is_edit]
        loss = loss + s.kl_factor * weighted_mean(kl, t.owner[~t.is_edit], t.weight[~t.is_edit], n_req)
    return loss + s.weight_decay * delta.pow(2).sum(-1) / original.pow(2).sum(-1).clamp(min=1e-12), fit
