"""Pretraining throughput with 1 and 2 processes (torchrun, gloo on CPU; NCCL on GPUs).

Runs ``torchrun --standalone --nproc_per_node N -m pcrl_lib.train`` for a few quick-profile steps on the
prepared crop pairs (3D) or image cache (2D) and prints the global samples/s that the trainer logs
(``history.json``: all ranks' samples of a step divided by its wall time), as the median over the steps after
the first two (warm-up: allocator, queue filling). Configurations:

* 1 process, 1 thread — the baseline;
* 1 process, ``--threads`` threads — what one process gets from all cores;
* N processes × 1 thread each — data-parallel: every rank runs a full step on its share of the batch and
  gradients are all-reduced, keys gathered into the queue and batch-shuffle BN crosses ranks.

The per-rank batch is the profile's, so N processes see N times the samples per step (as with N GPUs).
Figures are for the record (on 2 shared cores DDP mostly measures communication overhead), not a target.

Usage: ``python benchmarks/ddp.py [--dim 3] [--method pcrl] [--steps 12] [--procs 1,2] [--threads 2]``
(about two minutes on 2 cores; prepares the quick-profile data first when missing).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def pretraining_data(dim: int, profile: str) -> Path:
    """The prepared pretraining set notebook 03/04 would use (built now when missing)."""
    from pcrl_lib import pretrain_runs

    return Path(pretrain_runs.pretraining_dataset(profile, dim, progress=False).root)


def run(n_procs: int, threads: int, dim: int, method: str, profile: str, steps: int, data: Path,
        out: Path) -> tuple[float, float, int]:
    """(median samples/s after warm-up, wall seconds of the whole launch, steps logged)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), TQDM_DISABLE="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n_procs}",
           "-m", "pcrl_lib.train", "--dim", str(dim), "--method", method, "--profile", profile, "--data", str(data),
           "--output-dir", str(out), "-p", "epochs", "1", "-p", "max_steps_per_epoch", str(steps), "-p", "log_every",
           "1", "--no-progress", "--force", "--device", "cpu"]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"torchrun with {n_procs} process(es) failed (exit {done.returncode}):\n"
                         f"{done.stderr[-3000:]}")
    history = json.loads((out / "history.json").read_text())
    rates = [h["samples_per_s"] for h in history[2:]] or [h["samples_per_s"] for h in history]
    return statistics.median(rates), wall, len(history)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dim", type=int, choices=(2, 3), default=3)
    parser.add_argument("--method", default="pcrl")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--steps", type=int, default=12, help="steps per run (the first two are not counted)")
    parser.add_argument("--procs", default="1,2", help="comma-separated process counts")
    parser.add_argument("--threads", type=int, default=2, help="threads of the single-process comparison run")
    args = parser.parse_args()

    import torch
    from pcrl_lib.config import get_profile

    cfg = get_profile(args.profile).pretrain
    batch = cfg.batch_size_2d if args.dim == 2 else cfg.batch_size_3d
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"DDP pretraining benchmark: torch {torch.__version__}, {os.cpu_count()} CPU cores, load average {load}; "
          f"{args.dim}D {args.method}, profile {args.profile}, batch {batch} per rank, {args.steps} steps")
    data = pretraining_data(args.dim, args.profile)
    configs = [(1, 1)] + ([(1, args.threads)] if args.threads > 1 else [])
    configs += [(n, 1) for n in (int(p) for p in args.procs.split(",")) if n > 1]
    print(f"\n  {'processes x threads':22s}{'samples/s':>12s}{'vs 1x1':>9s}{'launch wall s':>15s}")
    base = None
    with tempfile.TemporaryDirectory() as tmp:
        for n, t in configs:
            rate, wall, logged = run(n, t, args.dim, args.method, args.profile, args.steps, data,
                                     Path(tmp) / f"{n}x{t}")
            base = base or rate
            print(f"  {f'{n} x {t}':22s}{rate:12.2f}{rate / base:8.2f}x{wall:15.1f}")
    print("\nsamples/s: global (all ranks), median over logged steps after the first two.")


if __name__ == "__main__":
    main()
