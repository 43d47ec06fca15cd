"""Prepare the embedded data of a profile: the real demo data (fetched from the package registry) and the
synthetic look-alikes of the five datasets (written in their exact on-disk formats).

Both are cached under ``pcrl_lib.paths.cache_dir()``; a second call finds them and returns at once.
"""

from __future__ import annotations

from pathlib import Path

from ..config import get_profile
from ..paths import cache_dir

SYNTHETIC_DATASETS = ("nih", "chexpert", "luna16", "lits", "brats")


def synthetic_root(profile: str, dataset: str) -> Path:
    """Where the synthetic look-alike of ``dataset`` for ``profile`` lives: ``<cache>/synthetic/<profile>/<dataset>``."""
    return cache_dir() / "synthetic" / profile / dataset


def ensure_synthetic(profile: str, dataset: str, log=print) -> Path:
    """Write the synthetic look-alike of ``dataset`` sized by ``profile`` (``synthetic.write`` caches by parameters:
    a second call returns at once, a profile whose sizes changed rewrites it)."""
    from . import synthetic

    cfg = get_profile(profile).data
    root = synthetic_root(profile, dataset)
    counts = {"nih": cfg.synthetic_2d, "chexpert": cfg.synthetic_2d, "luna16": cfg.synthetic_3d}
    n = counts.get(dataset, cfg.synthetic_seg)                                   # lits, brats
    size = cfg.source_size_2d * 2 if dataset in ("nih", "chexpert") else cfg.synthetic_3d_size
    log(f"  synthetic {dataset}: {n} items at {size} px/voxels in {root}")
    return synthetic.write(dataset, root, n=n, seed=0, size=size, overwrite=True)


def prepare_embedded(profile: str, log=print) -> dict[str, Path]:
    """Fetch the demo data and write every synthetic look-alike for ``profile``; returns their folders."""
    from . import demo

    folders = {"demo": Path(demo.fetch().root)}
    for dataset in SYNTHETIC_DATASETS:
        folders[dataset] = ensure_synthetic(profile, dataset, log=log)
    return folders
