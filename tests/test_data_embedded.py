"""The embedded benchmark: determinism, layout, and faces that stay distinct."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from viker.data.embedded import FACTS, build_embedded, split_size
from viker.data.errors import DataError
from viker.data.records import decode_image


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    return build_embedded(tmp_path_factory.mktemp("emb") / "bench", seed=0)


def test_embedded_same_bytes_for_seed(built, tmp_path):
    again = build_embedded(tmp_path / "again", seed=0)
    assert _digests(built) == _digests(again)


def test_embedded_other_seed_differs(built, tmp_path):
    other = build_embedded(tmp_path / "other", seed=1, n_people=10, n_public=2, n_reference_faces=2)
    first = pq.read_table(built / "Full_Set").column("biography").to_pylist()[0]
    assert pq.read_table(other / "Full_Set").column("biography").to_pylist()[0] != first


def test_embedded_config_folders(built):
    expected = {"Full_Set", "Test_Set", "Retain_Set", "ft_Data", "forget_5", "forget_10", "forget_15",
                "retain_95", "retain_90", "retain_85", "baseline_train_split", "reference_pool", "clear"}
    assert {p.name for p in built.iterdir()} == expected
    assert (built / "Full_Set" / "train-00000-of-00001.parquet").is_file()


def test_embedded_row_counts(built):
    """50 people, 10 public; forget_5 = round(2.5) = 3, forget_10 = 5, forget_15 = round(7.5) = 8."""
    assert pq.read_table(built / "Full_Set").num_rows == 50
    assert pq.read_table(built / "Retain_Set").num_rows == 10
    assert pq.read_table(built / "Test_Set").num_rows == 50
    assert pq.read_table(built / "ft_Data").num_rows == 60
    for forget, retain, k in (("forget_5", "retain_95", 3), ("forget_10", "retain_90", 5), ("forget_15", "retain_85", 8)):
        assert pq.read_table(built / forget).num_rows == k
        assert pq.read_table(built / retain).num_rows == 50 - k
        assert pq.read_table(built / "baseline_train_split" / forget).num_rows == k


def test_split_size_rounds_half_up():
    assert split_size(5, 50) == 3
    assert split_size(10, 50) == 5
    assert split_size(1, 50) == 1
    assert split_size(15, 50) == 8


def test_embedded_forget_splits_nest(built):
    ids = {name: set(pq.read_table(built / name).column("ID").to_pylist()) for name in ("forget_5", "forget_10", "forget_15")}
    assert ids["forget_5"] < ids["forget_10"] < ids["forget_15"]


def test_embedded_reference_pool_counts(built):
    counts = {kind: len(list((built / "reference_pool" / kind).glob("*.png"))) for kind in ("faces", "nonperson", "noise", "blank")}
    assert counts == {"faces": 24, "nonperson": 8, "noise": 8, "blank": 4}


def test_embedded_image_size(built):
    row = pq.read_table(built / "Full_Set").to_pylist()[0]
    assert decode_image(row["image"]["bytes"]).size == (48, 48)


def _pixels(data: bytes, size: int) -> np.ndarray:
    return np.asarray(decode_image(data).resize((size, size)), dtype=np.float32)


def test_embedded_portraits_distinct_at_32px(built):
    """Every pair of portraits differs by a mean absolute pixel value of at least 8 (of 255) at 32 px."""
    rows = pq.read_table(built / "Full_Set").to_pylist() + pq.read_table(built / "Retain_Set").to_pylist()
    images = [_pixels(r["image"]["bytes"], 32) for r in rows]
    closest = min(np.abs(a - b).mean() for i, a in enumerate(images) for b in images[i + 1:])
    assert closest >= 8.0


def test_embedded_test_view_closer_than_others(built):
    """A person's test portrait is nearer (mean absolute pixel difference) to their own portrait than to most others'."""
    full = {r["ID"]: _pixels(r["image"]["bytes"], 32) for r in pq.read_table(built / "Full_Set").to_pylist()}
    test = {r["ID"]: _pixels(r["images"][0]["bytes"], 32) for r in pq.read_table(built / "Test_Set").to_pylist()}
    ranks = []
    for pid, view in test.items():
        distances = sorted((np.abs(view - img).mean(), other) for other, img in full.items())
        ranks.append([other for _, other in distances].index(pid))
    assert np.median(ranks) == 0
    assert all(len(row["images"]) == 2 for row in pq.read_table(built / "Test_Set").to_pylist())


def test_embedded_unique_names(built):
    biographies = pq.read_table(built / "Full_Set").column("biography").to_pylist()
    names = [json.loads(text)["name"] for text in biographies]
    assert len(names) == 50
    assert len(set(names)) == 50


def test_embedded_rejects_bad_counts(tmp_path):
    with pytest.raises(DataError, match="qa_per_person=12"):
        build_embedded(tmp_path, qa_per_person=len(FACTS) + 1)
    with pytest.raises(DataError, match="n_people=2"):
        build_embedded(tmp_path, n_people=2)
