"""Metrics: ROC-AUC with bootstrap intervals, Dice, HD95, BraTS regions."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from pcrl_lib.metrics import (bootstrap_mean_ci, brats_dice, dice, hd95, hd95_batch, mean_auc, roc_auc, surface,
                              weighted_auc)


def _scores(n, rng, signal=1.0, classes=3):
    y = rng.integers(0, 2, size=(n, classes)).astype(float)
    # Rounded scores create ties, which the Mann–Whitney form must count as ½ like scikit-learn.
    return y, np.round(rng.normal(size=(n, classes)) + signal * y, 1)


def test_auc_matches_sklearn_per_class_and_mean():
    rng = np.random.default_rng(0)
    y, s = _scores(300, rng)
    report = roc_auc(y, s, class_names=["a", "b", "c"], n_bootstrap=50, rng=1)
    expected = [roc_auc_score(y[:, c], s[:, c]) for c in range(3)]
    assert [c.auc for c in report.classes] == pytest.approx(expected, abs=1e-12)
    assert report.mean == pytest.approx(np.mean(expected), abs=1e-12)
    assert report.note == ""


def test_auc_known_values():
    y = np.array([0, 0, 1, 1])
    assert roc_auc(y, np.array([0.1, 0.2, 0.8, 0.9]), n_bootstrap=0).mean == 1.0
    assert roc_auc(y, np.array([0.9, 0.8, 0.2, 0.1]), n_bootstrap=0).mean == 0.0
    # One tie between a positive and a negative counts ½ of its pair: (3 + 0.5) / 4.
    assert roc_auc(y, np.array([0.1, 0.5, 0.5, 0.9]), n_bootstrap=0).mean == pytest.approx(0.875)


def test_mean_auc_averages_the_classes_with_both_known_labels():
    # Class 0: perfect (1.0); class 1: one of four positive-negative pairs ordered (0.25); class 2: all positive
    # (undefined); class 3: its only negative label is unknown (NaN), so it is undefined too.
    y = np.array([[0, 0, 1, np.nan], [0, 1, 1, 1], [1, 0, 1, 1], [1, 1, 1, 1]])
    s = np.array([[0.1, 0.9, 0.5, 0.2], [0.2, 0.1, 0.4, 0.3], [0.8, 0.8, 0.3, 0.4], [0.9, 0.85, 0.2, 0.1]])
    assert mean_auc(y, s) == pytest.approx((1.0 + 0.25) / 2)
    assert mean_auc(y, s) == roc_auc(y, s, n_bootstrap=0).mean
    # Masking class 1's negative at 0.9 leaves one ordered pair of two.
    mask = np.ones((4, 4), dtype=bool)
    mask[0, 1] = False
    assert mean_auc(y, s, mask=mask) == pytest.approx((1.0 + 0.5) / 2)
    assert math.isnan(mean_auc(np.ones((3, 2)), np.zeros((3, 2))))


def test_weighted_auc_equals_sklearn_on_resampled_data():
    rng = np.random.default_rng(3)
    y, s = _scores(120, rng, classes=1)
    idx = rng.integers(0, 120, size=(5, 120))
    counts = np.stack([np.bincount(i, minlength=120) for i in idx]).astype(float)
    fast = weighted_auc(s[:, 0], y[:, 0].astype(bool), counts)
    slow = [roc_auc_score(y[i, 0], s[i, 0]) for i in idx]
    assert fast == pytest.approx(slow, abs=1e-12)


def test_ci_contains_point_estimate_and_shrinks_with_n():
    rng = np.random.default_rng(5)
    widths = []
    for n in (60, 2000):
        y, s = _scores(n, rng, classes=1)
        r = roc_auc(y, s, n_bootstrap=300, rng=7)
        c = r.classes[0]
        assert c.ci_low <= c.auc <= c.ci_high
        assert r.mean_ci_low <= r.mean <= r.mean_ci_high
        widths.append(c.ci_high - c.ci_low)
    assert widths[1] < 0.5 * widths[0]


def test_bootstrap_is_seeded():
    rng = np.random.default_rng(2)
    y, s = _scores(80, rng)
    a = roc_auc(y, s, n_bootstrap=100, rng=np.random.default_rng(9))
    b = roc_auc(y, s, n_bootstrap=100, rng=np.random.default_rng(9))
    c = roc_auc(y, s, n_bootstrap=100, rng=np.random.default_rng(10))
    assert (a.mean_ci_low, a.mean_ci_high) == (b.mean_ci_low, b.mean_ci_high)
    assert (a.mean_ci_low, a.mean_ci_high) != (c.mean_ci_low, c.mean_ci_high)


def test_class_without_positives_is_undefined_and_excluded_from_mean():
    rng = np.random.default_rng(4)
    y, s = _scores(100, rng)
    y[:, 1] = 0                                # a split with no positives for class "b"
    r = roc_auc(y, s, class_names=["a", "b", "c"], n_bootstrap=30)
    b = r.classes[1]
    assert not b.defined and "no positive" in b.reason and math.isnan(b.auc)
    assert [c.name for c in r.undefined] == ["b"]
    assert r.mean == pytest.approx(np.mean([roc_auc_score(y[:, c], s[:, c]) for c in (0, 2)]))
    assert "b" in r.note and "2 of 3" in r.note
    frame = r.to_frame()
    assert list(frame["class"]) == ["a", "b", "c", "mean"]


def test_unknown_labels_are_masked_out():
    rng = np.random.default_rng(6)
    y, s = _scores(200, rng, classes=1)
    known = rng.random(200) < 0.6
    masked = np.where(known[:, None], y, np.nan)
    r = roc_auc(masked, s, n_bootstrap=0)
    assert r.mean == pytest.approx(roc_auc_score(y[known, 0], s[known, 0]))
    all_unknown = roc_auc(np.full((5, 1), np.nan), np.zeros((5, 1)), n_bootstrap=0)
    assert "no labelled samples" in all_unknown.classes[0].reason and math.isnan(all_unknown.mean)


def test_auc_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="same shape"):
        roc_auc(np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="0/1 labels"):
        roc_auc(np.array([0, 2, 1]), np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="non-finite"):
        roc_auc(np.array([0, 1]), np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="ci must be"):
        roc_auc(np.array([0, 1]), np.array([0.1, 0.2]), ci=95)


def test_bootstrap_mean_ci_ignores_nan_and_covers_mean():
    values = np.array([0.9, 0.8, np.nan, 0.7, 0.95, 0.85])
    mean, low, high = bootstrap_mean_ci(values, n_bootstrap=500, rng=0)
    assert mean == pytest.approx(np.nanmean(values))
    assert low <= mean <= high and 0.7 <= low and high <= 0.95


def test_dice_known_masks_and_empty_convention():
    pred = torch.zeros(2, 2, 4, 4, dtype=torch.bool)
    target = torch.zeros_like(pred)
    pred[0, 0, :2] = True                      # 8 voxels
    target[0, 0, :1] = True                    # 4 voxels, all inside pred → 2·4 / 12
    target[1, 0, 0, 0] = True                  # prediction empty, target not → 0
    pred[1, 1, 0, 0] = True                    # target empty, prediction not → 0
    d = dice(pred, target)                     # sample 0, structure 1: both empty → 1
    assert d.flatten().tolist() == pytest.approx([8 / 12, 1.0, 0.0, 0.0])
    assert math.isnan(dice(pred, target, empty=float("nan"))[0, 1])
    with pytest.raises(ValueError, match="binary mask"):
        dice(torch.full((1, 1, 2, 2), 0.3), target[:1, :1, :2, :2])


def test_surface_of_a_cube_is_its_shell():
    mask = np.zeros((8, 8, 8), bool)
    mask[2:6, 2:6, 2:6] = True
    assert surface(mask).sum() == 4 ** 3 - 2 ** 3
    full = np.ones((3, 3, 3), bool)            # the image border counts as outside
    assert surface(full).sum() == 26


def test_hd95_two_cubes_shifted_by_three_voxels():
    a = np.zeros((24, 20, 20), bool)
    a[4:14, 5:15, 5:15] = True
    b = np.roll(a, 3, axis=0)
    assert hd95(a, b) == pytest.approx(3.0)
    assert hd95(a, b, spacing=(2.0, 1.0, 1.0)) == pytest.approx(6.0)        # spacing of the shifted axis
    assert hd95(a, b, spacing=(0.5, 3.0, 3.0)) == pytest.approx(1.5)
    assert hd95(a, a) == 0.0
    assert hd95(a, b, percentile=100) == pytest.approx(3.0)


def test_hd95_empty_conventions_and_batch():
    a = np.zeros((10, 10, 10), bool)
    b = a.copy()
    b[2:5, 2:5, 2:5] = True
    assert hd95(a, a) == 0.0
    assert math.isnan(hd95(a, b))
    batch = hd95_batch(np.stack([a, b])[None], np.stack([a, np.roll(b, 2, axis=1)])[None], spacing=(1, 1, 1))
    assert batch.shape == (1, 2) and batch[0, 0] == 0.0 and batch[0, 1] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="spacing"):
        hd95(b, b, spacing=(1, 1))


def test_hd95_2d():
    a = np.zeros((16, 16), bool)
    a[3:9, 3:9] = True
    assert hd95(a, np.roll(a, 4, axis=1), spacing=(1.0, 0.5)) == pytest.approx(2.0)


def test_brats_regions_dice():
    seg = torch.zeros(1, 8, 8, 8, dtype=torch.long)
    seg[0, 1:7, 1:7, 1:7] = 2                  # edema
    seg[0, 2:6, 2:6, 2:6] = 1                  # core
    seg[0, 3:5, 3:5, 3:5] = 4                  # enhancing
    perfect = brats_dice(seg, seg)
    assert all(v.item() == 1.0 for v in perfect.values())
    no_et = seg.clone()
    no_et[no_et == 4] = 1                      # enhancing predicted as necrosis: WT, TC intact, ET missed
    d = brats_dice(no_et, seg)
    assert d["WT"].item() == 1.0 and d["TC"].item() == 1.0 and d["ET"].item() == 0.0
    from pcrl_lib.data.brats import regions

    assert brats_dice(regions(no_et), seg)["ET"].item() == 0.0
