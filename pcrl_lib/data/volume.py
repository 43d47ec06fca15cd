"""A 3D image with its physical geometry, and one reader for every volume format SimpleITK knows.

Legend: ``array`` is ``(X, Y, Z)`` (Z = slice axis); ``spacing`` is (sx, sy, sz) in mm; ``origin`` is
the world position (mm, LPS as in ITK/DICOM) of voxel (0, 0, 0); ``direction`` is the 3×3 matrix whose
columns are the world directions of the x, y, z voxel axes. world = origin + direction @ (spacing * ijk).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Volume:
    array: np.ndarray                       # (X, Y, Z)
    spacing: tuple[float, float, float]     # mm per voxel along x, y, z
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    path: Path | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)

    def voxel_to_world(self, ijk: np.ndarray) -> np.ndarray:
        """(N, 3) voxel indices (x, y, z order) → (N, 3) world coordinates in mm."""
        ijk = np.atleast_2d(np.asarray(ijk, dtype=np.float64))
        return np.asarray(self.origin) + (ijk * np.asarray(self.spacing)) @ np.asarray(self.direction).T

    def world_to_voxel(self, xyz: np.ndarray) -> np.ndarray:
        """(N, 3) world coordinates in mm → (N, 3) continuous voxel indices (x, y, z order)."""
        xyz = np.atleast_2d(np.asarray(xyz, dtype=np.float64))
        rel = (xyz - np.asarray(self.origin)) @ np.linalg.inv(np.asarray(self.direction)).T
        return rel / np.asarray(self.spacing)


def read_volume(path: str | Path, dtype=np.float32) -> Volume:
    """Read a MetaImage (.mhd/.raw), NRRD, NIfTI (.nii/.nii.gz) file or a DICOM series folder.

    Raises ``FileNotFoundError`` / ``ValueError`` naming the file when it is missing or unreadable.
    """
    import SimpleITK as sitk

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            files = reader.GetGDCMSeriesFileNames(str(path))
            if not files:
                raise ValueError("no DICOM series found in the folder")
            reader.SetFileNames(files)
            image = reader.Execute()
        else:
            image = sitk.ReadImage(str(path))
    except RuntimeError as err:  # SimpleITK reports every read failure as RuntimeError
        first = str(err).strip().splitlines()
        raise ValueError(f"{path}: cannot read volume ({first[-1] if first else err})") from None
    if image.GetDimension() != 3:
        raise ValueError(f"{path}: expected a 3D volume, got {image.GetDimension()}D")
    # GetArrayFromImage gives (Z, Y, X); the kit's convention is (X, Y, Z).
    array = sitk.GetArrayFromImage(image).transpose(2, 1, 0).astype(dtype, copy=False)
    return Volume(array=np.ascontiguousarray(array), spacing=tuple(image.GetSpacing()),
                  origin=tuple(image.GetOrigin()),
                  direction=np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3), path=path)


def to_sitk(volume: Volume):
    """The inverse of :func:`read_volume`: a SimpleITK image with the same geometry."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.array.transpose(2, 1, 0)))
    image.SetSpacing(tuple(float(s) for s in volume.spacing))
    image.SetOrigin(tuple(float(o) for o in volume.origin))
    image.SetDirection(tuple(float(d) for d in np.asarray(volume.direction).ravel()))
    return image


def write_volume(volume: Volume, path: str | Path) -> Path:
    """Write ``volume`` in the format given by the suffix (.mhd writes a .raw beside it, .nrrd, .nii.gz)."""
    import SimpleITK as sitk

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(to_sitk(volume), str(path))
    return path
