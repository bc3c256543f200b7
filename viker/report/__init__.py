"""The benchmark report: one results dictionary in, report.md, .csv, .json and a self-contained .html out."""

from viker.report.html import render_html
from viker.report.schema import validate_results
from viker.report.tables import render_csv, render_markdown
from viker.report.write import REPORT_FILES, write_report

__all__ = ["REPORT_FILES", "render_csv", "render_html", "render_markdown", "validate_results", "write_report"]
