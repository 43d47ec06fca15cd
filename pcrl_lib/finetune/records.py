"""Result rows: every reported number with the protocol that produced it.

One :class:`ResultRow` per (task, split, label fraction, metric, method, seed). Rows are plain data: they go
to JSON (:func:`save_rows` / :func:`load_rows`), into a pandas table (:func:`rows_to_frame`) and into the
seed-aggregated comparison table (:func:`summarize`) that the notebooks and the course runner show.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterable, Sequence

from ..fileio import atomic_write_json


@dataclass(frozen=True)
class MetricValue:
    """One measured metric: point value and its confidence interval (NaN bounds when none was computed)."""

    name: str
    value: float
    ci_low: float = math.nan
    ci_high: float = math.nan
    detail: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ResultRow:
    """One reported number.

    Fields: ``task`` (e.g. "nih14"), ``split`` ("test" or "val"), ``label_fraction`` (share of training patients),
    ``metric`` (e.g. "auc_mean", "auc_Effusion", "dice_WT", "hd95_liver"), ``value`` and ``ci_low`` / ``ci_high``
    (bootstrap percentile interval over test samples/cases), ``method`` (the initialisation: "pcrl", "moco",
    "scratch", "imagenet", ...), ``seed``, ``protocol`` (every setting that produced the number: optimizer, lr,
    epochs run, best epoch, initialisation source, ...), ``wall_time_s`` (fine-tuning time), ``device``, and the
    sizes ``n_train`` / ``n_val`` / ``n_test`` (items, after the label fraction).
    """

    task: str
    split: str
    label_fraction: float
    metric: str
    value: float
    ci_low: float
    ci_high: float
    method: str
    seed: int
    protocol: dict
    wall_time_s: float
    device: str
    n_train: int
    n_val: int
    n_test: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ResultRow":
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in d]
        if missing:
            raise ValueError(f"result row is missing {missing}; it was not written by pcrl_lib.finetune")
        return cls(**{n: d[n] for n in names})


def _json_float(value: float) -> float | None:
    # JSON has no NaN: undefined values are written as null and read back as NaN.
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def save_rows(rows: Iterable[ResultRow], path: str | os.PathLike) -> Path:
    """Write rows as a JSON list (atomically); NaN becomes ``null``."""
    data = []
    for row in rows:
        d = row.to_dict()
        for key in ("value", "ci_low", "ci_high"):
            d[key] = _json_float(d[key])
        data.append(d)
    return atomic_write_json(data, path)


def load_rows(path: str | os.PathLike) -> list[ResultRow]:
    """Read what :func:`save_rows` wrote (``null`` → NaN)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"result file {path} does not exist")
    rows = []
    for d in json.loads(path.read_text()):
        for key in ("value", "ci_low", "ci_high"):
            d[key] = math.nan if d[key] is None else float(d[key])
        rows.append(ResultRow.from_dict(d))
    return rows


def rows_to_frame(rows: Sequence[ResultRow]):
    """A pandas DataFrame with one column per field (``protocol`` stays a dict column)."""
    import pandas as pd

    return pd.DataFrame([r.to_dict() for r in rows], columns=[f.name for f in fields(ResultRow)])


def summarize(rows: Sequence[ResultRow], split: str = "test"):
    """Mean, standard deviation and count over seeds per (task, metric, label_fraction, method).

    Returns a DataFrame with columns task, metric, label_fraction, method, mean, std, n_seeds — the table in
    which the paper's claims (orderings between methods at low label fractions) are checked. Undefined values
    (NaN, e.g. the AUC of a class without positives in the test split) are left out: ``n_seeds`` counts the
    seeds with a defined value.
    """
    frame = rows_to_frame([r for r in rows if r.split == split])
    if frame.empty:
        raise ValueError(f"no rows with split={split!r} to summarise")
    grouped = frame.groupby(["task", "metric", "label_fraction", "method"], sort=True)["value"]
    table = grouped.agg(mean="mean", std="std", n_seeds="count").reset_index()
    return table
