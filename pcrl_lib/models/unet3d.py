"""Models-Genesis 3D U-Net for CT cubes (PCRL_SPEC §2, right column).

Legend: ``B`` batch, ``w`` = ``width`` (32 in the paper), cube ``X × Y × Z`` (each a multiple of 8; Z = slices).

Encoder: four blocks of two (conv3-norm-ReLU), max-pool ×2 between blocks. Feature levels, shallow → deep
(the list :meth:`GenesisEncoder3D.forward` returns)::

    level  block (in → mid → out)     channels (w=32)  size
    s1     in → w → 2w                64               X × Y × Z
    s2     2w → 2w → 4w               128              X/2
    s3     4w → 4w → 8w               256              X/4
    b      8w → 8w → 16w (bottleneck) 512              X/8       (1×64×64×32 → 512×8×8×4)

Decoder: three up-blocks — transposed conv ×2 (keeps channels), concatenate the skip, two
(conv3-norm-ReLU) down to the skip's channels (16w+8w → 8w, 8w+4w → 4w, 4w+2w → 2w); head 1×1×1 conv
2w → ``out_channels``, then sigmoid for pretraining (targets in [0, 1]) or raw logits for segmentation
(``final_activation=None``).

Norms: ``"bn"`` BatchNorm3d, ``"gn"`` GroupNorm with gcd(8, C) groups (8 as released; fewer when a small
width leaves C not divisible by 8), ``"in"`` InstanceNorm3d with affine parameters.
"""

from __future__ import annotations

import math

import torch
from torch import nn

NORMS_3D = ("bn", "gn", "in")
ACTIVATIONS_3D = ("sigmoid", None)
REDUCTION_3D = 8  # three max-pools


def check_input_3d(x: torch.Tensor, in_channels: int) -> None:
    """Raise ValueError unless ``x`` is (B, in_channels, X, Y, Z) with X, Y, Z multiples of 8."""
    if not isinstance(x, torch.Tensor) or x.ndim != 5:
        raise ValueError(f"3D U-Net input must be a (B, C, X, Y, Z) tensor, got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if x.shape[1] != in_channels:
        raise ValueError(f"3D U-Net input has {x.shape[1]} channels but the network was built with "
                         f"in_channels={in_channels}")
    size = tuple(x.shape[2:])
    if any(s % REDUCTION_3D or s == 0 for s in size):
        raise ValueError(f"3D input size {'×'.join(map(str, size))} cannot pass the Models-Genesis U-Net: it "
                         f"max-pools 3 times, so X, Y and Z must be positive multiples of {REDUCTION_3D} "
                         "(e.g. 64×64×32 or 16×16×8)")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "bn":
        return nn.BatchNorm3d(channels)
    if kind == "gn":
        return nn.GroupNorm(math.gcd(8, channels), channels)
    if kind == "in":
        return nn.InstanceNorm3d(channels, affine=True)
    raise ValueError(f"norm={kind!r} is not supported; choose one of {NORMS_3D}")


def _conv_norm_relu(in_ch: int, out_ch: int, norm: str) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(in_ch, out_ch, 3, padding=1), _norm(norm, out_ch), nn.ReLU(inplace=True))


def _check_width_norm(width: int, norm: str) -> None:
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive int (32 = paper), got {width!r}")
    if norm not in NORMS_3D:
        raise ValueError(f"norm={norm!r} is not supported; choose one of {NORMS_3D}")


class GenesisEncoder3D(nn.Module):
    """x (B, in_channels, X, Y, Z) → [s1, s2, s3, b] (see the module table), bottleneck last."""

    spatial_dims = 3

    def __init__(self, in_channels: int = 1, width: int = 32, norm: str = "bn"):
        super().__init__()
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
        _check_width_norm(width, norm)
        self.in_channels = in_channels
        w = width
        self.out_channels = (2 * w, 4 * w, 8 * w, 16 * w)
        block_in = (in_channels, 2 * w, 4 * w, 8 * w)
        block_mid = (w, 2 * w, 4 * w, 8 * w)
        self.blocks = nn.ModuleList(
            nn.Sequential(_conv_norm_relu(i, m, norm), _conv_norm_relu(m, o, norm))
            for i, m, o in zip(block_in, block_mid, self.out_channels))
        self.pool = nn.MaxPool3d(2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        check_input_3d(x, self.in_channels)
        features = [self.blocks[0](x)]                       # s1: (B, 2w, X, Y, Z)
        for block in self.blocks[1:]:                        # s2, s3, b: channels ×2, size ÷2 each
            features.append(block(self.pool(features[-1])))
        return features                                      # bottleneck b: (B, 16w, X/8, Y/8, Z/8)


class _UpBlock3D(nn.Module):
    """(B, in_ch, x, y, z) + skip (B, skip_ch, 2x, 2y, 2z) → (B, skip_ch, 2x, 2y, 2z)."""

    def __init__(self, in_ch: int, skip_ch: int, norm: str):
        super().__init__()
        self.up = nn.ConvTranspose3d(in_ch, in_ch, kernel_size=2, stride=2)
        self.convs = nn.Sequential(_conv_norm_relu(in_ch + skip_ch, skip_ch, norm),
                                   _conv_norm_relu(skip_ch, skip_ch, norm))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.convs(torch.cat([self.up(x), skip], dim=1))


class GenesisDecoder3D(nn.Module):
    """[s1, s2, s3, b] → (B, out_channels, X, Y, Z) before the final activation (the head's raw output)."""

    def __init__(self, out_channels: int = 1, width: int = 32, norm: str = "bn"):
        super().__init__()
        _check_width_norm(width, norm)
        if not isinstance(out_channels, int) or out_channels < 1:
            raise ValueError(f"out_channels must be a positive int, got {out_channels!r}")
        w = width
        self.encoder_channels = (2 * w, 4 * w, 8 * w, 16 * w)
        self.blocks = nn.ModuleList([_UpBlock3D(16 * w, 8 * w, norm), _UpBlock3D(8 * w, 4 * w, norm),
                                     _UpBlock3D(4 * w, 2 * w, norm)])
        self.head = nn.Conv3d(2 * w, out_channels, kernel_size=1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        if len(features) != len(self.encoder_channels):
            raise ValueError(f"GenesisDecoder3D takes the encoder's {len(self.encoder_channels)} feature levels, "
                             f"got {len(features)}")
        x = features[-1]
        for block, skip in zip(self.blocks, features[-2::-1]):
            x = block(x, skip)
        return self.head(x)


class UNet3D(nn.Module):
    """Models-Genesis U-Net: x (B, in_channels, X, Y, Z) → (B, out_channels, X, Y, Z).

    Args:
        in_channels: 1 for CT, 4 for BraTS' four MRI modalities.
        out_channels: 1 for pretraining (restoring the cube), the class count for segmentation.
        width: base channels (32 = paper); the bottleneck has 16·width channels.
        norm: "bn" | "gn" | "in".
        final_activation: "sigmoid" (pretraining; targets in [0, 1]) or None (logits for segmentation).
    """

    spatial_dims = 3

    def __init__(self, in_channels: int = 1, out_channels: int = 1, width: int = 32, norm: str = "bn",
                 final_activation: str | None = "sigmoid"):
        super().__init__()
        if final_activation not in ACTIVATIONS_3D:
            raise ValueError(f"final_activation={final_activation!r}; choose 'sigmoid' (pretraining) or None (logits)")
        self.arch = {"in_channels": in_channels, "out_channels": out_channels, "width": width, "norm": norm,
                     "final_activation": final_activation}
        self.encoder = GenesisEncoder3D(in_channels=in_channels, width=width, norm=norm)
        self.decoder = GenesisDecoder3D(out_channels=out_channels, width=width, norm=norm)
        self.final_activation = final_activation

    def activate(self, y: torch.Tensor) -> torch.Tensor:
        """Apply the final activation to a decoder output (identity when ``final_activation`` is None)."""
        return torch.sigmoid(y) if self.final_activation == "sigmoid" else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.decoder(self.encoder(x)))
