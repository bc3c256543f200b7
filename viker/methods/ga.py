"""Gradient ascent (GA): raise the NLL of the forget answers.

Objective: minimise L = (1/|D_f|) Σ_(x,y)∈D_f (1/|y|) Σ_i log p_θ(y_i | I, x, y_<i),
that is, gradient ascent on the forget set's NLL (Jang et al., "Knowledge
Unlearning for Mitigating Privacy Risks in Language Models", arXiv 2210.01504).
Unbounded below, so it collapses the model given enough steps.
"""

from __future__ import annotations

from dataclasses import dataclass

from viker.methods.base import UnlearnTrainer
from viker.methods.losses import gradient_ascent_loss, shift_for_next_token


@dataclass
class GAConfig:
    """GA has no hyperparameters beyond the optimiser's."""


class GradientAscent(UnlearnTrainer):
    name = "ga"
    Config = GAConfig

    def forget_term(self, model, inputs):
        batch = inputs["forget"]
        logits, labels = shift_for_next_token(self.forward(model, batch), batch["labels"])
        return gradient_ascent_loss(logits, labels).mean()

    def unlearning_loss(self, model, inputs):
        forget = self.forget_term(model, inputs)
        return forget, {"forget/loss": forget.item()}
