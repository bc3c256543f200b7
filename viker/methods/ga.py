"""Gradient ascent (GA): raise the NLL of the forget answers.

Objective: minimise L = (1/|D_f|) Σ_(x,y)∈D_f (1/|y|) Σ_i log p_θ(y_i | I, x, y_<i),
that is, gradient ascent on the forget set's NLL (Jang et al., "Knowledge
Unlearning for Mitigating Privacy Risks in Language Models", arXiv 2210.01504).
Unbounded below, so it collapses the model given enough steps.

Logged besides the common keys (GA, GD and KL):
    diag/fact_template_grad_ratio  mean logit-gradient norm of the forget term on fact tokens
                                   over that on template tokens
"""

from __future__ import annotations

from dataclasses import dataclass

from viker.methods.base import UnlearnTrainer
from viker.methods.losses import (
    fact_template_ratio,
    gradient_ascent_loss,
    logit_gradient_norms,
    shift_for_next_token,
)


@dataclass
class GAConfig:
    """GA has no hyperparameters beyond the optimiser's."""


class GradientAscent(UnlearnTrainer):
    name = "ga"
    Config = GAConfig

    def forget_term(self, model, inputs, parts: dict):
        batch = inputs["forget"]
        logits, labels = shift_for_next_token(self.forward(model, batch), batch["labels"])
        ratio = fact_template_ratio(logit_gradient_norms(logits, labels), batch["fact_mask"][:, 1:], labels)
        if ratio is not None:
            parts["diag/fact_template_grad_ratio"] = ratio
        forget = gradient_ascent_loss(logits, labels).mean()
        parts["forget/loss"] = forget.item()
        return forget

    def unlearning_loss(self, model, inputs):
        parts = {}
        forget = self.forget_term(model, inputs, parts)
        return forget, parts
