"""Gradient difference (GD): gradient ascent on the forget set plus NLL on the retain set.

Objective: L = L_GA(D_f) + retain_weight · NLL(D_r) (Liu et al., "Continual Learning and
Private Unlearning", arXiv 2203.12817; TOFU's "grad diff", arXiv 2401.06121).
"""

from __future__ import annotations

from dataclasses import dataclass

from viker.methods.ga import GradientAscent


@dataclass
class GDConfig:
    retain_weight: float = 1.0  # weight of the retain NLL; TOFU uses 1

    def __post_init__(self):
        if self.retain_weight <= 0:
            raise ValueError(f"GD retain_weight must be > 0, got {self.retain_weight}")


class GradientDifference(GradientAscent):
    name = "gd"
    Config = GDConfig

    def unlearning_loss(self, model, inputs):
        parts = {}
        forget = self.forget_term(model, inputs, parts)

        retain = self.retain_nll(model, inputs)

        loss = forget + self.method_config.retain_weight * retain
        parts["retain/loss"] = retain.item()
        return loss, parts
