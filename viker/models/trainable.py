"""What trains: whole parts of the model, or LoRA adapters on the language model."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from viker.models.families import FamilyAdapter

log = logging.getLogger(__name__)

PARTS = ("language_model", "lm_head", "projector", "vision_tower")


@dataclass
class TrainableSpec:
    """Which weights train.

    With `lora_r > 0` LoRA adapters (rank `lora_r`, scale `lora_alpha / lora_r`) are
    added to `lora_targets` inside the language model and everything else is
    frozen; this is the ViKeR paper's setup (r 8, alpha 16, vision tower and
    projector frozen). With `lora_r == 0` the listed `parts` train in full.
    """

    parts: tuple[str, ...] = ("language_model", "lm_head")
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] | None = None  # None: the family's default projections
    gradient_checkpointing: bool = False
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        unknown = [p for p in self.parts if p not in PARTS]
        if unknown:
            raise ValueError(f"trainable parts {unknown} are invalid; choose from {PARTS}")
        if self.lora_r < 0:
            raise ValueError(f"lora_r must be >= 0 (0 turns LoRA off), got {self.lora_r}")
        if self.lora_r and self.lora_alpha <= 0:
            raise ValueError(f"lora_alpha must be > 0, got {self.lora_alpha}")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")

    @classmethod
    def full(cls, parts: tuple[str, ...] = PARTS) -> "TrainableSpec":
        return cls(parts=parts, lora_r=0)

    def describe(self) -> str:
        if self.lora_r:
            return f"LoRA r {self.lora_r} / alpha {self.lora_alpha} on the language model"
        return "full: " + ", ".join(self.parts)


def apply_trainable(model: torch.nn.Module, adapter: FamilyAdapter, spec: TrainableSpec) -> torch.nn.Module:
    """Freeze the model, then unfreeze `spec`'s parts or wrap it with LoRA; return the model to train."""
    model.requires_grad_(False)
    if spec.lora_r:
        model = _add_lora(model, adapter, spec)
    else:
        for part in spec.parts:
            adapter.module(model, part).requires_grad_(True)
    if spec.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        # With frozen embeddings, checkpointed blocks would see inputs without grad and drop LoRA's gradient.
        model.enable_input_require_grads()
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in model.parameters())
    log.info("trainable: %s (%d of %d parameters)", spec.describe(), n_train, n_all)
    return model


def _add_lora(model, adapter: FamilyAdapter, spec: TrainableSpec):
    from peft import LoraConfig, get_peft_model

    targets = list(spec.lora_targets or adapter.lora_targets)
    prefix = adapter.language_model
    names = [name for name, module in model.named_modules()
             if name.startswith(prefix + ".") and name.rsplit(".", 1)[-1] in targets
             and isinstance(module, torch.nn.Linear)]
    if not names:
        raise ValueError(
            f"LoRA targets {targets} match no Linear module under {prefix!r}; "
            "list module names from model.named_modules() and pass them as lora_targets"
        )
    config = LoraConfig(r=spec.lora_r, lora_alpha=spec.lora_alpha, lora_dropout=spec.lora_dropout,
                        target_modules=names, bias="none")
    return get_peft_model(model, config)


def merge_if_lora(model: torch.nn.Module) -> torch.nn.Module:
    """Return a plain model: LoRA weights merged into the base weights, when LoRA was used."""
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload()
    return model
