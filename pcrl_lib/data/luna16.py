"""LUNA16 (grand-challenge): chest CT scans, nodule annotations, nodule candidates, world ↔ voxel.

On-disk layout::

    ROOT/subset0/<seriesuid>.mhd + <seriesuid>.raw   ... ROOT/subset9/   (888 scans, HU, int16)
    ROOT/annotations.csv      seriesuid,coordX,coordY,coordZ,diameter_mm   (1,186 nodules ≥ 3 mm)
    ROOT/candidates.csv       seriesuid,coordX,coordY,coordZ,class         (class 1 = nodule)
    ROOT/candidates_V2.csv    same columns, the challenge's updated list

Coordinates are world positions in mm in the scan's ITK (LPS) frame: ``world = origin + direction @
(spacing * ijk)`` with ``ijk`` in (x, y, z) voxel order, the kit's array order.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..fileio import read_csv_table
from .volume import Volume, read_volume

SUBSETS = tuple(f"subset{i}" for i in range(10))
ANNOTATION_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "diameter_mm")
CANDIDATE_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "class")
CANDIDATE_FILES = ("candidates_V2.csv", "candidates.csv")
COORDS = ["coordX", "coordY", "coordZ"]
_SUBSET = re.compile(r"^subset(\d)$")


def list_scans(root: str | Path, subsets: tuple[int, ...] | range | None = None) -> list[Path]:
    """``.mhd`` files under ``root/subsetN/`` (all ten subsets, or only those numbered in ``subsets``).

    The paper pretrains on subsets 0–6: ``list_scans(root, range(7))``. Sorted by subset, then name.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: LUNA16 root folder not found")
    wanted = None if subsets is None else {int(s) for s in subsets}
    if wanted is not None and not wanted <= set(range(10)):
        raise ValueError(f"subsets must be numbers 0..9, got {sorted(wanted)}")
    folders = sorted((int(m.group(1)), p) for p in root.iterdir()
                     if p.is_dir() and (m := _SUBSET.match(p.name)))
    if not folders:
        raise FileNotFoundError(f"{root}: no subset0..subset9 folders; unpack the LUNA16 subset archives here")
    return [scan for number, folder in folders if wanted is None or number in wanted
            for scan in sorted(folder.glob("*.mhd"))]


def scan_index(root: str | Path) -> dict[str, Path]:
    """``seriesuid → .mhd path`` for every scan under ``root``."""
    return {p.stem: p for p in list_scans(root)}


def read_scan(path: str | Path) -> Volume:
    """Read one ``.mhd``/``.raw`` scan as a float32 HU :class:`Volume` (spacing, origin, direction kept); a
    missing ``.raw`` is a FileNotFoundError, a short one a ``CorruptVolumeError`` ("truncated .raw")."""
    path = Path(path)
    if path.suffix.lower() != ".mhd":
        raise ValueError(f"{path}: expected a MetaImage header (.mhd) next to its .raw")
    return read_volume(path)


def _read_table(path: str | Path, columns: tuple[str, ...], what: str) -> pd.DataFrame:
    path = Path(path)
    table = read_csv_table(path, f"LUNA16 {what}", columns, dtype={"seriesuid": str})
    numeric = [c for c in columns if c != "seriesuid"]
    converted = table[numeric].apply(pd.to_numeric, errors="coerce")
    bad = converted.isna().to_numpy()
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(f"{path}: row {row + 1}, column {numeric[col]!r} has value "
                         f"{str(table[numeric].iloc[row, col])!r}; expected a number")
    table[numeric] = converted
    return table[list(columns)].reset_index(drop=True)


def read_annotations(path: str | Path) -> pd.DataFrame:
    """``annotations.csv`` → DataFrame seriesuid, coordX, coordY, coordZ (mm, world), diameter_mm."""
    table = _read_table(path, ANNOTATION_COLUMNS, "annotations")
    if (table["diameter_mm"] <= 0).any():
        row = int(np.flatnonzero(table["diameter_mm"].to_numpy() <= 0)[0])
        raise ValueError(f"{path}: row {row + 1} has diameter_mm {table['diameter_mm'].iloc[row]}; must be > 0")
    return table


def read_candidates(path: str | Path) -> pd.DataFrame:
    """``candidates.csv`` / ``candidates_V2.csv`` → DataFrame seriesuid, coordX, coordY, coordZ, class (0/1 int)."""
    table = _read_table(path, CANDIDATE_COLUMNS, "candidates")
    labels = table["class"].to_numpy()
    if not np.isin(labels, (0, 1)).all():
        row = int(np.flatnonzero(~np.isin(labels, (0, 1)))[0])
        raise ValueError(f"{path}: row {row + 1} has class {labels[row].item()!r}; must be 0 or 1")
    table["class"] = table["class"].astype(np.int64)
    return table


def find_candidates(root: str | Path) -> Path:
    """``candidates_V2.csv`` when present (the challenge's corrected list), else ``candidates.csv``."""
    root = Path(root)
    for name in CANDIDATE_FILES:
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"{root}: neither {CANDIDATE_FILES[0]} nor {CANDIDATE_FILES[1]} found")


def world_to_voxel(volume: Volume, xyz: np.ndarray | pd.DataFrame) -> np.ndarray:
    """World mm ``(N, 3)`` (or a DataFrame with coordX/Y/Z) → continuous voxel indices ``(N, 3)`` (x, y, z)."""
    if isinstance(xyz, pd.DataFrame):
        xyz = xyz[COORDS].to_numpy(dtype=np.float64)
    return volume.world_to_voxel(xyz)


def voxel_to_world(volume: Volume, ijk: np.ndarray) -> np.ndarray:
    """Voxel indices ``(N, 3)`` (x, y, z) → world mm ``(N, 3)``."""
    return volume.voxel_to_world(ijk)


def nearest_voxel(volume: Volume, xyz: np.ndarray | pd.DataFrame) -> np.ndarray:
    """World mm → nearest integer voxel ``(N, 3)`` int64; ValueError if a point lies outside the scan."""
    ijk = np.rint(world_to_voxel(volume, xyz)).astype(np.int64)
    outside = ((ijk < 0) | (ijk >= np.asarray(volume.shape))).any(axis=1)
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        raise ValueError(f"{volume.path or 'volume'}: point {first} maps to voxel {ijk[first].tolist()} outside "
                         f"the scan of shape {volume.shape}; is it from another seriesuid?")
    return ijk
