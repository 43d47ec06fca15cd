import pytest
import torch

from pcrl_lib.transforms import GaussianBlur, RandomAffine, RandomFlip
from pcrl_lib.transforms.spatial import BlurParams, affine_resample, gaussian_blur, sampling_matrices

from . import oracles


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_random_flip_matches_numpy_and_respects_axes():
    x = torch.rand(24, 2, 5, 4, 3, generator=_gen())
    flip = RandomFlip(3, axes=(0, 2), p=0.5)
    y, params = flip(x, _gen(1), return_params=True)
    assert not params.flips[:, 1].any() and params.flips[:, 0].any() and params.flips[:, 2].any()
    assert torch.equal(y, oracles.tca_numpy(x, params.flips, torch.zeros(24, dtype=torch.long)))


@pytest.mark.parametrize("pad", ["minimum", 0.25])
def test_affine_3d_matches_scipy(pad):
    x = torch.rand(4, 2, 9, 8, 6, generator=_gen(2)) + 0.5
    affine = RandomAffine(3, degrees=25, scales=(0.8, 1.2), pad=pad)
    y, params = affine(x, _gen(3), return_params=True)
    assert params.index.tolist() == [0, 1, 2, 3] and params.angles.shape == (4, 3)
    expected = oracles.affine(x, params, pad)
    assert torch.allclose(y, expected, atol=2e-5), (y - expected).abs().max()


@pytest.mark.parametrize("pad", ["minimum", 0.25])
def test_trilinear_by_slices_matches_one_3d_grid_sample(pad):
    """The 2D-slice read equals the 3D grid_sample: exactly up to rounding in float64, to the float32
    rounding of its tall image's row coordinate in float32 (also at the paper's 64x64x32)."""
    g = _gen(20)
    x = torch.rand(4, 2, 11, 9, 7, generator=g, dtype=torch.float64) + 0.5
    angles = (torch.rand(4, 3, generator=g) * 2 - 1) * 180      # any turn, reads well outside the volume
    matrices = sampling_matrices(angles, 0.5 + torch.rand(4, 3, generator=g))
    fast = affine_resample(x, matrices, pad, by_slices=True)
    reference = affine_resample(x, matrices, pad, by_slices=False)
    assert torch.allclose(fast, reference, rtol=0, atol=1e-12), (fast - reference).abs().max()
    x32 = x.float()
    assert torch.allclose(affine_resample(x32, matrices, pad, by_slices=True),
                          affine_resample(x32, matrices, pad, by_slices=False), rtol=0, atol=2e-5)
    paper = torch.rand(2, 1, 64, 64, 32, generator=g)
    params = RandomAffine(3).draw(paper.shape, g)
    matrices = sampling_matrices(params.angles, params.scales)
    assert torch.allclose(affine_resample(paper, matrices, pad, by_slices=True),
                          affine_resample(paper, matrices, pad, by_slices=False), rtol=0, atol=1e-3)
    assert affine_resample(paper, matrices, pad).equal(affine_resample(paper, matrices, pad, by_slices=True))


def test_affine_2d_rotation_matches_torchvision_rotate():
    """Positive angles turn counter-clockwise, like torchvision; bilinear, zero fill."""
    x = torch.rand(6, 3, 12, 12, generator=_gen(4))
    rotate = RandomAffine(2, degrees=30, scales=(1.0, 1.0), pad=0.0)
    flip = RandomFlip(2, axes=(1,), p=0.5)
    y, rp = rotate(x, _gen(5), return_params=True)
    z, fp = flip(y, _gen(6), return_params=True)
    expected = oracles.rotate_flip_torchvision(x, rp, fp)
    assert torch.allclose(z, expected, atol=1e-4), (z - expected).abs().max()


def test_affine_probability_and_identity():
    x = torch.rand(10, 1, 6, 6, 4, generator=_gen(7))
    none = RandomAffine(3, p=0.0)
    y, params = none(x, _gen(), return_params=True)
    assert params.index.numel() == 0 and torch.equal(y, x)
    ident = RandomAffine(3, degrees=0.0, scales=(1.0, 1.0))
    assert torch.allclose(ident(x, _gen()), x, atol=1e-5)
    half = RandomAffine(3, p=0.5)
    _, params = half(torch.rand(200, 1, 4, 4, 4), _gen(8), return_params=True)
    assert 60 < params.index.numel() < 140


def test_minimum_padding_fills_with_the_sample_minimum():
    x = torch.full((1, 1, 8, 8, 4), 0.7)
    x[0, 0, 0, 0, 0] = 0.2
    params = RandomAffine(3, degrees=0.0, scales=(0.5, 0.5)).draw(x.shape, _gen())
    y = RandomAffine(3, pad="minimum").apply(x, params)          # shrink by 2: the border is outside
    assert torch.allclose(y[0, 0, 0, 4, 2], torch.tensor(0.2))
    assert torch.allclose(y[0, 0, 4, 4, 2], torch.tensor(0.7))


def test_blur_3d_matches_scipy_mirror_filter():
    x = torch.rand(5, 2, 10, 9, 7, generator=_gen(9))
    blur = GaussianBlur(3, sigma=(0.0, 2.0), p=1.0, isotropic=False)
    y, params = blur(x, _gen(10), return_params=True)
    assert params.sigma.shape == (5, 3) and not torch.equal(params.sigma[:, 0], params.sigma[:, 1])
    assert torch.allclose(y, oracles.blur(x, params, blur.radius), atol=1e-5)


def test_blur_2d_matches_torchvision_gaussian_blur():
    x = torch.rand(8, 3, 20, 16, generator=_gen(11))
    blur = GaussianBlur(2, sigma=(0.1, 2.0), p=0.5)
    y, params = blur(x, _gen(12), return_params=True)
    assert 0 < params.index.numel() < 8
    assert torch.allclose(y, oracles.blur_torchvision(x, params, blur.radius), atol=1e-5)
    untouched = sorted(set(range(8)) - set(params.index.tolist()))
    assert torch.equal(y[untouched], x[untouched])


def test_blur_3d_of_long_axes_by_banded_blocks_matches_scipy():
    """Axes from 48 voxels blur by 16-row blocks of the banded matrices (two channels, a middle axis
    too): the same numbers as the scipy mirror filter."""
    x = torch.rand(2, 2, 50, 49, 8, generator=_gen(15))
    blur = GaussianBlur(3, sigma=(0.0, 2.0), p=1.0, isotropic=False)
    y, params = blur(x, _gen(16), return_params=True)
    assert torch.allclose(y, oracles.blur(x, params, blur.radius), atol=1e-5)


def test_blur_2d_of_large_images_by_convolution_equals_the_blur_matrices():
    """From 128² up a 2D blur runs as two depthwise convolutions; same numbers as the matrix path
    (forced here through a 3D volume of depth 1) up to float rounding, anisotropic sigma included."""
    x = torch.rand(3, 2, 130, 128, generator=_gen(14))
    sigma = torch.tensor([[0.1, 2.0], [1.3, 0.7], [2.0, 2.0]])
    y = gaussian_blur(x, sigma, 6)
    expected = gaussian_blur(x.unsqueeze(-1), torch.cat([sigma, torch.ones(3, 1)], 1), 6).squeeze(-1)
    assert torch.allclose(y, expected, rtol=0, atol=1e-6), (y - expected).abs().max()
    assert torch.allclose(y, oracles.blur(x, BlurParams(3, torch.arange(3), sigma), 6), atol=1e-5)


def test_blur_keeps_range_and_mean_and_smooths():
    x = torch.rand(3, 1, 16, 16, 8, generator=_gen(13))
    y = GaussianBlur(3, sigma=(1.5, 2.0), p=1.0)(x, _gen())
    assert y.min() >= 0 and y.max() <= 1
    assert y.std() < 0.5 * x.std()


@pytest.mark.parametrize("make, message", [
    (lambda: RandomFlip(3, p=1.5), "p"),
    (lambda: RandomFlip(3, axes=(3,)), "axes"),
    (lambda: RandomFlip(4), "spatial_dims"),
    (lambda: RandomAffine(3, scales=(1.1, 0.9)), "scales"),
    (lambda: RandomAffine(3, pad="edge"), "pad"),
    (lambda: GaussianBlur(2, sigma=(-1, 1)), "sigma"),
    (lambda: GaussianBlur(2, p=-0.1), "p"),
])
def test_bad_arguments_name_the_argument(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_input_layout_is_explained():
    with pytest.raises(ValueError, match="channel axis"):
        RandomFlip(3)(torch.rand(2, 4, 4, 4), _gen())
    with pytest.raises(ValueError, match="floating"):
        GaussianBlur(2)(torch.zeros(2, 1, 4, 4, dtype=torch.long), _gen())
    with pytest.raises(TypeError, match="generator"):
        RandomAffine(2)(torch.rand(2, 1, 4, 4), 0)
    params = RandomAffine(2).draw((3, 1, 4, 4), _gen())
    with pytest.raises(ValueError, match="batch of 3"):
        RandomAffine(2).apply(torch.rand(2, 1, 4, 4), params)


def test_same_seed_same_output_different_seed_different_output():
    x = torch.rand(4, 1, 8, 8, 4, generator=_gen(14))
    affine = RandomAffine(3)
    assert torch.equal(affine(x, _gen(1)), affine(x, _gen(1)))
    assert not torch.equal(affine(x, _gen(1)), affine(x, _gen(2)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_apply_matches_cpu():
    x = torch.rand(4, 1, 8, 8, 4)
    for t in (RandomAffine(3), GaussianBlur(3, p=1.0), RandomFlip(3)):
        params = t.draw(x.shape, _gen())
        assert torch.allclose(t.apply(x.cuda(), params).cpu(), t.apply(x, params), atol=1e-5)
