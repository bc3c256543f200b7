"""Tests for the MLLMU-Bench text metrics against hand-computed values and rouge-score."""

import math

import pytest

from viker.eval.text_metrics import (
    choose_by_likelihood,
    cloze_correct_official,
    cloze_exact_match,
    contains_fact,
    mc_correct_official,
    normalize_answer,
    official_choice,
    rouge_scores,
    sentence_bleu,
)

TRUE_REPLY = "This person was born in Perth."
WRONG_REPLY = "This person was born in Oslo."


# ---------------------------------------------------------------- multiple choice


def test_official_rule_rejects_sentence_reply():
    assert not mc_correct_official("The answer is B", "B")
    assert official_choice("The answer is B") is None


def test_official_rule_reads_first_character():
    assert mc_correct_official("B", "B")
    assert mc_correct_official("  B: Perth", "B")
    assert not mc_correct_official("C", "B")
    assert official_choice("E") is None
    assert official_choice("") is None
    assert official_choice("USER: which city?\nASSISTANT: D") == "D"


def test_official_rule_upper_cases_like_reference():
    """MLLMU-Bench's eval.py takes `assistant_response[0].upper()`, so "b" counts as B."""
    assert mc_correct_official("b", "B")
    assert official_choice("a teacher in Perth") == "A"
    assert not mc_correct_official("b", "B", case_sensitive=True)
    assert official_choice("a teacher in Perth", case_sensitive=True) is None


def test_official_rule_rejects_unknown_key():
    with pytest.raises(ValueError, match="'E'"):
        mc_correct_official("E", "E")


def test_likelihood_picks_b_when_likeliest():
    """Per-token log-probabilities: A -6/3 = -2, B -2/2 = -1, C -9/3 = -3, D -1.5/1 = -1.5.

    The raw sums would pick D (-1.5 > -2), the length-normalised scores pick B.
    """
    sums = {"A": -6.0, "B": -2.0, "C": -9.0, "D": -1.5}
    counts = {"A": 3, "B": 2, "C": 3, "D": 1}
    assert choose_by_likelihood(sums, counts) == "B"
    # The same item, answered "The answer is B" by greedy decoding, is wrong under the official rule.
    assert not mc_correct_official("The answer is B", "B")


def test_likelihood_rejects_bad_input():
    with pytest.raises(ValueError, match="option letters differ"):
        choose_by_likelihood({"A": -1.0}, {"B": 1})
    with pytest.raises(ValueError, match="token count 0"):
        choose_by_likelihood({"A": -1.0}, {"A": 0})
    with pytest.raises(ValueError, match="no options"):
        choose_by_likelihood({}, {})


# ---------------------------------------------------------------- cloze


def test_normalize_answer_squad_style():
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    assert normalize_answer("An apple a day") == "apple day"


def test_cloze_official_substring_rule():
    assert cloze_correct_official("He was born in Perth, Australia.", "perth")
    assert cloze_correct_official("Perthshire", "Perth")  # no word boundary in the official rule
    assert not cloze_correct_official("He was born in Oslo.", "Perth")
    assert cloze_correct_official("Answer: Perth", "Perth")
    with pytest.raises(ValueError, match="empty"):
        cloze_correct_official("Perth", "  ")


def test_cloze_exact_match_normalised():
    assert cloze_exact_match("The Perth.", "perth")
    assert not cloze_exact_match("Perth, Australia", "Perth")


# ---------------------------------------------------------------- generation


def test_rouge_wrong_fact_scores_high():
    """rouge-score tokens: this person was born in perth / oslo, LCS = 5 of 6, so F1 = 5/6 = 0.833."""
    scores = rouge_scores(TRUE_REPLY, WRONG_REPLY)
    assert scores["rougeL"] == pytest.approx(5 / 6)
    assert scores["rouge1"] == pytest.approx(5 / 6)
    assert scores["rouge2"] == pytest.approx(4 / 5)  # bigrams: 4 of 5 shared


def test_rouge_l_recall_differs_from_f1():
    """Reference "born in Perth" (3 tokens), prediction 7 tokens containing it.

    LCS = 3: recall 3/3 = 1, precision 3/7, F1 = 2 * 1 * 3/7 / (1 + 3/7) = 0.6.
    """
    scores = rouge_scores("born in Perth", "This person was born in Perth today")
    assert scores["rougeL_recall"] == pytest.approx(1.0)
    assert scores["rougeL"] == pytest.approx(0.6)


def test_bleu_without_smoothing_needed():
    """6 tokens each. Matches: unigram 5/6, bigram 4/5, trigram 3/4, 4-gram 2/3.

    Product 1/3, BP = 1 (equal lengths), BLEU = (1/3)^(1/4) = 0.759836.
    """
    assert sentence_bleu(TRUE_REPLY, WRONG_REPLY) == pytest.approx((1 / 3) ** 0.25)
    assert sentence_bleu(TRUE_REPLY, WRONG_REPLY) == pytest.approx(0.759836, abs=1e-6)
    assert sentence_bleu(TRUE_REPLY, TRUE_REPLY) == pytest.approx(1.0)


def test_bleu_method1_short_hypothesis():
    """Hypothesis "born in Oslo" (c = 3) against the 6-token reference (r = 6).

    p1 = 2/3, p2 = 1/2, p3 = 0 matches of 1 trigram -> 0.1/1, p4 = no 4-grams,
    denominator max(1, 0) = 1 -> 0.1/1. BP = exp(1 - 6/3) = exp(-1).
    BLEU = exp(-1) * (2/3 * 1/2 * 0.1 * 0.1)^(1/4) = 0.367879 * 0.240281 = 0.088394.
    """
    expected = math.exp(-1) * (2 / 3 * 1 / 2 * 0.1 * 0.1) ** 0.25
    assert sentence_bleu(TRUE_REPLY, "born in Oslo") == pytest.approx(expected)
    assert sentence_bleu(TRUE_REPLY, "born in Oslo") == pytest.approx(0.088394, abs=1e-6)


def test_bleu_method1_divides_epsilon_by_count():
    """Reference "a b c d", hypothesis "a x b y c" (c = 5 > r = 4, so BP = 1).

    p1 = 3/5; no higher n-gram matches, so p2 = 0.1/4, p3 = 0.1/3, p4 = 0.1/2
    (NLTK keeps the unreduced denominator). Product 0.6 * 0.025 * 0.0333 * 0.05
    = 2.5e-5, BLEU = 2.5e-5^(1/4) = 0.070711.
    """
    assert sentence_bleu("a b c d", "a x b y c") == pytest.approx(0.0707107, abs=1e-6)


def test_bleu_zero_without_unigram_match():
    assert sentence_bleu(TRUE_REPLY, "xq zzv qpl") == 0.0
    assert sentence_bleu(TRUE_REPLY, "") == 0.0


# ---------------------------------------------------------------- fact accuracy


def test_fact_accuracy_catches_wrong_fact():
    assert rouge_scores(TRUE_REPLY, WRONG_REPLY)["rougeL"] == pytest.approx(0.83, abs=0.01)
    assert not contains_fact(WRONG_REPLY, "Perth")
    assert contains_fact(TRUE_REPLY, "Perth")


def test_fact_matches_whole_tokens():
    assert contains_fact("a Perth-born teacher", "perth")
    assert not contains_fact("Perthshire", "Perth")
    assert contains_fact("Born on 3 May 1990.", "3 May 1990")
    assert not contains_fact("Born on 3 June 1990.", "3 May 1990")
    with pytest.raises(ValueError, match="empty after normalisation"):
        contains_fact(TRUE_REPLY, "the")
