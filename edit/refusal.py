"""How often a model refuses: the fraction of prompts whose greedy answer starts with a refusal.

An unlearning method that teaches refusals (``idk``) succeeds when the model refuses the
forgotten questions and answers the rest; refusing everything is a failure that forget
accuracy alone would hide, so the rate is measured on both sets. A refusal is spelled in a few
phrasings (:data:`REFUSALS`); those the tokenizer can only spell with its unknown token are
dropped. The default world's tokenizer is word-level and knows none of their words: there the
unknown token itself stands in for a refusal (:func:`refusals_for` returns it alone).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from edit.forget_request import ForgetError, ForgetRequest, subsample
from workbench.core.examples import Datum
from workbench.core.tokens import encode_prompts
from workbench.core.world.facts import Fact

# Each spelled after the prompt with one space, as answers are (TOFU's IdkDPO uses such lines).
REFUSALS: tuple[str, ...] = ("I don't know", "I'm not sure", "I have no idea")


def refusals_for(tokenizer, phrasings: Sequence[str] = REFUSALS) -> tuple[str, ...]:
    """The phrasings ``tokenizer`` spells without its unknown token; else the unknown token alone.

    Examples:
        >>> import workbench
        >>> tok = workbench.load("world").tokenizer
        >>> refusals_for(tok)  # word-level, without these words: the stand-in
        ('[UNK]',)
        >>> refusals_for(tok, ["I don't know", "It is well known"])  # only what it can spell
        ('It is well known',)

    Raises:
        ForgetError: no phrasing at all.
    """
    phrasings = tuple(phrasings)
    if not phrasings or not all(isinstance(p, str) and p.strip() for p in phrasings):
        raise ForgetError(f"refusals must be non-empty phrasings, got {phrasings!r}")
    unk = tokenizer.unk_token_id
    usable = tuple(
        p for p in phrasings if unk is None or unk not in tokenizer(" " + p, add_special_tokens=False).input_ids
    )
    return usable or (tokenizer.unk_token,)


def is_unknown_token(tokenizer, refusals: Sequence[str]) -> bool:
    """Whether ``refusals`` is the unknown-token stand-in of a tokenizer that spells no phrasing.

    Examples:
        >>> import workbench
        >>> tok = workbench.load("world").tokenizer
        >>> is_unknown_token(tok, refusals_for(tok)), is_unknown_token(tok, ["I don't know"])
        (True, False)
    """
    return tokenizer.unk_token is not None and tuple(refusals) == (tokenizer.unk_token,)


def answer_prompts(handle, data: Sequence[Datum], limit: int | None = None, seed: int = 0) -> list[str]:
    """The prompts of ``data`` an answer follows: each fact's trained phrasings, each pair's prompt.

    Texts have no prompt and give none. At most ``limit`` prompts, drawn with ``seed``.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> f = h.world.facts()[0]
        >>> prompts = answer_prompts(h, [f, ("Where was Ada born?", "Paris"), "a text"])
        >>> len(prompts) == len(h.world.phrasings(f.relation)) + 1, prompts[-1]
        (True, 'Where was Ada born?')
    """
    prompts: list[str] = []
    for d in data:
        if isinstance(d, Fact):
            if handle.world is None:
                raise ForgetError(f"model {handle.name!r} has no fact world to phrase facts with")
            prompts += [ph.prompt(d.subject) for ph in handle.world.phrasings(d.relation)]
        elif isinstance(d, tuple):
            prompts.append(d[0])
    return subsample(prompts, limit, seed)


@torch.no_grad()
def greedy_tokens(handle, prompts: Sequence[str], n_new: int, batch_size: int = 64) -> list[list[int]]:
    """The ``n_new`` greedy-decoded token ids after each prompt.

    Rows are right-padded and each predicts from its own last token, so no row's positions
    shift; there is no cache, since refusals are a few tokens long.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> f = h.world.facts()[0]
        >>> prompt = h.world.phrasings(f.relation)[0].prompt(f.subject)
        >>> h.tokenizer.decode(greedy_tokens(h, [prompt, "It is well known that " + prompt], 1)[0]) == f.object
        True
    """
    tok, model = handle.tokenizer, handle.model
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = encode_prompts(tok, list(prompts))
    out: list[list[int]] = []
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        lengths = torch.tensor([len(c) for c in chunk], device=handle.device)
        x = torch.full((len(chunk), int(lengths.max()) + n_new), pad, dtype=torch.long, device=handle.device)
        mask = torch.zeros_like(x)
        for row, c in enumerate(chunk):
            x[row, : len(c)] = torch.tensor(c)
            mask[row, : len(c)] = 1
        rows = torch.arange(len(chunk), device=handle.device)
        for _ in range(n_new):
            width = int(lengths.max())
            logits = model(input_ids=x[:, :width], attention_mask=mask[:, :width], use_cache=False).logits
            x[rows, lengths] = logits[rows, lengths - 1].argmax(-1)
            mask[rows, lengths] = 1
            lengths += 1
        out += [x[row, len(c) : len(c) + n_new].tolist() for row, c in enumerate(chunk)]
    return out


def refusal_rate(handle, prompts: Sequence[str], refusals: Sequence[str] | None = None, batch_size: int = 64) -> float:
    """Fraction of ``prompts`` whose greedy answer starts with one of ``refusals``.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> prompts = answer_prompts(h, h.world.facts()[:5])
        >>> refusal_rate(h, prompts)  # the unedited model answers every one
        0.0

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle`.
        prompts: Questions or fact prompts (:func:`answer_prompts`).
        refusals: Phrasings (spelled after a space); None: :func:`refusals_for` the tokenizer.

    Raises:
        ForgetError: no prompts.
    """
    if not prompts:
        raise ForgetError("no prompts to measure the refusal rate on: it needs facts or question-answer pairs")
    tok = handle.tokenizer
    refusals = refusals_for(tok) if refusals is None else tuple(refusals)
    n_new = max(len(tok(" " + r, add_special_tokens=False).input_ids) for r in refusals)
    answers = [tok.decode(ids).lstrip() for ids in greedy_tokens(handle, prompts, n_new, batch_size)]
    return sum(any(a.startswith(r) for r in refusals) for a in answers) / len(answers)


def refusal_rates(
    handle, request: ForgetRequest, refusals: Sequence[str] | None = None, samples: int = 50, seed: int = 0
) -> dict[str, float | None]:
    """Refusal rates on the request's forget prompts and on a sample of its retain prompts.

    ``refusal_forget`` should rise after a refusal-teaching edit; ``refusal_retain`` should
    not. None where a set has no prompts (texts alone).

    Examples:
        >>> import workbench
        >>> from edit.forget_request import forget_request
        >>> h = workbench.load("world")
        >>> r = forget_request(h.world, "Tikrelm Robreir")
        >>> refusal_rates(h, r, samples=20)
        {'refusal_forget': 0.0, 'refusal_retain': 0.0}
    """
    out: dict[str, float | None] = {}
    for key, data in (
        ("refusal_forget", request.forget_data()),
        ("refusal_retain", request.retain_data(samples, seed)),
    ):
        prompts = answer_prompts(handle, data, samples, seed)
        out[key] = refusal_rate(handle, prompts, refusals) if prompts else None
    return out


__all__ = [
    "REFUSALS",
    "answer_prompts",
    "greedy_tokens",
    "is_unknown_token",
    "refusal_rate",
    "refusal_rates",
    "refusals_for",
]
