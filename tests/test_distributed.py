"""Scale-out on the CPU: torchrun with the gloo backend, gradient accumulation, checkpointing, bf16, DeepSpeed.

The multi-process tests start real worker processes with `torch.distributed.run`
(`torchrun --standalone`), which talk over loopback TCP, and compare what they
write with a single process run here on the same tiny model and benchmark.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from viker.cli import main as cli_main
from viker.data import load_benchmark
from viker.eval.fluency import build_vocabulary
from viker.eval.runner import EvalConfig, evaluate
from viker.methods.base import UnlearnConfig
from viker.methods.run import unlearn
from viker.models.loading import load_model
from viker.models.trainable import TrainableSpec

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs" / "accelerate"
FULL_LM = TrainableSpec(parts=("language_model", "lm_head"), lora_r=0)
LEARNING_RATE = 1e-3


def _worker_env() -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def _torchrun(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `python -m viker.cli ARGS` in two processes on the gloo backend; fail with their output."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "viker.cli", *args]
    done = subprocess.run(command, cwd=cwd, env=_worker_env(), capture_output=True, text=True, timeout=timeout)
    output = f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    assert done.returncode == 0, f"torchrun exited with {done.returncode}:\n{output}"
    return done


def _step_logs(summary: dict) -> list[dict]:
    return [entry for entry in summary["log_history"] if "grad_norm" in entry]


def _train_loss(summary: dict) -> float:
    return next(entry["train_loss"] for entry in summary["log_history"] if "train_loss" in entry)


def _max_weight_difference(folder_a: Path, folder_b: Path) -> float:
    a, b = load_file(str(folder_a / "model.safetensors")), load_file(str(folder_b / "model.safetensors"))
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


@pytest.fixture(scope="module")
def forget_15(tiny_benchmark):
    """The tiny benchmark with forget_15: 2 people x 3 QA = 6 forget samples, so 3 steps of 2 samples."""
    benchmark = load_benchmark(tiny_benchmark.source, forget_split="forget_15")
    assert len(benchmark.forget_samples()) == 6
    return benchmark


# -- one process: accumulation, checkpointing, precision ---------------------------------------


def _run_ga(model_dir, benchmark, out, **overrides):
    settings = dict(learning_rate=LEARNING_RATE, batch_size=2, max_steps=2, trainable=FULL_LM)
    settings.update(overrides)
    return unlearn(model_dir, benchmark, "ga", out, config=UnlearnConfig(**settings), cache_dir=out.parent / "cache")


@pytest.fixture(scope="module")
def large_batch(tiny_model_dir, forget_15, tmp_path_factory):
    """GA with batch 2, 2 steps, one process: (summary, output folder), the baseline of the tests below."""
    out = tmp_path_factory.mktemp("large_batch") / "model"
    return _run_ga(tiny_model_dir, forget_15, out), out


def test_accumulation_matches_large_batch(tiny_model_dir, forget_15, large_batch, tmp_path):
    """Batch 1 x 2 accumulation steps and batch 2 x 1 see the same samples per optimizer step.

    GA's loss is a mean over samples, and the Trainer divides each micro-batch loss by the
    accumulation steps, so l_a / 2 + l_b / 2 equals mean(l_a, l_b). The gradients therefore
    agree to float32 rounding, and so do the gradient norms and the mean training loss.
    """
    large, large_dir = large_batch
    accumulated = _run_ga(tiny_model_dir, forget_15, tmp_path / "accumulated", batch_size=1,
                          gradient_accumulation_steps=2)

    assert large["steps"] == 2
    assert accumulated["steps"] == 2
    for one, other in zip(_step_logs(large), _step_logs(accumulated), strict=True):
        assert one["grad_norm"] == pytest.approx(other["grad_norm"], rel=1e-4)
    assert _train_loss(large) == pytest.approx(_train_loss(accumulated), abs=1e-4)
    assert _max_weight_difference(large_dir, tmp_path / "accumulated") < 0.05 * LEARNING_RATE


def test_accumulation_off_changes_result(tiny_model_dir, forget_15, large_batch, tmp_path):
    """The comparison above can fail: batch 1 without accumulation takes 2 steps on 1 sample each."""
    _, large_dir = large_batch
    _run_ga(tiny_model_dir, forget_15, tmp_path / "single", batch_size=1)

    assert _max_weight_difference(large_dir, tmp_path / "single") > 0.5 * LEARNING_RATE


def test_gradient_checkpointing_matches_plain(tiny_model_dir, forget_15, large_batch, tmp_path):
    """Checkpointing recomputes activations in the backward pass but leaves the gradients unchanged."""
    plain, plain_dir = large_batch
    checkpointed = _run_ga(tiny_model_dir, forget_15, tmp_path / "checkpointed",
                           trainable=TrainableSpec(parts=("language_model", "lm_head"), lora_r=0,
                                                   gradient_checkpointing=True))

    for one, other in zip(_step_logs(plain), _step_logs(checkpointed), strict=True):
        assert one["grad_norm"] == pytest.approx(other["grad_norm"], rel=1e-4)
    assert _max_weight_difference(plain_dir, tmp_path / "checkpointed") < 0.05 * LEARNING_RATE


def test_bfloat16_unlearn_runs_on_cpu(tiny_model_dir, tiny_benchmark, tmp_path):
    out = tmp_path / "bf16"
    code = cli_main(["unlearn", "--model", str(tiny_model_dir), "--data", tiny_benchmark.source, "--method", "ga",
                     "--lora-r", "0", "--lr", "1e-3", "--max-steps", "2", "--dtype", "bfloat16",
                     "--out", str(out), "--cache-dir", str(tmp_path / "cache")])

    assert code == 0
    weights = load_file(str(out / "model.safetensors"))
    assert {tensor.dtype for tensor in weights.values()} == {torch.bfloat16}
    before = load_file(str(Path(tiny_model_dir) / "model.safetensors"))
    changed = [k for k in before if "language_model" in k and not torch.equal(before[k].bfloat16(), weights[k])]
    assert changed
    summary = json.loads((out / "unlearn.json").read_text())
    losses = [entry["loss"] for entry in summary["log_history"] if "loss" in entry]
    assert len(losses) == 2
    assert all(torch.isfinite(torch.tensor(loss)) for loss in losses)


@pytest.mark.skipif(torch.cuda.is_available(), reason="float16 is rejected only where CUDA is missing")
def test_float16_rejected_on_cpu(tiny_model_dir, tiny_benchmark, tmp_path):
    config = UnlearnConfig(max_steps=1, dtype="float16", trainable=FULL_LM)
    with pytest.raises(ValueError, match="float16.*needs a CUDA GPU.*bfloat16"):
        unlearn(tiny_model_dir, tiny_benchmark, "ga", tmp_path / "fp16", config=config, cache_dir=tmp_path)
    assert not (tmp_path / "fp16").exists()
    assert not (tmp_path / "fp16.partial").exists()


# -- several processes --------------------------------------------------------------------------


def test_sharded_eval_one_result_per_item(tiny_model_dir, tiny_benchmark, tmp_path):
    """Two ranks split 5 forget items per task as 3 + 2; the gathered result equals one process's."""
    args = ["eval", str(tiny_model_dir), "--data", tiny_benchmark.source, "--sets", "forget",
            "--tasks", "tokens,mc", "--out", str(tmp_path / "two_ranks.json")]
    _torchrun(args, tmp_path)
    gathered = json.loads((tmp_path / "two_ranks.json").read_text())

    vocabulary = build_vocabulary(f"{s.question} {s.answer}" for s in tiny_benchmark.train_samples())
    config = EvalConfig(sets=("forget",), tasks=("tokens", "mc"))
    single = evaluate(load_model(tiny_model_dir), tiny_benchmark, config, vocabulary)

    forget = tiny_benchmark.eval_sets[next(k for k in tiny_benchmark.eval_sets if k.value == "forget")]
    assert len(forget.generation) == 5
    assert len(forget.multiple_choice) == 5
    assert [item.id for item in forget.multiple_choice] == list(gathered["per_sample"]["forget/mc_acc_likelihood"])
    assert [item.id for item in forget.multiple_choice] == list(gathered["per_sample"]["forget/mc_acc"])
    assert gathered["per_sample"].keys() == single["per_sample"].keys()
    for key, values in single["per_sample"].items():
        assert list(gathered["per_sample"][key]) == list(values), key
        for item_id, value in values.items():
            assert gathered["per_sample"][key][item_id] == pytest.approx(value, abs=1e-5), (key, item_id)
    assert gathered["generations"] == single["generations"]


@pytest.mark.slow
def test_torchrun_matches_single_process(tiny_model_dir, forget_15, large_batch, tmp_path):
    """2 ranks x batch 1 under torchrun and 1 process x batch 2 take the same 2 optimizer steps.

    Rank r takes samples r and r + 2 of the seeded permutation, so each step trains on the
    same two samples as one process with batch 2. DDP averages the two ranks' gradients,
    which equals the gradient of GA's mean over both samples. What differs is float32
    summation order (about 1e-7 relative), so the gathered training loss agrees to 1e-4
    and the gradient norms to 1e-4 relative. AdamW divides by sqrt(v) + 1e-8, which can
    amplify such rounding for coordinates whose gradient is near zero, so the weights are
    compared to 5 % of one step's size (lr = 1e-3); a step taken on other samples moves
    them by about the whole step size. The evaluation metrics agree to 1e-3.
    """
    out_two = tmp_path / "two_ranks"
    _torchrun(["unlearn", "--model", str(tiny_model_dir), "--data", forget_15.source, "--forget-split", "forget_15",
               "--method", "ga", "--lora-r", "0", "--lr", str(LEARNING_RATE), "--batch-size", "1",
               "--max-steps", "2", "--out", str(out_two), "--cache-dir", str(tmp_path / "cache")], tmp_path)
    two = json.loads((out_two / "unlearn.json").read_text())
    one, one_dir = large_batch

    assert two["steps"] == one["steps"] == 2
    for rank_log, single_log in zip(_step_logs(two), _step_logs(one), strict=True):
        assert rank_log["grad_norm"] == pytest.approx(single_log["grad_norm"], rel=1e-4)
    assert _train_loss(two) == pytest.approx(_train_loss(one), abs=1e-4)
    assert _max_weight_difference(out_two, one_dir) < 0.05 * LEARNING_RATE

    config = EvalConfig(sets=("forget", "retain"), tasks=("mc", "tokens"), max_items=4)
    metrics_two = evaluate(load_model(out_two), forget_15, config)["summary"]
    metrics_one = evaluate(load_model(one_dir), forget_15, config)["summary"]
    assert metrics_two.keys() == metrics_one.keys()
    for key in metrics_one:
        assert metrics_two[key]["mean"] == pytest.approx(metrics_one[key]["mean"], abs=1e-3), key


# -- engine configs ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["single_gpu", "ddp", "zero2", "zero3", "fsdp"])
def test_accelerate_config_loads(name):
    """Each shipped config parses with accelerate's own loader and names the engine it is for."""
    from accelerate.commands.config.config_args import ClusterConfig

    config = ClusterConfig.from_yaml_file(str(CONFIGS / f"{name}.yaml"))
    expected = {"single_gpu": "NO", "ddp": "MULTI_GPU", "zero2": "DEEPSPEED", "zero3": "DEEPSPEED",
                "fsdp": "FSDP"}[name]
    assert config.distributed_type.value == expected
    assert config.mixed_precision == "no"  # precision comes from viker's --dtype
    if expected == "DEEPSPEED":
        assert config.deepspeed_config["zero_stage"] == int(name[-1])
    if name == "zero3":
        assert config.deepspeed_config["zero3_save_16bit_model"] is True


@pytest.mark.slow
def test_deepspeed_zero2_starts_on_cpu(tiny_model_dir, tiny_benchmark, tmp_path):
    """`accelerate launch` with zero2.yaml (use_cpu switched on) trains and saves on DeepSpeed's CPU backend.

    The first run builds DeepSpeed's shared-memory communication op, which takes minutes.
    """
    try:
        import deepspeed  # noqa: F401
    except ImportError as err:
        pytest.skip(f"DeepSpeed is not installed ({err}); `pip install deepspeed` to run this check")
    config = tmp_path / "zero2_cpu.yaml"
    config.write_text((CONFIGS / "zero2.yaml").read_text().replace("use_cpu: false", "use_cpu: true"))
    out = tmp_path / "zero2"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
               "--num_processes", "2", "-m", "viker.cli", "unlearn", "--model", str(tiny_model_dir),
               "--data", tiny_benchmark.source, "--method", "ga", "--lora-r", "0", "--lr", "1e-3",
               "--batch-size", "1", "--max-steps", "1", "--out", str(out), "--cache-dir", str(tmp_path / "cache")]
    done = subprocess.run(command, cwd=tmp_path, env=_worker_env(), capture_output=True, text=True, timeout=900)

    assert done.returncode == 0, done.stderr[-4000:]
    assert "deepspeed" in (done.stdout + done.stderr).lower()
    summary = json.loads((out / "unlearn.json").read_text())
    assert summary["steps"] == 1
    assert _max_weight_difference(out, Path(tiny_model_dir)) > 0
