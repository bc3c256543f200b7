"""SimNPO forget loss: NPO without a reference model, with length normalisation.

Fan et al., "Simplicity Prevails: Rethinking Negative Preference Optimization
for LLM Unlearning", arXiv 2410.07163.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from viker.methods.losses._validation import check_non_negative, check_positive


def simnpo_loss(policy_mean_logps: torch.Tensor, beta: float, gamma: float = 0.0) -> torch.Tensor:
    """Compute the SimNPO loss per example.

    L_SimNPO(x, y) = -(2/beta) * log sigmoid(-(beta/|y|) * log pi_theta(y|x) - gamma)

    where (1/|y|) log pi_theta(y|x) is the mean log-probability over the |y|
    answer tokens (`mean_sequence_logprob`), and gamma >= 0 is the reward margin.

    Note:
        The official SimNPO code (OPTML-Group/Unlearn-Simple, TOFU/dataloader.py)
        and open-unlearning (src/trainer/unlearn/simnpo.py) compute
        -(2/beta) * log sigmoid(beta * (NLL/|y| - delta)), where NLL = -log pi_theta(y|x).
        Their margin delta (named `gamma` in the official code and `delta` in
        open-unlearning) is multiplied by beta, so their delta equals gamma / beta
        here. Multiply a margin taken from those configs by beta before passing it.

    Args:
        policy_mean_logps: (B,) mean log-probability of the answer tokens.
        beta: inverse temperature, > 0.
        gamma: reward margin, >= 0; 0 is the common default.

    Returns:
        (B,) loss per example; the caller reduces.

    Raises:
        ValueError: if beta is not a finite number > 0 or gamma not a finite number >= 0.
    """
    check_positive("beta", beta)
    check_non_negative("gamma", gamma)

    return -(2.0 / beta) * F.logsigmoid(-beta * policy_mean_logps - gamma)
