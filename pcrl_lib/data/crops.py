"""Cutting crops out of 3D arrays, vectorised: PCRL / Models Genesis crop pairs, cubes around points, and
training patches with foreground oversampling.

Legend (PCRL_SPEC §7): a *box* is ``(x0, y0, z0, x1, y1, z1)`` in voxels, half-open (``x0 <= x < x1``), on the
1 mm grid of the scan; IoU = |A ∩ B| / |A ∪ B| of two boxes; the *lung filter* (Models Genesis) drops a crop
when more than ``max_soft_fraction`` (15 %) of its voxels are ``>= soft_hu`` (-150 HU, i.e. not lung or air);
the *margin* keeps crops ``margin`` voxels away from the scan's border (70 in-plane, 15 along z), where the
table, the body wall and air outside the body are.
Arrays are ``(X, Y, Z)`` (Z = slices); a pair of crops is ``(2, X, Y, Z)``; ``P`` = number of pairs.
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
               name: str = "scan") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Sizes that fit a scan of ``shape`` and the margin actually used, with notes saying what was changed.

    A margin is reduced (per axis) to what still leaves room for the largest usable crop between the margins;
    crop sizes larger than the scan are dropped. Raises ``ValueError`` when no size fits at all."""
    shape, margin = np.asarray(shape, dtype=np.int64), _triple(margin, "margin")
    sizes = np.asarray(sizes, dtype=np.int64).reshape(-1, 3)
    if len(sizes) == 0 or (sizes < 1).any():
        raise ValueError(f"{name}: crop sizes must be positive (x, y, z) triples, got {sizes.tolist()}")
    fits = (sizes <= shape).all(1)
    if not fits.any():
        raise ValueError(f"{name}: scan of shape {tuple(shape)} (1 mm voxels) is smaller than every crop size "
                         f"{[tuple(s) for s in sizes]}; use a smaller cube or a larger scan")
    notes = []
    if not fits.all():
        notes.append(f"crop sizes {[tuple(int(v) for v in s) for s in sizes[~fits]]} do not fit the scan "
                     f"{tuple(int(v) for v in shape)} and were not used")
    sizes = sizes[fits]
    room = (shape - sizes.max(0)) // 2
    used = np.minimum(margin, room)
    if (used < margin).any():
        notes.append(f"margin reduced from {tuple(int(v) for v in margin)} to {tuple(int(v) for v in used)} voxels: "
                     f"the scan {tuple(int(v) for v in shape)} is too small for the largest crop "
                     f"{tuple(int(v) for v in sizes.max(0))} plus the full margin")
    return sizes, used, notes


@dataclass
class CropPairs:
    """Result of :func:`crop_pairs`. ``cubes`` float32 ``(P, 2, X, Y, Z)`` in [0, 1]; ``boxes`` int64
    ``(P, 2, 6)`` on the 1 mm grid; ``iou`` ``(P,)``; ``soft_fraction`` ``(P, 2)`` fraction of voxels >= soft_hu;
    ``tries`` candidate pairs drawn; ``margin`` used; ``notes`` what was adapted to the scan."""

    cubes: np.ndarray
    boxes: np.ndarray
    iou: np.ndarray
    soft_fraction: np.ndarray
    tries: int
    margin: tuple
    notes: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.cubes)


def _draw_candidates(rng: np.random.Generator, n: int, sizes: np.ndarray, compatible: np.ndarray,
                     lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``n`` candidate box pairs ``(n, 6)`` each: box A uniform inside ``[lo, hi)``, box B of a size that can
    reach the IoU threshold, its centre shifted from A's by at most half the smaller box per axis."""
    ia = rng.integers(0, len(sizes), n)
    # Pick B's size uniformly among those compatible with A's: inverse-CDF on each row of the matrix.
    cdf = np.cumsum(compatible[ia], axis=1) / compatible[ia].sum(1, keepdims=True)
    ib = (rng.random((n, 1)) > cdf).sum(1)
    sa, sb = sizes[ia], sizes[ib]
    a0 = lo + np.floor(rng.random((n, 3)) * (hi - lo - sa + 1)).astype(np.int64)
    shift = (rng.random((n, 3)) * 2 - 1) * np.minimum(sa, sb) / 2
    b0 = np.rint(a0 + sa / 2 + shift - sb / 2).astype(np.int64)
    b0 = np.clip(b0, lo, hi - sb)
    return np.concatenate([a0, a0 + sa], 1), np.concatenate([b0, b0 + sb], 1)


def extract_boxes(volume: np.ndarray, boxes: np.ndarray, out_size: Sequence[int],
                  window: tuple[float, float] = HU_WINDOW) -> np.ndarray:
    """Crop ``boxes`` ``(N, 6)`` (inside the volume) from ``volume`` ``(X, Y, Z)``, clip to ``window`` → [0, 1],
    resize each to ``out_size`` (trilinear) → float32 ``(N, *out_size)``. Boxes of one size are done together."""
    lo, hi = window
    sizes = boxes[:, 3:] - boxes[:, :3]
    out = np.empty((len(boxes), *out_size), dtype=np.float32)
    for size in np.unique(sizes, axis=0):
        rows = np.flatnonzero((sizes == size).all(1))
        windows = sliding_window_view(volume, tuple(int(s) for s in size))        # view, no copy
        crops = windows[boxes[rows, 0], boxes[rows, 1], boxes[rows, 2]]          # (n, sx, sy, sz) copy
        # Normalise before resizing: trilinear weights are convex, so the result stays in [0, 1].
        crops = (np.clip(crops.astype(np.float32), lo, hi) - np.float32(lo)) / np.float32(hi - lo)
        tensor = torch.from_numpy(np.ascontiguousarray(crops, dtype=np.float32))[:, None]
        if tuple(size) != tuple(out_size):
            tensor = F.interpolate(tensor, size=tuple(out_size), mode="trilinear", align_corners=False)
        out[rows] = tensor[:, 0].numpy()
    return out


def crop_pairs(hu: np.ndarray, cube: Sequence[int] = PAPER_CUBE, n_pairs: int = 16,
               rng: np.random.Generator | None = None, sizes: Sequence[Sequence[int]] | None = None,
               min_iou: float = MIN_IOU, margin: Sequence[int] = PAPER_MARGIN, soft_hu: float = SOFT_HU,
               max_soft_fraction: float = MAX_SOFT_FRACTION, max_tries: int = 20_000,
               window: tuple[float, float] = HU_WINDOW, name: str = "scan") -> CropPairs:
    """Cut up to ``n_pairs`` pairs of overlapping crops from one CT scan resampled to 1 mm (PCRL_SPEC §7).

    hu: ``(X, Y, Z)`` Hounsfield units on a 1 mm grid. Each pair has box IoU > ``min_iou``, sizes from
    ``sizes`` (default: the paper's five, scaled with ``cube``), both crops pass the lung filter and lie inside
    the margin; crops are HU-clipped to ``window`` → [0, 1] and resized (trilinear) to ``cube``.
    Candidates are drawn in vectorised batches, ``max_tries`` in all; fewer than ``n_pairs`` found → the ones
    found, with a note; none → ``ValueError`` naming ``name``. Margins too large for the scan are reduced, with
    a note and a warning.
    """
    if rng is None:
        raise ValueError("rng is required: pass numpy.random.default_rng(seed) so the crops are reproducible")
    hu = np.asarray(hu)
    if hu.ndim != 3:
        raise ValueError(f"{name}: hu must be a 3D (X, Y, Z) array, got shape {hu.shape}")
    if n_pairs < 1 or max_tries < 1:
        raise ValueError(f"n_pairs and max_tries must be >= 1, got {n_pairs}, {max_tries}")
    if not 0 <= min_iou < 1:
        raise ValueError(f"min_iou must be in [0, 1), got {min_iou}")
    cube = tuple(int(c) for c in _triple(cube, "cube"))
    sizes, used_margin, notes = fit_margin(hu.shape, scaled_crop_sizes(cube) if sizes is None else sizes, margin, name)
    for note in notes:
        warnings.warn(f"{name}: {note}", stacklevel=2)
    # Two sizes can only be paired if nesting the smaller in the larger reaches the IoU threshold.
    inter = np.minimum(sizes[:, None], sizes[None]).prod(-1)
    vol = sizes.prod(-1)
    compatible = (inter / (vol[:, None] + vol[None] - inter)) > min_iou
    lo, hi = used_margin, np.asarray(hu.shape) - used_margin

    soft = _integral(hu >= soft_hu)
    found_a, found_b, tries, n_found = [], [], 0, 0
    batch = max(256, 8 * n_pairs)
    while n_found < n_pairs and tries < max_tries:
        n = min(batch, max_tries - tries)
        a, b = _draw_candidates(rng, n, sizes, compatible, lo, hi)
        tries += n
        frac_a = _box_sums(soft, a) / (a[:, 3:] - a[:, :3]).prod(1)
        frac_b = _box_sums(soft, b) / (b[:, 3:] - b[:, :3]).prod(1)
        ok = (box_iou(a, b) > min_iou) & (frac_a <= max_soft_fraction) & (frac_b <= max_soft_fraction)
        found_a.append(a[ok])
        found_b.append(b[ok])
        n_found += int(ok.sum())
    if n_found == 0:
        raise ValueError(f"{name}: no valid crop pair found after {tries} tries (every candidate had more than "
                         f"{max_soft_fraction:.0%} of voxels >= {soft_hu:g} HU or too little overlap); "
                         f"{(hu >= soft_hu).mean():.0%} of the scan is >= {soft_hu:g} HU — is it a chest CT in HU?")
    a = np.concatenate(found_a)[:n_pairs]
    b = np.concatenate(found_b)[:n_pairs]
    if len(a) < n_pairs:
        notes.append(f"only {len(a)} of {n_pairs} pairs passed the filters in {tries} tries")
    boxes = np.stack([a, b], 1)                                             # (P, 2, 6)
    flat = boxes.reshape(-1, 6)
    cubes = extract_boxes(hu, flat, cube, window).reshape(len(a), 2, *cube)  # (P, 2, X, Y, Z)
    soft_fraction = (_box_sums(soft, flat) / (flat[:, 3:] - flat[:, :3]).prod(1)).reshape(-1, 2)
    return CropPairs(cubes=cubes, boxes=boxes, iou=box_iou(a, b), soft_fraction=soft_fraction, tries=tries,
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
