"""Negative preference optimisation (NPO).

Objective (Zhang et al., "Negative Preference Optimization: From Catastrophic
Collapse to Effective Unlearning", arXiv 2404.05868, eq. 3):

    L = −(2/β) · E_(x,y)∈D_f log σ(−β · log(π_θ(y|x) / π_ref(y|x)))  [+ retain_weight · NLL(D_r)]

with sequence log-probabilities. The reference is chosen explicitly: the model
before unlearning ("initial", the NPO paper's choice) or the oracle that never
saw the forget set ("oracle", what MLLMU-Bench's code uses). The reference's
log-probabilities are computed once before training, so only one model is held.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from viker.methods.base import UnlearnTrainer
from viker.methods.losses import npo_loss, sequence_logprob, shift_for_next_token

REFERENCES = ("initial", "oracle")


@dataclass
class NPOConfig:
    beta: float = 0.1  # inverse temperature; the NPO paper's value
    reference: str = "initial"  # "initial" (model before unlearning) or "oracle"
    retain_weight: float = 0.0  # weight of an optional retain NLL (NPO+RT uses 1)

    def __post_init__(self):
        if self.beta <= 0:
            raise ValueError(f"NPO beta must be > 0, got {self.beta}")
        if self.reference not in REFERENCES:
            raise ValueError(f"NPO reference {self.reference!r} is invalid; choose one of {REFERENCES}")
        if self.retain_weight < 0:
            raise ValueError(f"NPO retain_weight must be >= 0, got {self.retain_weight}")


class NPO(UnlearnTrainer):
    name = "npo"
    Config = NPOConfig
    reference_logps: ClassVar[tuple[str, ...]] = ("forget",)

    def unlearning_loss(self, model, inputs):
        batch = inputs["forget"]
        logits, labels = shift_for_next_token(self.forward(model, batch), batch["labels"])
        policy = sequence_logprob(logits, labels)
        forget = npo_loss(policy, inputs["ref_forget"], self.method_config.beta).mean()
        parts = {"forget/loss": forget.item()}

        loss = forget
        if self.method_config.retain_weight > 0:
            retain = self.retain_nll(model, inputs)
            loss = loss + self.method_config.retain_weight * retain
            parts["retain/loss"] = retain.item()
        return loss, parts
