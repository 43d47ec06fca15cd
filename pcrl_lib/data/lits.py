"""LiTS 2017 (Liver Tumor Segmentation challenge): abdominal CT volumes with liver / tumour masks.

On-disk layout (the training release comes as two batches; search recursively)::

    ROOT/Training Batch 1/volume-0.nii, segmentation-0.nii, ... volume-27.nii
    ROOT/Training Batch 2/volume-28.nii, segmentation-28.nii, ... volume-130.nii

Mask labels: 0 background, 1 liver, 2 tumour (tumour voxels belong to the liver too: liver = mask ≥ 1).
The Medical Segmentation Decathlon's Task03_Liver holds the same training cases with the same labels as
``Task03_Liver/imagesTr/liver_N.nii.gz`` + ``labelsTr/liver_N.nii.gz``; that layout is read too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .volume import Volume, read_volume

LABELS = {0: "background", 1: "liver", 2: "tumour"}
# The segmented structures, each a set of label values: the tumour lies inside the liver.
STRUCTURES = {"liver": (1, 2), "tumour": (2,)}
VOLUME_PATTERN = re.compile(r"^volume-(\d+)\.nii(\.gz)?$")
SEGMENTATION_PATTERN = re.compile(r"^segmentation-(\d+)\.nii(\.gz)?$")
DECATHLON_PATTERN = re.compile(r"^liver_(\d+)\.nii(\.gz)?$")
SPACING_RTOL = 1e-3


@dataclass(frozen=True)
class LitsCase:
    """One case: its number N, the CT file and the mask file (None for unlabelled test volumes)."""

    case_id: int
    volume: Path
    segmentation: Path | None


def numbered_files(root: Path, pattern: re.Pattern) -> dict[int, Path]:
    """``N → path`` for files below ``root`` whose name matches ``pattern`` (group 1 = N); ValueError on duplicates."""
    found: dict[int, Path] = {}
    for path in root.rglob("*.nii*"):
        match = pattern.match(path.name)
        if match:
            number = int(match.group(1))
            if number in found:
                raise ValueError(f"{root}: case {number} found twice: {found[number]} and {path}")
            found[number] = path
    return found


def find_files(root: Path) -> tuple[dict[int, Path], dict[int, Path]]:
    """``(volumes, masks)`` by case number: LiTS names anywhere below ``root``, else the Decathlon's
    ``imagesTr/`` and ``labelsTr/`` (same file name in both, so they are searched separately)."""
    volumes, masks = numbered_files(root, VOLUME_PATTERN), numbered_files(root, SEGMENTATION_PATTERN)
    if not volumes:
        images = sorted(p for p in root.rglob("imagesTr") if p.is_dir())
        if images:
            labels = images[0].parent / "labelsTr"
            volumes = numbered_files(images[0], DECATHLON_PATTERN)
            masks = numbered_files(labels, DECATHLON_PATTERN) if labels.is_dir() else {}
    return volumes, masks


def list_cases(root: str | Path, require_segmentation: bool = True) -> list[LitsCase]:
    """Every ``volume-N.nii(.gz)`` below ``root`` paired with ``segmentation-N`` (or the Decathlon's
    ``imagesTr/liver_N`` with ``labelsTr/liver_N``), sorted by N.

    With ``require_segmentation`` a volume without its mask raises ``FileNotFoundError`` naming it.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: LiTS root folder not found")
    volumes, masks = find_files(root)
    if not volumes:
        raise FileNotFoundError(f"{root}: no volume-N.nii(.gz) files (nor Decathlon imagesTr/liver_N.nii.gz) "
                                "found (searched recursively)")
    unpaired = sorted(set(volumes) - set(masks))
    if require_segmentation and unpaired:
        raise FileNotFoundError(f"{volumes[unpaired[0]]}: no segmentation file found for it "
                                f"({len(unpaired)} volume(s) without a mask)")
    return [LitsCase(n, volumes[n], masks.get(n)) for n in sorted(volumes)]


def read_case(case: LitsCase | str | Path, segmentation: str | Path | None = None) -> tuple[Volume, Volume]:
    """Read a CT (float32 HU) and its mask (uint8, labels 0/1/2) as :class:`Volume` s on the same grid.

    ``case`` is a :class:`LitsCase` or the path of ``volume-N.nii``; then ``segmentation`` is its mask
    (default: ``segmentation-N`` in the same folder). Raises ``ValueError`` naming both files when their
    shapes or spacings differ, or when the mask holds labels other than 0, 1, 2, and naming the file when it
    is truncated (:class:`~pcrl_lib.data.volume.CorruptVolumeError`) or holds NaN/±inf voxels.
    """
    if isinstance(case, LitsCase):
        volume_path, mask_path = case.volume, case.segmentation
    else:
        volume_path = Path(case)
        mask_path = Path(segmentation) if segmentation is not None else None
        if mask_path is None:
            match = VOLUME_PATTERN.match(volume_path.name)
            if match:
                options = [volume_path.with_name(f"segmentation-{match.group(1)}{ext}") for ext in (".nii", ".nii.gz")]
                mask_path = next((p for p in options if p.is_file()), options[0])
            elif DECATHLON_PATTERN.match(volume_path.name) and volume_path.parent.name == "imagesTr":
                mask_path = volume_path.parent.parent / "labelsTr" / volume_path.name
            else:
                raise ValueError(f"{volume_path}: name is neither volume-N.nii(.gz) nor imagesTr/liver_N.nii.gz; "
                                 "pass segmentation= explicitly")
    if mask_path is None:
        raise FileNotFoundError(f"{volume_path}: this case has no segmentation file")
    ct = read_volume(volume_path, dtype=np.float32)
    mask = read_volume(mask_path, dtype=np.float32)
    if ct.shape != mask.shape:
        raise ValueError(f"shape mismatch: {volume_path} is {ct.shape} but {mask_path} is {mask.shape}")
    if not np.allclose(ct.spacing, mask.spacing, rtol=SPACING_RTOL):
        raise ValueError(f"spacing mismatch: {volume_path} has {tuple(round(s, 4) for s in ct.spacing)} mm but "
                         f"{mask_path} has {tuple(round(s, 4) for s in mask.spacing)} mm")
    values = np.unique(mask.array)
    unknown = values[~np.isin(values, list(LABELS))]
    if unknown.size:
        raise ValueError(f"{mask_path}: unexpected label value(s) {unknown.tolist()}; LiTS masks hold "
                         "0 background, 1 liver, 2 tumour")
    mask.array = mask.array.astype(np.uint8)
    return ct, mask
