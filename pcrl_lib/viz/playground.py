"""The augmentation playground of notebook 02: pick 2D/3D, a transform of :data:`.augment.CATALOGUE`, its
parameters, the seed, the image and the slice.

It follows the viewer pattern of :mod:`.viewer`: a pure render function (:func:`render_transform`, tested
directly) behind an ipywidgets panel, and a static figure when run headless (``PCRL_HEADLESS=1``), because
widget callbacks never fire without a browser. Shapes and display conventions as in :mod:`.augment`: 2D images
``(C, H, W)``, 3D cubes ``(C, X, Y, Z)``, display arrays RGB ``(rows, cols, 3)`` in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..data.orientation import storage_axis
from ..transforms import PaintingParams
from .augment import (CATALOGUE, Panel, as_view_input, describe, display_array, display_mask, draw, image_panel,
                      names, painted_region, plot_grid, row_label)
from .viewer import headless


@dataclass
class Frame:
    """What the playground shows: ``before`` / ``after`` display arrays, the ``caption`` of the draw, the
    painted region as a ``mask`` (or None) and the transformed ``output`` ``(C, *spatial)``."""

    before: np.ndarray
    after: np.ndarray
    caption: str
    output: torch.Tensor
    mask: np.ndarray | None = None
    plane: str | None = None


def render_transform(name: str, x: torch.Tensor, seed: int = 0, z: int | None = None,
                     window: Sequence[float] | None = None, direction=None, **values) -> Frame:
    """The playground's pure render function: catalogue transform ``name`` with knob ``values`` on one image
    ``(C, H, W)`` or cube ``(C, X, Y, Z)``, parameters drawn from a generator seeded with ``seed``;
    ``z`` picks the axial slice shown of a cube (``direction``: its volume's, None = LPS). Same arguments → same
    frame; a cube's frame has ``plane`` "axial". When the draw leaves the input unchanged (local pixel shuffling's
    blocks are 1 voxel on a small cube at the released block fraction), the caption says so."""
    d = draw(name, x, 1, seed, **values)
    mask = None
    if isinstance(d.params, PaintingParams):
        region = painted_region(d.params, 0, d.x.shape[2:])
        mask = None if region is None else display_mask(region, z, direction)
    caption = describe(d.params, 0)
    if torch.equal(d.x, d.y):
        caption += "\n(no change at these parameters on this image)"
    return Frame(before=display_array(d.x[0], z, d.normalized, window, direction),
                 after=display_array(d.y[0], z, d.normalized, window, direction),
                 caption=caption, output=d.y[0], mask=mask, plane="axial" if x.ndim == 4 else None)


def frame_figure(frame: Frame, title: str = "") -> plt.Figure:
    """A :class:`Frame` as a before | after figure (the "before" slice lettered)."""
    before = Panel(frame.before, "before", plane=frame.plane)
    return plot_grid([[before, Panel(frame.after, frame.caption, frame.mask)]], size=3.2, title=title)


def _check_stack(x, spatial_dims: int, name: str) -> torch.Tensor:
    layout = "(N, 1|3, H, W)" if spatial_dims == 2 else "(N, 1, X, Y, Z)"
    if not isinstance(x, torch.Tensor) or x.ndim != spatial_dims + 2 or not x.is_floating_point() or x.shape[0] < 1:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a floating tensor {layout} in [0, 1], got {shape}")
    return x


def playground_static(images_2d: torch.Tensor, cubes: torch.Tensor, seed: int = 0, z: int | None = None,
                      window: Sequence[float] | None = None, ncols: int = 6, direction=None) -> plt.Figure:
    """The playground headless: every catalogue transform at its default knobs on the first X-ray, then on the
    first cube's slice ``z``, ``ncols`` panels a row."""
    image = _check_stack(images_2d, 2, "images_2d")[0]
    cube = _check_stack(cubes, 3, "cubes")[0]
    rows, labels = [], []
    for x in (image, cube):
        sd = x.ndim - 1
        panels = [image_panel(as_view_input(x), "input", z, False, window, direction)]
        for name in names(sd):
            frame = render_transform(name, x, seed, z, window, direction)
            panels.append(Panel(frame.after, f"{name}\n{frame.caption}", frame.mask))
        for start in range(0, len(panels), ncols):
            rows.append(panels[start:start + ncols])
            labels.append(row_label(x, z, direction))
    return plot_grid(rows, labels, size=2.0,
                     title=f"playground (static): every transform at its default parameters, seed {seed}")


class Playground:
    """The interactive playground: ``panel`` (the ipywidgets box), ``controls`` (dims, transform, image,
    seed, slice), ``knobs`` (the current transform's sliders) and the last rendered ``frame``.

    ``images_2d`` ``(N, 1|3, H, W)`` and ``cubes`` ``(M, 1, X, Y, Z)`` in [0, 1]; ``window`` the 3D display window;
    ``direction`` the cubes' volume direction (None = LPS), for the radiological display of their axial slices.
    """

    def __init__(self, images_2d: torch.Tensor, cubes: torch.Tensor, seed: int = 0,
                 window: Sequence[float] | None = None, direction=None):
        import ipywidgets as w

        self.images_2d = _check_stack(images_2d, 2, "images_2d")
        self.cubes = _check_stack(cubes, 3, "cubes")
        self.window = window
        self.direction = direction
        slices = self.cubes.shape[2 + storage_axis("axial", direction)]
        self.frame: Frame | None = None
        self.knobs: dict = {}
        self._w = w
        self._busy = False
        self.renders = 0
        self.controls = {
            "dims": w.ToggleButtons(options=[("2D X-ray", 2), ("3D CT cube", 3)], value=2, description="data"),
            "transform": w.Dropdown(options=names(2), value=names(2)[0], description="transform"),
            "image": w.IntSlider(value=0, min=0, max=self.images_2d.shape[0] - 1, description="image"),
            "seed": w.IntSlider(value=int(seed), min=0, max=999, description="seed"),
            "slice": w.IntSlider(value=slices // 2, min=0, max=slices - 1, description="axial slice", disabled=True),
        }
        self.knob_box = w.VBox()
        self.out = w.Output()
        self.controls["dims"].observe(self._on_dims, names="value")
        self.controls["transform"].observe(self._on_transform, names="value")
        for key in ("image", "seed", "slice"):
            self.controls[key].observe(self.redraw, names="value")
        c = self.controls
        self.panel = w.VBox([w.HBox([c["dims"], c["transform"]]), w.HBox([c["image"], c["seed"], c["slice"]]),
                             self.knob_box, self.out])
        self._build_knobs()
        self.redraw()

    def _build_knobs(self) -> None:
        w = self._w
        self.knobs = {}
        for k in CATALOGUE[self.controls["transform"].value].knobs:
            # Defaults lie on the slider grid (Knob), so the browser's snapping never moves them.
            extra = {} if k.integer else {"readout_format": ".3g"}
            slider = (w.IntSlider if k.integer else w.FloatSlider)(
                value=k.default, min=k.low, max=k.high, step=k.step, description=k.name,
                style={"description_width": "initial"}, **extra)
            slider.observe(self.redraw, names="value")
            self.knobs[k.name] = slider
        self.knob_box.children = tuple(self.knobs.values())

    def _on_dims(self, change) -> None:
        sd = change["new"]
        data = self.images_2d if sd == 2 else self.cubes
        self._busy = True          # several controls change below; draw once at the end
        current = self.controls["transform"].value
        self.controls["transform"].options = names(sd)
        self.controls["transform"].value = current if current in names(sd) else names(sd)[0]
        self.controls["image"].max = data.shape[0] - 1
        self.controls["slice"].disabled = sd == 2
        self._busy = False
        self._build_knobs()
        self.redraw()

    def _on_transform(self, change) -> None:
        if self._busy:
            return
        self._build_knobs()
        self.redraw()

    def render(self) -> Frame:
        """The frame for the current control values (calls :func:`render_transform`)."""
        c = self.controls
        sd = c["dims"].value
        x = (self.images_2d if sd == 2 else self.cubes)[min(c["image"].value, c["image"].max)]
        return render_transform(c["transform"].value, x, c["seed"].value, None if sd == 2 else c["slice"].value,
                                self.window, self.direction, **{k: s.value for k, s in self.knobs.items()})

    def redraw(self, *_) -> None:
        """Render once and replace the output area's one figure (``renders`` counts the renders)."""
        if self._busy:
            return
        from IPython.display import display

        self.frame = self.render()
        self.renders += 1
        fig = frame_figure(self.frame, self.controls["transform"].value)
        # Out of pyplot's registry at once: the inline backend shows every registered figure at the end of a
        # cell, which stacked a second copy under the panel on the first switch of transform.
        plt.close(fig)
        with self.out:
            self.out.clear_output(wait=True)
            display(fig)


def playground(images_2d: torch.Tensor, cubes: torch.Tensor, seed: int = 0, z: int | None = None,
               window: Sequence[float] | None = None, interactive: bool | None = None, direction=None):
    """Try every transform: pick 2D/3D, the transform, its parameters, the seed, the image and the slice.

    ``images_2d`` ``(N, 1|3, H, W)`` and ``cubes`` ``(M, 1, X, Y, Z)`` in [0, 1]. In JupyterLab: displays and
    returns a :class:`Playground`; headless (``PCRL_HEADLESS=1``, or without ipywidgets): returns
    :func:`playground_static`'s figure.
    """
    _check_stack(images_2d, 2, "images_2d")
    _check_stack(cubes, 3, "cubes")
    if interactive is None:
        interactive = not headless()
    if not interactive:
        return playground_static(images_2d, cubes, seed, z, window, direction=direction)
    from IPython.display import display

    pg = Playground(images_2d, cubes, seed, window, direction)
    display(pg.panel)
    return pg
