"""Prediction-vs-truth overlays: comparison codes, rendered colours, the figure and the viewer's fallback."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from pcrl_lib.metrics import dice
from pcrl_lib.viz import segmentation as seg
from pcrl_lib.viz.viewer import OVERLAY_COLOURS


@pytest.fixture
def case():
    """A ramp image and two overlapping boxes: truth x 2..5, prediction x 4..7 (both y 2..5, z 1..2)."""
    image = np.tile(np.linspace(0, 1, 10, dtype=np.float32)[:, None, None], (1, 8, 4))
    truth = np.zeros((10, 8, 4), bool)
    pred = np.zeros_like(truth)
    truth[2:6, 2:6, 1:3] = True
    pred[4:8, 2:6, 1:3] = True
    return image, pred, truth


def test_comparison_map_codes_each_voxel(case):
    _, pred, truth = case
    codes = seg.comparison_map(pred, truth)
    assert codes.dtype == np.uint8 and codes.shape == truth.shape
    assert (codes == seg.MISSED).sum() == (truth & ~pred).sum() == 16
    assert (codes == seg.FOUND).sum() == (truth & pred).sum() == 16
    assert (codes == seg.FALSE_ALARM).sum() == (pred & ~truth).sum() == 16
    assert (codes[~(truth | pred)] == 0).all()
    assert np.array_equal(seg.comparison_map(torch.from_numpy(pred).long(), truth.astype(np.uint8)), codes)


def test_comparison_map_rejects_probabilities_and_shape_mismatch(case):
    _, pred, truth = case
    with pytest.raises(ValueError, match="threshold"):
        seg.comparison_map(pred * 0.7, truth)
    with pytest.raises(ValueError, match="same shape"):
        seg.comparison_map(pred[:-1], truth)


def test_dice_score_agrees_with_the_metric(case):
    _, pred, truth = case
    expected = float(dice(torch.from_numpy(pred)[None, None], torch.from_numpy(truth)[None, None])[0, 0])
    assert seg.dice_score(pred, truth) == pytest.approx(expected) == pytest.approx(0.5)
    assert seg.dice_score(np.zeros(3, bool), np.zeros(3, bool)) == 1.0


def test_render_comparison_colours_missed_found_and_false_alarm(case):
    image, pred, truth = case
    rgb = seg.render_comparison(image, pred, truth, axis=2, alpha=1.0)
    assert rgb.shape == (8, 10, 3)                                  # rows = y, cols = x (viewer orientation)
    # With alpha 1 the overlay colour replaces the image: x=2 missed, x=4 found, x=6 false alarm, x=9 image.
    np.testing.assert_allclose(rgb[3, 2], OVERLAY_COLOURS[seg.MISSED])
    np.testing.assert_allclose(rgb[3, 4], OVERLAY_COLOURS[seg.FOUND])
    np.testing.assert_allclose(rgb[3, 6], OVERLAY_COLOURS[seg.FALSE_ALARM])
    assert np.allclose(rgb[3, 9], rgb[3, 9, 0]) and rgb[3, 9, 0] == pytest.approx(1.0)  # grey ramp, window [0, 1]
    assert seg.best_slice(truth, axis=2) in (1, 2)
    with pytest.raises(ValueError, match="same"):
        seg.render_comparison(image[:-1], pred, truth)


def test_best_slice_picks_the_fullest_slice_and_falls_back_to_the_middle():
    mask = np.zeros((4, 4, 9), bool)
    mask[:, :, 6] = True
    mask[0, 0, 2] = True
    assert seg.best_slice(mask, 2) == 6
    assert seg.best_slice(np.zeros((4, 4, 9), bool), 2) == 4


def test_comparison_figure_one_row_per_structure_with_dice_titles(case):
    image, pred, truth = case
    target = np.stack([truth, truth & False])
    preds = {"scratch": np.stack([pred, pred & False]), "pcrl": np.stack([truth, pred])}
    fig = seg.comparison_figure(image, target, preds, ["liver", "tumour"], title="test case")
    axes = np.array(fig.axes).reshape(2, 3)
    assert axes[0, 1].get_title() == "scratch: Dice 0.500" and axes[0, 2].get_title() == "pcrl: Dice 1.000"
    assert axes[1, 1].get_title() == "scratch: Dice 1.000" and axes[1, 2].get_title() == "pcrl: Dice 0.000"
    assert axes[0, 0].get_title().startswith("liver: ground truth")
    plt.close(fig)
    with pytest.raises(ValueError, match="K = 2"):
        seg.comparison_figure(image, target, {"x": pred}, ["liver", "tumour"])


def test_comparison_viewer_is_a_montage_of_the_comparison_when_headless(case, monkeypatch):
    monkeypatch.setenv("PCRL_HEADLESS", "1")
    image, pred, truth = case
    fig = seg.comparison_viewer(image, pred, truth, title="pcrl")
    assert isinstance(fig, plt.Figure) and seg.LEGEND in fig._suptitle.get_text()
    shown = np.stack([np.asarray(ax.images[0].get_array()) for ax in fig.axes])   # (slices, rows, cols, 3)
    red_minus_blue = shown[..., 0] - shown[..., 2]
    assert (red_minus_blue > 0.25).any() and (red_minus_blue < -0.25).any()  # missed (red) and false alarms (blue)
    plt.close(fig)
