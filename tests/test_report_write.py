"""Report writer: schema checks, the four files, numbers parsed back, escaping, overwrite, a real browser."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from viker.report import render_html, validate_results, write_report
from viker.report.schema import format_seconds
from viker.report.svg import entropy_colour, nice_ticks, tick_label

METRICS = [
    ("forget/mc_acc", "Forget MC acc.", "forget", "lower", "Forget efficacy"),
    ("forget/gen_rouge", "Forget ROUGE-L", "forget", "lower", "Forget efficacy"),
    ("forget/fact_acc", "Forget fact acc.", "forget", "lower", "Forget efficacy"),
    ("test/mc_acc", "Test MC acc.", "test", "lower", "Test (new portraits)"),
    ("retain/mc_acc", "Retain MC acc.", "retain", "higher", "Model utility"),
    ("retain/fact_acc", "Retain fact acc.", "retain", "higher", "Model utility"),
    ("public/mc_acc", "Public MC acc.", "public", "higher", "Model utility"),
]

# model: (kind, train time, {metric: (mean, std)}); std None is a single-seed value, a missing key an unmeasured one.
MODELS = {
    "Vanilla": ("reference", None, {
        "forget/mc_acc": (0.62, None), "forget/gen_rouge": (0.71, None), "forget/fact_acc": (0.68, None),
        "test/mc_acc": (0.55, None), "retain/mc_acc": (0.64, None), "retain/fact_acc": (0.66, None),
        "public/mc_acc": (0.71, None)}),
    "Oracle": ("reference", 1830.4, {
        "forget/mc_acc": (0.34, 0.012), "forget/gen_rouge": (0.29, 0.020), "forget/fact_acc": (0.12, 0.015),
        "test/mc_acc": (0.33, 0.010), "retain/mc_acc": (0.63, 0.008), "retain/fact_acc": (0.65, 0.011),
        "public/mc_acc": (0.70, 0.005)}),
    "GA": ("method", 212.7, {
        "forget/mc_acc": (0.21, 0.031), "forget/gen_rouge": (0.04, 0.010), "forget/fact_acc": (0.02, 0.004),
        "test/mc_acc": (0.25, 0.027), "retain/mc_acc": (0.38, 0.046), "retain/fact_acc": (0.21, 0.052),
        "public/mc_acc": (0.47, 0.038)}),
    "NPO": ("method", 240.1, {
        "forget/mc_acc": (0.30, 0.018), "forget/gen_rouge": (0.19, 0.022), "forget/fact_acc": (0.08, 0.011),
        "retain/mc_acc": (0.49, 0.025), "retain/fact_acc": (0.44, 0.030), "public/mc_acc": (0.58, 0.021)}),
    "ViKeR": ("method", 395.5, {
        "forget/mc_acc": (0.33, 0.015), "forget/gen_rouge": (0.24, 0.017), "forget/fact_acc": (0.10, 0.009),
        "test/mc_acc": (0.35, 0.014), "retain/mc_acc": (0.55, 0.019), "retain/fact_acc": (0.54, 0.021),
        "public/mc_acc": (0.64, 0.012)}),
    "ViKeR + retain NLL": ("method", 512.9, {
        "forget/mc_acc": (0.32, 0.013), "forget/gen_rouge": (0.22, 0.016), "forget/fact_acc": (0.09, 0.008),
        "test/mc_acc": (0.34, 0.012), "retain/mc_acc": (0.60, 0.011), "retain/fact_acc": (0.61, 0.013),
        "public/mc_acc": (0.68, 0.009)}),
}


def _curve(model: str, steps: int = 40) -> list[dict]:
    """Loss curves shaped like the ones the trainers log: GA diverges, NPO and ViKeR level off."""
    points = []
    for step in range(1, steps + 1):
        t = step / steps
        point = {"step": step, "forget/loss": None, "reg/kl": None, "retain/loss": None}
        if model == "GA":
            point["forget/loss"] = -0.5 - 9.0 * t**2
        elif model == "NPO":
            point["forget/loss"] = 0.69 * math.exp(-2.5 * t) + 0.05
        elif model == "ViKeR":
            point["forget/loss"] = -0.4 - 2.2 * (1 - math.exp(-3 * t))
            point["reg/kl"] = 0.02 + 0.35 * t * math.exp(-1.5 * t)
        else:
            point["forget/loss"] = -0.4 - 1.8 * (1 - math.exp(-3 * t))
            point["reg/kl"] = 0.02 + 0.28 * t * math.exp(-1.5 * t)
            if step % 2 == 0:  # retain batches are logged every other step
                point["retain/loss"] = 0.9 - 0.25 * t
        points.append(point)
    return points


def _tokens(texts, entropies, p_vanilla, p_unlearned):
    return [
        {"text": text, "entropy": h, "p_vanilla": pv, "p_unlearned": {m: ps[i] for m, ps in p_unlearned.items()}}
        for i, (text, h, pv) in enumerate(zip(texts, entropies, p_vanilla))
    ]


def example_results() -> dict:
    """A realistic two-seed MLLMU-Bench run: vanilla, oracle and four unlearning methods."""
    rows = []
    for model, (kind, train_time, values) in MODELS.items():
        rows.append({
            "model": model,
            "kind": kind,
            "train_time_s": train_time,
            "values": {
                key: {"mean": mean, "std": std, "n": 1 if std is None else 2} for key, (mean, std) in values.items()
            },
        })
    return {
        "header": {
            "title": "MLLMU-Bench, forget 5%: LLaVA-1.5-7B",
            "commit": "3f9c2e1a7b",
            "versions": {"python": "3.11.9", "torch": "2.5.1", "transformers": "5.25.0", "viker": "0.1.0"},
            "hardware": "1× NVIDIA H100 80GB, 32 CPU cores",
            "wall_clock_s": 5231.8,
            "seeds": [0, 1],
            "benchmark": "MLLMU-Bench",
            "model": "llava-hf/llava-1.5-7b-hf",
            "forget_split": "forget05",
            "command": "viker bench --benchmark mllmu --forget forget05 --methods ga,npo,viker,viker_nll --seeds 0,1",
            "created": "2025-06-01T12:00:00Z",
        },
        "metrics": [
            {"key": key, "label": label, "set": set_name, "direction": direction, "group": group}
            for key, label, set_name, direction, group in METRICS
        ],
        "rows": rows,
        "tradeoff": {"x": "forget/fact_acc", "y": "retain/fact_acc"},
        "curves": {model: _curve(model) for model in ("GA", "NPO", "ViKeR", "ViKeR + retain NLL")},
        "keytokens": [
            {
                "sample_id": "007/1",
                "question": "Where was this person born?",
                "tokens": _tokens(
                    [" She", " was", " born", " in", " Perth", ",", " Australia", "."],
                    [0.41, 0.22, 0.35, 0.18, 3.62, 0.55, 2.71, 0.09],
                    [0.97, 0.99, 0.98, 0.99, 0.96, 0.93, 0.95, 0.99],
                    {
                        "GA": [0.02, 0.01, 0.0, 0.01, 0.0, 0.0, 0.0, 0.01],
                        "NPO": [0.55, 0.61, 0.58, 0.72, 0.03, 0.44, 0.05, 0.80],
                        "ViKeR": [0.91, 0.96, 0.95, 0.97, 0.01, 0.88, 0.04, 0.97],
                        "ViKeR + retain NLL": [0.93, 0.97, 0.96, 0.98, 0.01, 0.90, 0.03, 0.98],
                    },
                ),
            },
            {
                "sample_id": "012/3",
                "question": "What is this person's profession?",
                "tokens": _tokens(
                    [" A", " marine", " biologist", " at", " Reef", "Watch", "."],
                    [0.62, 3.15, 1.94, 0.47, 3.88, 2.05, 0.12],
                    [0.95, 0.94, 0.97, 0.92, 0.90, 0.98, 0.99],
                    {
                        "GA": [0.03, 0.0, 0.0, 0.02, 0.0, 0.0, 0.02],
                        "NPO": [0.60, 0.08, 0.21, 0.66, 0.02, 0.30, 0.77],
                        "ViKeR": [0.90, 0.05, 0.33, 0.93, 0.01, 0.41, 0.96],
                        "ViKeR + retain NLL": [0.92, 0.04, 0.37, 0.94, 0.01, 0.45, 0.97],
                    },
                ),
            },
        ],
    }


STAT_PATTERN = re.compile(r"^(-?\d+\.\d+)(?: ± (\d+\.\d+))?$")


def _parse_stat(text: str) -> tuple[float, float | None] | None:
    """Parse "0.210 ± 0.031", "0.620" or "–" back into (mean, std)."""
    text = text.strip()
    if text == "–":
        return None
    match = STAT_PATTERN.match(text)
    assert match, f"cell {text!r} is not 'mean ± std', 'mean' or '–'"
    return float(match.group(1)), None if match.group(2) is None else float(match.group(2))


def _assert_row_matches(model: str, cells: list[str], json_row: dict, metrics: list[dict]) -> None:
    """Compare rendered metric cells (rounded to 3 decimals) with the JSON values of the same row."""
    assert len(cells) == len(metrics), f"{model}: {len(cells)} metric cells for {len(metrics)} metrics"
    for cell, metric in zip(cells, metrics):
        expected = json_row["values"].get(metric["key"])
        parsed = _parse_stat(cell)
        if expected is None:
            assert parsed is None, f"{model} {metric['key']}: expected '–', got {cell!r}"
            continue
        assert parsed is not None, f"{model} {metric['key']}: got '–' for {expected}"
        assert parsed[0] == pytest.approx(expected["mean"], abs=5e-4), f"{model} {metric['key']} mean"
        if expected["std"] is None:
            assert parsed[1] is None, f"{model} {metric['key']}: std shown for a single seed"
        else:
            assert parsed[1] == pytest.approx(expected["std"], abs=5e-4), f"{model} {metric['key']} std"


class _ResultsTableParser(HTMLParser):
    """Collect the text of each cell of each body row of <table id='results'>."""

    def __init__(self):
        super().__init__()
        self.in_table = self.in_body = False
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table" and dict(attrs).get("id") == "results":
            self.in_table = True
        elif self.in_table and tag == "tbody":
            self.in_body = True
        elif self.in_body and tag == "tr":
            self.rows.append([])
        elif self.in_body and tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if self.in_body and tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(" ".join("".join(self.cell).split()))
            self.cell = None
        elif tag == "tbody":
            self.in_body = False
        elif tag == "table":
            self.in_table = False

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


@pytest.fixture
def written(tmp_path):
    results = example_results()
    paths = write_report(results, tmp_path / "out")
    return results, paths


def test_write_report_creates_four_files(written):
    _, paths = written
    assert set(paths) == {"md", "csv", "json", "html"}
    for kind, path in paths.items():
        assert path.name == f"report.{kind}"
        assert path.stat().st_size > 0, f"{path} is empty"
    leftovers = sorted(p.name for p in paths["md"].parent.iterdir() if p.name.startswith("."))
    assert leftovers == [], f"temporary files left behind: {leftovers}"


def test_json_keeps_input_values(written):
    results, paths = written
    saved = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert saved["header"] == results["header"]
    assert [row["model"] for row in saved["rows"]] == list(MODELS)
    for row, source in zip(saved["rows"], results["rows"]):
        assert row["values"] == source["values"], row["model"]
        assert row["train_time_s"] == source["train_time_s"], row["model"]
    assert [row["target"] for row in saved["rows"]] == [False, True, False, False, False, False]
    assert saved["tradeoff"] == {"x": "forget/fact_acc", "y": "retain/fact_acc"}
    assert saved["keytokens"][0]["tokens"][4]["p_unlearned"]["ViKeR"] == 0.01


def test_markdown_numbers_match_json(written):
    _, paths = written
    saved = json.loads(paths["json"].read_text(encoding="utf-8"))
    lines = paths["md"].read_text(encoding="utf-8").splitlines()
    header_index = next(i for i, line in enumerate(lines) if line.startswith("| Model | Kind |"))
    header = [cell.strip() for cell in lines[header_index].strip("|").split("|")]
    assert header[3:] == [
        "Forget MC acc. ↓", "Forget ROUGE-L ↓", "Forget fact acc. ↓", "Test MC acc. ↓",
        "Retain MC acc. ↑", "Retain fact acc. ↑", "Public MC acc. ↑",
    ]

    body = lines[header_index + 2: header_index + 2 + len(saved["rows"])]
    for line, json_row in zip(body, saved["rows"], strict=True):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        model = cells[0]
        expected_name = json_row["model"] + (" (target)" if json_row["target"] else "")
        assert model == expected_name
        _assert_row_matches(model, cells[3:], json_row, saved["metrics"])

    assert "| Oracle (target) | reference | 30 min 30 s |" in lines[header_index + 3]
    assert "| GA | method | 3 min 33 s |" in lines[header_index + 4]


def test_html_numbers_match_json(written):
    _, paths = written
    saved = json.loads(paths["json"].read_text(encoding="utf-8"))
    parser = _ResultsTableParser()
    parser.feed(paths["html"].read_text(encoding="utf-8"))
    assert len(parser.rows) == len(saved["rows"])
    for cells, json_row in zip(parser.rows, saved["rows"]):
        expected_name = json_row["model"] + (" (target)" if json_row["target"] else "")
        assert cells[0] == expected_name
        _assert_row_matches(cells[0], cells[3:], json_row, saved["metrics"])
    # NPO has no test/mc_acc value: the fourth metric cell of its row is the en dash.
    assert parser.rows[3][3 + 3] == "–"


def test_csv_columns_and_values(written):
    results, paths = written
    reader = list(csv.reader(io.StringIO(paths["csv"].read_text(encoding="utf-8"))))
    expected_header = ["model", "kind", "train_time_s"]
    for key, *_ in METRICS:
        expected_header += [f"{key}_mean", f"{key}_std"]
    assert reader[0] == expected_header
    assert [line[0] for line in reader[1:]] == list(MODELS)

    by_model = {line[0]: dict(zip(reader[0], line)) for line in reader[1:]}
    assert by_model["GA"]["kind"] == "method"
    assert float(by_model["GA"]["train_time_s"]) == 212.7
    assert float(by_model["GA"]["forget/mc_acc_mean"]) == 0.21
    assert float(by_model["GA"]["forget/mc_acc_std"]) == 0.031
    assert by_model["Vanilla"]["train_time_s"] == ""
    assert by_model["Vanilla"]["retain/mc_acc_std"] == ""  # one seed: no std
    assert by_model["NPO"]["test/mc_acc_mean"] == ""  # not measured
    assert float(by_model["ViKeR + retain NLL"]["public/mc_acc_mean"]) == 0.68


def test_html_is_self_contained(written):
    _, paths = written
    page = paths["html"].read_text(encoding="utf-8")
    assert "<script" not in page
    assert "src=" not in page
    assert "href=" not in page
    assert "@import" not in page
    assert re.findall(r"url\(([^)]*)\)", page) == ["#entropy-gradient"]
    assert page.count("<svg") == 1 + 3 + 1  # trade-off, three loss parts, entropy legend


def test_html_plots_show_every_model(written):
    _, paths = written
    page = paths["html"].read_text(encoding="utf-8")
    tradeoff = page[page.index("<svg id='tradeoff-plot'"): page.index("</svg>", page.index("tradeoff-plot"))]
    labels = re.findall(r"class='point-label'[^>]*>([^<]*)<", tradeoff)
    assert sorted(labels) == sorted(["Vanilla", "Oracle (target)", "GA", "NPO", "ViKeR", "ViKeR + retain NLL"])
    assert "font-weight='bold'" in tradeoff  # only the target label is bold
    assert "Forget fact acc. ↓ (lower is better)" in tradeoff
    assert "Retain fact acc. ↑ (higher is better)" in tradeoff

    def lines_in(svg_id: str) -> list[str]:
        start = page.index(f"<svg id='{svg_id}'")
        return re.findall(r"<path class='curve-line'[^>]*><title>([^<]*)</title>", page[start: page.index("</svg>", start)])

    assert lines_in("curve-forget-loss") == ["GA", "NPO", "ViKeR", "ViKeR + retain NLL"]
    assert lines_in("curve-reg-kl") == ["ViKeR", "ViKeR + retain NLL"]  # GA and NPO log only None
    assert lines_in("curve-retain-loss") == ["ViKeR + retain NLL"]


def test_retain_curve_skips_null_steps(written):
    """Only even steps carry retain/loss, so the line has 20 vertices over 40 steps."""
    _, paths = written
    page = paths["html"].read_text(encoding="utf-8")
    start = page.index("<svg id='curve-retain-loss'")
    path = re.search(r"<path class='curve-line' d='([^']*)'", page[start:]).group(1)
    assert path.count("M") == 1
    assert path.count("L") == 19


def test_html_escapes_user_text(tmp_path):
    results = example_results()
    results["keytokens"][0]["question"] = "Who wrote <b>this</b> & that?"
    results["keytokens"][0]["tokens"][4]["text"] = "<script>alert(1)</script>"
    results["rows"][2]["model"] = "GA <i>"
    results["header"]["command"] = "viker bench --note '<img src=x>'"
    page = render_html(validate_results(results))

    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>this</b>" not in page
    assert "Who wrote &lt;b&gt;this&lt;/b&gt; &amp; that?" in page
    assert "GA <i>" not in page
    assert "GA &lt;i&gt;" in page
    assert "<img" not in page

    paths = write_report(results, tmp_path)
    markdown = paths["md"].read_text(encoding="utf-8")
    assert "<script>" not in markdown
    assert "\\<script\\>alert(1)\\</script\\>" in markdown


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (("header", "commit"), "header.commit is missing"),
        (("header", "versions", "torch"), "header.versions.torch is missing"),
        (("rows", 1, "values", "forget/mc_acc", "mean"), "rows[1].values['forget/mc_acc'].mean is missing"),
        (("metrics", 2, "direction"), "metrics[2].direction is missing"),
        (("keytokens", 0, "tokens", 3, "entropy"), "keytokens[0].tokens[3].entropy is missing"),
        (("tradeoff", "y"), "tradeoff.y is missing"),
        (("rows",), "rows is missing"),
    ],
)
def test_missing_key_names_its_path(path, message):
    results = example_results()
    container = results
    for key in path[:-1]:
        container = container[key]
    del container[path[-1]]
    with pytest.raises(ValueError, match=re.escape(message)):
        validate_results(results)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r["metrics"][0].update(direction="down"), "metrics[0].direction is 'down'"),
        (lambda r: r["rows"][0].update(kind="baseline"), "rows[0].kind is 'baseline'"),
        (lambda r: r["rows"][3].update(model="GA"), "rows[3].model repeats the model name 'GA'"),
        (lambda r: r["rows"][2]["values"].update(typo={"mean": 1, "std": None, "n": 1}), "is not a declared metric"),
        (lambda r: r["tradeoff"].update(x="forget/nothing"), "tradeoff.x is 'forget/nothing'"),
        (lambda r: r["header"].update(seeds=[0, "1"]), "header.seeds[1] must be an integer"),
        (lambda r: r["rows"][2].update(target=True), "mark 2 rows as the target"),
    ],
)
def test_invalid_value_names_its_path(change, message):
    results = example_results()
    results["rows"][1]["target"] = True
    change(results)
    with pytest.raises(ValueError, match=re.escape(message)):
        validate_results(results)


def test_invalid_results_write_nothing(tmp_path):
    results = example_results()
    del results["header"]["model"]
    with pytest.raises(ValueError, match=re.escape("header.model is missing")):
        write_report(results, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_existing_report_is_kept(tmp_path):
    write_report(example_results(), tmp_path)
    first = (tmp_path / "report.md").read_text(encoding="utf-8")

    changed = example_results()
    changed["header"]["title"] = "Second run"
    with pytest.raises(FileExistsError, match="--overwrite") as error:
        write_report(changed, tmp_path)
    assert str(tmp_path / "report.md") in str(error.value)
    assert "--out" in str(error.value)
    assert (tmp_path / "report.md").read_text(encoding="utf-8") == first

    write_report(changed, tmp_path, overwrite=True)
    assert (tmp_path / "report.md").read_text(encoding="utf-8").startswith("# Second run\n")


def test_one_existing_file_blocks_all(tmp_path):
    (tmp_path / "report.csv").write_text("keep me", encoding="utf-8")
    with pytest.raises(FileExistsError, match=re.escape(str(tmp_path / "report.csv"))):
        write_report(example_results(), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.csv"]


def test_nan_mean_renders_as_missing(tmp_path):
    results = example_results()
    results["rows"][4]["values"]["forget/mc_acc"]["mean"] = float("nan")
    paths = write_report(results, tmp_path)
    saved = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert saved["rows"][4]["values"]["forget/mc_acc"]["mean"] is None
    parser = _ResultsTableParser()
    parser.feed(paths["html"].read_text(encoding="utf-8"))
    assert parser.rows[4][0] == "ViKeR"
    assert parser.rows[4][3] == "–"


def test_target_direction_metric(tmp_path):
    """A metric whose best value is the target row's gets the ≈ mark, its own title and legend entry."""
    results = example_results()
    results["metrics"].append({"key": "mia/mink_pp/mia_auc", "label": "MIA AUC", "set": "forget",
                               "direction": "target", "group": "Membership inference"})
    results["rows"][0]["values"]["mia/mink_pp/mia_auc"] = {"mean": 0.91, "std": None, "n": 1}
    paths = write_report(results, tmp_path)
    markdown = paths["md"].read_text(encoding="utf-8")
    html = paths["html"].read_text(encoding="utf-8")
    assert "| MIA AUC ≈ |" in markdown
    assert "≈ one where the value nearest the target row's is best" in markdown
    assert "mia/mink_pp/mia_auc: nearest the target is better" in html
    results["metrics"][-1]["direction"] = "closest"
    with pytest.raises(ValueError, match="direction is 'closest'; use one of lower, higher, target"):
        validate_results(results)


def test_target_row_detection():
    results = example_results()
    assert [row["target"] for row in validate_results(results)["rows"]] == [False, True, False, False, False, False]

    results["rows"][4]["target"] = True  # an explicit flag replaces the name rule
    assert [row["target"] for row in validate_results(results)["rows"]] == [False, False, False, False, True, False]

    results = example_results()
    results["rows"][1]["model"] = "Retrained"
    assert not any(row["target"] for row in validate_results(results)["rows"])


def test_optional_sections_may_be_absent(tmp_path):
    results = example_results()
    for key in ("tradeoff", "curves", "keytokens"):
        del results[key]
    paths = write_report(results, tmp_path)
    page = paths["html"].read_text(encoding="utf-8")
    assert "<table id='results'>" in page
    assert "<svg" not in page
    assert "## Key tokens" not in paths["md"].read_text(encoding="utf-8")


def test_tradeoff_lists_models_without_values():
    results = example_results()
    del results["rows"][3]["values"]["forget/fact_acc"]  # NPO
    results["rows"][0]["values"]["retain/fact_acc"]["mean"] = None  # Vanilla
    page = render_html(validate_results(results))
    assert "Not plotted, for lack of a value: Vanilla, NPO." in page
    tradeoff = page[page.index("<svg id='tradeoff-plot'"): page.index("</svg>", page.index("tradeoff-plot"))]
    assert tradeoff.count("class='point-label'") == 4

    for row in results["rows"]:
        row["values"].pop("forget/fact_acc", None)
    page = render_html(validate_results(results))  # no point at all still draws empty axes
    assert "<svg id='tradeoff-plot'" in page
    assert "class='point-label'" not in page


def test_format_seconds_by_hand():
    """3723 s = 1 h 2 min 3 s; 59.96 s rounds to 60 s = 1 min 00 s."""
    assert format_seconds(12.34) == "12.3 s"
    assert format_seconds(59.96) == "1 min 00 s"
    assert format_seconds(3723) == "1 h 02 min 03 s"
    assert format_seconds(None) == "–"


def test_nice_ticks_by_hand():
    """(0.62 - 0.21) / 5 = 0.082, so the step is 0.1 and the ticks run from 0.2 to 0.7.

    (40 - 1) / 5 = 7.8, so the integer step is 10 and the ticks run from 0 to 40.
    (-0.5 - (-9.5)) / 4 = 2.25, so the step is 2.5 and the ticks run from -10 to 0.
    """
    assert nice_ticks(0.21, 0.62) == [0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    assert nice_ticks(1, 40, integer=True) == [0, 10, 20, 30, 40]
    assert nice_ticks(-9.5, -0.5, count=4) == [-10, -7.5, -5, -2.5, 0]
    assert tick_label(-7.5, [-10, -7.5]) == "−7.5"
    assert tick_label(0.25, [0, 0.25]) == "0.25"
    assert tick_label(20, [0, 10]) == "20"


def test_entropy_colour_by_hand():
    """Nine stops over [0, 4]: 2.0 sits at position 4.0, the fifth stop #fd8d3c exactly.

    Its luminance is (0.2126·253 + 0.7152·141 + 0.0722·60) / 255 = 0.62 > 0.5, so the text is dark.
    1.0 sits at position 2.0, the third stop #fed976; 0.25 at position 0.5, halfway between
    #ffffcc and #ffeda0: (255, 246, 182) = #fff6b6.
    """
    assert entropy_colour(0.0, 4.0) == ("#ffffcc", "#111111")
    assert entropy_colour(1.0, 4.0) == ("#fed976", "#111111")
    assert entropy_colour(2.0, 4.0) == ("#fd8d3c", "#111111")
    assert entropy_colour(0.25, 4.0) == ("#fff6b6", "#111111")
    assert entropy_colour(4.0, 4.0) == ("#800026", "#ffffff")
    assert entropy_colour(9.0, 4.0) == ("#800026", "#ffffff")  # clipped to the top of the scale


def _chromium_command() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium_flags(profile: Path) -> list[str]:
    return [
        "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
    ]


@pytest.mark.skipif(_chromium_command() is None, reason="chromium is not on PATH; install it to render report.html")
def test_report_renders_in_chromium(written, tmp_path):
    _, paths = written
    command = [_chromium_command(), *_chromium_flags(tmp_path / "profile"), "--dump-dom", paths["html"].as_uri()]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
    assert completed.returncode == 0, completed.stderr[-2000:]
    dom = completed.stdout

    parser = _ResultsTableParser()
    parser.feed(dom)
    assert [cells[0] for cells in parser.rows] == ["Vanilla", "Oracle (target)", "GA", "NPO", "ViKeR", "ViKeR + retain NLL"]
    assert parser.rows[2][3] == "0.210 ± 0.031"
    for svg_id in ("tradeoff-plot", "curve-forget-loss", "curve-reg-kl", "curve-retain-loss", "entropy-legend"):
        assert f'<svg id="{svg_id}"' in dom, f"{svg_id} missing from the rendered DOM"
    assert dom.count('class="tok"') == 15  # 8 + 7 answer tokens
