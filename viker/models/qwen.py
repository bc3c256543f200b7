"""Qwen2-VL and Qwen2.5-VL: image-text processors and tiny random-init models.

transformers 5.25's `Qwen2VLProcessor` and `Qwen2_5_VLProcessor` take a video
processor, and the Qwen video processor needs torchvision. Without
torchvision the stock classes cannot be built, and `AutoProcessor` raises
ImportError on a downloaded Qwen folder. The subclasses below drop the video
processor and keep everything else: the PIL image processor
(`Qwen2VLImageProcessorPil`), the expansion of each `<|image_pad|>` into
t·h·w / merge_size² copies, and the `mm_token_type_ids` the model needs for
its multimodal rotary positions. `viker.models.loading.load_model` always
loads Qwen folders through them, downloaded checkpoints and the tiny models
here alike.

The tiny models use the same classes as Qwen2-VL-7B and Qwen2.5-VL-7B with
small sizes. Qwen's image processor keeps each image near its own resolution
(between `min_pixels` and `max_pixels`, sides rounded to patch_size ·
merge_size), so images of different sizes give different numbers of image
tokens. The defaults give 4 tokens for a 32 px image and 9 for a 48 px one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerFast, Qwen2_5_VLProcessor, Qwen2VLProcessor

from viker.models.build import save_built_model, train_byte_level_bpe

log = logging.getLogger(__name__)

# The Qwen special tokens that the processor, the chat template and the config refer to by name.
QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>",
]

# Qwen2-VL-Instruct's template restricted to text and image entries: a default system turn,
# then "<|im_start|>{role}\n{content}<|im_end|>\n" per message, each image written as
# "<|vision_start|><|image_pad|><|vision_end|>".
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class Qwen2VLImageTextProcessor(Qwen2VLProcessor):
    """`Qwen2VLProcessor` without the video processor, so it works without torchvision."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, chat_template=chat_template, **kwargs)


class Qwen2_5_VLImageTextProcessor(Qwen2_5_VLProcessor):
    """`Qwen2_5_VLProcessor` without the video processor, so it works without torchvision."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, chat_template=chat_template, **kwargs)


# Processor classes that `viker.models.loading.load_model` uses instead of AutoProcessor, by config.model_type.
IMAGE_TEXT_PROCESSORS = {
    "qwen2_vl": Qwen2VLImageTextProcessor,
    "qwen2_5_vl": Qwen2_5_VLImageTextProcessor,
}


def train_qwen_tokenizer(texts: Iterable[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on `texts` with Qwen's special tokens.

    As in the Qwen2-VL-Instruct checkpoints, `<|im_end|>` is the end-of-sequence
    token, `<|endoftext|>` the padding token, and there is no beginning-of-sequence token.
    """
    return PreTrainedTokenizerFast(
        tokenizer_object=train_byte_level_bpe(texts, vocab_size, QWEN_SPECIAL_TOKENS),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "vision_bos_token": "<|vision_start|>",
            "vision_eos_token": "<|vision_end|>",
        },
        model_max_length=512,
    )


def mrope_sections(head_dim: int) -> list[int]:
    """Split head_dim / 2 rotary frequencies into (temporal, height, width) sections in Qwen's 1:1.5:1.5 ratio.

    Qwen2-VL-7B (head_dim 128) uses [16, 24, 24], and head_dim 32 gives [4, 6, 6].
    """
    half = head_dim // 2
    spatial = 3 * half // 8
    return [half - 2 * spatial, spatial, spatial]


def _image_processor(min_image_size: int, max_image_size: int, patch_size: int):
    from transformers import Qwen2VLImageProcessorPil

    factor = 2 * patch_size  # patch_size × merge_size, the unit that both image sides are rounded to
    for name, side in (("min_image_size", min_image_size), ("max_image_size", max_image_size)):
        if side % factor:
            raise ValueError(f"{name} {side} must be a multiple of 2 × patch_size = {factor}")
    if min_image_size > max_image_size:
        raise ValueError(f"min_image_size {min_image_size} must be <= max_image_size {max_image_size}")
    return Qwen2VLImageProcessorPil(
        patch_size=patch_size,
        merge_size=2,
        temporal_patch_size=2,
        min_pixels=min_image_size * min_image_size,
        max_pixels=max_image_size * max_image_size,
    )


def _text_config_kwargs(tokenizer, text_hidden: int, text_layers: int, heads: int) -> dict:
    if text_hidden % heads:
        raise ValueError(f"text_hidden {text_hidden} must be a multiple of the {heads} attention heads")
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=text_hidden,
        intermediate_size=2 * text_hidden,
        num_hidden_layers=text_layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=512,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0,
                         "mrope_section": mrope_sections(text_hidden // heads)},
        bos_token_id=tokenizer.pad_token_id,  # Qwen's <|endoftext|>
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _token_ids(tokenizer) -> dict:
    return {
        "image_token_id": tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        "video_token_id": tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        "vision_start_token_id": tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        "vision_end_token_id": tokenizer.convert_tokens_to_ids("<|vision_end|>"),
    }


def _build_and_save(config_cls, model_cls, vision: dict, processor, tokenizer, text_hidden: int, text_layers: int,
                    seed: int, out_dir: Path, label: str) -> Path:
    """Build a tiny Qwen-VL model from its vision settings and the shared text settings, and save it."""
    config = config_cls(
        text_config=_text_config_kwargs(tokenizer, text_hidden, text_layers, heads=4),
        vision_config=vision,
        **_token_ids(tokenizer),
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = model_cls(config)
    # Qwen has no start token, so generation starts from <|endoftext|>, as in the config.
    return save_built_model(model, processor, tokenizer, out_dir, label, bos_token_id=tokenizer.pad_token_id)


def build_tiny_qwen2_vl(
    texts: Iterable[str],
    out_dir: str | Path,
    *,
    min_image_size: int = 32,
    max_image_size: int = 48,
    patch_size: int = 8,
    vision_hidden: int = 64,
    vision_layers: int = 2,
    text_hidden: int = 256,
    text_layers: int = 4,
    vocab_size: int = 1024,
    seed: int = 0,
) -> Path:
    """Build a tiny Qwen2-VL model (ViT with 2×2 patch merger, Qwen2 language model) and save it to `out_dir`.

    With the defaults and the embedded benchmark's text it has 3.3M parameters. Images keep their size between
    `min_image_size` and `max_image_size` pixels a side (rounded to 2 × patch_size).
    """
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    out_dir = Path(out_dir)
    image_processor = _image_processor(min_image_size, max_image_size, patch_size)
    tokenizer = train_qwen_tokenizer(texts, vocab_size)
    processor = Qwen2VLImageTextProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                          chat_template=QWEN_CHAT_TEMPLATE)
    vision = dict(
        depth=vision_layers,
        embed_dim=vision_hidden,
        hidden_size=text_hidden,  # the merger's output width, which is the language model's
        mlp_ratio=2,
        num_heads=4,
        patch_size=patch_size,
        spatial_merge_size=2,
        temporal_patch_size=2,
    )
    return _build_and_save(Qwen2VLConfig, Qwen2VLForConditionalGeneration, vision, processor, tokenizer, text_hidden, text_layers, seed,
                           out_dir, "tiny Qwen2-VL")


def build_tiny_qwen2_5_vl(
    texts: Iterable[str],
    out_dir: str | Path,
    *,
    min_image_size: int = 32,
    max_image_size: int = 48,
    patch_size: int = 8,
    vision_hidden: int = 64,
    vision_layers: int = 2,
    text_hidden: int = 256,
    text_layers: int = 4,
    vocab_size: int = 1024,
    seed: int = 0,
) -> Path:
    """Build a tiny Qwen2.5-VL model (windowed ViT with 2×2 patch merger, Qwen2 language model) and save it.

    The vision tower alternates window attention (windows of 2 × 2 merged patches) with full
    attention in its last layer, as Qwen2.5-VL-7B does every eighth layer.
    """
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    out_dir = Path(out_dir)
    image_processor = _image_processor(min_image_size, max_image_size, patch_size)
    tokenizer = train_qwen_tokenizer(texts, vocab_size)
    processor = Qwen2_5_VLImageTextProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                             chat_template=QWEN_CHAT_TEMPLATE)
    vision = dict(
        depth=vision_layers,
        hidden_size=vision_hidden,
        intermediate_size=2 * vision_hidden,
        out_hidden_size=text_hidden,
        num_heads=4,
        patch_size=patch_size,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=2 * 2 * patch_size,  # in pixels: 2 merged patches a side
        fullatt_block_indexes=[vision_layers - 1],
    )
    return _build_and_save(Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, vision, processor, tokenizer, text_hidden, text_layers, seed,
                           out_dir, "tiny Qwen2.5-VL")
