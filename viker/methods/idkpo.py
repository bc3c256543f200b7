"""IdkPO: direct preference optimisation with a refusal as the preferred answer.

Objective (DPO, Rafailov et al., arXiv 2305.18290, with y_w = a refusal and
y_l = the true answer, as in TOFU's "IDK + DPO"):

    L = −E log σ(β · [log π_θ(y_w|x)/π_ref(y_w|x) − log π_θ(y_l|x)/π_ref(y_l|x)])  + retain_weight · NLL(D_r)

The reference is the model before unlearning; its log-probabilities are
computed once before training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from viker.methods.base import UnlearnTrainer
from viker.methods.losses import dpo_loss, sequence_logprob, shift_for_next_token


@dataclass
class IdkPOConfig:
    beta: float = 0.1  # DPO inverse temperature
    retain_weight: float = 1.0  # weight of the retain NLL

    def __post_init__(self):
        if self.beta <= 0:
            raise ValueError(f"IdkPO beta must be > 0, got {self.beta}")
        if self.retain_weight < 0:
            raise ValueError(f"IdkPO retain_weight must be >= 0, got {self.retain_weight}")


class IdkPO(UnlearnTrainer):
    name = "idkpo"
    Config = IdkPOConfig
    uses_idk = True
    reference_logps: ClassVar[tuple[str, ...]] = ("forget", "idk")

    def unlearning_loss(self, model, inputs):
        chosen_batch, rejected_batch = inputs["idk"], inputs["forget"]
        chosen = sequence_logprob(*shift_for_next_token(self.forward(model, chosen_batch), chosen_batch["labels"]))
        rejected = sequence_logprob(
            *shift_for_next_token(self.forward(model, rejected_batch), rejected_batch["labels"]))
        forget = dpo_loss(chosen, rejected, inputs["ref_idk"], inputs["ref_forget"], self.method_config.beta).mean()
        parts = {"forget/loss": forget.item()}

        loss = forget
        if self.method_config.retain_weight > 0:
            retain = self.retain_nll(model, inputs)
            loss = loss + self.method_config.retain_weight * retain
            parts["retain/loss"] = retain.item()
        return loss, parts
