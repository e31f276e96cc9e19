"""The model handle: a Hugging Face causal LM, its tokenizer, its site map and analysis views.

The handle owns the one set of weights that editors change and export writes. Analysis
views (TransformerLens' bridge, nnsight) are created lazily on top of those same weights
and never rewrite them: no layer-norm folding reaches the edit or export path.
"""

from __future__ import annotations

import functools
import json
import os
import random
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch
from jaxtyping import Int
from torch import Tensor

from workbench.core import hub, metrics
from workbench.core.sites import SiteMap, site_map
from workbench.core.tokens import EncodingError, encode_object, encode_prompts, subject_span
from workbench.core.views import hooked_view, nnsight_view
from workbench.core.world.facts import Fact, World
from workbench.core.world.registry import load_world, resolve_world_model
from workbench.core.world.sisa_manifest import SisaFolderError, check_complete, is_sisa_dir


class ModelLoadError(ValueError):
    """A model name or path that cannot be loaded."""


@dataclass(eq=False)
class ModelHandle:
    """A loaded model with everything the locators, editors and views need.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> h.n_layers, h.sites.family
        (4, 'gpt2')
        >>> fact = h.world.facts()[0]
        >>> prompt = h.world.phrasings(fact.relation)[0].prompt(fact.subject)
        >>> h.rank_candidates(prompt, list(h.world.relation(fact.relation).candidates))[0][0] == fact.object
        True
    """

    model: torch.nn.Module
    tokenizer: object
    name: str
    source: str
    world: World | None = None
    _views: dict = field(default_factory=dict, repr=False)

    # -- structure -------------------------------------------------------------------
    @cached_property
    def sites(self) -> SiteMap:
        """The site map: (layer, component) to modules, hook names and edited weights."""
        own = getattr(self.model, "sites", None)  # a SISA ensemble answers with its constituents' map
        return own if isinstance(own, SiteMap) else site_map(self.model)

    @property
    def n_layers(self) -> int:
        return self.sites.n_layers

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def hooked(self):
        """TransformerLens' TransformerBridge over these weights (created on first use)."""
        if "hooked" not in self._views:
            self._views["hooked"] = hooked_view(self.model, self.tokenizer)
        return self._views["hooked"]

    @property
    def nnsight(self):
        """An nnsight LanguageModel over these weights (created on first use)."""
        if "nnsight" not in self._views:
            self._views["nnsight"] = nnsight_view(self.model, self.tokenizer)
        return self._views["nnsight"]

    # -- tokens ----------------------------------------------------------------------
    def encode(self, prompt: str) -> Int[Tensor, "1 t"]:
        ids = encode_prompts(self.tokenizer, [prompt])[0]
        self._check_fits(len(ids), "the prompt")
        return torch.tensor([ids], device=self.device)

    def tokens(self, prompt: str) -> list[str]:
        """The prompt's tokens as the text each one stands for (a leading space is a space).

        Decoded one by one, not the vocabulary's spelling: byte-level and SentencePiece
        vocabularies write a space as ``Ġ`` or ``▁``, which no reader of a trace should see.

        Examples:
            >>> import workbench
            >>> workbench.load("world").tokens("Waen Neibeind owns a pet")
            ['[BOS]', 'Waen', 'Neibeind', 'owns', 'a', 'pet']
        """
        ids = encode_prompts(self.tokenizer, [prompt])[0]
        self._check_fits(len(ids), "the prompt")
        return [self.tokenizer.decode([i]) for i in ids]

    def _check_fits(self, n_tokens: int, what: str) -> None:
        """EncodingError, before any forward pass, for a text longer than the model's context."""
        limit = self.sites.context_length
        if limit is not None and n_tokens > limit:
            raise EncodingError(f"{what} is {n_tokens} tokens long; model {self.name!r} reads at most {limit}")

    def subject_span(self, prompt: str, subject: str) -> tuple[int, int]:
        """Token span [start, end) of the subject in the prompt; EncodingError if absent."""
        return subject_span(self.tokenizer, prompt, subject)

    def encode_fact(self, prompt: str, obj: str) -> tuple[list[int], list[int]]:
        """Token ids of the prompt and of the object that follows it.

        Examples:
            >>> h = load("world")
            >>> f = h.world.facts()[0]
            >>> prompt = h.world.phrasings(f.relation)[0].prompt(f.subject)
            >>> len(h.encode_fact(prompt, f.object)[1])
            1
            >>> h.encode_fact("It is well known that " * 30 + prompt, f.object)  # doctest: +IGNORE_EXCEPTION_DETAIL
            Traceback (most recent call last):
            EncodingError: the prompt with its object is 160 tokens long; model 'world' reads at most 128
        """
        ids, obj_ids = encode_prompts(self.tokenizer, [prompt])[0], encode_object(self.tokenizer, prompt, obj)
        # Scoring feeds the prompt and every object token but the last.
        self._check_fits(len(ids) + len(obj_ids) - 1, "the prompt with its object")
        return ids, obj_ids

    # -- queries ---------------------------------------------------------------------
    def object_prob(self, prompt: str, obj: str) -> float:
        """P(object | prompt), multi-token objects multiplied out."""
        p, o = self.encode_fact(prompt, obj)
        return float(metrics.sequence_logprobs(self.model, [p], [o]).exp()[0])

    @torch.no_grad()
    def top_tokens(self, prompt: str, k: int = 5) -> list[tuple[str, float]]:
        """The k most likely next tokens with their probabilities."""
        probs = torch.softmax(self.model(self.encode(prompt)).logits[0, -1].float(), -1)
        top = probs.topk(k)
        return [(self.tokenizer.decode([int(i)]), float(p)) for p, i in zip(top.values, top.indices, strict=True)]

    def rank_candidates(self, prompt: str, candidates: list[str]) -> list[tuple[str, float]]:
        """Candidates sorted by P(candidate | prompt), most likely first."""
        lp = metrics.candidate_logprobs(self.model, self.tokenizer, [prompt], candidates)[0]
        order = lp.argsort(descending=True)
        return [(candidates[int(i)], float(lp[i].exp())) for i in order]

    def score(self, facts: list[Fact], held_out: bool = False) -> metrics.FactScores:
        """Score world facts in every trained (or held-out) phrasing among their candidates."""
        return metrics.score_facts(self.model, self.tokenizer, self._need_world(), facts, held_out)

    def heldout_loss(self, texts: list[str] | None = None, sample: int | None = None) -> float:
        """Loss on held-out text: by default the world's held-out sentences (all, or a fixed
        random ``sample`` of them), names not scored."""
        if texts is not None:
            return metrics.heldout_loss(self.model, self.tokenizer, texts)
        statements = self._need_world().heldout_statements()
        if sample is not None and sample < len(statements):
            statements = random.Random(0).sample(statements, sample)
        return metrics.heldout_loss(
            self.model,
            self.tokenizer,
            [f.sentence(ph) for f, ph in statements],
            ignore=[f.subject for f, _ in statements],
        )

    def info(self) -> dict:
        cfg = self.model.config
        out = {
            "name": self.name,
            "source": self.source,
            "architecture": cfg.model_type,
            "family": self.sites.family,
            "layers": self.n_layers,
            "d_model": self.sites.d_model,
            "d_mlp": self.sites.d_mlp,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "vocab_size": len(self.tokenizer),
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
        }
        if self.world is not None:
            out["world"] = {
                "people": len(self.world.people),
                "relations": list(self.world.relations),
                "facts": len(self.world.facts()),
                "splits": {k: len(v.forget) for k, v in self.world.splits.items()},
            }
        return out

    def _need_world(self) -> World:
        if self.world is None:
            raise ValueError(f"model {self.name!r} has no fact world; pass texts or facts explicitly")
        return self.world


def load(
    name_or_path: str | os.PathLike = "world",
    device: str | None = None,
    dtype: torch.dtype | str | None = None,
    trust_remote_code: bool = False,
    device_map: str | dict | None = None,
) -> ModelHandle:
    """Load a model handle: the embedded world (``"world"``, ``"world:llama"``,
    ``"world:retain-forget05"``, ...), a local Hugging Face directory, or a hub id.

    The model goes to the GPU when one is present unless ``device`` says otherwise.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world")
        >>> h.info()["world"]["people"]
        300
        >>> workbench.load("no/such/model")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ModelLoadError: cannot load model 'no/such/model': ...

    Args:
        name_or_path: ``world[:variant]``, a directory, or a hub id (needs weights locally or network).
            A SISA folder (``workbench world train sisa``) loads as one model averaging its constituents.
        device: "cpu", "cuda", "cuda:1", ...; default: cuda if available, else cpu.
        dtype: torch dtype or its name ("float32", "bfloat16", "float16"); default float32.
        trust_remote_code: passed to transformers; off unless you turn it on.
        device_map: ``"auto"`` (or a map of modules to devices) spreads a model too large for
            one device over all of them with accelerate; ``device`` is then ignored. Editors
            write each delta on its own tensor's device.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workbench.core.world.sisa_model import load_ensemble  # imports transformers too: on first load, not import

    name_or_path = os.fspath(name_or_path)
    path, local = resolve_model(name_or_path)
    if isinstance(dtype, str):
        try:
            dtype = getattr(torch, dtype)
        except AttributeError:
            raise ModelLoadError(f"unknown dtype {dtype!r}") from None
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        # safetensors only: a pickle can run code when it is read.
        sharded = {"device_map": device_map} if device_map is not None else {}
        if is_sisa_dir(path):  # constituents, each a model directory of its own, averaged as one model
            model = load_ensemble(path, dtype=dtype or torch.float32)
        else:
            model = AutoModelForCausalLM.from_pretrained(
                path, dtype=dtype or torch.float32, trust_remote_code=trust_remote_code, use_safetensors=True, **sharded
            )
    except Exception as e:  # noqa: BLE001 - a damaged file fails in many ways; each is a model that cannot load
        message = " ".join(str(e).split()) or type(e).__name__
        raise ModelLoadError(f"cannot load model {name_or_path!r}: {message}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if device_map is None:
        model.to(device)
    model.eval()
    try:
        world = load_world(path) if local else None
    except ValueError as e:
        raise ModelLoadError(f"cannot load model {name_or_path!r}: {e}") from None
    return ModelHandle(model=model, tokenizer=tokenizer, name=name_or_path, source=str(path), world=world)


def resolve_model(name_or_path: str | os.PathLike) -> tuple[str, bool]:
    """Where a model name points, and whether that is a local directory, checked without loading it.

    Every check :func:`load` makes before reading weights, so a command can refuse a bad model
    name before minutes of other work.

    Examples:
        >>> resolve_model("world")[1]
        True
        >>> resolve_model("world:nope")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ModelLoadError: unknown world model 'nope'; ...

    A hub id resolves to its snapshot in the local Hugging Face cache; one that is not cached
    is refused at once when ``HF_HUB_OFFLINE`` is set or the hub cannot be reached.

    Raises:
        ModelLoadError: an unknown world model, a path that is not there, a directory that
            is not a loadable model, or a hub id that is neither cached nor reachable.
    """
    name_or_path = os.fspath(name_or_path)
    # "world" and "world:<variant>" name shipped models; a directory that happens to be called
    # "world..." is a directory.
    shipped = (name_or_path == "world" or name_or_path.startswith("world:")) and not Path(name_or_path).is_dir()
    try:
        path = str(resolve_world_model(name_or_path)) if shipped else name_or_path
    except KeyError as e:
        raise ModelLoadError(e.args[0]) from None
    local = Path(path).is_dir()
    looks_like_path = path.startswith((".", "/", "~")) or path.count("/") > 1
    if not local and (looks_like_path or Path(path).exists()):
        raise ModelLoadError(f"cannot load model {name_or_path!r}: no such model directory")
    if not local:
        # A hub id: load a cached snapshot as the directory it is, or refuse now rather than
        # after transformers' minute of retries.
        try:
            snapshot = hub.cached_snapshot(path) if hub.is_repo_id(path) else None
            if snapshot is not None and any(snapshot.glob("*.safetensors")):
                path, local = str(snapshot), True
            else:
                hub.check_fetchable(path)
        except hub.HubError as e:
            raise ModelLoadError(f"cannot load model {name_or_path!r}: {e}") from None
    if local:
        _check_model_dir(Path(path), name_or_path)
    return path, local


def _check_model_dir(directory: Path, name: str) -> None:
    """Refuse, in one line, a directory that is not a loadable model, before transformers reads it."""
    if is_sisa_dir(directory):
        try:
            check_complete(directory)
        except SisaFolderError as e:
            raise ModelLoadError(f"cannot load model {name!r}: {e}") from None
        return
    if not (directory / "config.json").is_file():
        raise ModelLoadError(f"cannot load model {name!r}: {directory} holds no config.json (not a model directory)")
    weight_files = sorted(directory.glob("*.safetensors"))
    if not weight_files:
        pickles = sorted(p.name for p in directory.glob("*.bin"))
        if pickles:
            raise ModelLoadError(
                f"cannot load model {name!r}: its weights are pickles ({pickles[0]}), which can run code when "
                "read; only safetensors are loaded (convert them with transformers' save_pretrained)"
            )
        raise ModelLoadError(f"cannot load model {name!r}: {directory} holds no *.safetensors weights")
    for weights in weight_files:
        problem = _safetensors_problem(weights)
        if problem:
            raise ModelLoadError(f"cannot load model {name!r}: {weights} {problem}")


def _safetensors_problem(path: Path) -> str | None:
    """What is wrong with a safetensors file's layout (header length, header, data size), or None.

    Examples:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "w.safetensors"
        >>> _ = p.write_bytes(b"")
        >>> _safetensors_problem(p)
        'is empty or truncated (no header)'
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return "is empty or truncated (no header)"
        n = int.from_bytes(head, "little")
        if n > size - 8:
            return "is truncated (its header runs past the end of the file)"
        try:
            header = json.loads(f.read(n))
            end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            return "has a damaged header (not a safetensors file)"
    if 8 + n + end > size:
        return f"is truncated ({size} bytes where its header needs {8 + n + end})"
    return None


@functools.lru_cache(maxsize=4)
def load_shared(name: str) -> ModelHandle:
    """A model loaded once per process and shared by every caller that names it.

    For reference models that are only read, never edited (the retain models that forgetting
    and verification compare with): loading one costs seconds, and callers may check identity.

    Examples:
        >>> load_shared("world:retain-forget01") is load_shared("world:retain-forget01")
        True
    """
    return load(name)
