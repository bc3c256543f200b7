"""Family adapters resolve the language model, vision tower and projector of each architecture."""

import pytest
import torch
from transformers import (
    Idefics2Config,
    Idefics2ForConditionalGeneration,
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    MllamaConfig,
    MllamaForConditionalGeneration,
)

from viker.models.families import FAMILIES, adapter_for
from viker.models.trainable import TrainableSpec, apply_trainable

TEXT = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=2, pad_token_id=0, bos_token_id=1, eos_token_id=2)
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32,
              patch_size=8)


def _idefics2():
    perceiver = dict(hidden_size=32, resampler_n_latents=4, resampler_depth=1, resampler_n_heads=2,
                     resampler_head_dim=8, num_key_value_heads=1)
    return Idefics2ForConditionalGeneration(Idefics2Config(text_config=dict(model_type="mistral", **TEXT),
                                                           vision_config=VISION, perceiver_config=perceiver))


def _idefics3():
    return Idefics3ForConditionalGeneration(Idefics3Config(text_config=TEXT, vision_config=VISION, scale_factor=2))


def _mllama():
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_global_layers=1, attention_heads=2,
                  image_size=32, patch_size=8, vision_output_dim=64, intermediate_layers_indices=[0],
                  max_num_tiles=1, supported_aspect_ratios=[[1, 1]])
    return MllamaForConditionalGeneration(MllamaConfig(text_config=dict(cross_attention_layers=[1], **TEXT),
                                                       vision_config=vision))


@pytest.mark.parametrize("build", [_idefics2, _idefics3, _mllama], ids=["idefics2", "idefics3", "mllama"])
def test_adapter_parts_and_lora(build):
    model = build()
    adapter = adapter_for(model.config)
    parts = {part: adapter.module(model, part) for part in ("language_model", "vision_tower", "projector", "lm_head")}
    assert len({id(m) for m in parts.values()}) == 4
    assert isinstance(parts["lm_head"], torch.nn.Linear)

    wrapped = apply_trainable(model, adapter, TrainableSpec(lora_r=2, lora_alpha=4))
    trainable = [name for name, p in wrapped.named_parameters() if p.requires_grad]
    assert trainable
    assert all("lora_" in name for name in trainable)
    language_model = adapter.language_model.split(".")[-1]
    assert all(f".{language_model}." in name for name in trainable)


def test_unknown_model_type_lists_families():
    class Config:
        model_type = "blip_2"

    with pytest.raises(ValueError, match="unsupported model_type 'blip_2'") as err:
        adapter_for(Config())
    for name in FAMILIES:
        assert name in str(err.value)
