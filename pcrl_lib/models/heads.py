"""Small heads on top of an encoder's bottleneck (PCRL_SPEC §2, §4, §10).

Legend: ``B`` batch, ``C`` bottleneck channels (512 in 2D and in 3D at width 32), ``S...`` spatial sizes
(``(h, w)`` in 2D, ``(x, y, z)`` in 3D), ``D`` projection dimension (128 in the paper).

- :class:`ProjectionHead` — global average pool → Linear C→128 → ReLU → Linear 128→D = ``z``
  (:meth:`~ProjectionHead.project`), L2-normalised: the vector ``q`` (or ``k``) = z/‖z‖ that the contrastive loss
  compares.
- :class:`TCAGate` — transformation-conditioned attention: the TCA code (6-d in 2D, 7-d in 3D) → Linear 256 →
  ReLU → Linear C → sigmoid, shaped to multiply the bottleneck channel-wise.
- :class:`ClassificationHead` — global average pool → dropout → Linear C→classes, for downstream fine-tuning.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _bottleneck(features: torch.Tensor | list[torch.Tensor] | tuple[torch.Tensor, ...], where: str) -> torch.Tensor:
    """The deepest feature map: the tensor itself, or the last entry of an encoder's feature list."""
    if isinstance(features, (list, tuple)):
        if not features:
            raise ValueError(f"{where}: got an empty feature list; pass encoder(x) or its bottleneck tensor")
        features = features[-1]
    if not isinstance(features, torch.Tensor) or features.ndim < 3:
        raise ValueError(f"{where}: expected a (B, C, *spatial) tensor or a list of them, got "
                         f"{getattr(features, 'shape', type(features).__name__)}")
    return features


def _global_pool(x: torch.Tensor) -> torch.Tensor:
    """(B, C, *S) → (B, C): mean over every spatial axis (2D or 3D alike)."""
    return x.flatten(2).mean(dim=2)


class ProjectionHead(nn.Module):
    """Bottleneck (B, C, *S) → unit vectors (B, D).

    Args:
        in_channels: C, the bottleneck channels.
        hidden: width of the hidden layer (128 in the paper).
        out_dim: D, the embedding dimension (128 in the paper).
    """

    def __init__(self, in_channels: int = 512, hidden: int = 128, out_dim: int = 128):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("hidden", hidden), ("out_dim", out_dim)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ProjectionHead: {name} must be a positive int, got {value!r}")
        self.in_channels = in_channels
        self.out_dim = out_dim
        self.fc1 = nn.Linear(in_channels, hidden)
        self.fc2 = nn.Linear(hidden, out_dim)

    def project(self, features: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """features: (B, C, *S) or the encoder's list (bottleneck last) → the projection z (B, D) before its
        normalisation (PCRL's pass B mixes the keys' z, whose norms the unit vectors no longer carry)."""
        x = _bottleneck(features, "ProjectionHead")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"ProjectionHead: bottleneck has {x.shape[1]} channels, the head expects "
                             f"in_channels={self.in_channels}")
        return self.fc2(F.relu(self.fc1(_global_pool(x))))                 # (B, C) → (B, 128) → (B, D)

    def forward(self, features: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """features: (B, C, *S) or the encoder's list (bottleneck last) → z/‖z‖ (B, D) with ‖row‖₂ = 1."""
        return F.normalize(self.project(features), dim=1)


class TCAGate(nn.Module):
    """TCA code (B, code_dim) → channel gate (B, C, 1, ..., 1) in (0, 1) that broadcasts over the bottleneck.

    The gate tells the shared decoder which flip/rotation its reconstruction target has (PCRL_SPEC §4); the
    kit uses the released code's channel-wise product rather than the paper text's outer product.

    Args:
        code_dim: 6 in 2D ([flip H, flip W, one-hot rot]), 7 in 3D ([flip x, flip y, flip z, one-hot rot]).
        channels: C, the bottleneck channels the gate multiplies (follows the 3D width: 16·width).
        spatial_dims: 2 or 3 — how many singleton axes the gate gets.
        hidden: hidden width (256 in the paper).
    """

    def __init__(self, code_dim: int, channels: int, spatial_dims: int, hidden: int = 256):
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"TCAGate: spatial_dims must be 2 or 3, got {spatial_dims!r}")
        for name, value in (("code_dim", code_dim), ("channels", channels), ("hidden", hidden)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TCAGate: {name} must be a positive int, got {value!r}")
        self.code_dim = code_dim
        self.channels = channels
        self.spatial_dims = spatial_dims
        self.fc1 = nn.Linear(code_dim, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        """code: (B, code_dim) float → gate (B, C, 1, 1) in 2D or (B, C, 1, 1, 1) in 3D."""
        if code.ndim != 2 or code.shape[1] != self.code_dim:
            raise ValueError(f"TCAGate: the TCA code must have shape (B, {self.code_dim}), got {tuple(code.shape)}")
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(code.to(self.fc1.weight.dtype)))))
        return gate.view(*gate.shape, *([1] * self.spatial_dims))


class ClassificationHead(nn.Module):
    """Bottleneck (B, C, *S) → class logits (B, num_classes): global average pool → dropout → linear.

    Args:
        in_channels: C, the bottleneck channels.
        num_classes: number of outputs (labels for multi-label tasks; no activation is applied).
        dropout: dropout probability before the linear layer.
    """

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"ClassificationHead: in_channels must be a positive int, got {in_channels!r}")
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"ClassificationHead: num_classes must be a positive int, got {num_classes!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"ClassificationHead: dropout must be in [0, 1), got {dropout!r}")
        self.in_channels = in_channels
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, features: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """features: (B, C, *S) or the encoder's list (bottleneck last) → logits (B, num_classes)."""
        x = _bottleneck(features, "ClassificationHead")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"ClassificationHead: bottleneck has {x.shape[1]} channels, the head expects "
                             f"in_channels={self.in_channels}")
        return self.fc(self.dropout(_global_pool(x)))
