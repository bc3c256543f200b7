"""Run one unlearning method on one forget split and save the unlearned model to a new folder."""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import torch
from accelerate import PartialState
from accelerate.utils import gather_object
from transformers import TrainerCallback, TrainingArguments

from viker.data.records import Benchmark, Sample
from viker.methods import get_method
from viker.methods.base import DivergedError, UnlearnCollator, UnlearnConfig, UnlearnDataset, to_turn
from viker.methods.refusals import refusal_for
from viker.methods.targets import TargetCache, compute_targets
from viker.methods.viker import align_targets
from viker.models.collate import Collator, model_inputs
from viker.models.finetune import KEEP_CHECKPOINTS, WorkFolder, load_checkpoint_weights
from viker.models.loading import LoadedModel, load_model
from viker.models.trainable import apply_trainable, merge_if_lora
from viker.utils import atomic_write_text, seed_everything

log = logging.getLogger(__name__)


def reference_pool(benchmark: Benchmark, pool: str) -> list[bytes] | None:
    """Return the reference images of a pool kind.

    "retain_faces" uses the retain people's portraits; "true_image" returns None, which
    makes each sample its own reference (an ablation without visual guidance).
    """
    if pool == "true_image":
        return None
    if pool == "retain_faces":
        images = [benchmark.profiles[pid].image for pid in benchmark.retain_ids]
        return [img for img in images if img is not None]
    images = benchmark.reference_pool.get(pool, [])
    if not images:
        raise ValueError(
            f"the benchmark {benchmark.name!r} has no reference images of kind {pool!r} "
            f"(it has {sorted(benchmark.reference_pool) or 'none'}); pass --pool-dir with a folder of images "
            "of people who are not in the benchmark, or choose another pool"
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


class StepTimer(TrainerCallback):
    """Record the wall-clock time of each optimiser step, data loading included.

    Each interval runs from the end of one step to the end of the next, and the first from
    the start of training. An interval includes the batch's collation, forward, backward,
    optimiser update and logging, and nothing that happens once per run.
    """

    def __init__(self):
        self.seconds: list[float] = []
        self._last: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._last = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        self.seconds.append(now - self._last)
        self._last = now


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
            cache_dir: str | Path, save_adapter: bool = False, resume: bool = False) -> dict:
    """Unlearn `benchmark`'s forget split from the model in `model_path`; write the result to `out_dir`.

    The input model is only read. The run works in `<out_dir>.partial` and renames it to
    `out_dir` when it completes. With `config.save_steps > 0` it checkpoints there, and
    `resume=True` continues a killed run from the latest checkpoint (`WorkFolder` has the
    rules). Returns a summary with the training log.
    """
    method_cls = get_method(method)
    method_config = method_config if method_config is not None else method_cls.Config()
    config = config or UnlearnConfig()
    out_dir = Path(out_dir)
    if config.dtype == "float16" and not torch.cuda.is_available():
        raise ValueError(
            "UnlearnConfig.dtype 'float16' needs a CUDA GPU: the CPU has no float16 mixed precision with loss "
            "scaling. Use 'bfloat16' or 'float32' on the CPU."
        )
    run_config = {k: v for k, v in _config_dict(config).items() if k != "save_steps"}
    settings = {"method": method, "method_config": asdict(method_config), "config": run_config,
                "model": str(Path(model_path).resolve()), "benchmark": benchmark.fingerprint(),
                "oracle": str(Path(oracle_path).resolve()) if oracle_path else None, "save_adapter": save_adapter}
    work = WorkFolder(out_dir, resume=resume, settings=settings)
    # Under torchrun or `accelerate launch` every rank runs this function. All ranks check the output
    # folders before the main process creates one, and only the main process writes the result.
    # Without cpu=True, accelerate 1.16 ignores torchrun's WORLD_SIZE on a machine without CUDA.
    state = PartialState(cpu=not torch.cuda.is_available())
    state.wait_for_everyone()
    seed_everything(config.seed)
    start = time.perf_counter()

    loaded = load_model(model_path, dtype=config.dtype)
    if state.device.type != "cpu":
        loaded.model.to(state.device)  # each rank precomputes targets and reference log-probs on its own device
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

    with work if state.is_main_process else contextlib.nullcontext(work):
        tmp = work.path
        args = TrainingArguments(
            output_dir=str(work.checkpoints),
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
            save_total_limit=KEEP_CHECKPOINTS,
            report_to=[],
            seed=config.seed,
            data_seed=config.seed,
            remove_unused_columns=False,
            use_cpu=not torch.cuda.is_available(),
            bf16=config.dtype == "bfloat16",
            disable_tqdm=True,
        )
        timer = StepTimer()
        trainer = method_cls(
            model=model, args=args,
            train_dataset=UnlearnDataset(forget, retain, seed=config.seed),
            data_collator=UnlearnCollator(collator, method, method_config,
                                          ExtrasBuilder(collator, method_cls, targets, ref_logps, config.seed)),
            method_config=method_config, adapter=loaded.adapter, reference=reference, unlearn_config=config,
            callbacks=[timer],
        )
        diverged = None
        train_start = time.perf_counter()
        if work.checkpoint:
            load_checkpoint_weights(model, work.checkpoint)
        try:
            trainer.train(resume_from_checkpoint=str(work.checkpoint) if work.checkpoint else None)
        except DivergedError as err:
            diverged = str(err)
            log.error("%s", err)
        train_seconds = time.perf_counter() - train_start

        _save_model(trainer, model, tmp, model_path=model_path, config=config, save_adapter=save_adapter)
        summary = {
            "method": method, "method_config": asdict(method_config), "config": _config_dict(config),
            "model": str(model_path), "benchmark": benchmark.name, "forget_ids": benchmark.forget_ids,
            "steps": trainer.state.global_step, "train_seconds": train_seconds,
            "step_seconds": [round(t, 6) for t in timer.seconds],
            "target_seconds": target_seconds if targets is not None else None,
            "diverged": diverged, "log_history": trainer.state.log_history,
            "resumed_from": work.checkpoint.name if work.checkpoint else None,
        }
        if state.is_main_process:
            loaded.processor.save_pretrained(tmp)
            atomic_write_text(tmp / "unlearn.json", json.dumps(summary, indent=1, default=str))
    state.wait_for_everyone()  # on return, `out_dir` is complete on every rank
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
    state = PartialState(cpu=not torch.cuda.is_available())
    if source is not loaded and state.device.type != "cpu":
        source.model.to(state.device)
    out = {}
    if "forget" in sets:
        out["forget"] = _sharded_sequence_logps(source, forget)
    if "idk" in sets:
        out["idk"] = _sharded_sequence_logps(source, forget, [refusal_for(s.id, config.seed) for s in forget])
    return out


def _sharded_sequence_logps(source: LoadedModel, samples: list[Sample],
                            answers: list[str] | None = None) -> dict[str, float]:
    """Compute `sequence_logps` on this rank's share of the samples and gather every rank's values."""
    state = PartialState(cpu=not torch.cuda.is_available())
    if state.num_processes == 1:
        return sequence_logps(source, samples, answers)
    indices = range(state.process_index, len(samples), state.num_processes)
    mine = sequence_logps(source, [samples[i] for i in indices], [answers[i] for i in indices] if answers else None)
    merged: dict[str, float] = {}
    for part in gather_object([mine]):
        merged.update(part)
    return merged


def _save_model(trainer, model, folder: Path, *, model_path, config: UnlearnConfig, save_adapter: bool) -> None:
    """Write the unlearned weights to `folder`: merged into the base weights, or the LoRA adapter alone.

    Under DeepSpeed ZeRO-3 or FSDP the parameters are sharded, so every rank takes part in
    `trainer.save_model`, which gathers them (ZeRO-3 needs `zero3_save_16bit_model: true`).
    LoRA is then merged on the main process into a fresh copy of the base model read from
    `model_path`. Otherwise each rank holds the full weights and only the main process writes.
    """
    lora = bool(config.trainable.lora_r)
    is_main = trainer.accelerator.is_main_process
    zero3 = trainer.is_deepspeed_enabled and trainer.accelerator.state.deepspeed_plugin.zero_stage == 3
    if zero3 or trainer.is_fsdp_enabled:
        trainer.save_model(str(folder))
        if lora and not save_adapter and is_main:
            from peft import PeftModel
            from transformers.integrations.deepspeed import unset_hf_deepspeed_config

            # While the ZeRO-3 config is registered, from_pretrained partitions the weights, which needs every
            # rank. Training is over and only this process loads, so it drops the config and loads whole.
            unset_hf_deepspeed_config()
            base = load_model(model_path, dtype=config.dtype).model
            merged = PeftModel.from_pretrained(base, folder).merge_and_unload()
            for adapter_file in folder.glob("adapter_*"):
                adapter_file.unlink()
            merged.save_pretrained(folder, safe_serialization=True)
        return
    if not is_main:
        return
    if save_adapter and lora:
        model.save_pretrained(folder, safe_serialization=True)
    else:
        merge_if_lora(model).save_pretrained(folder, safe_serialization=True)


def _config_dict(config: UnlearnConfig) -> dict:
    d = asdict(config)
    return d
