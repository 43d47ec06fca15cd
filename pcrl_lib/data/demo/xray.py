"""Demo chest X-ray data (real but tiny; for demos and tests, never for reported results).

- :func:`xray_images`: 16 paediatric chest radiographs (JPEG), 8 NORMAL and 8 PNEUMONIA (bacterial), from
  the validation split of Kermany et al. 2018 (CC BY 4.0). Label and patient id come from the file name:
  ``NORMAL2-IM-<patient>-<image>.jpeg`` and ``person<patient>_bacteria_<image>.jpeg``.
- :func:`dicom_radiograph`: one adult PA chest radiograph stored as DICOM CR, MONOCHROME1.
- :func:`nih_label_table`: the real NIH ChestX-ray14 label table (no images) for the NIH label loader.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..dicom import DicomMeta, Window, read_dicom_image
from .fetching import load_manifest

LABELS = ("NORMAL", "PNEUMONIA")  # label_index 0, 1

_NORMAL = re.compile(r"^NORMAL2-(IM-\d+)-\d+\.jpe?g$", re.IGNORECASE)
_PNEUMONIA = re.compile(r"^(person\d+)_(bacteria|virus)_\d+\.jpe?g$", re.IGNORECASE)


@dataclass(frozen=True)
class XRayRecord:
    """One demo radiograph: its file, label (``"NORMAL"``/``"PNEUMONIA"``) and patient id."""

    path: Path
    label: str
    patient_id: str

    @property
    def label_index(self) -> int:
        return LABELS.index(self.label)


def parse_xray_name(name: str) -> tuple[str, str]:
    """``(label, patient_id)`` from a Kermany-style file name; several images may share a patient."""
    if match := _NORMAL.match(name):
        return "NORMAL", match.group(1)
    if match := _PNEUMONIA.match(name):
        return "PNEUMONIA", match.group(1)
    raise ValueError(f"{name}: not a Kermany chest X-ray file name (NORMAL2-IM-<n>-<n>.jpeg or "
                     "person<n>_bacteria|virus_<n>.jpeg)")


def xray_images(cache_dir: str | os.PathLike | None = None) -> list[XRayRecord]:
    """DEMO: the 16 fetched paediatric radiographs as records, sorted by file name (8 NORMAL, 8 PNEUMONIA)."""
    manifest = load_manifest(cache_dir)
    records = []
    for key in manifest.keys("xray_pneumonia/"):
        path = manifest.path(key)
        label, patient = parse_xray_name(path.name)
        records.append(XRayRecord(path=path, label=label, patient_id=patient))
    return records


def load_xray(image: XRayRecord | str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """Load a radiograph file (JPEG/PNG) as float32 ``(H, W)`` in ``[0, 1]`` (grey / 255, or / 65535 for
    16-bit PNGs).

    ``size``: optional ``(H, W)`` to resize to (bilinear, antialiased when shrinking).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(image.path if isinstance(image, XRayRecord) else image)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file")
    try:
        with Image.open(path) as img:
            sixteen = img.mode.startswith("I;16")  # 16-bit PNGs: converting to "L" would clip at 255
            grey = img if sixteen else img.convert("L")
            if size is not None:
                height, width = size
                grey = grey.resize((int(width), int(height)), Image.BILINEAR)
            return np.asarray(grey, dtype=np.float32) / (65535.0 if sixteen else 255.0)
    except UnidentifiedImageError:
        raise ValueError(f"{path}: not an image PIL can read") from None


def dicom_radiograph(window: Window = None,
                     cache_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, DicomMeta]:
    """DEMO: the adult PA chest radiograph ``RG1_UNCI.dcm`` (CR, MONOCHROME1) via :func:`read_dicom_image`.

    Returns float32 ``(H, W)`` = ``(1955, 1841)`` in ``[0, 1]``, inverted to MONOCHROME2 (lungs dark), and
    its :class:`DicomMeta`. The file's pixel spacing is written as 0, so ``meta.pixel_spacing`` is None.
    """
    return read_dicom_image(load_manifest(cache_dir).path("dicom_radiograph/RG1_UNCI.dcm"), window=window)


def nih_label_table(cache_dir: str | os.PathLike | None = None) -> Path:
    """DEMO: path of the real NIH ChestX-ray14 label table ``Data_Entry_2017_v2020.csv.gz`` (112,120 rows,
    one per image; no images), read by ``pcrl_lib.data.nih.load_labels``."""
    return load_manifest(cache_dir).path("nih_chestxray14/Data_Entry_2017_v2020.csv.gz")
