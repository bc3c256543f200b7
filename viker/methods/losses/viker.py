"""ViKeR's visual-guided key-token regulariser.

Cai et al., "Visual-Guided Key-Token Regularization for Multimodal Large
Language Model Unlearning", arXiv 2601.22020.

The objective on a forget example (I, x, y) is

    L = L_GA + lam * mean_i KL(q_i || p_theta(. | I, x, y_<i))

where q_i, the ideal next-token distribution at answer position i, is the
frozen pre-unlearning model's distribution averaged over k irrelevant
reference images. Where the answer token does not depend on who is in the
image (template words), q_i stays peaked on y_i and the regulariser protects
the token. Where it does (the name, the city), q_i is flat and the regulariser
adds to the forgetting pressure.

Storing q_i over the full vocabulary costs V floats per answer token, so viker
stores it compactly: the top-m token ids, their probabilities and the
remaining mass. `viker_kl` computes the KL over the (m + 1)-way partition
{top-m tokens, every other token}.
"""

from __future__ import annotations

import math

import torch

# log of the smallest normal float32. Log-probabilities are clamped here so that
# an empty or vanishing bucket gives a large finite penalty, not inf or NaN.
LOG_FLOOR = math.log(torch.finfo(torch.float32).tiny)

DIRECTIONS = ("forward", "reverse")

# Allowed deviation of sum(q_probs) + q_rest from 1, wide enough for q stored in float16.
_MASS_TOLERANCE = 1e-2


def check_viker_lambda(lam: float) -> None:
    """Raise ValueError unless lam > 1, the range where the ViKeR objective has a minimum.

    At one position the logit gradient of log p_y + lam * KL(q || p) is
    (e_y - p) + lam * (p - q). At lam = 1 it is e_y - q, which does not depend
    on the model. The loss then has no minimum, and every answer token is pushed
    down at a constant rate, template tokens included. For lam < 1 the
    gradient-ascent term outweighs the regulariser at every token, so no token
    is protected. For lam > 1 a token is kept exactly when q_y > 1/lam.

    Raises:
        ValueError: if lam is not a finite number > 1.
    """
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam):
        raise ValueError(f"lam must be a finite number > 1, got {lam!r}.")
    if lam <= 1:
        raise ValueError(
            f"lam must be > 1 for the ViKeR objective, got {lam!r}. At lam = 1 the logit gradient of "
            "log p_y + lam * KL(q || p) is e_y - q, which does not depend on the model, so the loss has no "
            "minimum and gradient ascent erodes every answer token, template tokens included. For lam < 1 the "
            "gradient-ascent term outweighs the regulariser at every token. Choose lam > 1: a token is "
            "protected when its reference probability q_y exceeds 1/lam."
        )


def average_reference_probs(logits: torch.Tensor) -> torch.Tensor:
    """Average the next-token distributions over k reference images: mean_k softmax(logits_k).

    This averages probabilities, not logits. Averaging logits would give the
    normalised geometric mean, which is peaked wherever the references agree
    on ranking and so hides the disagreement that marks a key token.

    Args:
        logits: (k, T, V) logits of the frozen model, one row per reference
            image, aligned at the answer positions.

    Returns:
        (T, V) float32 probabilities that sum to 1 over V.

    Assumptions:
        Row j of every reference scores the same answer token, which holds when
        all k prompts differ only in the image and produce the same number of
        image tokens.

    Raises:
        ValueError: if logits is not 3-D or k = 0.
    """
    if logits.dim() != 3 or logits.shape[0] == 0:
        raise ValueError(
            f"logits must have shape (k, T, V) with k >= 1 reference images, got {tuple(logits.shape)}."
        )
    return torch.softmax(logits.float(), dim=-1).mean(dim=0)


def compact_distribution(probs: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep the m most probable tokens of each distribution and the mass of the rest.

    Args:
        probs: (..., V) probabilities that sum to 1 over the last dimension.
        m: number of tokens to keep, 1 <= m <= V.

    Returns:
        ids: (..., m) int64 token ids, most probable first.
        top_probs: (..., m) their probabilities, float32.
        rest: (...) float32 mass of the V - m other tokens, 1 - sum(top_probs)
            clamped at 0; exactly 0 when m = V.

    Raises:
        ValueError: if m is outside [1, V] or probs do not sum to 1 (within 1e-2),
            which usually means logits were passed instead of probabilities.
    """
    vocab_size = probs.shape[-1]
    if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= vocab_size:
        raise ValueError(f"m must be an integer in [1, {vocab_size}] (the vocabulary size), got {m!r}.")

    probs = probs.float()
    total = probs.sum(dim=-1)
    if bool(((total - 1).abs() > _MASS_TOLERANCE).any()):
        flat = total.reshape(-1)
        worst = flat[(flat - 1).abs().argmax()].item()
        raise ValueError(
            f"probs must sum to 1 over the last dimension, got a sum of {worst:.4f}; "
            "pass softmax probabilities (e.g. from average_reference_probs), not logits."
        )

    top_probs, ids = torch.topk(probs, m, dim=-1)
    if m == vocab_size:
        rest = torch.zeros_like(total)
    else:
        rest = (1.0 - top_probs.sum(dim=-1)).clamp_min(0.0)
    return ids, top_probs, rest


def viker_kl(
    logits: torch.Tensor,
    q_ids: torch.Tensor,
    q_probs: torch.Tensor,
    q_rest: torch.Tensor,
    mask: torch.Tensor,
    direction: str = "forward",
) -> torch.Tensor:
    """Compute the KL between the compact ideal distribution q and p_theta at each answer position.

    With the partition {top-m ids of q, every other token} and the rest bucket
    probabilities q_rest and p_rest = 1 - sum_{j in top-m} p_theta(j):

        forward: KL(q || p) = sum_j q_j (log q_j - log p_j) + q_rest (log q_rest - log p_rest)
        reverse: KL(p || q) = sum_j p_j (log p_j - log q_j) + p_rest (log p_rest - log q_rest)

    By the data-processing inequality, the KL over a coarser partition is never
    larger than the KL over the full vocabulary. So this value is a lower bound
    of the full-vocabulary KL to the uncompressed q. The forward KL is exact
    when q_rest = 0, and both directions are exact when m = V.

    Args:
        logits: (B, T, V) logits of the model being trained, aligned with the
            answer positions of q.
        q_ids: (B, T, m) int64 token ids of q's top-m tokens, distinct per position.
        q_probs: (B, T, m) their probabilities under q.
        q_rest: (B, T) q's remaining mass, 1 - q_probs.sum(-1).
        mask: (B, T) bool, True at answer positions. Elsewhere q is ignored
            (it may be padding) and the output is 0.
        direction: "forward" for KL(q || p_theta), the ViKeR objective, or
            "reverse" for KL(p_theta || q).

    Returns:
        (B, T) float32 KL per position; the caller reduces (ViKeR takes the
        mean over answer tokens).

    Assumptions:
        Only the N answer positions are computed, in float32, so the extra
        memory is two (N, V) float32 copies. Log-probabilities are clamped at
        log(float32 tiny) = -87.3. A token where q is 0 but p_theta
        is not therefore adds a large finite penalty to the reverse KL, not inf.

    Raises:
        ValueError: on mismatched shapes, ids outside [0, V), an unknown
            direction, or q_probs + q_rest not summing to 1 (within 1e-2) at an
            answer position.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}.")
    _check_compact_inputs(logits, q_ids, q_probs, q_rest, mask)

    # Only answer positions are computed, so padding values in q never reach the loss or its gradient.
    top = q_probs[mask].float()  # (N, m)
    rest = q_rest[mask].float().unsqueeze(-1)  # (N, 1)
    q = torch.cat([top, rest], dim=-1)  # (N, m + 1)
    log_q = q.clamp_min(torch.finfo(torch.float32).tiny).log()
    log_p = _partition_logprobs(logits[mask], q_ids[mask])  # (N, m + 1)

    if direction == "forward":
        terms = torch.where(q > 0, q * (log_q - log_p), 0.0)
    else:
        terms = log_p.exp() * (log_p - log_q)

    kl = torch.zeros(mask.shape, dtype=torch.float32, device=logits.device)
    return kl.masked_scatter(mask, terms.sum(dim=-1))


def entropy_of_compact(
    q_ids: torch.Tensor, q_probs: torch.Tensor, q_rest: torch.Tensor, vocab_size: int
) -> torch.Tensor:
    """Compute the entropy H(q) in nats of a compactly stored distribution.

    H(q) = -sum_j q_j log q_j - q_rest log(q_rest / (V - m))

    The rest mass is treated as spread uniformly over the V - m tokens outside
    the top m, which gives the largest entropy consistent with the stored
    values. It is an upper bound on the entropy of the uncompressed q.

    Args:
        q_ids: (..., m) token ids; only m is read from them.
        q_probs: (..., m) top-m probabilities.
        q_rest: (...) remaining mass.
        vocab_size: V, the vocabulary size, >= m.

    Returns:
        (...) float32 entropy per position.

    Raises:
        ValueError: on mismatched shapes, or vocab_size < m.
    """
    if q_ids.shape != q_probs.shape or q_probs.shape[:-1] != q_rest.shape:
        raise ValueError(
            "expected q_ids and q_probs of shape (..., m) and q_rest of shape (...), got "
            f"{tuple(q_ids.shape)}, {tuple(q_probs.shape)} and {tuple(q_rest.shape)}."
        )
    m = q_ids.shape[-1]
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < m:
        raise ValueError(f"vocab_size must be an integer >= m = {m}, got {vocab_size!r}.")

    top = q_probs.float()
    rest = q_rest.float()
    entropy = -torch.special.xlogy(top, top).sum(dim=-1)
    if vocab_size > m:
        entropy = entropy - torch.special.xlogy(rest, rest / (vocab_size - m))
    return entropy


def _partition_logprobs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Compute log p over the partition {ids[n, 0], ..., ids[n, m-1], rest}.

    Args:
        logits: (N, V) at the answer positions.
        ids: (N, m) distinct token ids per position.

    Returns:
        (N, m + 1) float32 log-probabilities, the last column for the rest bucket.
    """
    logits = logits.float()
    log_normaliser = torch.logsumexp(logits, dim=-1, keepdim=True)  # (N, 1)
    top = logits.gather(-1, ids) - log_normaliser  # (N, m)

    # log p_rest = logsumexp over the tokens outside the top m, minus the
    # normaliser. This avoids log(1 - sum p_top), which cancels catastrophically
    # when p_top is close to 1. The fill is finite, not -inf, because the
    # gradient of logsumexp over an all -inf row (the case m = V) is NaN.
    outside = logits.scatter(-1, ids, torch.finfo(torch.float32).min)
    rest = torch.logsumexp(outside, dim=-1, keepdim=True) - log_normaliser  # (N, 1)

    return torch.cat([top, rest], dim=-1).clamp_min(LOG_FLOOR)


def _check_compact_inputs(
    logits: torch.Tensor, q_ids: torch.Tensor, q_probs: torch.Tensor, q_rest: torch.Tensor, mask: torch.Tensor
) -> None:
    if logits.dim() != 3:
        raise ValueError(f"logits must have shape (B, T, V), got {tuple(logits.shape)}.")
    batch_time = tuple(logits.shape[:2])
    if q_ids.dim() != 3 or tuple(q_ids.shape[:2]) != batch_time:
        raise ValueError(f"q_ids must have shape (B, T, m) with (B, T) = {batch_time}, got {tuple(q_ids.shape)}.")
    if q_probs.shape != q_ids.shape:
        raise ValueError(f"q_probs must have the shape of q_ids {tuple(q_ids.shape)}, got {tuple(q_probs.shape)}.")
    if tuple(q_rest.shape) != batch_time:
        raise ValueError(f"q_rest must have shape (B, T) = {batch_time}, got {tuple(q_rest.shape)}.")
    if tuple(mask.shape) != batch_time or mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor of shape (B, T) = {batch_time}, got {mask.dtype} {tuple(mask.shape)}.")
    if q_ids.dtype.is_floating_point:
        raise ValueError(f"q_ids must be an integer tensor of token ids, got dtype {q_ids.dtype}.")

    vocab_size = logits.shape[-1]
    answer_ids = q_ids[mask]  # (N, m)
    if answer_ids.numel() and bool(((answer_ids < 0) | (answer_ids >= vocab_size)).any()):
        raise ValueError(
            f"q_ids contain ids outside [0, {vocab_size}) at answer positions; "
            "check that q was built with the same tokenizer as the model."
        )

    total = q_probs[mask].float().sum(dim=-1) + q_rest[mask].float()  # (N,)
    if total.numel() and bool(((total - 1).abs() > _MASS_TOLERANCE).any()):
        worst = total[(total - 1).abs().argmax()].item()
        raise ValueError(
            f"q_probs.sum(-1) + q_rest must be 1 at answer positions, got {worst:.4f}; "
            "build q with compact_distribution, and check the mask matches the stored answer positions."
        )
