"""PCRL's per-step data: two views, their TCA targets and codes, and the clean crops (PCRL_SPEC §5, §7).

Legend (all batched, ``B`` samples; 2D tensors ``(B, 3, S, S)``, 3D ``(B, 1, X, Y, Z)``):

=====  ======================================================================================
x1,x2  encoder inputs: two crops of one image, each with its own distortions
T1,T2  pass-A reconstruction targets: ``Tv = tca_apply(xv, cv)`` — the distorted view after its
       coded flips / rotation (as the released code builds them)
c1,c2  TCA codes ``(B, 6)`` 2D / ``(B, 7)`` 3D float (see :mod:`.tca`)
g1,g2  clean crops (pass-B mixup targets): the crop before any distortion — ImageNet-normalised in
       2D, intensities in [0, 1] in 3D. As released they do *not* get the inputs' small rotation /
       flip / affine (slightly misaligned with x); ``align_targets=True`` applies those spatial
       transforms to them too (PCRL_SPEC §7 note).
=====  ======================================================================================

2D pipeline per view (released chest X-ray recipe): RandomResizedCrop(S, scale 0.2–1) → g; then
rotation ±10°, horizontal flip, grayscale (p 0.2), Gaussian blur (σ 0.1–2, p 0.5), colour jitter
0.4/0.4/0.4/0.4, ImageNet normalisation, cutout 3 holes × (32 px at 224², scaled) → x.

3D pipeline per view (released LUNA16 recipe, crop pairs cut offline): flip (x axis, p 0.5), affine
(±10°, scale 0.9–1.1), blur (σ U(0, 2) per axis) → local pixel shuffling (p 0.5) → painting (p 0.9;
in-painting 0.2 / out-painting 0.8, one decision per pair) → x.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Sequence

import torch

from .base import apply_to_index, check_batch, check_generator, check_probability
from .color import ColorJitter, RandomGrayscale, normalize, rgb_to_grayscale
from .crop import RandomResizedCrop
from .cutout import Cutout
from .genesis import NonlinearIntensity, Painting
from .shuffle import LocalPixelShuffle
from .spatial import GaussianBlur, RandomAffine, RandomFlip
from .tca import draw_tca, tca_apply


@dataclass
class PCRLSample:
    """One PCRL batch; see the module legend for what each field is.

    Shapes: ``x1, x2, T1, T2, g1, g2`` all ``(B, C, *spatial)`` (2D: ``(B, 3, S, S)``;
    3D: ``(B, 1, X, Y, Z)``); ``c1, c2`` ``(B, 6)`` (2D) or ``(B, 7)`` (3D) float.
    """

    x1: torch.Tensor
    x2: torch.Tensor
    T1: torch.Tensor
    T2: torch.Tensor
    c1: torch.Tensor
    c2: torch.Tensor
    g1: torch.Tensor
    g2: torch.Tensor

    def __post_init__(self):
        shape = tuple(self.x1.shape)
        if len(shape) not in (4, 5):
            raise ValueError(f"x1 must be (B, C, H, W) or (B, C, X, Y, Z), got {shape}")
        for name in ("x2", "T1", "T2", "g1", "g2"):
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"{name} must have x1's shape {shape}, got {tuple(getattr(self, name).shape)}")
        code = (shape[0], len(shape) - 2 + 4)
        for name in ("c1", "c2"):
            if tuple(getattr(self, name).shape) != code:
                raise ValueError(f"{name} must be a TCA code of shape {code}, got {tuple(getattr(self, name).shape)}")

    @property
    def batch_size(self) -> int:
        return self.x1.shape[0]

    @property
    def spatial_dims(self) -> int:
        return self.x1.ndim - 2

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "PCRLSample":
        """A copy with every tensor on ``device``."""
        return PCRLSample(**{f.name: getattr(self, f.name).to(device, non_blocking=non_blocking)
                             for f in fields(self)})


class PCRLViews2D:
    """2D view pipeline: images ``(B, C, H, W)`` in [0, 1] (C = 1 or 3; gray is repeated to 3
    channels) + generator → :class:`PCRLSample` of 3-channel ``size``² views.

    Args:
        size: output side S (224 in the paper).
        scale: RandomResizedCrop area range.
        degrees: rotation range ±degrees (black fill).
        rotation_mode: ``"nearest"`` (as released: torchvision's ``RandomRotation`` resamples its PIL image with
            nearest neighbours by default) or ``"bilinear"`` (smoother, the kit's variant).
        flip_p: horizontal-flip probability.
        gray_p: grayscale probability.
        blur_sigma, blur_p: Gaussian blur σ range (pixels) and probability.
        jitter: colour-jitter strengths (brightness, contrast, saturation, hue); jitter_p its probability.
        n_holes, hole: cutout holes and side (``None``: 32 px at 224², scaled with S).
        align_targets: also rotate/flip the clean crops g like the inputs (default: as released, no).
        tca_flip_p: flip probability of the TCA codes.
    """

    def __init__(self, size: int = 224, scale: Sequence[float] = (0.2, 1.0), degrees: float = 10.0,
                 flip_p: float = 0.5, gray_p: float = 0.2, blur_sigma: Sequence[float] = (0.1, 2.0),
                 blur_p: float = 0.5, jitter: Sequence[float] = (0.4, 0.4, 0.4, 0.4), jitter_p: float = 1.0,
                 n_holes: int = 3, hole: int | None = None, align_targets: bool = False, tca_flip_p: float = 0.5,
                 rotation_mode: str = "nearest"):
        self.crop = RandomResizedCrop(size, scale=scale)
        self.rotate = RandomAffine(2, degrees=degrees, scales=(1.0, 1.0), p=1.0, pad=0.0, mode=rotation_mode)
        self.flip = RandomFlip(2, axes=(1,), p=flip_p)
        self.gray = RandomGrayscale(gray_p)
        self.blur = GaussianBlur(2, sigma=blur_sigma, p=blur_p, isotropic=True)
        if len(tuple(jitter)) != 4:
            raise ValueError(f"jitter must be 4 strengths (brightness, contrast, saturation, hue), got {jitter!r}")
        self.jitter = ColorJitter(*jitter, p=jitter_p)
        self.cutout = Cutout(n_holes, hole)
        self.align_targets = bool(align_targets)
        self.tca_flip_p = check_probability(tca_flip_p, "tca_flip_p")

    @property
    def size(self) -> int:
        return self.crop.size

    def view(self, images: torch.Tensor, generator: torch.Generator):
        """One view of each image: ``(x, T, c, g, params)`` (see the module legend)."""
        p = {}
        # Gray images stay one channel up to the normalisation: the geometric steps work per
        # channel, and grayscale and colour jitter compute on one channel what they would give
        # for (v, v, v) (see ColorJitter), so the numbers are the same at a third of the cost.
        rgb = lambda t: t.expand(-1, 3, -1, -1) if t.shape[1] == 1 else t          # noqa: E731
        crop, p["crop"] = self.crop(images, generator, return_params=True)
        v, p["rotate"] = self.rotate(crop, generator, return_params=True)
        v, p["flip"] = self.flip(v, generator, return_params=True)
        if v.shape[1] == 1:
            p["gray"] = self.gray.draw(rgb(v).shape, generator)
            v = apply_to_index(v, p["gray"].index.to(v.device), lambda t: rgb_to_grayscale(rgb(t)))
        else:
            v, p["gray"] = self.gray(v, generator, return_params=True)
        v, p["blur"] = self.blur(v, generator, return_params=True)
        v, p["jitter"] = self.jitter(v, generator, return_params=True)
        p["cutout"] = self.cutout.draw(rgb(v).shape, generator)
        x = self.cutout.apply_(normalize(rgb(v)), p["cutout"])            # normalize's output is ours
        c = draw_tca(x.shape[0], 2, generator, self.tca_flip_p).to(x.device)
        if self.align_targets:
            crop = self.flip.apply(self.rotate.apply(crop, p["rotate"]), p["flip"])
        return x, tca_apply(x, c), c, normalize(rgb(crop)), p

    def __call__(self, images: torch.Tensor, generator: torch.Generator, return_params: bool = False):
        check_batch(images, 2, "images")
        check_generator(generator)
        if images.shape[1] not in (1, 3):
            raise ValueError(f"images must have 1 (gray) or 3 (RGB) channels, got {images.shape[1]}")
        x1, T1, c1, g1, p1 = self.view(images, generator)
        x2, T2, c2, g2, p2 = self.view(images, generator)
        sample = PCRLSample(x1=x1, x2=x2, T1=T1, T2=T2, c1=c1, c2=c2, g1=g1, g2=g2)
        return (sample, {"view1": p1, "view2": p2}) if return_params else sample


class PCRLViews3D:
    """3D view pipeline: crop pairs ``(B, 2, 1, X, Y, Z)`` in [0, 1] (cut offline, PCRL_SPEC §7) +
    generator → :class:`PCRLSample` with ``(B, 1, X, Y, Z)`` fields (codes ``(B, 7)``).

    Args (released values as defaults):
        flip_axes, flip_p: axes that may flip and their probability (torchio ``RandomFlip()``: x only).
        degrees, scales, affine_p: random affine (torchio ``RandomAffine()``).
        blur_sigma, blur_p: per-axis Gaussian σ range in voxels and probability (torchio ``RandomBlur()``).
        shuffle_p, n_blocks: local pixel shuffling.
        paint_p, inpaint_p: painting probability and in-painting share (one decision per pair).
        nonlinear_p: Bézier intensity transform probability (off in the released PCRL pipeline).
        align_targets: also flip/affine-transform the clean crops g like the inputs.
        tca_flip_p: flip probability of the TCA codes.
    """

    def __init__(self, flip_axes: Sequence[int] = (0,), flip_p: float = 0.5, degrees: float = 10.0,
                 scales: Sequence[float] = (0.9, 1.1), affine_p: float = 1.0, blur_sigma: Sequence[float] = (0.0, 2.0),
                 blur_p: float = 1.0, shuffle_p: float = 0.5, n_blocks: int = 10_000, paint_p: float = 0.9,
                 inpaint_p: float = 0.2, nonlinear_p: float = 0.0, align_targets: bool = False,
                 tca_flip_p: float = 0.5):
        self.flip = RandomFlip(3, axes=flip_axes, p=flip_p)
        self.affine = RandomAffine(3, degrees=degrees, scales=scales, p=affine_p, pad="minimum")
        self.blur = GaussianBlur(3, sigma=blur_sigma, p=blur_p, isotropic=False)
        self.shuffle = LocalPixelShuffle(3, p=shuffle_p, n_blocks=n_blocks)
        self.nonlinear = NonlinearIntensity(3, p=nonlinear_p)
        self.painting = Painting(3, p=paint_p, inpaint_p=inpaint_p)
        self.align_targets = bool(align_targets)
        self.tca_flip_p = check_probability(tca_flip_p, "tca_flip_p")

    def view(self, crop: torch.Tensor, mode: torch.Tensor, generator: torch.Generator):
        """One view of each crop ``(B, 1, X, Y, Z)``: ``(x, T, c, g, params)``."""
        p = {}
        v, p["flip"] = self.flip(crop, generator, return_params=True)
        v, p["affine"] = self.affine(v, generator, return_params=True)
        v, p["blur"] = self.blur(v, generator, return_params=True)
        v, p["shuffle"] = self.shuffle(v, generator, return_params=True)
        if self.nonlinear.p > 0:
            v, p["nonlinear"] = self.nonlinear(v, generator, return_params=True)
        p["painting"] = self.painting.draw(v.shape, generator, mode=mode)
        x = self.painting.apply_(v, p["painting"])                      # v is this view's own tensor
        c = draw_tca(x.shape[0], 3, generator, self.tca_flip_p).to(x.device)
        g = crop.contiguous()
        if self.align_targets:
            g = self.affine.apply(self.flip.apply(crop, p["flip"]), p["affine"])
        return x, tca_apply(x, c), c, g, p

    def __call__(self, pairs: torch.Tensor, generator: torch.Generator, return_params: bool = False):
        if not isinstance(pairs, torch.Tensor) or pairs.ndim != 6 or pairs.shape[1] != 2 or pairs.shape[2] != 1:
            shape = tuple(pairs.shape) if isinstance(pairs, torch.Tensor) else type(pairs).__name__
            raise ValueError(f"pairs must be (B, 2, 1, X, Y, Z) crop pairs, got {shape}; stack the two crops "
                             f"of each pair on axis 1")
        check_batch(pairs[:, 0], 3, "pairs[:, 0]")
        check_generator(generator)
        mode = self.painting.draw_mode(pairs.shape[0], generator)      # one painting decision per pair
        x1, T1, c1, g1, p1 = self.view(pairs[:, 0], mode, generator)
        x2, T2, c2, g2, p2 = self.view(pairs[:, 1], mode, generator)
        sample = PCRLSample(x1=x1, x2=x2, T1=T1, T2=T2, c1=c1, c2=c2, g1=g1, g2=g2)
        return (sample, {"view1": p1, "view2": p2}) if return_params else sample
