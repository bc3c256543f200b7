"""Membership inference: hand-checked scores and AUCs with fixed token statistics, holdout people, the tiny LLaVA."""

import hashlib

import pytest
import torch

from viker.data.embedded import build_embedded
from viker.data.mllmu import load_mllmu
from viker.data.records import QA, Benchmark, Profile
from viker.eval.membership import MIA_SCORES, MembershipInference, TokenStatistics
from viker.eval.runner import EvalConfig, Evaluator, evaluate
from viker.models.collate import Turn
from viker.models.loading import load_model

# Per sample: token log-probabilities and sigma (mu is 0 everywhere).
FIXED = {
    "f/0": ([-1.0, -1.0, -4.0], 2.0),
    "f/1": ([-0.5, -0.5], 1.0),
    "h/0": ([-2.0, -3.0, -1.0], 1.0),
    "h/1": ([-3.0, -3.0], 1.0),
}


class FixedStatistics(MembershipInference):
    def token_statistics(self, samples):
        out = []
        for sample in samples:
            logprobs, sigma = FIXED[sample.id]
            n = len(logprobs)
            out.append(TokenStatistics(torch.tensor(logprobs), torch.zeros(n), torch.full((n,), sigma)))
        return out


def _hand_benchmark(holdout=True) -> Benchmark:
    profiles = {
        "f": Profile("f", None, [QA("Where was this person born?", "This person was born in Oslo."),
                                 QA("What is this person's job?", "This person works as a nurse.")]),
        "h": Profile("h", None, [QA("Where was this person born?", "This person was born in Lima."),
                                 QA("What is this person's job?", "This person works as a baker.")]),
    }
    return Benchmark("hand", profiles, forget_ids=["f"], retain_ids=[], holdout_ids=["h"] if holdout else [])


def test_scores_and_auc_by_hand():
    """LOSS: f -2, -0.5; h -2, -3. Pairs: tie, win, win, win, so AUC = 3.5 / 4 = 0.875.

    Min-K% (k 0.2 keeps max(1, int(0.2 T)) = 1 token): f -4, -0.5; h -3, -3; AUC = 2 / 4 = 0.5.
    zlib: LOSS / compressed bytes; "...born in Oslo." and "...born in Lima." compress to 37 bytes,
    "...a nurse." and "...a baker." to 35: f -2/37, -0.5/35; h -2/37, -3/35; AUC = 3.5 / 4.
    Min-K%++ with mu 0: z = logprob / sigma; f/0 (sigma 2) min -2, f/1 -0.5; h -3, -3; AUC = 1.
    """
    result = FixedStatistics(evaluator=None).run(_hand_benchmark())
    per_sample, auc = result["per_sample"], result["set_metrics"]
    assert per_sample["mia/forget/loss"] == {"f/0": -2.0, "f/1": -0.5}
    assert per_sample["mia/holdout/loss"] == {"h/0": -2.0, "h/1": -3.0}
    assert per_sample["mia/forget/mink"] == {"f/0": -4.0, "f/1": -0.5}
    assert per_sample["mia/forget/zlib"]["f/0"] == pytest.approx(-2 / 37)
    assert per_sample["mia/holdout/zlib"]["h/1"] == pytest.approx(-3 / 35)
    assert per_sample["mia/forget/mink_pp"] == {"f/0": -2.0, "f/1": -0.5}
    assert auc["mia/loss/mia_auc"] == {"mean": 0.875, "stderr": None, "n": 4}
    assert auc["mia/mink/mia_auc"]["mean"] == 0.5
    assert auc["mia/zlib/mia_auc"]["mean"] == 0.875
    assert auc["mia/mink_pp/mia_auc"]["mean"] == 1.0


def test_no_holdout_people_raises():
    with pytest.raises(ValueError, match="no holdout people"):
        FixedStatistics(evaluator=None).run(_hand_benchmark(holdout=False))


def test_invalid_k_raises():
    with pytest.raises(ValueError, match="k must be a fraction"):
        MembershipInference(evaluator=None, k=0.0)


def _digests(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


SMALL = dict(seed=0, n_people=10, n_public=2, image_size=32, qa_per_person=3, n_reference_faces=6,
             test_images_per_person=1, n_reference_other=2)


@pytest.fixture(scope="module")
def holdout_root(tmp_path_factory):
    return build_embedded(tmp_path_factory.mktemp("holdout"), n_holdout=2, **SMALL)


def test_holdout_leaves_other_files(holdout_root, tmp_path):
    plain = _digests(build_embedded(tmp_path / "plain", **SMALL))
    with_holdout = _digests(holdout_root)
    assert {k: v for k, v in with_holdout.items() if not k.startswith("Holdout_Set")} == plain
    assert any(k.startswith("Holdout_Set/") for k in with_holdout)


def test_holdout_people_loaded(holdout_root):
    """12 people in training data (10 + 2 public); the holdout people get IDs 013 and 014."""
    bench = load_mllmu(holdout_root, forget_split="forget_10")
    assert bench.holdout_ids == ["013", "014"]
    trained = {s.profile_id for s in bench.train_samples()}
    assert trained.isdisjoint(bench.holdout_ids)
    names = {bench.profiles[pid].name for pid in bench.profiles if pid not in bench.holdout_ids}
    for pid in bench.holdout_ids:
        profile = bench.profiles[pid]
        assert profile.name not in names
        assert [qa.question for qa in profile.qa] == ["What is the name of this person?", "Where was this person born?",
                                                      "What is this person's job?"]
        assert all(qa.fact and qa.fact in qa.answer for qa in profile.qa)


def test_statistics_match_runner(tiny_model_dir, holdout_root):
    """Answer-token log-probs equal the runner's teacher-forced ones; mu and sigma come from the same logits."""
    bench = load_mllmu(holdout_root, forget_split="forget_10")
    evaluator = Evaluator(load_model(tiny_model_dir), EvalConfig(batch_size=4))
    samples = bench.samples(bench.holdout_ids)
    stats = MembershipInference(evaluator).token_statistics(samples)
    rows = evaluator.answer_logprobs([Turn(s.question, s.answer, s.image, s.id) for s in samples])
    assert len(stats) == len(samples) == 6
    for st, row in zip(stats, rows):
        torch.testing.assert_close(st.logprobs, row["logprobs"], rtol=1e-4, atol=1e-5)
        assert st.mu.shape == st.logprobs.shape
        assert bool((st.sigma >= 0).all())
        assert bool((st.mu <= 0).all())  # mu = sum p log p is minus an entropy


def test_mia_through_runner(tiny_model_dir, holdout_root):
    """forget_10 of 10 people is 1 person with 3 QA; 2 holdout people with 3 QA each."""
    bench = load_mllmu(holdout_root, forget_split="forget_10")
    result = evaluate(load_model(tiny_model_dir), bench, EvalConfig(tasks=("mia",), batch_size=8))
    for name in MIA_SCORES:
        assert len(result["per_sample"][f"mia/forget/{name}"]) == 3
        assert len(result["per_sample"][f"mia/holdout/{name}"]) == 6
        summary = result["summary"][f"mia/{name}/mia_auc"]
        assert 0.0 <= summary["mean"] <= 1.0
        assert summary["n"] == 9
