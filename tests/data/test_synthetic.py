"""Synthetic look-alikes: deterministic by seed, cached, and carrying the structure they promise."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from pcrl_lib.data import brats, lits, luna16, synthetic
from pcrl_lib.data.nih import NIH_LABELS
from pcrl_lib.data.synthetic import xray
from pcrl_lib.data.synthetic.ct import abdomen_ct, chest_ct
from pcrl_lib.data.synthetic.mri import brain_mri

SMALL = {"nih": (6, 32), "chexpert": (4, 32), "luna16": (1, 32), "lits": (1, 32), "brats": (1, 24)}


def _digest(root):
    """Hash of every file's relative path and bytes under ``root``."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("dataset", synthetic.DATASETS)
def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, dataset):
    n, size = SMALL[dataset]
    a = synthetic.write(dataset, tmp_path / "a", n=n, size=size, seed=7)
    b = synthetic.write(dataset, tmp_path / "b", n=n, size=size, seed=7)
    c = synthetic.write(dataset, tmp_path / "c", n=n, size=size, seed=8)
    assert _digest(a) == _digest(b) != _digest(c)
    assert synthetic.read_truth(a)["params"] == {"dataset": dataset, "n": n, "seed": 7, "size": size,
                                                 "difficulty": 0.3, "version": synthetic.VERSION}


def test_write_is_cached_and_guarded(tmp_path):
    root = synthetic.write("nih", tmp_path / "nih", n=4, size=32)
    stamp = (root / "synthetic.json").stat().st_mtime_ns
    assert synthetic.write("nih", root, n=4, size=32) == root
    assert (root / "synthetic.json").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="other parameters; pass overwrite=True"):
        synthetic.write("nih", root, n=5, size=32)
    synthetic.write("nih", root, n=5, size=32, overwrite=True)
    assert len(list((root / "images").glob("*.png"))) == 5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind


@pytest.mark.parametrize("bad,pattern", [({"n": 0}, "n must be a positive int"),
                                         ({"size": 8}, "size must be an int >= 32"),
                                         ({"difficulty": 1.5}, r"difficulty must be in \[0, 1\]"),
                                         ({"seed": -1}, "seed must be a non-negative int")])
def test_write_validates_arguments(tmp_path, bad, pattern):
    with pytest.raises(ValueError, match=pattern):
        synthetic.write("luna16", tmp_path / "x", **bad)
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------------------------------ chest X-rays
def _pair(label, difficulty=0.0, size=64):
    """The same patient rendered without and with one finding (identical random draws)."""
    anatomy = xray.jitter_anatomy(np.random.default_rng(5), xray.sample_anatomy(np.random.default_rng(4), 4))
    clean = np.zeros((4, len(NIH_LABELS)), np.uint8)
    sick = clean.copy()
    sick[:, NIH_LABELS.index(label)] = 1
    return (xray.chest_xrays(clean, np.random.default_rng(6), size, difficulty, anatomy),
            xray.chest_xrays(sick, np.random.default_rng(6), size, difficulty, anatomy))


@pytest.mark.parametrize("label", NIH_LABELS)
def test_every_finding_is_visible_and_fades_with_difficulty(label):
    clean, sick = _pair(label, 0.0)
    clean_hard, sick_hard = _pair(label, 1.0)
    easy = np.abs(sick - clean)
    hard = np.abs(sick_hard - clean_hard)
    assert (easy.max(axis=(1, 2)) > 0.08).all(), f"{label} barely changes the image"
    assert easy.mean() > 1.5 * hard.mean()


@pytest.mark.parametrize("label,sign,rows", [("Cardiomegaly", 1, slice(32, 56)), ("Effusion", 1, slice(36, 60)),
                                              ("Emphysema", -1, slice(0, 64)), ("Pneumothorax", -1, slice(4, 30))])
def test_findings_change_the_expected_region(label, sign, rows):
    clean, sick = _pair(label, 0.0)
    change = (sick - clean)[:, rows].mean(axis=(1, 2))
    assert (sign * change > 0).all()


def test_findings_co_occur_and_persist_within_patients():
    rng = np.random.default_rng(0)
    patient = np.repeat(np.arange(3000), 2)
    labels = xray.sample_findings(rng, patient).astype(float)
    card, eff, mass = (labels[:, NIH_LABELS.index(n)] for n in ("Cardiomegaly", "Effusion", "Mass"))
    assert np.corrcoef(card, eff)[0, 1] > 0.1 > abs(np.corrcoef(card, mass)[0, 1])
    np.testing.assert_allclose(labels.mean(0), xray.PREVALENCE, atol=0.03)
    same_patient = (labels[0::2] == labels[1::2]).mean()
    other_patient = (labels[0::2] == np.roll(labels[1::2], 1, axis=0)).mean()
    assert same_patient > other_patient + 0.02
    assert 0.25 < (labels.sum(1) == 0).mean() < 0.6  # plenty of "No Finding"


# ------------------------------------------------------------------------------------------ CT and MRI
def test_chest_ct_tissues_nodules_and_hard_negatives(tmp_path):
    hu, spacing, nodules, masks = chest_ct(np.random.default_rng(1), size=48, difficulty=0.0)
    assert hu.dtype == np.int16 and spacing[2] > spacing[0]
    assert (hu == -1000).sum() > 0 or np.median(hu[0]) < -900  # air around the body
    assert -900 < np.median(hu[masks["lung"] & ~masks["vessel"]]) < -800
    assert (hu > 600).sum() > 0 and -60 < np.median(hu[masks["body"]]) < 120
    assert nodules and all(hu[tuple(n["voxel"])] > -150 for n in nodules)
    root = synthetic.write("luna16", tmp_path / "luna", n=1, size=48, difficulty=0.0)
    scan = luna16.read_scan(luna16.list_scans(root)[0])
    table = luna16.read_candidates(root / "candidates.csv")
    negatives = luna16.nearest_voxel(scan, table[table["class"] == 0])
    values = scan.array[tuple(negatives.T)]
    assert (table["class"] == 0).sum() == 24
    assert (values > -600).sum() >= 8 and (values < -750).sum() >= 4  # vessels / soft tissue and plain lung


def test_nodule_contrast_drops_with_difficulty():
    easy = chest_ct(np.random.default_rng(2), size=48, difficulty=0.0)
    hard = chest_ct(np.random.default_rng(2), size=48, difficulty=1.0)
    hu_easy, _, nodules_easy, _ = easy
    hu_hard, _, nodules_hard, _ = hard
    assert hu_easy[tuple(nodules_easy[0]["voxel"])] > hu_hard[tuple(nodules_hard[0]["voxel"])] + 200


def test_abdomen_liver_and_tumours():
    found = False
    for seed in range(4):
        hu, mask, spacing, tumours = abdomen_ct(np.random.default_rng(seed), size=48, difficulty=0.0)
        liver = mask == 1
        assert set(np.unique(mask)) <= {0, 1, 2} and (mask >= 1).sum() > 0.05 * mask.size
        assert (mask == 2).sum() < 0.5 * (mask >= 1).sum()
        assert 70 < np.median(hu[liver]) < 130
        if tumours:
            found = True
            assert np.median(hu[mask == 2]) < np.median(hu[liver]) - 30
    assert found


def test_brain_labels_nest_and_modalities_differ():
    image, seg, tumour = brain_mri(np.random.default_rng(0), size=48, difficulty=0.0, high_grade=True)
    wt, tc, et = brats.regions(seg)
    assert et.any() and (tc | ~et).all() and (wt | ~tc).all()
    t1, t1ce, t2, flair = image
    white = seg == 0
    white &= np.abs(t1 - np.median(t1[t1 > 0])) < 0.1  # normal-appearing brain, roughly white matter
    assert np.median(flair[seg == 2]) > np.median(flair[white]) + 0.3      # edema bright on FLAIR
    assert np.median(t1ce[seg == 4]) > np.median(t1[seg == 4]) + 0.4       # rim enhances with contrast
    assert np.median(t2[seg == 1]) > np.median(t2[white]) + 0.3            # necrosis bright on T2
    outside = image.sum(axis=0) == 0
    assert outside.any() and (seg[outside] == 0).all()                     # skull-stripped background
    _, low_grade, _ = brain_mri(np.random.default_rng(0), size=48, difficulty=0.0, high_grade=False)
    assert not (low_grade == 4).any() and (low_grade == 1).any()


def test_lits_and_brats_layouts(tmp_path):
    root = synthetic.write("lits", tmp_path / "lits", n=3, size=32)
    assert [c.volume.parent.name for c in lits.list_cases(root)] == ["Training Batch 1"] * 2 + ["Training Batch 2"]
    root = synthetic.write("brats", tmp_path / "brats", n=3, size=24)
    assert [brats.case_grade(c) for c in brats.list_cases(root)] == ["HGG", "HGG", "LGG"]
