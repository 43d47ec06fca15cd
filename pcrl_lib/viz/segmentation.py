"""Prediction vs ground truth for segmentation: comparison maps, overlays, a figure per test case, a viewer.

A *comparison map* codes every voxel of one structure by agreement, so one overlay shows both masks::

    0 background (in neither)   1 missed  = false negative (truth only)    red
                                2 found   = true positive (both)           green
                                3 false alarm = false positive (prediction only)   blue

The colours are the slice viewer's label colours (:mod:`pcrl_lib.viz.viewer`), so the same map works in the
static figure (:func:`comparison_figure`), in one rendered slice (:func:`render_comparison`, a pure function)
and in the interactive viewer (:func:`comparison_viewer`, a static montage when headless).

Legend: ``image`` ``(X, Y, Z)`` (one channel, e.g. the normalised CT in [0, 1]); masks ``(X, Y, Z)`` bool for
one structure or ``(K, X, Y, Z)`` for ``K`` structures; ``window`` ``(level, width)`` in the image's units;
``direction`` the case's 3×3 direction matrix (``case["direction"]``; None = LPS): slices are drawn in the
radiological convention whatever the storage order (:mod:`pcrl_lib.data.orientation`); ``axis`` None = the
storage axis of the axial slices.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch

from ..data.orientation import storage_axis
from .viewer import OVERLAY_COLOURS, convention, render_slice, show_slice, slice_viewer

MISSED, FOUND, FALSE_ALARM = 1, 2, 3
COMPARISON_NAMES = {MISSED: "missed (FN)", FOUND: "found (TP)", FALSE_ALARM: "false alarm (FP)"}
LEGEND = "red: missed · green: found · blue: false alarm"
NORMALISED_WINDOW = (0.5, 1.0)  # (level, width) for images already scaled to [0, 1]


def _as_mask(name: str, mask) -> np.ndarray:
    array = np.asarray(mask.detach().cpu() if hasattr(mask, "detach") else mask)
    if array.dtype != bool:
        values = np.unique(array)
        if not np.isin(values, (0, 1)).all():
            raise ValueError(f"{name} must be a binary mask (bool or 0/1); found values {values[:6].tolist()} — "
                             "threshold probabilities (e.g. probs > 0.5) first")
        array = array.astype(bool)
    return array


def comparison_map(pred, target) -> np.ndarray:
    """uint8 map of the same shape: 1 missed (target only), 2 found (both), 3 false alarm (pred only), else 0."""
    pred, target = _as_mask("pred", pred), _as_mask("target", target)
    if pred.shape != target.shape:
        raise ValueError(f"pred {pred.shape} and target {target.shape} must have the same shape")
    out = np.zeros(pred.shape, dtype=np.uint8)
    out[target & ~pred] = MISSED
    out[target & pred] = FOUND
    out[pred & ~target] = FALSE_ALARM
    return out


def best_slice(mask, axis: int = 2) -> int:
    """Index along ``axis`` of the slice with the most ``mask`` voxels (the middle slice when it is empty)."""
    mask = np.asarray(mask)
    if mask.ndim != 3 or axis not in (0, 1, 2):
        raise ValueError(f"expected an (X, Y, Z) mask and axis 0..2, got shape {mask.shape}, axis {axis}")
    counts = (mask != 0).sum(axis=tuple(a for a in range(3) if a != axis))
    return int(np.argmax(counts)) if counts.any() else mask.shape[axis] // 2


def dice_score(pred, target) -> float:
    """Dice of two binary masks; 1.0 when both are empty (the kit's convention, :func:`pcrl_lib.metrics.dice`)."""
    pred, target = _as_mask("pred", pred), _as_mask("target", target)
    size = int(pred.sum()) + int(target.sum())
    return 1.0 if size == 0 else 2.0 * float((pred & target).sum()) / size


def render_comparison(image, pred, target, axis: int | None = None, index: int | None = None,
                      window: tuple[float, float] = NORMALISED_WINDOW, alpha: float = 0.5,
                      direction=None) -> np.ndarray:
    """One display-ready slice ``(rows, cols, 3)`` in [0, 1] (row 0 at the top): the image with the comparison map
    blended in.

    ``index`` None = the slice with the most target voxels (else the most predicted, else the middle)."""
    axis = storage_axis("axial", direction) if axis is None else axis
    labels = comparison_map(pred, target)
    image = np.asarray(image, dtype=np.float32)
    if image.shape != labels.shape:
        raise ValueError(f"image {image.shape} and masks {labels.shape} must have the same (X, Y, Z) shape")
    if index is None:
        truth = np.isin(labels, (MISSED, FOUND))
        index = best_slice(truth if truth.any() else labels, axis)
    level, width = window
    # Blending float32 greys with the float64 colours can overshoot 1 by ~2e-8, which imshow warns about.
    return np.clip(render_slice(image, axis, index, level, width, labels, alpha, direction), 0.0, 1.0)


def _stack(name: str, masks, k: int | None) -> np.ndarray:
    masks = _as_mask(name, masks)
    if masks.ndim == 3:
        masks = masks[None]
    if masks.ndim != 4 or (k is not None and masks.shape[0] != k):
        raise ValueError(f"{name} must be (X, Y, Z) or (K, X, Y, Z) with K = {k} structures, got shape {masks.shape}")
    return masks


def comparison_figure(image, target, predictions: Mapping[str, object], structures: Sequence[str], *,
                      axis: int | None = None, window: tuple[float, float] = NORMALISED_WINDOW,
                      title: str | None = None, size: float = 2.6, direction=None) -> plt.Figure:
    """Ground truth and each prediction on one case, one row per structure.

    Columns: the image with the ground truth (red), then one comparison overlay per entry of ``predictions``
    (e.g. one per initialisation) titled with its Dice. Each row shows the slice with the most ground-truth voxels
    of its structure, the same slice in every column, in the radiological convention stated in the title.

    Args:
        image: ``(X, Y, Z)``.
        target: ``(K, X, Y, Z)`` bool ground truth (``K = len(structures)``; ``(X, Y, Z)`` when ``K = 1``).
        predictions: label → ``(K, X, Y, Z)`` bool prediction.
        structures: the ``K`` structure names.
    """
    names = list(structures)
    target = _stack("target", target, len(names))
    preds = {label: _stack(f"predictions[{label!r}]", p, len(names)) for label, p in predictions.items()}
    image = np.asarray(image, dtype=np.float32)
    if image.shape != target.shape[1:] or any(p.shape != target.shape for p in preds.values()):
        raise ValueError(f"image {image.shape}, target {target.shape} and predictions "
                         f"{[p.shape for p in preds.values()]} must share the (X, Y, Z) grid")
    level, width = window
    axis = storage_axis("axial", direction) if axis is None else axis
    ncols = 1 + len(preds)
    fig, axes = plt.subplots(len(names), ncols, figsize=(size * ncols, (size + 0.35) * len(names) + 0.7),
                             squeeze=False, layout="constrained")
    for row, name in enumerate(names):
        index = best_slice(target[row], axis)
        truth = render_slice(image, axis, index, level, width, target[row].astype(np.uint8), 0.5, direction)
        show_slice(axes[row, 0], np.clip(truth, 0.0, 1.0), axis, direction)
        axes[row, 0].set_title(f"{name}: ground truth (slice {index})", fontsize=8)
        for col, (label, pred) in enumerate(preds.items(), start=1):
            shown = render_comparison(image, pred[row], target[row], axis, index, window, direction=direction)
            show_slice(axes[row, col], shown, axis, direction)
            axes[row, col].set_title(f"{label}: Dice {dice_score(pred[row], target[row]):.3f}", fontsize=8)
    handles = [Patch(color=OVERLAY_COLOURS[code], label=text) for code, text in COMPARISON_NAMES.items()]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    stated = convention(axis, direction)
    fig.suptitle(f"{title}\n{stated}" if title else stated, fontsize=10)
    return fig


def comparison_viewer(image, pred, target, *, window: tuple[float, float] = NORMALISED_WINDOW,
                      title: str | None = None, interactive: bool | None = None, direction=None):
    """The slice viewer on ``image`` with the comparison map of one structure as its overlay.

    Interactive in JupyterLab (axis, slice, window, overlay on/off); a static montage when headless. Returns what
    :func:`pcrl_lib.viz.slice_viewer` returns (the widget or the figure)."""
    labels = comparison_map(pred, target)
    image = np.asarray(image, dtype=np.float32)
    if image.shape != labels.shape:
        raise ValueError(f"image {image.shape} and masks {labels.shape} must have the same (X, Y, Z) shape")
    text = f"{title} — {LEGEND}" if title else LEGEND
    return slice_viewer(image, labels, window=window, title=text, interactive=interactive, direction=direction)
