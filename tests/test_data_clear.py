"""CLEAR loader on the embedded benchmark's CLEAR folder."""

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from viker.data import load_benchmark
from viker.data.clear import load_clear
from viker.data.embedded import build_embedded
from viker.data.records import SetName


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return build_embedded(tmp_path_factory.mktemp("emb") / "bench", seed=0, n_people=20, n_public=4, n_reference_faces=2)


def test_clear_configs(root):
    names = {p.name for p in (root / "clear").iterdir()}
    assert {"full", "forget01", "forget05", "forget10", "retain99", "retain95", "retain90",
            "forget10_perturbed", "retain90_perturbed", "real_faces", "real_world"} <= names
    columns = pq.read_table(root / "clear" / "forget10_perturbed").column_names
    assert columns == ["image", "caption", "name", "paraphrased_caption", "perturbed_captions", "perturbed_names"]


def test_clear_split_counts(root):
    """20 people, 3 images each (portrait + 2 test views); forget10 = 2 people, 6 captions; retain90 = 18 people."""
    bench = load_clear(root / "clear", forget_split="forget10")
    assert len(bench.profiles) == 20 + 4 + 4  # people, real_faces rows, real_world rows
    assert len(bench.forget_ids) == 2
    assert len(bench.retain_ids) == 18
    assert len(bench.eval_sets[SetName.FORGET].captions) == 6
    assert len(bench.eval_sets[SetName.RETAIN].captions) == 54
    assert len(bench.profiles[bench.forget_ids[0]].test_images) == 2


def test_clear_caption_fields(root):
    bench = load_clear(root / "clear")
    for item in bench.eval_sets[SetName.FORGET].captions:
        profile = bench.profiles[item.profile_id]
        assert item.name == profile.name
        assert item.caption.startswith(f"{profile.name}, a ")
        assert item.paraphrase.startswith(f"This photo shows {profile.name}")
        assert len(item.perturbed) == 4
        assert item.caption not in item.perturbed
        assert len(item.perturbed_names) == 4
        assert profile.name not in item.perturbed_names


def test_clear_public_multiple_choice(root):
    bench = load_clear(root / "clear")
    public = bench.eval_sets[SetName.PUBLIC].multiple_choice
    assert len(public) == 8  # 4 real_faces + 4 real_world
    for item in public:
        assert sorted(item.options) == ["A", "B", "C", "D"]
        assert bench.profiles[item.profile_id].public
    faces = [m for m in public if m.question == "What is the name of this person?"]
    assert all(bench.profiles[m.profile_id].name == m.options[m.key] for m in faces)


def test_clear_forget_split_nested(root):
    one = load_clear(root / "clear", forget_split="forget01").forget_ids
    five = load_clear(root / "clear", forget_split="forget05").forget_ids
    assert len(one) == 1
    assert set(one) <= set(five)


def test_load_benchmark_dispatches_clear(root):
    bench = load_benchmark(root / "clear", forget_split="forget_5")
    assert bench.name == "clear:clear"
    assert len(bench.forget_ids) == 1
