"""Tokenization helpers: prompts, objects after a prompt, and subject spans."""

from __future__ import annotations


class EncodingError(ValueError):
    """Text that the tokenizer cannot encode faithfully (unknown words, missing subject)."""


def _check_known(tokenizer, text: str, ids: list[int]) -> None:
    unk = tokenizer.unk_token_id
    if unk is not None and unk in ids:
        words = dict.fromkeys(text.split())  # each unknown word named once, in order
        bad = [w for w in words if tokenizer.unk_token_id in tokenizer(w, add_special_tokens=False).input_ids]
        raise EncodingError(f"the tokenizer cannot encode {', '.join(map(repr, bad)) or repr(text)}")


def encode_prompts(tokenizer, prompts: list[str]) -> list[list[int]]:
    """Token ids of each prompt, with the tokenizer's own special tokens (e.g. BOS).

    Examples:
        >>> import workbench
        >>> tok = workbench.load("world").tokenizer
        >>> encode_prompts(tok, ["It is well known that"])[0][0] == tok.bos_token_id
        True
    """
    ids = tokenizer(list(prompts)).input_ids
    for p, i in zip(prompts, ids, strict=True):
        _check_known(tokenizer, p, i)
    return ids


def encode_object(tokenizer, prompt: str, obj: str) -> list[int]:
    """The token ids that continue ``prompt`` with `` obj`` (one space between).

    Taken as the suffix of encoding the joined text, so BPE merges at the boundary are
    the ones the model would see; falls back to encoding `` obj`` alone if the prompt's
    tokens are not a prefix of the joined text's.

    Examples:
        >>> import workbench
        >>> tok = workbench.load("world").tokenizer
        >>> len(encode_object(tok, "It is well known that", "cat"))
        1
    """
    p = tokenizer(prompt).input_ids
    full = tokenizer(prompt + " " + obj).input_ids
    ids = full[len(p) :] if full[: len(p)] == p else tokenizer(" " + obj, add_special_tokens=False).input_ids
    if not ids:
        raise EncodingError(f"object {obj!r} encodes to no tokens")
    _check_known(tokenizer, obj, ids)
    return ids


def encode_objects(tokenizer, prompts: list[str], objs: list[str]) -> list[list[int]]:
    """:func:`encode_object` for many (prompt, object) pairs, in two batched tokenizer calls.

    Examples:
        >>> import workbench
        >>> tok = workbench.load("world").tokenizer
        >>> encode_objects(tok, ["It is well known that", "Ann"], ["cat", "dog"]) == [
        ...     encode_object(tok, "It is well known that", "cat"), encode_object(tok, "Ann", "dog")]
        True
    """
    ps = tokenizer(list(prompts)).input_ids
    fulls = tokenizer([p + " " + o for p, o in zip(prompts, objs, strict=True)]).input_ids
    out = []
    for prompt, obj, p, full in zip(prompts, objs, ps, fulls, strict=True):
        ids = full[len(p) :] if full[: len(p)] == p else encode_object(tokenizer, prompt, obj)
        if not ids:
            raise EncodingError(f"object {obj!r} encodes to no tokens")
        _check_known(tokenizer, obj, ids)
        out.append(ids)
    return out


def subject_span(tokenizer, prompt: str, subject: str, occurrence: int = -1) -> tuple[int, int]:
    """Token span [start, end) of ``subject`` inside ``prompt`` (last occurrence by default).

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> name = h.world.facts()[0].subject
        >>> subject_span(h.tokenizer, f"It is well known that {name} was born in", name)
        (6, 8)

    Raises:
        EncodingError: when the subject does not occur in the prompt.
    """
    starts = []
    i = prompt.find(subject)
    while i != -1:
        starts.append(i)
        i = prompt.find(subject, i + 1)
    if not subject or not starts:
        raise EncodingError(f"subject {subject!r} does not occur in prompt {prompt!r}")
    try:
        c0 = starts[occurrence]
    except IndexError:
        raise EncodingError(f"subject {subject!r} occurs {len(starts)} time(s) in {prompt!r}") from None
    c1 = c0 + len(subject)
    enc = tokenizer(prompt, return_offsets_mapping=True)
    toks = [t for t, (a, b) in enumerate(enc.offset_mapping) if b > a and a < c1 and b > c0]
    if not toks:
        raise EncodingError(f"subject {subject!r} maps to no tokens of {prompt!r}")
    return toks[0], toks[-1] + 1


# Texts are read in windows of at most this many tokens even where a model reads more: memory
# grows with the square of a window's length, and neither statistics nor losses need more.
LONGEST_WINDOW = 1024


def window_length(context_length: int | None) -> int:
    """How many tokens one window holds for a model that reads ``context_length`` (None: no limit).

    Examples:
        >>> window_length(128), window_length(32768), window_length(None)
        (128, 1024, 1024)
    """
    return min(context_length or LONGEST_WINDOW, LONGEST_WINDOW)


def windows(ids: list[int], width: int) -> list[list[int]]:
    """``ids`` cut into consecutive windows of at most ``width`` tokens (an empty text: one empty window).

    Examples:
        >>> windows([1, 2, 3, 4, 5], 2), windows([], 2)
        ([[1, 2], [3, 4], [5]], [[]])
    """
    return [ids[i : i + width] for i in range(0, max(len(ids), 1), width)]


# At most this many padded tokens in one batch: the logits of a batch are tokens x vocabulary floats.
BATCH_TOKENS = 16384


def token_batches(lengths: list[int], batch_size: int) -> list[tuple[int, int]]:
    """(start, stop) of consecutive rows: at most ``batch_size`` rows and about BATCH_TOKENS padded tokens.

    Examples:
        >>> token_batches([10] * 5, batch_size=2)
        [(0, 2), (2, 4), (4, 5)]
        >>> token_batches([1024] * 40, batch_size=256)[:2]
        [(0, 16), (16, 32)]
    """
    out, start, longest = [], 0, 0
    for i, n in enumerate(lengths):
        longest_with = max(longest, n)
        if i > start and (i - start >= batch_size or (i - start + 1) * longest_with > BATCH_TOKENS):
            out.append((start, i))
            start, longest_with = i, n
        longest = longest_with
    if lengths:
        out.append((start, len(lengths)))
    return out
