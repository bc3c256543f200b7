"""Every metric key viker reports, with its direction and aggregation.

Modelled on lm-evaluation-harness (`lm_eval/api/metrics.py`): a metric is
registered once with whether higher is better and how per-sample values are
reduced, and reports carry the direction arrow, the value and its standard
error. Per-sample values are always keyed by item id, so a report can be
traced back to the items that produced it.

Knowledge metrics (accuracy, ROUGE, probability) measure how much the model still
recalls about the people in a set. Unlearning wants them high on the retain and
public sets and low on the forget and test sets, so such a metric carries
`forget_direction="lower"` and `direction_for` picks the right one per set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Mapping

import numpy as np

from viker.data.records import SetName

Direction = Literal["higher", "lower"]
Aggregation = Literal["mean", "set"]

_DIRECTIONS = ("higher", "lower")
_AGGREGATIONS = ("mean", "set")
# The sets whose people the model must forget: a knowledge metric should drop there.
_FORGET_SETS = (SetName.FORGET, SetName.TEST)


@dataclass(frozen=True)
class Metric:
    """A registered metric: its key in reports, its label, and how to read and reduce it.

    `aggregation="mean"` metrics have one value per item and are reduced by
    `aggregate`. `aggregation="set"` metrics (forget quality, model utility,
    MIA AUC) are computed once from a whole set and carry no standard error.
    `forget_direction` is the desired direction on the forget and test sets
    when it differs from `direction`; None means the same direction everywhere.
    """

    key: str
    label: str
    direction: Direction
    aggregation: Aggregation
    description: str
    forget_direction: Direction | None = None

    def __post_init__(self) -> None:
        if self.direction not in _DIRECTIONS:
            raise ValueError(
                f"metric {self.key!r}: invalid direction {self.direction!r}; use one of {_DIRECTIONS}."
            )
        if self.forget_direction is not None and self.forget_direction not in _DIRECTIONS:
            raise ValueError(
                f"metric {self.key!r}: invalid forget_direction {self.forget_direction!r}; "
                f"use one of {_DIRECTIONS} or None."
            )
        if self.aggregation not in _AGGREGATIONS:
            raise ValueError(
                f"metric {self.key!r}: invalid aggregation {self.aggregation!r}; use one of {_AGGREGATIONS}."
            )


@dataclass(frozen=True)
class Summary:
    """The mean of per-sample values, its standard error (None when n < 2) and the sample count."""

    mean: float
    stderr: float | None
    n: int


def _knowledge(key: str, label: str, description: str) -> Metric:
    return Metric(key, label, "higher", "mean", description, forget_direction="lower")


_ALL = [
    # MLLMU-Bench (text_metrics.py)
    _knowledge("mc_acc", "MC accuracy", "Multiple choice, official rule: the reply's first non-space character is the key letter."),
    _knowledge("mc_acc_likelihood", "MC accuracy (likelihood)", "Multiple choice, option with the highest length-normalised log-probability."),
    _knowledge("cloze_acc", "Cloze accuracy", "Fill-in-the-blank, official rule: the answer is a case-insensitive substring of the reply."),
    _knowledge("cloze_em", "Cloze exact match", "Fill-in-the-blank, reply equals the answer after SQuAD normalisation."),
    _knowledge("rouge1", "ROUGE-1", "ROUGE-1 F1 of the reply against the reference (rouge-score, Porter stemming)."),
    _knowledge("rouge2", "ROUGE-2", "ROUGE-2 F1 of the reply against the reference (rouge-score, Porter stemming)."),
    _knowledge("rougeL", "ROUGE-L", "ROUGE-L F1 of the reply against the reference (rouge-score, Porter stemming)."),
    _knowledge("rougeL_recall", "ROUGE-L recall", "ROUGE-L recall of the reply against the reference, as CLEAR reports it."),
    _knowledge("bleu", "BLEU", "Sentence BLEU-4 over whitespace tokens with Chen-Cherry smoothing method 1."),
    _knowledge("fact_acc", "Fact accuracy", "The gold fact span appears, as whole tokens, in the normalised reply."),
    _knowledge("fact_token_acc", "Fact-token accuracy", "Teacher-forced argmax accuracy on the answer tokens that overlap the fact span."),
    _knowledge("template_token_acc", "Template-token accuracy", "Teacher-forced argmax accuracy on the answer tokens outside the fact span."),
    # CLEAR (truth_ratio.py)
    _knowledge("prob", "Probability", "exp(-mean answer NLL), normalised over the options where the item has options."),
    Metric(
        "truth_ratio",
        "Truth ratio",
        "higher",
        "mean",
        "Forget and test sets: min(R, 1/R), 1 when true and perturbed answers are equally likely. "
        "Other sets: max(0, 1 - 1/R). R = P(true)/P(perturbed), length-normalised.",
    ),
    Metric("truth_ratio_raw", "Truth ratio R", "higher", "mean", "R = P(true)/P(perturbed), length-normalised; the input of the KS test against the oracle."),
    # Forget quality and utility (forget_quality.py)
    Metric("forget_quality", "Forget quality", "higher", "set", "KS-test p-value between the truth ratios of the model and of the oracle."),
    Metric("forget_quality_js", "1 - JS distance", "higher", "set", "1 minus the base-2 Jensen-Shannon distance between truth-ratio histograms of model and oracle."),
    Metric("model_utility", "Model utility", "higher", "set", "Harmonic mean of the non-forget metric values; 0 if any of them is 0."),
    # Fluency (fluency.py)
    Metric("fluency", "Fluency", "higher", "mean", "(1 - repeated bigram share) * (1 - non-word share) of the reply."),
    Metric("repetition", "Repetition", "lower", "mean", "Share of repeated bigrams in the reply: 1 - distinct bigrams / bigrams."),
    Metric("nonword", "Non-words", "lower", "mean", "Share of reply words missing from the supplied vocabulary."),
    # Membership inference (mia.py)
    Metric(
        "mia_auc",
        "MIA AUC",
        "lower",
        "set",
        "ROC AUC of a membership score separating forget items from unseen items; 0.5 is chance.",
    ),
]

METRICS: dict[str, Metric] = {metric.key: metric for metric in _ALL}


def get_metric(key: str) -> Metric:
    """Look up a registered metric by key.

    Raises:
        KeyError: the key is not registered; the message lists the valid keys.
    """
    if key not in METRICS:
        raise KeyError(f"unknown metric key {key!r}; registered keys: {sorted(METRICS)}.")
    return METRICS[key]


def direction_for(key: str, set_name: SetName | str) -> Direction:
    """Return the desired direction of metric `key` on one evaluation set.

    Raises:
        KeyError: `key` is not registered.
        ValueError: `set_name` is not one of forget, test, retain, public.
    """
    metric = get_metric(key)
    try:
        name = SetName(set_name)
    except ValueError:
        valid = [s.value for s in SetName]
        raise ValueError(f"invalid set name {set_name!r}; use one of {valid}.") from None
    if name in _FORGET_SETS and metric.forget_direction is not None:
        return metric.forget_direction
    return metric.direction


def arrow(direction: str) -> str:
    """Return "↑" for a higher-is-better direction and "↓" for lower-is-better.

    Raises:
        ValueError: `direction` is neither "higher" nor "lower".
    """
    if direction == "higher":
        return "↑"
    if direction == "lower":
        return "↓"
    raise ValueError(f"invalid direction {direction!r}; use 'higher' or 'lower'.")


def aggregate(per_sample: Mapping[str, float]) -> Summary:
    """Reduce per-sample values keyed by item id to their mean and standard error.

    stderr = s / sqrt(n), where s is the sample standard deviation (ddof=1);
    it is None when n < 2, where s is undefined.

    Raises:
        ValueError: `per_sample` is empty, or a value is NaN or infinite (the
            message names the item id).
    """
    if not per_sample:
        raise ValueError("no per-sample values to aggregate; evaluate at least one item first.")
    for item_id, value in per_sample.items():
        if not math.isfinite(value):
            raise ValueError(
                f"item {item_id!r} has a non-finite metric value {value!r}; "
                "fix the scorer output for that item or drop the item."
            )

    values = np.asarray(list(per_sample.values()), dtype=np.float64)
    n = int(values.size)
    mean = float(values.mean())
    stderr = float(values.std(ddof=1) / math.sqrt(n)) if n >= 2 else None
    return Summary(mean=mean, stderr=stderr, n=n)
