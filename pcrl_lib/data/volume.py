"""A 3D image with its physical geometry, and one reader for every volume format SimpleITK knows.

:class:`~pcrl_lib.data.geometry.Volume` (array + geometry, legend there) is what every reader returns.

Trust: a reader never returns silently damaged data. A file cut short (a truncated ``.nii``, ``.nii.gz`` or
``.raw``) raises :class:`CorruptVolumeError` naming it; NaN/±inf voxels raise unless ``nonfinite="keep"``
(then counted in ``Volume.nonfinite``); one 4D policy everywhere (:func:`spatial_shape`): a 4th axis of
length 1 is dropped, any other is an error.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from .dicom import read_dicom_series
from .geometry import FIX, CorruptVolumeError, Volume

NONFINITE = ("raise", "keep")
_CHUNK = 1 << 22  # bytes per read when streaming a .nii.gz (constant memory)
_MET_BYTES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
              "MET_LONG": 8, "MET_ULONG": 8, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4,
              "MET_DOUBLE": 8}


# ------------------------------------------------------------------------------------------- shape policy
def dimension_problem(shape) -> str | None:
    """Why ``shape`` is not a 3D volume (None when it is one, or 3D plus trailing axes of length 1)."""
    dims = tuple(int(s) for s in shape)
    if len(dims) >= 3 and all(s == 1 for s in dims[3:]):
        return None
    return (f"expected a 3D volume (X, Y, Z), got {len(dims)} dimensions {dims}; a 4th axis of length 1 is "
            "accepted, a series of several volumes must be split into 3D files first")


def spatial_shape(shape, path: str | Path | None = None) -> tuple[int, int, int]:
    """``(X, Y, Z)`` of a file's voxel shape: 3D as is, ``(X, Y, Z, 1)`` squeezed; ValueError naming ``path``
    for anything else. The one 4D policy of every reader and of the dataset check."""
    problem = dimension_problem(shape)
    if problem:
        raise ValueError(f"{path}: {problem}")
    return tuple(int(s) for s in shape)[:3]


# ------------------------------------------------------------------------------------------ completeness
def is_nifti(path: str | Path) -> bool:
    return Path(path).name.lower().endswith((".nii", ".nii.gz"))


def read_mhd_header(path: Path) -> dict[str, str]:
    """``key = value`` fields of a MetaImage header (``.mhd``), as strings."""
    fields = {}
    for line in Path(path).read_text(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
        if key.strip() == "ElementDataFile":
            break  # with ElementDataFile = LOCAL the voxels follow in the same file
    return fields


def _load_nifti(path: Path):
    """nibabel's image (header read, voxels not yet), without a memory map: the file may be rewritten later."""
    import nibabel as nib

    try:
        return nib.load(str(path), mmap=False)
    except Exception as err:  # nibabel raises many types for damaged files (ImageFileError, EOFError, zlib...)
        raise CorruptVolumeError(path, f"cannot read the NIfTI header ({type(err).__name__}: "
                                       f"{str(err).strip()[:120]}); {FIX}") from None


def _nifti_expected(path: Path) -> tuple[int, str]:
    """Bytes the NIfTI header promises (vox_offset + voxels) and a description of them."""
    image = _load_nifti(path)
    shape = tuple(int(s) for s in image.shape)
    dtype = image.get_data_dtype()
    expected = int(image.header["vox_offset"]) + int(np.prod(shape)) * int(dtype.itemsize)
    return expected, f"header and {shape} {dtype.name} voxels"


def _gzip_length(path: Path, stop: int) -> tuple[int, str | None]:
    """Decompressed bytes of ``path`` (reading at most ``stop``) and why the stream ended early, if it did."""
    total = 0
    try:
        with gzip.open(path, "rb") as stream:
            while total < stop:
                chunk = stream.read(min(_CHUNK, stop - total))
                if not chunk:
                    return total, None
                total += len(chunk)
    except EOFError:
        return total, "cut off"
    except (gzip.BadGzipFile, zlib.error, OSError) as err:
        return total, f"damaged ({err})"
    return total, None


def verify_complete(path: str | Path) -> None:
    """Raise :class:`CorruptVolumeError` when ``path`` holds fewer voxel bytes than its header promises.

    ``.nii``: file size vs ``vox_offset + prod(shape) * itemsize``; ``.nii.gz``: the same against the gzip
    stream, decompressed in chunks (constant memory, no array is built); ``.mhd``: the ``.raw`` named by
    ``ElementDataFile`` vs ``prod(DimSize) * element size`` (a missing ``.raw`` is a ``FileNotFoundError``).
    Other formats pass unchecked (SimpleITK reports them).
    """
    path = Path(path)
    name = path.name.lower()
    if is_nifti(path):
        expected, what = _nifti_expected(path)
        if name.endswith(".gz"):
            actual, ended = _gzip_length(path, expected)
            if actual < expected:
                how = f"the compressed stream is {ended} after {actual}" if ended else f"the file holds {actual}"
                raise CorruptVolumeError(path, f"truncated NIfTI: the header promises {expected} bytes ({what}), "
                                         f"{how}; {FIX}")
        else:
            actual = path.stat().st_size
            if actual < expected:
                raise CorruptVolumeError(path, f"truncated NIfTI: the header promises {expected} bytes ({what}), "
                                         f"the file holds {actual}; {FIX}")
    elif name.endswith(".mhd"):
        _verify_mhd(path)


def _verify_mhd(path: Path) -> None:
    header = read_mhd_header(path)
    data_name = header.get("ElementDataFile", "")
    if not data_name or data_name.upper() in ("LOCAL", "LIST") or "%" in data_name:
        return  # voxels inside the header file or in several files: SimpleITK checks those
    raw = path.parent / data_name
    if not raw.is_file():
        raise FileNotFoundError(f"{raw}: missing data file named by {path.name} (ElementDataFile); copy the "
                                f".raw next to the .mhd")
    element = header.get("ElementType", "")
    try:
        dims = [int(d) for d in header.get("DimSize", "").split()]
        channels = int(header.get("ElementNumberOfChannels", "1"))
    except ValueError:
        return  # an unreadable header: SimpleITK names the field
    if header.get("CompressedData", "False").lower() == "true" or element not in _MET_BYTES or not dims:
        return
    expected = int(np.prod(dims)) * _MET_BYTES[element] * channels
    actual = raw.stat().st_size
    if actual < expected:
        raise CorruptVolumeError(raw, f"truncated .raw: {path.name} promises {expected} bytes "
                                 f"({tuple(dims)} {element}), the file holds {actual}; {FIX}")


# ---------------------------------------------------------------------------------------------- non-finite
def count_nonfinite(array: np.ndarray) -> tuple[int, int]:
    """``(NaN count, ±inf count)`` of ``array`` (0, 0 for integer arrays)."""
    if array.dtype.kind not in "fc" or np.isfinite(array).all():  # the common case: one fast pass
        return 0, 0
    return int(np.isnan(array).sum()), int(np.isinf(array).sum())


def refuse_nonfinite(array: np.ndarray, path) -> None:
    """ValueError naming ``path`` when ``array`` holds NaN or ±inf:
    ``"3 non-finite voxel(s) of 4320 (1 NaN, 2 ±inf)"``."""
    nan, inf = count_nonfinite(array)
    if nan or inf:
        raise ValueError(f"{path}: {nan + inf} non-finite voxel(s) of {int(array.size)} ({nan} NaN, {inf} ±inf); "
                         "the file is damaged or marks missing values this way — fix it, or read it with "
                         "nonfinite='keep' and handle them explicitly")


# ------------------------------------------------------------------------------------------------ reading
def _nifti_in_memory(path: Path):
    """nibabel's image of a ``.nii.gz`` decompressed in one call (faster than nibabel's chunked stream reads);
    CorruptVolumeError when the gzip stream is cut off or damaged."""
    import nibabel as nib

    try:
        data = gzip.decompress(path.read_bytes())
    except (EOFError, gzip.BadGzipFile, zlib.error):
        verify_complete(path)  # raises the precise "truncated NIfTI" message
        raise CorruptVolumeError(path, f"damaged gzip stream; {FIX}") from None
    size = int.from_bytes(data[:4], "little")
    kind = {348: nib.Nifti1Image, 0x5C010000: nib.Nifti1Image, 540: nib.Nifti2Image, 0x1C020000: nib.Nifti2Image}
    if size not in kind:
        raise CorruptVolumeError(path, f"not a NIfTI file (sizeof_hdr {size}, expected 348 or 540); {FIX}")
    try:
        return kind[size].from_bytes(data)
    except Exception as err:  # nibabel raises many types for damaged headers
        raise CorruptVolumeError(path, f"cannot read the NIfTI header ({type(err).__name__}: "
                                       f"{str(err).strip()[:120]}); {FIX}") from None


def read_nifti_array(path: str | Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Voxels ``(X, Y, Z)`` (scaled by scl_slope/inter, file dtype or float64) and zooms (mm) of a NIfTI file
    through nibabel, which — unlike ITK's reader — keeps NaN and fails on a short file; a failure is explained
    by :func:`verify_complete` (truncated NIfTI, bytes promised and found)."""
    path = Path(path)
    image = _nifti_in_memory(path) if path.name.lower().endswith(".gz") else _load_nifti(path)
    dims = spatial_shape(image.shape, path)
    try:
        data = np.asarray(image.dataobj)
    except Exception as err:
        verify_complete(path)  # raises the precise "truncated NIfTI" message when the file is short
        raise CorruptVolumeError(path, f"cannot read the voxel data ({type(err).__name__}: "
                                       f"{str(err).strip()[:120]}); {FIX}") from None
    zooms = tuple(float(z) for z in image.header.get_zooms()[:3])
    return data.reshape(dims), zooms


def _geometry(reader_or_image) -> tuple[tuple, tuple, np.ndarray]:
    """(spacing, origin, direction) of the first three axes of a SimpleITK image or header reader."""
    n = reader_or_image.GetDimension()
    direction = np.asarray(reader_or_image.GetDirection(), dtype=np.float64).reshape(n, n)[:3, :3]
    return (tuple(float(s) for s in reader_or_image.GetSpacing()[:3]),
            tuple(float(o) for o in reader_or_image.GetOrigin()[:3]), direction)


def _sitk_error(path: Path, err: RuntimeError) -> ValueError:
    lines = str(err).strip().splitlines()
    return ValueError(f"{path}: cannot read volume ({lines[-1] if lines else err})")


def read_volume(path: str | Path, dtype=np.float32, nonfinite: str = "raise", series_uid: str | None = None
                ) -> Volume:
    """Read a MetaImage (.mhd/.raw), NRRD, NIfTI (.nii/.nii.gz) file or a DICOM series folder.

    NIfTI voxels come through nibabel (geometry from SimpleITK's header reader, as before), DICOM folders through
    :func:`pcrl_lib.data.dicom.read_dicom_series` (its slice checks; ``series_uid`` picks one of several series),
    the rest through SimpleITK after :func:`verify_complete`. ``nonfinite``: ``"raise"`` (default) refuses NaN /
    ±inf voxels; ``"keep"`` returns them, counted in ``Volume.nonfinite``. A ``(X, Y, Z, 1)`` file reads as 3D.

    Raises ``FileNotFoundError`` / ``ValueError`` (:class:`CorruptVolumeError` for a truncated file) naming it.
    """
    import SimpleITK as sitk

    if nonfinite not in NONFINITE:
        raise ValueError(f"nonfinite must be one of {NONFINITE}, got {nonfinite!r}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_dir():
        volume = read_dicom_series(path, series_uid=series_uid)
        volume.array = volume.array.astype(dtype, copy=False)
        return volume
    if is_nifti(path):
        reader = sitk.ImageFileReader()  # the header only: the geometry exactly as SimpleITK reads it
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()
        except RuntimeError as err:  # SimpleITK reports every read failure as RuntimeError
            verify_complete(path)  # a file cut inside its header: say so
            raise _sitk_error(path, err) from None
        spacing, origin, direction = _geometry(reader)
        array, _ = read_nifti_array(path)
    else:
        verify_complete(path)
        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError as err:
            raise _sitk_error(path, err) from None
        # GetArrayFromImage gives (..., Z, Y, X); the kit's convention is (X, Y, Z).
        size = image.GetSize()
        spatial_shape(size, path)
        if image.GetNumberOfComponentsPerPixel() != 1:
            raise ValueError(f"{path}: {image.GetNumberOfComponentsPerPixel()} components per voxel; expected a "
                             "scalar volume")
        array = sitk.GetArrayFromImage(image).reshape(size[:3][::-1]).transpose(2, 1, 0)
        spacing, origin, direction = _geometry(image)
    if nonfinite == "raise":
        refuse_nonfinite(array, path)
    kept = sum(count_nonfinite(array)) if nonfinite == "keep" else 0
    # C order before the cast: the copy then moves the file's (often 2-byte) voxels, not 4-byte floats.
    return Volume(array=np.ascontiguousarray(array).astype(dtype, copy=False), spacing=spacing, origin=origin,
                  direction=direction, path=path, nonfinite=kept)


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
