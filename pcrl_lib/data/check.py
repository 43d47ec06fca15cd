"""Layout checks: is a dataset folder what the readers expect? One readable list of every problem.

``check(root, "luna16")`` walks the folder, reads headers only (SimpleITK ``ReadImageInformation`` for
MetaImage, nibabel headers for NIfTI, PIL ``verify()`` for PNG) and compares them with the real
dataset's layout (see ``data/README.md``). Each :class:`Problem` names a path and what was expected there.
``deep=True`` additionally reads every volume's voxels (a truncated ``.nii.gz`` shows only there; NaN/±inf
voxels, which the readers refuse, and mask label values are reported) and fully decodes the sampled images.
One 4D policy with the readers: a 4th axis of length 1 is accepted, any other is an error.

Problems are errors (the readers would fail or give wrong results) or warnings (worth knowing, e.g.
candidates that refer to scans of subsets you have not downloaded).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import brats, chexpert, lits, luna16, nih
from .volume import (CorruptVolumeError, count_nonfinite, dimension_problem, read_mhd_header, read_nifti_array,
                     read_volume, verify_complete)

DATASETS = ("nih", "chexpert", "luna16", "lits", "brats")
EXAMPLES = 3  # paths quoted per aggregated problem


@dataclass(frozen=True)
class Problem:
    """One finding of a check: where, what was expected, and how bad (``"error"`` or ``"warning"``)."""

    path: Path
    message: str
    level: str = "error"

    def __str__(self) -> str:
        return f"{self.level.upper():7s} {self.path}: {self.message}"


@dataclass
class CheckReport:
    """Result of :func:`check`: the problems found and a summary of what was seen (counts)."""

    dataset: str
    root: Path
    problems: list[Problem] = field(default_factory=list)
    summary: dict = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "warning"]

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return not self.errors

    def add(self, path: Path | str, message: str, level: str = "error") -> None:
        self.problems.append(Problem(Path(path), message, level))

    def __str__(self) -> str:
        seen = ", ".join(f"{k}: {v}" for k, v in self.summary.items())
        head = (f"{self.dataset} at {self.root}: "
                f"{'OK' if self.ok else f'{len(self.errors)} error(s)'}"
                f"{f', {len(self.warnings)} warning(s)' if self.warnings else ''}")
        return "\n".join([head + (f" ({seen})" if seen else ""), *(f"  {p}" for p in self.problems)])

    def raise_if_errors(self) -> None:
        """Raise one ``ValueError`` listing every error (and warning) when there is any error."""
        if not self.ok:
            raise ValueError(f"dataset check failed — {self}\nSee data/README.md for the expected layout.")


def check(root: str | Path, dataset: str, limit: int | None = 200, deep: bool = False,
          raise_on_error: bool = False) -> CheckReport:
    """Check the folder ``root`` against the layout of ``dataset`` (one of :data:`DATASETS`).

    ``limit``: how many 2D images to open (the rest are only checked to exist; None = all). ``deep``: also
    read all voxels of every volume (truncation, NaN/±inf, mask labels) and fully decode images.
    ``raise_on_error``: raise one ValueError listing all problems.
    """
    if dataset not in _CHECKS:
        raise ValueError(f"unknown dataset {dataset!r}; valid datasets: {', '.join(DATASETS)}")
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be None or a non-negative int, got {limit!r}")
    root = Path(root).expanduser()
    report = CheckReport(dataset=dataset, root=root)
    if not root.exists():
        report.add(root, "folder not found; expected the dataset's root folder (see data/README.md)")
    elif not root.is_dir():
        report.add(root, "is a file; expected the dataset's root folder")
    elif not any(root.iterdir()):
        report.add(root, "folder is empty; expected the dataset's files (see data/README.md)")
    else:
        _CHECKS[dataset](root, report, limit, deep)
    if raise_on_error:
        report.raise_if_errors()
    return report


def _examples(items) -> str:
    items = list(items)
    more = f" and {len(items) - EXAMPLES} more" if len(items) > EXAMPLES else ""
    return ", ".join(str(i) for i in items[:EXAMPLES]) + more


def _read_csv(path: Path, report: CheckReport, required: tuple[str, ...], what: str) -> pd.DataFrame | None:
    """Read a CSV, reporting a missing file, parse errors and missing columns; None when unusable."""
    if not path.is_file():
        report.add(path, f"missing {what}; expected a CSV file here")
        return None
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, EOFError) as err:
        report.add(path, f"cannot parse {what} as CSV ({type(err).__name__}: {str(err).strip()[:120]})")
        return None
    missing = [c for c in required if c not in table.columns]
    if missing:
        report.add(path, f"CSV missing required column(s) {missing}; expected columns {list(required)}, "
                         f"found {list(table.columns)}")
        return None
    return table


def _sample(paths: list[Path], limit: int | None) -> list[Path]:
    """An evenly spread subset of at most ``limit`` paths (deterministic, so reruns check the same files)."""
    if limit is None or len(paths) <= limit:
        return paths
    return [paths[i] for i in np.linspace(0, len(paths) - 1, limit).round().astype(int)]


def _verify_images(paths: list[Path], report: CheckReport, limit: int | None, deep: bool) -> int:
    """Open up to ``limit`` images: PNG through ``verify()`` (chunk CRCs, no decoding), JPEG — whose
    ``verify()`` checks nothing — and everything under ``deep`` through a full decode."""
    from PIL import Image, UnidentifiedImageError

    chosen = _sample(paths, limit)
    for path in chosen:
        try:
            with Image.open(path) as image:
                if deep or image.format != "PNG":
                    image.load()
                else:
                    image.verify()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            report.add(path, f"unreadable or corrupt image ({str(err).strip()[:100]}); expected a valid "
                             "PNG/JPEG — re-extract it from the archive")
    return len(chosen)


def _patients_in_both(report: CheckReport, path: Path, first: set, second: set, names: tuple[str, str]) -> None:
    both = sorted(first & second)
    if both:
        report.add(path, f"duplicate patient across splits: {len(both)} patient(s) in both {names[0]} and "
                         f"{names[1]} (e.g. {_examples(both)}); expected patient-level splits")


# --------------------------------------------------------------------------------------------- NIH
def _check_nih(root: Path, report: CheckReport, limit: int | None, deep: bool) -> None:
    images_dir = root / "images"
    on_disk: set[str] = set()
    if not images_dir.is_dir():
        report.add(images_dir, "missing folder; expected images/ holding the PNG files (extract images_*.tar.gz "
                               "here)")
    else:
        on_disk = {p.name for p in images_dir.glob("*.png")}
        if not on_disk:
            report.add(images_dir, "no images: expected *.png files in this folder")
    tables = sorted({p for pattern in nih.LABEL_CSV_PATTERNS for p in root.glob(pattern)})
    table = None
    if not tables:
        report.add(root / "Data_Entry_2017_v2020.csv", "missing label CSV; expected Data_Entry_2017*.csv(.gz)")
    else:
        table = _read_csv(tables[-1], report, nih.REQUIRED_COLUMNS, "NIH label table")
    report.summary["images on disk"] = len(on_disk)
    if table is not None:
        report.summary["rows in label table"] = len(table)
        tokens = table["Finding Labels"].str.split("|").explode().str.strip()
        unknown = tokens[~tokens.isin(set(nih.NIH_LABELS) | {nih.NO_FINDING})]
        for name, rows in unknown.groupby(unknown, sort=True):
            report.add(tables[-1], f"unknown label name {name!r} in {len(rows)} row(s) (first: row "
                                   f"{int(rows.index[0]) + 1}); expected one of {', '.join(nih.NIH_LABELS)} or "
                                   f"'{nih.NO_FINDING}' separated by '|'")
        if on_disk:
            missing = sorted(set(table["Image Index"]) - on_disk)
            if missing:
                report.add(images_dir, f"{len(missing)} image(s) listed in {tables[-1].name} are not on disk "
                                       f"(e.g. {_examples(missing)}); expected every listed image")
            extra = sorted(on_disk - set(table["Image Index"]))
            if extra:
                report.add(images_dir, f"{len(extra)} image(s) on disk have no row in {tables[-1].name} "
                                       f"(e.g. {_examples(extra)})", level="warning")
    lists = {}
    for name in nih.SPLIT_FILES:
        path = root / name
        if not path.is_file():
            report.add(path, "missing split list; expected one image name per line")
        else:
            lists[name] = {line.strip() for line in path.read_text().splitlines() if line.strip()}
            if not lists[name]:
                report.add(path, "split list is empty; expected one image name per line")
    if len(lists) == 2:
        train_val, test = (lists[name] for name in nih.SPLIT_FILES)
        both = sorted(train_val & test)
        if both:
            report.add(root / nih.SPLIT_FILES[1], f"{len(both)} image(s) in both split lists "
                                                  f"(e.g. {_examples(both)})")
        if table is not None:
            patient = dict(zip(table["Image Index"], table["Patient ID"]))
            _patients_in_both(report, root / nih.SPLIT_FILES[1], {patient.get(i) for i in train_val} - {None},
                              {patient.get(i) for i in test} - {None}, nih.SPLIT_FILES)
    if on_disk:
        report.summary["images opened"] = _verify_images(sorted(images_dir / n for n in on_disk), report, limit,
                                                         deep)


# --------------------------------------------------------------------------------------------- CheXpert
def _check_chexpert(root: Path, report: CheckReport, limit: int | None, deep: bool) -> None:
    try:
        dataset_dir = chexpert.find_dataset_dir(root)
    except FileNotFoundError:
        report.add(root / chexpert.DATASET_FOLDER, "missing folder; expected CheXpert-v1.0-small/ with "
                                                   "train.csv, valid.csv, train/ and valid/")
        return
    patients, files = {}, []
    for split in ("train", "valid"):
        path = dataset_dir / f"{split}.csv"
        table = _read_csv(path, report, (*chexpert.META_COLUMNS, *chexpert.COMPETITION_LABELS), f"{split} CSV")
        if table is None:
            continue
        report.summary[f"{split} rows"] = len(table)
        for column in [c for c in chexpert.OBSERVATIONS if c in table.columns]:
            bad = table[column][~table[column].isin(("", "1.0", "0.0", "-1.0", "1", "0", "-1"))]
            if len(bad):
                report.add(path, f"column {column!r} has {len(bad)} invalid value(s) (first: {bad.iloc[0]!r} in row "
                                 f"{int(bad.index[0]) + 1}); expected 1.0, 0.0, -1.0 or blank")
        ids = table["Path"].str.extract(r"(patient\d+)", expand=False)
        if ids.isna().any():
            row = int(np.flatnonzero(ids.isna().to_numpy())[0])
            report.add(path, f"{int(ids.isna().sum())} Path value(s) without a patientNNNNN folder (first: row "
                             f"{row + 1}, {table['Path'].iloc[row]!r})")
        patients[split] = set(ids.dropna())
        files += [(path, f) for f in chexpert.resolve_paths(path, table["Path"])]
    if len(patients) == 2:
        _patients_in_both(report, dataset_dir / "valid.csv", patients["train"], patients["valid"],
                          ("train.csv", "valid.csv"))
    existing = [Path(f) for _, f in files if Path(f).is_file()]
    missing = [f for _, f in files if not Path(f).is_file()]
    if files and not existing:
        report.add(dataset_dir, f"no images: none of the {len(files)} files listed in the CSVs exist "
                                f"(e.g. {_examples(missing)}); expected train/ and valid/ image folders")
    elif missing:
        report.add(dataset_dir, f"{len(missing)} image(s) listed in the CSVs are missing (e.g. {_examples(missing)})")
    report.summary["images opened"] = _verify_images(existing, report, limit, deep)


# --------------------------------------------------------------------------------------------- LUNA16
def _nonfinite(path: Path, array: np.ndarray, report: CheckReport) -> None:
    nan, inf = count_nonfinite(array)
    if nan or inf:
        report.add(path, f"{nan + inf} non-finite voxel(s) of {int(array.size)} ({nan} NaN, {inf} ±inf); the readers "
                         "refuse them (read with nonfinite='keep' to accept them) — fix or replace the file")


def _check_mhd(path: Path, report: CheckReport, deep: bool = False) -> tuple | None:
    """Header and .raw size of one scan (under ``deep`` also NaN/±inf in float voxels); returns
    (size, origin, spacing, direction) when readable."""
    import SimpleITK as sitk

    try:
        header = read_mhd_header(path)
    except OSError as err:
        report.add(path, f"cannot read header ({err})")
        return None
    data_name = header.get("ElementDataFile")
    if not data_name:
        report.add(path, "MetaImage header without ElementDataFile; expected '<seriesuid>.raw'")
        return None
    raw = path.parent / data_name
    if not raw.is_file():
        report.add(raw, f"missing data file named by {path.name}; expected the .raw next to the .mhd")
        return None
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        last = str(err).strip().splitlines()
        report.add(path, f"unreadable MetaImage header ({last[-1] if last else err})")
        return None
    size = reader.GetSize()
    problem = dimension_problem(size)
    if problem:
        report.add(path, f"MetaImage: {problem}")
        return None
    try:
        verify_complete(path)
    except CorruptVolumeError as err:
        report.add(err.path, f"{err.problem} (or re-extract the subset archive)")
        return None
    if deep and header.get("ElementType") in ("MET_FLOAT", "MET_DOUBLE"):  # integer voxels are always finite
        try:
            _nonfinite(path, read_volume(path, np.float64, nonfinite="keep").array, report)
        except ValueError as err:
            report.add(path, f"cannot read voxels: {str(err).removeprefix(f'{path}: ')}")
    n = reader.GetDimension()
    return (size[:3], reader.GetOrigin()[:3], reader.GetSpacing()[:3],
            np.asarray(reader.GetDirection()).reshape(n, n)[:3, :3])


def _check_luna16(root: Path, report: CheckReport, limit: int | None, deep: bool) -> None:
    subsets = sorted(p for p in root.iterdir() if p.is_dir() and re.match(r"^subset\d$", p.name))
    if not subsets:
        report.add(root / "subset0", "missing folder; expected subset0 … subset9 holding <seriesuid>.mhd/.raw")
    scans: dict[str, Path] = {}
    geometry: dict[str, tuple] = {}
    for folder in subsets:
        headers = sorted(folder.glob("*.mhd"))
        if not headers:
            report.add(folder, "empty folder: expected <seriesuid>.mhd + .raw scans")
        for path in headers:
            if path.stem in scans:
                report.add(path, f"seriesuid also present as {scans[path.stem]}; expected each scan once")
                continue
            scans[path.stem] = path
            info = _check_mhd(path, report, deep)
            if info is not None:
                geometry[path.stem] = info
    report.summary["subsets"] = len(subsets)
    report.summary["scans"] = len(scans)
    all_subsets = {p.name for p in subsets} >= set(luna16.SUBSETS)
    annotations = _read_csv(root / "annotations.csv", report, luna16.ANNOTATION_COLUMNS, "annotations")
    candidate_files = [root / name for name in luna16.CANDIDATE_FILES if (root / name).is_file()]
    if not candidate_files:
        report.add(root / "candidates.csv", "missing candidates CSV; expected candidates.csv or candidates_V2.csv")
    tables = [(root / "annotations.csv", annotations, luna16.ANNOTATION_COLUMNS)]
    tables += [(p, _read_csv(p, report, luna16.CANDIDATE_COLUMNS, "candidates"), luna16.CANDIDATE_COLUMNS)
               for p in candidate_files]
    for path, table, columns in tables:
        if table is None:
            continue
        report.summary[f"rows in {path.name}"] = len(table)
        numeric = table[[c for c in columns if c != "seriesuid"]].apply(pd.to_numeric, errors="coerce")
        if numeric.isna().to_numpy().any():
            row, col = np.argwhere(numeric.isna().to_numpy())[0]
            report.add(path, f"non-numeric value {table[numeric.columns[col]].iloc[row]!r} in column "
                             f"{numeric.columns[col]!r}, row {row + 1}; expected numbers")
            continue
        if "class" in table.columns and not numeric["class"].isin((0, 1)).all():
            report.add(path, "column 'class' has values other than 0 and 1")
        unknown = sorted(set(table["seriesuid"]) - set(scans))
        if unknown and scans:
            level = "error" if all_subsets else "warning"
            why = "" if all_subsets else " (not all ten subsets are present; fine if you downloaded only some)"
            report.add(path, f"{len(unknown)} seriesuid(s) refer to no scan under subset*/ (e.g. "
                             f"{_examples(unknown)}){why}; expected every seriesuid to have a .mhd", level=level)
        if path.name == "annotations.csv":
            _check_inside(path, table, numeric, geometry, report)


def _check_inside(path: Path, table: pd.DataFrame, numeric: pd.DataFrame, geometry: dict, report: CheckReport
                  ) -> None:
    """Annotation centres must fall inside their scan (catches voxel coordinates written as world mm)."""
    outside = []
    for uid, rows in numeric.groupby(table["seriesuid"]):
        if uid not in geometry:
            continue
        size, origin, spacing, direction = geometry[uid]
        xyz = rows[luna16.COORDS].to_numpy(dtype=np.float64)
        ijk = ((xyz - np.asarray(origin)) @ np.linalg.inv(direction).T) / np.asarray(spacing)
        bad = ((ijk < -0.5) | (ijk > np.asarray(size) - 0.5)).any(axis=1)
        outside += [int(i) + 1 for i in rows.index[bad]]
    if outside:
        report.add(path, f"{len(outside)} annotation(s) lie outside their scan (rows {_examples(sorted(outside))}); "
                         "expected world coordinates in mm")


# --------------------------------------------------------------------------------------------- NIfTI
def _nifti_header(path: Path, report: CheckReport, deep: bool, labels: dict | None = None):
    """Header of one NIfTI (3D shape, zooms); checks 3D (a 4th axis of length 1 is dropped, as the readers
    do), the size of a ``.nii`` and, under ``deep``, every voxel: a truncated ``.nii.gz`` (only visible when
    decompressed), NaN/±inf and label values."""
    import nibabel as nib

    try:
        image = nib.load(str(path))
        shape = tuple(int(s) for s in image.shape)
        zooms = tuple(float(z) for z in image.header.get_zooms())
    except Exception as err:  # nibabel raises many types for damaged files (ImageFileError, EOFError, zlib...)
        report.add(path, f"unreadable NIfTI ({type(err).__name__}: {str(err).strip()[:100]})")
        return None
    problem = dimension_problem(shape)
    if problem:
        report.add(path, f"NIfTI: {problem}")
        return None
    try:
        if deep:
            data, _ = read_nifti_array(path)  # fails on a short file with verify_complete's message
        elif path.name.endswith(".nii"):
            verify_complete(path)             # a file-size check, no reading
    except CorruptVolumeError as err:
        report.add(path, err.problem)
        return None
    if deep:
        _nonfinite(path, data, report)
        if labels is not None:
            values = np.unique(data)
            bad = values[~np.isin(values, list(labels))]
            if bad.size:
                report.add(path, f"unexpected label value(s) {bad.tolist()[:10]}; expected {sorted(labels)}")
    return shape[:3], zooms[:3]


def _compare(report: CheckReport, path: Path, info, reference_path: Path, reference) -> None:
    if info is None or reference is None:
        return
    if info[0] != reference[0]:
        report.add(path, f"shape mismatch: {info[0]} but {reference_path.name} is {reference[0]}; expected the "
                         "same grid")
    elif not np.allclose(info[1], reference[1], rtol=1e-3):
        report.add(path, f"spacing mismatch: {tuple(round(z, 4) for z in info[1])} mm but {reference_path.name} "
                         f"has {tuple(round(z, 4) for z in reference[1])} mm; expected the same spacing")


def _check_lits(root: Path, report: CheckReport, limit: int | None, deep: bool) -> None:
    try:
        volumes, masks = lits.find_files(root)
    except ValueError as err:
        report.add(root, str(err))
        return
    if not volumes:
        report.add(root, "no volume-N.nii(.gz) files found (searched recursively); expected e.g. "
                         "'Training Batch 1/volume-0.nii' or the Decathlon's 'imagesTr/liver_0.nii.gz'")
    for number in sorted(set(masks) - set(volumes)):
        report.add(masks[number], f"segmentation of case {number} without its volume", level="warning")
    for number in sorted(volumes):
        ct = _nifti_header(volumes[number], report, deep)
        if number not in masks:
            report.add(volumes[number], f"missing segmentation of case {number} (segmentation-{number}.nii(.gz) "
                                        f"or labelsTr/{volumes[number].name}) for this volume")
            continue
        mask = _nifti_header(masks[number], report, deep, lits.LABELS)
        _compare(report, masks[number], mask, volumes[number], ct)
    report.summary["volumes"] = len(volumes)
    report.summary["segmentations"] = len(masks)


def _check_brats(root: Path, report: CheckReport, limit: int | None, deep: bool) -> None:
    try:
        cases = brats.list_cases(root)
    except FileNotFoundError:
        report.add(root, "no BraTS case folders found; expected HGG/<case>/<case>_flair.nii.gz and the other "
                         "modalities")
        return
    for case in cases:
        reference = reference_path = None
        for name in (*brats.MODALITIES, "seg"):
            try:
                path = brats.modality_file(case, name)
            except FileNotFoundError:
                what = "segmentation" if name == "seg" else "modality"
                report.add(case, f"case {case.name} is missing {what} {name!r}; expected "
                                 f"{case.name}_{name}.nii.gz")
                continue
            info = _nifti_header(path, report, deep, brats.LABELS if name == "seg" else None)
            if reference is None:
                reference, reference_path = info, path
            else:
                _compare(report, path, info, reference_path, reference)
    report.summary["cases"] = len(cases)
    report.summary["HGG/LGG"] = "/".join(str(sum(brats.case_grade(c) == g for c in cases)) for g in ("HGG", "LGG"))


_CHECKS = {"nih": _check_nih, "chexpert": _check_chexpert, "luna16": _check_luna16, "lits": _check_lits,
           "brats": _check_brats}
