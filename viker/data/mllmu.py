"""Load MLLMU-Bench (Liu et al., "Protecting Privacy in Multimodal Large Language Models with MLLMU-Bench", NAACL 2025).

Layout, as `huggingface-cli download MLLMMU/MLLMU-Bench --repo-type dataset`
writes it: one folder per config holding parquet shards.

- `Full_Set` (fictitious people), `Retain_Set` (celebrities), and the subsets
  `forget_5/10/15`, `retain_95/90/85` of `Full_Set`: columns `image` (struct
  `bytes`, `path`), `ID` (3-digit string), `biography` (a JSON string),
  `Classification_Task` (struct of `Image_Textual_Questions` and
  `Pure_Text_Questions`, each a list of `{Question, Options{A,B,C,D},
  Correct_Answer}` with the answer as a letter), `Generation_Task` and
  `Mask_Task` (lists of `{Question, Ground_Truth, Type}`, `Type` being
  `Image_Textual` or `Pure_Text`, cloze blanks written `__`).
- `Test_Set`: the same people with `images` (a list of image structs) instead
  of `image`, and paraphrased questions.
- `ft_Data` and `baseline_train_split/{forget_N,retain_N}`: `image` and
  `metadata`, a JSON string holding a list of `{Question, Answer}`.
- `Holdout_Set` (viker's addition, optional): people in the `Full_Set` schema
  who are in no training split. Their image-grounded generation items become
  their QA, and they are the non-members of membership inference.

Assumptions:
    Training rows are matched to people by an `ID` column, else by an `ID` key
    in their metadata entries, else by identical image bytes in `Full_Set` or
    `Retain_Set`. `viker.data.embedded` writes an `ID` column and adds a `Fact`
    key to each metadata entry; for rows without it the fact span is derived
    (`viker.data.derive`). The forget split is read from the `forget_N` folder
    (its `ID` column), else from `baseline_train_split/forget_N`. When
    `Full_Set` is absent, evaluation items are derived from the training QA.
    Public figures whose ID also names a fictitious person get the id
    `public-<ID>`.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from viker.data import derive
from viker.data.errors import DataError, data_error
from viker.data.records import (
    QA,
    Benchmark,
    Cloze,
    EvalSet,
    Generation,
    Modality,
    MultipleChoice,
    Profile,
    SetName,
    decode_image,
)

FORGET_PERCENTS = (5, 10, 15)
SHARD_NAME = "train-00000-of-00001.parquet"
HOLDOUT_CONFIG = "Holdout_Set"
REFERENCE_KINDS = ("faces", "nonperson", "noise", "blank")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MODALITY_BY_TYPE = {"Image_Textual": Modality.IMAGE_TEXT, "Pure_Text": Modality.TEXT}

_IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
_MC = pa.struct([
    ("Question", pa.string()),
    ("Options", pa.struct([(letter, pa.string()) for letter in "ABCD"])),
    ("Correct_Answer", pa.string()),
])
_OPEN = pa.struct([("Question", pa.string()), ("Ground_Truth", pa.string()), ("Type", pa.string())])
_TASKS = [
    ("Classification_Task", pa.struct([("Image_Textual_Questions", pa.list_(_MC)), ("Pure_Text_Questions", pa.list_(_MC))])),
    ("Generation_Task", pa.list_(_OPEN)),
    ("Mask_Task", pa.list_(_OPEN)),
]
MLLMU_SCHEMAS = {
    "eval": pa.schema([("image", _IMAGE), ("ID", pa.string()), ("biography", pa.string()), *_TASKS]),
    "test": pa.schema([("images", pa.list_(_IMAGE)), ("ID", pa.string()), ("biography", pa.string()), *_TASKS]),
    "train": pa.schema([("image", _IMAGE), ("ID", pa.string()), ("metadata", pa.string())]),
}
TASK_COLUMNS = ("Classification_Task", "Generation_Task", "Mask_Task")


# ---------------------------------------------------------------- reading parquet configs


def read_rows(folder: Path, required: tuple[str, ...]) -> list[tuple[str, int, dict]] | None:
    """Read every parquet shard under `folder` as (file, row index, row) triples, or None if the folder is absent.

    Raises:
        DataError: if the folder contains no parquet file or a shard lacks a required column.
    """
    if not folder.is_dir():
        return None
    files = sorted(folder.rglob("*.parquet"))
    if not files:
        raise DataError(f"{folder}: the folder contains no .parquet file. Download the config again or remove the folder.")
    rows = []
    for file in files:
        try:
            table = pq.read_table(file)
        except (pa.ArrowException, OSError) as err:
            raise DataError(f"{file}: the parquet file could not be read ({err}). Download it again.") from err
        for column in required:
            if column not in table.column_names:
                raise DataError(
                    f"{file}: the column '{column}' is missing (found {table.column_names}). "
                    "Use the MLLMU-Bench layout or regenerate the file."
                )
        rows.extend((str(file), i, row) for i, row in enumerate(table.to_pylist()))
    return rows


def image_bytes(value, file: str, row: int, field: str = "image") -> bytes:
    """Return the decodable bytes of an image struct (or raw bytes).

    Raises:
        DataError: if the bytes are missing or are not a PNG or JPEG image.
    """
    data = value.get("bytes") if isinstance(value, dict) else value
    if not data:
        raise data_error(file, "the image bytes are missing", "Put the encoded PNG or JPEG in `bytes`.", row=row, field=field)
    try:
        decode_image(data, source=f"{file}, row {row}, field '{field}'")
    except ValueError as err:
        raise DataError(str(err)) from err
    return data


def parse_json(text, file: str, row: int, field: str):
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise data_error(file, f"the JSON string could not be parsed ({err})", "Fix or regenerate the row.", row=row, field=field) from err


def row_id(row: dict, file: str, index: int) -> str:
    value = row.get("ID")
    if value is None or str(value).strip() == "":
        raise data_error(file, "the ID is missing", "Give every row a unique ID.", row=index, field="ID")
    return str(value).strip()


# ---------------------------------------------------------------- building profiles


def _training_qa(metadata, file: str, row: int) -> list[QA]:
    """Turn an `ft_Data` metadata list into QA pairs; a `Fact` key, when present, must occur in the answer."""
    if not isinstance(metadata, list) or not metadata:
        raise data_error(file, "the metadata is not a non-empty list of {Question, Answer}", "Fix the row.", row=row, field="metadata")
    qa = []
    for j, entry in enumerate(metadata):
        where = f"metadata[{j}]"
        question = str(entry.get("Question") or "").strip() if isinstance(entry, dict) else ""
        answer = str(entry.get("Answer") or "").strip() if isinstance(entry, dict) else ""
        if not question or not answer:
            raise data_error(file, "the question or answer is empty", "Give every entry a non-empty Question and Answer.", row=row, field=where)
        fact = entry.get("Fact")
        if fact is not None and fact not in answer:
            raise data_error(file, f"the Fact {fact!r} does not occur in the answer {answer!r}", "Fix the Fact or remove it.", row=row, field=where)
        qa.append(QA(question, answer, fact))
    return qa


def _qa_from_generation(tasks, file: str, row: int) -> list[QA]:
    """Use the image-grounded generation items as training QA, for people that `ft_Data` does not cover."""
    qa = []
    for item in tasks or []:
        if item.get("Type") == "Image_Textual" and item.get("Question") and item.get("Ground_Truth"):
            qa.append(QA(item["Question"].strip(), item["Ground_Truth"].strip()))
    if not qa:
        raise data_error(file, "the person has no training QA in ft_Data and no image-grounded generation item",
                         "Add the person to ft_Data.", row=row, field="Generation_Task")
    return qa


def _biography(row: dict, file: str, index: int) -> dict | None:
    value = parse_json(row.get("biography"), file, index, "biography")
    if value is None:
        return None
    return value if isinstance(value, dict) else {"text": value}


def _name_from_biography(biography: dict | None) -> str | None:
    if not biography:
        return None
    for key in ("name", "Name"):
        if isinstance(biography.get(key), str) and biography[key].strip():
            return biography[key].strip()
    return None


def _index_rows(rows, kind: str) -> dict[str, tuple[str, int, dict]]:
    by_id = {}
    for file, index, row in rows or []:
        pid = row_id(row, file, index)
        if pid in by_id:
            first_file, first_index, _ = by_id[pid]
            raise data_error(file, f"the ID {pid!r} repeats {kind} row {first_index} of {first_file}",
                             "Give every person one row.", row=index, field="ID")
        by_id[pid] = (file, index, row)
    return by_id


def _match_training_rows(train_rows, full_by_id, public_by_id) -> dict[str, tuple[str, int, list[QA], bytes]]:
    """Match each `ft_Data` row to a person ID; see the module's assumptions for the order of the rules."""
    digest_to_id = {}
    for by_id in (full_by_id, public_by_id):
        for pid, (file, index, row) in by_id.items():
            data = (row.get("image") or {}).get("bytes")
            if data:
                digest_to_id.setdefault(hashlib.sha256(data).hexdigest(), pid)

    matched = {}
    for file, index, row in train_rows or []:
        metadata = parse_json(row.get("metadata"), file, index, "metadata")
        qa = _training_qa(metadata, file, index)
        pid = str(row["ID"]).strip() if row.get("ID") not in (None, "") else None
        if pid is None:
            ids = {str(e["ID"]) for e in metadata if isinstance(e, dict) and e.get("ID")}
            pid = ids.pop() if len(ids) == 1 else None
        image = image_bytes(row.get("image"), file, index)
        if pid is None:
            pid = digest_to_id.get(hashlib.sha256(image).hexdigest())
        if pid is None:
            if full_by_id or public_by_id:
                raise data_error(file, "the row has no ID and its image matches no Full_Set or Retain_Set row",
                                 "Add an ID column.", row=index, field="ID")
            pid = f"{index:03d}"
        if pid in matched:
            raise data_error(file, f"the ID {pid!r} repeats row {matched[pid][1]}", "Give every person one row.", row=index, field="ID")
        if (full_by_id or public_by_id) and pid not in full_by_id and pid not in public_by_id:
            raise data_error(file, f"the ID {pid!r} is in neither Full_Set nor Retain_Set",
                             "Remove the row or add the person to Full_Set.", row=index, field="ID")
        matched[pid] = (file, index, qa, image)
    return matched


# ---------------------------------------------------------------- evaluation items


def _tasks_to_items(eval_set: EvalSet, pid: str, row: dict, file: str, index: int, image: bytes | None, profile: Profile) -> None:
    """Append the Classification, Generation and Mask items of one row to `eval_set`."""
    prefix = f"{eval_set.name.value}/{pid}"
    classification = row.get("Classification_Task") or {}
    for key, modality in (("Image_Textual_Questions", Modality.IMAGE_TEXT), ("Pure_Text_Questions", Modality.TEXT)):
        tag = "image" if modality is Modality.IMAGE_TEXT else "text"
        for j, item in enumerate(classification.get(key) or []):
            field = f"Classification_Task.{key}[{j}]"
            options = {k: str(v) for k, v in (item.get("Options") or {}).items() if v is not None}
            key_letter = str(item.get("Correct_Answer") or "").strip()
            if len(options) < 2 or key_letter not in options:
                raise data_error(file, f"the answer {key_letter!r} is not one of the options {sorted(options)}",
                                 "Fix Correct_Answer or Options.", row=index, field=field)
            eval_set.multiple_choice.append(MultipleChoice(
                f"{prefix}/mc_{tag}/{j}", pid, str(item.get("Question") or ""), options, key_letter, modality,
                image if modality is Modality.IMAGE_TEXT else None,
            ))

    facts = sorted({qa.fact for qa in profile.qa if qa.fact}, key=len, reverse=True)
    for column in ("Generation_Task", "Mask_Task"):
        for j, item in enumerate(row.get(column) or []):
            field = f"{column}[{j}]"
            modality = MODALITY_BY_TYPE.get(item.get("Type"))
            if modality is None:
                raise data_error(file, f"the Type {item.get('Type')!r} is invalid", "Use Image_Textual or Pure_Text.", row=index, field=field)
            question = str(item.get("Question") or "").strip()
            truth = str(item.get("Ground_Truth") or "").strip()
            if not question or not truth:
                raise data_error(file, "the Question or Ground_Truth is empty", "Fill both in or remove the item.", row=index, field=field)
            item_image = image if modality is Modality.IMAGE_TEXT else None
            tag = "image" if modality is Modality.IMAGE_TEXT else "text"
            if column == "Mask_Task":
                if derive.BLANK not in question:
                    raise data_error(file, f"the cloze question {question!r} has no blank", f"Write the blank as {derive.BLANK}.", row=index, field=field)
                eval_set.cloze.append(Cloze(f"{prefix}/cloze_{tag}/{j}", pid, question, truth, modality, item_image))
            else:
                # A text-only question names the person, and so does its answer: the fact is the
                # longest training fact that the answer states and the question does not.
                fact = next((f for f in facts if f.lower() in truth.lower() and f.lower() not in question.lower()),
                            None)
                eval_set.generation.append(Generation(f"{prefix}/gen_{tag}/{j}", pid, question, truth, modality, item_image, fact))


# ---------------------------------------------------------------- splits and pool


def _split_ids(root: Path, config: str, known: set[str]) -> list[str] | None:
    for folder in (root / config, root / "baseline_train_split" / config):
        rows = read_rows(folder, ("ID",))
        if rows is None:
            continue
        ids = []
        for file, index, row in rows:
            pid = row_id(row, file, index)
            if pid not in known:
                raise data_error(file, f"the ID {pid!r} names no person in Full_Set or ft_Data",
                                 "Remove it or use the split files of the same download.", row=index, field="ID")
            ids.append(pid)
        return sorted(set(ids))
    return None


def read_reference_pool(folder: Path) -> dict[str, list[bytes]]:
    """Read `folder/<kind>/*.png|jpg` for each kind that exists, in sorted file order."""
    pool = {}
    for kind in REFERENCE_KINDS:
        sub = folder / kind
        if not sub.is_dir():
            continue
        pool[kind] = read_image_folder(sub)
    return pool


def read_image_folder(folder: Path) -> list[bytes]:
    """Read every PNG/JPEG file in `folder`, in sorted file order, checking that each decodes."""
    if not folder.is_dir():
        raise DataError(f"{folder}: image folder not found. Pass an existing folder of PNG or JPEG files.")
    images = []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        data = path.read_bytes()
        try:
            decode_image(data, source=str(path))
        except ValueError as err:
            raise DataError(str(err)) from err
        images.append(data)
    if not images:
        raise DataError(f"{folder}: no PNG or JPEG images found. Put the reference images in this folder.")
    return images


# ---------------------------------------------------------------- loader


def load_mllmu(root: str | Path, *, forget_split: str = "forget_10", seed: int = 0) -> Benchmark:
    """Load an MLLMU-Bench folder (the real download or `build_embedded`'s output) into a `Benchmark`.

    Args:
        root: folder holding the config folders.
        forget_split: `forget_5`, `forget_10`, `forget_15` or another `forget_N` folder present.
        seed: seed for derived evaluation items (used only when `Full_Set` is absent).

    Raises:
        DataError: on a missing folder or column, undecodable image, unparsable
            JSON, empty answer, duplicate ID, a split naming an unknown ID, a
            cloze item without a blank, or forget and retain sets that overlap.
    """
    root = Path(root)
    match = re.fullmatch(r"forget_(\d+)", forget_split)
    if match is None:
        raise DataError(f"forget_split={forget_split!r} is invalid. Use forget_5, forget_10 or forget_15.")
    if not root.is_dir():
        raise DataError(f"{root}: the MLLMU-Bench folder was not found. Download it or run build_embedded.")

    eval_columns = ("image", "ID", *TASK_COLUMNS)
    full_rows = read_rows(root / "Full_Set", eval_columns)
    public_rows = read_rows(root / "Retain_Set", eval_columns)
    test_rows = read_rows(root / "Test_Set", ("images", "ID", *TASK_COLUMNS))
    train_rows = read_rows(root / "ft_Data", ("image", "metadata"))
    if full_rows is None and train_rows is None:
        raise DataError(f"{root}: neither a Full_Set nor an ft_Data folder was found. Point to the MLLMU-Bench download.")

    full_by_id = _index_rows(full_rows, "Full_Set")
    public_by_id = _index_rows(public_rows, "Retain_Set")
    training = _match_training_rows(train_rows, full_by_id, public_by_id)

    profiles: dict[str, Profile] = {}
    fictitious_ids = list(full_by_id) if full_rows is not None else sorted(training)
    for pid in fictitious_ids:
        profiles[pid] = _make_profile(pid, pid, full_by_id.get(pid), training.get(pid), public=False)
    public_ids = []
    for source_id in public_by_id:
        pid = source_id if source_id not in profiles else f"public-{source_id}"
        profiles[pid] = _make_profile(pid, source_id, public_by_id[source_id], training.get(source_id), public=True)
        public_ids.append(pid)

    holdout_ids = []
    holdout_rows = read_rows(root / HOLDOUT_CONFIG, eval_columns)
    for pid, (file, index, row) in _index_rows(holdout_rows, HOLDOUT_CONFIG).items():
        if pid in profiles or pid in training:
            raise data_error(file, f"the ID {pid!r} also names a person in Full_Set, Retain_Set or ft_Data",
                             "Give holdout people IDs of their own.", row=index, field="ID")
        profiles[pid] = _make_profile(pid, pid, (file, index, row), None, public=False)
        holdout_ids.append(pid)

    test_by_id = _index_rows(test_rows, "Test_Set")
    for pid, (file, index, row) in test_by_id.items():
        if pid not in full_by_id and pid not in training:
            raise data_error(file, f"the ID {pid!r} names no person in Full_Set", "Remove the row.", row=index, field="ID")
        images = row.get("images") or ([row["image"]] if row.get("image") else [])
        if not images:
            raise data_error(file, "the row has no test image", "Add at least one image to `images`.", row=index, field="images")
        profiles[pid].test_images = [image_bytes(img, file, index, f"images[{k}]") for k, img in enumerate(images)]

    profiles = derive.with_facts(profiles)
    for profile in profiles.values():
        profile.name = profile.name or derive.name_of(profile)

    forget_ids, retain_ids = _read_split(root, forget_split, int(match.group(1)), set(fictitious_ids))

    if full_rows is not None:
        eval_sets = _eval_sets_from_rows(profiles, forget_ids, retain_ids, full_by_id, public_by_id, test_by_id, public_ids)
    else:
        eval_sets = derive.derive_eval_sets(profiles, forget_ids, retain_ids, public_ids, seed=seed)

    return Benchmark(
        name=f"mllmu:{root.name}",
        profiles=profiles,
        forget_ids=forget_ids,
        retain_ids=retain_ids,
        public_ids=public_ids,
        eval_sets=eval_sets,
        reference_pool=read_reference_pool(root / "reference_pool"),
        source=str(root),
        holdout_ids=holdout_ids,
    )


def _make_profile(pid: str, source_id: str, eval_row, training, public: bool) -> Profile:
    biography = None
    if eval_row is not None:
        file, index, row = eval_row
        image = image_bytes(row.get("image"), file, index)
        biography = _biography(row, file, index)
        qa = training[2] if training else _qa_from_generation(row.get("Generation_Task"), file, index)
    else:
        image, qa = training[3], training[2]
    return Profile(pid, image, qa, name=_name_from_biography(biography), public=public, biography=biography)


def _read_split(root: Path, forget_split: str, percent: int, known: set[str]) -> tuple[list[str], list[str]]:
    forget_ids = _split_ids(root, forget_split, known)
    if forget_ids is None:
        available = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("forget_"))
        raise DataError(f"{root}: the split folder '{forget_split}' was not found (found {available}). Choose one of those.")
    retain_config = f"retain_{100 - percent}"
    retain_ids = _split_ids(root, retain_config, known)
    if retain_ids is None:
        retain_ids = sorted(known - set(forget_ids))
    overlap = sorted(set(forget_ids) & set(retain_ids))
    if overlap:
        raise DataError(
            f"{root / retain_config}: the IDs {overlap} are in both {forget_split} and {retain_config}. "
            "Use split folders of the same download."
        )
    return forget_ids, retain_ids


def _eval_sets_from_rows(profiles, forget_ids, retain_ids, full_by_id, public_by_id, test_by_id, public_ids) -> dict[SetName, EvalSet]:
    sets = {name: EvalSet(name) for name in SetName}
    for set_name, ids in ((SetName.FORGET, forget_ids), (SetName.RETAIN, retain_ids)):
        for pid in ids:
            if pid not in full_by_id:
                continue
            file, index, row = full_by_id[pid]
            _tasks_to_items(sets[set_name], pid, row, file, index, profiles[pid].image, profiles[pid])
    for pid in forget_ids:
        if pid in test_by_id:
            file, index, row = test_by_id[pid]
            _tasks_to_items(sets[SetName.TEST], pid, row, file, index, profiles[pid].test_images[0], profiles[pid])
    for pid, source_id in zip(public_ids, public_by_id):
        file, index, row = public_by_id[source_id]
        _tasks_to_items(sets[SetName.PUBLIC], pid, row, file, index, profiles[pid].image, profiles[pid])
    return sets
