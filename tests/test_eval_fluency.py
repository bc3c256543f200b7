"""Tests for the offline fluency checks on clearly fluent and clearly degenerate texts."""

import math

import pytest
import torch

from viker.eval.fluency import build_vocabulary, fluency_score, nonword_rate, perplexity, repetition_rate

FLUENT = "This person was born in Perth."
VOCABULARY = build_vocabulary([FLUENT, "She works as a teacher and was born in 1990."])


def test_vocabulary_is_lowercased_words():
    assert {"this", "person", "perth", "1990", "teacher"} <= VOCABULARY
    assert "Perth" not in VOCABULARY


def test_fluent_text_scores_one():
    """Words: this person was born in perth. 5 bigrams, all distinct -> repetition 0; all in vocabulary -> 0."""
    assert repetition_rate(FLUENT) == 0.0
    assert nonword_rate(FLUENT, VOCABULARY) == 0.0
    assert fluency_score(FLUENT, VOCABULARY) == pytest.approx(1.0)


def test_word_loop_scores_low():
    """"born born born born born": 4 bigrams, 1 distinct -> 1 - 1/4 = 0.75; unigrams 1 - 1/5 = 0.8.

    All words in the vocabulary, so fluency = (1 - 0.75) * (1 - 0) = 0.25.
    """
    loop = "born born born born born"
    assert repetition_rate(loop) == pytest.approx(0.75)
    assert repetition_rate(loop, n=1) == pytest.approx(0.8)
    assert nonword_rate(loop, VOCABULARY) == 0.0
    assert fluency_score(loop, VOCABULARY) == pytest.approx(0.25)


def test_nonwords_score_zero():
    """"xq zzv qpl": 2 distinct bigrams -> repetition 0; 3 of 3 words unknown -> 1; fluency 1 * 0 = 0."""
    gibberish = "xq zzv qpl"
    assert repetition_rate(gibberish) == 0.0
    assert nonword_rate(gibberish, VOCABULARY) == 1.0
    assert fluency_score(gibberish, VOCABULARY) == 0.0


def test_partial_nonwords():
    """"This person was born in xq.": 1 of 6 words unknown -> fluency 5/6 = 0.833333."""
    assert fluency_score("This person was born in xq.", VOCABULARY) == pytest.approx(5 / 6)


def test_empty_text_and_bad_arguments():
    assert fluency_score("", VOCABULARY) == 0.0
    assert fluency_score(" ... ", VOCABULARY) == 0.0
    assert repetition_rate("born") == 0.0
    with pytest.raises(ValueError, match="vocabulary is empty"):
        nonword_rate(FLUENT, [])
    with pytest.raises(ValueError, match="order must be >= 1"):
        repetition_rate(FLUENT, n=0)


def test_perplexity_by_hand():
    """Token probabilities 0.5 and 0.25: exp(-(ln 0.5 + ln 0.25)/2) = 0.125^(-1/2) = 2.828427."""
    values = [math.log(0.5), math.log(0.25)]
    assert perplexity(values) == pytest.approx(2 * math.sqrt(2))
    assert perplexity(torch.tensor(values)) == pytest.approx(2.828427, abs=1e-5)
    with pytest.raises(ValueError, match="not logits"):
        perplexity([0.3, -1.0])
    with pytest.raises(ValueError, match="empty"):
        perplexity([])
