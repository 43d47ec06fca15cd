"""Figures for the augmentation lesson (notebook 02): random draws of one transform, the Bézier curves,
the TCA code grid, the view pipelines replayed step by step, one PCRL sample as the model sees it, and the
catalogue of transforms that the playground (:mod:`.playground`) offers.

The transforms themselves live in :mod:`pcrl_lib.transforms`; this module only draws, replays and
displays them.

Legend: ``B`` batch size, ``C`` channels (1 for CT cubes and raw X-rays, 3 for the 2D views), 2D images
``(C, H, W)``, 3D cubes ``(C, X, Y, Z)`` with Z = slices; batched tensors carry a leading ``B``. ``sd`` the
number of spatial dims. A "display array" is float RGB ``(rows, cols, 3)`` in [0, 1] with row 0 at the top; a
CT slice is an axial plane in the radiological convention of :func:`.viewer.render_slice` (anterior up, patient
right on the image left), whatever the storage order: ``direction`` is the 3×3 direction matrix of the volume the
cubes were cut from (``Volume.direction``; None = identity, i.e. LPS, as the kit's pretraining cubes of DICOM,
MetaImage and synthetic CT are stored) and ``z`` the storage index of the axial slice. Figures with CT slices
state the convention and letter the edges of the panels whose anatomy is untouched (flips and rotations move it).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..transforms import (AffineParams, BlurParams, ColorJitter, CropParams, Cutout, CutoutParams, FlipParams,
                          GaussianBlur, GrayscaleParams, JitterParams, LocalPixelShuffle, NonlinearIntensity,
                          NonlinearParams, Painting, PaintingParams, Params, PCRLSample, PCRLViews2D,
                          PCRLViews3D, RandomAffine, RandomFlip, RandomResizedCrop, RandomTransform, ShuffleParams,
                          TCAParams, TCATransform, decode_tca, denormalize, encode_tca, mix, normalize, tca_apply)
from ..data.orientation import CONVENTION, display_slice, label_edges, storage_axis
from ..transforms.genesis import bezier_lookup, box_mask

# PCRL's CT scale maps [-1000, 1000] HU to [0, 1]; the lung crops PCRL trains on are mostly parenchyma near
# 0.08 (-850 HU). Showing [0, 0.4] (-1000 to -200 HU) spreads the parenchyma's grey levels; vessels saturate.
DISPLAY_WINDOW_3D = (0.0, 0.4)
AXIS_NAMES = {2: ("H", "W"), 3: ("x", "y", "z")}


# ------------------------------------------------------------------------------------------------ display


def _check_single(x, name: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim not in (3, 4) or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be one floating image (C, H, W) or cube (C, X, Y, Z), got {shape}; "
                         f"take one sample of a batch with x[i]")
    return x


def _middle(x: torch.Tensor, z: int | None, direction=None) -> int:
    """The axial slice to show of a cube ``(C, X, Y, Z)`` (storage index): ``z``, or the middle one."""
    n = x.shape[1 + storage_axis("axial", direction)]
    if z is None:
        return n // 2
    if not 0 <= int(z) < n:
        raise ValueError(f"slice z={z} outside 0..{n - 1} of a cube with {n} slices")
    return int(z)


def _axial(x: torch.Tensor, z: int | None, direction) -> torch.Tensor:
    """The axial slice ``(..., rows, cols)`` of ``x`` ``(..., X, Y, Z)`` in the radiological convention."""
    axis = storage_axis("axial", direction)
    shown = display_slice(x.numpy(), _middle(x.reshape(-1, *x.shape[-3:]), z, direction), axis, direction)
    return torch.from_numpy(np.ascontiguousarray(shown))


def display_array(x: torch.Tensor, z: int | None = None, normalized: bool = False,
                  window: Sequence[float] | None = None, direction=None) -> np.ndarray:
    """One image ``(C, H, W)`` or the axial slice ``z`` of a cube ``(C, X, Y, Z)`` → RGB ``(rows, cols, 3)`` in
    [0, 1], row 0 at the top (a cube's slice: anterior up, patient right on the image left, given ``direction``).

    ``normalized``: the image is ImageNet-normalised (2D views, clean crops) and is mapped back first.
    ``window`` ``(lo, hi)`` maps ``lo`` → black, ``hi`` → white (default: 3D :data:`DISPLAY_WINDOW_3D`,
    2D ``(0, 1)``). A single channel is shown grey; three channels as colour.
    """
    x = _check_single(x).detach().to("cpu", torch.float32)
    if normalized:
        if x.ndim != 3 or x.shape[0] != 3:
            raise ValueError(f"normalized=True needs a 3-channel 2D image (3, H, W), got {tuple(x.shape)}")
        x = denormalize(x[None])[0]
    if x.ndim == 4:
        plane = _axial(x, z, direction)                                 # (C, rows, cols)
        lo, hi = DISPLAY_WINDOW_3D if window is None else window
    else:
        plane = x
        lo, hi = (0.0, 1.0) if window is None else window
    if not hi > lo:
        raise ValueError(f"window must be (lo, hi) with hi > lo, got {window!r}")
    plane = ((plane - lo) / (hi - lo)).clamp(0.0, 1.0)
    if plane.shape[0] == 1:
        plane = plane.expand(3, -1, -1)
    elif plane.shape[0] != 3:
        raise ValueError(f"can only display 1 or 3 channels, got {plane.shape[0]}")
    return plane.permute(1, 2, 0).numpy()


def display_mask(mask: torch.Tensor, z: int | None = None, direction=None) -> np.ndarray:
    """A spatial mask ``(H, W)`` or ``(X, Y, Z)`` oriented like :func:`display_array` → bool ``(rows, cols)``."""
    mask = mask.detach().to("cpu")
    if mask.ndim == 3:
        return _axial(mask, z, direction).numpy().astype(bool)
    return mask.numpy().astype(bool)


@dataclass
class Panel:
    """One image of a figure grid: a display array (RGB ``(rows, cols, 3)``, or ``(rows, cols)`` drawn
    with ``cmap``), its title, an optional bool ``mask`` ``(rows, cols)`` outlined in orange, and ``plane``
    (``"axial"`` for a CT slice whose anatomy is untouched: its edges get the letters A, P, R, L)."""

    image: np.ndarray
    title: str = ""
    mask: np.ndarray | None = None
    cmap: str = "gray"
    vmax: float | None = None
    plane: str | None = None


def image_panel(x: torch.Tensor, title: str, z: int | None, normalized: bool, window, direction, mask=None,
           lettered: bool = True) -> Panel:
    """:func:`display_array` of ``x`` as a :class:`Panel`; a cube's slice is lettered unless ``lettered`` is
    False (for outputs of flips and rotations, whose anatomy moved)."""
    plane = "axial" if x.ndim == 4 and lettered else None
    return Panel(display_array(x, z, normalized, window, direction), title, mask, plane=plane)


def plot_grid(rows: Sequence[Sequence[Panel | None]], row_labels: Sequence[str] | None = None, size: float = 1.9,
              title: str | None = None) -> plt.Figure:
    """Rows of :class:`Panel` (``None`` leaves a blank cell) → a figure; ``row_labels`` go left of each row.
    With a lettered CT slice among the panels the title states the display convention."""
    if not rows or not any(rows):
        raise ValueError("rows must hold at least one panel")
    ncols = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(size * ncols + (0.6 if row_labels else 0),
                                                         size * len(rows) + 0.45 * (1 + bool(title))),
                             squeeze=False)
    for r, row in enumerate(rows):
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            panel = row[c] if c < len(row) else None
            if panel is None:
                continue
            image = panel.image
            if image.ndim == 2:
                ax.imshow(image, cmap=panel.cmap, vmin=0, vmax=panel.vmax if panel.vmax else 1)
            else:
                ax.imshow(image)
            if panel.mask is not None and panel.mask.any() and not panel.mask.all():
                ax.contour(panel.mask.astype(float), levels=[0.5], colors="tab:orange", linewidths=0.8)
            if panel.plane is not None:
                label_edges(ax, panel.plane, fontsize=6)
            ax.set_title(panel.title, fontsize=7)
        if row_labels is not None and r < len(row_labels):
            axes[r, 0].set_ylabel(row_labels[r], fontsize=8)
    if any(p is not None and p.plane is not None for row in rows for p in row):
        stated = f"CT slices: {CONVENTION}"
        title = f"{title}\n{stated}" if title else stated
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------ captions


def code_label(code: torch.Tensor) -> str:
    """A TCA code ``(6,)`` or ``(7,)`` → two lines: the code's entries and what they mean,
    e.g. ``"c = [1 0 | 0 1 0 0]\\nflip H · rot 90°"``."""
    flips, k = decode_tca(code.detach().cpu().view(1, -1))
    sd = flips.shape[1]
    bits = " ".join(str(int(v)) for v in code[:sd].tolist())
    onehot = " ".join(str(int(v)) for v in code[sd:].tolist())
    flipped = [name for name, f in zip(AXIS_NAMES[sd], flips[0].tolist()) if f]
    meaning = ("flip " + ",".join(flipped) if flipped else "no flip") + f" · rot {90 * int(k[0])}°"
    return f"c = [{bits} | {onehot}]\n{meaning}"


def _row(index: torch.Tensor, i: int) -> int | None:
    """Position of sample ``i`` in an ``index`` (A,) of transformed samples, or None."""
    hits = torch.nonzero(index.cpu() == i).flatten()
    return int(hits[0]) if hits.numel() else None


def _fmt(values) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def describe(params: Params | torch.Tensor, i: int) -> str:
    """A short caption of what was drawn for sample ``i`` of a batch (any record of :mod:`pcrl_lib.transforms`,
    :class:`TCAParams`, or a TCA code batch ``(B, 6|7)``)."""
    if isinstance(params, torch.Tensor):
        return code_label(params[i])
    if isinstance(params, TCAParams):
        return code_label(params.code[i])
    if isinstance(params, FlipParams):
        flags = params.flips[i].tolist()
        flipped = [name for name, f in zip(AXIS_NAMES[len(flags)], flags) if f]
        return "flip " + ",".join(flipped) if flipped else "no flip"
    if isinstance(params, CropParams):
        top, left, h, w = params.boxes[i].tolist()
        return f"crop {h}×{w} at ({top}, {left})"
    if isinstance(params, CutoutParams):
        return f"{params.centres.shape[1]} holes"
    if not hasattr(params, "index"):
        raise TypeError(f"params must be a parameter record of pcrl_lib.transforms or a TCA code, got "
                        f"{type(params).__name__}")
    r = _row(params.index, i)
    if r is None:
        return "untouched"
    if isinstance(params, NonlinearParams):
        p1, p2 = params.control[r].tolist()
        return f"P1=({_fmt(p1)}) P2=({_fmt(p2)})" + (", inverted" if bool(params.invert[r]) else "")
    if isinstance(params, ShuffleParams):
        sizes = params.sizes[r]
        return f"{sizes.shape[0]:,} blocks ≤ " + "×".join(str(int(s)) for s in sizes.max(0).values)
    if isinstance(params, PaintingParams):
        count, out = int(params.count[r]), bool(params.outpaint[r])
        noun = ("window" if out else "box") if count == 1 else ("windows" if out else "boxes")
        return f"{'out' if out else 'in'}-painting, {count} {noun}"
    if isinstance(params, AffineParams):
        return f"rot ({_fmt(params.angles[r].tolist())})°\nscale ({_fmt(params.scales[r].tolist())})"
    if isinstance(params, BlurParams):
        return f"σ = ({_fmt(params.sigma[r].tolist())})"
    if isinstance(params, GrayscaleParams):
        return "grayscale"
    if isinstance(params, JitterParams):
        labels = ("bright", "contrast", "sat", "hue")
        factors = params.factors[r].tolist()
        ops = [f"{labels[o]} {factors[o]:+.2f}" if o == 3 else f"{labels[o]} ×{factors[o]:.2f}"
               for o in params.order[r].tolist()]
        return " → ".join(ops[:2]) + " →\n" + " → ".join(ops[2:])
    raise TypeError(f"no caption for {type(params).__name__}")


def painted_region(params: PaintingParams, i: int, spatial: Sequence[int]) -> torch.Tensor | None:
    """Bool ``spatial`` mask of the voxels of sample ``i`` that painting filled with noise, or None if
    it was not painted (in-painting: inside its boxes; out-painting: outside its windows)."""
    r = _row(params.index, i)
    if r is None:
        return None
    boxes = box_mask(params.corners[r:r + 1].cpu(), params.sizes[r:r + 1].cpu(), params.count[r:r + 1].cpu(),
                     spatial)[0]
    return ~boxes if bool(params.outpaint[r]) else boxes


# ------------------------------------------------------------------------------------------------ catalogue


@dataclass(frozen=True)
class Knob:
    """One parameter of a playground transform: slider range and default. The default and ``high`` lie on the
    slider's grid ``low + k * step`` (a slider snaps its value to that grid, which would move an off-grid default)."""

    name: str
    default: float
    low: float
    high: float
    step: float
    integer: bool = False


@dataclass(frozen=True)
class Entry:
    """A transform of the catalogue: ``build(spatial_dims, shape, **knob values)`` → transform with
    ``p = 1`` (so it always acts; at its released parameters an effect can still be too small to see on a small
    cube, which the playground's caption says); ``dims`` the spatial dims it exists for; ``normalized``:
    it acts on ImageNet-normalised images (cutout), so it is shown through normalise → apply → display."""

    name: str
    dims: tuple[int, ...]
    build: Callable[..., RandomTransform]
    knobs: tuple[Knob, ...] = ()
    normalized: bool = False
    why: str = ""


def _entries() -> dict[str, Entry]:
    both = (2, 3)
    boxes = (Knob("max_boxes", 5, 1, 10, 1, True), Knob("continue_p", 0.95, 0.0, 1.0, 0.05))
    entries = [
        Entry("non-linear intensity", both, lambda sd, shape, invert_p: NonlinearIntensity(sd, p=1.0, invert_p=invert_p),
              (Knob("invert_p", 0.5, 0.0, 1.0, 0.05),), why="appearance: a random monotone Bézier curve"),
        Entry("local pixel shuffling", both,
              lambda sd, shape, n_blocks, max_block_frac: LocalPixelShuffle(sd, p=1.0, n_blocks=int(n_blocks),
                                                                              max_block_frac=max_block_frac),
              (Knob("n_blocks", 10_000, 50, 20_000, 50, True), Knob("max_block_frac", 0.1, 0.02, 0.3, 0.01)),
              why="texture: shuffle voxels inside small blocks"),
        Entry("in-painting", both,
              lambda sd, shape, max_boxes, continue_p: Painting(sd, p=1.0, inpaint_p=1.0, max_boxes=int(max_boxes),
                                                               continue_p=continue_p),
              boxes, why="context: fill boxes with noise"),
        Entry("out-painting", both,
              lambda sd, shape, max_boxes, continue_p: Painting(sd, p=1.0, inpaint_p=0.0, max_boxes=int(max_boxes),
                                                               continue_p=continue_p),
              boxes, why="layout: keep windows, noise elsewhere"),
        Entry("flip", both, lambda sd, shape, p: RandomFlip(sd, axes=None, p=p), (Knob("p", 0.5, 0.0, 1.0, 0.05),),
              why="geometry: mirror each axis"),
        Entry("affine", both,
              lambda sd, shape, degrees, scale_low, scale_high: RandomAffine(sd, degrees=degrees,
                                                                             scales=(scale_low, scale_high), p=1.0),
              (Knob("degrees", 10.0, 0.0, 45.0, 1.0), Knob("scale_low", 0.9, 0.5, 1.0, 0.01),
               Knob("scale_high", 1.1, 1.0, 1.5, 0.01)), why="geometry: small rotation + scaling"),
        Entry("Gaussian blur", both,
              lambda sd, shape, sigma_high: GaussianBlur(sd, sigma=(0.1 if sd == 2 else 0.0, sigma_high), p=1.0,
                                                         isotropic=sd == 2),
              (Knob("sigma_high", 2.0, 0.1, 4.0, 0.1),), why="resolution: random smoothing"),
        Entry("TCA flip + rotation", both, lambda sd, shape, flip_p: TCATransform(sd, flip_p),
              (Knob("flip_p", 0.5, 0.0, 1.0, 0.05),), why="the target's coded flips and k·90° rotation"),
        Entry("random resized crop", (2,),
              lambda sd, shape, scale_low: RandomResizedCrop(int(shape[-1]), scale=(scale_low, 1.0)),
              (Knob("scale_low", 0.2, 0.05, 1.0, 0.05),), why="views: random area 20–100 %, resized"),
        Entry("colour jitter", (2,),
              lambda sd, shape, strength: ColorJitter(strength, strength, strength, min(strength, 0.5), p=1.0),
              (Knob("strength", 0.4, 0.0, 1.0, 0.05),), why="photometry: brightness, contrast, saturation, hue"),
        Entry("cutout", (2,),
              lambda sd, shape, n_holes, hole_frac: Cutout(int(n_holes), max(1, round(hole_frac * int(shape[-2])))),
              (Knob("n_holes", 3, 1, 8, 1, True), Knob("hole_frac", 32 / 224, 4 / 224, 112 / 224, 1 / 224)), normalized=True,
              why="occlusion: square holes at the mean colour"),
    ]
    return {e.name: e for e in entries}


CATALOGUE: dict[str, Entry] = _entries()


def names(spatial_dims: int) -> list[str]:
    """The catalogue's transforms that exist in ``spatial_dims`` (2 or 3), in catalogue order."""
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    return [name for name, entry in CATALOGUE.items() if spatial_dims in entry.dims]


def knob_values(name: str, **values) -> dict[str, float]:
    """The knob values of catalogue transform ``name``: defaults, overridden by ``values`` (checked)."""
    if name not in CATALOGUE:
        raise ValueError(f"unknown transform {name!r}; choose one of {list(CATALOGUE)}")
    knobs = {k.name: k for k in CATALOGUE[name].knobs}
    unknown = set(values) - set(knobs)
    if unknown:
        raise ValueError(f"{name!r} has no parameter(s) {sorted(unknown)}; its parameters are {list(knobs)}")
    out = {}
    for key, knob in knobs.items():
        value = values.get(key, knob.default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not knob.low <= value <= knob.high:
            raise ValueError(f"{name!r}: {key} must be a number in [{knob.low}, {knob.high}], got {value!r}")
        out[key] = int(value) if knob.integer else float(value)
    return out


def build(name: str, spatial_dims: int, shape: Sequence[int], **values) -> RandomTransform:
    """Catalogue transform ``name`` for batches of ``shape`` ``(B, C, *spatial)`` with knob ``values``."""
    checked = knob_values(name, **values)
    if spatial_dims not in CATALOGUE[name].dims:
        raise ValueError(f"{name!r} exists only in {CATALOGUE[name].dims[0]}D; choose one of {names(spatial_dims)}")
    return CATALOGUE[name].build(spatial_dims, tuple(shape), **checked)


@dataclass
class Draws:
    """``n`` random draws of one transform on one image: ``x`` and ``y`` ``(n, C, *spatial)`` (inputs, all
    equal, and outputs), the library's ``params`` record, and the ``transform`` that drew them."""

    name: str
    x: torch.Tensor
    y: torch.Tensor
    params: Params
    transform: RandomTransform
    normalized: bool = False

    @property
    def spatial_dims(self) -> int:
        return self.x.ndim - 2


def as_view_input(x: torch.Tensor) -> torch.Tensor:
    """2D images enter the view pipeline as 3 channels (grey repeated), as :class:`PCRLViews2D` does."""
    return x.expand(3, -1, -1) if x.ndim == 3 and x.shape[0] == 1 else x


def draw(name: str, image: torch.Tensor, n: int, seed: int, **values) -> Draws:
    """``n`` draws of catalogue transform ``name`` on one ``image`` ``(C, *spatial)`` in ONE batched call:
    the image is repeated ``n`` times and one generator seeded with ``seed`` draws every sample's parameters."""
    image = as_view_input(_check_single(image, "image"))
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int (draws to show), got {n!r}")
    sd = image.ndim - 1
    x = image.unsqueeze(0).expand(n, *image.shape).contiguous()
    transform = build(name, sd, x.shape, **values)
    generator = torch.Generator(device=image.device).manual_seed(int(seed))
    normalized = CATALOGUE[name].normalized
    if normalized:
        x = normalize(x)
    y, params = transform(x, generator, return_params=True)
    return Draws(name=name, x=x, y=y, params=params, transform=transform, normalized=normalized)


def draws_row(d: Draws, z: int | None = None, window: Sequence[float] | None = None, direction=None) -> list[Panel]:
    """The input then every draw of ``d``, captioned with what was drawn (painting: filled region outlined)."""
    panels = [image_panel(d.x[0], "input", z, d.normalized, window, direction)]
    for i in range(d.y.shape[0]):
        mask = None
        if isinstance(d.params, PaintingParams):
            region = painted_region(d.params, i, d.x.shape[2:])
            mask = None if region is None else display_mask(region, z, direction)
        panels.append(image_panel(d.y[i], describe(d.params, i), z, d.normalized, window, direction, mask,
                                  lettered=False))
    return panels


def row_label(x: torch.Tensor, z: int | None, direction=None) -> str:
    return "2D X-ray" if x.ndim == 3 else f"3D CT, z = {_middle(x, z, direction)}"


def gallery(name: str, images: Sequence[torch.Tensor], n: int = 4, seed: int = 0, z: int | None = None,
            window: Sequence[float] | None = None, direction=None, **values) -> tuple[plt.Figure, list[Draws]]:
    """One row per image (2D ``(C, H, W)`` and/or 3D ``(C, X, Y, Z)``): the input and ``n`` draws of
    ``name``. Returns the figure and the :class:`Draws` (for checks)."""
    results = [draw(name, image, n, seed, **values) for image in images]
    fig = plot_grid([draws_row(d, z, window, direction) for d in results],
                    [row_label(im, z, direction) for im in images],
                    title=f"{name}: {n} draws")
    return fig, results


def bezier_figure(d: Draws, z: int | None = None, window: Sequence[float] | None = None,
                  n_points: int = 200, direction=None) -> plt.Figure:
    """Non-linear intensity draws: each draw's intensity curve (control points P0..P3 where not inverted,
    the input's intensity histogram shaded) above the transformed image."""
    if not isinstance(d.params, NonlinearParams):
        raise ValueError(f"bezier_figure needs draws of 'non-linear intensity', got {d.name!r}")
    images = draws_row(d, z, window, direction)
    ncols = len(images)
    fig, axes = plt.subplots(2, ncols, figsize=(1.9 * ncols, 4.2), squeeze=False)
    hist, edges = np.histogram(d.x[0].detach().cpu().numpy(), bins=50, range=(0, 1))
    xs, ys = bezier_lookup(d.params.control.cpu(), d.params.invert.cpu(), n_points)
    for c in range(ncols):
        ax = axes[0, c]
        ax.fill_between(edges[:-1], 0, hist / max(hist.max(), 1) * 0.4, step="post", color="0.85")
        r = None if c == 0 else _row(d.params.index, c - 1)
        if r is None:
            ax.plot([0, 1], [0, 1], color="0.3", lw=1.2)
            ax.set_title("identity" if c == 0 else "untouched", fontsize=7)
        else:
            ax.plot(xs[r].numpy(), ys[r].numpy(), color="tab:blue", lw=1.5)
            if not bool(d.params.invert[r]):
                pts = np.array([[0, 0], *d.params.control[r].tolist(), [1, 1]])
                ax.plot(pts[:, 0], pts[:, 1], "o--", color="tab:orange", lw=0.7, ms=3)
            ax.set_title("inverted" if bool(d.params.invert[r]) else "P0, P1, P2, P3", fontsize=7)
        ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal")
        ax.tick_params(labelsize=6)
        axes[1, c].imshow(images[c].image)
        axes[1, c].set_title(images[c].title, fontsize=6)
        axes[1, c].axis("off")
        if images[c].plane is not None:
            label_edges(axes[1, c], images[c].plane, fontsize=6)
    axes[0, 0].set_ylabel("output intensity", fontsize=7)
    axes[0, 0].set_xlabel("input intensity", fontsize=7)
    if d.x.ndim == 5:
        fig.suptitle(f"CT slices: {CONVENTION}", fontsize=9)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------ TCA


def all_tca_codes(spatial_dims: int) -> torch.Tensor:
    """Every TCA code: all flip combinations × k = 0..3 → ``(16, 6)`` (2D) or ``(32, 7)`` (3D), flips major."""
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    flips = torch.tensor(list(itertools.product((False, True), repeat=spatial_dims)))
    flips = flips.repeat_interleave(4, 0)
    k = torch.arange(4).repeat(2 ** spatial_dims)
    return encode_tca(flips, k)


def tca_figure(image: torch.Tensor, codes: torch.Tensor | None = None, z: int | None = None,
               window: Sequence[float] | None = None, ncols: int = 4, direction=None) -> plt.Figure:
    """``image`` ``(C, *spatial)`` under each TCA code ``(N, 6|7)`` (default: every code), code printed above."""
    image = _check_single(image, "image")
    sd = image.ndim - 1
    codes = all_tca_codes(sd) if codes is None else codes
    targets = tca_apply(image.unsqueeze(0).expand(codes.shape[0], *image.shape).contiguous(), codes.to(image.device))
    identity = encode_tca(torch.zeros(1, sd, dtype=torch.bool), torch.zeros(1, dtype=torch.long))[0]
    panels = [image_panel(t, code_label(c), z, False, window, direction, lettered=torch.equal(c.cpu(), identity))
              for t, c in zip(targets, codes)]
    rows = [panels[i:i + ncols] for i in range(0, len(panels), ncols)]
    return plot_grid(rows, size=1.7)


# ------------------------------------------------------------------------------------------------ pipelines


@dataclass
class Step:
    """One stage of a replayed view pipeline: its ``name``, the batch after it ``x`` ``(B, C, *spatial)``,
    the parameters it used (None for deterministic stages) and whether ``x`` is ImageNet-normalised."""

    name: str
    x: torch.Tensor
    params: Params | torch.Tensor | None = None
    normalized: bool = False


def replay_view_2d(views: PCRLViews2D, images: torch.Tensor, params: dict, code: torch.Tensor) -> list[Step]:
    """Re-run :meth:`PCRLViews2D.view` stage by stage from its recorded ``params`` (one view's dict of
    ``views(images, generator, return_params=True)``) and TCA ``code`` ``(B, 6)``.

    ``images`` ``(B, 1|3, H, W)`` in [0, 1]. The last two steps equal the sample's ``x`` and ``T`` exactly.
    """
    if not isinstance(views, PCRLViews2D):
        raise TypeError(f"views must be a PCRLViews2D, got {type(views).__name__}")
    images = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
    steps = [Step("input image", images)]
    v = views.crop.apply(images, params["crop"])
    steps.append(Step("resized crop (= g)", v, params["crop"]))
    for name, stage, key in (("rotation", views.rotate, "rotate"), ("flip", views.flip, "flip"),
                             ("grayscale", views.gray, "gray"), ("blur", views.blur, "blur"),
                             ("colour jitter", views.jitter, "jitter")):
        v = stage.apply(v, params[key])
        steps.append(Step(name, v, params[key]))
    v = normalize(v)
    steps.append(Step("normalise", v, None, True))
    x = views.cutout.apply(v, params["cutout"])
    steps.append(Step("cutout → x", x, params["cutout"], True))
    steps.append(Step("TCA → T", tca_apply(x, code), code, True))
    return steps


def replay_view_3d(views: PCRLViews3D, crops: torch.Tensor, params: dict, code: torch.Tensor) -> list[Step]:
    """Re-run :meth:`PCRLViews3D.view` stage by stage from one view's recorded ``params`` and ``code``
    ``(B, 7)``; ``crops`` ``(B, 1, X, Y, Z)``. The last two steps equal the sample's ``x`` and ``T`` exactly."""
    if not isinstance(views, PCRLViews3D):
        raise TypeError(f"views must be a PCRLViews3D, got {type(views).__name__}")
    steps = [Step("crop (= g)", crops)]
    v = crops
    stages = [("flip", views.flip, "flip"), ("affine", views.affine, "affine"), ("blur", views.blur, "blur"),
              ("pixel shuffling", views.shuffle, "shuffle")]
    if "nonlinear" in params:
        stages.append(("non-linear intensity", views.nonlinear, "nonlinear"))
    stages.append(("painting → x", views.painting, "painting"))
    for name, stage, key in stages:
        v = stage.apply(v, params[key])
        steps.append(Step(name, v, params[key]))
    steps.append(Step("TCA → T", tca_apply(v, code), code))
    return steps


def steps_figure(steps: Sequence[Step], samples: Sequence[int] = (0, 1), z: int | None = None,
                 window: Sequence[float] | None = None, direction=None) -> plt.Figure:
    """Replayed pipeline: one row per sample, one column per step, each captioned with its drawn parameters."""
    rows = []
    for i in samples:
        row = []
        for step in steps:
            caption = step.name if step.params is None else f"{step.name}\n{describe(step.params, i)}"
            mask = None
            if isinstance(step.params, PaintingParams):
                region = painted_region(step.params, i, step.x.shape[2:])
                mask = None if region is None else display_mask(region, z, direction)
            row.append(image_panel(step.x[i], caption, z, step.normalized, window, direction, mask,
                              lettered=step is steps[0]))
        rows.append(row)
    return plot_grid(rows, [f"sample {i}" for i in samples], size=1.75)


# ------------------------------------------------------------------------------------------------ one sample


def pcrl_sample_figure(sample: PCRLSample, lam: float, perm: torch.Tensor, index: int = 0, z: int | None = None,
                       window: Sequence[float] | None = None, direction=None) -> plt.Figure:
    """Sample ``index`` of a PCRL batch as the model sees it.

    Row "pass A": x1 → E_o, x2 → E_m, targets T1 (code c1), T2 (code c2), clean crops g1, g2.
    Row "pass B": the partner x1[π(i)], then the mixed x̃1, x̃2 and mixed targets g̃1, g̃2 with
    ``λ`` and ``perm`` (π) from :func:`~pcrl_lib.transforms.draw_mix`.
    """
    if not isinstance(sample, PCRLSample):
        raise TypeError(f"sample must be a PCRLSample, got {type(sample).__name__}")
    if not 0 <= index < sample.batch_size:
        raise ValueError(f"index {index} outside 0..{sample.batch_size - 1}")
    norm = sample.spatial_dims == 2

    def show(t, title):
        # only the clean crops (g) keep the anatomy's orientation; x and T went through flips and rotations
        return image_panel(t, title, z, norm, window, direction, lettered=title.startswith(("g", "g̃")))

    j = int(perm[index])
    mixed = {name: mix(getattr(sample, name), lam, perm)[index] for name in ("x1", "x2", "g1", "g2")}
    pass_a = [show(sample.x1[index], "x1 → E_o (query)"), show(sample.x2[index], "x2 → E_m (key)"),
              show(sample.T1[index], "T1\n" + code_label(sample.c1[index])),
              show(sample.T2[index], "T2\n" + code_label(sample.c2[index])),
              show(sample.g1[index], "g1 (clean crop 1)"), show(sample.g2[index], "g2 (clean crop 2)")]
    pass_b = [show(sample.x1[j], f"x1 of partner π({index}) = {j}"), show(mixed["x1"], "x̃1 → E_o"),
              show(mixed["x2"], "x̃2 → E_m"), show(mixed["g1"], "g̃1 (target)"), show(mixed["g2"], "g̃2 (hybrid target)")]
    return plot_grid([pass_a, pass_b], ["pass A", f"pass B: λ = {lam:.3f}"], size=2.0,
                     title=f"{sample.spatial_dims}D PCRL sample {index} of {sample.batch_size}")


def align_figure(released: PCRLSample, aligned: PCRLSample, samples: Sequence[int] = (0, 1),
                 z: int | None = None, window: Sequence[float] | None = None, direction=None) -> plt.Figure:
    """The ``align_targets`` switch: per sample, x1, g1 as released, g1 aligned, and |difference|
    (grey level: 0 black, ``0.5`` of the display range white)."""
    norm = released.spatial_dims == 2
    rows = []
    for i in samples:
        a = image_panel(released.g1[i], "g1, released (default)", z, norm, window, direction)
        b = image_panel(aligned.g1[i], "g1, align_targets=True", z, norm, window, direction, lettered=False)
        diff = np.abs(a.image - b.image).mean(-1)
        rows.append([image_panel(released.x1[i], "x1", z, norm, window, direction, lettered=False), a, b,
                     Panel(diff, f"|difference|, mean {diff.mean():.3f}", cmap="magma", vmax=0.5)])
    return plot_grid(rows, [f"sample {i}" for i in samples], size=2.0)


def mixup_figure(x: torch.Tensor, lam: float, perm: torch.Tensor, samples: Sequence[int] = (0, 1, 2, 3),
                 normalized: bool = False, z: int | None = None, window: Sequence[float] | None = None,
                 direction=None) -> plt.Figure:
    """Mixup of a batch ``x`` ``(B, C, *spatial)``: rows x_i, its partner x_π(i), and λ·x_i + (1−λ)·x_π(i)."""
    mixed = mix(x, lam, perm)
    samples = [i for i in samples if i < x.shape[0]]
    rows = [[image_panel(x[i], f"x[{i}]", z, normalized, window, direction) for i in samples],
            [image_panel(x[int(perm[i])], f"x[π({i}) = {int(perm[i])}]", z, normalized, window, direction)
             for i in samples],
            [image_panel(mixed[i], f"{lam:.2f}·x[{i}] + {1 - lam:.2f}·x[{int(perm[i])}]", z, normalized, window,
                         direction) for i in samples]]
    return plot_grid(rows, ["x", "partner x[π]", "mixed"], size=2.0, title=f"mixup, λ = {lam:.3f}")


def correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation per sample of two batches ``(B, ...)`` of one shape → ``(B,)`` (0 for a constant sample)."""
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor) or a.shape != b.shape or a.ndim < 2:
        raise ValueError(f"a and b must be batches (B, ...) of one shape, got {getattr(a, 'shape', a)} and "
                         f"{getattr(b, 'shape', b)}")
    a = a.flatten(1).double()
    b = b.flatten(1).double()
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    norms = a.norm(dim=1) * b.norm(dim=1)
    return torch.where(norms > 0, (a * b).sum(1) / norms.clamp_min(1e-300), torch.zeros_like(norms)).float()


def best_seconds(fn: Callable[[], object], repeats: int = 3, device: torch.device | str = "cpu") -> float:
    """Fastest wall time of ``fn()`` over ``repeats`` runs after one warm-up run (the least disturbed by other
    processes, as ``timeit`` advises); on CUDA the device is synchronised around each run."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    device = torch.device(device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    seconds = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        seconds.append(time.perf_counter() - start)
    return min(seconds)
