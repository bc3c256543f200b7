"""Evaluate a model on a benchmark's sets: generation, multiple choice, cloze and teacher-forced tokens.

Every value is computed per item and keyed by item id as `"{set}/{metric}"`
(for example `forget/fact_acc`); `summarize` reduces them with a standard
error. The scorers are the pure functions of `viker.eval.text_metrics`,
`truth_ratio` and `fluency`; this module only runs the model.

Prompts:
    generation   the question as asked in training
    multiple choice  "{question}\\nA. …\\nB. …\\nC. …\\nD. …\\nAnswer with the option's letter."
    cloze        "Fill in the blank: {text}"
Generation is greedy. The likelihood scorer runs one batched forward pass
per question over its options.

Few-shot (`EvalConfig.few_shot` = n > 0): each prompt above is preceded by n
solved examples, "{example prompt}\n{answer}" separated by blank lines, drawn
with the seed from the same set and task (`few_shot_examples`).
NOTE: only the scored item's image reaches the model, so an example that
asks about "this person" is shown without that person's portrait.

The tasks "clear" and "mia" run the CLEAR protocol (`viker.eval.clear_protocol`)
and membership inference (`viker.eval.membership`) after the sets above;
their set-level values (AUC, model utility) go to `result["set_metrics"]` as
{"mean", "stderr": None, "n"} and into the summary.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from dataclasses import dataclass

import torch
from accelerate import PartialState
from accelerate.utils import gather_object

from viker.data.records import Benchmark, Cloze, Generation, MultipleChoice, SetName
from viker.eval.fluency import fluency_score
from viker.eval.registry import aggregate, arrow, direction_for
from viker.eval.text_metrics import (
    choose_by_likelihood,
    cloze_correct_official,
    cloze_exact_match,
    contains_fact,
    mc_correct_official,
    rouge_scores,
    sentence_bleu,
)
from viker.eval.truth_ratio import truth_ratio, truth_ratio_score
from viker.models.collate import Collator, Turn, model_inputs
from viker.models.loading import LoadedModel

log = logging.getLogger(__name__)

TASKS = ("generation", "mc", "cloze", "tokens")
PROTOCOL_TASKS = ("clear", "mia")  # accepted in EvalConfig.tasks, but not run by default
MC_INSTRUCTION = "Answer with the option's letter."


@dataclass
class EvalConfig:
    """Evaluation settings: the sets, the tasks and how many items of each."""

    sets: tuple[str, ...] = ("forget", "test", "retain", "public")
    tasks: tuple[str, ...] = TASKS
    max_items: int | None = None  # per set, task and modality, drawn with the seed; None evaluates all
    max_new_tokens: int = 24
    batch_size: int = 32
    mc_official: bool = True  # also generate for the official first-letter rule
    seed: int = 0
    few_shot: int = 0  # solved examples before each MLLMU prompt, from the same set and task; 0 is zero-shot

    def __post_init__(self):
        known = [member.value for member in SetName]
        unknown_sets = [name for name in self.sets if name not in known]
        if unknown_sets:
            raise ValueError(f"unknown evaluation sets {unknown_sets}; choose from {known} (--sets)")
        unknown = [t for t in self.tasks if t not in TASKS + PROTOCOL_TASKS]
        if unknown:
            raise ValueError(f"unknown evaluation tasks {unknown}; choose from {TASKS + PROTOCOL_TASKS}")
        if self.few_shot < 0:
            raise ValueError(f"few_shot must be >= 0, got {self.few_shot}")
        if self.max_items is not None and self.max_items < 1:
            raise ValueError(f"max_items must be >= 1 or None, got {self.max_items}")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("max_new_tokens and batch_size must be >= 1")


def mc_prompt(item: MultipleChoice) -> str:
    options = "\n".join(f"{letter}. {text}" for letter, text in sorted(item.options.items()))
    return f"{item.question}\n{options}\n{MC_INSTRUCTION}"


def cloze_prompt(item: Cloze) -> str:
    return f"Fill in the blank: {item.text}"


def example_text(item: MultipleChoice | Cloze | Generation) -> str:
    """Render a solved example: the item's prompt, a newline and its answer ("B. Lyon" for multiple choice)."""
    if isinstance(item, MultipleChoice):
        return f"{mc_prompt(item)}\n{item.key}. {item.options[item.key]}"
    if isinstance(item, Cloze):
        return f"{cloze_prompt(item)}\n{item.answer}"
    return f"{item.question}\n{item.answer}"


def few_shot_examples(item, pool: list, n: int, seed: int) -> list:
    """Draw `n` examples for `item` from `pool`, seeded by `seed` and the item id.

    The item itself and every other item about the same person are left out,
    because MLLMU-Bench asks the same fact with and without the image. When
    fewer than `n` items remain, all of them are returned in a seeded order.
    """
    candidates = [ex for ex in pool if ex.id != item.id and ex.profile_id != item.profile_id]
    rng = random.Random(f"{seed}:few-shot:{item.id}")
    return rng.sample(candidates, min(n, len(candidates)))


def _put(out: dict, set_name: str, metric: str, item, value: float) -> None:
    """Record one item's value under "{set}/{metric}" and under its modality, "{set}/{modality}/{metric}"."""
    out[f"{set_name}/{metric}"][item.id] = value
    out[f"{set_name}/{item.modality.value}/{metric}"][item.id] = value


def _subsample(items: list, limit: int | None, seed: int, tag: str) -> list:
    """Draw at most `limit` items of each modality, with a seed, keeping the original order."""
    if limit is None:
        return list(items)
    picked = []
    for modality in {it.modality for it in items}:
        indices = [i for i, it in enumerate(items) if it.modality == modality]
        if len(indices) > limit:
            indices = random.Random(f"{seed}:{tag}:{modality.value}").sample(indices, limit)
        picked += indices
    return [items[i] for i in sorted(picked)]


class Evaluator:
    """Runs one model over evaluation items; all results are per item id."""

    def __init__(self, loaded: LoadedModel, config: EvalConfig, vocabulary: frozenset[str] | None = None):
        self.loaded, self.config, self.vocabulary = loaded, config, vocabulary
        self.collator = Collator(loaded.processor, loaded.adapter)
        self.tokenizer = loaded.processor.tokenizer
        # Under torchrun or `accelerate launch` each rank evaluates every world_size-th item on its own device.
        self.state = PartialState(cpu=not torch.cuda.is_available())
        if loaded.model.device.type == "cpu" and self.state.device.type != "cpu":
            loaded.model.to(self.state.device)
        self.device = loaded.model.device
        self.example_pools: dict[tuple[str, str], list] = {}  # (set, task) -> few-shot pool; run() fills it
        self._short_pools: set[tuple[str, str]] = set()  # (set, task) pools already warned about

    def prompt(self, set_name: str, task: str, item, prompt: str) -> str:
        """Prefix `prompt` with `config.few_shot` solved examples of the same set and task (none by default)."""
        n = self.config.few_shot
        if n == 0:
            return prompt
        pool = self.example_pools.get((set_name, task), [])
        examples = few_shot_examples(item, pool, n, self.config.seed)
        if len(examples) < n and (set_name, task) not in self._short_pools:
            self._short_pools.add((set_name, task))
            log.warning("%s/%s: item %s gets only %d of %d few-shot examples, because the set has too few items "
                        "about other people; later items may get fewer too", set_name, task, item.id, len(examples), n)
        return "\n\n".join([*(example_text(ex) for ex in examples), prompt])

    # -- model calls -----------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, turns: list[Turn], max_new_tokens: int) -> list[str]:
        model = self.loaded.model
        model.eval()
        replies = []
        for lo in range(0, len(turns), self.config.batch_size):
            batch = self.collator.prompt_batch(turns[lo:lo + self.config.batch_size])
            inputs = {k: v.to(self.device) for k, v in model_inputs(batch, self.loaded.adapter).items()}
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=self.tokenizer.pad_token_id)
            new = out[:, inputs["input_ids"].shape[1]:]
            replies += [text.strip() for text in self.tokenizer.batch_decode(new, skip_special_tokens=True)]
        return replies

    @torch.no_grad()
    def answer_logprobs(self, turns: list[Turn]) -> list[dict]:
        """Teacher-forced pass: per row the answer tokens' log-probs, argmax hits and fact mask."""
        model = self.loaded.model
        model.eval()
        rows = []
        for lo in range(0, len(turns), self.config.batch_size):
            batch = self.collator.train_batch(turns[lo:lo + self.config.batch_size])
            inputs = {k: v.to(self.device) for k, v in model_inputs(batch, self.loaded.adapter).items()}
            logits = model(**inputs).logits[:, :-1].float()
            labels = batch["labels"][:, 1:].to(self.device)
            facts = batch["fact_mask"][:, 1:].to(self.device)
            logp = torch.log_softmax(logits, dim=-1)
            for b in range(logits.shape[0]):
                mask = labels[b] != -100
                gold = labels[b][mask]
                rows.append({
                    "logprobs": logp[b][mask].gather(-1, gold[:, None])[:, 0].cpu(),
                    "hits": (logits[b][mask].argmax(-1) == gold).cpu(),
                    "fact": facts[b][mask].cpu(),
                })
        return rows

    # -- tasks -----------------------------------------------------------------------------
    def generation(self, set_name: str, items: list[Generation], out: dict) -> dict[str, str]:
        turns = [Turn(self.prompt(set_name, "generation", it, it.question), None, it.image, it.id) for it in items]
        replies = self.generate(turns, self.config.max_new_tokens)
        for it, reply in zip(items, replies):
            rouge = rouge_scores(it.answer, reply)
            for key in ("rouge1", "rouge2", "rougeL"):
                _put(out, set_name, key, it, rouge[key])
            _put(out, set_name, "bleu", it, sentence_bleu(it.answer, reply))
            if it.fact:
                _put(out, set_name, "fact_acc", it, float(contains_fact(reply, it.fact)))
            if self.vocabulary:
                _put(out, set_name, "fluency", it, fluency_score(reply, self.vocabulary))
        return {it.id: reply for it, reply in zip(items, replies)}

    def tokens(self, set_name: str, items: list[Generation], out: dict) -> None:
        turns = [Turn(self.prompt(set_name, "tokens", it, it.question), it.answer, it.image, it.id, it.fact)
                 for it in items]
        for it, row in zip(items, self.answer_logprobs(turns)):
            hits, fact = row["hits"], row["fact"]
            if fact.any():
                _put(out, set_name, "fact_token_acc", it, float(hits[fact].float().mean()))
            if (~fact).any():
                _put(out, set_name, "template_token_acc", it, float(hits[~fact].float().mean()))

    def multiple_choice(self, set_name: str, items: list[MultipleChoice], out: dict) -> None:
        forget = set_name in ("forget", "test")
        for it in items:
            letters = sorted(it.options)
            prompt = self.prompt(set_name, "mc", it, mc_prompt(it))
            rows = self.answer_logprobs([Turn(prompt, it.options[x], it.image, f"{it.id}/{x}") for x in letters])
            sums = {x: float(r["logprobs"].sum()) for x, r in zip(letters, rows)}
            counts = {x: len(r["logprobs"]) for x, r in zip(letters, rows)}
            choice = choose_by_likelihood(sums, counts)
            _put(out, set_name, "mc_acc_likelihood", it, float(choice == it.key))
            means = {x: sums[x] / counts[x] for x in letters}
            ratio = truth_ratio(means[it.key], [means[x] for x in letters if x != it.key])
            _put(out, set_name, "truth_ratio", it, truth_ratio_score(ratio, forget=forget))
            _put(out, set_name, "truth_ratio_raw", it, ratio)
        if self.config.mc_official:
            replies = self.generate([Turn(self.prompt(set_name, "mc", it, mc_prompt(it)), None, it.image, it.id)
                                     for it in items], 4)
            for it, reply in zip(items, replies):
                _put(out, set_name, "mc_acc", it, float(mc_correct_official(reply, it.key)))

    def cloze(self, set_name: str, items: list[Cloze], out: dict) -> None:
        replies = self.generate([Turn(self.prompt(set_name, "cloze", it, cloze_prompt(it)), None, it.image, it.id)
                                 for it in items], self.config.max_new_tokens)
        for it, reply in zip(items, replies):
            _put(out, set_name, "cloze_acc", it, float(cloze_correct_official(reply, it.answer)))
            _put(out, set_name, "cloze_em", it, float(cloze_exact_match(reply, it.answer)))

    # -- entry point -----------------------------------------------------------------------
    def run(self, benchmark: Benchmark) -> dict:
        """Return {"per_sample": {key: {item_id: value}}, "generations": {item_id: reply}, "set_metrics": {key: summary}}."""
        out: dict[str, dict[str, float]] = defaultdict(dict)
        generations: dict[str, str] = {}
        set_metrics: dict[str, dict] = {}
        order: dict[str, int] = {}  # item id -> position in a single-process run; _shard fills it
        cfg = self.config
        for set_name in cfg.sets:
            eval_set = benchmark.eval_sets.get(SetName(set_name))
            if eval_set is None or not len(eval_set):
                log.warning("set %r has no evaluation items in %s; skipped", set_name, benchmark.name)
                continue
            for task, pool in (("generation", eval_set.generation), ("tokens", eval_set.generation),
                               ("mc", eval_set.multiple_choice), ("cloze", eval_set.cloze)):
                self.example_pools[(set_name, task)] = pool
            gen = self._shard(_subsample(eval_set.generation, cfg.max_items, cfg.seed, f"{set_name}/gen"), order)
            if "generation" in cfg.tasks and gen:
                generations.update(self.generation(set_name, gen, out))
            if "tokens" in cfg.tasks and gen:
                self.tokens(set_name, gen, out)
            mc = self._shard(_subsample(eval_set.multiple_choice, cfg.max_items, cfg.seed, f"{set_name}/mc"), order)
            if "mc" in cfg.tasks and mc:
                self.multiple_choice(set_name, mc, out)
            cloze = self._shard(_subsample(eval_set.cloze, cfg.max_items, cfg.seed, f"{set_name}/cloze"), order)
            if "cloze" in cfg.tasks and cloze:
                self.cloze(set_name, cloze, out)
        if self.state.num_processes > 1:
            out, generations = _gather_per_item(out, generations, order)
        # NOTE: CLEAR and membership inference score whole sets (AUC, model utility), so every rank runs
        # them in full and they gain nothing from several processes.
        if "clear" in cfg.tasks:
            from viker.eval.clear_protocol import ClearConfig, run_clear

            # NOTE: CLEAR captions run to about 20 words, so max_new_tokens below about 40 cuts
            # the replies and lowers ROUGE-L recall.
            clear_config = ClearConfig(max_items=cfg.max_items, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
            clear = run_clear(self, benchmark, clear_config)
            out.update(clear["per_sample"])
            generations.update(clear["generations"])
            set_metrics.update(clear["set_metrics"])
        if "mia" in cfg.tasks:
            from viker.eval.membership import MembershipInference

            mia = MembershipInference(self).run(benchmark)
            out.update(mia["per_sample"])
            set_metrics.update(mia["set_metrics"])
        return {"per_sample": dict(out), "generations": generations, "set_metrics": set_metrics}

    def _shard(self, items: list, order: dict[str, int]) -> list:
        """Record the items' order, then return this rank's share: items rank, rank + world_size, …."""
        for item in items:
            order.setdefault(item.id, len(order))
        return items[self.state.process_index::self.state.num_processes]


def _gather_per_item(out: dict[str, dict[str, float]], generations: dict[str, str],
                     order: dict[str, int]) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """Gather every rank's per-item values onto every rank, in the order of a single-process run.

    Raises RuntimeError if two ranks returned a value for the same item and key, which
    would mean that the shards overlap.
    """
    merged: dict[str, dict[str, float]] = defaultdict(dict)
    merged_generations: dict[str, str] = {}
    for rank, (rank_out, rank_generations) in enumerate(gather_object([(dict(out), generations)])):
        for key, values in rank_out.items():
            for item_id, value in values.items():
                if item_id in merged[key]:
                    raise RuntimeError(f"item {item_id!r} has two values for {key!r}; rank {rank} repeated "
                                       "another rank's item, so the evaluation shards overlap")
                merged[key][item_id] = value
        merged_generations.update(rank_generations)
    by_position = {key: dict(sorted(values.items(), key=lambda kv: order.get(kv[0], len(order))))
                   for key, values in merged.items()}
    generations_by_position = dict(sorted(merged_generations.items(), key=lambda kv: order.get(kv[0], len(order))))
    return defaultdict(dict, by_position), generations_by_position


def summarize(per_sample: dict[str, dict[str, float]]) -> dict[str, dict]:
    """Reduce per-sample values to {key: {"mean", "stderr", "n", "direction", "arrow"}}.

    The direction comes from the metric registry for the key's set ("forget/fact_acc" is
    lower-is-better, "retain/fact_acc" higher-is-better); keys it does not know get None.
    """
    summary = {}
    for key, values in sorted(per_sample.items()):
        if values:
            s = aggregate(values)
            summary[key] = {"mean": s.mean, "stderr": s.stderr, "n": s.n, **_direction(key)}
    return summary


def _direction(key: str) -> dict:
    set_name, metric = key.split("/", 1)[0], key.rsplit("/", 1)[-1]
    try:
        direction = direction_for(metric, set_name)
    except (KeyError, ValueError):
        return {"direction": None, "arrow": None}
    return {"direction": direction, "arrow": arrow(direction)}


def evaluate(loaded: LoadedModel, benchmark: Benchmark, config: EvalConfig | None = None,
             vocabulary: frozenset[str] | None = None) -> dict:
    """Evaluate `loaded` on `benchmark`; returns per-sample values, their summary and the generations."""
    result = Evaluator(loaded, config or EvalConfig(), vocabulary).run(benchmark)
    result["summary"] = summarize(result["per_sample"])
    result["summary"].update(result["set_metrics"])  # already {"mean", "stderr": None, "n"}
    return result
