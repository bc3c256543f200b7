"""Bad input: each case raises DataError (a ValueError) naming the file, the row and the field."""

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from viker.data.errors import DataError
from viker.data.mllmu import load_mllmu
from viker.data.profiles import load_profiles

SHARD = "train-00000-of-00001.parquet"


def png(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, format="PNG")
    return buf.getvalue()


def write(folder: Path, rows: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / SHARD)


def eval_row(pid: str, colour=(1, 1, 1)) -> dict:
    return {
        "image": {"bytes": png(colour), "path": f"{pid}.png"},
        "ID": pid,
        "biography": json.dumps({"Name": f"Person {pid}"}),
        "Classification_Task": {"Image_Textual_Questions": [], "Pure_Text_Questions": []},
        "Generation_Task": [{"Question": "Where was this person born?", "Ground_Truth": f"This person was born in City{pid}.", "Type": "Image_Textual"}],
        "Mask_Task": [{"Question": "This person was born in __.", "Ground_Truth": f"City{pid}", "Type": "Image_Textual"}],
    }


def layout(root: Path, rows: list[dict], forget=("002",), retain=None) -> Path:
    write(root / "Full_Set", rows)
    write(root / "forget_10", [{"ID": pid} for pid in forget])
    if retain is not None:
        write(root / "retain_90", [{"ID": pid} for pid in retain])
    return root


def good_rows() -> list[dict]:
    return [eval_row(f"00{i}", (i, i, i)) for i in range(1, 5)]


def test_valid_layout_loads(tmp_path):
    bench = load_mllmu(layout(tmp_path, good_rows()))
    assert bench.forget_ids == ["002"]
    assert bench.retain_ids == ["001", "003", "004"]


def test_error_is_value_error():
    assert issubclass(DataError, ValueError)


def test_corrupt_image_bytes(tmp_path):
    rows = good_rows()
    rows[2]["image"]["bytes"] = b"not an image"
    with pytest.raises(DataError, match=r"Full_Set/train-00000-of-00001.parquet, row 2, field 'image': the image bytes could not be decoded.*valid PNG or JPEG"):
        load_mllmu(layout(tmp_path, rows))


def test_missing_image_bytes(tmp_path):
    rows = good_rows()
    rows[1]["image"]["bytes"] = None
    with pytest.raises(DataError, match=r"row 1, field 'image': the image bytes are missing"):
        load_mllmu(layout(tmp_path, rows))


def test_missing_column(tmp_path):
    rows = good_rows()
    for row in rows:
        del row["Mask_Task"]
    with pytest.raises(DataError, match=r"Full_Set/train-00000-of-00001.parquet: the column 'Mask_Task' is missing"):
        load_mllmu(layout(tmp_path, rows))


def test_unparsable_json(tmp_path):
    rows = good_rows()
    rows[3]["biography"] = "{not json"
    with pytest.raises(DataError, match=r"row 3, field 'biography': the JSON string could not be parsed"):
        load_mllmu(layout(tmp_path, rows))


def test_unparsable_metadata(tmp_path):
    root = layout(tmp_path, good_rows())
    write(root / "ft_Data", [{"image": {"bytes": png((1, 1, 1)), "path": None}, "ID": "001", "metadata": "[{"}])
    with pytest.raises(DataError, match=r"ft_Data/train-00000-of-00001.parquet, row 0, field 'metadata': the JSON string could not be parsed"):
        load_mllmu(root)


def test_empty_answer_in_ft_data(tmp_path):
    root = layout(tmp_path, good_rows())
    metadata = [{"Question": "Where was this person born?", "Answer": "  "}]
    write(root / "ft_Data", [{"image": {"bytes": png((1, 1, 1)), "path": None}, "ID": "001", "metadata": json.dumps(metadata)}])
    with pytest.raises(DataError, match=r"row 0, field 'metadata\[0\]': the question or answer is empty"):
        load_mllmu(root)


def test_empty_ground_truth(tmp_path):
    rows = good_rows()
    rows[0]["Generation_Task"][0]["Ground_Truth"] = ""
    rows[0]["Generation_Task"].append({"Question": "Where does this person live?", "Ground_Truth": "In Oslo.", "Type": "Image_Textual"})
    with pytest.raises(DataError, match=r"row 0, field 'Generation_Task\[0\]': the Question or Ground_Truth is empty"):
        load_mllmu(layout(tmp_path, rows))


def test_duplicate_id(tmp_path):
    rows = good_rows()
    rows[3]["ID"] = "002"
    with pytest.raises(DataError, match=r"row 3, field 'ID': the ID '002' repeats Full_Set row 1"):
        load_mllmu(layout(tmp_path, rows))


def test_split_names_unknown_id(tmp_path):
    with pytest.raises(DataError, match=r"forget_10/train-00000-of-00001.parquet, row 1, field 'ID': the ID '999' names no person"):
        load_mllmu(layout(tmp_path, good_rows(), forget=("002", "999")))


def test_cloze_without_blank(tmp_path):
    rows = good_rows()
    rows[1]["Mask_Task"][0]["Question"] = "This person was born in a city."
    with pytest.raises(DataError, match=r"row 1, field 'Mask_Task\[0\]': the cloze question 'This person was born in a city.' has no blank"):
        load_mllmu(layout(tmp_path, rows))


def test_forget_retain_overlap(tmp_path):
    with pytest.raises(DataError, match=r"the IDs \['002'\] are in both forget_10 and retain_90"):
        load_mllmu(layout(tmp_path, good_rows(), retain=("001", "002")))


def test_missing_split_folder(tmp_path):
    with pytest.raises(DataError, match=r"the split folder 'forget_5' was not found \(found \['forget_10'\]\)"):
        load_mllmu(layout(tmp_path, good_rows()), forget_split="forget_5")


def test_invalid_answer_letter(tmp_path):
    rows = good_rows()
    rows[0]["Classification_Task"]["Image_Textual_Questions"] = [
        {"Question": "Where?", "Options": {"A": "x", "B": "y", "C": "z", "D": "w"}, "Correct_Answer": "E"}]
    with pytest.raises(DataError, match=r"row 0, field 'Classification_Task.Image_Textual_Questions\[0\]': the answer 'E' is not one of"):
        load_mllmu(layout(tmp_path, rows))


# ------------------------------------------------------------- profile files


@pytest.fixture()
def images(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.png").write_bytes(png((i, 0, 0)))
    return folder


def qa(answer="This person was born in Riga."):
    return [{"question": "Where was this person born?", "answer": answer}]


def test_profile_empty_answer(tmp_path, images):
    (tmp_path / "p.json").write_text(json.dumps([{"id": "a", "qa": qa()}, {"id": "b", "qa": qa("")}]))
    with pytest.raises(DataError, match=r"p.json, row 1, field 'qa\[0\]': the question or answer is empty"):
        load_profiles(tmp_path / "p.json", images)


def test_profile_duplicate_id(tmp_path, images):
    (tmp_path / "p.json").write_text(json.dumps([{"id": "a", "qa": qa()}, {"id": "a", "qa": qa()}]))
    with pytest.raises(DataError, match=r"p.json, row 1, field 'id': the id 'a' repeats an earlier profile"):
        load_profiles(tmp_path / "p.json", images)


def test_profile_bad_jsonl_line(tmp_path, images):
    (tmp_path / "p.jsonl").write_text(json.dumps({"id": "a", "qa": qa()}) + "\n{oops\n")
    with pytest.raises(DataError, match=r"p.jsonl, row 2: the line is not valid JSON"):
        load_profiles(tmp_path / "p.jsonl", images)


def test_profile_corrupt_image(tmp_path, images):
    (images / "bad.png").write_bytes(b"\x89PNG broken")
    (tmp_path / "p.json").write_text(json.dumps([{"id": "a", "image": "0.png", "qa": qa()}, {"id": "b", "image": "bad.png", "qa": qa()}]))
    with pytest.raises(DataError, match=r"p.json, row 1, field 'image'.*bad.png.*could not be decoded"):
        load_profiles(tmp_path / "p.json", images)


def test_profile_missing_image(tmp_path, images):
    (tmp_path / "p.json").write_text(json.dumps([{"id": "a", "image": "nope.png", "qa": qa()}]))
    with pytest.raises(DataError, match=r"row 0, field 'image': the image .*nope.png was not found"):
        load_profiles(tmp_path / "p.json", images)


def test_profile_unknown_forget_id(tmp_path, images):
    (tmp_path / "p.json").write_text(json.dumps([{"id": "a", "qa": qa()}, {"id": "b", "qa": qa()}]))
    with pytest.raises(DataError, match=r"the forget IDs \['z'\] name no profile"):
        load_profiles(tmp_path / "p.json", images, forget_ids=["z"])
