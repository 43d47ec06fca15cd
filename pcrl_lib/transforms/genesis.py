"""Models Genesis distortions (Zhou et al., 2019), batched: non-linear (Bézier) intensity transform,
in-/out-painting, and the restoration sample used by the ``models_genesis`` baseline (PCRL_SPEC §7, §9).

Local pixel shuffling lives in :mod:`.shuffle`. All transforms take intensities in [0, 1] and keep
them there; they work on 2D ``(B, C, H, W)`` and 3D ``(B, C, X, Y, Z)`` batches alike.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .base import (Params, RandomTransform, active_index, apply_to_index, check_batch, check_generator,
                   check_params, check_positive_int, check_probability, check_shape, check_spatial_dims,
                   rand, randint)
from .shuffle import LocalPixelShuffle
from .spatial import FlipParams, flip_rotate

# ----------------------------------------------------------------------------------------------
# Non-linear intensity transform.


@dataclass(frozen=True)
class NonlinearParams(Params):
    """``index`` ``(A,)`` samples transformed; ``control`` ``(A, 2, 2)``: the inner control points
    P1 = ``control[:, 0]``, P2 = ``control[:, 1]`` as (x, y) in [0, 1]² (P0 = (0, 0), P3 = (1, 1));
    ``invert`` ``(A,)`` bool: the curve is mirrored so that 0 maps to 1 and 1 to 0."""

    batch_size: int
    index: torch.Tensor
    control: torch.Tensor
    invert: torch.Tensor


def bezier_lookup(control: torch.Tensor, invert: torch.Tensor, n_points: int):
    """Sampled intensity curves: ``(xs, ys)`` each ``(A, n_points)`` float64, ``xs`` ascending.

    The cubic Bézier curve through (0,0), P1, P2, (1,1) has monotone x(t) and y(t) for control points
    in the unit square, so pairing both sorted gives a monotone map; ``invert`` pairs ascending x with
    descending y (Models Genesis' "flip" half).
    """
    t = torch.linspace(0.0, 1.0, n_points, dtype=torch.float64, device=control.device).view(1, -1)
    b1, b2, b3 = 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t ** 2, t ** 3             # Bernstein weights of P1, P2, P3
    c = control.to(torch.float64)
    xs = b1 * c[:, 0, 0:1] + b2 * c[:, 1, 0:1] + b3
    ys = b1 * c[:, 0, 1:2] + b2 * c[:, 1, 1:2] + b3
    # Sorting is a no-op in exact arithmetic; it guards searchsorted against rounding wiggles.
    xs, ys = xs.sort(1).values, ys.sort(1).values
    ys = torch.where(invert.view(-1, 1), ys.flip(1), ys)
    return xs, ys


def batched_interp(v: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Row-wise ``numpy.interp``: ``v`` ``(A, M)`` through curves ``xs``/``ys`` ``(A, N)`` (xs ascending).

    Values outside ``[xs[0], xs[-1]]`` take the end values, as ``numpy.interp`` does.
    """
    N = xs.shape[1]
    idx = torch.searchsorted(xs, v.contiguous(), right=True).clamp_(1, N - 1)
    x0, x1 = xs.gather(1, idx - 1), xs.gather(1, idx)
    y0, y1 = ys.gather(1, idx - 1), ys.gather(1, idx)
    dx = x1 - x0
    w = torch.where(dx > 0, (v - x0) / torch.where(dx > 0, dx, torch.ones_like(dx)), torch.zeros_like(dx))
    return y0 + w.clamp_(0.0, 1.0) * (y1 - y0)


def curve_tables(xs: torch.Tensor, ys: torch.Tensor, cells: int):
    """A lookup table of the piecewise-linear curves ``xs``/``ys`` ``(A, N)`` (xs ascending from 0 to 1).

    [0, 1] is cut into ``cells`` equal cells (a power of two, so ``v · cells`` and the cell's left
    edge are exact in float32). Returns ``(start, slope, exact)``, each ``(A, cells)``: the curve
    at the cell's left edge and its slope per unit of ``v · cells`` (float32), and whether the
    cell holds no curve point strictly inside it, in which case ``start + slope · frac`` *is*
    ``numpy.interp`` there (one straight piece); other cells need the exact search.
    """
    A, N = xs.shape
    dev = xs.device
    k = xs * cells                                                              # exact scaling
    rows = torch.arange(A, device=dev).view(A, 1)
    # Per edge c/cells: how many points lie at or before it (= searchsorted(right=True)), from one
    # bincount of the points' ceil(k) instead of a search per edge.
    first_edge = torch.ceil(k).long().clamp_(0, cells)
    count = torch.bincount((first_edge + rows * (cells + 1)).view(-1), minlength=A * (cells + 1))
    idx = count.view(A, cells + 1).cumsum(1).clamp_(1, N - 1)
    edges = torch.arange(cells + 1, dtype=xs.dtype, device=dev).view(1, -1) / cells
    x0, x1, y0, y1 = xs.gather(1, idx - 1), xs.gather(1, idx), ys.gather(1, idx - 1), ys.gather(1, idx)
    dx = x1 - x0
    w = torch.where(dx > 0, (edges - x0) / torch.where(dx > 0, dx, torch.ones_like(dx)), torch.zeros_like(dx))
    values = y0 + w.clamp_(0.0, 1.0) * (y1 - y0)                                # batched_interp(edges)
    inside = (k > torch.floor(k)) & (k < cells)                                 # a point strictly inside a cell
    exact = torch.ones(A * cells, dtype=torch.bool, device=dev)
    exact[(torch.floor(k).long().clamp_(0, cells - 1) + rows * cells)[inside]] = False
    return values[:, :-1].float(), values.diff(dim=1).float(), exact.view(A, cells)


def apply_curve(v: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor, cells: int = 16384) -> torch.Tensor:
    """Row-wise ``numpy.interp`` of ``v`` ``(A, M)`` through the curves ``xs``/``ys`` ``(A, N)``, float32.

    Through a lookup table (:func:`curve_tables`): one gather per voxel in the cells where the
    curve is one straight piece, the exact search (:func:`batched_interp`, float64) only for the
    few voxels in cells that hold curve points. ``xs`` must run from 0 to 1 (the Bézier curves do),
    so clamping ``v`` to [0, 1] gives ``numpy.interp``'s end values outside.
    """
    A, M = v.shape
    start, slope, exact = curve_tables(xs, ys, cells)
    v = v.float().clamp(0.0, 1.0)
    pos = v * cells                                                             # exact scaling
    cell = pos.to(torch.int32).clamp_(max=cells - 1)
    frac = pos - cell                                                           # exact
    flat = (cell + torch.arange(0, A * cells, cells, dtype=torch.int32, device=v.device).view(A, 1)).view(-1).long()
    # NaN slopes mark the cells that need the exact search: one gather fewer than a separate mask.
    slope = torch.where(exact, slope, torch.full_like(slope, float("nan")))
    out = start.view(-1).take(flat).addcmul_(slope.view(-1).take(flat), frac.view(-1))
    fix = torch.nonzero(torch.isnan(out)).flatten()
    if fix.numel():
        # Rows of the stacked curves, shifted by 2·row so that one 1D search covers all samples.
        shift = 2.0 * torch.arange(A, dtype=torch.float64, device=v.device).view(A, 1)
        row = fix // M
        values = v.reshape(-1).index_select(0, fix).double() + 2.0 * row
        out[fix] = batched_interp(values.view(1, -1), (xs + shift).view(1, -1), ys.reshape(1, -1)).view(-1).float()
    return out.view(A, M)


class NonlinearIntensity(RandomTransform):
    """Models Genesis' non-linear intensity transform: a random monotone Bézier curve per sample.

    Args:
        spatial_dims: 2 or 3 (the transform is pointwise; this only validates the layout).
        p: probability a sample is transformed (Models Genesis config: 0.9; off in PCRL's 3D pipeline).
        invert_p: probability the curve is inverted (released: 0.5).
        n_points: curve samples (released: 100,000; 1,000 is already exact to ~1e-6). The polyline
            through them is applied as ``numpy.interp`` would, through a lookup table
            (:func:`apply_curve`), in float32 (float64 batches: the exact search, in float64).
    """

    def __init__(self, spatial_dims: int, p: float = 0.9, invert_p: float = 0.5, n_points: int = 1000):
        super().__init__(spatial_dims)
        self.p = check_probability(p, "p")
        self.invert_p = check_probability(invert_p, "invert_p")
        self.n_points = check_positive_int(n_points, "n_points", minimum=2)

    def draw(self, shape, generator) -> NonlinearParams:
        B = check_shape(shape, self.spatial_dims)[0]
        check_generator(generator)
        index = active_index(B, self.p, generator)
        A = index.numel()
        return NonlinearParams(batch_size=B, index=index, control=rand((A, 2, 2), generator),
                               invert=rand((A,), generator) < self.invert_p)

    def apply(self, x, params: NonlinearParams) -> torch.Tensor:
        check_batch(x, self.spatial_dims)
        check_params(params, NonlinearParams, x.shape[0])
        params = params.to(x.device)
        xs, ys = bezier_lookup(params.control, params.invert, self.n_points)

        def curve(sub):
            flat = sub.reshape(sub.shape[0], -1)
            if sub.dtype == torch.float64:        # float64 batches keep float64 precision: exact search
                return batched_interp(flat, xs, ys).view(sub.shape)
            return apply_curve(flat, xs, ys).view(sub.shape)

        return apply_to_index(x, params.index, curve)


# ----------------------------------------------------------------------------------------------
# In-painting and out-painting.

NONE, INPAINT, OUTPAINT = 0, 1, 2


@dataclass(frozen=True)
class PaintingParams(Params):
    """Drawn boxes of :class:`Painting`.

    Fields:
        batch_size: B.
        index: ``(A,)`` long — painted samples.
        outpaint: ``(A,)`` bool — True: keep the boxes (windows) and fill the rest with noise;
            False: fill the boxes with noise.
        corners, sizes: ``(A, K, sd)`` long — K candidate boxes per sample (first voxel, extent).
        count: ``(A,)`` long — only the first ``count`` boxes are used.
        canvas: ``(A_out, 1, *spatial)`` U[0, 1) — the noise canvas of each out-painted sample
            (in the order of ``index``), shared by all channels.
        box_noise: ``(M,)`` U[0, 1) — the fills of the in-painted samples' used boxes, each in raster
            order, one after the other (samples in the order of ``index``, boxes in drawing order);
            ``M`` is their total volume. Only the boxes are drawn, as released.
    """

    batch_size: int
    index: torch.Tensor
    outpaint: torch.Tensor
    corners: torch.Tensor
    sizes: torch.Tensor
    count: torch.Tensor
    canvas: torch.Tensor
    box_noise: torch.Tensor

    def all_boxes(self) -> list[list[tuple[slice, ...]]]:
        """Per painted sample, the spatial slices of its used boxes, in drawing order (one
        ``tolist`` per field: this runs per batch, in Python)."""
        corners, sizes, count = self.corners.tolist(), self.sizes.tolist(), self.count.tolist()
        return [[tuple(slice(c, c + s) for c, s in zip(corners[a][k], sizes[a][k])) for k in range(count[a])]
                for a in range(len(count))]

    def boxes(self, a: int) -> list[tuple[slice, ...]]:
        """Spatial slices of painted sample ``a``'s used boxes, in drawing order."""
        return self.all_boxes()[a]

    def fills(self, boxes: list | None = None, noise=None):
        """Yield ``(a, box, fill)`` for every used box of every in-painted sample, in painting order:
        ``a`` the painted-sample position, ``box`` its spatial slices, ``fill`` its noise view.
        ``boxes``: :meth:`all_boxes`, if already at hand; ``noise``: ``box_noise`` or a NumPy view of it."""
        boxes = self.all_boxes() if boxes is None else boxes
        noise = self.box_noise if noise is None else noise
        offset = 0
        for a, out in enumerate(self.outpaint.tolist()):
            if out:
                continue
            for box in boxes[a]:
                shape = tuple(b.stop - b.start for b in box)
                n = math.prod(shape)
                yield a, box, noise[offset:offset + n].reshape(shape)
                offset += n

    @property
    def noise(self) -> torch.Tensor:
        """``(A, 1, *spatial)``: the noise each painted voxel receives (for inspection; ``apply``
        never builds it). Out-painted samples: their canvas; in-painted samples: their box noise
        placed in the boxes (a later box over an earlier one, as painted), 0 outside them."""
        A, spatial = self.index.numel(), self.canvas.shape[2:]
        noise = torch.zeros((A, 1, *spatial), dtype=self.canvas.dtype, device=self.canvas.device)
        outpaint = torch.nonzero(self.outpaint).flatten()
        noise[outpaint] = self.canvas
        for a, box, fill in self.fills():
            noise[a][(slice(None),) + box] = fill
        return noise


def box_mask(corners: torch.Tensor, sizes: torch.Tensor, count: torch.Tensor, spatial: Sequence[int]) -> torch.Tensor:
    """``(A, *spatial)`` bool: union of the first ``count`` boxes ``(A, K, sd)`` of each sample."""
    A, K, sd = corners.shape
    # Unused boxes are dropped on the smallest factor, before the per-axis masks broadcast to full size.
    inside = (torch.arange(K, device=corners.device).view(1, K) < count.view(A, 1)).view((A, K) + (1,) * sd)
    for d, n in enumerate(spatial):
        coord = torch.arange(n, device=corners.device)
        axis = (coord >= corners[..., d:d + 1]) & (coord < corners[..., d:d + 1] + sizes[..., d:d + 1])
        shape = [A, K] + [1] * sd
        shape[2 + d] = n
        inside = inside & axis.view(shape)
    return inside.any(1)


class Painting(RandomTransform):
    """Models Genesis in-painting / out-painting, with probability ``p`` per sample.

    A painted sample is in-painted with probability ``inpaint_p``, else out-painted:

    * in-painting: up to ``max_boxes`` boxes, each side in ``[n//6, n//3]``, filled with U[0, 1) noise;
      a box is added while a Bernoulli(``continue_p``) draw succeeds (released: 5 boxes, 0.95);
    * out-painting: everything becomes noise except 1 to ``max_boxes`` windows, each side
      ``n - U{3n//7..4n//7}``, which keep the original voxels.

    Boxes stay ``margin`` voxels from the border (released: 3), reduced on axes too short for it.
    PCRL's 3D pipeline: ``p = 0.9``, ``inpaint_p = 0.2`` (so out-painting with 0.8), and one decision
    per crop pair (pass the same ``mode`` to :meth:`draw` for both views).
    """

    def __init__(self, spatial_dims: int, p: float = 0.9, inpaint_p: float = 0.2, max_boxes: int = 5,
                 continue_p: float = 0.95, margin: int = 3):
        super().__init__(spatial_dims)
        self.p = check_probability(p, "p")
        self.inpaint_p = check_probability(inpaint_p, "inpaint_p")
        self.max_boxes = check_positive_int(max_boxes, "max_boxes")
        self.continue_p = check_probability(continue_p, "continue_p")
        self.margin = check_positive_int(margin, "margin", minimum=0)

    def draw_mode(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """``(B,)`` long per sample: 0 untouched, 1 in-painting, 2 out-painting."""
        u = rand((batch_size, 2), generator)
        return torch.where(u[:, 0] < self.p, torch.where(u[:, 1] < self.inpaint_p, INPAINT, OUTPAINT), NONE)

    def draw(self, shape, generator, mode: torch.Tensor | None = None) -> PaintingParams:
        B, _, *spatial = check_shape(shape, self.spatial_dims)
        check_generator(generator)
        dev = generator.device
        if mode is None:
            mode = self.draw_mode(B, generator)
        elif not isinstance(mode, torch.Tensor) or mode.shape != (B,) or \
                bool(((mode < NONE) | (mode > OUTPAINT)).any()):
            raise ValueError(f"mode must be a (B,) = ({B},) long tensor of 0 (none), 1 (in) or 2 (out), got {mode!r}")
        mode = mode.to(dev)
        index = torch.nonzero(mode != NONE).flatten()
        outpaint = mode.index_select(0, index) == OUTPAINT
        A, K, sd = index.numel(), self.max_boxes, self.spatial_dims
        # The uniforms first, in the order the generator always gave them (box counts, in-painting
        # sides, out-painting sides, corners); the integer arithmetic of base.randint on these few
        # numbers then runs in NumPy (float64, the same operations): ~1 µs an operation instead of
        # ~5 µs on tiny tensors, which dominated the draw of the small in-painting boxes.
        u = [rand((A, K), generator)] + [rand((A, K, sd), generator, dtype=torch.float64) for _ in range(3)]
        go, u_in, u_out, u_corner = (t.cpu().numpy() for t in u)
        out = outpaint.cpu().numpy()
        n = np.array(spatial, dtype=np.int64)

        def randint_np(low, high, uniform):          # base.randint's numbers: closed range [low, high]
            return low + np.minimum((uniform * (high - low + 1).astype(np.float64)).astype(np.int64), high - low)

        # Box counts: in-painting adds boxes while draws succeed (0..K); out-painting always keeps
        # one window and adds more the same way (1..K).
        go = (go < self.continue_p).astype(np.int64)
        count = np.where(out, 1 + go[:, :K - 1].cumprod(1).sum(1), go.cumprod(1).sum(1))
        size_in = np.maximum(randint_np(n // 6, n // 3, u_in), 1)
        size_out = n - randint_np(3 * n // 7, 4 * n // 7, u_out)
        sizes = np.where(out.reshape(A, 1, 1), size_out, size_in)
        margin = np.minimum(self.margin, (n - sizes) // 2)
        corners = randint_np(margin, n - sizes - margin, u_corner)
        used = np.arange(K).reshape(1, K) < count.reshape(A, 1)
        fill = int((sizes.prod(-1) * (used & ~out.reshape(A, 1))).sum())
        as_tensor = lambda a: torch.from_numpy(a).to(dev)                  # noqa: E731
        return PaintingParams(batch_size=B, index=index, outpaint=outpaint, corners=as_tensor(corners),
                              sizes=as_tensor(sizes), count=as_tensor(count),
                              canvas=rand((int(out.sum()), 1, *spatial), generator), box_noise=rand((fill,), generator))

    def apply(self, x, params: PaintingParams) -> torch.Tensor:
        return self.apply_(x.clone(), params)

    def apply_(self, x, params: PaintingParams) -> torch.Tensor:
        """:meth:`apply` in place on ``x`` (returned): only the boxes and the out-painting canvases
        are written, box by box on slices as released — a Python loop over at most B samples × K
        boxes, never over voxels."""
        check_batch(x, self.spatial_dims)
        check_params(params, PaintingParams, x.shape[0])
        if tuple(params.canvas.shape[2:]) != tuple(x.shape[2:]):
            raise ValueError(f"params were drawn for spatial size {tuple(params.canvas.shape[2:])}, "
                             f"but x has {tuple(x.shape[2:])}; draw them for this x")
        params = params.to(x.device)
        target, canvas, noise = x, params.canvas, params.box_noise
        if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and not x.requires_grad:
            # NumPy views of the same memory: a slice assignment costs ~1 µs of Python there, ~8 µs
            # through torch, and the boxes are small (released in-painting costs ~0.07 ms a cube).
            target, canvas, noise = x.numpy(), canvas.numpy(), noise.numpy()
        corners, sizes = params.corners.tolist(), params.sizes.tolist()
        every = slice(None)
        canvases = offset = 0                     # next out-painting canvas, next box noise entry
        for b, out, count, corner, size in zip(params.index.tolist(), params.outpaint.tolist(), params.count.tolist(),
                                               corners, sizes):
            xb = target[b]
            boxes = [(every, *map(slice, c, map(operator.add, c, s))) for c, s in zip(corner[:count], size)]
            if out:
                windows = [(box, xb[box] * 1) for box in boxes]                # copies of the kept windows
                xb[...] = canvas[canvases]                                      # broadcast over channels
                canvases += 1
                for box, kept in windows:
                    xb[box] = kept
            else:                                 # box noise in raster order, box after box (see fills)
                for box, shape in zip(boxes, size):
                    n = math.prod(shape)
                    xb[box] = noise[offset:offset + n].reshape(shape)
                    offset += n
        return x


# ----------------------------------------------------------------------------------------------
# Models Genesis restoration sample (the `models_genesis` baseline).


@dataclass
class RestorationSample:
    """A Models Genesis training pair.

    Fields:
        x: ``(B, C, *spatial)`` distorted input (shuffled, intensity-curved, painted).
        target: ``(B, C, *spatial)`` the clean crop the network must restore (flipped like ``x``).
    """

    x: torch.Tensor
    target: torch.Tensor

    @property
    def batch_size(self) -> int:
        return self.x.shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "RestorationSample":
        return RestorationSample(self.x.to(device, non_blocking=non_blocking),
                                 self.target.to(device, non_blocking=non_blocking))


def draw_genesis_flips(batch_size: int, spatial_dims: int, p: float, generator: torch.Generator,
                       max_flips: int = 3) -> FlipParams:
    """Models Genesis' flip augmentation: while a Bernoulli(``p``) draw succeeds (at most ``max_flips``
    times) flip a uniformly chosen spatial axis; an axis chosen twice flips back (net = parity)."""
    go = (rand((batch_size, max_flips), generator) < p).long().cumprod(1).bool()   # (B, F) flip t happens
    axis = (rand((batch_size, max_flips), generator) * spatial_dims).long().clamp_max_(spatial_dims - 1)
    hits = torch.nn.functional.one_hot(axis, spatial_dims) * go.unsqueeze(-1)
    return FlipParams(flips=hits.sum(1) % 2 == 1)


class GenesisRestoration:
    """Models Genesis distortion pipeline for the restoration baseline (PCRL_SPEC §9).

    Order as released: flip input and target alike (``flip_p``), local pixel shuffling
    (``shuffle_p``), non-linear intensity (``nonlinear_p``), then painting (``paint_p``; in-painting
    with ``inpaint_p``, else out-painting). Released values: 0.4, 0.5, 0.9, 0.9, 0.2.

    Call: ``GenesisRestoration(3)(cubes (B, C, X, Y, Z) in [0, 1], generator) -> RestorationSample``.
    """

    def __init__(self, spatial_dims: int = 3, flip_p: float = 0.4, shuffle_p: float = 0.5,
                 nonlinear_p: float = 0.9, paint_p: float = 0.9, inpaint_p: float = 0.2,
                 n_blocks: int = 10_000):
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.flip_p = check_probability(flip_p, "flip_p")
        self.shuffle = LocalPixelShuffle(spatial_dims, p=shuffle_p, n_blocks=n_blocks)
        self.nonlinear = NonlinearIntensity(spatial_dims, p=nonlinear_p)
        self.painting = Painting(spatial_dims, p=paint_p, inpaint_p=inpaint_p)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> RestorationSample:
        check_batch(x, self.spatial_dims)
        check_generator(generator)
        flips = draw_genesis_flips(x.shape[0], self.spatial_dims, self.flip_p, generator).flips
        target = flip_rotate(x, flips, torch.zeros(x.shape[0], dtype=torch.long))
        distorted = self.shuffle(target, generator)
        distorted = self.nonlinear(distorted, generator)
        distorted = self.painting(distorted, generator)
        return RestorationSample(x=distorted, target=target)
