"""Few-shot prompting in the MLLMU-Bench protocol: seeded examples that never include the scored item."""

from collections import defaultdict

import pytest

from viker.data.records import Cloze, Generation, Modality, MultipleChoice, SetName
from viker.eval.runner import EvalConfig, Evaluator, evaluate, example_text, few_shot_examples
from viker.models.loading import load_model


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    return load_model(tiny_model_dir)


def test_examples_exclude_item_and_person(tiny_benchmark):
    """Retain set: 9 people; every item's examples come from the other 8 people."""
    pool = tiny_benchmark.eval_sets[SetName.RETAIN].multiple_choice
    for item in pool:
        examples = few_shot_examples(item, pool, 3, seed=0)
        assert len(examples) == 3
        assert item not in examples
        assert all(ex.id != item.id for ex in examples)
        assert all(ex.profile_id != item.profile_id for ex in examples)


def test_examples_seeded(tiny_benchmark):
    pool = tiny_benchmark.eval_sets[SetName.RETAIN].generation
    item = pool[0]
    first = [ex.id for ex in few_shot_examples(item, pool, 4, seed=0)]
    assert first == [ex.id for ex in few_shot_examples(item, pool, 4, seed=0)]
    others = {tuple(ex.id for ex in few_shot_examples(item, pool, 4, seed=s)) for s in range(1, 6)}
    assert others != {tuple(first)}


def test_examples_short_pool():
    """Two items about person p and one about q: p's item can only get q's item."""
    items = [Cloze("c-1", "p", "Born in __.", "Lyon", Modality.TEXT), Cloze("c-2", "p", "Lives in __.", "Riga", Modality.TEXT),
             Cloze("c-3", "q", "Works as a __.", "baker", Modality.TEXT)]
    assert [ex.id for ex in few_shot_examples(items[0], items, 3, seed=0)] == ["c-3"]
    assert few_shot_examples(items[0], items[:2], 2, seed=0) == []


def test_example_text_forms():
    mc = MultipleChoice("m", "p", "Q?", {"A": "one", "B": "two"}, "B", Modality.TEXT)
    assert example_text(mc) == "Q?\nA. one\nB. two\nAnswer with the option's letter.\nB. two"
    assert example_text(Cloze("c", "p", "Born in __.", "Lyon", Modality.TEXT)) == "Fill in the blank: Born in __.\nLyon"
    assert example_text(Generation("g", "p", "Where?", "In Lyon.", Modality.TEXT)) == "Where?\nIn Lyon."


class RecordingEvaluator(Evaluator):
    """Replies "A" to everything and records the prompts it was given."""

    def __init__(self, loaded, config):
        super().__init__(loaded, config)
        self.prompts, self.sources = [], []

    def generate(self, turns, max_new_tokens):
        self.prompts += [turn.question for turn in turns]
        self.sources += [turn.source for turn in turns]
        return ["A" for _ in turns]


def test_prompt_prefixed_with_example(loaded):
    """With one example, the cloze prompt is the other person's solved cloze, a blank line, then the item."""
    items = [Cloze("c-1", "p", "Born in __.", "Lyon", Modality.TEXT), Cloze("c-2", "q", "Works as a __.", "baker", Modality.TEXT)]
    evaluator = RecordingEvaluator(loaded, EvalConfig(few_shot=1))
    evaluator.example_pools[("forget", "cloze")] = items
    evaluator.cloze("forget", items[:1], defaultdict(dict))
    assert evaluator.prompts == ["Fill in the blank: Works as a __.\nbaker\n\nFill in the blank: Born in __."]

    zero_shot = RecordingEvaluator(loaded, EvalConfig())
    zero_shot.example_pools[("forget", "cloze")] = items
    zero_shot.cloze("forget", items[:1], defaultdict(dict))
    assert zero_shot.prompts == ["Fill in the blank: Born in __."]


def test_runner_never_shows_scored_item(loaded, tiny_benchmark):
    """Through `run`, no example in a generation prompt is the scored item or another item about its person."""
    config = EvalConfig(sets=("retain",), tasks=("generation",), few_shot=2, max_items=2, max_new_tokens=2)
    evaluator = RecordingEvaluator(loaded, config)
    evaluator.run(tiny_benchmark)
    items = tiny_benchmark.eval_sets[SetName.RETAIN].generation
    by_id = {it.id: it for it in items}
    assert len(evaluator.prompts) == 4
    for prompt, source in zip(evaluator.prompts, evaluator.sources):
        item = by_id[source]
        blocks = prompt.split("\n\n")
        assert len(blocks) == 3
        assert blocks[-1] == item.question
        same_person = {example_text(it) for it in items if it.profile_id == item.profile_id}
        assert example_text(item) in same_person
        for block in blocks[:-1]:
            assert block not in same_person
            assert block in {example_text(it) for it in items}


def test_few_shot_config_rejects_negative():
    with pytest.raises(ValueError, match="few_shot"):
        EvalConfig(few_shot=-1)


def test_few_shot_run_on_tiny_model(loaded, tiny_benchmark):
    config = EvalConfig(sets=("retain",), tasks=("mc", "tokens"), few_shot=2, max_items=1, max_new_tokens=2)
    result = evaluate(loaded, tiny_benchmark, config)
    assert result["summary"]["retain/mc_acc_likelihood"]["n"] == 2
    assert result["summary"]["retain/template_token_acc"]["n"] == 2
