"""Per-token KL divergence to a frozen reference model, for the KL baseline.

The KL baseline minimises GA on the forget set plus KL(p_ref || p_theta) on the
retain set, so that the model keeps the reference's predictions on what it
should remember.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kl_divergence_per_token(
    policy_logits: torch.Tensor, reference_logits: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Compute KL(p_ref || p_theta) over the full vocabulary at every position.

    KL_t = sum_v p_ref(v | t) * (log p_ref(v | t) - log p_theta(v | t))

    Args:
        policy_logits: (B, T, V) logits of the model being trained.
        reference_logits: (B, T, V) logits of the frozen reference model, no grad.
        mask: (B, T) bool, True at positions to score (e.g. `labels != -100`).

    Returns:
        (B, T) float32, 0 where `mask` is False; the caller reduces.

    Assumptions:
        Both models share the vocabulary, so their last dimensions match. Only
        the N positions where `mask` is True are computed, in float32, so the
        extra memory is two (N, V) float32 copies.

    Raises:
        ValueError: on mismatched shapes or a mask that is not (B, T) bool.
    """
    if policy_logits.dim() != 3 or policy_logits.shape != reference_logits.shape:
        raise ValueError(
            "policy_logits and reference_logits must both have shape (B, T, V), got "
            f"{tuple(policy_logits.shape)} and {tuple(reference_logits.shape)}."
        )
    if mask.shape != policy_logits.shape[:2] or mask.dtype != torch.bool:
        raise ValueError(
            f"mask must be a bool tensor of shape (B, T) = {tuple(policy_logits.shape[:2])}, "
            f"got {mask.dtype} of shape {tuple(mask.shape)}."
        )

    policy_logp = F.log_softmax(policy_logits[mask].float(), dim=-1)  # (N, V)
    reference_logp = F.log_softmax(reference_logits[mask].float(), dim=-1)  # (N, V)
    # kl_div(input, target) = target * (log target - input), summed over V.
    scored_kl = F.kl_div(policy_logp, reference_logp, reduction="none", log_target=True).sum(dim=-1)  # (N,)

    kl = torch.zeros(mask.shape, dtype=torch.float32, device=policy_logits.device)
    return kl.masked_scatter(mask, scored_kl)
