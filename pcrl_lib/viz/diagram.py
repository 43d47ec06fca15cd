"""The PCRL data-flow diagram of notebook 00, drawn with matplotlib (no image files needed).

Legend: E_o ordinary (query) encoder, E_m momentum (key) encoder, E_h hybrid encoder (α·F_o + (1−α)·F_m at every
scale), D the one shared decoder, TCA transformation-conditioned attention gate, c1/c2 transformation codes.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

# (x, y, label, colour) in axes units; y grows upwards.
_BOXES = {
    "x1": (0.08, 0.78, "view x1\n(distorted crop)", "#dde7f3"),
    "x2": (0.08, 0.30, "view x2\n(distorted crop)", "#dde7f3"),
    "Eo": (0.28, 0.78, "E_o\nordinary encoder\n(backprop)", "#b9d3ee"),
    "Em": (0.28, 0.30, "E_m\nmomentum encoder\n(EMA, m=0.999)", "#f3d9b1"),
    "Eh": (0.48, 0.54, "E_h hybrid\nα·F_o+(1−α)·F_m\nα=max(α,1−α)", "#d9c2e9"),
    "tca1": (0.48, 0.78, "TCA gate(c1)", "#c8e6c9"),
    "tca2": (0.48, 0.30, "TCA gate(c2)", "#c8e6c9"),
    "D": (0.69, 0.54, "D\nshared U-Net\ndecoder", "#ffe0b2"),
    "out_o": (0.90, 0.78, "ordinary output\n→ target T1", "#fff3e0"),
    "out_h": (0.90, 0.54, "hybrid output\n→ α·T1+(1−α)·T2", "#fff3e0"),
    # Between the encoders it is fed by, so no arrow crosses another box (tests/test_viz_widgets.py).
    "nce": (0.28, 0.54, "contrastive\nNCE(q, k)\nqueue K×128", "#ffcdd2"),
}
BOX_SIZE = (0.15, 0.13)   # box width, height in axes units
BOX_PAD = 0.01            # the rounded border's padding around BOX_SIZE
_ARROWS = [("x1", "Eo"), ("x2", "Em"), ("Eo", "tca1"), ("Em", "tca2"), ("tca1", "Eh"), ("tca2", "Eh"),
           ("tca1", "D"), ("Eh", "D"), ("D", "out_o"), ("D", "out_h"), ("Eo", "nce"), ("Em", "nce")]


def draw_pcrl_flow(ax: plt.Axes | None = None) -> plt.Figure:
    """Draw PCRL's pass A (three encoders, one decoder) and a note on pass B (cross-model mixup).

    Returns the figure; pass ``ax`` to draw into an existing axes.
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(12, 5.6))
    else:
        fig = ax.figure
    ax.set_xlim(-0.01, 1.0)   # the input boxes reach past 0 by their rounded border
    ax.set_ylim(0, 1)
    ax.axis("off")
    w, h = BOX_SIZE
    patches = {}
    for name, (x, y, label, colour) in _BOXES.items():
        patches[name] = ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle=f"round,pad={BOX_PAD}",
                                                    fc=colour, ec="#444"))
        ax.text(x, y, label, ha="center", va="center", fontsize=8.5)
    for a, b in _ARROWS:
        # patchA/patchB clip each arrow at the box borders, so arrows never cross the text.
        ax.add_patch(FancyArrowPatch(_BOXES[a][:2], _BOXES[b][:2], patchA=patches[a], patchB=patches[b],
                                     arrowstyle="-|>", mutation_scale=12, color="#555", lw=1.1))
    ax.text(0.5, 0.02, "Pass B (cross-model mixup, no TCA): mix x1, x2, clean crops g1, g2 and keys k with one "
            "λ = max(λ, 1−λ) and permutation π; reconstruct the mixed clean crops; NCE(q̃, k̃) + NCE(q̃, k̃_mix).\n"
            "Loss = mean of 3 contrastive terms + mean of 4 MSE terms; SGD step on E_o and D, then EMA update of E_m.",
            ha="center", va="bottom", fontsize=8.5, wrap=True)
    ax.set_title("PCRL pass A: three encoders, one decoder", fontsize=11)
    return fig
