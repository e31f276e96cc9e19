"""What one model state says about a user's question-answer pairs, read from text alone.

The readings :mod:`~workbench.verify.text_report` compares between the edited model, the
original and a reference model trained without the forget set, with no fact world behind them:

* answer probability: P̄(a | q) = P(a | q)^(1/|a|), the answer's per-token probability after
  the question (TOFU's "probability"), averaged over items;
* greedy answers and their ROUGE-L recall against the true answer (TOFU's "ROUGE");
* answer ranking and truth ratio, where an item has perturbed answers: whether the answer (its
  paraphrase where one is given, as TOFU asks) is likelier per token than every perturbed one,
  and R = geometric mean of P̄(perturbed) / P̄(answer) (:func:`~workbench.verify.truth_ratio.ratios_of`);
* multiple-choice accuracy: the right choice the likeliest continuation of its question;
* the same greedy answers to the paraphrased questions, where items have them, and from
  round-to-nearest quantised copies (:mod:`~workbench.verify.quantise`).

A plain text (no question) is split in two at its middle word: the first half is the question,
the rest the answer, so that greedy continuation measures verbatim memorisation as MUSE does.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from rouge_score import rouge_scorer
from torch import Tensor

from workbench.core.data_files import QA, Choice
from workbench.core.metrics import sequence_logprobs
from workbench.core.sites import UnsupportedArchitecture
from workbench.core.tokens import encode_objects, encode_prompts
from workbench.verify.candidates import CandidateTable
from workbench.verify.quantise import QuantiseSettings, quantised
from workbench.verify.rewrite import greedy_continuations
from workbench.verify.truth_ratio import ratios_of

# A plain text longer than this is cut: its first half is the question, the next as many words the answer.
SPLIT_WORDS = 48


def as_items(data: Sequence[QA] | Sequence[str]) -> list[QA]:
    """Question-answer pairs as they are; a plain text split at its middle word (at most 48 words a side).

    Examples:
        >>> [(q.question, q.answer) for q in as_items(["Ada was born in Paris ."])]
        [('Ada was born', 'in Paris .')]
        >>> as_items([QA("Q?", "A.")])[0].answer
        'A.'
    """
    out = []
    for i, d in enumerate(data):
        if isinstance(d, QA):
            out.append(d)
            continue
        words = str(d).split()
        if len(words) < 2:
            raise ValueError(
                f"text {i + 1} ({str(d)[:40]!r}): expected at least two words to split into prompt and answer"
            )
        half = min(len(words) // 2, SPLIT_WORDS)
        out.append(QA(" ".join(words[:half]), " ".join(words[half : half + SPLIT_WORDS])))
    return out


def sample(items: list, k: int | None, seed: int) -> list:
    """At most ``k`` items, drawn with ``seed``, in their order; all of them when ``k`` is None.

    Examples:
        >>> sample(list(range(10)), 3, 0), sample([1, 2], None, 0)
        ([0, 6, 9], [1, 2])
    """
    if k is None or len(items) <= k:
        return list(items)
    return [items[i] for i in sorted(random.Random(seed).sample(range(len(items)), k))]


@torch.no_grad()
def continuation_logprobs(
    handle, questions: Sequence[str], answers: Sequence[str], batch_size: int = 64
) -> tuple[Float[Tensor, " n"], Float[Tensor, " n"]]:
    """log P(answer | question), summed over the answer's tokens, and that token count, per pair.

    The answer follows its question after one space, as in :attr:`QA.text`.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> f = h.world.facts()[0]
        >>> q = h.world.phrasings(f.relation)[0].prompt(f.subject)
        >>> lp, n = continuation_logprobs(h, [q], [f.object])
        >>> float(lp.exp()) > 0.5, n.tolist() == [float(len(h.tokenizer.tokenize(" " + f.object)))]
        (True, True)
    """
    tok = handle.tokenizer
    prefixes = encode_prompts(tok, list(questions))
    targets = encode_objects(tok, list(questions), list(answers))
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    lp = sequence_logprobs(handle.model, prefixes, targets, pad_id=pad, batch_size=batch_size)
    return lp, torch.tensor([float(len(t)) for t in targets])


def answer_probability(handle, items: Sequence[QA], batch_size: int = 64) -> Float[Tensor, " n"]:
    """Per item, P̄(answer | question): the answer's probability per token (geometric mean).

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> answer_probability(h, [QA("Tikrelm Robreir was born in", "Krigril")]).tolist()[0] > 0.9
        True
    """
    lp, n = continuation_logprobs(handle, [i.question for i in items], [i.answer for i in items], batch_size)
    return (lp / n).exp()


def answer_table(handle, items: Sequence[QA], batch_size: int = 64) -> CandidateTable | None:
    """Per item with perturbed answers, the log-probabilities of its answer (column 0) and of those.

    The answer is the paraphrased one where an item has it (TOFU's truth ratio compares the
    paraphrase with the perturbed answers). None when no item has perturbed answers.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> t = answer_table(h, [QA("Tikrelm Robreir was born in", "Krigril", None, ("Grobun", "Mileil"))])
        >>> t.logprob.shape, bool(t.correct.all())
        (torch.Size([1, 3]), True)
    """
    rows = [i for i in items if i.perturbed_answers]
    if not rows:
        return None
    pairs = [(r, a) for r, i in enumerate(rows) for a in (i.paraphrased_answer or i.answer, *i.perturbed_answers)]
    lp, n = continuation_logprobs(handle, [rows[r].question for r, _ in pairs], [a for _, a in pairs], batch_size)
    width = 1 + max(len(i.perturbed_answers) for i in rows)
    logprob = torch.full((len(rows), width), float("-inf"))
    length = torch.ones(len(rows), width)
    col = 0
    for r, i in enumerate(rows):
        k = 1 + len(i.perturbed_answers)
        logprob[r, :k], length[r, :k] = lp[col : col + k], n[col : col + k]
        col += k
    zeros = torch.zeros(len(rows), dtype=torch.long)
    return CandidateTable(logprob, length, zeros, torch.arange(len(rows)))


def truth_ratios_of(table: CandidateTable | None) -> list[float]:
    """Per row of an :func:`answer_table`, TOFU's truth ratio R; near 0 when the model knows the answer.

    Examples:
        >>> t = CandidateTable(torch.log(torch.tensor([[0.5, 0.25, 0.25]])), torch.ones(1, 3),
        ...                    torch.tensor([0]), torch.tensor([0]))
        >>> truth_ratios_of(t), truth_ratios_of(None)
        ([0.5], [])
    """
    return [] if table is None else ratios_of(table, len(table.true)).tolist()


def greedy_answers(handle, items: Sequence[QA], max_new_tokens: int = 32, batch_size: int = 64) -> list[str]:
    """The model's greedy answer to each question, as long as the true answer plus a few tokens.

    Items are generated in groups of equal length so that a short answer is not read from a long
    continuation, where the true answer may appear by chance further on.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> greedy_answers(h, [QA("Tikrelm Robreir was born in", "Krigril")])[0].split()[0]
        'Krigril'
    """
    tok = handle.tokenizer
    targets = encode_objects(tok, [i.question for i in items], [i.answer for i in items])
    budget = [min(len(t) + 2, max_new_tokens) for t in targets]
    out = [""] * len(items)
    for n in sorted(set(budget)):
        group = [j for j, b in enumerate(budget) if b == n]
        ids = greedy_continuations(handle, [items[j].question for j in group], n, batch_size)
        for j, row in zip(group, ids, strict=True):
            out[j] = tok.decode(row, skip_special_tokens=True).strip()
    return out


_SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_recall(predictions: Sequence[str], answers: Sequence[str]) -> list[float]:
    """ROUGE-L recall of each prediction against its true answer (TOFU's ROUGE, stemmed).

    Examples:
        >>> rouge_recall(["born in Paris , France", "London"], ["in Paris", "Paris"])
        [1.0, 0.0]
    """
    return [_SCORER.score(a, p)["rougeL"].recall for p, a in zip(predictions, answers, strict=True)]


def choice_correct(handle, choices: Sequence[Choice], batch_size: int = 64) -> tuple[list[bool], float]:
    """Per question, whether its right choice is the likeliest continuation; and chance, the mean 1 / choices.

    Choices are ranked by their summed log-probability after the question, as
    :attr:`~workbench.verify.candidates.CandidateTable.correct` ranks candidates.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> choice_correct(h, [Choice("Tikrelm Robreir was born in", ("Grobun", "Krigril"), 1)])
        ([True], 0.5)
    """
    pairs = [(q, c) for q in choices for c in q.choices]
    lp, _ = continuation_logprobs(handle, [q.question for q, _ in pairs], [c for _, c in pairs], batch_size)
    out, col = [], 0
    for q in choices:
        scores = lp[col : col + len(q.choices)]
        out.append(bool((scores > scores[q.answer]).sum() == 0))
        col += len(q.choices)
    return out, sum(1 / len(q.choices) for q in choices) / len(choices)


@dataclass(frozen=True)
class AnswerReadings:
    """One model state's readings of some items (module docstring); lists follow the items' order.

    Attributes:
        probability: P̄(answer | question) per item.
        recall: ROUGE-L recall of the greedy answer per item.
        answers: The greedy answers.
        ranked_first: Per item with perturbed answers, whether its answer is likelier per token
            than every perturbed one; truth_ratios: its truth ratio R.
    """

    probability: list[float]
    recall: list[float]
    answers: list[str]
    ranked_first: list[bool]
    truth_ratios: list[float]


def read_answers(
    handle, items: Sequence[QA], max_new_tokens: int = 32, batch_size: int = 64, ranking: bool = True
) -> AnswerReadings:
    """Every reading of :class:`AnswerReadings` of one model state; without ``ranking``, no answer ranking.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> r = read_answers(h, [QA("Tikrelm Robreir was born in", "Krigril", None, ("Grobun",))])
        >>> r.recall, r.ranked_first, r.truth_ratios[0] < 0.01
        ([1.0], [True], True)
    """
    # The perturbed answers' ranking costs a continuation each: the attacks' copies count greedy answers only.
    table = answer_table(handle, items, batch_size) if ranking else None
    answers = greedy_answers(handle, items, max_new_tokens, batch_size)
    ranked = [] if table is None else (table.normalised.argmax(1) == 0).tolist()
    return AnswerReadings(
        answer_probability(handle, items, batch_size).tolist(),
        rouge_recall(answers, [i.answer for i in items]),
        answers,
        ranked,
        truth_ratios_of(table),
    )


def paraphrased(items: Sequence[QA]) -> list[QA]:
    """The items that have a paraphrased question, asked it instead (without perturbed answers).

    Examples:
        >>> [(q.question, q.answer) for q in paraphrased([QA("Q?", "A.", None, ("C.",), "Q again?"), QA("R?", "B.")])]
        [('Q again?', 'A.')]
    """
    return [QA(i.paraphrased_question, i.answer) for i in items if i.paraphrased_question]


def quantised_answers(
    handle, items: Sequence[QA], bits: Sequence[int], max_new_tokens: int = 32, batch_size: int = 64
) -> tuple[dict[str, AnswerReadings], list[str]]:
    """Per bit width, the readings of a round-to-nearest copy (one copy at a time); and why any was not run.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> out, notes = quantised_answers(h, [QA("Tikrelm Robreir was born in", "Krigril")], (8, 4))
        >>> {k: v.recall for k, v in out.items()}, notes
        ({'answers int8': [1.0], 'answers int4': [1.0]}, [])

    Returns:
        ({"answers int8": readings, ...}, notes naming the widths the model's architecture refused).
    """
    out, notes = {}, []
    for b in bits:
        try:
            q = quantised(handle, QuantiseSettings(bits=b))
        except UnsupportedArchitecture as e:
            notes.append(f"int{b}: not run ({e})")
            continue
        out[f"answers int{b}"] = read_answers(q, items, max_new_tokens, batch_size, ranking=False)
        del q  # one quantised copy alive at a time
    return out, notes


__all__ = [
    "AnswerReadings",
    "SPLIT_WORDS",
    "answer_probability",
    "answer_table",
    "as_items",
    "choice_correct",
    "continuation_logprobs",
    "greedy_answers",
    "paraphrased",
    "quantised_answers",
    "read_answers",
    "rouge_recall",
    "sample",
    "truth_ratios_of",
]
