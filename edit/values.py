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
:mod:`edit.values_plain` computes the same values the plain way, one request and one text at a
time, as the reference the tests hold this one to.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
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
        for p, (b, t) in zip(ids, edit_texts + keep_texts, strict=True)
    ]
    n = len(edit_texts)
    edit = _Rows(
        [p + o[:-1] for p, o in zip(ids[:n], objects, strict=True)],
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


def _optimise(handle, layer, requests, role, ctxs, settings: ValueSettings) -> Values:
    """Optimise one batch of requests' deltas together: ROME's ``compute_v`` for many requests at once.

    Per request (:func:`edit.values_plain.optimise_values_plain` does exactly this, one request
    and one text at a time, and is the reference this function is tested against):

    1. Unedited pass over the request's texts: its prompt after every context (edit rows, the
       object's tokens appended) and its subject's other facts (keep rows). Keep the reference
       state at the key position (mean over edit rows: ``original``) and every row's
       log-probabilities at its last prompt token.
    2. delta = scale * z with z = 0 at the start, scale the RMS of ``original``: Adam moves z.
    3. Each step adds delta to the MLP output at the key position of every row and minimises
       fit + kl_factor * KL + weight_decay * ||delta||^2 / ||original||^2, where fit is the
       mean over edit rows of the new object's per-token NLL (an erasure: -log(1 - P(true
       object)) + erase_kl * KL of the distributions without the true object's first token),
       and KL is the mean over keep rows of KL(unedited || edited) at the last prompt token.
       A request stops once its fit is below ``early_stop``, before that step's update.
    4. After each update delta is scaled down to at most clamp_norm * ||original||.

    What makes it fast, none of which changes the values beyond float rounding: all requests
    share each pass (a converged request's rows leave the passes and its z is frozen); a
    request's identical texts run once, weighted by how often they occur; with a prefix cache
    each step runs only the key position and what follows it, and starts after ``layer``
    (blocks up to it compute the same every step).
    """
    model, sites, dev = handle.model, handle.sites, handle.device
    n_req = len(requests)

    # Rows: edit rows first, then keep rows; each step runs them from the frame's column 0.
    edit_rows, keep_rows = _rows(handle, requests, ctxs, role)
    rows = _Rows(*(a + b for a, b in zip(vars(edit_rows).values(), vars(keep_rows).values(), strict=True)))
    n_rows = len(rows.ids)
    all_rows = torch.arange(n_rows, device=dev)
    frame = _Frame.of(model, rows, handle.tokenizer.pad_token_id or 0, dev, settings.reuse_prefix)
    table = _row_table(rows, frame, len(edit_rows.ids), requests, dev)

    # delta = scale * z: Adam moves z, whose unit is the RMS of the request's original state.
    z = torch.zeros(n_req, sites.d_model, device=dev, requires_grad=True)
    injection: dict[str, Tensor] = {}  # the rows' key positions and deltas for the next pass
    reference_states: list[Tensor] = []
    block_outputs: list = []

    def add_delta(module, args, out):
        x = _add_at(out[0] if isinstance(out, tuple) else out, injection["pos"], injection["delta"])
        return (x, *out[1:]) if isinstance(out, tuple) else x

    def read_reference(module, args, out):
        state = out[0] if isinstance(out, tuple) else out
        reference_states.append(state[all_rows, table.pos].detach())

    weights = list(model.parameters())
    grad_flags = [p.requires_grad for p in weights]
    # The reference hook is registered before the delta's, so on the MLP it sees the output
    # before any delta.
    reference_hook = sites.module(model, layer, settings.reference).register_forward_hook(read_reference)
    delta_hook = sites.module(model, layer, "mlp").register_forward_hook(add_delta)
    # Block `layer`'s unedited output: steps start after it (see `_steps_from`).
    block_hook = sites.module(model, layer, "resid").register_forward_hook(lambda m, a, out: block_outputs.append(out))
    try:
        for p in weights:
            p.requires_grad_(False)  # only delta is optimised; the weights stay as they are

        # Unedited pass: reference states, block output, log-probabilities at the last prompt token.
        with torch.no_grad():
            injection.update(pos=table.pos, delta=torch.zeros(n_rows, sites.d_model, device=dev))
            logits = frame.run(model, all_rows).logits.float()
            table.base_last = logits[all_rows, table.last].log_softmax(-1)
        reference_hook.remove()
        block_hook.remove()
        n_skipped, unedited_block_out = _steps_from(frame, layer % sites.n_layers, block_outputs[0])
        edit = table.is_edit
        original = weighted_mean(reference_states[0][edit].float(), table.owner[edit], table.weight[edit], n_req)
        scale = original.pow(2).mean(-1, keepdim=True).sqrt().clamp(min=1e-6)

        optimiser = torch.optim.Adam([z], lr=settings.lr)
        done = torch.zeros(n_req, dtype=torch.bool, device=dev)
        history: list[list[float]] = [[] for _ in requests]
        for _ in range(settings.steps):
            # Edited pass over the rows of requests still running.
            live_rows = (~done)[table.owner].nonzero().flatten()
            live_table = table.take(live_rows)
            optimiser.zero_grad()
            delta = z * scale
            row_delta = delta[live_table.owner]
            injection.update(pos=live_table.pos, delta=row_delta)
            # Skipped blocks: block `layer`'s output moves by exactly the delta added at its MLP output.
            skipping = (
                blocks_skipped(
                    model, sites, layer, partial(_add_at, unedited_block_out[live_rows], live_table.pos, row_delta)
                )
                if n_skipped
                else nullcontext()
            )
            with skipping:
                logp = frame.run(model, live_rows, n_skipped).logits.float().log_softmax(-1)

            # Objective, and early stopping on its fit part.
            objective, fit = _objective(logp, live_table, n_req, delta, original, settings)
            live = ~done
            for b in live.nonzero().flatten().tolist():
                history[b].append(float(objective[b].detach()))
            done |= live & (fit.detach() < settings.early_stop)
            if bool(done.all()):
                break

            # Adam step on the live requests; the converged ones keep their z.
            frozen_z = z.detach()[done].clone()
            (objective * (~done).float()).sum().backward()
            optimiser.step()

            # Norm clamp: ||delta|| <= clamp_norm * ||original||.
            with torch.no_grad():
                limit = settings.clamp_norm * original.norm(dim=-1, keepdim=True)
                z.mul_(torch.clamp(limit / (z * scale).norm(dim=-1, keepdim=True).clamp(min=1e-12), max=1.0))
                z[done] = frozen_z
    finally:
        delta_hook.remove()
        reference_hook.remove()
        block_hook.remove()
        for p, flag in zip(weights, grad_flags, strict=True):
            p.requires_grad_(flag)
    return Values((z * scale).detach(), original.detach(), history)


def _row_table(rows: _Rows, frame: _Frame, n_edit: int, requests: list[Request], dev) -> _RowTable:
    """Everything per row as tensors, so that a pass can take any subset of rows; positions are the frame's."""
    return _RowTable(
        owner=torch.tensor(rows.owner, device=dev),
        pos=frame.shift(rows.pos),
        last=frame.shift([n - 1 for n in rows.n_prompt]),
        is_edit=torch.arange(len(rows.ids), device=dev) < n_edit,
        erase=torch.tensor([requests[b].erase for b in rows.owner], device=dev),
        targets=_pad([target or [0] for target in rows.target], -1, dev)[0],
        n_tok=torch.tensor([max(len(target), 1) for target in rows.target], device=dev),
        weight=torch.tensor(rows.weight, dtype=torch.float32, device=dev),
    )


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
            prefixes = Prefixes.run(model, [r[:c] for r, c in zip(rows.ids, rows.pos, strict=True)], pad)
        except PrefixCacheError as e:
            raise RuntimeError(f"{e}; run with reuse_prefix=False") from None
        suffix, suffix_mask = _pad([r[c:] for r, c in zip(rows.ids, rows.pos, strict=True)], pad, device)
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
