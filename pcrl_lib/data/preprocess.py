"""Preprocessing of the kit's datasets (PCRL_SPEC §7, §10): resampling, intensity normalisation, and the cached,
resumable, parallel preparation steps the trainers read from.

==========================================  =====================================================  ===================
step                                        output per item (in ``out_dir``)                       read with
==========================================  =====================================================  ===================
:func:`prepare_pretraining_cubes` (LUNA16)  ``<scan>.npy`` float32 ``(P, 2, X, Y, Z)`` crop pairs    :class:`PairDataset`
:func:`prepare_candidate_cubes` (LUNA16)    ``<scan>.npy`` float32 ``(N, X, Y, Z)`` candidate cubes  :class:`CandidateDataset`
:func:`prepare_segmentation_cases` (LiTS,   ``<case>.npz``: image ``(C, X, Y, Z)``, mask ``(X, Y, Z)``  :class:`SegmentationCaseDataset`
BraTS)                                                                                             + :func:`sample_patches`
:func:`prepare_image_cache` (2D)            one ``images.npy`` uint8 ``(N, S, S)`` + ``index.csv``   :class:`ImageCacheDataset`
==========================================  =====================================================  ===================

Every step writes ``manifest.json`` (inputs with size + mtime, parameters, outputs, per-item records such as
boxes and IoUs) after each item, so reruns are instant and interrupted runs continue (see :mod:`.cache`).
Randomness comes from ``seed`` and the item's name only: the same seed gives the same crops whatever the number
of workers. Legend: HU = Hounsfield units; arrays ``(X, Y, Z)`` with Z = slices; spacing in mm along x, y, z.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..fileio import fingerprint
from .cache import (CacheItem, CandidateDataset, ImageCacheDataset, OnDone, PairDataset, SegmentationCaseDataset,
                    atomic_save_npy, atomic_save_npz, item_rng, prepare_image_cache, read_manifest, run_cached,
                    scan_name)
from .images2d import load_image, resize_image
from .crops import (HU_WINDOW, MAX_SOFT_FRACTION, MIN_IOU, PAPER_CROP_SIZES, PAPER_CUBE, PAPER_MARGIN, RECIPES,
                    SOFT_HU, CropPairs, PatchSample, box_iou, crop_pairs, cubes_around, sample_patches,
                    scaled_crop_sizes)
from .orientation import to_lps
from .volume import Volume, read_volume, to_sitk

__all__ = [
    "CT_WINDOWS", "resample", "resampled_shape", "resample_to_reference", "normalize_hu", "zscore_in_mask",
    "crop_pairs", "CropPairs", "box_iou", "scaled_crop_sizes", "prepare_pretraining_cubes", "PairDataset",
    "candidate_cubes", "CandidateCubes", "prepare_candidate_cubes", "CandidateDataset",
    "SegmentationCase", "prepare_segmentation_cases", "SegmentationCaseDataset", "sample_patches", "PatchSample",
    "prepare_image_cache", "ImageCacheDataset", "load_image", "resize_image", "read_manifest", "scan_name",
    "data_recipe",
    "PAPER_CUBE", "PAPER_CROP_SIZES", "PAPER_MARGIN", "MIN_IOU", "SOFT_HU", "MAX_SOFT_FRACTION", "HU_WINDOW",
]

# HU windows (lo, hi) mapped to [0, 1]: "lung" is PCRL's pretraining range, "liver" the LiTS window.
CT_WINDOWS = {"lung": HU_WINDOW, "liver": (-200.0, 250.0)}
ORDERS = ("linear", "nearest")


# -------------------------------------------------------------------------------------- geometry & intensity
def _spacing3(spacing, name: str = "spacing") -> np.ndarray:
    arr = np.asarray(spacing, dtype=np.float64).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, 3)
    if arr.size != 3 or not np.isfinite(arr).all() or (arr <= 0).any():
        raise ValueError(f"{name} must be one positive number or three (sx, sy, sz) in mm, got {spacing!r}")
    return arr


def _resample_onto(volume: Volume, size, spacing, origin, direction, order: str, fill: float | None) -> Volume:
    import SimpleITK as sitk

    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    image = to_sitk(volume)
    if order == "linear":
        image = sitk.Cast(image, sitk.sitkFloat32)  # interpolate in float, whatever the stored type
    f = sitk.ResampleImageFilter()
    f.SetSize([int(s) for s in size])
    f.SetOutputSpacing([float(s) for s in spacing])
    f.SetOutputOrigin([float(o) for o in origin])
    f.SetOutputDirection([float(d) for d in np.asarray(direction).ravel()])
    f.SetInterpolator(sitk.sitkLinear if order == "linear" else sitk.sitkNearestNeighbor)
    # Points outside the source grid: the volume's minimum (air in CT, background in masks/MRI) by default.
    f.SetDefaultPixelValue(float(np.min(volume.array)) if fill is None else float(fill))
    out = f.Execute(image)
    array = sitk.GetArrayFromImage(out).transpose(2, 1, 0)  # (Z, Y, X) → (X, Y, Z)
    return Volume(array=np.ascontiguousarray(array), spacing=tuple(out.GetSpacing()), origin=tuple(out.GetOrigin()),
                  direction=np.asarray(out.GetDirection(), dtype=np.float64).reshape(3, 3), path=volume.path)


def resampled_shape(shape: Sequence[int], spacing: float | Sequence[float],
                    new_spacing: float | Sequence[float]) -> tuple[int, int, int]:
    """Voxels per axis of a grid resampled from ``spacing`` to ``new_spacing`` mm with the same physical extent:
    ``n' = max(1, round(n · s / s'))`` per axis (round half to even, as ``np.rint``).

    ``shape``: ``(X, Y, Z)`` voxels; ``spacing``, ``new_spacing``: one number (every axis) or one per axis, in mm.
    Returns three Python ints."""
    counts = np.asarray(shape, dtype=np.float64)
    if counts.shape != (3,) or (counts < 1).any():
        raise ValueError(f"shape must be three positive voxel counts (X, Y, Z), got {shape!r}")
    old, new = _spacing3(spacing, "spacing"), _spacing3(new_spacing, "new_spacing")
    return tuple(int(n) for n in np.maximum(1, np.rint(counts * old / new)))


def resample(volume: Volume, spacing: float | Sequence[float] = 1.0, order: str = "linear",
             fill: float | None = None) -> Volume:
    """Resample ``volume`` to ``spacing`` mm with SimpleITK, keeping origin and direction.

    ``order``: ``"linear"`` (images; output float32) or ``"nearest"`` (label maps; dtype kept). The new grid is
    :func:`resampled_shape` (``round(shape · old_spacing / spacing)`` voxels per axis). ``fill``: value where the new
    grid leaves the old one (default: the volume's minimum). A volume already at ``spacing`` is returned as is (no
    copy)."""
    new = _spacing3(spacing)
    old = _spacing3(volume.spacing, "volume.spacing")
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    if np.allclose(old, new, rtol=0, atol=1e-6):
        return volume
    return _resample_onto(volume, resampled_shape(volume.shape, old, new), new, volume.origin, volume.direction,
                          order, fill)


def _same_grid(a: Volume, b: Volume) -> bool:
    return (a.shape == b.shape and np.allclose(a.spacing, b.spacing, atol=1e-6)
            and np.allclose(a.origin, b.origin, atol=1e-4) and np.allclose(a.direction, b.direction, atol=1e-6))


def resample_to_reference(volume: Volume, reference: Volume, order: str = "nearest",
                          fill: float | None = None) -> Volume:
    """Resample ``volume`` onto ``reference``'s grid (shape, spacing, origin, direction) in physical space —
    e.g. a mask stored on another grid than its CT. Returned as is when the grids already match."""
    if _same_grid(volume, reference):
        return volume
    return _resample_onto(volume, reference.shape, reference.spacing, reference.origin, reference.direction,
                          order, fill)


def normalize_hu(array: np.ndarray, lo: float = HU_WINDOW[0], hi: float = HU_WINDOW[1]) -> np.ndarray:
    """Clip HU to ``[lo, hi]`` and map linearly to [0, 1] → float32 (``lo`` → 0, ``hi`` → 1).

    Defaults: PCRL's pretraining range [-1000, 1000]; ``CT_WINDOWS["liver"]`` = (-200, 250) for LiTS."""
    if not hi > lo:
        raise ValueError(f"HU window needs hi > lo, got lo={lo}, hi={hi}")
    array = np.asarray(array, dtype=np.float32)
    return (np.clip(array, lo, hi) - np.float32(lo)) / np.float32(hi - lo)


def zscore_in_mask(image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-channel z-score of an MRI ``(C, X, Y, Z)`` inside ``mask`` ``(X, Y, Z)`` (default: the brain = voxels
    non-zero in any channel); outside the mask the result is 0. Returns float32 of the same shape.
    NaN/±inf in ``image`` are a ValueError naming the channel (one would make the whole channel NaN)."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 4:
        raise ValueError(f"image must be (C, X, Y, Z), got shape {image.shape}")
    finite = np.isfinite(image).all(axis=(1, 2, 3))                      # (C,)
    if not finite.all():
        channel = int(np.flatnonzero(~finite)[0])
        count = int((~np.isfinite(image[channel])).sum())
        raise ValueError(f"zscore_in_mask: channel {channel} holds {count} non-finite voxel(s) (NaN/±inf) of "
                         f"{int(image[channel].size)}; a z-score over them is NaN — fix the input (the readers "
                         "refuse such files unless nonfinite='keep')")
    mask = (image != 0).any(0) if mask is None else np.asarray(mask, dtype=bool)
    if mask.shape != image.shape[1:]:
        raise ValueError(f"mask shape {mask.shape} does not match image {image.shape[1:]}")
    if not mask.any():
        raise ValueError("zscore_in_mask: the mask is empty (all-zero image?); nothing to normalise")
    inside = image[:, mask]                                     # (C, M)
    mean = inside.mean(1)
    std = inside.std(1)
    std = np.where(std > 0, std, 1.0).astype(np.float32)       # a constant channel becomes 0, not NaN
    out = (image - mean[:, None, None, None]) / std[:, None, None, None]
    return np.where(mask[None], out, np.float32(0)).astype(np.float32)


# --------------------------------------------------------------------------------- PCRL pretraining crop pairs
def _pretraining_work(payload: dict, out_dir: Path, name: str) -> dict:
    start = time.perf_counter()
    volume = resample(read_volume(payload["path"]), payload["spacing"], "linear")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # margin notes go to the manifest and one summary warning instead
        # cut in LPS voxel order, so cubes of every scan share one anatomical orientation (and display upright);
        # boxes refer to that order. A no-op for identity directions (LUNA16, DICOM, the synthetic CT).
        pairs = crop_pairs(np.ascontiguousarray(to_lps(volume.array, volume.direction)), cube=payload["cube"],
                           n_pairs=payload["pairs_per_scan"],
                           rng=item_rng(payload["seed"], name), name=payload["path"], **payload["options"])
    output = f"{name}.npy"
    atomic_save_npy(out_dir / output, pairs.cubes)
    return {"outputs": [output], "n_pairs": len(pairs), "boxes": pairs.boxes.tolist(),
            "iou": np.round(pairs.iou, 4).tolist(), "soft_fraction": np.round(pairs.soft_fraction, 4).tolist(),
            "margin": list(pairs.margin), "tries": pairs.tries, "notes": pairs.notes,
            "shape_1mm": list(volume.shape), "seconds": round(time.perf_counter() - start, 3)}


def _warn_notes(manifest: dict, what: str) -> None:
    noted = sorted(name for name, e in manifest["items"].items() if e.get("notes"))
    if noted:
        first = manifest["items"][noted[0]]["notes"][0]
        warnings.warn(f"{what}: {len(noted)} scan(s) were adapted (e.g. {noted[0]}: {first}); "
                      "see the 'notes' of each item in manifest.json", stacklevel=3)


def prepare_pretraining_cubes(scan_paths: Sequence[str | Path], out_dir: str | Path,
                              cube: Sequence[int] = PAPER_CUBE, pairs_per_scan: int = 16, seed: int = 0,
                              num_workers: int = 1, progress: bool = True, spacing: float = 1.0,
                              sizes: Sequence[Sequence[int]] | None = None, min_iou: float = MIN_IOU,
                              margin: Sequence[int] = PAPER_MARGIN, soft_hu: float = SOFT_HU,
                              max_soft_fraction: float = MAX_SOFT_FRACTION, max_tries: int = 20_000,
                              window: tuple[float, float] = HU_WINDOW, on_error: str = "raise",
                              on_done: OnDone | None = None, sampler: str = "released",
                              lung_filter: str = "released", crop_resize: str = "released") -> dict:
    """PCRL's offline 3D step: for each CT scan (.mhd/.nrrd/.nii(.gz)/DICOM folder, in HU) resample to
    ``spacing`` mm and cut ``pairs_per_scan`` crop pairs (see :func:`crop_pairs`) → ``<scan>.npy``
    ``(P, 2, *cube)``; boxes, IoUs and notes go to the manifest, which is returned.

    ``sampler``, ``lung_filter``, ``crop_resize``: ``"released"`` (the authors' recipe, default) or ``"kit"``
    (see :mod:`pcrl_lib.data.crops`); recorded in the manifest's parameters.

    ``num_workers`` processes share the scans; ``on_error="skip"`` records failing scans instead of stopping;
    ``on_done(name, entry, reused)`` is called after each scan. Read the result with :class:`PairDataset`.
    """
    cube = tuple(int(c) for c in np.broadcast_to(np.asarray(cube, dtype=np.int64), (3,)))
    if pairs_per_scan < 1:
        raise ValueError(f"pairs_per_scan must be >= 1, got {pairs_per_scan}")
    options = {"sizes": None if sizes is None else [list(map(int, s)) for s in sizes], "min_iou": float(min_iou),
               "margin": [int(m) for m in np.broadcast_to(margin, (3,))], "soft_hu": float(soft_hu),
               "max_soft_fraction": float(max_soft_fraction), "max_tries": int(max_tries),
               "window": [float(w) for w in window], "sampler": sampler, "lung_filter": lung_filter,
               "crop_resize": crop_resize}
    for value, what in ((sampler, "sampler"), (lung_filter, "lung_filter"), (crop_resize, "crop_resize")):
        if value not in RECIPES:
            raise ValueError(f"{what} must be one of {RECIPES} ('released' = the authors' preprocessing), "
                             f"got {value!r}")
    params = {"cube": list(cube), "pairs_per_scan": int(pairs_per_scan), "seed": int(seed),
              "spacing": float(spacing), **options}
    items = [CacheItem(name=scan_name(p), inputs=(str(p),),
                       payload={"path": str(p), "cube": cube, "pairs_per_scan": int(pairs_per_scan),
                                "seed": int(seed), "spacing": float(spacing), "options": options})
             for p in scan_paths]
    if not items:
        raise ValueError("scan_paths is empty: no CT scans to prepare")
    manifest = run_cached("pretraining_cubes", items, out_dir, params, _pretraining_work, num_workers=num_workers,
                          progress=progress, on_error=on_error, on_done=on_done, desc="crop pairs")
    _warn_notes(manifest, "prepare_pretraining_cubes")
    return manifest


def data_recipe(dataset: Any) -> dict | None:
    """What the prepared cache behind ``dataset`` was made from, for a pretraining run's configuration: the
    step (``kind``), its parameters (sizes, crop recipe, seed; machine-specific paths left out) and ``files``, a
    hash of the input files' names and sizes — so a finished run is not reused on another data recipe.
    ``dataset`` may be wrapped (``.dataset``, e.g. ``ImagesOnly``, ``Subset``); ``None`` when no cache is behind it."""
    for _ in range(8):
        root = getattr(dataset, "root", None)
        if root is not None and (Path(root) / "manifest.json").is_file():
            break
        dataset = getattr(dataset, "dataset", None)
    else:
        return None
    manifest = read_manifest(root)
    params = {k: v for k, v in manifest["params"].items() if k not in ("paths", "chunk_size")}
    if manifest["kind"] == "image_cache":
        files = [Path(p).name for p in getattr(dataset, "paths", [])]
    else:
        files = sorted(f"{Path(i['path']).name}:{i['size']}" for e in manifest["items"].values()
                       for i in e.get("inputs", []))
    return {"kind": manifest["kind"], "params": params, "files": fingerprint(files)}


# ---------------------------------------------------------------------------------- LUNA16 candidate cubes
CANDIDATE_COLUMNS = ("coordX", "coordY", "coordZ")


@dataclass
class CandidateCubes:
    """Result of :func:`candidate_cubes`. ``cubes`` float32 ``(N, X, Y, Z)`` in [0, 1], centre voxel at
    ``size // 2``; ``labels`` int64 ``(N,)``; ``world`` ``(N, 3)`` mm; ``voxel`` int64 ``(N, 3)`` centres on the
    resampled grid; ``rows`` the kept rows' index labels in the input table."""

    cubes: np.ndarray
    labels: np.ndarray
    world: np.ndarray
    voxel: np.ndarray
    rows: np.ndarray
    notes: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.cubes)


def _candidate_table(candidates: Any, label_column: str, where: str):
    import pandas as pd

    table = candidates if isinstance(candidates, pd.DataFrame) else pd.DataFrame(candidates)
    missing = [c for c in (*CANDIDATE_COLUMNS, label_column) if c not in table.columns]
    if missing:
        raise ValueError(f"{where}: candidates lack column(s) {missing}; expected LUNA16's "
                         f"seriesuid, coordX, coordY, coordZ, {label_column}")
    coords = table[list(CANDIDATE_COLUMNS)].to_numpy(np.float64)
    if not np.isfinite(coords).all():
        raise ValueError(f"{where}: candidates have missing or non-finite coordinates")
    return table, coords, table[label_column].to_numpy().astype(np.int64)


def candidate_cubes(volume: Volume, candidates: Any, size: Sequence[int] = (48, 48, 48), spacing: float = 1.0,
                    max_negatives: int | None = None, rng: np.random.Generator | None = None,
                    window: tuple[float, float] = HU_WINDOW, fill_hu: float = -1000.0, label_column: str = "class",
                    name: str | None = None) -> CandidateCubes:
    """Cubes of ``size`` voxels (at ``spacing`` mm) centred on candidate world coordinates (LUNA16's
    ``coordX/Y/Z`` in mm, label in ``label_column``), HU-windowed to [0, 1].

    World → voxel goes through the resampled volume's geometry (origin, spacing, direction); beyond the scan's
    border cubes are ``fill_hu`` (air). ``max_negatives``: keep all positives and at most this many negatives,
    drawn with ``rng``. A candidate outside the scan raises ``ValueError`` naming it."""
    where = name or (str(volume.path) if volume.path else "volume")
    table, coords, labels = _candidate_table(candidates, label_column, where)
    keep = np.arange(len(table))
    notes = []
    if max_negatives is not None:
        if rng is None:
            raise ValueError("max_negatives needs rng (numpy.random.default_rng(seed)) to choose negatives reproducibly")
        negatives = np.flatnonzero(labels == 0)
        if len(negatives) > max_negatives:
            chosen = rng.choice(negatives, size=int(max_negatives), replace=False)
            keep = np.sort(np.concatenate([np.flatnonzero(labels != 0), chosen]))
            notes.append(f"kept {max_negatives} of {len(negatives)} negatives")
    grid = resample(volume, spacing, "linear", fill=fill_hu)
    voxel = np.rint(grid.world_to_voxel(coords[keep])).astype(np.int64)      # (N, 3)
    outside = ((voxel < 0) | (voxel >= np.asarray(grid.shape))).any(1)
    if outside.any():
        row = table.index[keep[np.argmax(outside)]]
        raise ValueError(f"{where}: {int(outside.sum())} candidate(s) lie outside the scan, e.g. row {row} at world "
                         f"{np.round(coords[keep][outside][0], 2).tolist()} mm → voxel {voxel[outside][0].tolist()} "
                         f"of {grid.shape}; are the coordinates world mm for this seriesuid?")
    cubes = normalize_hu(cubes_around(grid.array, voxel, size, fill_hu), *window)
    return CandidateCubes(cubes=cubes, labels=labels[keep], world=coords[keep], voxel=voxel,
                          rows=np.asarray(table.index[keep]), notes=notes)


def _candidate_work(payload: dict, out_dir: Path, name: str) -> dict:
    import pandas as pd

    start = time.perf_counter()
    frame = pd.DataFrame({"coordX": payload["world"][0], "coordY": payload["world"][1],
                          "coordZ": payload["world"][2], "class": payload["labels"]}, index=payload["rows"])
    found = candidate_cubes(read_volume(payload["path"]), frame, size=payload["size"], spacing=payload["spacing"],
                            max_negatives=payload["max_negatives"], rng=item_rng(payload["seed"], name),
                            window=payload["window"], fill_hu=payload["fill_hu"], name=payload["path"])
    output = f"{name}.npy"
    atomic_save_npy(out_dir / output, found.cubes)
    return {"outputs": [output], "labels": found.labels.tolist(), "world": np.round(found.world, 3).tolist(),
            "voxel": found.voxel.tolist(), "rows": found.rows.tolist(), "notes": found.notes,
            "seconds": round(time.perf_counter() - start, 3)}


def prepare_candidate_cubes(scans: Sequence[str | Path] | Mapping[str, str | Path], candidates: Any,
                            out_dir: str | Path, size: Sequence[int] = (48, 48, 48), spacing: float = 1.0,
                            max_negatives_per_scan: int | None = None, seed: int = 0, num_workers: int = 1,
                            progress: bool = True, window: tuple[float, float] = HU_WINDOW,
                            fill_hu: float = -1000.0, on_error: str = "raise", on_done: OnDone | None = None) -> dict:
    """LUNA16 false-positive reduction data: for each scan, the cubes of its candidates → ``<seriesuid>.npy``
    ``(N, *size)``; labels, world/voxel centres and table rows go to the manifest, which is returned.

    ``scans``: paths (seriesuid = file name without suffix) or ``{seriesuid: path}``. ``candidates``: the
    ``candidates.csv`` table (seriesuid, coordX, coordY, coordZ, class); rows of other scans are ignored, and a
    scan without candidates gets an empty array. Negatives are capped per scan (seeded by ``seed`` and the
    seriesuid). Read the result with :class:`CandidateDataset`."""
    import pandas as pd

    table = candidates if isinstance(candidates, pd.DataFrame) else pd.DataFrame(candidates)
    if "seriesuid" not in table.columns:
        raise ValueError("candidates lack the 'seriesuid' column (LUNA16 candidates.csv layout expected)")
    _, coords, labels = _candidate_table(table, "class", "candidates")
    scans = dict(scans) if isinstance(scans, Mapping) else {scan_name(p): p for p in scans}
    if not scans:
        raise ValueError("scans is empty: no CT scans to prepare")
    size = tuple(int(s) for s in np.broadcast_to(np.asarray(size, dtype=np.int64), (3,)))
    groups = {uid: np.flatnonzero(table["seriesuid"].astype(str).to_numpy() == uid) for uid in scans}
    params = {"size": list(size), "spacing": float(spacing), "max_negatives_per_scan": max_negatives_per_scan,
              "seed": int(seed), "window": [float(w) for w in window], "fill_hu": float(fill_hu)}
    items = []
    for uid, path in scans.items():
        rows = groups[uid]
        payload = {"path": str(path), "world": coords[rows].T.tolist(), "labels": labels[rows].tolist(),
                   "rows": table.index[rows].tolist(), "size": size, "spacing": float(spacing),
                   "max_negatives": max_negatives_per_scan, "seed": int(seed), "window": tuple(window),
                   "fill_hu": float(fill_hu)}
        # The item's key covers its candidate rows, so an edited candidates table recomputes that scan.
        key = fingerprint([payload["world"], payload["labels"], payload["rows"]])
        items.append(CacheItem(name=str(uid), inputs=(str(path),), key=key, payload=payload))
    return run_cached("candidate_cubes", items, out_dir, params, _candidate_work, num_workers=num_workers,
                      progress=progress, on_error=on_error, on_done=on_done, desc="candidate cubes")


# --------------------------------------------------------------------------- LiTS / BraTS segmentation volumes
@dataclass(frozen=True)
class SegmentationCase:
    """One case: ``images`` = one path per channel (LiTS: the CT; BraTS: t1, t1ce, t2, flair), ``mask`` = the
    label map path or None. The first image's grid is the case's grid."""

    name: str
    images: tuple
    mask: str | None = None


def _segmentation_work(payload: dict, out_dir: Path, name: str) -> dict:
    start = time.perf_counter()
    first, *others = [read_volume(p) for p in payload["images"]]
    reference = first if payload["spacing"] is None else resample(first, payload["spacing"], "linear")
    channels = [reference.array] + [resample_to_reference(v, reference, "linear").array for v in others]
    image = np.stack(channels).astype(np.float32)                          # (C, X, Y, Z)
    if payload["modality"] == "ct":
        image = normalize_hu(image, *payload["window"])
    else:
        image = zscore_in_mask(image)
    arrays = {"image": image, "spacing": np.asarray(reference.spacing), "origin": np.asarray(reference.origin),
              "direction": np.asarray(reference.direction)}
    record = {"channels": [Path(p).name for p in payload["images"]], "shape": list(image.shape),
              "spacing": list(reference.spacing)}
    if payload["mask"] is not None:
        mask_volume = read_volume(payload["mask"], dtype=np.float32)
        labels = mask_volume.array
        # O(n) checks (np.unique would sort hundreds of millions of voxels in a LiTS volume).
        if labels.min() < 0 or labels.max() > 255 or (labels != np.rint(labels)).any():
            raise ValueError(f"{payload['mask']}: a label map must hold integers in 0..255, "
                             f"found values in [{labels.min()}, {labels.max()}]")
        mask_volume = replace(mask_volume, array=labels.astype(np.uint8))
        mask = resample_to_reference(mask_volume, reference, "nearest", fill=0).array.astype(np.uint8)
        arrays["mask"] = mask
        record["labels"] = np.flatnonzero(np.bincount(mask.ravel(), minlength=256)).tolist()
    output = f"{name}.npz"
    atomic_save_npz(out_dir / output, **arrays)
    return {"outputs": [output], **record, "seconds": round(time.perf_counter() - start, 3)}


def prepare_segmentation_cases(cases: Sequence[SegmentationCase | Mapping], out_dir: str | Path,
                               modality: str = "ct", spacing: float | Sequence[float] | None = None,
                               window: tuple[float, float] = CT_WINDOWS["liver"], num_workers: int = 1,
                               progress: bool = True, on_error: str = "raise", on_done: OnDone | None = None) -> dict:
    """Normalised whole volumes for segmentation fine-tuning and sliding-window evaluation → ``<case>.npz`` with
    ``image`` float32 ``(C, X, Y, Z)``, ``mask`` uint8 ``(X, Y, Z)`` (labels unchanged) and the grid.

    ``modality="ct"`` (LiTS): HU window ``window`` → [0, 1]; ``"mri"`` (BraTS): per-channel z-score inside the
    brain (non-zero voxels). ``spacing``: resample the first image to it (None keeps its grid); other channels
    and the mask are resampled onto that grid in physical space (mask: nearest neighbour). Returns the manifest;
    read with :class:`SegmentationCaseDataset`, cut training patches with :func:`sample_patches`."""
    if modality not in ("ct", "mri"):
        raise ValueError(f"modality must be 'ct' (HU window) or 'mri' (z-score in brain), got {modality!r}")
    spacing = None if spacing is None else _spacing3(spacing).tolist()
    items = []
    for case in cases:
        if not isinstance(case, SegmentationCase):
            unknown = set(dict(case)) - {"name", "images", "mask"}
            if unknown or "name" not in case or "images" not in case:
                raise ValueError(f"a case needs keys name, images (and optionally mask); got {sorted(dict(case))}")
            case = SegmentationCase(**dict(case))
        images = (case.images,) if isinstance(case.images, (str, Path)) else tuple(case.images)
        if not images:
            raise ValueError(f"case {case.name!r} has no images")
        paths = [str(p) for p in images]
        mask = None if case.mask is None else str(case.mask)
        items.append(CacheItem(name=case.name, inputs=tuple(paths + ([mask] if mask else [])),
                               payload={"images": paths, "mask": mask, "spacing": spacing, "modality": modality,
                                        "window": tuple(window)}))
    if not items:
        raise ValueError("cases is empty: nothing to prepare")
    params = {"modality": modality, "spacing": spacing, "window": [float(w) for w in window] if modality == "ct" else None}
    return run_cached("segmentation_cases", items, out_dir, params, _segmentation_work, num_workers=num_workers,
                      progress=progress, on_error=on_error, on_done=on_done, desc="segmentation cases")
