"""CheXpert (Stanford AIMI): label CSVs, uncertainty policies, image records.

On-disk layout of the small release::

    ROOT/CheXpert-v1.0-small/train.csv, valid.csv
    ROOT/CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg ...
    ROOT/CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg ...

CSV columns: "Path" (relative to ROOT, starting with the dataset folder), "Sex", "Age", "Frontal/Lateral",
"AP/PA", then the 14 observations of :data:`OBSERVATIONS` with values 1.0 (positive), 0.0 (negative),
-1.0 (uncertain) or blank (not mentioned = negative).

Uncertainty policies for the five competition labels (Irvin et al. 2019): ``"ones"`` (U-Ones: uncertain →
1), ``"zeros"`` (U-Zeros: → 0), ``"ignore"`` (U-Ignore: → NaN, masked out of the loss and the metric).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..fileio import read_csv_table
from .images2d import ImageRecord

OBSERVATIONS = ("No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
                "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
                "Fracture", "Support Devices")
COMPETITION_LABELS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
META_COLUMNS = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA")
POLICIES = ("ones", "zeros", "ignore")
DATASET_FOLDER = "CheXpert-v1.0-small"
_PATIENT = re.compile(r"(patient\d+)")
_STUDY = re.compile(r"(study\d+)")


def find_dataset_dir(root: str | Path) -> Path:
    """The folder holding ``train.csv``: ``root`` itself or ``root/CheXpert-v1.0*`` (small or full release)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: CheXpert root folder not found")
    if (root / "train.csv").is_file() or (root / "valid.csv").is_file():
        return root
    candidates = sorted(p for p in root.glob("CheXpert-v1.0*") if p.is_dir())
    if not candidates:
        raise FileNotFoundError(f"{root}: neither train.csv/valid.csv nor a CheXpert-v1.0-small/ folder found")
    return candidates[0]


def load_csv(path: str | Path, policy: str = "ones", frontal_only: bool = False) -> pd.DataFrame:
    """Read ``train.csv`` / ``valid.csv`` into one row per image with the five competition labels.

    Columns: ``path`` (as in the CSV), ``file`` (absolute image path), ``patient_id`` and ``study``
    (parsed from the path), ``sex``, ``age``, ``view`` ("Frontal"/"Lateral"), ``projection`` (AP/PA/...),
    then the five :data:`COMPETITION_LABELS` as float32: blank → 0, -1 (uncertain) mapped by ``policy``
    (``"ignore"`` gives NaN). Use :func:`labels_and_mask` for the ``(N, 5)`` arrays.
    Raises ``ValueError`` naming the file, row and column for a bad policy, missing columns, values other
    than 1/0/-1/blank, or a path without a ``patientNNNNN`` component.
    """
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    path = Path(path)
    table = read_csv_table(path, "CheXpert", (*META_COLUMNS, *COMPETITION_LABELS), dtype={"Path": str})
    table = table.reset_index(drop=True)
    present = [c for c in OBSERVATIONS if c in table.columns]
    try:
        values = table[present].apply(pd.to_numeric, errors="raise").to_numpy(dtype=np.float64)
    except (ValueError, TypeError):
        values = table[present].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
        raw = table[present].to_numpy()
        row, col = np.argwhere(np.isnan(values) & table[present].notna().to_numpy())[0]
        raise ValueError(f"{path}: row {row + 1}, column {present[col]!r} has value {str(raw[row, col])!r}; "
                         "expected 1.0, 0.0, -1.0 or blank") from None
    bad = ~(np.isnan(values) | np.isin(values, (1.0, 0.0, -1.0)))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(f"{path}: row {row + 1}, column {present[col]!r} has value {float(values[row, col])}; "
                         "expected 1.0, 0.0, -1.0 or blank")
    paths = table["Path"].astype(str)
    patients = paths.str.extract(_PATIENT, expand=False)
    if patients.isna().any():
        row = int(np.flatnonzero(patients.isna().to_numpy())[0])
        raise ValueError(f"{path}: row {row + 1} has Path {paths.iloc[row]!r} without a 'patientNNNNN' folder")
    out = pd.DataFrame({
        "path": paths,
        "file": resolve_paths(path, paths),
        "patient_id": patients,
        "study": paths.str.extract(_STUDY, expand=False).fillna(""),
        "sex": table["Sex"].to_numpy(),
        "age": table["Age"].to_numpy(),
        "view": table["Frontal/Lateral"].to_numpy(),
        "projection": table["AP/PA"].to_numpy(),
    })
    uncertain_value = {"ones": 1.0, "zeros": 0.0, "ignore": np.nan}[policy]
    for name in COMPETITION_LABELS:
        column = values[:, present.index(name)]
        mapped = np.where(np.isnan(column), 0.0, column)
        out[name] = np.where(column == -1.0, uncertain_value, mapped).astype(np.float32)
    if frontal_only:
        out = out[out["view"] == "Frontal"].reset_index(drop=True)
    return out


def resolve_paths(csv_path: Path, paths: pd.Series) -> pd.Series:
    """Absolute image paths (as strings). CSV paths start with the dataset folder's name, so they are
    relative to the folder *above* the CSV; when that folder was renamed, drop the first component and
    resolve against the CSV's own folder instead."""
    dataset_dir = csv_path.resolve().parent
    parts = paths.str.split("/", n=1)
    first, rest = parts.str[0], parts.str[1].fillna("")
    above = str(dataset_dir.parent) + "/" + paths
    inside = str(dataset_dir) + "/" + rest
    return above.where(first == dataset_dir.name, inside)


def labels_and_mask(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 5)`` float32 labels (NaN → 0) and ``(N, 5)`` bool mask (False where the policy ignored it)."""
    values = df[list(COMPETITION_LABELS)].to_numpy(dtype=np.float32)
    mask = ~np.isnan(values)
    return np.where(mask, values, 0.0).astype(np.float32), mask


def records(df: pd.DataFrame) -> list[ImageRecord]:
    """Rows of :func:`load_csv` → :class:`ImageRecord` s (absolute file, 5 labels with NaN = ignored, patient)."""
    labels = df[list(COMPETITION_LABELS)].to_numpy(dtype=np.float32)
    return [ImageRecord(path=Path(f), labels=row, patient=p)
            for f, row, p in zip(df["file"], labels, df["patient_id"].astype(str))]
