"""Tests for the metric registry: directions, arrows and aggregation with standard errors."""

import math

import pytest

from viker.data.records import SetName
from viker.eval.registry import METRICS, Metric, aggregate, arrow, direction_for, get_metric


def test_aggregate_mean_and_stderr():
    """Values 1, 2, 3, 6: mean = 12/4 = 3.

    Squared deviations 4 + 1 + 0 + 9 = 14, sample variance 14/3, s = 2.16025,
    stderr = s / sqrt(4) = 1.08012.
    """
    summary = aggregate({"a": 1.0, "b": 2.0, "c": 3.0, "d": 6.0})
    assert summary.n == 4
    assert summary.mean == pytest.approx(3.0)
    assert summary.stderr == pytest.approx(math.sqrt(14 / 3) / 2)
    assert summary.stderr == pytest.approx(1.080123, abs=1e-6)


def test_aggregate_single_value_has_no_stderr():
    summary = aggregate({"only": 0.7})
    assert summary.mean == pytest.approx(0.7)
    assert summary.stderr is None
    assert summary.n == 1


def test_aggregate_rejects_empty_and_nan():
    with pytest.raises(ValueError, match="no per-sample values"):
        aggregate({})
    with pytest.raises(ValueError, match="'item-7'"):
        aggregate({"item-1": 1.0, "item-7": float("nan")})


def test_arrow_per_direction():
    assert arrow("higher") == "↑"
    assert arrow("lower") == "↓"
    with pytest.raises(ValueError, match="'up'"):
        arrow("up")


def test_direction_flips_on_forget_sets():
    assert direction_for("mc_acc", SetName.RETAIN) == "higher"
    assert direction_for("mc_acc", "public") == "higher"
    assert direction_for("mc_acc", SetName.FORGET) == "lower"
    assert direction_for("rougeL", "test") == "lower"
    assert direction_for("truth_ratio", SetName.FORGET) == "higher"
    assert direction_for("fluency", SetName.FORGET) == "higher"
    with pytest.raises(ValueError, match="'holdout'"):
        direction_for("mc_acc", "holdout")
    with pytest.raises(KeyError, match="'accuracy'"):
        get_metric("accuracy")


def test_registry_entries_are_consistent():
    expected = {
        "mc_acc", "mc_acc_likelihood", "cloze_acc", "cloze_em", "rouge1", "rouge2", "rougeL",
        "rougeL_recall", "bleu", "fact_acc", "fact_token_acc", "template_token_acc", "prob", "truth_ratio",
        "truth_ratio_raw", "forget_quality",
        "forget_quality_js", "model_utility", "fluency", "repetition", "nonword", "mia_auc",
    }
    assert set(METRICS) == expected
    for key, metric in METRICS.items():
        assert metric.key == key
        assert metric.direction in ("higher", "lower")
        assert metric.aggregation in ("mean", "set")
        assert metric.description
    assert METRICS["forget_quality"].aggregation == "set"
    assert METRICS["repetition"].direction == "lower"


def test_metric_rejects_invalid_fields():
    with pytest.raises(ValueError, match="direction 'up'"):
        Metric("x", "X", "up", "mean", "d")
    with pytest.raises(ValueError, match="aggregation 'median'"):
        Metric("x", "X", "higher", "median", "d")
