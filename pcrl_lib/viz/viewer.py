"""Slice viewer for 3D volumes: axis, slice, window/level and mask overlay.

In JupyterLab it is an ipywidgets panel; headless (papermill, nbval, ``PCRL_HEADLESS=1``) it degrades to a static
montage, because widget callbacks never fire without a browser. The callbacks' work is done by
:func:`render_slice`, a pure function the tests call directly.

Every slice is drawn in one radiological convention whatever the volume's storage order (LPS DICOM/MetaImage,
RAS NIfTI, permuted axes): pass the volume's ``direction`` (:class:`pcrl_lib.data.volume.Volume`; None = identity,
i.e. LPS as ITK reads DICOM). Axial: anterior up, patient right on the image left; coronal and sagittal: superior
up (:mod:`pcrl_lib.data.orientation`). Display arrays have row 0 at the top (``imshow``'s default origin); every
figure states the convention and writes the anatomical letters on the image edges.
"""

from __future__ import annotations

import os

import matplotlib.pyplot as plt
import numpy as np

from ..data.orientation import CONVENTIONS, display_slice, label_edges, plane_of, storage_axis

# Common CT windows as (level, width) in HU.
WINDOWS = {"lung": (-600.0, 1500.0), "mediastinum": (40.0, 400.0), "liver": (60.0, 160.0), "bone": (400.0, 1800.0)}
# RGB in [0, 1] of label k in overlays (0 = background, never drawn); labels above 4 take the last colour.
OVERLAY_COLOURS = np.array([[0, 0, 0], [1.0, 0.2, 0.2], [0.2, 0.9, 0.2], [0.3, 0.5, 1.0], [1.0, 0.8, 0.1]])


def headless() -> bool:
    """True under the course runner / test command (``PCRL_HEADLESS=1``) or without ipywidgets."""
    if os.environ.get("PCRL_HEADLESS", "") not in ("", "0"):
        return True
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return True
    return False


def apply_window(values: np.ndarray, level: float, width: float) -> np.ndarray:
    """Map intensities to [0, 1] with a window centred at ``level`` of size ``width`` (same units as ``values``)."""
    if width <= 0:
        raise ValueError(f"window width must be > 0, got {width}")
    return np.clip((values - (level - width / 2)) / width, 0.0, 1.0)


def take_slice(array: np.ndarray, axis: int, index: int, direction=None) -> np.ndarray:
    """Slice ``index`` of an (X, Y, Z) array along storage ``axis`` → (rows, cols) in the radiological convention
    of its plane (row 0 at the top); ``direction`` the volume's 3×3 direction matrix (None = LPS)."""
    if array.ndim != 3:
        raise ValueError(f"expected a 3D (X, Y, Z) array, got shape {array.shape}")
    return display_slice(array, index, axis, direction)


def slice_title(axis: int, index: int, direction=None) -> str:
    """Panel title naming the plane, e.g. ``"axial, slice 12 (axis 2)"``."""
    return f"{plane_of(axis, direction)}, slice {index} (axis {axis})"


def convention(axis: int = 2, direction=None) -> str:
    """The display convention of the slices along ``axis``, for figure titles."""
    return CONVENTIONS[plane_of(axis, direction)]


def show_slice(ax, image: np.ndarray, axis: int = 2, direction=None, **imshow) -> None:
    """``ax.imshow`` a display array (row 0 at the top), then the anatomical letters on its edges, no ticks."""
    ax.imshow(image, **imshow)
    label_edges(ax, plane_of(axis, direction))
    ax.axis("off")


def _nice_step(span: float) -> float:
    """A 1/2/5·10^k step near ``span / 200`` (slider steps readers can add up)."""
    if not span > 0:
        return 0.01
    raw = span / 200
    power = 10.0 ** np.floor(np.log10(raw))
    return float(min((m * power for m in (1, 2, 5, 10)), key=lambda v: abs(v - raw)))


def window_slider_ranges(lo: float, hi: float, level: float, width: float) -> dict[str, tuple[float, float, float]]:
    """``{"level": (min, max, step), "width": (...)}`` for the viewer's sliders over intensities ``[lo, hi]``.

    A slider snaps its value to ``min + k * step``; both ranges are laid out from the opening ``level`` / ``width``
    in whole steps, so the window opens exactly where asked (lung: -600/1500, not -603.9/1496.6)."""
    span = max(hi, level) - min(lo, level)
    step = _nice_step(span)
    below, above = np.ceil((level - min(lo, level)) / step), np.ceil((max(hi, level) - level) / step)
    widest = max(2 * (hi - lo), width)
    narrow = np.floor(width / step - 1e-9)       # keeps the smallest width > 0
    return {"level": (float(level - below * step), float(level + above * step), step),
            "width": (float(width - narrow * step), float(width + np.ceil((widest - width) / step) * step), step)}


def render_slice(volume: np.ndarray, axis: int = 2, index: int | None = None, level: float = -600.0,
                 width: float = 1500.0, mask: np.ndarray | None = None, alpha: float = 0.4,
                 direction=None) -> np.ndarray:
    """One display-ready slice: (rows, cols, 3) float RGB in [0, 1] with the label ``mask`` blended in colour,
    in the radiological convention (draw it with ``imshow``'s default ``origin="upper"``).

    ``volume`` and ``mask`` are (X, Y, Z); ``axis`` and ``index`` are storage axis and index (``index`` None = the
    middle slice, or the mask's largest slice); ``direction`` the volume's 3×3 direction matrix (None = LPS).
    """
    if mask is not None and mask.shape != volume.shape:
        raise ValueError(f"mask shape {mask.shape} differs from volume shape {volume.shape}")
    if index is None:
        if mask is not None and mask.any():
            other = tuple(a for a in range(3) if a != axis)
            index = int(np.argmax((mask > 0).sum(axis=other)))
        else:
            index = volume.shape[axis] // 2
    grey = apply_window(take_slice(volume, axis, index, direction).astype(np.float32), level, width)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    if mask is not None:
        labels = np.clip(take_slice(mask, axis, index, direction).astype(int), 0, len(OVERLAY_COLOURS) - 1)
        colour = OVERLAY_COLOURS[labels]
        on = (labels > 0)[..., None]
        rgb = np.where(on, (1 - alpha) * rgb + alpha * colour, rgb)
    # The float32 blend rounds past 1 (0.6 * float32(1) + 0.4 = 1 + 2e-8 where a saturated voxel is labelled), and
    # imshow then clips it itself, with a "Clipping input data" warning in the viewer's output.
    return np.clip(rgb, 0.0, 1.0)


def montage(volume: np.ndarray, mask: np.ndarray | None = None, axis: int | None = None, n: int = 6,
            level: float = -600.0, width: float = 1500.0, title: str | None = None, direction=None) -> plt.Figure:
    """Static montage of ``n`` evenly spaced slices along storage ``axis`` (None: the axial one) — the headless
    form of the viewer, titled with the display convention."""
    axis = storage_axis("axial", direction) if axis is None else axis
    indices = np.linspace(0, volume.shape[axis] - 1, n + 2)[1:-1].round().astype(int)
    fig, axes = plt.subplots(1, n, figsize=(2.2 * n, 2.7))
    for ax, idx in zip(np.atleast_1d(axes), indices):
        show_slice(ax, render_slice(volume, axis, int(idx), level, width, mask, direction=direction), axis, direction)
        ax.set_title(slice_title(axis, int(idx), direction), fontsize=8)
    fig.suptitle(f"{title} — {convention(axis, direction)}" if title else convention(axis, direction), fontsize=10)
    fig.tight_layout()
    return fig


def slice_viewer(volume: np.ndarray, mask: np.ndarray | None = None, window: str | tuple = "lung",
                 title: str | None = None, interactive: bool | None = None, direction=None):
    """Interactive viewer (plane, slice, window level/width, mask overlay) or, headless, a static montage.

    ``window`` is a name from :data:`WINDOWS` or ``(level, width)``; for [0, 1]-normalised data use ``(0.5, 1.0)``.
    ``direction``: the volume's 3×3 direction matrix (``Volume.direction``; None = LPS), so every storage order is
    shown in the same radiological convention. Returns the widget (interactive) or the montage figure (headless).
    """
    level, width = WINDOWS[window] if isinstance(window, str) else window
    if interactive is None:
        interactive = not headless()
    if not interactive:
        return montage(volume, mask, level=level, width=width, title=title, direction=direction)

    import ipywidgets as w
    from IPython.display import display

    axial = storage_axis("axial", direction)
    axis = w.Dropdown(options=[(plane, storage_axis(plane, direction)) for plane in ("axial", "coronal", "sagittal")],
                      value=axial, description="plane")
    index = w.IntSlider(value=volume.shape[axial] // 2, min=0, max=volume.shape[axial] - 1, description="slice")
    ranges = window_slider_ranges(float(np.min(volume)), float(np.max(volume)), level, width)
    lvl = w.FloatSlider(value=level, min=ranges["level"][0], max=ranges["level"][1], step=ranges["level"][2],
                        description="level")
    wid = w.FloatSlider(value=width, min=ranges["width"][0], max=ranges["width"][1], step=ranges["width"][2],
                        description="width")
    overlay = w.Checkbox(value=mask is not None, description="mask overlay", disabled=mask is None)
    out = w.Output()

    def redraw(*_):
        index.max = volume.shape[axis.value] - 1
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(5, 5))
            shown = min(index.value, index.max)
            show_slice(ax, render_slice(volume, axis.value, shown, lvl.value, wid.value,
                                        mask if overlay.value else None, direction=direction), axis.value, direction)
            caption = f"{slice_title(axis.value, shown, direction)} — {convention(axis.value, direction)}"
            ax.set_title(f"{title}\n{caption}" if title else caption, fontsize=9)
            plt.show()

    for control in (axis, index, lvl, wid, overlay):
        control.observe(redraw, names="value")
    panel = w.VBox([w.HBox([axis, index]), w.HBox([lvl, wid, overlay]), out])
    display(panel)
    redraw()
    return panel
