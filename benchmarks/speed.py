"""ViKeR's cost over GA, measured in one run on a tiny model.

Prints: the step time of ViKeR (with cached targets) over GA's, the peak
memory of a ViKeR run over a GA run, the one-off time to compute the targets,
and the cache size per answer token. Step time counts collation, forward,
backward and optimiser update, not a run's setup. Both methods see the same
batches in the same order. The runs alternate, and for each step after the
first WARMUP the fastest of a method's runs counts. Other load on a shared
machine only ever adds time, so the minimum over runs is the least disturbed
figure for that batch. Each training run happens in its own subprocess so that
peak memory (ru_maxrss on the CPU, max allocated on a GPU) belongs to that run
alone.

    python benchmarks/speed.py [--model DIR] [--steps 30] [--repeats 5]

Without --model it builds the embedded benchmark and an untrained tiny LLaVA
(step time does not depend on what the weights have learned).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


RESULT = "SPEED-RESULT "  # marks the child's result line among the Trainer's own output
TARGET_RATIO = 1.10  # ViKeR's step time and peak memory may each be at most this multiple of GA's
WARMUP = 3  # first steps of a run, left out of its step time because allocators and caches warm up


def _child(args) -> None:
    import torch

    from viker.data import load_benchmark
    from viker.methods.base import UnlearnConfig
    from viker.methods.run import unlearn
    from viker.models.trainable import TrainableSpec

    benchmark = load_benchmark("embedded")
    config = UnlearnConfig(learning_rate=1e-4, batch_size=6, max_steps=args.steps, logging_steps=1,
                           trainable=TrainableSpec(parts=("language_model", "lm_head"), lora_r=0))
    with tempfile.TemporaryDirectory() as tmp:
        summary = unlearn(args.model, benchmark, args.method, Path(tmp) / "out", config=config,
                          cache_dir=args.cache)
    peak = (torch.cuda.max_memory_allocated() if torch.cuda.is_available()
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    print(RESULT + json.dumps({"step_seconds": summary["step_seconds"], "steps": summary["steps"],
                               "target_seconds": summary["target_seconds"], "peak_bytes": peak}))


def _run(method: str, model: str, cache: str, steps: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", "--method", method, "--model", model,
                          "--cache", cache, "--steps", str(steps)], capture_output=True, text=True, check=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith(RESULT)]
    if not lines:
        raise RuntimeError(f"the {method} run printed no result:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return json.loads(lines[-1][len(RESULT):])


def _step_time(runs: list[dict]) -> float:
    """Mean over steps after the warm-up of each step's fastest time across runs."""
    per_step = list(zip(*(r["step_seconds"] for r in runs)))[WARMUP:]
    return sum(min(times) for times in per_step) / len(per_step)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model folder (default: build an untrained tiny LLaVA)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5,
                        help="runs per method; each step's fastest counts (default: 5)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", default="ga", help=argparse.SUPPRESS)
    parser.add_argument("--cache", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps <= WARMUP:
        parser.error(f"--steps must exceed {WARMUP}, the warm-up steps left out of the timing")
    if args.child:
        _child(args)
        return 0

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from safetensors import safe_open

    from viker.data import load_benchmark
    from viker.models.tiny import build_tiny_llava

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            benchmark = load_benchmark("embedded")
            model = str(build_tiny_llava([f"{s.question} {s.answer}" for s in benchmark.train_samples()],
                                         Path(tmp) / "tiny"))
        cache = str(Path(tmp) / "cache")
        first = _run("viker", model, cache, args.steps)  # computes and stores the targets
        # Alternate the methods, so that slow spells on the machine fall on both alike.
        runs = {"viker": [], "ga": []}
        for _ in range(args.repeats):
            for method in ("ga", "viker"):
                runs[method].append(_run(method, model, cache, args.steps))
        viker_step, ga_step = (_step_time(runs[m]) for m in ("viker", "ga"))
        files = list(Path(cache).glob("*.safetensors"))
        with safe_open(str(files[0]), framework="pt") as f:
            n_tokens = sum(f.get_slice(k).get_shape()[0] for k in f.keys() if k.endswith(".entropy"))
        size = sum(p.stat().st_size for p in files)

    print(f"steps per run: {args.steps} (the first {WARMUP} untimed), runs per method: {args.repeats} "
          "(fastest of each step kept)")
    print(f"ViKeR step time / GA step time (cached targets): {viker_step / ga_step:.3f} "
          f"({viker_step * 1000:.0f} ms / {ga_step * 1000:.0f} ms)")
    peak = {m: min(r["peak_bytes"] for r in runs[m]) for m in runs}
    print(f"ViKeR peak memory / GA peak memory: {peak['viker'] / peak['ga']:.3f}")
    print(f"one-off target computation: {first['target_seconds']:.1f} s")
    print(f"target cache: {size / n_tokens:.0f} bytes per answer token ({n_tokens} tokens, {size / 1e6:.2f} MB)")
    missed = [name for name, ratio in (("step time", viker_step / ga_step), ("peak memory", peak["viker"] / peak["ga"]))
              if ratio > TARGET_RATIO]
    if missed:
        print(f"FAILED: ViKeR's {' and '.join(missed)} exceed {TARGET_RATIO:.2f} times GA's")
        return 1
    print(f"passed: step time and peak memory within {TARGET_RATIO:.2f} times GA's")
    return 0


if __name__ == "__main__":
    started = time.perf_counter()
    status = main()
    print(f"wall-clock: {time.perf_counter() - started:.0f} s")
    sys.exit(status)
