"""Demo CT data (real but tiny; for demos and tests, never for reported results).

- :func:`chest_cts`: two chest CTs in HU with lesion masks from the pyradiomics test cases (``lung1``: a
  ~14 mm nodule, 0.57 mm pixels, 5 mm slices; ``lung2``: a ~45 mm mass, 0.63 mm pixels, 5 mm slices)
  and one chest CT angiography without a mask (TotalSegmentator's aorta example, 1.5 mm isotropic).
- :func:`liver_ct`: an abdominal CT with a liver mask. The masks are TotalSegmentator's output shipped as
  its test reference: PSEUDO-LABELS FROM A MODEL, not expert annotation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..dicom import read_dicom_series
from ..volume import Volume, read_volume, to_sitk
from .fetching import load_manifest

LIVER_LABEL = 5  # TotalSegmentator "total" task: 5 = liver


@dataclass
class ChestCT:
    """One demo chest CT: ``ct`` in HU ``(X, Y, Z)``; ``lesion`` a {0,1} uint8 mask on the same grid, or None."""

    name: str
    ct: Volume
    lesion: Volume | None
    description: str


_CHEST = {
    "lung1": "chest CT, ~14 mm lung nodule (pyradiomics test case lung1)",
    "lung2": "chest CT, ~45 mm lung mass (pyradiomics test case lung2)",
}


def _mask(path) -> Volume:
    mask = read_volume(path, dtype=np.uint8)
    mask.array = (mask.array > 0).astype(np.uint8)
    return mask


def chest_cts(cache_dir: str | os.PathLike | None = None, include_cta: bool = True) -> list[ChestCT]:
    """DEMO: the chest CTs (HU): ``lung1`` and ``lung2`` with lesion masks, then (``include_cta``) the chest
    CT angiography ``chest_cta`` without a mask (useful as unlabelled pretraining input)."""
    manifest = load_manifest(cache_dir)
    cases = []
    for name, description in _CHEST.items():
        ct = read_volume(manifest.path(f"pyradiomics/{name}_image.nrrd"))
        lesion = _mask(manifest.path(f"pyradiomics/{name}_label.nrrd"))
        if lesion.shape != ct.shape:
            raise ValueError(f"{lesion.path}: mask shape {lesion.shape} differs from the CT's {ct.shape}")
        cases.append(ChestCT(name=name, ct=ct, lesion=lesion, description=description))
    if include_cta:
        cases.append(ChestCT(name="chest_cta", ct=read_volume(manifest.path("totalsegmentator/chest_cta_ct.nii.gz")),
                             lesion=None, description="chest CT angiography, 1.5 mm isotropic, no lesion mask "
                                                      "(TotalSegmentator aorta example)"))
    return cases


def resample_onto(moving: Volume, reference: Volume, interpolation: Literal["nearest", "linear"] = "nearest",
                  fill: float = 0.0) -> Volume:
    """Resample ``moving`` onto ``reference``'s voxel grid in physical (world) space.

    Uses both volumes' spacing, origin and direction, so masks stored with flipped axes or another
    resolution land on the right voxels. ``nearest`` keeps label values; voxels outside ``moving`` get
    ``fill``. Returns a Volume with ``reference``'s geometry and ``moving``'s dtype.
    """
    import SimpleITK as sitk

    interpolators = {"nearest": sitk.sitkNearestNeighbor, "linear": sitk.sitkLinear}
    if interpolation not in interpolators:
        raise ValueError(f"interpolation must be 'nearest' or 'linear', got {interpolation!r}")
    ref_image = to_sitk(Volume(array=np.zeros(reference.shape, np.uint8), spacing=reference.spacing,
                               origin=reference.origin, direction=reference.direction))
    out = sitk.Resample(to_sitk(moving), ref_image, sitk.Transform(), interpolators[interpolation], float(fill))
    array = sitk.GetArrayFromImage(out).transpose(2, 1, 0).astype(moving.array.dtype, copy=False)
    return Volume(array=np.ascontiguousarray(array), spacing=reference.spacing, origin=reference.origin,
                  direction=np.asarray(reference.direction).copy(), path=moving.path)


def liver_ct(source: Literal["nifti", "dicom"] = "nifti",
             cache_dir: str | os.PathLike | None = None) -> tuple[Volume, Volume]:
    """DEMO: an abdominal CT (HU) and its liver mask {0,1} on the CT's grid.

    ``source="nifti"``: TotalSegmentator's ``example_ct_sm`` (122×101×30 voxels, 3 mm isotropic);
    ``source="dicom"``: its 20-slice DICOM series (512×512×20, 0.98×0.98×2 mm) read with
    :func:`read_dicom_series`. The mask is label 5 (liver) of TotalSegmentator's segmentation of that CT,
    RESAMPLED ONTO THE CT in physical space (nearest neighbour; the DICOM segmentation is stored with
    its y axis flipped relative to the series, which the resampling resolves).

    The liver masks are PSEUDO-LABELS FROM A MODEL (TotalSegmentator output), not expert annotation.
    """
    manifest = load_manifest(cache_dir)
    if source == "nifti":
        ct = read_volume(manifest.path("totalsegmentator/abdomen_ct.nii.gz"))
        labels = read_volume(manifest.path("totalsegmentator/abdomen_seg.nii.gz"), dtype=np.uint8)
    elif source == "dicom":
        slices = manifest.keys("totalsegmentator/abdomen_ct_dicom/")
        ct = read_dicom_series(manifest.path(slices[0]).parent)
        labels = read_volume(manifest.path("totalsegmentator/abdomen_seg_dicom.nii.gz"), dtype=np.uint8)
    else:
        raise ValueError(f"source must be 'nifti' or 'dicom', got {source!r}")
    labels.array = (labels.array == LIVER_LABEL).astype(np.uint8)
    return ct, resample_onto(labels, ct, interpolation="nearest", fill=0)
