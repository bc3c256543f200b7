"""Run CLEAR's evaluation protocol on a model: probability, ROUGE-L recall and truth ratio per task.

Source: CLEAR (Dontsov et al., "CLEAR: Character Unlearning in Textual and
Visual Modalities", arXiv 2410.18057), official `mm/eval.py` and
`mm/calculate_metrics.py`, with the truth ratio as TOFU (arXiv 2401.06121)
defines it. The scorers are the pure functions of `viker.eval.truth_ratio`,
`forget_quality` and `text_metrics`; this module builds the items and runs the
model through an `Evaluator` (its `answer_logprobs` and `generate`).

Tasks and what each item scores:

    forget_captions, retain_captions  Caption items of the forget and retain sets, asked
        "Describe the person in this image." with their image. Probability and
        ROUGE-L recall use the caption. The truth ratio compares the paraphrased
        caption with the perturbed captions.
    forget_faces, retain_faces  the same images asked "What is the name of this
        person?"; the answer is the name and the options are the name and the
        perturbed names.
    real_faces, real_world  the PUBLIC set's multiple-choice items (`real_faces-*`
        and other profiles); the answer is the key option and the others are the
        perturbed answers.

Per-sample keys are "clear/{task}/{metric}" with metric `prob`, `rougeL_recall`,
`truth_ratio` (score: min(R, 1/R) on forget tasks, max(0, 1 - 1/R) elsewhere)
and `truth_ratio_raw` (R), keyed by item id. Set-level keys:
"clear/model_utility" and, from `clear_forget_quality`,
"clear/{forget task}/forget_quality" and ".../forget_quality_js".
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from dataclasses import dataclass

from viker.data.records import Benchmark, SetName
from viker.eval.forget_quality import forget_quality, js_forget_quality, model_utility
from viker.eval.registry import aggregate
from viker.eval.text_metrics import rouge_scores
from viker.eval.truth_ratio import (
    TruthRatioMode,
    answer_probability,
    option_probability,
    truth_ratio_score,
    truth_ratios,
)
from viker.models.collate import Turn

log = logging.getLogger(__name__)

CLEAR_TASKS = ("forget_captions", "retain_captions", "forget_faces", "retain_faces", "real_faces", "real_world")
FORGET_TASKS = ("forget_captions", "forget_faces")
CLEAR_METRICS = ("prob", "rougeL_recall", "truth_ratio")  # the entries of model utility
FACE_QUESTION = "What is the name of this person?"


@dataclass
class ClearConfig:
    """Settings of a CLEAR protocol run: truth-ratio mode, item limit, generation length and seed."""

    truth_ratio_mode: TruthRatioMode = "tofu"  # "tofu": per-item perturbed mean; "official": CLEAR's pooled scalar
    max_items: int | None = None  # items per task, drawn with the seed; None scores all
    max_new_tokens: int = 48  # greedy generation length for ROUGE-L recall, in tokens
    seed: int = 0

    def __post_init__(self):
        if self.truth_ratio_mode not in ("tofu", "official"):
            raise ValueError(f"truth_ratio_mode={self.truth_ratio_mode!r} is invalid; use 'tofu' or 'official'")
        if self.max_items is not None and self.max_items < 1:
            raise ValueError(f"max_items must be >= 1 or None, got {self.max_items}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")


@dataclass(frozen=True)
class ClearItem:
    """One scored question of a CLEAR task.

    `answer` is scored for probability and ROUGE-L recall; `true` is the truth
    ratio's true answer (the paraphrase for captions) and `perturbed` its false
    answers. With `has_options`, the probability is normalised over `answer`
    and `perturbed`, as CLEAR does for name and multiple-choice questions.
    """

    id: str
    question: str
    image: bytes | None
    answer: str
    true: str
    perturbed: tuple[str, ...]
    has_options: bool


def clear_items(benchmark: Benchmark) -> dict[str, list[ClearItem]]:
    """Build every CLEAR task's items from the benchmark's captions and PUBLIC multiple-choice items.

    Raises:
        ValueError: the benchmark has no caption items, so it is not in the CLEAR layout.
    """
    tasks: dict[str, list[ClearItem]] = {task: [] for task in CLEAR_TASKS}
    for set_name, prefix in ((SetName.FORGET, "forget"), (SetName.RETAIN, "retain")):
        eval_set = benchmark.eval_sets.get(set_name)
        for cap in eval_set.captions if eval_set else []:
            tasks[f"{prefix}_captions"].append(ClearItem(
                cap.id, cap.question, cap.image, cap.caption, cap.paraphrase or cap.caption, cap.perturbed, False))
            if cap.name and cap.perturbed_names:
                tasks[f"{prefix}_faces"].append(ClearItem(
                    f"{cap.id}/name", FACE_QUESTION, cap.image, cap.name, cap.name, cap.perturbed_names, True))
    if not tasks["forget_captions"] and not tasks["retain_captions"]:
        raise ValueError(
            f"{benchmark.name}: no caption items in the forget or retain set, so the CLEAR protocol has nothing to "
            "score. Load a CLEAR folder (for the embedded benchmark, its clear/ subfolder)."
        )

    public = benchmark.eval_sets.get(SetName.PUBLIC)
    for mc in public.multiple_choice if public else []:
        task = "real_faces" if mc.profile_id.startswith("real_faces-") else "real_world"
        answer = mc.options[mc.key]
        others = tuple(text for letter, text in sorted(mc.options.items()) if letter != mc.key)
        tasks[task].append(ClearItem(mc.id, mc.question, mc.image, answer, answer, others, True))
    return tasks


def _subsample(items: list[ClearItem], limit: int | None, seed: int, task: str) -> list[ClearItem]:
    if limit is None or len(items) <= limit:
        return items
    keep = sorted(random.Random(f"{seed}:clear:{task}").sample(range(len(items)), limit))
    return [items[i] for i in keep]


def _mean_logprobs(evaluator, item: ClearItem) -> tuple[dict[str, float], list]:
    """Score the item's distinct candidate answers in one batched teacher-forced pass.

    Returns the mean log-probability per candidate text and the answer's token log-probabilities.
    """
    candidates = list(dict.fromkeys([item.answer, item.true, *item.perturbed]))
    turns = [Turn(item.question, text, item.image, f"{item.id}/{k}") for k, text in enumerate(candidates)]
    rows = evaluator.answer_logprobs(turns)
    means = {text: float(row["logprobs"].mean()) for text, row in zip(candidates, rows)}
    return means, rows[0]["logprobs"]


def score_task(evaluator, task: str, items: list[ClearItem], config: ClearConfig, out: dict) -> dict[str, str]:
    """Score one task's items into `out["clear/{task}/{metric}"][item id]`; return the greedy replies by item id."""
    forget = task in FORGET_TASKS
    true_means: dict[str, float] = {}
    perturbed_means: dict[str, list[float]] = {}
    for item in items:
        means, answer_logprobs = _mean_logprobs(evaluator, item)
        if item.has_options:
            prob = option_probability(means[item.answer], [means[text] for text in item.perturbed])
        else:
            prob = answer_probability(answer_logprobs)
        out[f"clear/{task}/prob"][item.id] = prob
        if item.perturbed:
            true_means[item.id] = means[item.true]
            perturbed_means[item.id] = [means[text] for text in item.perturbed]

    # The official mode pools the perturbed answers of the whole task, so ratios are computed per task.
    ratios = truth_ratios(true_means, perturbed_means, config.truth_ratio_mode)
    for item_id, ratio in ratios.items():
        out[f"clear/{task}/truth_ratio_raw"][item_id] = ratio
        out[f"clear/{task}/truth_ratio"][item_id] = truth_ratio_score(ratio, forget=forget)

    replies = evaluator.generate([Turn(it.question, None, it.image, it.id) for it in items], config.max_new_tokens)
    for item, reply in zip(items, replies):
        out[f"clear/{task}/rougeL_recall"][item.id] = rouge_scores(item.answer, reply)["rougeL_recall"]
    return {f"clear/{item.id}": reply for item, reply in zip(items, replies)}


def clear_model_utility(per_sample: dict[str, dict[str, float]]) -> tuple[float, int] | None:
    """Compute model utility: the harmonic mean of the non-forget tasks' mean prob, ROUGE-L recall and truth ratio.

    Returns (utility, number of entries), or None when no non-forget task was scored.
    """
    entries = {}
    for task in CLEAR_TASKS:
        if task in FORGET_TASKS:
            continue
        for metric in CLEAR_METRICS:
            values = per_sample.get(f"clear/{task}/{metric}")
            if values:
                entries[f"{task}/{metric}"] = aggregate(values).mean
    if not entries:
        return None
    return model_utility(entries), len(entries)


def run_clear(evaluator, benchmark: Benchmark, config: ClearConfig | None = None) -> dict:
    """Run every CLEAR task that has items; return {"per_sample", "generations", "set_metrics"}.

    Raises:
        ValueError: the benchmark has no caption items.
    """
    config = config or ClearConfig()
    out: dict[str, dict[str, float]] = defaultdict(dict)
    generations: dict[str, str] = {}
    for task, items in clear_items(benchmark).items():
        items = _subsample(items, config.max_items, config.seed, task)
        if not items:
            log.info("CLEAR task %s has no items in %s; skipped", task, benchmark.name)
            continue
        generations.update(score_task(evaluator, task, items, config, out))

    set_metrics = {}
    utility = clear_model_utility(out)
    if utility is not None:
        set_metrics["clear/model_utility"] = {"mean": utility[0], "stderr": None, "n": utility[1]}
    return {"per_sample": dict(out), "generations": generations, "set_metrics": set_metrics}


def clear_forget_quality(model_per_sample: dict[str, dict[str, float]],
                       oracle_per_sample: dict[str, dict[str, float]]) -> dict[str, dict]:
    """Compute forget quality of each forget task against the oracle's per-sample results.

    "clear/{task}/forget_quality" is the KS-test p-value between the two models'
    truth ratios R, and "clear/{task}/forget_quality_js" is 1 - JS distance
    between the histograms of their scores min(R, 1/R). Both are summaries
    {"mean", "stderr": None, "n"}, with n the model's item count. Tasks missing
    from either result are skipped.
    """
    summaries = {}
    for task in FORGET_TASKS:
        mine = model_per_sample.get(f"clear/{task}/truth_ratio_raw")
        oracle = oracle_per_sample.get(f"clear/{task}/truth_ratio_raw")
        if not mine or not oracle:
            continue
        ks = forget_quality(mine, oracle)
        js = js_forget_quality(model_per_sample[f"clear/{task}/truth_ratio"],
                               oracle_per_sample[f"clear/{task}/truth_ratio"])
        summaries[f"clear/{task}/forget_quality"] = {"mean": ks, "stderr": None, "n": len(mine)}
        summaries[f"clear/{task}/forget_quality_js"] = {"mean": js, "stderr": None, "n": len(mine)}
    return summaries
