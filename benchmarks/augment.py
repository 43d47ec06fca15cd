"""Augmentation speed: the kit's batched transforms against the authors' released per-sample code.

The released side is :mod:`benchmarks.released_reference`, a per-sample reimplementation of the
released functions (its docstring names the released file and function each one mirrors), run on
in-memory arrays. The kit side is the batched ``pcrl_lib.transforms`` call (draw + apply) on a
batch, divided by the batch size. Prints ms per sample for each transform and for the whole view
pipeline, in 3D (1×64×64×32 float32 crops) and 2D (224² views from 256² images and 64² views from
128² images; the released side gets PIL RGB uint8 images, as it does after ``Image.open``). The 2D
transforms are timed on colour views and again on gray ones (chest X-rays, the released data): the
kit's pipeline keeps a gray image one channel up to the normalisation, the released code turns it
into RGB on loading, and each side gets what its pipeline gives it.

Timing: one thread (``torch.set_num_threads(1)``; start it with ``OMP_NUM_THREADS=1`` too), the kit
and the released call alternate within each repeat and each figure is the median of the repeats, so
that load from other processes on shared cores hits both sides alike. The header prints the load
average. "pipeline" rows are per crop pair / per image: both views, their TCA targets and codes and
the clean targets, as ``__getitem__`` returns them; "pipeline + batch collation" adds the released
side's ``default_collate`` of the B samples (the kit's output is already a batch). The painting
rows paint in place on both sides (the released functions write into their input; the kit's 3D
pipeline uses ``Painting.apply_``).
The released 3D flip, affine and blur are torchio's own transforms when torchio is importable
(``PYTHONPATH=DIR`` after ``pip install --target DIR torchio``; not a kit dependency), else scipy
stand-ins; the header says which (see :mod:`benchmarks.released_reference`).

Usage: ``OMP_NUM_THREADS=1 python benchmarks/augment.py [--batch 16] [--repeats 7] [--only 3d|2d]``
(a few minutes on 2 cores). With a GPU it adds the kit's CUDA time per sample for every row.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import default_collate

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import released_reference as rel  # noqa: E402
from pcrl_lib.transforms import (LocalPixelShuffle, NonlinearIntensity, Painting, PCRLViews2D,  # noqa: E402
                                 PCRLViews3D, RandomResizedCrop, normalize)
from pcrl_lib.transforms.base import apply_to_index  # noqa: E402
from pcrl_lib.transforms.color import rgb_to_grayscale  # noqa: E402
from pcrl_lib.transforms.tca import draw_tca, tca_apply  # noqa: E402

CUBE = (64, 64, 32)
VIEWS_2D = ((224, 256), (64, 128))    # (output side, source image side)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _seconds(fn, device: torch.device) -> float:
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def interleaved(kit, released, repeats: int, device: torch.device) -> tuple[float, float]:
    """Median seconds of ``kit()`` and ``released()``, run alternately after one warm-up each."""
    kit(), released()
    _sync(device)
    tk, tr = [], []
    for _ in range(repeats):
        tk.append(_seconds(kit, device))
        tr.append(_seconds(released, torch.device("cpu")))
    return statistics.median(tk), statistics.median(tr)


def rows_3d(B: int, device: torch.device):
    """``(name, kit fn, released fn, released samples per call)`` for the 3D table."""
    gen = torch.Generator(device=device).manual_seed(0)
    cubes = torch.rand(B, 1, *CUBE, generator=torch.Generator().manual_seed(1)).to(device)
    painted = cubes.clone()                          # painted in place, like the released arrays
    pairs = torch.rand(B, 2, 1, *CUBE, generator=torch.Generator().manual_seed(2)).to(device)
    npc = [c.numpy() for c in cubes.cpu()]                                  # (1, X, Y, Z) float32 each
    npp = [p[:, 0].numpy() for p in pairs.cpu()]                            # (2, X, Y, Z)
    rng, nprng = random.Random(0), np.random.RandomState(0)
    views = PCRLViews3D()
    flip, affine, blur = views.flip, views.affine, views.blur
    shuffle = LocalPixelShuffle(3, p=1.0)
    bezier = NonlinearIntensity(3, p=1.0)
    inpaint, outpaint = Painting(3, p=1.0, inpaint_p=1.0), Painting(3, p=1.0, inpaint_p=0.0)

    def tca():
        return tca_apply(cubes, draw_tca(B, 3, gen).to(device))

    def each(fn, n):
        return lambda: [fn(npc[i]) for i in range(n)]

    few = min(B, 2)    # the slow released loops run on fewer samples per repeat
    return [
        ("flip (x, p 0.5)", lambda: flip(cubes, gen), each(lambda c: rel.torchio_flip(c, rng), B), B),
        ("affine (±10°, 0.9–1.1)", lambda: affine(cubes, gen), each(lambda c: rel.torchio_affine(c, rng), few), few),
        ("blur (σ U(0, 2) per axis)", lambda: blur(cubes, gen), each(lambda c: rel.torchio_blur(c, rng), few), few),
        ("local pixel shuffling, p 1", lambda: shuffle(cubes, gen),
         each(lambda c: rel.local_pixel_shuffling(c, rng, nprng, prob=1.0), few), few),
        ("Bézier intensity, p 1", lambda: bezier(cubes, gen),
         each(lambda c: rel.nonlinear_transformation(c, rng, prob=1.0), few), few),
        ("in-painting, p 1, in place", lambda: inpaint.apply_(painted, inpaint.draw(cubes.shape, gen)),
         each(lambda c: rel.image_in_painting(c, rng, nprng), B), B),
        ("out-painting, p 1", lambda: outpaint.apply_(painted, outpaint.draw(cubes.shape, gen)),
         each(lambda c: rel.image_out_painting(c, rng, nprng), B), B),
        ("TCA target (flips + rot90)", tca, each(lambda c: rel.spatial_aug_3d(c, rng), B), B),
        # All B pairs on the released side too: its cost swings with how many cubes get shuffled
        # (p 0.5, ~47 ms each), and a median over 2 pairs a repeat moved between 65 and 115 ms.
        ("pipeline, per crop pair", lambda: views(pairs, gen),
         lambda: [rel.luna_pair(npp[i], rng, nprng) for i in range(B)], B),
    ]


def rows_2d(B: int, size: int, source: int, device: torch.device, gray: bool = False):
    """``(name, kit fn, released fn, released samples per call)`` for one 2D size.

    ``gray=False``: the transforms on colour views (kit ``(B, 3, S, S)`` float32, released PIL RGB).
    ``gray=True``: the rows whose input differs for gray images (chest X-rays, the released 2D data):
    the kit's view pipeline keeps them one channel up to the normalisation, so its transforms get
    ``(B, 1, S, S)``; the released code converts them to RGB on loading (``.convert('RGB')``), so
    its transforms get the RGB image of the same gray views.
    """
    gen = torch.Generator(device=device).manual_seed(0)
    images = torch.rand(B, 1, source, source, generator=torch.Generator().manual_seed(3)).to(device)
    views_in = torch.rand(B, 1 if gray else 3, size, size, generator=torch.Generator().manual_seed(4)).to(device)
    pil_src = [Image.fromarray((255 * images[i, 0].cpu().numpy()).astype(np.uint8)).convert("RGB") for i in range(B)]
    pil = [Image.fromarray((255 * views_in[i].expand(3, -1, -1).permute(1, 2, 0).cpu().numpy()).astype(np.uint8))
           for i in range(B)]
    tensors = [rel.T.ToTensor()(p) for p in pil]
    rng, nprng = random.Random(0), np.random.RandomState(0)
    torch.manual_seed(0)                                                    # torchvision draws from torch
    views = PCRLViews2D(size)
    spatial, train, norm = rel.chest_transforms(size, rng, nprng)
    t = train.transforms                                                    # rotation, flip, gray, blur, jitter, ...
    crop = RandomResizedCrop(size)
    cutout = views.cutout

    def each(fn, items):
        return lambda: [fn(item) for item in items]

    def tca():
        return tca_apply(views_in, draw_tca(B, 2, gen).to(device))

    if gray:
        def grayscale():              # the view pipeline's one-channel grayscale step
            index = views.gray.draw((B, 3, size, size), gen).index.to(device)
            return apply_to_index(views_in, index, rgb_to_grayscale)

        return [
            ("resized crop", lambda: crop(images, gen), each(spatial, pil_src), B),
            ("rotation ±10°", lambda: views.rotate(views_in, gen), each(t[0], pil), B),
            ("horizontal flip", lambda: views.flip(views_in, gen), each(t[1], pil), B),
            ("grayscale, p 0.2", grayscale, each(t[2], pil), B),
            ("blur, p 0.5", lambda: views.blur(views_in, gen), each(t[3], pil), B),
            ("colour jitter 0.4×4", lambda: views.jitter(views_in, gen), each(t[4], pil), B),
            ("to tensor + normalise", lambda: normalize(views_in.expand(-1, 3, -1, -1)),
             each(lambda p: t[6](t[5](p)), pil), B),
        ]
    return [
        ("resized crop", lambda: crop(images.expand(-1, 3, -1, -1), gen), each(spatial, pil_src), B),
        ("rotation ±10°", lambda: views.rotate(views_in, gen), each(t[0], pil), B),
        ("horizontal flip", lambda: views.flip(views_in, gen), each(t[1], pil), B),
        ("grayscale, p 0.2", lambda: views.gray(views_in, gen), each(t[2], pil), B),
        ("blur, p 0.5", lambda: views.blur(views_in, gen), each(t[3], pil), B),
        ("colour jitter 0.4×4", lambda: views.jitter(views_in, gen), each(t[4], pil), B),
        ("to tensor + normalise", lambda: normalize(views_in), each(lambda p: t[6](t[5](p)), pil), B),
        ("cutout 3 holes", lambda: cutout(views_in, gen), each(t[7], tensors), B),
        ("TCA target (flips + rot90)", tca, each(lambda x: rel.spatial_aug_2d(x, rng), tensors), B),
        ("pipeline, per image", lambda: views(images, gen),
         each(lambda p: rel.chest_pair(p, (spatial, train, norm), rng), pil_src), B),
        # The kit's sample is already the batch the step takes; the released samples become one
        # through the DataLoader's default_collate (stacked into fresh batch tensors, as the kit's are).
        ("pipeline + batch collation", lambda: views(images, gen),
         lambda: default_collate([rel.chest_pair(p, (spatial, train, norm), rng) for p in pil_src]), B),
    ]


def table(title: str, rows, B: int, repeats: int, cuda_rows=None) -> None:
    cpu = torch.device("cpu")
    print(f"\n{title}")
    head = f"  {'':30s}{'kit ms':>9s}{'released ms':>13s}{'speed-up':>10s}"
    print(head + (f"{'kit CUDA ms':>13s}" if cuda_rows else ""))
    for i, (name, kit, released, n) in enumerate(rows):
        tk, tr = interleaved(kit, released, repeats, cpu)
        ms_kit, ms_rel = 1e3 * tk / B, 1e3 * tr / n
        line = f"  {name:30s}{ms_kit:9.3f}{ms_rel:13.3f}{ms_rel / ms_kit:9.1f}x"
        if cuda_rows:
            gpu = torch.device("cuda")
            kit_gpu = cuda_rows[i][1]
            kit_gpu()
            _sync(gpu)
            line += f"{1e3 * statistics.median(_seconds(kit_gpu, gpu) for _ in range(repeats)) / B:13.3f}"
        print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=16, help="kit batch size (default 16)")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved timed repeats, median reported")
    parser.add_argument("--only", choices=("3d", "2d"), help="run one table only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    B = args.batch
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"PCRL augmentation benchmark, kit vs released (per-sample reimplementation): torch {torch.__version__}, "
          f"1 thread, {os.cpu_count()} CPU cores, load average {load}; kit batch {B}, medians of {args.repeats} "
          f"interleaved repeats; ms per sample; released 3D flip/affine/blur: {rel.TORCHIO}")
    cuda = torch.cuda.is_available()
    if args.only != "2d":
        cuda_rows = rows_3d(B, torch.device("cuda")) if cuda else None
        table(f"3D, crops 1x{CUBE[0]}x{CUBE[1]}x{CUBE[2]} float32", rows_3d(B, torch.device("cpu")), B,
              args.repeats, cuda_rows)
    if args.only != "3d":
        for size, source in VIEWS_2D:
            cuda_rows = rows_2d(B, size, source, torch.device("cuda")) if cuda else None
            table(f"2D, {size}² views from {source}² images (colour views; pipeline: gray images)",
                  rows_2d(B, size, source, torch.device("cpu")), B, args.repeats, cuda_rows)
            cuda_rows = rows_2d(B, size, source, torch.device("cuda"), gray=True) if cuda else None
            table(f"2D, {size}², gray views (kit: 1 channel, as its pipeline keeps them; released: their RGB)",
                  rows_2d(B, size, source, torch.device("cpu"), gray=True), B, args.repeats, cuda_rows)
    if not cuda:
        print("\nCUDA: not available on this machine (kit CUDA column left out).")


if __name__ == "__main__":
    main()
