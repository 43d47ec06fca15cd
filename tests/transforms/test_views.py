import pytest
import torch

from pcrl_lib.transforms import PCRLSample, PCRLViews2D, PCRLViews3D, decode_tca, denormalize, normalize, tca_apply

from . import oracles


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _pairs(B=4, shape=(24, 24, 12), seed=0):
    return torch.rand(B, 2, 1, *shape, generator=_gen(seed))


def test_3d_sample_fields_shapes_and_relations():
    pairs = _pairs()
    views = PCRLViews3D(n_blocks=300)
    sample, params = views(pairs, _gen(1), return_params=True)
    assert isinstance(sample, PCRLSample) and sample.batch_size == 4 and sample.spatial_dims == 3
    for name in ("x1", "x2", "T1", "T2", "g1", "g2"):
        assert getattr(sample, name).shape == (4, 1, 24, 24, 12)
    assert sample.c1.shape == sample.c2.shape == (4, 7)
    decode_tca(sample.c1)
    # T = the distorted view after its coded flips/rotation; g = the clean crop (released alignment)
    assert torch.equal(sample.T1, tca_apply(sample.x1, sample.c1))
    assert torch.equal(sample.T2, tca_apply(sample.x2, sample.c2))
    assert torch.equal(sample.g1, pairs[:, 0]) and torch.equal(sample.g2, pairs[:, 1])
    assert not torch.equal(sample.x1, pairs[:, 0])
    # one painting decision per pair, boxes drawn per view
    p1, p2 = params["view1"]["painting"], params["view2"]["painting"]
    assert torch.equal(p1.index, p2.index) and torch.equal(p1.outpaint, p2.outpaint)
    assert sample.x1.min() >= 0 and sample.x1.max() <= 1


def test_3d_view_matches_the_step_by_step_oracle():
    pairs = _pairs(B=3, shape=(20, 20, 10), seed=2)
    views = PCRLViews3D(n_blocks=200, shuffle_p=1.0)
    sample, params = views(pairs, _gen(3), return_params=True)
    x, T = oracles.views3d_view(pairs[:, 0], params["view1"], sample.c1, views)
    # 1e-4: the affine reads X slices of one tall 2D image, whose float32 row coordinate rounds at
    # ~1e-7 * rows / 2 of a voxel (see spatial._trilinear_by_slices)
    assert torch.allclose(sample.x1, x, atol=1e-4) and torch.allclose(sample.T1, T, atol=1e-4)


def test_3d_aligned_targets_get_the_inputs_flip_and_affine():
    pairs = _pairs(seed=4)
    views = PCRLViews3D(n_blocks=100, flip_p=1.0, align_targets=True)
    sample, params = views(pairs, _gen(5), return_params=True)
    p = params["view1"]
    expected = views.affine.apply(views.flip.apply(pairs[:, 0], p["flip"]), p["affine"])
    assert torch.equal(sample.g1, expected) and not torch.equal(sample.g1, pairs[:, 0])


def test_2d_sample_from_gray_images():
    images = torch.rand(5, 1, 48, 40, generator=_gen(6))
    views = PCRLViews2D(size=32)
    sample, params = views(images, _gen(7), return_params=True)
    for name in ("x1", "x2", "T1", "T2", "g1", "g2"):
        assert getattr(sample, name).shape == (5, 3, 32, 32)
    assert sample.c1.shape == (5, 6)
    assert torch.equal(sample.T1, tca_apply(sample.x1, sample.c1))
    crop = views.crop.apply(images.expand(-1, 3, -1, -1), params["view1"]["crop"])
    assert torch.allclose(sample.g1, normalize(crop))                    # clean crop, normalised
    g = denormalize(sample.g1)
    assert g.min() > -1e-5 and g.max() < 1 + 1e-5
    assert torch.allclose(g[:, 0], g[:, 1], atol=1e-5)                  # gray stays gray in g
    # x: cutout holes (zeros after normalisation) of round(32 * 32 / 224) = 5 px → 4 px squares
    assert (sample.x1 == 0).all(1).any()


def test_2d_aligned_targets_get_rotation_and_flip():
    images = torch.rand(4, 3, 40, 40, generator=_gen(8))
    views = PCRLViews2D(size=24, align_targets=True, flip_p=1.0)
    sample, params = views(images, _gen(9), return_params=True)
    p = params["view1"]
    crop = views.crop.apply(images, p["crop"])
    expected = normalize(views.flip.apply(views.rotate.apply(crop, p["rotate"]), p["flip"]))
    assert torch.allclose(sample.g1, expected, atol=1e-6)
    assert not torch.allclose(sample.g1, normalize(crop), atol=1e-3)


def test_same_seed_same_sample_different_seed_different_sample():
    pairs = _pairs(seed=10)
    views = PCRLViews3D(n_blocks=100)
    a, b, c = views(pairs, _gen(1)), views(pairs, _gen(1)), views(pairs, _gen(2))
    assert all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("x1", "x2", "T1", "c1", "c2"))
    assert not torch.equal(a.x1, c.x1)
    images = torch.rand(3, 3, 30, 30, generator=_gen(11))
    v2 = PCRLViews2D(size=16)
    assert torch.equal(v2(images, _gen(3)).x2, v2(images, _gen(3)).x2)
    assert not torch.equal(v2(images, _gen(3)).x2, v2(images, _gen(4)).x2)


def test_sample_to_device_and_validation():
    sample = PCRLViews2D(size=16)(torch.rand(2, 3, 20, 20), _gen())
    moved = sample.to("cpu")
    assert moved is not sample and torch.equal(moved.x1, sample.x1)
    with pytest.raises(ValueError, match="c1"):
        PCRLSample(x1=sample.x1, x2=sample.x2, T1=sample.T1, T2=sample.T2, c1=torch.zeros(2, 7), c2=sample.c2,
                   g1=sample.g1, g2=sample.g2)
    with pytest.raises(ValueError, match="g2"):
        PCRLSample(x1=sample.x1, x2=sample.x2, T1=sample.T1, T2=sample.T2, c1=sample.c1, c2=sample.c2,
                   g1=sample.g1, g2=sample.g2[:1])


def test_bad_inputs():
    with pytest.raises(ValueError, match="pairs"):
        PCRLViews3D()(torch.rand(2, 1, 16, 16, 8), _gen())
    with pytest.raises(ValueError, match="channels"):
        PCRLViews2D(16)(torch.rand(2, 2, 20, 20), _gen())
    with pytest.raises(ValueError, match="images must have 4 dims"):
        PCRLViews2D(16)(torch.rand(2, 20, 20), _gen())
    with pytest.raises(ValueError, match="jitter"):
        PCRLViews2D(16, jitter=(0.4, 0.4))
    with pytest.raises(ValueError, match="tca_flip_p"):
        PCRLViews3D(tca_flip_p=2.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batches_stay_on_cuda():
    pairs = _pairs().cuda()
    sample = PCRLViews3D(n_blocks=100)(pairs, torch.Generator(device="cuda").manual_seed(0))
    assert sample.x1.is_cuda and sample.c1.is_cuda and sample.g1.is_cuda
    images = torch.rand(3, 1, 40, 40, device="cuda")
    s2 = PCRLViews2D(size=32)(images, torch.Generator().manual_seed(0))     # CPU-drawn params, GPU batch
    assert s2.x1.is_cuda and s2.T2.is_cuda


def test_2d_gray_images_give_the_sample_of_their_three_channel_copies():
    # gray images take a one-channel path up to the colour jitter; the numbers are those of (v, v, v)
    images = torch.rand(6, 1, 40, 40, generator=_gen(30))
    views = PCRLViews2D(size=24, gray_p=0.5, blur_p=0.5)
    gray, p_gray = views(images, _gen(31), return_params=True)
    rgb, p_rgb = views(images.expand(-1, 3, -1, -1).contiguous(), _gen(31), return_params=True)
    assert 0 < p_gray["view1"]["gray"].index.numel() < 6 and 0 < p_gray["view1"]["blur"].index.numel() < 6
    for name in ("x1", "x2", "T1", "T2", "g1", "g2", "c1", "c2"):
        assert torch.allclose(getattr(gray, name), getattr(rgb, name), atol=1e-5), name
