"""Tiny random models of each supported family, built from configs (no weights are fetched)."""

import torch
import transformers
from transformers import AutoModelForCausalLM

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
