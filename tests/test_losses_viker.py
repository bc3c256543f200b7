"""ViKeR: compact ideal distributions, the compact KL, and the fixed-point analysis."""

import math

import pytest
import torch

from viker.methods.losses import (
    average_reference_probs,
    check_viker_lambda,
    compact_distribution,
    entropy_of_compact,
    fixed_point_probability,
    gradient_weight_relative_to_ga,
    kl_divergence_per_token,
    logit_gradient,
    viker_kl,
)


def _full_kl(a, b):
    """KL(a || b) over the last dimension, directly from the definition."""
    return (a * (a.log() - b.log())).sum(-1)


# average_reference_probs


def test_average_is_of_probabilities_not_logits():
    """Reference 1 peaks on token 0: p1 = [0.6, 0.3, 0.1]; reference 2 on token 2: p2 = [1/15, 11/30, 17/30].

    p1 + p2 = [2/3, 2/3, 2/3], so the probability average is flat [1/3, 1/3, 1/3].
    A logit average would give softmax(mean log p) proportional to sqrt(p1 * p2)
    = sqrt([0.04, 0.11, 0.056667]) = [0.2, 0.33166, 0.23805], normalised
    [0.2598, 0.4309, 0.3093], which is not flat.
    """
    p1 = torch.tensor([0.6, 0.3, 0.1])
    p2 = torch.tensor([1 / 15, 11 / 30, 17 / 30])
    logits = torch.stack([p1.log(), p2.log()]).unsqueeze(1)  # (k=2, T=1, V=3)

    average = average_reference_probs(logits)

    assert average.shape == (1, 3)
    assert average[0].tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3], abs=1e-6)
    logit_average = torch.softmax(logits.mean(dim=0), dim=-1)
    assert logit_average[0].tolist() == pytest.approx([0.2598, 0.4309, 0.3093], abs=1e-4)


def test_average_rejects_wrong_rank():
    with pytest.raises(ValueError, match=r"\(k, T, V\)"):
        average_reference_probs(torch.zeros(3, 4))


# compact_distribution and entropy_of_compact


def test_compact_keeps_top_m_and_rest():
    """probs [0.1, 0.6, 0.3], m = 2: ids [1, 2], probs [0.6, 0.3], rest 0.1; m = 3: rest exactly 0."""
    probs = torch.tensor([[0.1, 0.6, 0.3]])

    ids, top, rest = compact_distribution(probs, 2)
    assert ids.tolist() == [[1, 2]]
    assert ids.dtype == torch.int64
    assert top[0].tolist() == pytest.approx([0.6, 0.3], abs=1e-6)
    assert rest.tolist() == pytest.approx([0.1], abs=1e-6)

    _, _, rest_all = compact_distribution(probs, 3)
    assert rest_all.tolist() == [0.0]


def test_compact_rejects_bad_m_and_logits():
    probs = torch.tensor([0.5, 0.5])
    for m in (0, 3, 1.0, True):
        with pytest.raises(ValueError, match="m must be an integer in \\[1, 2\\]"):
            compact_distribution(probs, m)
    with pytest.raises(ValueError, match="not logits"):
        compact_distribution(torch.tensor([2.0, 1.0]), 1)


def test_entropy_spreads_rest_uniformly():
    """q_top = [0.5] (m = 1), rest 0.5 spread over V - m = 2 tokens as [0.25, 0.25].

    H = -0.5 ln 0.5 - 0.5 ln 0.25 = 0.346574 + 0.693147 = 1.039721.
    With m = V = 2 and q = [0.5, 0.5], H = ln 2 = 0.693147.
    """
    h = entropy_of_compact(torch.tensor([[0]]), torch.tensor([[0.5]]), torch.tensor([0.5]), vocab_size=3)
    assert h.tolist() == pytest.approx([1.039721], abs=1e-5)

    flat = entropy_of_compact(torch.tensor([0, 1]), torch.tensor([0.5, 0.5]), torch.tensor(0.0), vocab_size=2)
    assert flat.item() == pytest.approx(math.log(2.0), abs=1e-6)

    with pytest.raises(ValueError, match="vocab_size must be an integer >= m = 2"):
        entropy_of_compact(torch.tensor([0, 1]), torch.tensor([0.5, 0.5]), torch.tensor(0.0), vocab_size=1)


# viker_kl


def _random_case(vocab_size, seed):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 3, vocab_size, generator=generator) * 2
    q = torch.softmax(torch.randn(2, 3, vocab_size, generator=generator) * 2, dim=-1)
    return logits, q


def test_viker_kl_full_vocabulary_is_exact():
    """With m = V the partition is the vocabulary, so both directions equal the direct KL."""
    logits, q = _random_case(vocab_size=6, seed=0)
    mask = torch.ones(2, 3, dtype=torch.bool)
    p = torch.softmax(logits, dim=-1)
    ids, top, rest = compact_distribution(q, 6)

    forward = viker_kl(logits, ids, top, rest, mask, direction="forward")
    reverse = viker_kl(logits, ids, top, rest, mask, direction="reverse")

    assert torch.allclose(forward, _full_kl(q, p), atol=1e-5)
    assert torch.allclose(reverse, _full_kl(p, q), atol=1e-5)
    # The KL baseline's function agrees when q is the softmax of reference logits.
    assert torch.allclose(forward, kl_divergence_per_token(logits, q.log(), mask), atol=1e-5)


def test_viker_kl_exact_when_rest_is_zero():
    """q = [0.5, 0.5, 0] stored with m = 2 and rest 0; p = softmax([0, 0, 0]) = 1/3 each.

    KL(q || p) = 2 * 0.5 ln(0.5 / (1/3)) = ln 1.5 = 0.405465, the full value.
    """
    logits = torch.zeros(1, 1, 3)
    ids = torch.tensor([[[0, 1]]])
    top = torch.tensor([[[0.5, 0.5]]])
    rest = torch.tensor([[0.0]])
    mask = torch.ones(1, 1, dtype=torch.bool)

    kl = viker_kl(logits, ids, top, rest, mask)

    assert kl.item() == pytest.approx(math.log(1.5), abs=1e-6)


def test_viker_kl_lower_bound_by_hand():
    """q = [0.5, 0.25, 0.25] stored with m = 1 (rest 0.5); p = softmax([0, ln 2, 0]) = [0.25, 0.5, 0.25].

    Full:      0.5 ln(0.5/0.25) + 0.25 ln(0.25/0.5) + 0.25 ln(1) = 0.346574 - 0.173287 = 0.173287.
    Partition: p_rest = 0.75, 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75) = 0.346574 - 0.202733 = 0.143841.
    """
    logits = torch.tensor([[[0.0, math.log(2.0), 0.0]]])
    ids = torch.tensor([[[0]]])
    top = torch.tensor([[[0.5]]])
    rest = torch.tensor([[0.5]])
    mask = torch.ones(1, 1, dtype=torch.bool)

    kl = viker_kl(logits, ids, top, rest, mask)

    assert kl.item() == pytest.approx(0.143841, abs=1e-5)
    assert kl.item() < 0.173287


def test_viker_kl_lower_bound_random():
    """For m < V, the compact KL never exceeds the full KL, in either direction, and is strictly lower for m = 1."""
    logits, q = _random_case(vocab_size=8, seed=1)
    mask = torch.ones(2, 3, dtype=torch.bool)
    p = torch.softmax(logits, dim=-1)

    for m in (1, 3, 7):
        ids, top, rest = compact_distribution(q, m)
        forward = viker_kl(logits, ids, top, rest, mask, direction="forward")
        reverse = viker_kl(logits, ids, top, rest, mask, direction="reverse")
        # m = V - 1 leaves one token in the rest bucket, which is exact up to rounding.
        assert bool((forward <= _full_kl(q, p) + 1e-5).all()), m
        assert bool((reverse <= _full_kl(p, q) + 1e-5).all()), m
        assert bool((forward >= -1e-6).all()), m
        if m == 1:
            assert bool((forward < _full_kl(q, p) - 1e-3).all())
            assert bool((reverse < _full_kl(p, q) - 1e-3).all())


def test_viker_kl_gradient_full_vocabulary():
    """With m = V the logit gradient of KL(q || p_theta) is p_theta - q, finite although p_rest = 0."""
    logits, q = _random_case(vocab_size=5, seed=2)
    logits.requires_grad_(True)
    mask = torch.ones(2, 3, dtype=torch.bool)
    ids, top, rest = compact_distribution(q, 5)

    viker_kl(logits, ids, top, rest, mask).sum().backward()

    assert torch.allclose(logits.grad, torch.softmax(logits.detach(), -1) - q, atol=1e-5)


def test_viker_kl_masked_positions_are_ignored():
    """Padding q (NaN probabilities, id -100) at a masked position gives 0 and a zero, finite gradient."""
    logits = torch.zeros(1, 2, 3, requires_grad=True)
    ids = torch.tensor([[[0, 1], [-100, -100]]])
    top = torch.tensor([[[0.5, 0.5], [float("nan"), float("nan")]]])
    rest = torch.tensor([[0.0, float("nan")]])
    mask = torch.tensor([[True, False]])

    for direction in ("forward", "reverse"):
        logits.grad = None
        kl = viker_kl(logits, ids, top, rest, mask, direction=direction)
        kl.sum().backward()
        assert kl[0, 1].item() == 0.0
        assert torch.isfinite(logits.grad).all()
        assert torch.equal(logits.grad[0, 1], torch.zeros(3))


def test_viker_kl_rejects_bad_inputs():
    logits = torch.zeros(1, 1, 3)
    mask = torch.ones(1, 1, dtype=torch.bool)
    ids = torch.tensor([[[0]]])
    top = torch.tensor([[[0.5]]])
    rest = torch.tensor([[0.5]])

    with pytest.raises(ValueError, match="direction must be one of"):
        viker_kl(logits, ids, top, rest, mask, direction="backward")
    with pytest.raises(ValueError, match="outside \\[0, 3\\)"):
        viker_kl(logits, torch.tensor([[[3]]]), top, rest, mask)
    with pytest.raises(ValueError, match="must be 1 at answer positions, got 0.8000"):
        viker_kl(logits, ids, top, torch.tensor([[0.3]]), mask)
    with pytest.raises(ValueError, match="q_rest must have shape"):
        viker_kl(logits, ids, top, torch.tensor([0.5]), mask)


# Fixed point, reweighting and lambda


def _descend_to_fixed_points(q_ys, lam, vocab_size=5, steps=300, learning_rate=1.0):
    """Run plain SGD on free logits z for log p_y + lam * KL(q || p), one position per q_y, y = 0.

    Each q puts q_y on y and spreads 1 - q_y evenly over the other tokens. The
    positions share no parameters, so one sequence descends them all at once.
    Returns p_y at each position after the last step.
    """
    q = torch.stack([torch.tensor([q_y] + [(1 - q_y) / (vocab_size - 1)] * (vocab_size - 1)) for q_y in q_ys])
    ids, top, rest = compact_distribution(q.unsqueeze(0), vocab_size)  # (1, N, V)
    mask = torch.ones(1, len(q_ys), dtype=torch.bool)

    z = torch.zeros(1, len(q_ys), vocab_size, requires_grad=True)
    optimizer = torch.optim.SGD([z], lr=learning_rate)
    for _ in range(steps):
        log_p_y = torch.log_softmax(z, dim=-1)[..., 0]  # (1, N)
        loss = (log_p_y + lam * viker_kl(z, ids, top, rest, mask)).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return torch.softmax(z.detach(), dim=-1)[0, :, 0].tolist()


def test_descent_reaches_fixed_point():
    """Gradient descent on GA + lam * KL(q || p) with lam = 10 ends at p_y = max(0, (lam q_y - 1)/(lam - 1)).

    q_y = 0.9:  (9 - 1)/9 = 0.8889, protected.
    q_y = 0.11: (1.1 - 1)/9 = 0.01111, just above the threshold 1/lam = 0.1.
    q_y = 0.09: 0.9 - 1 < 0, just below the threshold, forgotten.
    q_y = 0.05: 0.5 - 1 < 0, forgotten.
    """
    cases = [(0.9, 8 / 9), (0.11, 0.1 / 9), (0.09, 0.0), (0.05, 0.0)]

    reached = _descend_to_fixed_points([q_y for q_y, _ in cases], lam=10.0)

    for (q_y, expected), p_y in zip(cases, reached):
        assert fixed_point_probability(q_y, 10.0) == pytest.approx(expected, abs=1e-9), q_y
        assert p_y == pytest.approx(expected, abs=1e-3), q_y


def test_gradient_vanishes_at_fixed_point():
    """With q = [0.9, 0.025 x 4] and lam = 10 the stationary p is (lam q - e_y)/(lam - 1)
    = [8/9, 0.25/9 x 4] = [0.8889, 0.02778 x 4], where (e_y - p) + lam (p - q) = 0.
    """
    q = torch.tensor([0.9, 0.025, 0.025, 0.025, 0.025])
    p = torch.tensor([8 / 9] + [0.25 / 9] * 4)

    gradient = logit_gradient(p, q, 0, 10.0)

    assert torch.allclose(gradient, torch.zeros(5), atol=1e-6)


def test_fixed_point_tensor_input():
    q_y = torch.tensor([0.9, 0.1, 0.0, 1.0])
    expected = [8 / 9, 0.0, 0.0, 1.0]

    assert fixed_point_probability(q_y, 10.0).tolist() == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="q_y must be a probability in \\[0, 1\\], got 1.5"):
        fixed_point_probability(1.5, 10.0)


def test_flat_q_gets_larger_gradient_than_peaked():
    """p = [0.6, 0.1 x 4] at both positions, y = 0, lam = 5, so GA's logit gradient e_y - p = [0.4, -0.1 x 4]
    (norm sqrt(0.2) = 0.44721) is the same at both.

    Peaked q = [0.8, 0.05 x 4]: p - q = [-0.2, 0.05 x 4], total = [-0.6, 0.15 x 4] = -1.5 (e_y - p),
    norm 0.67082, weight 1.5; the regulariser opposes GA and protects the token.
    Flat q = [0.2 x 5]: p - q = [0.4, -0.1 x 4], total = 6 (e_y - p), norm 2.68328, weight 6.
    So the flat (key-token) position gets 4 times the gradient of the peaked (template) one.
    """
    p = torch.tensor([0.6, 0.1, 0.1, 0.1, 0.1])
    peaked = torch.tensor([0.8, 0.05, 0.05, 0.05, 0.05])
    flat = torch.full((5,), 0.2)

    assert gradient_weight_relative_to_ga(p, peaked, 0, 5.0) == pytest.approx(1.5, abs=1e-5)
    assert gradient_weight_relative_to_ga(p, flat, 0, 5.0) == pytest.approx(6.0, abs=1e-5)

    # The same through autograd on viker_kl, with the two positions in one sequence.
    logits = p.log().repeat(1, 2, 1).requires_grad_(True)  # (1, 2, 5)
    q = torch.stack([peaked, flat]).unsqueeze(0)  # (1, 2, 5)
    ids, top, rest = compact_distribution(q, 5)
    mask = torch.ones(1, 2, dtype=torch.bool)
    log_p_y = torch.log_softmax(logits, dim=-1)[..., 0]
    (log_p_y + 5.0 * viker_kl(logits, ids, top, rest, mask)).sum().backward()

    peaked_norm = logits.grad[0, 0].norm().item()
    flat_norm = logits.grad[0, 1].norm().item()
    assert peaked_norm == pytest.approx(0.67082, abs=1e-4)
    assert flat_norm == pytest.approx(2.68328, abs=1e-4)
    assert flat_norm / peaked_norm == pytest.approx(4.0, abs=1e-4)
    assert torch.allclose(logits.grad[0, 0], logit_gradient(p, peaked, 0, 5.0), atol=1e-5)
    # Peaked q pushes the answer logit up (against GA), flat q pushes it further down.
    assert logits.grad[0, 0, 0].item() < 0
    assert logits.grad[0, 1, 0].item() > 0


@pytest.mark.parametrize("lam", [1.0, 1, 0.5, 0.0, -2.0])
def test_lambda_at_most_one_is_rejected(lam):
    with pytest.raises(ValueError, match="lam must be > 1") as error:
        check_viker_lambda(lam)
    assert "does not depend on the model" in str(error.value)
    assert "outweighs the regulariser" in str(error.value)
    with pytest.raises(ValueError, match="lam must be > 1"):
        fixed_point_probability(0.9, lam)


def test_lambda_checks_type_and_accepts_above_one():
    check_viker_lambda(1.0001)
    check_viker_lambda(10)
    for lam in (float("nan"), float("inf"), True, "10"):
        with pytest.raises(ValueError, match="lam must be a finite number > 1"):
            check_viker_lambda(lam)
