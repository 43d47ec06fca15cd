import numpy as np
import pytest

from pcrl_lib import viz


def test_apply_window_maps_level_to_half():
    out = viz.apply_window(np.array([-1350.0, -600.0, 150.0, 3000.0]), level=-600, width=1500)
    np.testing.assert_allclose(out, [0.0, 0.5, 1.0, 1.0])
    with pytest.raises(ValueError, match="width"):
        viz.apply_window(np.zeros(2), 0, 0)


def test_render_slice_overlays_mask_only_where_labelled():
    vol = np.full((8, 6, 4), -600.0)
    mask = np.zeros_like(vol, dtype=np.uint8)
    mask[2, 3, 1] = 1
    rgb = viz.render_slice(vol, axis=2, index=None, mask=mask)  # None → the mask's slice (z = 1)
    assert rgb.shape == (6, 8, 3)  # rows = y, cols = x
    assert np.allclose(rgb[3, 2], [0.5 * 0.6 + 0.4 * 1.0, 0.5 * 0.6 + 0.4 * 0.2, 0.5 * 0.6 + 0.4 * 0.2])
    assert np.allclose(rgb[0, 0], 0.5)  # unlabelled voxel: plain grey at the window's level


def test_render_slice_bad_input():
    vol = np.zeros((4, 4, 4))
    with pytest.raises(ValueError, match="mask shape"):
        viz.render_slice(vol, mask=np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="slice index 9 outside 0..3"):
        viz.render_slice(vol, axis=0, index=9)


def test_viewer_is_static_montage_when_headless(monkeypatch):
    monkeypatch.setenv("PCRL_HEADLESS", "1")
    fig = viz.slice_viewer(np.random.rand(8, 8, 8), window=(0.5, 1.0))
    assert len(fig.axes) == 6


def test_viewer_widget_builds_and_redraws(monkeypatch):
    pytest.importorskip("ipywidgets")
    panel = viz.slice_viewer(np.random.rand(6, 7, 5), mask=(np.random.rand(6, 7, 5) > 0.5).astype(np.uint8),
                             window=(0.5, 1.0), interactive=True)
    axis_dd = panel.children[0].children[0]
    slider = panel.children[0].children[1]
    axis_dd.value = 0  # the callback adjusts the slice range to the new axis
    assert slider.max == 5
