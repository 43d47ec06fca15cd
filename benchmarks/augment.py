"""Throughput of the batched augmentations against per-sample loops (PCRL_SPEC §7).

Prints, for a batch of 16 cubes of 1×64×64×32 (the paper's 3D input):

* cubes/s of one full 3D view (flip, affine, blur, local pixel shuffling p 0.5, painting p 0.9, TCA
  target): batched draw + apply, versus the step-by-step per-sample oracles of
  ``tests/transforms/oracles.py`` fed the same parameters (their drawing is not timed, so the
  speed-up is a lower bound);
* cubes/s of local pixel shuffling alone (every cube shuffled, 10,000 blocks), the same way, plus
  the released-style loop that draws its randomness block by block inside the loop;
* 2D view pairs/s of ``PCRLViews2D`` at 224² (from 256² images), 128² and 64² (from 128²), batched
  versus calling the same pipeline one image at a time;
* the batched figures on CUDA when a GPU is present (parameters drawn with a CUDA generator).

Batched figures are measured for each thread count in ``--threads`` (default ``1,2``): on a
shared 2-core machine one thread is often faster than two. Every figure is the best wall time of a
few runs; the header prints the load average because other processes on the same cores slow every
figure down.

Usage: ``python benchmarks/augment.py [--threads 1,2] [--repeats 5] [--loop-repeats 2]``
(about a minute on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pcrl_lib.transforms import LocalPixelShuffle, PCRLViews2D, PCRLViews3D  # noqa: E402
from tests.transforms import oracles  # noqa: E402

BATCH = 16
CUBE = (64, 64, 32)
VIEWS_2D = ((224, 256), (128, 128), (64, 128))    # (output side, source image side)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_seconds(fn, repeats: int, device: torch.device, warmup: bool = True) -> float:
    """Best wall time of ``fn()`` over ``repeats`` runs (after a warm-up run): the least disturbed
    by other processes on shared cores, as ``timeit`` recommends."""
    if warmup:
        fn()
        _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def _crops(device: torch.device) -> torch.Tensor:
    return torch.rand(BATCH, 1, *CUBE, generator=torch.Generator().manual_seed(1)).to(device)


def batched_3d(device: torch.device, repeats: int) -> dict[str, float]:
    """Seconds per batch: full 3D view, and shuffling's draw and apply halves."""
    gen = torch.Generator(device=device).manual_seed(0)
    crops = _crops(device)
    views = PCRLViews3D()
    mode = views.painting.draw_mode(BATCH, gen)
    shuffle = LocalPixelShuffle(3, p=1.0)
    params = shuffle.draw(crops.shape, gen)
    return {"view": best_seconds(lambda: views.view(crops, mode, gen), repeats, device),
            "draw": best_seconds(lambda: shuffle.draw(crops.shape, gen), repeats, device),
            "apply": best_seconds(lambda: shuffle.apply(crops, params), repeats, device)}


def loops_3d(repeats: int) -> dict[str, float]:
    """Seconds per batch of the CPU loops, each checked against the batched result first."""
    gen = torch.Generator().manual_seed(0)
    crops = _crops(torch.device("cpu"))
    views = PCRLViews3D()
    mode = views.painting.draw_mode(BATCH, gen)
    x, _, code, _, params = views.view(crops, mode, gen)
    x_loop, _ = oracles.views3d_view(crops, params, code, views)
    assert torch.allclose(x_loop, x, atol=1e-4), "batched and oracle 3D views disagree"
    shuffle = LocalPixelShuffle(3, p=1.0)
    sp = shuffle.draw(crops.shape, gen)
    assert torch.equal(oracles.local_shuffle(crops, sp), shuffle.apply(crops, sp)), "shuffles disagree"
    cpu = torch.device("cpu")
    rng = np.random.default_rng(0)
    return {"view": best_seconds(lambda: oracles.views3d_view(crops, params, code, views), repeats, cpu, False),
            "shuffle": best_seconds(lambda: oracles.local_shuffle(crops, sp), repeats, cpu, False),
            "released": best_seconds(lambda: oracles.local_shuffle_released_style(crops, 1.0, 10_000, rng),
                                     repeats, cpu, False)}


def batched_2d(device: torch.device, repeats: int) -> list[float]:
    gen = torch.Generator(device=device).manual_seed(0)
    out = []
    for size, source in VIEWS_2D:
        images = torch.rand(BATCH, 1, source, source, generator=torch.Generator().manual_seed(2)).to(device)
        views = PCRLViews2D(size)
        out.append(best_seconds(lambda: views(images, gen), repeats, device))
    return out


def per_image_2d(repeats: int) -> list[float]:
    gen = torch.Generator().manual_seed(0)
    out = []
    for size, source in VIEWS_2D:
        images = torch.rand(BATCH, 1, source, source, generator=torch.Generator().manual_seed(2))
        views = PCRLViews2D(size)
        out.append(best_seconds(lambda: [views(images[b:b + 1], gen) for b in range(BATCH)], repeats,
                                torch.device("cpu")))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated torch CPU thread counts to try")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per batched figure (best of)")
    parser.add_argument("--loop-repeats", type=int, default=2, help="timed runs per loop figure (best of)")
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"PCRL augmentation benchmark: torch {torch.__version__}, {os.cpu_count()} CPU cores, "
          f"load average {load}; batch {BATCH}, cubes 1x{CUBE[0]}x{CUBE[1]}x{CUBE[2]}")

    cpu = torch.device("cpu")
    torch.set_num_threads(1)
    loops = loops_3d(args.loop_repeats)
    images = per_image_2d(args.loop_repeats)
    fast3d, fast2d = {}, {}
    for t in threads:
        torch.set_num_threads(t)
        fast3d[t], fast2d[t] = batched_3d(cpu, args.repeats), batched_2d(cpu, args.repeats)

    head = "".join(f"{f'batched {t}T':>12s}" for t in threads)
    print(f"\nCPU, 3D (cubes/s; loops single-threaded numpy/scipy on the same parameters)")
    print(f"  {'':38s}{head}{'loop':>10s}{'speed-up':>10s}")
    best = max(BATCH / fast3d[t]["view"] for t in threads)
    cols = "".join(f"{BATCH / fast3d[t]['view']:12.1f}" for t in threads)
    print(f"  {'full view (p_shuffle 0.5, p_paint 0.9)':38s}{cols}{BATCH / loops['view']:10.1f}"
          f"{best * loops['view'] / BATCH:9.1f}x")
    best = max(BATCH / (fast3d[t]["draw"] + fast3d[t]["apply"]) for t in threads)
    cols = "".join(f"{BATCH / (fast3d[t]['draw'] + fast3d[t]['apply']):12.1f}" for t in threads)
    print(f"  {'local pixel shuffling alone, p=1':38s}{cols}{BATCH / loops['shuffle']:10.1f}"
          f"{best * loops['shuffle'] / BATCH:9.1f}x")
    print(f"  {'  vs released-style loop (own draws)':38s}{'':{12 * len(threads)}s}{BATCH / loops['released']:10.1f}"
          f"{best * loops['released'] / BATCH:9.1f}x")
    cols = "".join(f"{1e3 * fast3d[t]['draw']:6.0f}/{1e3 * fast3d[t]['apply']:<5.0f}" for t in threads)
    print(f"  {'  shuffle draw/apply, ms per batch':38s}{cols}")

    print(f"\nCPU, 2D view pairs/s (loop = the same pipeline called once per image, 1 thread)")
    print(f"  {'':38s}{head}{'loop':>10s}{'speed-up':>10s}")
    for i, (size, source) in enumerate(VIEWS_2D):
        best = max(BATCH / fast2d[t][i] for t in threads)
        cols = "".join(f"{BATCH / fast2d[t][i]:12.1f}" for t in threads)
        print(f"  {f'{size}² views from {source}² images':38s}{cols}{BATCH / images[i]:10.1f}"
              f"{best * images[i] / BATCH:9.1f}x")

    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        g3, g2 = batched_3d(gpu, args.repeats), batched_2d(gpu, args.repeats)
        print(f"\nCUDA ({torch.cuda.get_device_name(gpu)}), batched; speed-up vs the CPU loops above")
        print(f"  {'full 3D view (cubes/s)':38s}{BATCH / g3['view']:12.1f}{loops['view'] / g3['view']:9.1f}x")
        shuffle = g3["draw"] + g3["apply"]
        print(f"  {'local pixel shuffling, p=1 (cubes/s)':38s}{BATCH / shuffle:12.1f}"
              f"{loops['shuffle'] / shuffle:9.1f}x")
        for i, (size, source) in enumerate(VIEWS_2D):
            print(f"  {f'2D pairs/s, {size}² from {source}²':38s}{BATCH / g2[i]:12.1f}")
    else:
        print("\nCUDA: not available on this machine.")


if __name__ == "__main__":
    main()
