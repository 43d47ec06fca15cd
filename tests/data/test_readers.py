"""Readers read back exactly what the synthetic look-alikes wrote, and reject bad input with clear messages."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from pcrl_lib.data import brats, chexpert, lits, luna16, nih, synthetic
from pcrl_lib.data.check import check
from pcrl_lib.data.images2d import ImageRecord, load_image, resize_image
from pcrl_lib.data.splits import patient_split


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("synthetic")
    sizes = {"nih": (16, 48), "chexpert": (24, 48), "luna16": (2, 48), "lits": (2, 48), "brats": (2, 32)}
    return {name: synthetic.write(name, base / name, n=n, seed=3, size=size) for name, (n, size) in sizes.items()}


# ------------------------------------------------------------------------------------------ 2D images
@pytest.mark.parametrize("mode,scale", [("L", 255), ("I;16", 65535), ("RGB", 255), ("RGBA", 255)])
def test_load_image_modes_and_bit_depths(tmp_path, mode, scale):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, scale + 1, (20, 30)).astype(np.uint16 if scale > 255 else np.uint8)
    if mode in ("RGB", "RGBA"):
        channels = 3 if mode == "RGB" else 4
        image = Image.fromarray(np.repeat(grey[..., None], channels, axis=2))
    else:
        image = Image.fromarray(grey)
    assert image.mode == mode
    image.save(tmp_path / "x.png")
    loaded = load_image(tmp_path / "x.png")
    assert loaded.dtype == np.float32 and loaded.shape == (20, 30)
    np.testing.assert_allclose(loaded, grey / scale, atol=1e-6)


def test_load_image_jpeg_close_to_source(tmp_path):
    ramp = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (32, 1))
    Image.fromarray(ramp).save(tmp_path / "x.jpg", quality=95)
    assert np.abs(load_image(tmp_path / "x.jpg") - ramp / 255).max() < 0.03


def test_resize_and_nih_records(roots):
    table = nih.load_labels(nih.find_label_csv(roots["nih"]))
    record = nih.records(table, roots["nih"] / "images")[0]
    image = resize_image(load_image(record.path), 32)
    assert image.shape == (32, 32) and image.dtype == np.float32
    assert record.labels.shape == (14,) and record.mask.all()
    assert record.patient == table["patient_id"].iloc[0]
    assert resize_image(np.zeros((10, 20), np.float32), (5, 7)).shape == (5, 7)


# ------------------------------------------------------------------------------------------ NIH
def test_nih_labels_and_split_match_generator(roots):
    truth = synthetic.read_truth(roots["nih"])["truth"]
    table = nih.load_labels(nih.find_label_csv(roots["nih"]))
    assert table["image"].tolist() == truth["images"]
    assert table["patient_id"].tolist() == truth["patient_id"]
    np.testing.assert_array_equal(table[list(nih.NIH_LABELS)].to_numpy(), np.asarray(truth["labels"]))
    split = nih.official_split(roots["nih"])
    assert split.test == truth["test"]
    assert sorted(split.train_val + split.test) == sorted(truth["images"])
    patient = dict(zip(table["image"], table["patient_id"]))
    assert not {patient[i] for i in split.test} & {patient[i] for i in split.train_val}


def test_nih_labels_gzip_same_as_plain(roots, tmp_path):
    plain = nih.find_label_csv(roots["nih"])
    packed = tmp_path / (plain.name + ".gz")
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    pd.testing.assert_frame_equal(nih.load_labels(packed), nih.load_labels(plain))


def test_patient_split_is_seeded_and_patient_level():
    patients = np.repeat(np.arange(200), 3).astype(str)
    table = pd.DataFrame({"image": [f"{i}.png" for i in range(600)], "patient_id": patients})
    first = patient_split(table, val_fraction=0.1, seed=1, test_fraction=0.2)
    again = patient_split(table, val_fraction=0.1, seed=1, test_fraction=0.2)
    other = patient_split(table, val_fraction=0.1, seed=2, test_fraction=0.2)
    sets = {k: set(v["patient_id"]) for k, v in first.items()}
    assert {k: len(v) for k, v in sets.items()} == {"train": 140, "val": 20, "test": 40}
    assert not (sets["train"] & sets["val"]) and not (sets["train"] & sets["test"]) and not (sets["val"] & sets["test"])
    assert sum(len(v) for v in first.values()) == 600
    assert all(first[k].equals(again[k]) for k in first)
    assert set(other["val"]["patient_id"]) != sets["val"]


def test_pcrl_split_file_round_trip(roots, tmp_path):
    table = nih.load_labels(nih.find_label_csv(roots["nih"]))
    path = nih.write_split_file(table, tmp_path / "train.txt")
    first = path.read_text().splitlines()[0].split()
    assert first[0] == table["image"].iloc[0] and len(first) == 15
    back = nih.read_split_file(path)
    pd.testing.assert_frame_equal(back, table[["image", *nih.NIH_LABELS]].reset_index(drop=True))


# ------------------------------------------------------------------------------------------ CheXpert
@pytest.mark.parametrize("policy,uncertain", [("ones", 1.0), ("zeros", 0.0), ("ignore", None)])
def test_chexpert_policies_match_generator(roots, policy, uncertain):
    truth = synthetic.read_truth(roots["chexpert"])["truth"]
    folder = chexpert.find_dataset_dir(roots["chexpert"])
    table = pd.concat([chexpert.load_csv(folder / f"{s}.csv", policy=policy) for s in ("train", "valid")],
                      ignore_index=True)
    assert table["path"].tolist() == truth["paths"]
    raw = np.array([[np.nan if x is None else x for x in row] for row in truth["values"]])
    raw = raw[:, [truth["observations"].index(c) for c in chexpert.COMPETITION_LABELS]]
    assert (raw == -1).any(), "the look-alike should contain uncertain labels"
    expected = np.where(np.isnan(raw), 0.0, raw)
    expected[raw == -1] = np.nan if uncertain is None else uncertain
    np.testing.assert_array_equal(table[list(chexpert.COMPETITION_LABELS)].to_numpy(), expected)
    labels, mask = chexpert.labels_and_mask(table)
    assert (mask == ~np.isnan(expected)).all() and not np.isnan(labels).any()
    assert table["patient_id"].str.fullmatch(r"patient\d{5}").all()
    assert all(Path(f).is_file() for f in table["file"])


def test_chexpert_frontal_only_and_records(roots):
    folder = chexpert.find_dataset_dir(roots["chexpert"])
    table = chexpert.load_csv(folder / "train.csv", policy="ignore", frontal_only=True)
    assert (table["view"] == "Frontal").all() and table["path"].str.endswith("_frontal.jpg").all()
    records = chexpert.records(table)
    assert isinstance(records[0], ImageRecord) and records[0].labels.shape == (5,)
    assert load_image(records[0].path).shape == (48, 48)
    assert (records[0].mask == ~np.isnan(records[0].labels)).all()


# ------------------------------------------------------------------------------------------ LUNA16
def test_luna_scans_geometry_and_annotations_round_trip(roots):
    truth = synthetic.read_truth(roots["luna16"])["truth"]["scans"]
    scans = luna16.scan_index(roots["luna16"])
    assert sorted(scans) == sorted(s["seriesuid"] for s in truth)
    assert luna16.list_scans(roots["luna16"], subsets=[1]) == [scans[truth[1]["seriesuid"]]]
    annotations = luna16.read_annotations(roots["luna16"] / "annotations.csv")
    candidates = luna16.read_candidates(luna16.find_candidates(roots["luna16"]))
    for scan in truth:
        volume = luna16.read_scan(scans[scan["seriesuid"]])
        assert volume.shape == tuple(scan["shape"]) and volume.array.dtype == np.float32
        np.testing.assert_allclose(volume.spacing, scan["spacing"], rtol=1e-6)
        np.testing.assert_allclose(volume.origin, scan["origin"], atol=1e-4)
        assert volume.spacing[2] > volume.spacing[0]  # anisotropic, thick slices
        rows = annotations[annotations["seriesuid"] == scan["seriesuid"]]
        voxels = luna16.nearest_voxel(volume, rows)
        np.testing.assert_array_equal(voxels, [n["voxel"] for n in scan["nodules"]])
        np.testing.assert_allclose(luna16.voxel_to_world(volume, voxels), rows[luna16.COORDS].to_numpy(), atol=1e-4)
        np.testing.assert_array_equal(rows["diameter_mm"].to_numpy(), [n["diameter_mm"] for n in scan["nodules"]])
        assert (volume.array[tuple(voxels.T)] > -400).all()  # nodule centres are dense
        mine = candidates[candidates["seriesuid"] == scan["seriesuid"]]
        assert len(mine) == scan["candidates"] and mine["class"].sum() == scan["positive_candidates"]
        positives = luna16.world_to_voxel(volume, mine[mine["class"] == 1])
        gap_mm = np.linalg.norm((positives[:, None] - voxels[None]) * np.asarray(volume.spacing), axis=2).min(1)
        radius = np.asarray([n["diameter_mm"] for n in scan["nodules"]]).max() / 2
        assert (gap_mm <= radius).all()


# ------------------------------------------------------------------------------------------ LiTS
def test_lits_cases_match_generator(roots):
    truth = synthetic.read_truth(roots["lits"])["truth"]["cases"]
    cases = lits.list_cases(roots["lits"])
    assert [c.case_id for c in cases] == [t["case_id"] for t in truth]
    assert {c.volume.parent.name for c in cases} == {"Training Batch 1", "Training Batch 2"}
    for case, expected in zip(cases, truth):
        ct, mask = lits.read_case(case)
        assert ct.shape == mask.shape == tuple(expected["shape"]) and mask.array.dtype == np.uint8
        np.testing.assert_allclose(ct.spacing, expected["spacing"], rtol=1e-5)
        assert int((mask.array >= 1).sum()) == expected["voxels"]["liver"]
        assert int((mask.array == 2).sum()) == expected["voxels"]["tumour"]
        for tumour in expected["tumours"]:
            assert mask.array[tuple(tumour["voxel"])] == 2
        same, _ = lits.read_case(case.volume)  # by path, finding segmentation-N itself
        np.testing.assert_array_equal(same.array, ct.array)


# ------------------------------------------------------------------------------------------ BraTS
def test_brats_cases_match_generator(roots):
    truth = synthetic.read_truth(roots["brats"])["truth"]["cases"]
    cases = brats.list_cases(roots["brats"])
    assert [c.name for c in cases] == sorted(t["case"] for t in truth)
    by_name = {t["case"]: t for t in truth}
    for case in cases:
        image, seg, spacing = brats.read_case(case)
        expected = by_name[case.name]
        assert image.shape == (4, *expected["shape"]) and image.dtype == np.float32
        assert seg.dtype == np.uint8 and spacing == (1.0, 1.0, 1.0)
        assert {str(k): int((seg == k).sum()) for k in (1, 2, 4)} == expected["label_voxels"]
        assert brats.case_grade(case) == expected["grade"]
        flair_t1, _, _ = brats.read_case(case, modalities=("flair", "t1"), with_seg=False)
        np.testing.assert_array_equal(flair_t1, image[[3, 0]])


def test_brats_regions_numpy_torch_and_batched():
    seg = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    seg[0, 0, 0, 0], seg[0, 1, 0, 0], seg[0, 2, 0, 0] = 1, 2, 4
    out = brats.regions(seg[0])
    assert out.shape == (3, 4, 4, 3) and out.dtype == bool
    assert out[:, 0, 0, 0].tolist() == [True, True, False]   # NCR: WT, TC
    assert out[:, 1, 0, 0].tolist() == [True, False, False]  # edema: WT only
    assert out[:, 2, 0, 0].tolist() == [True, True, True]    # enhancing: all
    batched = brats.regions(torch.from_numpy(seg).long())
    assert batched.shape == (2, 3, 4, 4, 3) and batched.dtype == torch.bool
    np.testing.assert_array_equal(batched[0].numpy(), out)


# ------------------------------------------------------------------------------------------ bad input
def _corrupt_png(tmp):
    (tmp / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    return lambda: load_image(tmp / "bad.png")


def _nih_csv(tmp, findings="Cardiomegaly", header=nih.REQUIRED_COLUMNS):
    rows = [("00000001_000.png", "No Finding", "1"), ("00000001_001.png", findings, "1")]
    pd.DataFrame(rows, columns=["Image Index", "Finding Labels", "Patient ID"])[list(header)].to_csv(
        tmp / "Data_Entry_2017.csv", index=False)
    return lambda: nih.load_labels(tmp / "Data_Entry_2017.csv")


def _split_file(tmp, line):
    (tmp / "split.txt").write_text(line + "\n")
    return lambda: nih.read_split_file(tmp / "split.txt")


def _chexpert_csv(tmp, edema="1.0", path="CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg",
                  policy="ones"):
    row = {"Path": path, "Sex": "Male", "Age": 50, "Frontal/Lateral": "Frontal", "AP/PA": "AP",
           **{c: "" for c in chexpert.OBSERVATIONS}}
    row["Edema"] = edema
    pd.DataFrame([row]).to_csv(tmp / "train.csv", index=False)
    return lambda: chexpert.load_csv(tmp / "train.csv", policy=policy)


def _luna_table(tmp, name, text, reader):
    (tmp / name).write_text(text)
    return lambda: reader(tmp / name)


def _lits_pair(tmp, mask_shape=(8, 8, 6), mask_spacing=(1.0, 1.0, 2.0), label=1):
    from pcrl_lib.data.synthetic.ct import save_nifti

    save_nifti(np.zeros((8, 8, 6), np.int16), (1.0, 1.0, 2.0), tmp / "volume-0.nii")
    mask = np.zeros(mask_shape, np.uint8)
    mask[0, 0, 0] = label
    save_nifti(mask, mask_spacing, tmp / "segmentation-0.nii")
    return lambda: lits.read_case(tmp / "volume-0.nii")


def _brats_case(tmp, drop=None, four_d=False):
    case = tmp / "HGG" / "Brats18_X_1"
    case.mkdir(parents=True)
    for name in (*brats.MODALITIES, "seg"):
        if name != drop:
            shape = (6, 6, 4, 2) if four_d and name == "t2" else (6, 6, 4)
            nib.save(nib.Nifti1Image(np.zeros(shape, np.int16), np.eye(4)), str(case / f"{case.name}_{name}.nii.gz"))
    return lambda: brats.read_case(case)


def _not_empty(tmp):
    (tmp / "keep.txt").write_text("user data")
    return lambda: synthetic.write("nih", tmp, n=2, size=32)


BAD_INPUTS = {
    "corrupt png": (_corrupt_png, ValueError, r"bad\.png: cannot decode image"),
    "missing image": (lambda t: (lambda: load_image(t / "none.png")), FileNotFoundError, r"none\.png: image file not"),
    "nih unknown finding": (lambda t: _nih_csv(t, "Cardiomegaly|Pneumonitis"), ValueError,
                            r"row 2 \(image 00000001_001\.png\) has unknown finding 'Pneumonitis'"),
    "nih missing column": (lambda t: _nih_csv(t, header=("Image Index", "Finding Labels")), ValueError,
                           r"missing column\(s\) \['Patient ID'\]"),
    "split file fields": (lambda t: _split_file(t, "a.png 0 1"), ValueError, r"line 1 has 3 fields, expected 15"),
    "split file label": (lambda t: _split_file(t, "a.png " + " ".join(["0"] * 13 + ["2"])), ValueError,
                         r"label '2' for Hernia; labels must be 0 or 1"),
    "patient split too small": (lambda t: (lambda: patient_split(
        pd.DataFrame({"patient_id": ["1", "2"]}), val_fraction=0.3, test_fraction=0.3)), ValueError,
                                r"cannot split 2 patient\(s\)"),
    "chexpert policy": (lambda t: _chexpert_csv(t, policy="maybe"), ValueError, r"policy must be one of"),
    "chexpert value": (lambda t: _chexpert_csv(t, edema="2.0"), ValueError,
                       r"row 1, column 'Edema' has value 2\.0; expected 1\.0, 0\.0, -1\.0 or blank"),
    "chexpert text value": (lambda t: _chexpert_csv(t, edema="yes"), ValueError, r"column 'Edema' has value 'yes'"),
    "chexpert no patient": (lambda t: _chexpert_csv(t, path="train/someone/view1.jpg"), ValueError,
                            r"without a 'patientNNNNN' folder"),
    "luna coordinate text": (lambda t: _luna_table(t, "annotations.csv", "seriesuid,coordX,coordY,coordZ,diameter_mm\n"
                                                   "1.2,abc,0,0,5\n", luna16.read_annotations), ValueError,
                             r"row 1, column 'coordX' has value 'abc'; expected a number"),
    "luna class": (lambda t: _luna_table(t, "candidates.csv", "seriesuid,coordX,coordY,coordZ,class\n1.2,0,0,0,3\n",
                                         luna16.read_candidates), ValueError, r"row 1 has class 3; must be 0 or 1"),
    "luna no subsets": (lambda t: (lambda: luna16.list_scans(t)), FileNotFoundError, r"no subset0\.\.subset9 folders"),
    "lits shape mismatch": (lambda t: _lits_pair(t, mask_shape=(8, 8, 5)), ValueError,
                            r"shape mismatch: .*volume-0\.nii is \(8, 8, 6\) but .*segmentation-0\.nii is \(8, 8, 5\)"),
    "lits spacing mismatch": (lambda t: _lits_pair(t, mask_spacing=(1.0, 1.0, 3.0)), ValueError,
                              r"spacing mismatch: .*volume-0\.nii has \(1\.0, 1\.0, 2\.0\) mm"),
    "lits label": (lambda t: _lits_pair(t, label=3), ValueError,
                   r"segmentation-0\.nii: unexpected label value\(s\) \[3"),
    "brats missing modality": (lambda t: _brats_case(t, drop="t2"), FileNotFoundError,
                               r"case Brats18_X_1 has no 't2' file"),
    "brats 4d": (lambda t: _brats_case(t, four_d=True), ValueError, r"_t2\.nii\.gz: expected a 3D volume"),
    "brats regions 2d": (lambda t: (lambda: brats.regions(np.zeros((4, 4)))), ValueError, r"at least 3"),
    "synthetic unknown": (lambda t: (lambda: synthetic.write("mnist", t / "x")), ValueError,
                          r"unknown dataset 'mnist'; valid datasets: nih, chexpert, luna16, lits, brats"),
    "synthetic over user data": (_not_empty, ValueError, r"not empty and holds no synthetic\.json; refusing"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_rejected_with_a_specific_message(tmp_path, case):
    build, error, pattern = BAD_INPUTS[case]
    with pytest.raises(error, match=pattern):
        build(tmp_path)()


def test_luna_point_outside_scan_is_named(roots):
    scan = luna16.list_scans(roots["luna16"])[0]
    volume = luna16.read_scan(scan)
    far = np.asarray(volume.origin) - 100.0
    with pytest.raises(ValueError, match=r"maps to voxel .* outside the scan of shape"):
        luna16.nearest_voxel(volume, far[None])


def test_lits_decathlon_layout(roots, tmp_path):
    task = tmp_path / "Task03_Liver"
    for case in lits.list_cases(roots["lits"]):
        for source, folder in ((case.volume, "imagesTr"), (case.segmentation, "labelsTr")):
            (task / folder).mkdir(parents=True, exist_ok=True)
            shutil.copy(source, task / folder / f"liver_{case.case_id}.nii")
    cases = lits.list_cases(tmp_path)
    assert [c.case_id for c in cases] == [0, 1] and cases[0].segmentation.parent.name == "labelsTr"
    ct, mask = lits.read_case(cases[1].volume)
    expected = synthetic.read_truth(roots["lits"])["truth"]["cases"][1]["voxels"]
    assert int((mask.array >= 1).sum()) == expected["liver"] and ct.shape == mask.shape
    assert check(tmp_path, "lits").ok


def test_lits_volume_without_segmentation(roots, tmp_path):
    shutil.copytree(roots["lits"], tmp_path / "lits")
    next((tmp_path / "lits").rglob("segmentation-1.nii")).unlink()
    with pytest.raises(FileNotFoundError, match=r"volume-1\.nii: no segmentation file found"):
        lits.list_cases(tmp_path / "lits")
    cases = lits.list_cases(tmp_path / "lits", require_segmentation=False)
    assert cases[1].segmentation is None


@pytest.mark.network
def test_real_nih_label_table_from_demo_cache():
    from pcrl_lib.data.demo.xray import nih_label_table

    try:
        path = nih_label_table()
    except FileNotFoundError as err:
        pytest.skip(f"demo data not fetched ({err})")
    table = nih.load_labels(path)
    assert len(table) == 112_120 and table["patient_id"].nunique() == 30_805
    counts = table[list(nih.NIH_LABELS)].sum()
    assert counts["Infiltration"] == 19_894 and counts["Hernia"] == 227
    assert (table[list(nih.NIH_LABELS)].sum(axis=1) == 0).sum() == 60_361  # the "No Finding" rows
    splits = patient_split(table, val_fraction=0.1, seed=0, test_fraction=0.2)
    assert not set(splits["train"]["patient_id"]) & set(splits["test"]["patient_id"])
