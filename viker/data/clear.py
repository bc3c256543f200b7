"""Load CLEAR (Dontsov et al., "CLEAR: Character Unlearning in Textual and Visual Modalities", arXiv 2410.18057).

Layout: one folder per config of the Hugging Face dataset `therem/CLEAR`,
each holding parquet shards.

- `full`, `forget01/05/10`, `retain99/95/90`: `image` (struct `bytes`,
  `path`), `caption`, `name`; one row per image, several images per person.
- `<config>_perturbed`: the same columns plus `paraphrased_caption`,
  `perturbed_captions` (list) and `perturbed_names` (list).
- `real_faces`: `image`, `answer` (the name), `options` (list of names).
- `real_world`: `question`, `answer`, `image`, `options` (list).

Assumptions:
    People are identified by `name`, and profile ids are `c000`, `c001`, ... in
    the order names first appear in `full`. The forget split `forgetNN` pairs
    with `retain{100-NN}`, and the perturbed columns are read from
    `forgetNN_perturbed` (or `retain_perturbed` for the retain side) when those
    folders exist. `real_faces` and `real_world` become multiple-choice items
    of the PUBLIC set, with options lettered A, B, ... in list order.

NOTE: `Profile` stores one portrait, so a person's training sample pairs their
first image with its caption; captions of their other images appear only as
evaluation items.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from viker.data.errors import DataError, data_error
from viker.data.mllmu import image_bytes, read_reference_pool, read_rows
from viker.data.records import QA, Benchmark, Caption, EvalSet, Modality, MultipleChoice, Profile, SetName

CLEAR_FORGET_PERCENTS = (1, 5, 10)
CAPTION_QUESTION = "Describe the person in this image."

_IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
_CAPTION_FIELDS = [("image", _IMAGE), ("caption", pa.string()), ("name", pa.string())]
CLEAR_SCHEMAS = {
    "caption": pa.schema(_CAPTION_FIELDS),
    "perturbed": pa.schema(_CAPTION_FIELDS + [
        ("paraphrased_caption", pa.string()),
        ("perturbed_captions", pa.list_(pa.string())),
        ("perturbed_names", pa.list_(pa.string())),
    ]),
    "real_faces": pa.schema([("image", _IMAGE), ("answer", pa.string()), ("options", pa.list_(pa.string()))]),
    "real_world": pa.schema([("question", pa.string()), ("answer", pa.string()), ("image", _IMAGE), ("options", pa.list_(pa.string()))]),
}


def _caption_rows(root: Path, config: str) -> list[tuple[str, int, dict]] | None:
    for folder in (root / f"{config}_perturbed", root / config):
        rows = read_rows(folder, ("image", "caption", "name"))
        if rows is not None:
            return rows
    return None


def _text(row: dict, field: str, file: str, index: int) -> str:
    value = str(row.get(field) or "").strip()
    if not value:
        raise data_error(file, f"the {field} is empty", f"Fill in the {field}.", row=index, field=field)
    return value


def _options_item(row, file, index, pid, item_id, question) -> MultipleChoice:
    options = [str(o) for o in (row.get("options") or [])]
    answer = _text(row, "answer", file, index)
    if len(options) < 2 or len(options) > 26 or answer not in options:
        raise data_error(file, f"the answer {answer!r} is not one of the options {options}",
                         "List the answer among 2 to 26 options.", row=index, field="options")
    lettered = {chr(ord("A") + i): option for i, option in enumerate(options)}
    key = chr(ord("A") + options.index(answer))
    image = image_bytes(row.get("image"), file, index)
    return MultipleChoice(item_id, pid, question, lettered, key, Modality.IMAGE_TEXT, image)


def load_clear(root: str | Path, *, forget_split: str = "forget10") -> Benchmark:
    """Load a CLEAR folder into a `Benchmark` with caption items for the forget and retain sets.

    Raises:
        DataError: on a missing folder or column, undecodable image, empty
            caption, a split naming an unknown person, or overlapping splits.
    """
    root = Path(root)
    match = re.fullmatch(r"forget(\d+)", forget_split)
    if match is None:
        raise DataError(f"forget_split={forget_split!r} is invalid. Use forget01, forget05 or forget10.")
    full = read_rows(root / "full", ("image", "caption", "name"))
    if full is None:
        raise DataError(f"{root}: the CLEAR config folder 'full' was not found. Download therem/CLEAR or run build_embedded.")

    id_by_name: dict[str, str] = {}
    profiles: dict[str, Profile] = {}
    for file, index, row in full:
        name = _text(row, "name", file, index)
        caption = _text(row, "caption", file, index)
        image = image_bytes(row.get("image"), file, index)
        if name not in id_by_name:
            pid = f"c{len(id_by_name):03d}"
            id_by_name[name] = pid
            profiles[pid] = Profile(pid, image, [QA(CAPTION_QUESTION, caption, name if name in caption else None)], name=name)
        else:
            profiles[id_by_name[name]].test_images.append(image)

    percent = int(match.group(1))
    forget_rows = _caption_rows(root, forget_split)
    if forget_rows is None:
        raise DataError(f"{root}: the split folder '{forget_split}' was not found. Use forget01, forget05 or forget10.")
    retain_rows = _caption_rows(root, f"retain{100 - percent}")
    if retain_rows is None:
        retain_rows = read_rows(root / "retain_perturbed", ("image", "caption", "name"))

    sets = {name: EvalSet(name) for name in SetName}
    forget_ids = _add_captions(sets[SetName.FORGET], forget_rows, id_by_name)
    if retain_rows is None:
        retain_ids = sorted(set(profiles) - set(forget_ids))
    else:
        retain_ids = _add_captions(sets[SetName.RETAIN], retain_rows, id_by_name)
    overlap = sorted(set(forget_ids) & set(retain_ids))
    if overlap:
        names = [profiles[pid].name for pid in overlap]
        raise DataError(f"{root}: the people {names} are in both {forget_split} and its retain split. Use splits of the same download.")

    public_ids = _add_public(root, sets[SetName.PUBLIC], profiles)
    return Benchmark(
        name=f"clear:{root.name}",
        profiles=profiles,
        forget_ids=forget_ids,
        retain_ids=retain_ids,
        public_ids=public_ids,
        eval_sets=sets,
        reference_pool=read_reference_pool(root / "reference_pool"),
        source=str(root),
    )


def _add_captions(eval_set: EvalSet, rows, id_by_name: dict[str, str]) -> list[str]:
    ids = []
    for file, index, row in rows:
        name = _text(row, "name", file, index)
        pid = id_by_name.get(name)
        if pid is None:
            raise data_error(file, f"the name {name!r} is not in the 'full' config", "Use split files of the same download.", row=index, field="name")
        if pid not in ids:
            ids.append(pid)
        eval_set.captions.append(Caption(
            id=f"{eval_set.name.value}/{pid}/caption/{index}",
            profile_id=pid,
            question=CAPTION_QUESTION,
            caption=_text(row, "caption", file, index),
            image=image_bytes(row.get("image"), file, index),
            name=name,
            paraphrase=row.get("paraphrased_caption"),
            perturbed=tuple(row.get("perturbed_captions") or ()),
            perturbed_names=tuple(row.get("perturbed_names") or ()),
        ))
    return sorted(ids)


def _add_public(root: Path, eval_set: EvalSet, profiles: dict[str, Profile]) -> list[str]:
    """Add `real_faces` and `real_world` rows as multiple-choice items, each with a public profile of its own."""
    public_ids = []
    faces = read_rows(root / "real_faces", ("image", "answer", "options")) or []
    for file, index, row in faces:
        pid = f"real_faces-{index:03d}"
        item = _options_item(row, file, index, pid, f"public/{pid}/mc_image/0", "What is the name of this person?")
        profiles[pid] = Profile(pid, item.image, [QA(item.question, f"This person's name is {row['answer']}.", str(row["answer"]))],
                                name=str(row["answer"]), public=True)
        public_ids.append(pid)
        eval_set.multiple_choice.append(item)
    world = read_rows(root / "real_world", ("question", "answer", "image", "options")) or []
    for file, index, row in world:
        pid = f"real_world-{index:03d}"
        question = _text(row, "question", file, index)
        item = _options_item(row, file, index, pid, f"public/{pid}/mc_image/0", question)
        answer = str(row["answer"])
        profiles[pid] = Profile(pid, item.image, [QA(question, answer, answer)], public=True)
        public_ids.append(pid)
        eval_set.multiple_choice.append(item)
    return public_ids
