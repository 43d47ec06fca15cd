"""NIH ChestX-ray14: label table, the release's official split lists, PCRL split files (patient-level
splits: :mod:`.splits`).

On-disk layout of the release (NIH Clinical Center, 112,120 frontal radiographs of 30,805 patients)::

    ROOT/images/00000001_000.png ...          (1024×1024 PNG; a few are RGBA)
    ROOT/Data_Entry_2017_v2020.csv[.gz]       (or Data_Entry_2017.csv)
    ROOT/train_val_list.txt, ROOT/test_list.txt

The label table's columns (v2020): "Image Index", "Finding Labels" ('|'-separated names or "No Finding"),
"Follow-up #", "Patient ID", "Patient Age", "Patient Gender", "View Position", "OriginalImage[Width",
"Height]", "OriginalImagePixelSpacing[x", "y]". Image names are ``<patient:08d>_<follow-up:03d>.png``.

The released PCRL code reads its own split files: one line per image, ``<image name> <14 labels 0/1>`` in
:data:`NIH_LABELS` order; :func:`read_split_file` / :func:`write_split_file` handle that format.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .images2d import ImageRecord

NIH_LABELS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
              "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia")
NO_FINDING = "No Finding"
LABEL_CSV_PATTERNS = ("Data_Entry_2017*.csv", "Data_Entry_2017*.csv.gz")
REQUIRED_COLUMNS = ("Image Index", "Finding Labels", "Patient ID")
SPLIT_FILES = ("train_val_list.txt", "test_list.txt")


def find_label_csv(root: str | Path) -> Path:
    """The label table under ``root`` (``Data_Entry_2017*.csv`` or ``.csv.gz``; the newest name wins)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: NIH ChestX-ray14 root folder not found")
    found = sorted({p for pattern in LABEL_CSV_PATTERNS for p in root.glob(pattern)})
    if not found:
        raise FileNotFoundError(f"{root}: no Data_Entry_2017*.csv(.gz) label table; download it from the NIH "
                                "ChestX-ray14 release next to images/ (see data/README.md)")
    return found[-1]


def _parse_findings(findings: pd.Series, images: pd.Series, path: Path) -> np.ndarray:
    """'|'-separated finding strings ``(N,)`` → 0/1 uint8 matrix ``(N, 14)`` in NIH_LABELS order."""
    tokens = findings.fillna("").astype(str).str.split("|").explode().str.strip()
    known = set(NIH_LABELS) | {NO_FINDING}
    unknown = ~tokens.isin(known)
    if unknown.any():
        row = int(tokens.index[np.flatnonzero(unknown.to_numpy())[0]])
        name = tokens[unknown].iloc[0]
        raise ValueError(f"{path}: row {row + 1} (image {images.iloc[row]}) has unknown finding {name!r}; "
                         f"valid names: {', '.join(NIH_LABELS)}, {NO_FINDING!r}")
    codes = pd.Index(NIH_LABELS).get_indexer(tokens)  # -1 for "No Finding"
    rows = tokens.index.to_numpy()
    hit = codes >= 0
    matrix = np.zeros((len(findings), len(NIH_LABELS)), dtype=np.uint8)
    matrix[rows[hit], codes[hit]] = 1
    return matrix


def load_labels(csv_path: str | Path) -> pd.DataFrame:
    """Read the NIH label table into ``image``, ``patient_id`` and one 0/1 uint8 column per NIH label.

    Also keeps ``follow_up``, ``age``, ``sex`` and ``view`` when the table has them. Raises
    ``FileNotFoundError`` when missing and ``ValueError`` naming the file (and row and name) for missing
    columns or unknown finding names.
    """
    path = Path(csv_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: NIH label table not found")
    try:
        table = pd.read_csv(path, dtype={"Image Index": str, "Finding Labels": str, "Patient ID": str})
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError) as err:
        raise ValueError(f"{path}: cannot parse the label table as CSV: {err}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; found {list(table.columns)}")
    table = table.reset_index(drop=True)
    matrix = _parse_findings(table["Finding Labels"], table["Image Index"], path)
    out = pd.DataFrame({"image": table["Image Index"].astype(str),
                        "patient_id": table["Patient ID"].astype(str).str.strip()})
    extras = {"Follow-up #": "follow_up", "Patient Age": "age", "Patient Gender": "sex",
              "View Position": "view"}
    for column, name in extras.items():
        if column in table.columns:
            out[name] = table[column].to_numpy()
    labels = pd.DataFrame(matrix, columns=list(NIH_LABELS))
    return pd.concat([out, labels], axis=1)


def _read_name_list(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: split list not found (the NIH release ships train_val_list.txt "
                                "and test_list.txt next to images/)")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise ValueError(f"{path}: split list is empty")
    return names


@dataclass(frozen=True)
class OfficialSplit:
    """The release's patient-level split: ``train_val`` and ``test`` image names."""

    train_val: list[str]
    test: list[str]


def official_split(root: str | Path) -> OfficialSplit:
    """Read ``train_val_list.txt`` and ``test_list.txt`` under ``root``; ValueError if an image is in both."""
    root = Path(root)
    train_val, test = (_read_name_list(root / name) for name in SPLIT_FILES)
    both = sorted(set(train_val) & set(test))
    if both:
        raise ValueError(f"{root}: {len(both)} image(s) listed in both {SPLIT_FILES[0]} and {SPLIT_FILES[1]}, "
                         f"e.g. {both[:3]}")
    return OfficialSplit(train_val=train_val, test=test)


def read_split_file(path: str | Path) -> pd.DataFrame:
    """Read a PCRL-format split file (``<image> <14 labels 0/1>`` per line) → ``image`` + 14 label columns."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: split file not found")
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"{path}: split file is empty")
    for number, tokens in enumerate(rows, start=1):
        if len(tokens) != 1 + len(NIH_LABELS):
            raise ValueError(f"{path}: line {number} has {len(tokens)} fields, expected 15 "
                             f"('<image name> <14 labels 0/1>')")
    labels = np.asarray([tokens[1:] for tokens in rows])
    bad = ~np.isin(labels, ("0", "1"))
    if bad.any():
        line, column = np.argwhere(bad)[0]
        raise ValueError(f"{path}: line {line + 1} has label {str(labels[line, column])!r} for "
                         f"{NIH_LABELS[column]}; labels must be 0 or 1")
    table = pd.DataFrame(labels.astype(np.uint8), columns=list(NIH_LABELS))
    table.insert(0, "image", [tokens[0] for tokens in rows])
    return table


def write_split_file(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``image`` + the 14 label columns of ``df`` in the PCRL split-file format."""
    missing = [c for c in ("image", *NIH_LABELS) if c not in df.columns]
    if missing:
        raise ValueError(f"write_split_file: DataFrame lacks column(s) {missing}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = df[list(NIH_LABELS)].to_numpy().astype(np.uint8).astype(str)
    lines = df["image"].astype(str).reset_index(drop=True).str.cat([pd.Series(col) for col in labels.T], sep=" ")
    path.write_text("\n".join(lines) + "\n")
    return path


def records(df: pd.DataFrame, images_dir: str | Path) -> list[ImageRecord]:
    """Rows of a label table → :class:`ImageRecord` s (path under ``images_dir``, 14 labels, patient)."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise FileNotFoundError(f"{images_dir}: NIH images folder not found")
    labels = df[list(NIH_LABELS)].to_numpy(dtype=np.float32)
    patients = df["patient_id"].astype(str) if "patient_id" in df.columns else df["image"].str.slice(0, 8)
    return [ImageRecord(path=images_dir / name, labels=row, patient=p)
            for name, row, p in zip(df["image"].astype(str), labels, patients)]
