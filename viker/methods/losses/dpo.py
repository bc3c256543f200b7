"""Direct Preference Optimization (DPO) loss, used by IdkPO for unlearning.

Rafailov et al., "Direct Preference Optimization: Your Language Model is
Secretly a Reward Model", arXiv 2305.18290.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from viker.methods.losses._validation import check_positive, check_same_shape


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Compute the DPO loss per example.

    L_DPO = -log sigmoid(beta * [(log pi_theta(y_w|x) - log pi_ref(y_w|x))
                                 - (log pi_theta(y_l|x) - log pi_ref(y_l|x))])

    For IdkPO the preferred answer y_w is a refusal ("I don't know who this
    is.") and the dispreferred answer y_l is the true answer. The loss is
    log 2 when both log-ratios are equal and falls as the refusal gains on the
    true answer.

    Note:
        The official SimNPO code (OPTML-Group/Unlearn-Simple, TOFU/dataloader.py)
        scales its DPO baseline by 2/beta, as NPO is scaled.
        This function returns the unscaled loss of the DPO paper. Adam is nearly
        invariant to that constant factor, but with plain SGD a learning rate
        tuned on the scaled form must be multiplied by 2/beta here.

    Args:
        policy_chosen_logps: (B,) log pi_theta(y_w|x), summed over answer tokens.
        policy_rejected_logps: (B,) log pi_theta(y_l|x).
        reference_chosen_logps: (B,) log pi_ref(y_w|x) from the frozen model.
        reference_rejected_logps: (B,) log pi_ref(y_l|x).
        beta: inverse temperature of the implicit reward, > 0.

    Returns:
        (B,) loss per example; the caller reduces.

    Raises:
        ValueError: if beta is not a finite number > 0, or the shapes differ.
    """
    check_positive("beta", beta)
    check_same_shape(
        policy_chosen_logps=policy_chosen_logps,
        policy_rejected_logps=policy_rejected_logps,
        reference_chosen_logps=reference_chosen_logps,
        reference_rejected_logps=reference_rejected_logps,
    )

    chosen_log_ratio = policy_chosen_logps - reference_chosen_logps
    rejected_log_ratio = policy_rejected_logps - reference_rejected_logps
    return -F.logsigmoid(beta * (chosen_log_ratio - rejected_log_ratio))
