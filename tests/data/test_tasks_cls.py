"""pcrl_lib.data.tasks_cls: the downstream classification splits and Datasets (NIH, CheXpert, LUNA16, demos).

Embedded data (demo + smoke look-alikes) come from the shared cache; prepared caches go to a private
``PCRL_CACHE`` whose ``demo`` and ``synthetic`` folders link to the shared ones (as in test_profile_data.py). The
"real data" path runs on look-alikes written into a temporary ``DATA_ROOT``: same formats, same code.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pcrl_lib.data import chexpert as chexpert_reader
from pcrl_lib.data import luna16, nih, splits, synthetic, tasks_cls
from pcrl_lib.data.tasks_cls import ArrayDataset, ClassificationData
from pcrl_lib.finetune.classify import classification_task


def _names(dataset):
    """File names behind the items of an ImageCacheDataset split."""
    return [dataset.paths[row].rsplit("/", 1)[-1] for row in dataset.rows]


def _tiny(patients, spatial_dims=2, shared=()):
    """ClassificationData over in-memory items: patients = {split: [patient per item]}."""
    shape = (1, 8, 8) if spatial_dims == 2 else (1, 8, 8, 8)
    parts, labels = {}, {}
    for split, ids in patients.items():
        y = (np.arange(len(ids)) % 2).astype(np.float32)[:, None]
        parts[split] = ArrayDataset(np.zeros((len(ids), *shape), np.float32), y, ids)
        labels[split] = y
    return ClassificationData("toy", ("a",), spatial_dims, parts["train"], parts["val"], parts["test"], labels,
                              {s: np.asarray(p, dtype=object) for s, p in patients.items()}, "synthetic", None, "v",
                              shared_patients=shared)


# ------------------------------------------------------------------------------------------------ NIH
def test_nih14_uses_the_official_test_list_and_a_defined_validation_split(embedded):
    data = tasks_cls.nih14("smoke", progress=False)
    root = embedded / "synthetic" / "smoke" / "nih"
    official_test = (root / "test_list.txt").read_text().split()
    assert sorted(_names(data.test)) == sorted(official_test)
    train_val = set((root / "train_val_list.txt").read_text().split())
    assert set(_names(data.train)) | set(_names(data.val)) == train_val
    # The smoke look-alike's 10 % holds one image with one finding: no AUC. The split grows from the kit's own.
    kit_val = splits.nih_splits(root)["val"]
    assert not splits.has_defined_auc(kit_val[list(nih.NIH_LABELS)].to_numpy(np.float32))
    assert splits.has_defined_auc(data.labels["val"])
    assert set(kit_val["patient_id"]) < set(data.patients["val"]) and "grown by" in data.protocol["val"]
    image, labels = data.train[0]
    assert image.shape == (1, 64, 64) and image.dtype == torch.float32 and 0 <= image.min() < image.max() <= 1
    table = nih.load_labels(nih.find_label_csv(root)).set_index("image")
    expected = table.loc[_names(data.train)[0], list(nih.NIH_LABELS)].to_numpy(np.float32)
    np.testing.assert_array_equal(labels.numpy(), expected)
    np.testing.assert_array_equal(data.labels["train"][0], expected)
    assert len(data.train_patients) == len(data.train) and data.variant == "64px"
    assert tasks_cls.nih14("smoke", size=32, progress=False).train[0][0].shape == (1, 32, 32)


# ------------------------------------------------------------------------------------------------ CheXpert
def test_chexpert_policies_change_only_the_uncertain_training_labels(embedded):
    folder = chexpert_reader.find_dataset_dir(embedded / "synthetic" / "smoke" / "chexpert")
    built = {p: tasks_cls.chexpert("smoke", policy=p, progress=False) for p in chexpert_reader.POLICIES}
    ones, zeros, ignore = built["ones"], built["zeros"], built["ignore"]
    train_val = lambda d: np.concatenate([d.labels["train"], d.labels["val"]])  # noqa: E731
    differ = train_val(ones) != train_val(zeros)
    assert differ.any() and (train_val(ones)[differ] == 1).all() and (train_val(zeros)[differ] == 0).all()
    assert np.array_equal(np.isnan(train_val(ignore)), differ), "U-Ignore leaves exactly the uncertain labels unknown"
    raw = pd.read_csv(folder / "train.csv")
    frontal = raw[raw["Frontal/Lateral"] == "Frontal"]
    assert int(differ.sum()) == int((frontal[list(chexpert_reader.COMPETITION_LABELS)] == -1).sum().sum())
    valid = chexpert_reader.load_csv(folder / "valid.csv", "ones", frontal_only=True)
    assert sorted(ones.test.paths[r] for r in ones.test.rows) == sorted(str(Path(f).resolve()) for f in valid["file"])
    assert not np.isnan(ignore.labels["test"]).any()
    # An unknown label reaches the task as "not known", so it is masked out of the loss and the AUC.
    row = int(np.flatnonzero(np.isnan(ignore.labels["train"]).any(axis=1))[0])
    image, labels = ignore.train[row]
    _, y, known = classification_task(ignore).unpack((image[None], labels[None]))
    assert not known.all() and torch.equal(known[0], torch.from_numpy(~np.isnan(ignore.labels["train"][row])))
    assert ones.variant != zeros.variant != ignore.variant
    with pytest.raises(ValueError, match="uncertainty policy"):
        tasks_cls.chexpert("smoke", policy="maybe")


# ------------------------------------------------------------------------------------------------ LUNA16
def test_luna16_lookalike_cubes_are_split_by_scan(embedded):
    data = tasks_cls.luna16_fpr("smoke", progress=False)
    root = embedded / "synthetic" / "smoke" / "luna16"
    candidates = luna16.read_candidates(luna16.find_candidates(root))
    assert sorted(set().union(*(set(data.patients[s]) for s in splits.SPLITS))) == sorted(luna16.scan_index(root))
    for split in splits.SPLITS:
        mine = candidates[candidates["seriesuid"].isin(set(data.patients[split]))]
        assert len(getattr(data, split)) == len(mine) and data.labels[split].sum() == mine["class"].sum()
    cube, label = data.test[0]
    assert cube.shape == (1, 16, 16, 8) and 0 <= cube.min() <= cube.max() <= 1
    assert label.item() == data.labels["test"][0, 0]
    assert data.protocol["max_negatives_per_scan"] is None and data.variant == "16x16x8_negall"


def test_real_luna16_layout_uses_the_subsets_and_caps_negatives(embedded, tmp_path):
    synthetic.write("luna16", tmp_path / "luna16", n=8, seed=2, size=32)   # scan i lies in subset i
    data = tasks_cls.luna16_fpr("smoke", tmp_path, cube=(8, 8, 8), max_negatives_per_scan=5, progress=False)
    scans = luna16.scan_index(tmp_path / "luna16")
    assert [scans[u].parent.name for u in sorted(set(data.patients["test"]))] == ["subset7"]
    assert [scans[u].parent.name for u in sorted(set(data.patients["val"]))] == ["subset6"]
    candidates = luna16.read_candidates(luna16.find_candidates(tmp_path / "luna16"))
    for split in splits.SPLITS:
        mine = candidates[candidates["seriesuid"].isin(set(data.patients[split]))]
        assert data.labels[split].sum() == mine["class"].sum(), "every positive is kept"
        assert (data.labels[split] == 0).sum() == 5 * len(set(data.patients[split])), "5 negatives per scan"
    assert data.source == "real" and data.train[0][0].shape == (1, 8, 8, 8)
    with pytest.raises(ValueError, match="max_negatives_per_scan"):
        tasks_cls.luna16_fpr("smoke", tmp_path, max_negatives_per_scan=0)
    with pytest.raises(ValueError, match="profile 'paper' runs on the real datasets"):
        tasks_cls.luna16_fpr("paper")


# ------------------------------------------------------------------------------------------------ demos
def test_xray_demo_split_is_stratified_and_patient_level(embedded):
    data = tasks_cls.xray_pneumonia_demo("smoke", progress=False)
    assert sum(len(getattr(data, s)) for s in splits.SPLITS) == 16 and data.source == "demo"
    for split in splits.SPLITS:
        assert set(data.labels[split][:, 0]) == {0.0, 1.0}, f"{split} must hold both classes"
    image, label = data.val[0]
    assert image.shape == (1, 64, 64) and label.shape == (1,)


def test_nodule_demo_tests_on_the_other_patient(embedded):
    data = tasks_cls.nodule_demo("smoke", n_per_class=4)
    assert set(data.patients["test"]) == {"lung2"} and set(data.patients["train"]) == {"lung1"}
    assert set(data.patients["val"]) == {"lung1"} and data.shared_patients == (("train", "val"),)
    for split in splits.SPLITS:
        assert set(data.labels[split][:, 0]) == {0.0, 1.0}
    item = data.test[0]
    assert item["image"].shape == (1, 16, 16, 8) and 0 <= item["image"].min() <= item["image"].max() <= 1
    assert len(data.test) == 8 and len(data.train) + len(data.val) == 8
    assert tasks_cls.nodule_demo("smoke", n_per_class=4, test_case="lung1").patients["test"][0] == "lung1"
    with pytest.raises(ValueError, match="not one of the demo CTs"):
        tasks_cls.nodule_demo("smoke", n_per_class=4, test_case="lung9")


# ------------------------------------------------------------------------------------------------ the container
def test_patients_shared_between_splits_are_refused():
    ok = {"train": ["p1", "p2"], "val": ["p3", "p4"], "test": ["p5", "p6"]}
    assert len(_tiny(ok).train) == 2
    with pytest.raises(ValueError, match=r"1 patient\(s\) are in both the train and the test split"):
        _tiny({**ok, "test": ["p1", "p6"]})
    assert len(_tiny({**ok, "val": ["p1", "p4"]}, shared=(("train", "val"),)).val) == 2
    with pytest.raises(ValueError, match="both the train and the test"):
        _tiny({**ok, "test": ["p1", "p6"]}, shared=(("train", "test"),))   # the test split never shares
    with pytest.raises(ValueError, match="the val split is empty"):
        _tiny({**ok, "val": []})


def test_fraction_table_is_nested():
    data = _tiny({"train": [f"p{i // 2}" for i in range(20)], "val": ["v1", "v2"], "test": ["t1", "t2"]})
    table = data.fraction_table([0.1, 0.5, 1.0], seed=0)
    assert table["patients"].tolist() == [1, 5, 10] and table["items"].tolist() == [2, 10, 20]


def test_load_task_and_size_errors():
    with pytest.raises(ValueError, match="unknown classification task 'mnist'"):
        tasks_cls.load_task("mnist", "smoke")
    with pytest.raises(ValueError, match="size must be an int >= 16"):
        tasks_cls.nih14("smoke", size=4)
