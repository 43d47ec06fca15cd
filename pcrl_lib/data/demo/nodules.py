"""A nodule-classification demo on the real chest CTs: lesion-centred cubes (label 1) versus cubes from
lung parenchyma away from any lesion (label 0), the 3D analogue of LUNA16 candidate classification.

Legend: a *cube* is a ``(X, Y, Z)`` = ``size`` block of HU values sampled on a grid of ``spacing`` mm
whose voxel ``size // 2`` sits exactly on the chosen centre; cubes follow the scan's own axes
(its direction matrix) and are resampled in physical space, so ``spacing=(1, 1, 1)`` gives cubes of the
same physical size from scans of different resolution. Outside the scan a cube reads ``fill`` (air).
Centres are always voxel centres of the scan, so the centre value is the scan's own (no interpolation).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..volume import Volume, to_sitk
from .ct import chest_cts

AIR_HU = -1024.0


@dataclass
class CubeSet:
    """Cubes and what they are.

    ``cubes``: float32 ``(N, X, Y, Z)`` HU; ``masks``: uint8 ``(N, X, Y, Z)`` lesion mask cut the same way;
    ``labels``: int64 ``(N,)`` 1 = lesion-centred, 0 = parenchyma; ``centres_mm``: float64 ``(N, 3)`` world
    (LPS mm); ``cases``: the scan each cube came from.
    """

    cubes: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    centres_mm: np.ndarray
    cases: list[str]

    def __len__(self) -> int:
        return len(self.labels)


def _check_same_grid(ct: Volume, mask: Volume, what: str) -> None:
    if (mask.shape != ct.shape or not np.allclose(mask.spacing, ct.spacing)
            or not np.allclose(mask.origin, ct.origin, atol=1e-3)
            or not np.allclose(mask.direction, ct.direction, atol=1e-6)):
        raise ValueError(f"{what}: the mask is not on the CT's voxel grid (shape {mask.shape} vs {ct.shape}); "
                         "resample it first (pcrl_lib.data.demo.resample_onto)")


def lung_parenchyma_mask(ct: Volume, threshold_hu: float = -400.0, min_volume_ml: float = 100.0) -> np.ndarray:
    """Boolean ``(X, Y, Z)`` mask of the air-filled lungs by thresholding (a demo heuristic, not a lung
    segmentation): voxels below ``threshold_hu`` in 6-connected components that do not touch the in-plane
    border (that air is outside the body) and hold at least ``min_volume_ml`` (drops bowel gas)."""
    from scipy import ndimage

    air = ct.array < threshold_hu
    labels, count = ndimage.label(air)
    if count == 0:
        return np.zeros(ct.shape, dtype=bool)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep = sizes * (float(np.prod(ct.spacing)) / 1000.0) >= min_volume_ml
    border = np.unique(np.concatenate([labels[0].ravel(), labels[-1].ravel(),
                                       labels[:, 0].ravel(), labels[:, -1].ravel()]))
    keep[border] = False
    keep[0] = False
    return keep[labels]


def lesion_centres(lesion: Volume) -> np.ndarray:
    """``(K, 3)`` int voxel indices, one per 26-connected lesion component (largest first): the component's
    voxel nearest its centre of mass (a voxel *of* the lesion even for a curved component)."""
    from scipy import ndimage

    labels, count = ndimage.label(lesion.array > 0, structure=np.ones((3, 3, 3), dtype=bool))
    centres = []
    for component in np.argsort(-np.bincount(labels.ravel())[1:]) + 1:
        voxels = np.argwhere(labels == component)
        mean_mm = (voxels * np.asarray(lesion.spacing)).mean(axis=0)
        nearest = np.argmin((((voxels * np.asarray(lesion.spacing)) - mean_mm) ** 2).sum(axis=1))
        centres.append(voxels[nearest])
    return np.asarray(centres, dtype=np.int64).reshape(-1, 3)


def cut_cubes(volume: Volume, centres_mm: np.ndarray, size: tuple[int, int, int] = (64, 64, 32),
              spacing: tuple[float, float, float] | None = (1.0, 1.0, 1.0),
              interpolation: Literal["linear", "nearest"] = "linear", fill: float = AIR_HU) -> np.ndarray:
    """Sample ``(N, X, Y, Z)`` cubes of ``volume`` centred at ``centres_mm`` (``(N, 3)`` world mm).

    ``spacing=None`` keeps the scan's own spacing (a plain crop); cubes follow the scan's axes; voxel
    ``size // 2`` of each cube is its centre; outside the scan the value is ``fill``.
    """
    import SimpleITK as sitk

    size = tuple(int(s) for s in size)
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"size must be three positive ints (X, Y, Z), got {size!r}")
    centres_mm = np.atleast_2d(np.asarray(centres_mm, dtype=np.float64))
    if centres_mm.shape[1] != 3:
        raise ValueError(f"centres_mm must be (N, 3) world coordinates, got shape {centres_mm.shape}")
    grid_spacing = np.asarray(volume.spacing if spacing is None else spacing, dtype=np.float64)
    if grid_spacing.shape != (3,) or grid_spacing.min() <= 0:
        raise ValueError(f"spacing must be three positive mm values or None, got {spacing!r}")
    interpolator = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor}.get(interpolation)
    if interpolator is None:
        raise ValueError(f"interpolation must be 'linear' or 'nearest', got {interpolation!r}")

    direction = np.asarray(volume.direction, dtype=np.float64)
    image = to_sitk(volume)  # convert once; each cube only resamples its own small grid
    # origin of each cube grid: centre minus the offset of voxel size//2 along the scan's axes
    offsets = direction @ (grid_spacing * (np.asarray(size) // 2))
    cubes = np.empty((len(centres_mm), *size), dtype=volume.array.dtype)
    for index, centre in enumerate(centres_mm):
        grid = sitk.Image(size, sitk.sitkUInt8)
        grid.SetSpacing(tuple(grid_spacing))
        grid.SetDirection(tuple(direction.ravel()))
        grid.SetOrigin(tuple(centre - offsets))
        cube = sitk.Resample(image, grid, sitk.Transform(), interpolator, float(fill))
        cubes[index] = sitk.GetArrayFromImage(cube).transpose(2, 1, 0)
    return cubes


def nodule_cubes(ct: Volume, lesion: Volume, rng: np.random.Generator, n_positive: int = 4, n_negative: int = 4,
                 size: tuple[int, int, int] = (64, 64, 32),
                 spacing: tuple[float, float, float] | None = (1.0, 1.0, 1.0),
                 min_distance_mm: float | None = None, case: str = "") -> CubeSet:
    """Lesion-centred and parenchyma cubes from one CT (HU) and its lesion mask (same grid).

    Positives: first the centre voxel of each lesion component (largest first), then lesion voxels drawn
    with ``rng``. Negatives: lung-parenchyma voxels (:func:`lung_parenchyma_mask`) drawn with ``rng`` whose
    distance to every lesion voxel is at least ``min_distance_mm`` (default: half the cube's diagonal, so
    no negative cube contains lesion).
    """
    from scipy.spatial import cKDTree

    _check_same_grid(ct, lesion, case or "nodule_cubes")
    if n_positive < 0 or n_negative < 0:
        raise ValueError(f"n_positive and n_negative must be >= 0, got {n_positive}, {n_negative}")
    lesion_voxels = np.argwhere(lesion.array > 0)
    if len(lesion_voxels) == 0 and n_positive > 0:
        raise ValueError(f"{case or 'nodule_cubes'}: the lesion mask is empty, so there are no positives")
    grid_spacing = np.asarray(ct.spacing if spacing is None else spacing, dtype=np.float64)
    if min_distance_mm is None:
        min_distance_mm = float(np.linalg.norm(grid_spacing * (np.asarray(size) / 2.0)))

    centres = lesion_centres(lesion)[:n_positive]
    extra = n_positive - len(centres)
    if extra > 0:
        centres = np.concatenate([centres, lesion_voxels[rng.choice(len(lesion_voxels), size=extra)]])

    candidates = np.empty((0, 3), dtype=np.int64)
    if n_negative > 0:
        lung = np.flatnonzero(lung_parenchyma_mask(ct))
        if len(lung) == 0:
            raise ValueError(f"{case or 'nodule_cubes'}: no lung parenchyma found (HU < -400 inside the body)")
        # draw generously, then keep those far enough from the lesion (in mm, so anisotropy does not matter)
        drawn = rng.choice(lung, size=min(len(lung), 50 * n_negative), replace=False)
        candidates = np.column_stack(np.unravel_index(drawn, ct.shape))
        if len(lesion_voxels):
            distance, _ = cKDTree(ct.voxel_to_world(lesion_voxels)).query(ct.voxel_to_world(candidates))
            candidates = candidates[distance >= min_distance_mm]
    if len(candidates) < n_negative:
        raise ValueError(f"{case or 'nodule_cubes'}: only {len(candidates)} parenchyma voxels lie "
                         f"{min_distance_mm:.0f} mm from the lesion, {n_negative} wanted; lower "
                         "min_distance_mm or n_negative")
    voxels = np.concatenate([centres, candidates[:n_negative]]).astype(np.int64)
    centres_mm = ct.voxel_to_world(voxels)
    labels = np.concatenate([np.ones(len(centres), np.int64), np.zeros(n_negative, np.int64)])
    return CubeSet(cubes=cut_cubes(ct, centres_mm, size, spacing, "linear", AIR_HU).astype(np.float32),
                   masks=cut_cubes(lesion, centres_mm, size, spacing, "nearest", 0).astype(np.uint8),
                   labels=labels, centres_mm=centres_mm, cases=[case] * len(labels))


def nodule_demo(rng: np.random.Generator, n_per_class: int = 4, size: tuple[int, int, int] = (64, 64, 32),
                spacing: tuple[float, float, float] | None = (1.0, 1.0, 1.0),
                cache_dir: str | os.PathLike | None = None) -> CubeSet:
    """DEMO: :func:`nodule_cubes` over the chest CTs with lesion masks (lung1, lung2), concatenated:
    ``2 * n_per_class`` cubes per scan, half lesion-centred, half parenchyma."""
    parts = [nodule_cubes(case.ct, case.lesion, rng, n_per_class, n_per_class, size, spacing, case=case.name)
             for case in chest_cts(cache_dir, include_cta=False)]
    return CubeSet(cubes=np.concatenate([p.cubes for p in parts]), masks=np.concatenate([p.masks for p in parts]),
                   labels=np.concatenate([p.labels for p in parts]),
                   centres_mm=np.concatenate([p.centres_mm for p in parts]),
                   cases=[name for p in parts for name in p.cases])
