"""Readers never return silently corrupted data (issue 14, items 1-4 and 6): truncated NIfTI / .raw files,
damaged DICOM series, NaN/±inf voxels and 4D files give named errors (or an explicit, recorded policy) through
every entry point, and ``check --deep`` reports them. Small synthetic files written in tmp_path; no network."""

from __future__ import annotations

import gzip
import pickle
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from pcrl_lib.data import brats, lits
from pcrl_lib.data.check import check
from pcrl_lib.data.cli import main as data_cli
from pcrl_lib.data.dicom import read_dicom_image, read_dicom_series
from pcrl_lib.data.preprocess import (SegmentationCase, prepare_pretraining_cubes, prepare_segmentation_cases,
                                      zscore_in_mask)
from pcrl_lib.data.volume import read_volume

CT_SMALL = get_testdata_file("CT_small.dcm")
SHAPE = (24, 20, 12)
TRUNCATED = r"truncated NIfTI: the header promises \d+ bytes \(header and \(24, 20, 12\) int16 voxels\)"


def _ct(seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1000, 400, SHAPE).astype(np.int16)


def _nifti(path: Path, array: np.ndarray, zooms=(1.0, 1.0, 2.0)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.diag([*zooms, 1.0])), str(path))
    return path


def _cut(path: Path, keep: float = 0.6) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _is_corrupt_error(info) -> bool:
    return type(info.value).__name__ == "CorruptVolumeError"


# ------------------------------------------------------------------------------------- 1. truncated NIfTI
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_truncated_nifti_is_a_named_error_in_read_volume(tmp_path, suffix):
    path = _cut(_nifti(tmp_path / f"volume-0{suffix}", _ct()))
    with pytest.raises(ValueError, match=rf"volume-0\.nii.*{TRUNCATED}.*download or copy the file again") as info:
        read_volume(path)
    assert _is_corrupt_error(info)
    cut_off = "the compressed stream is cut off after" if suffix == ".nii.gz" else "the file holds"
    assert cut_off in str(info.value)


def test_gzip_stream_shorter_than_the_header_promises_is_truncated(tmp_path):
    whole = _nifti(tmp_path / "whole.nii", _ct()).read_bytes()
    path = tmp_path / "short.nii.gz"
    path.write_bytes(gzip.compress(whole[: len(whole) // 2]))  # a complete gzip stream holding half the voxels
    with pytest.raises(ValueError, match=rf"short\.nii\.gz: {TRUNCATED}, the file holds \d+"):
        read_volume(path)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_truncated_lits_case_is_a_named_error(tmp_path, suffix):
    _nifti(tmp_path / f"segmentation-0{suffix}", np.zeros(SHAPE, np.uint8))
    volume = _cut(_nifti(tmp_path / f"volume-0{suffix}", _ct()))
    with pytest.raises(ValueError, match=rf"volume-0\.nii(\.gz)?: {TRUNCATED}"):
        lits.read_case(volume)


def test_truncated_scan_in_prepare_segmentation_cases_raises_or_is_skipped_by_name(tmp_path):
    good = SegmentationCase("good", (str(_nifti(tmp_path / "good.nii.gz", _ct())),))
    bad = SegmentationCase("bad", (str(_cut(_nifti(tmp_path / "bad.nii.gz", _ct(1)))),))
    with pytest.raises(ValueError, match=rf"bad\.nii\.gz: {TRUNCATED}"):
        prepare_segmentation_cases([good, bad], tmp_path / "out", progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manifest = prepare_segmentation_cases([good, bad], tmp_path / "skip", progress=False, on_error="skip")
    assert sorted(manifest["items"]) == ["good"]
    assert "bad.nii.gz" in manifest["failed"]["bad"] and "truncated NIfTI" in manifest["failed"]["bad"]
    assert any("bad" in str(w.message) for w in caught)


def test_truncated_scan_in_prepare_pretraining_cubes_raises_or_is_recorded(tmp_path):
    scan = _cut(_nifti(tmp_path / "scan.nii", _ct()))
    with pytest.raises(ValueError, match=rf"scan\.nii: {TRUNCATED}"):
        prepare_pretraining_cubes([scan], tmp_path / "out", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        manifest = prepare_pretraining_cubes([scan], tmp_path / "skip", progress=False, on_error="skip")
    assert not manifest["items"] and "truncated NIfTI" in manifest["failed"]["scan"]


def _lits_root(root: Path, ct=None, suffix=".nii.gz") -> Path:
    for n in (0, 1):
        _nifti(root / "Training Batch 1" / f"volume-{n}{suffix}", _ct(n) if ct is None else ct)
        _nifti(root / "Training Batch 1" / f"segmentation-{n}{suffix}", np.zeros(SHAPE, np.uint8))
    return root


def test_check_deep_catches_a_truncated_lits_nii_gz_and_the_cli_names_it(tmp_path, capsys):
    root = _lits_root(tmp_path / "lits")
    assert check(root, "lits", deep=True).ok
    _cut(root / "Training Batch 1" / "volume-1.nii.gz")
    report = check(root, "lits", deep=True)
    hits = [p for p in report.errors if p.path.name == "volume-1.nii.gz" and "truncated NIfTI" in p.message]
    assert hits, str(report)
    assert data_cli(["check", "--dataset", "lits", "--root", str(root), "--deep"]) == 1
    assert "volume-1.nii.gz: truncated NIfTI" in capsys.readouterr().out


def test_check_catches_a_truncated_nii_without_deep(tmp_path):
    root = _lits_root(tmp_path / "lits", suffix=".nii")
    _cut(root / "Training Batch 1" / "volume-0.nii")
    report = check(root, "lits")
    assert any(p.path.name == "volume-0.nii" and "truncated NIfTI" in p.message for p in report.errors), str(report)


def test_truncated_brats_modality_is_a_named_error(tmp_path):
    case = _brats_case(tmp_path)
    _cut(case / f"{case.name}_t2.nii.gz")
    with pytest.raises(ValueError, match=r"_t2\.nii\.gz: truncated NIfTI"):
        brats.read_case(case)


# ------------------------------------------------------------------------------------------ MetaImage .raw
def _mhd(path: Path, array=None) -> Path:
    array = np.zeros((6, 5, 4), np.float32) if array is None else array
    sitk.WriteImage(sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0))), str(path))
    return path


def test_truncated_raw_says_truncated_and_a_missing_raw_says_missing(tmp_path):
    path = _mhd(tmp_path / "scan.mhd")
    _cut(tmp_path / "scan.raw", 0.5)
    with pytest.raises(ValueError, match=r"scan\.raw: truncated \.raw: scan\.mhd promises 480 bytes "
                                         r"\(\(6, 5, 4\) MET_FLOAT\), the file holds 240") as info:
        read_volume(path)
    assert "No such file" not in str(info.value)
    (tmp_path / "scan.raw").unlink()
    with pytest.raises(FileNotFoundError, match=r"scan\.raw: missing data file named by scan\.mhd"):
        read_volume(path)


# ----------------------------------------------------------------------------------------------- 2/3 DICOM
def _write_slices(folder: Path, positions, orientation=(1, 0, 0, 0, 1, 0), decimals: int | None = None) -> list:
    """One CT_small slice per position (x, y, z mm); slice k's stored values are the original + 10*k."""
    folder.mkdir(parents=True, exist_ok=True)
    series, files = generate_uid(), []
    for k, position in enumerate(positions):
        ds = pydicom.dcmread(CT_SMALL)
        ds.PixelData = (ds.pixel_array.astype(np.int16) + 10 * k).tobytes()
        ds.ImageOrientationPatient = [float(v) for v in orientation]
        values = np.round(position, decimals) if decimals is not None else np.asarray(position, float)
        ds.ImagePositionPatient = [f"{v:.{decimals}f}" if decimals is not None else float(v) for v in values]
        ds.SeriesInstanceUID, ds.SOPInstanceUID = series, generate_uid()
        files.append(folder / f"slice_{k:03d}.dcm")
        ds.save_as(files[-1], enforce_file_format=True)
    return files


def _axial(n: int, gap: float) -> list:
    return [(-100.0, -120.0, k * gap) for k in range(n)]


def test_dicom_folder_with_a_corrupt_slice_names_it_in_read_volume(tmp_path):
    files = _write_slices(tmp_path / "ct", _axial(6, 2.5))
    assert read_volume(tmp_path / "ct").shape == (128, 128, 6)
    files[3].write_bytes(b"\0" * 2000)  # a damaged copy: no longer parseable as DICOM
    with pytest.raises(ValueError, match=r"slice_003\.dcm: named or marked as a DICOM slice but not readable"):
        read_volume(tmp_path / "ct")


def test_dicom_slice_with_cut_pixel_data_says_truncated_not_decoder(tmp_path):
    files = _write_slices(tmp_path / "ct", _axial(4, 2.5))
    _cut(files[2], 0.8)
    with pytest.raises(ValueError, match=r"slice_002\.dcm: pixel data truncated: \d+ of 32768 bytes") as info:
        read_volume(tmp_path / "ct")
    assert "decoder" not in str(info.value)
    with pytest.raises(ValueError, match=r"pixel data truncated") as info:
        read_dicom_image(files[2])
    assert "decoder" not in str(info.value)


def test_missing_slice_is_still_refused(tmp_path):
    _write_slices(tmp_path / "gap", [p for k, p in enumerate(_axial(8, 2.5)) if k != 4])
    with pytest.raises(ValueError, match=r"slice gaps vary .* between slice_003\.dcm and slice_004\.dcm; "
                                         r"a missing slice\?"):
        read_volume(tmp_path / "gap")


def _rotation(degrees_x: float, degrees_z: float) -> np.ndarray:
    a, b = np.radians(degrees_x), np.radians(degrees_z)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    return rz @ rx


def test_oblique_series_with_rounded_positions_is_read_with_its_spacing(tmp_path):
    rotation = _rotation(23.0, 11.0)
    row, col, normal = rotation[:, 0], rotation[:, 1], rotation[:, 2]
    origin, gap = np.array([-101.234, -87.654, 33.21]), 0.7
    true = [origin + k * gap * normal for k in range(30)]
    _write_slices(tmp_path / "obl", true, orientation=(*row, *col), decimals=2)
    volume = read_dicom_series(tmp_path / "obl")
    assert volume.shape == (128, 128, 30) and volume.spacing[2] == pytest.approx(gap, abs=2e-3)
    last = volume.voxel_to_world([0, 0, 29])[0]
    np.testing.assert_allclose(last, true[-1], atol=0.03)  # per-slice position right at the far end
    np.testing.assert_allclose(volume.direction[:, 2], normal, atol=1e-4)
    assert read_volume(tmp_path / "obl").spacing[2] == pytest.approx(gap, abs=2e-3)


def test_positions_rounded_to_a_tenth_give_the_fitted_spacing_not_the_median_gap(tmp_path):
    # 0.625 mm slices written with one decimal: gaps alternate 0.6 / 0.7 mm; their median is off by 0.025 mm,
    # which adds up to 0.5 mm by slice 20.
    _write_slices(tmp_path / "thin", _axial(21, 0.625), decimals=1)
    volume = read_dicom_series(tmp_path / "thin")
    assert volume.spacing[2] == pytest.approx(0.625, abs=5e-3)
    assert volume.voxel_to_world([0, 0, 20])[0][2] == pytest.approx(12.5, abs=0.1)


def test_gantry_tilt_is_refused(tmp_path):
    tilt = np.tan(np.radians(15.0))
    _write_slices(tmp_path / "tilt", [(-100.0, -120.0 + k * 2.5 * tilt, k * 2.5) for k in range(10)])
    with pytest.raises(ValueError, match=r"tilt: slices are not stacked along their normal.*gantry tilt of "
                                         r"about 15\.0°"):
        read_volume(tmp_path / "tilt")


def test_window_width_zero_falls_back_to_the_data_range(tmp_path):
    ds = pydicom.dcmread(CT_SMALL)
    ds.WindowCenter, ds.WindowWidth = 40, 0
    path = tmp_path / "w0.dcm"
    ds.save_as(path, enforce_file_format=True)
    image, meta = read_dicom_image(path)
    assert meta.window_source == "data range" and image.min() == 0.0 and image.max() == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------ 4. NaN / ±inf
def _with_nonfinite(array: np.ndarray) -> np.ndarray:
    array = array.astype(np.float32)
    array[0, 0, 0], array[1, 2, 3], array[2, 2, 2] = np.nan, np.inf, -np.inf
    return array


NONFINITE = r"3 non-finite voxel\(s\) of 5760 \(1 NaN, 2 ±inf\)"


@pytest.mark.parametrize("name", ["ct.nii.gz", "ct.nii", "ct.mhd"])
def test_nonfinite_voxels_are_refused_by_read_volume_or_kept_on_request(tmp_path, name):
    array = _with_nonfinite(_ct())
    path = _mhd(tmp_path / name, array) if name.endswith(".mhd") else _nifti(tmp_path / name, array)
    with pytest.raises(ValueError, match=rf"ct\.\w+(\.gz)?: {NONFINITE}.*nonfinite='keep'"):
        read_volume(path)
    kept = read_volume(path, nonfinite="keep")
    assert kept.nonfinite == 3 and np.isnan(kept.array[0, 0, 0]) and np.isposinf(kept.array[1, 2, 3])
    np.testing.assert_array_equal(kept.array[3:], array[3:])
    with pytest.raises(ValueError, match="nonfinite must be one of"):
        read_volume(path, nonfinite="zero")


def _brats_case(root: Path, flair=None, t1_shape=None) -> Path:
    case = root / "HGG" / "Brats18_X_1"
    rng = np.random.default_rng(0)
    for name in (*brats.MODALITIES, "seg"):
        data = np.zeros(SHAPE, np.uint8) if name == "seg" else rng.normal(300, 30, SHAPE).astype(np.float32)
        if name == "flair" and flair is not None:
            data = flair
        if name == "t1" and t1_shape is not None:
            data = data.reshape(t1_shape)
        _nifti(case / f"{case.name}_{name}.nii.gz", data, zooms=(1.0, 1.0, 1.0))
    return case


def test_nonfinite_voxels_in_brats_and_zscore_are_named_errors(tmp_path):
    flair = _with_nonfinite(np.random.default_rng(1).normal(300, 30, SHAPE))
    case = _brats_case(tmp_path, flair=flair)
    with pytest.raises(ValueError, match=rf"_flair\.nii\.gz: {NONFINITE}"):
        brats.read_case(case)
    image = np.stack([np.ones(SHAPE, np.float32), flair])
    with pytest.raises(ValueError, match=r"zscore_in_mask: channel 1 holds 3 non-finite voxel\(s\)"):
        zscore_in_mask(image)


def test_check_deep_reports_nonfinite_voxels(tmp_path):
    root = _lits_root(tmp_path / "lits", ct=_with_nonfinite(_ct()))
    report = check(root, "lits", deep=True)
    hits = [p for p in report.errors if p.path.name.startswith("volume-") and "non-finite voxel(s)" in p.message]
    assert len(hits) == 2, str(report)
    brats_root = tmp_path / "brats"
    _brats_case(brats_root, flair=_with_nonfinite(np.ones(SHAPE)))
    report = check(brats_root, "brats", deep=True)
    assert any(p.path.name.endswith("_flair.nii.gz") and "3 non-finite voxel(s)" in p.message for p in report.errors)
    (tmp_path / "luna" / "subset0").mkdir(parents=True)
    _mhd(tmp_path / "luna" / "subset0" / "1.2.3.mhd", _with_nonfinite(_ct()))
    report = check(tmp_path / "luna", "luna16", deep=True)
    assert any(p.path.name == "1.2.3.mhd" and "3 non-finite voxel(s)" in p.message for p in report.errors), str(report)


# ----------------------------------------------------------------------------------------- 6. one 4D policy
def test_singleton_fourth_axis_is_3d_everywhere_and_a_real_4d_file_is_refused_everywhere(tmp_path):
    ct = _ct()
    single = _nifti(tmp_path / "single.nii.gz", ct[..., None])
    np.testing.assert_array_equal(read_volume(single, dtype=np.int16).array, ct)
    case = _brats_case(tmp_path / "b1", t1_shape=(*SHAPE, 1))
    assert brats.read_case(case)[0].shape == (4, *SHAPE)
    assert check(tmp_path / "b1", "brats", deep=True).ok
    mhd = tmp_path / "single.mhd"
    sitk.WriteImage(sitk.JoinSeries(sitk.GetImageFromArray(ct.transpose(2, 1, 0))), str(mhd))  # (X, Y, Z, 1)
    np.testing.assert_array_equal(read_volume(mhd, dtype=np.int16).array, ct)

    four = _nifti(tmp_path / "four.nii.gz", np.stack([ct, ct], axis=-1))
    with pytest.raises(ValueError, match=r"four\.nii\.gz: expected a 3D volume \(X, Y, Z\), got 4 dimensions "
                                         r"\(24, 20, 12, 2\)"):
        read_volume(four)
    case = _brats_case(tmp_path / "b2", t1_shape=(*SHAPE, 1))
    _nifti(case / f"{case.name}_t1.nii.gz", np.stack([ct, ct], axis=-1))
    with pytest.raises(ValueError, match=r"_t1\.nii\.gz: expected a 3D volume"):
        brats.read_case(case)
    assert any("got 4 dimensions (24, 20, 12, 2)" in p.message for p in check(tmp_path / "b2", "brats").errors)


def test_messages_print_plain_numbers(tmp_path):
    messages = []
    for build in (lambda: read_volume(_cut(_nifti(tmp_path / "a.nii", _ct()))),
                  lambda: read_volume(_cut(_nifti(tmp_path / "b.nii.gz", _ct()))),
                  lambda: read_volume(_nifti(tmp_path / "c.nii.gz", _with_nonfinite(_ct()))),
                  lambda: read_volume(_nifti(tmp_path / "d.nii.gz", np.zeros((*SHAPE, 2), np.int16)))):
        with pytest.raises(ValueError) as info:
            build()
        messages.append(str(info.value))
    _mhd(tmp_path / "e.mhd")
    _cut(tmp_path / "e.raw")
    with pytest.raises(ValueError) as info:
        read_volume(tmp_path / "e.mhd")
    messages.append(str(info.value))
    assert not [m for m in messages if "np." in m or "int64" in m], messages


def test_corrupt_volume_error_survives_a_worker_process(tmp_path):
    with pytest.raises(ValueError) as info:
        read_volume(_cut(_nifti(tmp_path / "a.nii", _ct())))
    again = pickle.loads(pickle.dumps(info.value))
    assert type(again) is type(info.value) and str(again) == str(info.value)
