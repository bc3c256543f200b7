"""Relearning check: does forgotten knowledge come back after a few steps of fine-tuning?

Forgetting that a few steps on a handful of answers undo hid the facts instead of
removing them. The check:

    1. draw `fraction` of the forget split's training samples with the seed (the
       relearning samples R), or with `data="retain"` as many retain samples;
    2. fine-tune a copy of the model on R for `steps` optimizer steps;
    3. measure forget fact accuracy (greedy generation contains the gold fact) before
       and after, on the held-out forget items, whose (person, fact) pair is in no
       sample of R, and on all forget items.

Fact accuracy on the held-out items that rises after relearning means that the
facts were still in the weights. The same steps on the oracle, which never saw the
forget split, show how much the answers in R teach on their own: a well-unlearned
model should relearn no faster than the oracle.

The models given are only read; each relearned copy lives in a temporary folder.
"""

from __future__ import annotations

import logging
import random
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from viker.data.records import Benchmark, Generation, Sample, SetName
from viker.eval.runner import EvalConfig, evaluate
from viker.models.finetune import FinetuneConfig, finetune
from viker.models.loading import check_model_dir, load_model
from viker.models.trainable import TrainableSpec

log = logging.getLogger(__name__)


@dataclass
class RelearnConfig:
    """The relearning attack. The defaults match `UnlearnConfig`'s optimiser (the ViKeR paper's 7B setup)."""

    steps: int = 10  # optimizer steps of fine-tuning on the relearning samples
    learning_rate: float = 5e-6  # AdamW, constant; use the learning rate the model was unlearned with
    batch_size: int = 2
    fraction: float = 0.5  # share of the forget samples used for relearning, in (0, 1)
    seed: int = 0  # draws the relearning samples and seeds training
    dtype: str = "float32"
    trainable: TrainableSpec = field(default_factory=TrainableSpec)  # LoRA r 8 / alpha 16, as in unlearning
    max_new_tokens: int = 24  # generation length when measuring fact accuracy
    data: str = "forget"  # relearn on forget samples, or on as many retain samples (every forget item held out)

    def __post_init__(self):
        for name in ("steps", "learning_rate", "batch_size", "max_new_tokens"):
            if getattr(self, name) <= 0:
                raise ValueError(f"RelearnConfig.{name} must be > 0, got {getattr(self, name)}")
        if not 0 < self.fraction < 1:
            raise ValueError(f"RelearnConfig.fraction must be in (0, 1) so that some forget items stay held out, "
                             f"got {self.fraction}")
        if self.data not in RELEARN_DATA:
            raise ValueError(f"RelearnConfig.data {self.data!r} is invalid; choose one of {RELEARN_DATA}")


RELEARN_DATA = ("forget", "retain")


def relearning_split(benchmark: Benchmark, config: RelearnConfig) -> tuple[list[Sample], list[Generation]]:
    """Return the relearning samples and the held-out forget generation items for `config.data`.

    On "retain", the relearning samples are as many retain samples as "forget" would draw,
    and every forget item with a fact is held out.

    Raises:
        ValueError: as `split_forget` does, or if "retain" finds no retain samples.
    """
    relearn, heldout = split_forget(benchmark, config.fraction, config.seed)
    if config.data == "forget":
        return relearn, heldout
    retain = benchmark.retain_samples()
    if not retain:
        raise ValueError(f"the retain split of {benchmark.name!r} is empty, so there is nothing to relearn on; "
                         "relearn on the forget split instead (data 'forget', --relearn-on forget)")
    n = min(len(relearn), len(retain))
    picked = sorted(random.Random(f"{config.seed}:relearn-retain").sample(range(len(retain)), n))
    items = [it for it in benchmark.eval_sets[SetName.FORGET].generation if it.fact]
    return [retain[i] for i in picked], items


def split_forget(benchmark: Benchmark, fraction: float, seed: int) -> tuple[list[Sample], list[Generation]]:
    """Return the relearning samples and the held-out forget generation items.

    An item is held out when its (person, fact) pair occurs in no relearning sample,
    so relearning never shows the model the fact it is tested on.

    Raises:
        ValueError: if the forget split has fewer than two samples with facts, or no item is held out.
    """
    samples = [s for s in benchmark.forget_samples() if s.fact]
    if len(samples) < 2:
        raise ValueError(f"the forget split of {benchmark.name!r} has {len(samples)} samples with a fact span; the "
                         "relearning check needs at least 2 (one to relearn, one held out). Choose a larger split.")
    n = min(len(samples) - 1, max(1, round(fraction * len(samples))))
    picked = sorted(random.Random(f"{seed}:relearn").sample(range(len(samples)), n))
    relearn = [samples[i] for i in picked]
    relearned_facts = {(s.profile_id, s.fact) for s in relearn}
    items = [it for it in benchmark.eval_sets[SetName.FORGET].generation if it.fact]
    heldout = [it for it in items if (it.profile_id, it.fact) not in relearned_facts]
    if not heldout:
        raise ValueError(f"every forget item of {benchmark.name!r} asks for a fact among the {n} relearning samples; "
                         "lower the fraction so that some facts stay held out")
    return relearn, heldout


def forget_fact_accuracy(model_path: str | Path, benchmark: Benchmark, heldout_ids: set[str],
                         config: RelearnConfig) -> dict:
    """Return per-item fact accuracy on the forget set and its means over held-out and all items.

    "per_item" contains every forget item, and "per_modality" the same values split by
    modality ("image_text", "text"), as the evaluation names them.
    """
    eval_config = EvalConfig(sets=("forget",), tasks=("generation",), max_new_tokens=config.max_new_tokens,
                             mc_official=False, seed=config.seed)
    loaded = load_model(model_path, dtype=config.dtype)
    per_sample = evaluate(loaded, benchmark, eval_config)["per_sample"]
    per_item = per_sample.get("forget/fact_acc", {})
    per_modality = {key.split("/")[1]: values for key, values in per_sample.items()
                    if key.startswith("forget/") and key.endswith("/fact_acc") and key.count("/") == 2}
    heldout = [v for k, v in per_item.items() if k in heldout_ids]
    return {"heldout_fact_acc": sum(heldout) / len(heldout) if heldout else None,
            "all_fact_acc": sum(per_item.values()) / len(per_item) if per_item else None,
            "per_item": per_item, "per_modality": per_modality}


def relearn_model(model_path: str | Path, benchmark: Benchmark, relearn: list[Sample], heldout_ids: set[str],
                  config: RelearnConfig, work_dir: str | Path | None = None) -> dict:
    """Measure forget fact accuracy of one model, relearn it on `relearn`, and measure it again."""
    before = forget_fact_accuracy(model_path, benchmark, heldout_ids, config)
    finetune_config = FinetuneConfig(
        learning_rate=config.learning_rate, batch_size=config.batch_size, max_steps=config.steps,
        target_accuracy=1.0, check_every=config.steps + 1,  # no early stop: exactly `steps` steps
        warmup_steps=0, seed=config.seed, dtype=config.dtype, trainable=config.trainable)
    with tempfile.TemporaryDirectory(prefix="viker-relearn-", dir=work_dir) as tmp:
        relearned = Path(tmp) / "relearned"
        summary = finetune(model_path, relearn, relearned, finetune_config)
        after = forget_fact_accuracy(relearned, benchmark, heldout_ids, config)
    log.info("%s: after %d relearning steps, held-out forget fact accuracy %s", model_path, summary["steps"],
             "; ".join(f"{name} {before_value:.3f} -> {after_value:.3f} ({n} items)"
                       for name, before_value, after_value, n in heldout_means(before, after, heldout_ids)))
    return {"before": before, "after": after, "steps": summary["steps"],
            "relearn_token_accuracy": summary["token_accuracy"]}


def heldout_means(before: dict, after: dict, heldout_ids: set[str]) -> list[tuple[str, float, float, int]]:
    """Return (items, mean before, mean after, count) over held-out items: all of them, then per modality."""
    groups = [("all", before["per_item"], after["per_item"])]
    groups += [(modality, values, after["per_modality"].get(modality, {}))
               for modality, values in sorted(before["per_modality"].items())]
    means = []
    for name, first, second in groups:
        ids = [i for i in first if i in heldout_ids and i in second]
        if ids:
            means.append((name, sum(first[i] for i in ids) / len(ids), sum(second[i] for i in ids) / len(ids),
                          len(ids)))
    return means


def relearn_check(model_path: str | Path, benchmark: Benchmark, config: RelearnConfig | None = None, *,
                  oracle_path: str | Path | None = None, work_dir: str | Path | None = None) -> dict:
    """Run the relearning check on an unlearned model and, when given, on the oracle with the same samples.

    Returns {"config", "relearn_ids", "heldout_ids", "models": {"unlearned": ..., "oracle": ...}}, where each
    model has "before" and "after" fact accuracies ("heldout_fact_acc", "all_fact_acc", "per_item").
    """
    config = config or RelearnConfig()
    for path in (model_path, oracle_path):
        if path is not None:
            check_model_dir(path)  # before any data work, so that a wrong path fails at once
    relearn, heldout = relearning_split(benchmark, config)
    heldout_ids = {it.id for it in heldout}
    log.info("relearning on %d %s samples; %d forget items held out", len(relearn), config.data, len(heldout_ids))
    models = {"unlearned": relearn_model(model_path, benchmark, relearn, heldout_ids, config, work_dir)}
    if oracle_path is not None:
        models["oracle"] = relearn_model(oracle_path, benchmark, relearn, heldout_ids, config, work_dir)
    return {"config": asdict(config), "relearn_ids": [s.id for s in relearn], "heldout_ids": sorted(heldout_ids),
            "models": models}
