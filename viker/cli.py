"""The `viker` command line: data, finetune, unlearn, eval, relearn, keytokens and benchmark."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger("viker")


DATA_HELP = ("'embedded' (generated offline on first use), an MLLMU-Bench or CLEAR folder, or a profiles "
             ".json/.jsonl file (default: embedded)")
SPLIT_HELP = "forget_5, forget_10 or forget_15 (default: forget_10)"


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="embedded", help=DATA_HELP)
    p.add_argument("--images", default=None, help="folder of portraits for a profiles file")
    p.add_argument("--forget-split", default="forget_10", help=SPLIT_HELP)
    p.add_argument("--seed", type=int, default=0, help="seed of data generation, sampling and training (default: 0)")
    p.add_argument("--pool-dir", default=None,
                   help="folder of reference images (people or things not in the benchmark) for ViKeR's targets")


def _add_resume_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--save-steps", type=int, default=0,
                   help="write a resumable checkpoint to <out>.partial every N optimizer steps; 0 writes none")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from the latest checkpoint in <out>.partial")


def _benchmark(args):
    from viker.data import load_benchmark

    benchmark = load_benchmark(args.data, forget_split=args.forget_split, seed=args.seed, images=args.images)
    if getattr(args, "pool_dir", None):
        from viker.data.mllmu import read_image_folder

        # A user's folder replaces the pool kind that ViKeR draws from ("faces" unless --pool says otherwise).
        kind = getattr(args, "pool", None) or "faces"
        benchmark.reference_pool[kind] = read_image_folder(Path(args.pool_dir))
    return benchmark


def cmd_data_build(args) -> int:
    from viker.data.embedded import build_embedded

    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; choose another --out")
    build_embedded(out, seed=args.seed, n_people=args.people, n_public=args.public, image_size=args.image_size,
                   n_holdout=args.holdout)
    print(f"wrote the embedded benchmark to {out}")
    return 0


def cmd_finetune(args) -> int:
    from viker.models.finetune import FinetuneConfig, finetune
    from viker.models.trainable import TrainableSpec

    benchmark = _benchmark(args)
    samples = benchmark.train_samples(include_forget=args.role == "vanilla")
    trainable = TrainableSpec(lora_r=args.lora_r) if args.lora_r else TrainableSpec.full()
    config = FinetuneConfig(learning_rate=args.lr, batch_size=args.batch_size, max_epochs=args.epochs,
                            seed=args.seed, dtype=args.dtype, trainable=trainable, save_steps=args.save_steps)
    summary = finetune(args.model, samples, args.out, config, resume=args.resume)
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=1))
    return 0


def cmd_unlearn(args) -> int:
    from viker.methods import get_method
    from viker.methods.base import UnlearnConfig
    from viker.methods.run import unlearn
    from viker.models.trainable import TrainableSpec
    from viker.utils import default_cache_dir

    method_cls = get_method(args.method)
    method_config = _method_config(method_cls, args.method_args)
    trainable = TrainableSpec(lora_r=args.lora_r, lora_alpha=args.lora_alpha) if args.lora_r \
        else TrainableSpec(parts=("language_model", "lm_head"), lora_r=0)
    config = UnlearnConfig(learning_rate=args.lr, batch_size=args.batch_size, epochs=args.epochs,
                           max_steps=args.max_steps, seed=args.seed, dtype=args.dtype, trainable=trainable,
                           save_steps=args.save_steps)
    benchmark = _benchmark(args)
    summary = unlearn(args.model, benchmark, args.method, args.out, method_config=method_config, config=config,
                      oracle_path=args.oracle, cache_dir=Path(args.cache_dir or default_cache_dir()) / "targets",
                      save_adapter=args.save_adapter, resume=args.resume)
    print(json.dumps({k: v for k, v in summary.items() if k != "log_history"}, indent=1, default=str))
    return 0 if not summary["diverged"] else 2


def _method_config(method_cls, method_args: str | None):
    """Build a method's config from the --method-args JSON object, with errors that name the bad key."""
    import dataclasses

    try:
        overrides = json.loads(method_args) if method_args else {}
    except json.JSONDecodeError as err:
        raise ValueError(f"--method-args {method_args!r} is not valid JSON ({err}); pass an object such as "
                         '\'{"lam": 10, "k": 5}\'') from None
    if not isinstance(overrides, dict):
        raise ValueError(f"--method-args must be a JSON object of hyperparameters, got {method_args!r}")
    fields = [f.name for f in dataclasses.fields(method_cls.Config)]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(f"--method-args: {unknown} are not hyperparameters of {method_cls.name!r}; "
                         f"choose from {fields}")
    return method_cls.Config(**overrides)


def _check_new_file(path: str | None, overwrite: bool) -> None:
    if path and Path(path).exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass --overwrite to replace it or choose another --out")


def cmd_eval(args) -> int:
    from viker.eval.fluency import build_vocabulary
    from viker.eval.runner import EvalConfig, evaluate
    from viker.models.loading import load_model
    from viker.utils import atomic_write_text

    _check_new_file(args.out, args.overwrite)
    benchmark = _benchmark(args)
    config = EvalConfig(sets=tuple(args.sets.split(",")), tasks=tuple(args.tasks.split(",")),
                        max_items=args.max_items, seed=args.seed, few_shot=args.few_shot)
    vocabulary = build_vocabulary(f"{s.question} {s.answer}" for s in benchmark.train_samples())
    result = evaluate(load_model(args.model, dtype=args.dtype), benchmark, config, vocabulary)
    if args.oracle_results:
        from viker.eval.clear_protocol import clear_forget_quality

        oracle = json.loads(Path(args.oracle_results).read_text())
        result["summary"].update(clear_forget_quality(result["per_sample"], oracle["per_sample"]))
    print("metric: mean ± standard error over items (n items)")
    for key, s in result["summary"].items():
        err = f" ± {s['stderr']:.3f}" if s["stderr"] is not None else ""
        print(f"{key:32s} {s['mean']:.3f}{err}  (n={s['n']})")
    if args.out:
        result["config"] = dataclasses.asdict(config)  # records the seed beside the numbers
        result["model"], result["benchmark"] = str(args.model), benchmark.name
        atomic_write_text(args.out, json.dumps(result, indent=1))
        print(f"per-sample results written to {args.out}")
    return 0


def cmd_relearn(args) -> int:
    from viker.eval.relearn import RelearnConfig, heldout_means, relearn_check
    from viker.models.trainable import TrainableSpec
    from viker.utils import atomic_write_text

    _check_new_file(args.out, args.overwrite)
    trainable = TrainableSpec(lora_r=args.lora_r) if args.lora_r \
        else TrainableSpec(parts=("language_model", "lm_head"), lora_r=0)
    config = RelearnConfig(steps=args.steps, learning_rate=args.lr, batch_size=args.batch_size,
                           fraction=args.fraction, seed=args.seed, dtype=args.dtype, trainable=trainable,
                           data=args.relearn_on)
    result = relearn_check(args.model, _benchmark(args), config, oracle_path=args.oracle)
    print("forget fact accuracy before -> after relearning")
    for name, run in result["models"].items():
        for items, before, after, n in heldout_means(run["before"], run["after"], set(result["heldout_ids"])):
            print(f"{name:10s} held-out, {items:10s} {before:.3f} -> {after:.3f}  ({n} items)")
        print(f"{name:10s} every item           {run['before']['all_fact_acc']:.3f} -> "
              f"{run['after']['all_fact_acc']:.3f}  ({len(run['before']['per_item'])} items)")
    if args.out:
        atomic_write_text(args.out, json.dumps(result, indent=1, default=str))
        print(f"relearning results written to {args.out}")
    return 0


def cmd_keytokens(args) -> int:
    from viker.keytokens import print_keytokens

    return print_keytokens(args, _benchmark(args))


def cmd_benchmark(args) -> int:
    from viker.benchmark import DEFAULT_METHODS, BenchmarkConfig, run_benchmark

    methods = tuple(args.methods.split(",")) if args.methods else DEFAULT_METHODS
    seeds = tuple(int(s) for s in args.seeds.split(","))
    cfg = BenchmarkConfig(data=args.data, images=args.images, forget_split=args.forget_split, family=args.family,
                          model=args.model, methods=methods, seeds=seeds, out=args.out, cache_dir=args.cache_dir,
                          overwrite=args.overwrite, eval_items=args.eval_items or None,
                          keep_models=args.keep_models, relearn_steps=args.relearn_steps,
                          relearn_on=args.relearn_on)
    run_benchmark(cfg)
    print(f"report: {Path(args.out) / 'report.html'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="viker", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data", help="build the embedded benchmark")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    b = data_sub.add_parser("build", help="write the embedded benchmark in MLLMU-Bench and CLEAR layouts")
    b.add_argument("--out", required=True, help="output folder (must be empty or absent)")
    b.add_argument("--seed", type=int, default=0, help="seed of every random choice in the data (default: 0)")
    b.add_argument("--people", type=int, default=50, help="fictitious people (default: 50)")
    b.add_argument("--public", type=int, default=10, help="public figures (default: 10)")
    b.add_argument("--image-size", type=int, default=48, help="portrait size in pixels (default: 48)")
    b.add_argument("--holdout", type=int, default=0,
                   help="fictitious people in no training split, written to Holdout_Set for membership inference "
                        "(default: 0)")
    b.set_defaults(func=cmd_data_build)

    p = sub.add_parser("finetune", help="fine-tune the vanilla or oracle model")
    p.add_argument("--model", required=True, help="local base model folder")
    p.add_argument("--out", required=True, help="new folder for the fine-tuned model")
    p.add_argument("--role", choices=("vanilla", "oracle"), default="vanilla",
                   help="vanilla: all people; oracle: without the forget split")
    p.add_argument("--lr", type=float, default=3e-4, help="AdamW learning rate (default: 3e-4, for tiny models)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--epochs", type=float, default=60.0, help="maximum epochs; stops at 97 %% token accuracy")
    p.add_argument("--lora-r", type=int, default=0, help="LoRA rank; 0 trains the whole model (default: 0)")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    _add_resume_args(p)
    _add_data_args(p)
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("unlearn", help="run one unlearning method and save the unlearned model")
    p.add_argument("--model", required=True, help="local folder of the model to unlearn (never modified)")
    p.add_argument("--method", required=True, help="ga, gd, kl, npo, idk, idkpo, simnpo, viker, viker_retain")
    p.add_argument("--method-args", default=None,
                   help='JSON object of method hyperparameters, e.g. \'{"lam": 10, "k": 5}\'')
    p.add_argument("--out", required=True, help="new folder for the unlearned model")
    p.add_argument("--oracle", default=None, help="oracle model folder, for NPO with reference 'oracle'")
    p.add_argument("--lr", type=float, default=5e-6, help="AdamW learning rate (default: 5e-6, the paper's)")
    p.add_argument("--batch-size", type=int, default=2, help="forget samples per step (default: 2)")
    p.add_argument("--epochs", type=float, default=1.0, help="passes over the forget split (default: 1, the paper's)")
    p.add_argument("--max-steps", type=int, default=-1, help="> 0 overrides --epochs")
    p.add_argument("--lora-r", type=int, default=8, help="LoRA rank; 0 trains the language model in full")
    p.add_argument("--lora-alpha", type=int, default=16, help="LoRA scaling alpha (default: 16, the paper's)")
    p.add_argument("--save-adapter", action="store_true", help="save the LoRA adapter instead of merged weights")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    p.add_argument("--cache-dir", default=None, help="cache folder (default: $VIKER_CACHE or ~/.cache/viker)")
    _add_resume_args(p)
    _add_data_args(p)
    p.set_defaults(func=cmd_unlearn)

    p = sub.add_parser("eval", help="evaluate a model on a benchmark's sets")
    p.add_argument("model", help="local model folder")
    p.add_argument("--sets", default="forget,test,retain,public",
                   help="comma-separated sets to evaluate: forget, test, retain, public (default: all four)")
    p.add_argument("--tasks", default="generation,mc,cloze,tokens",
                   help="comma-separated: generation, mc, cloze, tokens (MLLMU-Bench); clear (the CLEAR protocol, "
                        "on a CLEAR folder); mia (membership inference, needs holdout people)")
    p.add_argument("--few-shot", type=int, default=0,
                   help="solved examples from the same set and task before each MLLMU-Bench prompt (default: 0)")
    p.add_argument("--oracle-results", default=None,
                   help="the oracle's `viker eval --tasks clear --out` JSON file; adds CLEAR forget quality")
    p.add_argument("--max-items", type=int, default=None, help="items per set, task and modality (default: all)")
    p.add_argument("--out", default=None, help="JSON file for per-sample results")
    p.add_argument("--overwrite", action="store_true", help="replace the --out file if it exists")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    _add_data_args(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("relearn", help="fine-tune an unlearned model on some forget answers and re-measure the rest")
    p.add_argument("model", help="local folder of the unlearned model (never modified)")
    p.add_argument("--oracle", default=None, help="oracle model folder, relearned the same way for comparison")
    p.add_argument("--steps", type=int, default=10, help="optimizer steps of relearning (default: 10)")
    p.add_argument("--lr", type=float, default=5e-6,
                   help="AdamW learning rate; use the unlearning learning rate (default: 5e-6)")
    p.add_argument("--batch-size", type=int, default=2, help="relearning samples per step (default: 2)")
    p.add_argument("--fraction", type=float, default=0.5,
                   help="share of the forget samples to relearn on; the others are held out (default: 0.5)")
    p.add_argument("--lora-r", type=int, default=8, help="LoRA rank; 0 trains the language model in full")
    p.add_argument("--relearn-on", choices=("forget", "retain"), default="forget",
                   help="fine-tune on forget samples, or on as many retain samples with every forget item "
                        "held out (default: forget)")
    p.add_argument("--out", default=None, help="JSON file for the per-item results")
    p.add_argument("--overwrite", action="store_true", help="replace the --out file if it exists")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    _add_data_args(p)
    p.set_defaults(func=cmd_relearn)

    p = sub.add_parser("keytokens", help="print ViKeR's per-token view of chosen forget samples")
    p.add_argument("--model", required=True, help="the model before unlearning")
    p.add_argument("--samples", type=int, default=3, help="number of forget samples to print")
    p.add_argument("--lam", type=float, default=10.0,
                   help="ViKeR's λ, for the gradient weight column; tokens with q(y) > 1/λ are protected (default: 10)")
    p.add_argument("--k", type=int, default=5, help="reference images averaged per sample (default: 5)")
    p.add_argument("--pool", default="faces",
                   help="kind of reference images from the benchmark's pool: faces, retain_faces, nonperson, noise, "
                        "blank or true_image (default: faces); --pool-dir replaces the pool's images with a folder")
    p.add_argument("--cache-dir", default=None)
    _add_data_args(p)
    p.set_defaults(func=cmd_keytokens)

    p = sub.add_parser("benchmark", help="the main job: every method on one forget split, one report")
    p.add_argument("--methods", default=None, help="comma-separated methods (default: ga,gd,kl,npo,idkpo,viker,"
                                                   "viker_retain)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds; the report shows mean ± std")
    p.add_argument("--family", default="llava", help="tiny model family (default: llava)")
    p.add_argument("--model", default=None, help="local base model folder instead of a tiny model")
    p.add_argument("--out", default="viker-out", help="report folder (default: viker-out)")
    p.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    p.add_argument("--eval-items", type=int, default=24,
                   help="items per set, task and modality; 0 evaluates all (default: 24)")
    p.add_argument("--keep-models", action="store_true", help="keep the unlearned models under --out/models")
    p.add_argument("--relearn-steps", type=int, default=10,
                   help="steps of fine-tuning before forgetting is measured again on the held-out forget "
                        "facts, with the unlearning optimiser settings; 0 skips the check (default: 10). "
                        "--relearn-on chooses the samples")
    p.add_argument("--relearn-on", choices=("forget", "retain"), default="forget",
                   help="relearn on half the forget samples, or on as many retain samples (default: forget)")
    p.add_argument("--cache-dir", default=None, help="cache folder (default: $VIKER_CACHE or ~/.cache/viker)")
    p.add_argument("--data", default="embedded", help=DATA_HELP)
    p.add_argument("--profiles", dest="data", help="a profiles .json/.jsonl file (same as --data FILE)")
    p.add_argument("--images", default=None, help="folder of portraits for a profiles file")
    p.add_argument("--forget-split", default="forget_10", help=SPLIT_HELP)
    p.set_defaults(func=cmd_benchmark)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("transformers", "datasets", "accelerate", "peft"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    import transformers

    transformers.utils.logging.disable_progress_bar()  # per-file loading bars; viker logs each stage instead
    try:
        return args.func(args)
    except (ValueError, FileExistsError, FileNotFoundError) as err:
        log.error("%s", err)
        return 2


if __name__ == "__main__":
    sys.exit(main())
