"""Run one unlearning method on one forget split and save the unlearned model to a new folder."""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import torch
from transformers import TrainingArguments

from viker.data.records import Benchmark, Sample
from viker.methods import get_method
from viker.methods.base import DivergedError, UnlearnCollator, UnlearnConfig, UnlearnDataset, to_turn
from viker.methods.refusals import refusal_for
from viker.methods.targets import TargetCache, compute_targets
from viker.methods.viker import align_targets
from viker.models.collate import Collator, model_inputs
from viker.models.loading import LoadedModel, load_model
from viker.models.trainable import apply_trainable, merge_if_lora
from viker.utils import atomic_dir, atomic_write_text, seed_everything

log = logging.getLogger(__name__)


def reference_pool(benchmark: Benchmark, pool: str) -> list[bytes]:
    """Return the reference images of a pool kind; "retain_faces" uses the retain people's portraits."""
    if pool == "retain_faces":
        images = [benchmark.profiles[pid].image for pid in benchmark.retain_ids]
        return [img for img in images if img is not None]
    images = benchmark.reference_pool.get(pool, [])
    if not images:
        raise ValueError(
            f"the benchmark {benchmark.name!r} has no reference images of kind {pool!r} "
            f"(it has {sorted(benchmark.reference_pool) or 'none'}); pass --pool-dir with a folder of images "
            "of people who are not in the benchmark, or choose another --pool"
        )
    return images


@torch.no_grad()
def sequence_logps(loaded: LoadedModel, samples: list[Sample], answers: list[str] | None = None,
                   batch_size: int = 16) -> dict[str, float]:
    """Return each sample's answer log-probability (sum over answer tokens) under a frozen model."""
    from viker.methods.losses import sequence_logprob, shift_for_next_token

    collator = Collator(loaded.processor, loaded.adapter)
    loaded.model.eval()
    out = {}
    for lo in range(0, len(samples), batch_size):
        chunk = samples[lo:lo + batch_size]
        turns = [to_turn(s, answers[lo + i] if answers else None) for i, s in enumerate(chunk)]
        batch = collator.train_batch(turns)
        inputs = {k: v.to(loaded.model.device) for k, v in model_inputs(batch, loaded.adapter).items()}
        logits = loaded.model(**inputs).logits.float()
        logp = sequence_logprob(*shift_for_next_token(logits, batch["labels"].to(logits.device)))
        out.update({s.id: float(v) for s, v in zip(chunk, logp)})
    return out


class ExtrasBuilder:
    """Per-batch tensors a method needs besides the forget batch: refusals, references, ViKeR targets."""

    def __init__(self, collator: Collator, method_cls, targets: TargetCache | None,
                 ref_logps: dict[str, dict[str, float]], seed: int):
        self.collator, self.method_cls, self.targets = collator, method_cls, targets
        self.ref_logps, self.seed = ref_logps, seed

    def __call__(self, forget: list[Sample], forget_batch: dict) -> dict:
        extras = {}
        if self.method_cls.uses_idk:
            extras["idk"] = self.collator.train_batch([to_turn(s, refusal_for(s.id, self.seed)) for s in forget])
        for name, values in self.ref_logps.items():
            extras[f"ref_{name}"] = torch.tensor([values[s.id] for s in forget])
        if self.targets is not None:
            extras.update(align_targets(self.targets, forget, forget_batch["labels"]))
        return extras


def unlearn(model_path: str | Path, benchmark: Benchmark, method: str, out_dir: str | Path, *,
            method_config=None, config: UnlearnConfig | None = None, oracle_path: str | Path | None = None,
            cache_dir: str | Path, save_adapter: bool = False) -> dict:
    """Unlearn `benchmark`'s forget split from the model in `model_path`; write the result to `out_dir`.

    The input model is only read. Returns a summary with the training log.
    """
    method_cls = get_method(method)
    method_config = method_config if method_config is not None else method_cls.Config()
    config = config or UnlearnConfig()
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} already exists; choose another output folder or delete it")
    seed_everything(config.seed)
    start = time.perf_counter()

    loaded = load_model(model_path, dtype=config.dtype)
    forget, retain = benchmark.forget_samples(), benchmark.retain_samples()
    collator = Collator(loaded.processor, loaded.adapter)

    targets = None
    if getattr(method_cls, "uses_targets", False):
        pool = reference_pool(benchmark, method_config.pool)
        targets = compute_targets(loaded, forget, pool, k=method_config.k, m=method_config.m, seed=config.seed,
                                  cache_dir=cache_dir)
    target_seconds = time.perf_counter() - start

    ref_logps = _reference_logps(loaded, method_cls, method_config, forget, oracle_path, config)

    reference = None
    if method == "kl" and not config.trainable.lora_r:
        reference = copy.deepcopy(loaded.model).eval().requires_grad_(False)
    model = apply_trainable(loaded.model, loaded.adapter, config.trainable)
    model.train()

    with atomic_dir(out_dir) as tmp:
        args = TrainingArguments(
            output_dir=str(tmp / "checkpoints"),
            per_device_train_batch_size=config.batch_size,
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            learning_rate=config.learning_rate,
            num_train_epochs=config.epochs,
            max_steps=config.max_steps,
            warmup_steps=config.warmup_steps,
            weight_decay=config.weight_decay,
            lr_scheduler_type="constant_with_warmup",
            logging_steps=config.logging_steps,
            save_strategy="steps" if config.save_steps else "no",
            save_steps=config.save_steps or 500,
            report_to=[],
            seed=config.seed,
            data_seed=config.seed,
            remove_unused_columns=False,
            use_cpu=not torch.cuda.is_available(),
            bf16=config.dtype == "bfloat16",
            disable_tqdm=True,
        )
        trainer = method_cls(
            model=model, args=args,
            train_dataset=UnlearnDataset(forget, retain, seed=config.seed),
            data_collator=UnlearnCollator(collator, method, method_config,
                                          ExtrasBuilder(collator, method_cls, targets, ref_logps, config.seed)),
            method_config=method_config, adapter=loaded.adapter, reference=reference, unlearn_config=config,
        )
        diverged = None
        train_start = time.perf_counter()
        try:
            trainer.train()
        except DivergedError as err:
            diverged = str(err)
            log.error("%s", err)
        train_seconds = time.perf_counter() - train_start

        if save_adapter and config.trainable.lora_r:
            model.save_pretrained(tmp, safe_serialization=True)
        else:
            merge_if_lora(model).save_pretrained(tmp, safe_serialization=True)
        loaded.processor.save_pretrained(tmp)
        summary = {
            "method": method, "method_config": asdict(method_config), "config": _config_dict(config),
            "model": str(model_path), "benchmark": benchmark.name, "forget_ids": benchmark.forget_ids,
            "steps": trainer.state.global_step, "train_seconds": train_seconds,
            "target_seconds": target_seconds if targets is not None else None,
            "diverged": diverged, "log_history": trainer.state.log_history,
        }
        shutil_rm(tmp / "checkpoints")
        atomic_write_text(tmp / "unlearn.json", json.dumps(summary, indent=1, default=str))
    log.info("%s: %d steps in %.1f s -> %s", method, summary["steps"], train_seconds, out_dir)
    return summary


def _reference_logps(loaded, method_cls, method_config, forget, oracle_path, config) -> dict[str, dict[str, float]]:
    sets = method_cls.reference_sets(method_config)
    if not sets:
        return {}
    source = loaded
    if getattr(method_config, "reference", "initial") == "oracle":
        if oracle_path is None:
            raise ValueError(f"{method_cls.name}: reference 'oracle' needs the oracle model's folder (--oracle)")
        source = load_model(oracle_path, dtype=config.dtype)
    out = {}
    if "forget" in sets:
        out["forget"] = sequence_logps(source, forget)
    if "idk" in sets:
        out["idk"] = sequence_logps(source, forget, [refusal_for(s.id, config.seed) for s in forget])
    return out


def _config_dict(config: UnlearnConfig) -> dict:
    d = asdict(config)
    return d


def shutil_rm(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
