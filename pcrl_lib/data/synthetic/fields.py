"""Building blocks of the synthetic images: smooth random fields, coordinate grids, soft shapes.

All functions are vectorised over a leading batch axis and take an explicit ``numpy.random.Generator``.
"""

from __future__ import annotations

import numpy as np


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float | tuple[float, ...],
                 ndim: int | None = None) -> np.ndarray:
    """Gaussian-filtered white noise, normalised to zero mean and unit standard deviation per item.

    ``shape`` is ``(*batch, *spatial)``; the last ``ndim`` axes (default: all) are filtered with a Gaussian of
    standard deviation ``sigma`` voxels (one value, or one per spatial axis — anisotropic voxels need that).
    Filtering is done in the Fourier domain, so the field wraps around (periodic), which is harmless here.
    Returns float32 of ``shape``.
    """
    ndim = len(shape) if ndim is None else ndim
    spatial = shape[len(shape) - ndim:]
    sigmas = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (ndim,))
    axes = tuple(range(len(shape) - ndim, len(shape)))
    white = rng.standard_normal(shape, dtype=np.float32)
    spectrum = np.fft.rfftn(white, axes=axes)
    # Transfer function of a Gaussian: exp(-2 π² σ² f²), separable over axes.
    transfer = np.ones((), dtype=np.float64)
    for axis, (n, s) in enumerate(zip(spatial, sigmas)):
        freqs = np.fft.rfftfreq(n) if axis == ndim - 1 else np.fft.fftfreq(n)
        shape_axis = [1] * ndim
        shape_axis[axis] = len(freqs)
        transfer = transfer * np.exp(-2.0 * np.pi ** 2 * s ** 2 * freqs ** 2).reshape(shape_axis)
    # A float32 transfer keeps the spectrum complex64: half the memory and time of the float64 path.
    field = np.fft.irfftn(spectrum * transfer.astype(np.float32), s=spatial, axes=axes).astype(np.float32, copy=False)
    reduce_axes = tuple(range(len(shape) - ndim, len(shape)))
    field -= field.mean(axis=reduce_axes, keepdims=True)
    field /= field.std(axis=reduce_axes, keepdims=True) + 1e-6
    return field


def grid(shape: tuple[int, ...]) -> list[np.ndarray]:
    """Normalised coordinates in [-1, 1] per axis, broadcastable: for ``(H, W)`` → ``[v (1, H, 1), u (1, 1, W)]``
    (a leading batch axis of 1 is included so they broadcast against ``(N, *shape)``)."""
    coords = []
    for axis, n in enumerate(shape):
        view = [1] * (len(shape) + 1)
        view[axis + 1] = n
        coords.append(np.linspace(-1.0, 1.0, n, dtype=np.float32).reshape(view))
    return coords


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def soft_inside(radius: np.ndarray, edge: float) -> np.ndarray:
    """Soft indicator of ``radius < 1`` (``radius`` is a normalised ellipse/ellipsoid radius), edge width ``edge``."""
    return sigmoid((1.0 - radius) / edge).astype(np.float32)


def ellipse_radius(coords: list[np.ndarray], centre: list[np.ndarray | float],
                   axes: list[np.ndarray | float]) -> np.ndarray:
    """Normalised radius ``sqrt(Σ ((x_i - c_i) / a_i)²)`` — 1 on the ellipse (2D) / ellipsoid (3D) surface."""
    total = 0.0
    for x, c, a in zip(coords, centre, axes):
        total = total + ((x - c) / a) ** 2
    return np.sqrt(total).astype(np.float32)


def col(values: np.ndarray, ndim: int) -> np.ndarray:
    """``(N,)`` per-item values → ``(N, 1, ..., 1)`` with ``ndim`` trailing axes, to broadcast over images."""
    return np.asarray(values, dtype=np.float32).reshape((-1,) + (1,) * ndim)
