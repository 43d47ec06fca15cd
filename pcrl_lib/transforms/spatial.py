"""Spatial transforms for 2D images ``(B, C, H, W)`` and 3D volumes ``(B, C, X, Y, Z)``, batched with
per-sample parameters: exact flips/90° rotations (one strided copy per sample), random affine (rotation + scale about
the centre, one ``grid_sample``; 3D on CPU as two-slice 2D reads) and Gaussian blur (one small matrix product per
axis, in banded blocks on long axes; large 2D images by convolution).

The released 3D pipeline (PCRL_SPEC §7) uses torchio's ``RandomFlip()``, ``RandomAffine()`` and
``RandomBlur()`` with their defaults; :class:`RandomFlip`, :class:`RandomAffine` and
:class:`GaussianBlur` reproduce those behaviours with their own defaults documented below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .base import (Params, RandomTransform, active_index, apply_to_index, check_batch, check_generator,
                   check_interval, check_params, check_probability, check_shape, rand, uniform)

# ----------------------------------------------------------------------------------------------
# Exact flips and k·90° rotations: one strided copy per sample.

# dtypes whose CPU tensors flip_rotate copies through NumPy views.
_NUMPY_DTYPES = (torch.float16, torch.float32, torch.float64, torch.uint8, torch.int16, torch.int32, torch.int64,
                 torch.bool)


def flip_rotate(x: torch.Tensor, flips: torch.Tensor, k: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """Per-sample flips then k·90° rotation in the plane of the first two spatial axes.

    Forward: ``y[b] = torch.rot90(torch.flip(x[b], flipped axes of b), k[b], dims=(first two spatial))``;
    ``inverse=True`` computes the inverse map (rotate by ``-k``, then flip), so
    ``flip_rotate(flip_rotate(x, f, k), f, k, inverse=True) == x`` exactly.

    Args:
        x: ``(B, C, *spatial)`` with 2 or 3 spatial axes (in-plane = H, W in 2D; X, Y in 3D).
        flips: ``(B, spatial_dims)`` bool, one flag per spatial axis.
        k: ``(B,)`` long in {0, 1, 2, 3}; any odd ``k`` needs a square in-plane size.
    Returns: a new contiguous tensor shaped like ``x``: per sample one strided copy through NumPy
    views on CPU (NumPy's flips + ``rot90`` + ``copy``, as released), else one ``torch.flip`` (or
    none) and one copy.
    """
    if x.ndim not in (4, 5):
        raise ValueError(f"x must be (B, C, H, W) or (B, C, X, Y, Z), got shape {tuple(x.shape)}")
    B, C, *spatial = x.shape
    sd = len(spatial)
    device = x.device
    flips = flips.to(device=device, dtype=torch.bool)
    k = k.to(device=device, dtype=torch.long)
    if flips.shape != (B, sd):
        raise ValueError(f"flips must be (B, spatial_dims) = {(B, sd)} bool, got {tuple(flips.shape)}")
    if k.shape != (B,) or bool(((k < 0) | (k > 3)).any()):
        raise ValueError(f"k must be (B,) = ({B},) with values in {{0, 1, 2, 3}}, got {k.tolist()}")
    n0, n1 = spatial[0], spatial[1]
    if n0 != n1 and bool((k % 2 == 1).any()):
        raise ValueError(f"odd k (90°/270° rotations) need a square in-plane size, got {n0}x{n1}; "
                         f"crop x to equal first two spatial sizes")

    # Every flip set followed by a k·90° turn is one flip set followed by an optional in-plane
    # transpose (torch.rot90(t, 1) = t.flip(1).T, rot90(t, 2) = t.flip(0, 1), rot90(t, 3) =
    # t.flip(0).T), so each sample costs one torch.flip (none when the set is empty) and the copy
    # into the output; a flip of an in-plane axis after the transpose is the other axis's before it.
    a0, a1 = 1, 2                                                     # in-plane axes of one sample (C, ...)
    extra = ((), (a1,), (a0, a1), (a0,))                              # flips that turn by k, before the transpose
    flags, turns = flips.tolist(), k.tolist()
    plans = []
    for b in range(B):
        mine = {1 + d for d in range(sd) if flags[b][d]}
        if inverse:      # x = flip(F) ∘ rot90(4 - k): F's in-plane axes swap when the turn transposes
            turn = (4 - turns[b]) % 4
            if turn % 2:
                mine = {{a0: a1, a1: a0}.get(d, d) for d in mine}
        else:
            turn = turns[b]
        plans.append((tuple(sorted(mine.symmetric_difference(extra[turn]))), turn % 2 == 1))
    if device.type == "cpu" and x.dtype in _NUMPY_DTYPES and not x.requires_grad:
        # NumPy views take negative strides, so each sample is one strided copy, as released. A
        # 2D image whose innermost axis (W) reverses without a transpose (the horizontal flip) is
        # torch.flip's instead: its reversed-row copy is vectorised, NumPy's copy with a negative
        # innermost stride is not (~4x slower at 3x224²).
        out = torch.empty(x.shape, dtype=x.dtype)
        source, target = x.numpy(), out.numpy()
        inner = sd if sd == 2 else None                               # W of a 2D sample (C, H, W)
        for b, (dims, transpose) in enumerate(plans):
            if inner in dims and not transpose:
                out[b] = torch.flip(x[b], dims)
                continue
            v = np.flip(source[b], dims) if dims else source[b]
            target[b] = v.swapaxes(a0, a1) if transpose else v
        return out
    views = []
    for b, (dims, transpose) in enumerate(plans):
        v = torch.flip(x[b], dims) if dims else x[b]
        views.append(v.transpose(a0, a1) if transpose else v)
    return torch.stack(views)


@dataclass(frozen=True)
class FlipParams(Params):
    """``flips``: ``(B, spatial_dims)`` bool — axis ``d`` of sample ``b`` is mirrored."""

    flips: torch.Tensor

    @property
    def batch_size(self) -> int:
        return self.flips.shape[0]


class RandomFlip(RandomTransform):
    """Mirror each listed spatial axis independently with probability ``p`` (per sample).

    Args:
        spatial_dims: 2 or 3.
        axes: spatial axes that may flip (0 = H or X, ...); ``None`` = all. torchio's
            ``RandomFlip()`` default, used by the released 3D code, is ``axes=(0,)``.
        p: flip probability per axis.
    """

    def __init__(self, spatial_dims: int, axes: Sequence[int] | None = None, p: float = 0.5):
        super().__init__(spatial_dims)
        axes = tuple(range(self.spatial_dims)) if axes is None else tuple(axes)
        if not axes or any(a not in range(self.spatial_dims) for a in axes) or len(set(axes)) != len(axes):
            raise ValueError(f"axes must be distinct spatial axes in 0..{self.spatial_dims - 1}, got {axes!r}")
        self.axes = axes
        self.p = check_probability(p, "p")

    def draw(self, shape, generator) -> FlipParams:
        B = check_shape(shape, self.spatial_dims)[0]
        check_generator(generator)
        allowed = torch.zeros(self.spatial_dims, dtype=torch.bool, device=generator.device)
        allowed[list(self.axes)] = True
        return FlipParams(flips=(rand((B, self.spatial_dims), generator) < self.p) & allowed)

    def apply(self, x, params: FlipParams) -> torch.Tensor:
        check_batch(x, self.spatial_dims)
        check_params(params, FlipParams, x.shape[0])
        return flip_rotate(x, params.flips, torch.zeros(x.shape[0], dtype=torch.long, device=x.device))


# ----------------------------------------------------------------------------------------------
# Random affine: rotation + scale about the centre.


def rotation_matrices(angles_deg: torch.Tensor) -> torch.Tensor:
    """Rotation matrices in voxel-index axis order.

    2D: ``angles_deg`` ``(N, 1)`` → ``(N, 2, 2)`` = [[cos, -sin], [sin, cos]] acting on (row, column);
    a positive angle turns the image counter-clockwise on screen (as torchvision's ``rotate``).
    3D: ``angles_deg`` ``(N, 3)`` = rotations about axes 0, 1, 2 (x, y, z), composed extrinsically
    as ``R = R_z @ R_y @ R_x`` (scipy's ``Rotation.from_euler("xyz", ...)``) → ``(N, 3, 3)``.
    """
    rad = torch.deg2rad(angles_deg.to(torch.float64))
    c, s = torch.cos(rad), torch.sin(rad)
    one, zero = torch.ones_like(c[:, 0]), torch.zeros_like(c[:, 0])
    if angles_deg.shape[1] == 1:
        return torch.stack([torch.stack([c[:, 0], -s[:, 0]], -1), torch.stack([s[:, 0], c[:, 0]], -1)], -2)

    def mat(rows):
        return torch.stack([torch.stack(r, -1) for r in rows], -2)

    rx = mat([[one, zero, zero], [zero, c[:, 0], -s[:, 0]], [zero, s[:, 0], c[:, 0]]])
    ry = mat([[c[:, 1], zero, s[:, 1]], [zero, one, zero], [-s[:, 1], zero, c[:, 1]]])
    rz = mat([[c[:, 2], -s[:, 2], zero], [s[:, 2], c[:, 2], zero], [zero, zero, one]])
    return rz @ ry @ rx


def sampling_matrices(angles_deg: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """``(N, sd, sd)`` float64 matrix ``A`` with ``in - c = A (out - c)`` in voxel coordinates.

    The content is scaled by ``scales`` (``(N, sd)``, >1 magnifies) then rotated by ``angles_deg``
    about the centre ``c = (n - 1) / 2``; sampling needs the inverse ``A = diag(1/s) R^T``.
    """
    return torch.diag_embed(1.0 / scales.to(torch.float64)) @ rotation_matrices(angles_deg).transpose(1, 2)


def _affine_grid(theta: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """``F.affine_grid(theta, shape, align_corners=False)`` for a translation-free ``theta`` (N, sd, sd).

    Built by broadcasting one coordinate vector per axis: the same numbers as ``affine_grid``, which
    runs a batched matrix product with an inner size of 4 and is ~10x slower on CPU.
    """
    N, _, *spatial = shape
    sd = len(spatial)
    grid = torch.empty(N, *spatial, sd, dtype=theta.dtype, device=theta.device)
    for i in range(sd):                   # grid component i (fastest axis first)
        component = torch.zeros((N,) + (1,) * sd, dtype=theta.dtype, device=theta.device)
        for j in range(sd):               # component j of the input coordinate = spatial axis sd-1-j
            axis = sd - 1 - j
            n = spatial[axis]
            coord = (torch.arange(n, dtype=theta.dtype, device=theta.device) * 2 + 1) / n - 1
            view = [1] * (sd + 1)
            view[1 + axis] = n
            component = component + theta[:, i, j].view((N,) + (1,) * sd) * coord.view(view)
        grid[..., i] = component
    return grid


def _trilinear_by_slices(x: torch.Tensor, matrices: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """:func:`affine_resample`'s trilinear 3D case through two bilinear 2D ``grid_sample`` reads.

    PyTorch's 2D CPU sampler is vectorised, its 3D one is not (~2x slower for twice the reads). A
    trilinear read at ``(qx, qy, qz)`` is ``lerp(b(x0), b(x0 + 1), qx - x0)``, ``x0 = floor(qx)``, where
    ``b(s)`` is the bilinear read of X-slice ``s`` at ``(qy, qz)``. The X slices of ``x - fill`` are
    stacked as one 2D image of ``(X + 1) (Y + 1)`` rows (tile ``t`` holds slice ``t - 1`` after one
    zero row, tile 0 is zero) and read as two channels, the second a strided view one tile further
    (slice ``x0 + 1``), at row ``(x0 + 1)(Y + 1) + 1 + clamp(qy, -1, Y)``, column ``qz``. The zero
    rows between tiles and the clamp make reads that leave a slice read zero, as in 3D; ``x0``
    outside ``[-1, X - 1]`` lands off the image (zero). Equal to the 3D ``grid_sample`` up to float32
    rounding of the larger normalised row coordinate (a few 1e-4 of a voxel).

    Args: ``x`` ``(N, C, X, Y, Z)`` float on CPU; ``matrices`` ``(N, 3, 3)`` float64; ``fill`` ``(N,)``.
    Returns: ``(N, C, X, Y, Z)`` contiguous.
    """
    N, C, X, Y, Z = x.shape
    H = (X + 1) * (Y + 1)
    dtype = x.dtype
    plain = not bool(fill.ne(0).any())                   # no shift needed (common: crops with a 0 minimum)
    tiles = x.new_zeros(N, C, X + 2, Y + 1, Z)          # tile t = slice t - 1 below one zero row
    if plain:
        tiles[:, :, 1:X + 1, 1:] = x
    else:
        torch.sub(x, fill.view(N, 1, 1, 1, 1), out=tiles[:, :, 1:X + 1, 1:])
    A = matrices.to(device=x.device, dtype=torch.float64)
    centre = torch.tensor([(X - 1) / 2, (Y - 1) / 2, (Z - 1) / 2], dtype=torch.float64, device=x.device)
    offset = centre - A @ centre                                                     # (N, 3)
    ramps = [torch.arange(n, dtype=torch.float64, device=x.device) for n in (X, Y, Z)]

    def coordinate(i: int, scale: float = 1.0, shift: float = 0.0):
        """``scale * q_i + shift`` as the broadcast pair ``(N, X, Y, 1)``, ``(N, 1, 1, Z)`` in x's dtype."""
        a = A[:, i] * scale
        xy = ((offset[:, i] * scale + shift).view(N, 1, 1) + a[:, 0].view(N, 1, 1) * ramps[0].view(1, X, 1)
              + a[:, 1].view(N, 1, 1) * ramps[1].view(1, 1, Y))
        return xy.to(dtype).view(N, X, Y, 1), (a[:, 2].view(N, 1) * ramps[2]).to(dtype).view(N, 1, 1, Z)

    grid = torch.empty(N, X, Y, Z, 2, dtype=dtype, device=x.device)
    torch.add(*coordinate(2, 2.0 / Z, 1.0 / Z - 1.0), out=grid[..., 0])         # column qz, normalised
    qx = torch.add(*coordinate(0))
    x0 = torch.floor(qx)
    weight = qx.sub_(x0)                                                          # qx - x0
    # row (x0 + 1)(Y + 1) + 1 + clamp(qy, -1, Y), normalised: (2 row + 1) / H - 1
    qy = torch.add(*coordinate(1, 2.0 / H, (2.0 * (Y + 2) + 1.0) / H - 1.0))
    qy.clamp_(-2.0 / H + (2.0 * (Y + 2) + 1.0) / H - 1.0, 2.0 * Y / H + (2.0 * (Y + 2) + 1.0) / H - 1.0)
    torch.add(qy, x0, alpha=2.0 * (Y + 1) / H, out=grid[..., 1])
    grid = grid.view(N, X * Y, Z, 2)
    out = torch.empty(x.shape, dtype=dtype, device=x.device)
    for c in range(C):
        plane = tiles[:, c]
        pair = plane.as_strided((N, 2, H, Z), (plane.stride(0), (Y + 1) * Z, Z, 1))   # slices x0, x0 + 1
        read = F.grid_sample(pair, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        torch.lerp(read[:, 0].view(N, X, Y, Z), read[:, 1].view(N, X, Y, Z), weight, out=out[:, c])
    return out if plain else out.add_(fill.view(N, 1, 1, 1, 1))


def affine_resample(x: torch.Tensor, matrices: torch.Tensor, pad: str | float = 0.0,
                    mode: str = "bilinear", by_slices: bool | None = None) -> torch.Tensor:
    """Resample ``x`` ``(N, C, *spatial)`` with per-sample voxel-space ``matrices`` ``(N, sd, sd)``.

    Output voxel ``p`` reads input position ``c + A (p - c)`` by (tri)linear interpolation; outside
    the input it reads ``pad`` ("minimum" = each sample's minimum, torchio's default, or a number).
    ``by_slices``: read a 3D trilinear resampling as 2D slices (:func:`_trilinear_by_slices`, ~2x
    faster on CPU); ``None`` does so for 3D bilinear float32/float64 on CPU without autograd, else
    one ``grid_sample``.
    """
    N, C, *spatial = x.shape
    sd = len(spatial)
    if by_slices is None:
        by_slices = x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and not x.requires_grad
    if by_slices and sd == 3 and mode == "bilinear":
        fill = x.reshape(N, -1).amin(1) if pad == "minimum" else x.new_full((N,), float(pad))
        return _trilinear_by_slices(x, matrices, fill)
    half = torch.tensor([n / 2.0 for n in spatial], dtype=torch.float64, device=matrices.device)
    # grid_sample works in normalised coords u = (p - c) / (n / 2) (align_corners=False) and lists
    # them fastest axis first (W, H[, D]), so conjugate by the half-sizes and reverse the axis order.
    theta = (matrices * half.view(1, 1, sd)) / half.view(1, sd, 1)
    theta = theta.flip(1).flip(2)
    grid = _affine_grid(theta.to(device=x.device, dtype=x.dtype), x.shape)
    if pad != "minimum" and float(pad) == 0.0:                     # zero padding as it is (2D rotation)
        return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)
    if pad == "minimum":
        fill = x.reshape(N, -1).amin(1).view(N, *([1] * (sd + 1)))
    else:
        fill = torch.full((N,) + (1,) * (sd + 1), float(pad), dtype=x.dtype, device=x.device)
    # Zero padding of (x - fill), shifted back, is padding with `fill` while still interpolating
    # across the border exactly like zero padding does.
    return F.grid_sample(x - fill, grid, mode=mode, padding_mode="zeros", align_corners=False) + fill


@dataclass(frozen=True)
class AffineParams(Params):
    """``index`` ``(A,)`` samples transformed; ``angles`` ``(A, 1|3)`` degrees; ``scales`` ``(A, sd)``."""

    batch_size: int
    index: torch.Tensor
    angles: torch.Tensor
    scales: torch.Tensor


class RandomAffine(RandomTransform):
    """Random rotation and scaling about the centre, applied with probability ``p`` per sample.

    Defaults follow torchio's ``RandomAffine()`` (the released 3D code): each angle U(-10°, 10°),
    each axis scale U(0.9, 1.1) (``isotropic=False``), no translation, linear interpolation,
    padding with the sample's minimum. The 2D view pipeline uses ``scales=(1, 1)``, ``pad=0``
    (torchvision's ``RandomRotation(10)`` with its black fill).

    Args:
        spatial_dims: 2 (one in-plane angle) or 3 (three Euler angles, see :func:`rotation_matrices`).
        degrees: rotation range ±``degrees`` (a number) or ``(low, high)``.
        scales: ``(low, high)`` range of the scale factors.
        isotropic: one scale for all axes instead of one per axis.
        p: probability that a sample is transformed at all.
        pad: ``"minimum"`` or a constant fill value.
        mode: ``"bilinear"`` ((tri)linear) or ``"nearest"``.
    """

    def __init__(self, spatial_dims: int, degrees: float | Sequence[float] = 10.0,
                 scales: Sequence[float] = (0.9, 1.1), isotropic: bool = False, p: float = 1.0,
                 pad: str | float = "minimum", mode: str = "bilinear"):
        super().__init__(spatial_dims)
        if isinstance(degrees, (int, float)) and not isinstance(degrees, bool):
            degrees = (-abs(float(degrees)), abs(float(degrees)))
        self.degrees = check_interval(degrees, "degrees", -180.0, 180.0)
        self.scales = check_interval(scales, "scales", 1e-3)
        self.isotropic = bool(isotropic)
        self.p = check_probability(p, "p")
        if pad != "minimum" and (isinstance(pad, (bool, str)) or not isinstance(pad, (int, float))):
            raise ValueError(f"pad must be 'minimum' or a number, got {pad!r}")
        self.pad = pad
        if mode not in ("bilinear", "nearest"):
            raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")
        self.mode = mode

    def draw(self, shape, generator) -> AffineParams:
        B = check_shape(shape, self.spatial_dims)[0]
        check_generator(generator)
        index = active_index(B, self.p, generator)
        A = index.numel()
        n_angles = 1 if self.spatial_dims == 2 else 3
        angles = uniform(*self.degrees, (A, n_angles), generator)
        scales = uniform(*self.scales, (A, 1 if self.isotropic else self.spatial_dims), generator)
        return AffineParams(batch_size=B, index=index, angles=angles,
                            scales=scales.expand(A, self.spatial_dims).contiguous())

    def apply(self, x, params: AffineParams) -> torch.Tensor:
        check_batch(x, self.spatial_dims)
        check_params(params, AffineParams, x.shape[0])
        params = params.to(x.device)
        matrices = sampling_matrices(params.angles, params.scales)
        return apply_to_index(x, params.index, lambda xs: affine_resample(xs, matrices, self.pad, self.mode))


# ----------------------------------------------------------------------------------------------
# Gaussian blur with per-sample sigma.


def gaussian_kernels(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """``(N, 2·radius + 1)`` normalised Gaussian taps at offsets ``-radius..radius`` for ``sigma`` (N,).

    Same taps as torchvision's ``gaussian_blur`` with ``kernel_size = 2·radius + 1``.
    """
    t = torch.arange(-radius, radius + 1, dtype=torch.float32, device=sigma.device)
    # A sigma of 0 (allowed by torchio's range (0, 2)) means "no blur": the clamp turns it into a
    # delta kernel instead of 0/0.
    w = torch.exp(-0.5 * (t / sigma.float().clamp_min(1e-6).unsqueeze(1)) ** 2)
    return w / w.sum(1, keepdim=True)


def blur_matrices(sigma: torch.Tensor, n: int, radius: int) -> torch.Tensor:
    """``(N, n, n)`` matrices ``K`` with ``(K @ v)`` = Gaussian blur of ``v`` (length n) with reflect padding.

    Reflect padding (``torch.nn.functional.pad(mode="reflect")``, scipy's ``mirror``) is folded into
    the matrix, so blurring along an axis is one batched matrix product. Needs ``radius < n``.
    """
    taps = gaussian_kernels(sigma, radius)                                   # (N, T)
    src = torch.arange(n, device=sigma.device).view(n, 1) + torch.arange(-radius, radius + 1, device=sigma.device)
    src = src.abs()
    src = torch.where(src > n - 1, 2 * (n - 1) - src, src)                   # (n, T) reflected sources
    N, T = taps.shape
    K = torch.zeros(N, n, n, dtype=taps.dtype, device=taps.device)
    return K.scatter_add_(2, src.unsqueeze(0).expand(N, n, T), taps.unsqueeze(1).expand(N, n, T))


def _gaussian_blur_2d_conv(x: torch.Tensor, sigma: torch.Tensor, radii: Sequence[int]) -> torch.Tensor:
    """:func:`gaussian_blur` of large images ``(N, C, H, W)`` as two depthwise convolutions (one group
    per image and channel) of a reflect-padded copy: the dense matrices spend ``n`` multiply-adds
    per pixel on ``2 r + 1`` taps (224 on 13 at 224²), ~1.5x slower on CPU. Same taps and padding,
    equal up to float rounding."""
    N, C, H, W = x.shape
    rh, rw = radii
    taps = [gaussian_kernels(sigma[:, d], r).to(x.dtype).repeat_interleave(C, 0) for d, r in enumerate(radii)]
    y = F.pad(x.reshape(1, N * C, H, W), (rw, rw, rh, rh), mode="reflect")
    y = F.conv2d(y, taps[0].view(N * C, 1, -1, 1), groups=N * C)
    y = F.conv2d(y, taps[1].view(N * C, 1, 1, -1), groups=N * C)
    return y.view(N, C, H, W)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, radius: int | Sequence[int]) -> torch.Tensor:
    """Blur ``x`` ``(N, C, *spatial)`` with per-sample, per-axis ``sigma`` ``(N, sd)``.

    ``radius`` (per axis or one int) is clipped to ``n - 1`` per axis (reflect padding needs it).
    One batched matrix product per axis; 2D images from 128² up on CPU by
    :func:`_gaussian_blur_2d_conv`.
    """
    N, C, *spatial = x.shape
    sd = len(spatial)
    radii = [radius] * sd if isinstance(radius, int) else list(radius)
    sigma = sigma.to(x.device)
    if sd == 2 and x.device.type == "cpu" and min(spatial) >= 128:
        return _gaussian_blur_2d_conv(x, sigma, [min(r, n - 1) for r, n in zip(radii, spatial)])
    y = x
    for axis, n in enumerate(spatial):
        if n == 1:
            continue
        r = min(radii[axis], n - 1)
        K = blur_matrices(sigma[:, axis], n, r).to(x.dtype)
        if axis == sd - 1:        # last axis: rows @ K^T
            y = torch.bmm(y.reshape(N, -1, n), K.transpose(1, 2))
        else:                     # other axes: K @ (n, rest), a middle axis moved first (one copy)
            moved = y.reshape(N, C, *spatial).movedim(2 + axis, 2)
            shape = moved.shape
            y = _banded_matmul(K, moved.reshape(N, C, n, -1), r).view(shape).movedim(2, 2 + axis)
    return y.reshape(N, C, *spatial).contiguous()


def _banded_matmul(K: torch.Tensor, y: torch.Tensor, radius: int, rows: int = 16) -> torch.Tensor:
    """``K @ y`` per sample and channel for ``K`` ``(N, n, n)`` zero beyond ``radius`` off the
    diagonal (the blur matrices, reflection included) and ``y`` ``(N, C, n, M)``.

    For ``n >= 3 rows`` each block of ``rows`` output rows multiplies only the ``rows + 2 radius``
    input rows it can reach (at 64, 28 of 64: ~2x faster); the skipped terms are exact zeros.
    """
    N, C, n, M = y.shape
    if n < 3 * rows:
        return torch.matmul(K.unsqueeze(1), y)
    out = torch.empty(N, C, n, M, dtype=y.dtype, device=y.device)
    for c in range(C):
        for first in range(0, n, rows):
            lo, hi = max(0, first - radius), min(n, first + rows + radius)
            torch.bmm(K[:, first:first + rows, lo:hi], y[:, c, lo:hi], out=out[:, c, first:first + rows])
    return out


@dataclass(frozen=True)
class BlurParams(Params):
    """``index`` ``(A,)`` samples blurred; ``sigma`` ``(A, spatial_dims)`` in voxels/pixels."""

    batch_size: int
    index: torch.Tensor
    sigma: torch.Tensor


class GaussianBlur(RandomTransform):
    """Gaussian blur with a random sigma, applied with probability ``p`` per sample.

    Args:
        spatial_dims: 2 or 3.
        sigma: ``(low, high)`` range of the standard deviation in voxels/pixels.
        p: probability that a sample is blurred.
        isotropic: one sigma for all axes (the 2D SimCLR blur) instead of one per axis
            (torchio's ``RandomBlur()``, range (0, 2), used by the released 3D code).
        radius: kernel radius in voxels; ``None`` = ``ceil(3 · sigma_high)`` (kernel size 13 for
            sigma up to 2); clipped to ``n - 1`` on short axes.
    """

    def __init__(self, spatial_dims: int, sigma: Sequence[float] = (0.1, 2.0), p: float = 0.5,
                 isotropic: bool = True, radius: int | None = None):
        super().__init__(spatial_dims)
        self.sigma = check_interval(sigma, "sigma", 0.0)
        self.p = check_probability(p, "p")
        self.isotropic = bool(isotropic)
        if radius is None:
            radius = max(1, math.ceil(3 * self.sigma[1]))
        if isinstance(radius, bool) or not isinstance(radius, int) or radius < 1:
            raise ValueError(f"radius must be a positive int or None, got {radius!r}")
        self.radius = radius

    def draw(self, shape, generator) -> BlurParams:
        B = check_shape(shape, self.spatial_dims)[0]
        check_generator(generator)
        index = active_index(B, self.p, generator)
        A = index.numel()
        sigma = uniform(*self.sigma, (A, 1 if self.isotropic else self.spatial_dims), generator)
        return BlurParams(batch_size=B, index=index, sigma=sigma.expand(A, self.spatial_dims).contiguous())

    def apply(self, x, params: BlurParams) -> torch.Tensor:
        check_batch(x, self.spatial_dims)
        check_params(params, BlurParams, x.shape[0])
        params = params.to(x.device)
        return apply_to_index(x, params.index, lambda xs: gaussian_blur(xs, params.sigma, self.radius))
