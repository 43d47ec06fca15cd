"""Preprocessing: resampling, HU normalisation, PCRL crop pairs, candidate cubes, patches, caches (tiny volumes)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from pcrl_lib.data.cache import input_signature, read_manifest
from pcrl_lib.data.preprocess import (CandidateDataset, ImageCacheDataset, PairDataset, SegmentationCase,
                                      SegmentationCaseDataset, candidate_cubes, crop_pairs, normalize_hu,
                                      prepare_candidate_cubes, prepare_image_cache, prepare_pretraining_cubes,
                                      prepare_segmentation_cases, resample, resample_to_reference, resampled_shape,
                                      sample_patches, scaled_crop_sizes, zscore_in_mask)
from pcrl_lib.data.volume import Volume, read_volume, write_volume
from pcrl_lib.fileio import TMP_PREFIX

CUBE = (16, 16, 8)              # a quarter of the paper's cube: crop sizes scale by 1/4
MARGIN = (6, 6, 3)
# The kit's crop recipe (placement near box A, 15 % lung filter for every size, trilinear resize); the released
# recipe, the default, is tested in test_crops_released.py.
KIT = dict(sampler="kit", lung_filter="kit", crop_resize="kit")


def chest(shape=(72, 72, 40), seed=0, soft_half=False) -> np.ndarray:
    """(X, Y, Z) HU: air outside a body ellipse, soft tissue 40 HU, two lungs at -850 HU with noise."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    hu = np.full(shape, -1000.0, dtype=np.float32)
    hu[(x / 0.95) ** 2 + (y / 0.9) ** 2 < 1] = 40.0
    lungs = ((np.abs(x) - 0.42) / 0.38) ** 2 + (y / 0.7) ** 2 + (z / 1.05) ** 2 < 1
    if soft_half:
        lungs &= x < 0          # only the left lung: the right half is soft tissue
    hu[lungs] = -850.0
    return hu + rng.normal(0, 15, shape).astype(np.float32)


def soft_fraction(hu, box):
    x0, y0, z0, x1, y1, z1 = box
    return float((hu[x0:x1, y0:y1, z0:z1] >= -150).mean())


def iou_slow(a, b):
    """IoU by counting voxels: independent of the library's formula."""
    grid = np.zeros((2, *np.maximum(a[3:], b[3:])), dtype=bool)
    grid[0, a[0]:a[3], a[1]:a[4], a[2]:a[5]] = True
    grid[1, b[0]:b[3], b[1]:b[4], b[2]:b[5]] = True
    return (grid[0] & grid[1]).sum() / (grid[0] | grid[1]).sum()


def write_scans(folder: Path, n: int, spacing=(0.8, 0.8, 2.0), soft=()) -> list[Path]:
    """``n`` anisotropic chest scans as .mhd (so the .raw beside each is part of its signature)."""
    paths = []
    for i in range(n):
        shape_1mm = (72, 72, 40)
        native = tuple(int(round(s / sp)) for s, sp in zip(shape_1mm, spacing))
        hu = np.full(native, 40.0, np.float32) if i in soft else chest(native, seed=i)
        paths.append(write_volume(Volume(hu, spacing, origin=(-30.0, 12.5, -80.0)), folder / f"scan{i}.mhd"))
    return paths


# ------------------------------------------------------------------------------------------------- intensity
def test_normalize_hu_maps_window_to_unit_range():
    out = normalize_hu(np.array([-3000, -1000, 0, 500, 1000, 3000], dtype=np.int16))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0, 0, 0.5, 0.75, 1, 1])
    np.testing.assert_allclose(normalize_hu(np.array([-200.0, 25.0, 250.0]), -200, 250), [0, 0.5, 1])
    with pytest.raises(ValueError, match="hi > lo"):
        normalize_hu(np.zeros(3), 10, 10)


def test_zscore_inside_brain_only():
    rng = np.random.default_rng(0)
    image = np.zeros((2, 12, 12, 8), np.float32)
    image[:, 2:10, 2:10, 1:7] = rng.normal([[[[100.0]]], [[[5.0]]]], [[[[20.0]]], [[[2.0]]]], (2, 8, 8, 6))
    out = zscore_in_mask(image)
    brain = (image != 0).any(0)
    np.testing.assert_allclose(out[:, brain].mean(1), 0, atol=1e-4)
    np.testing.assert_allclose(out[:, brain].std(1), 1, atol=1e-4)
    assert (out[:, ~brain] == 0).all()
    with pytest.raises(ValueError, match="empty"):
        zscore_in_mask(np.zeros((1, 4, 4, 4)))


# -------------------------------------------------------------------------------------------------- geometry
def test_resample_keeps_geometry_and_world_positions():
    spacing, origin = (0.5, 0.75, 2.0), (-10.0, 5.0, 30.0)
    direction = np.diag([1.0, -1.0, 1.0])
    array = np.zeros((40, 32, 10), np.float32)
    array[20:24, 8:12, 4:6] = 100.0                     # a block: its world centroid must not move
    labels = (array > 0).astype(np.uint8) * 3
    vol = Volume(array, spacing, origin, direction)
    out = resample(vol, 1.0)
    assert out.shape == (20, 24, 20) and out.array.dtype == np.float32
    assert out.spacing == (1.0, 1.0, 1.0) and out.origin == origin
    np.testing.assert_allclose(out.direction, direction)

    def centroid(v):
        w = v.array / v.array.sum()
        ijk = np.stack(np.meshgrid(*[np.arange(s) for s in v.shape], indexing="ij"), -1)
        return v.voxel_to_world((ijk * w[..., None]).sum((0, 1, 2)))[0]

    np.testing.assert_allclose(centroid(out), centroid(vol), atol=0.3)
    nearest = resample(Volume(labels, spacing, origin, direction), 1.0, order="nearest")
    assert nearest.array.dtype == np.uint8 and set(np.unique(nearest.array)) == {0, 3}
    assert resample(out, 1.0) is out                   # already at the spacing: no work
    with pytest.raises(ValueError, match="spacing"):
        resample(vol, (1.0, -1.0, 1.0))
    with pytest.raises(ValueError, match="order"):
        resample(vol, 1.0, order="cubic")


def test_resampled_shape_keeps_the_extent_and_resample_uses_it(monkeypatch):
    from pcrl_lib.data import preprocess

    assert resampled_shape((512, 512, 60), (0.57, 0.57, 5.0), 1.0) == (292, 292, 300)
    assert resampled_shape((40, 32, 10), (0.5, 0.75, 2.0), (1.0, 1.0, 1.0)) == (20, 24, 20)
    assert resampled_shape((3, 5, 1), 0.5, 1.0) == (2, 2, 1)        # 1.5 → 2, 2.5 → 2 (half to even), at least 1
    assert all(type(n) is int for n in resampled_shape((4, 4, 4), 1.0, 2.0))
    for bad, match in [(((4, 4), 1.0, 1.0), "shape"), (((4, 4, 4), 1.0, 0.0), "new_spacing")]:
        with pytest.raises(ValueError, match=match):
            resampled_shape(*bad)
    monkeypatch.setattr(preprocess, "resampled_shape", lambda shape, old, new: (3, 4, 5))
    assert resample(Volume(np.zeros((8, 8, 4), np.float32), (1.0, 1.0, 2.0)), 1.0).shape == (3, 4, 5)


def test_box_iou_of_known_boxes_broadcasts():
    from pcrl_lib.data.crops import box_iou

    a = np.array([0, 0, 0, 4, 4, 4])
    assert box_iou(a, a) == 1.0
    assert box_iou(a, [4, 0, 0, 8, 4, 4]) == 0.0                       # touching faces share no volume
    assert box_iou(a, [2, 0, 0, 6, 4, 4]) == pytest.approx(32 / 96)     # half of each: 32 shared of 96
    assert box_iou(a, [1, 1, 1, 3, 3, 3]) == pytest.approx(8 / 64)      # nested: the small box's volume
    many = box_iou(a[None, None], np.array([[0, 0, 0, 4, 4, 4], [10, 10, 10, 12, 12, 12]])[:, None])
    assert many.shape == (2, 1) and many.ravel().tolist() == [1.0, 0.0]


def test_resample_to_reference_aligns_in_physical_space():
    ct = Volume(np.zeros((20, 20, 10), np.float32), (1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0))
    coarse = np.zeros((10, 10, 5), np.uint8)
    coarse[2:4, 2:4, 1:3] = 1                            # world x, y in [4, 8) mm, z in [4, 12) mm
    mask = resample_to_reference(Volume(coarse, (2.0, 2.0, 4.0), origin=(0.5, 0.5, 1.0)), ct)
    assert mask.shape == ct.shape
    xs, ys, zs = np.nonzero(mask.array)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (4, 7, 4, 7)
    assert (zs.min(), zs.max()) == (2, 5)


# ------------------------------------------------------------------------------------------------ crop pairs
def test_scaled_crop_sizes_follow_the_cube():
    assert scaled_crop_sizes((64, 64, 32)) == ((64, 64, 32), (96, 96, 48), (96, 96, 96), (32, 32, 16), (112, 112, 64))
    assert scaled_crop_sizes((32, 32, 16)) == ((32, 32, 16), (48, 48, 24), (48, 48, 48), (16, 16, 8), (56, 56, 32))
    assert scaled_crop_sizes((128, 128, 64)) == scaled_crop_sizes((64, 64, 32))   # never enlarged


def test_crop_pairs_sizes_iou_lung_filter_and_margin():
    hu = chest()
    pairs = crop_pairs(hu, cube=CUBE, n_pairs=12, rng=np.random.default_rng(1), margin=MARGIN, **KIT)
    assert pairs.cubes.shape == (12, 2, *CUBE) and pairs.cubes.dtype == np.float32
    assert 0 <= pairs.cubes.min() and pairs.cubes.max() <= 1
    allowed = set(scaled_crop_sizes(CUBE))
    for (a, b), iou in zip(pairs.boxes, pairs.iou):
        assert tuple(a[3:] - a[:3]) in allowed and tuple(b[3:] - b[:3]) in allowed
        assert iou_slow(a, b) > 0.25 and iou == pytest.approx(iou_slow(a, b))
        for box in (a, b):
            assert soft_fraction(hu, box) <= 0.15
            assert (box[:3] >= MARGIN).all() and (box[3:] <= np.array(hu.shape) - MARGIN).all()
    assert pairs.notes == [] and pairs.margin == MARGIN
    # A same-size crop is the normalised HU itself (no interpolation): values check the HU window too.
    same = [(p, k) for p in range(12) for k in range(2) if tuple(np.diff(pairs.boxes[p, k].reshape(2, 3), axis=0)[0]) == CUBE]
    if same:
        p, k = same[0]
        x0, y0, z0, x1, y1, z1 = pairs.boxes[p, k]
        np.testing.assert_allclose(pairs.cubes[p, k], normalize_hu(hu[x0:x1, y0:y1, z0:z1]), atol=1e-6)


def test_lung_filter_keeps_crops_out_of_soft_tissue():
    hu = chest(soft_half=True)                         # right half of the chest is soft tissue
    pairs = crop_pairs(hu, cube=CUBE, n_pairs=8, rng=np.random.default_rng(2), margin=MARGIN, **KIT)
    assert len(pairs) == 8
    assert (pairs.boxes[..., 0] < hu.shape[0] // 2).all()   # every crop starts in the lung half
    assert max(soft_fraction(hu, box) for box in pairs.boxes.reshape(-1, 6)) <= 0.15
    with pytest.raises(ValueError, match=r"abdomen\.mhd: no valid crop pair found after 3000 tries"):
        crop_pairs(np.full((60, 60, 30), 40.0, np.float32), cube=CUBE, n_pairs=4, rng=np.random.default_rng(0),
                   margin=MARGIN, max_tries=3000, name="abdomen.mhd", **KIT)


def test_margin_reduced_on_a_small_scan_and_said_so():
    hu = chest((72, 72, 40))                           # too small for 70 (15) voxels around a 28x28x24 crop
    with pytest.warns(UserWarning, match="margin reduced"):
        pairs = crop_pairs(hu, cube=CUBE, n_pairs=4, rng=np.random.default_rng(0), **KIT)
    assert pairs.margin == (22, 22, 8) and any("margin reduced" in n for n in pairs.notes)
    assert (pairs.boxes[..., :3] >= pairs.margin).all()
    assert (pairs.boxes[..., 3:] <= np.array(hu.shape) - pairs.margin).all()
    with pytest.raises(ValueError, match="tiny.nii: scan of shape .* smaller than every crop size") as refused:
        crop_pairs(np.full((6, 6, 3), -850.0), cube=CUBE, rng=np.random.default_rng(0), name="tiny.nii")
    assert "(6, 6, 3)" in str(refused.value) and "np." not in str(refused.value)  # plain numbers (issue 14.6)


def test_same_seed_same_crops():
    hu = chest()
    a, b, c = (crop_pairs(hu, cube=CUBE, n_pairs=6, rng=np.random.default_rng(s), margin=MARGIN) for s in (5, 5, 6))
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.cubes, b.cubes)
    assert not np.array_equal(a.boxes, c.boxes)
    with pytest.raises(ValueError, match="rng is required"):
        crop_pairs(hu, cube=CUBE)


# --------------------------------------------------------------------------------- the cached pipeline
def test_prepare_pretraining_cubes_caches_and_reuses(tmp_path):
    scans = write_scans(tmp_path / "in", 3)
    out = tmp_path / "out"
    seen = []
    on_done = lambda name, entry, reused: seen.append((name, reused))  # noqa: E731
    kw = dict(cube=CUBE, pairs_per_scan=5, seed=3, margin=MARGIN, progress=False)
    manifest = prepare_pretraining_cubes(scans, out, on_done=on_done, **kw)
    assert sorted(seen) == [("scan0", False), ("scan1", False), ("scan2", False)]
    entry = manifest["items"]["scan1"]
    assert entry["outputs"] == ["scan1.npy"] and len(entry["boxes"]) == 5 and min(entry["iou"]) > 0.25
    assert entry["inputs"] == input_signature(scans[1]) and entry["inputs"][1]["path"].endswith("scan1.raw")
    cubes = np.load(out / "scan1.npy")
    assert cubes.shape == (5, 2, *CUBE) and cubes.dtype == np.float32
    # The cache equals crop_pairs on the resampled scan with the item's seed.
    from pcrl_lib.data.cache import item_rng
    direct = crop_pairs(resample(read_volume(scans[1]), 1.0).array, cube=CUBE, n_pairs=5, rng=item_rng(3, "scan1"),
                        margin=MARGIN)
    np.testing.assert_array_equal(direct.cubes, cubes)

    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")}
    seen.clear()
    prepare_pretraining_cubes(scans, out, on_done=on_done, **kw)
    assert all(reused for _, reused in seen) and len(seen) == 3
    assert mtimes == {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")}

    os.utime(scans[2], ns=(1, 1))                       # an input changed: only that scan is redone
    seen.clear()
    prepare_pretraining_cubes(scans, out, on_done=on_done, **kw)
    assert sorted(seen) == [("scan0", True), ("scan1", True), ("scan2", False)]

    seen.clear()                                        # other parameters: everything is redone
    prepare_pretraining_cubes(scans, out, on_done=on_done, **{**kw, "seed": 4})
    assert not any(reused for _, reused in seen)

    data = PairDataset(out)
    assert len(data) == 15 and data[7].shape == (2, 1, *CUBE) and data[7].dtype == torch.float32
    torch.testing.assert_close(data[5], torch.from_numpy(np.load(out / "scan1.npy")[0]).unsqueeze(1))
    assert len(PairDataset(out, scans=["scan2"])) == 5
    with pytest.raises(KeyError, match="not prepared"):
        PairDataset(out, scans=["scan9"])


def test_interrupted_run_continues_where_it_stopped(tmp_path):
    scans = write_scans(tmp_path / "in", 4)
    out = tmp_path / "out"
    kw = dict(cube=CUBE, pairs_per_scan=3, seed=0, margin=MARGIN, progress=False)
    computed = []

    def crash_after_two(name, entry, reused):
        computed.append(name)
        if len(computed) == 2:
            raise KeyboardInterrupt("simulated interruption")

    with pytest.raises(KeyboardInterrupt):
        prepare_pretraining_cubes(scans, out, on_done=crash_after_two, **kw)
    assert sorted(read_manifest(out, "pretraining_cubes")["items"]) == sorted(computed)
    first = {n: (out / f"{n}.npy").stat().st_mtime_ns for n in computed}
    second = []
    prepare_pretraining_cubes(scans, out, on_done=lambda n, e, reused: second.append((n, reused)), **kw)
    assert sorted(n for n, reused in second if not reused) == sorted({"scan0", "scan1", "scan2", "scan3"} - set(computed))
    assert first == {n: (out / f"{n}.npy").stat().st_mtime_ns for n in computed}
    assert not list(out.glob(f"{TMP_PREFIX}*"))          # no temporary files left behind


def test_parallel_run_equals_serial_and_skip_records_failures(tmp_path):
    scans = write_scans(tmp_path / "in", 3, soft={2})   # scan2 is all soft tissue: no valid crop
    kw = dict(cube=CUBE, pairs_per_scan=3, seed=0, margin=MARGIN, progress=False, max_tries=2000, **KIT)
    with pytest.raises(ValueError, match=r"scan2\.mhd: no valid crop pair"):
        prepare_pretraining_cubes(scans, tmp_path / "serial", **kw)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parallel = prepare_pretraining_cubes(scans, tmp_path / "parallel", num_workers=2, on_error="skip", **kw)
    messages = [str(w.message) for w in caught]
    assert any("skipped scan2" in m for m in messages) and any("1 item(s) failed" in m for m in messages)
    assert sorted(parallel["items"]) == ["scan0", "scan1"] and "no valid crop" in parallel["failed"]["scan2"]
    for name in ("scan0", "scan1"):
        np.testing.assert_array_equal(np.load(tmp_path / "serial" / f"{name}.npy"),
                                      np.load(tmp_path / "parallel" / f"{name}.npy"))


# ----------------------------------------------------------------------------------------- candidate cubes
def bright_point_volume():
    """Anisotropic, non-zero origin, y axis flipped; one bright voxel at a point that is a 1 mm grid point."""
    spacing, origin, direction = (0.7, 0.9, 2.0), (-50.3, 20.1, -100.0), np.diag([1.0, -1.0, 1.0])
    array = np.zeros((60, 50, 20), np.float32)         # 0 HU (→ 0.5): distinguishable from the air padding
    ijk = (30, 20, 10)                                  # → 21, 18, 20 mm from the origin: on the 1 mm grid
    array[ijk] = 1000.0
    vol = Volume(array, spacing, origin, direction, path=Path("bright.mhd"))
    return vol, vol.voxel_to_world(ijk)[0]


def test_candidate_cube_is_centred_on_the_candidate():
    vol, world = bright_point_volume()
    table = pd.DataFrame({"seriesuid": "bright", "coordX": [world[0], world[0] - 19], "coordY": [world[1], world[1]],
                          "coordZ": [world[2], world[2]], "class": [1, 0]})
    found = candidate_cubes(vol, table, size=(12, 12, 12))
    assert found.cubes.shape == (2, 12, 12, 12) and found.cubes.dtype == np.float32
    assert np.unravel_index(found.cubes[0].argmax(), (12, 12, 12)) == (6, 6, 6)
    assert found.cubes[0].max() == pytest.approx(1.0) and found.labels.tolist() == [1, 0]
    # 19 mm towards -x lies 2 mm inside the border: the cube's 4 lowest x planes are air padding (0).
    assert found.voxel[1, 0] == 2 and (found.cubes[1, :4] == 0).all()
    np.testing.assert_allclose(found.cubes[1, 4:], 0.5)
    with pytest.raises(ValueError, match="bright.mhd: 1 candidate"):
        candidate_cubes(vol, table.assign(coordZ=[world[2], world[2] + 500]), size=(12, 12, 12))
    with pytest.raises(ValueError, match="lack column"):
        candidate_cubes(vol, table.drop(columns="class"))


def test_negative_cap_and_candidate_pipeline(tmp_path):
    vol, world = bright_point_volume()
    path = write_volume(vol, tmp_path / "1.2.3.mhd")
    offsets = np.linspace(-8, 8, 9)
    table = pd.DataFrame({"seriesuid": ["1.2.3"] * 10 + ["other"], "coordX": [world[0]] + list(world[0] + offsets) + [0.0],
                          "coordY": world[1], "coordZ": world[2], "class": [1] + [0] * 9 + [1]})
    capped = [candidate_cubes(vol, table.iloc[:10], size=8, max_negatives=3, rng=np.random.default_rng(s))
              for s in (0, 0, 1)]
    assert capped[0].labels.tolist().count(0) == 3 and capped[0].labels.tolist().count(1) == 1
    np.testing.assert_array_equal(capped[0].rows, capped[1].rows)
    assert not np.array_equal(capped[0].rows, capped[2].rows)

    manifest = prepare_candidate_cubes([path], table, tmp_path / "cand", size=(8, 8, 8), max_negatives_per_scan=4,
                                       progress=False)
    entry = manifest["items"]["1.2.3"]
    assert entry["labels"].count(1) == 1 and entry["labels"].count(0) == 4 and 10 not in entry["rows"]
    data = CandidateDataset(tmp_path / "cand", out_size=(16, 16, 8))
    cube, label = data[0]
    assert len(data) == 5 and cube.shape == (1, 16, 16, 8) and label.item() == 1.0


# ------------------------------------------------------------------------------------------ patch sampling
def test_patch_sampler_oversamples_foreground():
    rng = np.random.default_rng(0)
    image = rng.random((2, 48, 48, 24)).astype(np.float32)
    mask = np.zeros((48, 48, 24), np.uint8)
    mask[40:43, 5:8, 2:4] = 2                           # one small lesion in a corner
    sample = sample_patches(image, mask, (16, 16, 8), n=60, fg_fraction=0.5, rng=rng)
    assert sample.image.shape == (60, 2, 16, 16, 8) and sample.mask.shape == (60, 16, 16, 8)
    has_fg = (sample.mask > 0).any((1, 2, 3))
    assert sample.forced.sum() == 30 and has_fg[sample.forced].all()
    assert has_fg.mean() >= 0.5
    x, y, z = sample.origins[7]
    np.testing.assert_array_equal(sample.image[7], image[:, x:x + 16, y:y + 16, z:z + 8])
    uniform = sample_patches(image, mask, (16, 16, 8), n=200, fg_fraction=0.0, rng=rng)
    assert (uniform.mask > 0).any((1, 2, 3)).mean() < 0.25      # the lesion is rarely hit by chance
    # (K, X, Y, Z) region masks (like BraTS WT/TC/ET, no background channel) and a volume smaller than the patch.
    regions = np.stack([mask > 0, mask == 2]).astype(np.uint8)
    small = sample_patches(image[:, :, :, :6], regions[..., :6], (16, 16, 8), n=4, fg_fraction=1.0, rng=rng)
    assert small.image.shape == (4, 2, 16, 16, 8) and small.mask.shape == (4, 2, 16, 16, 8)
    assert (small.image[..., 6:] == 0).all() and small.mask[:, 1].any((1, 2, 3)).all()


# ---------------------------------------------------------------------------------- segmentation volumes
def test_segmentation_cases_ct_window_mask_grid_and_mri(tmp_path):
    ct = np.full((24, 24, 12), -1000.0, np.float32)
    ct[6:18, 6:18, 2:10] = 250.0
    ct[8:10, 8:10, 4:6] = -200.0
    ct_path = write_volume(Volume(ct, (1.0, 1.0, 2.0)), tmp_path / "volume-0.nii.gz")
    mask = np.zeros((12, 12, 6), np.uint8)             # the label map on a coarser grid (like model output)
    mask[3:9, 3:9, 1:5] = 1
    mask_path = write_volume(Volume(mask, (2.0, 2.0, 4.0), origin=(0.5, 0.5, 1.0)), tmp_path / "segmentation-0.nii.gz")
    prepare_segmentation_cases([SegmentationCase("liver0", (ct_path,), mask_path)], tmp_path / "lits",
                               spacing=(2.0, 2.0, 2.0), progress=False)
    case = SegmentationCaseDataset(tmp_path / "lits")[0]
    assert case["image"].shape == (1, 12, 12, 12) and case["mask"].shape == (12, 12, 12)
    assert case["image"].min() == 0 and case["image"].max() == 1
    assert case["image"][0, 7, 7, 5] == 1.0 and case["image"][0, 4, 4, 4] == 0.0   # 250 → 1; -200 → 0
    assert set(case["mask"].unique().tolist()) == {0, 1} and case["mask"][6, 6, 6] == 1 and case["mask"][0, 0, 0] == 0

    rng = np.random.default_rng(0)
    brain = np.zeros((16, 16, 8), np.float32)
    brain[4:12, 4:12, 2:6] = 1
    modalities = [write_volume(Volume(brain * rng.normal(300 * (i + 1), 30, brain.shape).astype(np.float32), (1, 1, 1)),
                               tmp_path / f"case_{m}.nii.gz") for i, m in enumerate(("t1", "flair"))]
    prepare_segmentation_cases([{"name": "case", "images": modalities, "mask": None}], tmp_path / "brats",
                               modality="mri", progress=False)
    mri = SegmentationCaseDataset(tmp_path / "brats")[0]
    inside = mri["image"][:, brain > 0]
    assert not mri["has_mask"] and torch.allclose(inside.mean(1), torch.zeros(2), atol=1e-4)
    assert (mri["image"][:, brain == 0] == 0).all()


# --------------------------------------------------------------------------------------------- 2D images
def test_image_cache_resizes_labels_and_resumes(tmp_path):
    folder = tmp_path / "img"
    folder.mkdir()
    Image.fromarray(np.full((40, 60), 128, np.uint8)).save(folder / "a.png")            # wide grey
    Image.fromarray(np.full((30, 20, 3), (255, 255, 255), np.uint8)).save(folder / "b.jpg")  # tall colour
    Image.fromarray(np.full((32, 32), 65535, np.uint16)).save(folder / "c.png")          # 16-bit white
    gradient = np.tile(np.arange(64, dtype=np.uint8) * 4, (32, 1))
    Image.fromarray(gradient).save(folder / "d.png")                                     # left→right ramp
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(folder / "e.png")
    paths = sorted(folder.iterdir())
    labels = np.eye(5, 2, dtype=np.float32)
    out = tmp_path / "cache"
    chunks = []

    def crash(name, entry, reused):
        chunks.append(name)
        if len(chunks) == 2:
            raise RuntimeError("simulated interruption")

    with pytest.raises(RuntimeError):
        prepare_image_cache(paths, out, size=16, labels=labels, label_names=["x", "y"], chunk_size=2,
                            progress=False, on_done=crash)
    with pytest.raises(ValueError, match="incomplete"):
        ImageCacheDataset(out)
    again = []
    prepare_image_cache(paths, out, size=16, labels=labels, label_names=["x", "y"], chunk_size=2, progress=False,
                        on_done=lambda n, e, reused: again.append(reused))
    assert again == [True, True, False]
    images = np.load(out / "images.npy")
    assert images.shape == (5, 16, 16) and images.dtype == np.uint8
    assert (images[0] == 128).all() and (images[1] == 255).all() and (images[2] == 255).all()
    ramp = images[3].astype(int)
    assert (np.diff(ramp, axis=1) >= 0).all() and ramp[:, 0].max() < 80 and ramp[:, -1].min() > 180  # centre crop
    data = ImageCacheDataset(out, rows=[1, 3])
    image, label = data[1]
    assert image.shape == (1, 16, 16) and image.dtype == torch.float32 and label.tolist() == [0.0, 0.0]
    assert data.label_names == ["x", "y"] and data[0][1].tolist() == [0.0, 1.0]
    plain = prepare_image_cache(paths, tmp_path / "plain", size=8, mode="resize", progress=False)
    assert plain["params"]["mode"] == "resize" and ImageCacheDataset(tmp_path / "plain")[0].shape == (1, 8, 8)
    (folder / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png: cannot decode"):
        prepare_image_cache([folder / "broken.png"], tmp_path / "bad", size=8, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(FileNotFoundError, match="missing.png"):
            prepare_image_cache([folder / "missing.png"], tmp_path / "bad", size=8, progress=False)


def test_2d_pretraining_cache_is_the_source_resolution_not_the_view_size(embedded):
    from pcrl_lib.config import get_profile
    from pcrl_lib.pretrain_runs import pretraining_dataset

    source = get_profile("smoke").data.source_size_2d
    data = pretraining_dataset("smoke", 2, progress=False, image_size_2d=source // 2)    # views half the cache
    assert data[0].shape == (1, source, source)
    with pytest.raises(ValueError, match="smaller than the views"):
        pretraining_dataset("smoke", 2, progress=False, image_size_2d=source * 2)
    quick, paper = get_profile("quick"), get_profile("paper")
    assert quick.data.source_size_2d == 2 * quick.pretrain.image_size_2d       # 128 px source, 64 px views
    assert paper.data.source_size_2d == 1024 and paper.pretrain.image_size_2d == 224   # NIH's originals


def test_run_config_records_the_data_recipe(tmp_path):
    from pcrl_lib.config import get_profile
    from pcrl_lib.pretrain_setup import ImagesOnly
    from pcrl_lib.train import run_config

    folders = [tmp_path / "here", tmp_path / "moved"]
    for folder in folders:
        folder.mkdir()
        for i in range(3):
            Image.fromarray(np.full((40, 40), 60 * i, np.uint8)).save(folder / f"x{i}.png")
    made = {}
    for name, folder, size in (("a", folders[0], 16), ("moved", folders[1], 16), ("big", folders[0], 24)):
        prepare_image_cache(sorted(folder.iterdir()), tmp_path / name, size=size, progress=False)
        made[name] = run_config(get_profile("smoke").pretrain, spatial_dims=2, seed=0, num_items=3,
                                dataset=ImagesOnly(ImageCacheDataset(tmp_path / name)))
    assert made["a"]["data"]["params"]["size"] == 16 and made["big"]["data"]["params"]["size"] == 24
    assert made["a"]["data"] == made["moved"]["data"]          # same files elsewhere: the same recipe
    assert made["a"]["data"] != made["big"]["data"]
    plain = run_config(get_profile("smoke").pretrain, spatial_dims=2, seed=0, num_items=3,
                       dataset=torch.utils.data.TensorDataset(torch.zeros(3)))
    assert "data" not in plain


def test_models_genesis_2d_input_is_cut_to_the_view_size_from_a_larger_cache():
    from pcrl_lib.pretrain_setup import GenesisViews

    sample = GenesisViews(2, 16)(torch.rand(2, 1, 32, 32), torch.Generator().manual_seed(0))
    assert sample.x.shape == sample.target.shape == (2, 3, 16, 16)
