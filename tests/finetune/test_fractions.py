"""Patient-level label fractions and splits."""

from pathlib import Path

import numpy as np
import pytest

from pcrl_lib.data.images2d import ImageRecord
from pcrl_lib.finetune import patient_ids, sample_fraction, split_patients


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
