import pytest
import torch

from pcrl_lib.transforms import GenesisRestoration, NonlinearIntensity, Painting, RestorationSample, draw_genesis_flips
from pcrl_lib.transforms.genesis import box_mask

from . import oracles


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("shape", [(12, 1, 8, 8, 4), (12, 3, 10, 10)])
def test_nonlinear_matches_numpy_interp_and_stays_in_unit_range(shape):
    x = torch.rand(shape, generator=_gen())
    t = NonlinearIntensity(len(shape) - 2, p=0.75, n_points=500)
    y, params = t(x, _gen(1), return_params=True)
    assert 0 < params.index.numel() < 12 and params.invert.any() and not params.invert.all()
    assert torch.allclose(y, oracles.nonlinear(x, params, 500), atol=1e-6)
    assert y.min() >= 0 and y.max() <= 1
    untouched = sorted(set(range(12)) - set(params.index.tolist()))
    assert torch.equal(y[untouched], x[untouched])


def test_nonlinear_curve_is_monotone_and_inverted_curve_swaps_ends():
    ramp = torch.linspace(0, 1, 101).view(1, 1, 101, 1).repeat(2, 1, 1, 1)
    t = NonlinearIntensity(2, p=1.0)
    params = t.draw(ramp.shape, _gen(2))
    params = type(params)(batch_size=2, index=params.index, control=params.control,
                          invert=torch.tensor([False, True]))
    y = t.apply(ramp, params)[:, 0, :, 0]
    assert (y[0].diff() >= -1e-9).all() and (y[1].diff() <= 1e-9).all()
    assert torch.allclose(y[0, [0, -1]], torch.tensor([0.0, 1.0]), atol=1e-6)
    assert torch.allclose(y[1, [0, -1]], torch.tensor([1.0, 0.0]), atol=1e-6)


@pytest.mark.parametrize("shape", [(16, 1, 21, 21, 14), (16, 2, 30, 24)])
def test_painting_matches_box_loop(shape):
    x = torch.rand(shape, generator=_gen(3))
    t = Painting(len(shape) - 2, p=0.9, inpaint_p=0.5)
    y, params = t(x, _gen(4), return_params=True)
    assert params.outpaint.any() and not params.outpaint.all()
    assert torch.equal(y, oracles.painting(x, params))
    assert y.min() >= 0 and y.max() <= 1


def test_outpainting_keeps_exactly_the_windows():
    x = torch.rand(20, 1, 28, 28, 14, generator=_gen(5)) * 0.5 + 2.0      # noise is < 1: easy to tell apart
    t = Painting(3, p=1.0, inpaint_p=0.0)
    y, params = t(x, _gen(6), return_params=True)
    assert params.outpaint.all() and (params.count >= 1).all() and (params.count <= 5).all()
    kept = box_mask(params.corners, params.sizes, params.count, x.shape[2:]).unsqueeze(1)
    assert torch.equal(y[kept], x[kept])
    assert (y[~kept] < 1).all()
    # windows are 3/7..4/7 of each side smaller than the cube and stay 3 voxels off the border
    n = torch.tensor([28, 28, 14])
    assert (params.sizes >= n - 4 * n // 7).all() and (params.sizes <= n - 3 * n // 7).all()
    assert (params.corners >= 3).all() and (params.corners + params.sizes <= n - 3).all()


def test_inpainting_boxes_get_noise_and_rest_is_kept():
    x = torch.full((30, 1, 24, 24, 12), 5.0)
    t = Painting(3, p=1.0, inpaint_p=1.0)
    y, params = t(x, _gen(7), return_params=True)
    assert not params.outpaint.any()
    painted = box_mask(params.corners, params.sizes, params.count, x.shape[2:]).unsqueeze(1)
    assert torch.equal(y[~painted], x[~painted]) and (y[painted] < 1).all()
    # box count: while U < 0.95, at most 5 — almost always 5, sometimes fewer
    assert params.count.max() == 5 and params.count.min() >= 0


def test_shared_mode_for_pairs():
    t = Painting(3)
    mode = t.draw_mode(64, _gen(8))
    assert set(mode.unique().tolist()) == {0, 1, 2}
    a = t.draw((64, 1, 16, 16, 8), _gen(9), mode=mode)
    b = t.draw((64, 1, 16, 16, 8), _gen(10), mode=mode)
    assert torch.equal(a.index, b.index) and torch.equal(a.outpaint, b.outpaint)
    assert not torch.equal(a.corners, b.corners)
    with pytest.raises(ValueError, match="mode"):
        t.draw((2, 1, 16, 16, 8), _gen(), mode=torch.tensor([0, 3]))


def test_tiny_volumes_are_legal():
    x = torch.rand(6, 1, 6, 6, 4, generator=_gen(11))
    y = Painting(3, p=1.0, inpaint_p=0.5)(x, _gen(12))
    assert y.shape == x.shape


def test_genesis_flips_net_parity():
    params = draw_genesis_flips(2000, 3, 0.4, _gen(13))
    rate = params.flips.float().mean().item()
    # P(axis flipped) with up to 3 flips each w.p. 0.4 chained, axis uniform of 3: about 0.16
    assert 0.12 < rate < 0.21


def test_restoration_sample_pairs_distorted_input_with_clean_target():
    x = torch.rand(6, 1, 20, 20, 10, generator=_gen(14))
    sample = GenesisRestoration(3, flip_p=0.0, n_blocks=200)(x, _gen(15))
    assert isinstance(sample, RestorationSample) and sample.batch_size == 6
    assert torch.equal(sample.target, x)                   # no flips: the clean cube itself
    assert not torch.equal(sample.x, x)
    assert sample.x.min() >= 0 and sample.x.max() <= 1
    flipped = GenesisRestoration(3, flip_p=1.0, n_blocks=10)(x, _gen(16))
    assert not torch.equal(flipped.target, x)
    # flips only move voxels: each target holds exactly its cube's values
    assert torch.equal(flipped.target.flatten(1).sort(1).values, x.flatten(1).sort(1).values)


@pytest.mark.parametrize("make, message", [
    (lambda: NonlinearIntensity(3, p=2), "p"),
    (lambda: NonlinearIntensity(3, n_points=1), "n_points"),
    (lambda: Painting(3, inpaint_p=1.2), "inpaint_p"),
    (lambda: Painting(3, max_boxes=0), "max_boxes"),
    (lambda: GenesisRestoration(3, flip_p=-1), "flip_p"),
])
def test_bad_arguments_name_the_argument(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_wrong_ndim_is_rejected():
    with pytest.raises(ValueError, match="x must have 5 dims"):
        Painting(3)(torch.rand(2, 1, 8, 8), _gen())
    with pytest.raises(ValueError, match="x must have 4 dims"):
        NonlinearIntensity(2)(torch.rand(2, 1, 8, 8, 8), _gen())


def test_painting_draws_noise_only_where_it_paints():
    # in-painting draws noise for its boxes only (side <= n // 3), out-painting one canvas per sample
    t = Painting(3, p=1.0, inpaint_p=0.5)
    params = t.draw((40, 2, 30, 24, 12), _gen(11))
    A_out = int(params.outpaint.sum())
    assert 0 < A_out < 40
    assert params.canvas.shape == (A_out, 1, 30, 24, 12)
    used = torch.arange(5).view(1, 5) < params.count.view(-1, 1)
    inpainted = used & ~params.outpaint.view(-1, 1)
    assert params.box_noise.shape == (int(params.sizes.prod(-1)[inpainted].sum()),)
    x = torch.rand(40, 2, 30, 24, 12, generator=_gen(12))
    y = x.clone()
    assert t.apply_(y, params) is y and torch.equal(y, t.apply(x, params))
    with pytest.raises(ValueError, match="spatial size"):
        t.apply(torch.rand(40, 2, 30, 24, 14), params)


def _torch_painting_draw(t, shape, generator):
    """Painting.draw as it was written before its integer arithmetic moved to NumPy (torch ops on
    the generator's device, base.randint), kept to check that the draw did not change."""
    from pcrl_lib.transforms.base import rand, randint
    B, _, *spatial = shape
    mode = t.draw_mode(B, generator)
    index = torch.nonzero(mode != 0).flatten()
    outpaint = mode.index_select(0, index) == 2
    A, K, sd = index.numel(), t.max_boxes, len(spatial)
    n = torch.tensor(spatial, dtype=torch.long).expand(A, K, sd)
    go = (rand((A, K), generator) < t.continue_p).long()
    count = torch.where(outpaint, 1 + go[:, :K - 1].cumprod(1).sum(1), go.cumprod(1).sum(1))
    size_in = randint(n // 6, n // 3, generator).clamp_min(1)
    size_out = n - randint(3 * n // 7, 4 * n // 7, generator)
    sizes = torch.where(outpaint.view(A, 1, 1), size_out, size_in)
    margin = torch.minimum(torch.full_like(n, t.margin), (n - sizes) // 2)
    corners = randint(margin, n - sizes - margin, generator)
    used = torch.arange(K).view(1, K) < count.view(A, 1)
    fill = int((sizes.prod(-1) * (used & ~outpaint.view(A, 1))).sum())
    return (index, outpaint, corners, sizes, count, rand((int(outpaint.sum()), 1, *spatial), generator),
            rand((fill,), generator))


@pytest.mark.parametrize("shape, inpaint_p, max_boxes", [((40, 1, 64, 64, 32), 0.5, 5), ((30, 2, 9, 7, 5), 0.5, 3),
                                                        ((20, 3, 40, 30), 0.3, 1), ((6, 1, 64, 64, 32), 1.0, 5)])
def test_painting_draw_is_the_torch_draw_it_replaced(shape, inpaint_p, max_boxes):
    t = Painting(len(shape) - 2, p=0.8, inpaint_p=inpaint_p, max_boxes=max_boxes)
    params = t.draw(shape, _gen(14))
    reference = _torch_painting_draw(t, shape, _gen(14))
    got = (params.index, params.outpaint, params.corners, params.sizes, params.count, params.canvas, params.box_noise)
    for name, a, b in zip("index outpaint corners sizes count canvas box_noise".split(), got, reference):
        assert a.dtype == b.dtype and torch.equal(a, b), name


@pytest.mark.parametrize("n_points", [7, 1000, 100_000])
def test_curve_lookup_table_equals_exact_interp_also_on_steep_curves(n_points):
    from pcrl_lib.transforms.genesis import apply_curve, batched_interp, bezier_lookup
    g = _gen(12)
    control = torch.rand(6, 2, 2, generator=g) ** 4            # control points near 0: steep ends
    control[0] = torch.tensor([[0.0, 1.0], [0.0, 1.0]])       # vertical start
    xs, ys = bezier_lookup(control, torch.tensor([False, True] * 3), n_points)
    v = torch.rand(6, 3000, generator=g)
    v[:, :6] = torch.tensor([0.0, 1.0, -0.5, 1.5, 2.0 ** -14, 1 - 2.0 ** -24])
    y = apply_curve(v, xs, ys, cells=1024)
    assert y.dtype == torch.float32
    assert torch.allclose(y.double(), batched_interp(v.double().clamp(0, 1), xs, ys), atol=2e-7, rtol=0)


def test_nonlinear_keeps_float64_precision():
    x = torch.rand(4, 1, 6, 6, 3, generator=_gen(13), dtype=torch.float64)
    t = NonlinearIntensity(3, p=1.0, n_points=300)
    y, params = t(x, _gen(14), return_params=True)
    assert y.dtype == torch.float64
    assert torch.allclose(y, oracles.nonlinear(x, params, 300), atol=1e-12, rtol=0)
