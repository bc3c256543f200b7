"""CLEAR's likelihood metrics: answer probability and truth ratio.

Sources: TOFU (Maini et al., "TOFU: A Task of Fictitious Unlearning for LLMs",
arXiv 2401.06121) defines both metrics, and CLEAR (Dontsov et al., "CLEAR:
Character Unlearning in Textual and Visual Modalities", arXiv 2410.18057)
reuses them for image-caption pairs. The official code is TOFU's
`aggregate_eval_stat.py` and CLEAR's `mm/calculate_metrics.py`.

Inputs are mean per-token log-probabilities of an answer given the question
(and image): mean_logprob(a) = (1/|a|) sum_t log p(a_t | q, a_<t), the negative
of the mean answer NLL that the official code stores as `avg_*_loss`.
"""

from __future__ import annotations

from typing import Literal, Mapping, Sequence

import numpy as np

TruthRatioMode = Literal["tofu", "official"]
_MODES = ("tofu", "official")


def _as_1d(values, name: str) -> np.ndarray:
    # Accepts lists, numpy arrays and CPU torch tensors alike.
    if hasattr(values, "detach"):
        values = values.detach().cpu().double().numpy()
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise ValueError(f"{name} is empty; pass at least one log-probability.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains a non-finite log-probability ({array.tolist()}).")
    return array


def answer_probability(token_logprobs) -> float:
    """Compute the length-normalised answer probability P̄(a) = exp(mean_t log p(a_t | q, a_<t)).

    `token_logprobs` is a 1-D sequence, array or tensor of the answer tokens'
    log-probabilities (padding removed). This is CLEAR's "Prob." on sets
    without options: exp(-avg_gt_loss).

    Raises:
        ValueError: empty or non-finite input.
    """
    return float(np.exp(_as_1d(token_logprobs, "token_logprobs").mean()))


def option_probability(true_mean_logprob: float, other_mean_logprobs: Sequence[float]) -> float:
    """Compute the true answer's probability normalised over all options.

    P = P̄(true) / (P̄(true) + sum_j P̄(other_j)), with P̄ = exp(mean log-prob),
    as CLEAR's `eval.py` and TOFU compute "Prob." on sets that list wrong options.

    Raises:
        ValueError: no other options, or a non-finite log-probability.
    """
    true_value = _as_1d([true_mean_logprob], "true_mean_logprob")[0]
    others = _as_1d(other_mean_logprobs, "other_mean_logprobs")
    # Dividing through by the largest probability keeps exp() in range.
    all_values = np.concatenate([[true_value], others])
    shift = all_values.max()
    weights = np.exp(all_values - shift)
    return float(weights[0] / weights.sum())


def truth_ratio(true_mean_logprob: float, perturbed_mean_logprobs: Sequence[float]) -> float:
    """Compute one item's truth ratio R = P̄(true) / P̄(perturbed), as TOFU's code does.

    P̄(a) = P(a | q)^(1/|a|) = exp(mean_logprob(a)), and P̄(perturbed) is the
    geometric mean over the perturbed answers:

        R = exp( mean_logprob(true) - (1/m) sum_j mean_logprob(perturbed_j) )

    R > 1 means the model prefers the true answer. TOFU's paper writes the
    inverse, R_TOFU = P̄(perturbed) / P̄(true) = 1/R. In TOFU and CLEAR the
    "true" answer is the paraphrased answer.

    Raises:
        ValueError: no perturbed answers, or a non-finite log-probability.
    """
    true_value = _as_1d([true_mean_logprob], "true_mean_logprob")[0]
    perturbed = _as_1d(perturbed_mean_logprobs, "perturbed_mean_logprobs")
    with np.errstate(over="ignore"):
        return float(np.exp(true_value - perturbed.mean()))


def truth_ratio_score(ratio: float, *, forget: bool) -> float:
    """Map a truth ratio R to the reported per-item score in [0, 1].

    Forget set: min(R, 1/R), which is 1 when the true and perturbed answers are
    equally likely, as for a model that never saw the person. Other sets:
    max(0, 1 - 1/R), which grows as the model prefers the true answer; this is
    TOFU's max(0, 1 - R_TOFU). Higher is better on both.

    Raises:
        ValueError: R is negative or NaN.
    """
    if not ratio >= 0:
        raise ValueError(f"truth ratio {ratio!r} is invalid; a ratio of probabilities is >= 0.")
    with np.errstate(divide="ignore"):
        inverse = float(np.float64(1.0) / np.float64(ratio))
    if forget:
        return min(ratio, inverse)
    return max(0.0, 1.0 - inverse)


def truth_ratios(
    true_mean_logprobs: Mapping[str, float],
    perturbed_mean_logprobs: Mapping[str, Sequence[float]],
    mode: TruthRatioMode = "tofu",
) -> dict[str, float]:
    """Compute the truth ratio R of every item in a set, keyed by item id.

    mode="tofu" (default) uses each item's own perturbed answers, as TOFU's
    `aggregate_eval_stat.py` does (`average_perturb_loss.mean(axis=-1)`):

        R_i = exp( mean_logprob(true_i) - (1/m_i) sum_j mean_logprob(perturbed_ij) )

    mode="official" reproduces CLEAR's `mm/calculate_metrics.py`, which calls
    `.mean()` without an axis and so pools the perturbed answers of the whole
    set into one scalar shared by every item:

        R_i = exp( mean_logprob(true_i) - (1/sum_k m_k) sum_{k,j} mean_logprob(perturbed_kj) )

    With the scalar, R_i varies only with the true answer's likelihood and no
    longer compares each question's true answer with its own wrong answers.
    viker defaults to TOFU's per-item ratio and keeps "official" for
    comparison with CLEAR's published tables. When every item has the same
    number of perturbed answers, the pooled mean equals CLEAR's `np.array(...).mean()`.

    Raises:
        ValueError: an invalid mode, ids that differ between the two mappings,
            an item without perturbed answers, or a non-finite log-probability.
    """
    if mode not in _MODES:
        raise ValueError(f"invalid truth-ratio mode {mode!r}; use one of {_MODES}.")
    missing = set(true_mean_logprobs) ^ set(perturbed_mean_logprobs)
    if missing:
        raise ValueError(
            f"item ids {sorted(missing)[:5]} appear in only one of the true and perturbed mappings; "
            "score the true and the perturbed answers of the same items."
        )

    perturbed = {
        item_id: _as_1d(values, f"perturbed_mean_logprobs[{item_id!r}]")
        for item_id, values in perturbed_mean_logprobs.items()
    }
    if mode == "official":
        pooled = float(np.concatenate(list(perturbed.values())).mean()) if perturbed else 0.0
        perturbed = {item_id: np.array([pooled]) for item_id in perturbed}

    return {item_id: truth_ratio(true_mean_logprobs[item_id], perturbed[item_id]) for item_id in true_mean_logprobs}


def truth_ratio_scores(
    true_mean_logprobs: Mapping[str, float],
    perturbed_mean_logprobs: Mapping[str, Sequence[float]],
    *,
    forget: bool,
    mode: TruthRatioMode = "tofu",
) -> dict[str, float]:
    """Compute every item's truth-ratio score (`truth_ratio_score` of `truth_ratios`), keyed by item id.

    The set's reported "Truth Ratio" is the mean of these scores. Pass
    `forget=True` for the forget set (and MLLMU-Bench's test set, which asks
    about the same people).
    """
    ratios = truth_ratios(true_mean_logprobs, perturbed_mean_logprobs, mode)
    return {item_id: truth_ratio_score(ratio, forget=forget) for item_id, ratio in ratios.items()}

