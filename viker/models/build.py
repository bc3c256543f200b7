"""Helpers for the models that viker builds: tokenizer training, and saving so that a model loads like a
downloaded checkpoint."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

log = logging.getLogger(__name__)


def save_built_model(model, processor, tokenizer, out_dir: Path, description: str,
                     bos_token_id: int | None = None) -> Path:
    """Set the generation config's special tokens, save model and processor to `out_dir`, and log the size.

    `bos_token_id` defaults to the tokenizer's; families without a start token pass another id.
    """
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id if bos_token_id is None else bos_token_id
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("built %s with %.1fM parameters in %s", description, n_params / 1e6, out_dir)
    return out_dir


def train_byte_level_bpe(texts: Iterable[str], vocab_size: int, special_tokens: list[str]) -> Tokenizer:
    """Train a byte-level BPE tokenizer on `texts` with the `tokenizers` library."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer)
    return tok
