"""Tiny random models of each supported family, built from configs (no weights are fetched)."""

import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

FAMILIES = ["gpt2", "llama", "gpt_neox"]
# GPT-2's n_inner=None means 4 * n_embd; the others are given 48.
D_MLP = {"gpt2": 128, "llama": 48, "gpt_neox": 48}


def tiny_model(family: str, n_layers: int = 2, vocab_size: int = 100, seed: int = 0,
               **token_ids) -> torch.nn.Module:
    """A random ``family`` model with d_model 32 and 4 heads, in eval mode."""
    common = dict(vocab_size=vocab_size, **token_ids)
    if family == "gpt2":
        cfg = transformers.GPT2Config(n_layer=n_layers, n_embd=32, n_head=4, n_positions=64, **common)
    elif family == "llama":
        cfg = transformers.LlamaConfig(num_hidden_layers=n_layers, hidden_size=32, intermediate_size=48,
                                       num_attention_heads=4, num_key_value_heads=2,
                                       max_position_embeddings=64, **common)
    else:
        cfg = transformers.GPTNeoXConfig(num_hidden_layers=n_layers, hidden_size=32, intermediate_size=48,
                                         num_attention_heads=4, max_position_embeddings=64, **common)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(cfg).eval()


WORDS = "the cat dog sat on a mat is in Paris France Rome Italy capital of".split()


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over WORDS that prepends BOS, like the world's."""
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[BOS]", "[EOS]"] + WORDS)}
    raw = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.post_processor = processors.TemplateProcessing(single="[BOS] $A", special_tokens=[("[BOS]", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="[BOS]", eos_token="[EOS]",
                                   pad_token="[PAD]", unk_token="[UNK]")


def tiny_word_model(family: str, seed: int = 0, n_layers: int = 2) -> torch.nn.Module:
    """A random ``family`` model over :func:`tiny_tokenizer`'s vocabulary."""
    return tiny_model(family, n_layers=n_layers, vocab_size=len(WORDS) + 4, seed=seed,
                      bos_token_id=2, eos_token_id=3, pad_token_id=0)


def tiny_handle(family: str, seed: int = 0, n_layers: int = 2):
    """A :class:`workbench.handle.ModelHandle` over a tiny random model, with no fact world."""
    from workbench.handle import ModelHandle
    return ModelHandle(tiny_word_model(family, seed, n_layers), tiny_tokenizer(), f"tiny-{family}", "config")
