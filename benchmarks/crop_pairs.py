"""Benchmark: PCRL crop-pair extraction per CT scan, in one process and across all cores.

Builds synthetic LUNA16-sized chest CTs (300 mm cubes: about 300×300×300 voxels once resampled to 1 mm; stored
at a LUNA-like native spacing so the resampling is part of the cost), then times

1. one scan in this process, step by step: read, resample to 1 mm, ``crop_pairs`` (16 pairs, 64×64×32 cube);
2. ``prepare_pretraining_cubes`` over all scans with ``num_workers=1`` and with ``num_workers=os.cpu_count()``
   (each into a fresh folder; includes starting the worker processes);
3. the cached rerun (every scan reused).

Prints seconds per scan. Then the crop recipe, released (default) vs kit, on one synthetic scan at 1 mm:

4. the size shares of pairs with IoU > 0.25 before the lung filter: the released sampler's exact enumeration
   (:func:`~pcrl_lib.data.crops.pair_size_shares`) next to draws of both samplers;
5. the lung filter's pass rate per crop size (boxes placed uniformly): released (sum over the resized crop vs 15 %
   of the original crop) vs kit (15 % of the crop's voxels);
6. the size shares of the pairs finally kept by ``crop_pairs`` with each whole recipe.

Run: ``python benchmarks/crop_pairs.py [--scans 4] [--spacing 0.75,0.75,1.25] [--recipe-pairs 200]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def synthetic_chest(extent_mm: float, spacing: tuple[float, float, float], seed: int) -> np.ndarray:
    """(X, Y, Z) int16 HU: air outside a body ellipse, soft tissue 40 HU, two lungs at -850 HU, noise σ 20 HU."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(round(extent_mm / s)) for s in spacing)
    x, y, z = np.ogrid[-1:1:shape[0] * 1j, -1:1:shape[1] * 1j, -1:1:shape[2] * 1j]
    jitter = 1 + 0.05 * rng.standard_normal(3)          # every scan a slightly different body
    hu = np.full(shape, -1000.0, dtype=np.float32)
    body = (x / (0.92 * jitter[0])) ** 2 + (y / (0.75 * jitter[1])) ** 2 < 1
    hu[np.broadcast_to(body, shape)] = 40.0
    lungs = ((np.abs(x) - 0.4) / 0.33) ** 2 + (y / (0.55 * jitter[2])) ** 2 + (z / 0.8) ** 2 < 1
    hu[lungs] = -850.0
    hu += rng.normal(0.0, 20.0, shape).astype(np.float32)
    return np.clip(hu, -1024, 3071).astype(np.int16)


def recipe_tables(hu: np.ndarray, pairs: int, boxes_per_size: int = 60) -> None:
    """Print the released vs kit crop recipe on one scan ``hu`` (1 mm grid, HU): tables 4–6 of the docstring."""
    from pcrl_lib.data.crops import (EXTRA_SLICES, PAPER_CROP_SIZES, PAPER_CUBE, PAPER_MARGIN, SOFT_HU, crop_pairs,
                                     draw_box_pairs, extract_boxes_released, pair_size_shares, released_lung_sum)

    sizes = np.array(PAPER_CROP_SIZES)
    lo, hi = np.array(PAPER_MARGIN), np.array(hu.shape) - PAPER_MARGIN
    names = ["×".join(map(str, s)) for s in sizes]

    def shares(boxes: np.ndarray) -> np.ndarray:
        found = boxes[..., 3:] - boxes[..., :3]
        return np.array([100 * (found.reshape(-1, 3) == s).all(1).mean() for s in sizes])

    exact = pair_size_shares(hu.shape, sizes, PAPER_MARGIN)
    rows = {"released, exact": 100 * (exact.sum(0) + exact.sum(1)) / 2}
    for sampler in ("released", "kit"):
        a, b, _ = draw_box_pairs(np.random.default_rng(0), 20_000, sizes, lo, hi, sampler=sampler)
        rows[f"{sampler}, 20k draws"] = shares(np.stack([a, b], 1))

    rng = np.random.default_rng(1)
    threshold = (SOFT_HU + 1000.0) / 2000.0
    rates = {"released filter": [], "kit filter": []}
    for size in sizes:
        top = hi - np.array([1, 1, 1 + EXTRA_SLICES]) - size
        start = lo + np.floor(rng.random((boxes_per_size, 3)) * (top - lo + 1)).astype(np.int64)
        boxes = np.concatenate([start, start + size], 1)
        stat = released_lung_sum(extract_boxes_released(hu, boxes, PAPER_CUBE), threshold, PAPER_CUBE[2]) / size.prod()
        rates["released filter"].append(100 * (stat <= 0.15).mean())
        kit = [(hu[x0:x1, y0:y1, z0:z1] >= SOFT_HU).mean() for x0, y0, z0, x1, y1, z1 in boxes]
        rates["kit filter"].append(100 * (np.array(kit) <= 0.15).mean())

    kept = {}
    for recipe in ("released", "kit"):
        t0 = time.perf_counter()
        result = crop_pairs(hu, cube=PAPER_CUBE, n_pairs=pairs, rng=np.random.default_rng(2), max_tries=200_000,
                            sampler=recipe, lung_filter=recipe, crop_resize=recipe)
        kept[f"{recipe} recipe, {len(result)} pairs kept of {result.tries} ({time.perf_counter() - t0:.0f} s)"] = \
            shares(result.boxes)

    def table(title: str, data: dict) -> None:
        print(f"\n{title}\n{'':<44}" + "".join(f"{n:>12}" for n in names))
        for label, values in data.items():
            print(f"{label:<44}" + "".join(f"{v:11.1f}%" for v in values))

    table(f"4. size shares of pairs with IoU > 0.25, before the lung filter (scan {hu.shape}, margin 70/15)", rows)
    table(f"5. lung-filter pass rate per crop size ({boxes_per_size} uniform boxes each)", rates)
    table("6. size shares of the pairs crop_pairs keeps (whole recipe)", kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=4, help="number of synthetic scans (default 4)")
    parser.add_argument("--extent", type=float, default=300.0, help="scan side in mm (default 300)")
    parser.add_argument("--spacing", default="0.75,0.75,1.25", help="native spacing x,y,z in mm (LUNA-like)")
    parser.add_argument("--pairs", type=int, default=16, help="pairs per scan (default 16)")
    parser.add_argument("--recipe-pairs", type=int, default=200,
                        help="pairs kept per recipe for the released-vs-kit size shares (default 200; 0 skips)")
    args = parser.parse_args()

    from pcrl_lib.data.preprocess import crop_pairs, prepare_pretraining_cubes, resample
    from pcrl_lib.data.volume import Volume, read_volume, write_volume

    spacing = tuple(float(s) for s in args.spacing.split(","))
    cores = os.cpu_count() or 1
    cube = (64, 64, 32)
    with tempfile.TemporaryDirectory(prefix="pcrl_bench_") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        paths = [write_volume(Volume(synthetic_chest(args.extent, spacing, seed), spacing,
                                     origin=(-150.0, -150.0, -300.0)), tmp / "scans" / f"bench{seed}.mhd")
                 for seed in range(args.scans)]
        native = read_volume(paths[0])
        print(f"wrote {args.scans} scans of {native.shape} voxels at {spacing} mm "
              f"in {time.perf_counter() - t0:.1f} s; {cores} CPU core(s)")

        t0 = time.perf_counter()
        volume = read_volume(paths[0])
        t1 = time.perf_counter()
        grid = resample(volume, 1.0)
        t2 = time.perf_counter()
        pairs = crop_pairs(grid.array, cube=cube, n_pairs=args.pairs, rng=np.random.default_rng(0), name=str(paths[0]))
        t3 = time.perf_counter()
        print(f"one scan, this process: read {t1 - t0:.2f} s, resample to 1 mm {grid.shape} {t2 - t1:.2f} s, "
              f"crop_pairs {t3 - t2:.2f} s ({len(pairs)} pairs, {pairs.tries} tries) → {t3 - t0:.2f} s")

        rows = []
        for workers in dict.fromkeys((1, cores)):
            out = tmp / f"cubes_w{workers}"
            t0 = time.perf_counter()
            manifest = prepare_pretraining_cubes(paths, out, cube=cube, pairs_per_scan=args.pairs,
                                                 num_workers=workers, progress=False)
            in_worker = np.mean([e["seconds"] for e in manifest["items"].values()])
            rows.append((f"prepare_pretraining_cubes num_workers={workers}", time.perf_counter() - t0, in_worker))
        t0 = time.perf_counter()
        prepare_pretraining_cubes(paths, out, cube=cube, pairs_per_scan=args.pairs, num_workers=cores, progress=False)
        rows.append(("cached rerun (all reused)", time.perf_counter() - t0, float("nan")))

        # wall s / scan includes starting the workers; "work s / scan" is each scan's own time inside its worker.
        print(f"\n{'run':<46} {'total s':>8} {'wall s / scan':>14} {'work s / scan':>14}")
        for label, seconds, in_worker in rows:
            print(f"{label:<46} {seconds:8.2f} {seconds / args.scans:14.3f} {in_worker:14.3f}")
        size_mb = sum(p.stat().st_size for p in out.glob("*.npy")) / 2**20
        print(f"cache: {size_mb:.1f} MiB for {args.scans} scans ({size_mb / args.scans:.1f} MiB per scan, float32)")
        if args.recipe_pairs:
            recipe_tables(grid.array, args.recipe_pairs)


if __name__ == "__main__":
    main()
