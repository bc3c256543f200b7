"""KL minimisation: gradient ascent on the forget set, KL to the original model on the retain set.

Objective: L = L_GA(D_f) + retain_weight · mean_t KL(p_ref(·|t) ‖ p_θ(·|t)) over retain answer
tokens, with p_ref the model before unlearning (TOFU, Maini et al., arXiv 2401.06121).
With LoRA the reference is the same model with its adapters disabled, so only
one model is held in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

from viker.methods.ga import GradientAscent
from viker.methods.losses import kl_divergence_per_token, shift_for_next_token


@dataclass
class KLConfig:
    retain_weight: float = 1.0  # weight of the retain KL

    def __post_init__(self):
        if self.retain_weight <= 0:
            raise ValueError(f"KL retain_weight must be > 0, got {self.retain_weight}")


class KLMinimization(GradientAscent):
    name = "kl"
    Config = KLConfig

    def unlearning_loss(self, model, inputs):
        parts = {}
        forget = self.forget_term(model, inputs, parts)

        retain = inputs["retain"]
        logits, labels = shift_for_next_token(self.forward(model, retain), retain["labels"])
        reference, _ = shift_for_next_token(self.reference_logits(model, retain), retain["labels"])
        mask = labels != -100
        kl = kl_divergence_per_token(logits, reference, mask).sum() / mask.sum().clamp_min(1)

        loss = forget + self.method_config.retain_weight * kl
        parts["reg/kl"] = kl.item()
        return loss, parts
