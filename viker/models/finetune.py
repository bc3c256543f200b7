"""Vanilla and oracle fine-tuning with the Hugging Face `Trainer`.

The vanilla model learns every training profile (public figures included); the
oracle learns the same data without the forget split, so it is the model that
unlearning tries to reach and the reference for forget quality.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset
from transformers import Trainer, TrainerCallback, TrainingArguments

from viker.data.records import Sample
from viker.models.collate import Collator, Turn, model_inputs
from viker.models.loading import LoadedModel, load_model
from viker.models.trainable import TrainableSpec, apply_trainable, merge_if_lora
from viker.utils import atomic_write_text, stable_hash

log = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"
CHECKPOINTS = "checkpoints"
SETTINGS_FILE = "run-settings.json"
# Checkpoints kept in the work folder. Two, so that a kill while the newest one is being
# written still leaves a complete one (the Trainer writes trainer_state.json last).
KEEP_CHECKPOINTS = 2


def latest_checkpoint(folder: str | Path) -> Path | None:
    """Return the complete `checkpoint-N` folder with the highest N under `folder`, or None.

    A checkpoint counts as complete when it contains trainer_state.json, which the
    Hugging Face Trainer (transformers 5.x, `_save_checkpoint`) writes after the
    weights, optimizer, scheduler and RNG states.
    """
    found = []
    for path in Path(folder).glob("checkpoint-*"):
        match = re.fullmatch(r"checkpoint-(\d+)", path.name)
        if match and (path / "trainer_state.json").is_file():
            found.append((int(match.group(1)), path))
    return max(found)[1] if found else None


def load_checkpoint_weights(model: torch.nn.Module, checkpoint: str | Path) -> None:
    """Load the full weights of a Trainer checkpoint into `model`, in place.

    transformers 5.25's Trainer resumes with `model.load_state_dict(saved, strict=False)`,
    but `save_pretrained` writes some families (LLaVA among them) under their original
    checkpoint key names (`language_model.model.layers.0...` where the module is
    `model.language_model.layers.0...`). No key then matches, and the resumed run silently
    continues from the weights it started with. `from_pretrained` applies the key
    conversion, so the weights are loaded through it and copied with `strict=True`.
    The Trainer's own attempt afterwards matches nothing and changes nothing.

    A PEFT model is left alone: the Trainer loads its adapter with `load_adapter`.

    Raises:
        RuntimeError: if the checkpoint's parameter names differ from the model's.
    """
    if hasattr(model, "peft_config"):
        return
    dtype = next(model.parameters()).dtype
    saved = type(model).from_pretrained(checkpoint, dtype=dtype, use_safetensors=True, local_files_only=True)
    model.load_state_dict(saved.state_dict(), strict=True)
    del saved


class WorkFolder:
    """A stable work folder, `<out>.partial`, that becomes `out` when a training run completes.

    Checkpoints go to `<out>.partial/checkpoints`. A run that fails or is killed keeps
    the folder when it holds a complete checkpoint, so that `resume=True` continues from
    the latest one. It removes the folder when there is nothing to resume. The settings
    of the run are stored beside the checkpoints, and a resume with other settings
    raises ValueError instead of mixing two runs.

    Raises (on construction, before anything is loaded or written):
        FileExistsError: if `out` exists, or if `<out>.partial` holds checkpoints and
            `resume` is False.
        ValueError: if `resume` is True and the stored settings differ from `settings`.
    """

    def __init__(self, out_dir: str | Path, *, resume: bool, settings: dict):
        self.out = Path(out_dir)
        self.path = self.out.with_name(self.out.name + PARTIAL_SUFFIX)
        self.settings = json.loads(json.dumps(settings, default=str))
        self.checkpoint: Path | None = None
        if self.out.exists():
            raise FileExistsError(f"{self.out} already exists; choose another output folder or delete it")
        if not self.path.exists():
            if resume:
                log.info("no interrupted run in %s; starting from the first step", self.path)
            return
        found = latest_checkpoint(self.path / CHECKPOINTS)
        if not resume:
            if found is not None:
                raise FileExistsError(
                    f"{self.path} contains the checkpoints of an interrupted run (latest: {found.name}); "
                    "pass --resume (resume=True) to continue it, or delete the folder to start over"
                )
            log.info("removing %s, left by an interrupted run without checkpoints", self.path)
            shutil.rmtree(self.path)
            return
        self._check_settings()
        self.checkpoint = found
        log.info("resuming from %s", found if found else f"the first step (no checkpoint in {self.path})")

    def _check_settings(self) -> None:
        stored_file = self.path / SETTINGS_FILE
        if not stored_file.is_file():
            return
        stored = json.loads(stored_file.read_text())
        changed = sorted(key for key in stored.keys() | self.settings.keys()
                         if stored.get(key) != self.settings.get(key))
        if changed:
            details = "; ".join(f"{key}: {stored.get(key)!r} then, {self.settings.get(key)!r} now" for key in changed)
            raise ValueError(
                f"{self.path} was written by a run with other settings ({details}); resume with the "
                "original settings, or delete the folder to start over"
            )

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    def __enter__(self) -> "WorkFolder":
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path / SETTINGS_FILE, json.dumps(self.settings, indent=1, sort_keys=True))
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            shutil.rmtree(self.checkpoints, ignore_errors=True)
            (self.path / SETTINGS_FILE).unlink(missing_ok=True)
            os.replace(self.path, self.out)
            return False
        found = latest_checkpoint(self.checkpoints)
        if found is None:
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            log.error("the run stopped (%s); %s is kept, so rerun the same command with --resume to continue "
                      "from %s", exc_type.__name__, self.path, found.name)
        return False


@dataclass
class FinetuneConfig:
    """Fine-tuning recipe; the defaults train viker's tiny models on 2 CPU cores in minutes."""

    learning_rate: float = 3e-4  # AdamW, constant after a short warm-up
    batch_size: int = 8
    max_epochs: float = 60.0  # upper bound; training stops earlier at the accuracy target
    max_steps: int = -1  # > 0 trains exactly this many optimizer steps and overrides max_epochs
    target_accuracy: float = 0.97  # teacher-forced token accuracy on the training answers
    check_every: int = 100  # steps between accuracy checks
    warmup_steps: int = 20
    weight_decay: float = 0.0
    seed: int = 0
    dtype: str = "float32"
    trainable: TrainableSpec = field(default_factory=TrainableSpec.full)
    save_steps: int = 0  # > 0 writes a resumable checkpoint every save_steps steps; 0 writes none

    def __post_init__(self):
        for name in ("learning_rate", "batch_size", "max_epochs", "check_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"FinetuneConfig.{name} must be > 0, got {getattr(self, name)}")
        for name in ("warmup_steps", "weight_decay", "save_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"FinetuneConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.target_accuracy <= 1:
            raise ValueError(f"FinetuneConfig.target_accuracy must be in (0, 1], got {self.target_accuracy}")

    def key(self) -> dict:
        """Return the settings that decide the trained weights (save_steps does not, so it is left out)."""
        key = asdict(self)
        del key["save_steps"]
        if self.max_steps <= 0:
            del key["max_steps"]  # keeps the cache keys of models trained before the field existed
        return key


class SampleDataset(Dataset):
    def __init__(self, samples: list[Sample]):
        self.samples = list(samples)

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        return self.samples[i]


def to_turn(sample: Sample) -> Turn:
    return Turn(sample.question, sample.answer, sample.image, sample.id, sample.fact)


class SampleCollator:
    """Collate `Sample`s into a training batch (a picklable callable for data-loader workers)."""

    def __init__(self, collator: Collator):
        self.collator = collator

    def __call__(self, samples: list[Sample]) -> dict:
        batch = self.collator.train_batch([to_turn(s) for s in samples])
        inputs = model_inputs(batch, self.collator.adapter)
        inputs["labels"] = batch["labels"]
        return inputs


@torch.no_grad()
def token_accuracy(model, collator: Collator, samples: list[Sample], batch_size: int = 32) -> float:
    """Return the share of answer tokens that the model's argmax predicts, teacher-forced."""
    was_training = model.training
    model.eval()
    correct = total = 0
    for i in range(0, len(samples), batch_size):
        batch = collator.train_batch([to_turn(s) for s in samples[i:i + batch_size]])
        labels = batch["labels"].to(model.device)
        inputs = {k: v.to(model.device) for k, v in model_inputs(batch, collator.adapter).items()}
        logits = model(**inputs).logits[:, :-1]
        target = labels[:, 1:]
        mask = target != -100
        correct += int((logits.argmax(-1) == target)[mask].sum())
        total += int(mask.sum())
    model.train(was_training)
    return correct / max(total, 1)


class AccuracyTarget(TrainerCallback):
    """Stop training once the teacher-forced token accuracy reaches the target.

    Each check is also appended to `state.log_history` as {"step", "train/token_accuracy"},
    so that it is saved with the checkpoints and survives a resume.
    """

    def __init__(self, collator: Collator, samples: list[Sample], target: float, every: int):
        self.collator, self.samples, self.target, self.every = collator, samples, target, every
        self.history: list[tuple[int, float]] = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every:
            return control
        acc = token_accuracy(model, self.collator, self.samples)
        self.history.append((state.global_step, acc))
        state.log_history.append({"step": state.global_step, "train/token_accuracy": acc})
        log.info("step %d: training token accuracy %.3f", state.global_step, acc)
        if acc >= self.target:
            control.should_training_stop = True
        return control


def finetune(base: str | Path, samples: list[Sample], out_dir: str | Path, config: FinetuneConfig,
             resume: bool = False) -> dict:
    """Fine-tune the model in `base` on `samples`, save it to `out_dir`, and return a summary.

    `out_dir` is written through the work folder `<out_dir>.partial` and renamed when
    complete, so an interrupted run never leaves a folder that looks finished. With
    `config.save_steps > 0` the work folder keeps checkpoints, and `resume=True`
    continues a killed run from the latest one to the same weights (see `WorkFolder`).
    """
    if not samples:
        raise ValueError("no training samples: the training split is empty")
    settings = {"base": str(Path(base).resolve()), "config": config.key(),
                "samples": stable_hash([(s.id, s.question, s.answer) for s in samples])}
    work = WorkFolder(out_dir, resume=resume, settings=settings)
    torch.manual_seed(config.seed)
    loaded = load_model(base, dtype=config.dtype)
    collator = Collator(loaded.processor, loaded.adapter)
    model = apply_trainable(loaded.model, loaded.adapter, config.trainable)
    model.train()
    out_dir = Path(out_dir)
    check = AccuracyTarget(collator, samples, config.target_accuracy, config.check_every)
    with work:
        args = TrainingArguments(
            output_dir=str(work.checkpoints),
            per_device_train_batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            num_train_epochs=config.max_epochs,
            max_steps=config.max_steps,
            warmup_steps=config.warmup_steps,
            lr_scheduler_type="constant_with_warmup",
            weight_decay=config.weight_decay,
            logging_steps=25,
            save_strategy="steps" if config.save_steps else "no",
            save_steps=config.save_steps or 500,
            save_total_limit=KEEP_CHECKPOINTS,
            report_to=[],
            seed=config.seed,
            data_seed=config.seed,
            remove_unused_columns=False,
            dataloader_num_workers=0,
            use_cpu=not torch.cuda.is_available(),
            bf16=config.dtype == "bfloat16",
            disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=args, train_dataset=SampleDataset(samples),
                          data_collator=SampleCollator(collator), callbacks=[check])
        start = time.perf_counter()
        if work.checkpoint:
            load_checkpoint_weights(model, work.checkpoint)
        trainer.train(resume_from_checkpoint=str(work.checkpoint) if work.checkpoint else None)
        seconds = time.perf_counter() - start
        accuracy = token_accuracy(model, collator, samples)
        final = merge_if_lora(model)
        final.save_pretrained(work.path, safe_serialization=True)
        loaded.processor.save_pretrained(work.path)
    history = [(h["step"], h["train/token_accuracy"]) for h in trainer.state.log_history
               if "train/token_accuracy" in h]
    summary = {"steps": trainer.state.global_step, "seconds": seconds, "token_accuracy": accuracy,
               "n_samples": len(samples), "history": history, "resumed_from": work.checkpoint and work.checkpoint.name}
    log.info("fine-tuned %d samples in %d steps (%.0f s): token accuracy %.3f",
             len(samples), summary["steps"], seconds, accuracy)
    if accuracy < config.target_accuracy and config.max_steps <= 0:
        log.warning("token accuracy %.3f is below the target %.3f after %s epochs; raise max_epochs "
                    "or the learning rate", accuracy, config.target_accuracy, config.max_epochs)
    return summary


def loaded_from(path: str | Path, dtype: str = "float32") -> LoadedModel:
    return load_model(path, dtype=dtype)
