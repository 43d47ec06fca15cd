"""Transformation codes for PCRL's transformation-conditioned attention (TCA, PCRL_SPEC §4).

The reconstruction *target* (never the encoder input) is flipped per axis with p = 0.5 and rotated by
k·90°, k uniform in {0, 1, 2, 3}, in the in-plane axes; the code tells the decoder's gate what was
done:

* 2D ``(B, C, H, W)``: 6-d code ``[flip H, flip W, onehot(k)]``;
* 3D ``(B, C, X, Y, Z)``: 7-d code ``[flip x, flip y, flip z, onehot(k)]``, rotation in the (X, Y) plane.

The transform is ``T = rot90(flip(x), k)`` — flips first, then ``torch.rot90(·, k, dims=in-plane)``,
which is what the released code does with numpy — and :func:`tca_invert` undoes it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Params, RandomTransform, check_generator, check_probability, check_spatial_dims, rand
from .spatial import flip_rotate

N_ROTATIONS = 4


def code_size(spatial_dims: int) -> int:
    """Length of the TCA code: 6 in 2D, 7 in 3D."""
    return check_spatial_dims(spatial_dims) + N_ROTATIONS


def encode_tca(flips: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``flips`` ``(B, sd)`` bool and ``k`` ``(B,)`` long → code ``(B, sd + 4)`` float32."""
    if flips.ndim != 2 or flips.shape[1] not in (2, 3) or k.shape != flips.shape[:1]:
        raise ValueError(f"flips must be (B, 2|3) and k (B,), got {tuple(flips.shape)} and {tuple(k.shape)}")
    return torch.cat([flips.float(), torch.nn.functional.one_hot(k.long(), N_ROTATIONS).float()], 1)


def decode_tca(code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Code ``(B, 6|7)`` → ``(flips (B, 2|3) bool, k (B,) long)``; rejects malformed codes."""
    if not isinstance(code, torch.Tensor) or code.ndim != 2 or code.shape[1] not in (6, 7):
        shape = tuple(code.shape) if isinstance(code, torch.Tensor) else type(code).__name__
        raise ValueError(f"code must be a (B, 6) (2D) or (B, 7) (3D) tensor, got {shape}")
    sd = code.shape[1] - N_ROTATIONS
    flips, onehot = code[:, :sd], code[:, sd:]
    binary = ((code == 0) | (code == 1)).all()
    if not bool(binary) or not bool((onehot.sum(1) == 1).all()):
        raise ValueError("code must hold 0/1 flip flags followed by a one-hot rotation (exactly one 1 in the "
                         f"last {N_ROTATIONS} entries); got {code.tolist()}")
    return flips.bool(), onehot.argmax(1)


def draw_tca(batch_size: int, spatial_dims: int, generator: torch.Generator, flip_p: float = 0.5) -> torch.Tensor:
    """Random TCA codes ``(B, 6|7)`` float32 on the generator's device: each flip with ``flip_p``,
    k uniform in {0, 1, 2, 3}."""
    sd = check_spatial_dims(spatial_dims)
    check_generator(generator)
    flip_p = check_probability(flip_p, "flip_p")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    flips = rand((batch_size, sd), generator) < flip_p
    k = (rand((batch_size,), generator) * N_ROTATIONS).long().clamp_max_(N_ROTATIONS - 1)
    return encode_tca(flips, k)


def _check_pair(x: torch.Tensor, code: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim not in (4, 5):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be (B, C, H, W) or (B, C, X, Y, Z), got {shape}")
    expected = x.ndim - 2 + N_ROTATIONS
    if code.ndim != 2 or code.shape != (x.shape[0], expected):
        raise ValueError(f"code must be (B, {expected}) for a {x.ndim - 2}D {name} with B={x.shape[0]}, "
                         f"got {tuple(code.shape)}")


def tca_apply(x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """Apply the coded flips then rotation: ``(B, C, *spatial)`` → same shape (square in-plane for odd k)."""
    _check_pair(x, code, "x")
    flips, k = decode_tca(code)
    return flip_rotate(x, flips, k)


def tca_invert(y: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """Undo :func:`tca_apply`: ``tca_invert(tca_apply(x, c), c) == x`` exactly."""
    _check_pair(y, code, "y")
    flips, k = decode_tca(code)
    return flip_rotate(y, flips, k, inverse=True)


@dataclass(frozen=True)
class TCAParams(Params):
    """``code`` ``(B, 6|7)``: the drawn TCA codes (see :func:`encode_tca`)."""

    code: torch.Tensor

    @property
    def batch_size(self) -> int:
        return self.code.shape[0]


class TCATransform(RandomTransform):
    """The TCA target transform in the draw/apply form of the other transforms: draw codes with
    :func:`draw_tca`, apply them with :func:`tca_apply`."""

    def __init__(self, spatial_dims: int, flip_p: float = 0.5):
        super().__init__(spatial_dims)
        self.flip_p = check_probability(flip_p, "flip_p")

    def draw(self, shape, generator) -> TCAParams:
        return TCAParams(code=draw_tca(int(shape[0]), self.spatial_dims, generator, self.flip_p))

    def apply(self, x, params: TCAParams) -> torch.Tensor:
        return tca_apply(x, params.code.to(x.device))
