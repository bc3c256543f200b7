"""IDK fine-tuning: teach the model a refusal for every forget question.

Objective: L = NLL(refusal | I, x) over D_f + retain_weight · NLL(D_r) (TOFU's "IDK" baseline,
Maini et al., arXiv 2401.06121). The refusals are viker's own list
(`viker.methods.refusals`), one per sample, chosen from its id.
"""

from __future__ import annotations

from dataclasses import dataclass

from viker.methods.base import UnlearnTrainer
from viker.methods.losses import nll_per_token, shift_for_next_token


@dataclass
class IDKConfig:
    retain_weight: float = 1.0  # weight of the retain NLL

    def __post_init__(self):
        if self.retain_weight < 0:
            raise ValueError(f"IDK retain_weight must be >= 0, got {self.retain_weight}")


class IDKFinetune(UnlearnTrainer):
    name = "idk"
    Config = IDKConfig
    uses_idk = True

    def unlearning_loss(self, model, inputs):
        batch = inputs["idk"]
        logits, labels = shift_for_next_token(self.forward(model, batch), batch["labels"])
        forget = nll_per_token(logits, labels).sum() / (labels != -100).sum().clamp_min(1)
        parts = {"forget/loss": forget.item()}

        loss = forget
        if self.method_config.retain_weight > 0:
            retain = self.retain_nll(model, inputs)
            loss = loss + self.method_config.retain_weight * retain
            parts["retain/loss"] = retain.item()
        return loss, parts
