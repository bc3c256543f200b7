"""The CLEAR protocol: hand-checked scoring with fixed log-probabilities, and a run on the tiny LLaVA."""

import math
from collections import defaultdict

import pytest
import torch

from viker.data.clear import load_clear
from viker.data.embedded import build_embedded
from viker.data.records import Benchmark, Caption, EvalSet, Modality, MultipleChoice, SetName
from viker.eval.clear_protocol import (
    CLEAR_TASKS,
    ClearConfig,
    ClearItem,
    clear_forget_quality,
    clear_items,
    run_clear,
    score_task,
)
from viker.eval.runner import EvalConfig, evaluate
from viker.models.loading import load_model

# Token log-probabilities of each candidate answer, whatever the question.
TOKENS = {
    "the tall man": [-1.0, -3.0],  # mean -2.0
    "a paraphrase": [-1.0],
    "wrong one": [-2.0],
    "wrong two": [-4.0],
    "b": [-0.5],
    "q1": [-1.5],
    "q2": [-2.5],
    "q3": [-3.5],
    "Ana": [-0.25, -0.75],  # mean -0.5
    "Bo": [-1.0],
    "Cy": [-2.0],
}


class FixedAnswers:
    """An evaluator whose answer log-probabilities and replies are set by hand; it records each scoring call."""

    def __init__(self, replies):
        self.replies, self.calls = replies, []

    def answer_logprobs(self, turns):
        self.calls.append([turn.answer for turn in turns])
        return [{"logprobs": torch.tensor(TOKENS[turn.answer])} for turn in turns]

    def generate(self, turns, max_new_tokens):
        return [self.replies[turn.source] for turn in turns]


CAPTION = ClearItem("cap-1", "Describe the person in this image.", None, "the tall man", "a paraphrase",
                    ("wrong one", "wrong two"), has_options=False)
SECOND = ClearItem("cap-2", "Describe the person in this image.", None, "b", "b", ("q1", "q2", "q3"), has_options=False)
FACE = ClearItem("face-1", "What is the name of this person?", None, "Ana", "Ana", ("Bo", "Cy"), has_options=True)


def test_caption_prob_ratio_and_recall():
    """Caption without options: prob = exp(mean(-1, -3)) = exp(-2) = 0.135335.

    R = exp(-1.0 - mean(-2, -4)) = exp(2) = 7.389056 (true answer: the paraphrase);
    forget score min(R, 1/R) = 0.135335. Reply "the man": ROUGE-L recall 2/3.
    """
    out = defaultdict(dict)
    evaluator = FixedAnswers({"cap-1": "the man"})
    replies = score_task(evaluator, "forget_captions", [CAPTION], ClearConfig(), out)
    assert out["clear/forget_captions/prob"]["cap-1"] == pytest.approx(0.135335, rel=1e-5)
    assert out["clear/forget_captions/truth_ratio_raw"]["cap-1"] == pytest.approx(7.389056, rel=1e-5)
    assert out["clear/forget_captions/truth_ratio"]["cap-1"] == pytest.approx(0.135335, rel=1e-5)
    assert out["clear/forget_captions/rougeL_recall"]["cap-1"] == pytest.approx(2 / 3)
    assert replies == {"clear/cap-1": "the man"}


def test_one_scoring_call_per_item():
    """Each item's distinct candidates (answer, paraphrase, perturbed) go to the model in one call."""
    evaluator = FixedAnswers({"cap-1": "", "cap-2": ""})
    score_task(evaluator, "retain_captions", [CAPTION, SECOND], ClearConfig(), defaultdict(dict))
    assert evaluator.calls == [["the tall man", "a paraphrase", "wrong one", "wrong two"], ["b", "q1", "q2", "q3"]]


def test_options_prob_and_retain_ratio():
    """Options: P = e^-0.5 / (e^-0.5 + e^-1 + e^-2) = 0.606531 / 1.109745 = 0.546549.

    R = exp(-0.5 - mean(-1, -2)) = e = 2.718282; retain score max(0, 1 - 1/R) = 0.632121.
    Reply "Ana Smith" contains the whole answer: recall 1.
    """
    out = defaultdict(dict)
    score_task(FixedAnswers({"face-1": "Ana Smith"}), "retain_faces", [FACE], ClearConfig(), out)
    assert out["clear/retain_faces/prob"]["face-1"] == pytest.approx(0.546549, rel=1e-5)
    assert out["clear/retain_faces/truth_ratio_raw"]["face-1"] == pytest.approx(math.e)
    assert out["clear/retain_faces/truth_ratio"]["face-1"] == pytest.approx(0.632121, rel=1e-5)
    assert out["clear/retain_faces/rougeL_recall"]["face-1"] == 1.0


def test_official_mode_pools_perturbed():
    """Official mode: one pooled perturbed mean per task, (-2 - 4 - 1.5 - 2.5 - 3.5) / 5 = -2.7.

    R1 = exp(-1.0 + 2.7) = exp(1.7) = 5.473947; R2 = exp(-0.5 + 2.7) = exp(2.2) = 9.025013.
    The per-item mode gives R2 = exp(-0.5 + 2.5) = exp(2) = 7.389056.
    """
    evaluator = FixedAnswers({"cap-1": "", "cap-2": ""})
    official, tofu = defaultdict(dict), defaultdict(dict)
    score_task(evaluator, "forget_captions", [CAPTION, SECOND], ClearConfig(truth_ratio_mode="official"), official)
    score_task(evaluator, "forget_captions", [CAPTION, SECOND], ClearConfig(), tofu)
    assert official["clear/forget_captions/truth_ratio_raw"]["cap-1"] == pytest.approx(5.473947, rel=1e-6)
    assert official["clear/forget_captions/truth_ratio_raw"]["cap-2"] == pytest.approx(9.025013, rel=1e-6)
    assert tofu["clear/forget_captions/truth_ratio_raw"]["cap-2"] == pytest.approx(7.389056, rel=1e-6)


def _benchmark(forget_captions, retain_captions, public_mc) -> Benchmark:
    sets = {name: EvalSet(name) for name in SetName}
    sets[SetName.FORGET].captions = forget_captions
    sets[SetName.RETAIN].captions = retain_captions
    sets[SetName.PUBLIC].multiple_choice = public_mc
    return Benchmark("hand", {}, [], [], eval_sets=sets)


def test_model_utility_zero_entry():
    """A retain caption whose reply is empty has ROUGE-L recall 0, so model utility is 0.

    The caption's face item carries the same answers as FACE above; the forget caption is left out of MU.
    """
    forget = Caption("cap-1", "f", "Describe the person in this image.", "the tall man", None, name=None,
                     paraphrase="a paraphrase", perturbed=("wrong one", "wrong two"))
    retain = Caption("cap-3", "r", "Describe the person in this image.", "b", None, name="Ana",
                     paraphrase=None, perturbed=(), perturbed_names=("Bo", "Cy"))
    evaluator = FixedAnswers({"cap-1": "", "cap-3": "", "cap-3/name": "Ana"})
    result = run_clear(evaluator, _benchmark([forget], [retain], []))
    per_sample = result["per_sample"]
    assert set(per_sample["clear/retain_faces/prob"]) == {"cap-3/name"}
    # The retain caption has no perturbed captions: prob and recall, but no truth ratio.
    assert "clear/retain_captions/truth_ratio" not in per_sample
    assert per_sample["clear/retain_captions/prob"]["cap-3"] == pytest.approx(math.exp(-0.5))
    utility = result["set_metrics"]["clear/model_utility"]
    # Entries: retain_captions prob e^-0.5 and recall 0, so MU = 0 whenever any entry is 0.
    assert utility == {"mean": 0.0, "stderr": None, "n": 5}

    forget_only = run_clear(FixedAnswers({"cap-1": ""}), _benchmark([forget], [], []))
    assert "clear/model_utility" not in forget_only["set_metrics"]


def test_model_utility_without_zero_entry():
    """Non-forget entries: retain_faces prob 0.546549, recall 1, truth ratio 0.632121; MU = 0.680020."""
    retain = Caption("cap-3", "r", "Describe the person in this image.", "b", None, name="Ana",
                     paraphrase=None, perturbed=(), perturbed_names=("Bo", "Cy"))
    bench = _benchmark([], [retain], [])
    bench.eval_sets[SetName.RETAIN].captions = [retain]
    result = run_clear(FixedAnswers({"cap-3": "b", "cap-3/name": "Ana"}), bench)
    # retain_captions: prob exp(-0.5) = 0.606531 and recall 1 ("b" against "b") join the three face entries.
    expected = 5 / (1 / 0.606531 + 1 + 1 / 0.546549 + 1 + 1 / 0.632121)
    assert result["set_metrics"]["clear/model_utility"]["mean"] == pytest.approx(expected, rel=1e-5)
    assert result["set_metrics"]["clear/model_utility"]["n"] == 5


def test_public_items_split_by_profile():
    faces = MultipleChoice("public/real_faces-000/mc_image/0", "real_faces-000", "What is the name of this person?",
                           {"A": "Bo", "B": "Ana", "C": "Cy"}, "B", Modality.IMAGE_TEXT)
    world = MultipleChoice("public/real_world-000/mc_image/0", "real_world-000", "Where was this person born?",
                           {"A": "Oslo", "B": "Lima"}, "A", Modality.IMAGE_TEXT)
    caption = Caption("cap-1", "f", "Describe the person in this image.", "the tall man", None)
    tasks = clear_items(_benchmark([caption], [], [faces, world]))
    assert [it.id for it in tasks["real_faces"]] == [faces.id]
    assert tasks["real_faces"][0].answer == "Ana"
    assert tasks["real_faces"][0].perturbed == ("Bo", "Cy")
    assert [it.id for it in tasks["real_world"]] == [world.id]
    assert tasks["real_world"][0].perturbed == ("Lima",)
    assert tasks["forget_faces"] == []  # the caption has no name


def test_no_captions_raises():
    with pytest.raises(ValueError, match="no caption items"):
        clear_items(_benchmark([], [], []))


def test_forget_quality_against_oracle():
    """Model R = 1, 2, 3 and oracle R = 4, 5, 6: KS D = 1, exact p = 2 / C(6, 3) = 0.1.

    Scores min(R, 1/R): model 1, 0.5, 0.333 (bins 19, 10, 6 of 20); oracle 0.25, 0.2, 0.167 (bins 5, 4, 3).
    Disjoint histograms: JS distance 1, so 1 - JS = 0.
    """
    def results(ratios):
        ids = [f"i{k}" for k in range(len(ratios))]
        return {"clear/forget_captions/truth_ratio_raw": dict(zip(ids, ratios)),
                "clear/forget_captions/truth_ratio": {i: min(r, 1 / r) for i, r in zip(ids, ratios)}}

    summary = clear_forget_quality(results([1.0, 2.0, 3.0]), results([4.0, 5.0, 6.0]))
    assert summary["clear/forget_captions/forget_quality"]["mean"] == pytest.approx(0.1)
    assert summary["clear/forget_captions/forget_quality_js"]["mean"] == pytest.approx(0.0)
    assert summary["clear/forget_captions/forget_quality"]["n"] == 3
    assert "clear/forget_faces/forget_quality" not in summary
    same = clear_forget_quality(results([1.0, 2.0, 3.0]), results([1.0, 2.0, 3.0]))
    assert same["clear/forget_captions/forget_quality"]["mean"] == pytest.approx(1.0)
    assert same["clear/forget_captions/forget_quality_js"]["mean"] == pytest.approx(1.0)


def test_config_rejects_bad_mode():
    with pytest.raises(ValueError, match="truth_ratio_mode"):
        ClearConfig(truth_ratio_mode="mean")


@pytest.fixture(scope="module")
def clear_benchmark(tmp_path_factory):
    """The tiny benchmark's CLEAR layout: 10 people with 2 images each; forget10 = 1 person, 2 public figures."""
    root = build_embedded(tmp_path_factory.mktemp("clear"), seed=0, n_people=10, n_public=2, image_size=32,
                          qa_per_person=3, n_reference_faces=6, test_images_per_person=1, n_reference_other=2)
    return load_clear(root / "clear", forget_split="forget10")


def test_clear_items_on_embedded(clear_benchmark):
    """1 forget person x 2 images; 9 retain people x 2 images; 2 real faces and 2 real-world questions."""
    tasks = clear_items(clear_benchmark)
    counts = {task: len(items) for task, items in tasks.items()}
    assert counts == {"forget_captions": 2, "retain_captions": 18, "forget_faces": 2, "retain_faces": 18,
                      "real_faces": 2, "real_world": 2}
    for item in tasks["forget_captions"]:
        assert item.true.startswith("This photo shows")
        assert len(item.perturbed) == 4


def test_clear_run_on_tiny_model(tiny_model_dir, clear_benchmark):
    """Every task is scored through the runner; values are probabilities and scores in [0, 1]."""
    loaded = load_model(tiny_model_dir)
    result = evaluate(loaded, clear_benchmark, EvalConfig(tasks=("clear",), max_items=2, max_new_tokens=4, batch_size=8))
    summary = result["summary"]
    for task in CLEAR_TASKS:
        for metric in ("prob", "rougeL_recall", "truth_ratio"):
            key = f"clear/{task}/{metric}"
            assert summary[key]["n"] == 2, key
            assert all(0.0 <= v <= 1.0 for v in result["per_sample"][key].values()), key
        assert all(v > 0 for v in result["per_sample"][f"clear/{task}/truth_ratio_raw"].values())
    assert 0.0 <= summary["clear/model_utility"]["mean"] <= 1.0
    assert summary["clear/model_utility"]["n"] == 12  # 4 non-forget tasks x 3 metrics
    assert len([k for k in result["generations"] if k.startswith("clear/")]) == 12
