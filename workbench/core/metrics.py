"""Fact metrics: object probabilities, ranks among candidates, accuracy, held-out loss.

Everything is batched over prompts; nothing loops over facts in Python around a forward
pass. Objects may span several tokens: their log-probability is the teacher-forced sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from workbench.core.padding import pad_right
from workbench.core.prefix_cache import PrefixCacheError, Prefixes
from workbench.core.tokens import encode_object, encode_prompts, token_batches, window_length, windows


def _device(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def sequence_logprobs(
    model, prefixes: list[list[int]], targets: list[list[int]], pad_id: int = 0, batch_size: int = 512
) -> Float[Tensor, " n"]:
    """Sum of log P(target tokens | prefix) per row, teacher-forced, right-padded batches.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> p, o = h.encode_fact("It is well known that " + h.world.facts()[0].subject + " was born in",
        ...                      h.world.facts()[0].object)
        >>> float(sequence_logprobs(h.model, [p], [o]).exp()) > 0.5
        True
    """
    out = torch.empty(len(prefixes))
    dev = _device(model)
    for start in range(0, len(prefixes), batch_size):
        pre = prefixes[start : start + batch_size]
        tgt = targets[start : start + batch_size]
        ids, mask = pad_right([p + t for p, t in zip(pre, tgt, strict=True)], pad_id)
        logits = model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits.float()
        logp = torch.log_softmax(logits, dim=-1)
        # Position j predicts token j + 1, so target token k of row i sits at len(prefix) + k.
        rows, cols, toks = [], [], []
        for i, (p, t) in enumerate(zip(pre, tgt, strict=True)):
            for k, tok in enumerate(t):
                rows.append(i)
                cols.append(len(p) + k - 1)
                toks.append(tok)
        picked = logp[torch.tensor(rows), torch.tensor(cols), torch.tensor(toks)].cpu()
        sums = torch.zeros(len(pre)).index_add_(0, torch.tensor(rows), picked)
        out[start : start + len(pre)] = sums
    return out


@torch.no_grad()
def next_token_logprobs(
    model, prompt_ids: list[list[int]], pad_id: int, columns: list[int] | None = None, batch_size: int = 512
) -> Float[Tensor, "n_prompts vocab_or_columns"]:
    """log P(next token | prompt) at each prompt's end: every token, or only ``columns``.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> ids = encode_prompts(h.tokenizer, ["It is well known that", "According to the registry ,"])
        >>> lp = next_token_logprobs(h.model, ids, h.tokenizer.pad_token_id)
        >>> lp.shape[0], bool(torch.allclose(lp.exp().sum(-1), torch.ones(2)))
        (2, True)
        >>> next_token_logprobs(h.model, ids, h.tokenizer.pad_token_id, [5, 7]).shape
        torch.Size([2, 2])
    """
    out = []
    dev = _device(model)
    cols = None if columns is None else torch.tensor(columns)
    for start in range(0, len(prompt_ids), batch_size):
        chunk = prompt_ids[start : start + batch_size]
        ids, mask = pad_right(chunk, pad_id)
        logits = model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits.float()
        last = torch.tensor([len(p) - 1 for p in chunk])
        logp = torch.log_softmax(logits[torch.arange(len(chunk)), last.to(dev)], dim=-1).cpu()
        out.append(logp if cols is None else logp[:, cols])
    return torch.cat(out)


@torch.no_grad()
def candidate_logprobs(
    model, tokenizer, prompts: list[str], candidates: list[str], batch_size: int = 512
) -> Float[Tensor, "n_prompts n_candidates"]:
    """log P(candidate | prompt) for every prompt and every candidate object.

    When every candidate is a single token, one forward pass per prompt batch suffices.
    Otherwise each prompt is run once and its keys and values kept; every candidate's later
    tokens are then run against them (one or two tokens a row instead of the whole prompt).
    A model without a key-value cache gets each (prompt, candidate) pair teacher-forced.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> rel = h.world.relation("pet")
        >>> prompt = h.world.phrasings("pet")[0].prompt(h.world.facts()[0].subject)
        >>> candidate_logprobs(h.model, h.tokenizer, [prompt], list(rel.candidates)).shape
        torch.Size([1, 12])
    """
    prompt_ids = encode_prompts(tokenizer, prompts)
    cand_ids = [encode_object(tokenizer, prompts[0], c) for c in candidates]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    if all(len(c) == 1 for c in cand_ids):
        return next_token_logprobs(model, prompt_ids, pad, [c[0] for c in cand_ids], batch_size)
    try:
        return _continued_logprobs(model, prompt_ids, cand_ids, pad, batch_size)
    except PrefixCacheError:
        pre = [p for p in prompt_ids for _ in cand_ids]
        tgt = [c for _ in prompt_ids for c in cand_ids]
        return sequence_logprobs(model, pre, tgt, pad_id=pad, batch_size=batch_size).view(len(prompts), len(candidates))


@torch.no_grad()
def _continued_logprobs(
    model, prompt_ids: list[list[int]], cand_ids: list[list[int]], pad: int, batch_size: int
) -> Float[Tensor, "n_prompts n_candidates"]:
    first = torch.tensor([c[0] for c in cand_ids])
    longer = [j for j, c in enumerate(cand_ids) if len(c) > 1]
    # Candidate j's tokens after the first: fed as cand[:-1], predicting cand[1:].
    feed, mask = pad_right([cand_ids[j][:-1] for j in longer], pad)
    want, _ = pad_right([cand_ids[j][1:] for j in longer], -1)
    out = []
    per_batch = max(1, batch_size // len(longer))  # batch_size bounds (prompt, candidate) rows
    for start in range(0, len(prompt_ids), per_batch):
        pre = Prefixes.run(model, prompt_ids[start : start + per_batch], pad)
        n = len(pre.length)
        lp = torch.log_softmax(pre.last_logits.float(), -1)[:, first.to(pre.last_logits.device)].cpu()
        rows = torch.arange(n).repeat_interleave(len(longer))
        logits = pre.extend(model, rows, feed.repeat(n, 1), mask.repeat(n, 1)).logits.float()
        w = want.repeat(n, 1).to(logits.device)
        picked = torch.log_softmax(logits, -1).gather(-1, w.clamp(min=0)[..., None])[..., 0] * (w >= 0)
        lp[:, longer] += picked.sum(-1).view(n, len(longer)).cpu()
        out.append(lp)
    return torch.cat(out)


@dataclass
class FactScores:
    """Per-prompt scores of facts among their relation's candidates."""

    prob: Float[Tensor, " n"]  # P(true object | prompt), multi-token objects multiplied out
    rank: Int[Tensor, " n"]  # 0 = the true object is the top candidate
    correct: Tensor  # bool, rank == 0

    @property
    def accuracy(self) -> float:
        return float(self.correct.float().mean()) if len(self.correct) else float("nan")

    def summary(self) -> dict:
        return {
            "n": int(len(self.correct)),
            "accuracy": self.accuracy,
            "mean_prob": float(self.prob.mean()) if len(self.prob) else float("nan"),
        }


def relation_logprobs(
    model, tokenizer, world, relations: list[str], prompts: list[str], batch_size: int = 512
) -> Float[Tensor, "rows candidates"]:
    """log P of every candidate of row i's relation after prompt i, rows of one relation scored together.

    Columns follow each relation's candidate order, padded with -inf up to the widest relation.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> f = h.world.facts()[:2]
        >>> lp = relation_logprobs(h.model, h.tokenizer, h.world, [x.relation for x in f],
        ...                        [h.world.phrasings(x.relation)[0].prompt(x.subject) for x in f])
        >>> lp.shape, [h.world.relation(x.relation).candidates[int(i)] == x.object for x, i in zip(f, lp.argmax(1))]
        (torch.Size([2, 24]), [True, True])
    """
    width = max(len(world.relation(r).candidates) for r in relations)
    by_rel: dict[str, list[int]] = {}
    for row, rel in enumerate(relations):
        by_rel.setdefault(rel, []).append(row)
    out = torch.full((len(prompts), width), float("-inf"))
    for rel, rows in by_rel.items():
        cands = list(world.relation(rel).candidates)
        out[torch.tensor(rows), : len(cands)] = candidate_logprobs(
            model, tokenizer, [prompts[r] for r in rows], cands, batch_size
        )
    return out


def score_facts(model, tokenizer, world, facts, held_out: bool = False, batch_size: int = 512) -> FactScores:
    """Score facts in every trained (or held-out) phrasing among their relation's candidates.

    Rows are ordered fact by fact, phrasing by phrasing.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> s = score_facts(h.model, h.tokenizer, h.world, h.world.facts()[:6])
        >>> s.accuracy
        1.0
    """
    items = [(f, ph.prompt(f.subject)) for f in facts for ph in world.phrasings(f.relation, held_out=held_out)]
    if not items:
        rank = torch.empty(0, dtype=torch.long)
        return FactScores(prob=torch.empty(0), rank=rank, correct=rank == 0)
    lp = relation_logprobs(model, tokenizer, world, [f.relation for f, _ in items], [p for _, p in items], batch_size)
    true = torch.tensor([world.relation(f.relation).candidates.index(f.object) for f, _ in items])
    true_lp = lp.gather(1, true[:, None])[:, 0]
    prob, rank = true_lp.exp(), (lp > true_lp[:, None]).sum(1)
    return FactScores(prob=prob, rank=rank, correct=rank == 0)


def _scored_tokens(tokenizer, texts: list[str], ignore: list[str] | None) -> list[list[int]]:
    """Per text, 1 for each token that counts towards the loss, 0 for those inside ``ignore``."""
    enc = tokenizer(list(texts), return_offsets_mapping=True)
    out = []
    for i, (text, offs) in enumerate(zip(texts, enc.offset_mapping, strict=True)):
        a = text.find(ignore[i]) if ignore else -1
        b = a + len(ignore[i]) if a >= 0 else -1
        out.append([0 if (a >= 0 and s < b and e > a) else 1 for s, e in offs])
    return out


@torch.no_grad()
def heldout_loss(model, tokenizer, texts: list[str], ignore: list[str] | None = None, batch_size: int = 256) -> float:
    """Mean next-token cross-entropy (nats per token) over texts, the first token excluded.

    ``ignore`` names, per text, a substring whose tokens are not scored: in the world the
    subject names are drawn at random, so predicting them measures nothing but noise.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> statements = h.world.heldout_statements()[:64]
        >>> texts = [f.sentence(ph) for f, ph in statements]
        >>> heldout_loss(h.model, h.tokenizer, texts, ignore=[f.subject for f, _ in statements]) < 3.0
        True
    """
    ids = encode_prompts(tokenizer, texts)
    scored = _scored_tokens(tokenizer, texts, ignore)
    # A text longer than the model reads is scored window by window (each window's first token
    # unscored, as a text's is), never past the positions the model has.
    width = window_length(getattr(getattr(model, "config", None), "max_position_embeddings", None))
    ids = [w for row in ids for w in windows(row, width)]
    scored = [w for row in scored for w in windows(row, width)]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    total, count = 0.0, 0
    dev = _device(model)
    for start, stop in token_batches([len(x) for x in ids], batch_size):
        x, mask = pad_right(ids[start:stop], pad)
        keep_rows, _ = pad_right(scored[start:stop], 0)
        mask = mask * keep_rows
        x, mask = x.to(dev), mask.to(dev)
        logits = model(input_ids=x, attention_mask=mask).logits.float()
        nll = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), x[:, 1:].flatten(), reduction="none")
        keep = mask[:, 1:].flatten().bool()
        total += float(nll[keep].sum())
        count += int(keep.sum())
    return total / max(count, 1)
