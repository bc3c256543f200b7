"""Markdown and CSV renderings of validated results (see `schema.validate_results`)."""

from __future__ import annotations

import csv
import io

from viker.report.schema import (
    LEGEND,
    arrow,
    format_number,
    format_seconds,
    format_stat,
    show_whitespace,
    unlearned_models,
)

_MARKDOWN_SPECIAL = "\\`*_[]<>|&"


def escape_markdown(text: str) -> str:
    """Backslash-escape the characters that Markdown reads as markup or raw HTML, and fold newlines."""
    escaped = "".join("\\" + char if char in _MARKDOWN_SPECIAL else char for char in text)
    return " ".join(escaped.splitlines())


def _code_span(text: str) -> str:
    if "`" in text:
        return f"`` {text} ``"
    return f"`{text}`"


def model_label(row: dict) -> str:
    """Return the row's name as the tables show it: the oracle gets "(target)"."""
    return f"{row['model']} (target)" if row["target"] else row["model"]


def _markdown_header(header: dict) -> list[str]:
    versions = ", ".join(f"{name} {version}" for name, version in header["versions"].items())
    fields = [
        ("Benchmark", escape_markdown(header["benchmark"])),
        ("Forget split", escape_markdown(header["forget_split"])),
        ("Model", escape_markdown(header["model"])),
        ("Seeds", ", ".join(str(seed) for seed in header["seeds"])),
        ("Commit", _code_span(header["commit"])),
        ("Hardware", escape_markdown(header["hardware"])),
        ("Wall-clock time", format_seconds(header["wall_clock_s"])),
        ("Versions", escape_markdown(versions)),
        ("Created", escape_markdown(header["created"])),
        ("Command", _code_span(header["command"])),
    ]
    lines = [f"# {escape_markdown(header['title'])}", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in fields]
    return lines


def _markdown_results(results: dict) -> list[str]:
    metrics = results["metrics"]
    columns = ["Model", "Kind", "Train time"] + [f"{escape_markdown(m['label'])} {arrow(m['direction'])}" for m in metrics]
    lines = [
        "## Results",
        "",
        "Each cell is the mean ± standard deviation over seeds (the mean alone for one seed; – when not measured).",
        LEGEND +
        "The target row is the oracle, retrained without the forget set: a method should land near it.",
        "",
        "| " + " | ".join(columns) + " |",
        "|---|---|---:|" + "---:|" * len(metrics),
    ]
    for row in results["rows"]:
        cells = [escape_markdown(model_label(row)), row["kind"], format_seconds(row["train_time_s"])]
        cells += [format_stat(row["values"].get(m["key"]), m["digits"]) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")

    groups: dict[str, list[str]] = {}
    for metric in metrics:
        groups.setdefault(metric["group"], []).append(f"{escape_markdown(metric['label'])} (`{metric['key']}`)")
    lines.append("")
    lines += [f"- **{escape_markdown(group)}**: {', '.join(labels)}" for group, labels in groups.items()]
    return lines


def _markdown_keytokens(results: dict) -> list[str]:
    lines = [
        "## Key tokens",
        "",
        "Per answer token: H(q_i), the entropy of the frozen model's next-token distribution averaged over "
        "irrelevant reference images, then the probability of the gold token under the vanilla model and "
        "under each unlearned model. Spaces in tokens are shown as ␣.",
    ]
    for sample in results["keytokens"]:
        models = unlearned_models(sample, results["rows"])
        lines += ["", f"### {escape_markdown(sample['sample_id'])}: {escape_markdown(sample['question'])}", ""]
        answer = "".join(token["text"] for token in sample["tokens"])
        lines += [f"Answer: {escape_markdown(answer)}", ""]
        header = ["Token", "H(q_i)", "p vanilla"] + [f"p {escape_markdown(model)}" for model in models]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|---|" + "---:|" * (len(header) - 1))
        for token in sample["tokens"]:
            cells = [escape_markdown(show_whitespace(token["text"])), format_number(token["entropy"], 2)]
            cells.append(format_number(token["p_vanilla"]))
            cells += [format_number(token["p_unlearned"].get(model)) for model in models]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_markdown(results: dict) -> str:
    """Render validated results as Markdown: header, results table and key-token tables."""
    lines = _markdown_header(results["header"]) + [""] + _markdown_results(results)
    if results["tradeoff"] is not None or results["curves"]:
        lines += ["", "The trade-off plot and the training curves are in report.html."]
    if results["keytokens"]:
        lines += [""] + _markdown_keytokens(results)
    return "\n".join(lines) + "\n"


def render_csv(results: dict) -> str:
    """Render one row per model: model, kind, train_time_s, then <key>_mean and <key>_std per metric.

    Values keep full float precision; a missing value or a None std is an empty cell.
    """
    metrics = results["metrics"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["model", "kind", "train_time_s"]
    for metric in metrics:
        header += [f"{metric['key']}_mean", f"{metric['key']}_std"]
    writer.writerow(header)

    for row in results["rows"]:
        cells = [row["model"], row["kind"], _csv_number(row["train_time_s"])]
        for metric in metrics:
            stat = row["values"].get(metric["key"])
            cells.append(_csv_number(stat["mean"]) if stat else "")
            cells.append(_csv_number(stat["std"]) if stat else "")
        writer.writerow(cells)
    return buffer.getvalue()


def _csv_number(value: float | None) -> str:
    return "" if value is None else repr(value)
