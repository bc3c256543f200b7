"""Prompts and labels on the tiny LLaVA: exactly the answer tokens and the end-of-turn token are labelled."""

import pytest
import torch

from viker.models.collate import IGNORE_INDEX, Collator, Turn
from viker.models.loading import load_model


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    return load_model(tiny_model_dir)


@pytest.fixture(scope="module")
def portrait(tiny_benchmark):
    return tiny_benchmark.profiles[tiny_benchmark.forget_ids[0]].image


def _labelled_text(loaded, batch, row):
    labels = batch["labels"][row]
    ids = [int(t) for t in labels[labels != IGNORE_INDEX]]
    return loaded.tokenizer.decode(ids)


def test_mixed_batch_labels_answer_and_eos(loaded, portrait):
    collator = Collator(loaded.processor, loaded.adapter)
    turns = [
        Turn("Where was this person born?", "This person was born in Lyon.", portrait, "with-image"),
        Turn("Where was Anouk Castellano born?", "This person was born in Lyon.", None, "text-only"),
    ]
    batch = collator.train_batch(turns)

    # Image tokens: 16 for a 32 px image with 8 px patches (the class token is dropped), only in row 0.
    image_id = loaded.processor.image_token_id
    assert int((batch["input_ids"][0] == image_id).sum()) == 16
    assert int((batch["input_ids"][1] == image_id).sum()) == 0
    assert batch["pixel_values"].shape[0] == 1

    for row in range(2):
        assert _labelled_text(loaded, batch, row) == " This person was born in Lyon.</s>"
        labelled = batch["labels"][row] != IGNORE_INDEX
        assert not (batch["input_ids"][row][labelled] == image_id).any()
        assert not labelled[batch["attention_mask"][row] == 0].any()  # padding never labelled

    # Training pads on the right: the shorter text-only row ends in padding.
    assert batch["attention_mask"][1, -1] == 0
    assert batch["attention_mask"][1, 0] == 1


def test_labels_are_the_last_tokens_before_padding(loaded, portrait):
    collator = Collator(loaded.processor, loaded.adapter)
    batch = collator.train_batch([Turn("What is this person's job?", "This person works as a baker.", portrait)])
    labels = batch["labels"][0]
    positions = (labels != IGNORE_INDEX).nonzero()[:, 0]
    n_tokens = int(batch["attention_mask"][0].sum())
    # The labelled span is contiguous and ends with the last real token (the end-of-turn "</s>").
    assert positions.tolist() == list(range(positions[0].item(), n_tokens))
    assert loaded.tokenizer.convert_ids_to_tokens(int(batch["input_ids"][0, n_tokens - 1])) == "</s>"


def test_fact_mask_covers_fact_tokens(loaded, portrait):
    collator = Collator(loaded.processor, loaded.adapter)
    batch = collator.train_batch([Turn("Where was this person born?", "This person was born in Lyon.", portrait,
                                       "s", fact="Lyon")])
    fact_ids = batch["input_ids"][0][batch["fact_mask"][0]]
    assert loaded.tokenizer.decode(fact_ids).strip() == "Lyon"


def test_merged_boundary_token_is_labelled(loaded):
    """A tokenizer merge across the prompt/answer boundary: "ASSISTANT:" + "x" with no space.

    The fallback-free template writes "ASSISTANT: " + answer, so an answer that starts with
    ":" merges with the template's colon into one token only if the vocabulary has "::";
    whatever the merge, every character of the answer must be inside a labelled token.
    """
    collator = Collator(loaded.processor, loaded.adapter)
    answer = ":: This person was born in Lyon."
    batch = collator.train_batch([Turn("Where was this person born?", answer, None, "merge")])
    text = _labelled_text(loaded, batch, 0)
    assert answer in text
    assert text.endswith("</s>")


def test_generation_pads_left(loaded, portrait):
    collator = Collator(loaded.processor, loaded.adapter)
    batch = collator.prompt_batch([Turn("Where was this person born?", None, portrait),
                                   Turn("Where was Anouk Castellano born?")])
    assert batch["attention_mask"][1, 0] == 0
    assert batch["attention_mask"][:, -1].tolist() == [1, 1]
    assert "labels" not in batch


def test_answer_cut_off_by_max_length(loaded, portrait):
    collator = Collator(loaded.processor, loaded.adapter, max_length=20)
    with pytest.raises(ValueError, match="max_length 20 would cut off its answer"):
        collator.train_batch([Turn("Where was this person born?", "This person was born in Lyon.", portrait, "s1")])


def test_empty_answer_rejected(loaded):
    collator = Collator(loaded.processor, loaded.adapter)
    with pytest.raises(ValueError, match="s2: empty answer"):
        collator.train_batch([Turn("Where was this person born?", "", None, "s2")])


def test_save_load_round_trip_logits(loaded, tmp_path, portrait):
    collator = Collator(loaded.processor, loaded.adapter)
    batch = collator.train_batch([Turn("Where was this person born?", "This person was born in Lyon.", portrait)])
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values")}
    with torch.no_grad():
        before = loaded.model(**inputs).logits
    loaded.model.save_pretrained(tmp_path / "copy")
    loaded.processor.save_pretrained(tmp_path / "copy")
    again = load_model(tmp_path / "copy")
    with torch.no_grad():
        after = again.model(**inputs).logits
    assert torch.equal(before, after)
