"""DICOM readers on pydicom's bundled CT_small.dcm (128×128 CT slice, MONOCHROME2, intercept -1024) and on
series built from it in tmp_path. No network."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file  # singular: the plural form may try the internet
from pydicom.uid import generate_uid

from pcrl_lib.data.dicom import read_dicom_image, read_dicom_series
from pcrl_lib.data.volume import Volume

CT_SMALL = get_testdata_file("CT_small.dcm")


@pytest.fixture
def ct_small():
    return pydicom.dcmread(CT_SMALL)


def _hu(ds) -> np.ndarray:
    return ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def _save(ds, path):
    ds.save_as(path, enforce_file_format=True)
    return path


def test_modality_lut_and_explicit_window_match_hand_computation(ct_small):
    image, meta = read_dicom_image(CT_SMALL, window=(40.0, 400.0))
    expected = np.clip((_hu(ct_small) - (40.0 - 200.0)) / 400.0, 0.0, 1.0)
    assert image.dtype == np.float32 and image.shape == (128, 128) == meta.shape
    np.testing.assert_allclose(image, expected, atol=1e-6)
    assert meta.rescale == (1.0, -1024.0) and meta.window_source == "explicit" and not meta.inverted
    assert meta.pixel_spacing == pytest.approx((0.661468, 0.661468))
    # a real soft-tissue window saturates some pixels at both ends on this slice
    assert (image == 0).any() and (image == 1).any()


def test_without_window_uses_the_data_range(ct_small):
    image, meta = read_dicom_image(CT_SMALL)
    hu = _hu(ct_small)
    assert meta.window_source == "data range"
    assert meta.window == pytest.approx(((hu.min() + hu.max()) / 2, hu.max() - hu.min()))
    assert image.min() == 0.0 and image.max() == pytest.approx(1.0)
    np.testing.assert_allclose(image, (hu - hu.min()) / (hu.max() - hu.min()), atol=1e-6)


def test_rescale_slope_and_intercept_are_applied(ct_small, tmp_path):
    ct_small.RescaleSlope, ct_small.RescaleIntercept = 2, -3000
    path = _save(ct_small, tmp_path / "rescaled.dcm")
    image, meta = read_dicom_image(path, window=(0.0, 2000.0))
    values = ct_small.pixel_array * 2.0 - 3000.0
    np.testing.assert_allclose(image, np.clip((values + 1000.0) / 2000.0, 0, 1), atol=1e-6)
    assert meta.rescale == (2.0, -3000.0)


def test_file_window_linear_formula_and_first_preset(ct_small, tmp_path):
    ct_small.WindowCenter, ct_small.WindowWidth = [40, 600], [400, 2000]  # two presets: the first is used
    path = _save(ct_small, tmp_path / "windowed.dcm")
    image, meta = read_dicom_image(path)
    assert meta.window_source == "dicom" and meta.window == (40.0, 400.0) and meta.voi_function == "LINEAR"
    expected = np.clip((_hu(ct_small) - 39.5) / 399.0 + 0.5, 0, 1)  # PS3.3 C.11.2.1.2: (x-(c-0.5))/(w-1)+0.5
    np.testing.assert_allclose(image, expected, atol=1e-6)


def test_sigmoid_voi_function(ct_small, tmp_path):
    ct_small.WindowCenter, ct_small.WindowWidth, ct_small.VOILUTFunction = 40, 400, "SIGMOID"
    image, meta = read_dicom_image(_save(ct_small, tmp_path / "sigmoid.dcm"))
    np.testing.assert_allclose(image, 1 / (1 + np.exp(-4 * (_hu(ct_small) - 40) / 400)), atol=1e-6)
    assert meta.voi_function == "SIGMOID" and 0 < image.min() and image.max() < 1


def test_monochrome1_is_inverted(ct_small, tmp_path):
    plain, _ = read_dicom_image(CT_SMALL, window=(40.0, 400.0))
    ct_small.PhotometricInterpretation = "MONOCHROME1"
    inverted, meta = read_dicom_image(_save(ct_small, tmp_path / "mono1.dcm"), window=(40.0, 400.0))
    assert meta.inverted and meta.photometric == "MONOCHROME1"
    np.testing.assert_allclose(inverted, 1.0 - plain, atol=1e-6)


def test_bad_inputs_give_clear_errors(ct_small, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.dcm"):
        read_dicom_image(tmp_path / "missing.dcm")
    text = tmp_path / "notes.dcm"
    text.write_text("not dicom")
    with pytest.raises(ValueError, match="notes.dcm: not a DICOM file"):
        read_dicom_image(text)
    with pytest.raises(ValueError, match="width > 0"):
        read_dicom_image(CT_SMALL, window=(40.0, 0.0))
    with pytest.raises(ValueError, match="window must be"):
        read_dicom_image(CT_SMALL, window="lung")
    ct_small.PhotometricInterpretation = "RGB"
    with pytest.raises(ValueError, match="greyscale"):
        read_dicom_image(_save(ct_small, tmp_path / "rgb.dcm"))


def _write_series(folder, z_positions, orientation=(1, 0, 0, 0, 1, 0), intercepts=None, series_uid=None,
                  order=None):
    """Slices of CT_small at the given positions along the normal; slice k's stored values are the
    original + 10*k so the order can be checked. Returns the per-slice HU arrays in position order."""
    folder.mkdir(parents=True, exist_ok=True)
    template = pydicom.dcmread(CT_SMALL)
    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    normal = np.cross(row, col)
    series_uid = series_uid or generate_uid()
    expected = []
    for k, z in enumerate(z_positions):
        ds = pydicom.dcmread(CT_SMALL)
        stored = template.pixel_array.astype(np.int16) + 10 * k
        ds.PixelData = stored.tobytes()
        ds.ImageOrientationPatient = [float(v) for v in orientation]
        ds.ImagePositionPatient = [float(v) for v in np.asarray([-100.0, -120.0, 0.0]) + z * normal]
        ds.RescaleIntercept = -1024 if intercepts is None else intercepts[k]
        ds.SeriesInstanceUID, ds.SOPInstanceUID = series_uid, generate_uid()
        ds.InstanceNumber = len(z_positions) - k  # deliberately not the spatial order
        expected.append(stored * 1.0 + float(ds.RescaleIntercept))
        name = f"slice_{(order[k] if order is not None else k):03d}.dcm"
        _save(ds, folder / name)
    return expected


def test_series_is_ordered_by_position_with_per_slice_rescale(tmp_path):
    z = [7.5, 0.0, 10.0, 2.5, 5.0]  # written in shuffled order
    expected = _write_series(tmp_path / "s", z, intercepts=[-1024, -1000, -1024, -1010, -1024], order=[4, 0, 3, 1, 2])
    (tmp_path / "s" / "README.txt").write_text("not a slice")
    volume = read_dicom_series(tmp_path / "s")
    assert volume.shape == (128, 128, 5) and volume.array.dtype == np.float32
    assert volume.spacing == pytest.approx((0.661468, 0.661468, 2.5))
    assert volume.origin == pytest.approx((-100.0, -120.0, 0.0))
    np.testing.assert_allclose(volume.direction, np.eye(3))
    for rank, k in enumerate(np.argsort(z)):
        np.testing.assert_array_equal(volume.array[:, :, rank], expected[k].T)  # (rows, cols) → (X, Y)


def _sitk_series(folder):
    """The same folder through SimpleITK/GDCM's series reader, as a reference (read_volume uses the kit's)."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    return Volume(array=sitk.GetArrayFromImage(image).transpose(2, 1, 0).astype(np.float32),
                  spacing=image.GetSpacing(), origin=image.GetOrigin(),
                  direction=np.asarray(image.GetDirection()).reshape(3, 3))


def test_series_geometry_matches_simpleitk_and_dicom_positions_for_oblique_slices(tmp_path):
    orientation = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)  # sagittal slices: rows along +y, columns along -z
    _write_series(tmp_path / "sag", [3.0, 0.0, 6.0], orientation=orientation)
    volume = read_dicom_series(tmp_path / "sag")
    reference = _sitk_series(tmp_path / "sag")
    np.testing.assert_allclose(volume.direction, reference.direction, atol=1e-6)
    np.testing.assert_allclose(volume.origin, reference.origin, atol=1e-4)
    np.testing.assert_allclose(volume.spacing, reference.spacing, atol=1e-6)
    np.testing.assert_array_equal(volume.array, reference.array)
    # DICOM: position of pixel (row r, column c) of slice k = IPP_k + c*Δc*row_dir + r*Δr*col_dir
    first = pydicom.dcmread(sorted((tmp_path / "sag").iterdir())[1])  # the slice at 0.0 mm
    r, c = 17, 90
    world = (np.asarray(first.ImagePositionPatient, float) + c * 0.661468 * np.asarray(orientation[:3])
             + r * 0.661468 * np.asarray(orientation[3:]))
    np.testing.assert_allclose(volume.voxel_to_world([c, r, 0])[0], world, atol=1e-4)


def test_series_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_dicom_series(tmp_path / "absent")
    with pytest.raises(ValueError, match="is a file"):
        read_dicom_series(CT_SMALL)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no DICOM image slices"):
        read_dicom_series(tmp_path / "empty")
    _write_series(tmp_path / "gap", [0.0, 2.5, 5.0, 12.5])
    with pytest.raises(ValueError, match="slice gaps vary"):
        read_dicom_series(tmp_path / "gap")
    assert read_dicom_series(tmp_path / "gap", spacing_tolerance=10.0).shape == (128, 128, 4)
    _write_series(tmp_path / "dup", [0.0, 0.0, 2.5])
    with pytest.raises(ValueError, match="share a position"):
        read_dicom_series(tmp_path / "dup")


def test_folder_with_two_series_needs_a_choice(tmp_path):
    _write_series(tmp_path / "two", [0.0, 2.5], series_uid="1.2.3.1")
    for path in (tmp_path / "two").iterdir():
        path.rename(path.with_name("a_" + path.name))
    _write_series(tmp_path / "two", [0.0, 5.0, 10.0], series_uid="1.2.3.2")
    with pytest.raises(ValueError, match=r"holds 2 series.*1\.2\.3\.1.*1\.2\.3\.2"):
        read_dicom_series(tmp_path / "two")
    assert read_dicom_series(tmp_path / "two", series_uid="1.2.3.2").spacing[2] == pytest.approx(5.0)
    with pytest.raises(ValueError, match="no series with SeriesInstanceUID"):
        read_dicom_series(tmp_path / "two", series_uid="9.9")
