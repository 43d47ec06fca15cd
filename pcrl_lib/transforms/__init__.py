"""Batched, device-agnostic augmentations for PCRL (PCRL_SPEC §4, §5, §7).

Every random transform draws its parameters from an explicit ``torch.Generator`` and can return them
(``t(x, generator, return_params=True)``, or ``t.draw(shape, generator)`` + ``t.apply(x, params)``);
see :mod:`.base` for the pattern and the shape legend.

=================  ===========================================================================
module             contents
=================  ===========================================================================
``views``          :class:`PCRLSample`, :class:`PCRLViews2D`, :class:`PCRLViews3D` (one PCRL batch)
``tca``            TCA codes: :func:`draw_tca`, :func:`tca_apply`, :func:`tca_invert`, :class:`TCATransform`
``mixup``          :func:`draw_mix`, :func:`mix` (pass-B cross-model mixup)
``genesis``        Models Genesis: :class:`NonlinearIntensity`, :class:`Painting`,
                   :class:`GenesisRestoration` → :class:`RestorationSample`
``shuffle``        :class:`LocalPixelShuffle`
``spatial``        :class:`RandomFlip`, :class:`RandomAffine`, :class:`GaussianBlur`, :func:`flip_rotate`
``crop``           :class:`RandomResizedCrop` (2D views)
``cutout``         :class:`Cutout` (2D views)
``color``          :class:`RandomGrayscale`, :class:`ColorJitter`, :func:`normalize`, :func:`denormalize`
=================  ===========================================================================
"""

from .base import Params, RandomTransform
from .color import (IMAGENET_MEAN, IMAGENET_STD, ColorJitter, JitterParams, GrayscaleParams, RandomGrayscale,
                    denormalize, normalize, rgb_to_grayscale)
from .crop import CropParams, RandomResizedCrop
from .cutout import Cutout, CutoutParams
from .genesis import (GenesisRestoration, NonlinearIntensity, NonlinearParams, Painting, PaintingParams,
                      RestorationSample, draw_genesis_flips)
from .mixup import draw_mix, mix
from .shuffle import LocalPixelShuffle, ShuffleParams
from .spatial import (AffineParams, BlurParams, FlipParams, GaussianBlur, RandomAffine, RandomFlip,
                      flip_rotate)
from .tca import TCAParams, TCATransform, code_size, decode_tca, draw_tca, encode_tca, tca_apply, tca_invert
from .views import PCRLSample, PCRLViews2D, PCRLViews3D

__all__ = [
    "Params", "RandomTransform",
    "PCRLSample", "PCRLViews2D", "PCRLViews3D",
    "draw_tca", "tca_apply", "tca_invert", "encode_tca", "decode_tca", "code_size", "TCAParams", "TCATransform",
    "draw_mix", "mix",
    "NonlinearIntensity", "NonlinearParams", "Painting", "PaintingParams", "GenesisRestoration",
    "RestorationSample", "draw_genesis_flips",
    "LocalPixelShuffle", "ShuffleParams",
    "RandomFlip", "FlipParams", "RandomAffine", "AffineParams", "GaussianBlur", "BlurParams", "flip_rotate",
    "RandomResizedCrop", "CropParams", "Cutout", "CutoutParams",
    "RandomGrayscale", "GrayscaleParams", "ColorJitter", "JitterParams", "normalize", "denormalize",
    "rgb_to_grayscale", "IMAGENET_MEAN", "IMAGENET_STD",
]
