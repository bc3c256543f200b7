"""Membership-inference scores and their ROC AUC.

Every score here follows one sign convention: a higher score means the text
is more likely a member of the training set. An unlearned model should give
forget-set texts scores that look like those of texts it never saw, so the
AUC between forget and unseen texts should approach 0.5.

Inputs are per-token natural-log probabilities log p(x_t | x_<t) of the
scored tokens (padding removed), as 1-D sequences, numpy arrays or tensors.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch
from scipy.stats import rankdata

# NOTE: Min-K%++ divides by the per-position standard deviation sigma. sigma is 0 where
# log p is constant over the next-token distribution (one-hot, or uniform over its support),
# and there the reference code returns inf or NaN. viker floors sigma at 1e-3, so float32
# rounding of log p (about 1e-7 * |log p|) moves z by about 1e-3 at most at such a position,
# while a token outside the support still gets a large negative z.
_SIGMA_FLOOR = 1e-3


def _as_1d(values, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise ValueError(f"{name} is empty; score at least one token.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains a non-finite value; check the log-softmax and the padding mask.")
    return array


def _lowest_share_mean(values: np.ndarray, k: float) -> float:
    if not 0 < k <= 1:
        raise ValueError(f"k must be a fraction in (0, 1], got {k!r}; for example 0.2 for the lowest 20 %.")
    # The reference implementations keep int(T * k) values; viker keeps at least one so short texts get a score.
    count = max(1, int(values.size * k))
    return float(np.sort(values)[:count].mean())


def loss_score(token_logprobs) -> float:
    """Compute the LOSS attack score: the mean token log-probability, (1/T) sum_t log p(x_t | x_<t).

    This is the negated mean NLL (Yeom et al., "Privacy Risk in Machine
    Learning", arXiv 1709.01604), negated so that higher means member.
    """
    return float(_as_1d(token_logprobs, "token_logprobs").mean())


def zlib_score(token_logprobs, text: str) -> float:
    """Compute the zlib score: mean token log-probability / zlib-compressed length of the text in bytes.

        score = ((1/T) sum_t log p(x_t | x_<t)) / len(zlib.compress(text.encode("utf-8")))

    Python's zlib at its default level 6. The compressed length calibrates for
    texts that are likely because they are simple (Carlini et al., "Extracting
    Training Data from Large Language Models", arXiv 2012.07805). The mean
    log-probability is negative, so a better-predicted text scores closer to 0,
    that is higher.

    Raises:
        ValueError: `text` is empty, or the log-probabilities are empty or non-finite.
    """
    if not text:
        raise ValueError("text is empty; pass the text whose tokens were scored.")
    compressed_bytes = len(zlib.compress(text.encode("utf-8")))
    return loss_score(token_logprobs) / compressed_bytes


def mink_score(token_logprobs, k: float = 0.2) -> float:
    """Compute Min-K% Prob: the mean of the k share of lowest token log-probabilities.

    Shi et al., "Detecting Pretraining Data from Large Language Models", arXiv
    2310.16789. The lowest max(1, floor(k T)) values are averaged; a member
    has few very unlikely tokens, so its score is higher.

    Raises:
        ValueError: k outside (0, 1], or empty or non-finite log-probabilities.
    """
    return _lowest_share_mean(_as_1d(token_logprobs, "token_logprobs"), k)


def mink_pp_stats(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Compute the mean and standard deviation of log p under the model's own next-token distribution.

    For each position t with p = softmax(logits[t]) over the vocabulary:

        mu_t      = sum_v p_v log p_v
        sigma_t^2 = sum_v p_v (log p_v)^2 - mu_t^2

    `logits` has shape (T, V) and row t is the distribution that scored token
    x_t, so the caller has already dropped the last position and aligned the
    rows with the scored tokens. Computed in float32 or wider; returns mu (T,)
    and sigma (T,), with sigma^2 clipped at 0 against rounding.

    Raises:
        ValueError: `logits` is not 2-D.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (T, V), got {tuple(logits.shape)}; select one sequence first.")
    dtype = torch.promote_types(logits.dtype, torch.float32)
    log_probs = torch.log_softmax(logits.to(dtype), dim=-1)  # (T, V)
    probs = log_probs.exp()
    mu = (probs * log_probs).sum(dim=-1)  # (T,)
    variance = (probs * log_probs.square()).sum(dim=-1) - mu.square()  # (T,)
    return mu, variance.clamp(min=0).sqrt()


def mink_pp_score(token_logprobs, mu, sigma, k: float = 0.2) -> float:
    """Compute Min-K%++: the mean of the k share of lowest standardised token log-probabilities.

    Zhang et al., "Min-K%++: Improved Baseline for Detecting Pre-Training Data
    from Large Language Models", arXiv 2404.02936:

        z_t = (log p(x_t | x_<t) - mu_t) / sigma_t,   score = mean of the lowest max(1, floor(k T)) z_t

    with mu and sigma from `mink_pp_stats`. Training pushes members toward local
    maxima of the likelihood, so a member's tokens sit above mu and score higher.
    sigma is floored at 1e-3, because it is 0 where the distribution is one-hot.

    Raises:
        ValueError: mismatched lengths, a negative sigma, k outside (0, 1], or
            empty or non-finite inputs.
    """
    logprobs = _as_1d(token_logprobs, "token_logprobs")
    mu_values = _as_1d(mu, "mu")
    sigma_values = _as_1d(sigma, "sigma")
    if not logprobs.size == mu_values.size == sigma_values.size:
        raise ValueError(
            f"token_logprobs, mu and sigma have lengths {logprobs.size}, {mu_values.size}, {sigma_values.size}; "
            "pass one value per scored token to each."
        )
    if np.any(sigma_values < 0):
        raise ValueError("sigma has a negative value; pass standard deviations from mink_pp_stats.")
    z = (logprobs - mu_values) / np.maximum(sigma_values, _SIGMA_FLOOR)
    return _lowest_share_mean(z, k)


def auc(member_scores, nonmember_scores) -> float:
    """Compute the ROC AUC of scores that should rank members above non-members.

    AUC = P(s_member > s_nonmember) + 0.5 P(s_member = s_nonmember) over all
    member/non-member pairs (the Mann-Whitney U statistic divided by m n),
    computed from average ranks: AUC = (R_members - m(m + 1)/2) / (m n), with
    R_members the sum of the members' ranks among all m + n scores.

    Raises:
        ValueError: either group is empty or contains a non-finite score.
    """
    members = _as_1d(member_scores, "member_scores")
    nonmembers = _as_1d(nonmember_scores, "nonmember_scores")
    m, n = members.size, nonmembers.size
    ranks = rankdata(np.concatenate([members, nonmembers]))  # ties get their average rank
    rank_sum = ranks[:m].sum()
    return float((rank_sum - m * (m + 1) / 2) / (m * n))
