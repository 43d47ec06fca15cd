"""Synthetic look-alikes: seeded miniature datasets in the *exact on-disk format* of the real ones.

``write("luna16", root, n=3, seed=0)`` writes ``root/subset0/<uid>.mhd`` ... ``annotations.csv`` just like
the real LUNA16, so the real readers and checks run end to end without the real data. Images carry
learnable structure whose strength the ``difficulty`` knob sets (0 = obvious, 1 = subtle):

============  =========================================================================================
dataset       what is written (defaults: ``n`` items of side ``size``)
============  =========================================================================================
``nih``       chest radiographs (PNG) whose 14 findings change what is visible; patients with follow-ups
``chexpert``  the same radiographs as JPEG studies (frontal + some lateral) with uncertain (-1) labels
``luna16``    chest CT in HU (.mhd/.raw, anisotropic spacing) with nodules, annotations and candidates
``lits``      abdominal CT (.nii) with liver (label 1) and tumours (label 2)
``brats``     four MRI modalities (.nii.gz) with necrotic core (1), edema (2) and enhancing rim (4)
============  =========================================================================================

Next to the data, ``synthetic.json`` records the generator's parameters and the ground truth (labels,
nodule voxels, ...) — :func:`read_truth` returns it. Writing is atomic (a temporary sibling folder renamed
into place) and cached: calling again with the same parameters returns at once.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from .ct import write_lits, write_luna16
from .mri import write_brats
from .radiographs import write_chexpert, write_nih

DATASETS = ("nih", "chexpert", "luna16", "lits", "brats")
TRUTH_FILE = "synthetic.json"
VERSION = 1
_WRITERS = {"nih": write_nih, "chexpert": write_chexpert, "luna16": write_luna16, "lits": write_lits,
            "brats": write_brats}
# Defaults sized for the smoke profile: a couple of seconds each.
DEFAULTS = {"nih": {"n": 32, "size": 64}, "chexpert": {"n": 32, "size": 64}, "luna16": {"n": 3, "size": 64},
            "lits": {"n": 3, "size": 64}, "brats": {"n": 3, "size": 64}}
MIN_SIZE = {"nih": 32, "chexpert": 32, "luna16": 32, "lits": 32, "brats": 24}


def write(dataset: str, root: str | Path, n: int | None = None, seed: int = 0, size: int | None = None,
          difficulty: float = 0.3, overwrite: bool = False) -> Path:
    """Write the look-alike of ``dataset`` into ``root`` and return ``root``.

    ``n``: images (nih), training studies (chexpert), scans (luna16), cases (lits, brats); ``size``: image
    side (2D) or in-plane voxels (3D); ``difficulty`` in [0, 1]. An existing ``root`` is reused when its
    ``synthetic.json`` shows the same parameters; a different synthetic dataset there is replaced only with
    ``overwrite=True``; a non-empty folder that is not a synthetic look-alike is never touched (ValueError).
    """
    if dataset not in _WRITERS:
        raise ValueError(f"unknown dataset {dataset!r}; valid datasets: {', '.join(DATASETS)}")
    n = DEFAULTS[dataset]["n"] if n is None else n
    size = DEFAULTS[dataset]["size"] if size is None else size
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if not isinstance(size, int) or size < MIN_SIZE[dataset]:
        raise ValueError(f"size must be an int >= {MIN_SIZE[dataset]} for {dataset}, got {size!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if not 0.0 <= float(difficulty) <= 1.0:
        raise ValueError(f"difficulty must be in [0, 1], got {difficulty!r}")
    params = {"dataset": dataset, "n": n, "seed": seed, "size": size, "difficulty": float(difficulty),
              "version": VERSION}

    root = Path(root).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root}: is a file; expected a folder to write the synthetic {dataset} dataset into")
    if root.exists() and any(root.iterdir()):
        marker = root / TRUTH_FILE
        if not marker.is_file():
            raise ValueError(f"{root}: folder is not empty and holds no {TRUTH_FILE}; refusing to write a synthetic "
                             "dataset over what may be real data — choose an empty or new folder")
        if json.loads(marker.read_text()).get("params") == params:
            return root
        if not overwrite:
            raise ValueError(f"{root}: holds a synthetic dataset with other parameters; pass overwrite=True "
                             "(CLI: --overwrite) to replace it")
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        truth = _WRITERS[dataset](staging, n=n, seed=seed, size=size, difficulty=float(difficulty))
        (staging / TRUTH_FILE).write_text(json.dumps({
            "params": params, "note": "synthetic look-alike written by pcrl_lib.data.synthetic; not real data",
            "truth": truth}, indent=1))
        staging.chmod(0o755)  # mkdtemp makes it private; the dataset should read like any other folder
        if root.exists():
            shutil.rmtree(root)
        os.replace(staging, root)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return root


def read_truth(root: str | Path) -> dict:
    """The ``synthetic.json`` of a look-alike: ``{"params": ..., "truth": ...}``."""
    path = Path(root) / TRUTH_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found — {root} is not a synthetic look-alike")
    return json.loads(path.read_text())


__all__ = ["DATASETS", "DEFAULTS", "read_truth", "write"]
