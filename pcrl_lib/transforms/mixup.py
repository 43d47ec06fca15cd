"""Cross-model mixup of PCRL's pass B (PCRL_SPEC §5, step 5).

One ``λ`` and one batch permutation ``π`` per step, applied identically to the inputs x1, x2, the
clean crops g1, g2 and the pass-A keys k:

    λ ~ Beta(1, 1),  λ = max(λ, 1 − λ) ∈ [0.5, 1],   mix(x) = λ · x + (1 − λ) · x[π]

The hybrid-encoder coefficient α of §3 has the same law: :func:`fold_coefficient` folds both draws.
"""

from __future__ import annotations

import numbers

import torch

from .base import check_generator, rand


def fold_coefficient(u: float) -> float:
    """Fold a Beta(1, 1) draw ``u`` ∈ [0, 1] to ``max(u, 1 − u)`` ∈ [0.5, 1], so that the first term of a mix
    (the sample's own image, or the ordinary encoder's features) always dominates. A number in, a float out."""
    if isinstance(u, bool) or not isinstance(u, numbers.Real) or not 0.0 <= u <= 1.0:
        raise ValueError(f"u must be a number in [0, 1] (a Beta(1, 1) draw), got {u!r}")
    return max(float(u), 1.0 - float(u))


def draw_mix(batch_size: int, generator: torch.Generator) -> tuple[float, torch.Tensor]:
    """Draw ``(λ, π)``: ``λ`` a float in [0.5, 1], ``π`` ``(B,)`` long, a permutation on the generator's device.

    Beta(1, 1) is the uniform law on [0, 1], drawn directly from ``generator``.
    """
    check_generator(generator)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    lam = float(rand((1,), generator, dtype=torch.float64))
    perm = torch.randperm(batch_size, generator=generator, device=generator.device)
    return fold_coefficient(lam), perm


def mix(x: torch.Tensor, lam: float, perm: torch.Tensor) -> torch.Tensor:
    """``λ · x + (1 − λ) · x[π]`` along the batch axis; ``x`` is ``(B, ...)``, ``perm`` ``(B,)`` long.

    The result has ``x``'s shape, dtype and device (``perm`` is moved there).
    """
    if not isinstance(x, torch.Tensor) or x.ndim < 1 or not x.is_floating_point():
        raise ValueError(f"x must be a floating tensor (B, ...), got {getattr(x, 'shape', type(x).__name__)}")
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be a number in [0, 1] (draw it with draw_mix), got {lam!r}")
    B = x.shape[0]
    if not isinstance(perm, torch.Tensor) or perm.shape != (B,) or perm.dtype != torch.long:
        raise ValueError(f"perm must be a (B,) = ({B},) long tensor (draw it with draw_mix), got "
                         f"{getattr(perm, 'shape', type(perm).__name__)}")
    perm = perm.to(x.device)
    if not torch.equal(perm.sort().values, torch.arange(B, device=x.device)):
        raise ValueError(f"perm must be a permutation of 0..{B - 1}, got {perm.tolist()}")
    return lam * x + (1.0 - lam) * x.index_select(0, perm)
