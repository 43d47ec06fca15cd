"""Photometric transforms of the 2D view pipeline (PCRL_SPEC §7), batched with per-sample factors:
random grayscale, colour jitter (brightness, contrast, saturation, hue in a random order per sample,
as torchvision's ``ColorJitter``) and ImageNet normalisation. Inputs are ``(B, 3, H, W)`` in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .base import (Params, RandomTransform, active_index, apply_to_index, check_batch, check_generator,
                   check_params, check_probability, check_shape, rand, uniform)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# ITU-R 601 luma weights, as torchvision's rgb_to_grayscale.
LUMA = (0.2989, 0.587, 0.114)


def _check_rgb(x: torch.Tensor, name: str = "x") -> None:
    check_batch(x, 2, name)
    if x.shape[1] != 3:
        raise ValueError(f"{name} must have 3 channels (RGB), got {x.shape[1]}; repeat a gray channel with "
                         f"x.expand(-1, 3, -1, -1)")


def normalize(x: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """``(x - mean) / std`` per channel; ``x`` ``(B, C, H, W)`` with C = len(mean)."""
    check_batch(x, 2)
    if x.shape[1] != len(mean) or len(mean) != len(std):
        raise ValueError(f"x has {x.shape[1]} channels but mean/std have {len(mean)}/{len(std)} entries")
    # One pass, x · (1/s) + (−m/s), instead of a subtraction and a division (equal to 1 ulp or so).
    scale = torch.tensor([1.0 / v for v in std], dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    shift = torch.tensor([-m / v for m, v in zip(mean, std)], dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return torch.addcmul(shift, x, scale)


def denormalize(x: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
                std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """Inverse of :func:`normalize` (for display)."""
    check_batch(x, 2)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return x * s + m


def rgb_to_grayscale(x: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` → ``(B, 1, H, W)`` luma. A ``(B, 1, H, W)`` input stands for the gray RGB
    image (v, v, v): its luma, with the same float operations (so the same numbers)."""
    r, g, b = (x[:, 0:1],) * 3 if x.shape[1] == 1 else (x[:, 0:1], x[:, 1:2], x[:, 2:3])
    return LUMA[0] * r + LUMA[1] * g + LUMA[2] * b


def _blend(a: torch.Tensor, b: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``clamp(f · a + (1 − f) · b, 0, 1)`` with ``factor`` (N,) per sample."""
    f = factor.view(-1, 1, 1, 1).to(a.dtype)
    return (f * a + (1 - f) * b).clamp_(0.0, 1.0)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``_blend(x, 0, factor)``: ``f · x + (1 − f) · 0`` is ``f · x`` exactly, so no zero image."""
    return (factor.view(-1, 1, 1, 1).to(x.dtype) * x).clamp_(0.0, 1.0)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    mean = rgb_to_grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(x, mean, factor)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(x, rgb_to_grayscale(x), factor)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """``(N, 3, H, W)`` RGB in [0, 1] → HSV with hue in [0, 1)."""
    r, g, b = x.unbind(1)
    maxc, minc = x.amax(1), x.amin(1)
    chroma = maxc - minc
    gray = chroma == 0                       # hue undefined: any value, saturation 0
    s = chroma / torch.where(gray, torch.ones_like(maxc), maxc)
    c = torch.where(gray, torch.ones_like(chroma), chroma)
    rc, gc, bc = (maxc - r) / c, (maxc - g) / c, (maxc - b) / c
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(gray, torch.zeros_like(h), h)
    return torch.stack([torch.remainder(h / 6.0, 1.0), s, maxc], 1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_hsv`.

    Closed form per channel n = 5, 3, 1 (R, G, B): ``v − v·s·clamp(min(k, 4 − k), 0, 1)`` with
    ``k = (n + 6h) mod 6`` — the sector table of the textbook algorithm without a gather.
    """
    h, s, v = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    n = torch.tensor([5.0, 3.0, 1.0], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    k = torch.remainder(n + 6.0 * h, 6.0)
    return v - v * s * torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)


def adjust_hue(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Rotate the hue by ``factor`` (N,) turns, in [-0.5, 0.5]. A gray image (one channel, or
    R = G = B) has no hue: the turn leaves it exactly as it is."""
    if x.shape[1] == 1:
        return x.clone()
    hsv = rgb_to_hsv(x)
    h = torch.remainder(hsv[:, 0] + factor.view(-1, 1, 1).to(x.dtype), 1.0)
    return hsv_to_rgb(torch.stack([h, hsv[:, 1], hsv[:, 2]], 1))


# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GrayscaleParams(Params):
    """``index`` ``(A,)``: samples turned gray (luma copied to all three channels)."""

    batch_size: int
    index: torch.Tensor


class RandomGrayscale(RandomTransform):
    """Turn a sample gray (3 equal channels) with probability ``p`` (released: 0.2)."""

    def __init__(self, p: float = 0.2):
        super().__init__(2)
        self.p = check_probability(p, "p")

    def draw(self, shape, generator) -> GrayscaleParams:
        B = check_shape(shape, 2)[0]
        check_generator(generator)
        return GrayscaleParams(batch_size=B, index=active_index(B, self.p, generator))

    def apply(self, x, params: GrayscaleParams) -> torch.Tensor:
        _check_rgb(x)
        check_params(params, GrayscaleParams, x.shape[0])
        params = params.to(x.device)
        return apply_to_index(x, params.index, lambda xs: rgb_to_grayscale(xs).expand(-1, 3, -1, -1))


@dataclass(frozen=True)
class JitterParams(Params):
    """Fields: ``index`` ``(A,)`` jittered samples; ``factors`` ``(A, 4)`` = brightness, contrast,
    saturation (multiplicative) and hue (turns); ``order`` ``(A, 4)`` long, a permutation of
    0..3 per sample: ``order[a, t]`` is the operation applied at step t."""

    batch_size: int
    index: torch.Tensor
    factors: torch.Tensor
    order: torch.Tensor


_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


class ColorJitter(RandomTransform):
    """torchvision-style ``ColorJitter(brightness, contrast, saturation, hue)`` with per-sample factors.

    Input ``(B, 3, H, W)`` RGB, or ``(B, 1, H, W)`` standing for gray RGB images (v, v, v): every
    operation then gives the one channel of its gray RGB result, the same numbers at a third of the
    cost (the 2D view pipeline uses this for gray images).

    Brightness/contrast/saturation factors are U[max(0, 1 − j), 1 + j], the hue shift U[−h, h]; the four
    operations run in a random order per sample. A zero strength leaves that operation out (factor
    1 or shift 0). Released PCRL 2D: ``ColorJitter(0.4, 0.4, 0.4, 0.4)`` applied always (``p = 1``).
    """

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4,
                 hue: float = 0.4, p: float = 1.0):
        super().__init__(2)
        for name, value, high in (("brightness", brightness, float("inf")), ("contrast", contrast, float("inf")),
                                  ("saturation", saturation, float("inf")), ("hue", hue, 0.5)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= high:
                raise ValueError(f"{name} must be a number in [0, {high}], got {value!r}")
        self.strengths = (float(brightness), float(contrast), float(saturation), float(hue))
        self.p = check_probability(p, "p")

    def draw(self, shape, generator) -> JitterParams:
        B = check_shape(shape, 2)[0]
        check_generator(generator)
        index = active_index(B, self.p, generator)
        A = index.numel()
        b, c, s, h = self.strengths
        factors = torch.stack([uniform(max(0.0, 1 - b), 1 + b, (A,), generator),
                               uniform(max(0.0, 1 - c), 1 + c, (A,), generator),
                               uniform(max(0.0, 1 - s), 1 + s, (A,), generator),
                               uniform(-h, h, (A,), generator)], 1)
        order = rand((A, 4), generator).argsort(1)
        return JitterParams(batch_size=B, index=index, factors=factors, order=order)

    def _jitter_gray(self, v: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        """The jitter of gray images ``v`` ``(A, 1, H, W)`` (standing for (v, v, v)), all samples at once.

        On a gray image brightness, contrast and saturation are each a per-sample affine map then
        the clamp to [0, 1]: ``f v``, ``f v + (1 − f) mean(luma)`` and ``f v + (1 − f) luma`` with
        ``luma = (0.2989 + 0.587 + 0.114) v``; hue leaves it as it is. So each of the four steps is
        one scale, shift and clamp over the batch (scale 1, shift 0 where a sample's step is the
        identity), not a gather per operation. Equal to the per-operation formulas up to float32
        rounding of the folded luma weights (~1e-7) for inputs in [0, 1] (an input outside [0, 1]
        is clamped at the first step any sample changes, not at its own first change).
        """
        A = v.shape[0]
        luma = sum(LUMA)
        rows = torch.arange(A, device=v.device)
        enabled = torch.tensor([s != 0.0 for s in self.strengths], device=v.device)
        y = v
        for step in range(4):
            op = order[:, step]
            f = factors[rows, op].to(torch.float64)
            active = (op != 3) & enabled[op]
            if not bool(active.any()):
                continue
            contrast = active & (op == 1)
            shift = None
            if bool(contrast.any()):
                mean = torch.zeros(A, dtype=torch.float64, device=v.device)
                mean[contrast] = y[contrast].mean(dim=(1, 2, 3)).double()
                shift = torch.where(contrast, (1 - f) * luma * mean, 0.0).to(v.dtype).view(A, 1, 1, 1)
            scale = torch.where(active, torch.where(op == 2, f + (1 - f) * luma, f), 1.0)
            y = y * scale.to(v.dtype).view(A, 1, 1, 1)                  # a new tensor: v is the caller's
            if shift is not None:
                y.add_(shift)
            y.clamp_(0.0, 1.0)
        return y

    def _jitter_colour(self, xs: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        """The jitter of RGB images ``xs`` ``(A, 3, H, W)``: each operation at each step vectorised over
        the samples that run it, on one working copy."""
        neutral = (1.0, 1.0, 1.0, 0.0)
        xs = xs.clone()   # one working copy, updated in place (selections within a step are disjoint)
        for step in range(4):
            for op, fn in enumerate(_OPS):
                if self.strengths[op] == 0.0:
                    continue
                sel = torch.nonzero(order[:, step] == op).flatten()
                if op == 3 and sel.numel():
                    # A hue turn leaves a gray image (R = G = B) exactly as it is: skip those.
                    sub = xs.index_select(0, sel)
                    gray = ((sub[:, 0] == sub[:, 1]) & (sub[:, 1] == sub[:, 2])).flatten(1).all(1)
                    sel = sel[~gray]
                if sel.numel() == 0:
                    continue
                factor = factors.index_select(0, sel)[:, op]
                if bool((factor == neutral[op]).all()):
                    continue
                xs.index_copy_(0, sel, fn(xs.index_select(0, sel), factor))
        return xs

    def apply(self, x, params: JitterParams) -> torch.Tensor:
        check_batch(x, 2)
        if x.shape[1] not in (1, 3):
            raise ValueError(f"x must have 3 channels (RGB) or 1 (gray), got {x.shape[1]}")
        check_params(params, JitterParams, x.shape[0])
        params = params.to(x.device)
        factors, order = params.factors, params.order

        def jitter(xs):
            if xs.shape[1] == 1:
                return self._jitter_gray(xs, factors, order)
            # RGB samples that are gray on entry (R = G = B: a gray image as RGB) take the gray
            # path on one channel, so they get exactly the numbers of their one-channel image.
            gray = ((xs[:, 0] == xs[:, 1]) & (xs[:, 1] == xs[:, 2])).flatten(1).all(1)
            if not bool(gray.any()):
                return self._jitter_colour(xs, factors, order)
            g, c = torch.nonzero(gray).flatten(), torch.nonzero(~gray).flatten()
            out = torch.empty_like(xs)
            out.index_copy_(0, g, self._jitter_gray(xs.index_select(0, g)[:, :1], factors[g], order[g])
                            .expand(-1, 3, -1, -1))
            if c.numel():
                out.index_copy_(0, c, self._jitter_colour(xs.index_select(0, c), factors[c], order[c]))
            return out

        return apply_to_index(x, params.index, jitter)
