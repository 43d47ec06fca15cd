"""Initialising downstream networks: pretraining exports, local ImageNet weights, or scratch.

Exports are read, checked and loaded by :mod:`pcrl_lib.models.exports` (the format, the architecture checks and
the two adaptations: first convolution's input channels, output head); this module decides which
initialisation a task network gets and reports it for the result protocols.
"""

from __future__ import annotations

import os
from typing import Mapping

from torch import nn

from ..models.exports import check_compatible, first_conv_key, full_arch, load_state


def imagenet_encoder_state(path: str | os.PathLike) -> dict:
    """A local torchvision ResNet-18 state dict (``fc.*`` dropped), validated by loading it into the 2D encoder.

    The kit never downloads weights: ``path`` must be a file the user placed there.
    """
    from ..models import ResNet18Encoder

    return ResNet18Encoder(in_channels=3, weights=path).state_dict()


def resolve_arch(spatial_dims: int, export: Mapping | None, *, in_channels: int | None = None,
                 width: int | None = None, norm: str | None = None) -> dict:
    """The task network's encoder arguments: explicit values, else the export's, else the U-Net defaults.

    Returns ``{"in_channels"}`` in 2D and ``{"in_channels", "width", "norm"}`` in 3D; raises ``ValueError``
    (naming both architectures) when an explicit value contradicts the export.
    """
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    if spatial_dims == 2 and (width is not None or norm is not None):
        raise ValueError("width and norm describe the 3D Models-Genesis U-Net; the 2D network is a fixed ResNet-18")
    base = full_arch(spatial_dims, export["arch"] if export is not None else None)
    arch = {"in_channels": in_channels if in_channels is not None else base["in_channels"]}
    if spatial_dims == 3:
        arch["width"] = width if width is not None else base["width"]
        arch["norm"] = norm if norm is not None else base["norm"]
    if export is not None:
        check_compatible(export, spatial_dims, arch)
    return arch


def init_encoder(encoder: nn.Module, export: Mapping | None, imagenet_weights: str | os.PathLike | None) -> dict:
    """Load ``encoder`` from a validated export, from local ImageNet weights (2D), or leave it random.

    Returns the initialisation report kept in result protocols: ``{"init": "pretrained" | "imagenet" |
    "scratch", "method", "source", "encoder": load report}``.
    """
    if export is not None and imagenet_weights is not None:
        raise ValueError("pass either pretrained= (an encoder export) or imagenet_weights=, not both")
    adapt = first_conv_key(encoder)
    if export is not None:
        report = load_state(encoder, export["encoder"], what="encoder", source=export.get("source", "the export dict"),
                            adapt_key=adapt)
        return {"init": "pretrained", "method": export["method"], "source": export.get("source"), "encoder": report}
    if imagenet_weights is not None:
        if getattr(encoder, "spatial_dims", None) != 2:
            raise ValueError("imagenet_weights are ResNet-18 (2D) weights; the 3D network has no ImageNet init")
        report = load_state(encoder, imagenet_encoder_state(imagenet_weights), what="encoder",
                            source=str(imagenet_weights), adapt_key=adapt)
        return {"init": "imagenet", "method": "imagenet", "source": str(imagenet_weights), "encoder": report}
    return {"init": "scratch", "method": "scratch", "source": None, "encoder": None}
