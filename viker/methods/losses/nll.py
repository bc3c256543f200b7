"""Token log-probabilities, sequence log-probabilities, NLL and gradient ascent.

Every function here takes ALIGNED inputs: `logits[:, t]` predicts `labels[:, t]`.
Causal LM outputs are one step ahead of their labels, so call
`shift_for_next_token(logits, labels)` first. Positions whose label is -100
(prompt, image tokens, padding) contribute nothing.
"""

from __future__ import annotations

import torch

from viker.methods.losses._validation import IGNORE_INDEX, check_logits_and_labels


def shift_for_next_token(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Align causal LM outputs with their targets: `logits[:, :-1]` predicts `labels[:, 1:]`.

    Args:
        logits: (B, T, V) model outputs, where `logits[:, t]` predicts token t + 1.
        labels: (B, T) input ids with -100 at positions not to score.

    Returns:
        (B, T - 1, V) logits and (B, T - 1) labels, aligned position by position.

    Raises:
        ValueError: if the shapes are not (B, T, V) and (B, T), or T < 2.
    """
    if logits.dim() != 3 or labels.shape != logits.shape[:2]:
        raise ValueError(
            f"expected logits (B, T, V) and labels (B, T), got {tuple(logits.shape)} and {tuple(labels.shape)}."
        )
    if logits.shape[1] < 2:
        raise ValueError(f"sequence length must be >= 2 to shift for next-token prediction, got T = {logits.shape[1]}.")
    return logits[:, :-1, :], labels[:, 1:]


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Compute log p(label) at every position, with zeros where the label is -100.

    Args:
        logits: (B, T, V), aligned with `labels`.
        labels: (B, T) token ids, -100 where ignored.

    Returns:
        logp: (B, T) float32, log softmax(logits)[label], 0 at ignored positions.
        mask: (B, T) bool, True at scored (answer) positions.

    Assumptions:
        Only the N scored positions are computed, in float32 whatever the
        dtype of the logits. The extra memory is an (N, V) float32 copy, which
        autograd keeps for the backward pass.

    Raises:
        ValueError: on wrong shapes or labels outside [0, V) other than -100.
    """
    check_logits_and_labels(logits, labels)
    mask = labels != IGNORE_INDEX

    scored_logits = logits[mask].float()  # (N, V)
    scored_labels = labels[mask].unsqueeze(-1)  # (N, 1)
    selected = scored_logits.gather(-1, scored_labels).squeeze(-1)  # (N,)
    scored_logp = selected - torch.logsumexp(scored_logits, dim=-1)  # (N,)

    logp = torch.zeros(labels.shape, dtype=torch.float32, device=logits.device)
    return logp.masked_scatter(mask, scored_logp), mask


def nll_per_token(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Compute the negative log-likelihood -log p(label) per token, 0 at ignored positions.

    Args:
        logits: (B, T, V), aligned with `labels`.
        labels: (B, T), -100 where ignored.

    Returns:
        (B, T) float32.
    """
    logp, _ = token_logprobs(logits, labels)
    return -logp


def sequence_logprob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Compute log p(y | x) = sum_t log p(y_t | x, y_<t) over answer tokens.

    Args:
        logits: (B, T, V), aligned with `labels`.
        labels: (B, T), -100 where ignored.

    Returns:
        (B,) float32. A row without answer tokens gets 0 (log of an empty product).
    """
    logp, _ = token_logprobs(logits, labels)
    return logp.sum(dim=-1)


def mean_sequence_logprob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Compute (1/|y|) log p(y | x), the mean log-probability over answer tokens.

    Args:
        logits: (B, T, V), aligned with `labels`.
        labels: (B, T), -100 where ignored.

    Returns:
        (B,) float32.

    Raises:
        ValueError: if a row has no answer tokens, since its mean is undefined.
    """
    logp, mask = token_logprobs(logits, labels)
    counts = mask.sum(dim=-1)
    if bool((counts == 0).any()):
        empty_rows = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(
            f"rows {empty_rows} have no answer tokens (every label is {IGNORE_INDEX}); "
            "raise the maximum sequence length so answers are not truncated, or drop these examples."
        )
    return logp.sum(dim=-1) / counts


def gradient_ascent_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Compute the gradient ascent (GA) forget loss: the mean log p(y_t) over answer tokens, per example.

    L_GA(x, y) = (1/|y|) sum_t log p_theta(y_t | x, y_<t) = -NLL(x, y)

    Minimising L_GA pushes the probability of the answer down, with no bound:
    log p can fall without limit, so GA alone degrades the model unless a retain
    or regularisation term is added.

    Args:
        logits: (B, T, V), aligned with `labels`.
        labels: (B, T), -100 where ignored.

    Returns:
        (B,) float32; the caller reduces (usually the mean over the batch).

    Raises:
        ValueError: if a row has no answer tokens.
    """
    return mean_sequence_logprob(logits, labels)
