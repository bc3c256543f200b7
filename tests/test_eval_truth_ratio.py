"""Tests for CLEAR/TOFU probability and truth ratio on hand-computed log-probabilities."""

import math

import numpy as np
import pytest
import torch

from viker.eval.truth_ratio import (
    answer_probability,
    option_probability,
    truth_ratio,
    truth_ratio_score,
    truth_ratio_scores,
    truth_ratios,
)

ln = math.log


def test_answer_probability_is_length_normalised():
    """Token probabilities 0.5 and 0.125: exp((ln 0.5 + ln 0.125)/2) = sqrt(0.0625) = 0.25."""
    assert answer_probability([ln(0.5), ln(0.125)]) == pytest.approx(0.25)
    assert answer_probability(torch.tensor([ln(0.5), ln(0.125)])) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="empty"):
        answer_probability([])


def test_option_probability_normalises_over_options():
    """P̄ = 0.5 (true), 0.25, 0.25: 0.5 / (0.5 + 0.25 + 0.25) = 0.5."""
    assert option_probability(ln(0.5), [ln(0.25), ln(0.25)]) == pytest.approx(0.5)
    # Large negative log-probabilities must not underflow to 0/0: 1 / (1 + 2 e^-1) = 0.576117.
    assert option_probability(-1000.0, [-1001.0, -1001.0]) == pytest.approx(1 / (1 + 2 * math.exp(-1)))


def test_truth_ratio_uses_geometric_mean():
    """True 0.4, perturbed 0.1 and 0.4: geometric mean sqrt(0.04) = 0.2, R = 0.4 / 0.2 = 2.

    The arithmetic mean (0.25) would give R = 1.6 instead.
    """
    assert truth_ratio(ln(0.4), [ln(0.1), ln(0.4)]) == pytest.approx(2.0)


def test_truth_ratio_score_per_set():
    """R = 2: forget min(2, 1/2) = 0.5, retain max(0, 1 - 1/2) = 0.5.

    R = 0.5: forget min(0.5, 2) = 0.5, retain max(0, 1 - 2) = 0.
    R = 1: forget 1, retain 0.
    """
    assert truth_ratio_score(2.0, forget=True) == pytest.approx(0.5)
    assert truth_ratio_score(2.0, forget=False) == pytest.approx(0.5)
    assert truth_ratio_score(0.5, forget=True) == pytest.approx(0.5)
    assert truth_ratio_score(0.5, forget=False) == 0.0
    assert truth_ratio_score(1.0, forget=True) == pytest.approx(1.0)
    assert truth_ratio_score(1.0, forget=False) == pytest.approx(0.0)


def test_truth_ratio_extremes_stay_finite():
    """A true answer e^1000 times likelier than the perturbed one overflows R to inf: forget 0, retain 1."""
    ratio = truth_ratio(0.0, [-1000.0])
    assert truth_ratio_score(ratio, forget=True) == 0.0
    assert truth_ratio_score(ratio, forget=False) == 1.0
    assert truth_ratio_score(0.0, forget=True) == 0.0
    assert truth_ratio_score(0.0, forget=False) == 0.0
    with pytest.raises(ValueError, match="invalid"):
        truth_ratio_score(float("nan"), forget=True)


TRUE = {"a": ln(0.4), "b": ln(0.2)}
PERTURBED = {"a": [ln(0.1), ln(0.4)], "b": [ln(0.8), ln(0.2)]}


def test_truth_ratios_tofu_mode():
    """a: 0.4 / sqrt(0.1 * 0.4) = 0.4 / 0.2 = 2.   b: 0.2 / sqrt(0.8 * 0.2) = 0.2 / 0.4 = 0.5."""
    ratios = truth_ratios(TRUE, PERTURBED)
    assert ratios["a"] == pytest.approx(2.0)
    assert ratios["b"] == pytest.approx(0.5)


def test_truth_ratios_official_pools_whole_set():
    """CLEAR pools all four perturbed answers: (0.1 * 0.4 * 0.8 * 0.2)^(1/4) = 0.0064^(1/4) = 0.282843.

    a: 0.4 / 0.282843 = sqrt(2) = 1.414214.   b: 0.2 / 0.282843 = 1/sqrt(2) = 0.707107.
    """
    ratios = truth_ratios(TRUE, PERTURBED, mode="official")
    assert ratios["a"] == pytest.approx(math.sqrt(2))
    assert ratios["b"] == pytest.approx(1 / math.sqrt(2))

    # The same numbers from CLEAR's expression exp(mean(average_perturb_loss) - avg_paraphrased_loss).
    perturb_loss = -np.array([PERTURBED["a"], PERTURBED["b"]])
    paraphrased_loss = -np.array([TRUE["a"], TRUE["b"]])
    clear_values = np.exp(perturb_loss.mean() - paraphrased_loss)
    assert [ratios["a"], ratios["b"]] == pytest.approx(clear_values.tolist())


def test_truth_ratio_scores_forget_and_retain():
    """TOFU mode, R = 2 and 0.5. Forget: 0.5 and 0.5. Retain: 0.5 and max(0, 1 - 2) = 0."""
    assert truth_ratio_scores(TRUE, PERTURBED, forget=True) == pytest.approx({"a": 0.5, "b": 0.5})
    assert truth_ratio_scores(TRUE, PERTURBED, forget=False) == pytest.approx({"a": 0.5, "b": 0.0})


def test_truth_ratios_reject_bad_input():
    with pytest.raises(ValueError, match=r"\['c'\]"):
        truth_ratios({**TRUE, "c": -1.0}, PERTURBED)
    with pytest.raises(ValueError, match="'b'.*empty"):
        truth_ratios(TRUE, {"a": PERTURBED["a"], "b": []})
    with pytest.raises(ValueError, match="'paper'"):
        truth_ratios(TRUE, PERTURBED, mode="paper")
