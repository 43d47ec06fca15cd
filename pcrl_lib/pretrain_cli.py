"""The pretraining command line: ``python -m pcrl_lib.train`` (or ``pcrl-train``, or under ``torchrun``).

::

    python -m pcrl_lib.train --dim 3 --method pcrl --profile quick --data <crop-pair cache> --output-dir runs/x

Exit codes: 0 trained or reused, 2 bad input (one line on stderr naming the argument or file), 130 interrupted
(the same command resumes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset

from .config import PretrainConfig, get_profile
from .env import seed_everything
from .pretrain_setup import assemble
from .train import TrainingInterrupted, pretrain
from .training import NonFiniteLossError


def _parse_value(text: str) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return tuple(value) if isinstance(value, list) else value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pcrl_lib.train",
        description="PCRL self-supervised pretraining (single process, or several through torchrun).")
    parser.add_argument("--dim", type=int, choices=(2, 3), required=True, help="2 = chest X-ray, 3 = CT cubes")
    parser.add_argument("--method", default=None, help="pcrl | pcrl_tca | pcrl_recon | c2l | moco | models_genesis "
                        "(default: the profile's)")
    parser.add_argument("--profile", default="quick", help="smoke | quick | paper")
    parser.add_argument("--data", required=True, help="2D: a prepared image cache; 3D: a prepared crop-pair cache")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("-p", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                        help="override a PretrainConfig key, e.g. -p epochs 10 -p cube_size '[64,64,32]'")
    parser.add_argument("--seed", type=int, default=0, help="seeds everything: model init, data order, views")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--checkpoint-every-steps", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="delete the run's files and retrain (only in a run "
                        "folder the kit created; never in a folder holding other files)")
    parser.add_argument("--no-resume", action="store_true", help="start over instead of continuing last.pt")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def config_from_args(args: argparse.Namespace) -> PretrainConfig:
    """The profile's ``PretrainConfig`` with ``--method`` and every ``-p KEY VALUE`` applied."""
    cfg = get_profile(args.profile).pretrain
    overrides = {key: _parse_value(value) for key, value in args.p}
    if args.method is not None:
        overrides["method"] = args.method
    return cfg.override(**overrides) if overrides else cfg


def build_run(args: argparse.Namespace, cfg: PretrainConfig) -> tuple[nn.Module, Dataset, Callable]:
    """The method, dataset and views the CLI trains: ``args.data`` is an image cache (2D,
    ``prepare_image_cache``) or a crop-pair cache (3D, ``prepare_pretraining_cubes``)."""
    data = Path(args.data)
    if not data.is_dir():
        raise FileNotFoundError(f"--data {data} is not a folder; prepare a cache first "
                                "(2D: prepare_image_cache, 3D: prepare_pretraining_cubes)")
    from .data.cache import ImageCacheDataset, PairDataset

    dataset = ImageCacheDataset(data) if args.dim == 2 else PairDataset(data)
    return assemble(cfg, args.dim, dataset)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        seed_everything(args.seed)  # the method's initial weights and queue come from the global RNGs
        method, dataset, views = build_run(args, cfg)
        result = pretrain(method, dataset, views, cfg, args.output_dir, spatial_dims=args.dim, seed=args.seed,
                          device=args.device, resume=not args.no_resume, force=args.force,
                          checkpoint_every_steps=args.checkpoint_every_steps, progress=not args.no_progress)
    except TrainingInterrupted as err:
        print(err, file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted before training started; run the same command again", file=sys.stderr)
        return 130
    except (ValueError, KeyError, TypeError, FileNotFoundError, NonFiniteLossError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        state = "reused" if result.reused else "trained"
        print(f"{state}: {result.steps} steps, final loss {result.final_loss}; encoder -> {result.encoder_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
