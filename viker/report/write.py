"""Write report.md, report.csv, report.json and report.html into an output folder."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from viker.report.html import render_html
from viker.report.schema import validate_results
from viker.report.tables import render_csv, render_markdown

REPORT_FILES = {"md": "report.md", "csv": "report.csv", "json": "report.json", "html": "report.html"}


def _write_atomic(path: Path, text: str) -> None:
    """Write `text` to a hidden temporary file next to `path`, then rename it over `path`.

    A reader therefore sees either no file or a complete one, because a rename
    within one folder is atomic on POSIX file systems.
    """
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_report(results: dict, out_dir: Path, overwrite: bool = False) -> dict[str, Path]:
    """Validate `results` and write the four report files into `out_dir`, creating it if needed.

    Every file is rendered before any is written, so invalid results leave the
    folder untouched. Returns the written paths keyed "md", "csv", "json" and "html".

    Raises:
        ValueError: `results` does not match the schema (see `validate_results`).
        FileExistsError: a report file already exists and `overwrite` is False.
    """
    out_dir = Path(out_dir)
    checked = validate_results(results)
    paths = {kind: out_dir / name for kind, name in REPORT_FILES.items()}
    if not overwrite:
        for path in paths.values():
            if path.exists():
                raise FileExistsError(
                    f"{path} already exists; pass --overwrite (overwrite=True) to replace it, "
                    "or choose another --out folder."
                )

    texts = {
        "md": render_markdown(checked),
        "csv": render_csv(checked),
        "json": json.dumps(checked, indent=2, ensure_ascii=False, allow_nan=False) + "\n",
        "html": render_html(checked),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    for kind, path in paths.items():
        _write_atomic(path, texts[kind])
    return paths
