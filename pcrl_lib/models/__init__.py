"""Networks of the kit: one constructor for 2D and 3D U-Nets and encoders, plus the small heads.

=============  ==========================================  ===============================================
spatial_dims   U-Net                                       keyword arguments (defaults)
=============  ==========================================  ===============================================
2              ResNet-18 U-Net (:mod:`.unet2d`)            in_channels=3, out_channels=3, weights=None
3              Models-Genesis U-Net (:mod:`.unet3d`)       in_channels=1, out_channels=1, width=32,
                                                           norm="bn", final_activation="sigmoid"
=============  ==========================================  ===============================================

Every encoder maps ``x`` to a list of feature maps, shallow → deep, bottleneck last
(``encoder(x) -> list[Tensor]``); every decoder takes that list (``decoder(features) -> Tensor``); a U-Net's
``activate`` applies its final activation. The bottleneck has :func:`bottleneck_channels` channels (512 in 2D;
16·width in 3D).
"""

from __future__ import annotations

from .heads import ClassificationHead, ProjectionHead, TCAGate
from .unet2d import ResNet18Encoder, UNet2D, UNetDecoder2D
from .unet3d import GenesisDecoder3D, GenesisEncoder3D, UNet3D

__all__ = ["build_unet", "build_encoder", "bottleneck_channels", "tca_code_dim", "arch_kwargs",
           "UNet2D", "UNet3D", "ResNet18Encoder", "UNetDecoder2D", "GenesisEncoder3D", "GenesisDecoder3D",
           "ProjectionHead", "TCAGate", "ClassificationHead"]

_UNET_KWARGS = {
    2: {"in_channels": 3, "out_channels": 3, "weights": None},
    3: {"in_channels": 1, "out_channels": 1, "width": 32, "norm": "bn", "final_activation": "sigmoid"},
}
# Keyword arguments that only shape the decoder/head: build_encoder accepts and ignores them so a
# whole ``arch`` dict (as exported) can be passed to it.
_DECODER_ONLY = {"out_channels", "final_activation"}


def _check_dims(spatial_dims: int) -> None:
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 (ResNet-18 U-Net) or 3 (Models-Genesis U-Net), got {spatial_dims!r}")


def arch_kwargs(spatial_dims: int, **kw) -> dict:
    """The U-Net keyword arguments for ``spatial_dims`` with defaults filled in; unknown keys → ValueError."""
    _check_dims(spatial_dims)
    valid = _UNET_KWARGS[spatial_dims]
    unknown = sorted(set(kw) - set(valid))
    if unknown:
        raise ValueError(f"unknown {spatial_dims}D U-Net argument(s) {unknown}; valid: {sorted(valid)}")
    return {**valid, **kw}


def build_unet(spatial_dims: int, **kw) -> UNet2D | UNet3D:
    """A 2D ResNet-18 U-Net or a 3D Models-Genesis U-Net (keyword arguments in the module table)."""
    kw = arch_kwargs(spatial_dims, **kw)
    return UNet2D(**kw) if spatial_dims == 2 else UNet3D(**kw)


def build_encoder(spatial_dims: int, **kw) -> ResNet18Encoder | GenesisEncoder3D:
    """The encoder of :func:`build_unet` alone; decoder-only arguments (out_channels, final_activation) are ignored."""
    kw = {k: v for k, v in arch_kwargs(spatial_dims, **kw).items() if k not in _DECODER_ONLY}
    return ResNet18Encoder(**kw) if spatial_dims == 2 else GenesisEncoder3D(**kw)


def bottleneck_channels(spatial_dims: int, width: int = 32) -> int:
    """Channels of the deepest feature map: 512 in 2D, 16·width in 3D (512 at the paper's width 32)."""
    _check_dims(spatial_dims)
    return 512 if spatial_dims == 2 else 16 * width


def tca_code_dim(spatial_dims: int) -> int:
    """Length of the TCA code: one flip flag per axis + one-hot of 4 rotations (6 in 2D, 7 in 3D)."""
    _check_dims(spatial_dims)
    return spatial_dims + 4
