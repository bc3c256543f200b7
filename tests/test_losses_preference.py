"""NPO, DPO and SimNPO: values, signs and scales on hand-computed log-probabilities."""

import math

import pytest
import torch

from viker.methods.losses import dpo_loss, mean_sequence_logprob, npo_loss, sequence_logprob, simnpo_loss

LN2 = math.log(2.0)


def test_npo_at_reference_is_scaled_log2():
    """With log pi_theta = log pi_ref the log-ratio is 0, so L = -(2/beta) log sigmoid(0) = (2/beta) ln 2.

    beta = 0.5 gives 4 ln 2 = 2.7726, and beta = 0.1 gives 20 ln 2 = 13.8629.
    """
    logps = torch.tensor([-10.0, -3.0])

    assert npo_loss(logps, logps, beta=0.5).tolist() == pytest.approx([4 * LN2, 4 * LN2], abs=1e-5)
    assert npo_loss(logps, logps, beta=0.1).tolist() == pytest.approx([20 * LN2, 20 * LN2], abs=1e-4)


def test_npo_falls_as_answer_is_forgotten():
    """beta = 0.5, reference -10.

    policy -12 (ratio -2): 4 * softplus(-1) = 4 * 0.31326 = 1.25305, below 4 ln 2.
    policy +10 (ratio +20): 4 * softplus(10) = 40.00018, close to 2 * ratio = 40.
    """
    reference = torch.tensor([-10.0, -10.0])
    policy = torch.tensor([-12.0, 10.0])

    loss = npo_loss(policy, reference, beta=0.5)

    assert loss[0].item() == pytest.approx(1.25305, abs=1e-4)
    assert loss[0].item() < 4 * LN2
    assert loss[1].item() == pytest.approx(40.00018, abs=1e-4)


def test_npo_gradient_is_weighted_ga():
    """dL/d log pi_theta = 2 sigmoid(beta * ratio).

    At ratio 0 the weight is 1 (plain gradient ascent); at ratio -2 with
    beta = 0.5 it is 2 sigmoid(-1) = 0.53788.
    """
    policy = torch.tensor([-10.0, -12.0], requires_grad=True)
    reference = torch.tensor([-10.0, -10.0])

    npo_loss(policy, reference, beta=0.5).sum().backward()

    assert policy.grad.tolist() == pytest.approx([1.0, 0.53788], abs=1e-4)


def test_dpo_equal_margins_give_log2():
    """Both log-ratios are +1, so the margin is 0 and L = -log sigmoid(0) = ln 2 for any beta."""
    loss = dpo_loss(
        policy_chosen_logps=torch.tensor([-5.0]),
        policy_rejected_logps=torch.tensor([-3.0]),
        reference_chosen_logps=torch.tensor([-6.0]),
        reference_rejected_logps=torch.tensor([-4.0]),
        beta=0.7,
    )
    assert loss.tolist() == pytest.approx([LN2], abs=1e-6)


def test_dpo_prefers_refusal_over_answer():
    """beta = 0.2. Row 0: refusal ratio +2, answer ratio -3, margin 5: softplus(-1) = 0.31326.

    Row 1 swaps the two ratios, margin -5: softplus(1) = 1.31326.
    """
    loss = dpo_loss(
        policy_chosen_logps=torch.tensor([-8.0, -13.0]),
        policy_rejected_logps=torch.tensor([-13.0, -8.0]),
        reference_chosen_logps=torch.tensor([-10.0, -10.0]),
        reference_rejected_logps=torch.tensor([-10.0, -10.0]),
        beta=0.2,
    )
    assert loss.tolist() == pytest.approx([0.31326, 1.31326], abs=1e-4)


def test_simnpo_values_and_margin():
    """L = -(2/beta) log sigmoid(-beta * mean_logp - gamma).

    mean -2, beta 1, gamma 0: 2 softplus(-2) = 0.25386.
    mean -2, beta 1, gamma 1: 2 softplus(-1) = 0.62652 (a margin raises the loss).
    mean -1, beta 2, gamma 0: softplus(-2) = 0.12693.
    """
    assert simnpo_loss(torch.tensor([-2.0]), beta=1.0).item() == pytest.approx(0.25386, abs=1e-4)
    assert simnpo_loss(torch.tensor([-2.0]), beta=1.0, gamma=1.0).item() == pytest.approx(0.62652, abs=1e-4)
    assert simnpo_loss(torch.tensor([-1.0]), beta=2.0).item() == pytest.approx(0.12693, abs=1e-4)


def test_simnpo_falls_as_answer_is_forgotten():
    """A lower mean log-probability gives a lower loss."""
    loss = simnpo_loss(torch.tensor([-0.5, -2.0, -8.0]), beta=1.0)

    assert loss[0].item() > loss[1].item()
    assert loss[1].item() > loss[2].item()


def test_simnpo_matches_official_code_margin():
    """The official form -(2/beta) log sigmoid(beta (NLL/|y| - delta)) with beta 2, delta 0.5
    and mean log p -1.5 gives -log sigmoid(2) = 0.12693; here that is gamma = beta * delta = 1.
    """
    official = -(2.0 / 2.0) * torch.nn.functional.logsigmoid(torch.tensor(2.0 * (1.5 - 0.5)))

    ours = simnpo_loss(torch.tensor([-1.5]), beta=2.0, gamma=1.0)

    assert ours.item() == pytest.approx(official.item(), abs=1e-6)
    assert ours.item() == pytest.approx(0.12693, abs=1e-4)


def test_simnpo_is_length_normalised_npo_is_not():
    """Uniform logits over V = 4 give log p = -ln 4 per token.

    Row 0 has 2 answer tokens and row 1 has 4: the means are equal (-1.3863),
    so SimNPO is equal, but the sums are -2.7726 and -5.5452, so NPO (with a
    reference at 0) differs.
    """
    logits = torch.zeros(2, 4, 4)
    labels = torch.tensor([[-100, -100, 1, 2], [0, 1, 2, 3]])

    simnpo = simnpo_loss(mean_sequence_logprob(logits, labels), beta=1.0)
    npo = npo_loss(sequence_logprob(logits, labels), torch.zeros(2), beta=1.0)

    assert simnpo[0].item() == pytest.approx(simnpo[1].item(), abs=1e-6)
    assert npo[0].item() > npo[1].item() + 0.1


@pytest.mark.parametrize("beta", [0.0, -1.0, float("nan"), float("inf"), True])
def test_losses_reject_invalid_beta(beta):
    logps = torch.tensor([-1.0])

    with pytest.raises(ValueError, match="beta must be a finite number > 0"):
        npo_loss(logps, logps, beta=beta)
    with pytest.raises(ValueError, match="beta must be a finite number > 0"):
        dpo_loss(logps, logps, logps, logps, beta=beta)
    with pytest.raises(ValueError, match="beta must be a finite number > 0"):
        simnpo_loss(logps, beta=beta)


def test_simnpo_rejects_negative_gamma():
    with pytest.raises(ValueError, match="gamma must be a finite number >= 0, got -0.5"):
        simnpo_loss(torch.tensor([-1.0]), beta=1.0, gamma=-0.5)


def test_npo_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        npo_loss(torch.zeros(2), torch.zeros(3), beta=1.0)
