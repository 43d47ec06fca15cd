"""Segmentation task data (PCRL_SPEC §10): LiTS liver and BraTS brain-tumour cases — listed, prepared, split.

One call gives a task's prepared whole cases and their patient-level train / val / test split::

    data = load_task("lits", "quick")                        # the profile's synthetic look-alike
    data = load_task("lits", "paper", data_root=DATA_ROOT)   # the real LiTS 2017 under DATA_ROOT/lits
    data = load_task("brats", "quick", source="demo")        # the two real demo brain MRIs
    data.train, data.val, data.test    # SegmentationCaseDataset: image (C, X, Y, Z), mask (X, Y, Z), spacing

=========  ========================================================  ================================================
source     LiTS (``task="lits"``)                                    BraTS (``task="brats"``)
=========  ========================================================  ================================================
synthetic  look-alike CTs (``volume-N.nii``) read like LiTS          look-alike cases (four modalities, ``_seg``)
demo       two real abdominal CTs, liver PSEUDO-LABELS (the output   two real brain MRIs, ONE unnamed sequence, a
           of the TotalSegmentator model, not expert annotation)     tumour mask (one label, not BraTS's three)
real       ``DATA_ROOT/lits`` (LiTS 2017, or the Decathlon Task03)   ``DATA_ROOT/brats`` (BraTS 2018, HGG/ and LGG/)
=========  ========================================================  ================================================

Preparation (:func:`pcrl_lib.data.preprocess.prepare_segmentation_cases`, cached and resumable): CT → HU window
``CT_WINDOWS["liver"]`` → [0, 1]; MRI → z-score per channel inside the brain (non-zero voxels); the first image is
resampled to ``spacing_mm`` (isotropic), other channels and the mask are resampled onto its grid (mask: nearest
neighbour). :func:`default_spacing`: the profile's ``DataConfig.lits_spacing_mm`` / ``brats_spacing_mm`` (1 mm in
``paper``; coarser in ``quick``/``smoke`` so that sliding-window inference over a whole case takes seconds on a
CPU) and ``DataConfig.seg_demo_spacing_mm`` for the demo volumes (their slices are 2–6.5 mm apart anyway).

Before preparing, every case's files are checked from their headers (shape and spacing of the mask and of each
modality against the first image: a mismatch is an error naming both files, never a silent resampling); after
preparing, the label values found are checked against the dataset's (LiTS {0, 1, 2}; BraTS {0, 1, 2, 4}; demo {0, 1}).

Splits (:func:`pcrl_lib.data.splits.split_cases`): one case is one patient in both datasets, so cases are split
70 / 10 / 20 % (train / val / test) with the kit's fixed ``SPLIT_SEED`` — every split gets at least one case, so
three cases are enough. The demo has two cases: train on one, test on the other; with no third case the training case
also serves for model selection (``data.notes`` says so; the test case stays unseen).

Structures (:data:`pcrl_lib.data.lits.STRUCTURES`, :data:`pcrl_lib.data.brats.STRUCTURES`; one sigmoid output
channel each in :mod:`pcrl_lib.finetune.segment`, which also builds the task's networks): LiTS liver = {1, 2},
tumour = {2}; BraTS WT = {1, 2, 4}, TC = {1, 4}, ET = {4}; demo: liver = {1} (pseudo-label), tumour = {1}.
Result rows name the task with its source (:attr:`SegmentationData.task_name`: ``lits``, ``lits_synthetic``,
``lits_demo``, ...), so numbers measured on look-alikes are never mistaken for the real benchmark's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from ..config import get_profile
from ..paths import cache_dir
from . import brats, lits
from ..fileio import atomic_path
from .cache import SegmentationCaseDataset, read_manifest
from .preprocess import CT_WINDOWS, SegmentationCase, prepare_segmentation_cases
from .splits import SPLIT_SEED, SPLITS, split_cases

TASKS = ("lits", "brats")
SOURCES = ("synthetic", "demo", "real")
STRUCTURES = {"lits": lits.STRUCTURES, "brats": brats.STRUCTURES}
DEMO_STRUCTURES = {"lits": {"liver": (1,)}, "brats": {"tumour": (1,)}}
LABEL_VALUES = {"lits": (0, 1, 2), "brats": (0, 1, 2, 4)}
MODALITY = {"lits": "ct", "brats": "mri"}
# The demo's fixed split: (train = val, test). The abdominal CTs are two different patients (different anatomy
# and scanner frames); the brain MRIs are two cases of the pyradiomics test data.
DEMO_SPLITS = {"lits": ("abdomen_ct", "abdomen_ct_dicom"), "brats": ("brain1", "brain2")}
_DEMO_LIVER_SOURCES = {"abdomen_ct": "nifti", "abdomen_ct_dicom": "dicom"}
_SPACING_RTOL = 1e-3


@dataclass(frozen=True)
class SegmentationData:
    """A task's prepared cases and split.

    Fields: ``task`` ("lits" | "brats"), ``source`` ("synthetic" | "demo" | "real"), ``prepared`` (the folder
    :class:`SegmentationCaseDataset` reads), ``splits`` (case names per split), ``structures`` (name → label
    values, one output channel each), ``channels`` (input channel names, ``C_in = len(channels)``),
    ``spacing_mm`` (the prepared grid), ``root`` (the dataset folder read; None for the demo), ``notes``.
    """

    task: str
    source: str
    prepared: Path
    splits: Mapping[str, tuple[str, ...]]
    structures: Mapping[str, tuple[int, ...]]
    channels: tuple[str, ...]
    spacing_mm: float
    root: Path | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def in_channels(self) -> int:
        return len(self.channels)

    @property
    def task_name(self) -> str:
        """The task's name in result rows: ``lits`` / ``brats`` for the real data, else suffixed by the source."""
        return self.task if self.source == "real" else f"{self.task}_{self.source}"

    def dataset(self, split: str) -> SegmentationCaseDataset:
        """The whole cases of ``split`` ("train" | "val" | "test")."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return SegmentationCaseDataset(self.prepared, cases=list(self.splits[split]))

    @property
    def train(self) -> SegmentationCaseDataset:
        return self.dataset("train")

    @property
    def val(self) -> SegmentationCaseDataset:
        return self.dataset("val")

    @property
    def test(self) -> SegmentationCaseDataset:
        return self.dataset("test")

    def cases(self):
        """One row per (split, case): shape ``(C, X, Y, Z)``, spacing (mm), label values present, and per structure
        whether it is present — read from the preparation manifest, no voxels loaded."""
        import pandas as pd

        items = read_manifest(self.prepared, "segmentation_cases")["items"]
        rows = []
        for split in SPLITS:
            for name in self.splits[split]:
                entry = items[name]
                present = set(entry.get("labels", []))
                rows.append({"split": split, "case": name, "shape": tuple(entry["shape"]),
                             "spacing_mm": tuple(round(s, 3) for s in entry["spacing"]),
                             "labels": tuple(sorted(present)),
                             **{s: bool(present & set(v)) for s, v in self.structures.items()}})
        return pd.DataFrame(rows)

    def describe(self) -> dict:
        """What a result's protocol should say about the data (JSON-ready)."""
        return {"task": self.task, "source": self.source, "root": None if self.root is None else str(self.root),
                "structures": {k: list(v) for k, v in self.structures.items()}, "channels": list(self.channels),
                "spacing_mm": self.spacing_mm, "splits": {k: list(v) for k, v in self.splits.items()},
                "split_seed": SPLIT_SEED, "notes": list(self.notes)}


# ------------------------------------------------------------------------------------------------ settings
def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")


def default_spacing(task: str, profile: str, source: str = "synthetic") -> float:
    """The isotropic resampling target (mm) of ``task`` in ``profile`` (see the module doc)."""
    _check_task(task)
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    data = get_profile(profile).data
    if source == "demo":
        return data.seg_demo_spacing_mm
    return data.lits_spacing_mm if task == "lits" else data.brats_spacing_mm


def select_structures(task: str, names: Sequence[str] | None = None, source: str = "synthetic"
                      ) -> dict[str, tuple[int, ...]]:
    """The structures (name → label values) of ``task`` and ``source``, optionally only ``names`` (in that order)."""
    _check_task(task)
    available = DEMO_STRUCTURES[task] if source == "demo" else STRUCTURES[task]
    if names is None:
        return dict(available)
    if isinstance(names, str):
        names = (names,)
    unknown = [n for n in names if n not in available]
    if unknown or not names:
        what = f"the {task} demo masks hold only {tuple(available)}" if source == "demo" else \
            f"{task} has the structures {tuple(available)}"
        raise ValueError(f"structures {tuple(names)}: {what}; pick from those")
    return {n: tuple(available[n]) for n in names}


# ----------------------------------------------------------------------------------------- listing cases
def _header(path: Path) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Shape ``(X, Y, Z)`` and spacing of an image file, read from its header only."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise ValueError(f"{path}: cannot read the image header ({str(err).strip().splitlines()[-1]})") from None
    return tuple(int(s) for s in reader.GetSize()), tuple(float(s) for s in reader.GetSpacing())


def check_case_files(case: SegmentationCase) -> None:
    """Raise ``ValueError`` naming both files when a channel or the mask differs from the first image in shape or
    spacing (a mask on another grid would otherwise be resampled silently)."""
    files = [Path(p) for p in case.images] + ([Path(case.mask)] if case.mask is not None else [])
    missing = [p for p in files if not p.exists()]
    if missing:
        raise FileNotFoundError(f"case {case.name}: {missing[0]} does not exist")
    if any(p.is_dir() for p in files):  # a DICOM series folder: its geometry is checked when it is read
        return
    shape, spacing = _header(files[0])
    for path in files[1:]:
        other_shape, other_spacing = _header(path)
        if other_shape != shape:
            raise ValueError(f"case {case.name}: shape mismatch: {path} is {other_shape} but {files[0]} is {shape}; "
                             "a mask and the images of a case must share one voxel grid")
        if not np.allclose(other_spacing, spacing, rtol=_SPACING_RTOL):
            raise ValueError(f"case {case.name}: spacing mismatch: {path} has {other_spacing} mm but {files[0]} has "
                             f"{spacing} mm")


def lits_cases(root: str | os.PathLike) -> list[SegmentationCase]:
    """Every labelled LiTS case below ``root`` (``volume-N`` + ``segmentation-N``, or the Decathlon's
    ``imagesTr/liver_N`` + ``labelsTr/liver_N``), named ``volume-N``, sorted by N."""
    return [SegmentationCase(name=f"volume-{case.case_id}", images=(str(case.volume),), mask=str(case.segmentation))
            for case in lits.list_cases(root, require_segmentation=True)]


def brats_cases(root: str | os.PathLike, modalities: Sequence[str] = brats.MODALITIES) -> list[SegmentationCase]:
    """Every BraTS case folder below ``root`` with the ``modalities`` (in that order) and its ``_seg`` mask.

    A case without one of the files raises ``FileNotFoundError`` naming it (BraTS's validation cases have no
    ``_seg``: point ``root`` at the training data)."""
    modalities = tuple(modalities)
    unknown = [m for m in modalities if m not in brats.MODALITIES]
    if unknown or not modalities:
        raise ValueError(f"modalities (CHANNELS) must be a non-empty subset of {brats.MODALITIES}, got {modalities}")
    cases = []
    for folder in brats.list_cases(root):
        images = tuple(str(brats.modality_file(folder, m)) for m in modalities)
        cases.append(SegmentationCase(name=folder.name, images=images, mask=str(brats.modality_file(folder, "seg"))))
    return cases


def _write_once(volume, path: Path) -> None:
    """Write a volume unless the file exists; atomically (:func:`pcrl_lib.fileio.atomic_path`), so that a reader
    never sees half a file."""
    from .volume import write_volume

    if path.is_file():
        return
    with atomic_path(path) as tmp:
        write_volume(volume, tmp)


def demo_cases(task: str, folder: str | os.PathLike) -> list[SegmentationCase]:
    """The real demo cases of ``task`` (the demo data must be fetched; see :mod:`pcrl_lib.data.demo`).

    LiTS: the two abdominal CTs with their liver masks, written once into ``folder`` as NIfTI on the CT grid (the
    masks are TotalSegmentator's label 5, resampled onto each CT: PSEUDO-LABELS from a model). BraTS: the two brain
    MRIs (one sequence) with their tumour masks, read where the demo cache holds them.
    """
    from . import demo

    _check_task(task)
    folder = Path(folder)
    cases = []
    if task == "lits":
        for name, source in _DEMO_LIVER_SOURCES.items():
            ct_path, mask_path = folder / f"{name}_ct.nii.gz", folder / f"{name}_liver.nii.gz"
            if not (ct_path.is_file() and mask_path.is_file()):
                folder.mkdir(parents=True, exist_ok=True)
                ct, liver = demo.liver_ct(source)
                _write_once(ct, ct_path)
                _write_once(liver, mask_path)
            cases.append(SegmentationCase(name=name, images=(str(ct_path),), mask=str(mask_path)))
    else:
        for case in demo.brain_mris(channels=1):
            cases.append(SegmentationCase(name=case.name, images=(str(case.image.path),), mask=str(case.tumour.path)))
    return cases


# ------------------------------------------------------------------------------------------------- loading
def _prepared_base(profile: str, source: str, data_root) -> Path:
    if source == "real":
        from .profile_data import prepared_root

        return prepared_root(profile, data_root)
    if source == "demo":
        return cache_dir() / "prepared" / "demo"
    return cache_dir() / "prepared" / profile


def _check_labels(manifest: dict, names: Sequence[str], allowed: Sequence[int], prepared: Path) -> None:
    for name in names:
        found = manifest["items"][name].get("labels", [])
        unknown = sorted(set(found) - set(allowed))
        if unknown:
            raise ValueError(f"case {name} ({prepared}): mask label value(s) {unknown}; this dataset's masks hold "
                             f"only {tuple(allowed)}")


def load_task(task: str, profile: str, data_root: str | os.PathLike | None = None, *, source: str | None = None,
              structures: Sequence[str] | None = None, channels: Sequence[str] | None = None,
              spacing_mm: float | None = None, num_workers: int | None = None, progress: bool = True,
              force: bool = False, log: Callable[[str], None] = print) -> SegmentationData:
    """List, check, prepare (cached) and split the cases of ``task``; see the module doc.

    Args:
        task: "lits" or "brats".
        profile: smoke | quick | paper (sizes the synthetic look-alike, the default spacing, the workers).
        data_root: DATA_ROOT, the folder holding ``lits/`` and ``brats/``; needed for ``source="real"``.
        source: "synthetic" | "demo" | "real"; default "real" with ``data_root``, else "synthetic".
        structures: names of the structures to segment (default all of the task's; see :func:`select_structures`).
        channels: BraTS modalities in input order (default all four: t1, t1ce, t2, flair); the LiTS and demo
            inputs have one channel and accept only None.
        spacing_mm: isotropic resampling target; default :func:`default_spacing`.
        num_workers: preparation processes (default the profile's ``DataConfig.num_workers``).
        force: prepare again from the files.
    """
    _check_task(task)
    source = source if source is not None else ("real" if data_root is not None else "synthetic")
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    if source == "real" and data_root is None:
        raise ValueError(f"source='real' reads DATA_ROOT/{task}: pass data_root= (or use source='synthetic'/'demo')")
    chosen = select_structures(task, structures, source)
    if task == "brats" and source != "demo":
        channels = tuple(brats.MODALITIES if channels is None else channels)
    elif channels is not None and tuple(channels) != (("CT",) if task == "lits" else ("MR",)):
        raise ValueError(f"channels={tuple(channels)}: the {task} {source} cases have one input channel; "
                         "channels selects BraTS modalities only")
    else:
        channels = ("CT",) if task == "lits" else ("MR",)
    spacing = float(default_spacing(task, profile, source) if spacing_mm is None else spacing_mm)
    if not spacing > 0:
        raise ValueError(f"spacing_mm must be positive, got {spacing_mm!r}")
    cfg = get_profile(profile)
    workers = cfg.data.num_workers if num_workers is None else num_workers

    notes: list[str] = []
    root: Path | None = None
    base = _prepared_base(profile, source, data_root)
    if source == "demo":
        from . import demo

        demo.fetch(progress=False)
        cases = demo_cases(task, base / f"{task}_inputs")
        if task == "lits":
            notes.append("demo liver masks are PSEUDO-LABELS: TotalSegmentator's output (label 5), not expert "
                         "annotation")
        else:
            notes.append("demo brain MRIs hold ONE MR sequence (not BraTS's four) and ONE tumour label (not "
                         "WT/TC/ET)")
        notes.append("two demo cases: the training case also selects the model (no third case for validation); "
                     "the test case is never seen in training")
    else:
        if source == "real":
            from .profile_data import dataset_root

            root = dataset_root(data_root, task)
        else:
            from .embedded import ensure_synthetic

            root = ensure_synthetic(profile, task, log=lambda _: None)
            notes.append(f"synthetic look-alike of {task} ({root}); not real data")
        cases = lits_cases(root) if task == "lits" else brats_cases(root, channels)
    for case in cases:
        check_case_files(case)

    tag = f"seg_{task}_{source}_{spacing:g}mm" + (f"_{'-'.join(channels)}" if task == "brats" and source != "demo"
                                                  else "")
    prepared = base / tag
    if force and prepared.is_dir():
        import shutil

        shutil.rmtree(prepared)
    window = CT_WINDOWS["liver"]
    manifest = prepare_segmentation_cases(cases, prepared, modality=MODALITY[task], spacing=spacing, window=window,
                                          num_workers=workers, progress=progress)
    names = [c.name for c in cases]
    _check_labels(manifest, names, (0, 1) if source == "demo" else LABEL_VALUES[task], prepared)
    if source == "demo":
        train, test = DEMO_SPLITS[task]
        splits = {"train": (train,), "val": (train,), "test": (test,)}
    else:
        splits = split_cases(names)
    data = SegmentationData(task=task, source=source, prepared=prepared, splits=splits, structures=chosen,
                            channels=tuple(channels), spacing_mm=spacing, root=root, notes=tuple(notes))
    log(f"{data.task_name}: {len(names)} cases ({', '.join(f'{k} {len(v)}' for k, v in splits.items())}) at "
        f"{spacing:g} mm, channels {', '.join(channels)}, structures {', '.join(chosen)} → {prepared}")
    return data
