"""Figures for the course: diagrams, slice viewers (static when headless), image grids."""

from .diagram import draw_pcrl_flow
from .viewer import WINDOWS, apply_window, convention, headless, montage, render_slice, show_slice, slice_viewer

__all__ = ["draw_pcrl_flow", "WINDOWS", "apply_window", "convention", "headless", "montage", "render_slice",
           "show_slice", "slice_viewer", "image_grid"]


def image_grid(images, titles=None, ncols: int = 8, cmap: str = "gray", size: float = 1.8, vmin=None, vmax=None):
    """Show a list/array of 2D images (H, W) or (3, H, W)/(H, W, 3) in a grid; returns the figure."""
    import matplotlib.pyplot as plt
    import numpy as np

    images = [np.asarray(im.detach().cpu() if hasattr(im, "detach") else im, dtype=np.float32) for im in images]
    n = len(images)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.3), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i >= n:
            continue
        im = images[i]
        if im.ndim == 3 and im.shape[0] in (1, 3):
            im = im.transpose(1, 2, 0)
        if im.ndim == 3 and im.shape[-1] == 1:
            im = im[..., 0]
        if im.ndim == 3:  # colour: rescale per image for display
            im = (im - im.min()) / (im.max() - im.min() + 1e-8)
        ax.imshow(im, cmap=cmap, vmin=vmin, vmax=vmax)
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=7)
    fig.tight_layout()
    return fig
