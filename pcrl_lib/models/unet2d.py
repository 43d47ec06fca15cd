"""2D ResNet-18 U-Net for chest X-rays (PCRL_SPEC §2, left column).

Legend: ``B`` batch, ``H × W`` input size (a multiple of 32), channels per level below.

Encoder (torchvision ResNet-18, random init unless a local state dict is given), five feature levels,
shallow → deep (the list :meth:`ResNet18Encoder.forward` returns)::

    level  module                 channels  size
    f1     conv1-bn1-relu         64        H/2
    f2     maxpool + layer1       64        H/4
    f3     layer2                 128       H/8
    f4     layer3                 256       H/16
    f5     layer4 (bottleneck)    512       H/32      (224² input → 7²)

Decoder: five blocks of 256/128/64/32/16 channels; each upsamples ×2 (nearest), concatenates the skip of
the same size (f4, f3, f2, f1, none) and applies 2 × (conv3-BN-ReLU); head conv3 → ``out_channels`` (3), no
activation (the 2D targets are ImageNet-normalised images, not in [0, 1]).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

ENCODER_CHANNELS_2D = (64, 64, 128, 256, 512)
DECODER_CHANNELS_2D = (256, 128, 64, 32, 16)
REDUCTION_2D = 32  # five stride-2 stages


def check_input_2d(x: torch.Tensor, in_channels: int) -> None:
    """Raise ValueError unless ``x`` is (B, in_channels, H, W) with H and W multiples of 32."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"2D U-Net input must be a (B, C, H, W) tensor, got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if x.shape[1] != in_channels:
        raise ValueError(f"2D U-Net input has {x.shape[1]} channels but the network was built with "
                         f"in_channels={in_channels} (X-rays are read as 3-channel images)")
    h, w = x.shape[2:]
    if h % REDUCTION_2D or w % REDUCTION_2D or h == 0 or w == 0:
        raise ValueError(f"2D input size {h}×{w} cannot pass the ResNet-18 U-Net: it halves the size 5 times, "
                         f"so H and W must be positive multiples of {REDUCTION_2D} (e.g. 64, 128, 224)")


class ResNet18Encoder(nn.Module):
    """x (B, in_channels, H, W) → [f1, f2, f3, f4, f5] (see the module table), bottleneck last.

    Args:
        in_channels: input channels (3: X-rays are read as 3-channel images, as for ImageNet weights).
        weights: optional path to a local ResNet-18 state dict (torchvision's, whose ``fc.*`` keys are
            ignored, or one saved from this encoder). Never downloads.
    """

    out_channels = ENCODER_CHANNELS_2D
    spatial_dims = 2

    def __init__(self, in_channels: int = 3, weights: str | os.PathLike | None = None):
        super().__init__()
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
        if weights is not None and in_channels != 3:
            raise ValueError(f"weights={weights!r} are for 3-channel ResNet-18 inputs; in_channels={in_channels} "
                             "cannot use them — pass in_channels=3 or weights=None")
        self.in_channels = in_channels
        net = torchvision.models.resnet18(weights=None)
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        # Same attribute names as torchvision so its state dicts load directly.
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        if weights is not None:
            self.load_weights(weights)

    def load_weights(self, path: str | os.PathLike) -> None:
        """Load a local ResNet-18 state dict (``fc.*`` dropped); errors name the file and the bad keys."""
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"weights file {path} does not exist; pass a local ResNet-18 state dict "
                                    "(the kit never downloads weights) or weights=None for random init")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"weights file {path} holds a {type(state).__name__}, not a state dict")
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
        if missing or unexpected or wrong:
            raise ValueError(f"weights file {path} is not a ResNet-18 state dict for in_channels={self.in_channels}: "
                             f"missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shapes {wrong[:5]}")
        self.load_state_dict(state)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        check_input_2d(x, self.in_channels)
        f1 = self.relu(self.bn1(self.conv1(x)))      # (B, 64, H/2, W/2)
        f2 = self.layer1(self.maxpool(f1))           # (B, 64, H/4, W/4)
        f3 = self.layer2(f2)                         # (B, 128, H/8, W/8)
        f4 = self.layer3(f3)                         # (B, 256, H/16, W/16)
        f5 = self.layer4(f4)                         # (B, 512, H/32, W/32)
        return [f1, f2, f3, f4, f5]


def _conv_bn_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    # No conv bias: the BatchNorm right after it has its own shift.
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch),
                         nn.ReLU(inplace=True))


class _DecoderBlock2D(nn.Module):
    """(B, in_ch, h, w) [+ skip (B, skip_ch, 2h, 2w)] → (B, out_ch, 2h, 2w)."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int):
        super().__init__()
        self.convs = nn.Sequential(_conv_bn_relu(in_ch + skip_ch, out_ch), _conv_bn_relu(out_ch, out_ch))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.convs(x)


class UNetDecoder2D(nn.Module):
    """[f1..f5] → (B, out_channels, H, W): five upsampling blocks, then a conv3 head with no activation."""

    def __init__(self, out_channels: int = 3, encoder_channels: tuple = ENCODER_CHANNELS_2D,
                 decoder_channels: tuple = DECODER_CHANNELS_2D):
        super().__init__()
        if not isinstance(out_channels, int) or out_channels < 1:
            raise ValueError(f"out_channels must be a positive int, got {out_channels!r}")
        if len(decoder_channels) != len(encoder_channels):
            raise ValueError(f"decoder_channels {decoder_channels} needs one entry per encoder level "
                             f"({len(encoder_channels)})")
        self.encoder_channels = tuple(encoder_channels)
        # Block i takes the previous output and the skip one level shallower; the last block has no skip.
        in_chs = (encoder_channels[-1], *decoder_channels[:-1])
        skip_chs = (*encoder_channels[-2::-1], 0)
        self.blocks = nn.ModuleList(_DecoderBlock2D(i, s, o) for i, s, o in zip(in_chs, skip_chs, decoder_channels))
        self.head = nn.Conv2d(decoder_channels[-1], out_channels, 3, padding=1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        if len(features) != len(self.encoder_channels):
            raise ValueError(f"UNetDecoder2D takes the encoder's {len(self.encoder_channels)} feature levels, "
                             f"got {len(features)}")
        x = features[-1]
        skips = [*features[-2::-1], None]
        for block, skip in zip(self.blocks, skips):
            x = block(x, skip)
        return self.head(x)


class UNet2D(nn.Module):
    """ResNet-18 U-Net: x (B, in_channels, H, W) → (B, out_channels, H, W), no output activation.

    ``encoder`` and ``decoder`` are separate modules so the PCRL objective can mix and gate the feature list
    between them and downstream code can reuse the encoder alone.
    """

    spatial_dims = 2

    def __init__(self, in_channels: int = 3, out_channels: int = 3, weights: str | os.PathLike | None = None):
        super().__init__()
        self.arch = {"in_channels": in_channels, "out_channels": out_channels}
        self.encoder = ResNet18Encoder(in_channels=in_channels, weights=weights)
        self.decoder = UNetDecoder2D(out_channels=out_channels)

    def activate(self, y: torch.Tensor) -> torch.Tensor:
        """The final activation: none in 2D (kept so 2D and 3D U-Nets share one interface)."""
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.decoder(self.encoder(x)))
