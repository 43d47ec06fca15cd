"""The augmentation playground: its pure render function and its callbacks (called directly: they never fire
headless)."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from pcrl_lib.viz import augment as va
from pcrl_lib.viz import playground as vp

from test_viz_augment import close_figures, cube, image  # noqa: F401 - the autouse fixture applies here too


@pytest.mark.parametrize("name", list(va.CATALOGUE))
def test_render_transform_every_entry_is_deterministic_and_in_range(name):
    for x in (image(), cube()):
        if x.ndim - 1 not in va.CATALOGUE[name].dims:
            continue
        frame = vp.render_transform(name, x, seed=2, n_blocks=200) if name == "local pixel shuffling" else \
            vp.render_transform(name, x, seed=2)
        again = vp.render_transform(name, x, seed=2, n_blocks=200) if name == "local pixel shuffling" else \
            vp.render_transform(name, x, seed=2)
        assert np.array_equal(frame.after, again.after) and frame.caption == again.caption
        assert frame.before.ndim == 3 and frame.before.shape[-1] == 3 and 0 <= frame.after.min() <= frame.after.max() <= 1
        assert frame.output.shape[0] == (3 if x.ndim == 3 else 1)
        assert (frame.mask is not None) == name.endswith("painting")


def test_render_transform_seed_changes_the_draw():
    a = vp.render_transform("Gaussian blur", cube(), seed=0)
    b = vp.render_transform("Gaussian blur", cube(), seed=1)
    assert a.caption != b.caption and not np.array_equal(a.after, b.after)
    assert not np.array_equal(vp.render_transform("flip", image(), 0, p=1.0).after,
                              vp.render_transform("flip", image(), 0, p=0.0).after)


def test_playground_is_static_when_headless(monkeypatch):
    monkeypatch.setenv("PCRL_HEADLESS", "1")
    fig = vp.playground(torch.rand(2, 1, 16, 16), torch.rand(2, 1, 10, 10, 4), seed=1)
    assert isinstance(fig, plt.Figure)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 2 + len(va.names(2)) + len(va.names(3))          # input + every transform, 2D and 3D
    with pytest.raises(ValueError, match="cubes must be a floating tensor"):
        vp.playground(torch.rand(2, 1, 16, 16), torch.rand(2, 10, 10, 4))


def test_playground_callbacks_rebuild_knobs_and_redraw():
    pytest.importorskip("ipywidgets")
    pg = vp.Playground(torch.rand(2, 1, 16, 16), torch.rand(3, 1, 10, 10, 4), seed=0)
    c = pg.controls
    assert c["transform"].value == "non-linear intensity" and list(pg.knobs) == ["invert_p"]
    assert c["slice"].disabled
    c["transform"].value = "cutout"
    assert list(pg.knobs) == ["n_holes", "hole_frac"] and pg.frame.caption == "3 holes"
    pg.knobs["n_holes"].value = 5
    assert pg.frame.caption == "5 holes"
    c["dims"].value = 3                                  # cutout has no 3D form: the first 3D transform is chosen
    assert c["transform"].value == "non-linear intensity" and not c["slice"].disabled and c["image"].max == 2
    c["transform"].value = "out-painting"
    c["slice"].value = 0
    expected = vp.render_transform("out-painting", pg.cubes[0], 0, 0)
    assert np.array_equal(pg.frame.after, expected.after) and pg.frame.mask is not None
    c["seed"].value = 7
    assert not np.array_equal(pg.frame.after, expected.after)
