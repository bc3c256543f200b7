"""The results dictionary that the benchmark runner hands to the report, and its validation.

`validate_results` checks every key that the report reads and returns a
normalised copy: plain Python `int`/`float` in place of NumPy scalars, the
optional sections (`tradeoff`, `curves`, `keytokens`) filled with empty
defaults, and non-finite floats replaced by None. The full schema, with one
example per key, is in docs/report.md.
"""

from __future__ import annotations

import logging
import math
import numbers
from typing import Any

logger = logging.getLogger(__name__)

HEADER_STRINGS = ("title", "commit", "hardware", "benchmark", "model", "forget_split", "command", "created")
VERSION_KEYS = ("python", "torch", "transformers", "viker")
# "target": the best value is the target row's. For a membership-inference AUC the oracle gets what a
# model that never saw the forget set gets, and a value above or below it betrays the unlearning.
DIRECTIONS = ("lower", "higher", "target")
ARROWS = {"lower": "↓", "higher": "↑", "target": "≈"}
LEGEND = ("↓ marks a metric where lower is better, ↑ one where higher is better, ≈ one where the value nearest "
          "the target row's is best. ")
ROW_KINDS = ("reference", "method")

# Loss parts that the trainers log, in the order the report plots them.
# Any other key found in `curves` is plotted after these, sorted by name.
LOSS_PARTS = ("forget/loss", "reg/kl", "retain/loss")

DEFAULT_DIGITS = 3


def _invalid(path: str, problem: str) -> ValueError:
    return ValueError(
        f"invalid results: {path} {problem}. "
        "Fix the benchmark runner's results dictionary; docs/report.md lists every key."
    )


def _require(mapping: Any, key: str, path: str) -> Any:
    if not isinstance(mapping, dict):
        raise _invalid(path, f"must be a dict, got {type(mapping).__name__}")
    if key not in mapping:
        raise _invalid(f"{path}.{key}" if path else key, "is missing")
    return mapping[key]


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise _invalid(path, f"must be a string, got {type(value).__name__} {value!r}")
    return value


def _number(value: Any, path: str, allow_none: bool = False) -> float | None:
    """Return `value` as a float; None for None (when allowed) and for NaN or infinity."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _invalid(path, f"must be a number{' or None' if allow_none else ''}, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        if not allow_none:
            raise _invalid(path, f"must be a finite number, got {value!r}")
        logger.warning("%s is %r; the report shows it as missing and writes null to report.json", path, value)
        return None
    return number


def _integer(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _invalid(path, f"must be an integer, got {value!r}")
    return int(value)


def _list(value: Any, path: str) -> list:
    if not isinstance(value, list):
        raise _invalid(path, f"must be a list, got {type(value).__name__}")
    return value


def _dict(value: Any, path: str) -> dict:
    if not isinstance(value, dict):
        raise _invalid(path, f"must be a dict, got {type(value).__name__}")
    return value


def _validate_header(results: dict) -> dict:
    header = _dict(_require(results, "header", ""), "header")
    out: dict[str, Any] = {key: _string(_require(header, key, "header"), f"header.{key}") for key in HEADER_STRINGS}

    versions = _dict(_require(header, "versions", "header"), "header.versions")
    out["versions"] = {}
    for key in VERSION_KEYS:
        out["versions"][key] = _string(_require(versions, key, "header.versions"), f"header.versions.{key}")
    for key, value in versions.items():  # extra libraries (peft, accelerate, ...) are kept and shown
        out["versions"].setdefault(str(key), _string(value, f"header.versions.{key}"))

    out["wall_clock_s"] = _number(_require(header, "wall_clock_s", "header"), "header.wall_clock_s")
    seeds = _list(_require(header, "seeds", "header"), "header.seeds")
    out["seeds"] = [_integer(seed, f"header.seeds[{i}]") for i, seed in enumerate(seeds)]
    return out


def _validate_metrics(results: dict) -> list[dict]:
    metrics = _list(_require(results, "metrics", ""), "metrics")
    if not metrics:
        raise _invalid("metrics", "is empty; declare at least one metric column")

    out, seen = [], set()
    for i, metric in enumerate(metrics):
        path = f"metrics[{i}]"
        _dict(metric, path)
        spec = {key: _string(_require(metric, key, path), f"{path}.{key}") for key in ("key", "label", "set", "group")}
        direction = _string(_require(metric, "direction", path), f"{path}.direction")
        if direction not in DIRECTIONS:
            raise _invalid(f"{path}.direction", f"is {direction!r}; use one of {', '.join(DIRECTIONS)}")
        spec["direction"] = direction
        spec["digits"] = _integer(metric.get("digits", DEFAULT_DIGITS), f"{path}.digits")
        if spec["key"] in seen:
            raise _invalid(f"{path}.key", f"repeats the metric key {spec['key']!r}; each column needs its own key")
        seen.add(spec["key"])
        out.append(spec)
    return out


def _validate_stat(stat: Any, path: str) -> dict:
    _dict(stat, path)
    return {
        "mean": _number(_require(stat, "mean", path), f"{path}.mean", allow_none=True),
        "std": _number(stat.get("std"), f"{path}.std", allow_none=True),
        "n": _integer(_require(stat, "n", path), f"{path}.n"),
    }


def _validate_rows(results: dict, metric_keys: set[str]) -> list[dict]:
    rows = _list(_require(results, "rows", ""), "rows")
    if not rows:
        raise _invalid("rows", "is empty; add at least one model row")

    out, seen = [], set()
    for i, row in enumerate(rows):
        path = f"rows[{i}]"
        _dict(row, path)
        model = _string(_require(row, "model", path), f"{path}.model")
        if model in seen:
            raise _invalid(f"{path}.model", f"repeats the model name {model!r}; give each row its own name")
        seen.add(model)

        kind = _string(_require(row, "kind", path), f"{path}.kind")
        if kind not in ROW_KINDS:
            raise _invalid(f"{path}.kind", f"is {kind!r}; use one of {', '.join(ROW_KINDS)}")

        values = _dict(_require(row, "values", path), f"{path}.values")
        checked = {}
        for key, stat in values.items():
            if key not in metric_keys:
                raise _invalid(f"{path}.values[{key!r}]", "is not a declared metric; add it to `metrics` or drop it")
            checked[key] = _validate_stat(stat, f"{path}.values[{key!r}]")

        target = row.get("target")
        if target is not None and not isinstance(target, bool):
            raise _invalid(f"{path}.target", f"must be true or false, got {target!r}")
        train_time = _number(row.get("train_time_s"), f"{path}.train_time_s", allow_none=True)
        out.append({"model": model, "kind": kind, "train_time_s": train_time, "values": checked, "target": target})

    _mark_target(out)
    return out


def _mark_target(rows: list[dict]) -> None:
    """Set `target` on every row: an explicit flag wins, else the reference row named like "oracle"."""
    if not any(row["target"] is not None for row in rows):
        for row in rows:
            row["target"] = row["kind"] == "reference" and "oracle" in row["model"].lower()
    for row in rows:
        row["target"] = bool(row["target"])
    targets = [row["model"] for row in rows if row["target"]]
    if len(targets) > 1:
        raise _invalid("rows", f"mark {len(targets)} rows as the target ({', '.join(targets)}); mark one at most")


def _validate_tradeoff(results: dict, metric_keys: set[str]) -> dict | None:
    tradeoff = results.get("tradeoff")
    if tradeoff is None:
        return None
    _dict(tradeoff, "tradeoff")
    out = {}
    for axis in ("x", "y"):
        key = _string(_require(tradeoff, axis, "tradeoff"), f"tradeoff.{axis}")
        if key not in metric_keys:
            raise _invalid(f"tradeoff.{axis}", f"is {key!r}, which is not a declared metric key")
        out[axis] = key
    return out


def _validate_curves(results: dict) -> dict[str, list[dict]]:
    curves = _dict(results.get("curves") or {}, "curves")
    out = {}
    for model, points in curves.items():
        path = f"curves[{model!r}]"
        checked = []
        for j, point in enumerate(_list(points, path)):
            point_path = f"{path}[{j}]"
            _dict(point, point_path)
            entry = {"step": _integer(_require(point, "step", point_path), f"{point_path}.step")}
            for key, value in point.items():
                if key != "step":
                    entry[str(key)] = _number(value, f"{point_path}.{key}", allow_none=True)
            checked.append(entry)
        out[str(model)] = checked
    return out


def _validate_keytokens(results: dict) -> list[dict]:
    samples = _list(results.get("keytokens") or [], "keytokens")
    out = []
    for i, sample in enumerate(samples):
        path = f"keytokens[{i}]"
        _dict(sample, path)
        tokens = []
        for j, token in enumerate(_list(_require(sample, "tokens", path), f"{path}.tokens")):
            token_path = f"{path}.tokens[{j}]"
            _dict(token, token_path)
            p_unlearned = _dict(_require(token, "p_unlearned", token_path), f"{token_path}.p_unlearned")
            tokens.append({
                "text": _string(_require(token, "text", token_path), f"{token_path}.text"),
                "entropy": _number(_require(token, "entropy", token_path), f"{token_path}.entropy"),
                "p_vanilla": _number(_require(token, "p_vanilla", token_path), f"{token_path}.p_vanilla", True),
                "p_unlearned": {
                    str(model): _number(p, f"{token_path}.p_unlearned[{model!r}]", allow_none=True)
                    for model, p in p_unlearned.items()
                },
            })
        out.append({
            "sample_id": _string(_require(sample, "sample_id", path), f"{path}.sample_id"),
            "question": _string(_require(sample, "question", path), f"{path}.question"),
            "tokens": tokens,
        })
    return out


def validate_results(results: dict) -> dict:
    """Check the results dictionary and return a normalised copy that the renderers read.

    Required: `header`, `metrics` (at least one) and `rows` (at least one).
    Optional: `tradeoff` (None skips the plot), `curves` ({}) and `keytokens` ([]).
    A row's optional `target: bool` marks the oracle; without any such flag,
    the `reference` row whose name contains "oracle" is the target.

    Raises:
        ValueError: a key is missing or has the wrong type, naming its path
            (for example `header.versions.torch` or `rows[2].values['forget/mc_acc'].mean`).
    """
    if not isinstance(results, dict):
        raise _invalid("results", f"must be a dict, got {type(results).__name__}")
    header = _validate_header(results)
    metrics = _validate_metrics(results)
    metric_keys = {metric["key"] for metric in metrics}
    return {
        "header": header,
        "metrics": metrics,
        "rows": _validate_rows(results, metric_keys),
        "tradeoff": _validate_tradeoff(results, metric_keys),
        "curves": _validate_curves(results),
        "keytokens": _validate_keytokens(results),
    }


def loss_parts(curves: dict[str, list[dict]]) -> list[str]:
    """Return the logged loss keys in plotting order: the known parts first, then the rest by name."""
    found = {key for points in curves.values() for point in points for key in point if key != "step"}
    known = [key for key in LOSS_PARTS if key in found]
    return known + sorted(found - set(known))


def arrow(direction: str) -> str:
    return ARROWS[direction]


def better(direction: str) -> str:
    """Return how to read a direction, for titles and axis labels: "lower is better", …"""
    return "nearest the target is better" if direction == "target" else f"{direction} is better"


def format_number(value: float | None, digits: int = DEFAULT_DIGITS) -> str:
    """Format a value with fixed decimals; None renders as an en dash."""
    if value is None:
        return "–"
    return f"{value:.{digits}f}"


def format_stat(stat: dict | None, digits: int = DEFAULT_DIGITS) -> str:
    """Format a metric value as "mean ± std", or "mean" when std is None, or "–" when absent."""
    if stat is None or stat["mean"] is None:
        return "–"
    if stat["std"] is None:
        return format_number(stat["mean"], digits)
    return f"{format_number(stat['mean'], digits)} ± {format_number(stat['std'], digits)}"


def format_seconds(seconds: float | None) -> str:
    """Format a duration as "12.3 s", or "1 h 02 min 03 s" past a minute."""
    if seconds is None:
        return "–"
    if seconds < 59.95:  # 59.96 would print as "60.0 s"
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min {secs:02d} s"
    return f"{minutes} min {secs:02d} s"


def show_whitespace(token: str) -> str:
    """Make a token's spaces, tabs and newlines visible ("␣", "⇥", "↵") for the per-token tables."""
    return token.replace(" ", "␣").replace("\t", "⇥").replace("\n", "↵")


def unlearned_models(sample: dict, rows: list[dict]) -> list[str]:
    """Return the models with a p_unlearned value in `sample`, in row order, then any others by first use."""
    found: list[str] = []
    for token in sample["tokens"]:
        for model in token["p_unlearned"]:
            if model not in found:
                found.append(model)
    order = [row["model"] for row in rows]
    return sorted(found, key=lambda model: order.index(model) if model in order else len(order) + found.index(model))
