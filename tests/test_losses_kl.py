"""Full-vocabulary KL(p_ref || p_theta) for the KL baseline."""

import math

import pytest
import torch

from viker.methods.losses import kl_divergence_per_token


def test_kl_matches_hand_value():
    """p_ref = softmax([0, 0]) = [1/2, 1/2], p_theta = softmax([ln 3, 0]) = [3/4, 1/4].

    KL = 1/2 ln((1/2)/(3/4)) + 1/2 ln((1/2)/(1/4)) = 1/2 (-0.405465) + 1/2 (0.693147) = 0.143841.
    Position 1 is masked, so it is 0 although the distributions differ.
    """
    policy = torch.tensor([[[math.log(3.0), 0.0], [5.0, -5.0]]])
    reference = torch.tensor([[[0.0, 0.0], [-5.0, 5.0]]])
    mask = torch.tensor([[True, False]])

    kl = kl_divergence_per_token(policy, reference, mask)

    assert kl.shape == (1, 2)
    assert kl[0, 0].item() == pytest.approx(0.143841, abs=1e-5)
    assert kl[0, 1].item() == 0.0


def test_kl_zero_for_same_logits_and_gradient():
    """KL(p || p) = 0, and the logit gradient of KL(p_ref || p_theta) is p_theta - p_ref."""
    torch.manual_seed(0)
    reference = torch.randn(2, 3, 7)
    policy = torch.randn(2, 3, 7, requires_grad=True)
    mask = torch.ones(2, 3, dtype=torch.bool)

    same = kl_divergence_per_token(reference, reference, mask)
    assert torch.allclose(same, torch.zeros(2, 3), atol=1e-6)

    kl_divergence_per_token(policy, reference, mask).sum().backward()
    expected = torch.softmax(policy.detach(), -1) - torch.softmax(reference, -1)
    assert torch.allclose(policy.grad, expected, atol=1e-6)


def test_kl_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        kl_divergence_per_token(torch.zeros(1, 2, 3), torch.zeros(1, 2, 4), torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask"):
        kl_divergence_per_token(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), torch.ones(1, 2))
