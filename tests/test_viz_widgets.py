"""What a learner sees in JupyterLab: slider defaults on their grid, one playground figure per change, honest
captions, the viewer's opening window, and a diagram whose arrows cross no box (issue 17, item 6)."""

import logging

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from pcrl_lib.viz import augment as va
from pcrl_lib.viz import diagram
from pcrl_lib.viz import playground as vp
from pcrl_lib.viz import viewer

from test_viz_augment import close_figures  # noqa: F401 - the autouse fixture applies here too


def on_grid(value, low, step):
    k = (value - low) / step
    return abs(k - round(k)) < 1e-6


@pytest.mark.parametrize("name", list(va.CATALOGUE))
def test_every_knob_default_and_maximum_lie_on_the_slider_grid(name):
    """A browser slider snaps to ``low + k * step``: an off-grid default moved (n_blocks 10,000 → 10,001)."""
    for k in va.CATALOGUE[name].knobs:
        assert k.low <= k.default <= k.high, k
        assert on_grid(k.default, k.low, k.step) and on_grid(k.high, k.low, k.step), k


def test_playground_draws_one_figure_per_change():
    pytest.importorskip("ipywidgets")
    pg = vp.Playground(torch.rand(2, 1, 16, 16), torch.rand(2, 1, 10, 10, 4), seed=0)
    before = pg.renders
    for name in ("local pixel shuffling", "cutout"):
        pg.controls["transform"].value = name
        assert pg.renders == before + 1 and plt.get_fignums() == [], "one render, no figure left for pyplot to show"
        before = pg.renders
        assert {k: s.value for k, s in pg.knobs.items()} == {k.name: k.default for k in va.CATALOGUE[name].knobs}
    pg.controls["dims"].value = 3
    assert pg.renders == before + 1


def test_playground_caption_says_when_a_transform_changes_nothing():
    smoke_cube = torch.rand(1, 16, 16, 8)      # the smoke profile's crop: 1-voxel blocks at max_block_frac 0.1
    assert "no change" in vp.render_transform("local pixel shuffling", smoke_cube, 0).caption
    assert "no change" not in vp.render_transform("local pixel shuffling", smoke_cube, 0, max_block_frac=0.3).caption


@pytest.mark.parametrize("name, lo, hi", [("lung", -1024.0, 3071.0), ("mediastinum", -1000.0, 1200.0),
                                          ("liver", -1024.0, 400.0), ("bone", -3000.0, 3071.0)])
def test_viewer_window_opens_exactly_at_its_named_level_and_width(name, lo, hi):
    level, width = viewer.WINDOWS[name]
    ranges = viewer.window_slider_ranges(lo, hi, level, width)
    for value, (low, high, step) in ((level, ranges["level"]), (width, ranges["width"])):
        assert low <= value <= high and on_grid(value, low, step) and on_grid(high, low, step)
    assert ranges["level"][0] <= lo and ranges["level"][1] >= hi and ranges["width"][0] > 0
    assert viewer.window_slider_ranges(0.0, 1.0, 0.5, 1.0)["level"][0] == 0.0


def test_viewer_slices_never_make_imshow_clip(caplog):
    rng = np.random.default_rng(0)
    volume = rng.normal(0, 500, (8, 8, 8)).astype(np.float32)
    mask = rng.integers(0, 6, (8, 8, 8))
    fig, ax = plt.subplots()
    with caplog.at_level(logging.WARNING, logger="matplotlib.image"):
        for level, width in ((-600.0, 1500.0), (3000.0, 1.0), (-3000.0, 0.5)):
            rgb = viewer.render_slice(volume, 2, 4, level, width, mask, alpha=0.4)
            assert 0.0 <= rgb.min() and rgb.max() <= 1.0
            viewer.show_slice(ax, rgb)
            fig.canvas.draw()
    assert "Clipping" not in caplog.text


def _inside(point, centre, size, pad=diagram.BOX_PAD + 0.005):
    return all(abs(p - c) < s / 2 + pad for p, c, s in zip(point, centre, size))


def test_diagram_arrows_cross_no_other_box():
    """Each arrow runs straight between its two boxes' centres; no other box may lie on it (it hid their text)."""
    boxes = {name: spec[:2] for name, spec in diagram._BOXES.items()}
    crossed, short = [], []
    for a, b in diagram._ARROWS:
        (x0, y0), (x1, y1) = boxes[a], boxes[b]
        free = 0
        for t in np.linspace(0, 1, 400):
            point = (x0 + t * (x1 - x0), y0 + t * (y1 - y0))
            crossed += [f"{a}->{b} crosses {name}" for name, centre in boxes.items()
                        if name not in (a, b) and _inside(point, centre, diagram.BOX_SIZE)]
            free += not any(_inside(point, boxes[end], diagram.BOX_SIZE, diagram.BOX_PAD) for end in (a, b))
        # Between touching boxes the arrow was drawn over the next box's text (x1 -> E_o struck "ordinary").
        if free / 400 * np.hypot(x1 - x0, y1 - y0) < 0.025:
            short.append(f"{a}->{b}")
    assert not crossed, sorted(set(crossed))
    assert not short, f"arrows with no room between their boxes: {short}"
    ax = diagram.draw_pcrl_flow().axes[0]
    (x_lo, x_hi), (y_lo, y_hi) = ax.get_xlim(), ax.get_ylim()
    half_w, half_h = (side / 2 + diagram.BOX_PAD for side in diagram.BOX_SIZE)
    assert all(x_lo <= x - half_w and x + half_w <= x_hi and y_lo <= y - half_h and y + half_h <= y_hi
               for x, y in boxes.values()), "a box is cut by the figure's edge"
