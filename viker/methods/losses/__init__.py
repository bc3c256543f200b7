"""Unlearning losses as pure functions over logits, log-probabilities, labels and masks.

Each function returns per-token (B, T) or per-example (B,) values and leaves
the reduction to the caller. Inputs are aligned (`logits[:, t]` predicts
`labels[:, t]`), so shift causal LM outputs with `shift_for_next_token` first.
Labels are -100 at positions that are not scored.
"""

from viker.methods.losses.diagnostics import fact_template_ratio, logit_gradient_norms
from viker.methods.losses.dpo import dpo_loss
from viker.methods.losses.kl import kl_divergence_per_token
from viker.methods.losses.nll import (
    gradient_ascent_loss,
    mean_sequence_logprob,
    nll_per_token,
    sequence_logprob,
    shift_for_next_token,
    token_logprobs,
)
from viker.methods.losses.npo import npo_loss
from viker.methods.losses.simnpo import simnpo_loss
from viker.methods.losses.viker import (
    average_reference_probs,
    check_viker_lambda,
    compact_distribution,
    entropy_of_compact,
    viker_kl,
)
from viker.methods.losses.viker_analysis import (
    fixed_point_probability,
    gradient_weight_relative_to_ga,
    logit_gradient,
)

__all__ = [
    "average_reference_probs",
    "check_viker_lambda",
    "compact_distribution",
    "dpo_loss",
    "entropy_of_compact",
    "fact_template_ratio",
    "fixed_point_probability",
    "gradient_ascent_loss",
    "gradient_weight_relative_to_ga",
    "kl_divergence_per_token",
    "logit_gradient",
    "logit_gradient_norms",
    "mean_sequence_logprob",
    "nll_per_token",
    "npo_loss",
    "sequence_logprob",
    "shift_for_next_token",
    "simnpo_loss",
    "token_logprobs",
    "viker_kl",
]
