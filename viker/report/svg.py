"""Inline SVG plots for report.html: the forgetting/utility trade-off, training curves, the entropy scale.

Every function returns an `<svg>` element as a string, with all text escaped,
no scripts and no external references, so the page renders offline.
Text widths are estimated from character counts (about 0.6 em per character),
because the page is written without a browser to measure text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

from viker.report.schema import arrow, better, loss_parts
from viker.report.tables import model_label

# Okabe-Ito colours (colour-blind safe) for methods, then two extra dark hues.
METHOD_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#8C564B", "#4B0082")
REFERENCE_COLOUR = "#6B6B6B"
TARGET_COLOUR = "#111111"

# ColorBrewer YlOrRd, light (low entropy) to dark (high entropy).
ENTROPY_STOPS = ("#ffffcc", "#ffeda0", "#fed976", "#feb24c", "#fd8d3c", "#fc4e2a", "#e31a1c", "#bd0026", "#800026")

FONT = "font-family='system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif'"
CHAR_WIDTH = 0.6  # estimated glyph width, in em


def text_width(text: str, size: float) -> float:
    return len(text) * size * CHAR_WIDTH


def nice_ticks(low: float, high: float, count: int = 5, integer: bool = False) -> list[float]:
    """Return evenly spaced ticks at 1, 2, 2.5 or 5 × 10^k that cover [low, high]."""
    if high < low:
        low, high = high, low
    if high == low:
        pad = abs(low) * 0.1 or (1.0 if integer else 0.05)
        low, high = low - pad, high + pad
    raw_step = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw_step))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw_step * (1 - 1e-9))
    if integer:
        step = max(1.0, math.ceil(step))
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    return [round(k * step, 12) for k in range(first, last + 1)]


def tick_label(value: float, ticks: list[float]) -> str:
    """Format a tick with as many decimals as the tick step needs (0.25 → 2, 0.5 → 1, 5 → 0)."""
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
    decimals = next((d for d in range(7) if abs(step * 10**d - round(step * 10**d)) < 1e-6), 6)
    label = f"{value:.{decimals}f}"
    return "0" if float(label) == 0 else label.replace("-", "−")


def model_colours(rows: list[dict], extra_models: list[str] = ()) -> dict[str, str]:
    """Assign each model a colour: the target near-black, other references grey, methods in turn."""
    colours, method_index = {}, 0
    for row in rows:
        if row["target"]:
            colours[row["model"]] = TARGET_COLOUR
        elif row["kind"] == "reference":
            colours[row["model"]] = REFERENCE_COLOUR
        else:
            colours[row["model"]] = METHOD_COLOURS[method_index % len(METHOD_COLOURS)]
            method_index += 1
    for model in extra_models:
        if model not in colours:
            colours[model] = METHOD_COLOURS[method_index % len(METHOD_COLOURS)]
            method_index += 1
    return colours


@dataclass
class _Scale:
    """A linear map from the data interval [low, high] to the pixel interval [start, end]."""

    low: float
    high: float
    start: float
    end: float

    def __call__(self, value: float) -> float:
        return self.start + (value - self.low) / (self.high - self.low) * (self.end - self.start)


def _axes(x: _Scale, y: _Scale, x_ticks: list[float], y_ticks: list[float], x_label: str, y_label: str) -> list[str]:
    """Draw grid lines, both axes, tick labels and axis titles for the plot area x.start..x.end, y.end..y.start."""
    parts = []
    for tick in x_ticks:
        px = x(tick)
        parts.append(f"<line x1='{px:.1f}' y1='{y.end:.1f}' x2='{px:.1f}' y2='{y.start:.1f}' stroke='#e6e6e6'/>")
        parts.append(
            f"<text x='{px:.1f}' y='{y.start + 16:.1f}' font-size='11' text-anchor='middle' fill='#333'>"
            f"{escape(tick_label(tick, x_ticks))}</text>"
        )
    for tick in y_ticks:
        py = y(tick)
        parts.append(f"<line x1='{x.start:.1f}' y1='{py:.1f}' x2='{x.end:.1f}' y2='{py:.1f}' stroke='#e6e6e6'/>")
        parts.append(
            f"<text x='{x.start - 6:.1f}' y='{py + 4:.1f}' font-size='11' text-anchor='end' fill='#333'>"
            f"{escape(tick_label(tick, y_ticks))}</text>"
        )
    parts.append(
        f"<path d='M{x.start:.1f},{y.end:.1f} V{y.start:.1f} H{x.end:.1f}' fill='none' stroke='#444' stroke-width='1'/>"
    )
    middle_x, middle_y = (x.start + x.end) / 2, (y.start + y.end) / 2
    parts.append(
        f"<text x='{middle_x:.1f}' y='{y.start + 38:.1f}' font-size='12' text-anchor='middle' fill='#111'>"
        f"{escape(x_label)}</text>"
    )
    parts.append(
        f"<text transform='translate({x.start - 48:.1f},{middle_y:.1f}) rotate(-90)' font-size='12' "
        f"text-anchor='middle' fill='#111'>{escape(y_label)}</text>"
    )
    return parts


def _axis_title(metric: dict) -> str:
    return f"{metric['label']} {arrow(metric['direction'])} ({better(metric['direction'])})"


def _overlap(a: tuple, b: tuple) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    return max(0.0, width) * max(0.0, height)


# Label positions tried around a point, in order of preference: (dx, dy, text-anchor).
_LABEL_OFFSETS = (
    (10, 4, "start"), (-10, 4, "end"), (0, -11, "middle"), (0, 19, "middle"),
    (9, -9, "start"), (9, 17, "start"), (-9, -9, "end"), (-9, 17, "end"),
    (10, -20, "start"), (10, 28, "start"), (-10, -20, "end"), (-10, 28, "end"),
)


def _place_labels(points: list[tuple[float, float, str, float]], bounds: tuple, size: float = 12) -> list[tuple]:
    """Choose a position for each label that overlaps the fewest other labels and markers.

    `points` contains (x, y, text, marker radius). Returns (x, y, anchor) per point.
    Greedy: points are placed in the given order.
    """
    markers = [(px - radius, py - radius, px + radius, py + radius) for px, py, _, radius in points]
    placed: list[tuple] = []
    positions = []
    for px, py, text, radius in points:
        width, best = text_width(text, size), None
        for dx, dy, anchor in _LABEL_OFFSETS:
            extra = max(0.0, radius - 6)  # push labels clear of markers wider than a dot
            dx += math.copysign(extra, dx) if dx else 0.0
            dy += math.copysign(extra, dy) if abs(dy) > 4 else 0.0  # dy = 4 centres the text on the point
            left = px + dx
            if anchor == "end":
                left -= width
            elif anchor == "middle":
                left -= width / 2
            box = (left, py + dy - size * 0.8, left + width, py + dy + size * 0.2)
            cost = sum(_overlap(box, other) for other in placed + markers)
            outside = max(0, bounds[0] - box[0]) + max(0, box[2] - bounds[2])
            outside += max(0, bounds[1] - box[1]) + max(0, box[3] - bounds[3])
            cost += outside * 100
            if best is None or cost < best[0]:
                best = (cost, box, (px + dx, py + dy, anchor))
        placed.append(best[1])
        positions.append(best[2])
    return positions


def _target_marker(px: float, py: float) -> str:
    return (
        f"<circle cx='{px:.1f}' cy='{py:.1f}' r='9' fill='none' stroke='{TARGET_COLOUR}' stroke-width='1.5'/>"
        f"<circle cx='{px:.1f}' cy='{py:.1f}' r='3.5' fill='{TARGET_COLOUR}'/>"
        f"<path d='M{px - 13:.1f},{py:.1f} H{px - 6:.1f} M{px + 6:.1f},{py:.1f} H{px + 13:.1f} "
        f"M{px:.1f},{py - 13:.1f} V{py - 6:.1f} M{px:.1f},{py + 6:.1f} V{py + 13:.1f}' "
        f"stroke='{TARGET_COLOUR}' stroke-width='1.5'/>"
    )


def tradeoff_svg(results: dict, colours: dict[str, str]) -> tuple[str, list[str]]:
    """Plot one labelled point per model at (x metric, y metric), with ±std error bars.

    Returns the SVG and the names of models left out for lacking a value.
    """
    metrics = {metric["key"]: metric for metric in results["metrics"]}
    x_metric, y_metric = metrics[results["tradeoff"]["x"]], metrics[results["tradeoff"]["y"]]

    points, skipped = [], []
    for row in results["rows"]:
        x_stat, y_stat = row["values"].get(x_metric["key"]), row["values"].get(y_metric["key"])
        if x_stat is None or y_stat is None or x_stat["mean"] is None or y_stat["mean"] is None:
            skipped.append(row["model"])
            continue
        points.append((row, x_stat, y_stat))

    width, height = 680, 450
    left, right, top, bottom = 76, 28, 36, 64
    x_values = [v for _, s, _ in points for v in (s["mean"] - (s["std"] or 0), s["mean"] + (s["std"] or 0))]
    y_values = [v for _, _, s in points for v in (s["mean"] - (s["std"] or 0), s["mean"] + (s["std"] or 0))]
    x_ticks = nice_ticks(min(x_values, default=0.0), max(x_values, default=1.0))
    y_ticks = nice_ticks(min(y_values, default=0.0), max(y_values, default=1.0))
    x = _Scale(x_ticks[0], x_ticks[-1], left, width - right)
    y = _Scale(y_ticks[0], y_ticks[-1], height - bottom, top)

    parts = [
        f"<svg id='tradeoff-plot' class='plot' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}' role='img' {FONT}>",
        f"<title>{escape(x_metric['label'])} against {escape(y_metric['label'])}, one point per model</title>",
    ]
    parts += _axes(x, y, x_ticks, y_ticks, _axis_title(x_metric), _axis_title(y_metric))

    target = next(((row, xs, ys) for row, xs, ys in points if row["target"]), None)
    if target is not None:  # dashed guides through the oracle show how far each method lands from it
        tx, ty = x(target[1]["mean"]), y(target[2]["mean"])
        parts.append(
            f"<path d='M{tx:.1f},{y.start:.1f} V{y.end:.1f} M{x.start:.1f},{ty:.1f} H{x.end:.1f}' "
            f"stroke='{TARGET_COLOUR}' stroke-opacity='0.35' stroke-dasharray='4 4'/>"
        )

    label_points = []
    for row, x_stat, y_stat in points:
        px, py, colour = x(x_stat["mean"]), y(y_stat["mean"]), colours[row["model"]]
        if x_stat["std"]:
            parts.append(
                f"<line x1='{x(x_stat['mean'] - x_stat['std']):.1f}' y1='{py:.1f}' "
                f"x2='{x(x_stat['mean'] + x_stat['std']):.1f}' y2='{py:.1f}' stroke='{colour}' stroke-width='1.2'/>"
            )
        if y_stat["std"]:
            parts.append(
                f"<line x1='{px:.1f}' y1='{y(y_stat['mean'] - y_stat['std']):.1f}' "
                f"x2='{px:.1f}' y2='{y(y_stat['mean'] + y_stat['std']):.1f}' stroke='{colour}' stroke-width='1.2'/>"
            )
        if row["target"]:
            parts.append(_target_marker(px, py))
        elif row["kind"] == "reference":
            parts.append(f"<rect x='{px - 5:.1f}' y='{py - 5:.1f}' width='10' height='10' fill='{colour}'/>")
        else:
            parts.append(f"<circle cx='{px:.1f}' cy='{py:.1f}' r='5.5' fill='{colour}' stroke='#fff'/>")
        label_points.append((px, py, model_label(row), 13 if row["target"] else 6))

    for (_, _, text, _), (lx, ly, anchor), (row, _, _) in zip(
        label_points, _place_labels(label_points, (left, top, width - right, height - bottom)), points
    ):
        weight = "bold" if row["target"] else "normal"
        parts.append(
            f"<text class='point-label' x='{lx:.1f}' y='{ly:.1f}' font-size='12' font-weight='{weight}' "
            f"text-anchor='{anchor}' fill='{colours[row['model']]}'>{escape(text)}</text>"
        )

    parts.append(_tradeoff_key(width - right, top - 14, target is not None))
    parts.append("</svg>")
    return "\n".join(parts), skipped


def _tradeoff_key(right_edge: float, baseline: float, has_target: bool) -> str:
    """Explain the markers in one line above the plot's top-right corner."""
    items = ["■ reference", "● method"] + (["◎ target (oracle)"] if has_target else [])
    text = "   ".join(items) + "   bars: ±1 std over seeds"
    return (
        f"<text x='{right_edge:.1f}' y='{baseline:.1f}' font-size='11' text-anchor='end' fill='#444' "
        f"xml:space='preserve'>{escape(text)}</text>"
    )


def _legend(models: list[str], colours: dict[str, str], left: float, top: float, max_width: float) -> tuple[list[str], float]:
    """Lay out legend entries left to right, wrapping lines; returns the SVG parts and the height used."""
    parts, x_pos, y_pos, line_height = [], left, top + 10, 16
    for model in models:
        entry_width = 26 + text_width(model, 11) + 12
        if x_pos > left and x_pos + entry_width > left + max_width:
            x_pos, y_pos = left, y_pos + line_height
        parts.append(
            f"<line x1='{x_pos:.1f}' y1='{y_pos - 4:.1f}' x2='{x_pos + 20:.1f}' y2='{y_pos - 4:.1f}' "
            f"stroke='{colours[model]}' stroke-width='2.5'/>"
        )
        parts.append(
            f"<text x='{x_pos + 26:.1f}' y='{y_pos:.1f}' font-size='11' fill='#222'>{escape(model)}</text>"
        )
        x_pos += entry_width
    return parts, y_pos - top + 6


def curve_svgs(results: dict, colours: dict[str, str]) -> list[tuple[str, str]]:
    """Plot each logged loss part against the training step, one line per method; None points are skipped.

    Returns (loss part, SVG) pairs in `schema.LOSS_PARTS` order.
    """
    plots = []
    for part in loss_parts(results["curves"]):
        series = {}
        for model, points in results["curves"].items():
            xy = [(point["step"], point[part]) for point in points if point.get(part) is not None]
            if xy:
                series[model] = sorted(xy)
        if series:
            plots.append((part, _curve_svg(part, series, colours)))
    return plots


def _curve_svg(part: str, series: dict[str, list[tuple[int, float]]], colours: dict[str, str]) -> str:
    width, plot_height = 390, 230
    left, right, top, bottom = 58, 16, 30, 46
    legend, legend_height = _legend(list(series), colours, left, plot_height, width - left - right)
    height = plot_height + legend_height + 8

    steps = [step for xy in series.values() for step, _ in xy]
    values = [value for xy in series.values() for _, value in xy]
    x_ticks = nice_ticks(min(steps), max(steps), count=5, integer=True)
    y_ticks = nice_ticks(min(values), max(values), count=4)
    x = _Scale(x_ticks[0], x_ticks[-1], left, width - right)
    y = _Scale(y_ticks[0], y_ticks[-1], plot_height - bottom, top)

    slug = "".join(char if char.isalnum() else "-" for char in part)
    parts = [
        f"<svg id='curve-{escape(slug)}' class='plot curve' width='{width}' "
        f"height='{height:.0f}' viewBox='0 0 {width} {height:.0f}' role='img' {FONT}>",
        f"<title>{escape(part)} per training step</title>",
        f"<text x='{left:.1f}' y='18' font-size='13' font-weight='bold' fill='#111'>{escape(part)}</text>",
    ]
    parts += _axes(x, y, x_ticks, y_ticks, "step", "")
    if y_ticks[0] < 0 < y_ticks[-1]:
        parts.append(f"<line x1='{x.start:.1f}' y1='{y(0):.1f}' x2='{x.end:.1f}' y2='{y(0):.1f}' stroke='#999'/>")

    for model, xy in series.items():
        path = " ".join(f"{'M' if i == 0 else 'L'}{x(step):.1f},{y(value):.1f}" for i, (step, value) in enumerate(xy))
        parts.append(
            f"<path class='curve-line' d='{path}' fill='none' stroke='{colours[model]}' stroke-width='1.8' "
            f"stroke-linejoin='round'><title>{escape(model)}</title></path>"
        )
        if len(xy) <= 30:  # markers keep short series, and single points, visible
            for step, value in xy:
                parts.append(f"<circle cx='{x(step):.1f}' cy='{y(value):.1f}' r='2.5' fill='{colours[model]}'/>")

    parts += legend
    parts.append("</svg>")
    return "\n".join(parts)


def _hex_to_rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def entropy_colour(entropy: float, maximum: float) -> tuple[str, str]:
    """Return (background, text) colours for an entropy on the YlOrRd scale over [0, maximum]."""
    position = min(max(entropy / maximum, 0.0), 1.0) * (len(ENTROPY_STOPS) - 1)
    index = min(int(position), len(ENTROPY_STOPS) - 2)
    fraction = position - index
    low, high = _hex_to_rgb(ENTROPY_STOPS[index]), _hex_to_rgb(ENTROPY_STOPS[index + 1])
    rgb = [round(a + (b - a) * fraction) for a, b in zip(low, high)]
    luminance = (0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]) / 255
    text = "#ffffff" if luminance < 0.5 else "#111111"
    return "#{:02x}{:02x}{:02x}".format(*rgb), text


def entropy_scale_maximum(entropies: list[float]) -> float:
    """Return the top of the colour scale: the largest entropy rounded up to a tick."""
    return nice_ticks(0.0, max(entropies, default=1.0) or 1.0, count=4)[-1]


def entropy_legend_svg(maximum: float) -> str:
    """Draw the colour bar for H(q_i) from 0 to `maximum`, with ticks."""
    width, bar_left, bar_width = 350, 10, 280
    ticks = nice_ticks(0.0, maximum, count=4)
    stops = "".join(
        f"<stop offset='{i / (len(ENTROPY_STOPS) - 1):.3f}' stop-color='{colour}'/>"
        for i, colour in enumerate(ENTROPY_STOPS)
    )
    parts = [
        f"<svg id='entropy-legend' width='{width}' height='46' "
        f"viewBox='0 0 {width} 46' role='img' {FONT}>",
        "<title>Colour scale of H(q_i)</title>",
        f"<defs><linearGradient id='entropy-gradient' x1='0' x2='1' y1='0' y2='0'>{stops}</linearGradient></defs>",
        f"<rect x='{bar_left}' y='4' width='{bar_width}' height='14' fill='url(#entropy-gradient)' stroke='#999'/>",
    ]
    for tick in ticks:
        px = bar_left + tick / maximum * bar_width
        parts.append(f"<line x1='{px:.1f}' y1='18' x2='{px:.1f}' y2='22' stroke='#444'/>")
        parts.append(
            f"<text x='{px:.1f}' y='34' font-size='11' text-anchor='middle' fill='#333'>"
            f"{escape(tick_label(tick, ticks))}</text>"
        )
    parts.append(f"<text x='{bar_left + bar_width + 10}' y='16' font-size='12' fill='#111'>H(qᵢ)</text>")
    parts.append("</svg>")
    return "\n".join(parts)
