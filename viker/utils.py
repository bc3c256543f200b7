"""Small shared helpers: atomic writes, stable hashes, seeding and run metadata."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch


@contextlib.contextmanager
def atomic_dir(target: str | Path):
    """Yield a temporary sibling folder that is renamed to `target` on success.

    An interrupted run leaves only a `.tmp-*` folder, never a `target` that looks complete.
    Raises FileExistsError if `target` already exists.
    """
    target = Path(target)
    if target.exists():
        raise FileExistsError(f"{target} already exists; remove it or choose another output folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` to a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def stable_hash(obj, length: int = 16) -> str:
    """Return a short SHA-256 of a JSON-serialisable object (keys sorted)."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def git_commit(cwd: str | Path | None = None) -> str:
    """Return the current git commit of viker's checkout, or "unknown" outside one."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=10)
        commit = out.stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_metadata() -> dict:
    """Return versions and hardware for a report header."""
    import transformers

    import viker

    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "transformers": transformers.__version__, "viker": viker.__version__}
    for name in ("peft", "accelerate"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            pass
    if torch.cuda.is_available():
        hardware = f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    else:
        hardware = f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, " \
                   f"{torch.get_num_threads()} torch threads"
    return {"commit": git_commit(), "versions": versions, "hardware": hardware}


def default_cache_dir() -> Path:
    """Return the cache folder: $VIKER_CACHE, or ~/.cache/viker."""
    return Path(os.environ.get("VIKER_CACHE", Path.home() / ".cache" / "viker"))
