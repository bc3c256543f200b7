"""SimNPO: reference-free, length-normalised NPO.

Objective (Fan et al., "Simplicity Prevails: Rethinking Negative Preference
Optimization for LLM Unlearning", arXiv 2410.07163):

    L = −(2/β) · E_(x,y)∈D_f log σ(−(β/|y|) · log π_θ(y|x) − γ)  + retain_weight · NLL(D_r)

Note: γ here is the reward margin as the paper writes it; configs of the
official code hold γ/β (see `viker.methods.losses.simnpo_loss`).
"""

from __future__ import annotations

from dataclasses import dataclass

from viker.methods.base import UnlearnTrainer
from viker.methods.losses import mean_sequence_logprob, shift_for_next_token, simnpo_loss


@dataclass
class SimNPOConfig:
    beta: float = 2.5  # inverse temperature; the paper's TOFU setting
    gamma: float = 0.0  # reward margin, >= 0
    retain_weight: float = 0.0  # weight of an optional retain NLL

    def __post_init__(self):
        if self.beta <= 0:
            raise ValueError(f"SimNPO beta must be > 0, got {self.beta}")
        if self.gamma < 0 or self.retain_weight < 0:
            raise ValueError(f"SimNPO gamma and retain_weight must be >= 0, got {self.gamma}, {self.retain_weight}")


class SimNPO(UnlearnTrainer):
    name = "simnpo"
    Config = SimNPOConfig

    def unlearning_loss(self, model, inputs):
        batch = inputs["forget"]
        logits, labels = shift_for_next_token(self.forward(model, batch), batch["labels"])
        mean_logp = mean_sequence_logprob(logits, labels)
        forget = simnpo_loss(mean_logp, self.method_config.beta, self.method_config.gamma).mean()
        parts = {"forget/loss": forget.item()}

        loss = forget
        if self.method_config.retain_weight > 0:
            retain = self.retain_nll(model, inputs)
            loss = loss + self.method_config.retain_weight * retain
            parts["retain/loss"] = retain.item()
        return loss, parts
