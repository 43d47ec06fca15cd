"""Segmentation building blocks: sliding-window inference, Dice + BCE, structures, patch sampling."""

import pytest
import torch

from pcrl_lib.finetune import (BRATS_STRUCTURES, DiceBCELoss, PatchDataset, SegmentationTask, build_segmenter,
                               gaussian_importance, sliding_window_inference, structure_masks)


@pytest.fixture(scope="module")
def tiny_unet():
    torch.manual_seed(0)
    return build_segmenter(3, 2, width=4).eval()


@pytest.mark.parametrize("weighting", ["gaussian", "uniform"])
def test_window_covering_the_volume_equals_whole_volume_inference(tiny_unet, weighting):
    x = torch.randn(2, 1, 16, 16, 8)
    with torch.no_grad():
        whole = tiny_unet(x)
        stitched = sliding_window_inference(x, tiny_unet, (16, 16, 8), weighting=weighting)
    assert stitched.shape == whole.shape
    assert torch.allclose(stitched, whole, atol=1e-5)


@pytest.mark.parametrize("overlap,weighting", [(0.5, "gaussian"), (0.25, "uniform"), (0.0, "gaussian")])
def test_overlapping_windows_of_a_pointwise_model_equal_whole_volume(overlap, weighting):
    torch.manual_seed(1)
    model = torch.nn.Conv3d(2, 3, kernel_size=1)          # fully convolutional without context
    x = torch.randn(1, 2, 21, 18, 11)                    # not a multiple of the window or the stride
    with torch.no_grad():
        stitched = sliding_window_inference(x, model, (8, 8, 4), overlap=overlap, weighting=weighting,
                                            sw_batch_size=3)
        assert torch.allclose(stitched, model(x), atol=1e-5)


def test_volume_smaller_than_window_is_padded_and_cropped():
    model = torch.nn.Conv2d(1, 1, kernel_size=1)
    x = torch.randn(2, 1, 5, 7)
    with torch.no_grad():
        out = sliding_window_inference(x, model, (8, 8))
        assert out.shape == (2, 1, 5, 7) and torch.allclose(out, model(x), atol=1e-6)


def test_every_voxel_is_covered_by_some_window():
    # Every window predicts 1: any voxel left uncovered (weight 0) would come out NaN or 0.
    ones = sliding_window_inference(torch.zeros(1, 1, 20, 20, 12), lambda p: torch.ones_like(p), (8, 8, 8))
    assert torch.allclose(ones, torch.ones_like(ones))


def test_sliding_window_argument_errors():
    x = torch.zeros(1, 1, 8, 8, 8)
    with pytest.raises(ValueError, match="overlap"):
        sliding_window_inference(x, lambda p: p, (8, 8, 8), overlap=1.0)
    with pytest.raises(ValueError, match="spatial axes"):
        sliding_window_inference(x, lambda p: p, (8, 8))
    with pytest.raises(ValueError, match="keep the batch and spatial"):
        sliding_window_inference(x, lambda p: p[..., :4], (8, 8, 8))


def test_gaussian_importance_peaks_in_the_centre():
    w = gaussian_importance((9, 9, 5))
    assert w.shape == (9, 9, 5) and w[4, 4, 2] == w.max() == 1.0
    assert torch.allclose(w, w.flip(0)) and w[0, 0, 0] < w[4, 4, 2] and w.min() >= 1e-3


def test_dice_bce_loss_behaviour():
    loss = DiceBCELoss()
    target = torch.zeros(2, 1, 8, 8, 4)
    target[:, :, 2:6, 2:6] = 1
    perfect = (target * 2 - 1) * 20                        # confident, correct logits
    wrong = -perfect
    assert loss(perfect, target) < 1e-3 < 1.0 < loss(wrong, target)
    logits = torch.randn(2, 1, 8, 8, 4)
    assert torch.allclose(loss(logits, target), loss.from_probabilities(torch.sigmoid(logits), target), atol=1e-5)
    with pytest.raises(ValueError, match="structure_masks"):
        loss(logits, target[:, :, :4])


def test_structure_masks_brats_regions():
    seg = torch.tensor([[0, 1, 2, 4]]).reshape(1, 1, 1, 4)
    masks = structure_masks(seg, BRATS_STRUCTURES)
    assert masks.shape == (1, 3, 1, 1, 4)
    assert masks[0, :, 0, 0].int().tolist() == [[0, 1, 1, 1], [0, 1, 0, 1], [0, 0, 0, 1]]


def _cases(n=2, size=(20, 20, 12)):
    cases = []
    for i in range(n):
        mask = torch.zeros(size, dtype=torch.long)
        mask[3 + i:7 + i, 4:8, 2:6] = 1
        cases.append({"image": torch.randn(1, *size), "mask": mask, "name": f"case{i}"})
    return cases


def test_patch_dataset_is_a_function_of_seed_epoch_index():
    cases = _cases()
    ds = PatchDataset(cases, (8, 8, 8), patches_per_case=3, foreground_prob=0.0, seed=4)
    assert len(ds) == 6
    first = [ds[i]["image"] for i in range(len(ds))]
    assert all(torch.equal(a, ds[i]["image"]) for i, a in enumerate(first))
    ds.set_epoch(1)
    assert any(not torch.equal(a, ds[i]["image"]) for i, a in enumerate(first))
    item = ds[0]
    assert item["image"].shape == (1, 8, 8, 8) and item["mask"].shape == (8, 8, 8)


def test_patch_dataset_fixed_patches_per_epoch_cycles_through_cases():
    cases = _cases(3)
    for k, case in enumerate(cases):
        case["image"] = torch.full_like(case["image"], float(k))      # tells the cases apart
    ds = PatchDataset(cases, (8, 8, 8), patches_per_epoch=8, foreground_prob=1.0, seed=0)
    assert len(ds) == 8                                                # independent of the number of cases
    assert [int(ds[i]["image"][0, 0, 0, 0]) for i in range(8)] == [0, 1, 2, 0, 1, 2, 0, 1]
    assert all(ds[i]["mask"].any() for i in range(8))
    one = PatchDataset(cases[:1], (8, 8, 8), patches_per_epoch=8, seed=0)
    assert len(one) == 8                                               # 1 labelled case: as many steps as 3
    with pytest.raises(IndexError, match="out of range"):
        one[8]
    with pytest.raises(ValueError, match="patches_per_epoch"):
        PatchDataset(cases, (8, 8, 8), patches_per_epoch=0)
    task = SegmentationTask("lits", {"liver": (1,)}, window=(8, 8, 8), patches_per_epoch=6)
    assert len(task.train_dataset(cases[:1], seed=0)) == 6 and task.describe()["patches_per_epoch"] == 6


def test_patch_dataset_oversamples_each_foreground_label_alike():
    mask = torch.zeros(40, 40, 16, dtype=torch.long)
    mask[:, :, :8] = 1                                                # a large structure: half the volume
    mask[30:32, 30:32, 12:14] = 2                                     # a tiny one: 8 voxels, far from label 1
    case = {"image": torch.randn(1, 40, 40, 16), "mask": mask}
    ds = PatchDataset([case], (8, 8, 8), patches_per_epoch=200, foreground_prob=1.0, seed=0)
    with_tiny = sum(bool((ds[i]["mask"] == 2).any()) for i in range(len(ds)))
    # Labels are drawn 50/50 before a voxel: voxel-uniform sampling would hit label 2 in ~1 % of patches.
    assert 70 <= with_tiny <= 130


def test_patch_dataset_foreground_and_padding():
    fg = PatchDataset(_cases(), (8, 8, 8), patches_per_case=4, foreground_prob=1.0, seed=0)
    assert all(fg[i]["mask"].any() for i in range(len(fg)))
    small = PatchDataset(_cases(1, size=(6, 10, 4)), (8, 16, 8), seed=0)
    item = small[0]
    assert item["image"].shape == (1, 8, 16, 8) and item["mask"][6:].sum() == 0


def test_segmentation_task_validates_window():
    with pytest.raises(ValueError, match="multiples of 8"):
        SegmentationTask("lits", {"liver": (1, 2)}, window=(20, 16, 8))
    with pytest.raises(ValueError, match="multiples of 32"):
        SegmentationTask("x", {"a": (1,)}, window=(48, 48), spatial_dims=2)
