"""Layout checks: clean look-alikes pass; each kind of damage is reported with its path and expectation."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from pcrl_lib.data import synthetic
from pcrl_lib.data.check import DATASETS, CheckReport, check
from pcrl_lib.data.cli import main


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    base = tmp_path_factory.mktemp("pristine")
    sizes = {"nih": (10, 32), "chexpert": (6, 32), "luna16": (10, 32), "lits": (2, 32), "brats": (2, 24)}
    return {name: synthetic.write(name, base / name, n=n, seed=1, size=size) for name, (n, size) in sizes.items()}


@pytest.fixture
def copy(pristine, tmp_path):
    def make(dataset):
        return shutil.copytree(pristine[dataset], tmp_path / dataset)

    return make


@pytest.mark.parametrize("dataset", DATASETS)
def test_clean_look_alikes_pass(pristine, dataset):
    report = check(pristine[dataset], dataset, deep=True)
    assert report.ok and not report.problems, str(report)
    assert report.summary


# Each case: dataset, how to damage a copy (returns nothing), the expected path suffix and message fragment.
def _first(root, pattern):
    return sorted(root.rglob(pattern))[0]


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _edit_csv(path, change):
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    changed = change(table)
    (table if changed is None else changed).to_csv(path, index=False)


def _set_cell(column, value, row=0):
    def change(table):
        table.loc[row, column] = value
    return change


def _nih_patient_in_both(root):
    table = pd.read_csv(root / "Data_Entry_2017_v2020.csv", dtype=str)
    test = (root / "test_list.txt").read_text().split()
    patient = table.set_index("Image Index")["Patient ID"]
    train_image = next(i for i in (root / "train_val_list.txt").read_text().split() if patient[i] != patient[test[0]])
    table.loc[table["Image Index"] == train_image, "Patient ID"] = patient[test[0]]
    table.to_csv(root / "Data_Entry_2017_v2020.csv", index=False)


def _chexpert_patient_in_both(root):
    folder = root / "CheXpert-v1.0-small"
    train = pd.read_csv(folder / "train.csv", dtype=str, keep_default_na=False)
    _edit_csv(folder / "valid.csv", _set_cell("Path", train["Path"].iloc[0]))


def _nifti_4d(path):
    image = nib.load(str(path), mmap=False)  # a memory map of the file we overwrite would crash the writer
    data = np.asarray(image.dataobj).copy()
    nib.save(nib.Nifti1Image(np.stack([data, data], axis=-1), image.affine), str(path))


def _nifti_resave(path, shape=None, zooms=None, value=None):
    image = nib.load(str(path), mmap=False)  # a memory map of the file we overwrite would crash the writer
    data = np.asarray(image.dataobj).copy()
    if shape is not None:
        data = data[tuple(slice(0, s) for s in shape)]
    if value is not None:
        data[0, 0, 0] = value
    out = nib.Nifti1Image(data, image.affine, image.header)
    if zooms is not None:
        out.header.set_zooms(zooms)
    nib.save(out, str(path))


DAMAGE = {
    "nih no images folder": ("nih", lambda r: shutil.rmtree(r / "images"), "images", "missing folder"),
    "nih empty images": ("nih", lambda r: [p.unlink() for p in (r / "images").glob("*.png")], "images",
                         "no images: expected *.png"),
    "nih no csv": ("nih", lambda r: (r / "Data_Entry_2017_v2020.csv").unlink(), "Data_Entry_2017_v2020.csv",
                   "missing label CSV"),
    "nih unknown label": ("nih", lambda r: _edit_csv(r / "Data_Entry_2017_v2020.csv",
                                                     _set_cell("Finding Labels", "Effusion|Pneumonitis", 2)),
                          "Data_Entry_2017_v2020.csv", "unknown label name 'Pneumonitis' in 1 row(s) (first: row 3)"),
    "nih missing column": ("nih", lambda r: _edit_csv(r / "Data_Entry_2017_v2020.csv",
                                                      lambda t: t.drop(columns="Patient ID")),
                           "Data_Entry_2017_v2020.csv", "CSV missing required column(s) ['Patient ID']"),
    "nih corrupt png": ("nih", lambda r: _truncate(_first(r / "images", "*.png")), ".png",
                        "unreadable or corrupt image"),
    "nih patient in both splits": ("nih", _nih_patient_in_both, "test_list.txt",
                                   "duplicate patient across splits: 1 patient(s)"),
    "nih missing image": ("nih", lambda r: _first(r / "images", "*.png").unlink(), "images",
                          "1 image(s) listed in Data_Entry_2017_v2020.csv are not on disk"),
    "chexpert no valid csv": ("chexpert", lambda r: (r / "CheXpert-v1.0-small" / "valid.csv").unlink(), "valid.csv",
                              "missing valid CSV"),
    "chexpert bad value": ("chexpert", lambda r: _edit_csv(r / "CheXpert-v1.0-small" / "train.csv",
                                                           _set_cell("Edema", "2.0")),
                           "train.csv", "column 'Edema' has 1 invalid value(s) (first: '2.0' in row 1)"),
    "chexpert patient in both": ("chexpert", _chexpert_patient_in_both, "valid.csv", "duplicate patient across splits"),
    "chexpert corrupt jpeg": ("chexpert", lambda r: _truncate(_first(r, "*_frontal.jpg"), 0.3), ".jpg",
                              "unreadable or corrupt image"),
    "luna truncated raw": ("luna16", lambda r: _truncate(_first(r / "subset3", "*.raw")), ".raw", "truncated .raw"),
    "luna empty subset": ("luna16", lambda r: [p.unlink() for p in (r / "subset4").iterdir()], "subset4",
                          "empty folder"),
    "luna no subsets": ("luna16", lambda r: [shutil.rmtree(p) for p in r.glob("subset*")], "subset0",
                        "missing folder; expected subset0"),
    "luna bad header": ("luna16", lambda r: _first(r / "subset2", "*.mhd").write_text("NDims = 3\nDimSize = x\n"),
                        ".mhd", "without ElementDataFile"),
    "luna no annotations": ("luna16", lambda r: (r / "annotations.csv").unlink(), "annotations.csv",
                            "missing annotations"),
    "luna unknown seriesuid": ("luna16", lambda r: _edit_csv(r / "candidates.csv", _set_cell("seriesuid", "1.2.3")),
                               "candidates.csv", "1 seriesuid(s) refer to no scan under subset*/ (e.g. 1.2.3)"),
    "luna annotation outside": ("luna16", lambda r: _edit_csv(r / "annotations.csv", _set_cell("coordZ", "5000")),
                                "annotations.csv", "1 annotation(s) lie outside their scan (rows 1)"),
    "luna candidates columns": ("luna16", lambda r: [_edit_csv(r / n, lambda t: t.drop(columns="class"))
                                                     for n in ("candidates.csv", "candidates_V2.csv")],
                                "candidates.csv", "CSV missing required column(s) ['class']"),
    "lits 4d": ("lits", lambda r: _nifti_4d(_first(r, "volume-0.nii")), "volume-0.nii",
                "NIfTI: expected a 3D volume (X, Y, Z), got 4 dimensions"),
    "lits shape mismatch": ("lits", lambda r: _nifti_resave(_first(r, "segmentation-1.nii"), shape=(30, 32, 10)),
                            "segmentation-1.nii", "shape mismatch: (30, 32, 10)"),
    "lits spacing mismatch": ("lits", lambda r: _nifti_resave(_first(r, "segmentation-0.nii"), zooms=(2.0, 2.0, 2.0)),
                              "segmentation-0.nii", "spacing mismatch: (2.0, 2.0, 2.0) mm"),
    "lits missing mask": ("lits", lambda r: _first(r, "segmentation-1.nii").unlink(), "volume-1.nii",
                          "missing segmentation of case 1 (segmentation-1.nii(.gz)"),
    "lits truncated": ("lits", lambda r: _truncate(_first(r, "volume-1.nii")), "volume-1.nii", "truncated NIfTI"),
    "lits no volumes": ("lits", lambda r: [p.unlink() for p in r.rglob("volume-*.nii")], "lits",
                        "no volume-N.nii(.gz) files found"),
    "lits label value": ("lits", lambda r: _nifti_resave(_first(r, "segmentation-0.nii"), value=7),
                         "segmentation-0.nii", "unexpected label value(s) [7]"),
    "brats missing modality": ("brats", lambda r: _first(r, "*_001_1_t1ce.nii.gz").unlink(), "Brats18_SYN_001_1",
                               "case Brats18_SYN_001_1 is missing modality 't1ce'"),
    "brats seg label": ("brats", lambda r: _nifti_resave(_first(r, "*_000_1_seg.nii.gz"), value=3), "_seg.nii.gz",
                        "unexpected label value(s) [3]"),
    "brats shape mismatch": ("brats", lambda r: _nifti_resave(_first(r, "*_000_1_flair.nii.gz"), shape=(20, 24, 15)),
                             "_flair.nii.gz", "shape mismatch"),
    "brats corrupt gzip": ("brats", lambda r: _first(r, "*_001_1_t2.nii.gz").write_bytes(b"not gzip"),
                           "_t2.nii.gz", "unreadable NIfTI"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damage_is_reported_with_path_and_expectation(copy, case):
    dataset, damage, path_end, message = DAMAGE[case]
    root = copy(dataset)
    damage(root)
    report = check(root, dataset, deep=True)
    assert not report.ok
    hits = [p for p in report.errors if str(p.path).endswith(path_end) and message in p.message]
    assert hits, f"expected an error at *{path_end} containing {message!r}; got:\n{report}"


def test_unknown_seriesuid_is_a_warning_when_subsets_are_missing(copy):
    root = copy("luna16")
    shutil.rmtree(root / "subset9")
    report = check(root, "luna16")
    assert report.ok
    assert any("not all ten subsets are present" in p.message for p in report.warnings)


def test_missing_root_and_raise_on_error_lists_everything(tmp_path, copy):
    report = check(tmp_path / "nowhere", "brats")
    assert [str(p.path) for p in report.errors] == [str(tmp_path / "nowhere")]
    root = copy("nih")
    (root / "test_list.txt").unlink()
    _truncate(_first(root / "images", "*.png"))
    with pytest.raises(ValueError) as info:
        check(root, "nih", raise_on_error=True)
    text = str(info.value)
    assert "2 error(s)" in text and "test_list.txt: missing split list" in text and "corrupt image" in text


def test_limit_bounds_the_images_opened(pristine):
    assert check(pristine["nih"], "nih", limit=3).summary["images opened"] == 3
    assert check(pristine["nih"], "nih", limit=None).summary["images opened"] == 10
    with pytest.raises(ValueError, match="unknown dataset 'mnist'; valid datasets: nih, chexpert"):
        check(pristine["nih"], "mnist")


def test_report_reads_well():
    report = CheckReport("lits", root=Path("/x"))
    report.add("/x/a.nii", "truncated NIfTI")
    report.add("/x/b.nii", "odd", level="warning")
    assert str(report).splitlines() == ["lits at /x: 1 error(s), 1 warning(s)",
                                        "  ERROR   /x/a.nii: truncated NIfTI", "  WARNING /x/b.nii: odd"]


def test_cli_exit_codes(pristine, copy, tmp_path, capsys):
    assert main(["check", "--dataset", "lits", "--root", str(pristine["lits"])]) == 0
    assert "lits at" in capsys.readouterr().out
    root = copy("lits")
    _first(root, "segmentation-0.nii").unlink()
    assert main(["check", "--dataset", "lits", "--root", str(root)]) == 1
    assert "missing segmentation of case 0" in capsys.readouterr().out
    assert main(["check", "--dataset", "mnist", "--root", str(root)]) == 2
    assert "valid datasets: nih, chexpert, luna16, lits, brats" in capsys.readouterr().err
    out = tmp_path / "synth"
    assert main(["synthetic", "--dataset", "brats", "--root", str(out), "-n", "1", "--size", "24", "--seed", "4"]) == 0
    assert synthetic.read_truth(out)["params"]["seed"] == 4
    assert main(["synthetic", "--dataset", "brats", "--root", str(root), "-n", "1"]) == 2
    assert "other parameters; pass overwrite=True (CLI: --overwrite)" in capsys.readouterr().err


def test_cli_as_a_module(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pcrl_lib.data.cli", "check", "--dataset", "nope", "--root",
                             str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "valid datasets: nih, chexpert, luna16, lits, brats" in result.stderr
