"""A user's own profiles: JSON and JSONL, image pairing, forget split, and the shared real MLLMU-Bench text."""

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from viker.data import load_benchmark
from viker.data.errors import DataError
from viker.data.profiles import load_profiles
from viker.data.records import SetName

from conftest import SHARED_DATA as SHARED  # noqa: E402


def save_png(path: Path, colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, format="PNG")
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


CITIES = ["Riga", "Oslo", "Lima", "Perth", "Porto", "Quito", "Seoul", "Turin", "Dakar", "Hanoi"]


def profile(i: int, image: str | None = None) -> dict:
    entry = {"id": f"p{i}", "qa": [
        {"question": "What is the name of this person?", "answer": f"This person's name is Name{i} Last{i}."},
        {"question": "Where was this person born?", "answer": f"This person was born in {CITIES[i]}."},
    ]}
    if image:
        entry["image"] = image
    return entry


@pytest.fixture()
def folder(tmp_path) -> Path:
    images = tmp_path / "images"
    images.mkdir()
    for i in range(10):
        save_png(images / f"img{i}.png", (i * 20, 0, 0))
    return tmp_path


def test_json_with_named_images(folder):
    (folder / "people.json").write_text(json.dumps([profile(i, f"img{9 - i}.png") for i in range(10)]))
    bench = load_profiles(folder / "people.json", folder / "images", forget_ids=["p3"])
    assert bench.forget_ids == ["p3"]
    assert len(bench.retain_ids) == 9
    assert bench.profiles["p0"].image == (folder / "images" / "img9.png").read_bytes()
    assert bench.profiles["p4"].name == "Name4 Last4"
    assert bench.profiles["p4"].qa[1].fact == "Porto"
    assert bench.reference_pool == {}


def test_jsonl_pairs_sorted_images(folder):
    """Seven profiles without images take img0..img6 in file order; img7..img9 become reference faces."""
    lines = [json.dumps(profile(i)) for i in range(7)]
    (folder / "people.jsonl").write_text("\n".join(lines) + "\n")
    bench = load_profiles(folder / "people.jsonl", folder / "images")
    for i in range(7):
        assert bench.profiles[f"p{i}"].image == (folder / "images" / f"img{i}.png").read_bytes()
    assert len(bench.reference_pool["faces"]) == 3


def test_forget_fraction_rounds(folder):
    """10 profiles at 0.25 -> round(2.5) = 3 forgotten, drawn by seed."""
    (folder / "people.json").write_text(json.dumps([profile(i) for i in range(10)]))
    a = load_profiles(folder / "people.json", folder / "images", forget_fraction=0.25, seed=1)
    b = load_profiles(folder / "people.json", folder / "images", forget_fraction=0.25, seed=1)
    assert len(a.forget_ids) == 3
    assert a.forget_ids == b.forget_ids
    assert set(a.forget_ids).isdisjoint(a.retain_ids)
    assert len(a.eval_sets[SetName.FORGET].multiple_choice) == 3 * 3


def test_load_benchmark_dispatches_profiles(folder):
    (folder / "people.json").write_text(json.dumps([profile(i) for i in range(10)]))
    bench = load_benchmark(folder / "people.json", images=folder / "images", forget_split="forget_20")
    assert len(bench.forget_ids) == 2
    with pytest.raises(DataError, match=r"needs the folder of its portraits \(`images`, --images\)"):
        load_benchmark(folder / "people.json")


def test_too_few_images(folder):
    (folder / "people.json").write_text(json.dumps([profile(i % 10) | {"id": f"x{i}"} for i in range(11)]))
    with pytest.raises(DataError, match=r"10 images for 11 profiles .*Add images or remove profiles"):
        load_profiles(folder / "people.json", folder / "images")


@pytest.mark.skipif(not (SHARED / "mllmu-sample").is_dir(), reason="the shared MLLMU-Bench sample is not present")
def test_shared_mllmu_text_with_faces():
    """40 real profiles, 618 QA pairs; 120 portraits: the first 40 in sorted order are used, 80 are left over."""
    bench = load_profiles(SHARED / "mllmu-sample" / "ft_profiles.json", SHARED / "faces" / "images", seed=0)
    files = sorted((SHARED / "faces" / "images").iterdir())
    assert len(bench.profiles) == 40
    assert sum(len(p.qa) for p in bench.profiles.values()) == 618
    assert bench.profiles["001"].image == files[0].read_bytes()
    assert bench.profiles["002"].image == files[1].read_bytes()
    assert len(bench.reference_pool["faces"]) == 80
    assert len(bench.forget_ids) == 4
    assert bench.profiles["001"].name == "Amelia Kuznetsov"
    facts = [qa.fact for qa in bench.profiles["001"].qa]
    assert facts[:3] == ["Amelia Kuznetsov", "Riga, Latvia", "female"]
    assert "$75,000" in facts
    for qa in (qa for p in bench.profiles.values() for qa in p.qa):
        assert qa.fact is None or qa.fact in qa.answer
    for item in bench.eval_sets[SetName.RETAIN].multiple_choice:
        answer = item.options[item.key]
        assert all(v.lower() != answer.lower() for k, v in item.options.items() if k != item.key)


@pytest.mark.skipif(not (SHARED / "mllmu-sample").is_dir(), reason="the shared MLLMU-Bench sample is not present")
def test_shared_mllmu_official_forget_ids():
    known = {p["ID"] for p in json.loads((SHARED / "mllmu-sample" / "ft_profiles.json").read_text())}
    forget = [pid for pid in json.loads((SHARED / "mllmu-sample" / "forget_10_ids.json").read_text()) if pid in known]
    bench = load_profiles(SHARED / "mllmu-sample" / "ft_profiles.json", SHARED / "faces" / "images", forget_ids=forget)
    assert bench.forget_ids == ["032", "035", "044", "067", "074", "087", "124", "135", "140", "155"]
    assert len(bench.retain_ids) == 30
