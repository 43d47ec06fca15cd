"""Slow per-sample reference versions of the batched transforms (tests and benchmarks only).

Each oracle takes the same drawn parameters as the batched ``apply`` and loops over samples, written
the plain way — numpy slices, scipy.ndimage, torchvision's per-image functionals — so that agreement
checks the batched index arithmetic rather than repeating it.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.ndimage as ndi
import torch
import torchvision.transforms.v2.functional as TF
from scipy.spatial.transform import Rotation

from pcrl_lib.transforms.color import IMAGENET_MEAN, IMAGENET_STD


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def tca_numpy(x: torch.Tensor, flips, k, inverse: bool = False) -> torch.Tensor:
    """Per sample: ``np.rot90(np.flip(x, flipped axes), k, axes=in-plane)`` (or its inverse)."""
    out = []
    for b in range(x.shape[0]):
        a = _np(x[b])                                   # (C, *spatial)
        axes = [1 + d for d in range(a.ndim - 1) if bool(flips[b, d])]
        if inverse:
            a = np.rot90(a, k=-int(k[b]), axes=(1, 2))
            a = np.flip(a, axis=axes) if axes else a
        else:
            a = np.flip(a, axis=axes) if axes else a
            a = np.rot90(a, k=int(k[b]), axes=(1, 2))
        out.append(torch.from_numpy(a.copy()))
    return torch.stack(out)


def _rotation(angles) -> np.ndarray:
    angles = np.asarray(angles, dtype=np.float64)
    if angles.size == 1:
        t = math.radians(float(angles[0]))
        return np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return Rotation.from_euler("xyz", angles, degrees=True).as_matrix()


def affine(x: torch.Tensor, params, pad) -> torch.Tensor:
    """scipy.ndimage.affine_transform (order 1, grid-constant padding) per sample and channel."""
    out = _np(x).astype(np.float64).copy()
    for a, b in enumerate(params.index.tolist()):
        R = _rotation(_np(params.angles[a]))
        A = np.diag(1.0 / _np(params.scales[a]).astype(np.float64)) @ R.T
        centre = (np.array(x.shape[2:]) - 1) / 2.0
        fill = float(out[b].min()) if pad == "minimum" else float(pad)
        for c in range(x.shape[1]):
            out[b, c] = ndi.affine_transform(out[b, c], A, offset=centre - A @ centre, order=1,
                                             mode="grid-constant", cval=fill)
    return torch.from_numpy(out).to(x.dtype)


def gaussian_taps(sigma: float, radius: int) -> np.ndarray:
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (t / max(sigma, 1e-6)) ** 2)
    return w / w.sum()


def blur(x: torch.Tensor, params, radius: int) -> torch.Tensor:
    """scipy.ndimage.correlate1d with mirror (= reflect-without-edge) padding, per sample and axis."""
    out = _np(x).astype(np.float64).copy()
    for a, b in enumerate(params.index.tolist()):
        for d, n in enumerate(x.shape[2:]):
            if n == 1:
                continue
            w = gaussian_taps(float(params.sigma[a, d]), min(radius, n - 1))
            out[b] = ndi.correlate1d(out[b], w, axis=d + 1, mode="mirror")
    return torch.from_numpy(out).to(x.dtype)


def blur_torchvision(x: torch.Tensor, params, radius: int) -> torch.Tensor:
    """torchvision's gaussian_blur per 2D image (isotropic sigma)."""
    out = x.clone()
    for a, b in enumerate(params.index.tolist()):
        out[b] = TF.gaussian_blur(x[b], kernel_size=[2 * radius + 1] * 2, sigma=[float(params.sigma[a, 0])] * 2)
    return out


def nonlinear(x: torch.Tensor, params, n_points: int) -> torch.Tensor:
    """Models Genesis' Bézier curve with numpy and np.interp, per sample."""
    out = _np(x).astype(np.float64).copy()
    t = np.linspace(0.0, 1.0, n_points)
    for a, b in enumerate(params.index.tolist()):
        (x1, y1), (x2, y2) = _np(params.control[a]).astype(np.float64)
        px, py = np.array([0.0, x1, x2, 1.0]), np.array([0.0, y1, y2, 1.0])
        basis = np.array([math.comb(3, i) * (1 - t) ** (3 - i) * t ** i for i in range(4)])
        xs, ys = np.sort(px @ basis), np.sort(py @ basis)
        if bool(params.invert[a]):
            ys = ys[::-1]
        out[b] = np.interp(out[b], xs, ys)
    return torch.from_numpy(out).to(x.dtype)


def painting(x: torch.Tensor, params) -> torch.Tensor:
    """Box by box with slices, as the released in-/out-painting loops: out-painting starts from the
    drawn canvas and copies the windows back; in-painting takes its boxes' fills from the flat
    ``box_noise`` in order."""
    out = x.clone()
    outpaint = params.outpaint.tolist()
    offset = 0
    for a, b in enumerate(params.index.tolist()):
        canvas = params.canvas[sum(outpaint[:a])].expand_as(x[b]).clone() if outpaint[a] else out[b].clone()
        for k in range(int(params.count[a])):
            box = list(zip(params.corners[a, k].tolist(), params.sizes[a, k].tolist()))
            sl = (slice(None),) + tuple(slice(c, c + s) for c, s in box)
            if outpaint[a]:
                canvas[sl] = x[b][sl]
            else:
                n = math.prod(s for _, s in box)
                canvas[sl] = params.box_noise[offset:offset + n].view([s for _, s in box])
                offset += n
        out[b] = canvas
    return out


def local_shuffle(x: torch.Tensor, params) -> torch.Tensor:
    """The released loop: each block read from the original, permuted, written in order."""
    out = _np(x).copy()
    orig = _np(x)
    N = params.sizes.shape[1]
    # perm lists the blocks by volume (ascending, stable in block number): find each block's slice.
    vol = _np(params.sizes.prod(-1).flatten())
    order = np.argsort(vol, kind="stable")
    start = np.empty(len(vol), dtype=np.int64)
    start[order] = np.cumsum(vol[order]) - vol[order]
    perm = _np(params.perm)
    corners, sizes = params.corners.tolist(), params.sizes.tolist()
    for a, b in enumerate(params.index.tolist()):
        for i in range(N):
            blk = a * N + i
            sl = (slice(None),) + tuple(slice(c, c + s) for c, s in zip(corners[a][i], sizes[a][i]))
            window = orig[b][sl].reshape(x.shape[1], -1)
            out[b][sl] = window[:, perm[start[blk]:start[blk] + vol[blk]]].reshape(out[b][sl].shape)
    return torch.from_numpy(out)


def crop_resize(x: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear (edge-clamped) samples at ceil(crop/size)² points per output pixel, averaged; numpy."""
    B, C, H, W = x.shape
    out = np.zeros((B, C, size, size))
    img = _np(x).astype(np.float64)
    for b in range(B):
        top, left, h, w = [int(v) for v in boxes[b]]
        ny, nx = math.ceil(h / size), math.ceil(w / size)
        ys = top + (np.arange(size)[:, None] + (np.arange(ny)[None, :] + 0.5) / ny) * h / size - 0.5
        xs = left + (np.arange(size)[:, None] + (np.arange(nx)[None, :] + 0.5) / nx) * w / size - 0.5
        ys, xs = np.clip(ys.ravel(), 0, H - 1), np.clip(xs.ravel(), 0, W - 1)
        y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
        y1, x1 = np.minimum(y0 + 1, H - 1), np.minimum(x0 + 1, W - 1)
        wy, wx = (ys - y0)[:, None], (xs - x0)[None, :]
        im = img[b]
        val = ((1 - wy) * (1 - wx) * im[:, y0][:, :, x0] + (1 - wy) * wx * im[:, y0][:, :, x1]
               + wy * (1 - wx) * im[:, y1][:, :, x0] + wy * wx * im[:, y1][:, :, x1])
        out[b] = val.reshape(C, size, ny, size, nx).mean(axis=(2, 4))
    return torch.from_numpy(out).to(x.dtype)


def cutout(x: torch.Tensor, centres: torch.Tensor, length: int) -> torch.Tensor:
    """The released Cutout, per image, with given centres."""
    out = x.clone()
    H, W = x.shape[2:]
    for b in range(x.shape[0]):
        mask = np.ones((H, W), np.float32)
        for cy, cx in centres[b].tolist():
            y1, y2 = np.clip(cy - length // 2, 0, H), np.clip(cy + length // 2, 0, H)
            x1, x2 = np.clip(cx - length // 2, 0, W), np.clip(cx + length // 2, 0, W)
            mask[y1:y2, x1:x2] = 0.0
        out[b] = x[b] * torch.from_numpy(mask)
    return out


def grayscale(x: torch.Tensor, params) -> torch.Tensor:
    out = x.clone()
    for b in params.index.tolist():
        out[b] = TF.rgb_to_grayscale(x[b], num_output_channels=3)
    return out


_JITTER = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)


def jitter(x: torch.Tensor, params) -> torch.Tensor:
    """torchvision's functional colour adjustments, one image at a time, in each sample's order."""
    out = x.clone()
    for a, b in enumerate(params.index.tolist()):
        img = x[b]
        for op in params.order[a].tolist():
            img = _JITTER[op](img, float(params.factors[a, op]))
        out[b] = img
    return out


def normalize(x: torch.Tensor) -> torch.Tensor:
    return torch.stack([TF.normalize(img, list(IMAGENET_MEAN), list(IMAGENET_STD)) for img in x])


def rotate_flip_torchvision(x: torch.Tensor, rot_params, flip_params) -> torch.Tensor:
    """torchvision's rotate (bilinear, zero fill) then horizontal flip, per image."""
    out = x.clone()
    angles = dict(zip(rot_params.index.tolist(), rot_params.angles[:, 0].tolist()))
    for b in range(x.shape[0]):
        img = x[b]
        if b in angles:
            img = TF.rotate(img, angles[b], interpolation=TF.InterpolationMode.BILINEAR)
        if bool(flip_params.flips[b, 1]):
            img = TF.horizontal_flip(img)
        out[b] = img
    return out


def views3d_view(crop: torch.Tensor, p: dict, code: torch.Tensor, views) -> tuple[torch.Tensor, torch.Tensor]:
    """One PCRLViews3D view from its drawn parameters, step by step per sample: ``(x, T)``."""
    v = tca_numpy(crop, p["flip"].flips, torch.zeros(crop.shape[0], dtype=torch.long)).to(crop.dtype)
    v = affine(v, p["affine"], views.affine.pad)
    v = blur(v, p["blur"], views.blur.radius)
    v = local_shuffle(v, p["shuffle"])
    x = painting(v, p["painting"])
    sd = x.ndim - 2
    flips, k = code[:, :sd].bool(), code[:, sd:].argmax(1)
    return x, tca_numpy(x, flips, k)


def local_shuffle_released_style(x: torch.Tensor, p: float, n_blocks: int, rng: np.random.Generator) -> torch.Tensor:
    """Timing reference: the released per-cube loop drawing its own randomness block by block
    (one Bernoulli per cube, per block: sizes in 1..⌊n/10⌋, a corner, a numpy shuffle)."""
    out = _np(x).copy()
    orig = _np(x)
    spatial = x.shape[2:]
    max_sizes = [max(1, n // 10) for n in spatial]
    for b in range(x.shape[0]):
        if rng.random() >= p:
            continue
        for _ in range(n_blocks):
            sizes = [int(rng.integers(1, m + 1)) for m in max_sizes]
            corner = [int(rng.integers(0, n - s + 1)) for n, s in zip(spatial, sizes)]
            sl = tuple(slice(c, c + s) for c, s in zip(corner, sizes))
            window = orig[b, 0][sl].flatten()
            rng.shuffle(window)
            out[b, 0][sl] = window.reshape(sizes)
    return torch.from_numpy(out)
