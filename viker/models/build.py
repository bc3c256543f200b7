"""Saving a model that viker built, so that it loads like a downloaded checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path

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
