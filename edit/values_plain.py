"""The value optimisation written the most direct way: the reference the batched one is tested against.

One request at a time, every text on its own (no padding; a repeated context runs as often as
it occurs), and every step a full forward pass of every text with a hook adding delta to the
MLP output at the key position, as ROME's ``compute_v`` does. It computes the same values as
the batched path up to float rounding, and is many times slower: for tests and for reading,
not for edits. ``ValueSettings(batch_requests=1, reuse_prefix=False)`` (the benchmarks' "one by
one, full passes") is not this: it still runs the batched code, its merged repeated texts and
its objective over rows, so it cannot check them.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from edit.key_states import TokenRole, key_position, with_context
from edit.request import Request
from edit.values import Values, ValueSettings
from workbench.core.tokens import encode_objects, encode_prompts


def optimise_values_plain(
    handle, layer: int, requests: list[Request], role: TokenRole, ctxs: list[str], settings: ValueSettings | None = None
) -> Values:
    """Each request's delta at ``layer``'s MLP output, one request and one text at a time.

    Examples:
        >>> import workbench
        >>> from edit.request import world_request
        >>> from edit.values import optimise_values
        >>> h = workbench.load("world", device="cpu")
        >>> p = list(h.world.people)[0]
        >>> r = world_request(h.world, p, "pet", [c for c in h.world.relation("pet").candidates
        ...                                       if c != h.world.fact(p, "pet").object][0])
        >>> plain = optimise_values_plain(h, 0, [r], "last", [""], ValueSettings(steps=3))
        >>> fast = optimise_values(h, 0, [r], "last", [""], ValueSettings(steps=3))
        >>> torch.allclose(plain.delta, fast.delta, rtol=1e-3, atol=1e-4)
        True
    """
    settings = settings or ValueSettings()
    each = [_optimise_one(handle, layer, r, role, ctxs, settings) for r in requests]
    return Values(
        torch.stack([v.delta[0] for v in each]), torch.stack([v.original[0] for v in each]), [v.losses[0] for v in each]
    )


def _optimise_one(handle, layer: int, request: Request, role: TokenRole, ctxs: list[str], s: ValueSettings) -> Values:
    model, sites, tok = handle.model, handle.sites, handle.tokenizer

    # The texts: the prompt after every context (followed by the object's tokens but its last,
    # which the objective predicts), and the subject's other facts.
    prompts = [with_context(c, request.prompt) for c in ctxs]
    prompt_ids = encode_prompts(tok, prompts + list(request.keep))
    objects = encode_objects(tok, prompts, [request.target] * len(prompts))
    key = [
        len(ids) - 1 if role == "last" else key_position(tok, text, request.subject, role)
        for ids, text in zip(prompt_ids, prompts + list(request.keep), strict=True)
    ]
    edit_texts = [ids + obj[:-1] for ids, obj in zip(prompt_ids[: len(prompts)], objects, strict=True)]
    keep_texts = prompt_ids[len(prompts) :]
    last = [len(ids) - 1 for ids in prompt_ids]  # where the object's first token is predicted
    texts = edit_texts + keep_texts

    delta_now: list[Tensor] = []  # the delta the hook adds in the current pass, at `at_key[0]`
    at_key: list[int] = []
    reference: list[Tensor] = []

    def add_delta(module, args, out):
        x = out[0] if isinstance(out, tuple) else out
        one_hot = torch.zeros(x.shape[1], 1, dtype=x.dtype, device=x.device)
        one_hot[at_key[0]] = 1.0
        x = x + one_hot * delta_now[0].to(x.dtype)
        return (x, *out[1:]) if isinstance(out, tuple) else x

    def read_reference(module, args, out):
        reference.append((out[0] if isinstance(out, tuple) else out)[0, at_key[0]].detach().float())

    def log_probs(i: int, delta: Tensor) -> Float[Tensor, "seq vocab"]:
        at_key[:], delta_now[:] = [key[i]], [delta]
        return model(input_ids=torch.tensor([texts[i]], device=handle.device)).logits[0].float().log_softmax(-1)

    weights = list(model.parameters())
    grad_flags = [p.requires_grad for p in weights]
    # Registered before the delta's: on the MLP it reads the output before any delta.
    reference_hook = sites.module(model, layer, s.reference).register_forward_hook(read_reference)
    delta_hook = sites.module(model, layer, "mlp").register_forward_hook(add_delta)
    try:
        for p in weights:
            p.requires_grad_(False)  # only delta is optimised

        # Unedited: the reference state at the key, averaged over the contexts, and the
        # distributions at every text's last prompt token.
        with torch.no_grad():
            zero = torch.zeros(sites.d_model, device=handle.device)
            base_last = [log_probs(i, zero)[last[i]] for i in range(len(texts))]
        reference_hook.remove()
        original = torch.stack(reference[: len(edit_texts)]).mean(0)
        scale = original.pow(2).mean().sqrt().clamp(min=1e-6)

        # delta = scale * z, so that the learning rate is in units of the original state's RMS.
        z = torch.zeros(sites.d_model, device=handle.device, requires_grad=True)
        optimiser = torch.optim.Adam([z], lr=s.lr)
        losses: list[float] = []
        for _ in range(s.steps):
            optimiser.zero_grad()
            delta = z * scale

            # Fit: the new object's mean token NLL, or for an erasure -log(1 - P(true object))
            # and the KL of the distributions without the true object's first token.
            fits = []
            for i, obj in enumerate(objects):
                logp = log_probs(i, delta)
                object_logp = sum(logp[last[i] + k, t] for k, t in enumerate(obj))
                if request.erase:
                    p_true = object_logp.exp().clamp(max=1 - 1e-6)
                    fits.append(-torch.log1p(-p_true) + s.erase_kl * _kl_without(base_last[i], logp[last[i]], obj[0]))
                else:
                    fits.append(-object_logp / len(obj))
            fit = torch.stack(fits).mean()

            # Essence: the subject's other facts keep their next-token distributions.
            kls = [_kl(base_last[i], log_probs(i, delta)[last[i]]) for i in range(len(edit_texts), len(texts))]
            essence = torch.stack(kls).mean() if kls else torch.zeros(())

            decay = delta.pow(2).sum() / original.pow(2).sum().clamp(min=1e-12)
            objective = fit + s.kl_factor * essence + s.weight_decay * decay
            losses.append(float(objective.detach()))
            if fit.detach() < s.early_stop:
                break
            objective.backward()
            optimiser.step()

            # Norm clamp: ||delta|| <= clamp_norm * ||original||.
            with torch.no_grad():
                limit = s.clamp_norm * original.norm()
                z.mul_(torch.clamp(limit / (z * scale).norm().clamp(min=1e-12), max=1.0))
    finally:
        reference_hook.remove()
        delta_hook.remove()
        for p, flag in zip(weights, grad_flags, strict=True):
            p.requires_grad_(flag)
    return Values((z * scale).detach()[None], original[None], [losses])


def _kl(base: Float[Tensor, " vocab"], now: Float[Tensor, " vocab"]) -> Tensor:
    """KL(base || now) of two log-distributions."""
    return (base.exp() * (base - now)).sum()


def _kl_without(base: Float[Tensor, " vocab"], now: Float[Tensor, " vocab"], token: int) -> Tensor:
    """KL(base || now) of the distributions renormalised without ``token``."""
    keep = torch.ones_like(base, dtype=torch.bool)
    keep[token] = False
    return _kl(base[keep].log_softmax(-1), now[keep].log_softmax(-1))
