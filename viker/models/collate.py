"""Prompts and labels: turn (image, question, answer) samples into model batches.

Labels cover the answer tokens and the end-of-turn token only: the prompt, the
image tokens and the padding are set to -100. The answer span is found from the
tokenizer's character offsets, so a token that merges the last prompt
character with the first answer character (":" + " This" → ": This" in some
vocabularies) is still labelled: any token that overlaps the answer counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from viker.data.records import decode_image

IGNORE_INDEX = -100

# Used when the processor has no chat template; documented in docs/models.md.
FALLBACK_PROMPT = "USER: {image}{question} ASSISTANT:"


@dataclass
class Turn:
    """The source of one batch row: optional image bytes, question and optional answer."""

    question: str
    answer: str | None = None
    image: bytes | None = None
    source: str = "sample"  # id used in error messages
    fact: str | None = None  # the fact span inside the answer, marked in the batch's fact_mask


class PromptRenderer:
    """Render prompts with the processor's chat template, or the documented fallback."""

    def __init__(self, processor):
        self.processor = processor
        self.has_template = bool(getattr(processor, "chat_template", None))

    def prompt(self, question: str, has_image: bool) -> str:
        if not self.has_template:
            image = (self.processor.image_token + "\n") if has_image else ""
            return FALLBACK_PROMPT.format(image=image, question=question)
        return self.processor.apply_chat_template(
            [self._user(question, has_image)], add_generation_prompt=True, tokenize=False
        )

    def full(self, question: str, answer: str, has_image: bool) -> str:
        """Render prompt, answer and end-of-turn; the prompt is checked to be a prefix of the result."""
        if not self.has_template:
            return self.prompt(question, has_image) + " " + answer + self.processor.tokenizer.eos_token
        messages = [
            self._user(question, has_image),
            {"role": "assistant", "content": [{"type": "text", "text": answer}]},
        ]
        return self.processor.apply_chat_template(messages, tokenize=False)

    @staticmethod
    def _user(question: str, has_image: bool) -> dict:
        content = [{"type": "image"}] if has_image else []
        content.append({"type": "text", "text": question})
        return {"role": "user", "content": content}


def _answer_char_span(full_text: str, prompt_text: str, answer: str, source: str) -> tuple[int, int]:
    if not full_text.startswith(prompt_text.rstrip()):
        raise ValueError(
            f"{source}: the chat template renders the prompt differently with and without the answer, "
            "so the answer span cannot be found; give the processor a chat template whose generation "
            "prompt is a prefix of the full conversation"
        )
    start = full_text.find(answer, len(prompt_text.rstrip()))
    if start < 0:
        raise ValueError(f"{source}: the answer {answer!r} does not appear in the rendered conversation")
    return start, start + len(answer)


def _label_row(offsets: torch.Tensor, input_ids: torch.Tensor, span: tuple[int, int],
               special_ids: set[int], source: str) -> torch.Tensor:
    """Label tokens overlapping `span` and the special end-of-turn token right after it."""
    start, end = span
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    last = -1
    for t in range(len(input_ids)):
        lo, hi = int(offsets[t, 0]), int(offsets[t, 1])
        if hi > lo and hi > start and lo < end:
            labels[t] = input_ids[t]
            last = t
    if last < 0 or int(offsets[last, 1]) < end:
        raise ValueError(f"{source}: the answer tokens could not be located in the encoded sample")
    # The end-of-turn token: the first special token after the answer (whitespace tokens in between stay unlabelled).
    for t in range(last + 1, len(input_ids)):
        if int(input_ids[t]) in special_ids:
            labels[t] = input_ids[t]
            break
    return labels


def _fact_mask(offsets, labels, text, span, shift, turn: Turn) -> torch.Tensor:
    """Mark the labelled tokens that overlap the fact span inside the answer (all False without a fact)."""
    mask = torch.zeros_like(labels, dtype=torch.bool)
    if not turn.fact:
        return mask
    answer_start = span[0] - shift
    at = text.find(turn.fact, answer_start)
    if at < 0:
        raise ValueError(f"{turn.source}: the fact {turn.fact!r} is not part of the answer {turn.answer!r}")
    lo_fact, hi_fact = at + shift, at + shift + len(turn.fact)
    for t in range(len(labels)):
        lo, hi = int(offsets[t, 0]), int(offsets[t, 1])
        if hi > lo and hi > lo_fact and lo < hi_fact:
            mask[t] = True
    return mask


def model_inputs(batch: dict, adapter) -> dict:
    """Keep only the keys that the model's forward takes (drops labels, fact_mask and viker's extras)."""
    keys = ("input_ids", "attention_mask", *adapter.pixel_inputs)
    return {k: batch[k] for k in keys if k in batch}


class Collator:
    """Batch `Turn`s for training (right padding, labels) or generation (left padding, no labels)."""

    def __init__(self, processor, adapter, max_length: int | None = None):
        self.processor = processor
        self.adapter = adapter
        self.renderer = PromptRenderer(processor)
        self.max_length = max_length
        tokenizer = processor.tokenizer
        self.special_ids = set(tokenizer.all_special_ids)
        self.image_token_id = getattr(processor, "image_token_id", None) or tokenizer.convert_tokens_to_ids(
            getattr(processor, "image_token", "<image>")
        )
        self.special_ids.discard(self.image_token_id)
        if tokenizer.pad_token_id is not None:
            self.special_ids.discard(tokenizer.pad_token_id)

    def train_batch(self, turns: Sequence[Turn]) -> dict[str, torch.Tensor]:
        texts, spans, images = [], [], []
        for turn in turns:
            if not turn.answer:
                raise ValueError(f"{turn.source}: empty answer; every training sample needs an answer")
            has_image = turn.image is not None
            prompt = self._render(turn, self.renderer.prompt, turn.question, has_image)
            full = self._render(turn, self.renderer.full, turn.question, turn.answer, has_image)
            texts.append(full)
            spans.append(_answer_char_span(full, prompt, turn.answer, turn.source))
            if has_image:
                images.append(decode_image(turn.image, turn.source))
        batch = self._encode(texts, images, padding_side="right", offsets=True)
        offsets = batch.pop("offset_mapping")
        labels, fact_masks = [], []
        for i, turn in enumerate(turns):
            length = int(batch["attention_mask"][i].sum())
            if self.max_length and length > self.max_length:
                raise ValueError(
                    f"{turn.source}: the sample is {length} tokens long, so max_length {self.max_length} "
                    "would cut off its answer; raise max_length or shorten the question and answer"
                )
            # Offsets refer to the text after the processor expanded each image placeholder into
            # many image tokens, so locate the answer from the end of the string, where every
            # template puts it. The last character (end-of-turn) is always covered by a token.
            expanded_length = int(offsets[i].max())
            shift = expanded_length - len(texts[i])
            span = (spans[i][0] + shift, spans[i][1] + shift)
            row = _label_row(offsets[i], batch["input_ids"][i], span, self.special_ids, turn.source)
            labels.append(row)
            fact_masks.append(_fact_mask(offsets[i], row, texts[i], span, shift, turn))
        batch["labels"] = torch.stack(labels)
        batch["labels"][batch["attention_mask"] == 0] = IGNORE_INDEX
        batch["fact_mask"] = torch.stack(fact_masks) & (batch["labels"] != IGNORE_INDEX)
        return batch

    def prompt_batch(self, turns: Sequence[Turn]) -> dict[str, torch.Tensor]:
        texts, images = [], []
        for turn in turns:
            has_image = turn.image is not None
            texts.append(self._render(turn, self.renderer.prompt, turn.question, has_image))
            if has_image:
                images.append(decode_image(turn.image, turn.source))
        return self._encode(texts, images, padding_side="left", offsets=False)

    def _render(self, turn: Turn, render, *args) -> str:
        """Call a PromptRenderer method; raise ValueError naming the sample when the chat template fails."""
        import jinja2

        try:
            text = render(*args)
        except (jinja2.TemplateError, TypeError, KeyError) as err:
            raise ValueError(
                f"{turn.source}: the processor's chat template could not render the conversation "
                f"({type(err).__name__}: {err}). Fix chat_template.jinja in the model folder, or delete it "
                "so that viker uses its documented fallback prompt"
            ) from err
        image_token = getattr(self.processor, "image_token", None)
        if turn.image is not None and image_token and image_token not in text:
            raise ValueError(
                f"{turn.source}: the processor's chat template dropped the image: the rendered prompt has no "
                f"{image_token!r}. Fix chat_template.jinja in the model folder so that it writes the image "
                "token for content of type 'image'"
            )
        return text

    def _encode(self, texts, images, padding_side: str, offsets: bool) -> dict[str, torch.Tensor]:
        tokenizer = self.processor.tokenizer
        tokenizer.padding_side = padding_side
        kwargs = dict(text=texts, return_tensors="pt", padding=True)
        if images:
            kwargs["images"] = images
        if offsets:
            kwargs["return_offsets_mapping"] = True
        return dict(self.processor(**kwargs))
