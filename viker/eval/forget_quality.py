"""Set-level unlearning metrics: forget quality against the oracle, and model utility.

Sources: TOFU (Maini et al., arXiv 2401.06121) defines forget quality as the
p-value of a two-sample Kolmogorov-Smirnov test between the forget-set truth
ratios of the unlearned model and of the oracle, a model never trained on the
forget set. TOFU defines model utility as the harmonic mean of the non-forget
metrics. CLEAR (Dontsov et al., arXiv 2410.18057) reuses both in `mm/calculate_metrics.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp

DEFAULT_JS_BINS = 20


@dataclass(frozen=True)
class KSResult:
    """A two-sample KS test: the statistic D = sup_x |F_model(x) - F_oracle(x)| and its p-value."""

    statistic: float
    pvalue: float


def _values(sample: Mapping[str, float] | Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    if isinstance(sample, Mapping):
        sample = list(sample.values())
    array = np.asarray(sample, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise ValueError(f"{name} is empty; compute the truth ratios of at least one forget item first.")
    if np.isnan(array).any():
        raise ValueError(f"{name} contains NaN; check the likelihood scores behind it.")
    return array


def ks_test(model_values, oracle_values) -> KSResult:
    """Run `scipy.stats.ks_2samp` (two-sided, method "auto") on two samples.

    Both arguments are sequences, arrays or id-keyed mappings of per-item truth
    ratios on the forget set. TOFU feeds R_TOFU = P̄(perturbed)/P̄(true) and CLEAR
    feeds R = 1/R_TOFU; the test gives the same result for both, because the
    empirical CDFs are compared after the same monotone map on both samples.

    Raises:
        ValueError: an empty sample or a NaN value.
    """
    result = ks_2samp(_values(model_values, "model_values"), _values(oracle_values, "oracle_values"))
    return KSResult(statistic=float(result.statistic), pvalue=float(result.pvalue))


def forget_quality(model_values, oracle_values) -> float:
    """Compute TOFU's forget quality: the KS-test p-value between model and oracle truth ratios.

    Higher is better: near 1 the two distributions are indistinguishable.
    See `ks_test` for the inputs.
    """
    return ks_test(model_values, oracle_values).pvalue


def js_forget_quality(model_scores, oracle_scores, bins: int = DEFAULT_JS_BINS) -> float:
    """Compute 1 - JS distance between the histograms of two samples of scores in [0, 1].

    Both samples are binned into `bins` equal-width bins over [0, 1] (default
    20 bins of width 0.05, `numpy.histogram` with range=(0, 1), so the last bin
    includes 1.0). The counts go to `scipy.spatial.distance.jensenshannon` with
    base 2, which normalises them to probabilities, so the distance lies in
    [0, 1] and the result is 1 for identical histograms and 0 for disjoint ones.

    Unlike the KS p-value, this does not shrink toward 0 as the sample grows,
    which makes it comparable across forget-set sizes. Use forget-set
    truth-ratio scores min(R, 1/R), which lie in [0, 1].

    Raises:
        ValueError: `bins` < 1, an empty sample, or a value outside [0, 1].
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}.")
    histograms = []
    for name, sample in (("model_scores", model_scores), ("oracle_scores", oracle_scores)):
        values = _values(sample, name)
        outside = values[(values < 0) | (values > 1)]
        if outside.size:
            raise ValueError(
                f"{name} has values outside [0, 1] (first: {outside[0]!r}); "
                "pass forget-set truth-ratio scores min(R, 1/R), not raw ratios."
            )
        counts, _ = np.histogram(values, bins=bins, range=(0.0, 1.0))
        histograms.append(counts.astype(np.float64))
    return float(1.0 - jensenshannon(histograms[0], histograms[1], base=2))


def model_utility(values: Mapping[str, float] | Sequence[float]) -> float:
    """Compute model utility: the harmonic mean of the non-forget metric values.

    MU = n / sum_i (1 / v_i), and MU = 0 when any v_i is 0 (the limit of the
    formula, and what `scipy.stats.hmean` returns). The caller passes only the
    non-forget entries (retain, public and real-world sets), each in [0, 1]
    and higher-is-better, as TOFU and CLEAR do.

    Raises:
        ValueError: no values, or a negative or non-finite value (named by key
            when `values` is a mapping).
    """
    items = list(values.items()) if isinstance(values, Mapping) else list(enumerate(values))
    if not items:
        raise ValueError("no metric values for model utility; pass the non-forget set metrics.")
    for key, value in items:
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(
                f"model-utility entry {key!r} is {value!r}; every entry must be a finite value >= 0."
            )

    if any(value == 0 for _, value in items):
        return 0.0
    return len(items) / math.fsum(1.0 / value for _, value in items)
