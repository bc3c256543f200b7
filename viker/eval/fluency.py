"""Offline fluency checks for generated replies: repetition, non-words and perplexity.

Gradient-ascent unlearning often ends in degenerate text ("born born born",
"xq zzv qpl"), which overlap metrics like ROUGE read as "forgotten". These
checks flag it without a hub classifier: repetition follows distinct-n (Li et
al., "A Diversity-Promoting Objective Function for Neural Conversation
Models", arXiv 1510.03055), and non-words are counted against a vocabulary the
caller supplies, for example every word of the benchmark's training text.
"""

from __future__ import annotations

import re
from typing import Iterable

import numpy as np

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """Split text into lower-cased word tokens (runs of Unicode letters, digits and underscores)."""
    return _WORD.findall(text.lower())


def build_vocabulary(texts: Iterable[str]) -> frozenset[str]:
    """Collect the lower-cased words of `texts`, tokenised as `words` does."""
    vocabulary: set[str] = set()
    for text in texts:
        vocabulary.update(words(text))
    return frozenset(vocabulary)


def repetition_rate(text: str, n: int = 2) -> float:
    """Compute the share of repeated n-grams: 1 - distinct n-grams / total n-grams.

    Words come from `words`. 0 for a text with no repeated n-gram, near 1 for a
    loop of one word. A text with fewer than n words has no n-grams and
    returns 0.

    Raises:
        ValueError: n < 1.
    """
    if n < 1:
        raise ValueError(f"n-gram order must be >= 1, got {n}.")
    tokens = words(text)
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def nonword_rate(text: str, vocabulary: Iterable[str]) -> float:
    """Compute the share of the text's words that are not in `vocabulary`.

    Words are compared lower-cased. A text without words returns 0.

    Raises:
        ValueError: the vocabulary is empty, which would mark every word as a non-word.
    """
    vocab = vocabulary if isinstance(vocabulary, (set, frozenset)) else set(vocabulary)
    if not vocab:
        raise ValueError("vocabulary is empty; build one with build_vocabulary(training_texts).")
    vocab = {word.lower() for word in vocab}
    tokens = words(text)
    if not tokens:
        return 0.0
    return sum(token not in vocab for token in tokens) / len(tokens)


def fluency_score(text: str, vocabulary: Iterable[str], n: int = 2) -> float:
    """Combine repetition and non-words into one fluency score in [0, 1].

        fluency = (1 - repetition_rate(text, n)) * (1 - nonword_rate(text, vocabulary))

    1 for a text without repeated n-grams whose words are all in the
    vocabulary, 0 for a text of non-words or a long single-word loop. A text
    without words scores 0, because an empty reply is not a fluent answer.
    The product makes either failure alone enough to pull the score down.
    """
    if not words(text):
        return 0.0
    return (1.0 - repetition_rate(text, n)) * (1.0 - nonword_rate(text, vocabulary))


def perplexity(token_logprobs) -> float:
    """Compute perplexity exp(-(1/T) sum_t log p(x_t | x_<t)) from per-token log-probabilities.

    `token_logprobs` is a 1-D sequence, array or tensor of natural-log
    probabilities of the T scored tokens, with padding removed.

    Raises:
        ValueError: empty input, a non-finite value, or a positive log-probability.
    """
    if hasattr(token_logprobs, "detach"):
        token_logprobs = token_logprobs.detach().cpu().double().numpy()
    values = np.asarray(token_logprobs, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise ValueError("token_logprobs is empty; perplexity needs at least one scored token.")
    if not np.all(np.isfinite(values)):
        raise ValueError("token_logprobs contains a non-finite value; check the log-softmax and the padding mask.")
    if np.any(values > 1e-6):
        raise ValueError(
            f"token_logprobs contains a positive value ({values.max()!r}); pass log-probabilities, not logits."
        )
    return float(np.exp(-values.mean()))
