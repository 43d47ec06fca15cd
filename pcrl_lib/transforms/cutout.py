"""Cutout of the 2D view pipeline (PCRL_SPEC §7; DeVries & Taylor), batched with per-sample hole centres:
square holes zeroed after ImageNet normalisation, as :class:`~pcrl_lib.transforms.views.PCRLViews2D` applies it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import (Params, RandomTransform, check_batch, check_generator, check_params, check_positive_int, check_shape,
                   randint)


@dataclass(frozen=True)
class CutoutParams(Params):
    """``centres`` ``(B, n_holes, 2)`` long: (row, column) of each hole's centre."""

    centres: torch.Tensor

    @property
    def batch_size(self) -> int:
        return self.centres.shape[0]


class Cutout(RandomTransform):
    """Zero ``n_holes`` square holes of side ``length`` per image (DeVries & Taylor, 2017), as released.

    Centres are uniform over the image; holes are clipped at the border, rows
    ``[c − length//2, c + length//2)``. ``length=None`` scales the released 32 px at 224² with the
    image: ``round(32 · H / 224)`` (at least 1). Applied to normalised images, so holes hold the mean.
    """

    def __init__(self, n_holes: int = 3, length: int | None = None):
        super().__init__(2)
        self.n_holes = check_positive_int(n_holes, "n_holes")
        self.length = None if length is None else check_positive_int(length, "length")

    def hole_length(self, height: int) -> int:
        return self.length if self.length is not None else max(1, round(32 * height / 224))

    def draw(self, shape, generator) -> CutoutParams:
        B, _, H, W = check_shape(shape, 2)
        check_generator(generator)
        zero = torch.zeros((B, self.n_holes), dtype=torch.long, device=generator.device)
        return CutoutParams(centres=torch.stack([randint(zero, zero + H - 1, generator),
                                                 randint(zero, zero + W - 1, generator)], 2))

    def apply(self, x, params: CutoutParams) -> torch.Tensor:
        return self.apply_(x.clone(), params)

    def apply_(self, x, params: CutoutParams) -> torch.Tensor:
        """:meth:`apply` in place on ``x`` (returned): only the holes are written, as slices
        (a Python loop over B × n_holes, never over pixels)."""
        check_batch(x, 2)
        check_params(params, CutoutParams, x.shape[0])
        H, W = x.shape[2:]
        half = self.hole_length(H) // 2
        for b, holes in enumerate(params.centres.tolist()):
            for row, col in holes:
                top, left = min(max(row - half, 0), H), min(max(col - half, 0), W)
                bottom, right = min(max(row + half, 0), H), min(max(col + half, 0), W)
                if bottom > top and right > left:
                    x[b, :, top:bottom, left:right] = 0.0
        return x
