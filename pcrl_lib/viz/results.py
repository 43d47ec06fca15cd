"""Figures and tables of the fine-tuning comparisons (PCRL_SPEC §10): label efficiency and per-class AUC.

Input: result rows of :func:`pcrl_lib.finetune.run_finetune` — :class:`~pcrl_lib.finetune.records.ResultRow`
objects or their dicts (as notebooks write them into their records; ``None`` values read as NaN).

Aggregation over seeds, per (method, label fraction) and per class:

* ``mean`` and ``std`` — over the seeds with a defined value (``std`` is NaN with one seed);
* ``ci_low`` / ``ci_high`` — the test-set bootstrap 95 % interval of each run, averaged over the seeds: the
  uncertainty that comes from the size of the test split (the shaded band of the label-efficiency plot);
* ``n_seeds`` — seeds with a defined value; ``n_train`` — training items at that fraction (mean over seeds).

The plot functions are pure: they draw into a new (or the given) Axes and return the Figure without showing it.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

_COLUMNS = ("task", "split", "label_fraction", "metric", "value", "ci_low", "ci_high", "method", "seed", "n_train")
MEAN_METRIC = "auc_mean"


def rows_frame(rows: Sequence[Any]) -> pd.DataFrame:
    """Result rows (``ResultRow`` or dicts) → a DataFrame with the columns the aggregations use (NaN for None)."""
    records = []
    for i, row in enumerate(rows):
        data = row.to_dict() if hasattr(row, "to_dict") else row
        if not isinstance(data, Mapping):
            raise ValueError(f"row {i} is a {type(row).__name__}; pass ResultRow objects or their dicts")
        missing = [c for c in _COLUMNS if c not in data and c != "n_train"]
        if missing:
            raise ValueError(f"row {i} lacks {missing}; rows come from pcrl_lib.finetune.run_finetune")
        records.append({c: data.get(c) for c in _COLUMNS})
    frame = pd.DataFrame(records, columns=list(_COLUMNS))
    for column in ("value", "ci_low", "ci_high", "label_fraction", "n_train"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    return frame


def _select(rows: Sequence[Any], split: str, task: str | None) -> pd.DataFrame:
    frame = rows_frame(rows)
    frame = frame[frame["split"] == split]
    if frame.empty:
        raise ValueError(f"no result rows with split={split!r}")
    tasks = list(dict.fromkeys(frame["task"]))
    if task is None:
        if len(tasks) > 1:
            raise ValueError(f"rows of several tasks {tasks}: pass task= to pick one")
        return frame
    if task not in tasks:
        raise ValueError(f"no rows of task {task!r}; tasks present: {tasks}")
    return frame[frame["task"] == task]


def _aggregate(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    grouped = frame.groupby(keys, sort=False)
    table = grouped.agg(mean=("value", "mean"), std=("value", "std"), n_seeds=("value", "count"),
                        ci_low=("ci_low", "mean"), ci_high=("ci_high", "mean"), n_train=("n_train", "mean"))
    return table.reset_index()


def label_efficiency_table(rows: Sequence[Any], metric: str = MEAN_METRIC, split: str = "test",
                           task: str | None = None) -> pd.DataFrame:
    """Mean test ``metric`` per (method, label fraction) over seeds, with std and the mean bootstrap interval.

    Columns: method, label_fraction, mean, std, n_seeds, ci_low, ci_high, n_train; methods in the order they
    first appear in ``rows``, fractions ascending."""
    frame = _select(rows, split, task)
    frame = frame[frame["metric"] == metric]
    if frame.empty:
        raise ValueError(f"no {split} rows with metric={metric!r}")
    order = list(dict.fromkeys(frame["method"]))
    table = _aggregate(frame, ["method", "label_fraction"])
    table["method"] = pd.Categorical(table["method"], categories=order, ordered=True)
    table = table.sort_values(["method", "label_fraction"]).reset_index(drop=True)
    table["method"] = table["method"].astype(str)
    return table


def per_class_table(rows: Sequence[Any], label_fraction: float | None = None, split: str = "test",
                    task: str | None = None) -> pd.DataFrame:
    """Per-class test AUC (rows ``auc_<class>``) per method at one label fraction (default: the smallest).

    Columns: class, method, mean, std, n_seeds, ci_low, ci_high, n_train; classes and methods in the order they
    first appear. A class without a defined AUC (no positives or negatives in the test split) has mean NaN."""
    frame = _select(rows, split, task)
    frame = frame[frame["metric"].str.startswith("auc_") & (frame["metric"] != MEAN_METRIC)]
    if frame.empty:
        raise ValueError(f"no per-class auc_<class> rows in split {split!r}")
    fractions = sorted(frame["label_fraction"].unique())
    fraction = fractions[0] if label_fraction is None else float(label_fraction)
    if not any(math.isclose(fraction, f) for f in fractions):
        raise ValueError(f"label_fraction={label_fraction!r} has no rows; fractions present: {fractions}")
    frame = frame[np.isclose(frame["label_fraction"], fraction)].assign(**{"class": lambda f: f["metric"].str[4:]})
    classes, methods = list(dict.fromkeys(frame["class"])), list(dict.fromkeys(frame["method"]))
    table = _aggregate(frame, ["class", "method"])
    table["class"] = pd.Categorical(table["class"], categories=classes, ordered=True)
    table["method"] = pd.Categorical(table["method"], categories=methods, ordered=True)
    table = table.sort_values(["class", "method"]).reset_index(drop=True)
    table[["class", "method"]] = table[["class", "method"]].astype(str)
    table.attrs["label_fraction"] = fraction
    return table


def _percent(fraction: float) -> str:
    return f"{100 * fraction:g} %"


def _and(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def best_initialisation(table: pd.DataFrame, label_fraction: float | None = None, *, metric: str = "test mean AUC",
                        higher_is_better: bool = True, digits: int = 3) -> str:
    """One sentence naming the best initialisation at one label fraction, and whether its interval sets it apart.

    Args:
        table: :func:`label_efficiency_table` (columns method, label_fraction, mean, ci_low, ci_high).
        label_fraction: the fraction to compare at; default the smallest (where pretraining should matter most).
        metric: how the sentence names the score; ``higher_is_better`` False for distances (HD95).

    The best method's 95 % interval is compared with every other method's: when it overlaps all of them the
    sentence says that no initialisation is separated from the others at this scale (the gap could be test-set
    noise); when it overlaps some, it names the ones it is separated from; without intervals it says the ordering
    cannot be judged.
    """
    fractions = sorted(table["label_fraction"].unique())
    if not fractions:
        raise ValueError("the table is empty: nothing to compare")
    fraction = fractions[0] if label_fraction is None else float(label_fraction)
    at = table[np.isclose(table["label_fraction"], fraction)]
    if at.empty:
        raise ValueError(f"label_fraction={label_fraction!r} has no rows; fractions present: {fractions}")
    at = at[np.isfinite(at["mean"])].set_index("method")
    where = f"at {_percent(fraction)} labels"
    if at.empty:
        return f"{where} no initialisation has a defined {metric}"
    best = at["mean"].idxmax() if higher_is_better else at["mean"].idxmin()
    row = at.loc[best]
    text = f"{where} the best initialisation is {best} ({metric} {row['mean']:.{digits}f}"
    has_ci = bool(np.isfinite(row["ci_low"]) and np.isfinite(row["ci_high"]))
    text += f" [{row['ci_low']:.{digits}f}, {row['ci_high']:.{digits}f}])" if has_ci else ")"
    others = at.drop(index=best)
    if others.empty:
        return f"{text}; it is the only initialisation with a value: nothing to compare"
    if not has_ci or not (np.isfinite(others["ci_low"]) & np.isfinite(others["ci_high"])).all():
        return f"{text}; without confidence intervals the ordering cannot be judged"
    overlapping = (others["ci_low"] <= row["ci_high"]) & (row["ci_low"] <= others["ci_high"])
    if overlapping.all():
        return (f"{text}, but its 95 % interval overlaps those of {_and(list(others.index))}: no initialisation is "
                "separated from the others at this scale")
    if overlapping.any():
        return (f"{text}; its 95 % interval is clear of {_and(list(others.index[~overlapping]))} only, it overlaps "
                f"{_and(list(others.index[overlapping]))}")
    return f"{text}; its 95 % interval is clear of every other initialisation's"


def plot_label_efficiency(table: pd.DataFrame, ax=None, title: str | None = None, ylabel: str = "test mean AUC",
                          chance: float | None = 0.5):
    """Label-efficiency curves from :func:`label_efficiency_table`: the mean over seeds per method against the
    label fraction (log axis), the bootstrap interval as a shaded band and ± the seed std as error bars."""
    import matplotlib.pyplot as plt

    if table.empty:
        raise ValueError("the table is empty: nothing to plot")
    fig, ax = (plt.subplots(figsize=(6.4, 4.2)) if ax is None else (ax.figure, ax))
    fractions = sorted(table["label_fraction"].unique())
    for method, part in table.groupby("method", sort=False):
        x = part["label_fraction"].to_numpy()
        (line,) = ax.plot(x, part["mean"], marker="o", label=method)
        ax.fill_between(x, part["ci_low"], part["ci_high"], color=line.get_color(), alpha=0.15, linewidth=0)
        std = part["std"].to_numpy()
        if np.isfinite(std).any():
            ax.errorbar(x, part["mean"], yerr=np.nan_to_num(std), fmt="none", ecolor=line.get_color(), capsize=3)
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle=":", linewidth=1, label="chance")
    ax.set_xscale("log")
    ax.set_xticks(fractions)
    ax.set_xticklabels([_percent(f) for f in fractions])
    ax.minorticks_off()
    ax.set_xlabel("labelled training patients")
    ax.set_ylabel(ylabel)
    ax.set_title(title or "Label efficiency (band: test bootstrap 95 % CI; bars: ± std over seeds)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def plot_per_class_auc(table: pd.DataFrame, ax=None, title: str | None = None, chance: float | None = 0.5):
    """Grouped bars from :func:`per_class_table`: one group per class, one bar per method, error bars = the
    bootstrap interval; classes without a defined AUC are marked "n/a"."""
    import matplotlib.pyplot as plt

    if table.empty:
        raise ValueError("the table is empty: nothing to plot")
    classes, methods = list(dict.fromkeys(table["class"])), list(dict.fromkeys(table["method"]))
    fig, ax = (plt.subplots(figsize=(max(6.0, 0.7 * len(classes) * max(1, len(methods)) ** 0.5 + 2), 4.0))
               if ax is None else (ax.figure, ax))
    width = 0.8 / len(methods)
    centres = np.arange(len(classes))
    for k, method in enumerate(methods):
        part = table[table["method"] == method].set_index("class").reindex(classes)
        mean = part["mean"].to_numpy(dtype=float)
        low = np.clip(mean - part["ci_low"].to_numpy(dtype=float), 0, None)
        high = np.clip(part["ci_high"].to_numpy(dtype=float) - mean, 0, None)
        x = centres - 0.4 + width * (k + 0.5)
        ax.bar(x, np.nan_to_num(mean), width, yerr=[np.nan_to_num(low), np.nan_to_num(high)], capsize=2,
               label=method)
    undefined = table.groupby("class", sort=False)["mean"].apply(lambda m: m.isna().all()).reindex(classes)
    for i in np.flatnonzero(undefined.to_numpy()):
        ax.text(centres[i], 0.02, "n/a", ha="center", va="bottom", fontsize=8, color="grey")
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle=":", linewidth=1)
    ax.set_xticks(centres)
    ax.set_xticklabels(classes, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("test AUC")
    fraction = table.attrs.get("label_fraction")
    default = "Per-class test AUC" + (f" at {_percent(fraction)} labels" if fraction is not None else "")
    ax.set_title(title or default, fontsize=10)
    ax.legend(fontsize=8, ncol=min(len(methods), 4))
    fig.tight_layout()
    return fig


def format_results(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """:func:`label_efficiency_table` as text: one row per method, one column per label fraction, cells
    ``mean ± std [ci_low, ci_high]`` (no ± with one seed; "n/a" where undefined)."""
    def cell(row) -> str:
        if not np.isfinite(row["mean"]):
            return "n/a"
        text = f"{row['mean']:.{digits}f}"
        if np.isfinite(row["std"]):
            text += f" ± {row['std']:.{digits}f}"
        if np.isfinite(row["ci_low"]) and np.isfinite(row["ci_high"]):
            text += f" [{row['ci_low']:.{digits}f}, {row['ci_high']:.{digits}f}]"
        return text

    if table.empty:
        raise ValueError("the table is empty: nothing to format")
    cells = table.assign(cell=table.apply(cell, axis=1), column=table["label_fraction"].map(_percent))
    methods = list(dict.fromkeys(table["method"]))
    columns = [_percent(f) for f in sorted(table["label_fraction"].unique())]
    out = cells.pivot(index="method", columns="column", values="cell").reindex(index=methods, columns=columns)
    out.columns.name = "labelled training patients"
    return out
