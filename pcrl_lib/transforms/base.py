"""Shared machinery of the batched random transforms: the draw/apply split, parameter records,
argument checks and integer draws.

Every random transform in :mod:`pcrl_lib.transforms` follows MONAI's "randomizable" pattern, split
in two halves so that the random part can be inspected, replayed and compared with a slow oracle:

* ``params = t.draw(shape, generator)`` draws everything random for a whole batch of ``shape``
  ``(B, C, *spatial)`` from an explicit ``torch.Generator``, on the generator's device;
* ``y = t.apply(x, params)`` is deterministic and vectorised over the batch; it moves the parameters
  to ``x``'s device, so CPU-drawn parameters can drive a GPU batch;
* ``y = t(x, generator)`` does both; ``t(x, generator, return_params=True)`` returns ``(y, params)``.

Legend used throughout the package: ``B`` batch size, ``C`` channels, ``A`` number of samples a
transform actually touches (those whose Bernoulli(``p``) draw succeeded), ``spatial`` the spatial
sizes — ``(H, W)`` in 2D, ``(X, Y, Z)`` in 3D with Z = slices — and ``V`` their product.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from dataclasses import dataclass
from typing import Sequence, TypeVar

import torch

P = TypeVar("P", bound="Params")


@dataclass(frozen=True)
class Params:
    """Base record of drawn parameters: tensors (and plain values) with a ``.to(device)``."""

    def to(self: P, device: torch.device | str) -> P:
        """The same record with every tensor field moved to ``device``."""
        moved = {f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)
                 if isinstance(getattr(self, f.name), torch.Tensor)}
        return dataclasses.replace(self, **moved)


class RandomTransform(abc.ABC):
    """A batched random transform: ``draw`` (random) + ``apply`` (deterministic, vectorised)."""

    def __init__(self, spatial_dims: int):
        self.spatial_dims = check_spatial_dims(spatial_dims)

    @abc.abstractmethod
    def draw(self, shape: Sequence[int], generator: torch.Generator) -> Params:
        """Draw the parameters for a batch of ``shape`` = ``(B, C, *spatial)``."""

    @abc.abstractmethod
    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        """Apply drawn ``params`` to ``x`` of shape ``(B, C, *spatial)``; returns a new tensor."""

    def __call__(self, x: torch.Tensor, generator: torch.Generator, return_params: bool = False):
        check_batch(x, self.spatial_dims)
        params = self.draw(x.shape, generator)
        y = self.apply(x, params)
        return (y, params) if return_params else y


# ----------------------------------------------------------------------------------------------
# Argument checks: each names the offending argument and says what a valid value looks like.

_LAYOUT = {2: "(B, C, H, W)", 3: "(B, C, X, Y, Z)"}


def check_spatial_dims(spatial_dims, name: str = "spatial_dims") -> int:
    if spatial_dims not in (2, 3) or isinstance(spatial_dims, bool):
        raise ValueError(f"{name} must be 2 (images) or 3 (volumes), got {spatial_dims!r}")
    return int(spatial_dims)


def check_batch(x, spatial_dims: int, name: str = "x") -> None:
    """``x`` must be a floating tensor laid out ``(B, C, *spatial)`` with ``spatial_dims`` axes."""
    layout = _LAYOUT[spatial_dims]
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor {layout}, got {type(x).__name__}")
    if x.ndim != spatial_dims + 2:
        hint = " (add the channel axis with x.unsqueeze(1))" if x.ndim == spatial_dims + 1 else ""
        raise ValueError(f"{name} must have {spatial_dims + 2} dims {layout} for spatial_dims={spatial_dims}, "
                         f"got shape {tuple(x.shape)}{hint}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor (intensities in [0, 1]), got {x.dtype}; "
                         f"convert with x.float()")
    if x.shape[0] == 0 or any(s == 0 for s in x.shape[1:]):
        raise ValueError(f"{name} must not be empty, got shape {tuple(x.shape)}")


def check_shape(shape, spatial_dims: int, name: str = "shape") -> tuple[int, ...]:
    """A batch shape ``(B, C, *spatial)`` of positive ints, as given to ``draw``."""
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError as err:
        raise TypeError(f"{name} must be a sequence of ints {_LAYOUT[spatial_dims]}, got {shape!r}") from err
    if len(shape) != spatial_dims + 2 or min(shape) < 1:
        raise ValueError(f"{name} must be {spatial_dims + 2} positive sizes {_LAYOUT[spatial_dims]} "
                         f"for spatial_dims={spatial_dims}, got {shape}")
    return shape


def check_probability(p, name: str) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0 or math.isnan(p):
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
    return float(p)


def check_interval(value, name: str, low: float = -math.inf, high: float = math.inf) -> tuple[float, float]:
    """A closed interval ``(a, b)`` with ``low <= a <= b <= high``."""
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a pair (low, high) of numbers, got {value!r}") from err
    if not low <= a <= b <= high:
        raise ValueError(f"{name} must satisfy {low} <= low <= high <= {high}, got {value!r}")
    return a, b


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def check_generator(generator, name: str = "generator") -> torch.Generator:
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"{name} must be a torch.Generator (e.g. torch.Generator().manual_seed(0)), "
                        f"got {type(generator).__name__}")
    return generator


def check_params(params, cls: type, batch_size: int, name: str = "params") -> None:
    if not isinstance(params, cls):
        raise TypeError(f"{name} must be a {cls.__name__} from the matching draw(), got {type(params).__name__}")
    if params.batch_size != batch_size:
        raise ValueError(f"{name} were drawn for a batch of {params.batch_size}, but x has {batch_size} samples")


# ----------------------------------------------------------------------------------------------
# Draws on the generator's device.

def rand(shape: Sequence[int], generator: torch.Generator, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """U[0, 1) of ``shape`` on the generator's device."""
    return torch.rand(tuple(shape), generator=generator, device=generator.device, dtype=dtype)


def uniform(low: float, high: float, shape: Sequence[int], generator: torch.Generator) -> torch.Tensor:
    """U[low, high) of ``shape`` (float32) on the generator's device."""
    return low + (high - low) * rand(shape, generator)


def randint(low: torch.Tensor, high: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Integers uniform in the *closed* range ``[low, high]`` elementwise (Python's ``random.randint``).

    ``low``/``high`` are long tensors of one shape (``high >= low``); the result has that shape.
    """
    u = rand(low.shape, generator, dtype=torch.float64)
    span = (high - low + 1).to(torch.float64)
    # u < 1 so floor(u * span) <= span - 1; the clamp only guards float rounding at the top end.
    return low + torch.minimum((u * span).long(), high - low)


def active_index(batch_size: int, p: float, generator: torch.Generator) -> torch.Tensor:
    """``(A,)`` long: indices of the samples whose Bernoulli(``p``) draw succeeded, ascending."""
    return torch.nonzero(rand((batch_size,), generator) < p).flatten()


def apply_to_index(x: torch.Tensor, index: torch.Tensor, fn) -> torch.Tensor:
    """A copy of ``x`` whose samples ``index`` (A,) are replaced by ``fn(x[index])``.

    ``index`` is ascending without repeats (as :func:`active_index` returns), so a full-length index
    is the whole batch and needs no gather/scatter.
    """
    if index.numel() == x.shape[0]:
        return fn(x).to(x.dtype)
    out = x.clone()
    if index.numel():
        out.index_copy_(0, index, fn(x.index_select(0, index)).to(x.dtype))
    return out
