"""Key-token views: which answer tokens ViKeR pushes, and how hard.

For each answer token y_i of a forget sample this reports
    H(q_i)      entropy of the ideal distribution (nats); high marks a key token
    p_orig(y_i) probability the model before unlearning gives the gold token with the true image
    q_i(y_i)    probability the ideal distribution gives it
    weight      ‖(e_y − p) + λ(p − q)‖ / ‖e_y − p‖, the norm of ViKeR's logit gradient over GA's
                at the start of unlearning (p = p_orig, q expanded from its top-m storage with the
                remaining mass spread evenly over the other tokens)
"""

from __future__ import annotations

from pathlib import Path

import torch

from viker.data.records import Sample
from viker.methods.losses import gradient_weight_relative_to_ga
from viker.methods.targets import TargetCache
from viker.models.collate import Collator, Turn, model_inputs
from viker.models.loading import LoadedModel


@torch.no_grad()
def answer_token_probs(loaded: LoadedModel, samples: list[Sample]) -> dict[str, dict]:
    """Return per sample the answer token texts, gold ids and full next-token distributions (n, V)."""
    collator = Collator(loaded.processor, loaded.adapter)
    batch = collator.train_batch([Turn(s.question, s.answer, s.image, s.id, s.fact) for s in samples])
    inputs = {k: v.to(loaded.model.device) for k, v in model_inputs(batch, loaded.adapter).items()}
    loaded.model.eval()
    probs = torch.softmax(loaded.model(**inputs).logits[:, :-1].float(), dim=-1).cpu()
    labels = batch["labels"][:, 1:]
    out = {}
    for row, s in enumerate(samples):
        mask = labels[row] != -100
        gold = labels[row][mask]
        out[s.id] = {"tokens": [loaded.tokenizer.decode([int(t)]) for t in gold], "gold": gold,
                     "probs": probs[row][mask], "fact": batch["fact_mask"][row, 1:][mask]}
    return out


def gold_probabilities(loaded: LoadedModel, samples: list[Sample]) -> dict[str, list[float]]:
    """Return, per sample, the probability of each gold answer token (teacher-forced)."""
    rows = answer_token_probs(loaded, samples)
    return {sid: r["probs"].gather(-1, r["gold"][:, None])[:, 0].tolist() for sid, r in rows.items()}


def expand_compact(ids: torch.Tensor, probs: torch.Tensor, rest: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Expand top-m storage (n, m) into full distributions (n, V), spreading the rest mass evenly."""
    n, m = ids.shape
    others = max(vocab_size - m, 1)
    full = (rest / others)[:, None].expand(n, vocab_size).clone()
    full.scatter_(1, ids, probs)
    return full


def keytoken_table(loaded: LoadedModel, cache: TargetCache, samples: list[Sample], lam: float) -> list[dict]:
    """Return one row per sample: question, answer tokens with H(q), p_orig, q(y) and the ViKeR/GA weight."""
    current = answer_token_probs(loaded, samples)
    table = []
    for s in samples:
        stored, now = cache.get(s.id), current[s.id]
        vocab = now["probs"].shape[-1]
        q = expand_compact(stored["ids"], stored["probs"], stored["rest"], vocab)
        tokens = []
        for i, text in enumerate(now["tokens"]):
            y = int(now["gold"][i])
            weight = gradient_weight_relative_to_ga(now["probs"][i], q[i], y, lam)
            tokens.append({"text": text, "entropy": float(stored["entropy"][i]),
                           "p_vanilla": float(stored["p_true"][i]), "q_gold": float(stored["q_gold"][i]),
                           "weight": float(weight), "fact": bool(now["fact"][i])})
        table.append({"sample_id": s.id, "question": s.question, "answer": s.answer, "tokens": tokens})
    return table


def format_table(rows: list[dict]) -> str:
    lines = []
    for row in rows:
        lines.append(f"\n{row['sample_id']}  Q: {row['question']}\n   A: {row['answer']}")
        lines.append(f"   {'token':>16s} {'H(q)':>7s} {'p_orig(y)':>10s} {'q(y)':>7s} {'weight':>7s}  fact")
        for t in row["tokens"]:
            lines.append(f"   {t['text']!r:>16s} {t['entropy']:7.3f} {t['p_vanilla']:10.3f} {t['q_gold']:7.3f} "
                         f"{t['weight']:7.2f}  {'*' if t['fact'] else ''}")
    return "\n".join(lines)


def print_keytokens(args, benchmark) -> int:
    """`viker keytokens`: compute (or reuse) q for the forget split and print the first samples."""
    from viker.methods.losses import check_viker_lambda
    from viker.methods.run import reference_pool
    from viker.methods.targets import compute_targets
    from viker.models.loading import load_model
    from viker.utils import default_cache_dir

    check_viker_lambda(args.lam)
    loaded = load_model(args.model)
    forget = benchmark.forget_samples()
    cache = compute_targets(loaded, forget, reference_pool(benchmark, args.pool), k=args.k, seed=args.seed,
                            cache_dir=Path(args.cache_dir or default_cache_dir()) / "targets")
    print(format_table(keytoken_table(loaded, cache, forget[:args.samples], args.lam)))
    return 0
