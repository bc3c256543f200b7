"""Vanilla and oracle fine-tuning with the Hugging Face `Trainer`.

The vanilla model learns every training profile (public figures included); the
oracle learns the same data without the forget split, so it is the model that
unlearning tries to reach and the reference for forget quality.
"""

from __future__ import annotations

import logging
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
from viker.utils import atomic_dir

log = logging.getLogger(__name__)


@dataclass
class FinetuneConfig:
    """Fine-tuning recipe; the defaults train viker's tiny models on 2 CPU cores in minutes."""

    learning_rate: float = 3e-4  # AdamW, constant after a short warm-up
    batch_size: int = 8
    max_epochs: float = 60.0  # upper bound; training stops earlier at the accuracy target
    target_accuracy: float = 0.97  # teacher-forced token accuracy on the training answers
    check_every: int = 100  # steps between accuracy checks
    warmup_steps: int = 20
    weight_decay: float = 0.0
    seed: int = 0
    dtype: str = "float32"
    trainable: TrainableSpec = field(default_factory=TrainableSpec.full)

    def __post_init__(self):
        for name in ("learning_rate", "batch_size", "max_epochs", "check_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"FinetuneConfig.{name} must be > 0, got {getattr(self, name)}")
        if not 0 < self.target_accuracy <= 1:
            raise ValueError(f"FinetuneConfig.target_accuracy must be in (0, 1], got {self.target_accuracy}")

    def key(self) -> dict:
        return asdict(self)


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
    """Stop training once the teacher-forced token accuracy reaches the target."""

    def __init__(self, collator: Collator, samples: list[Sample], target: float, every: int):
        self.collator, self.samples, self.target, self.every = collator, samples, target, every
        self.history: list[tuple[int, float]] = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every:
            return control
        acc = token_accuracy(model, self.collator, self.samples)
        self.history.append((state.global_step, acc))
        log.info("step %d: training token accuracy %.3f", state.global_step, acc)
        if acc >= self.target:
            control.should_training_stop = True
        return control


def finetune(base: str | Path, samples: list[Sample], out_dir: str | Path, config: FinetuneConfig,
             work_dir: str | Path | None = None) -> dict:
    """Fine-tune the model in `base` on `samples`, save it to `out_dir`, and return a summary.

    `out_dir` is written through a temporary folder and renamed when complete, so an
    interrupted run never leaves a folder that looks finished.
    """
    if not samples:
        raise ValueError("no training samples: the training split is empty")
    torch.manual_seed(config.seed)
    loaded = load_model(base, dtype=config.dtype)
    collator = Collator(loaded.processor, loaded.adapter)
    model = apply_trainable(loaded.model, loaded.adapter, config.trainable)
    model.train()
    out_dir = Path(out_dir)
    check = AccuracyTarget(collator, samples, config.target_accuracy, config.check_every)
    with atomic_dir(out_dir) as tmp:
        args = TrainingArguments(
            output_dir=str(Path(work_dir or tmp) / "trainer"),
            per_device_train_batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            num_train_epochs=config.max_epochs,
            warmup_steps=config.warmup_steps,
            lr_scheduler_type="constant_with_warmup",
            weight_decay=config.weight_decay,
            logging_steps=25,
            save_strategy="no",
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
        trainer.train()
        seconds = time.perf_counter() - start
        accuracy = token_accuracy(model, collator, samples)
        final = merge_if_lora(model)
        final.save_pretrained(tmp, safe_serialization=True)
        loaded.processor.save_pretrained(tmp)
    summary = {"steps": trainer.state.global_step, "seconds": seconds, "token_accuracy": accuracy,
               "n_samples": len(samples), "history": check.history}
    log.info("fine-tuned %d samples in %d steps (%.0f s): token accuracy %.3f",
             len(samples), summary["steps"], seconds, accuracy)
    if accuracy < config.target_accuracy:
        log.warning("token accuracy %.3f is below the target %.3f after %s epochs; raise max_epochs "
                    "or the learning rate", accuracy, config.target_accuracy, config.max_epochs)
    return summary


def loaded_from(path: str | Path, dtype: str = "float32") -> LoadedModel:
    return load_model(path, dtype=dtype)
