"""Cutting crops out of 3D arrays, vectorised: PCRL / Models Genesis crop pairs, cubes around points, and
training patches with foreground oversampling.

Legend (PCRL_SPEC §7): a *box* is ``(x0, y0, z0, x1, y1, z1)`` in voxels, half-open (``x0 <= x < x1``), on the
1 mm grid of the scan; IoU = |A ∩ B| / |A ∪ B| of two boxes; the *lung filter* (Models Genesis) drops a crop
with too many voxels ``>= soft_hu`` (-150 HU, i.e. not lung or air); the *margin* keeps crops ``margin`` voxels
away from the scan's border (70 in-plane, 15 along z), where the table, the body wall and air outside the body are.
Arrays are ``(X, Y, Z)`` (Z = slices); a pair of crops is ``(2, X, Y, Z)``; ``P`` = number of pairs.

Three switches choose between the authors' released preprocessing (``pytorch/preprocess/luna_pre.py``, the
default) and the kit's cleaner variant:

============  =====================================================  ==============================================
switch        ``"released"`` (default)                               ``"kit"``
============  =====================================================  ==============================================
``sampler``   both boxes drawn independently (size uniform from the   box B placed near box A, its size uniform
              list, start uniform in ``[lo, hi - size - 1]``, z also  among the sizes that can reach the IoU
              keeping 3 slices spare); pairs kept when IoU > 0.25 —   threshold: every size about equally often
              accepted pairs are mostly the large sizes
``lung``      on the *resized* crop (``cube`` + 3 slices, [0, 1]):    fraction of the crop's own voxels
              per voxel of the first ``cube_z`` slices, 1 if it is   ``>= soft_hu`` must be <= 15 %, for every size
              ``>= soft_hu``, else 0.5 if the next slice is, else 0;
              the sum must be <= 0.15 × the *original* crop's voxel
              count, so the effective threshold depends on the size
``resize``    skimage ``resize`` (order 1, anti-aliasing Gaussian     trilinear (``align_corners=False``) of the box
              σ = (factor − 1) / 2 when shrinking, reflect borders)   to ``cube``
              of the box plus 3 slices to ``cube_z + 3``, then the
              first ``cube_z`` slices are kept
============  =====================================================  ==============================================
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from numpy.lib.stride_tricks import sliding_window_view

PAPER_CUBE = (64, 64, 32)
PAPER_CROP_SIZES = ((64, 64, 32), (96, 96, 48), (96, 96, 96), (32, 32, 16), (112, 112, 64))
PAPER_MARGIN = (70, 70, 15)
MIN_IOU = 0.25
SOFT_HU = -150.0
MAX_SOFT_FRACTION = 0.15
HU_WINDOW = (-1000.0, 1000.0)
RECIPES = ("released", "kit")
EXTRA_SLICES = 3          # the released crops read 3 more slices (``len_depth``) and resize to cube_z + 3
MAX_RAW_DRAWS = 50_000_000  # box pairs drawn (cheap) before giving up on reaching the IoU threshold


def _triple(value, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.int64).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, 3)
    if arr.size != 3 or (arr < 0).any():
        raise ValueError(f"{name} must be one non-negative int or three (x, y, z), got {value!r}")
    return arr


def scaled_crop_sizes(cube: Sequence[int], sizes: Sequence[Sequence[int]] = PAPER_CROP_SIZES) -> tuple:
    """The paper's crop sizes scaled per axis by ``cube / (64, 64, 32)`` when the cube is smaller than the paper's
    (never enlarged): ``(32, 32, 16)`` halves every size. Duplicates after rounding are dropped."""
    cube = _triple(cube, "cube")
    if (cube < 1).any():
        raise ValueError(f"cube must be positive, got {tuple(cube)}")
    scale = np.minimum(1.0, cube / np.asarray(PAPER_CUBE))
    scaled = np.maximum(1, np.rint(np.asarray(sizes, dtype=np.float64) * scale)).astype(np.int64)
    return tuple(dict.fromkeys(tuple(int(v) for v in s) for s in scaled))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes ``a`` and ``b`` (``(..., 6)``, broadcast) → ``(...)`` float64."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    overlap = np.clip(np.minimum(a[..., 3:], b[..., 3:]) - np.maximum(a[..., :3], b[..., :3]), 0, None)
    inter = overlap.prod(-1)
    union = (a[..., 3:] - a[..., :3]).prod(-1) + (b[..., 3:] - b[..., :3]).prod(-1) - inter
    return inter / union


def _integral(mask: np.ndarray) -> np.ndarray:
    """Summed-volume table ``(X+1, Y+1, Z+1)`` of a boolean ``(X, Y, Z)`` mask: any box's count in 8 lookups."""
    table = np.zeros(tuple(s + 1 for s in mask.shape), dtype=np.int32)
    table[1:, 1:, 1:] = mask.cumsum(0, dtype=np.int32).cumsum(1, dtype=np.int32).cumsum(2, dtype=np.int32)
    return table


def _box_sums(table: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Counts inside ``boxes`` ``(N, 6)`` from a summed-volume table (inclusion–exclusion)."""
    x0, y0, z0, x1, y1, z1 = boxes.T

    def at(x, y, z):
        return table[x, y, z].astype(np.int64)  # widen the looked-up values, not the whole table

    return (at(x1, y1, z1) - at(x0, y1, z1) - at(x1, y0, z1) - at(x1, y1, z0)
            + at(x0, y0, z1) + at(x0, y1, z0) + at(x1, y0, z0) - at(x0, y0, z0))


def fit_margin(shape: Sequence[int], sizes: Sequence[Sequence[int]], margin: Sequence[int],
               name: str = "scan", extra: Sequence[int] = (0, 0, 0)) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Sizes that fit a scan of ``shape`` and the margin actually used, with notes saying what was changed.

    ``extra`` voxels per axis must stay free beyond each crop (the released sampler's ``- 1`` and 3 spare
    slices). A margin is reduced (per axis) to what still leaves room for the largest usable crop between the
    margins; crop sizes larger than the scan are dropped. Raises ``ValueError`` when no size fits at all."""
    shape, margin = np.asarray(shape, dtype=np.int64), _triple(margin, "margin")
    extra = _triple(extra, "extra")
    sizes = np.asarray(sizes, dtype=np.int64).reshape(-1, 3)
    if len(sizes) == 0 or (sizes < 1).any():
        raise ValueError(f"{name}: crop sizes must be positive (x, y, z) triples, got {sizes.tolist()}")
    fits = (sizes + extra <= shape).all(1)
    if not fits.any():
        raise ValueError(f"{name}: scan of shape {tuple(shape.tolist())} (1 mm voxels) is smaller than every crop "
                         f"size {[tuple(s) for s in sizes.tolist()]}; use a smaller cube or a larger scan")
    notes = []
    if not fits.all():
        notes.append(f"crop sizes {[tuple(int(v) for v in s) for s in sizes[~fits]]} do not fit the scan "
                     f"{tuple(int(v) for v in shape)} and were not used")
    sizes = sizes[fits]
    room = (shape - extra - sizes.max(0)) // 2
    used = np.minimum(margin, room)
    if (used < margin).any():
        notes.append(f"margin reduced from {tuple(int(v) for v in margin)} to {tuple(int(v) for v in used)} voxels: "
                     f"the scan {tuple(int(v) for v in shape)} is too small for the largest crop "
                     f"{tuple(int(v) for v in sizes.max(0))} plus the full margin")
    return sizes, used, notes


@dataclass
class CropPairs:
    """Result of :func:`crop_pairs`. ``cubes`` float32 ``(P, 2, X, Y, Z)`` in [0, 1]; ``boxes`` int64
    ``(P, 2, 6)`` on the 1 mm grid; ``iou`` ``(P,)``; ``soft_fraction`` ``(P, 2)`` the lung filter's statistic,
    compared with ``max_soft_fraction`` (released: the resized crop's soft-tissue sum / the original crop's voxel
    count; kit: the fraction of the crop's voxels >= soft_hu); ``tries`` candidate pairs (IoU already above the
    threshold) given to the lung filter; ``margin`` used; ``notes`` what was adapted to the scan."""

    cubes: np.ndarray
    boxes: np.ndarray
    iou: np.ndarray
    soft_fraction: np.ndarray
    tries: int
    margin: tuple
    notes: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.cubes)


def _check_recipe(value: str, name: str) -> str:
    if value not in RECIPES:
        raise ValueError(f"{name} must be one of {RECIPES} ('released' = the authors' preprocessing), got {value!r}")
    return value


def _pair_iou_matrix(sizes: np.ndarray) -> np.ndarray:
    """``(S, S)`` best IoU two sizes can reach (the smaller nested in the larger)."""
    inter = np.minimum(sizes[:, None], sizes[None]).prod(-1)
    vol = sizes.prod(-1)
    return inter / (vol[:, None] + vol[None] - inter)


def sampler_extra(sampler: str, crop_resize: str) -> np.ndarray:
    """Voxels per axis each crop needs beyond its box: the released sampler's start bound
    ``size - 1 - margin`` leaves one voxel; the released resize reads :data:`EXTRA_SLICES` more slices."""
    slices = EXTRA_SLICES if (sampler == "released" or crop_resize == "released") else 0
    return np.array([1, 1, 1 + slices]) if sampler == "released" else np.array([0, 0, slices])


def draw_box_pairs(rng: np.random.Generator, n: int, sizes: Sequence[Sequence[int]], lo: Sequence[int],
                   hi: Sequence[int], min_iou: float = MIN_IOU, sampler: str = "released",
                   extra: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """``n`` box pairs ``(n, 6)`` each with IoU > ``min_iou``, boxes inside ``[lo, hi - extra)`` per axis.

    ``sampler="released"``: as the authors' ``crop_pair``: two sizes uniform from ``sizes`` and two starts
    uniform in ``[lo, hi - size - extra]`` (inclusive; ``extra`` defaults to :func:`sampler_extra`), drawn
    independently; pairs below the threshold are drawn again. ``"kit"``: box A uniform; B of a size that can
    reach the threshold, its centre shifted from A's by at most half the smaller box per axis.
    Draws in vectorised batches; returns ``(a, b, raw)`` with ``raw`` the box pairs drawn in all.
    Raises ``ValueError`` when no two sizes can reach the threshold."""
    _check_recipe(sampler, "sampler")
    sizes = np.asarray(sizes, dtype=np.int64).reshape(-1, 3)
    lo, hi = np.asarray(lo, dtype=np.int64), np.asarray(hi, dtype=np.int64)
    extra = sampler_extra(sampler, "kit") if extra is None else _triple(extra, "extra")
    reach = _pair_iou_matrix(sizes) > min_iou
    if not reach.any():
        raise ValueError(f"no two crop sizes of {sizes.tolist()} can overlap with IoU > {min_iou}")
    top = hi - extra                                                   # every box ends at or before this
    found_a, found_b, n_found, raw = [], [], 0, 0
    while n_found < n:
        if raw >= MAX_RAW_DRAWS:
            raise ValueError(f"fewer than {n} box pairs with IoU > {min_iou} in {raw} draws (found {n_found}): "
                             f"the room between the margins {lo.tolist()}..{hi.tolist()} is too large for "
                             f"crops of {sizes.tolist()}; use smaller margins or larger crops")
        # Enough draws for the rest at the acceptance rate seen so far (1/64 assumed at first).
        rate = (n_found + 1) / (raw + 64)
        m = int(np.clip(1.5 * (n - n_found) / rate, 4096, 1 << 20))
        ia = rng.integers(0, len(sizes), m)
        if sampler == "released":
            ib = rng.integers(0, len(sizes), m)
            sa, sb = sizes[ia], sizes[ib]
            a0 = lo + np.floor(rng.random((m, 3)) * (top - sa - lo + 1)).astype(np.int64)
            b0 = lo + np.floor(rng.random((m, 3)) * (top - sb - lo + 1)).astype(np.int64)
        else:
            # B's size uniform among those that can reach the threshold with A's: inverse CDF per row.
            cdf = np.cumsum(reach[ia], axis=1) / reach[ia].sum(1, keepdims=True)
            ib = (rng.random((m, 1)) > cdf).sum(1)
            sa, sb = sizes[ia], sizes[ib]
            a0 = lo + np.floor(rng.random((m, 3)) * (top - lo - sa + 1)).astype(np.int64)
            shift = (rng.random((m, 3)) * 2 - 1) * np.minimum(sa, sb) / 2
            b0 = np.clip(np.rint(a0 + sa / 2 + shift - sb / 2).astype(np.int64), lo, top - sb)
        a, b = np.concatenate([a0, a0 + sa], 1), np.concatenate([b0, b0 + sb], 1)
        ok = box_iou(a, b) > min_iou
        raw += m
        found_a.append(a[ok])
        found_b.append(b[ok])
        n_found += int(ok.sum())
    return np.concatenate(found_a)[:n], np.concatenate(found_b)[:n], raw


def pair_size_shares(shape: Sequence[int], sizes: Sequence[Sequence[int]], margin: Sequence[int] = PAPER_MARGIN,
                     min_iou: float = MIN_IOU, extra: Sequence[int] = (1, 1, 1 + EXTRA_SLICES)) -> np.ndarray:
    """Exact probabilities ``(S, S)`` of each (size A, size B) among the released sampler's accepted pairs (IoU
    > ``min_iou``, before the lung filter) in a scan of ``shape`` with ``margin``: per axis, the distribution of
    the two boxes' overlap is enumerated over all start positions; the three axes are independent."""
    sizes = np.asarray(sizes, dtype=np.int64).reshape(-1, 3)
    shape, margin, extra = (_triple(v, n) for v, n in ((shape, "shape"), (margin, "margin"), (extra, "extra")))
    lo, top = margin, shape - margin - extra
    joint = np.zeros((len(sizes), len(sizes)))
    vol = sizes.prod(1)
    for i, sa in enumerate(sizes):
        for j, sb in enumerate(sizes):
            axes = []
            for k in range(3):
                xa = np.arange(lo[k], top[k] - sa[k] + 1)
                xb = np.arange(lo[k], top[k] - sb[k] + 1)
                if len(xa) == 0 or len(xb) == 0:
                    break
                overlap = np.clip(np.minimum(xa[:, None] + sa[k], xb[None] + sb[k]) - np.maximum(xa[:, None], xb[None]),
                                  0, None)
                counts = np.bincount(overlap.ravel()) / overlap.size       # P(overlap = o) along axis k
                axes.append((np.flatnonzero(counts), counts[counts > 0]))
            if len(axes) < 3:
                continue
            (ox, px), (oy, py), (oz, pz) = axes
            inter = ox[:, None, None] * oy[None, :, None] * oz[None, None, :]
            prob = px[:, None, None] * py[None, :, None] * pz[None, None, :]
            joint[i, j] = prob[inter / (vol[i] + vol[j] - inter) > min_iou].sum()
    return joint / joint.sum()


def skimage_resize(array: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """``skimage.transform.resize(array, shape, order=1, preserve_range=True)`` with its defaults (mode
    ``"reflect"``, anti-aliasing when any axis shrinks, clip to the input's range), without needing skimage:
    Gaussian of σ = max(0, (in/out − 1) / 2) per axis (``scipy.ndimage``, ``"mirror"`` borders), then linear
    interpolation at the output pixel centres (``zoom(grid_mode=True)``). float64 in, float64 out."""
    from scipy import ndimage

    array = np.asarray(array, dtype=np.float64)
    shape = tuple(int(s) for s in shape)
    if array.shape == shape:
        return array.copy()
    factors = np.divide(array.shape, shape)
    filtered = array
    if any(o < i for o, i in zip(shape, array.shape)):
        filtered = ndimage.gaussian_filter(array, np.maximum(0, (factors - 1) / 2), cval=0, mode="mirror")
    out = ndimage.zoom(filtered, [1 / f for f in factors], order=1, mode="mirror", cval=0, grid_mode=True)
    return np.clip(out, array.min(), array.max())


def _normalise(crops: np.ndarray, window: tuple[float, float], dtype) -> np.ndarray:
    lo, hi = window
    return (np.clip(crops.astype(dtype), lo, hi) - dtype(lo)) / dtype(hi - lo)


def extract_boxes(volume: np.ndarray, boxes: np.ndarray, out_size: Sequence[int],
                  window: tuple[float, float] = HU_WINDOW) -> np.ndarray:
    """Kit resize: crop ``boxes`` ``(N, 6)`` (inside the volume) from ``volume`` ``(X, Y, Z)``, clip to ``window``
    → [0, 1], resize each to ``out_size`` (trilinear) → float32 ``(N, *out_size)``. Boxes of one size together."""
    sizes = boxes[:, 3:] - boxes[:, :3]
    out = np.empty((len(boxes), *out_size), dtype=np.float32)
    for size in np.unique(sizes, axis=0):
        rows = np.flatnonzero((sizes == size).all(1))
        windows = sliding_window_view(volume, tuple(int(s) for s in size))        # view, no copy
        crops = windows[boxes[rows, 0], boxes[rows, 1], boxes[rows, 2]]          # (n, sx, sy, sz) copy
        # Normalise before resizing: trilinear weights are convex, so the result stays in [0, 1].
        tensor = torch.from_numpy(np.ascontiguousarray(_normalise(crops, window, np.float32)))[:, None]
        if tuple(size) != tuple(out_size):
            tensor = F.interpolate(tensor, size=tuple(out_size), mode="trilinear", align_corners=False)
        out[rows] = tensor[:, 0].numpy()
    return out


def extract_boxes_released(volume: np.ndarray, boxes: np.ndarray, out_size: Sequence[int],
                           window: tuple[float, float] = HU_WINDOW) -> np.ndarray:
    """Released resize: each box plus :data:`EXTRA_SLICES` more slices, clipped to ``window`` → [0, 1] (float64),
    resized with :func:`skimage_resize` to ``(X, Y, Z + 3)`` unless the box already has ``out_size`` →
    float64 ``(N, X, Y, Z + 3)``; the cube is the first ``Z`` slices, the rest feeds the lung filter."""
    cx, cy, cz = (int(s) for s in out_size)
    out = np.empty((len(boxes), cx, cy, cz + EXTRA_SLICES), dtype=np.float64)
    for n, (x0, y0, z0, x1, y1, z1) in enumerate(np.asarray(boxes, dtype=np.int64)):
        crop = _normalise(volume[x0:x1, y0:y1, z0:z1 + EXTRA_SLICES], window, np.float64)
        out[n] = crop if (x1 - x0, y1 - y0, z1 - z0) == (cx, cy, cz) else skimage_resize(crop, out.shape[1:])
    return out


def released_lung_sum(extended: np.ndarray, threshold: float, cube_z: int) -> np.ndarray:
    """The released soft-tissue sum of crops ``(N, X, Y, Z')`` in [0, 1] (``Z' >= cube_z``) → ``(N,)``: over the
    first ``cube_z`` slices, 1 per voxel ``>= threshold``, else 0.5 when the next slice's voxel is, else 0 (the
    depth map of ``luna_pre.py``). A crop without a next slice (``Z' == cube_z``) counts only the voxel itself."""
    soft = extended >= threshold
    here = soft[..., :cube_z]
    nxt = np.zeros_like(here)
    nxt[..., :min(cube_z, soft.shape[-1] - 1)] = soft[..., 1:cube_z + 1]
    return np.where(here, 1.0, np.where(nxt, 0.5, 0.0)).sum((1, 2, 3))


def crop_pairs(hu: np.ndarray, cube: Sequence[int] = PAPER_CUBE, n_pairs: int = 16,
               rng: np.random.Generator | None = None, sizes: Sequence[Sequence[int]] | None = None,
               min_iou: float = MIN_IOU, margin: Sequence[int] = PAPER_MARGIN, soft_hu: float = SOFT_HU,
               max_soft_fraction: float = MAX_SOFT_FRACTION, max_tries: int = 20_000,
               window: tuple[float, float] = HU_WINDOW, name: str = "scan", sampler: str = "released",
               lung_filter: str = "released", crop_resize: str = "released") -> CropPairs:
    """Cut up to ``n_pairs`` pairs of overlapping crops from one CT scan resampled to 1 mm (PCRL_SPEC §7).

    hu: ``(X, Y, Z)`` Hounsfield units on a 1 mm grid, all finite. Each pair has box IoU > ``min_iou``, sizes
    from ``sizes`` (default: the paper's five, scaled with ``cube``), both crops pass the lung filter and lie
    inside the margin; crops are HU-clipped to ``window`` → [0, 1] and resized to ``cube``. ``sampler``,
    ``lung_filter`` and ``crop_resize`` pick the released recipe (default) or the kit's (module docstring).
    At most ``max_tries`` candidate pairs go through the lung filter; fewer than ``n_pairs`` found → the ones
    found, with a note; none → ``ValueError`` naming ``name``. Margins too large for the scan are reduced, with
    a note and a warning.
    """
    if rng is None:
        raise ValueError("rng is required: pass numpy.random.default_rng(seed) so the crops are reproducible")
    for value, what in ((sampler, "sampler"), (lung_filter, "lung_filter"), (crop_resize, "crop_resize")):
        _check_recipe(value, what)
    hu = np.asarray(hu)
    if hu.ndim != 3:
        raise ValueError(f"{name}: hu must be a 3D (X, Y, Z) array, got shape {hu.shape}")
    if n_pairs < 1 or max_tries < 1:
        raise ValueError(f"n_pairs and max_tries must be >= 1, got {n_pairs}, {max_tries}")
    if not 0 <= min_iou < 1:
        raise ValueError(f"min_iou must be in [0, 1), got {min_iou}")
    if hu.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(hu)))
        if bad:
            # NaN compares False with every threshold: it would pass the lung filter as if it were air.
            raise ValueError(f"{name}: {bad} non-finite voxel(s) (NaN or ±inf) in the scan; the lung filter and "
                             "the HU window need finite Hounsfield units — fix or re-export the scan")
    cube = tuple(int(c) for c in _triple(cube, "cube"))
    extra = sampler_extra(sampler, crop_resize)
    sizes, used_margin, notes = fit_margin(hu.shape, scaled_crop_sizes(cube) if sizes is None else sizes, margin,
                                           name, extra=extra)
    for note in notes:
        warnings.warn(f"{name}: {note}", stacklevel=2)
    lo, hi = used_margin, np.asarray(hu.shape) - used_margin
    threshold = (soft_hu - window[0]) / (window[1] - window[0])      # soft_hu on the [0, 1] scale
    soft = _integral(hu >= soft_hu) if lung_filter == "kit" else None

    kept_a, kept_b, kept_stat, kept_cubes, tries = [], [], [], [], 0
    while sum(len(k) for k in kept_a) < n_pairs and tries < max_tries:
        remaining = n_pairs - sum(len(k) for k in kept_a)
        # The released filter resizes every candidate (costly): small batches; the kit's reads a summed table.
        n = min(max(8, 2 * remaining) if lung_filter == "released" else max(256, 8 * n_pairs), max_tries - tries)
        a, b, _ = draw_box_pairs(rng, n, sizes, lo, hi, min_iou, sampler, extra)
        tries += n
        flat = np.stack([a, b], 1).reshape(-1, 6)                          # (2n, 6): a0, b0, a1, b1, ...
        volume = (flat[:, 3:] - flat[:, :3]).prod(1)
        cubes = None
        if lung_filter == "kit":
            stat = _box_sums(soft, flat) / volume
        else:
            if crop_resize == "released":
                extended = extract_boxes_released(hu, flat, cube, window)
            else:
                extended = extract_boxes(hu, flat, cube, window)
            stat = released_lung_sum(extended, threshold, cube[2]) / volume
            cubes = extended[..., :cube[2]].astype(np.float32)
        ok = (stat.reshape(-1, 2) <= max_soft_fraction).all(1)
        kept_a.append(a[ok])
        kept_b.append(b[ok])
        kept_stat.append(stat.reshape(-1, 2)[ok])
        if cubes is not None:
            kept_cubes.append(cubes.reshape(n, 2, *cube)[ok])
    a = np.concatenate(kept_a)[:n_pairs]
    b = np.concatenate(kept_b)[:n_pairs]
    if len(a) == 0:
        raise ValueError(f"{name}: no valid crop pair found after {tries} tries (every candidate had too many voxels "
                         f">= {soft_hu:g} HU for the {lung_filter} lung filter (limit {max_soft_fraction:.0%})); "
                         f"{(hu >= soft_hu).mean():.0%} of the scan is >= {soft_hu:g} HU — is it a chest CT in HU?")
    if len(a) < n_pairs:
        notes.append(f"only {len(a)} of {n_pairs} pairs passed the filters in {tries} tries")
    boxes = np.stack([a, b], 1)                                             # (P, 2, 6)
    if kept_cubes:
        cubes = np.concatenate(kept_cubes)[:n_pairs]
    elif crop_resize == "released":
        cubes = extract_boxes_released(hu, boxes.reshape(-1, 6), cube, window)[..., :cube[2]]
        cubes = cubes.astype(np.float32).reshape(len(a), 2, *cube)
    else:
        cubes = extract_boxes(hu, boxes.reshape(-1, 6), cube, window).reshape(len(a), 2, *cube)
    return CropPairs(cubes=np.ascontiguousarray(cubes), boxes=boxes, iou=box_iou(a, b),
                     soft_fraction=np.concatenate(kept_stat)[:n_pairs], tries=tries,
                     margin=tuple(int(m) for m in used_margin), notes=notes)


def cubes_around(volume: np.ndarray, centres: np.ndarray, size: Sequence[int], fill: float) -> np.ndarray:
    """Cubes of ``size`` ``(sx, sy, sz)`` centred on integer voxel ``centres`` ``(N, 3)`` → ``(N, sx, sy, sz)``.

    The centre voxel lands at index ``size // 2``; parts outside the volume are ``fill``. Only the margin
    the centres actually need is padded."""
    size = _triple(size, "size")
    if (size < 1).any():
        raise ValueError(f"size must be positive, got {tuple(size)}")
    centres = np.asarray(centres, dtype=np.int64).reshape(-1, 3)
    start = centres - size // 2                                        # (N, 3)
    if len(start) == 0:
        return np.zeros((0, *size), dtype=volume.dtype)
    pad_lo = np.maximum(0, -start.min(0))
    pad_hi = np.maximum(0, (start + size).max(0) - np.asarray(volume.shape))
    if pad_lo.any() or pad_hi.any():
        volume = np.pad(volume, list(zip(pad_lo, pad_hi)), constant_values=fill)
    start = start + pad_lo
    windows = sliding_window_view(volume, tuple(int(s) for s in size))
    return windows[start[:, 0], start[:, 1], start[:, 2]]


@dataclass
class PatchSample:
    """Result of :func:`sample_patches`. ``image`` ``(n, C, px, py, pz)``; ``mask`` ``(n, px, py, pz)`` or
    ``(n, K, px, py, pz)`` like the input mask; ``origins`` int64 ``(n, 3)`` (patch corner in the input's voxels);
    ``forced`` bool ``(n,)``: patch placed to contain a foreground voxel."""

    image: np.ndarray
    mask: np.ndarray
    origins: np.ndarray
    forced: np.ndarray


def sample_patches(image: np.ndarray, mask: np.ndarray, patch: Sequence[int], n: int, fg_fraction: float,
                   rng: np.random.Generator, pad_value: float = 0.0) -> PatchSample:
    """Draw ``n`` training patches with foreground oversampling (nnU-Net style).

    image ``(C, X, Y, Z)``; mask ``(X, Y, Z)`` label map or ``(K, X, Y, Z)`` foreground regions (e.g. BraTS
    WT/TC/ET; no background channel). Foreground = any non-zero voxel.
    ``round(n * fg_fraction)`` patches are placed so that a uniformly drawn foreground voxel lies inside them
    (at a random position, so the lesion is not always centred); the rest are uniform. Without foreground
    voxels every patch is uniform. A volume smaller than ``patch`` is padded at its far end (image with
    ``pad_value``, mask with 0).
    """
    image, mask = np.asarray(image), np.asarray(mask)
    if image.ndim != 4:
        raise ValueError(f"image must be (C, X, Y, Z), got shape {image.shape}")
    spatial = image.shape[1:]
    if mask.shape[-3:] != spatial or mask.ndim not in (3, 4):
        raise ValueError(f"mask must be (X, Y, Z) or (K, X, Y, Z) matching image {spatial}, got {mask.shape}")
    patch = _triple(patch, "patch")
    if (patch < 1).any() or n < 0 or not 0.0 <= fg_fraction <= 1.0:
        raise ValueError(f"need positive patch, n >= 0 and fg_fraction in [0, 1]; got {tuple(patch)}, {n}, {fg_fraction}")
    grow = np.maximum(0, patch - np.asarray(spatial))
    if grow.any():
        image = np.pad(image, [(0, 0)] + [(0, int(g)) for g in grow], constant_values=pad_value)
        mask = np.pad(mask, [(0, 0)] * (mask.ndim - 3) + [(0, int(g)) for g in grow])
    shape = np.asarray(image.shape[1:])
    highest = shape - patch                                              # largest valid origin per axis
    foreground = np.argwhere((mask != 0).any(0) if mask.ndim == 4 else mask != 0)   # (F, 3)
    n_fg = int(round(n * fg_fraction)) if len(foreground) else 0
    origins = np.floor(rng.random((n, 3)) * (highest + 1)).astype(np.int64)
    forced = np.zeros(n, dtype=bool)
    if n_fg:
        voxels = foreground[rng.integers(0, len(foreground), n_fg)]
        # The chosen voxel sits at a random offset inside the patch; clipping keeps it inside (see tests).
        origins[:n_fg] = np.clip(voxels - np.floor(rng.random((n_fg, 3)) * patch).astype(np.int64), 0, highest)
        forced[:n_fg] = True
    px, py, pz = (int(p) for p in patch)
    image_windows = sliding_window_view(image, (px, py, pz), axis=(1, 2, 3))   # (C, ox, oy, oz, px, py, pz)
    image_patches = np.moveaxis(image_windows[:, origins[:, 0], origins[:, 1], origins[:, 2]], 0, 1)
    mask_windows = sliding_window_view(mask, (px, py, pz), axis=(-3, -2, -1))
    if mask.ndim == 4:
        mask_patches = np.moveaxis(mask_windows[:, origins[:, 0], origins[:, 1], origins[:, 2]], 0, 1)
    else:
        mask_patches = mask_windows[origins[:, 0], origins[:, 1], origins[:, 2]]
    return PatchSample(image=np.ascontiguousarray(image_patches), mask=np.ascontiguousarray(mask_patches),
                       origins=origins, forced=forced)
