"""Tests for membership-inference scores and ROC AUC on hand-computed log-probabilities."""

import itertools
import math
import zlib

import pytest
import torch

from viker.eval.mia import auc, loss_score, mink_pp_score, mink_pp_stats, mink_score, zlib_score

ln = math.log
LOGPROBS = [-0.1, -2.0, -0.5, -3.0, -1.0, -0.2, -0.3, -4.0, -0.4, -0.6]


def test_loss_score_is_mean_logprob():
    """(ln 0.5 + ln 0.25) / 2 = ln(0.125) / 2 = -1.039721."""
    assert loss_score([ln(0.5), ln(0.25)]) == pytest.approx(-1.039721, abs=1e-6)


def test_zlib_score_divides_by_compressed_bytes():
    text = "This person was born in Perth."
    compressed = len(zlib.compress(text.encode("utf-8")))
    assert zlib_score([ln(0.5), ln(0.25)], text) == pytest.approx(ln(0.125) / 2 / compressed)
    with pytest.raises(ValueError, match="text is empty"):
        zlib_score([ln(0.5)], "")


def test_mink_averages_lowest_share():
    """T = 10. k = 0.2 keeps int(2) = 2 lowest: (-4 - 3)/2 = -3.5.

    k = 0.5 keeps 5: (-4 - 3 - 2 - 1 - 0.6)/5 = -2.12. k = 0.05 gives int(0.5) = 0, raised to 1: -4.
    """
    assert mink_score(LOGPROBS, k=0.2) == pytest.approx(-3.5)
    assert mink_score(LOGPROBS, k=0.5) == pytest.approx(-2.12)
    assert mink_score(LOGPROBS, k=0.05) == pytest.approx(-4.0)
    assert mink_score(LOGPROBS, k=1.0) == pytest.approx(sum(LOGPROBS) / 10)
    with pytest.raises(ValueError, match="k must be"):
        mink_score(LOGPROBS, k=0.0)


LOGITS = torch.tensor([[0.0, 0.0], [ln(0.75), ln(0.25)]])


def test_mink_pp_stats_by_hand():
    """Row 0 uniform over 2: mu = ln 0.5 = -0.693147, sigma = 0.

    Row 1, p = (0.75, 0.25), log p = (-0.287682, -1.386294):
    mu = 0.75 * -0.287682 + 0.25 * -1.386294 = -0.562335;
    sigma^2 = p(1 - p)(ln 0.75 - ln 0.25)^2 = 0.1875 * ln(3)^2 = 0.226303, sigma = 0.475713.
    """
    mu, sigma = mink_pp_stats(LOGITS)
    assert mu.shape == (2,)
    assert sigma.shape == (2,)
    assert mu.tolist() == pytest.approx([ln(0.5), -0.562335], abs=1e-6)
    assert sigma.tolist() == pytest.approx([0.0, math.sqrt(0.1875) * ln(3)], abs=1e-6)
    assert sigma[1].item() == pytest.approx(0.475713, abs=1e-6)
    with pytest.raises(ValueError, match=r"\(T, V\)"):
        mink_pp_stats(LOGITS[None])


def test_mink_pp_score_by_hand():
    """Tokens: row 0 any token (ln 0.5 = mu, sigma 0 floored -> z = 0); row 1 the p = 0.25 token.

    z_1 = (ln 0.25 - mu_1) / sigma_1 = -p1 (a - b) / (sqrt(p1 p2) (a - b)) = -sqrt(0.75 / 0.25) = -sqrt(3).
    k = 0.5 keeps the lowest one: -1.732051. k = 1 averages both: -sqrt(3)/2 = -0.866025.
    The p = 0.75 token would give z_1 = +sqrt(0.25 / 0.75) = 0.577350.
    """
    mu, sigma = mink_pp_stats(LOGITS)
    member_like = [ln(0.5), ln(0.25)]
    assert mink_pp_score(member_like, mu, sigma, k=0.5) == pytest.approx(-math.sqrt(3), abs=1e-5)
    assert mink_pp_score(member_like, mu, sigma, k=1.0) == pytest.approx(-math.sqrt(3) / 2, abs=1e-5)
    assert mink_pp_score([ln(0.5), ln(0.75)], mu, sigma, k=0.5) == pytest.approx(0.0, abs=1e-5)
    assert mink_pp_score([ln(0.5), ln(0.75)], mu, sigma, k=1.0) == pytest.approx(math.sqrt(1 / 3) / 2, abs=1e-5)
    with pytest.raises(ValueError, match="lengths 3, 2, 2"):
        mink_pp_score([ln(0.5)] * 3, mu, sigma)


def test_auc_counts_ties_half():
    """Pairs (member, non-member): 0.9>0.5, 0.9>0.1, 0.5=0.5, 0.5>0.1, 0.5=0.5, 0.5>0.1.

    4 wins + 2 ties * 0.5 = 5 of 6 pairs: AUC = 0.833333.
    """
    members, nonmembers = [0.9, 0.5, 0.5], [0.5, 0.1]
    assert auc(members, nonmembers) == pytest.approx(5 / 6)
    pairs = list(itertools.product(members, nonmembers))
    wins = sum(1.0 for m, n in pairs if m > n)
    ties = sum(1.0 for m, n in pairs if m == n)
    brute = (wins + 0.5 * ties) / len(pairs)
    assert auc(members, nonmembers) == pytest.approx(brute)


def test_auc_extremes():
    assert auc([3.0, 4.0], [1.0, 2.0]) == 1.0
    assert auc([1.0, 2.0], [3.0, 4.0]) == 0.0
    assert auc([1.0, 1.0], [1.0]) == 0.5
    with pytest.raises(ValueError, match="nonmember_scores is empty"):
        auc([1.0], [])
