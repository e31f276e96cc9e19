"""SAE feature ablation as an unlearning editor: at run time, and baked into the weights for export.

The runtime form (:mod:`edit.sae_bake`: :class:`Ablation`, :func:`ablated`, :func:`run_ablated`)
splices a shipped SAE in at its site, error term kept, and zeroes the features that carry the
knowledge to forget (or, where they fire, clamps them to a negative value). The baked form is an
:class:`~edit.edit.Edit` of that site's MLP output projection fitted to reproduce the runtime
change, so it survives export as a plain checkpoint; :func:`compare_forms` says how close they come.

Choosing features: each feature's attribution (activation x gradient of the object's log-odds,
summed over the prompt) on a forgotten person's facts, minus ``retain_penalty`` times its
attribution summed over the whole retain set (estimated from a sample). Sums, not means: a
feature that carries "born in Oslo" for the dozen retained Oslo-born people outweighs the one
forgotten fact it also carries. On the shipped SAEs features are shared between people, so
ablation trades retained facts for forgotten ones (the trade is measured in
docs/forget.md#sae-feature-ablation).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor

from edit.edit import Delta, Edit
from edit.edit_request import Forget
from edit.forget_request import ForgetRequest, forget_request, subsample
from edit.sae_bake import (
    Ablation,
    AblationError,
    BakeFit,
    Mode,
    ablated,
    ablation_hook,
    bake,
    feature_change,
    run_ablated,
    sae_for,
    sae_of,
    score_ablated,
)
from locate.location import Location, Site
from locate.sae_splice import gradient_splice
from locate.sae_train import SaeSettings
from locate.text_features import locate_text_features
from workbench.core.hashing import tensor_hash
from workbench.core.padding import pad_right
from workbench.core.tokens import encode_prompts


# -- choosing features -------------------------------------------------------------------------
def feature_attribution(
    handle, sae, site: SaeSettings, prompts: list[str], objects: list[str], batch_size: int = 256
) -> Float[Tensor, "prompt d_sae"]:
    """Per prompt and feature: activation x gradient of the object's log-odds, summed over the prompt.

    The first-order drop in log-odds from zeroing that feature (batched :func:`locate.features._attribution`).

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> s = SaeSettings(0, "mlp")
        >>> f = h.world.facts()[0]
        >>> prompt = h.world.phrasings(f.relation)[0].prompt(f.subject)
        >>> a = feature_attribution(h, sae_for(h, s), s, [prompt], [f.object])
        >>> tuple(a.shape), float(a.sum()) > 0
        ((1, 512), True)
    """
    module = handle.sites.module(handle.model, site.layer, site.component)
    box: dict = {}  # each batch's forward pass leaves its features here
    splice = gradient_splice(sae, box)

    per_batch = []
    for start in range(0, len(prompts), batch_size):
        end = start + batch_size
        enc = [handle.encode_fact(p, o) for p, o in zip(prompts[start:end], objects[start:end], strict=True)]
        ids, mask = pad_right([p + o[:-1] for p, o in enc], handle.tokenizer.pad_token_id or 0)
        rows = torch.tensor([i for i, (p, o) in enumerate(enc) for _ in o])
        cols = torch.tensor([len(p) - 1 + k for p, o in enc for k in range(len(o))])
        toks = torch.tensor([t for _, o in enc for t in o])
        hook = module.register_forward_hook(splice)
        try:
            with torch.enable_grad():
                logits = handle.model(input_ids=ids.to(handle.device), attention_mask=mask.to(handle.device)).logits
                at = [t.to(logits.device) for t in (rows, cols, toks)]
                picked = torch.log_softmax(logits.float(), -1)[at[0], at[1], at[2]].cpu()
                lp = torch.zeros(len(enc)).index_add(0, rows, picked).clamp(max=-1e-6)
                (g,) = torch.autograd.grad((lp - torch.log(-torch.expm1(lp))).sum(), [box["f"]])
        finally:
            hook.remove()
        in_prompt = torch.arange(ids.shape[1])[None, :] < torch.tensor([len(p) for p, _ in enc])[:, None]
        per_batch.append((box["f"].detach() * g * in_prompt[..., None].to(g.device)).sum(1).cpu())
    return torch.cat(per_batch)


@dataclass(frozen=True)
class AblationSettings:
    """Settings of SAE feature ablation; defaults measured on forget01 (docs/forget.md#sae-feature-ablation).

    With the defaults, forget01's people keep far more of their facts than the retain model
    knows, and a part of other people's facts and of the neighbours' goes with them. No setting
    does much better: the settings move along one trade-off, and from forget05 on (15 people) the
    forget and retain accuracies fall together, since the forgotten people use most answers.

    Examples:
        >>> AblationSettings().sae.hook_name(), AblationSettings().mode
        ('blocks.0.hook_mlp_out', 'zero')

    Args:
        sae: Which shipped SAE: layer 0's MLP output, where the default model looks its facts up
            (its features are the looked-up answers). The other two sit on about the same
            trade-off on forget01: layer 0's residual stream a little below it, layer 2's a
            little above.
        features_per_person: Best features kept per forgotten person; more forget more and
            keep less.
        max_features: At most this many features in all, the best by the summed score.
        mode, value: "zero", or "clamp_negative" to ``value`` where a feature fires. Clamping
            the same features to -5 forgets more but costs more: the same
            trade-off, one step further along.
        retain_penalty: Weight of a feature's (positive) attribution summed over the whole retain
            set against a person's attribution. A feature is kept only where the person holds
            more than about penalty / (1 + penalty) of its attribution. 0 ignores the retain set
            and takes many retained facts along; 0.02 leaves only features whose ablation
            changes little.
        retain_facts: Retained facts sampled to estimate that sum (scaled up to the retain set).
        phrasings: Trained phrasings per fact attributed (None: all nine).
        bake_ridge: Ridge of the bake, as a fraction of the mean key second moment; 1e-4 to 1e-2
            give about the same closeness.
        bake_bias: Also fit a change to the projection's bias (no closer on forget01).
        bake_texts: World training sentences the bake is fitted on (with the forget statements).
        forget_weight: Weight of each forget statement in the bake against a corpus sentence:
            larger brings the baked form closer to the runtime one on the forget prompts, at
            some cost on the retain prompts (figures in docs/forget.md#sae-feature-ablation).
        seed: Seed of the retain sample and the bake's corpus sample.
        saes: A folder of SAEs to read ``sae`` from (as ``workbench sae train --out`` writes it);
            default the model directory's ``saes/``.

    A request of texts (a model of one's own, no fact world) takes the features that carry the
    forget texts' log-likelihood more, per token, than a sample of ``retain_facts`` retain texts
    (:func:`locate.text_features.locate_text_features`), at most ``features_per_person``.
    """

    sae: SaeSettings = field(default_factory=lambda: SaeSettings(0, "mlp"))
    features_per_person: int = 16
    max_features: int = 64
    mode: Mode = "zero"
    value: float = -5.0
    retain_penalty: float = 0.01
    retain_facts: int = 300
    phrasings: int | None = None
    bake_ridge: float = 1e-3
    bake_bias: bool = False
    bake_texts: int = 4000
    forget_weight: float = 10.0
    seed: int = 0
    saes: str | None = None


def _fact_prompts(world, facts, phrasings: int | None) -> tuple[list[str], list[str], list[int]]:
    prompts, objects, owner = [], [], []
    for i, f in enumerate(facts):
        for ph in world.phrasings(f.relation)[:phrasings]:
            prompts.append(ph.prompt(f.subject))
            objects.append(f.object)
            owner.append(i)
    return prompts, objects, owner


def choose_features(handle, request: ForgetRequest, settings: AblationSettings | None = None) -> Location:
    """Features to ablate for ``request``: a Location of feature sites, best first.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> loc = choose_features(h, forget_request(h.world, "Brur Theistuv"), AblationSettings(features_per_person=3))
        >>> loc.method, len(loc.sites), loc.best().kind, loc.best().component
        ('sae_ablation', 3, 'feature', 'mlp')
    """
    s = settings or AblationSettings()
    world = handle.world
    if not request.forget and request.forget_documents:
        return _choose_for_texts(handle, request, s)
    if not request.forget or world is None:
        raise AblationError("choosing SAE features needs world facts to forget; pass a Location of features instead")
    sae = sae_for(handle, s.sae, s.saes)
    prompts, objects, owner = _fact_prompts(world, request.forget, s.phrasings)
    attr = feature_attribution(handle, sae, s.sae, prompts, objects).clamp(min=0)
    per_phrasing = len(prompts) / len(request.forget)
    retain = subsample(request.retain, s.retain_facts, s.seed)
    retained = torch.zeros(sae.cfg.d_sae)
    if retain:
        r_prompts, r_objects, _ = _fact_prompts(world, retain, s.phrasings)
        r_attr = feature_attribution(handle, sae, s.sae, r_prompts, r_objects).clamp(min=0)
        retained = r_attr.sum(0) * len(request.retain) / len(retain) / (len(r_prompts) / len(retain))
    subject = torch.tensor([[f.subject == p for f in request.forget] for p in request.people], dtype=torch.float32)
    per_person = subject[:, owner] @ attr / per_phrasing  # [person, d_sae]
    score = per_person.sum(0) - s.retain_penalty * retained
    chosen: set[int] = set()
    for row in per_person - s.retain_penalty * retained:
        chosen |= {i for i in row.argsort(descending=True)[: s.features_per_person].tolist() if row[i] > 0}
    best = sorted(chosen, key=lambda i: -float(score[i]))[: s.max_features]
    sites = [Site("feature", s.sae.layer, s.sae.component, feature=i, score=float(score[i])) for i in best]
    return Location(
        "sae_ablation",
        {k: v for k, v in asdict(s).items() if not k.startswith(("bake", "forget_w"))},
        request.to_dict(),
        sites,
        extras={
            "forget_attribution": {str(i): float(per_person[:, i].sum()) for i in best},
            "retain_attribution": {str(i): float(retained[i]) for i in best},
            "retain_sample": len(retain),
        },
    )


def _choose_for_texts(handle, request: ForgetRequest, s: AblationSettings) -> Location:
    if not request.retain_documents:
        raise AblationError("choosing SAE features for forget texts needs retain texts to compare them with")
    retain = subsample(request.retain_documents, s.retain_facts, s.seed)
    found = locate_text_features(
        handle, list(request.forget_documents), retain, s.sae, sae_for(handle, s.sae, s.saes), top=s.features_per_person
    )
    sites = found.sites[: s.max_features]
    if not sites:
        raise AblationError("no SAE feature carries the forget texts more than the retain texts: nothing to ablate")
    settings = {k: v for k, v in asdict(s).items() if not k.startswith(("bake", "forget_w"))}
    extras = {**found.extras, "retain_sample": len(retain)}
    return Location("sae_ablation", settings, request.to_dict(), sites, extras=extras)


def ablation_from(location: Location, settings: AblationSettings | None = None) -> Ablation:
    """The runtime form a Location of feature sites names (all from one SAE), with ``settings``' mode.

    Examples:
        >>> loc = Location("m", sites=[Site("feature", 0, "resid", feature=4, score=2.0),
        ...                            Site("feature", 0, "resid", feature=9)])
        >>> ablation_from(loc).features, ablation_from(loc).hook_name
        ((4, 9), 'blocks.0.hook_resid_post')
    """
    s = settings or AblationSettings()
    sites = [x for x in location.sites if x.kind == "feature"]
    if not sites:
        raise AblationError(f"location of method {location.method!r} has no feature sites")
    where = {(x.layer, x.component) for x in sites}
    if len(where) > 1 or next(iter(where))[1] not in ("resid", "mlp"):
        raise AblationError(f"feature sites must all be on one SAE (resid or mlp), got {sorted(where, key=str)}")
    ((layer, component),) = where
    return Ablation(SaeSettings(layer, component), tuple(dict.fromkeys(x.feature for x in sites)), s.mode, s.value)


# -- the editor ----------------------------------------------------------------------------------
def sae_ablate(
    handle,
    request: ForgetRequest | str | list[str],
    location: Location | None = None,
    settings: AblationSettings | None = None,
    apply: bool = True,
    progress: bool = True,
) -> Edit:
    """Forget by ablating SAE features; returns the baked :class:`Edit` (one MLP output projection).

    The runtime form it stands in for is :func:`ablation_of` the edit; the chosen features are its
    ``location``, the bake's fit in its ``metrics``.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> e = sae_ablate(h, "Brur Theistuv", settings=AblationSettings(bake_texts=500), progress=False)
        >>> e.names, e.deltas[e.names[0]].rank == len(ablation_of(e).features)
        (['transformer.h.0.mlp.c_proj.weight'], True)
        >>> e.revert(h.model).applied
        False

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle` with shipped SAEs.
        request: A :class:`~edit.forget_request.ForgetRequest`, or a split, person or people to
            build one from (:func:`~edit.forget_request.forget_request`).
        location: Feature sites to ablate (all on one SAE) instead of choosing them.
        settings: :class:`AblationSettings`.
        apply: Apply the edit to ``handle.model`` before returning it.
        progress: Show the bake's progress bar.

    Raises:
        AblationError: no such SAE, a feature out of range, nothing chosen, a bad setting.
        ForgetError: an unknown person or split.
    """
    s = settings or AblationSettings()
    if not isinstance(request, ForgetRequest):
        if handle.world is None:
            raise AblationError(f"model {handle.name!r} has no fact world: pass a ForgetRequest of texts")
        request = forget_request(handle.world, request)
    t0 = time.perf_counter()
    if location is None:
        location = choose_features(handle, request, s)
    ablation = ablation_from(location, s)
    sae = sae_of(handle, ablation, s.saes)
    t_choose = time.perf_counter() - t0
    texts, weights = bake_texts(handle, request, s)
    fit = bake(
        handle,
        sae,
        ablation.sae,
        list(ablation.features),
        texts,
        weights,
        ablation.mode,
        ablation.value,
        s.bake_ridge,
        s.bake_bias,
        progress=progress,
    )
    edit = _edit(handle, request, location, s, ablation, fit)
    edit.metrics.update(seconds=time.perf_counter() - t0, choose_seconds=t_choose)
    return edit.apply(handle.model) if apply else edit


def bake_texts(handle, request: ForgetRequest, settings: AblationSettings) -> tuple[list[str], list[float]]:
    """The bake's text and weights: sampled corpus sentences (1 each) and forget statements (``forget_weight``)."""
    world = handle.world
    corpus = (
        subsample(world.training_sentences(), settings.bake_texts, settings.seed)
        if world is not None
        else subsample(request.retain_documents, settings.bake_texts, settings.seed)
    )
    forget = [f.sentence(ph) for f in request.forget for ph in world.phrasings(f.relation)] if request.forget else []
    forget += list(request.forget_documents)
    return corpus + forget, [1.0] * len(corpus) + [settings.forget_weight] * len(forget)


def _edit(handle, request, location, s: AblationSettings, ablation: Ablation, fit: BakeFit) -> Edit:
    sites, model = handle.sites, handle.model
    name = sites.mlp_out_path(ablation.sae.layer)
    left, right = fit.left, fit.right
    # Stored [d_mlp, d_model] (Conv1D) or [d_model, d_mlp]: the factors follow.
    left, right = (right, left) if sites.weight_is_transposed() else (left, right)
    w = model.get_parameter(name + ".weight")
    deltas = {name + ".weight": Delta(left=left.to(w.dtype), right=right.to(w.dtype))}
    if fit.bias is not None:
        params = dict(model.named_parameters())
        if name + ".bias" not in params:
            raise AblationError(f"{name} has no bias to bake into; use bake_bias=False")
        deltas[name + ".bias"] = Delta(dense=fit.bias.to(params[name + ".bias"].dtype))
    if not all(torch.isfinite(d.tensor()).all() for d in deltas.values()):
        raise AblationError("the bake gave non-finite values; the model is unchanged (raise bake_ridge)")
    hashes = {n: tensor_hash(model.get_parameter(n)) for n in deltas}
    return Edit(
        "sae_ablation",
        Forget.of(request),
        deltas,
        location,
        dict(asdict(s), ablation=ablation.to_dict()),
        {"features": list(ablation.features), "bake_explained": fit.explained, "bake_tokens": fit.tokens},
        hashes_before=hashes,
    )


def ablation_of(edit: Edit) -> Ablation:
    """The runtime form a baked :func:`sae_ablate` edit stands in for."""
    if "ablation" not in edit.settings:
        raise AblationError(f"a {edit.method} edit holds no SAE ablation")
    return Ablation.from_dict(edit.settings["ablation"])


# -- runtime against baked -----------------------------------------------------------------------
@torch.no_grad()
def compare_forms(
    handle,
    edit: Edit,
    request: ForgetRequest,
    retain_facts: int | None = 300,
    neighbour_facts: int | None = 300,
    seed: int = 0,
) -> dict:
    """How close the baked edit comes to the runtime ablation it stands in for, set by set.

    For the forget facts (trained and held-out phrasings), a sample of the retain facts and of
    the neighbours: accuracy among candidates and mean P(true object) of the original model,
    the runtime form and the baked form, and the mean KL divergence KL(runtime || baked) of the
    next-token distributions at the answer position (beside KL(runtime || original): the size
    of the ablation itself). The edit is left applied or not, as it was.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> r = forget_request(h.world, "Brur Theistuv")
        >>> e = sae_ablate(h, r, settings=AblationSettings(bake_texts=500), apply=False, progress=False)
        >>> c = compare_forms(h, e, r, retain_facts=20, neighbour_facts=20)
        >>> sorted(c["forget"]), c["forget"]["original"]["accuracy"], e.applied
        (['baked', 'kl_runtime_baked', 'kl_runtime_original', 'original', 'runtime'], 1.0, False)
    """
    world = handle.world
    if world is None or not request.forget:
        raise AblationError("comparing forms needs world facts to forget")
    sets = {
        "forget": (list(request.forget), False),
        "forget_heldout": (list(request.forget), True),
        "retain": (subsample(request.retain, retain_facts, seed), False),
        "neighbours": (subsample(request.neighbours(world), neighbour_facts, seed), False),
    }
    sets = {k: v for k, v in sets.items() if v[0]}
    was_applied = edit.applied
    if was_applied:
        edit.revert(handle.model)
    try:
        forms = {"original": _measure(handle, sets)}
        with ablated(handle, ablation_of(edit)):
            forms["runtime"] = _measure(handle, sets)
        with edit.applied_to(handle.model):
            forms["baked"] = _measure(handle, sets)
    finally:
        if was_applied:
            edit.apply(handle.model)
    out = {}
    for name in sets:
        out[name] = {form: forms[form][name][0] for form in forms}
        runtime = forms["runtime"][name][1]
        for other in ("baked", "original"):
            kl = (runtime.exp() * (runtime - forms[other][name][1])).sum(-1)
            out[name][f"kl_runtime_{other}"] = float(kl.mean())
    return out


def _measure(handle, sets: dict) -> dict:
    out = {}
    for name, (facts, held_out) in sets.items():
        scores = handle.score(facts, held_out=held_out)
        prompts = [ph.prompt(f.subject) for f in facts for ph in handle.world.phrasings(f.relation, held_out=held_out)]
        out[name] = (
            {"accuracy": scores.accuracy, "mean_prob": float(scores.prob.mean())},
            _answer_logprobs(handle, prompts),
        )
    return out


def _answer_logprobs(handle, prompts: list[str], batch_size: int = 512) -> Float[Tensor, "prompt vocab"]:
    ids = encode_prompts(handle.tokenizer, prompts)
    out = []
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        x, mask = pad_right(chunk, handle.tokenizer.pad_token_id or 0)
        logits = handle.model(input_ids=x.to(handle.device), attention_mask=mask.to(handle.device)).logits
        last = torch.tensor([len(p) - 1 for p in chunk], device=logits.device)
        out.append(torch.log_softmax(logits[torch.arange(len(chunk), device=logits.device), last].float(), -1).cpu())
    return torch.cat(out)


__all__ = [
    "Ablation",
    "AblationError",
    "AblationSettings",
    "ablated",
    "ablation_from",
    "ablation_hook",
    "ablation_of",
    "bake_texts",
    "choose_features",
    "compare_forms",
    "feature_attribution",
    "feature_change",
    "run_ablated",
    "sae_ablate",
    "sae_for",
    "sae_of",
    "score_ablated",
]
