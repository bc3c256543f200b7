"""Per-token logit-gradient norms: where a forget objective puts its push.

For gradient ascent the gradient of log p_θ(y_i) with respect to position i's
logits is g_i = e_y − p_i, so ‖g_i‖² = 1 − 2·p_i(y) + Σ_v p_i(v)². ViKeR adds
λ·(p_i − q_i), the gradient of λ·KL(q_i ‖ p_i), giving g_i = (e_y − p_i) + λ(p_i − q_i).
Comparing the mean norm on fact tokens with the mean on template tokens shows
whether an objective concentrates on what identifies a person: on a memorised
model GA starts concentrated, and the ratio falls towards 1 as templates erode.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def logit_gradient_norms(
    logits: torch.Tensor,
    labels: torch.Tensor,
    q_ids: torch.Tensor | None = None,
    q_probs: torch.Tensor | None = None,
    q_rest: torch.Tensor | None = None,
    lam: float = 0.0,
) -> torch.Tensor:
    """Return ‖g_i‖ per position, (B, T), zero where labels are -100.

    Args:
        logits: (B, T, V) aligned logits.
        labels: (B, T) gold ids, -100 where not scored.
        q_ids, q_probs, q_rest: ViKeR's compact q, (B, T, m), (B, T, m), (B, T); the
            rest mass is spread evenly over the V − m other tokens. Omit for GA.
        lam: λ; 0 gives GA's gradient.
    """
    mask = labels != -100
    out = torch.zeros(labels.shape, dtype=torch.float32, device=logits.device)
    if not mask.any():
        return out
    p = torch.softmax(logits[mask].float(), dim=-1)  # (N, V)
    grad = -p
    grad[torch.arange(len(p), device=p.device), labels[mask]] += 1.0
    if lam and q_ids is not None:
        vocab = p.shape[-1]
        ids = q_ids[mask]
        others = max(vocab - ids.shape[-1], 1)
        q = (q_rest[mask].float() / others)[:, None].expand_as(p).clone()
        q.scatter_(1, ids, q_probs[mask].float())
        grad = grad + lam * (p - q)
    out[mask] = grad.norm(dim=-1)
    return out


def fact_template_ratio(norms: torch.Tensor, fact_mask: torch.Tensor, labels: torch.Tensor) -> float | None:
    """Return mean norm on fact tokens over mean norm on template tokens, or None if either is absent."""
    scored = labels != -100
    fact = fact_mask & scored
    template = ~fact_mask & scored
    if not fact.any() or not template.any():
        return None
    return float(norms[fact].mean() / norms[template].mean().clamp_min(1e-12))
