"""pcrl_lib.data.splits: patient-level label fractions and the splits of every task."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pcrl_lib.data.images2d import ImageRecord
from pcrl_lib.data import splits
from pcrl_lib.data.splits import (items_of_first_patients, patient_ids, patient_order, sample_fraction,
                                   split_patients)


def _items(n_patients=40, seed=0):
    """Image-level patient ids: 1–4 images per patient, in a shuffled order."""
    rng = np.random.default_rng(seed)
    ids = np.repeat([f"p{i:03d}" for i in range(n_patients)], rng.integers(1, 5, n_patients))
    return list(rng.permutation(ids))


def test_fractions_are_nested_for_one_seed():
    items = _items()
    sets = [set(np.asarray(items, dtype=object)[sample_fraction(items, f, seed=3)]) for f in (0.05, 0.1, 0.2, 0.5, 1.0)]
    for small, large in zip(sets, sets[1:]):
        assert small < large
    assert sets[-1] == set(items)


def test_fraction_is_a_prefix_of_the_seeded_patient_order():
    ids = np.array([f"p{i % 7}" for i in range(20)], dtype=object)       # 7 patients, 2-3 items each
    order = patient_order(ids, 4)
    assert sorted(order.tolist()) == sorted(set(ids.tolist()))
    for fraction in (0.1, 0.3, 0.5, 1.0):
        kept = items_of_first_patients(ids, order, fraction)
        assert np.array_equal(kept, sample_fraction(ids, fraction, 4))
        assert set(ids[kept]) == set(order[:max(1, math.ceil(fraction * 7))])
    # 0.1 · 30 is 3.0000000000000004 in floating point: still 3 patients, not 4.
    thirty = np.array([f"q{i}" for i in range(30)], dtype=object)
    assert len(items_of_first_patients(thirty, thirty[::-1], 0.1)) == 3
    assert set(items_of_first_patients(thirty, thirty[::-1], 0.1).tolist()) == {27, 28, 29}


def test_fraction_keeps_whole_patients_and_counts_patients():
    items = _items()
    kept = sample_fraction(items, 0.25, seed=1)
    kept_patients = {items[i] for i in kept}
    assert len(kept_patients) == 10                          # ceil(0.25 · 40) patients
    # Every image of a kept patient is kept, none of another patient.
    assert set(kept) == {i for i, p in enumerate(items) if p in kept_patients}
    assert np.all(np.diff(kept) > 0)


def test_fraction_is_deterministic_and_order_independent():
    items = _items()
    a = sample_fraction(items, 0.3, seed=5)
    assert np.array_equal(a, sample_fraction(items, 0.3, seed=5))
    reordered = list(reversed(items))
    picked = {items[i] for i in a}
    assert {reordered[i] for i in sample_fraction(reordered, 0.3, seed=5)} == picked
    assert {items[i] for i in sample_fraction(items, 0.3, seed=6)} != picked


def test_fraction_accepts_records_and_dicts():
    records = [ImageRecord(Path(f"{i}.png"), np.zeros(2), patient=f"p{i // 2}") for i in range(10)]
    dicts = [{"patient": f"p{i // 2}"} for i in range(10)]
    assert np.array_equal(sample_fraction(records, 0.4, 0), sample_fraction(dicts, 0.4, 0))
    assert list(patient_ids(records[:3])) == ["p0", "p0", "p1"]
    with pytest.raises(ValueError, match="cannot tell the patient"):
        sample_fraction([object()], 0.5, 0)


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.5, float("nan"), "0.5", True])
def test_fraction_outside_unit_interval_names_the_argument(bad):
    with pytest.raises(ValueError, match="fraction"):
        sample_fraction(["a", "b"], bad, seed=0)


def test_tiny_fraction_keeps_at_least_one_patient():
    assert len(sample_fraction(["a", "b", "c"], 0.01, seed=0)) == 1


def test_split_patients_disjoint_and_complete():
    items = _items(50)
    parts = split_patients(items, (0.7, 0.1, 0.2), seed=2)
    patients = {name: {items[i] for i in idx} for name, idx in parts.items()}
    assert not patients["train"] & patients["val"] and not patients["train"] & patients["test"]
    assert not patients["val"] & patients["test"]
    assert sum(len(idx) for idx in parts.values()) == len(items)
    assert [len(patients[n]) for n in ("train", "val", "test")] == [35, 5, 10]
    assert all(np.array_equal(parts[k], v) for k, v in split_patients(items, seed=2).items())
    with pytest.raises(ValueError, match="at least one patient"):
        split_patients(["a", "b"], seed=0)
    with pytest.raises(ValueError, match="sum to 1"):
        split_patients(items, (0.5, 0.1, 0.1))


def test_grow_validation_split_starts_from_the_kit_split_and_grows_by_patient():
    table = pd.DataFrame({"patient_id": [f"p{i}" for i in range(10)], "a": 0.0})
    # The seeded patient order of splits.patient_split: the k-th patient is the one the k-patient split adds.
    order, seen = [], set()
    for k in range(1, 10):
        val = set(splits.patient_split(table, val_fraction=k / 10, seed=0)["val"]["patient_id"])
        order += sorted(val - seen)
        seen = val
    third_positive = table.assign(a=(table["patient_id"] == order[2]).astype(float))
    parts, added = splits.grow_validation_split(third_positive, ["a"], 0.1, seed=0)
    assert added == 2 and set(parts["val"]["patient_id"]) == set(order[:3])
    assert not set(parts["train"]["patient_id"]) & set(parts["val"]["patient_id"])
    first_positive = table.assign(a=(table["patient_id"] == order[0]).astype(float))
    parts, added = splits.grow_validation_split(first_positive, ["a"], 0.2, seed=0)
    assert added == 0 and parts["val"].equals(splits.patient_split(first_positive, val_fraction=0.2, seed=0)["val"])
    with pytest.raises(ValueError, match="labels.csv: no patient-level validation split"):
        splits.grow_validation_split(table, ["a"], 0.1, what="labels.csv")
    with pytest.raises(ValueError, match="at least 2"):
        splits.grow_validation_split(table.iloc[:1], ["a"], 0.1)


def test_stratified_patient_split_keeps_every_stratum_in_every_split():
    patients = [f"p{i}" for i in range(8)] + [f"q{i}" for i in range(8)]
    parts = splits.stratified_patient_split(patients, [0] * 8 + [1] * 8)
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(16))
    assert all({i < 8 for i in rows} == {True, False} for rows in parts.values())
    with pytest.raises(ValueError, match="several strata"):
        splits.stratified_patient_split(["a", "a", "b", "c"], [0, 1, 0, 1])


def test_luna_subset_split_follows_the_subsets():
    scans = {f"uid{i}": f"/x/subset{i}/uid{i}.mhd" for i in range(10)}
    split = splits.luna_subset_split(scans)
    assert split == {"train": [f"uid{i}" for i in range(6)], "val": ["uid6"], "test": ["uid7", "uid8", "uid9"]}
    with pytest.raises(ValueError, match=r"test split is empty: no scans in subset\(s\) \[7, 8, 9\]"):
        splits.luna_subset_split({k: v for k, v in scans.items() if k < "uid7"})
    with pytest.raises(ValueError, match="subset0..subset9"):
        splits.luna_subset_split({"a": "/x/scans/a.mhd"})


@pytest.mark.parametrize("n, counts", [(3, (1, 1, 1)), (6, (4, 1, 1)), (10, (7, 1, 2)), (131, (92, 13, 26))])
def test_split_cases_counts_are_disjoint_and_cover_every_case(n, counts):
    names = [f"case-{i}" for i in range(n)]
    parts = splits.split_cases(names)
    assert tuple(len(parts[s]) for s in splits.SPLITS) == counts
    joined = [c for s in splits.SPLITS for c in parts[s]]
    assert sorted(joined) == sorted(names)
    assert parts == splits.split_cases(list(reversed(names)))  # order of the listing does not matter
    assert parts != splits.split_cases(names, seed=1) or n == 3


def test_split_cases_rejects_too_few_or_duplicate_cases():
    with pytest.raises(ValueError, match="at least 3"):
        splits.split_cases(["a", "b"])
    with pytest.raises(ValueError, match="unique"):
        splits.split_cases(["a", "a", "b"])
    with pytest.raises(ValueError, match="three positive shares"):
        splits.split_cases(["a", "b", "c"], fractions=(0.5, 0.5))
