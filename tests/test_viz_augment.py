"""Figure helpers of the augmentation lesson: display orientation, captions, the catalogue, the pipeline
replays."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from pcrl_lib.transforms import (NonlinearParams, PCRLViews2D, PCRLViews3D, draw_mix, encode_tca,
                                 normalize, tca_apply, tca_invert)
from pcrl_lib.viz import augment as va


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def image(seed=0, size=24):
    return torch.rand((1, size, size), generator=torch.Generator().manual_seed(seed))


def cube(seed=0, shape=(12, 12, 6)):
    return torch.rand((1, *shape), generator=torch.Generator().manual_seed(seed))


def test_display_array_shows_ct_slices_radiologically():
    volume = torch.zeros(1, 5, 4, 3)                 # LPS: x towards the patient's left, y towards the back
    volume[0, 1, 2, 1] = 0.4                         # x = 1, y = 2, z = 1
    rgb = va.display_array(volume, z=1)
    assert rgb.shape == (4, 5, 3)                    # rows = y (anterior at the top), columns = x (right at the left)
    assert np.argwhere(rgb[..., 0] > 0).tolist() == [[2, 1]]
    assert np.allclose(rgb[2, 1], 1.0)               # 0.4 is the top of the default 3D window
    with pytest.raises(ValueError, match="slice z=3 outside 0..2"):
        va.display_array(volume, z=3)


def test_display_array_undoes_imagenet_normalisation():
    rgb = torch.rand(3, 6, 7, generator=torch.Generator().manual_seed(1))
    shown = va.display_array(normalize(rgb[None])[0], normalized=True)
    np.testing.assert_allclose(shown, rgb.permute(1, 2, 0).numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="3-channel"):
        va.display_array(torch.rand(1, 6, 7), normalized=True)
    with pytest.raises(ValueError, match="one floating image"):
        va.display_array(torch.rand(2, 1, 6, 7, 3, 2))


def test_code_label_reads_the_code():
    code = encode_tca(torch.tensor([[True, False, True]]), torch.tensor([3]))[0]
    assert va.code_label(code) == "c = [1 0 1 | 0 0 0 1]\nflip x,z · rot 270°"
    assert va.code_label(encode_tca(torch.tensor([[False, False]]), torch.tensor([0]))[0]).endswith("no flip · rot 0°")


def test_all_tca_codes_are_distinct_valid_and_invertible():
    for sd, x in ((2, image()[None]), (3, cube()[None].expand(1, 1, 12, 12, 6))):
        codes = va.all_tca_codes(sd)
        assert codes.shape == (2 ** sd * 4, sd + 4)
        assert torch.unique(codes, dim=0).shape[0] == codes.shape[0]
        batch = x.expand(len(codes), *x.shape[1:]).contiguous()
        targets = tca_apply(batch, codes)
        assert torch.equal(tca_invert(targets, codes), batch)
        assert torch.unique(targets.flatten(1), dim=0).shape[0] == len(codes) // 2   # flip H+W = rotation by 180°
    with pytest.raises(ValueError, match="spatial_dims"):
        va.all_tca_codes(1)


def test_draw_is_one_batched_call_with_distinct_reproducible_draws():
    d = va.draw("affine", image(), 3, seed=5)
    assert d.y.shape == (3, 3, 24, 24) and d.params.batch_size == 3          # grey repeated to 3 channels
    assert not torch.equal(d.y[0], d.y[1])                                   # per-sample parameters
    again = va.draw("affine", image(), 3, seed=5)
    assert torch.equal(d.y, again.y) and torch.equal(d.params.angles, again.params.angles)
    assert not torch.equal(d.y, va.draw("affine", image(), 3, seed=6).y)
    with pytest.raises(ValueError, match="positive int"):
        va.draw("affine", image(), 0, seed=5)


def test_describe_captions_what_was_drawn():
    out = va.draw("out-painting", cube(), 2, seed=0, max_boxes=1)
    assert va.describe(out.params, 0) == "out-painting, 1 window"
    inp = va.draw("in-painting", cube(), 2, seed=0, max_boxes=2, continue_p=1.0)
    assert va.describe(inp.params, 1) == "in-painting, 2 boxes"
    flips = va.draw("flip", cube(), 2, seed=0, p=1.0)
    assert va.describe(flips.params, 0) == "flip x,y,z"
    assert va.describe(va.draw("flip", image(), 1, seed=0, p=0.0).params, 0) == "no flip"
    shuffle = va.draw("local pixel shuffling", image(size=30), 1, seed=0, n_blocks=50)
    assert va.describe(shuffle.params, 0) == "50 blocks ≤ 3×3"
    untouched = NonlinearParams(batch_size=2, index=torch.tensor([1]), control=torch.rand(1, 2, 2),
                                invert=torch.tensor([True]))
    assert va.describe(untouched, 0) == "untouched" and va.describe(untouched, 1).endswith("inverted")
    with pytest.raises(TypeError, match="no caption|parameter record"):
        va.describe(object(), 0)


def test_painted_region_is_exactly_where_noise_went():
    for name in ("in-painting", "out-painting"):
        d = va.draw(name, cube(), 2, seed=3)
        for i in range(2):
            region = va.painted_region(d.params, i, d.x.shape[2:])
            assert torch.equal(d.y[i, 0][region], d.params.noise[i, 0][region])
            assert torch.equal(d.y[i, 0][~region], d.x[i, 0][~region])


def test_knob_values_and_build_validate_their_arguments():
    assert va.knob_values("cutout") == {"n_holes": 3, "hole_frac": pytest.approx(32 / 224)}
    with pytest.raises(ValueError, match="unknown transform 'spin'"):
        va.knob_values("spin")
    with pytest.raises(ValueError, match="no parameter"):
        va.knob_values("flip", sigma=1)
    with pytest.raises(ValueError, match=r"degrees must be a number in \[0.0, 45.0\]"):
        va.knob_values("affine", degrees=90)
    with pytest.raises(ValueError, match="only in 2D"):
        va.build("cutout", 3, (1, 1, 8, 8, 8))
    assert va.names(3) == [n for n in va.CATALOGUE if 3 in va.CATALOGUE[n].dims] and "cutout" not in va.names(3)


def test_replay_view_2d_lands_on_the_sample_exactly():
    views = PCRLViews2D(size=16)
    images = torch.rand(3, 1, 20, 20, generator=torch.Generator().manual_seed(0))
    sample, params = views(images, torch.Generator().manual_seed(1), return_params=True)
    steps = va.replay_view_2d(views, images, params["view2"], sample.c2)
    assert torch.equal(steps[-2].x, sample.x2) and torch.equal(steps[-1].x, sample.T2)
    assert torch.equal(normalize(steps[1].x), sample.g2)                  # the resized crop is the clean target
    assert [s.normalized for s in steps][-3:] == [True, True, True]
    fig = va.steps_figure(steps, samples=(0, 2))
    assert len([ax for ax in fig.axes if ax.images]) == 2 * len(steps)
    with pytest.raises(TypeError, match="PCRLViews2D"):
        va.replay_view_2d(PCRLViews3D(), images, params["view2"], sample.c2)


def test_replay_view_3d_lands_on_the_sample_exactly():
    views = PCRLViews3D(n_blocks=100, nonlinear_p=0.5)
    pairs = torch.rand(2, 2, 1, 10, 10, 6, generator=torch.Generator().manual_seed(0))
    sample, params = views(pairs, torch.Generator().manual_seed(2), return_params=True)
    steps = va.replay_view_3d(views, pairs[:, 0], params["view1"], sample.c1)
    assert "non-linear intensity" in [s.name for s in steps]
    assert torch.equal(steps[-2].x, sample.x1) and torch.equal(steps[-1].x, sample.T1)
    assert torch.equal(steps[0].x, sample.g1)


def test_sample_align_and_mixup_figures():
    views = PCRLViews3D(n_blocks=50)
    pairs = torch.rand(3, 2, 1, 8, 8, 4, generator=torch.Generator().manual_seed(0))
    sample = views(pairs, torch.Generator().manual_seed(0))
    lam, perm = draw_mix(3, torch.Generator().manual_seed(0))
    fig = va.pcrl_sample_figure(sample, lam, perm, index=1)
    titles = [ax.get_title() for ax in fig.axes]
    assert any(t.startswith("T1\nc = [") for t in titles) and f"x1 of partner π(1) = {int(perm[1])}" in titles
    with pytest.raises(ValueError, match="index 3 outside"):
        va.pcrl_sample_figure(sample, lam, perm, index=3)
    aligned = PCRLViews3D(n_blocks=50, align_targets=True)(pairs, torch.Generator().manual_seed(0))
    fig = va.align_figure(sample, aligned, samples=(0,))
    assert len([ax for ax in fig.axes if ax.images]) == 4
    assert len([ax for ax in va.mixup_figure(sample.g1, lam, perm, samples=(0, 1, 2, 9)).axes if ax.images]) == 9


def test_correlation_and_best_seconds():
    a = torch.rand(2, 50, generator=torch.Generator().manual_seed(0))
    c = va.correlation(a, torch.stack([2 * a[0] + 1, -a[1]]))
    assert torch.allclose(c, torch.tensor([1.0, -1.0]), atol=1e-6)
    assert float(va.correlation(a, torch.ones_like(a))[0]) == 0.0
    with pytest.raises(ValueError, match="one shape"):
        va.correlation(a, a[:1])
    calls = []
    assert va.best_seconds(lambda: calls.append(1), repeats=2) >= 0 and len(calls) == 3   # warm-up + 2
    with pytest.raises(ValueError, match="repeats"):
        va.best_seconds(lambda: None, repeats=0)


def test_bezier_figure_draws_each_curve():
    d = va.draw("non-linear intensity", image(), 2, seed=0)
    fig = va.bezier_figure(d)
    assert len(fig.axes) == 6 and all(ax.lines for ax in fig.axes[:3])
    with pytest.raises(ValueError, match="non-linear intensity"):
        va.bezier_figure(va.draw("flip", image(), 2, seed=0))
