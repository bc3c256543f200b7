"""MLLMU-Bench loader: round trip with the embedded benchmark, and hand-written parquet in the real layout."""

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from viker.data import load_benchmark
from viker.data.embedded import build_embedded
from viker.data.mllmu import MLLMU_SCHEMAS, load_mllmu
from viker.data.records import Modality, SetName


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return build_embedded(tmp_path_factory.mktemp("emb") / "bench", seed=0)


@pytest.fixture(scope="module")
def bench(root):
    return load_mllmu(root, forget_split="forget_10")


def test_round_trip_people_per_split(bench, root):
    """forget_10 of 50 people is 5; the retain set is the other 45; 10 public figures."""
    assert len(bench.forget_ids) == 5
    assert len(bench.retain_ids) == 45
    assert len(bench.public_ids) == 10
    assert set(bench.forget_ids).isdisjoint(bench.retain_ids)
    assert set(bench.forget_ids) == set(pq.read_table(root / "forget_10").column("ID").to_pylist())
    assert len(bench.profiles) == 60


def test_round_trip_qa_and_facts(bench):
    for profile in bench.profiles.values():
        assert len(profile.qa) == 6
        for qa in profile.qa:
            assert qa.fact
            assert qa.fact in qa.answer
        assert profile.qa[0].answer == f"This person's name is {profile.name}."
        assert profile.image is not None


def test_round_trip_test_images(bench):
    for pid in bench.forget_ids + bench.retain_ids:
        assert len(bench.profiles[pid].test_images) == 2
    assert all(bench.profiles[pid].test_images == [] for pid in bench.public_ids)
    assert all(bench.profiles[pid].public for pid in bench.public_ids)


def test_round_trip_item_counts(bench):
    """Per person: 6 image MC + 5 text MC (no text form of the name question); 6 + 5 generation; 6 + 5 cloze.
    So 11 of each per person: forget 5 x 11 = 55, test 55, retain 45 x 11 = 495, public 10 x 11 = 110."""
    expected = {SetName.FORGET: 55, SetName.TEST: 55, SetName.RETAIN: 495, SetName.PUBLIC: 110}
    for name, n in expected.items():
        eval_set = bench.eval_sets[name]
        assert len(eval_set.multiple_choice) == n, name
        assert len(eval_set.generation) == n, name
        assert len(eval_set.cloze) == n, name
        text = [item for item in eval_set.multiple_choice if item.modality is Modality.TEXT]
        assert len(text) == n // 11 * 5, name


def test_round_trip_distractors_valid(bench):
    for eval_set in bench.eval_sets.values():
        for item in eval_set.multiple_choice:
            profile = bench.profiles[item.profile_id]
            facts = {qa.fact for qa in profile.qa}
            assert sorted(item.options) == ["A", "B", "C", "D"]
            assert item.options[item.key] in facts
            assert len({v.lower() for v in item.options.values()}) == 4


def test_round_trip_modality_images(bench):
    forget = bench.eval_sets[SetName.FORGET]
    test = bench.eval_sets[SetName.TEST]
    for item in forget.multiple_choice + forget.cloze + forget.generation:
        if item.modality is Modality.TEXT:
            assert item.image is None
            assert bench.profiles[item.profile_id].name in (item.question if hasattr(item, "question") else item.text)
        else:
            assert item.image == bench.profiles[item.profile_id].image
    for item in test.generation:
        if item.modality is Modality.IMAGE_TEXT:
            assert item.image == bench.profiles[item.profile_id].test_images[0]


def test_round_trip_cloze_and_generation(bench):
    for item in bench.eval_sets[SetName.RETAIN].cloze:
        assert item.text.count("__") == 1
        assert item.answer in {qa.fact for qa in bench.profiles[item.profile_id].qa}
    for item in bench.eval_sets[SetName.RETAIN].generation:
        assert item.fact is not None
        assert item.fact in item.answer


def test_test_set_questions_paraphrased(bench):
    forget_questions = {i.question for i in bench.eval_sets[SetName.FORGET].generation}
    test_questions = {i.question for i in bench.eval_sets[SetName.TEST].generation}
    assert forget_questions.isdisjoint(test_questions)


def test_reference_pool_loaded(bench):
    assert {k: len(v) for k, v in bench.reference_pool.items()} == {"faces": 24, "nonperson": 8, "noise": 8, "blank": 4}


def test_other_forget_split(root):
    bench = load_mllmu(root, forget_split="forget_15")
    assert len(bench.forget_ids) == 8
    assert len(bench.retain_ids) == 42


def test_load_benchmark_dispatches_mllmu(root):
    bench = load_benchmark(root, forget_split="forget_5")
    assert bench.name == "mllmu:bench"
    assert len(bench.forget_ids) == 3


def test_fingerprint_stable_across_loads(root, bench):
    assert load_mllmu(root).fingerprint() == bench.fingerprint()


# ------------------------------------------------------------- hand-written parquet in the real layout


def png(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, format="PNG")
    return buf.getvalue()


def write(folder: Path, rows: list[dict], schema=None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=schema) if schema is not None else pa.Table.from_pylist(rows)
    pq.write_table(table, folder / "train-00000-of-00001.parquet")


CITIES = {"001": "Riga, Latvia", "002": "Oslo, Norway", "003": "Lima, Peru", "004": "Porto, Portugal"}
NAMES = {"001": "Amelia Kuznetsov", "002": "Bruno Almeida", "003": "Chiara Brandt", "004": "Dmitri Dubois"}
COLOURS = {"001": (255, 0, 0), "002": (0, 255, 0), "003": (0, 0, 255), "004": (9, 9, 9)}


def eval_row(pid: str) -> dict:
    return {
        "image": {"bytes": png(COLOURS[pid]), "path": f"{pid}.png"},
        "ID": pid,
        "biography": json.dumps({"Name": NAMES[pid], "Born": CITIES[pid]}),
        "Classification_Task": {
            "Image_Textual_Questions": [{"Question": "Where was this person born?",
                                         "Options": {"A": "Kyiv", "B": CITIES[pid], "C": "Quito", "D": "Perth"},
                                         "Correct_Answer": "B"}],
            "Pure_Text_Questions": [],
        },
        "Generation_Task": [{"Question": "Where was this person born?", "Ground_Truth": f"This person was born in {CITIES[pid]}.", "Type": "Image_Textual"},
                            {"Question": f"Where was {NAMES[pid]} born?", "Ground_Truth": f"{NAMES[pid]} was born in {CITIES[pid]}.", "Type": "Pure_Text"}],
        "Mask_Task": [{"Question": "This person was born in __.", "Ground_Truth": CITIES[pid], "Type": "Image_Textual"}],
    }


def train_row(pid: str) -> dict:
    """A training row as the real download has it: no ID column, no Fact key, matched to Full_Set by image bytes."""
    metadata = [{"Question": "What is the name of this person?", "Answer": f"This person's name is {NAMES[pid]}."},
                {"Question": "Where was this person born?", "Answer": f"This person was born in {CITIES[pid]}."}]
    return {"image": {"bytes": png(COLOURS[pid]), "path": None}, "metadata": json.dumps(metadata)}


@pytest.fixture()
def real_layout(tmp_path) -> Path:
    ids = ["001", "002", "003", "004"]
    write(tmp_path / "Full_Set", [eval_row(pid) for pid in ids])
    test_rows = []
    for pid in ids:
        row = eval_row(pid)
        del row["image"]
        row["images"] = [{"bytes": png((1, 2, 3)), "path": "a.png"}, {"bytes": png((4, 5, 6)), "path": "b.png"}]
        test_rows.append(row)
    write(tmp_path / "Test_Set", test_rows)
    write(tmp_path / "ft_Data", [train_row(pid) for pid in ids])
    write(tmp_path / "forget_10", [eval_row("002")])
    write(tmp_path / "retain_90", [eval_row(pid) for pid in ("001", "003", "004")])
    return tmp_path


def test_real_layout_matches_rows_by_image(real_layout):
    bench = load_mllmu(real_layout)
    assert bench.forget_ids == ["002"]
    assert bench.retain_ids == ["001", "003", "004"]
    assert bench.public_ids == []
    assert bench.reference_pool == {}
    assert [qa.question for qa in bench.profiles["003"].qa] == ["What is the name of this person?", "Where was this person born?"]


def test_real_layout_derives_facts(real_layout):
    """Peers "This person was born in Oslo, Norway." etc. share the 5-word template, leaving "Lima, Peru"."""
    profile = load_mllmu(real_layout).profiles["003"]
    assert [qa.fact for qa in profile.qa] == ["Chiara Brandt", "Lima, Peru"]
    assert profile.name == "Chiara Brandt"
    assert profile.biography == {"Name": "Chiara Brandt", "Born": "Lima, Peru"}


def test_real_layout_items(real_layout):
    bench = load_mllmu(real_layout)
    forget = bench.eval_sets[SetName.FORGET]
    assert len(forget.multiple_choice) == 1
    assert forget.multiple_choice[0].key == "B"
    assert forget.multiple_choice[0].options["B"] == "Oslo, Norway"
    assert [g.modality for g in forget.generation] == [Modality.IMAGE_TEXT, Modality.TEXT]
    assert forget.generation[1].image is None
    assert forget.generation[0].fact == "Oslo, Norway"
    assert forget.cloze[0].answer == "Oslo, Norway"
    test = bench.eval_sets[SetName.TEST]
    assert test.multiple_choice[0].image == png((1, 2, 3))
    assert len(bench.profiles["002"].test_images) == 2
    assert len(bench.eval_sets[SetName.RETAIN].multiple_choice) == 3


def test_ft_data_only_derives_items(tmp_path):
    """Without Full_Set, people come from ft_Data (IDs from an ID column) and items are derived."""
    rows = [dict(train_row(pid), ID=pid) for pid in ("001", "002", "003", "004")]
    write(tmp_path / "ft_Data", rows, MLLMU_SCHEMAS["train"])
    write(tmp_path / "baseline_train_split" / "forget_10", [rows[0]], MLLMU_SCHEMAS["train"])
    bench = load_mllmu(tmp_path, seed=3)
    assert bench.forget_ids == ["001"]
    assert bench.retain_ids == ["002", "003", "004"]
    forget = bench.eval_sets[SetName.FORGET]
    # name question: image MC only; birthplace question: image MC and text MC naming the person
    assert len(forget.multiple_choice) == 3
    assert any(item.question == "Where was Amelia Kuznetsov born?" for item in forget.multiple_choice)


def test_shared_real_text_as_ft_data(tmp_path):
    """The 40 real MLLMU-Bench training profiles, written as an ft_Data parquet, load with derived facts."""
    from conftest import SHARED_DATA

    source = SHARED_DATA / "mllmu-sample"
    if not source.is_dir():
        pytest.skip("the shared MLLMU-Bench sample is not present")
    profiles = json.loads((source / "ft_profiles.json").read_text())
    rows = [{"image": {"bytes": png((i, i, i)), "path": None}, "ID": p["ID"], "metadata": json.dumps(p["metadata"])}
            for i, p in enumerate(profiles)]
    write(tmp_path / "ft_Data", rows, MLLMU_SCHEMAS["train"])
    known = {p["ID"] for p in profiles}
    forget = [pid for pid in json.loads((source / "forget_10_ids.json").read_text()) if pid in known]
    write(tmp_path / "forget_10", [{"ID": pid} for pid in forget])
    bench = load_mllmu(tmp_path)
    assert len(bench.profiles) == 40
    assert bench.forget_ids == ["032", "035", "044", "067", "074", "087", "124", "135", "140", "155"]
    assert sum(len(p.qa) for p in bench.profiles.values()) == 618
    assert bench.profiles["001"].name == "Amelia Kuznetsov"
    assert bench.profiles["001"].qa[1].fact == "Riga, Latvia"
    assert len(bench.eval_sets[SetName.FORGET].multiple_choice) > 0


def test_load_benchmark_embedded_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VIKER_CACHE", str(tmp_path))
    bench = load_benchmark("embedded", seed=0)
    assert (tmp_path / "embedded-seed0" / "COMPLETE").is_file()
    assert len(bench.forget_ids) == 5
    assert len(bench.holdout_ids) == 5
    assert not set(bench.holdout_ids) & {s.profile_id for s in bench.train_samples()}
    assert load_benchmark("embedded", seed=0).fingerprint() == bench.fingerprint()


def test_embedded_cache_from_older_default_is_rebuilt(tmp_path, monkeypatch):
    """A folder whose marker names other build settings (here: no holdout people) is generated again."""
    from viker.data.embedded import build_embedded

    monkeypatch.setenv("VIKER_CACHE", str(tmp_path))
    folder = build_embedded(tmp_path / "embedded-seed0", seed=0)
    (folder / "COMPLETE").write_text("written by viker.data.embedded.build_embedded\n")
    assert load_benchmark(str(folder)).holdout_ids == []
    assert len(load_benchmark("embedded", seed=0).holdout_ids) == 5


def test_text_only_generation_fact_is_not_the_name(tmp_path):
    """ "Where was Anouk Castellano born?" → "Anouk Castellano was born in Lyon.": the fact is the city."""
    from viker.data.embedded import build_embedded
    from viker.data.records import Modality, SetName

    bench = load_mllmu(build_embedded(tmp_path / "emb", seed=0, n_people=10, n_public=2, image_size=32))
    checked = 0
    for item in bench.eval_sets[SetName.FORGET].generation:
        if item.modality is Modality.TEXT:
            name = bench.profiles[item.profile_id].name
            assert item.fact is not None
            assert item.fact != name
            assert item.fact in item.answer
            checked += 1
    assert checked > 0
