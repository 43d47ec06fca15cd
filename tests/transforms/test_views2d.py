import pytest
import torch
import torchvision.transforms as T

from pcrl_lib.transforms import (ColorJitter, Cutout, RandomGrayscale, RandomResizedCrop, denormalize, normalize)
from pcrl_lib.transforms.color import hsv_to_rgb, rgb_to_hsv
from pcrl_lib.transforms.crop import crop_resize

from . import oracles


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("size", [16, 40])    # mostly downscaling (16) and mostly upscaling (40)
def test_crop_resize_matches_per_image_bilinear_average(size):
    x = torch.rand(10, 3, 37, 29, generator=_gen())
    crop = RandomResizedCrop(size)
    y, params = crop(x, _gen(1), return_params=True)
    assert y.shape == (10, 3, size, size)
    assert torch.allclose(y, oracles.crop_resize(x, params.boxes, size), atol=1e-5)


@pytest.mark.parametrize("size", [16, 40, 128])   # batched passes (< 128) and per-sample passes (128 up)
def test_separable_crop_resize_reads_roi_aligns_samples(size):
    """The CPU separable passes against the oracle and against the previous path, roi_align (still
    used with autograd): equal up to roi_align's float32 coordinates (2e-5 at 224² from 256²). Also
    the paper's 224² from 256² (downscaled axes average 2 samples, crops on the image border) and a
    gray image expanded to RGB (resized once, the same numbers)."""
    x = torch.rand(10, 3, 37, 29, generator=_gen()) if size < 128 else torch.rand(6, 2, 150, 140, generator=_gen())
    params = RandomResizedCrop(size).draw(x.shape, _gen(1))
    y = crop_resize(x, params.boxes, size)
    assert torch.allclose(y, oracles.crop_resize(x, params.boxes, size), atol=1e-6)
    roi = crop_resize(x.clone().requires_grad_(), params.boxes, size).detach()
    assert torch.allclose(y, roi, atol=1e-5)
    big = torch.rand(4, 1, 256, 256, generator=_gen(2))
    boxes = torch.tensor([[0, 0, 256, 256], [30, 0, 120, 226], [0, 17, 240, 100], [131, 140, 125, 116]])
    y = crop_resize(big, boxes, 224)
    assert torch.allclose(y, oracles.crop_resize(big, boxes, 224), atol=1e-6)
    assert torch.allclose(y, crop_resize(big.clone().requires_grad_(), boxes, 224).detach(), atol=5e-5)
    assert torch.equal(crop_resize(big.expand(-1, 3, -1, -1), boxes, 224), y.expand(-1, 3, -1, -1))


def test_crop_boxes_follow_torchvision_rule():
    crop = RandomResizedCrop(8, scale=(0.2, 1.0))
    params = crop.draw((2000, 1, 60, 80), _gen(2))
    top, left, h, w = params.boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 60).all() and (left + w <= 80).all()
    frac = (h * w).float() / (60 * 80)
    ratio = w.float() / h.float()
    assert frac.min() > 0.17 and frac.max() <= 1.0
    # the same law as torchvision's sampler (rejection makes big crops rarer than U(0.2, 1))
    torch.manual_seed(0)
    tv = [T.RandomResizedCrop.get_params(torch.empty(1, 60, 80), [0.2, 1.0], [3 / 4, 4 / 3]) for _ in range(2000)]
    tv_frac = torch.tensor([h * w / (60 * 80) for _, _, h, w in tv])
    assert abs(frac.mean() - tv_frac.mean()) < 0.03 and abs(frac.std() - tv_frac.std()) < 0.03
    assert ratio.min() > 0.7 and ratio.max() < 1.45
    # centred fallback when no candidate fits (a wide ratio asked of a tall image), as torchvision
    tall = RandomResizedCrop(8, scale=(1.0, 1.0), ratio=(2.0, 3.0)).draw((3, 1, 40, 10), _gen())
    expected = list(T.RandomResizedCrop.get_params(torch.empty(1, 40, 10), [1.0, 1.0], [2.0, 3.0]))
    assert tall.boxes.tolist() == [expected] * 3 == [[17, 0, 5, 10]] * 3


def test_cutout_matches_released_loop_and_scales_with_size():
    x = torch.rand(12, 3, 64, 64, generator=_gen(3)) + 1
    cut = Cutout(3)
    assert cut.hole_length(224) == 32 and cut.hole_length(64) == 9
    y, params = cut(x, _gen(4), return_params=True)
    assert params.centres.shape == (12, 3, 2)
    assert torch.equal(y, oracles.cutout(x, params.centres, 9))
    assert 0 < (y == 0).float().mean() < 0.1


def test_grayscale_matches_torchvision():
    x = torch.rand(30, 3, 8, 8, generator=_gen(5))
    gray = RandomGrayscale(0.2)
    y, params = gray(x, _gen(6), return_params=True)
    assert 0 < params.index.numel() < 30
    assert torch.allclose(y, oracles.grayscale(x, params), atol=1e-6)


def test_color_jitter_matches_torchvision_in_each_samples_order():
    x = torch.rand(16, 3, 9, 7, generator=_gen(7))
    jitter = ColorJitter(0.4, 0.4, 0.4, 0.4)
    y, params = jitter(x, _gen(8), return_params=True)
    assert params.index.numel() == 16 and len({tuple(o) for o in params.order.tolist()}) > 3
    assert torch.allclose(y, oracles.jitter(x, params), atol=1e-5)
    assert y.min() >= 0 and y.max() <= 1


def test_hsv_round_trip_and_gray_stays_gray():
    x = torch.rand(4, 3, 6, 6, generator=_gen(9))
    assert torch.allclose(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-6)
    gray = x[:, :1].expand(-1, 3, -1, -1)
    params = ColorJitter(0, 0, 0, 0.4).draw(gray.shape, _gen(10))
    assert torch.allclose(ColorJitter(0, 0, 0, 0.4).apply(gray, params), gray, atol=1e-6)


def test_normalize_matches_torchvision_and_inverts():
    x = torch.rand(3, 3, 5, 5, generator=_gen(11))
    assert torch.allclose(normalize(x), oracles.normalize(x), atol=1e-6)
    assert torch.allclose(denormalize(normalize(x)), x, atol=1e-6)


@pytest.mark.parametrize("make, message", [
    (lambda: RandomResizedCrop(0), "size"),
    (lambda: RandomResizedCrop(8, scale=(0.5, 0.2)), "scale"),
    (lambda: Cutout(0), "n_holes"),
    (lambda: ColorJitter(hue=0.7), "hue"),
    (lambda: RandomGrayscale(1.5), "p"),
])
def test_bad_arguments_name_the_argument(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_inputs():
    with pytest.raises(ValueError, match="3 channels"):
        ColorJitter()(torch.rand(2, 2, 4, 4), _gen())
    params = RandomResizedCrop(4).draw((2, 3, 40, 40), _gen())
    with pytest.raises(ValueError, match="fit"):
        RandomResizedCrop(4).apply(torch.rand(2, 3, 10, 10), params)


def test_hue_turn_keeps_gray_images_exactly_and_jitter_skips_them():
    from pcrl_lib.transforms.color import adjust_hue
    gray = torch.rand(4, 1, 9, 9, generator=_gen(20)).expand(-1, 3, -1, -1).contiguous()
    assert torch.equal(adjust_hue(gray, torch.tensor([0.1, -0.3, 0.5, 0.25])), gray)
    x = torch.cat([gray, torch.rand(4, 3, 9, 9, generator=_gen(21))])
    jitter = ColorJitter(0.0, 0.0, 0.0, 0.4)
    y, params = jitter(x, _gen(22), return_params=True)
    assert torch.equal(y[:4], gray)
    assert torch.allclose(y, oracles.jitter(x, params), atol=1e-5)


def test_cutout_in_place_equals_apply():
    x = torch.rand(6, 3, 30, 30, generator=_gen(23))
    cut = Cutout(3, 8)
    params = cut.draw(x.shape, _gen(24))
    y = x.clone()
    assert cut.apply_(y, params) is y and torch.equal(y, cut.apply(x, params))
    assert torch.equal(y, oracles.cutout(x, params.centres, 8))


def test_brightness_is_the_blend_with_black_without_building_it():
    from pcrl_lib.transforms.color import _blend, adjust_brightness
    x = torch.rand(6, 3, 12, 12, generator=_gen(27))
    factor = torch.tensor([0.0, 0.6, 0.97, 1.0, 1.2, 1.4])
    assert torch.equal(adjust_brightness(x, factor), _blend(x, torch.zeros_like(x), factor))


def test_jitter_of_one_channel_is_the_jitter_of_its_gray_rgb_image():
    v = torch.rand(8, 1, 10, 10, generator=_gen(25))
    jitter = ColorJitter()
    params = jitter.draw((8, 3, 10, 10), _gen(26))
    one = jitter.apply(v, params)
    three = jitter.apply(v.expand(-1, 3, -1, -1).contiguous(), params)
    assert one.shape == (8, 1, 10, 10)
    assert torch.equal(three, one.expand(-1, 3, -1, -1))


@pytest.mark.parametrize("strengths", [(0.4, 0.4, 0.4, 0.4), (0.0, 1.5, 0.0, 0.2), (1.5, 0.0, 2.0, 0.0)])
def test_gray_jitter_in_one_pass_per_step_matches_torchvision(strengths):
    """Gray images (one channel, or R = G = B samples of an RGB batch) are jittered by one scale, shift
    and clamp per step over the whole batch; torchvision's per-image operations on the gray RGB image
    (the released-faithful reference, as the per-operation path computed them) agree to 1e-6 (the
    folded luma weights round differently), with zero strengths and factors down to 0 too. The gray
    samples of a mixed RGB batch get exactly the numbers of their one channel."""
    v = torch.rand(12, 1, 11, 9, generator=_gen(30))
    jitter = ColorJitter(*strengths)
    params = jitter.draw((12, 3, 11, 9), _gen(31))
    one = jitter.apply(v, params)
    reference = oracles.jitter(v.expand(-1, 3, -1, -1).contiguous(), params)
    assert torch.allclose(one.expand(-1, 3, -1, -1), reference, atol=1e-6)
    mixed = v.expand(-1, 3, -1, -1).clone()
    mixed[::3] = torch.rand(4, 3, 11, 9, generator=_gen(32))
    out = jitter.apply(mixed, params)
    gray = [b for b in range(12) if b % 3]
    assert torch.equal(out[gray], one[gray].expand(-1, 3, -1, -1))
    assert torch.allclose(out, oracles.jitter(mixed, params), atol=1e-5)


def test_views_rotate_with_nearest_neighbours_as_released_and_bilinear_on_request():
    """torchvision's ``RandomRotation(10)`` in the released 2D pipeline resamples with nearest neighbours (its
    default): every rotated pixel is an input pixel or the black fill. ``rotation_mode="bilinear"`` (the kit's
    earlier default) blends neighbours; the draws are the same either way."""
    from pcrl_lib.config import get_profile
    from pcrl_lib.transforms import PCRLViews2D

    assert get_profile("quick").pretrain.rotation_2d == "nearest"
    crop = torch.randint(1, 255, (4, 1, 32, 32), generator=torch.Generator().manual_seed(0)).float() / 255
    values = set(crop.unique().tolist()) | {0.0}
    rotated = {}
    for mode in ("nearest", "bilinear"):
        views = PCRLViews2D(size=32, rotation_mode=mode)
        out, params = views.rotate(crop, torch.Generator().manual_seed(1), return_params=True)
        rotated[mode] = (out, params)
    near, bil = rotated["nearest"][0], rotated["bilinear"][0]
    assert set(near.unique().tolist()) <= values, "nearest: only input values and the fill"
    assert len(set(bil.unique().tolist()) - values) > 100, "bilinear: blended values"
    assert torch.equal(rotated["nearest"][1].angles, rotated["bilinear"][1].angles), "same draws"
    with pytest.raises(ValueError, match="mode"):
        PCRLViews2D(size=32, rotation_mode="cubic")


def test_pretraining_views_take_the_configured_rotation():
    from pcrl_lib.config import get_profile
    from pcrl_lib.pretrain_setup import assemble

    cfg = get_profile("smoke").pretrain
    data = torch.rand(4, 1, 64, 64)
    for mode in ("nearest", "bilinear"):
        _, _, views = assemble(cfg.override(rotation_2d=mode), 2, data)
        assert views.rotate.mode == mode
    with pytest.raises(ValueError, match="rotation_2d"):
        cfg.override(rotation_2d="cubic")
