"""Evaluation metrics of the downstream tasks (PCRL_SPEC §10): ROC-AUC with bootstrap intervals, Dice, HD95.

Legend: ``N`` samples (images, cubes or cases), ``L`` labels (classes of a multi-label task), ``B`` batch,
``C`` structures (segmentation channels), ``S...`` spatial axes (``(H, W)`` in 2D, ``(X, Y, Z)`` in 3D),
``n_bootstrap`` resamples.

Classification — :func:`roc_auc`:
    per-class ROC-AUC from scikit-learn on the labelled rows, the mean over classes, and percentile bootstrap
    confidence intervals. Resampling draws whole sample indices (with replacement, from a seeded
    ``numpy.random.Generator``); every class and the mean see the *same* resamples, so the mean's interval
    is coherent with the per-class ones. The resampled AUCs are computed all at once as a weighted
    Mann–Whitney statistic (each sample weighted by how often the resample drew it, ties counted ½), which
    equals scikit-learn's trapezoidal AUC on the resampled data. A class with no labelled sample, no
    positive or no negative in the split has no AUC: it is reported as undefined with the reason and left
    out of the mean (the report's ``note`` names it). A resample in which a class has one label value
    only is skipped for that class. :func:`mean_auc` is that mean alone, without resampling.

Segmentation — :func:`dice`, :func:`hd95`, :func:`brats_dice`:
    * Dice = 2|P∩T| / (|P| + |T|) per sample and structure. Empty–empty convention: when prediction and
      target are both empty the structure was correctly found absent and Dice = ``empty`` (1.0 by default;
      pass ``float('nan')`` to leave such cases out of a ``nanmean``). A non-empty prediction of an absent
      structure scores 0.
    * HD95 (mm): surfaces are the mask voxels with at least one face neighbour (6-neighbourhood in 3D,
      4 in 2D) outside the mask or outside the image. For each surface voxel of one mask its Euclidean
      distance *in physical units* (the voxel spacing per axis, SimpleITK's exact Maurer distance transform
      with ``useImageSpacing``) to the nearest surface voxel of the other mask is taken; HD95 is the larger
      of the two directed 95th percentiles (the MedPy / MONAI convention). Both masks empty → 0.0; exactly
      one empty → NaN (undefined; a mean should use ``nanmean`` and report how many were undefined).
    * BraTS regions (PCRL_SPEC §10): whole tumour WT = {1, 2, 4}, tumour core TC = {1, 4}, enhancing
      tumour ET = {4} (:func:`pcrl_lib.data.brats.regions`), Dice per region.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .data.brats import REGIONS, regions

# Bootstrap resamples are processed in chunks so the (chunk, N) count matrix stays near this many entries.
_BOOTSTRAP_CHUNK_ENTRIES = 4_000_000


def _as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, (int, np.integer)) and rng >= 0):
        return np.random.default_rng(rng)
    raise ValueError(f"rng must be a numpy.random.Generator or a non-negative int seed, got {rng!r}")


def _check_ci(ci: float) -> None:
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must be a confidence level in (0, 1), e.g. 0.95; got {ci!r}")


def _check_bootstrap(n_bootstrap: int) -> None:
    if not isinstance(n_bootstrap, (int, np.integer)) or n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be a non-negative int (0 = no interval), got {n_bootstrap!r}")


def _bootstrap_counts(rng: np.random.Generator, n: int, n_bootstrap: int):
    """Yield ``(b, n)`` float64 matrices: how often each of the ``n`` samples is drawn in each resample."""
    chunk = max(1, _BOOTSTRAP_CHUNK_ENTRIES // max(n, 1))
    done = 0
    while done < n_bootstrap:
        b = min(chunk, n_bootstrap - done)
        idx = rng.integers(0, n, size=(b, n))                       # (b, n) resampled indices
        flat = (idx + n * np.arange(b)[:, None]).ravel()             # one bincount for all b resamples
        yield np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)
        done += b


def _percentile_ci(values: np.ndarray, ci: float) -> tuple[float, float]:
    """Percentile interval of the finite ``values``; (nan, nan) when there are none."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan
    tail = 100.0 * (1.0 - ci) / 2.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


# ------------------------------------------------------------------------------------------------ ROC-AUC
def weighted_auc(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC-AUC of one class under many sample weightings at once (the bootstrap's inner step).

    Args:
        scores: ``(N,)`` predicted scores.
        positive: ``(N,)`` bool, True for positives.
        weights: ``(R, N)`` non-negative weights (bootstrap counts; all ones gives the plain AUC).

    Returns:
        ``(R,)`` AUC = Σ_pos Σ_neg w_i w_j ([s_i > s_j] + ½[s_i = s_j]) / (W_pos · W_neg); NaN where a row
        has no positive or no negative weight.
    """
    order = np.argsort(scores, kind="stable")
    s, y, w = scores[order], positive[order], weights[:, order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])            # first index of each tied score level
    pos = np.add.reduceat(w * y, starts, axis=1)                      # (R, levels) positive weight per level
    neg = np.add.reduceat(w * ~y, starts, axis=1)                     # (R, levels) negative weight per level
    neg_below = np.cumsum(neg, axis=1) - neg                          # negatives strictly below each level
    numerator = (pos * (neg_below + 0.5 * neg)).sum(axis=1)
    denominator = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), np.nan)


@dataclass(frozen=True)
class ClassAUC:
    """One class of :func:`roc_auc`. ``reason`` is None when the AUC is defined, else why it is not."""

    name: str
    auc: float
    ci_low: float
    ci_high: float
    n_pos: int
    n_neg: int
    n_bootstrap_valid: int
    reason: str | None = None

    @property
    def defined(self) -> bool:
        return self.reason is None


@dataclass(frozen=True)
class AUCReport:
    """Result of :func:`roc_auc`: per-class AUCs, their mean over defined classes, and a note on exclusions."""

    classes: tuple[ClassAUC, ...]
    mean: float
    mean_ci_low: float
    mean_ci_high: float
    n_bootstrap: int
    ci: float
    note: str

    @property
    def undefined(self) -> tuple[ClassAUC, ...]:
        return tuple(c for c in self.classes if not c.defined)

    def to_frame(self):
        """A pandas DataFrame, one row per class plus a final ``mean`` row."""
        import pandas as pd

        rows = [{"class": c.name, "auc": c.auc, "ci_low": c.ci_low, "ci_high": c.ci_high, "n_pos": c.n_pos,
                 "n_neg": c.n_neg, "reason": c.reason} for c in self.classes]
        rows.append({"class": "mean", "auc": self.mean, "ci_low": self.mean_ci_low, "ci_high": self.mean_ci_high,
                     "n_pos": None, "n_neg": None, "reason": self.note or None})
        return pd.DataFrame(rows)


def _as_2d(name: str, array) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().float().cpu().numpy()
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(f"{name} must have shape (N,) or (N, L), got {array.shape}")
    return array


def roc_auc(y_true, y_score, *, mask=None, class_names: Sequence[str] | None = None, n_bootstrap: int = 1000,
            ci: float = 0.95, rng: np.random.Generator | int | None = 0) -> AUCReport:
    """Per-class and mean ROC-AUC with percentile bootstrap confidence intervals (see the module doc).

    Args:
        y_true: ``(N, L)`` or ``(N,)`` labels in {0, 1} (NaN allowed where ``mask`` is False or unknown).
        y_score: same shape, predicted scores or probabilities (finite).
        mask: optional ``(N, L)`` bool, True where the label is known (CheXpert's uncertain/blank labels);
            default: every non-NaN label.
        class_names: ``L`` names (default ``class_0`` ...).
        n_bootstrap: number of resamples (0 → no intervals, NaN bounds).
        ci: confidence level of the percentile interval.
        rng: ``numpy.random.Generator`` or seed for the resampling.
    """
    from sklearn.metrics import roc_auc_score

    y_true, y_score = _as_2d("y_true", y_true), _as_2d("y_score", y_score)
    if y_true.shape != y_score.shape:
        raise ValueError(f"y_true {y_true.shape} and y_score {y_score.shape} must have the same shape")
    n, n_classes = y_true.shape
    known = ~np.isnan(y_true) if mask is None else np.asarray(mask, dtype=bool).reshape(n, -1) & ~np.isnan(y_true)
    if known.shape != y_true.shape:
        raise ValueError(f"mask has shape {np.shape(mask)}, expected {y_true.shape}")
    labels = np.where(known, y_true, 0.0)
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError("y_true must hold 0/1 labels (NaN or mask=False for unknown ones); found "
                         f"{sorted(set(np.unique(labels)) - {0.0, 1.0})[:5]}")
    if not np.isfinite(y_score[known]).all():
        raise ValueError("y_score holds NaN/inf where labels are known: the model produced non-finite outputs")
    names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(n_classes)]
    if len(names) != n_classes:
        raise ValueError(f"class_names has {len(names)} names for {n_classes} classes")
    _check_bootstrap(n_bootstrap)
    _check_ci(ci)
    rng = _as_rng(rng)

    positive = labels.astype(bool) & known
    n_pos, n_neg = positive.sum(0), (known & ~positive).sum(0)
    reasons = []
    for c in range(n_classes):
        if n_pos[c] + n_neg[c] == 0:
            reasons.append("no labelled samples in this split")
        elif n_pos[c] == 0:
            reasons.append(f"no positive samples in this split (all {n_neg[c]} labelled samples are negative)")
        elif n_neg[c] == 0:
            reasons.append(f"no negative samples in this split (all {n_pos[c]} labelled samples are positive)")
        else:
            reasons.append(None)
    defined = [c for c in range(n_classes) if reasons[c] is None]
    point = np.full(n_classes, np.nan)
    for c in defined:
        rows = known[:, c]
        point[c] = roc_auc_score(positive[rows, c], y_score[rows, c])

    boot = np.full((n_bootstrap, n_classes), np.nan)                  # (n_bootstrap, L) resampled AUCs
    done = 0
    for counts in _bootstrap_counts(rng, n, n_bootstrap):
        b = counts.shape[0]
        for c in defined:
            boot[done:done + b, c] = weighted_auc(y_score[:, c], positive[:, c], counts * known[:, c])
        done += b

    classes = []
    for c in range(n_classes):
        low, high = _percentile_ci(boot[:, c], ci) if reasons[c] is None else (math.nan, math.nan)
        classes.append(ClassAUC(names[c], float(point[c]), low, high, int(n_pos[c]), int(n_neg[c]),
                                int(np.isfinite(boot[:, c]).sum()), reasons[c]))
    if defined:
        mean = float(point[defined].mean())
        with warnings.catch_warnings():
            # A resample in which every defined class lost its positives or negatives has no mean (NaN).
            warnings.simplefilter("ignore", RuntimeWarning)
            boot_mean = np.nanmean(boot[:, defined], axis=1) if n_bootstrap else np.zeros(0)
        mean_low, mean_high = _percentile_ci(boot_mean, ci)
    else:
        mean, mean_low, mean_high = math.nan, math.nan, math.nan
    excluded = [names[c] for c in range(n_classes) if reasons[c] is not None]
    note = (f"mean over {len(defined)} of {n_classes} classes; undefined and excluded: {', '.join(excluded)}"
            if excluded else "")
    return AUCReport(tuple(classes), mean, mean_low, mean_high, int(n_bootstrap), ci, note)


def mean_auc(y_true, y_score, *, mask=None) -> float:
    """Mean ROC-AUC over the classes that have a positive and a negative *known* label; no bootstrap.

    Args:
        y_true: ``(N, L)`` or ``(N,)`` labels in {0, 1}, NaN where unknown.
        y_score: same shape, predicted scores.
        mask: optional ``(N, L)`` bool, True where the label is known (default: every non-NaN label).

    Returns:
        (1/|C|) Σ_{c∈C} AUC_c over the defined classes ``C`` (:func:`roc_auc`'s mean); NaN when no class is
        defined. What model selection on a validation split scores.
    """
    return roc_auc(y_true, y_score, mask=mask, n_bootstrap=0).mean


def bootstrap_mean_ci(values, *, n_bootstrap: int = 1000, ci: float = 0.95,
                      rng: np.random.Generator | int | None = 0) -> tuple[float, float, float]:
    """Mean of ``values`` ``(N,)`` (NaNs ignored) and its percentile bootstrap interval: (mean, low, high).

    Used for per-case segmentation scores (Dice over test cases). Resamples are drawn over all ``N`` entries;
    NaN entries (undefined cases) are skipped inside each resample.
    """
    values = _as_2d("values", values)[:, 0]
    _check_bootstrap(n_bootstrap)
    _check_ci(ci)
    rng = _as_rng(rng)
    finite = np.isfinite(values)
    if not finite.any():
        return math.nan, math.nan, math.nan
    mean = float(values[finite].mean())
    filled = np.where(finite, values, 0.0)
    means = []
    for counts in _bootstrap_counts(rng, values.size, n_bootstrap):
        weight = counts * finite                                       # (b, N) draws of defined entries
        total = weight.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            means.append(np.where(total > 0, (weight * filled).sum(axis=1) / np.where(total > 0, total, 1), np.nan))
    low, high = _percentile_ci(np.concatenate(means) if means else np.zeros(0), ci)
    return mean, low, high


# --------------------------------------------------------------------------------------------------- Dice
def _as_bool_tensor(name: str, x) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch tensor or numpy array, got {type(x).__name__}")
    if x.dtype != torch.bool:
        if x.is_floating_point() and not ((x == 0) | (x == 1)).all():
            raise ValueError(f"{name} must be a binary mask (bool or 0/1); threshold probabilities first "
                             "(e.g. torch.sigmoid(logits) > 0.5)")
        x = x != 0
    return x


def dice(pred, target, *, empty: float = 1.0) -> torch.Tensor:
    """Dice per sample and structure.

    Args:
        pred, target: ``(B, C, *S)`` binary masks (bool or 0/1), same shape, any device.
        empty: the score when both masks of a (sample, structure) are empty (see the module doc).

    Returns:
        ``(B, C)`` float32 tensor on the inputs' device.
    """
    pred, target = _as_bool_tensor("pred", pred), _as_bool_tensor("target", target)
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")
    if pred.ndim < 3:
        raise ValueError(f"dice expects (B, C, *spatial) masks, got shape {tuple(pred.shape)}")
    p, t = pred.flatten(2), target.flatten(2)                          # (B, C, V)
    intersection = (p & t).sum(-1).float()
    sizes = (p.sum(-1) + t.sum(-1)).float()
    score = 2.0 * intersection / sizes.clamp_min(1.0)
    return torch.where(sizes > 0, score, torch.full_like(score, float(empty)))


def brats_dice(pred, target_seg, *, empty: float = 1.0) -> dict[str, torch.Tensor]:
    """Dice of the BraTS evaluation regions WT / TC / ET.

    Args:
        pred: ``(B, X, Y, Z)`` integer label map {0, 1, 2, 4}, or ``(B, 3, X, Y, Z)`` binary region masks in
            WT, TC, ET order (what a region-based sigmoid network predicts).
        target_seg: ``(B, X, Y, Z)`` integer label map.
        empty: Dice when a region is absent from both (ET is absent in many low-grade cases).

    Returns:
        ``{"WT": (B,), "TC": (B,), "ET": (B,)}`` float tensors.
    """
    if isinstance(target_seg, np.ndarray):
        target_seg = torch.from_numpy(target_seg)
    if isinstance(pred, np.ndarray):
        pred = torch.from_numpy(pred)
    if target_seg.ndim != 4:
        raise ValueError(f"target_seg must be a (B, X, Y, Z) label map, got shape {tuple(target_seg.shape)}")
    target = regions(target_seg.long())
    if pred.ndim == 4:
        pred = regions(pred.long())
    elif pred.ndim != 5 or pred.shape[1] != len(REGIONS):
        raise ValueError(f"pred must be a (B, X, Y, Z) label map or (B, 3, X, Y, Z) WT/TC/ET masks, got "
                         f"shape {tuple(pred.shape)}")
    scores = dice(pred, target, empty=empty)
    return {name: scores[:, i] for i, name in enumerate(REGIONS)}


# --------------------------------------------------------------------------------------------------- HD95
def _as_bool_array(name: str, x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.dtype != bool:
        if not np.isin(x, (0, 1)).all():
            raise ValueError(f"{name} must be a binary mask (bool or 0/1)")
        x = x != 0
    return x


def surface(mask: np.ndarray) -> np.ndarray:
    """Surface voxels of a bool mask ``(*S)``: in the mask with a face neighbour outside it or the image."""
    padded = np.pad(mask, 1, constant_values=False)
    interior = padded.copy()
    for axis in range(mask.ndim):                                      # erosion by the face (cross) element
        interior &= np.roll(padded, 1, axis=axis) & np.roll(padded, -1, axis=axis)
    core = tuple(slice(1, -1) for _ in range(mask.ndim))
    return mask & ~interior[core]


def _distance_to(surface_mask: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """``(*S)`` distance (physical units) of every voxel to the nearest True voxel of ``surface_mask``."""
    import SimpleITK as sitk

    # SimpleITK indexes arrays (z, y, x); the kit's arrays are (x, y, z): reverse the axes both ways.
    image = sitk.GetImageFromArray(np.ascontiguousarray(surface_mask.T.astype(np.uint8)))
    image.SetSpacing(tuple(float(s) for s in spacing))
    distance = sitk.SignedMaurerDistanceMap(image, insideIsPositive=False, squaredDistance=False,
                                            useImageSpacing=True)
    # Surface voxels are the object's own boundary (distance 0); every other voxel is outside the thin shell.
    return np.abs(sitk.GetArrayFromImage(distance).T)


def hd95(pred, target, spacing: Sequence[float] | None = None, *, percentile: float = 95.0) -> float:
    """95th-percentile symmetric Hausdorff distance between two binary masks of one structure.

    Args:
        pred, target: ``(*S)`` binary masks (2D or 3D; numpy or torch), same shape.
        spacing: voxel size per axis in the arrays' axis order (mm); default 1 per axis.
        percentile: 95 for HD95; 100 gives the classical Hausdorff distance.

    Returns:
        The distance in the units of ``spacing`` (conventions for empty masks in the module doc).
    """
    pred, target = _as_bool_array("pred", pred), _as_bool_array("target", target)
    if pred.shape != target.shape:
        raise ValueError(f"pred {pred.shape} and target {target.shape} must have the same shape")
    if pred.ndim not in (2, 3):
        raise ValueError(f"hd95 takes one 2D or 3D mask per argument, got shape {pred.shape}; "
                         "use hd95_batch for (B, C, *S)")
    spacing = (1.0,) * pred.ndim if spacing is None else tuple(float(s) for s in np.asarray(spacing).ravel())
    if len(spacing) != pred.ndim or min(spacing) <= 0:
        raise ValueError(f"spacing must hold {pred.ndim} positive voxel sizes, got {spacing}")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    if not pred.any() and not target.any():
        return 0.0
    if not pred.any() or not target.any():
        return math.nan
    surf_p, surf_t = surface(pred), surface(target)
    d_pt = _distance_to(surf_t, spacing)[surf_p]                       # pred surface → target surface
    d_tp = _distance_to(surf_p, spacing)[surf_t]                       # target surface → pred surface
    return float(max(np.percentile(d_pt, percentile), np.percentile(d_tp, percentile)))


def hd95_batch(pred, target, spacing: Sequence[float] | None = None, *, percentile: float = 95.0) -> np.ndarray:
    """:func:`hd95` for ``(B, C, *S)`` masks → ``(B, C)`` float64 (one distance transform pair per structure)."""
    pred, target = _as_bool_array("pred", pred), _as_bool_array("target", target)
    if pred.shape != target.shape or pred.ndim not in (4, 5):
        raise ValueError(f"hd95_batch expects two (B, C, *S) masks of one shape, got {pred.shape} and {target.shape}")
    out = np.empty(pred.shape[:2])
    for b in range(pred.shape[0]):
        for c in range(pred.shape[1]):
            out[b, c] = hd95(pred[b, c], target[b, c], spacing, percentile=percentile)
    return out
