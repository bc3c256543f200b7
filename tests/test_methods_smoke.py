"""A short run of every method on the tiny LLaVA: finite loss, logged parts, right weights changed."""

import hashlib
import json

import pytest
import torch
from safetensors.torch import load_file

from viker.methods import METHODS
from viker.methods.base import UnlearnConfig
from viker.methods.run import unlearn
from viker.models.trainable import TrainableSpec

FULL_LM = TrainableSpec(parts=("language_model", "lm_head"), lora_r=0)

EXPECTED_PARTS = {
    "ga": {"forget/loss"},
    "gd": {"forget/loss", "retain/loss"},
    "kl": {"forget/loss", "reg/kl"},
    "npo": {"forget/loss"},
    "idk": {"forget/loss", "retain/loss"},
    "idkpo": {"forget/loss", "retain/loss"},
    "simnpo": {"forget/loss"},
    "viker": {"forget/loss", "reg/kl", "viker/protected_fact_share"},
    "viker_retain": {"forget/loss", "reg/kl", "retain/loss"},
}


def _weights(folder):
    return load_file(str(folder / "model.safetensors"))


def _folder_hash(folder):
    h = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.is_file():
            h.update(path.name.encode())
            h.update(path.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_smoke(method, tiny_model_dir, tiny_benchmark, tmp_path):
    assert set(EXPECTED_PARTS) == set(METHODS)
    before_hash = _folder_hash(tiny_model_dir)
    config = UnlearnConfig(learning_rate=1e-3, batch_size=2, max_steps=2, trainable=FULL_LM)
    summary = unlearn(tiny_model_dir, tiny_benchmark, method, tmp_path / "out", config=config,
                      oracle_path=tiny_model_dir, cache_dir=tmp_path / "cache")

    assert summary["steps"] == 2
    assert summary["diverged"] is None
    assert len(summary["step_seconds"]) == 2
    assert all(0 < t <= summary["train_seconds"] for t in summary["step_seconds"])
    logged = [h for h in summary["log_history"] if "forget/loss" in h]
    assert len(logged) == 2
    for entry in logged:
        assert EXPECTED_PARTS[method] <= set(entry)
        assert all(torch.isfinite(torch.tensor(entry[k])) for k in EXPECTED_PARTS[method])

    before, after = _weights(tiny_model_dir), _weights(tmp_path / "out")
    lm_changed = [k for k in before if "language_model" in k and not torch.equal(before[k], after[k])]
    assert lm_changed, "no language-model weight changed"
    frozen = [k for k in before if "vision_tower" in k or "multi_modal_projector" in k]
    assert frozen
    for key in frozen:
        assert torch.equal(before[key], after[key]), key

    assert _folder_hash(tiny_model_dir) == before_hash  # the input model is never modified
    saved = json.loads((tmp_path / "out" / "unlearn.json").read_text())
    assert saved["method"] == method


def test_lora_keeps_base_frozen_and_saves_adapter(tiny_model_dir, tiny_benchmark, tmp_path):
    config = UnlearnConfig(learning_rate=1e-2, batch_size=2, max_steps=2,
                           trainable=TrainableSpec(lora_r=4, lora_alpha=8, gradient_checkpointing=True))
    unlearn(tiny_model_dir, tiny_benchmark, "viker", tmp_path / "merged", config=config,
            cache_dir=tmp_path / "cache")
    before, after = _weights(tiny_model_dir), _weights(tmp_path / "merged")
    assert before.keys() == after.keys()  # merged back: no LoRA keys remain
    q_proj = [k for k in before if "language_model" in k and "q_proj" in k]
    assert any(not torch.equal(before[k], after[k]) for k in q_proj)
    untouched = [k for k in before if "embed_tokens" in k or "vision_tower" in k or "lm_head" in k]
    for key in untouched:
        assert torch.equal(before[key], after[key]), key

    unlearn(tiny_model_dir, tiny_benchmark, "ga", tmp_path / "adapter", config=config,
            cache_dir=tmp_path / "cache", save_adapter=True)
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()


def test_existing_output_is_not_overwritten(tiny_model_dir, tiny_benchmark, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="already exists"):
        unlearn(tiny_model_dir, tiny_benchmark, "ga", out, cache_dir=tmp_path / "cache")
    assert (out / "keep.txt").read_text() == "user data"


def test_divergence_stops_with_last_good_weights(tiny_model_dir, tiny_benchmark, tmp_path):
    # GA's loss is a mean log-probability, so a limit below its starting magnitude trips at step 0.
    config = UnlearnConfig(learning_rate=1e-3, batch_size=2, max_steps=3, trainable=FULL_LM, loss_limit=0.01)
    summary = unlearn(tiny_model_dir, tiny_benchmark, "ga", tmp_path / "out", config=config,
                      cache_dir=tmp_path / "cache")
    assert "beyond the limit 0.01" in summary["diverged"]
    assert summary["steps"] == 0
    before, after = _weights(tiny_model_dir), _weights(tmp_path / "out")
    for key in before:
        assert torch.equal(before[key], after[key]), key


@pytest.mark.parametrize("field,value,message", [
    ("lam", 1.0, "lam"),
    ("lam", 0.5, "lam"),
    ("k", 0, "k and m must be >= 1"),
    ("direction", "sideways", "direction 'sideways' is invalid"),
    ("pool", "cats", "pool 'cats' is invalid"),
])
def test_viker_config_rejects(field, value, message):
    with pytest.raises(ValueError, match=message):
        METHODS["viker"].Config(**{field: value})
