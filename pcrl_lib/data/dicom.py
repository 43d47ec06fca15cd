"""DICOM readers: a single radiograph as a display-ready image, and a CT series as a :class:`Volume`.

Radiograph pipeline (DICOM PS3.3 C.11, the order a viewer applies):

1. modality LUT — stored value ``SV`` → ``SV * RescaleSlope + RescaleIntercept`` (or the
   ``ModalityLUTSequence`` table when the file has one);
2. VOI window — ``WindowCenter`` ``c`` / ``WindowWidth`` ``w`` map ``[c - w/2, c + w/2]`` onto ``[0, 1]``
   (with the file's ``VOILUTFunction``: LINEAR, LINEAR_EXACT or SIGMOID); an explicit window overrides it;
3. presentation — ``MONOCHROME1`` means "low values are white", so the result is inverted to the
   ``MONOCHROME2`` convention used everywhere in the kit (air black, bone white).

Series: slices are ordered by their position along the slice normal (``ImagePositionPatient`` projected
onto ``row × column`` of ``ImageOrientationPatient``), never by file name or ``InstanceNumber``.
Geometry follows :mod:`pcrl_lib.data.volume`: ``array`` is ``(X, Y, Z)`` with X the column index, Y the
row index and Z the slice index; world coordinates are LPS millimetres.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Union

import numpy as np

from .volume import Volume

Window = Union[tuple[float, float], Literal["data"], None]

_GREY = ("MONOCHROME1", "MONOCHROME2")


@dataclass(frozen=True)
class DicomMeta:
    """What :func:`read_dicom_image` did to the pixels, and the geometry needed to measure on them."""

    path: Path
    modality: str
    photometric: str                          # as stored: MONOCHROME1 or MONOCHROME2
    inverted: bool                            # True for MONOCHROME1 (now displayed air-dark)
    rescale: tuple[float, float]              # (RescaleSlope, RescaleIntercept) applied
    window: tuple[float, float]               # (center, width) in modality units, as used
    window_source: str                        # "dicom", "explicit" or "data range"
    voi_function: str                         # LINEAR, LINEAR_EXACT or SIGMOID
    pixel_spacing: tuple[float, float] | None  # (row, column) spacing in mm; None when unknown
    shape: tuple[int, int]                    # (H, W)


def _read(path: Path, **kwargs):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(str(path), **kwargs)
    except InvalidDicomError as err:
        raise ValueError(f"{path}: not a DICOM file ({err})") from None


def _pixels(ds, path: Path) -> np.ndarray:
    """Decoded stored values, with a clear message when the transfer syntax needs a missing decoder."""
    if "PixelData" not in ds:
        raise ValueError(f"{path}: the DICOM file holds no pixel data")
    try:
        return ds.pixel_array
    except (RuntimeError, NotImplementedError, ValueError) as err:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise ValueError(
            f"{path}: cannot decode pixels with transfer syntax {syntax} ({err}); install a decoder "
            "plugin for pydicom (e.g. pylibjpeg with its openjpeg/libjpeg extras) or convert the file"
        ) from None


def _first(value) -> float:
    """WindowCenter/Width may be multi-valued (several presets); the first is the default preset."""
    from pydicom.multival import MultiValue

    return float(value[0]) if isinstance(value, (list, tuple, MultiValue)) else float(value)


def _pixel_spacing(ds) -> tuple[float, float] | None:
    for tag in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(tag)
        if value is not None and len(value) == 2 and min(float(v) for v in value) > 0:
            return float(value[0]), float(value[1])
    return None  # absent or written as 0\0 (as in some test files): unknown, not zero


def _voi(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """Map modality values to [0, 1] with the DICOM VOI functions (PS3.3 C.11.2.1.2)."""
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT":
        return np.clip((values - center) / width + 0.5, 0.0, 1.0)
    # LINEAR: the standard's formula uses (w - 1) and a half-unit shift for integer displays.
    return np.clip((values - (center - 0.5)) / (width - 1.0) + 0.5, 0.0, 1.0)


def read_dicom_image(path: str | Path, window: Window = None) -> tuple[np.ndarray, DicomMeta]:
    """Read a single-frame greyscale DICOM image (a radiograph, one CT slice) ready for display/training.

    Args:
        path: the ``.dcm`` file.
        window: ``None`` → the file's first ``WindowCenter``/``WindowWidth`` preset with its
            ``VOILUTFunction`` (data range when the file has none); ``(center, width)`` in modality
            units (e.g. HU) → that window, linearly; ``"data"`` → the image's min..max.

    Returns:
        ``image``: float32 ``(H, W)`` in ``[0, 1]``, MONOCHROME2 convention (MONOCHROME1 is inverted, so
        lungs on a chest radiograph come out dark); ``meta``: :class:`DicomMeta`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such DICOM file")
    ds = _read(path)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if int(ds.get("SamplesPerPixel", 1)) != 1 or photometric not in _GREY:
        raise ValueError(f"{path}: expected a greyscale image (MONOCHROME1/2), got {photometric}")
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise ValueError(f"{path}: multi-frame DICOM ({ds.NumberOfFrames} frames); read_dicom_image reads "
                         "single-frame images; use read_dicom_series for a folder of slices")
    stored = _pixels(ds, path)

    slope, intercept = float(ds.get("RescaleSlope", 1.0) or 1.0), float(ds.get("RescaleIntercept", 0.0) or 0.0)
    if "ModalityLUTSequence" in ds:
        from pydicom.pixels import apply_modality_lut

        values = np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)
        slope, intercept = 1.0, 0.0  # the table replaced the linear rescale
    else:
        values = stored.astype(np.float64) * slope + intercept

    function = "LINEAR"
    if window is None and ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
        if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
            raise ValueError(f"{path}: unknown VOILUTFunction {function!r}; pass window=(center, width)")
        if width <= (1.0 if function == "LINEAR" else 0.0):
            raise ValueError(f"{path}: WindowWidth {width} is invalid; pass window=(center, width) or 'data'")
        source = "dicom"
    elif window is None or window == "data":
        lo, hi = float(values.min()), float(values.max())
        center, width, function, source = (lo + hi) / 2, hi - lo, "LINEAR_EXACT", "data range"
    elif isinstance(window, tuple) and len(window) == 2:
        center, width = float(window[0]), float(window[1])
        if not width > 0:
            raise ValueError(f"window=(center, width) needs width > 0, got {window!r}")
        function, source = "LINEAR_EXACT", "explicit"
    else:
        raise ValueError(f"window must be None, 'data' or a (center, width) tuple, got {window!r}")

    if width == 0:  # a constant image: nothing to stretch
        image = np.zeros_like(values)
    else:
        image = _voi(values, center, width, function)
    inverted = photometric == "MONOCHROME1"
    if inverted:
        image = 1.0 - image
    meta = DicomMeta(path=path, modality=str(ds.get("Modality", "")), photometric=photometric,
                     inverted=inverted, rescale=(slope, intercept), window=(center, width),
                     window_source=source, voi_function=function, pixel_spacing=_pixel_spacing(ds),
                     shape=tuple(image.shape))
    return image.astype(np.float32), meta


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def read_dicom_series(folder: str | Path, series_uid: str | None = None,
                      spacing_tolerance: float = 0.01) -> Volume:
    """Read a folder of single-frame DICOM slices (one CT/MR series) into a :class:`Volume` in modality units.

    Args:
        folder: the folder holding the slices; files that are not DICOM images are ignored.
        series_uid: which ``SeriesInstanceUID`` to read when the folder holds several.
        spacing_tolerance: largest allowed relative spread of the gaps between slice positions.

    Returns:
        ``Volume`` with ``array`` float32 ``(X, Y, Z)`` (HU for CT: per-slice RescaleSlope/Intercept
        applied), ``spacing`` ``(column, row, slice-gap)`` mm, ``origin`` the first slice's
        ImagePositionPatient and ``direction`` columns ``(row cosine, column cosine, slice normal)``.
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise ValueError(f"{folder}: is a file; read_dicom_series takes the folder of a series "
                         "(read_dicom_image reads a single file)")

    series: dict[str, list] = defaultdict(list)
    descriptions: dict[str, str] = {}
    for file in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        try:
            ds = _read(file)
        except ValueError:
            continue  # README files, DICOMDIR indexes and the like sit beside slices
        if "PixelData" not in ds or "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds:
            continue
        uid = str(ds.get("SeriesInstanceUID", "unknown"))
        series[uid].append((file, ds))
        descriptions.setdefault(uid, str(ds.get("SeriesDescription", "")))
    if not series:
        raise ValueError(f"{folder}: no DICOM image slices (with ImagePositionPatient) found")
    if series_uid is None:
        if len(series) > 1:
            listing = "; ".join(f"{uid} ({len(s)} slices, {descriptions[uid]!r})" for uid, s in series.items())
            raise ValueError(f"{folder}: holds {len(series)} series, pass series_uid= one of: {listing}")
        series_uid = next(iter(series))
    if series_uid not in series:
        raise ValueError(f"{folder}: no series with SeriesInstanceUID {series_uid!r}; found {sorted(series)}")
    slices = series[series_uid]

    first_file, first = slices[0]
    orientation = np.asarray([float(v) for v in first.ImageOrientationPatient])
    shape = (int(first.Rows), int(first.Columns))
    for file, ds in slices:
        if (int(ds.Rows), int(ds.Columns)) != shape:
            raise ValueError(f"{file}: slice size {(ds.Rows, ds.Columns)} differs from {first_file.name}'s {shape}")
        if not np.allclose([float(v) for v in ds.ImageOrientationPatient], orientation, atol=1e-4):
            raise ValueError(f"{file}: ImageOrientationPatient differs from {first_file.name}'s (a tilted or "
                             "mixed series); pass series_uid= of a single acquisition")
    row_dir, col_dir = _unit(orientation[:3]), _unit(orientation[3:])
    normal = np.cross(row_dir, col_dir)

    positions = np.asarray([[float(v) for v in ds.ImagePositionPatient] for _, ds in slices])  # (Z, 3)
    order = np.argsort(positions @ normal, kind="stable")
    along = (positions @ normal)[order]
    if len(slices) > 1:
        gaps = np.diff(along)
        if gaps.min() <= 1e-3:
            raise ValueError(f"{folder}: two slices share a position along the slice normal (duplicates?)")
        if gaps.max() - gaps.min() > spacing_tolerance * np.median(gaps) + 1e-3:
            raise ValueError(f"{folder}: slice gaps vary from {gaps.min():.3f} to {gaps.max():.3f} mm (a missing "
                             "slice?); raise spacing_tolerance= to accept it")
        slice_gap = float(np.median(gaps))
    else:
        slice_gap = float(first.get("SliceThickness", 1.0) or 1.0)

    ordered = [slices[i] for i in order]
    stored = np.stack([_pixels(ds, file) for file, ds in ordered]).astype(np.float32)  # (Z, rows, cols)
    slopes = np.asarray([float(ds.get("RescaleSlope", 1.0) or 1.0) for _, ds in ordered], dtype=np.float32)
    intercepts = np.asarray([float(ds.get("RescaleIntercept", 0.0) or 0.0) for _, ds in ordered],
                            dtype=np.float32)
    values = stored * slopes[:, None, None] + intercepts[:, None, None]

    if first.get("PixelSpacing") is None:
        raise ValueError(f"{first_file}: no PixelSpacing, so the series has no physical geometry")
    row_spacing, col_spacing = (float(v) for v in first.PixelSpacing)
    return Volume(array=np.ascontiguousarray(values.transpose(2, 1, 0)),  # (Z, rows, cols) → (X, Y, Z)
                  spacing=(col_spacing, row_spacing, slice_gap),
                  origin=tuple(float(v) for v in positions[order[0]]),
                  direction=np.stack([row_dir, col_dir, normal], axis=1), path=folder)
