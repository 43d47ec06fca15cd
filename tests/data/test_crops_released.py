"""The 3D crop recipe as the authors released it (``pytorch/preprocess/luna_pre.py``), the default of
:func:`pcrl_lib.data.crops.crop_pairs`: independent boxes kept at IoU > 0.25, the size-dependent lung filter on the
resized crop, and skimage's anti-aliased resize to cube_z + 3 slices (first cube_z kept). The kit's variants stay
available as switches (tests in test_preprocess.py)."""

from __future__ import annotations

import numpy as np
import pytest

from pcrl_lib.config import DataConfig, get_profile
from pcrl_lib.data.crops import (EXTRA_SLICES, PAPER_CROP_SIZES, crop_pairs, draw_box_pairs, pair_size_shares,
                                 released_lung_sum, skimage_resize)
from pcrl_lib.data.preprocess import normalize_hu, prepare_pretraining_cubes
from pcrl_lib.data.volume import Volume, write_volume

SIZES = np.array(PAPER_CROP_SIZES)


def size_shares(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Share of each of SIZES among all boxes of the pairs (both boxes pooled)."""
    sizes = np.concatenate([a[:, 3:] - a[:, :3], b[:, 3:] - b[:, :3]])
    return np.array([(sizes == s).all(1).mean() for s in SIZES])


# ------------------------------------------------------------------------------------------- the sampler
def test_released_sampler_size_distribution_matches_exact_enumeration():
    shape, margin = (170, 170, 120), (20, 20, 5)
    lo, hi = np.array(margin), np.array(shape) - margin
    a, b, raw = draw_box_pairs(np.random.default_rng(0), 12_000, SIZES, lo, hi, sampler="released")
    exact = pair_size_shares(shape, SIZES, margin)                     # (S, S) joint over accepted pairs
    drawn = size_shares(a, b)
    np.testing.assert_allclose(drawn, (exact.sum(0) + exact.sum(1)) / 2, atol=0.015)
    assert raw > 10 * len(a)                                           # most independent draws are rejected
    # Released bounds: start in [margin, size - crop - 1 - margin], z also keeping 3 spare slices.
    for box in (a, b):
        assert (box[:, :3] >= lo).all()
        assert (box[:, 3:] <= hi - np.array([1, 1, 1 + EXTRA_SLICES])).all()
    # The kit's placement is a different distribution (every size about equally often).
    kit_a, kit_b, _ = draw_box_pairs(np.random.default_rng(0), 12_000, SIZES, lo, hi, sampler="kit")
    assert np.abs(size_shares(kit_a, kit_b) - drawn).max() > 0.08


def test_released_shares_on_a_luna_sized_scan_are_dominated_by_large_crops():
    # A LUNA16 scan at 1 mm (~350 x 350 x 320): the shares the released preprocessing produces before its lung
    # filter; small crops almost never reach IoU > 0.25 with an independently placed partner.
    exact = pair_size_shares((350, 350, 320), SIZES, (70, 70, 15))
    shares = dict(zip(map(tuple, SIZES), (exact.sum(0) + exact.sum(1)) / 2))
    assert shares[(32, 32, 16)] < 0.005 and shares[(64, 64, 32)] < 0.04
    assert shares[(96, 96, 96)] > 0.3 and shares[(112, 112, 64)] > 0.3


# ------------------------------------------------------------------------------------------- the resize
def reference_resize(array: np.ndarray, shape) -> np.ndarray:
    """skimage.transform.resize(order=1, mode="reflect", anti_aliasing when shrinking), written out per axis:
    Gaussian σ = (in/out - 1)/2 (scipy's kernel, radius int(4σ + 0.5), mirrored borders), then linear
    interpolation at x = (i + 0.5) · in/out - 0.5 with mirrored neighbours, clipped to the input's range."""
    out = np.asarray(array, dtype=np.float64)
    shrink = any(o < i for o, i in zip(shape, array.shape))
    for axis, size in enumerate(shape):
        n = out.shape[axis]
        factor = n / size
        sigma = max(0.0, (factor - 1) / 2) if shrink else 0.0
        moved = np.moveaxis(out, axis, 0)
        if sigma > 1e-15:
            radius = int(4.0 * sigma + 0.5)
            x = np.arange(-radius, radius + 1)
            weights = np.exp(-0.5 * x ** 2 / sigma ** 2)
            weights /= weights.sum()
            padded = np.pad(moved, [(radius, radius)] + [(0, 0)] * (moved.ndim - 1), mode="reflect")
            moved = sum(w * padded[k:k + n] for k, w in enumerate(weights))
        coord = (np.arange(size) + 0.5) * factor - 0.5
        left = np.floor(coord).astype(int)
        frac = (coord - left).reshape(-1, *[1] * (moved.ndim - 1))

        def mirror(i):
            i = np.abs(i)
            return np.where(i > n - 1, 2 * (n - 1) - i, i)

        moved = (1 - frac) * moved[mirror(left)] + frac * moved[mirror(left + 1)]
        out = np.moveaxis(moved, 0, axis)
    return np.clip(out, array.min(), array.max())


@pytest.mark.parametrize("source, target", [((24, 24, 27), (16, 16, 11)), ((8, 8, 7), (16, 16, 11)),
                                            ((28, 28, 19), (16, 16, 11)), ((16, 16, 11), (16, 16, 11))])
def test_released_resize_is_skimage_resize(source, target):
    array = np.random.default_rng(0).random(source)
    np.testing.assert_allclose(skimage_resize(array, target), reference_resize(array, target), rtol=0, atol=1e-13)
    try:
        from skimage.transform import resize
    except ImportError:
        return
    np.testing.assert_allclose(skimage_resize(array, target), resize(array, target, preserve_range=True),
                               rtol=0, atol=1e-13)


def test_released_cubes_are_the_first_slices_of_the_resized_box_plus_three():
    hu = np.random.default_rng(3).normal(-850, 120, (60, 60, 50)).astype(np.float32)   # lung-like everywhere
    cube = (16, 16, 8)
    pairs = crop_pairs(hu, cube=cube, n_pairs=6, rng=np.random.default_rng(0), margin=(2, 2, 2))
    assert len(pairs) == 6 and pairs.cubes.dtype == np.float32
    for box, got in zip(pairs.boxes.reshape(-1, 6), pairs.cubes.reshape(-1, *cube)):
        x0, y0, z0, x1, y1, z1 = box
        window = normalize_hu(hu[x0:x1, y0:y1, z0:z1 + EXTRA_SLICES]).astype(np.float64)
        if (x1 - x0, y1 - y0, z1 - z0) != cube:
            window = reference_resize(window, (*cube[:2], cube[2] + EXTRA_SLICES))
        np.testing.assert_allclose(got, window[..., :cube[2]], atol=1e-6)


# ---------------------------------------------------------------------------------------- the lung filter
def test_released_lung_sum_counts_soft_voxels_and_half_the_ones_above_soft_voxels():
    # One crop (1, 1, 2, cube_z + 1): column 0 is [soft, lung, soft], column 1 [lung, lung, lung].
    extended = np.array([[[[0.9, 0.1, 0.9], [0.1, 0.1, 0.1]]]])
    assert released_lung_sum(extended, threshold=0.425, cube_z=2).tolist() == [1.0 + 0.5]
    assert released_lung_sum(extended[..., :2], threshold=0.425, cube_z=2).tolist() == [1.0]   # no next slice


@pytest.mark.filterwarnings("ignore:.*do not fit the scan")
def test_released_lung_filter_threshold_depends_on_the_crop_size():
    # All soft tissue (40 HU): the kit's 15 % rejects every crop; the released filter compares the resized
    # cube's sum (every voxel counts 1: 32·32·16) with 15 % of the *original* crop, so the 48³ crop (6.75 cubes)
    # passes and every smaller one fails.
    hu = np.full((52, 52, 56), 40.0, np.float32)
    pairs = crop_pairs(hu, cube=(32, 32, 16), n_pairs=3, rng=np.random.default_rng(0), margin=0, max_tries=400)
    assert len(pairs) == 3
    assert ((pairs.boxes[..., 3:] - pairs.boxes[..., :3]) == 48).all()
    np.testing.assert_allclose(pairs.soft_fraction, 32 * 32 * 16 / 48 ** 3)
    with pytest.raises(ValueError, match="no valid crop pair"):
        crop_pairs(hu, cube=(32, 32, 16), n_pairs=3, rng=np.random.default_rng(0), margin=0, max_tries=400,
                   lung_filter="kit")


def test_nan_voxels_are_a_named_error_not_lung():
    hu = np.full((60, 60, 50), -850.0, np.float32)
    hu[30, 30, 20] = np.nan
    hu[31, 30, 20] = np.inf
    for recipe in ("released", "kit"):
        with pytest.raises(ValueError, match=r"scan7\.mhd: 2 non-finite voxel\(s\)"):
            crop_pairs(hu, cube=(16, 16, 8), n_pairs=2, rng=np.random.default_rng(0), margin=2, name="scan7.mhd",
                       lung_filter=recipe)


def test_recipe_switches_are_checked_and_recorded(tmp_path):
    with pytest.raises(ValueError, match="sampler must be one of"):
        crop_pairs(np.full((60, 60, 50), -850.0), cube=(16, 16, 8), rng=np.random.default_rng(0), sampler="paper")
    with pytest.raises(ValueError, match="DataConfig.lung_filter must be one of released, kit"):
        DataConfig(lung_filter="strict")
    assert (get_profile("quick").data.crop_sampler, get_profile("paper").data.lung_filter) == ("released", "released")
    scan = write_volume(Volume(np.random.default_rng(0).normal(-850, 50, (60, 60, 50)).astype(np.float32),
                               (1.0, 1.0, 1.0)), tmp_path / "scan.mhd")
    kw = dict(cube=(16, 16, 8), pairs_per_scan=2, margin=2, progress=False)
    released = prepare_pretraining_cubes([scan], tmp_path / "released", **kw)
    kit = prepare_pretraining_cubes([scan], tmp_path / "kit", sampler="kit", lung_filter="kit", crop_resize="kit", **kw)
    assert {k: released["params"][k] for k in ("sampler", "lung_filter", "crop_resize")} == dict.fromkeys(
        ("sampler", "lung_filter", "crop_resize"), "released")
    assert kit["params"]["crop_resize"] == "kit"
