"""Input checks shared by the loss modules.

Each check raises `ValueError` with the parameter name, the value received and
the valid range, so that a wrong config fails before any training step.
"""

from __future__ import annotations

import math

import torch

IGNORE_INDEX = -100


def check_positive(name: str, value: float) -> None:
    """Raise ValueError unless `value` is a finite number > 0."""
    if not _is_finite_number(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}; set {name} to a positive value.")


def check_non_negative(name: str, value: float) -> None:
    """Raise ValueError unless `value` is a finite number >= 0."""
    if not _is_finite_number(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}; set {name} to zero or a positive value.")


def check_logits_and_labels(logits: torch.Tensor, labels: torch.Tensor) -> None:
    """Check that logits are (B, T, V), labels are (B, T) and every label is in [0, V) or -100."""
    if logits.dim() != 3:
        raise ValueError(f"logits must have shape (B, T, V), got shape {tuple(logits.shape)}.")
    if labels.shape != logits.shape[:2]:
        raise ValueError(
            f"labels must have shape (B, T) = {tuple(logits.shape[:2])} to match logits, got {tuple(labels.shape)}; "
            "if labels are not yet shifted, call shift_for_next_token(logits, labels) first."
        )
    if labels.dtype.is_floating_point:
        raise ValueError(f"labels must be an integer tensor of token ids, got dtype {labels.dtype}.")

    vocab_size = logits.shape[-1]
    valid = (labels == IGNORE_INDEX) | ((labels >= 0) & (labels < vocab_size))
    if not bool(valid.all()):
        bad = labels[~valid]
        raise ValueError(
            f"labels contain {bad.numel()} value(s) outside [0, {vocab_size}) that are not {IGNORE_INDEX}, "
            f"e.g. {bad[0].item()}; check that the tokenizer and the model share a vocabulary."
        )


def check_same_shape(**tensors: torch.Tensor) -> None:
    """Raise ValueError unless every keyword tensor has the same shape."""
    shapes = {name: tuple(tensor.shape) for name, tensor in tensors.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(f"inputs must have the same shape, got {listed}.")


def _is_finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
