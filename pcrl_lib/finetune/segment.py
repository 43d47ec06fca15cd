"""Segmentation fine-tuning: pretrained U-Net, Dice + BCE loss, patch training, sliding-window inference.

Tasks (PCRL_SPEC §10): LiTS 2017 liver (CT, 1 channel) and BraTS 2018 brain tumour (MRI, 4 modalities).

Legend: ``B`` batch, ``C_in`` input channels, ``K`` structures (output channels), ``S...`` spatial sizes of a
whole case, ``P...`` patch/window sizes.

Structures are *regions*, each a set of label values, predicted by one sigmoid channel each (region-based
training, the usual choice for nested BraTS regions)::

    LITS_STRUCTURES  = {"liver": (1, 2), "tumour": (2,)}            # the tumour lies inside the liver
    BRATS_STRUCTURES = {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}  # whole tumour ⊃ core ⊃ enhancing

(defined with the datasets' labels: :data:`pcrl_lib.data.lits.STRUCTURES`, :data:`pcrl_lib.data.brats.STRUCTURES`).

Model (:func:`build_segmenter`): the 2D ResNet-18 U-Net or the 3D Models-Genesis U-Net with raw logits
(no final activation), ``out_channels = K``. Encoder from a pretraining export (first convolution adapted to
``C_in``), decoder too when the export has one (its head is re-made when ``K`` differs from the
pretraining target's channels).

Loss (:class:`DiceBCELoss`): mean BCE over voxels + (1 − soft Dice), soft Dice per structure over the whole
batch (``2Σpt / (Σp + Σt)``, with a small ``smooth`` so empty patches do not divide by 0), averaged over
structures. Computed in float32 under autocast.

Training sees patches (:class:`PatchDataset`: ``patches_per_case`` per case and epoch, a share centred on
foreground); validation and test see whole cases through :func:`sliding_window_inference` (overlapping
windows, Gaussian or uniform weighting, probabilities averaged), thresholded at 0.5, scored by Dice (model
selection on the mean Dice over structures) and, on the test split, HD95 in mm.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..config import FinetuneConfig, Profile, get_profile
from ..metrics import bootstrap_mean_ci, dice, hd95
from ..models import build_unet
from ..models.exports import load_state, read_export
from .loop import EvalContext
from .pretrained import init_encoder, resolve_arch
from .records import MetricValue

WEIGHTINGS = ("gaussian", "uniform")
# Spatial sizes must pass the U-Net's pooling: multiples of 32 (five halvings) in 2D, 8 (three) in 3D.
_MULTIPLE = {2: 32, 3: 8}


def structure_masks(labels: torch.Tensor, structures: Mapping[str, Sequence[int]]) -> torch.Tensor:
    """Integer label map ``(B, *S)`` → bool region masks ``(B, K, *S)`` in ``structures`` order."""
    if not structures:
        raise ValueError("structures must name at least one region, e.g. {'liver': (1, 2)}")
    return torch.stack([torch.isin(labels, torch.tensor(tuple(v), device=labels.device, dtype=labels.dtype))
                        for v in structures.values()], dim=1)


def build_segmenter(spatial_dims: int, out_channels: int, *, pretrained: Mapping | str | os.PathLike | None = None,
                    imagenet_weights: str | os.PathLike | None = None, in_channels: int | None = None,
                    width: int | None = None, norm: str | None = None, load_decoder: bool = True) -> nn.Module:
    """A U-Net with logits output for ``out_channels`` structures, initialised as the module doc says.

    Args:
        spatial_dims: 2 (ResNet-18 U-Net) or 3 (Models-Genesis U-Net).
        out_channels: ``K`` structures.
        pretrained: an export dict, an ``encoder.pt`` path or its run folder (None = random init).
        imagenet_weights: a local torchvision ResNet-18 state dict for the 2D encoder.
        in_channels: input channels (4 for BraTS); default the export's, else 3 in 2D / 1 in 3D.
        width, norm: 3D U-Net width/norm; default the export's, else 32 / "bn".
        load_decoder: also load the export's decoder when it has one (False = encoder-only transfer).

    The returned module has ``init_report`` (how encoder and decoder were initialised).
    """
    if not isinstance(out_channels, int) or out_channels < 1:
        raise ValueError(f"out_channels must be a positive int (number of structures), got {out_channels!r}")
    export = read_export(pretrained) if pretrained is not None else None
    arch = resolve_arch(spatial_dims, export, in_channels=in_channels, width=width, norm=norm)
    if spatial_dims == 2:
        net = build_unet(2, in_channels=arch["in_channels"], out_channels=out_channels)
    else:
        net = build_unet(3, **arch, out_channels=out_channels, final_activation=None)
    report = init_encoder(net.encoder, export, imagenet_weights)
    report["decoder"] = None
    if export is not None and export["decoder"] is not None and load_decoder:
        # The pretraining head predicts the image (3 or 1 channels); a head for K structures starts afresh.
        report["decoder"] = load_state(net.decoder, export["decoder"], what="decoder",
                                       source=export.get("source", "the export dict"), reinit_prefixes=("head.",))
    net.init_report = report
    return net


class DiceBCELoss(nn.Module):
    """``bce_weight · BCE + dice_weight · (1 − soft Dice)`` for logits/targets ``(B, K, *S)`` (module doc)."""

    def __init__(self, bce_weight: float = 1.0, dice_weight: float = 1.0, smooth: float = 1e-5):
        super().__init__()
        if bce_weight < 0 or dice_weight < 0 or bce_weight + dice_weight == 0:
            raise ValueError(f"bce_weight={bce_weight} and dice_weight={dice_weight} must be >= 0, not both 0")
        self.bce_weight, self.dice_weight, self.smooth = bce_weight, dice_weight, smooth

    def _soft_dice_loss(self, probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        dims = [0, *range(2, probs.ndim)]                                 # over batch and space, per structure
        intersection = (probs * target).sum(dims)
        sizes = probs.sum(dims) + target.sum(dims)
        return (1.0 - (2.0 * intersection + self.smooth) / (sizes + self.smooth)).mean()

    def _check(self, x: torch.Tensor, target: torch.Tensor) -> None:
        if x.shape != target.shape:
            raise ValueError(f"prediction {tuple(x.shape)} and target {tuple(target.shape)} must have the same "
                             "shape (B, K, *S); build targets with structure_masks(labels, structures)")

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self._check(logits, target)
        logits, target = logits.float(), target.float()
        bce = F.binary_cross_entropy_with_logits(logits, target)
        return self.bce_weight * bce + self.dice_weight * self._soft_dice_loss(torch.sigmoid(logits), target)

    def from_probabilities(self, probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The same loss for probabilities (sliding-window outputs average probabilities, not logits)."""
        self._check(probs, target)
        probs, target = probs.float().clamp(1e-6, 1 - 1e-6), target.float()
        bce = F.binary_cross_entropy(probs, target)
        return self.bce_weight * bce + self.dice_weight * self._soft_dice_loss(probs, target)


# ------------------------------------------------------------------------------------ sliding window
def gaussian_importance(window: Sequence[int], sigma_scale: float = 0.125, device=None) -> torch.Tensor:
    """``(*P)`` weights peaking at the window centre, σ = ``sigma_scale`` · size per axis, max 1.

    Window borders see less context than centres, so their predictions count less where windows overlap.
    Clamped at 1e-3 so every voxel keeps a positive weight.
    """
    weight = torch.ones((), device=device)
    for size in window:
        coords = torch.arange(size, device=device, dtype=torch.float32) - (size - 1) / 2.0
        axis = torch.exp(-0.5 * (coords / (sigma_scale * size)) ** 2)
        weight = weight[..., None] * axis                                   # outer product over axes
    return (weight / weight.max()).clamp_min(1e-3)


def _window_starts(size: int, window: int, stride: int) -> list[int]:
    if size <= window:
        return [0]
    starts = list(range(0, size - window, stride)) + [size - window]     # the last window ends at the border
    return sorted(set(starts))


def sliding_window_inference(inputs: torch.Tensor, predictor: Callable[[torch.Tensor], torch.Tensor],
                             window: Sequence[int], *, overlap: float = 0.5, weighting: str = "gaussian",
                             sw_batch_size: int = 4, pad_value: float = 0.0) -> torch.Tensor:
    """Predict a whole volume (or image) with overlapping windows and stitch the outputs.

    Args:
        inputs: ``(B, C_in, *S)`` (2D or 3D; ``len(window)`` spatial axes).
        predictor: ``(n, C_in, *P) → (n, K, *P)`` (e.g. the model, or the model then a sigmoid).
        window: ``P``, the window size; an axis shorter than its window is padded with ``pad_value`` (at the
            end) and the padding cropped from the result.
        overlap: fraction of a window shared with the next one along each axis, in [0, 1); the stride is
            ``max(1, round(P · (1 − overlap)))`` and the last window is aligned to the border.
        weighting: ``"gaussian"`` (see :func:`gaussian_importance`) or ``"uniform"`` (plain average).
        sw_batch_size: windows per predictor call.

    Returns:
        ``(B, K, *S)`` float32 on the inputs' device: Σ_w weight·prediction / Σ_w weight per voxel.
    """
    window = tuple(int(w) for w in window)
    dims = len(window)
    if inputs.ndim != dims + 2:
        raise ValueError(f"inputs must be (B, C, *S) with {dims} spatial axes for window {window}, got shape "
                         f"{tuple(inputs.shape)}")
    if min(window) < 1:
        raise ValueError(f"window sizes must be positive, got {window}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting={weighting!r}; choose one of {WEIGHTINGS}")
    if sw_batch_size < 1:
        raise ValueError(f"sw_batch_size must be >= 1, got {sw_batch_size}")
    size = tuple(inputs.shape[2:])
    pad = [max(0, w - s) for w, s in zip(window, size)]
    if any(pad):
        # F.pad lists (before, after) pairs from the last axis backwards.
        inputs = F.pad(inputs, [p for extra in reversed(pad) for p in (0, extra)], value=pad_value)
    padded = tuple(inputs.shape[2:])
    strides = [max(1, round(w * (1.0 - overlap))) for w in window]
    grid = list(itertools.product(*(_window_starts(s, w, st) for s, w, st in zip(padded, window, strides))))
    weight = (gaussian_importance(window, device=inputs.device) if weighting == "gaussian"
              else torch.ones(window, device=inputs.device))
    batch = inputs.shape[0]
    output: torch.Tensor | None = None
    norm = torch.zeros((1, 1, *padded), device=inputs.device)
    for first in range(0, len(grid), sw_batch_size):
        starts = grid[first:first + sw_batch_size]
        regions = [(slice(None), slice(None), *(slice(s, s + w) for s, w in zip(start, window))) for start in starts]
        patches = torch.cat([inputs[r] for r in regions])                    # (n·B, C_in, *P)
        pred = predictor(patches).float()
        if pred.ndim != dims + 2 or tuple(pred.shape[2:]) != window or pred.shape[0] != patches.shape[0]:
            raise ValueError(f"predictor returned shape {tuple(pred.shape)} for windows of shape "
                             f"{tuple(patches.shape)}; it must keep the batch and spatial sizes")
        if output is None:
            output = torch.zeros((batch, pred.shape[1], *padded), device=inputs.device)
        for i, region in enumerate(regions):
            output[region] += pred[i * batch:(i + 1) * batch] * weight
            norm[region] += weight
    result = output / norm
    return result[(slice(None), slice(None), *(slice(0, s) for s in size))]


# ------------------------------------------------------------------------------------------- patches
class PatchDataset(Dataset):
    """Random training patches from whole cases, re-drawn every epoch from (seed, epoch, index).

    Args:
        cases: a dataset of whole cases: dicts with ``image`` ``(C_in, *S)`` float and ``mask`` ``(*S)`` int
            (:class:`pcrl_lib.data.cache.SegmentationCaseDataset`, or a ``Subset`` of it).
        patch_size: ``P`` (multiples of 8 in 3D / 32 in 2D for the U-Nets).
        patches_per_case: items per case per epoch (when ``patches_per_epoch`` is None).
        patches_per_epoch: a fixed number of items per epoch, cycling through the cases (item ``i`` comes from
            case ``i mod n``), as nnU-Net fixes iterations per epoch: a run on 10 % of the cases then takes as
            many optimiser steps as a run on all of them, so label fractions compare data, not training length.
        foreground_prob: probability that a patch is centred on a foreground voxel: a label > 0 of the case
            drawn uniformly, then one of its voxels, so small structures (tumours) are seen often enough;
            otherwise (and for a case without foreground) the position is uniform.
        seed: with :meth:`set_epoch`, makes every patch a pure function of (seed, epoch, index).

    Item: ``{"image": (C_in, *P) float32, "mask": (*P) int64}``; a case smaller than ``P`` is padded (image
    with its per-channel minimum, mask with 0).
    """

    def __init__(self, cases: Dataset, patch_size: Sequence[int], *, patches_per_case: int = 2,
                 patches_per_epoch: int | None = None, foreground_prob: float = 0.5, seed: int = 0):
        if len(cases) == 0:
            raise ValueError("cases is empty: no volumes to cut training patches from")
        if patches_per_case < 1:
            raise ValueError(f"patches_per_case must be >= 1, got {patches_per_case}")
        if patches_per_epoch is not None and (not isinstance(patches_per_epoch, int) or patches_per_epoch < 1):
            raise ValueError(f"patches_per_epoch must be a positive int or None, got {patches_per_epoch!r}")
        if not 0.0 <= foreground_prob <= 1.0:
            raise ValueError(f"foreground_prob must be in [0, 1], got {foreground_prob}")
        self.cases, self.patch_size = cases, tuple(int(p) for p in patch_size)
        self.patches_per_case, self.patches_per_epoch = patches_per_case, patches_per_epoch
        self.foreground_prob, self.seed = foreground_prob, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.patches_per_epoch or len(self.cases) * self.patches_per_case

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"patch index {index} out of range for {len(self)} patches per epoch")
        case_index = index % len(self.cases) if self.patches_per_epoch else index // self.patches_per_case
        case = self.cases[case_index]
        image, mask = torch.as_tensor(case["image"]), torch.as_tensor(case["mask"]).long()
        if image.ndim != len(self.patch_size) + 1 or tuple(image.shape[1:]) != tuple(mask.shape):
            raise ValueError(f"case {case.get('name', index)}: image {tuple(image.shape)} must be (C, *S) and mask "
                             f"{tuple(mask.shape)} (*S) for patch size {self.patch_size}")
        pad = [max(0, p - s) for p, s in zip(self.patch_size, mask.shape)]
        if any(pad):
            spec = [q for extra in reversed(pad) for q in (0, extra)]
            low = image.flatten(1).amin(1)                                  # (C,) per-channel background value
            image = torch.stack([F.pad(ch, spec, value=float(v)) for ch, v in zip(image, low)])
            mask = F.pad(mask, spec, value=0)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        space = np.array(mask.shape)
        size = np.array(self.patch_size)
        foreground = None
        if rng.random() < self.foreground_prob:
            # Class-balanced (as nnU-Net): a random label present in the case, then a random voxel of it, so a
            # small structure (tumour inside the liver, enhancing tumour) is centred as often as a large one.
            labels = torch.unique(mask)
            labels = labels[labels > 0]
            if len(labels):
                foreground = torch.nonzero(mask == labels[rng.integers(len(labels))])
        if foreground is not None:
            centre = foreground[rng.integers(len(foreground))].numpy()
            start = np.clip(centre - size // 2, 0, space - size)
        else:
            start = rng.integers(0, space - size + 1)
        region = tuple(slice(int(a), int(a + p)) for a, p in zip(start, size))
        return {"image": image[(slice(None), *region)].float().contiguous(), "mask": mask[region].contiguous()}


# --------------------------------------------------------------------------------------------- task
@dataclass
class SegmentationTask:
    """Region segmentation task for :func:`pcrl_lib.finetune.loop.fit` (see the module doc).

    Args:
        name: task name in result rows ("lits", "brats").
        structures: ``{name: label values}`` (``LITS_STRUCTURES``, ``BRATS_STRUCTURES``), one output channel each.
        window: training patch and inference window size ``P``.
        spatial_dims: 3 (volumes) or 2.
        overlap, weighting, sw_batch_size: sliding-window settings.
        threshold: probability above which a voxel belongs to a structure.
        patches_per_case, patches_per_epoch, foreground_prob: training patch sampling (:class:`PatchDataset`).
        val_cases: validate on the first ``val_cases`` cases of the validation split (None: all of them).
        compute_hd95: also report HD95 (mm) per structure on the test split.
    """

    name: str
    structures: Mapping[str, Sequence[int]]
    window: Sequence[int]
    spatial_dims: int = 3
    overlap: float = 0.5
    weighting: str = "gaussian"
    sw_batch_size: int = 2
    threshold: float = 0.5
    patches_per_case: int = 2
    patches_per_epoch: int | None = None
    foreground_prob: float = 0.5
    val_cases: int | None = None
    compute_hd95: bool = True
    loss: DiceBCELoss = field(default_factory=DiceBCELoss)
    main_metric = "dice_mean"

    def __post_init__(self):
        if self.spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {self.spatial_dims!r}")
        self.window = tuple(int(w) for w in self.window)
        multiple = _MULTIPLE[self.spatial_dims]
        if len(self.window) != self.spatial_dims or any(w < 1 or w % multiple for w in self.window):
            raise ValueError(f"window={self.window} must be {self.spatial_dims} positive multiples of {multiple} "
                             f"(the {self.spatial_dims}D U-Net pools {int(math.log2(multiple))} times), e.g. "
                             f"{(64, 64, 32) if self.spatial_dims == 3 else (224, 224)}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting={self.weighting!r}; choose one of {WEIGHTINGS}")
        self.structures = {str(k): tuple(int(v) for v in vs) for k, vs in self.structures.items()}
        if not self.structures:
            raise ValueError("structures must name at least one region")
        if self.val_cases is not None and (not isinstance(self.val_cases, int) or self.val_cases < 1):
            raise ValueError(f"val_cases must be a positive int or None (all validation cases), got {self.val_cases!r}")

    def describe(self) -> dict:
        return {"type": "segmentation", "name": self.name, "structures": {k: list(v) for k, v in self.structures.items()},
                "spatial_dims": self.spatial_dims, "window": list(self.window), "overlap": self.overlap,
                "weighting": self.weighting, "threshold": self.threshold, "patches_per_case": self.patches_per_case,
                "patches_per_epoch": self.patches_per_epoch, "foreground_prob": self.foreground_prob,
                "val_cases": self.val_cases, "loss": {"bce_weight": self.loss.bce_weight, "dice_weight": self.loss.dice_weight}}

    def train_dataset(self, subset: Dataset, seed: int) -> Dataset:
        """Patches of the labelled cases (:class:`PatchDataset`), redrawn each epoch."""
        return PatchDataset(subset, self.window, patches_per_case=self.patches_per_case,
                            patches_per_epoch=self.patches_per_epoch, foreground_prob=self.foreground_prob, seed=seed)

    def training_loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        if not isinstance(batch, Mapping) or "image" not in batch or "mask" not in batch:
            raise ValueError("segmentation batches must be dicts with 'image' (B, C, *P) and 'mask' (B, *P)")
        target = structure_masks(batch["mask"], self.structures)
        return self.loss(model(batch["image"].float()), target.float())

    @torch.no_grad()
    def predict_case(self, model: nn.Module, image: torch.Tensor, ctx: EvalContext) -> torch.Tensor:
        """Whole case ``(C_in, *S)`` → structure probabilities ``(K, *S)`` float32 on the device."""
        model.eval()

        def predictor(x: torch.Tensor) -> torch.Tensor:
            with ctx.precision.autocast():
                return torch.sigmoid(model(x).float())

        x = image[None].to(ctx.device, dtype=torch.float32)
        # Pad with the case's minimum (background) rather than 0, which may be bright after normalisation.
        return sliding_window_inference(x, predictor, self.window, overlap=self.overlap, weighting=self.weighting,
                                        sw_batch_size=self.sw_batch_size, pad_value=float(x.min()))[0]

    def _cases(self, dataset: Dataset, limit: int | None = None):
        for i in range(len(dataset) if limit is None else min(limit, len(dataset))):
            case = dataset[i]
            if not case.get("has_mask", True):
                raise ValueError(f"case {case.get('name', i)} has no mask: validation/test cases need ground truth")
            yield case

    def validate(self, model: nn.Module, dataset: Dataset, ctx: EvalContext) -> dict:
        """``{"score": mean Dice over cases and structures, "loss": mean Dice+BCE on whole cases}`` over the first
        ``val_cases`` cases of ``dataset`` (all when None)."""
        scores, losses = [], []
        for case in self._cases(dataset, self.val_cases):
            probs = self.predict_case(model, torch.as_tensor(case["image"]), ctx)
            target = structure_masks(torch.as_tensor(case["mask"]).to(ctx.device)[None], self.structures)
            losses.append(float(self.loss.from_probabilities(probs[None], target.float())))
            scores.append(dice(probs[None] > self.threshold, target)[0].cpu())
        return {"score": float(torch.stack(scores).mean()), "loss": float(np.mean(losses))}

    def evaluate(self, model: nn.Module, dataset: Dataset, ctx: EvalContext, *, n_bootstrap: int,
                 rng: np.random.Generator) -> list[MetricValue]:
        """Test metrics over cases with bootstrap intervals: ``dice_mean``, ``dice_<s>``, ``hd95_<s>`` (mm).

        HD95 of a case where exactly one of prediction/truth is empty is undefined (NaN) and left out of the
        mean; ``detail["n_undefined"]`` counts such cases.
        """
        names = list(self.structures)
        dices, distances = [], []
        for case in self._cases(dataset):
            probs = self.predict_case(model, torch.as_tensor(case["image"]), ctx)
            target = structure_masks(torch.as_tensor(case["mask"]).to(ctx.device)[None], self.structures)
            pred = probs[None] > self.threshold
            dices.append(dice(pred, target)[0].cpu().numpy())
            if self.compute_hd95:
                spacing = np.asarray(case.get("spacing", np.ones(self.spatial_dims)), dtype=float)
                distances.append([hd95(pred[0, k], target[0, k], spacing) for k in range(len(names))])
        dices = np.stack(dices)                                               # (cases, K)
        # One seed for every metric: all of them see the same resampled case sets.
        boot_seed = int(rng.integers(0, 2**63 - 1))
        out = [MetricValue("dice_mean", *bootstrap_mean_ci(dices.mean(1), n_bootstrap=n_bootstrap, rng=boot_seed),
                           {"n_cases": len(dices)})]
        for k, name in enumerate(names):
            out.append(MetricValue(f"dice_{name}", *bootstrap_mean_ci(dices[:, k], n_bootstrap=n_bootstrap,
                                                                      rng=boot_seed), {"n_cases": len(dices)}))
        if self.compute_hd95:
            distances = np.asarray(distances, dtype=float)                    # (cases, K)
            for k, name in enumerate(names):
                out.append(MetricValue(f"hd95_{name}", *bootstrap_mean_ci(distances[:, k], n_bootstrap=n_bootstrap,
                                                                          rng=boot_seed),
                                       {"n_cases": len(distances), "n_undefined": int(np.isnan(distances[:, k]).sum()),
                                        "unit": "mm"}))
        return out


# ----------------------------------------------------------------------------- a segmentation task's runs
# Training patches per epoch per case of the FULL training split (every label fraction draws that many).
PATCHES_PER_CASE = 4


def segmentation_config(profile: str | Profile, epochs: int | None = None, lr: float | None = None) -> FinetuneConfig:
    """The profile's :class:`~pcrl_lib.config.FinetuneConfig` for segmentation: ``epochs``/``lr`` override it;
    without ``lr`` the rate is the profile's ``lr`` × ``seg_lr_factor`` (3 on the CPU profiles: their ~60 optimiser
    steps leave the networks far from converged at the paper's 1e-3; 1 in ``paper``). ``profile``: a name or a
    :class:`~pcrl_lib.config.Profile`."""
    cfg = (profile if isinstance(profile, Profile) else get_profile(profile)).finetune
    return cfg.override(epochs=int(epochs) if epochs else cfg.epochs,
                        lr=float(lr) if lr else cfg.lr * cfg.seg_lr_factor)


def default_patches_per_epoch(data: "SegmentationData", cfg: FinetuneConfig | None = None) -> int:
    """Training patches per epoch at every label fraction, so a 10 % run takes as many optimiser steps as a 100 %
    run: ``cfg.seg_patches_per_epoch`` when set (> 0), else :data:`PATCHES_PER_CASE` per case of the full training
    split (``data``: a :class:`~pcrl_lib.data.tasks_seg.SegmentationData`)."""
    if cfg is not None and cfg.seg_patches_per_epoch > 0:
        return int(cfg.seg_patches_per_epoch)
    return PATCHES_PER_CASE * len(data.splits["train"])


def segmenter_factory(data: "SegmentationData", pretrained: str | os.PathLike | None = None, *,
                      width: int | None = None, load_decoder: bool = True):
    """A function building a fresh 3D U-Net for ``data`` (what :func:`pcrl_lib.finetune.run_finetune` calls).

    ``C_in = data.in_channels`` (the pretrained first convolution is adapted when it differs), one output
    channel per structure. ``pretrained``: an ``encoder.pt`` (its encoder, and its decoder when it has one and
    ``load_decoder``); None = scratch with ``width`` base channels (pass the pretraining width for a fair
    comparison; a pretrained network takes the export's width).
    """
    def make():
        return build_segmenter(3, len(data.structures), pretrained=pretrained, in_channels=data.in_channels,
                               width=None if pretrained is not None else width, load_decoder=load_decoder)

    return make
