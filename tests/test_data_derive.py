"""Derived fact spans, options, cloze items and paraphrases."""

import random

import pytest

from viker.data.derive import cloze_text, derive_eval_sets, fact_span, name_in_text, paraphrase_question, pick_options, with_facts
from viker.data.records import QA, Modality, Profile, SetName


@pytest.mark.parametrize(
    ("answer", "peers", "expected"),
    [
        ("This person was born in Riga, Latvia.", ["This person was born in Oslo, Norway.", "This person was born in Lima, Peru."], "Riga, Latvia"),
        ("This person is 5 feet 5 inches tall.", ["This person is 168 cm tall.", "This person is 180 cm tall."], "5 feet 5 inches"),
        ("This person is an environmental scientist.", ["This person is a doctor.", "This person is a software engineer."], "environmental scientist"),
        # "scientist." ends one of three peers, short of the half needed for trailing template
        ("This person is a data scientist.", ["This person is a pilot.", "This person is a nurse.", "This person is a rocket scientist."], "data scientist"),
        # a minority wording: two of the peers share "This person's name is"
        ("This person's name is Amelia Kuznetsov.", ["This person's name is Aurora Keating.", "This person's name is Tom Kerr.",
                                                     "The name of this person is Haruto Aoki."], "Amelia Kuznetsov"),
        # identical answers are ignored as peers; "male" is the only other answer
        ("This person is female.", ["This person is female.", "This person is male."], "female"),
    ],
)
def test_fact_span_cases(answer, peers, expected):
    assert fact_span(answer, peers) == expected


def test_fact_span_without_peers():
    """No peers: strip leading question and template words ("this", "person", "was", "born", "in")."""
    assert fact_span("This person was born in Riga.", [], "Where was this person born?") == "Riga"


def test_fact_span_one_shared_value_is_not_template():
    """Only one peer shares "Riga," so with three peers (two needed) the city stays in the fact."""
    peers = ["This person was born in Riga, Estonia.", "This person was born in Oslo, Norway.", "This person was born in Lima, Peru."]
    assert fact_span("This person was born in Riga, Latvia.", peers) == "Riga, Latvia"


def test_with_facts_keeps_given_fact():
    profiles = {
        "a": Profile("a", None, [QA("Where was this person born?", "This person was born in Riga.", "Riga")]),
        "b": Profile("b", None, [QA("Where was this person born?", "This person was born in Oslo.")]),
    }
    out = with_facts(profiles)
    assert out["a"].qa[0].fact == "Riga"
    assert out["b"].qa[0].fact == "Oslo"
    assert profiles["b"].qa[0].fact is None  # the input is not modified


def test_pick_options_never_repeats_answer():
    """Pool has the answer twice (once in other case) and a duplicate distractor; 2 distinct distractors remain."""
    for seed in range(20):
        options, key = pick_options("Riga", ["riga", "Oslo", "Oslo", "Lima", "Riga"], random.Random(seed))
        assert options[key] == "Riga"
        assert sorted(options.values()) == ["Lima", "Oslo", "Riga"]
        assert sorted(options) == ["A", "B", "C"]


def test_pick_options_empty_pool():
    assert pick_options("Riga", ["Riga", "riga"], random.Random(0)) is None


def test_cloze_text_blanks_first_occurrence():
    assert cloze_text("This person was born in Riga.", "Riga") == "This person was born in __."
    assert cloze_text("This person was born in Riga.", "Oslo") is None


def test_name_in_text():
    assert name_in_text("What is this person's job?", "Ana Lima") == "What is Ana Lima's job?"
    assert name_in_text("This person was born in Riga.", "Ana Lima") == "Ana Lima was born in Riga."


def test_paraphrase_question_templates():
    assert paraphrase_question("What is this person's job?", random.Random(0)) == "Can you tell me this person's job?"
    assert paraphrase_question("What is the name of this person?", random.Random(0)) == "Can you tell me the name of this person?"
    other = paraphrase_question("Where was this person born?", random.Random(0))
    assert other.endswith("where was this person born?")
    assert other != "Where was this person born?"


CITIES = ["Riga", "Oslo", "Lima", "Perth", "Porto", "Quito", "Seoul", "Turin"]


def _profiles() -> dict[str, Profile]:
    profiles = {}
    for i, city in enumerate(CITIES):
        pid = f"{i:03d}"
        qa = [QA("What is the name of this person?", f"This person's name is Person {pid}.", f"Person {pid}"),
              QA("Where was this person born?", f"This person was born in {city}.", city)]
        profiles[pid] = Profile(pid, b"portrait" + pid.encode(), qa, test_images=[b"test" + pid.encode()])
    return profiles


def test_derive_eval_sets_deterministic():
    profiles = _profiles()
    a = derive_eval_sets(profiles, ["000"], list(profiles)[1:], [], seed=7)
    b = derive_eval_sets(profiles, ["000"], list(profiles)[1:], [], seed=7)
    c = derive_eval_sets(profiles, ["000"], list(profiles)[1:], [], seed=8)
    assert a == b
    assert [m.options for m in a[SetName.RETAIN].multiple_choice] != [m.options for m in c[SetName.RETAIN].multiple_choice]


def test_derive_eval_sets_counts_and_validity():
    """Per person: name (image MC, cloze, generation) + birthplace (image and text: 2 each) = 3 MC, 3 cloze, 3 generation."""
    profiles = _profiles()
    sets = derive_eval_sets(profiles, ["000", "001"], [f"{i:03d}" for i in range(2, 8)], [], seed=0)
    assert len(sets[SetName.FORGET].multiple_choice) == 6
    assert len(sets[SetName.TEST].cloze) == 6
    assert len(sets[SetName.RETAIN].generation) == 18
    assert len(sets[SetName.PUBLIC]) == 0
    for eval_set in sets.values():
        for item in eval_set.multiple_choice:
            answer = item.options[item.key]
            assert answer in {qa.fact for qa in profiles[item.profile_id].qa}
            others = [v for k, v in item.options.items() if k != item.key]
            assert answer not in others
            assert len(set(others)) == len(others) == 3


def test_derive_eval_sets_modalities_and_images():
    profiles = _profiles()
    sets = derive_eval_sets(profiles, ["000"], ["001", "002", "003"], [], seed=0)
    text = [g for g in sets[SetName.FORGET].generation if g.modality is Modality.TEXT]
    assert [g.question for g in text] == ["Where was Person 000 born?"]
    assert text[0].answer == "Person 000 was born in Riga."
    assert text[0].image is None
    image_items = [g for g in sets[SetName.TEST].generation if g.modality is Modality.IMAGE_TEXT]
    assert all(g.image == b"test000" for g in image_items)
    assert all(g.question not in {"Where was this person born?", "What is the name of this person?"} for g in image_items)
    cloze = [c.text for c in sets[SetName.FORGET].cloze]
    assert cloze == ["This person's name is __.", "This person was born in __.", "Person 000 was born in __."]


def test_text_variant_fact_follows_name_substitution():
    """A fact span that contains "this person" is rewritten with the name, like the answer it belongs to."""
    from viker.data.derive import derive_eval_sets
    from viker.data.records import QA, Modality, Profile, SetName

    profiles = {}
    for pid, name, date in (("001", "Eleanor Swift", "April 17, 2008"), ("002", "Omar Haddad", "May 2, 1990"),
                            ("003", "Lena Berg", "June 9, 1985")):
        profiles[pid] = Profile(pid, b"", [
            QA("What is the name of this person?", f"This person's name is {name}.", name),
            QA("What is the date of birth of this person?", f"The date of birth of this person is {date}.",
               f"date of birth of this person is {date}"),
        ], name=name)
    sets = derive_eval_sets(profiles, ["001"], ["002", "003"], [], seed=0)
    texts = [g for g in sets[SetName.FORGET].generation if g.modality is Modality.TEXT]
    assert len(texts) == 1
    assert texts[0].answer == "The date of birth of Eleanor Swift is April 17, 2008."
    assert texts[0].fact == "date of birth of Eleanor Swift is April 17, 2008"
    assert texts[0].fact in texts[0].answer
