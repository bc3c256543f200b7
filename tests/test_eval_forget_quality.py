"""Tests for forget quality (KS test, JS distance) and model utility against scipy and by hand."""

import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import hmean, ks_2samp

from viker.eval.forget_quality import forget_quality, js_forget_quality, ks_test, model_utility

MODEL = [0.1, 0.2, 0.3, 0.4]
ORACLE = [0.35, 0.5, 0.6, 0.7, 0.8]


def test_ks_matches_scipy_and_hand_statistic():
    """ECDFs: at x = 0.4 the model's is 4/4 and the oracle's 1/5, so D = 1 - 0.2 = 0.8 (the largest gap)."""
    result = ks_test(MODEL, ORACLE)
    reference = ks_2samp(MODEL, ORACLE)
    assert result.statistic == pytest.approx(0.8)
    assert result.pvalue == pytest.approx(reference.pvalue)
    assert forget_quality(MODEL, ORACLE) == pytest.approx(reference.pvalue)


def test_ks_identical_samples_give_one():
    assert forget_quality(MODEL, MODEL) == pytest.approx(1.0)
    assert ks_test(MODEL, MODEL).statistic == 0.0


def test_ks_accepts_mappings_and_inverse_ratios():
    model = {f"m{i}": value for i, value in enumerate(MODEL)}
    oracle = {f"o{i}": value for i, value in enumerate(ORACLE)}
    assert forget_quality(model, oracle) == pytest.approx(ks_2samp(MODEL, ORACLE).pvalue)
    # TOFU feeds 1/R where CLEAR feeds R; the statistic is unchanged.
    inverse = ks_test(1 / np.array(MODEL), 1 / np.array(ORACLE))
    assert inverse.statistic == pytest.approx(0.8)
    with pytest.raises(ValueError, match="model_values is empty"):
        forget_quality([], ORACLE)


def test_js_quality_two_bins_by_hand():
    """Bins [0, 0.5) and [0.5, 1]. Model counts (3, 1) -> P = (0.75, 0.25); oracle (1, 3) -> Q = (0.25, 0.75).

    M = (0.5, 0.5). KL(P||M) = 0.75 log2 1.5 + 0.25 log2 0.5 = 0.438722 - 0.25 = 0.188722,
    and KL(Q||M) is the same, so JSD = 0.188722, distance sqrt(JSD) = 0.434421,
    and the quality 1 - 0.434421 = 0.565579.
    """
    model = [0.1, 0.2, 0.3, 0.9]
    oracle = [0.6, 0.7, 0.8, 0.4]
    value = js_forget_quality(model, oracle, bins=2)
    assert value == pytest.approx(1 - math.sqrt(0.75 * math.log2(1.5) - 0.25))
    assert value == pytest.approx(0.565579, abs=1e-6)
    assert value == pytest.approx(1 - jensenshannon([3, 1], [1, 3], base=2))


def test_js_quality_default_bins_are_width_005():
    """20 bins of width 0.05: 0.01 and 0.04 share bin 0 (quality 1); 0.01 and 0.06 do not (quality 0)."""
    assert js_forget_quality([0.01], [0.04]) == pytest.approx(1.0)
    assert js_forget_quality([0.01], [0.06]) == pytest.approx(0.0)
    assert js_forget_quality([1.0], [0.97]) == pytest.approx(1.0)  # 1.0 falls in the last bin


def test_js_quality_rejects_raw_ratios():
    with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
        js_forget_quality([0.5, 1.7], [0.5])
    with pytest.raises(ValueError, match="bins"):
        js_forget_quality([0.5], [0.5], bins=0)


def test_model_utility_harmonic_mean():
    """3 / (1/0.5 + 1/0.25 + 1/1) = 3 / 7 = 0.428571."""
    values = {"retain/rougeL": 0.5, "retain/prob": 0.25, "public/truth_ratio": 1.0}
    assert model_utility(values) == pytest.approx(3 / 7)
    assert model_utility(values) == pytest.approx(hmean([0.5, 0.25, 1.0]))


def test_model_utility_zero_and_invalid():
    assert model_utility([0.5, 0.0, 0.9]) == 0.0
    with pytest.raises(ValueError, match="'retain/prob' is -0.1"):
        model_utility({"retain/rougeL": 0.5, "retain/prob": -0.1})
    with pytest.raises(ValueError, match="no metric values"):
        model_utility({})
