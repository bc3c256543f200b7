"""ViKeR on a memorised tiny LLaVA: the behaviour its fixed point predicts. Slow (about 3 minutes).

Run with `python -m pytest -m slow tests/test_slow_viker.py`. The vanilla model is
fine-tuned on the embedded benchmark to the accuracy target first.

At one position ViKeR settles at p_y = max(0, (λ·q_y − 1)/(λ − 1)): a token with
q_y > 1/λ is protected. With q from the true image, fact tokens keep q_y = p_orig(y);
with unseen reference faces they get a flat q (q_y ≪ 1/λ) and are forgotten, while
template tokens (q_y ≈ 1) stay either way.
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


def _mean_protected_share(summary):
    shares = [h["viker/protected_fact_share"] for h in summary["log_history"] if "viker/protected_fact_share" in h]
    return sum(shares) / len(shares)


def test_reference_faces_forget_more_than_true_image(memorised):
    """Visual guidance is what makes ViKeR forget.

    With q from the true image, q_y = p_orig(y) on fact tokens, so every fact token the
    vanilla model is confident about (p_orig(y) > 1/λ) is protected. The tiny vanilla model
    stops training at 97 % token accuracy and gives many fact tokens p_orig(y) well below 1,
    so some are still forgotten; reference faces give fact tokens a flat q and forget more.
    Template tokens stay in both cases.
    """
    benchmark, root, _ = memorised
    true = unlearn(root / "vanilla", benchmark, "viker", root / "true",
                   method_config=ViKeRConfig(lam=3.0, pool="true_image"), config=UNLEARN, cache_dir=root / "cache")
    faces = unlearn(root / "vanilla", benchmark, "viker", root / "faces", method_config=ViKeRConfig(lam=3.0),
                    config=UNLEARN, cache_dir=root / "cache")
    fact_true, template_true = _forget_tokens(root / "true", benchmark)
    fact_faces, template_faces = _forget_tokens(root / "faces", benchmark)
    assert fact_faces <= 0.3
    assert fact_true >= fact_faces + 0.15
    assert template_true >= 0.9
    assert template_faces >= 0.9
    assert _mean_protected_share(true) > _mean_protected_share(faces)
