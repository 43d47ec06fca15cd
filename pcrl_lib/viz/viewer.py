"""Slice viewer for 3D volumes: axis, slice, window/level and mask overlay.

In JupyterLab it is an ipywidgets panel; headless (papermill, nbval, ``PCRL_HEADLESS=1``) it degrades to a static
montage, because widget callbacks never fire without a browser. The callbacks' work is done by
:func:`render_slice`, a pure function the tests call directly.
"""

from __future__ import annotations

import os

import matplotlib.pyplot as plt
import numpy as np

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


def take_slice(array: np.ndarray, axis: int, index: int) -> np.ndarray:
    """Slice ``index`` of an (X, Y, Z) array along ``axis``, oriented for display (rows = second in-plane axis)."""
    if array.ndim != 3:
        raise ValueError(f"expected a 3D (X, Y, Z) array, got shape {array.shape}")
    if not 0 <= axis <= 2:
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    if not 0 <= index < array.shape[axis]:
        raise ValueError(f"slice index {index} outside 0..{array.shape[axis] - 1} along axis {axis}")
    return np.take(array, index, axis=axis).T


def render_slice(volume: np.ndarray, axis: int = 2, index: int | None = None, level: float = -600.0,
                 width: float = 1500.0, mask: np.ndarray | None = None, alpha: float = 0.4) -> np.ndarray:
    """One display-ready slice: (rows, cols, 3) float RGB in [0, 1] with the label ``mask`` blended in colour.

    ``volume`` and ``mask`` are (X, Y, Z); ``index`` None = the middle slice (or the mask's largest slice).
    """
    if mask is not None and mask.shape != volume.shape:
        raise ValueError(f"mask shape {mask.shape} differs from volume shape {volume.shape}")
    if index is None:
        if mask is not None and mask.any():
            other = tuple(a for a in range(3) if a != axis)
            index = int(np.argmax((mask > 0).sum(axis=other)))
        else:
            index = volume.shape[axis] // 2
    grey = apply_window(take_slice(volume, axis, index).astype(np.float32), level, width)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    if mask is not None:
        labels = np.clip(take_slice(mask, axis, index).astype(int), 0, len(OVERLAY_COLOURS) - 1)
        colour = OVERLAY_COLOURS[labels]
        on = (labels > 0)[..., None]
        rgb = np.where(on, (1 - alpha) * rgb + alpha * colour, rgb)
    return rgb


def montage(volume: np.ndarray, mask: np.ndarray | None = None, axis: int = 2, n: int = 6, level: float = -600.0,
            width: float = 1500.0, title: str | None = None) -> plt.Figure:
    """Static montage of ``n`` evenly spaced slices along ``axis`` (the headless form of the viewer)."""
    indices = np.linspace(0, volume.shape[axis] - 1, n + 2)[1:-1].round().astype(int)
    fig, axes = plt.subplots(1, n, figsize=(2.2 * n, 2.4))
    for ax, idx in zip(np.atleast_1d(axes), indices):
        ax.imshow(render_slice(volume, axis, int(idx), level, width, mask), origin="lower")
        ax.set_title(f"axis {axis}, slice {idx}", fontsize=8)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def slice_viewer(volume: np.ndarray, mask: np.ndarray | None = None, window: str | tuple = "lung",
                 title: str | None = None, interactive: bool | None = None):
    """Interactive viewer (axis, slice, window level/width, mask overlay) or, headless, a static montage.

    ``window`` is a name from :data:`WINDOWS` or ``(level, width)``; for [0, 1]-normalised data use ``(0.5, 1.0)``.
    Returns the widget (interactive) or the montage figure (headless).
    """
    level, width = WINDOWS[window] if isinstance(window, str) else window
    if interactive is None:
        interactive = not headless()
    if not interactive:
        return montage(volume, mask, level=level, width=width, title=title)

    import ipywidgets as w
    from IPython.display import display

    axis = w.Dropdown(options=[("x (sagittal)", 0), ("y (coronal)", 1), ("z (axial)", 2)], value=2, description="axis")
    index = w.IntSlider(value=volume.shape[2] // 2, min=0, max=volume.shape[2] - 1, description="slice")
    lo, hi = float(np.min(volume)), float(np.max(volume))
    lvl = w.FloatSlider(value=level, min=lo, max=hi, step=(hi - lo) / 200 or 0.01, description="level")
    wid = w.FloatSlider(value=width, min=(hi - lo) / 100 or 0.01, max=(hi - lo) * 2 or 1.0,
                        step=(hi - lo) / 200 or 0.01, description="width")
    overlay = w.Checkbox(value=mask is not None, description="mask overlay", disabled=mask is None)
    out = w.Output()

    def redraw(*_):
        index.max = volume.shape[axis.value] - 1
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(5, 5))
            ax.imshow(render_slice(volume, axis.value, min(index.value, index.max), lvl.value, wid.value,
                                   mask if overlay.value else None), origin="lower")
            ax.set_title(title or "", fontsize=9)
            ax.axis("off")
            plt.show()

    for control in (axis, index, lvl, wid, overlay):
        control.observe(redraw, names="value")
    panel = w.VBox([w.HBox([axis, index]), w.HBox([lvl, wid, overlay]), out])
    display(panel)
    redraw()
    return panel
