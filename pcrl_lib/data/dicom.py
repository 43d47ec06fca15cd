"""DICOM readers: a single radiograph as a display-ready image, and a CT series as a :class:`Volume`.

Radiograph pipeline (DICOM PS3.3 C.11, the order a viewer applies):

1. modality LUT — stored value ``SV`` → ``SV * RescaleSlope + RescaleIntercept`` (or the
   ``ModalityLUTSequence`` table when the file has one);
2. VOI window — ``WindowCenter`` ``c`` / ``WindowWidth`` ``w`` map ``[c - w/2, c + w/2]`` onto ``[0, 1]``
   (with the file's ``VOILUTFunction``: LINEAR, LINEAR_EXACT or SIGMOID); an explicit window overrides it;
3. presentation — ``MONOCHROME1`` means "low values are white", so the result is inverted to the
   ``MONOCHROME2`` convention used everywhere in the kit (air black, bone white).

Series: slices are ordered by their position along the slice normal (``ImagePositionPatient`` projected
onto ``row × column`` of ``ImageOrientationPatient``), never by file name or ``InstanceNumber``; the slice
spacing is a least-squares fit of those positions, and a missing, unreadable or tilted slice is an error.
Geometry follows :mod:`pcrl_lib.data.volume`: ``array`` is ``(X, Y, Z)`` with X the column index, Y the
row index and Z the slice index; world coordinates are LPS millimetres.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Union

import numpy as np

from .geometry import FIX, CorruptVolumeError, Volume

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
    """The dataset of ``path``; ValueError "not a DICOM file", CorruptVolumeError for a DICOM file cut short."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(str(path), **kwargs)
    except InvalidDicomError as err:
        raise ValueError(f"{path}: not a DICOM file ({err})") from None
    except (EOFError, OSError, ValueError, KeyError, TypeError) as err:  # pydicom's parse errors vary
        raise CorruptVolumeError(path, f"damaged DICOM file ({type(err).__name__}: {str(err).strip()[:120]}); "
                                 f"{FIX}") from None


def _looks_like_dicom(path: Path) -> bool:
    """A ``.dcm``/``.dicom``/``.ima`` name or the ``DICM`` marker at byte 128: a slice, not a README."""
    if path.suffix.lower() in (".dcm", ".dicom", ".ima"):
        return True
    with open(path, "rb") as f:
        return f.read(132)[128:] == b"DICM"


def _decoder_available(syntax) -> bool:
    from pydicom.pixels import get_decoder

    try:
        return bool(get_decoder(syntax).is_available)
    except (NotImplementedError, ValueError):  # no decoder at all for this transfer syntax
        return False


def _pixels(ds, path: Path) -> np.ndarray:
    """Decoded stored values. A short native pixel data element says "pixel data truncated"; the advice to
    install a decoder comes only when no installed plugin can decode the transfer syntax."""
    if "PixelData" not in ds:
        raise ValueError(f"{path}: the DICOM file holds no pixel data")
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    compressed = syntax is not None and syntax.is_compressed
    if not compressed and all(t in ds for t in ("Rows", "Columns", "BitsAllocated")):
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        bits = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * frames * int(ds.BitsAllocated)
        expected, actual = (bits + 7) // 8, len(ds.PixelData)
        if actual < expected:
            raise CorruptVolumeError(path, f"pixel data truncated: {actual} of {expected} bytes "
                                     f"({int(ds.Rows)}×{int(ds.Columns)}, {int(ds.BitsAllocated)}-bit); {FIX}")
    try:
        return ds.pixel_array
    except (RuntimeError, NotImplementedError, ValueError) as err:
        if compressed and not _decoder_available(syntax):
            raise ValueError(
                f"{path}: cannot decode pixels with transfer syntax {syntax} ({syntax.name}); install a decoder "
                "plugin for pydicom (e.g. pylibjpeg with its openjpeg/libjpeg extras, or GDCM) or convert the file"
            ) from None
        raise CorruptVolumeError(path, f"cannot decode the pixel data (transfer syntax {syntax}: "
                                 f"{str(err).strip()[:160]}); the file is damaged — {FIX}") from None


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


def _file_window(ds, path: Path) -> tuple[float, float, str] | None:
    """The file's first (center, width, VOILUTFunction) preset; None when absent or when the width is invalid
    (PS3.3 C.11.2.1.2 needs width >= 1 for LINEAR, > 0 otherwise; writers put 0 for "no window")."""
    if ds.get("WindowCenter") is None or ds.get("WindowWidth") is None:
        return None
    center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        raise ValueError(f"{path}: unknown VOILUTFunction {function!r}; pass window=(center, width)")
    return (center, width, function) if width > (1.0 if function == "LINEAR" else 0.0) else None


def read_dicom_image(path: str | Path, window: Window = None) -> tuple[np.ndarray, DicomMeta]:
    """Read a single-frame greyscale DICOM image (a radiograph, one CT slice) ready for display/training.

    Args:
        path: the ``.dcm`` file.
        window: ``None`` → the file's first ``WindowCenter``/``WindowWidth`` preset with its
            ``VOILUTFunction`` (data range when the file has none or its width is 0); ``(center, width)`` in modality
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

    preset = _file_window(ds, path) if window is None else None
    if preset is not None:
        center, width, function = preset
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


def _decimals(value) -> int:
    """Decimals written in a DS value ("-75.699997" → 6), from the file's own string when pydicom kept it."""
    text = str(getattr(value, "original_string", None) or value).strip().lower()
    mantissa, _, exponent = text.partition("e")
    places = len(mantissa.partition(".")[2])
    return max(0, places - int(exponent or 0))


def _rounding_allowance(slices, normal: np.ndarray) -> float:
    """Largest change of a slice gap (mm) that rounding of ImagePositionPatient can explain: each coordinate
    written with d decimals is off by up to 0.5·10^-d, a projection on ``normal`` sums those (× |normal_i|) and
    a gap is the difference of two. Coordinates equal in every slice shift all slices alike and are left out."""
    text = [list(ds.ImagePositionPatient) for _, ds in slices]
    allowance = 0.0
    for axis in range(3):
        values = [row[axis] for row in text]
        if len({float(v) for v in values}) > 1:
            allowance += 0.5 * 10.0 ** -max(_decimals(v) for v in values) * abs(normal[axis])
    return 2.0 * allowance


def _slice_geometry(folder: Path, ordered, positions: np.ndarray, normal: np.ndarray, pixel_spacing,
                    spacing_tolerance: float) -> float:
    """Slice spacing (mm) fitted by least squares to the positions along ``normal`` of the slices in order,
    after checking that they sit on one evenly spaced line along the normal (no missing slice, no tilt)."""
    along = positions @ normal                                         # (Z,) mm along the slice normal
    index = np.arange(len(along), dtype=np.float64)
    gaps = np.diff(along)
    if gaps.min() <= 1e-3:
        k = int(np.argmin(gaps))
        raise ValueError(f"{folder}: two slices share a position along the slice normal (duplicates?): "
                         f"{ordered[k][0].name} and {ordered[k + 1][0].name}")
    spacing, start = np.polyfit(index, along, 1)
    allowance = _rounding_allowance(ordered, normal)
    # Rounded positions move gaps by up to `allowance`; capped at half the spacing so a missing slice
    # (a gap of twice the spacing) is always caught.
    tolerance = max(spacing_tolerance * spacing, min(allowance, 0.5 * spacing))
    off_gap = np.abs(gaps - spacing)
    off_line = np.abs(along - (start + spacing * index))
    if max(off_gap.max(), off_line.max()) > tolerance:
        k = int(np.argmax(off_gap))
        raise ValueError(f"{folder}: slice gaps vary from {gaps.min():.3f} to {gaps.max():.3f} mm around the fitted "
                         f"spacing {spacing:.3f} mm (largest off: {gaps[k]:.3f} mm between {ordered[k][0].name} and "
                         f"{ordered[k + 1][0].name}; a missing slice?); raise spacing_tolerance= (now "
                         f"{spacing_tolerance:g} of the spacing) to accept it")
    # Slices must be stacked along their normal: an in-plane drift of the positions is a gantry tilt (a
    # sheared grid, which Volume's direction matrix cannot hold).
    in_plane = positions - np.outer(along, normal)                       # (Z, 3)
    drift = np.polyfit(index, in_plane, 1)[0]                            # (3,) mm per slice
    shift = float(np.linalg.norm(drift)) * (len(along) - 1)
    if shift > max(0.5 * min(pixel_spacing), 2.0 * allowance):
        angle = float(np.degrees(np.arctan2(np.linalg.norm(drift), spacing)))
        raise ValueError(f"{folder}: slices are not stacked along their normal: the in-plane position moves "
                         f"{shift:.2f} mm over the series (gantry tilt of about {angle:.1f}°); the kit reads "
                         "untilted grids only — resample the series first (e.g. dcm2niix corrects tilt)")
    return float(spacing)


def read_dicom_series(folder: str | Path, series_uid: str | None = None,
                      spacing_tolerance: float = 0.1) -> Volume:
    """Read a folder of single-frame DICOM slices (one CT/MR series) into a :class:`Volume` in modality units.

    Args:
        folder: the folder holding the slices; files that are not DICOM (no ``.dcm`` name nor ``DICM``
            marker) are ignored, a DICOM slice that cannot be read is an error naming it (never dropped).
        series_uid: which ``SeriesInstanceUID`` to read when the folder holds several.
        spacing_tolerance: largest allowed deviation of a slice gap (and of a slice position) from the
            least-squares fit of position vs slice index, as a fraction of the fitted spacing; rounding of
            ImagePositionPatient (judged from its decimals) is allowed on top, up to half the spacing.

    Returns:
        ``Volume`` with ``array`` float32 ``(X, Y, Z)`` (HU for CT: per-slice RescaleSlope/Intercept
        applied), ``spacing`` ``(column, row, fitted slice spacing)`` mm, ``origin`` the first slice's
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
        except CorruptVolumeError:
            raise
        except ValueError:
            if _looks_like_dicom(file):
                raise CorruptVolumeError(file, "named or marked as a DICOM slice but not readable as one; "
                                               f"{FIX}, or move it out of the folder") from None
            continue  # README files and the like sit beside slices
        if "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds:
            continue  # DICOMDIR indexes, reports, localisers without geometry
        if "PixelData" not in ds:
            raise CorruptVolumeError(file, f"a slice (it has ImagePositionPatient) without pixel data; the file "
                                     f"is cut short — {FIX}")
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
            raise ValueError(f"{file}: slice size {(int(ds.Rows), int(ds.Columns))} differs from {first_file.name}'s "
                             f"{shape}")
        if not np.allclose([float(v) for v in ds.ImageOrientationPatient], orientation, atol=1e-4):
            raise ValueError(f"{file}: ImageOrientationPatient differs from {first_file.name}'s (a tilted or "
                             "mixed series); pass series_uid= of a single acquisition")
    if first.get("PixelSpacing") is None:
        raise ValueError(f"{first_file}: no PixelSpacing, so the series has no physical geometry")
    row_spacing, col_spacing = (float(v) for v in first.PixelSpacing)
    row_dir, col_dir = _unit(orientation[:3]), _unit(orientation[3:])
    normal = _unit(np.cross(row_dir, col_dir))

    positions = np.asarray([[float(v) for v in ds.ImagePositionPatient] for _, ds in slices])  # (Z, 3)
    order = np.argsort(positions @ normal, kind="stable")
    ordered = [slices[i] for i in order]
    if len(slices) > 1:
        slice_gap = _slice_geometry(folder, ordered, positions[order], normal, (row_spacing, col_spacing),
                                    spacing_tolerance)
    else:
        slice_gap = float(first.get("SliceThickness", 1.0) or 1.0)

    stored = np.stack([_pixels(ds, file) for file, ds in ordered]).astype(np.float32)  # (Z, rows, cols)
    slopes = np.asarray([float(ds.get("RescaleSlope", 1.0) or 1.0) for _, ds in ordered], dtype=np.float32)
    intercepts = np.asarray([float(ds.get("RescaleIntercept", 0.0) or 0.0) for _, ds in ordered],
                            dtype=np.float32)
    values = stored * slopes[:, None, None] + intercepts[:, None, None]
    return Volume(array=np.ascontiguousarray(values.transpose(2, 1, 0)),  # (Z, rows, cols) → (X, Y, Z)
                  spacing=(col_spacing, row_spacing, slice_gap),
                  origin=tuple(float(v) for v in positions[order[0]]),
                  direction=np.stack([row_dir, col_dir, normal], axis=1), path=folder)
