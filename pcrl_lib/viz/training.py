"""Figures and summaries of pretraining runs (notebook 03, 2D and 3D): loss parts of several runs side by side,
start/end tables, and what the decoder reconstructs for each TCA code and for the hybrid encoder.

Legend:

===========  ==============================================================================================
history      the list of step records :class:`pcrl_lib.train.Trainer` writes to ``history.json``:
             ``{"epoch", "step", "lr", "loss", "parts": {name: value}, "samples_per_s"}``
parts        named loss terms of :mod:`pcrl_lib.pcrl` (``nce_a`` … ``mse_b_hyb``, ``p_pos``, ``mse_restore``);
             :data:`PART_DESCRIPTIONS` says what each one is
method       a trained :class:`pcrl_lib.pcrl.PCRL` (``encoder_q`` = E_o, ``encoder_k`` = E_m, ``gate``,
             ``decode``)
code c       a TCA code (B, 6) in 2D / (B, 7) in 3D (:mod:`pcrl_lib.transforms.tca`)
T(x, c)      the reconstruction target: ``x`` flipped/rotated as ``c`` says
α            hybrid weight; E_h's features are α·F_o + (1−α)·F_m at every scale
===========  ==============================================================================================

Computations (:func:`start_end`, :func:`tca_reconstructions`, :func:`hybrid_reconstructions`,
:func:`code_confusion`, ...) are pure functions returning tables or tensors; ``plot_*`` functions turn them into
``matplotlib`` figures (returned, not shown) so that the notebooks decide what to display.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from ..pcrl import hybrid_mix
from ..transforms.color import denormalize
from ..transforms.tca import decode_tca, encode_tca, tca_apply
from .viewer import take_slice

PART_DESCRIPTIONS = {
    "loss": "total: mean of the contrastive terms + mean of the reconstruction terms",
    "nce_a": "pass A, contrastive: q = E_o(x1) against k = E_m(x2) and the queue",
    "nce_b": "pass B, contrastive: q̃ = E_o(x̃1) against k̃ = E_m(x̃2) (mixed inputs)",
    "nce_b_mix": "pass B, contrastive: q̃ against the mixed pass-A keys k̃_mix",
    "mse_a_ord": "pass A, ordinary output D(gate(c1)·F_o) vs T1 (x1 itself without TCA)",
    "mse_a_hyb": "pass A, hybrid output D(α1·gate(c1)·F_o + (1−α1)·gate(c2)·F_m) vs α1·T1 + (1−α1)·T2",
    "mse_b_ord": "pass B, ordinary output D(F_o(x̃1)) vs the mixed clean crop g̃1",
    "mse_b_hyb": "pass B, hybrid output (new α2, no TCA) vs α2·g̃1 + (1−α2)·g̃2",
    "mse_restore": "Models Genesis: restored crop vs the clean crop",
    "p_pos": "mean probability that the positive key is recognised (reported, not optimised)",
}
# Parts that are probabilities (drawn on a linear [0, 1] axis of their own), not losses.
PROBABILITY_PARTS = ("p_pos",)
_AXIS_NAMES = {2: ("H", "W"), 3: ("x", "y", "z")}


# ------------------------------------------------------------------------------------------------ histories
def load_history(source: Sequence[Mapping] | str | os.PathLike) -> list[dict]:
    """A history as a list of records, from the list itself, a ``history.json`` or a run folder holding one.

    Raises ``FileNotFoundError`` / ``ValueError`` naming the source when there is nothing to read.
    """
    where = "history"
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        path = path / "history.json" if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no history.json; pass a run folder of pcrl_lib.train.pretrain "
                                    "(or its history.json) after training")
        source, where = json.loads(path.read_text()), str(path)
    records = list(source)
    if not records:
        raise ValueError(f"{where} is empty: nothing was trained (or logged) yet")
    bad = [i for i, r in enumerate(records) if not (isinstance(r, Mapping) and {"step", "loss", "parts"} <= set(r))]
    if bad:
        raise ValueError(f"{where}: records {bad[:5]} lack 'step', 'loss' or 'parts'; expected the step records "
                         "of pcrl_lib.train.Trainer")
    return [dict(r) for r in records]


def history_frame(history: Sequence[Mapping] | str | os.PathLike) -> pd.DataFrame:
    """One row per logged step: ``step``, ``epoch``, ``lr``, ``loss``, one column per part, ``samples_per_s``."""
    records = load_history(history)
    rows = [{"step": r["step"], "epoch": r.get("epoch"), "lr": r.get("lr"), "loss": r["loss"], **r["parts"],
             "samples_per_s": r.get("samples_per_s")} for r in records]
    return pd.DataFrame(rows).set_index("step")


def moving_average(values: Sequence[float] | np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over up to ``window`` values (the first entries average what exists so far); same length."""
    if not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"window must be a positive int, got {window!r}")
    v = np.asarray(values, dtype=np.float64)
    cumsum = np.concatenate([[0.0], np.cumsum(v)])
    idx = np.arange(1, v.size + 1)
    lo = np.maximum(idx - window, 0)
    return (cumsum[idx] - cumsum[lo]) / (idx - lo)


def start_end(histories: Mapping[str, Sequence[Mapping] | str | os.PathLike], window: int = 5,
              skip: int | Mapping[str, int] = 0) -> pd.DataFrame:
    """Loss and parts at the start and end of each run: means over the first / last ``window`` logged steps.

    ``skip``: steps left out at the beginning, one number or {run: steps} (e.g. while the queue still holds its
    random initial keys, :func:`queue_warmup_steps`); reduced when a run is too short, so that two records
    always remain.
    ``window`` is capped at half the remaining records so the two ends never share a step. Returns a DataFrame
    with columns ``run, part, start, end, change`` (``end − start``), ``steps`` (the run's last step) and
    ``from_step`` (the first step of the start window), one row per (run, part), ``loss`` first.
    """
    if not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"window must be a positive int, got {window!r}")
    skips = dict(skip) if isinstance(skip, Mapping) else {run: skip for run in histories}
    if any(not isinstance(v, (int, np.integer)) or v < 0 for v in skips.values()):
        raise ValueError(f"skip must be a non-negative int (steps) or {{run: steps}}, got {skip!r}")
    if not histories:
        raise ValueError("histories is empty: pass {run name: history}")
    rows = []
    for run, history in histories.items():
        frame = history_frame(history)
        kept = frame[frame.index > skips.get(run, 0)]
        frame = kept if len(kept) >= 2 else frame.iloc[-2:] if len(frame) >= 2 else frame
        w = max(1, min(int(window), len(frame) // 2))
        for part in ["loss", *[c for c in frame.columns if c not in ("epoch", "lr", "loss", "samples_per_s")]]:
            values = frame[part].to_numpy(dtype=np.float64)
            start, end = float(np.nanmean(values[:w])), float(np.nanmean(values[-w:]))
            rows.append({"run": run, "part": part, "start": start, "end": end, "change": end - start,
                         "steps": int(frame.index[-1]), "from_step": int(frame.index[0])})
    return pd.DataFrame(rows, columns=["run", "part", "start", "end", "change", "steps", "from_step"])


def train_seconds(history: Sequence[Mapping] | str | os.PathLike, samples_per_step: int) -> float:
    """Training time estimated from the logged throughput: steps × mean(samples_per_step / samples_per_s).

    ``samples_per_step``: the global batch (batch size × processes). Useful when a finished run is reused and
    its wall time was not measured in this session; excludes checkpoint writing and the encoder export.
    """
    if not isinstance(samples_per_step, (int, np.integer)) or samples_per_step < 1:
        raise ValueError(f"samples_per_step must be a positive int (batch size × processes), got {samples_per_step!r}")
    frame = history_frame(history)
    rates = frame["samples_per_s"].to_numpy(dtype=np.float64)
    if rates.size == 0 or not np.all(np.isfinite(rates)) or np.any(rates <= 0):
        raise ValueError("the history has no positive 'samples_per_s' values to estimate the time from")
    return float(frame.index[-1] * np.mean(samples_per_step / rates))


def queue_warmup_steps(method: str, K: int, batch_size: int) -> int:
    """Steps until the queue holds no random initial key: ⌈K / keys enqueued per step⌉.

    Keys per step: 3·batch for the methods with the mixup pass (pcrl, pcrl_tca, pcrl_recon, c2l: k, k̃, k̃_mix),
    1·batch for moco; models_genesis has no queue (0 steps).
    """
    from ..pcrl import METHODS

    if method == "models_genesis":
        return 0
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid: models_genesis, {', '.join(METHODS)}")
    if not all(isinstance(v, (int, np.integer)) and v >= 1 for v in (K, batch_size)):
        raise ValueError(f"K and batch_size must be positive ints, got K={K!r}, batch_size={batch_size!r}")
    per_step = (3 if METHODS[method]["mixup"] else 1) * int(batch_size)
    return math.ceil(int(K) / per_step)


# ---------------------------------------------------------------------------------------------- loss figures
def _parts_to_plot(frame: pd.DataFrame, parts: Sequence[str] | None) -> tuple[list[str], list[str]]:
    available = [c for c in frame.columns if c not in ("epoch", "lr", "samples_per_s")]
    chosen = available if parts is None else [p for p in parts if p in available]
    losses = [p for p in chosen if p not in PROBABILITY_PARTS]
    probabilities = [p for p in chosen if p in PROBABILITY_PARTS]
    return losses, probabilities


def plot_runs(histories: Mapping[str, Sequence[Mapping] | str | os.PathLike],
              parts: Sequence[str] | Mapping[str, Sequence[str]] | None = None, smooth: int = 1, ncols: int = 3,
              logy: bool = True, panel_size: tuple[float, float] = (4.2, 3.0)) -> Figure:
    """One panel per run, side by side: the total loss (thick) and its parts over steps; probabilities
    (``p_pos``) dashed on a right-hand [0, 1] axis. ``parts`` restricts the curves: one list for every panel,
    or {run: list} per panel (None = all); ``smooth`` is a trailing moving-average window; log scale when every
    plotted loss value is positive."""
    if not histories:
        raise ValueError("histories is empty: pass {run name: history}")
    if not isinstance(ncols, (int, np.integer)) or ncols < 1:
        raise ValueError(f"ncols must be a positive int, got {ncols!r}")
    n = len(histories)
    ncols = min(int(ncols), n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, (run, history) in zip(axes, histories.items()):
        frame = history_frame(history)
        losses, probabilities = _parts_to_plot(frame, parts.get(run) if isinstance(parts, Mapping) else parts)
        steps = frame.index.to_numpy()
        for part in losses:
            ax.plot(steps, moving_average(frame[part].to_numpy(), smooth), label=part,
                    lw=2.2 if part == "loss" else 1.1, color="black" if part == "loss" else None)
        values = frame[losses].to_numpy(dtype=np.float64) if losses else np.empty(0)
        if logy and values.size and np.all(values[np.isfinite(values)] > 0):
            ax.set_yscale("log")
        ax.set_title(run)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        if probabilities:
            twin = ax.twinx()
            for part in probabilities:
                twin.plot(steps, moving_average(frame[part].to_numpy(), smooth), ls="--", color="tab:purple",
                          label=part)
            twin.set_ylim(0.0, 1.0)
            twin.set_ylabel("probability")
            more_handles, more_labels = twin.get_legend_handles_labels()
            handles, labels = handles + more_handles, labels + more_labels
        ax.legend(handles, labels, fontsize=7, ncol=2)
    for ax in axes[n:]:
        ax.set_visible(False)
    axes[0].set_ylabel("loss")
    return fig


def plot_compare(histories: Mapping[str, Sequence[Mapping] | str | os.PathLike], part: str, smooth: int = 1,
                 ax=None, logy: bool | None = None) -> Figure:
    """One quantity (``"loss"``, ``"p_pos"``, ``"mse_a_ord"``, ...) of every run that has it, overlaid.

    Runs without ``part`` are skipped; ``ValueError`` lists what exists when none has it. ``logy`` None =
    log scale for losses with positive values, linear for probabilities. Returns the figure.
    """
    frames = {run: history_frame(h) for run, h in histories.items()}
    having = {run: f for run, f in frames.items() if part in f.columns}
    if not having:
        found = sorted({c for f in frames.values() for c in f.columns} - {"epoch", "lr", "samples_per_s"})
        raise ValueError(f"no run has the part {part!r}; available: {', '.join(found)}")
    if ax is None:
        fig = Figure(figsize=(6.0, 3.6), layout="constrained")
        ax = fig.subplots()
    else:
        fig = ax.figure
    for run, frame in having.items():
        ax.plot(frame.index.to_numpy(), moving_average(frame[part].to_numpy(), smooth), label=run)
    values = np.concatenate([f[part].to_numpy(dtype=np.float64) for f in having.values()])
    if logy is None:
        logy = part not in PROBABILITY_PARTS and bool(np.all(values[np.isfinite(values)] > 0))
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(part)
    ax.set_title(PART_DESCRIPTIONS.get(part, part), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


# ------------------------------------------------------------------------------------------------ TCA codes
def tca_codes(spatial_dims: int, flips: Sequence[Sequence[int]] = ((), (0,))) -> torch.Tensor:
    """Codes (len(flips)·4, 2+4 | 3+4): for each set of flipped axes in ``flips``, the four rotations k·90°.

    The default lists the 8 codes "no flip" and "flip of the first axis" × {0°, 90°, 180°, 270°}.
    """
    if spatial_dims not in _AXIS_NAMES:
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    rows = []
    for axes in flips:
        if any(not isinstance(a, (int, np.integer)) or not 0 <= a < spatial_dims for a in axes):
            raise ValueError(f"flip axes {tuple(axes)} must be in 0..{spatial_dims - 1}")
        rows.extend((tuple(a in axes for a in range(spatial_dims)), k) for k in range(4))
    if not rows:
        raise ValueError("flips is empty: list at least one set of flipped axes, e.g. ((),)")
    return encode_tca(torch.tensor([r[0] for r in rows]), torch.tensor([r[1] for r in rows]))


def code_label(code: torch.Tensor) -> str:
    """A short name of one code (6,) or (7,): e.g. ``"rot 90°"``, ``"flip H, rot 180°"``."""
    flips, k = decode_tca(torch.as_tensor(code).reshape(1, -1))
    names = _AXIS_NAMES[flips.shape[1]]
    flipped = [names[i] for i in range(flips.shape[1]) if bool(flips[0, i])]
    rotation = f"rot {int(k[0]) * 90}°"
    return f"flip {'+'.join(flipped)}, {rotation}" if flipped else rotation


# ------------------------------------------------------------------------------------------- reconstructions
def _single(x: torch.Tensor, spatial_dims: int, name: str) -> torch.Tensor:
    """(C, *S) or (1, C, *S) → (1, C, *S)."""
    if not isinstance(x, torch.Tensor) or x.ndim not in (spatial_dims + 1, spatial_dims + 2):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be one image (C, *S) or (1, C, *S) of a {spatial_dims}D model, got {shape}")
    x = x.unsqueeze(0) if x.ndim == spatial_dims + 1 else x
    if x.shape[0] != 1:
        raise ValueError(f"{name} must hold one image, got a batch of {x.shape[0]}")
    return x


def _check_decoder(method: Any, need_gate: bool) -> None:
    if getattr(method, "decoder", None) is None or not callable(getattr(method, "decode", None)):
        raise ValueError(f"method {getattr(method, 'method', type(method).__name__)!r} has no decoder: "
                         "reconstructions need pcrl, pcrl_tca or pcrl_recon")
    if need_gate and getattr(method, "gate", None) is None:
        raise ValueError(f"method {method.method!r} has no TCA gate: reconstructions per code need pcrl or pcrl_tca")


class _EvalMode:
    """Run a module in eval mode (BN running statistics) and restore its previous mode afterwards."""

    def __init__(self, module: torch.nn.Module):
        self.module, self.was_training = module, module.training

    def __enter__(self):
        self.module.eval()

    def __exit__(self, *exc):
        self.module.train(self.was_training)


@torch.no_grad()
def tca_reconstructions(method: Any, x: torch.Tensor, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What the decoder makes of one image under each TCA code: ``(targets, outputs)``, both (n, C, *S).

    ``x``: one encoder input (C, *S) or (1, C, *S); ``codes``: (n, 6|7). ``outputs[i] = D(gate(codes[i])·F_o(x))``
    (E_o's skips unchanged), ``targets[i] = T(x, codes[i])``. The method runs in eval mode (BatchNorm running
    statistics, so every code sees the same normalisation) on its own device; inputs are moved there.
    """
    _check_decoder(method, need_gate=True)
    sd = method.spatial_dims
    device = next(method.parameters()).device
    x = _single(x, sd, "x").to(device)
    codes = torch.as_tensor(codes, dtype=torch.float32).to(device)
    if codes.ndim != 2 or codes.shape[1] != sd + 4:
        raise ValueError(f"codes must be (n, {sd + 4}) TCA codes of a {sd}D model, got {tuple(codes.shape)}")
    batch = x.expand(codes.shape[0], *x.shape[1:])
    with _EvalMode(method):
        features = method.encoder_q(x)
        features = [f.expand(codes.shape[0], *f.shape[1:]) for f in features]
        outputs = method.decode(method.gated(features, codes))
    return tca_apply(batch, codes), outputs


@torch.no_grad()
def hybrid_reconstructions(method: Any, x1: torch.Tensor, x2: torch.Tensor, alphas: Sequence[float],
                           c1: torch.Tensor | None = None,
                           c2: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Hybrid-encoder outputs of one pair for several α: ``(targets, outputs)``, both (len(alphas), C, *S).

    ``outputs[i] = D(mix_αi(gate(c1)·F_o(x1), gate(c2)·F_m(x2)))`` with E_o = ``encoder_q`` and E_m =
    ``encoder_k``; ``targets[i] = αi·T(x1, c1) + (1−αi)·T(x2, c2)``. Without a gate (``pcrl_recon``) or without
    codes, nothing is gated and the targets are αi·x1 + (1−αi)·x2. Eval mode, on the method's device.
    """
    _check_decoder(method, need_gate=False)
    sd = method.spatial_dims
    device = next(method.parameters()).device
    x1, x2 = _single(x1, sd, "x1").to(device), _single(x2, sd, "x2").to(device)
    alpha = torch.as_tensor(list(alphas), dtype=torch.float32, device=device)
    if alpha.ndim != 1 or alpha.numel() == 0 or bool(((alpha < 0) | (alpha > 1)).any()):
        raise ValueError(f"alphas must be a non-empty list of weights in [0, 1], got {list(alphas)}")
    gated = getattr(method, "gate", None) is not None and c1 is not None and c2 is not None
    with _EvalMode(method):
        f_o, f_m = method.encoder_q(x1), method.encoder_k(x2)
        if gated:
            c1 = torch.as_tensor(c1, dtype=torch.float32).reshape(1, -1).to(device)
            c2 = torch.as_tensor(c2, dtype=torch.float32).reshape(1, -1).to(device)
            f_o, f_m = method.gated(f_o, c1), method.gated(f_m, c2)
            t1, t2 = tca_apply(x1, c1), tca_apply(x2, c2)
        else:
            t1, t2 = x1, x2
        # Each α mixes every scale; stacking the per-α feature lists gives one decoder batch.
        mixed = [hybrid_mix(f_o, f_m, float(a)) for a in alpha.tolist()]
        outputs = method.decode([torch.cat(level, 0) for level in zip(*mixed)])
    shape = (-1,) + (1,) * (sd + 1)
    targets = alpha.view(shape) * t1 + (1.0 - alpha.view(shape)) * t2
    return targets, outputs


def per_item_mse(targets: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
    """Mean squared error per item: (n, C, *S) × 2 → (n,)."""
    if targets.shape != outputs.shape:
        raise ValueError(f"targets {tuple(targets.shape)} and outputs {tuple(outputs.shape)} differ in shape")
    return (outputs.float() - targets.float()).pow(2).flatten(1).mean(1)


def code_confusion(targets: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
    """MSE of every output against every target: (n, n) with ``[i, j] = mse(outputs[i], targets[j])``.

    After TCA has been learned the diagonal is the row minimum: the decoder follows the code it is given.
    """
    if targets.shape != outputs.shape:
        raise ValueError(f"targets {tuple(targets.shape)} and outputs {tuple(outputs.shape)} differ in shape")
    o, t = outputs.float().flatten(1), targets.float().flatten(1)
    # ‖o_i − t_j‖² = ‖o_i‖² − 2 o_i·t_j + ‖t_j‖², all pairs at once.
    sq = o.pow(2).sum(1, keepdim=True) - 2.0 * o @ t.T + t.pow(2).sum(1).unsqueeze(0)
    return sq.clamp_min(0.0) / o.shape[1]


# -------------------------------------------------------------------------------------------- image figures
def to_display(image: torch.Tensor | np.ndarray, spatial_dims: int, normalized: bool = True) -> np.ndarray:
    """One item as a displayable array in [0, 1].

    2D (3, H, W): ImageNet-normalised (``normalized=True``, as the 2D views and decoder outputs are) →
    denormalised, clipped, (H, W, 3); (1, H, W) → (H, W). 3D (1, X, Y, Z): the middle axial slice (z),
    oriented like :func:`pcrl_lib.viz.take_slice` (rows = y, columns = x: for the kit's cubes, cut in LPS order,
    anterior up and the patient's right on the image left before any flip or rotation), clipped to [0, 1].
    """
    t = torch.as_tensor(image).detach().float().cpu()
    if spatial_dims == 2:
        if t.ndim != 3 or t.shape[0] not in (1, 3):
            raise ValueError(f"a 2D item must be (1|3, H, W), got {tuple(t.shape)}")
        if t.shape[0] == 3 and normalized:
            t = denormalize(t.unsqueeze(0))[0]
        array = t.clamp(0.0, 1.0).numpy()
        return array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)
    if spatial_dims == 3:
        if t.ndim != 4 or t.shape[0] != 1:
            raise ValueError(f"a 3D item must be (1, X, Y, Z), got {tuple(t.shape)}")
        volume = t[0].clamp(0.0, 1.0).numpy()
        return take_slice(volume, 2, volume.shape[2] // 2)
    raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")


def plot_reconstructions(targets: torch.Tensor, outputs: torch.Tensor, labels: Sequence[str], spatial_dims: int,
                         normalized: bool = True, title: str | None = None, size: float = 1.7) -> Figure:
    """Two rows — targets above, decoder outputs below (titled with their MSE) — one column per label."""
    if targets.shape != outputs.shape or targets.shape[0] != len(labels):
        raise ValueError(f"targets {tuple(targets.shape)}, outputs {tuple(outputs.shape)} and {len(labels)} labels "
                         "must describe the same n items")
    errors = per_item_mse(targets, outputs).tolist()
    n = len(labels)
    fig = Figure(figsize=(size * n, 2 * size + 0.5), layout="constrained")
    axes = fig.subplots(2, n, squeeze=False)
    for i in range(n):
        for row, (item, text) in enumerate(((targets[i], labels[i]), (outputs[i], f"MSE {errors[i]:.3g}"))):
            ax = axes[row, i]
            ax.imshow(to_display(item, spatial_dims, normalized), cmap="gray", vmin=0.0, vmax=1.0)
            ax.set_title(text, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("target", fontsize=9)
    axes[1, 0].set_ylabel("reconstruction", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_confusion(matrix: torch.Tensor, labels: Sequence[str], title: str | None = None) -> Figure:
    """Heat map of :func:`code_confusion` (rows: code given to the decoder, columns: target compared)."""
    m = torch.as_tensor(matrix).detach().cpu().numpy()
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] != len(labels):
        raise ValueError(f"matrix must be (n, n) with n = {len(labels)} labels, got {m.shape}")
    fig = Figure(figsize=(1.0 + 0.55 * len(labels), 0.8 + 0.5 * len(labels)), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(m, cmap="viridis")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("target T(x, code)")
    ax.set_ylabel("code given to the gate")
    rows = np.arange(len(labels))
    ax.scatter(m.argmin(1), rows, marker="o", facecolors="none", edgecolors="white", s=60, label="row minimum")
    ax.legend(fontsize=7, loc="upper right")
    fig.colorbar(image, ax=ax, label="MSE")
    if title:
        ax.set_title(title, fontsize=9)
    return fig
