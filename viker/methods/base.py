"""The unlearning trainer: a `transformers.Trainer` whose `compute_loss` a method overrides.

A method class orchestrates only: forward passes, a pure loss from
`viker.methods.losses`, the combination, and the logged parts. Everything else
(optimiser, LoRA, mixed precision, DeepSpeed/FSDP through `accelerate`,
checkpoints, logging) is the `Trainer`'s.

Logged keys (averaged over the steps since the last log line):
    forget/loss   the forget term (GA: mean answer log-probability, which falls)
    retain/loss   the retain NLL, when the method has a retain term
    reg/kl        the regulariser (KL to the reference or ViKeR's KL to q)
    loss          the total that is minimised
Methods may add their own diagnostics, documented in their docstring.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch.utils.data import Dataset
from transformers import Trainer

from viker.data.records import Sample
from viker.models.collate import Collator, Turn, model_inputs
from viker.models.trainable import TrainableSpec

log = logging.getLogger(__name__)


@dataclass
class UnlearnConfig:
    """Optimisation settings shared by every method.

    The defaults are the ViKeR paper's published setup for LLaVA-1.5-7B: LoRA
    r 8 / alpha 16 on the language model, AdamW lr 5e-6, batch 2, 1 epoch.
    """

    learning_rate: float = 5e-6
    batch_size: int = 2  # forget samples per step; the retain batch has the same size
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    gradient_accumulation_steps: int = 1
    warmup_steps: int = 0
    weight_decay: float = 0.0
    seed: int = 0
    dtype: str = "float32"  # "bfloat16" on GPUs (and CPUs that support it)
    trainable: TrainableSpec = field(default_factory=TrainableSpec)
    loss_limit: float = 1e4  # |loss| above this, or a NaN, stops the run with the last good weights
    logging_steps: int = 1
    save_steps: int = 0  # > 0 writes resumable checkpoints every save_steps steps

    def __post_init__(self):
        for name in ("learning_rate", "batch_size", "epochs", "gradient_accumulation_steps", "loss_limit",
                     "logging_steps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"UnlearnConfig.{name} must be > 0, got {getattr(self, name)}")
        for name in ("warmup_steps", "save_steps", "weight_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"UnlearnConfig.{name} must be >= 0, got {getattr(self, name)}")


class DivergedError(RuntimeError):
    """The loss became NaN or exceeded the limit; the model keeps the weights of the last good step."""


class UnlearnDataset(Dataset):
    """Pairs each forget sample with a retain sample, drawn deterministically from the seed."""

    def __init__(self, forget: list[Sample], retain: list[Sample], seed: int = 0):
        if not forget:
            raise ValueError("the forget split is empty: choose a split that names at least one person")
        self.forget, self.retain = list(forget), list(retain)
        g = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(max(len(self.retain), 1), generator=g).tolist()

    def __len__(self):
        return len(self.forget)

    def __getitem__(self, i):
        retain = self.retain[self.order[i % len(self.order)]] if self.retain else None
        return {"forget": self.forget[i], "retain": retain}


def to_turn(sample: Sample, answer: str | None = None) -> Turn:
    return Turn(sample.question, answer or sample.answer, sample.image, sample.id, None if answer else sample.fact)


def uses_retain(method_config) -> bool:
    """Return whether a method's config requests a retain term: every retain weight is named `retain_weight`."""
    return getattr(method_config, "retain_weight", 0) > 0


class UnlearnCollator:
    """Build the forget batch, and the retain batch and method extras that the method requests."""

    def __init__(self, collator: Collator, method_name: str, method_config, extras=None):
        self.collator, self.method_name = collator, method_name
        self.uses_retain = uses_retain(method_config)
        self.extras = extras  # callable(forget samples, forget batch) -> dict of extra tensors

    def __call__(self, items: list[dict]) -> dict:
        forget = [it["forget"] for it in items]
        batch = {"forget": self.collator.train_batch([to_turn(s) for s in forget])}
        if self.uses_retain:
            retain = [it["retain"] for it in items]
            if any(r is None for r in retain):
                raise ValueError(f"method {self.method_name!r} needs retain data, but the retain split is empty")
            batch["retain"] = self.collator.train_batch([to_turn(s) for s in retain])
        if self.extras is not None:
            batch.update(self.extras(forget, batch["forget"]))
        return batch


class UnlearnTrainer(Trainer):
    """Base class: subclasses set `name` and `Config` and implement `unlearning_loss`.

    A method whose config has a `retain_weight` > 0 receives a retain batch, `inputs["retain"]`.
    `reference_logps` names the answer sets ("forget", "idk") whose sequence
    log-probabilities under the reference model are computed before training and
    passed as `inputs["ref_forget"]` / `inputs["ref_idk"]`.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type]
    # Parts every step of a method logs, so they can be averaged across ranks.
    COMMON_PARTS: ClassVar[tuple[str, ...]] = ("loss", "forget/loss", "retain/loss", "reg/kl")
    reference_logps: ClassVar[tuple[str, ...]] = ()
    uses_idk: ClassVar[bool] = False  # receives inputs["idk"]: forget questions with refusal answers

    def __init__(self, *args, method_config=None, adapter=None, reference=None, unlearn_config=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.method_config = method_config if method_config is not None else self.Config()
        self.adapter = adapter
        self.reference = reference  # a frozen model, or None (LoRA: the base model with adapters off)
        self.unlearn_config = unlearn_config or UnlearnConfig()
        self._parts: dict[str, list[float]] = defaultdict(list)

    @classmethod
    def reference_sets(cls, config) -> tuple[str, ...]:
        """Return the answer sets whose reference log-probabilities this method needs."""
        return cls.reference_logps

    # -- helpers for subclasses ------------------------------------------------------------
    def forward(self, model, batch: dict) -> torch.Tensor:
        """Return the logits (B, T, V) of a collated batch."""
        return model(**model_inputs(batch, self.adapter)).logits

    @torch.no_grad()
    def reference_logits(self, model, batch: dict) -> torch.Tensor:
        """Logits of the frozen reference: a separate model, or this one with LoRA adapters disabled."""
        if self.reference is not None:
            return self.reference(**model_inputs(batch, self.adapter)).logits
        if hasattr(model, "disable_adapter"):
            with model.disable_adapter():
                return model(**model_inputs(batch, self.adapter)).logits
        raise ValueError(f"method {self.name!r} needs a reference model; pass reference= or train with LoRA")

    def retain_nll(self, model, batch: dict) -> torch.Tensor:
        from viker.methods.losses import nll_per_token, shift_for_next_token

        logits, labels = shift_for_next_token(self.forward(model, batch["retain"]), batch["retain"]["labels"])
        nll = nll_per_token(logits, labels)
        return nll.sum() / (labels != -100).sum().clamp_min(1)

    # -- Trainer hooks ---------------------------------------------------------------------
    def unlearning_loss(self, model, inputs: dict) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, parts = self.unlearning_loss(model, inputs)
        value = float(loss.detach())
        if not math.isfinite(value) or abs(value) > self.unlearn_config.loss_limit:
            raise DivergedError(
                f"{self.name}: the loss is {value} at step {self.state.global_step}, beyond the limit "
                f"{self.unlearn_config.loss_limit}; the model keeps the weights of the last good step. "
                "Lower the learning rate or raise the method's regularisation."
            )
        parts["loss"] = value
        for key, v in parts.items():
            self._parts[key].append(float(v))
        return (loss, None) if return_outputs else loss

    def log(self, logs: dict, *args, **kwargs):
        # Every rank calls log() at the same steps, so averaging across ranks is a safe collective.
        # A part that some rank did not log in this window (a diagnostic with no fact tokens) is
        # averaged over this rank alone, because a collective over a missing value would hang.
        multi = self.accelerator.num_processes > 1
        for key in self.COMMON_PARTS:
            values = self._parts.get(key)
            if values:
                mean = sum(values) / len(values)
                if multi:
                    mean = self.accelerator.reduce(torch.tensor(mean, device=self.args.device), reduction="mean").item()
                logs[key] = mean
        for key, values in self._parts.items():
            if values and key not in self.COMMON_PARTS:
                logs[key] = sum(values) / len(values)
        self._parts.clear()
        super().log(logs, *args, **kwargs)
