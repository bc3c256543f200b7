"""Bad inputs outside the data loaders: each raises an error that names the file, row or field and says what to do.

Data-file cases (corrupt images, missing columns, duplicate IDs, ...) live in
test_data_errors.py; docs/reliability.md lists both catalogues.
"""

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest

from viker.cli import main
from viker.data import DataError, load_benchmark
from viker.data.records import QA
from viker.eval.relearn import RelearnConfig, split_forget
from viker.eval.runner import EvalConfig
from viker.methods import get_method
from viker.methods.base import UnlearnConfig
from viker.methods.targets import TargetCache, TargetSpec, compute_targets
from viker.models.collate import Collator, Turn
from viker.models.families import FAMILIES
from viker.models.finetune import FinetuneConfig
from viker.models.loading import load_model
from viker.models.trainable import TrainableSpec, apply_trainable


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    return load_model(tiny_model_dir)


@pytest.fixture()
def model_copy(tiny_model_dir, tmp_path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    return folder


def first_forget_turn(benchmark) -> Turn:
    sample = benchmark.forget_samples()[0]
    return Turn(sample.question, sample.answer, sample.image, sample.id, sample.fact)


# ------------------------------------------------------------------ data files


def test_truncated_parquet(tiny_benchmark, tmp_path):
    root = tmp_path / "bench"
    shutil.copytree(tiny_benchmark.source, root)
    shard = next((root / "Full_Set").glob("*.parquet"))
    data = shard.read_bytes()
    shard.write_bytes(data[:len(data) // 2])
    with pytest.raises(DataError, match=r"Full_Set/train-00000-of-00001.parquet: the parquet file could not be "
                                        r"read .*Download it again"):
        load_benchmark(root)


def test_unknown_data_layout(tmp_path):
    with pytest.raises(DataError, match=r"no known benchmark layout was found. Pass 'embedded', an MLLMU-Bench"):
        load_benchmark(tmp_path)


def test_missing_data_path(tmp_path):
    with pytest.raises(DataError, match=r"missing-data not found. Pass 'embedded', or the path of an MLLMU-Bench"):
        load_benchmark(tmp_path / "missing-data")


def test_invalid_forget_split(tiny_benchmark):
    with pytest.raises(DataError, match=r"forget_split='forget_all' is invalid. Use forget_5, forget_10 or "
                                        r"forget_15"):
        load_benchmark(tiny_benchmark.source, forget_split="forget_all")


# ------------------------------------------------------------------ model folders


def test_model_folder_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"model directory .*nowhere not found; pass a local folder"):
        load_model(tmp_path / "nowhere")


def test_model_without_config(model_copy):
    (model_copy / "config.json").unlink()
    with pytest.raises(ValueError, match=r"model: config.json is missing"):
        load_model(model_copy)


def test_model_without_weights(model_copy):
    (model_copy / "model.safetensors").unlink()
    with pytest.raises(ValueError, match=r"model: no \*.safetensors weights found\.$"):
        load_model(model_copy)


def test_model_with_only_pickle_weights(model_copy):
    (model_copy / "model.safetensors").rename(model_copy / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"no \*.safetensors weights found. It holds .bin \(pickle\) weights, which "
                                         r"viker does not load because unpickling can run code; convert them"):
        load_model(model_copy)


def test_model_with_truncated_weights(model_copy):
    weights = model_copy / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match=rf"model.safetensors: the file has {len(data) // 2} bytes but its header "
                                         rf"describes {len(data)}; it is truncated or damaged, so download"):
        load_model(model_copy)


def test_model_without_processor(model_copy):
    (model_copy / "processor_config.json").unlink()
    with pytest.raises(ValueError, match=r"no processor_config.json or preprocessor_config.json; save the "
                                         r"processor with processor.save_pretrained"):
        load_model(model_copy)


@pytest.mark.parametrize("model_type", ["bert", "no_such_family"])
def test_unsupported_model_type(model_copy, model_type):
    config = json.loads((model_copy / "config.json").read_text())
    config["model_type"] = model_type
    (model_copy / "config.json").write_text(json.dumps(config))
    supported = re.escape(str(sorted(FAMILIES)))
    with pytest.raises(ValueError, match=rf"config.json: unsupported model_type '{model_type}'; viker supports "
                                         rf"{supported}"):
        load_model(model_copy)


def test_invalid_dtype(tiny_model_dir):
    with pytest.raises(ValueError, match=r"dtype 'float8' is invalid; choose one of \['bfloat16', 'float16', "
                                         r"'float32'\]"):
        load_model(tiny_model_dir, dtype="float8")


# ------------------------------------------------------------------ prompts and labels


def test_chat_template_that_raises(model_copy, tiny_benchmark):
    (model_copy / "chat_template.jinja").write_text("{{ raise_exception('only text messages are supported') }}")
    model = load_model(model_copy)
    turn = first_forget_turn(tiny_benchmark)
    with pytest.raises(ValueError, match=rf"{turn.source}: the processor's chat template could not render the "
                                         r"conversation \(TemplateError: only text messages are supported\)\. "
                                         r"Fix chat_template.jinja"):
        Collator(model.processor, model.adapter).train_batch([turn])


def test_chat_template_that_drops_image(model_copy, tiny_benchmark):
    (model_copy / "chat_template.jinja").write_text(
        "{% for m in messages %}{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
        "{% endfor %}{% endfor %}")
    model = load_model(model_copy)
    turn = first_forget_turn(tiny_benchmark)
    with pytest.raises(ValueError, match=rf"{turn.source}: the processor's chat template dropped the image: the "
                                         r"rendered prompt has no '<image>'"):
        Collator(model.processor, model.adapter).prompt_batch([turn])


def test_answer_cut_off_by_max_length(loaded, tiny_benchmark):
    turn = first_forget_turn(tiny_benchmark)
    length = int(Collator(loaded.processor, loaded.adapter).train_batch([turn])["attention_mask"].sum())
    with pytest.raises(ValueError, match=rf"{turn.source}: the sample is {length} tokens long, so max_length "
                                         rf"{length - 1} would cut off its answer"):
        Collator(loaded.processor, loaded.adapter, max_length=length - 1).train_batch([turn])


def test_empty_answer(loaded):
    with pytest.raises(ValueError, match=r"sample-7: empty answer; every training sample needs an answer"):
        Collator(loaded.processor, loaded.adapter).train_batch([Turn("Who?", "", None, "sample-7")])


# ------------------------------------------------------------------ ViKeR targets


def test_reference_pool_smaller_than_k(loaded, tiny_benchmark, tmp_path):
    pool = tiny_benchmark.reference_pool["faces"][:3]
    with pytest.raises(ValueError, match=r"the reference pool has 3 images but k = 5 are drawn per sample; add "
                                         r"images to the pool"):
        compute_targets(loaded, tiny_benchmark.forget_samples(), pool, k=5, cache_dir=tmp_path)


def test_target_cache_for_another_model(loaded, tiny_benchmark, tmp_path):
    cache = compute_targets(loaded, tiny_benchmark.forget_samples()[:1], tiny_benchmark.reference_pool["faces"],
                            k=2, m=4, cache_dir=tmp_path)
    other = dataclasses.replace(cache.spec, model="0123456789abcdef")
    with pytest.raises(ValueError, match=r"was computed for TargetSpec\(model='[0-9a-f]+'.*not for "
                                         r"TargetSpec\(model='0123456789abcdef'.*it belongs to another model, "
                                         r"dataset, reference pool, k or m\. Delete it"):
        TargetCache(cache.path, expected=other)
    other_data = dataclasses.replace(cache.spec, data="fedcba9876543210")
    with pytest.raises(ValueError, match=r"belongs to another model, dataset"):
        TargetCache(cache.path, expected=other_data)


def test_damaged_target_cache(tmp_path):
    path = tmp_path / "viker-q-0000.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ValueError, match=r"viker-q-0000.safetensors could not be read .*; delete it so that viker "
                                         r"computes the targets again"):
        TargetCache(path, expected=TargetSpec("m", "d", "p", 5, 32, 0))


# ------------------------------------------------------------------ hyperparameters


@pytest.mark.parametrize("field,value,message", [
    ("learning_rate", 0.0, r"UnlearnConfig.learning_rate must be > 0, got 0.0"),
    ("batch_size", 0, r"UnlearnConfig.batch_size must be > 0, got 0"),
    ("epochs", -1.0, r"UnlearnConfig.epochs must be > 0, got -1.0"),
    ("gradient_accumulation_steps", 0, r"UnlearnConfig.gradient_accumulation_steps must be > 0, got 0"),
    ("warmup_steps", -1, r"UnlearnConfig.warmup_steps must be >= 0, got -1"),
    ("save_steps", -5, r"UnlearnConfig.save_steps must be >= 0, got -5"),
    ("weight_decay", -0.1, r"UnlearnConfig.weight_decay must be >= 0, got -0.1"),
])
def test_unlearn_config_rejects(field, value, message):
    with pytest.raises(ValueError, match=message):
        UnlearnConfig(**{field: value})


@pytest.mark.parametrize("field,value,message", [
    ("learning_rate", -3e-4, r"FinetuneConfig.learning_rate must be > 0, got -0.0003"),
    ("batch_size", 0, r"FinetuneConfig.batch_size must be > 0, got 0"),
    ("warmup_steps", -20, r"FinetuneConfig.warmup_steps must be >= 0, got -20"),
    ("save_steps", -1, r"FinetuneConfig.save_steps must be >= 0, got -1"),
    ("target_accuracy", 1.5, r"FinetuneConfig.target_accuracy must be in \(0, 1\], got 1.5"),
])
def test_finetune_config_rejects(field, value, message):
    with pytest.raises(ValueError, match=message):
        FinetuneConfig(**{field: value})


@pytest.mark.parametrize("method,field,value,message", [
    ("npo", "beta", 0.0, r"NPO beta must be > 0, got 0.0"),
    ("simnpo", "beta", -1.0, r"SimNPO beta must be > 0, got -1.0"),
    ("gd", "retain_weight", 0.0, r"GD retain_weight must be > 0, got 0.0"),
    ("kl", "retain_weight", -1.0, r"KL retain_weight must be > 0, got -1.0"),
    ("viker", "m", 0, r"ViKeR k and m must be >= 1, got k=5, m=0"),
])
def test_method_config_rejects(method, field, value, message):
    with pytest.raises(ValueError, match=message):
        get_method(method).Config(**{field: value})


@pytest.mark.parametrize("field,value,message", [
    ("steps", 0, r"RelearnConfig.steps must be > 0, got 0"),
    ("learning_rate", -1e-4, r"RelearnConfig.learning_rate must be > 0, got -0.0001"),
    ("fraction", 1.0, r"RelearnConfig.fraction must be in \(0, 1\) so that some forget items stay held out, got 1.0"),
])
def test_relearn_config_rejects(field, value, message):
    with pytest.raises(ValueError, match=message):
        RelearnConfig(**{field: value})


def test_relearn_needs_two_forget_facts(tiny_benchmark):
    person = tiny_benchmark.forget_ids[0]
    profiles = dict(tiny_benchmark.profiles)
    profiles[person] = dataclasses.replace(profiles[person], qa=[QA("Where?", "In Perth.", "Perth")])
    single = dataclasses.replace(tiny_benchmark, profiles=profiles)
    with pytest.raises(ValueError, match=r"has 1 samples with a fact span; the relearning check needs at least 2"):
        split_forget(single, 0.5, seed=0)


@pytest.mark.parametrize("kwargs,message", [
    ({"parts": ("text_tower",)}, r"trainable parts \['text_tower'\] are invalid; choose from"),
    ({"lora_r": -1}, r"lora_r must be >= 0 \(0 turns LoRA off\), got -1"),
    ({"lora_dropout": 1.0}, r"lora_dropout must be in \[0, 1\), got 1.0"),
])
def test_trainable_spec_rejects(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainableSpec(**kwargs)


def test_lora_target_matching_nothing(tiny_model_dir):
    model = load_model(tiny_model_dir)
    spec = TrainableSpec(lora_r=4, lora_targets=("query_key_value",))
    with pytest.raises(ValueError, match=r"LoRA targets \['query_key_value'\] match no Linear module under "
                                         r"'model.language_model'; list module names"):
        apply_trainable(model.model, model.adapter, spec)


@pytest.mark.parametrize("kwargs,message", [
    ({"sets": ("forget", "holdout")}, r"unknown evaluation sets \['holdout'\]; choose from \['forget'"),
    ({"tasks": ("generation", "essay")}, r"unknown evaluation tasks \['essay'\]; choose from"),
    ({"max_items": 0}, r"max_items must be >= 1 or None, got 0"),
])
def test_eval_config_rejects(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EvalConfig(**kwargs)


# ------------------------------------------------------------------ command line


@pytest.mark.parametrize("extra,message", [
    (["--method", "forgetall"], r"unknown method 'forgetall'; choose one of \['ga', "),
    (["--method", "viker", "--method-args", '{"lam": 1}'], r"lam must be > 1 for the ViKeR objective, got 1\. "),
    (["--method", "viker", "--method-args", "lam=10"], r"--method-args 'lam=10' is not valid JSON .*pass an object "
                                                        r"such as"),
    (["--method", "viker", "--method-args", "[10]"], r"--method-args must be a JSON object of hyperparameters"),
    (["--method", "viker", "--method-args", '{"lambda": 10}'], r"--method-args: \['lambda'\] are not "
                                                                r"hyperparameters of 'viker'; choose from \['lam', "),
])
def test_unlearn_command_rejects(extra, message, tiny_model_dir, tiny_benchmark, tmp_path, caplog):
    args = ["unlearn", "--model", str(tiny_model_dir), "--data", tiny_benchmark.source, "--out",
            str(tmp_path / "out"), *extra]
    assert main(args) == 2
    assert any(r.levelname == "ERROR" for r in caplog.records)
    assert re.search(message, caplog.text), caplog.text
    assert not (tmp_path / "out").exists()
