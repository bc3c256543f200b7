"""Load a user's own people: a JSON or JSONL list of profiles plus a folder of portraits.

Each profile is `{"id": ..., "image": "file.jpg", "qa": [{"question": ..., "answer": ...}]}`.
MLLMU-Bench's training text (`{"ID": ..., "metadata": [{"Question": ..., "Answer": ...}]}`)
is read as well. A QA entry may carry its own `fact`, and a profile its `name`.

When no profile names an image, profiles are paired with the image files of
`images_dir` in sorted file-name order, one each, in the order the profiles
appear in the file. Images left over become the `faces` reference pool.
Fact spans and evaluation items are derived by `viker.data.derive`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from viker.data import derive
from viker.data.errors import DataError, data_error
from viker.data.mllmu import IMAGE_SUFFIXES
from viker.data.records import QA, Benchmark, Profile, decode_image


def _read_entries(path: Path) -> list[dict]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise DataError(f"{path}: the profile file could not be read ({err}). Check the path.") from err
    if path.suffix.lower() == ".jsonl":
        entries = []
        for line_number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    entries.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise data_error(path, f"the line is not valid JSON ({err})", "Fix the line.", row=line_number) from err
        return entries
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: the file is not valid JSON ({err}). Fix it or save one profile per line as .jsonl.") from err
    if not isinstance(entries, list):
        raise DataError(f"{path}: the file contains a {type(entries).__name__}, not a list of profiles. Wrap the profiles in a list.")
    return entries


def _entry_qa(entry: dict, path: Path, row: int) -> list[QA]:
    items = entry.get("qa", entry.get("metadata"))
    if isinstance(items, str):
        try:
            items = json.loads(items)
        except json.JSONDecodeError as err:
            raise data_error(path, f"the metadata string is not valid JSON ({err})", "Fix the profile.", row=row, field="metadata") from err
    if not isinstance(items, list) or not items:
        raise data_error(path, "the profile has no QA list", "Add a non-empty `qa` list of {question, answer}.", row=row, field="qa")
    qa = []
    for j, item in enumerate(items):
        if not isinstance(item, dict):
            raise data_error(path, f"the QA entry is a {type(item).__name__}", "Write it as {question, answer}.", row=row, field=f"qa[{j}]")
        question = str(item.get("question", item.get("Question")) or "").strip()
        answer = str(item.get("answer", item.get("Answer")) or "").strip()
        if not question or not answer:
            raise data_error(path, "the question or answer is empty", "Give every QA a non-empty question and answer.", row=row, field=f"qa[{j}]")
        fact = item.get("fact", item.get("Fact"))
        if fact is not None and str(fact) not in answer:
            raise data_error(path, f"the fact {fact!r} does not occur in the answer {answer!r}", "Fix the fact.", row=row, field=f"qa[{j}]")
        qa.append(QA(question, answer, None if fact is None else str(fact)))
    return qa


def _read_image(path: Path, source: str) -> bytes:
    if not path.is_file():
        raise DataError(f"{source}: the image {path} was not found. Put it in the images folder or fix the name.")
    data = path.read_bytes()
    try:
        decode_image(data, source=f"{source} ({path})")
    except ValueError as err:
        raise DataError(str(err)) from err
    return data


def load_profiles(
    path: str | Path,
    images_dir: str | Path,
    *,
    forget_ids: list[str] | None = None,
    forget_fraction: float = 0.1,
    seed: int = 0,
) -> Benchmark:
    """Load profiles and portraits, choose the forget set and derive evaluation items.

    Args:
        path: a `.json` list or `.jsonl` file of profiles.
        images_dir: folder of the portraits.
        forget_ids: people to forget; when None, `forget_fraction` of them
            (rounded, at least one) are drawn with `seed`.
        forget_fraction: share of people to forget, in (0, 1).
        seed: seed of the forget draw and of the derived items.

    Raises:
        DataError: on unreadable files, empty answers, duplicate IDs, missing
            or undecodable images, too few images, or an unknown forget ID.
    """
    path, images_dir = Path(path), Path(images_dir)
    if not 0 < forget_fraction < 1:
        raise DataError(f"forget_fraction={forget_fraction!r} is invalid. Use a value between 0 and 1, such as 0.1.")
    if not images_dir.is_dir():
        raise DataError(f"{images_dir}: the images folder was not found. Check the path.")
    entries = _read_entries(path)
    if not entries:
        raise DataError(f"{path}: the file contains no profiles. Add at least two.")

    profiles: dict[str, Profile] = {}
    named = []
    for row, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise data_error(path, f"the profile is a {type(entry).__name__}", "Write each profile as a JSON object.", row=row)
        pid = str(entry.get("id", entry.get("ID")) or "").strip()
        if not pid:
            raise data_error(path, "the id is missing", "Give every profile a unique id.", row=row, field="id")
        if pid in profiles:
            raise data_error(path, f"the id {pid!r} repeats an earlier profile", "Give every profile a unique id.", row=row, field="id")
        image_name = entry.get("image")
        named.append(image_name)
        image = _read_image(images_dir / str(image_name), f"{path}, row {row}, field 'image'") if image_name else None
        profiles[pid] = Profile(pid, image, _entry_qa(entry, path, row), name=entry.get("name"))

    pool = _pair_images(path, images_dir, profiles, named)
    profiles = derive.with_facts(profiles)
    for profile in profiles.values():
        profile.name = derive.name_of(profile)

    forget = _choose_forget(path, list(profiles), forget_ids, forget_fraction, seed)
    retain = [pid for pid in profiles if pid not in set(forget)]
    return Benchmark(
        name=f"profiles:{path.stem}",
        profiles=profiles,
        forget_ids=forget,
        retain_ids=retain,
        eval_sets=derive.derive_eval_sets(profiles, forget, retain, [], seed=seed),
        reference_pool={"faces": pool} if pool else {},
        source=str(path),
    )


def _pair_images(path: Path, images_dir: Path, profiles: dict[str, Profile], named: list) -> list[bytes]:
    """Give image-less profiles the sorted files of `images_dir`; return the leftover images."""
    if all(named):
        return []
    if any(named):
        missing = [row for row, name in enumerate(named) if not name]
        raise data_error(path, "some profiles name an image and others do not",
                         "Name an image in every profile, or in none to pair them in file order.", row=missing[0], field="image")
    files = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < len(profiles):
        raise DataError(
            f"{images_dir}: {len(files)} images for {len(profiles)} profiles of {path}. "
            "Add images or remove profiles; each profile needs one."
        )
    for profile, file in zip(profiles.values(), files):
        profile.image = _read_image(file, str(file))
    return [_read_image(file, str(file)) for file in files[len(profiles):]]


def _choose_forget(path: Path, ids: list[str], forget_ids, fraction: float, seed: int) -> list[str]:
    if forget_ids is not None:
        unknown = [pid for pid in forget_ids if pid not in set(ids)]
        if unknown:
            raise DataError(f"{path}: the forget IDs {unknown} name no profile. Use IDs from the file.")
        if len(set(forget_ids)) == len(ids):
            raise DataError(f"{path}: every profile is in the forget set, so no retain set is left. Forget fewer people.")
        return [pid for pid in ids if pid in set(forget_ids)]
    if len(ids) < 2:
        raise DataError(f"{path}: a forget/retain split needs at least two profiles; found {len(ids)}.")
    k = min(len(ids) - 1, max(1, int(fraction * len(ids) + 0.5)))
    chosen = set(random.Random(seed).sample(sorted(ids), k))
    return [pid for pid in ids if pid in chosen]
