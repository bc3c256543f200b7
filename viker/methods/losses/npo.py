"""Negative Preference Optimization (NPO) forget loss.

Zhang et al., "Negative Preference Optimization: From Catastrophic
Collapse to Effective Unlearning", arXiv 2404.05868.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from viker.methods.losses._validation import check_positive, check_same_shape


def npo_loss(policy_logps: torch.Tensor, reference_logps: torch.Tensor, beta: float) -> torch.Tensor:
    """Compute the NPO loss per example.

    L_NPO(x, y) = -(2/beta) * log sigmoid(-beta * (log pi_theta(y|x) - log pi_ref(y|x)))

    The loss equals (2/beta) * log 2 when the policy matches the reference,
    falls towards 0 as log pi_theta(y|x) drops below log pi_ref(y|x), and
    approaches 2 * (log pi_theta - log pi_ref) when the policy rises far above
    the reference (gradient ascent scaled by 2). Its gradient is GA's gradient
    weighted by 2 * pi_theta^beta / (pi_theta^beta + pi_ref^beta), which fades
    as the answer is forgotten.

    Args:
        policy_logps: (B,) log pi_theta(y|x), summed over answer tokens
            (`sequence_logprob`).
        reference_logps: (B,) the same under the frozen reference model, no grad.
        beta: inverse temperature, > 0.

    Returns:
        (B,) loss per example; the caller reduces.

    Raises:
        ValueError: if beta is not a finite number > 0, or the shapes differ.
    """
    check_positive("beta", beta)
    check_same_shape(policy_logps=policy_logps, reference_logps=reference_logps)

    log_ratio = policy_logps - reference_logps
    return -(2.0 / beta) * F.logsigmoid(-beta * log_ratio)
