"""Where an edit command's request and key-statistics text come from: the world, a file, or flags.

``workbench edit rome`` takes a world fact (``PERSON RELATION [NEW_OBJECT]``), a request file
in any format :func:`edit.request_files.read_requests` reads (``--request FILE [--case N]``),
or a request spelled out (``--subject S --prompt "{} plays" --target-new X [--target-true Y]``).
On a model without a fact world, the key statistics need text: ``--stats-text`` names it;
without it the requests' own prompts stand in, with a warning, since a handful of prompts
gives far fewer keys than a layer is wide.

Examples:
    >>> check_one_source("Ann", None, None, None)
    'world'
    >>> check_one_source(None, "r.json", "Ann", None)
    Traceback (most recent call last):
    workbench.cli.common.CliError: name the edit once: PERSON RELATION, --request FILE, or --subject with --prompt
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import torch

from edit.request import Request, world_request
from edit.request_files import fill_prompt, read_request, request_from_fields
from workbench.cli.common import CliError, world_of
from workbench.core.handle import ModelHandle


def check_one_source(person: str | None, request_file: str | None, subject: str | None, prompt: str | None) -> str:
    """Which source the arguments name ("world", "file" or "fields"); refuses none or several."""
    named = [s for s, given in (("world", person), ("file", request_file), ("fields", subject)) if given is not None]
    if len(named) != 1:
        raise CliError("name the edit once: PERSON RELATION, --request FILE, or --subject with --prompt")
    if named[0] == "fields" and prompt is None:
        raise CliError("--subject needs --prompt (with {} where the subject goes, or the subject itself)")
    if prompt is not None and named[0] != "fields":
        raise CliError("--prompt goes with --subject")
    return named[0]


def model_answer(h: ModelHandle, prompt: str, max_tokens: int = 6) -> str:
    """The model's own greedy answer to ``prompt``: its next word (what ``--target-true`` defaults to).

    A few tokens are generated greedily and decoded together, so a byte-level vocabulary's
    pieces of one word come back whole; the first word, without trailing punctuation, is the
    answer. An object of several words ("New York") needs ``--target-true``.

    Examples:
        >>> from workbench.cli.common import load_model
        >>> model_answer(load_model("world"), "Waen Neibeind owns a pet")
        'tortoise'
    """
    ids = h.encode(prompt)
    start = ids.shape[1]
    with torch.no_grad():
        for _ in range(max_tokens):
            nxt = int(h.model(ids).logits[0, -1].argmax())
            if nxt == h.tokenizer.eos_token_id:
                break
            ids = torch.cat([ids, torch.tensor([[nxt]], device=ids.device)], dim=1)
    words = h.tokenizer.decode(ids[0, start:].tolist(), skip_special_tokens=True).split()
    answer = words[0].rstrip(".,;:!?") if words else ""
    if not answer:
        raise CliError(f"the model gives no answer to {prompt!r}: pass --target-true")
    return answer


def edit_request(
    h: ModelHandle,
    source: str,
    *,
    world_fact: tuple[str, str, str | None, int],
    request_file: str | None,
    case: int | None,
    subject: str | None,
    prompt: str | None,
    target_new: str | None,
    target_true: str | None,
) -> Request:
    """The request the arguments name, checked against the model's tokenizer."""
    if source == "world":
        person, relation, new_object, phrasing = world_fact
        if relation is None:
            raise CliError("give PERSON and RELATION (or --request FILE, or --subject with --prompt)")
        request = world_request(world_of(h), person, relation, new_object, phrasing)
    elif source == "file":
        request = read_request(request_file, case, world=h.world)
    else:
        true = target_true if target_true is not None else model_answer(h, fill_prompt(prompt, subject))
        request = request_from_fields(subject, prompt, target_new=target_new, target_true=true)
    if request.erase and not request.candidates:
        # An erasure succeeds when the true object stops coming first, which needs rivals to
        # compare it with: the model's own next words, read before the edit.
        rivals = [t.strip() for t, _ in h.top_tokens(request.prompt, 10) if t.strip()]
        request = replace(request, candidates=tuple(dict.fromkeys([request.true_object, *rivals])))
    return request.check(h.tokenizer)


def key_texts(h: ModelHandle, given: list[str] | None, requests: list[Request]) -> list[str] | None:
    """Text for the key statistics: ``--stats-text``'s, the world's (None), or the requests' own prompts."""
    if given is not None:
        return given
    if h.world is not None:
        return None
    texts = list(dict.fromkeys(t for r in requests for t in (r.prompt, *r.paraphrases, *(p for p, _ in r.neighbours))))
    n_tokens = sum(len(h.tokenizer(t)["input_ids"]) for t in texts)
    warnings.warn(
        f"key statistics from the requests' own {n_tokens} tokens, for a layer {h.sites.d_mlp} wide: "
        "pass --stats-text FILE (text like the model's training data) for statistics that protect more",
        stacklevel=2,
    )
    return texts
