"""Derive fact spans and evaluation items from training questions alone.

A user's own profiles and MLLMU-Bench's `ft_Data` carry only (question, answer)
pairs. This module finds the fact span of each answer and builds, from a seed,
the multiple-choice, cloze and free-generation items that MLLMU-Bench scores.

Fact spans come from comparing an answer with other people's answers to the
same question: the leading and trailing words that many of them share are the
template, and what is left is the fact ("This person was born in Riga, Latvia."
against "This person was born in Oslo, Norway." leaves "Riga, Latvia").

Assumptions:
    Questions about the same fact are worded identically across people (after
    case and whitespace folding), as in MLLMU-Bench. Paraphrased questions form
    groups of their own, and a question that no one else was asked falls back
    to stripping words that also occur in the question and common template words.
"""

from __future__ import annotations

import dataclasses
import math
import random
import re
from collections import defaultdict

from viker.data.records import QA, Cloze, EvalSet, Generation, Modality, MultipleChoice, Profile, SetName

LETTERS = "ABCD"
BLANK = "__"
TEMPLATE_WORDS = {
    "this", "person", "person's", "is", "was", "are", "has", "have", "had", "a", "an", "the", "in", "on", "at",
    "of", "to", "named", "their", "they", "does", "did", "by", "as", "for",
}
_WORD = re.compile(r"\S+")
_EDGE_PUNCTUATION = ".,;:!?\"'()"


def normalize_question(question: str) -> str:
    return " ".join(question.lower().split())


def _tokens(text: str) -> list[re.Match]:
    return list(_WORD.finditer(text))


def _shared_length(a: list[str], b: list[str]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _template_length(words: list[str], peers: list[list[str]], share: float) -> int:
    """Return the longest leading run of `words` that at least `share` of the peers (and two of them) also start with.

    Requiring two peers keeps two people who happen to share a value (a city,
    a height) from turning that value into template.
    """
    if not peers:
        return 0
    needed = min(len(peers), max(2, math.ceil(share * len(peers))))
    shared = sorted((_shared_length(words, p) for p in peers), reverse=True)
    return shared[needed - 1]


def _clean_span(answer: str, tokens: list[re.Match], first: int, last: int) -> str | None:
    """Return answer[tokens[first] .. tokens[last]] without leading template words and edge punctuation."""
    while first < last and tokens[first].group().lower().strip(_EDGE_PUNCTUATION) in TEMPLATE_WORDS:
        first += 1
    span = answer[tokens[first].start():tokens[last].end()].strip(_EDGE_PUNCTUATION).strip()
    return span or None


def fact_span(answer: str, peer_answers: list[str], question: str = "") -> str | None:
    """Return the part of `answer` that differs from the template shared with `peer_answers`.

    The result is a substring of `answer` without leading `TEMPLATE_WORDS`
    ("a", "the", "named", ...), or None when nothing is left. Without peers
    that answer differently, leading words that occur in `question` are
    stripped as well.
    """
    tokens = _tokens(answer)
    if not tokens:
        return None
    words = [t.group().lower() for t in tokens]

    if not peer_answers:
        skip = TEMPLATE_WORDS | {w.strip(_EDGE_PUNCTUATION) for w in question.lower().split()}
        first = 0
        while first < len(words) and words[first].strip(_EDGE_PUNCTUATION) in skip:
            first += 1
        if first == len(words):
            return None
        return _clean_span(answer, tokens, first, len(tokens) - 1)

    # Answers identical to this one show nothing about the template ("This person
    # is female." given by many), so only distinct other answers count as peers.
    distinct = {" ".join(p.lower().split()) for p in peer_answers} - {" ".join(words)}
    peers = [p.split() for p in sorted(distinct)]
    if not peers:
        return fact_span(answer, [], question)
    # A leading template needs a tenth of the peers, so that a minority wording
    # ("This person's name is" among "The name of this person is") still counts.
    # A trailing one needs half, so that a common last word of a value ("scientist.") is kept.
    prefix = _template_length(words, peers, 0.1)
    if prefix >= len(words):
        return None
    rest = words[prefix:]
    suffix = _template_length(rest[::-1], [p[::-1] for p in peers], 0.5)
    suffix = min(suffix, len(rest) - 1)  # keep at least one word
    return _clean_span(answer, tokens, prefix, len(words) - 1 - suffix)


def with_facts(profiles: dict[str, Profile]) -> dict[str, Profile]:
    """Return copies of `profiles` whose QA pairs without a fact get a derived `fact_span`.

    Facts already set are kept. A derived span is always a substring of its answer.
    """
    answers_by_question: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for pid, profile in profiles.items():
        for qa in profile.qa:
            answers_by_question[normalize_question(qa.question)].append((pid, qa.answer))

    out = {}
    for pid, profile in profiles.items():
        qa_list = []
        for qa in profile.qa:
            if qa.fact is None:
                group = answers_by_question[normalize_question(qa.question)]
                peers = [answer for other, answer in group if other != pid]
                qa = QA(qa.question, qa.answer, fact_span(qa.answer, peers, qa.question))
            qa_list.append(qa)
        out[pid] = dataclasses.replace(profile, qa=qa_list)
    return out


def is_name_question(question: str) -> bool:
    q = question.lower()
    return "name" in q and "this person" in q and "pet" not in q


def name_of(profile: Profile) -> str | None:
    """Return the profile's name, or the fact of its "What is the name of this person?" answer."""
    if profile.name:
        return profile.name
    for qa in profile.qa:
        if qa.fact and is_name_question(qa.question):
            return qa.fact
    return None


def name_in_text(text: str, name: str) -> str:
    """Replace "this person" in a question or sentence by `name` (keeping "'s")."""
    text = re.sub(r"\b[Tt]his person's\b", f"{name}'s", text)
    return re.sub(r"\b[Tt]his person\b", name, text)


_PARAPHRASES = [
    (re.compile(r"^What is this person's (.+)\?$", re.I), "Can you tell me this person's {0}?"),
    (re.compile(r"^What is the (.+) of this person\?$", re.I), "Can you tell me the {0} of this person?"),
]
_PREFIXES = ["Looking at this person, {0}", "Based on what you know, {0}", "Tell me, {0}"]


def paraphrase_question(question: str, rng: random.Random) -> str:
    """Reword a question with a fixed template; the same `rng` state gives the same wording."""
    for pattern, template in _PARAPHRASES:
        match = pattern.match(question.strip())
        if match:
            return template.format(*match.groups())
    body = question.strip()
    body = body[0].lower() + body[1:] if body else body
    return rng.choice(_PREFIXES).format(body)


def cloze_text(answer: str, fact: str) -> str | None:
    """Return `answer` with its first occurrence of `fact` replaced by the blank, or None if absent."""
    index = answer.find(fact)
    if index < 0:
        return None
    return answer[:index] + BLANK + answer[index + len(fact):]


def pick_options(fact: str, pool: list[str], rng: random.Random) -> tuple[dict[str, str], str] | None:
    """Return up to four lettered options (the fact and distinct distractors) and the fact's letter.

    Distractors are drawn from `pool` without any value equal to the fact or to
    each other (compared case-insensitively). Returns None when `pool` has no
    usable distractor.
    """
    seen = {fact.lower()}
    distinct = []
    for value in sorted(pool):
        if value.lower() not in seen:
            seen.add(value.lower())
            distinct.append(value)
    if not distinct:
        return None
    choices = rng.sample(distinct, min(3, len(distinct))) + [fact]
    rng.shuffle(choices)
    return dict(zip(LETTERS, choices)), LETTERS[choices.index(fact)]


def derive_eval_sets(
    profiles: dict[str, Profile],
    forget_ids: list[str],
    retain_ids: list[str],
    public_ids: list[str],
    *,
    seed: int = 0,
) -> dict[SetName, EvalSet]:
    """Build MLLMU-style evaluation sets from the profiles' training QA and facts.

    For every QA with a fact, each set gets an image-grounded multiple-choice
    question, cloze item and generation item. When the person's name is known
    and the question contains "this person", a text-only copy names the person
    instead of showing the portrait (except for the name question itself).
    TEST asks the forget people paraphrased questions over their first test
    image, or their portrait when they have none.
    """
    rng = random.Random(seed)
    facts_by_question: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for pid, profile in profiles.items():
        for qa in profile.qa:
            if qa.fact:
                facts_by_question[normalize_question(qa.question)].append((pid, qa.fact))

    plan = [(SetName.FORGET, forget_ids), (SetName.TEST, forget_ids), (SetName.RETAIN, retain_ids), (SetName.PUBLIC, public_ids)]
    sets = {}
    for set_name, ids in plan:
        eval_set = EvalSet(set_name)
        for pid in ids:
            _add_items(eval_set, profiles[pid], facts_by_question, rng, test=set_name is SetName.TEST)
        sets[set_name] = eval_set
    return sets


def _add_items(eval_set: EvalSet, profile: Profile, facts_by_question, rng: random.Random, test: bool) -> None:
    name = name_of(profile)
    image = profile.test_images[0] if test and profile.test_images else profile.image
    prefix = f"{eval_set.name.value}/{profile.id}"
    for i, qa in enumerate(profile.qa):
        if not qa.fact:
            continue
        question = paraphrase_question(qa.question, rng) if test else qa.question
        pool = [fact for other, fact in facts_by_question[normalize_question(qa.question)] if other != profile.id]
        variants = [(Modality.IMAGE_TEXT, question, qa.answer, qa.fact, image)]
        if name and "this person" in question.lower() and not is_name_question(qa.question):
            # The name replaces "this person" in the answer, and so also in a fact span that contains it.
            answer = name_in_text(qa.answer, name)
            fact = name_in_text(qa.fact, name)
            variants.append((Modality.TEXT, name_in_text(question, name), answer, fact if fact in answer else None,
                             None))

        for modality, text_question, answer, fact, item_image in variants:
            tag = "image" if modality is Modality.IMAGE_TEXT else "text"
            options = pick_options(qa.fact, pool, rng)
            if options is not None:
                eval_set.multiple_choice.append(
                    MultipleChoice(f"{prefix}/mc_{tag}/{i}", profile.id, text_question, options[0], options[1], modality, item_image)
                )
            blanked = cloze_text(answer, fact) if fact else None
            if blanked is not None:
                eval_set.cloze.append(Cloze(f"{prefix}/cloze_{tag}/{i}", profile.id, blanked, fact, modality, item_image))
            eval_set.generation.append(
                Generation(f"{prefix}/gen_{tag}/{i}", profile.id, text_question, answer, modality, item_image, fact)
            )
