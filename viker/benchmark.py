"""The main job: vanilla and oracle models, every method on one forget split, one comparison report.

Stages (each logged, cached stages reused):
    1. load the benchmark (the embedded one is generated on first use);
    2. build the tiny base model, or take a local model folder;
    3. fine-tune the vanilla model (all people) and the oracle (without the forget split), cached;
    4. per seed and method: unlearn the vanilla model, evaluate it;
    5. the relearning check on every model, the oracle's figure included;
    6. forget quality against the oracle, key-token views, the report.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
from tqdm.auto import tqdm

from viker.data import load_benchmark
from viker.data.records import Benchmark, Sample
from viker.eval.fluency import build_vocabulary
from viker.eval.forget_quality import forget_quality, js_forget_quality
from viker.eval.registry import METRICS, aggregate, arrow
from viker.eval.relearn import RelearnConfig, relearn_model, relearning_split
from viker.eval.runner import TASKS, EvalConfig, evaluate
from viker.methods import DISPLAY_NAMES, get_method
from viker.methods.base import UnlearnConfig
from viker.methods.run import reference_pool, unlearn
from viker.keytokens import gold_probabilities, keytoken_table
from viker.methods.targets import compute_targets
from viker.methods.viker import ViKeRConfig
from viker.models.finetune import FinetuneConfig, finetune
from viker.models.loading import load_model
from viker.models.tiny import TINY_BUILDERS
from viker.models.trainable import TrainableSpec
from viker.report import write_report
from viker.utils import atomic_write_text, default_cache_dir, run_metadata, stable_hash

log = logging.getLogger(__name__)

DEFAULT_METHODS = ("ga", "gd", "kl", "npo", "idkpo", "viker", "viker_retain")

# The unlearning budget for tiny models on a CPU: the language model trains in full at
# lr 1e-4 with forget batches of 6 for 60 steps. LoRA at lr 5e-6 for one epoch (the
# paper's 7B setup) moves a 5M-parameter model too little to measure anything.
TINY_UNLEARN = dict(learning_rate=1e-4, batch_size=6, max_steps=60, logging_steps=5,
                    trainable=TrainableSpec(parts=("language_model", "lm_head"), lora_r=0))

RELEARN_GROUP = "Relearning, image+text"

# Columns of the report table: (metric key, label, set, direction, group).
TABLE = [
    ("forget/image_text/mc_acc_likelihood", "Forget MC", "forget", "lower", "Forget efficacy, image+text"),
    ("forget/image_text/fact_acc", "Forget fact acc.", "forget", "lower", "Forget efficacy, image+text"),
    ("forget/image_text/rougeL", "Forget ROUGE-L", "forget", "lower", "Forget efficacy, image+text"),
    ("test/image_text/mc_acc_likelihood", "Test MC", "test", "lower", "Test efficacy, image+text"),
    ("test/image_text/fact_acc", "Test fact acc.", "test", "lower", "Test efficacy, image+text"),
    ("test/image_text/rougeL", "Test ROUGE-L", "test", "lower", "Test efficacy, image+text"),
    ("retain/image_text/mc_acc_likelihood", "Retain MC", "retain", "higher", "Retain utility, image+text"),
    ("retain/image_text/fact_acc", "Retain fact acc.", "retain", "higher", "Retain utility, image+text"),
    ("retain/image_text/rougeL", "Retain ROUGE-L", "retain", "higher", "Retain utility, image+text"),
    ("public/image_text/mc_acc_likelihood", "Public MC", "public", "higher", "Public utility, image+text"),
    ("public/image_text/fact_acc", "Public fact acc.", "public", "higher", "Public utility, image+text"),
    ("public/image_text/rougeL", "Public ROUGE-L", "public", "higher", "Public utility, image+text"),
    ("forget/forget_quality", "Forget quality (KS p)", "forget", "higher", "Against the oracle"),
    ("forget/fluency", "Forget fluency", "forget", "higher", "Fluency"),
    ("mia/mink_pp/mia_auc", "MIA AUC (Min-K%++)", "forget", "target", "Forget vs unseen people"),
    ("mia/loss/mia_auc", "MIA AUC (loss)", "forget", "target", "Forget vs unseen people"),
    ("relearn/image_text/heldout_fact_acc_before", "Held-out fact acc. before", "forget", "lower", RELEARN_GROUP),
    ("relearn/image_text/heldout_fact_acc_after", "Held-out fact acc. after", "forget", "lower", RELEARN_GROUP),
]


@dataclass
class BenchmarkConfig:
    """Options of `viker benchmark`."""

    data: str = "embedded"  # "embedded", an MLLMU-Bench or CLEAR folder, or a profiles JSON/JSONL file
    images: str | None = None  # portraits folder for a profiles file
    forget_split: str = "forget_10"
    family: str = "llava"  # tiny model family when `model` is not given
    model: str | None = None  # a local base model folder (fine-tuned into vanilla and oracle)
    methods: tuple[str, ...] = DEFAULT_METHODS
    seeds: tuple[int, ...] = (0,)
    out: str = "viker-out"
    cache_dir: str | None = None
    overwrite: bool = False
    eval_items: int | None = 24  # per set, task and modality; None evaluates every item
    keep_models: bool = False
    unlearn: dict = field(default_factory=lambda: dict(TINY_UNLEARN))
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    relearn_steps: int = 10  # steps of the relearning check; 0 skips it
    relearn_on: str = "forget"  # half the "forget" samples, or as many "retain" samples

    def __post_init__(self):
        for method in self.methods:
            get_method(method)
        if self.family not in TINY_BUILDERS:
            raise ValueError(f"family {self.family!r} has no tiny model; choose one of {sorted(TINY_BUILDERS)}")
        if not self.seeds:
            raise ValueError("seeds must name at least one seed")
        if self.relearn_steps < 0:
            raise ValueError(f"relearn_steps must be >= 0 (0 skips the relearning check), got {self.relearn_steps}")
        self.relearn_config(self.seeds[0])  # rejects an invalid relearn_on before any training

    def relearn_config(self, seed: int) -> RelearnConfig | None:
        """Return the relearning attack: the unlearning optimiser settings, so it is as strong as unlearning was."""
        if not self.relearn_steps:
            return None
        unlearning = UnlearnConfig(**self.unlearn)
        return RelearnConfig(steps=self.relearn_steps, learning_rate=unlearning.learning_rate,
                             batch_size=unlearning.batch_size, seed=seed, dtype=unlearning.dtype,
                             trainable=unlearning.trainable, data=self.relearn_on)


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} already holds results; pass --overwrite to replace them or choose --out")


def prepare_models(cfg: BenchmarkConfig, benchmark: Benchmark, cache: Path) -> dict[str, Path]:
    """Return the base, vanilla and oracle model folders, building or reusing each."""
    settings = {"data": benchmark.fingerprint(), "family": cfg.family, "model": cfg.model,
                "finetune": cfg.finetune.key()}
    root = cache / "models" / stable_hash(settings)
    if not (root / "settings.json").is_file():
        # The folder name is a hash, so this file records the data and settings its models were built from.
        root.mkdir(parents=True, exist_ok=True)
        described = {"benchmark": benchmark.name, "benchmark_source": str(cfg.data), **settings}
        atomic_write_text(root / "settings.json", json.dumps(described, indent=1, default=str))
    base = Path(cfg.model) if cfg.model else root / "base"
    if not cfg.model and not base.exists():
        texts = [f"{s.question} {s.answer}" for s in benchmark.train_samples()]
        log.info("building a tiny %s model in %s", cfg.family, base)
        TINY_BUILDERS[cfg.family](texts, base, seed=cfg.finetune.seed)
    paths = {"base": base, "vanilla": root / "vanilla", "oracle": root / "oracle"}
    jobs = []
    for name, include_forget in (("vanilla", True), ("oracle", False)):
        if paths[name].exists():
            log.info("reusing the %s model from %s", name, paths[name])
        else:
            log.info("fine-tuning the %s model (%s the forget split)", name, "with" if include_forget else "without")
            jobs.append((name, base, benchmark.train_samples(include_forget=include_forget), paths[name],
                         cfg.finetune))
    if len(jobs) == 2 and not torch.cuda.is_available() and (os.cpu_count() or 1) >= 2:
        # Tiny models are too small to keep two CPU threads busy, so two single-threaded
        # processes train vanilla and oracle side by side about a third faster than one after the other.
        threads = max(1, torch.get_num_threads() // 2)
        with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
            summaries = list(pool.map(_finetune_job, [job + (threads,) for job in jobs]))
    else:
        summaries = [_finetune_job(job + (None,)) for job in jobs]
    for (name, *_), summary in zip(jobs, summaries):
        log.info("%s: %d steps, %.0f s, training token accuracy %.3f", name, summary["steps"], summary["seconds"],
                 summary["token_accuracy"])
        atomic_write_text(root / f"{name}.json", json.dumps(summary, indent=1))
    return paths


def _finetune_job(job) -> dict:
    name, base, samples, path, config, threads = job
    if threads:
        import transformers

        transformers.utils.logging.disable_progress_bar()
        torch.set_num_threads(threads)
        logging.basicConfig(level=logging.INFO, format=f"%(asctime)s %(levelname)s {name}: %(message)s",
                            datefmt="%H:%M:%S")
        for noisy in ("transformers", "accelerate"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
    return finetune(base, samples, path, config)


def run_benchmark(cfg: BenchmarkConfig) -> dict:
    """Run the whole comparison and write the report into `cfg.out`; return the results dictionary."""
    start = time.perf_counter()
    out = Path(cfg.out)
    _check_out(out, cfg.overwrite)
    cache = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    torch.set_num_threads(torch.get_num_threads())

    benchmark = load_benchmark(cfg.data, forget_split=cfg.forget_split, seed=cfg.seeds[0], images=cfg.images)
    log.info("benchmark %s: %d forget, %d retain, %d public people", benchmark.name, len(benchmark.forget_ids),
             len(benchmark.retain_ids), len(benchmark.public_ids))
    relearning = Relearning(cfg, benchmark)
    models = prepare_models(cfg, benchmark, cache)
    vocabulary = build_vocabulary(f"{s.question} {s.answer}" for s in benchmark.train_samples())
    # Membership inference needs people in no training split; a benchmark without them skips it.
    eval_config = EvalConfig(max_items=cfg.eval_items, tasks=TASKS + (("mia",) if benchmark.holdout_ids else ()))

    evaluations: dict[str, list[dict]] = {}
    train_times: dict[str, list[float]] = {}
    curves: dict[str, list[dict]] = {}
    for name in ("vanilla", "oracle"):
        log.info("evaluating the %s model", name)
        evaluations[name] = [evaluate(load_model(models[name]), benchmark, eval_config, vocabulary)]
        relearning.add(evaluations[name][0], models[name], cfg.seeds[0])

    keytoken_samples = _keytoken_samples(benchmark)
    unlearned_probs: dict[str, dict[str, list[float]]] = {}
    work = out / "models"
    runs = [(seed, method) for seed in cfg.seeds for method in cfg.methods]
    for seed, method in tqdm(runs, desc="unlearn + evaluate", unit="run", disable=not sys.stderr.isatty()):
        label = DISPLAY_NAMES[method]
        target = work / f"{method}-seed{seed}"
        if target.exists():
            shutil.rmtree(target)
        log.info("unlearning with %s (seed %d)", label, seed)
        summary = unlearn(models["vanilla"], benchmark, method, target,
                          config=UnlearnConfig(seed=seed, **cfg.unlearn), oracle_path=models["oracle"],
                          cache_dir=cache / "targets")
        train_times.setdefault(label, []).append(summary["train_seconds"])
        if seed == cfg.seeds[0]:
            curves[label] = _curve(summary["log_history"])
        log.info("evaluating %s (seed %d)", label, seed)
        loaded = load_model(target)
        evaluations.setdefault(label, []).append(evaluate(loaded, benchmark, eval_config, vocabulary))
        if seed == cfg.seeds[0]:
            unlearned_probs[label] = gold_probabilities(loaded, keytoken_samples)
        del loaded
        relearning.add(evaluations[label][-1], target, seed)
        if not cfg.keep_models:
            shutil.rmtree(target)
    if not cfg.keep_models:
        shutil.rmtree(work, ignore_errors=True)

    _add_forget_quality(evaluations)
    keytokens = _keytokens(cfg, benchmark, models, cache, keytoken_samples, unlearned_probs)
    results = _results(cfg, benchmark, evaluations, train_times, curves, keytokens, time.perf_counter() - start)
    out.mkdir(parents=True, exist_ok=True)
    per_sample = {name: [e["per_sample"] for e in runs] for name, runs in evaluations.items()}
    atomic_write_text(out / "per_sample.json", json.dumps(per_sample))
    generations = {name: runs[0]["generations"] for name, runs in evaluations.items()}
    atomic_write_text(out / "generations.json", json.dumps(generations, indent=1))
    paths = write_report(results, out, overwrite=cfg.overwrite)
    log.info("report written to %s (%.0f s in all)", paths["html"], time.perf_counter() - start)
    return results


class Relearning:
    """The relearning check of every model in the table, with the same relearning samples per seed.

    Each model is fine-tuned for a few steps on half the forget samples (or as many retain
    samples). The table shows fact accuracy before and after on the forget items whose
    facts were not among them.
    The oracle's row shows how much the relearning samples teach a model that never knew
    the forget people. An unlearned model that relearns faster still contained the facts.
    """

    def __init__(self, cfg: BenchmarkConfig, benchmark: Benchmark):
        self.cfg, self.benchmark = cfg, benchmark
        # The splits are drawn here, so that a forget split too small to split fails before any training.
        self._splits: dict[int, tuple[list[Sample], set[str]]] = {}
        for seed in cfg.seeds if cfg.relearn_steps else ():
            relearn, heldout = relearning_split(benchmark, cfg.relearn_config(seed))
            self._splits[seed] = relearn, {item.id for item in heldout}

    def add(self, evaluation: dict, model_path: Path, seed: int) -> None:
        """Relearn the model in `model_path` and add the two figures to `evaluation`'s summary and per-sample values."""
        config = self.cfg.relearn_config(seed)
        if config is None:
            return
        relearn, heldout_ids = self._splits[seed]
        result = relearn_model(model_path, self.benchmark, relearn, heldout_ids, config)
        for when in ("before", "after"):
            image_text = result[when]["per_modality"].get("image_text", {})
            values = {k: v for k, v in image_text.items() if k in heldout_ids}
            if not values:
                continue
            key = f"relearn/image_text/heldout_fact_acc_{when}"
            evaluation["per_sample"][key] = values
            stats = aggregate(values)
            evaluation["summary"][key] = {"mean": stats.mean, "stderr": stats.stderr, "n": stats.n,
                                          "direction": "lower", "arrow": arrow("lower")}


def _curve(history: list[dict]) -> list[dict]:
    keys = ("forget/loss", "reg/kl", "retain/loss", "diag/fact_template_grad_ratio")
    return [{"step": h["step"], **{k: h.get(k) for k in keys}} for h in history if "forget/loss" in h]


def _add_forget_quality(evaluations: dict[str, list[dict]]) -> None:
    """Add forget/forget_quality: the KS p-value of forget truth ratios against the oracle's."""
    oracle = evaluations["oracle"][0]["per_sample"].get("forget/truth_ratio_raw")
    if not oracle:
        return
    for runs in evaluations.values():
        for run in runs:
            mine = run["per_sample"].get("forget/truth_ratio_raw")
            if mine:
                run["summary"]["forget/forget_quality"] = {"mean": forget_quality(list(mine.values()),
                                                                                  list(oracle.values())),
                                                           "stderr": None, "n": len(mine)}
                scores = run["per_sample"].get("forget/truth_ratio", {})
                oracle_scores = evaluations["oracle"][0]["per_sample"].get("forget/truth_ratio", {})
                if scores and oracle_scores:
                    run["summary"]["forget/forget_quality_js"] = {
                        "mean": js_forget_quality(list(scores.values()), list(oracle_scores.values())),
                        "stderr": None, "n": len(scores)}


def _keytoken_samples(benchmark: Benchmark, n: int = 3) -> list[Sample]:
    """Return the first forget person's first `n` samples that carry a fact span."""
    return [s for s in benchmark.forget_samples() if s.fact][:n]


def _keytokens(cfg, benchmark, models, cache, samples, unlearned_probs) -> list[dict]:
    """Key-token views of a few forget samples: H(q_i) from ViKeR's targets, p of the gold token per model."""
    if not samples or not any(m in cfg.methods for m in ("viker", "viker_retain")):
        return []
    viker_config = ViKeRConfig()
    vanilla = load_model(models["vanilla"])
    targets = compute_targets(vanilla, benchmark.forget_samples(), reference_pool(benchmark, viker_config.pool),
                              k=viker_config.k, m=viker_config.m, seed=cfg.seeds[0], cache_dir=cache / "targets")
    table = keytoken_table(vanilla, targets, samples, viker_config.lam)
    for row in table:
        for i, token in enumerate(row["tokens"]):
            token["p_unlearned"] = {label: probs[row["sample_id"]][i] for label, probs in unlearned_probs.items()}
    return table


def _results(cfg, benchmark, evaluations, train_times, curves, keytokens, seconds) -> dict:
    meta = run_metadata()
    metrics = []
    for key, label, set_name, direction, group in TABLE:
        if group == RELEARN_GROUP:
            relearn = cfg.relearn_config(cfg.seeds[0])
            if relearn is None:
                continue
            on = f"{relearn.fraction:.0%} of the forget samples" if relearn.data == "forget" else "retain samples"
            group = f"{group}, {relearn.steps} steps on {on}"
        metrics.append({"key": key, "label": label, "set": set_name, "direction": direction, "group": group})
    rows = []
    for name, runs in evaluations.items():
        values = {}
        for key, *_ in TABLE:
            means = [r["summary"][key]["mean"] for r in runs if key in r["summary"]]
            if means:
                values[key] = {"mean": statistics.fmean(means),
                               "std": statistics.stdev(means) if len(means) > 1 else None, "n": len(means)}
        times = train_times.get(name)
        rows.append({"model": name, "kind": "reference" if name in ("vanilla", "oracle") else "method",
                     "train_time_s": statistics.fmean(times) if times else None, "values": values})
    return {
        "header": {"title": "viker benchmark", "commit": meta["commit"], "versions": meta["versions"],
                   "hardware": meta["hardware"], "wall_clock_s": seconds, "seeds": list(cfg.seeds),
                   "benchmark": benchmark.name, "model": cfg.model or f"tiny {cfg.family}",
                   "forget_split": cfg.forget_split, "command": " ".join(["viker"] + sys.argv[1:]),
                   "created": datetime.now(timezone.utc).isoformat(timespec="seconds")},
        "metrics": metrics,
        "rows": rows,
        "tradeoff": {"x": "forget/image_text/fact_acc", "y": "retain/image_text/fact_acc"},
        "curves": curves,
        "keytokens": keytokens,
    }
