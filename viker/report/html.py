"""A self-contained report.html: inline CSS and inline SVG, no scripts, fonts or images to fetch."""

from __future__ import annotations

from html import escape

import viker
from viker.report.schema import (
    LEGEND,
    arrow,
    better,
    format_number,
    format_seconds,
    format_stat,
    show_whitespace,
    unlearned_models,
)
from viker.report.svg import (
    curve_svgs,
    entropy_colour,
    entropy_legend_svg,
    entropy_scale_maximum,
    model_colours,
    tradeoff_svg,
)

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1a1a1a;
       margin: 2rem auto; max-width: 1720px; padding: 0 1.5rem; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.6rem; }
h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
h3 { font-size: 1rem; margin-bottom: 0.4rem; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 0.15rem 1rem; font-size: 0.92rem; }
dl.meta dt { color: #555; }
dl.meta dd { margin: 0; overflow-wrap: anywhere; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.88em;
       background: #f4f4f4; padding: 0.05rem 0.3rem; border-radius: 3px; }
.note { color: #555; font-size: 0.9rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { padding: 0.3rem 0.5rem; border-bottom: 1px solid #e3e3e3; }
thead th { background: #f7f7f7; vertical-align: bottom; }
th.group { text-align: center; border-bottom: 2px solid #bbb; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.std { color: #666; }
tbody th { text-align: left; font-weight: 600; white-space: nowrap; }
#results tbody th { position: sticky; left: 0; z-index: 1; background: #fff; }
#results tr.reference th { background: #fafafa; }
#results tr.target th { background: #eef3fb; }
tr.reference td, tr.reference th { background: #fafafa; }
tr.target td, tr.target th { background: #eef3fb; }
.target-note { font-size: 0.8rem; font-weight: 600; color: #1f4e9c; }
.swatch { display: inline-block; width: 0.7rem; height: 0.7rem; border-radius: 50%; margin-right: 0.4rem; }
.curves { display: flex; flex-wrap: wrap; gap: 1rem; }
.sample { margin: 1.2rem 0 1.8rem; }
.tokens { font-size: 1.05rem; line-height: 2; }
.tok { white-space: pre; padding: 0.15rem 0.05rem; border-radius: 2px; margin-right: 1px; }
table.token-table { font-size: 0.85rem; margin-top: 0.3rem; }
table.token-table td.token { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; white-space: pre; }
footer { margin-top: 3rem; color: #777; font-size: 0.8rem; }
"""


def _header_html(header: dict) -> str:
    versions = ", ".join(f"{name} {version}" for name, version in header["versions"].items())
    fields = [
        ("Benchmark", escape(header["benchmark"])),
        ("Forget split", escape(header["forget_split"])),
        ("Model", escape(header["model"])),
        ("Seeds", escape(", ".join(str(seed) for seed in header["seeds"]))),
        ("Commit", f"<code>{escape(header['commit'])}</code>"),
        ("Hardware", escape(header["hardware"])),
        ("Wall-clock time", escape(format_seconds(header["wall_clock_s"]))),
        ("Versions", escape(versions)),
        ("Created", escape(header["created"])),
        ("Command", f"<code>{escape(header['command'])}</code>"),
    ]
    items = "\n".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in fields)
    return f"<header>\n<h1>{escape(header['title'])}</h1>\n<dl class='meta'>\n{items}\n</dl>\n</header>"


def _group_runs(metrics: list[dict]) -> list[tuple[str, int]]:
    """Return (group, column count) for each run of adjacent metrics in the same group."""
    runs: list[tuple[str, int]] = []
    for metric in metrics:
        if runs and runs[-1][0] == metric["group"]:
            runs[-1] = (metric["group"], runs[-1][1] + 1)
        else:
            runs.append((metric["group"], 1))
    return runs


def _stat_cell(stat: dict | None, digits: int) -> str:
    text = format_stat(stat, digits)
    if " ± " not in text:
        return f"<td class='num'>{escape(text)}</td>"
    mean, std = text.split(" ± ")
    seeds = f"n = {stat['n']}"
    return f"<td class='num' title='{seeds}'>{mean}<span class='std'> ± {std}</span></td>"


def _results_table(results: dict, colours: dict[str, str]) -> str:
    metrics = results["metrics"]
    group_row = "".join(
        f"<th class='group' colspan='{count}' scope='colgroup'>{escape(group)}</th>" for group, count in _group_runs(metrics)
    )
    metric_row = "".join(
        f"<th scope='col' title='{escape(metric['key'])}: {better(metric['direction'])}'>"
        f"{escape(metric['label'])} {arrow(metric['direction'])}</th>"
        for metric in metrics
    )
    lines = [
        "<div class='scroll'><table id='results'>",
        "<thead>",
        f"<tr><th rowspan='2' scope='col'>Model</th><th rowspan='2' scope='col'>Kind</th>"
        f"<th rowspan='2' scope='col'>Train time</th>{group_row}</tr>",
        f"<tr>{metric_row}</tr>",
        "</thead>",
        "<tbody>",
    ]
    for row in results["rows"]:
        row_class = "target" if row["target"] else row["kind"]
        note = "<span class='target-note'>(target)</span>" if row["target"] else ""
        cells = [
            f"<th scope='row'><span class='swatch' style='background:{colours[row['model']]}'></span>"
            f"{escape(row['model'])} {note}</th>",
            f"<td>{row['kind']}</td>",
            f"<td class='num'>{escape(format_seconds(row['train_time_s']))}</td>",
        ]
        cells += [_stat_cell(row["values"].get(metric["key"]), metric["digits"]) for metric in metrics]
        lines.append(f"<tr class='{row_class}' data-model='{escape(row['model'])}'>{''.join(cells)}</tr>")
    lines += ["</tbody>", "</table></div>"]
    return "\n".join(lines)


def _results_section(results: dict, colours: dict[str, str]) -> str:
    return (
        "<section id='results-section'>\n<h2>Results</h2>\n"
        "<p class='note'>Each cell is the mean ± standard deviation over seeds (the mean alone for one seed; "
        f"– when not measured). {LEGEND}"
        "The target row is the oracle, retrained without the forget set: a method should land near it.</p>\n"
        f"{_results_table(results, colours)}\n</section>"
    )


def _tradeoff_section(results: dict, colours: dict[str, str]) -> str:
    svg, skipped = tradeoff_svg(results, colours)
    note = ""
    if skipped:
        note = f"<p class='note'>Not plotted, for lack of a value: {escape(', '.join(skipped))}.</p>"
    return (
        "<section id='tradeoff'>\n<h2>Forgetting against utility</h2>\n"
        "<p class='note'>One point per model; a method should move from the vanilla model towards the target.</p>\n"
        f"{svg}\n{note}\n</section>"
    )


def _curves_section(results: dict, colours: dict[str, str]) -> str:
    plots = curve_svgs(results, colours)
    if not plots:
        return ""
    body = "\n".join(svg for _, svg in plots)
    return (
        "<section id='curves'>\n<h2>Training curves</h2>\n"
        "<p class='note'>Each loss part as the trainer logged it, per optimisation step. Steps without a value "
        "are skipped.</p>\n"
        f"<div class='curves'>\n{body}\n</div>\n</section>"
    )


def _token_title(token: dict, models: list[str]) -> str:
    parts = [f"H = {format_number(token['entropy'], 2)}", f"p vanilla = {format_number(token['p_vanilla'])}"]
    parts += [f"p {model} = {format_number(token['p_unlearned'].get(model))}" for model in models]
    return escape("; ".join(parts), quote=True)


def _sample_html(sample: dict, models: list[str], maximum: float) -> str:
    spans = []
    for token in sample["tokens"]:
        background, foreground = entropy_colour(token["entropy"], maximum)
        text = token["text"].replace("\n", "↵")
        spans.append(
            f"<span class='tok' style='background:{background};color:{foreground}' "
            f"title='{_token_title(token, models)}'>{escape(text)}</span>"
        )

    header = "".join(f"<th scope='col'>p {escape(model)}</th>" for model in models)
    rows = []
    for token in sample["tokens"]:
        cells = [
            f"<td class='token'>{escape(show_whitespace(token['text']))}</td>",
            f"<td class='num'>{format_number(token['entropy'], 2)}</td>",
            f"<td class='num'>{format_number(token['p_vanilla'])}</td>",
        ]
        cells += [f"<td class='num'>{format_number(token['p_unlearned'].get(model))}</td>" for model in models]
        rows.append(f"<tr>{''.join(cells)}</tr>")

    return (
        f"<div class='sample' data-sample='{escape(sample['sample_id'])}'>\n"
        f"<h3>{escape(sample['sample_id'])}: {escape(sample['question'])}</h3>\n"
        f"<p class='tokens'>{''.join(spans)}</p>\n"
        "<div class='scroll'><table class='token-table'>\n"
        f"<thead><tr><th scope='col'>Token</th><th scope='col'>H(q<sub>i</sub>)</th>"
        f"<th scope='col'>p vanilla</th>{header}</tr></thead>\n"
        f"<tbody>\n{chr(10).join(rows)}\n</tbody></table></div>\n</div>"
    )


def _keytokens_section(results: dict) -> str:
    if not results["keytokens"]:
        return ""
    entropies = [token["entropy"] for sample in results["keytokens"] for token in sample["tokens"]]
    maximum = entropy_scale_maximum(entropies)
    samples = "\n".join(
        _sample_html(sample, unlearned_models(sample, results["rows"]), maximum) for sample in results["keytokens"]
    )
    return (
        "<section id='keytokens'>\n<h2>Key tokens</h2>\n"
        "<p class='note'>Each answer token is coloured by H(q<sub>i</sub>), the entropy of the frozen model's "
        "next-token distribution averaged over irrelevant reference images. A high entropy means that, shown "
        "an unrelated image, the model is unsure of the token, as it is for the person-specific facts. The table lists the "
        "probability of each gold token under the vanilla model and under each unlearned model; "
        "spaces are shown as ␣.</p>\n"
        f"{entropy_legend_svg(maximum)}\n{samples}\n</section>"
    )


def render_html(results: dict) -> str:
    """Render validated results as one self-contained HTML page."""
    curve_models = list(results["curves"])
    colours = model_colours(results["rows"], curve_models)
    sections = [_header_html(results["header"]), _results_section(results, colours)]
    if results["tradeoff"] is not None:
        sections.append(_tradeoff_section(results, colours))
    sections.append(_curves_section(results, colours))
    sections.append(_keytokens_section(results))
    body = "\n".join(section for section in sections if section)
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
        f"<title>{escape(results['header']['title'])}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"{body}\n<footer>Written by viker {escape(viker.__version__)}.</footer>\n</body>\n</html>\n"
    )
