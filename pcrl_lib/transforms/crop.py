"""Random resized crop of the 2D view pipeline (PCRL_SPEC §7), batched with per-sample boxes:
torchvision's sampling rule, roi_align's bilinear samples (on CPU read in two separable passes).
Cutout is in :mod:`.cutout`, rotation, flip and blur in :mod:`.spatial`, colour in :mod:`.color`;
:class:`~pcrl_lib.transforms.views.PCRLViews2D` assembles them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torchvision.ops import roi_align

from .base import (Params, RandomTransform, check_batch, check_generator, check_interval, check_params,
                   check_positive_int, check_shape, rand, randint)


@dataclass(frozen=True)
class CropParams(Params):
    """``boxes`` ``(B, 4)`` long: ``top, left, height, width`` of each crop in input pixels."""

    boxes: torch.Tensor

    @property
    def batch_size(self) -> int:
        return self.boxes.shape[0]


def _taps(start: torch.Tensor, length: torch.Tensor, n: int, size: int):
    """roi_align's samples along one axis as two-tap linear reads, for every sample at once.

    A crop of ``length`` pixels from ``start`` gets ``g = ceil(length / size)`` samples per output
    pixel at ``start - 0.5 + (i + (j + 0.5) / g) length / size``, ``j < g``, clamped to ``[0, n - 1]``
    (roi_align's border clamp). Samples ``j >= g`` of a sample with fewer than ``G = max g`` repeat
    sample ``g - 1`` and get weight 0.

    Returns ``G``, ``lo``, ``hi`` ``(B, size·G)`` long (the two pixels read), ``t`` ``(B, size·G)``
    float64 (weight of ``hi``) and ``weights`` ``(B, G)`` float64 (``1/g`` for ``j < g``, else 0).
    """
    g = -(-length // size)
    G = int(g.max())
    j = torch.arange(G, dtype=torch.float64)
    per = g.double().view(-1, 1, 1)
    i = torch.arange(size, dtype=torch.float64).view(1, -1, 1)
    p = start.double().view(-1, 1, 1) - 0.5 + (i + (torch.minimum(j, per - 1) + 0.5) / per) \
        * (length.double().view(-1, 1, 1) / size)
    p = p.clamp_(0, n - 1).view(g.shape[0], -1)
    lo = p.floor()
    t = p - lo
    lo = lo.long()
    return G, lo, (lo + 1).clamp_max_(n - 1), t, (j < per.view(-1, 1)) / per.view(-1, 1)


def _crop_resize_separable(x: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """:func:`crop_resize` as two 1D passes: roi_align's bilinear average is separable (rows, then
    columns, each a two-tap ``lerp`` per sample and an average over the ``g`` samples of a pixel).

    Per sample from 128² up (row reads of the crop's columns only), batched below (per-sample
    calls would cost more than they save). The coordinates are float64, so
    this is closer to roi_align's exact samples than its float32 coordinates (~1e-7 vs ~1e-5).
    """
    B, C, H, W = x.shape
    top, left, height, width = boxes.unbind(1)
    Gy, y0, y1, ty, my = _taps(top, height, H, size)
    Gx, x0, x1, tx, mx = _taps(left, width, W, size)
    ty, tx, my, mx = ty.to(x.dtype), tx.to(x.dtype), my.to(x.dtype), mx.to(x.dtype)

    def lerp_rows(v, lo, hi, t, m, G):
        """Rows ``lo``/``hi`` ``(B, size·G)`` of each ``(n, M)`` plane of ``v`` ``(B, C, n, M)`` blended by
        ``t`` and averaged over G: ``(B, C, size, M)``. Whole rows by ``index_select`` on the flat
        rows (a ``gather`` along the row axis costs ~15x more)."""
        n, M = v.shape[-2:]
        K = lo.shape[1]
        base = (torch.arange(B * C, device=v.device) * n).view(B, C, 1)
        flat = v.reshape(-1, M)
        read = [flat.index_select(0, (base + i.view(B, 1, K)).view(-1)).view(B, C, K, M) for i in (lo, hi)]
        r = torch.lerp(*read, t.view(B, 1, K, 1))
        if G == 1:
            return r
        return (r.view(B, C, size, G, M) * m.view(B, 1, 1, G, 1)).sum(3)

    if size < 128:
        rows = lerp_rows(x, y0, y1, ty, my, Gy)
        out = lerp_rows(rows.transpose(2, 3).contiguous(), x0, x1, tx, mx, Gx)       # columns as rows
        return out.transpose(2, 3).contiguous()
    out = torch.empty(B, C, size, size, dtype=x.dtype, device=x.device)
    first, last = x0.amin(1).tolist(), x1.amax(1).tolist()
    mine = lambda v, b, G, g: v[b].view(size, G)[:, :g].reshape(-1)    # noqa: E731 (sample b's size·g taps)
    for b, (gy, gx) in enumerate(zip((-(-height // size)).tolist(), (-(-width // size)).tolist())):
        a = first[b]
        sub = x[b, :, :, a:last[b] + 1]
        rows = torch.lerp(sub.index_select(1, mine(y0, b, Gy, gy)), sub.index_select(1, mine(y1, b, Gy, gy)),
                          mine(ty, b, Gy, gy).view(-1, 1))
        if gy > 1:
            rows = rows.view(C, size, gy, -1).sum(2)
        cols = rows.transpose(1, 2).contiguous()                                      # (C, crop columns, size)
        read = torch.lerp(cols.index_select(1, mine(x0, b, Gx, gx) - a), cols.index_select(1, mine(x1, b, Gx, gx) - a),
                          mine(tx, b, Gx, gx).view(-1, 1))
        if gx > 1:
            read = read.view(C, size, gx, size).sum(2)
        if gx * gy > 1:
            read.mul_(1.0 / (gx * gy))
        out[b] = read.transpose(1, 2)
    return out


def crop_resize(x: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Crop ``boxes`` ``(B, 4)`` (top, left, height, width) from ``x`` ``(B, C, H, W)``, resize to ``size``².

    Bilinear sampling at the output pixel centres; when a crop is larger than the output, each output
    pixel averages ``ceil(crop / size)``² samples (roi_align's adaptive sampling), which
    anti-aliases downscaling. On CPU (float, no autograd) the same samples are read in two
    separable passes (:func:`_crop_resize_separable`, 1.4-2x faster than ``roi_align``; equal to it
    up to float32 rounding), else by one ``roi_align``. A channel axis broadcast with ``expand``
    (a gray image as RGB) is resized once.
    """
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and not x.requires_grad:
        boxes = boxes.to(x.device)
        if x.shape[1] > 1 and x.stride(1) == 0:
            return _crop_resize_separable(x[:, :1], boxes, size).expand(-1, x.shape[1], -1, -1).contiguous()
        return _crop_resize_separable(x, boxes, size)
    boxes = boxes.to(device=x.device, dtype=x.dtype)
    top, left, height, width = boxes.unbind(1)
    rois = torch.stack([torch.arange(x.shape[0], device=x.device, dtype=x.dtype),
                        left, top, left + width, top + height], 1)
    return roi_align(x, rois, output_size=(size, size), spatial_scale=1.0, sampling_ratio=0, aligned=True)


class RandomResizedCrop(RandomTransform):
    """torchvision's ``RandomResizedCrop(size, scale, ratio)`` for a batch, one box per sample.

    Per sample, up to ``attempts`` (10) candidates: area fraction U(scale), log aspect ratio U(log ratio),
    ``w = round(sqrt(area · r))``, ``h = round(sqrt(area / r))``; the first that fits is placed
    uniformly; if none fits, the largest centred crop with a ratio inside ``ratio`` is used.

    Call: ``(B, C, H, W)`` → ``(B, C, size, size)``.
    """

    def __init__(self, size: int, scale: Sequence[float] = (0.2, 1.0), ratio: Sequence[float] = (3 / 4, 4 / 3),
                 attempts: int = 10):
        super().__init__(2)
        self.size = check_positive_int(size, "size")
        self.scale = check_interval(scale, "scale", 1e-6, 1.0)
        self.ratio = check_interval(ratio, "ratio", 1e-6)
        self.attempts = check_positive_int(attempts, "attempts")

    def draw(self, shape, generator) -> CropParams:
        B, _, H, W = check_shape(shape, 2)
        check_generator(generator)
        dev = generator.device
        T = self.attempts
        area = H * W * (self.scale[0] + (self.scale[1] - self.scale[0]) * rand((B, T), generator, torch.float64))
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = torch.exp(log_lo + (log_hi - log_lo) * rand((B, T), generator, torch.float64))
        w = torch.round(torch.sqrt(area * aspect)).long()
        h = torch.round(torch.sqrt(area / aspect)).long()
        fits = (w > 0) & (w <= W) & (h > 0) & (h <= H)
        first = fits.long().argmax(1, keepdim=True)                  # first fitting attempt (0 if none)
        found = fits.any(1)

        in_ratio = W / H
        if in_ratio < self.ratio[0]:
            fw, fh = W, int(round(W / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            fw, fh = int(round(H * self.ratio[1])), H
        else:
            fw, fh = W, H
        h = torch.where(found, h.gather(1, first).squeeze(1), fh)
        w = torch.where(found, w.gather(1, first).squeeze(1), fw)
        zero = torch.zeros(B, dtype=torch.long, device=dev)
        top = torch.where(found, randint(zero, H - h, generator), (H - fh) // 2)
        left = torch.where(found, randint(zero, W - w, generator), (W - fw) // 2)
        return CropParams(boxes=torch.stack([top, left, h, w], 1))

    def apply(self, x, params: CropParams) -> torch.Tensor:
        check_batch(x, 2)
        check_params(params, CropParams, x.shape[0])
        boxes = params.boxes.to(x.device)
        H, W = x.shape[2:]
        top, left, h, w = boxes.unbind(1)
        if bool(((top < 0) | (left < 0) | (h < 1) | (w < 1) | (top + h > H) | (left + w > W)).any()):
            raise ValueError(f"params.boxes do not fit inside x's {H}x{W} images; draw them for this x")
        return crop_resize(x, boxes, self.size)
