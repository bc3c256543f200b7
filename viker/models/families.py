"""Model families: where each architecture keeps its language model, vision tower and projector.

The adapter is chosen from the checkpoint's `config.model_type`, never from a
substring of its path, so a renamed folder cannot pick the wrong family.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class FamilyAdapter:
    """Attribute paths (dotted, from the top-level model) and family-specific inputs."""

    model_type: str
    language_model: str
    vision_tower: str
    projector: str
    lm_head: str = "lm_head"
    # Processor outputs that the forward pass needs besides input_ids and attention_mask.
    pixel_inputs: tuple[str, ...] = ("pixel_values",)
    # Default LoRA targets inside the language model.
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    extra: dict = field(default_factory=dict)

    def module(self, model: torch.nn.Module, part: str) -> torch.nn.Module:
        """Return the submodule named by `part` ("language_model", "vision_tower", "projector", "lm_head")."""
        path = getattr(self, part)
        module = model
        for name in path.split("."):
            if not hasattr(module, name):
                raise ValueError(
                    f"model of type {self.model_type!r} has no submodule {path!r} (missing {name!r}); "
                    "the checkpoint does not match the layout this transformers version uses for the family"
                )
            module = getattr(module, name)
        return module


FAMILIES: dict[str, FamilyAdapter] = {
    "llava": FamilyAdapter(
        model_type="llava",
        language_model="model.language_model",
        vision_tower="model.vision_tower",
        projector="model.multi_modal_projector",
    ),
    "qwen2_vl": FamilyAdapter(
        model_type="qwen2_vl",
        language_model="model.language_model",
        vision_tower="model.visual",
        projector="model.visual.merger",
        pixel_inputs=("pixel_values", "image_grid_thw", "mm_token_type_ids"),
    ),
    "qwen2_5_vl": FamilyAdapter(
        model_type="qwen2_5_vl",
        language_model="model.language_model",
        vision_tower="model.visual",
        projector="model.visual.merger",
        pixel_inputs=("pixel_values", "image_grid_thw", "mm_token_type_ids"),
    ),
    # Idefics2/3 and Llama-3.2-Vision: the layouts of transformers 5. A test resolves every part on
    # tiny random models; NOTE: no tiny processor exists for them, so they are not run end to end.
    **{
        model_type: FamilyAdapter(
            model_type=model_type,
            language_model="model.text_model",
            vision_tower="model.vision_model",
            projector="model.connector",
            pixel_inputs=("pixel_values", "pixel_attention_mask"),
        )
        for model_type in ("idefics2", "idefics3")
    },
    "mllama": FamilyAdapter(
        model_type="mllama",
        language_model="model.language_model",
        vision_tower="model.vision_model",
        projector="model.multi_modal_projector",
        pixel_inputs=("pixel_values", "aspect_ratio_ids", "aspect_ratio_mask", "cross_attention_mask"),
    ),
}


def adapter_for(config) -> FamilyAdapter:
    """Return the adapter for a model config, chosen from `config.model_type`."""
    model_type = getattr(config, "model_type", None)
    if model_type not in FAMILIES:
        raise ValueError(
            f"unsupported model_type {model_type!r}; viker supports {sorted(FAMILIES)}. "
            "Check the checkpoint's config.json, or add a FamilyAdapter for the family in viker/models/families.py"
        )
    return FAMILIES[model_type]
