"""Command line for the data layer (also installed as ``pcrl-data``).

    python -m pcrl_lib.data.cli check --dataset luna16 --root /data/pcrl/luna16 [--limit 200] [--deep]
    python -m pcrl_lib.data.cli synthetic --dataset nih --root data/cache/synthetic/nih -n 32 --seed 0
    python -m pcrl_lib.data.cli prepare --dim 3 --profile paper --data-root /data/pcrl [--num-workers 8]

``prepare`` builds the pretraining cache of a profile (2D image cache or 3D crop-pair cache) and prints its
folder, which ``python -m pcrl_lib.train --data`` takes (prepare once, then launch one or many GPUs).

Exit codes: 0 fine, 1 problems found (listed), 2 bad arguments (e.g. an unknown dataset; the valid ones
are named).
"""

from __future__ import annotations

import argparse
import sys

from .check import DATASETS, check


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pcrl_lib.data.cli",
                                     description="Check dataset folders or write synthetic look-alikes.")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="check a dataset folder against the expected layout")
    c.add_argument("--dataset", required=True, help=f"one of: {', '.join(DATASETS)}")
    c.add_argument("--root", required=True, help="the dataset's root folder")
    c.add_argument("--limit", type=int, default=200, help="2D images to open (default 200; 0 = none, -1 = all)")
    c.add_argument("--deep", action="store_true",
                   help="also read every voxel (truncated .nii.gz files, NaN/inf voxels, mask labels) and fully "
                        "decode images; slower: reads whole volumes")
    s = sub.add_parser("synthetic", help="write a seeded synthetic look-alike in the real on-disk format")
    s.add_argument("--dataset", required=True, help=f"one of: {', '.join(DATASETS)}")
    s.add_argument("--root", required=True, help="output folder (created; must be empty or a look-alike)")
    s.add_argument("-n", type=int, default=None, help="images / studies / scans / cases (default: smoke size)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--size", type=int, default=None, help="image side or in-plane voxels (default 64)")
    s.add_argument("--difficulty", type=float, default=0.3, help="0 = obvious findings … 1 = subtle")
    s.add_argument("--overwrite", action="store_true", help="replace a look-alike written with other parameters")
    p = sub.add_parser("prepare", help="build a profile's pretraining cache and print its folder")
    p.add_argument("--dim", type=int, choices=(2, 3), required=True, help="2 = chest X-ray images, 3 = CT crop pairs")
    p.add_argument("--profile", default="quick", help="smoke | quick | paper (sizes and which data)")
    p.add_argument("--data-root", default=None, help="folder with the real datasets (nih/, luna16/); required by paper")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "prepare":
        return _prepare(args)
    if args.dataset not in DATASETS:
        print(f"error: unknown dataset {args.dataset!r}; valid datasets: {', '.join(DATASETS)}", file=sys.stderr)
        return 2
    if args.command == "check":
        limit = None if args.limit < 0 else args.limit
        report = check(args.root, args.dataset, limit=limit, deep=args.deep)
        print(report)
        return 0 if report.ok else 1
    from . import synthetic

    try:
        root = synthetic.write(args.dataset, args.root, n=args.n, seed=args.seed, size=args.size,
                               difficulty=args.difficulty, overwrite=args.overwrite)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    params = synthetic.read_truth(root)["params"]
    print(f"wrote synthetic {args.dataset} look-alike to {root} "
          f"(n={params['n']}, size={params['size']}, seed={params['seed']}, difficulty={params['difficulty']})")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from . import profile_data

    try:
        build = profile_data.pretraining_set_2d if args.dim == 2 else profile_data.pretraining_set_3d
        dataset = build(args.profile, args.data_root)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{len(dataset)} {'images' if args.dim == 2 else 'crop pairs'} ready in {dataset.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
