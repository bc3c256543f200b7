"""Key-token views and the logit-gradient diagnostics."""

import math

import pytest
import torch

from viker.cli import main
from viker.keytokens import expand_compact
from viker.methods.losses import fact_template_ratio, logit_gradient_norms


def test_expand_compact_spreads_rest():
    """Top-2 of V = 5: ids [3, 0] with 0.6 and 0.3, rest 0.1 over the other 3 tokens (1/30 each)."""
    full = expand_compact(torch.tensor([[3, 0]]), torch.tensor([[0.6, 0.3]]), torch.tensor([0.1]), 5)
    expected = torch.tensor([[0.3, 0.1 / 3, 0.1 / 3, 0.6, 0.1 / 3]])
    assert torch.allclose(full, expected)
    assert full.sum().item() == pytest.approx(1.0)


def test_ga_gradient_norm_by_hand():
    """Uniform logits over V = 4, gold token 2: p = 1/4 each, g = e_y − p = (−¼, −¼, ¾, −¼).

    ‖g‖ = sqrt(3·(1/16) + 9/16) = sqrt(12/16) = 0.8660.
    """
    norms = logit_gradient_norms(torch.zeros(1, 1, 4), torch.tensor([[2]]))
    assert norms[0, 0].item() == pytest.approx(math.sqrt(12 / 16))


def test_viker_gradient_norms_by_hand():
    """Same p at two positions (uniform, V = 4, gold 0), λ = 10.

    q peaked on the gold token (q = e_0): g = (e_0 − p) + 10(p − e_0) = −9(e_0 − p), ‖g‖ = 9·0.8660.
    The sign flips: the regulariser pulls p_y back up, which is how a template token is protected.
    q flat (q = p): the regulariser vanishes and g = e_0 − p, ‖g‖ = 0.8660, GA's push alone.
    With the flat position as the fact token, fact/template = 1/9.
    """
    logits = torch.zeros(1, 2, 4)
    labels = torch.tensor([[0, 0]])
    q_ids = torch.tensor([[[0, 1, 2, 3], [0, 1, 2, 3]]])
    q_probs = torch.tensor([[[1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]]])
    q_rest = torch.zeros(1, 2)
    norms = logit_gradient_norms(logits, labels, q_ids, q_probs, q_rest, lam=10.0)
    assert norms[0, 0].item() == pytest.approx(9 * math.sqrt(12 / 16), rel=1e-5)
    assert norms[0, 1].item() == pytest.approx(math.sqrt(12 / 16), rel=1e-5)
    fact_mask = torch.tensor([[False, True]])
    assert fact_template_ratio(norms, fact_mask, labels) == pytest.approx(1 / 9, rel=1e-5)


def test_ratio_absent_without_facts():
    norms = torch.ones(1, 3)
    labels = torch.tensor([[5, 6, -100]])
    assert fact_template_ratio(norms, torch.zeros(1, 3, dtype=bool), labels) is None


def test_keytokens_cli_prints_table(tiny_model_dir, tmp_path, capsys):
    from viker.data.embedded import build_embedded

    data = build_embedded(tmp_path / "data", seed=0, n_people=10, n_public=2, image_size=32, qa_per_person=3,
                          n_reference_faces=6, test_images_per_person=1, n_reference_other=2)
    code = main(["keytokens", "--model", str(tiny_model_dir), "--data", str(data), "--samples", "2",
                 "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    out = capsys.readouterr().out
    assert "H(q)" in out and "p_orig(y)" in out and "weight" in out
    assert out.count("Q: ") == 2
    # Every answer ends with the end-of-turn token, printed as its own row.
    assert out.count("'</s>'") == 2


def test_keytokens_pool_dir(tiny_model_dir, tmp_path, capsys):
    """--pool-dir replaces the pool; a folder with fewer images than k is rejected by name."""
    from PIL import Image

    from viker.data.embedded import build_embedded

    data = build_embedded(tmp_path / "data", seed=0, n_people=10, n_public=2, image_size=32, qa_per_person=3,
                          n_reference_faces=6, test_images_per_person=1, n_reference_other=2)
    pool = tmp_path / "pool"
    pool.mkdir()
    for i in range(3):
        Image.new("RGB", (32, 32), (40 * i, 90, 200)).save(pool / f"ref{i}.png")
    args = ["keytokens", "--model", str(tiny_model_dir), "--data", str(data), "--samples", "1",
            "--cache-dir", str(tmp_path / "cache"), "--pool-dir", str(pool)]
    assert main(args + ["--k", "3"]) == 0
    assert "H(q)" in capsys.readouterr().out
    assert main(args + ["--k", "5"]) == 2
