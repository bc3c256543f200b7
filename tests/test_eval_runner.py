"""The evaluation runner on the tiny LLaVA: per-item values keyed by item id, hand-checkable scoring."""

from collections import defaultdict

import pytest
import torch

from viker.data.records import Cloze, Generation, Modality, MultipleChoice, SetName
from viker.eval.runner import EvalConfig, Evaluator, evaluate, mc_prompt, summarize
from viker.models.loading import load_model


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    return load_model(tiny_model_dir)


def test_evaluate_keys_and_counts(loaded, tiny_benchmark):
    # Each set has image+text and text-only items; at most 2 of each modality are drawn per task.
    config = EvalConfig(max_items=2, max_new_tokens=4)
    result = evaluate(loaded, tiny_benchmark, config, vocabulary=frozenset({"this", "person"}))
    per_sample = result["per_sample"]
    for set_name in ("forget", "test", "retain", "public"):
        for metric in ("rougeL", "bleu", "fact_acc", "mc_acc", "mc_acc_likelihood", "cloze_acc", "truth_ratio",
                       "fact_token_acc", "template_token_acc", "fluency"):
            key = f"{set_name}/{metric}"
            assert key in per_sample, key
            assert len(per_sample[key]) == 4, key
            assert result["summary"][key]["n"] == 4
            assert len(per_sample[f"{set_name}/image_text/{metric}"]) == 2
            assert len(per_sample[f"{set_name}/text/{metric}"]) == 2
    forget_ids = set(per_sample["forget/rougeL"])
    expected = {it.id for it in tiny_benchmark.eval_sets[SetName.FORGET].generation}
    assert forget_ids <= expected
    assert set(result["generations"]) >= forget_ids


def test_subsample_is_seeded(loaded, tiny_benchmark):
    config = EvalConfig(max_items=2, max_new_tokens=2, tasks=("tokens",), sets=("retain",), seed=5)
    first = evaluate(loaded, tiny_benchmark, config)["per_sample"]["retain/template_token_acc"]
    again = evaluate(loaded, tiny_benchmark, config)["per_sample"]["retain/template_token_acc"]
    assert first == again


class FixedLikelihood(Evaluator):
    """An evaluator whose option scores and replies are set by hand, to check the scoring arithmetic."""

    def __init__(self, loaded, sums, reply):
        super().__init__(loaded, EvalConfig())
        self.sums, self.reply = sums, reply

    def answer_logprobs(self, turns):
        rows = []
        for turn in turns:
            letter = turn.source.rsplit("/", 1)[-1]
            total, count = self.sums[letter]
            rows.append({"logprobs": torch.full((count,), total / count), "hits": torch.ones(count, dtype=bool),
                         "fact": torch.zeros(count, dtype=bool)})
        return rows

    def generate(self, turns, max_new_tokens):
        return [self.reply for _ in turns]


def test_official_rule_and_likelihood_disagree(loaded):
    """Reply "The answer is B": wrong under the official first-letter rule.

    Option log-probability sums / token counts: A -6/3 = -2.0, B -2/2 = -1.0, C -9/3 = -3.0,
    D -4/1 = -4.0, so the likelihood scorer picks B (the key). Truth ratio on the forget set:
    R = exp(-1.0 - mean(-2, -3, -4)) = exp(2) = 7.389; score min(R, 1/R) = 0.1353.
    """
    item = MultipleChoice("mc-1", "p", "Where was this person born?", {"A": "Oslo", "B": "Lyon", "C": "Riga",
                                                                        "D": "Bern"}, "B", Modality.TEXT)
    evaluator = FixedLikelihood(loaded, {"A": (-6.0, 3), "B": (-2.0, 2), "C": (-9.0, 3), "D": (-4.0, 1)},
                                "The answer is B")
    out = defaultdict(dict)
    evaluator.multiple_choice("forget", [item], out)
    assert out["forget/mc_acc"]["mc-1"] == 0.0
    assert out["forget/mc_acc_likelihood"]["mc-1"] == 1.0
    assert out["forget/truth_ratio_raw"]["mc-1"] == pytest.approx(7.389056, rel=1e-5)
    assert out["forget/truth_ratio"]["mc-1"] == pytest.approx(0.135335, rel=1e-5)

    out = defaultdict(dict)
    FixedLikelihood(loaded, evaluator.sums, "B. Lyon").multiple_choice("retain", [item], out)
    assert out["retain/mc_acc"]["mc-1"] == 1.0
    # Retain sets score max(0, 1 - 1/R) = 1 - exp(-2) = 0.8647.
    assert out["retain/truth_ratio"]["mc-1"] == pytest.approx(0.864665, rel=1e-5)


def test_generation_fact_and_rouge(loaded):
    """A fluent wrong fact: ROUGE-L F1 5/6 against the gold sentence, fact accuracy 0."""
    item = Generation("g-1", "p", "Where was this person born?", "This person was born in Perth.", Modality.TEXT,
                      fact="Perth")
    evaluator = FixedLikelihood(loaded, {}, "This person was born in Oslo.")
    out = defaultdict(dict)
    evaluator.generation("forget", [item], out)
    assert out["forget/rougeL"]["g-1"] == pytest.approx(5 / 6)
    assert out["forget/fact_acc"]["g-1"] == 0.0


def test_cloze_official_and_exact(loaded):
    item = Cloze("c-1", "p", "This person was born in __.", "Lyon", Modality.TEXT)
    out = defaultdict(dict)
    FixedLikelihood(loaded, {}, "lyon, France").cloze("forget", [item], out)
    assert out["forget/cloze_acc"]["c-1"] == 1.0  # case-insensitive substring
    assert out["forget/cloze_em"]["c-1"] == 0.0


def test_mc_prompt_lists_options():
    item = MultipleChoice("m", "p", "Q?", {"B": "two", "A": "one", "C": "three", "D": "four"}, "A", Modality.TEXT)
    assert mc_prompt(item) == "Q?\nA. one\nB. two\nC. three\nD. four\nAnswer with the option's letter."


def test_summarize_stderr():
    """Values 1, 0, 1, 0: mean 0.5, sample std 0.5774, stderr 0.5774 / 2 = 0.2887."""
    summary = summarize({"forget/fact_acc": {"a": 1.0, "b": 0.0, "c": 1.0, "d": 0.0}})
    assert summary["forget/fact_acc"]["mean"] == 0.5
    assert summary["forget/fact_acc"]["stderr"] == pytest.approx(0.288675, rel=1e-5)
    assert summary["forget/fact_acc"]["arrow"] == "↓"


def test_summary_direction_per_set():
    summary = summarize({"retain/image_text/fact_acc": {"a": 1.0}, "forget/fluency": {"a": 0.5},
                         "forget/truth_ratio_raw": {"a": 2.0}, "mia/loss/custom": {"a": 1.0}})
    assert summary["retain/image_text/fact_acc"]["direction"] == "higher"
    assert summary["forget/fluency"]["direction"] == "higher"
    assert summary["mia/loss/custom"]["direction"] is None
