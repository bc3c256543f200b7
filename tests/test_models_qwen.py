"""Qwen2-VL and Qwen2.5-VL end to end on tiny models: prompts and labels, loading, unlearning, generation.

Image-token arithmetic used below. The tiny models use 8 px patches and a 2×2 merge, and keep
image sides between 32 and 48 px, rounded to 16 px. A 32 px image is a 4 × 4 patch grid
(image_grid_thw [1, 4, 4]), so 16 patches make 16 / 4 = 4 image tokens. A 48 px image is
6 × 6, so 36 / 4 = 9 tokens. A 64 px image is shrunk to 48 px and also gives 9 tokens.
Each row of pixel_values has 3 channels × 2 frames × 8 × 8 = 384 values.
"""

import io
import json
import shutil

import pytest
import torch
from PIL import Image

from viker.data.records import decode_image
from viker.eval.runner import EvalConfig, Evaluator
from viker.methods.base import UnlearnConfig
from viker.methods.run import unlearn
from test_methods_smoke import EXPECTED_PARTS  # the keys each method logs, shared with the LLaVA smoke tests
from viker.methods.targets import compute_targets
from viker.models.collate import IGNORE_INDEX, Collator, Turn, model_inputs
from viker.models.loading import load_model
from viker.models.qwen import (
    Qwen2_5_VLImageTextProcessor,
    Qwen2VLImageTextProcessor,
    mrope_sections,
)
from viker.models.tiny import TINY_BUILDERS
from viker.models.trainable import TrainableSpec, apply_trainable

FAMILIES = ("qwen2_vl", "qwen2_5_vl")
PROCESSOR_CLASSES = {"qwen2_vl": Qwen2VLImageTextProcessor, "qwen2_5_vl": Qwen2_5_VLImageTextProcessor}
STOCK_PROCESSOR_NAMES = {"qwen2_vl": "Qwen2VLProcessor", "qwen2_5_vl": "Qwen2_5_VLProcessor"}
ANSWER = "This person was born in Lyon."
SYSTEM_TURN = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
FULL_LM = TrainableSpec(parts=("language_model", "lm_head"), lora_r=0)


@pytest.fixture(scope="module", params=FAMILIES)
def family(request):
    return request.param


@pytest.fixture(scope="module")
def qwen_dir(family, tiny_benchmark, tmp_path_factory):
    texts = [f"{s.question} {s.answer}" for s in tiny_benchmark.train_samples()]
    return TINY_BUILDERS[family](texts, tmp_path_factory.mktemp(family) / "tiny", text_hidden=64, text_layers=2,
                                 vision_hidden=32, vocab_size=400)


@pytest.fixture(scope="module")
def loaded(qwen_dir):
    return load_model(qwen_dir)


@pytest.fixture(scope="module")
def portrait(tiny_benchmark):
    return tiny_benchmark.profiles[tiny_benchmark.forget_ids[0]].image


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _resized(image: bytes, side: int) -> bytes:
    return _png(decode_image(image, "test").resize((side, side)))


def _ids(loaded, text: str) -> list[int]:
    return loaded.tokenizer(text, add_special_tokens=False)["input_ids"]


def _prompt_text(question: str, image_tokens: int) -> str:
    """The tiny models' chat template output for one user turn, with the image placeholder expanded."""
    image = ""
    if image_tokens:
        image = "<|vision_start|>" + "<|image_pad|>" * image_tokens + "<|vision_end|>"
    return (f"{SYSTEM_TURN}<|im_start|>user\n{image}{question}<|im_end|>\n"
            "<|im_start|>assistant\n")


def _part_state(loaded, part: str) -> dict[str, torch.Tensor]:
    return loaded.adapter.module(loaded.model, part).state_dict()


def _token_id(loaded, token: str) -> int:
    return loaded.tokenizer.convert_tokens_to_ids(token)


def test_mrope_sections_split_half_head_dim():
    """head_dim 128: 64 frequencies = 16 + 24 + 24 (Qwen2-VL-7B); 64: 8 + 12 + 12; 16: 2 + 3 + 3."""
    assert mrope_sections(128) == [16, 24, 24]
    assert mrope_sections(64) == [8, 12, 12]
    assert mrope_sections(16) == [2, 3, 3]


def test_tiny_builder_rejects_unaligned_image_size(tmp_path):
    with pytest.raises(ValueError, match="max_image_size 40 must be a multiple of 2 × patch_size = 16"):
        TINY_BUILDERS["qwen2_vl"](["a b c"], tmp_path / "m", max_image_size=40)


def test_loads_image_text_processor(loaded, family):
    assert type(loaded.processor) is PROCESSOR_CLASSES[family]
    assert loaded.adapter.model_type == family
    assert loaded.processor.image_token == "<|image_pad|>"
    assert loaded.processor.image_token_id == _token_id(loaded, "<|image_pad|>")
    assert loaded.model.config.image_token_id == loaded.processor.image_token_id


def test_adapter_paths_resolve(loaded):
    language_model = loaded.adapter.module(loaded.model, "language_model")
    vision_tower = loaded.adapter.module(loaded.model, "vision_tower")
    projector = loaded.adapter.module(loaded.model, "projector")
    assert type(language_model).__name__.endswith("TextModel")
    assert projector is vision_tower.merger


def test_lora_wraps_language_model_only(qwen_dir):
    """The default LoRA targets (q/k/v/o, gate/up/down projections) exist in the Qwen2 language model."""
    fresh = load_model(qwen_dir)
    model = apply_trainable(fresh.model, fresh.adapter, TrainableSpec(lora_r=4, lora_alpha=8))
    trainable = [name for name, param in model.named_parameters() if param.requires_grad]
    assert trainable
    for name in trainable:
        assert ".language_model." in name, name
        assert ".lora_" in name, name
    wrapped = {name.split(".lora_")[0].rsplit(".", 1)[-1] for name in trainable}
    assert wrapped == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def test_mixed_batch_labels_answer_and_im_end(loaded, portrait):
    """Rows spelled out as text: the chat template's output with the image placeholder expanded.

    Row 0 (32 px portrait) has 4 image tokens and row 1 (text only) none. The answer tokens and
    <|im_end|> are labelled. The prompt, the final "\n" and the padding are -100.
    """
    collator = Collator(loaded.processor, loaded.adapter)
    turns = [
        Turn("Where was this person born?", ANSWER, portrait, "with-image"),
        Turn("Where was Anouk Castellano born?", ANSWER, None, "text-only"),
    ]
    batch = collator.train_batch(turns)
    ids, labels, attention = batch["input_ids"], batch["labels"], batch["attention_mask"]
    width = ids.shape[1]
    pad = loaded.tokenizer.pad_token_id
    im_end = _token_id(loaded, "<|im_end|>")

    for row, image_tokens in ((0, 4), (1, 0)):
        prompt = _ids(loaded, _prompt_text(turns[row].question, image_tokens))
        real = prompt + _ids(loaded, ANSWER + "<|im_end|>\n")
        padding = width - len(real)
        assert ids[row].tolist() == real + [pad] * padding
        assert attention[row].tolist() == [1] * len(real) + [0] * padding  # right padding
        expected_labels = ([IGNORE_INDEX] * len(prompt) + _ids(loaded, ANSWER) + [im_end]
                           + [IGNORE_INDEX] + [IGNORE_INDEX] * padding)
        assert labels[row].tolist() == expected_labels
    assert int(attention.sum()) < attention.numel()  # the padding checks above are not vacuous

    image_id = loaded.processor.image_token_id
    assert not (labels[ids == image_id] != IGNORE_INDEX).any()
    assert batch["image_grid_thw"].tolist() == [[1, 4, 4]]
    assert list(batch["pixel_values"].shape) == [16, 384]
    assert torch.equal(batch["mm_token_type_ids"], (ids == image_id).long())


def test_prompt_batch_pads_left(loaded, portrait):
    collator = Collator(loaded.processor, loaded.adapter)
    batch = collator.prompt_batch([Turn("Where was this person born?", None, portrait),
                                   Turn("Where was Anouk Castellano born?")])
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    short = lengths.index(min(lengths))
    assert lengths[0] != lengths[1]
    assert batch["attention_mask"][short, 0] == 0
    assert batch["attention_mask"][:, -1].tolist() == [1, 1]
    assert "labels" not in batch
    assert batch["image_grid_thw"].tolist() == [[1, 4, 4]]
    assert int(batch["mm_token_type_ids"].sum()) == 4
    # Both prompts end with the generation prompt "<|im_start|>assistant\n".
    tail = _ids(loaded, "<|im_start|>assistant\n")
    for row in range(2):
        assert batch["input_ids"][row, -len(tail):].tolist() == tail


@pytest.mark.parametrize("side,tokens,grid", [(32, 4, [1, 4, 4]), (48, 9, [1, 6, 6]), (64, 9, [1, 6, 6])])
def test_image_size_sets_token_count(loaded, portrait, side, tokens, grid):
    collator = Collator(loaded.processor, loaded.adapter)
    batch = collator.train_batch([Turn("Where was this person born?", ANSWER, _resized(portrait, side))])
    assert int((batch["input_ids"][0] == loaded.processor.image_token_id).sum()) == tokens
    assert batch["image_grid_thw"].tolist() == [grid]
    assert int(batch["mm_token_type_ids"].sum()) == tokens


def test_batched_rows_match_single_rows(loaded, portrait):
    """Right padding and a second image of another size (9 image tokens) leave each row's answer logits as
    they are when the row is alone, so the multimodal rotary positions are computed per row."""
    collator = Collator(loaded.processor, loaded.adapter)
    turns = [
        Turn("Where was this person born?", ANSWER, portrait),
        Turn("Where was this person born?", ANSWER, _resized(portrait, 48)),
        Turn("Where was Anouk Castellano born?", ANSWER),
    ]
    batch = collator.train_batch(turns)
    with torch.no_grad():
        batched = loaded.model(**model_inputs(batch, loaded.adapter)).logits
    for row, turn in enumerate(turns):
        single = collator.train_batch([turn])
        with torch.no_grad():
            alone = loaded.model(**model_inputs(single, loaded.adapter)).logits
        in_batch = batched[row][batch["labels"][row] != IGNORE_INDEX]
        by_itself = alone[0][single["labels"][0] != IGNORE_INDEX]
        assert torch.allclose(in_batch, by_itself, atol=1e-5), row


def test_save_load_round_trip_logits(loaded, portrait, tmp_path):
    collator = Collator(loaded.processor, loaded.adapter)
    batch = collator.train_batch([Turn("Where was this person born?", ANSWER, portrait),
                                  Turn("Where was Anouk Castellano born?", ANSWER)])
    inputs = model_inputs(batch, loaded.adapter)
    assert set(inputs) == {"input_ids", "attention_mask", "pixel_values", "image_grid_thw", "mm_token_type_ids"}
    with torch.no_grad():
        before = loaded.model(**inputs).logits
    loaded.model.save_pretrained(tmp_path / "copy")
    loaded.processor.save_pretrained(tmp_path / "copy")
    again = load_model(tmp_path / "copy")
    with torch.no_grad():
        after = again.model(**inputs).logits
    assert torch.isfinite(before).all()
    assert torch.equal(before, after)


def test_downloaded_layout_loads(qwen_dir, family, loaded, portrait, tmp_path):
    """A hub checkpoint keeps the image processor in preprocessor_config.json and names the stock processor."""
    folder = tmp_path / "hub"
    shutil.copytree(qwen_dir, folder)
    nested = json.loads((folder / "processor_config.json").read_text())
    (folder / "processor_config.json").unlink()
    image_config = nested["image_processor"]
    image_config["processor_class"] = STOCK_PROCESSOR_NAMES[family]
    (folder / "preprocessor_config.json").write_text(json.dumps(image_config))

    again = load_model(folder)
    assert type(again.processor) is PROCESSOR_CLASSES[family]
    turn = Turn("Where was this person born?", ANSWER, portrait)
    batch = Collator(again.processor, again.adapter).train_batch([turn])
    reference = Collator(loaded.processor, loaded.adapter).train_batch([turn])
    assert torch.equal(batch["input_ids"], reference["input_ids"])
    assert torch.equal(batch["pixel_values"], reference["pixel_values"])


def test_targets_with_larger_reference_images(loaded, tiny_benchmark, tmp_path):
    """48 px references give 9 image tokens against the 32 px portrait's 4; q still has one row per label."""
    forget = tiny_benchmark.forget_samples()
    pool = [_resized(image, 48) for image in tiny_benchmark.reference_pool["faces"]]
    targets = compute_targets(loaded, forget, pool, k=2, m=8, seed=0, cache_dir=tmp_path)
    collator = Collator(loaded.processor, loaded.adapter)
    for sample in forget:
        batch = collator.train_batch([Turn(sample.question, sample.answer, sample.image, sample.id)])
        n_labels = int((batch["labels"][0] != IGNORE_INDEX).sum())
        q = targets.get(sample.id)
        assert list(q["ids"].shape) == [n_labels, 8]
        total = q["probs"].sum(dim=-1) + q["rest"]
        assert torch.allclose(total, torch.ones(n_labels), atol=1e-5)


@pytest.mark.parametrize("method", sorted(EXPECTED_PARTS))
def test_unlearn_smoke(method, qwen_dir, tiny_benchmark, tmp_path):
    parts = EXPECTED_PARTS[method]
    config = UnlearnConfig(learning_rate=1e-3, batch_size=2, max_steps=2, trainable=FULL_LM)
    summary = unlearn(qwen_dir, tiny_benchmark, method, tmp_path / "out", config=config,
                      cache_dir=tmp_path / "cache", oracle_path=qwen_dir)

    assert summary["steps"] == 2
    assert summary["diverged"] is None
    logged = [entry for entry in summary["log_history"] if "forget/loss" in entry]
    assert len(logged) == 2
    for entry in logged:
        assert parts <= set(entry)
        for key in parts:
            assert torch.isfinite(torch.tensor(entry[key])), key

    # Compared as loaded modules: the checkpoint stores Qwen weights under legacy key names
    # ("model.layers.*", "visual.*"), not the module paths of transformers 5.
    before, after = load_model(qwen_dir), load_model(tmp_path / "out")
    lm_before = _part_state(before, "language_model")
    lm_after = _part_state(after, "language_model")
    assert lm_before.keys() == lm_after.keys()
    changed = [k for k in lm_before if not torch.equal(lm_before[k], lm_after[k])]
    assert changed, "no language-model weight changed"

    vision_before = _part_state(before, "vision_tower")
    vision_after = _part_state(after, "vision_tower")
    assert any(k.startswith("merger.") for k in vision_before)
    assert vision_before.keys() == vision_after.keys()
    for key in vision_before:
        assert torch.equal(vision_before[key], vision_after[key]), key


def test_generate_returns_strings(loaded, portrait):
    evaluator = Evaluator(loaded, EvalConfig(batch_size=2))
    replies = evaluator.generate([Turn("Where was this person born?", None, portrait),
                                  Turn("Where was Anouk Castellano born?")], max_new_tokens=4)
    assert len(replies) == 2
    assert all(isinstance(reply, str) for reply in replies)
