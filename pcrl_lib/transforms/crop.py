"""Random resized crop of the 2D view pipeline (PCRL_SPEC §7), batched with per-sample boxes:
torchvision's sampling rule, one ``roi_align`` call for the whole batch. Cutout is in :mod:`.cutout`,
rotation, flip and blur in :mod:`.spatial`, colour in :mod:`.color`;
:class:`~pcrl_lib.transforms.views.PCRLViews2D` assembles them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
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


def _crop_resize_by_grid(x: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """:func:`crop_resize` as ``grid_sample`` reads (vectorised on CPU, ``roi_align`` is not).

    roi_align's samples along an axis with ``g = ceil(crop / size)`` samples per output pixel lie on
    the uniform fine grid ``start - 0.5 + (k + 0.5) crop / (size g)``, ``k < size g``, and it clamps
    reads to the image (``padding_mode="border"``); each output pixel is the mean of its ``g_h x g_w``
    fine samples. One ``grid_sample`` per sample (a view of x, no gather). Equal to roi_align up to
    float32 rounding of the normalised coordinates (~1e-7 x side / 2 of a pixel).
    """
    B, C, H, W = x.shape
    out = torch.empty(B, C, size, size, dtype=x.dtype, device=x.device)
    k = torch.arange(size * max(1, -(-max(H, W) // size)), dtype=torch.float64) + 0.5      # fine grid steps
    for b, (top, left, height, width) in enumerate(boxes.tolist()):
        gh, gw = -(-height // size), -(-width // size)
        # pixel centres → grid_sample's normalised coordinates (2 p + 1) / n - 1
        gy = ((2 * (top - 0.5 + k[:size * gh] * (height / (size * gh))) + 1) / H - 1).to(x.dtype)
        gx = ((2 * (left - 0.5 + k[:size * gw] * (width / (size * gw))) + 1) / W - 1).to(x.dtype)
        grid = torch.stack(torch.broadcast_tensors(gx.view(1, 1, -1), gy.view(1, -1, 1)), -1)
        read = F.grid_sample(x[b:b + 1], grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
        if gh * gw == 1:
            out[b] = read
            continue
        if gw > 1:
            read = sum(read[..., j::gw] for j in range(1, gw)) + read[..., 0::gw]
        if gh > 1:
            read = sum(read[:, j::gh] for j in range(1, gh)) + read[:, 0::gh]
        torch.mul(read, 1.0 / (gh * gw), out=out[b])
    return out


def crop_resize(x: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Crop ``boxes`` ``(B, 4)`` (top, left, height, width) from ``x`` ``(B, C, H, W)``, resize to ``size``².

    Bilinear sampling at the output pixel centres; when a crop is larger than the output, each output
    pixel averages ``ceil(crop / size)``² samples (roi_align's adaptive sampling), which
    anti-aliases downscaling. On CPU (float, no autograd) for outputs from 128² up, the same samples
    are read by :func:`_crop_resize_by_grid` (below, its per-sample calls cost about what they
    save), else by one ``roi_align``.
    """
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and not x.requires_grad \
            and size >= 128:
        return _crop_resize_by_grid(x, boxes.to(x.device), size)
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
