"""ViKeR on a memorised tiny LLaVA: the behaviour its fixed point predicts. Slow (about 6 minutes).

Run with `python -m pytest -m slow tests/test_slow_viker.py`. The vanilla model is
fine-tuned on the embedded benchmark to the accuracy target first.

At one position ViKeR settles at p_y = max(0, (λ·q_y − 1)/(λ − 1)): a token with
q_y > 1/λ is protected. With q from the true image, fact tokens keep q_y ≈ p_y ≈ 1,
so nothing is forgotten; with unseen reference faces, fact tokens get a flat q
(q_y ≪ 1/λ) and are forgotten while template tokens (q_y ≈ 1) stay.
"""

import pytest

from viker.data import load_benchmark
from viker.eval.runner import EvalConfig, evaluate
from viker.methods.base import UnlearnConfig
from viker.methods.run import unlearn
from viker.methods.viker import ViKeRConfig
from viker.models.finetune import FinetuneConfig, finetune
from viker.models.loading import load_model
from viker.models.tiny import build_tiny_llava
from viker.models.trainable import TrainableSpec

pytestmark = pytest.mark.slow

UNLEARN = UnlearnConfig(learning_rate=1e-4, batch_size=6, max_steps=60,
                        trainable=TrainableSpec(parts=("language_model", "lm_head"), lora_r=0))
TOKENS = EvalConfig(sets=("forget",), tasks=("tokens",))


@pytest.fixture(scope="module")
def memorised(tmp_path_factory):
    benchmark = load_benchmark("embedded")
    root = tmp_path_factory.mktemp("slow")
    base = build_tiny_llava([f"{s.question} {s.answer}" for s in benchmark.train_samples()], root / "base")
    summary = finetune(base, benchmark.train_samples(), root / "vanilla", FinetuneConfig())
    return benchmark, root, summary


def _forget_tokens(path, benchmark):
    summary = evaluate(load_model(path), benchmark, TOKENS)["summary"]
    return summary["forget/image_text/fact_token_acc"]["mean"], summary["forget/image_text/template_token_acc"]["mean"]


def test_vanilla_reaches_accuracy_target(memorised):
    benchmark, root, summary = memorised
    assert summary["token_accuracy"] >= 0.95
    fact, template = _forget_tokens(root / "vanilla", benchmark)
    assert fact >= 0.8
    assert template >= 0.95


def test_true_image_targets_forget_nothing(memorised):
    benchmark, root, _ = memorised
    unlearn(root / "vanilla", benchmark, "viker", root / "true", method_config=ViKeRConfig(lam=3.0, pool="true_image"),
            config=UNLEARN, cache_dir=root / "cache")
    fact, template = _forget_tokens(root / "true", benchmark)
    assert fact >= 0.8
    assert template >= 0.95


def test_reference_faces_forget_facts_keep_templates(memorised):
    benchmark, root, _ = memorised
    summary = unlearn(root / "vanilla", benchmark, "viker", root / "faces", method_config=ViKeRConfig(),
                      config=UNLEARN, cache_dir=root / "cache")
    fact, template = _forget_tokens(root / "faces", benchmark)
    assert fact <= 0.3
    assert template >= 0.9
    shares = [h["viker/protected_fact_share"] for h in summary["log_history"] if "viker/protected_fact_share" in h]
    assert max(shares) < 0.5  # most fact tokens have q_y below 1/λ, so they are not protected
