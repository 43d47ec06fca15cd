"""BraTS 2018 (brain tumour segmentation, CBICA): four co-registered MRI modalities and a tumour mask.

On-disk layout (skull-stripped, 1 mm isotropic, 240×240×155)::

    ROOT/HGG/Brats18_2013_2_1/Brats18_2013_2_1_t1.nii.gz, _t1ce, _t2, _flair, _seg
    ROOT/LGG/Brats18_2013_0_1/...

Mask labels: 1 necrotic / non-enhancing tumour core (NCR/NET), 2 peritumoural edema, 4 enhancing tumour
(label 3 is unused). Evaluation regions: whole tumour WT = {1, 2, 4}, tumour core TC = {1, 4}, enhancing
tumour ET = {4}.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .volume import read_nifti_array, refuse_nonfinite

MODALITIES = ("t1", "t1ce", "t2", "flair")
LABELS = {0: "background", 1: "NCR/NET", 2: "edema", 4: "enhancing tumour"}
# The evaluated regions, each a set of label values: whole tumour ⊃ tumour core ⊃ enhancing tumour.
STRUCTURES = {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}
REGIONS = tuple(STRUCTURES)
SPACING_RTOL = 1e-3


def modality_file(case_dir: str | Path, modality: str) -> Path:
    """``<case_dir>/<case>_<modality>.nii.gz`` (or ``.nii``); FileNotFoundError naming the case when absent."""
    case_dir = Path(case_dir)
    for ext in (".nii.gz", ".nii"):
        path = case_dir / f"{case_dir.name}_{modality}{ext}"
        if path.is_file():
            return path
    raise FileNotFoundError(f"{case_dir}: case {case_dir.name} has no {modality!r} file "
                            f"({case_dir.name}_{modality}.nii.gz)")


def list_cases(root: str | Path) -> list[Path]:
    """Case folders below ``root`` (e.g. ``HGG/<case>``, ``LGG/<case>``): any folder holding ``<folder>_flair``
    or another modality file. Sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: BraTS root folder not found")
    cases = {p.parent for suffix in (*MODALITIES, "seg") for p in root.rglob(f"*_{suffix}.nii*")
             if p.name.startswith(p.parent.name + "_")}
    if not cases:
        raise FileNotFoundError(f"{root}: no BraTS case folders (<case>/<case>_flair.nii.gz ...) found")
    return sorted(cases)


def case_grade(case_dir: str | Path) -> str | None:
    """``"HGG"`` / ``"LGG"`` from the parent folder's name, None when the layout does not say."""
    parent = Path(case_dir).parent.name.upper()
    return parent if parent in ("HGG", "LGG") else None


def read_case(case_dir: str | Path, modalities: tuple[str, ...] = MODALITIES, with_seg: bool = True
              ) -> tuple[np.ndarray, np.ndarray | None, tuple[float, float, float]]:
    """Read one case: ``image`` float32 ``(C, X, Y, Z)`` (C = len(modalities), in the given order),
    ``seg`` uint8 ``(X, Y, Z)`` with labels {0, 1, 2, 4} (None when ``with_seg`` is False) and the spacing
    (mm). Raises ``FileNotFoundError`` for a missing modality and ``ValueError`` for unknown modality
    names, truncated or non-3D files (a 4th axis of length 1 is dropped), NaN/±inf voxels, shape / spacing
    mismatches between files, or unknown mask labels.
    """
    case_dir = Path(case_dir)
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown or not modalities:
        raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got {tuple(modalities)}")
    names = list(modalities) + (["seg"] if with_seg else [])
    arrays, spacing, shape = [], None, None
    for name in names:
        path = modality_file(case_dir, name)
        data, zooms = read_nifti_array(path)   # truncated file: CorruptVolumeError; (X, Y, Z, 1) read as 3D
        refuse_nonfinite(data, path)           # a NaN would make the channel's z-score NaN everywhere
        data = data.astype(np.float32, copy=False)
        if shape is None:
            shape, spacing, first = data.shape, zooms, path
        elif data.shape != shape:
            raise ValueError(f"shape mismatch: {path} is {data.shape} but {first} is {shape}")
        elif not np.allclose(zooms, spacing, rtol=SPACING_RTOL):
            raise ValueError(f"spacing mismatch: {path} has {zooms} mm but {first} has {spacing} mm")
        arrays.append(data)
    seg = None
    if with_seg:
        seg_data = arrays.pop()
        seg_values = np.unique(seg_data)
        bad = seg_values[~np.isin(seg_values, list(LABELS))]
        if bad.size:
            raise ValueError(f"{modality_file(case_dir, 'seg')}: unexpected label value(s) {bad.tolist()}; "
                             "BraTS masks hold 0, 1 (NCR/NET), 2 (edema), 4 (enhancing)")
        seg = seg_data.astype(np.uint8)
    return np.stack(arrays).astype(np.float32, copy=False), seg, spacing


def regions(seg):
    """Label map → evaluation regions WT / TC / ET as booleans, for NumPy arrays and torch tensors.

    ``seg`` ``(..., X, Y, Z)`` integer labels → ``(..., 3, X, Y, Z)`` bool (region axis inserted before the
    three spatial axes, so ``(X, Y, Z) → (3, X, Y, Z)`` and ``(B, X, Y, Z) → (B, 3, X, Y, Z)``).
    """
    if seg.ndim < 3:
        raise ValueError(f"seg must have at least 3 (spatial) dimensions, got shape {tuple(seg.shape)}")
    axis = seg.ndim - 3
    if isinstance(seg, np.ndarray):
        return np.stack([np.isin(seg, labels) for labels in STRUCTURES.values()], axis=axis)
    import torch

    if not isinstance(seg, torch.Tensor):
        raise TypeError(f"seg must be a numpy array or torch tensor, got {type(seg).__name__}")
    return torch.stack([torch.isin(seg, torch.tensor(labels, device=seg.device, dtype=seg.dtype))
                        for labels in STRUCTURES.values()], dim=axis)
