"""Run membership inference on a model: forget-set people against people the model never saw.

Members are the forget people's training samples and non-members are the
holdout people's samples (`Benchmark.holdout_ids`), both asked with the
person's own portrait. Each sample is scored teacher-forced on its answer
tokens only (the labels of `Collator.train_batch`, so the end-of-turn token
counts too) with the four attacks of `viker.eval.mia`: LOSS, zlib, Min-K% and
Min-K%++. The AUC per attack says how well it separates the two groups: 0.5
after perfect unlearning, near 1 for a model that still remembers the forget
people.

Per-sample keys: "mia/{forget|holdout}/{score}" keyed by sample id ("{person}/{qa index}").
Set-level keys: "mia/{score}/mia_auc".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from viker.data.records import Benchmark, Sample
from viker.eval.mia import auc, loss_score, mink_pp_score, mink_pp_stats, mink_score, zlib_score
from viker.models.collate import Turn, model_inputs

MIA_SCORES = ("loss", "zlib", "mink", "mink_pp")


@dataclass(frozen=True)
class TokenStatistics:
    """One sample's answer tokens: log p(x_t | x_<t) and the mean and std of log p under the model, each shape (T,)."""

    logprobs: torch.Tensor
    mu: torch.Tensor
    sigma: torch.Tensor


class MembershipInference:
    """Scores samples with every attack in `MIA_SCORES` and reports each attack's AUC.

    `evaluator` is a `viker.eval.runner.Evaluator`; its model, collator and
    batch size are used. `k` is the share of lowest tokens kept by Min-K% and
    Min-K%++ (0.2, as in both papers).
    """

    def __init__(self, evaluator, k: float = 0.2):
        if not 0 < k <= 1:
            raise ValueError(f"k must be a fraction in (0, 1], got {k!r}; for example 0.2 for the lowest 20 %.")
        self.evaluator, self.k = evaluator, k

    @torch.no_grad()
    def token_statistics(self, samples: list[Sample]) -> list[TokenStatistics]:
        """Run teacher-forced passes in batches and keep, per sample, the statistics of its answer tokens."""
        ev = self.evaluator
        model = ev.loaded.model
        model.eval()
        stats = []
        for lo in range(0, len(samples), ev.config.batch_size):
            chunk = samples[lo:lo + ev.config.batch_size]
            batch = ev.collator.train_batch([Turn(s.question, s.answer, s.image, s.id) for s in chunk])
            inputs = {k: v.to(ev.device) for k, v in model_inputs(batch, ev.loaded.adapter).items()}
            logits = model(**inputs).logits[:, :-1].float()  # (B, T-1, V): row t predicts token t+1
            labels = batch["labels"][:, 1:].to(ev.device)  # (B, T-1)
            for b in range(logits.shape[0]):
                mask = labels[b] != -100
                rows = logits[b][mask]  # (answer tokens, V)
                gold = labels[b][mask]
                logprobs = torch.log_softmax(rows, dim=-1).gather(-1, gold[:, None])[:, 0]
                mu, sigma = mink_pp_stats(rows)
                stats.append(TokenStatistics(logprobs.cpu(), mu.cpu(), sigma.cpu()))
        return stats

    def scores(self, samples: list[Sample]) -> dict[str, dict[str, float]]:
        """Return {score name: {sample id: score}} for every attack; higher means more likely a member."""
        out: dict[str, dict[str, float]] = {name: {} for name in MIA_SCORES}
        for sample, st in zip(samples, self.token_statistics(samples)):
            out["loss"][sample.id] = loss_score(st.logprobs)
            out["zlib"][sample.id] = zlib_score(st.logprobs, sample.answer)
            out["mink"][sample.id] = mink_score(st.logprobs, self.k)
            out["mink_pp"][sample.id] = mink_pp_score(st.logprobs, st.mu, st.sigma, self.k)
        return out

    def run(self, benchmark: Benchmark) -> dict:
        """Score forget and holdout samples; return {"per_sample", "set_metrics"} with an AUC per attack.

        Raises:
            ValueError: the benchmark has no forget people or no holdout people.
        """
        members = benchmark.forget_samples()
        nonmembers = benchmark.samples(benchmark.holdout_ids)
        if not members:
            raise ValueError(f"{benchmark.name}: the forget split is empty, so there are no members to score.")
        if not nonmembers:
            raise ValueError(
                f"{benchmark.name}: no holdout people, so membership inference has no non-members. Build the "
                "benchmark with holdout people (`viker data build --holdout 5`, or build_embedded(n_holdout=5)) "
                "or add a Holdout_Set folder of people outside every training split."
            )

        member_scores = self.scores(members)
        nonmember_scores = self.scores(nonmembers)
        per_sample, set_metrics = {}, {}
        for name in MIA_SCORES:
            per_sample[f"mia/forget/{name}"] = member_scores[name]
            per_sample[f"mia/holdout/{name}"] = nonmember_scores[name]
            value = auc(list(member_scores[name].values()), list(nonmember_scores[name].values()))
            set_metrics[f"mia/{name}/mia_auc"] = {"mean": value, "stderr": None, "n": len(members) + len(nonmembers)}
        return {"per_sample": per_sample, "set_metrics": set_metrics}
