"""ViKeR's ideal distributions q, computed once before unlearning and streamed from disk.

For each forget sample (I, x, y) and each answer position i,

    q_i(v) = (1/k) Σ_j p_orig(v | Ĩ_j, x, y_<i)

where Ĩ_1..Ĩ_k are reference images of someone or something else, drawn per
sample from a pool, and p_orig is the frozen model before unlearning. The
average is over probabilities, not logits. q is stored compactly as the top-m
token ids and probabilities plus the remaining mass, together with the exact
entropy H(q_i) (which marks key tokens), q_i(y_i), and p_orig(y_i | I), the
probability that the model gives the gold token with the true image.

The file is a safetensors file (it cannot run code when loaded) whose metadata
records what it was computed from; loading it for another model, data, pool,
k or m raises an error instead of silently mixing targets.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import PartialState
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from viker.data.records import Sample
from viker.methods.losses.viker import compact_distribution
from viker.models.collate import Collator, Turn, model_inputs
from viker.models.loading import LoadedModel
from viker.utils import stable_hash

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


def model_fingerprint(path: str | Path) -> str:
    """Hash a model folder's config and the size and edges of each weight file (cheap for 7B models)."""
    path = Path(path)
    h = hashlib.sha256((path / "config.json").read_bytes())
    for weights in sorted(path.glob("*.safetensors")):
        size = weights.stat().st_size
        h.update(f"{weights.name}:{size}".encode())
        with open(weights, "rb") as f:
            h.update(f.read(1 << 20))
            f.seek(max(0, size - (1 << 20)))
            h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


def samples_fingerprint(samples: list[Sample]) -> str:
    h = hashlib.sha256()
    for s in samples:
        h.update(f"{s.id}\x00{s.question}\x00{s.answer}\x00".encode())
        h.update(hashlib.sha256(s.image or b"").digest())
    return h.hexdigest()[:16]


def pool_fingerprint(pool: list[bytes]) -> str:
    h = hashlib.sha256()
    for image in pool:
        h.update(hashlib.sha256(image).digest())
    return h.hexdigest()[:16]


def draw_references(pool: list[bytes] | None, k: int, sample: Sample, seed: int) -> list[bytes]:
    """Draw k distinct reference images for one sample, deterministically from (seed, sample id).

    With `pool=None` the sample's own image is used k times: the "true image" ablation,
    where q carries no visual guidance and ViKeR should forget nothing.
    """
    if pool is None:
        return [sample.image] * k
    rng = random.Random(f"{seed}:{sample.id}")
    return [pool[i] for i in rng.sample(range(len(pool)), k)]


@dataclass
class TargetSpec:
    """The inputs the targets are computed from; its hash names the cache file."""

    model: str
    data: str
    pool: str
    k: int
    m: int
    seed: int

    def key(self) -> str:
        return stable_hash({"format": FORMAT_VERSION, **self.__dict__})


class TargetCache:
    """Read-only access to a computed q file, one sample at a time."""

    def __init__(self, path: str | Path, expected: TargetSpec | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ViKeR target cache {self.path} not found; compute it with compute_targets")
        try:
            self._file = safe_open(str(self.path), framework="pt")
        except (SafetensorError, OSError) as err:
            raise ValueError(f"ViKeR target cache {self.path} could not be read ({err}); delete it so that "
                             "viker computes the targets again") from err
        meta = self._file.metadata() or {}
        self.spec = TargetSpec(**json.loads(meta.get("spec", "{}")))
        self.ids = json.loads(meta.get("ids", "[]"))
        self.vocab_size = int(meta.get("vocab_size", 0))
        if expected is not None and self.spec != expected:
            raise ValueError(
                f"ViKeR target cache {self.path} was computed for {self.spec}, not for {expected}: "
                "it belongs to another model, dataset, reference pool, k or m. Delete it or point "
                "--cache-dir elsewhere so viker recomputes it."
            )

    def __contains__(self, sample_id: str) -> bool:
        return sample_id in self._index

    @property
    def _index(self) -> dict[str, int]:
        if not hasattr(self, "_index_cache"):
            self._index_cache = {sid: i for i, sid in enumerate(self.ids)}
        return self._index_cache

    def get(self, sample_id: str) -> dict[str, torch.Tensor]:
        """Return ids (n, m), probs (n, m), rest (n,), entropy (n,), q_gold (n,), p_true (n,) of one sample."""
        if sample_id not in self._index:
            raise KeyError(f"sample {sample_id!r} has no ViKeR target in {self.path}")
        i = self._index[sample_id]
        return {name: self._file.get_tensor(f"{i}.{name}")
                for name in ("ids", "probs", "rest", "entropy", "q_gold", "p_true")}


@torch.no_grad()
def _answer_distributions(loaded: LoadedModel, collator: Collator, turns: list[Turn]):
    """Return per row: (probs at answer positions (n, V), gold ids (n,))."""
    batch = collator.train_batch(turns)
    device = loaded.model.device
    inputs = {k: v.to(device) for k, v in model_inputs(batch, loaded.adapter).items()}
    logits = loaded.model(**inputs).logits[:, :-1].float()
    labels = batch["labels"][:, 1:].to(device)
    rows = []
    for b in range(len(turns)):
        mask = labels[b] != -100
        rows.append((torch.softmax(logits[b][mask], dim=-1), labels[b][mask]))
    return rows


def compute_targets(loaded: LoadedModel, samples: list[Sample], pool: list[bytes] | None, *, k: int = 5,
                    m: int = 32, seed: int = 0, cache_dir: str | Path, rows_per_batch: int = 32) -> TargetCache:
    """Compute (or reuse) the ideal distributions of `samples` with the frozen model and return the cache.

    Under several processes (torchrun, `accelerate launch`) the main process computes and
    writes the file while the other ranks wait, and then every rank reads it, so the
    targets are computed once. `cache_dir` must be on a filesystem that every rank can read.

    Raises:
        ValueError: when the pool has fewer than k images.
        FileNotFoundError: on a rank other than the main one, when the main process's file
            is not visible in `cache_dir`.
    """
    state = PartialState(cpu=not torch.cuda.is_available())
    with state.main_process_first():
        return _compute_or_load_targets(loaded, samples, pool, k=k, m=m, seed=seed, cache_dir=cache_dir,
                                        rows_per_batch=rows_per_batch, may_compute=state.is_main_process)


def _compute_or_load_targets(loaded: LoadedModel, samples: list[Sample], pool: list[bytes] | None, *, k: int,
                             m: int, seed: int, cache_dir: str | Path, rows_per_batch: int,
                             may_compute: bool) -> TargetCache:
    if k < 1:
        raise ValueError(f"k must be >= 1 reference image, got {k}")
    if m < 1:
        raise ValueError(f"m must be >= 1 stored token per position, got {m}")
    if pool is not None and len(pool) < k:
        raise ValueError(
            f"the reference pool has {len(pool)} images but k = {k} are drawn per sample; "
            "add images to the pool (at least 20 are recommended) or lower k"
        )
    spec = TargetSpec(model=model_fingerprint(loaded.path), data=samples_fingerprint(samples),
                      pool=pool_fingerprint(pool) if pool is not None else "true_image", k=k, m=m, seed=seed)
    path = Path(cache_dir) / f"viker-q-{spec.key()}.safetensors"
    if path.is_file():
        log.info("reusing ViKeR targets from %s", path)
        return TargetCache(path, expected=spec)
    if not may_compute:
        raise FileNotFoundError(
            f"ViKeR target cache {path} not found after the main process computed it; put --cache-dir "
            "(VIKER_CACHE) on a filesystem that every rank and node can read"
        )

    start = time.perf_counter()
    loaded.model.eval()
    collator = Collator(loaded.processor, loaded.adapter)
    tensors: dict[str, torch.Tensor] = {}
    per_batch = max(1, rows_per_batch // (k + 1))
    for lo in range(0, len(samples), per_batch):
        chunk = samples[lo:lo + per_batch]
        turns = []
        for s in chunk:
            refs = draw_references(pool, k, s, seed)
            turns += [Turn(s.question, s.answer, ref, f"{s.id} (reference {j})") for j, ref in enumerate(refs)]
            turns.append(Turn(s.question, s.answer, s.image, s.id))
        rows = _answer_distributions(loaded, collator, turns)
        for n, s in enumerate(chunk):
            group = rows[n * (k + 1):(n + 1) * (k + 1)]
            lengths = {len(gold) for _, gold in group}
            if len(lengths) != 1:
                raise ValueError(f"{s.id}: the answer has a different number of tokens with different "
                                 "images; the processor must tokenise the answer independently of the image")
            q = torch.stack([probs for probs, _ in group[:k]]).mean(dim=0)  # average of probabilities
            true_probs, gold = group[k]
            ids, top, rest = compact_distribution(q, m)
            entropy = -(q * q.clamp_min(1e-30).log()).sum(-1)
            i = lo + n
            tensors[f"{i}.ids"] = ids.to(torch.int64).cpu().contiguous()
            tensors[f"{i}.probs"] = top.float().cpu().contiguous()
            tensors[f"{i}.rest"] = rest.float().cpu().contiguous()
            tensors[f"{i}.entropy"] = entropy.float().cpu().contiguous()
            tensors[f"{i}.q_gold"] = q.gather(-1, gold[:, None])[:, 0].float().cpu().contiguous()
            tensors[f"{i}.p_true"] = true_probs.gather(-1, gold[:, None])[:, 0].float().cpu().contiguous()
    vocab_size = loaded.model.config.get_text_config().vocab_size
    metadata = {"spec": json.dumps(spec.__dict__), "ids": json.dumps([s.id for s in samples]),
                "vocab_size": str(vocab_size), "format": str(FORMAT_VERSION)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)
    log.info("computed ViKeR targets for %d samples x %d references in %.1f s (%s)",
             len(samples), k, time.perf_counter() - start, path)
    return TargetCache(path, expected=spec)
