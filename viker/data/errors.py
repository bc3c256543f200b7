"""The exception that every loader raises for bad benchmark or profile data."""

from __future__ import annotations


class DataError(ValueError):
    """Invalid input data; the message names the file, the row, the field and the fix."""


def data_error(source: str, problem: str, fix: str, *, row: object = None, field: str | None = None) -> DataError:
    """Build a `DataError` whose message reads "FILE, row R, field F: PROBLEM. FIX."."""
    where = str(source)
    if row is not None:
        where += f", row {row}"
    if field is not None:
        where += f", field '{field}'"
    return DataError(f"{where}: {problem}. {fix}")
