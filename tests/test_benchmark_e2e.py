"""`viker benchmark` end to end on a tiny benchmark and model: the report's numbers match its JSON."""

import csv
import json

import pytest

from viker.benchmark import TABLE, BenchmarkConfig, run_benchmark
from viker.cli import main
from viker.data import load_benchmark
from viker.data.records import Modality, SetName
from viker.models.finetune import FinetuneConfig
from viker.models.trainable import TrainableSpec

FAST_UNLEARN = dict(learning_rate=1e-3, batch_size=2, max_steps=2, logging_steps=1,
                    trainable=TrainableSpec(parts=("language_model", "lm_head"), lora_r=0))


@pytest.fixture(scope="module")
def bench_dir(tiny_benchmark, tmp_path_factory):
    """The tiny benchmark written to disk again, so the runner loads it as a user's folder."""
    from viker.data.embedded import build_embedded

    return build_embedded(tmp_path_factory.mktemp("data"), seed=0, n_people=10, n_public=2, image_size=32,
                          qa_per_person=3, n_reference_faces=6, test_images_per_person=1, n_reference_other=2,
                          n_holdout=2)


@pytest.fixture(scope="module")
def report(bench_dir, tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    cfg = BenchmarkConfig(data=str(bench_dir), model=str(tiny_model_dir), methods=("ga", "viker"), seeds=(0, 1),
                          out=str(out / "run"), cache_dir=str(out / "cache"), eval_items=2,
                          unlearn=dict(FAST_UNLEARN), finetune=FinetuneConfig(max_epochs=0.5, check_every=1000))
    results = run_benchmark(cfg)
    return out / "run", results


def test_report_rows_and_files(report):
    run, results = report
    names = [row["model"] for row in results["rows"]]
    assert names == ["vanilla", "oracle", "GA", "ViKeR"]
    for name in ("report.md", "report.csv", "report.json", "report.html", "per_sample.json", "generations.json"):
        assert (run / name).is_file(), name
    assert not (run / "models").exists()  # unlearned models are removed unless --keep-models


def test_two_seeds_give_mean_and_std(report):
    run, results = report
    ga = next(row for row in results["rows"] if row["model"] == "GA")
    per_sample = json.loads((run / "per_sample.json").read_text())
    assert len(per_sample["GA"]) == 2
    key = "forget/image_text/rougeL"
    seed_means = [sum(d[key].values()) / len(d[key]) for d in per_sample["GA"]]
    assert ga["values"][key]["mean"] == pytest.approx(sum(seed_means) / 2)
    assert ga["values"][key]["n"] == 2
    vanilla = next(row for row in results["rows"] if row["model"] == "vanilla")
    assert vanilla["values"][key]["std"] is None


def test_json_and_csv_agree(report):
    run, results = report
    saved = json.loads((run / "report.json").read_text())
    rows = list(csv.DictReader((run / "report.csv").open()))
    for row, saved_row in zip(rows, saved["rows"]):
        for key, *_ in TABLE:
            value = saved_row["values"].get(key)
            if value is not None:
                assert float(row[f"{key}_mean"]) == pytest.approx(value["mean"])


def test_header_records_run(report):
    _, results = report
    header = results["header"]
    assert header["seeds"] == [0, 1]
    assert header["wall_clock_s"] > 0
    assert "torch" in header["versions"]
    assert header["commit"]


def test_keytokens_and_curves(report):
    _, results = report
    assert results["keytokens"], "no key-token view"
    token = results["keytokens"][0]["tokens"][0]
    assert set(token["p_unlearned"]) == {"GA", "ViKeR"}
    assert 0 <= token["p_vanilla"] <= 1
    assert [p["step"] for p in results["curves"]["ViKeR"]] == [1, 2]
    assert results["curves"]["ViKeR"][0]["reg/kl"] is not None


def test_cli_rejects_existing_output(report, bench_dir, caplog):
    run, _ = report
    before = (run / "report.json").read_bytes()
    code = main(["benchmark", "--data", str(bench_dir), "--out", str(run), "--methods", "ga"])
    assert code == 2
    assert "already holds results" in caplog.text
    assert "--overwrite" in caplog.text
    assert (run / "report.json").read_bytes() == before


def test_cli_rejects_unknown_method(bench_dir, tmp_path):
    assert main(["benchmark", "--data", str(bench_dir), "--out", str(tmp_path / "o"), "--methods", "magic"]) == 2


def _pairwise_auc(members: list[float], nonmembers: list[float]) -> float:
    """Share of (member, non-member) pairs where the member scores higher, ties counting half."""
    pairs = [(m > n) + 0.5 * (m == n) for m in members for n in nonmembers]
    return sum(pairs) / len(pairs)


def test_mia_auc_columns_match_pairwise_counts(report):
    run, results = report
    per_sample = json.loads((run / "per_sample.json").read_text())
    for row in results["rows"]:
        for attack in ("loss", "mink_pp"):
            seed_aucs = []
            for scores in per_sample[row["model"]]:
                nonmembers = list(scores[f"mia/holdout/{attack}"].values())
                assert len(nonmembers) == 6  # two holdout people, three questions each
                seed_aucs.append(_pairwise_auc(list(scores[f"mia/forget/{attack}"].values()), nonmembers))
            expected = sum(seed_aucs) / len(seed_aucs)
            assert row["values"][f"mia/{attack}/mia_auc"]["mean"] == pytest.approx(expected), (row["model"], attack)
    metric = next(m for m in results["metrics"] if m["key"] == "mia/loss/mia_auc")
    assert metric["direction"] == "target"


def test_relearning_columns_for_every_row(report, bench_dir):
    """Each row relearns on the same samples; its figures are means over the held-out forget items."""
    run, results = report
    per_sample = json.loads((run / "per_sample.json").read_text())
    keys = ("relearn/image_text/heldout_fact_acc_before", "relearn/image_text/heldout_fact_acc_after")
    heldout = set(per_sample["oracle"][0][keys[0]])
    assert heldout
    image_items = {it.id for it in load_benchmark(str(bench_dir)).eval_sets[SetName.FORGET].generation
                   if it.modality == Modality.IMAGE_TEXT}
    assert heldout <= image_items
    for row in results["rows"]:
        runs = per_sample[row["model"]]
        for key in keys:
            assert set(runs[0][key]) == heldout, (row["model"], key)
            seed_means = [sum(r[key].values()) / len(r[key]) for r in runs]
            assert row["values"][key]["mean"] == pytest.approx(sum(seed_means) / len(seed_means))
    group = next(m["group"] for m in results["metrics"] if m["key"] == keys[1])
    assert group == "Relearning, image+text, 10 steps on 50% of the forget samples"


def test_relearning_can_be_skipped(bench_dir, tiny_model_dir, tmp_path):
    cfg = BenchmarkConfig(data=str(bench_dir), model=str(tiny_model_dir), methods=("ga",), out=str(tmp_path / "run"),
                          cache_dir=str(tmp_path / "cache"), eval_items=1, relearn_steps=0,
                          unlearn=dict(FAST_UNLEARN, max_steps=1),
                          finetune=FinetuneConfig(max_epochs=0.5, check_every=1000))
    results = run_benchmark(cfg)
    assert not [m for m in results["metrics"] if m["key"].startswith("relearn/")]
    assert all(not k.startswith("relearn/") for row in results["rows"] for k in row["values"])


def test_negative_relearn_steps_rejected():
    with pytest.raises(ValueError, match="relearn_steps must be >= 0"):
        BenchmarkConfig(relearn_steps=-1)


def test_relearn_on_retain_uses_unlearning_settings():
    config = BenchmarkConfig(relearn_on="retain", unlearn=dict(FAST_UNLEARN)).relearn_config(seed=3)
    assert config.data == "retain"
    assert config.learning_rate == FAST_UNLEARN["learning_rate"]
    assert config.batch_size == FAST_UNLEARN["batch_size"]
    assert config.seed == 3
    with pytest.raises(ValueError, match="RelearnConfig.data 'everything' is invalid"):
        BenchmarkConfig(relearn_on="everything")


def test_model_cache_folder_describes_itself(report):
    """The hashed folder of the vanilla and oracle models carries the settings it was built from."""
    run, results = report
    cache = run.parent / "cache" / "models"
    (folder,) = list(cache.iterdir())
    settings = json.loads((folder / "settings.json").read_text())
    assert settings["benchmark"] == results["header"]["benchmark"]
    assert settings["finetune"]["max_epochs"] == 0.5
    assert (folder / "vanilla").is_dir()
    assert (folder / "oracle").is_dir()
