"""A 3D image with its physical geometry (:class:`Volume`) and the error every reader raises for a damaged file.

Legend: ``array`` is ``(X, Y, Z)`` (Z = slice axis); ``spacing`` is (sx, sy, sz) in mm; ``origin`` is
the world position (mm, LPS as in ITK/DICOM) of voxel (0, 0, 0); ``direction`` is the 3×3 matrix whose
columns are the world directions of the x, y, z voxel axes. world = origin + direction @ (spacing * ijk).

The readers live in :mod:`pcrl_lib.data.volume` (files) and :mod:`pcrl_lib.data.dicom` (DICOM series); both
build on this module, which imports neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FIX = "download or copy the file again"


class CorruptVolumeError(ValueError):
    """A volume file that is cut short or damaged: ``path`` and ``problem`` (which says how to fix it); the
    message is ``"<path>: <problem>"``."""

    def __init__(self, path: str | Path, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path}: {problem}")

    def __reduce__(self):  # picklable, so worker processes can report it
        return type(self), (self.path, self.problem)


@dataclass
class Volume:
    array: np.ndarray                       # (X, Y, Z)
    spacing: tuple[float, float, float]     # mm per voxel along x, y, z
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    path: Path | None = None
    nonfinite: int = 0                      # NaN/±inf voxels kept on request (read_volume(nonfinite="keep"))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)

    @property
    def extent_mm(self) -> np.ndarray:
        """(3,) millimetres the grid covers along x, y, z: shape × spacing."""
        return np.asarray(self.shape) * np.asarray(self.spacing)

    def volume_ml(self) -> float:
        """Millilitres of a mask: the sum of its voxels (1 = inside) × the voxel volume (mm³ / 1000)."""
        return float(self.array.sum() * np.prod(self.spacing) / 1000)

    def voxel_to_world(self, ijk: np.ndarray) -> np.ndarray:
        """(N, 3) voxel indices (x, y, z order) → (N, 3) world coordinates in mm."""
        ijk = np.atleast_2d(np.asarray(ijk, dtype=np.float64))
        return np.asarray(self.origin) + (ijk * np.asarray(self.spacing)) @ np.asarray(self.direction).T

    def world_to_voxel(self, xyz: np.ndarray) -> np.ndarray:
        """(N, 3) world coordinates in mm → (N, 3) continuous voxel indices (x, y, z order)."""
        xyz = np.atleast_2d(np.asarray(xyz, dtype=np.float64))
        rel = (xyz - np.asarray(self.origin)) @ np.linalg.inv(np.asarray(self.direction)).T
        return rel / np.asarray(self.spacing)
