"""Test settings shared by every test: offline, deterministic, small."""

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Real benchmark text and portraits for tests, kept beside the checkout (never needed by viker itself).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_benchmark(tmp_path_factory):
    """A 10-person embedded benchmark (forget_10 = 1 person), 3 QA each, 32 px portraits."""
    from viker.data import load_benchmark
    from viker.data.embedded import build_embedded

    root = build_embedded(tmp_path_factory.mktemp("bench"), seed=0, n_people=10, n_public=2, image_size=32,
                          qa_per_person=3, n_reference_faces=6, test_images_per_person=1, n_reference_other=2)
    return load_benchmark(root, forget_split="forget_10")


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_benchmark, tmp_path_factory):
    """An untrained tiny LLaVA whose tokenizer was trained on the tiny benchmark's text."""
    from viker.models.tiny import build_tiny_llava

    texts = [f"{s.question} {s.answer}" for s in tiny_benchmark.train_samples()]
    return build_tiny_llava(texts, tmp_path_factory.mktemp("models") / "tiny", text_hidden=64, text_layers=2,
                            vision_hidden=32, vocab_size=400)
