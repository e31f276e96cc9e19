"""Tiny random models of each supported family, built from configs (no weights are fetched)."""

import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

FAMILIES = ["gpt2", "llama", "gpt_neox"]
# GPT-2's n_inner=None means 4 * n_embd; the others are given 48.
D_MLP = {"gpt2": 128, "llama": 48, "gpt_neox": 48}


def tiny_model(
    family: str, n_layers: int = 2, vocab_size: int = 100, seed: int = 0, positions: int = 64, **token_ids
) -> torch.nn.Module:
    """A random ``family`` model with d_model 32 and 4 heads, in eval mode."""
    common = dict(vocab_size=vocab_size, **token_ids)
    if family == "gpt2":
        cfg = transformers.GPT2Config(n_layer=n_layers, n_embd=32, n_head=4, n_positions=positions, **common)
    elif family == "llama":
        cfg = transformers.LlamaConfig(
            num_hidden_layers=n_layers,
            hidden_size=32,
            intermediate_size=48,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=positions,
            **common,
        )
    else:
        cfg = transformers.GPTNeoXConfig(
            num_hidden_layers=n_layers,
            hidden_size=32,
            intermediate_size=48,
            num_attention_heads=4,
            max_position_embeddings=positions,
            **common,
        )
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(cfg).eval()


WORDS = ["the", "cat", "dog", "sat", "on", "a", "mat", "is", "in", "Paris", "France", "Rome", "Italy", "capital", "of"]


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over WORDS that prepends BOS, like the world's."""
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[BOS]", "[EOS]"] + WORDS)}
    raw = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.post_processor = processors.TemplateProcessing(single="[BOS] $A", special_tokens=[("[BOS]", 2)])
    return PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token="[BOS]", eos_token="[EOS]", pad_token="[PAD]", unk_token="[UNK]"
    )


def tiny_word_model(family: str, seed: int = 0, n_layers: int = 2) -> torch.nn.Module:
    """A random ``family`` model over :func:`tiny_tokenizer`'s vocabulary."""
    return tiny_model(
        family, n_layers=n_layers, vocab_size=len(WORDS) + 4, seed=seed, bos_token_id=2, eos_token_id=3, pad_token_id=0
    )


def tiny_handle(family: str, seed: int = 0, n_layers: int = 2):
    """A :class:`workbench.core.handle.ModelHandle` over a tiny random model, with no fact world."""
    from workbench.core.handle import ModelHandle

    return ModelHandle(tiny_word_model(family, seed, n_layers), tiny_tokenizer(), f"tiny-{family}", "config")


def tiny_byte_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer with no merges (any text encodes, as with GPT-2's) that prepends BOS."""
    from tokenizers import decoders

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {t: i for i, t in enumerate(["[PAD]", "[BOS]", "[EOS]"] + alphabet)}
    raw = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.post_processor = processors.TemplateProcessing(single="[BOS] $A", special_tokens=[("[BOS]", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="[BOS]", eos_token="[EOS]", pad_token="[PAD]")


def save_tiny_byte_model(path, family: str = "gpt2", seed: int = 0) -> None:
    """Write a random ``family`` model over :func:`tiny_byte_tokenizer` to ``path``, as a hub download would be."""
    tok = tiny_byte_tokenizer()
    # One token per byte: English prompts with random prefixes run past 64 positions.
    model = tiny_model(
        family, vocab_size=len(tok), seed=seed, positions=256, bos_token_id=1, eos_token_id=2, pad_token_id=0
    )
    model.save_pretrained(path)
    tok.save_pretrained(path)
