"""Closed-form analysis of the ViKeR objective at a single answer position.

At one position with free logits z, p = softmax(z), answer token y and ideal
distribution q, ViKeR minimises

    f(z) = log p_y + lam * KL(q || p)

whose gradient with respect to the logits is

    grad f = (e_y - p) + lam * (p - q),

the gradient-ascent term plus lam times the regulariser's pull towards q.
Setting it to zero gives p_y = (lam * q_y - 1) / (lam - 1), a valid probability
only when q_y >= 1/lam. Below that threshold no stationary point exists, and
p_y falls to 0: the token is forgotten. These helpers state the results so that
tests and docs can check training runs against them.
"""

from __future__ import annotations

import torch

from viker.methods.losses._validation import check_non_negative
from viker.methods.losses.viker import check_viker_lambda


def fixed_point_probability(q_y: float | torch.Tensor, lam: float) -> float | torch.Tensor:
    """Compute the probability of the answer token where ViKeR's gradient vanishes.

    p_y* = max(0, (lam * q_y - 1) / (lam - 1))

    A token with q_y > 1/lam is protected at p_y* > 0, and one with
    q_y <= 1/lam is driven to 0. For example q_y = 0.9 and lam = 10 give
    p_y* = 8/9 = 0.8889.

    Args:
        q_y: probability of the answer token under q, in [0, 1]; a float or a tensor.
        lam: regulariser weight, > 1.

    Returns:
        p_y*, of the same type (and shape) as q_y.

    Raises:
        ValueError: if lam <= 1 or q_y is outside [0, 1].
    """
    check_viker_lambda(lam)
    if isinstance(q_y, torch.Tensor):
        if bool(((q_y < 0) | (q_y > 1)).any()):
            raise ValueError(f"q_y must be in [0, 1], got values from {q_y.min().item()} to {q_y.max().item()}.")
        return ((lam * q_y - 1) / (lam - 1)).clamp_min(0.0)
    if not 0 <= q_y <= 1:
        raise ValueError(f"q_y must be a probability in [0, 1], got {q_y!r}.")
    return max(0.0, (lam * q_y - 1) / (lam - 1))


def logit_gradient(p: torch.Tensor, q: torch.Tensor, y: int, lam: float) -> torch.Tensor:
    """Compute the gradient of log p_y + lam * KL(q || p) with respect to the logits.

    grad = (e_y - p) + lam * (p - q)

    Args:
        p: (V,) model probabilities at the position.
        q: (V,) ideal distribution at the position.
        y: index of the answer token, in [0, V).
        lam: regulariser weight, >= 0 (0 gives the gradient-ascent term alone).

    Returns:
        (V,) gradient; gradient descent moves the logits along its negative.

    Raises:
        ValueError: on shapes other than (V,), y outside [0, V), or lam < 0.
    """
    _check_position(p, q, y)
    check_non_negative("lam", lam)
    one_hot = torch.zeros_like(p)
    one_hot[y] = 1.0
    return (one_hot - p) + lam * (p - q)


def gradient_weight_relative_to_ga(p: torch.Tensor, q: torch.Tensor, y: int, lam: float) -> float:
    """Compute how much ViKeR scales the logit gradient at a position, relative to gradient ascent.

    weight = ||(e_y - p) + lam * (p - q)|| / ||e_y - p||

    Where p is the same at every answer position, gradient ascent pushes every
    position equally hard. ViKeR's weight is larger where q is flat (key
    tokens) than where q is peaked on y (template tokens).

    Args:
        p: (V,) model probabilities.
        q: (V,) ideal distribution.
        y: index of the answer token.
        lam: regulariser weight, >= 0.

    Returns:
        The ratio of the two Euclidean norms, as a float.

    Raises:
        ValueError: if p puts all its mass on y, because the gradient-ascent
            term is then zero and the ratio undefined. It also raises the errors
            of `logit_gradient`.
    """
    viker_norm = torch.linalg.vector_norm(logit_gradient(p, q, y, lam))
    ga_norm = torch.linalg.vector_norm(logit_gradient(p, q, y, 0.0))
    if ga_norm.item() == 0:
        raise ValueError(f"p puts all its mass on y = {y}, so the gradient-ascent term is 0 and the ratio is undefined.")
    return (viker_norm / ga_norm).item()


def _check_position(p: torch.Tensor, q: torch.Tensor, y: int) -> None:
    if p.dim() != 1 or p.shape != q.shape:
        raise ValueError(f"p and q must both have shape (V,), got {tuple(p.shape)} and {tuple(q.shape)}.")
    if isinstance(y, bool) or not isinstance(y, int) or not 0 <= y < p.shape[0]:
        raise ValueError(f"y must be a token index in [0, {p.shape[0]}), got {y!r}.")
