"""Token log-probabilities, NLL and gradient ascent on hand-computed logits."""

import math

import pytest
import torch

from viker.methods.losses import (
    gradient_ascent_loss,
    mean_sequence_logprob,
    nll_per_token,
    sequence_logprob,
    shift_for_next_token,
    token_logprobs,
)

LN2 = math.log(2.0)
LN4 = math.log(4.0)


def _prompt_answer_padding():
    """1 x 3 x 3 logits: position 0 is prompt, 1 is the answer, 2 is padding."""
    logits = torch.tensor(
        [
            [
                [0.0, 0.0, 0.0],  # prompt, label -100
                [0.0, LN2, 0.0],  # answer: softmax = [1/4, 2/4, 1/4], label 1
                [5.0, -3.0, 100.0],  # padding, label -100
            ]
        ]
    )
    labels = torch.tensor([[-100, 1, -100]])
    return logits, labels


def test_token_logprobs_masks_prompt_and_padding():
    """Only the answer position is scored.

    softmax([0, ln 2, 0]) = [1, 2, 1] / 4, so log p(label 1) = log(1/2) = -0.6931.
    Prompt and padding positions get 0 and mask False.
    """
    logits, labels = _prompt_answer_padding()
    logp, mask = token_logprobs(logits, labels)

    assert mask.tolist() == [[False, True, False]]
    assert logp.shape == (1, 3)
    assert logp[0, 0].item() == 0.0
    assert logp[0, 1].item() == pytest.approx(-LN2, abs=1e-6)
    assert logp[0, 2].item() == 0.0


def test_nll_and_ga_ignore_masked_positions():
    """NLL per token is [0, ln 2, 0]; the sequence log-prob, its mean and GA are all -ln 2 = -0.6931.

    Changing the logits at the masked positions leaves every value and gives
    those positions a zero gradient.
    """
    logits, labels = _prompt_answer_padding()
    logits.requires_grad_(True)

    nll = nll_per_token(logits, labels)
    assert nll[0].tolist() == pytest.approx([0.0, LN2, 0.0], abs=1e-6)
    assert sequence_logprob(logits, labels).tolist() == pytest.approx([-LN2], abs=1e-6)
    assert mean_sequence_logprob(logits, labels).tolist() == pytest.approx([-LN2], abs=1e-6)

    loss = gradient_ascent_loss(logits, labels)
    assert loss.tolist() == pytest.approx([-LN2], abs=1e-6)

    loss.sum().backward()
    assert torch.equal(logits.grad[0, 0], torch.zeros(3))
    assert torch.equal(logits.grad[0, 2], torch.zeros(3))
    # d log p_1 / d z = e_1 - p = [0, 1, 0] - [1/4, 1/2, 1/4]
    assert logits.grad[0, 1].tolist() == pytest.approx([-0.25, 0.5, -0.25], abs=1e-6)

    changed = logits.detach().clone()
    changed[0, 0] = torch.tensor([9.0, -9.0, 1.0])
    changed[0, 2] = torch.tensor([0.0, 0.0, 0.0])
    assert gradient_ascent_loss(changed, labels).tolist() == pytest.approx([-LN2], abs=1e-6)


def test_sequence_sum_and_mean_differ_by_length():
    """With uniform logits over V = 4 every token has log p = -ln 4 = -1.3863.

    Row 0 has 2 answer tokens: sum -2 ln 4 = -2.7726, mean -1.3863.
    Row 1 has 4 answer tokens: sum -4 ln 4 = -5.5452, mean -1.3863.
    """
    logits = torch.zeros(2, 5, 4)
    labels = torch.tensor([[-100, -100, 3, 0, -100], [-100, 1, 2, 3, 0]])

    assert sequence_logprob(logits, labels).tolist() == pytest.approx([-2 * LN4, -4 * LN4], abs=1e-5)
    assert mean_sequence_logprob(logits, labels).tolist() == pytest.approx([-LN4, -LN4], abs=1e-5)


def test_token_logprobs_bfloat16_returns_float32():
    """bf16 logits [0, ln 2, 0] are scored in float32; ln 2 rounds to 0.69140625 in bf16.

    With z = 0.69140625, p(1) = e^z / (2 + e^z), so log p = z - log(2 + e^z) = -0.69402.
    """
    logits = torch.tensor([[[0.0, LN2, 0.0]]], dtype=torch.bfloat16)
    logp, _ = token_logprobs(logits, torch.tensor([[1]]))

    z = 0.69140625
    expected = z - math.log(2.0 + math.exp(z))
    assert logp.dtype == torch.float32
    assert logp.item() == pytest.approx(expected, abs=1e-6)


def test_shift_for_next_token_pairs_positions():
    """logits[:, t] of a causal LM predicts labels[:, t + 1]."""
    logits = torch.arange(4 * 2, dtype=torch.float32).reshape(1, 4, 2)
    labels = torch.tensor([[10, 11, 12, 13]])

    shifted_logits, shifted_labels = shift_for_next_token(logits, labels)

    assert shifted_logits.shape == (1, 3, 2)
    assert shifted_labels.tolist() == [[11, 12, 13]]
    assert torch.equal(shifted_logits[0, 0], logits[0, 0])
    assert torch.equal(shifted_logits[0, 2], logits[0, 2])


def test_mean_rejects_row_without_answer():
    """A row with only -100 labels has no mean; the error names row 1."""
    logits = torch.zeros(2, 3, 4)
    labels = torch.tensor([[-100, 1, 2], [-100, -100, -100]])

    with pytest.raises(ValueError, match=r"rows \[1\]"):
        mean_sequence_logprob(logits, labels)
    assert sequence_logprob(logits, labels)[1].item() == 0.0


def test_token_logprobs_rejects_bad_inputs():
    logits = torch.zeros(1, 3, 4)

    with pytest.raises(ValueError, match="outside \\[0, 4\\)"):
        token_logprobs(logits, torch.tensor([[0, 4, -100]]))
    with pytest.raises(ValueError, match="outside"):
        token_logprobs(logits, torch.tensor([[0, -1, -100]]))
    with pytest.raises(ValueError, match="shift_for_next_token"):
        token_logprobs(logits, torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match="integer"):
        token_logprobs(logits, torch.tensor([[0.0, 1.0, 2.0]]))
    with pytest.raises(ValueError, match="T = 1"):
        shift_for_next_token(torch.zeros(1, 1, 4), torch.tensor([[0]]))
