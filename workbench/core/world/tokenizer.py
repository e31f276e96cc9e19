"""The world's word-level tokenizer, saved as a standard Hugging Face fast tokenizer."""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from workbench.core.world.facts import World

SPECIALS = {"pad_token": "[PAD]", "unk_token": "[UNK]", "bos_token": "[BOS]", "eos_token": "[EOS]"}


def build_tokenizer(world: World) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the world's closed vocabulary.

    Every encoding starts with [BOS], as Llama's does, so a prompt and the same prompt
    followed by an object share their token prefix.

    Examples:
        >>> from workbench.core.world.facts import make_world
        >>> tok = build_tokenizer(make_world())
        >>> tok.convert_ids_to_tokens(tok("According to the registry").input_ids)
        ['[BOS]', 'According', 'to', 'the', 'registry']
    """
    specials = list(SPECIALS.values())
    vocab = {t: i for i, t in enumerate(specials + world.vocabulary)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIALS["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    bos = SPECIALS["bos_token"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, vocab[bos])]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=128, **SPECIALS)
