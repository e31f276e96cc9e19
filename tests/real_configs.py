"""Random-weight models of real configurations (GPT-2 small, Pythia-160m, a GQA Llama, Qwen2-0.5B).

The architectures are the real ones (tied or untied output embeddings, parallel residuals,
partial rotary, grouped-query attention, q/k/v biases); ``reduced`` keeps every such choice
and shrinks only the sizes, so the whole loop runs in the suite. The tokenizer is a byte-level
one (any text encodes), so no vocabulary is downloaded.
"""

from __future__ import annotations

import torch
import transformers
from tiny_models import tiny_byte_tokenizer

# name -> (config class, full-size fields, the fields reduced for the suite)
REAL = {
    "gpt2-small": (
        transformers.GPT2Config,
        dict(n_layer=12, n_embd=768, n_head=12, n_positions=1024),
        dict(n_layer=2, n_embd=64, n_head=4, n_positions=256),
    ),
    "pythia-160m": (
        transformers.GPTNeoXConfig,
        dict(
            num_hidden_layers=12,
            hidden_size=768,
            num_attention_heads=12,
            intermediate_size=3072,
            rotary_pct=0.25,
            max_position_embeddings=2048,
            use_parallel_residual=True,
            tie_word_embeddings=False,
        ),
        dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=256),
    ),
    "llama-gqa": (
        transformers.LlamaConfig,
        dict(
            num_hidden_layers=12,
            hidden_size=768,
            num_attention_heads=12,
            num_key_value_heads=4,
            intermediate_size=2048,
            max_position_embeddings=2048,
        ),
        dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128),
    ),
    "qwen2-0.5b": (
        transformers.Qwen2Config,
        dict(
            num_hidden_layers=24,
            hidden_size=896,
            num_attention_heads=14,
            num_key_value_heads=2,
            intermediate_size=4864,
            max_position_embeddings=32768,
            tie_word_embeddings=True,
        ),
        dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128),
    ),
}


def save_real_model(path, name: str, reduced: bool = True, seed: int = 0) -> None:
    """Write a random ``name`` model (see :data:`REAL`) and a byte-level tokenizer to ``path``."""
    cls, full, small = REAL[name]
    tok = tiny_byte_tokenizer()
    fields = {**full, **(small if reduced else {})}
    ids = dict(vocab_size=len(tok), bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(cls(**fields, **ids)).eval()
    model.save_pretrained(path)
    tok.save_pretrained(path)
