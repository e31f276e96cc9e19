"""Is the forgotten object still readable from the hidden states? Logit lens and linear probes.

An edit that only suppresses the output leaves the knowledge in the residual stream, where a
reader other than the model's own last layers can find it. Two readers, both at the prompt's
last token, the position where the world model looks facts up (its layer-0 MLP reads the name
that layer-0 attention copied there) and the one the answer is predicted from:

* the logit lens (nostalgebraist, 2020): the residual stream after block l, put through the
  model's own final norm and unembedding, ranks the relation's candidates; no training, so it
  only sees what is already in the output's basis;
* a linear probe per layer and relation: multinomial logistic regression trained on the retain
  people's states to predict the object among the relation's candidates, then tested on the
  forgotten people. It finds a linearly decodable object in any basis.

Candidates are told apart by their first token (the world's two-token employers and schools
all differ in the first), which is all one position can predict. A model trained without the
forgotten people gives the reference: accuracy near the prior (1 / number of candidates).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from jaxtyping import Float, Int
from torch import Tensor

from workbench.core.padding import pad_right
from workbench.core.tokens import encode_object, encode_prompts
from workbench.core.world.facts import Fact
from workbench.verify.candidates import CandidateTable


@dataclass(frozen=True)
class LayerAccuracy:
    """Accuracy of reading the true object among the candidates, layer by layer.

    Attributes:
        method: "logit_lens" or "linear_probe".
        layers: Block indices; layer l reads the residual stream after block l.
        accuracy: Per layer, the fraction of test prompts whose true object ranks first.
        prior: Mean over test prompts of 1 / number of candidates: chance.
        prompts: Test prompts scored.
        train_accuracy: Per layer, the probe's accuracy on its training prompts (probes only).
        settings: The settings used.
    """

    method: str
    layers: tuple[int, ...]
    accuracy: tuple[float, ...]
    prior: float
    prompts: int
    train_accuracy: tuple[float, ...] | None = None
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["layers"], out["accuracy"] = list(self.layers), list(self.accuracy)
        if self.train_accuracy is not None:
            out["train_accuracy"] = list(self.train_accuracy)
        return out


@dataclass(frozen=True)
class _Prompts:
    text: list[str]
    relation: list[str]
    label: Int[Tensor, " n"]  # index of the true object among the relation's candidates
    fact: Int[Tensor, " n"]  # index of the prompt's fact in the facts given


def _prompts(world, facts: Sequence[Fact], held_out: bool) -> _Prompts:
    if world is None:
        raise ValueError("reading facts from hidden states needs a model with a fact world")
    if not facts:
        raise ValueError("no facts to read")
    text, rel, label, fact = [], [], [], []
    for i, f in enumerate(facts):
        cands = world.relation(f.relation).candidates
        for ph in world.phrasings(f.relation, held_out=held_out):
            text.append(ph.prompt(f.subject))
            rel.append(f.relation)
            label.append(cands.index(f.object))
            fact.append(i)
    return _Prompts(text, rel, torch.tensor(label), torch.tensor(fact))


def _width(world, p: _Prompts) -> int:
    return max(len(world.relation(r).candidates) for r in set(p.relation))


def _table(scores: Tensor, p: _Prompts) -> CandidateTable:
    return CandidateTable(scores, torch.ones_like(scores), p.label, p.fact)


def _accuracy(method: str, layers, tables: list[CandidateTable], prior: float, settings, train=None) -> LayerAccuracy:
    return LayerAccuracy(
        method,
        layers,
        tuple(float(t.correct.float().mean()) for t in tables),
        prior,
        len(tables[0].true),
        train,
        asdict(settings),
    )


def _layers(handle, layers: Sequence[int] | None) -> tuple[int, ...]:
    n = handle.n_layers
    return tuple(range(n)) if layers is None else tuple(int(layer) % n for layer in layers)


@torch.no_grad()
def last_token_states(
    handle, prompts: Sequence[str], layers: Sequence[int] | None = None, batch_size: int = 512
) -> Float[Tensor, "layers n d_model"]:
    """The residual stream after each given block, at each prompt's last token.

    Read with forward hooks on the blocks the site map names, so hooks already on the model
    (an edit's, a suppression's) act first.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> last_token_states(h, ["It is well known that", "According to the registry ,"]).shape
        torch.Size([4, 2, 128])
    """
    layers = _layers(handle, layers)
    ids = encode_prompts(handle.tokenizer, list(prompts))
    pad = handle.tokenizer.pad_token_id if handle.tokenizer.pad_token_id is not None else 0
    out = torch.empty(len(layers), len(ids), handle.sites.d_model)
    caught: dict[int, Tensor] = {}

    def catch(i):
        def hook(module, args, output):
            caught[i] = output[0] if isinstance(output, tuple) else output

        return hook

    hooks = [
        handle.sites.module(handle.model, layer, "resid").register_forward_hook(catch(i))
        for i, layer in enumerate(layers)
    ]
    try:
        for start in range(0, len(ids), batch_size):
            chunk = ids[start : start + batch_size]
            x, mask = pad_right(chunk, pad)
            handle.model(input_ids=x.to(handle.device), attention_mask=mask.to(handle.device))
            last = torch.tensor([len(c) - 1 for c in chunk])
            for i in range(len(layers)):
                out[i, start : start + len(chunk)] = (
                    caught[i][torch.arange(len(chunk)), last.to(caught[i].device)].float().cpu()
                )
    finally:
        for hk in hooks:
            hk.remove()
    return out


def first_tokens(handle, relation: str, prompt: str) -> Int[Tensor, " candidates"]:
    """First token of each candidate of a relation after ``prompt``; they must all differ.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> first_tokens(h, "employer", "It is well known that Tikrelm Robreir works for").shape
        torch.Size([16])
    """
    cands = handle.world.relation(relation).candidates
    first = [encode_object(handle.tokenizer, prompt, c)[0] for c in cands]
    if len(set(first)) < len(first):
        raise ValueError(f"candidates of {relation!r} share a first token: one position cannot tell them apart")
    return torch.tensor(first)


@dataclass(frozen=True)
class LensSettings:
    """Settings of the logit lens.

    Examples:
        >>> LensSettings().held_out
        False

    Args:
        layers: Blocks to read after (negative counts from the end); None: all.
        held_out: Read on the held-out phrasings instead of the trained ones.
        batch_size: Prompts per forward pass.
    """

    layers: tuple[int, ...] | None = None
    held_out: bool = False
    batch_size: int = 512


@torch.no_grad()
def lens_tables(
    handle, facts: Sequence[Fact], settings: LensSettings | None = None
) -> tuple[tuple[int, ...], list[CandidateTable], float]:
    """Per layer, the lens's logit of every candidate's first token after each prompt; and the prior.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> layers, tables, prior = lens_tables(h, h.world.facts()[:6])
        >>> layers, tables[-1].logprob.shape, bool(tables[-1].correct.all())
        ((0, 1, 2, 3), torch.Size([54, 24]), True)
    """
    s = settings or LensSettings()
    p = _prompts(handle.world, list(facts), s.held_out)
    layers = _layers(handle, s.layers)
    states = last_token_states(handle, p.text, layers, s.batch_size)
    norm = handle.model.get_submodule(handle.sites.final_norm_path)
    unembed = handle.model.get_submodule(handle.sites.unembed_path)
    scores = torch.full((len(layers), len(p.text), _width(handle.world, p)), float("-inf"))
    prior = torch.empty(len(p.text))
    for rel in dict.fromkeys(p.relation):
        rows = torch.tensor([i for i, r in enumerate(p.relation) if r == rel])
        tokens = first_tokens(handle, rel, p.text[int(rows[0])])
        prior[rows] = 1.0 / len(tokens)
        for i in range(len(layers)):
            h = states[i, rows].to(handle.device, handle.dtype)
            scores[i, rows[:, None], torch.arange(len(tokens))] = unembed(norm(h)).float().cpu()[:, tokens]
    return layers, [_table(scores[i], p) for i in range(len(layers))], float(prior.mean())


@torch.no_grad()
def logit_lens(handle, facts: Sequence[Fact], settings: LensSettings | None = None) -> LayerAccuracy:
    """Per layer, the accuracy of the final norm and unembedding applied to the residual stream.

    The last layer's figure is the model's own (its first-token) accuracy.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> lens = logit_lens(h, h.world.facts()[:12])
        >>> lens.layers, lens.accuracy[-1]
        ((0, 1, 2, 3), 1.0)

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle` with a world.
        facts: World facts, each read in every trained (or held-out) phrasing.
        settings: :class:`LensSettings`.
    """
    s = settings or LensSettings()
    layers, tables, prior = lens_tables(handle, facts, s)
    return _accuracy("logit_lens", layers, tables, prior, s)


@dataclass(frozen=True)
class ProbeSettings:
    """Settings of the linear probes.

    Examples:
        >>> ProbeSettings().train_people, ProbeSettings().steps
        (None, 100)

    Args:
        layers: Blocks to probe after (negative counts from the end); None: all.
        train_people: Retain people whose facts train the probes, drawn with ``seed``; None: all.
            The probes read the forgotten people better the more people they learn from, at
            about twice the time for all of them as for 100 (figures in
            docs/verify.md#what-each-check-reads-on-the-known-answers).
        held_out: Train and test on the held-out phrasings instead of the trained ones.
        l2: Weight of the squared-norm penalty on the probe weights, on standardised states.
        steps: L-BFGS iterations (full batch); the fits converge well within 100.
        seed: Seed of the people drawn.
        batch_size: Prompts per forward pass.
    """

    layers: tuple[int, ...] | None = None
    train_people: int | None = None
    held_out: bool = False
    l2: float = 1e-3
    steps: int = 100
    seed: int = 0
    batch_size: int = 512


def fit_probe(
    x: Float[Tensor, "n d"], y: Int[Tensor, " n"], classes: int, l2: float = 1e-3, steps: int = 100
) -> tuple[Float[Tensor, "d classes"], Float[Tensor, " classes"]]:
    """Multinomial logistic regression by full-batch L-BFGS: weights and bias, ``logits = x @ w + b``.

    Examples:
        >>> x = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
        >>> w, b = fit_probe(x, torch.tensor([0, 1, 0, 1]), classes=2)
        >>> (x @ w + b).argmax(1).tolist()
        [0, 1, 0, 1]
    """
    torch.manual_seed(0)
    w = torch.zeros(x.shape[1], classes, requires_grad=True)
    b = torch.zeros(classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ w + b, y) + l2 * w.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach()


def _sample_people(facts: Sequence[Fact], n: int | None, seed: int) -> list[Fact]:
    people = list(dict.fromkeys(f.subject for f in facts))
    if n is not None and len(people) > n:
        people = random.Random(seed).sample(people, n)
    keep = set(people)
    return [f for f in facts if f.subject in keep]


@torch.no_grad()
def probe_tables(
    handle, forget: Sequence[Fact], retain: Sequence[Fact], settings: ProbeSettings | None = None
) -> tuple[tuple[int, ...], list[CandidateTable], float, tuple[float, ...]]:
    """Per layer, probe logits of every candidate for each forgotten prompt; the prior; training accuracy.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> people = list(h.world.people)
        >>> layers, tables, prior, train = probe_tables(h, h.world.facts(people[:2]), h.world.facts(people[2:40]),
        ...                                             ProbeSettings(layers=(3,)))
        >>> layers, tables[0].logprob.shape, train[0]
        ((3,), torch.Size([108, 24]), 1.0)
    """
    s = settings or ProbeSettings()
    # A relation's probe trains on that relation's prompts only: what it must never see is a fact it is tested on.
    overlap = {(f.subject, f.relation) for f in forget} & {(f.subject, f.relation) for f in retain}
    if overlap:
        subject, relation = next(iter(overlap))
        raise ValueError(f"the probes must not train on a forgotten person's fact ({subject!r}, {relation})")
    train = _prompts(handle.world, _sample_people(list(retain), s.train_people, s.seed), s.held_out)
    test = _prompts(handle.world, list(forget), s.held_out)
    layers = _layers(handle, s.layers)
    x_train = last_token_states(handle, train.text, layers, s.batch_size)
    x_test = last_token_states(handle, test.text, layers, s.batch_size)
    right_train = torch.zeros(len(layers), len(train.text), dtype=torch.bool)
    scores = torch.full((len(layers), len(test.text), _width(handle.world, test)), float("-inf"))
    prior = torch.empty(len(test.text))
    for rel in dict.fromkeys(test.relation):
        tr = torch.tensor([i for i, r in enumerate(train.relation) if r == rel], dtype=torch.long)
        te = torch.tensor([i for i, r in enumerate(test.relation) if r == rel])
        classes = len(handle.world.relation(rel).candidates)
        prior[te] = 1.0 / classes
        if not len(tr):
            raise ValueError(f"no retain facts of relation {rel!r} to train its probe on")
        for i in range(len(layers)):
            a, b = x_train[i, tr], x_test[i, te]
            # Standardised on the training states so that one l2 weight suits every layer's scale.
            mu, sd = a.mean(0), a.std(0).clamp_min(1e-6)
            w, bias = fit_probe((a - mu) / sd, train.label[tr], classes, s.l2, s.steps)
            right_train[i, tr] = (((a - mu) / sd) @ w + bias).argmax(1) == train.label[tr]
            scores[i, te[:, None], torch.arange(classes)] = ((b - mu) / sd) @ w + bias
    # Only the relations asked about get a probe, so only their training prompts count.
    used = torch.tensor([r in set(test.relation) for r in train.relation])
    return (
        layers,
        [_table(scores[i], test) for i in range(len(layers))],
        float(prior.mean()),
        tuple(float(c[used].float().mean()) for c in right_train),
    )


@torch.no_grad()
def linear_probe(
    handle, forget: Sequence[Fact], retain: Sequence[Fact], settings: ProbeSettings | None = None
) -> LayerAccuracy:
    """Per layer, train probes on retain people's states and read the forgotten people's objects.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> people = list(h.world.people)
        >>> probe = linear_probe(h, h.world.facts(people[:3]), h.world.facts(people[3:63]),
        ...                      ProbeSettings(layers=(2,), train_people=None))
        >>> probe.accuracy[0] > 10 * probe.prior  # trained on 60 people, tested on 3 others
        True

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle` with a world.
        forget: Facts the probes are tested on (the forgotten people's).
        retain: Facts of other people; those of ``train_people`` of them train the probes.
        settings: :class:`ProbeSettings`.
    """
    s = settings or ProbeSettings()
    layers, tables, prior, train = probe_tables(handle, forget, retain, s)
    return _accuracy("linear_probe", layers, tables, prior, s, train)


__all__ = [
    "LayerAccuracy",
    "LensSettings",
    "ProbeSettings",
    "first_tokens",
    "fit_probe",
    "last_token_states",
    "lens_tables",
    "linear_probe",
    "logit_lens",
    "probe_tables",
]
