"""Interrupted runs resume to the same weights, reruns repeat their numbers, inputs stay untouched.

The kill tests start `python -m viker.cli` in a subprocess, wait until its third checkpoint is
complete, kill it with SIGKILL (no cleanup code runs), and resume it with `--resume`.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from viker.cli import main
from viker.data.records import SetName
from viker.eval.relearn import RelearnConfig, relearning_split, split_forget
from viker.eval.runner import EvalConfig, evaluate
from viker.methods.base import UnlearnConfig
from viker.methods.run import unlearn
from viker.models.finetune import FinetuneConfig, WorkFolder, finetune, latest_checkpoint
from viker.models.loading import load_model
from viker.models.trainable import TrainableSpec

FULL_LM = TrainableSpec(parts=("language_model", "lm_head"), lora_r=0)
REPO = Path(__file__).resolve().parents[1]


def folder_hash(folder: Path) -> str:
    """Hash every file under `folder`: relative path, size and bytes."""
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(folder)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def run_until_checkpoint(args: list[str], checkpoint: Path, timeout: float = 240) -> None:
    """Start `python -m viker.cli ARGS`, wait until `checkpoint` is complete, then SIGKILL the process."""
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen([sys.executable, "-m", "viker.cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    try:
        while not (checkpoint / "trainer_state.json").is_file():
            if proc.poll() is not None:
                pytest.fail(f"viker exited with {proc.returncode} before {checkpoint.name}:\n"
                            f"{proc.stdout.read().decode()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"{checkpoint} did not appear within {timeout} s")
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL


def assert_same_weights(a: Path, b: Path) -> None:
    left, right = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert left.keys() == right.keys()
    for key in left:
        assert torch.equal(left[key], right[key]), key


# ------------------------------------------------------------------ interrupted runs


def test_unlearn_resumes_after_sigkill(tiny_model_dir, tiny_benchmark, tmp_path):
    """6 GA steps, killed after checkpoint-3, resumed: bit-identical weights and losses.

    Bit-identical, not merely close: the checkpoint stores the float32 weights, AdamW
    moments, scheduler and RNG states exactly. The Trainer replays the sampler from
    `data_seed` and skips the batches already seen, and the CPU kernels are
    deterministic for the same thread count.
    """
    config = UnlearnConfig(learning_rate=1e-3, batch_size=2, max_steps=6, trainable=FULL_LM)
    reference = unlearn(tiny_model_dir, tiny_benchmark, "ga", tmp_path / "reference", config=config,
                        cache_dir=tmp_path / "cache")

    out = tmp_path / "killed"
    args = ["unlearn", "--model", str(tiny_model_dir), "--data", tiny_benchmark.source, "--method", "ga",
            "--out", str(out), "--lr", "1e-3", "--batch-size", "2", "--max-steps", "6", "--lora-r", "0",
            "--save-steps", "1", "--cache-dir", str(tmp_path / "cache")]
    run_until_checkpoint(args, out.with_name("killed.partial") / "checkpoints" / "checkpoint-3")
    assert not out.exists()
    assert latest_checkpoint(out.with_name("killed.partial") / "checkpoints").name in ("checkpoint-3", "checkpoint-4")

    with pytest.raises(FileExistsError, match="pass --resume"):
        unlearn(tiny_model_dir, tiny_benchmark, "ga", out, config=config, cache_dir=tmp_path / "cache")
    resumed = unlearn(tiny_model_dir, tiny_benchmark, "ga", out, config=config, cache_dir=tmp_path / "cache",
                      resume=True)

    assert resumed["resumed_from"] in ("checkpoint-3", "checkpoint-4")
    assert resumed["steps"] == 6
    assert not out.with_name("killed.partial").exists()
    assert not (out / "checkpoints").exists()
    assert_same_weights(tmp_path / "reference", out)
    losses = [h["loss"] for h in reference["log_history"] if "forget/loss" in h]
    assert len(losses) == 6
    assert [h["loss"] for h in resumed["log_history"] if "forget/loss" in h] == losses


@pytest.mark.slow
def test_finetune_resumes_after_sigkill(tiny_model_dir, tiny_benchmark, tmp_path):
    """`viker finetune --epochs 1 --batch-size 8` on 36 samples is 5 steps; killed after checkpoint-3."""
    samples = tiny_benchmark.train_samples()
    assert len(samples) == 36  # 12 people x 3 questions: 36 / 8 -> 5 steps per epoch
    config = FinetuneConfig(learning_rate=1e-3, batch_size=8, max_epochs=1.0, save_steps=1)
    reference = finetune(tiny_model_dir, samples, tmp_path / "reference", config)
    assert reference["steps"] == 5

    out = tmp_path / "killed"
    args = ["finetune", "--model", str(tiny_model_dir), "--data", tiny_benchmark.source, "--out", str(out),
            "--role", "vanilla", "--lr", "1e-3", "--batch-size", "8", "--epochs", "1", "--save-steps", "1"]
    run_until_checkpoint(args, out.with_name("killed.partial") / "checkpoints" / "checkpoint-3")
    resumed = finetune(tiny_model_dir, samples, out, config, resume=True)

    assert resumed["resumed_from"] in ("checkpoint-3", "checkpoint-4")
    assert resumed["steps"] == 5
    assert_same_weights(tmp_path / "reference", out)


def test_work_folder_rules(tmp_path):
    out = tmp_path / "model"
    partial = tmp_path / "model.partial"

    # A run that fails before its first checkpoint leaves nothing behind.
    with pytest.raises(RuntimeError, match="boom"):
        with WorkFolder(out, resume=False, settings={"lr": 1}):
            assert partial.is_dir()
            raise RuntimeError("boom")
    assert not partial.exists()

    # A run that fails after a checkpoint keeps it; a plain rerun is rejected, a resume picks it up.
    with pytest.raises(RuntimeError, match="boom"):
        with WorkFolder(out, resume=False, settings={"lr": 1}) as work:
            for step in (9, 10, 11):
                (work.checkpoints / f"checkpoint-{step}").mkdir(parents=True)
            for step in (9, 10):  # checkpoint-11 has no trainer_state.json: it was cut off while saving
                (work.checkpoints / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
            raise RuntimeError("boom")
    assert latest_checkpoint(partial / "checkpoints") == partial / "checkpoints" / "checkpoint-10"
    with pytest.raises(FileExistsError, match=r"model.partial contains the checkpoints .*checkpoint-10.*--resume"):
        WorkFolder(out, resume=False, settings={"lr": 1})
    with pytest.raises(ValueError, match=r"other settings \(lr: 1 then, 2 now\)"):
        WorkFolder(out, resume=True, settings={"lr": 2})
    work = WorkFolder(out, resume=True, settings={"lr": 1})
    assert work.checkpoint == partial / "checkpoints" / "checkpoint-10"

    # Success renames the work folder to the output and drops checkpoints and settings.
    with work:
        (work.path / "model.safetensors").write_text("weights")
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors"]
    assert not partial.exists()
    with pytest.raises(FileExistsError, match="already exists"):
        WorkFolder(out, resume=True, settings={"lr": 1})


def test_stale_partial_without_checkpoint_is_removed(tmp_path):
    (tmp_path / "model.partial").mkdir()
    (tmp_path / "model.partial" / "config.json").write_text("{}")
    work = WorkFolder(tmp_path / "model", resume=False, settings={})
    assert work.checkpoint is None
    assert not (tmp_path / "model.partial").exists()


# ------------------------------------------------------------------ reproducibility and untouched inputs


def test_unlearn_twice_same_numbers(tiny_model_dir, tiny_benchmark, tmp_path):
    """Same seed, same command: equal weights and equal per-sample metrics; inputs untouched."""
    model_before = folder_hash(Path(tiny_model_dir))
    data_before = folder_hash(Path(tiny_benchmark.source))
    config = UnlearnConfig(learning_rate=1e-3, batch_size=2, max_steps=2, trainable=FULL_LM, seed=3)
    eval_config = EvalConfig(sets=("forget",), tasks=("generation", "tokens"), max_items=2, max_new_tokens=8, seed=3)

    results = []
    for name in ("first", "second"):
        unlearn(tiny_model_dir, tiny_benchmark, "viker", tmp_path / name, config=config, cache_dir=tmp_path / "cache")
        results.append(evaluate(load_model(tmp_path / name), tiny_benchmark, eval_config)["per_sample"])

    assert_same_weights(tmp_path / "first", tmp_path / "second")
    assert results[0].keys() == results[1].keys()
    assert "forget/fact_acc" in results[0]
    for key in results[0]:
        assert results[0][key] == results[1][key], key
    saved = json.loads((tmp_path / "first" / "unlearn.json").read_text())
    assert saved["config"]["seed"] == 3
    assert folder_hash(Path(tiny_model_dir)) == model_before
    assert folder_hash(Path(tiny_benchmark.source)) == data_before

    # Only safetensors and JSON (plus the tokenizer's Jinja template) are written; nothing unpickles.
    written = {p.suffix for p in (tmp_path / "first").iterdir()} | {p.suffix for p in (tmp_path / "cache").iterdir()}
    assert written <= {".json", ".safetensors", ".jinja"}, written


def test_finetune_leaves_inputs_untouched(tiny_model_dir, tiny_benchmark, tmp_path):
    model_before = folder_hash(Path(tiny_model_dir))
    data_before = folder_hash(Path(tiny_benchmark.source))
    summary = finetune(tiny_model_dir, tiny_benchmark.train_samples(include_forget=False), tmp_path / "oracle",
                       FinetuneConfig(learning_rate=1e-3, batch_size=8, max_steps=2))
    assert summary["steps"] == 2
    assert folder_hash(Path(tiny_model_dir)) == model_before
    assert folder_hash(Path(tiny_benchmark.source)) == data_before
    with pytest.raises(FileExistsError, match="already exists"):
        finetune(tiny_model_dir, tiny_benchmark.train_samples(), tmp_path / "oracle", FinetuneConfig())


def test_eval_out_records_seed_and_keeps_files(tiny_model_dir, tiny_benchmark, tmp_path, caplog):
    out = tmp_path / "results.json"
    args = ["eval", str(tiny_model_dir), "--data", tiny_benchmark.source, "--sets", "forget", "--tasks", "cloze",
            "--seed", "4", "--out", str(out)]
    assert main(args) == 0
    saved = json.loads(out.read_text())
    assert saved["config"]["seed"] == 4
    assert saved["config"]["tasks"] == ["cloze"]

    out.write_text("earlier results")
    assert main(args) == 2
    assert "already exists; pass --overwrite" in caplog.text
    assert out.read_text() == "earlier results"
    assert main(args + ["--overwrite"]) == 0
    assert json.loads(out.read_text())["config"]["seed"] == 4


def test_writing_commands_keep_existing_outputs(tiny_model_dir, tiny_benchmark, tmp_path, caplog):
    """Each command that writes a folder stops before touching one that already has content."""
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    commands = [
        ["data", "build", "--out", str(out)],
        ["finetune", "--model", str(tiny_model_dir), "--data", tiny_benchmark.source, "--out", str(out)],
        ["unlearn", "--model", str(tiny_model_dir), "--data", tiny_benchmark.source, "--method", "ga",
         "--out", str(out)],
        ["benchmark", "--data", tiny_benchmark.source, "--out", str(out)],
    ]
    for args in commands:
        caplog.clear()
        assert main(args) == 2, args
        assert str(out) in caplog.text, args
        assert "--overwrite" in caplog.text or "another" in caplog.text, (args, caplog.text)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "user data"


def test_model_code_is_never_run(tiny_model_dir, tmp_path):
    """A config.json that points at custom code loads the built-in class and never imports the file."""
    folder = tmp_path / "model"
    folder.mkdir()
    for path in Path(tiny_model_dir).iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    marker = tmp_path / "code-was-run"
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForImageTextToText": "evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))

    try:
        loaded = load_model(folder)
    except ValueError as err:  # transformers may reject the folder instead; either way no code runs
        assert "trust_remote_code" in str(err)
    else:
        assert type(loaded.model).__module__.startswith("transformers.models.llava")
    assert not marker.exists()


# ------------------------------------------------------------------ relearning


def test_relearn_split_is_disjoint(tiny_benchmark):
    """The tiny forget split is one person with 3 facts; fraction 0.5 relearns round(1.5) = 2 of them."""
    relearn, heldout = split_forget(tiny_benchmark, 0.5, seed=0)
    assert len(relearn) == 2
    relearned = {(s.profile_id, s.fact) for s in relearn}
    assert heldout
    for item in heldout:
        assert (item.profile_id, item.fact) not in relearned, item.id
    others = [it for it in tiny_benchmark.eval_sets[SetName.FORGET].generation
              if it.fact and it not in heldout]
    for item in others:
        assert (item.profile_id, item.fact) in relearned, item.id


def test_relearn_split_on_retain(tiny_benchmark):
    """Retain relearning draws as many samples as forget relearning (2), all from retain people."""
    relearn, heldout = relearning_split(tiny_benchmark, RelearnConfig(data="retain"))
    assert len(relearn) == 2
    assert {s.profile_id for s in relearn} <= set(tiny_benchmark.retain_ids)
    forget_items = [it.id for it in tiny_benchmark.eval_sets[SetName.FORGET].generation if it.fact]
    assert [it.id for it in heldout] == forget_items


def test_relearn_data_must_be_known():
    with pytest.raises(ValueError, match="RelearnConfig.data 'test' is invalid"):
        RelearnConfig(data="test")


def test_relearn_checks_model_paths_first(tiny_model_dir, tiny_benchmark, tmp_path, caplog):
    from viker.eval.relearn import relearn_check

    with pytest.raises(FileNotFoundError, match="model directory .*missing-oracle not found"):
        relearn_check(tiny_model_dir, tiny_benchmark, oracle_path=tmp_path / "missing-oracle")
    assert "relearning on" not in caplog.text


def test_relearn_command(tiny_model_dir, tiny_benchmark, tmp_path, capsys):
    """`viker relearn` on the tiny model, with the same model as oracle: finite values, input untouched."""
    before = folder_hash(Path(tiny_model_dir))
    out = tmp_path / "relearn.json"
    args = ["relearn", str(tiny_model_dir), "--oracle", str(tiny_model_dir), "--data", tiny_benchmark.source,
            "--steps", "2", "--lr", "1e-3", "--lora-r", "0", "--out", str(out)]
    assert main(args) == 0
    result = json.loads(out.read_text())
    printed = capsys.readouterr().out
    n_heldout = len(result["heldout_ids"])
    assert "held-out, all" in printed
    assert f"({n_heldout} items)" in printed

    assert set(result["models"]) == {"unlearned", "oracle"}
    relearned_people_facts = {(s.profile_id, s.fact) for s in tiny_benchmark.forget_samples()
                              if s.id in result["relearn_ids"]}
    generation = {it.id: it for it in tiny_benchmark.eval_sets[SetName.FORGET].generation}
    assert set(result["heldout_ids"]) <= set(generation)
    for item_id in result["heldout_ids"]:
        assert (generation[item_id].profile_id, generation[item_id].fact) not in relearned_people_facts
    for run in result["models"].values():
        assert run["steps"] == 2
        for stage in ("before", "after"):
            for key in ("heldout_fact_acc", "all_fact_acc"):
                assert 0.0 <= run[stage][key] <= 1.0, (stage, key)
            assert set(result["heldout_ids"]) <= set(run[stage]["per_item"])
            by_modality = run[stage]["per_modality"]
            for modality, values in by_modality.items():
                assert {generation[i].modality.value for i in values} == {modality}
            assert sum(len(v) for v in by_modality.values()) == len(run[stage]["per_item"])
    # The same model and the same samples: both rows agree exactly.
    assert result["models"]["unlearned"] == result["models"]["oracle"]
    assert folder_hash(Path(tiny_model_dir)) == before
    assert result["config"]["steps"] == 2
    assert result["config"]["fraction"] == 0.5
    assert RelearnConfig().steps == 10
