"""Benchmark loading: MLLMU-Bench, CLEAR, a user's own profiles, and the embedded fictitious benchmark."""

from __future__ import annotations

import os
from pathlib import Path

from viker.data.errors import DataError
from viker.data.records import Benchmark

EMBEDDED_NAME = "embedded"
# Fictitious people in no training split, so that membership inference has non-members.
EMBEDDED_HOLDOUT = 5


def embedded_cache_dir(seed: int) -> Path:
    """Return the folder where `load_benchmark("embedded")` writes the benchmark: `$VIKER_CACHE` or `~/.cache/viker`."""
    base = Path(os.environ.get("VIKER_CACHE", Path.home() / ".cache" / "viker"))
    return base / f"embedded-seed{seed}"


def load_benchmark(
    path_or_name: str | Path,
    *,
    forget_split: str = "forget_10",
    seed: int = 0,
    images: str | Path | None = None,
) -> Benchmark:
    """Load a benchmark, choosing the loader from what is on disk.

    Args:
        path_or_name: "embedded" (generated with `seed` into `embedded_cache_dir`
            on first use), an MLLMU-Bench folder (`Full_Set` or `ft_Data`
            inside), a CLEAR folder (`full` inside), or a `.json`/`.jsonl`
            profile file.
        forget_split: MLLMU-Bench name (`forget_5`, `forget_10`, `forget_15`);
            for CLEAR, `forget_10` maps to `forget10`, and so on. For a profile
            file, `forget_N` forgets N % of the people.
        seed: seed of generated data and derived items.
        images: portraits folder for a profile file.

    Raises:
        DataError: if the path matches no known layout, or the chosen loader rejects the data.
    """
    from viker.data.clear import load_clear
    from viker.data.embedded import build_embedded
    from viker.data.mllmu import load_mllmu
    from viker.data.profiles import load_profiles

    if str(path_or_name) == EMBEDDED_NAME:
        folder = embedded_cache_dir(seed)
        marker = folder / "COMPLETE"
        # The marker names the build settings, so a folder from an older default is built again.
        stamp = f"written by viker.data.embedded.build_embedded, n_holdout={EMBEDDED_HOLDOUT}\n"
        if not marker.is_file() or marker.read_text() != stamp:
            marker.unlink(missing_ok=True)
            build_embedded(folder, seed=seed, n_holdout=EMBEDDED_HOLDOUT)
            marker.write_text(stamp)
        return load_mllmu(folder, forget_split=forget_split, seed=seed)

    path = Path(path_or_name)
    if not path.exists():
        raise DataError(f"{path} not found. Pass 'embedded', or the path of an MLLMU-Bench or CLEAR folder or of a "
                        ".json/.jsonl profile file.")
    percent = forget_split.removeprefix("forget_").removeprefix("forget")
    if not percent.isdigit():
        raise DataError(f"forget_split={forget_split!r} is invalid. Use forget_5, forget_10 or forget_15.")
    if path.is_file() and path.suffix.lower() in (".json", ".jsonl"):
        if images is None:
            raise DataError(f"{path}: a profile file needs the folder of its portraits (`images`, --images).")
        return load_profiles(path, images, forget_fraction=int(percent) / 100, seed=seed)
    if path.is_dir() and ((path / "Full_Set").is_dir() or (path / "ft_Data").is_dir()):
        return load_mllmu(path, forget_split=f"forget_{int(percent)}", seed=seed)
    if path.is_dir() and (path / "full").is_dir():
        return load_clear(path, forget_split=f"forget{int(percent):02d}")
    raise DataError(
        f"{path}: no known benchmark layout was found. Pass 'embedded', an MLLMU-Bench folder (with Full_Set or "
        "ft_Data), a CLEAR folder (with full), or a .json/.jsonl profile file with `images`."
    )


__all__ = ["Benchmark", "DataError", "load_benchmark", "embedded_cache_dir"]
