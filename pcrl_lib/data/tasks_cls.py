"""The downstream classification tasks (PCRL_SPEC §10): train / val / test splits and their Datasets.

Tasks (the name in result rows — the data; TEST; VAL, which selects the epoch; TRAIN):

``nih14``
    NIH ChestX-ray14, 14 labels, 2D. TEST: the release's ``test_list.txt``. VAL: 10 % of the patients of
    ``train_val_list.txt`` (the patients notebook 03 holds out of pretraining). TRAIN: the other patients.
``chexpert``
    CheXpert, the 5 competition labels, 2D, an uncertainty policy. TEST: ``valid.csv`` (the official small
    validation set, no uncertain labels). VAL: 10 % of ``train.csv``'s patients. TRAIN: the others.
``luna16_fpr``
    LUNA16 nodule false-positive reduction, 1 label, 3D candidate cubes. Real data: TRAIN / VAL / TEST = the
    scans of subsets 0-5 / 6 / 7-9 (7-9 are never pretrained on). Look-alike: a seeded 60/20/20 split of its scans.
``xray_pneumonia_demo``
    DEMO: the 16 real paediatric radiographs, PNEUMONIA vs NORMAL; each class's patients split 40 / 20 / 40 %
    into train / val / test. Tiny: a demonstration of the pipeline, not a measurement.
``nodule_demo``
    DEMO: lesion vs lung-parenchyma cubes of the two real chest CTs. TEST: the second CT. TRAIN and VAL: the
    first (two patients only, so validation shares the training patient).

Without ``DATA_ROOT`` the first three read the profile's synthetic look-alikes
(:func:`pcrl_lib.data.embedded.synthetic_root`), written in the real datasets' on-disk formats.

Every split is made by *patient* (a LUNA16 scan is a patient): no patient is in two splits, which
:class:`ClassificationData` checks when it is built. The validation split has to give the selection a
defined ROC-AUC (a class with positives and negatives among its known labels); on the tiny smoke look-alikes
the default share can hold a single image, so the split then grows patient by patient, in the same seeded
patient order, until it does (the protocol records how many patients were added; real datasets never need it).

Images are read by the datasets' readers (:mod:`.nih`, :mod:`.chexpert`, :mod:`.luna16`, :mod:`.demo`) and
cached once by the kit's preparation steps (:func:`~pcrl_lib.data.cache.prepare_image_cache` for radiographs,
:func:`~pcrl_lib.data.preprocess.prepare_candidate_cubes` for LUNA16) under
:func:`pcrl_lib.data.profile_data.prepared_root`; a second call reuses the cache at once.

Inputs match pretraining: radiographs at the 2D pretraining size (``PretrainConfig.image_size_2d``; aspect
ratio kept, centre cropped), items ``(1, S, S)`` in [0, 1], ImageNet-normalised after the grey → 3-channel
repeat by the task's transform (as :class:`~pcrl_lib.transforms.PCRLViews2D` feeds the encoder); CT cubes at
the 3D pretraining cube (``PretrainConfig.cube_size``) cut at ``DataConfig.spacing_mm``, HU window
[-1000, 1000] → [0, 1], items ``(1, X, Y, Z)``.

Legend: ``N`` items (images or cubes), ``L`` labels, ``S`` image side, ``(X, Y, Z)`` cube voxels; labels
are 1 (positive), 0 (negative) or NaN (unknown: CheXpert's uncertain labels under the ``"ignore"`` policy).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from ..config import get_profile
from ..paths import cache_dir
from . import chexpert as chexpert_reader
from . import demo as demo_data
from . import luna16, nih, profile_data
from .cache import CandidateDataset, ImageCacheDataset, prepare_image_cache, read_manifest
from .embedded import ensure_synthetic
from .preprocess import normalize_hu, prepare_candidate_cubes
from .splits import (LUNA_FPR_SUBSETS, NIH_VAL_FRACTION, SPLIT_SEED, SPLITS, grow_validation_split,
                     luna_subset_split, nih_splits, patient_split, sample_fraction, stratified_patient_split)

__all__ = [
    "TASKS", "DEMO_TASKS", "CHEXPERT_VAL_FRACTION", "LUNA_LOOKALIKE_FRACTIONS", "REAL_MAX_NEGATIVES",
    "ArrayDataset", "ClassificationData", "nih14", "chexpert", "luna16_fpr", "xray_pneumonia_demo",
    "nodule_demo", "load_task",
]

TASKS = ("nih14", "chexpert", "luna16_fpr")
DEMO_TASKS = ("xray_pneumonia_demo", "nodule_demo")
CHEXPERT_VAL_FRACTION = 0.1        # of train.csv's patients, held out for model selection
LUNA_LOOKALIKE_FRACTIONS = (0.2, 0.2)   # (val, test) shares of the scans of a synthetic look-alike
# Real LUNA16 has ~850 candidates per scan, nearly all negatives; caching every one at 64x64x32 float32 would take
# ~400 GB. Keeping all positives and this many negatives per scan (~23 GB at the paper cube) leaves ROC-AUC
# unbiased: AUC compares positives with negatives and does not depend on how many negatives there are.
REAL_MAX_NEGATIVES = 50
# Train / val / test share of each class's patients: a test split as large as the training split, because with
# 8 patients per class a test of one or two images per class could only score AUC 0, 0.5 or 1.
_XRAY_DEMO_FRACTIONS = (0.4, 0.2, 0.4)
_NODULE_DEMO_VAL_SHARE = 0.25               # of the training CT's cubes per class, for model selection


def _quiet(message: str) -> None:
    """Log sink for :func:`ensure_synthetic` (the course runner announces what it writes)."""


# ------------------------------------------------------------------------------------------------ datasets
class ArrayDataset(torch.utils.data.Dataset):
    """In-memory labelled items (the demo sets): ``dataset[i]`` = dict ``image`` float32 ``(C, *S)``, ``labels``
    float32 ``(L,)`` (unknown → 0), ``mask`` bool ``(L,)`` (False where unknown) and ``patient`` (str).

    Args:
        images: ``(N, C, *S)`` array.
        labels: ``(N, L)`` (or ``(N,)``) array, NaN where unknown.
        patients: ``N`` patient ids.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, patients: Sequence[str]):
        images = np.asarray(images, dtype=np.float32)
        labels = np.asarray(labels, dtype=np.float32)
        labels = labels[:, None] if labels.ndim == 1 else labels
        if images.ndim < 3 or labels.ndim != 2 or not len(images) == len(labels) == len(patients):
            raise ValueError(f"ArrayDataset needs images (N, C, *S), labels (N, L) and N patients; got shapes "
                             f"{images.shape}, {labels.shape} and {len(patients)} patients")
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        known = ~np.isnan(labels)
        self.known = torch.from_numpy(known)
        self.labels = torch.from_numpy(np.where(known, labels, 0.0).astype(np.float32))
        self.patients = [str(p) for p in patients]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index], "labels": self.labels[index], "mask": self.known[index],
                "patient": self.patients[index]}


@dataclass
class ClassificationData:
    """One classification task's data: the three patient-level splits and what produced them.

    Fields: ``name`` (the task in result rows), ``class_names`` (``L`` labels), ``spatial_dims``, the Datasets
    ``train`` / ``val`` / ``test`` (items as :class:`~pcrl_lib.finetune.classify.ClassificationTask` reads
    them), ``labels`` (split → ``(N, L)`` float32, NaN = unknown) and ``patients`` (split → ``(N,)`` patient
    ids) aligned with the Datasets' items, ``source`` ("real", "synthetic" or "demo"), ``root`` (the folder
    read), ``variant`` (what distinguishes this build of the data: sizes, policy; it names the fine-tuning
    folders so that runs on other inputs are never reused), ``protocol`` (how the splits were made) and
    ``shared_patients`` (pairs of splits allowed to share patients: only the two-patient nodule demo's
    train/val; the test split never shares a patient).

    Raises ``ValueError`` when a patient appears in two splits (other than ``shared_patients``) or a split is
    empty.
    """

    name: str
    class_names: tuple[str, ...]
    spatial_dims: int
    train: Any
    val: Any
    test: Any
    labels: dict[str, np.ndarray]
    patients: dict[str, np.ndarray]
    source: str
    root: Path | None
    variant: str
    protocol: dict = field(default_factory=dict)
    shared_patients: tuple[tuple[str, str], ...] = ()

    def __post_init__(self):
        self.class_names = tuple(self.class_names)
        for split in SPLITS:
            dataset, labels, patients = getattr(self, split), self.labels[split], self.patients[split]
            if len(dataset) == 0:
                raise ValueError(f"task {self.name!r}: the {split} split is empty ({self.protocol.get(split, '')})")
            if not len(dataset) == len(labels) == len(patients):
                raise ValueError(f"task {self.name!r}: the {split} split has {len(dataset)} items but "
                                 f"{len(labels)} label rows and {len(patients)} patient ids")
            if labels.shape[1] != len(self.class_names):
                raise ValueError(f"task {self.name!r}: {labels.shape[1]} label columns for classes {self.class_names}")
        for i, first in enumerate(SPLITS):
            for second in SPLITS[i + 1:]:
                if (first, second) in self.shared_patients and "test" not in (first, second):
                    continue
                shared = sorted(set(self.patients[first].tolist()) & set(self.patients[second].tolist()))
                if shared:
                    raise ValueError(f"task {self.name!r}: {len(shared)} patient(s) are in both the {first} and the "
                                     f"{second} split, e.g. {shared[:3]}; splits must be patient-level")

    @property
    def train_patients(self) -> np.ndarray:
        """``(N_train,)`` patient id of every training item (what label fractions sample)."""
        return self.patients["train"]

    def summary(self) -> pd.DataFrame:
        """One row per split: items, patients, then per class ``positives / known labels``."""
        rows = []
        for split in SPLITS:
            labels = self.labels[split]
            known = ~np.isnan(labels)
            row = {"split": split, "items": len(labels), "patients": len(set(self.patients[split].tolist()))}
            for j, name in enumerate(self.class_names):
                row[name] = f"{int(np.nansum(labels[:, j]))}/{int(known[:, j].sum())}"
            rows.append(row)
        return pd.DataFrame(rows).set_index("split")

    def fraction_table(self, fractions: Sequence[float], seed: int) -> pd.DataFrame:
        """What each label fraction keeps of the training split (patient-level, nested over fractions):
        one row per fraction with items, patients and positives per class."""
        rows = []
        for fraction in fractions:
            kept = sample_fraction(self.train_patients, fraction, seed)
            labels = self.labels["train"][kept]
            row = {"label_fraction": fraction, "items": len(kept),
                   "patients": len(set(self.train_patients[kept].tolist()))}
            row.update({name: int(np.nansum(labels[:, j])) for j, name in enumerate(self.class_names)})
            rows.append(row)
        return pd.DataFrame(rows).set_index("label_fraction")


# ------------------------------------------------------------------------------------------------ helpers
def _image_size(profile: str, size: int | None) -> int:
    size = get_profile(profile).pretrain.image_size_2d if size is None else size
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 16:
        raise ValueError(f"size must be an int >= 16 (pixels per side of the fine-tuning images), got {size!r}")
    return int(size)


def _cube_size(profile: str, cube: Sequence[int] | None) -> tuple[int, int, int]:
    cube = get_profile(profile).pretrain.cube_size if cube is None else cube
    if len(cube) != 3 or not all(isinstance(c, (int, np.integer)) and c >= 8 for c in cube):
        raise ValueError(f"cube must be three ints >= 8 (X, Y, Z voxels), got {cube!r}")
    return tuple(int(c) for c in cube)


def _discard_if(force: bool, out_dir: Path) -> None:
    if force and out_dir.exists():
        shutil.rmtree(out_dir)


def _cached_images(paths: Sequence[Path], labels: np.ndarray, class_names: Sequence[str], out_dir: Path,
                   size: int, profile: str, progress: bool, force: bool) -> Path:
    """Cache the radiographs at ``size × size`` (the pretraining cache's resizing) with their labels."""
    _discard_if(force, out_dir)
    prepare_image_cache(paths, out_dir, size=size, labels=labels, label_names=list(class_names),
                        num_workers=get_profile(profile).data.num_workers, progress=progress)
    return out_dir


def _image_splits(table: pd.DataFrame, out_dir: Path) -> dict[str, ImageCacheDataset]:
    return {split: ImageCacheDataset(out_dir, rows=np.flatnonzero(table["split"].to_numpy() == split))
            for split in SPLITS}


def _by_split(table: pd.DataFrame, columns: Sequence[str]) -> tuple[dict, dict]:
    labels = {s: table.loc[table["split"] == s, list(columns)].to_numpy(np.float32) for s in SPLITS}
    patients = {s: table.loc[table["split"] == s, "patient_id"].astype(str).to_numpy(dtype=object) for s in SPLITS}
    return labels, patients


# ------------------------------------------------------------------------------------------------ NIH
def nih14(profile: str, data_root: str | os.PathLike | None = None, *, size: int | None = None,
          val_fraction: float = NIH_VAL_FRACTION, progress: bool = True, force: bool = False) -> ClassificationData:
    """NIH ChestX-ray14, 14 labels: TEST = the release's ``test_list.txt``; VAL = ``val_fraction`` of the patients
    of ``train_val_list.txt`` (grown only if it has no defined AUC); TRAIN = the rest.

    ``data_root``: the real data (``DATA_ROOT/nih``); None = the profile's synthetic look-alike. ``size``: image
    side (default: the 2D pretraining size). ``force``: rebuild the image cache."""
    real = profile_data.uses_real_data(profile, data_root)
    root = profile_data.dataset_root(data_root, "nih") if real else ensure_synthetic(profile, "nih", log=_quiet)
    size = _image_size(profile, size)
    official = nih_splits(root, val_fraction=val_fraction)   # reads and checks the release's lists
    train_val = pd.concat([official["train"], official["val"]], ignore_index=True)
    parts, added = grow_validation_split(train_val, nih.NIH_LABELS, val_fraction, what=str(root / "train_val_list.txt"))
    table = pd.concat([parts["train"].assign(split="train"), parts["val"].assign(split="val"),
                       official["test"].assign(split="test")], ignore_index=True)
    # One cache for every image in a fixed (name) order, so a different split reuses it.
    table = table.sort_values("image", kind="stable").reset_index(drop=True)
    out_dir = profile_data.prepared_root(profile, data_root) / f"nih14_{size}px"
    _cached_images([root / "images" / name for name in table["image"]],
                   table[list(nih.NIH_LABELS)].to_numpy(np.float32), nih.NIH_LABELS, out_dir, size, profile,
                   progress, force)
    datasets = _image_splits(table, out_dir)
    labels, patients = _by_split(table, nih.NIH_LABELS)
    protocol = {"test": "official test_list.txt", "val": f"{val_fraction:g} of train_val_list.txt's patients "
                f"(seed {SPLIT_SEED})" + (f", grown by {added} patient(s) to define an AUC" if added else ""),
                "train": "the other train_val_list.txt patients", "image_size": size, "cache": str(out_dir)}
    return ClassificationData("nih14", nih.NIH_LABELS, 2, datasets["train"], datasets["val"], datasets["test"],
                              labels, patients, "real" if real else "synthetic", root, f"{size}px", protocol)


# ------------------------------------------------------------------------------------------------ CheXpert
def chexpert(profile: str, data_root: str | os.PathLike | None = None, *, policy: str = "ones",
             size: int | None = None, frontal_only: bool = True, val_fraction: float = CHEXPERT_VAL_FRACTION,
             progress: bool = True, force: bool = False) -> ClassificationData:
    """CheXpert, the 5 competition labels: TEST = ``valid.csv`` (the official small validation set, labelled by
    radiologists: no uncertain labels); VAL = ``val_fraction`` of ``train.csv``'s patients (grown only if its
    certain labels give no AUC, so the split is the same under every policy); TRAIN = the rest.

    ``policy``: what an uncertain (-1) label becomes — ``"ones"`` (U-Ones), ``"zeros"`` (U-Zeros) or
    ``"ignore"`` (U-Ignore: unknown, left out of the loss and the AUC). ``frontal_only``: keep frontal views
    only (the lateral views are another kind of image)."""
    if policy not in chexpert_reader.POLICIES:
        raise ValueError(f"policy={policy!r} is not a CheXpert uncertainty policy; choose one of "
                         f"{', '.join(chexpert_reader.POLICIES)}")
    real = profile_data.uses_real_data(profile, data_root)
    root = (profile_data.dataset_root(data_root, "chexpert") if real
            else ensure_synthetic(profile, "chexpert", log=_quiet))
    size = _image_size(profile, size)
    folder = chexpert_reader.find_dataset_dir(root)
    columns = chexpert_reader.COMPETITION_LABELS
    train_val = chexpert_reader.load_csv(folder / "train.csv", policy, frontal_only)
    test = chexpert_reader.load_csv(folder / "valid.csv", policy, frontal_only)
    # The split is decided on the certain labels only (U-Ignore), so it is the same under every policy and the
    # policies are compared on the same patients; a class defined there is defined under every policy.
    certain = train_val if policy == "ignore" else chexpert_reader.load_csv(folder / "train.csv", "ignore", frontal_only)
    parts, added = grow_validation_split(certain, columns, val_fraction, what=str(folder / "train.csv"))
    in_val = train_val["patient_id"].isin(set(parts["val"]["patient_id"]))
    table = pd.concat([train_val.assign(split=np.where(in_val, "val", "train")), test.assign(split="test")],
                      ignore_index=True)
    table = table.sort_values("file", kind="stable").reset_index(drop=True)
    views = "frontal" if frontal_only else "all"
    out_dir = profile_data.prepared_root(profile, data_root) / f"chexpert_{views}_{size}px"
    _cached_images([Path(f) for f in table["file"]], table[list(columns)].to_numpy(np.float32), columns, out_dir,
                   size, profile, progress, force)
    datasets = _image_splits(table, out_dir)
    labels, patients = _by_split(table, columns)
    protocol = {"test": "valid.csv (official validation set)", "val": f"{val_fraction:g} of train.csv's patients "
                f"(seed {SPLIT_SEED})" + (f", grown by {added} patient(s) to define an AUC" if added else ""),
                "train": "the other train.csv patients", "uncertainty_policy": policy, "views": views,
                "image_size": size, "cache": str(out_dir)}
    return ClassificationData("chexpert", columns, 2, datasets["train"], datasets["val"], datasets["test"], labels,
                              patients, "real" if real else "synthetic", root, f"{policy}_{views}_{size}px", protocol)


# ------------------------------------------------------------------------------------------------ LUNA16
def luna16_fpr(profile: str, data_root: str | os.PathLike | None = None, *, cube: Sequence[int] | None = None,
               max_negatives_per_scan: int | None = None, progress: bool = True,
               force: bool = False) -> ClassificationData:
    """LUNA16 nodule false-positive reduction: one cube per candidate (label 1 = nodule), split by scan.

    Real data: TRAIN / VAL / TEST = scans of subsets 0-5 / 6 / 7-9 (:data:`LUNA_FPR_SUBSETS`). Look-alike:
    a seeded patient-level split of its scans (:data:`LUNA_LOOKALIKE_FRACTIONS`). ``cube``: voxels (X, Y, Z)
    at ``DataConfig.spacing_mm`` (default: the 3D pretraining cube). ``max_negatives_per_scan``: cap on the
    negatives kept per scan (all positives are kept); None = :data:`REAL_MAX_NEGATIVES` for real data and every
    candidate of a look-alike."""
    real = profile_data.uses_real_data(profile, data_root)
    root = profile_data.dataset_root(data_root, "luna16") if real else ensure_synthetic(profile, "luna16", log=_quiet)
    cube = _cube_size(profile, cube)
    cap = (REAL_MAX_NEGATIVES if real else None) if max_negatives_per_scan is None else max_negatives_per_scan
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, (int, np.integer)) or cap < 1):
        raise ValueError(f"max_negatives_per_scan must be a positive int or None, got {max_negatives_per_scan!r}")
    scans = luna16.scan_index(root)
    if not scans:
        raise FileNotFoundError(f"{root}: no .mhd scans in subset0..subset9")
    if real:
        by_split = luna_subset_split(scans)
    else:
        val_share, test_share = LUNA_LOOKALIKE_FRACTIONS
        order = pd.DataFrame({"patient_id": sorted(scans)})
        try:
            parts = patient_split(order, val_fraction=val_share, test_fraction=test_share, seed=SPLIT_SEED)
        except ValueError as err:
            raise ValueError(f"{root}: {len(scans)} scan(s) cannot make patient-level train/val/test splits "
                             f"({err}); the look-alike needs at least 3 scans") from None
        by_split = {split: parts[split]["patient_id"].tolist() for split in SPLITS}
    candidates = luna16.read_candidates(luna16.find_candidates(root))
    config = get_profile(profile).data
    x, y, z = cube
    out_dir = profile_data.prepared_root(profile, data_root) / f"luna16_fpr_{x}x{y}x{z}_neg{cap if cap else 'all'}"
    _discard_if(force, out_dir)
    wanted = {uid: scans[uid] for split in SPLITS for uid in by_split[split]}
    prepare_candidate_cubes(wanted, candidates, out_dir, size=cube, spacing=config.spacing_mm,
                            max_negatives_per_scan=cap, seed=SPLIT_SEED, num_workers=config.num_workers,
                            progress=progress)
    items = read_manifest(out_dir, "candidate_cubes")["items"]
    datasets, labels, patients = {}, {}, {}
    for split in SPLITS:
        uids = by_split[split]
        datasets[split] = CandidateDataset(out_dir, scans=uids)
        labels[split] = np.concatenate([np.asarray(items[u]["labels"], np.float32) for u in uids])[:, None]
        patients[split] = np.asarray([u for u in uids for _ in items[u]["labels"]], dtype=object)
    protocol = {"split": ("subsets " + ", ".join(f"{s} {list(v)}" for s, v in LUNA_FPR_SUBSETS.items())) if real
                else f"seeded scan-level split (val {LUNA_LOOKALIKE_FRACTIONS[0]:g}, test {LUNA_LOOKALIKE_FRACTIONS[1]:g})",
                "scans": {s: len(by_split[s]) for s in SPLITS}, "cube": list(cube), "spacing_mm": config.spacing_mm,
                "max_negatives_per_scan": cap, "candidates_file": luna16.find_candidates(root).name,
                "cache": str(out_dir)}
    return ClassificationData("luna16_fpr", ("nodule",), 3, datasets["train"], datasets["val"], datasets["test"],
                              labels, patients, "real" if real else "synthetic", root,
                              f"{x}x{y}x{z}_neg{cap if cap else 'all'}", protocol)


# ------------------------------------------------------------------------------------------------ demo sets
def xray_pneumonia_demo(profile: str, *, size: int | None = None, progress: bool = True,
                        force: bool = False) -> ClassificationData:
    """DEMO (tiny, 16 images): the paediatric radiographs, PNEUMONIA (1) vs NORMAL (0), split by patient within
    each class (40 / 20 / 40 % into train / val / test), so that every split has both classes. A demonstration
    of the pipeline on real images; its numbers measure nothing."""
    records = demo_data.xray_images()
    size = _image_size(profile, size)
    table = pd.DataFrame({"file": [str(r.path) for r in records], "patient_id": [r.patient_id for r in records],
                          "PNEUMONIA": [float(r.label == "PNEUMONIA") for r in records]})
    parts = stratified_patient_split(table["patient_id"], table["PNEUMONIA"], _XRAY_DEMO_FRACTIONS)
    table["split"] = ""
    for split, rows in parts.items():
        table.loc[rows, "split"] = split
    # Demo data do not depend on the profile: one cache per image size.
    out_dir = cache_dir() / "prepared" / "demo" / f"xray_pneumonia_{size}px"
    _cached_images([Path(f) for f in table["file"]], table[["PNEUMONIA"]].to_numpy(np.float32), ("PNEUMONIA",),
                   out_dir, size, profile, progress, force)
    datasets = _image_splits(table, out_dir)
    labels, patients = _by_split(table, ("PNEUMONIA",))
    protocol = {"split": "patients split within each class: train/val/test " + "/".join(map(str, _XRAY_DEMO_FRACTIONS)),
                "note": "DEMO: 16 real paediatric radiographs (Kermany et al. 2018, CC BY 4.0); far too few to measure",
                "image_size": size, "cache": str(out_dir)}
    return ClassificationData("xray_pneumonia_demo", ("PNEUMONIA",), 2, datasets["train"], datasets["val"],
                              datasets["test"], labels, patients, "demo", records[0].path.parent, f"{size}px", protocol)


def nodule_demo(profile: str, *, cube: Sequence[int] | None = None, n_per_class: int = 8,
                test_case: str | None = None, seed: int = SPLIT_SEED) -> ClassificationData:
    """DEMO (tiny): lesion-centred (1) vs lung-parenchyma (0) cubes of the two demo chest CTs
    (:func:`pcrl_lib.data.demo.nodule_demo`), HU window [-1000, 1000] → [0, 1] as in pretraining.

    With two patients only, TEST = every cube of ``test_case`` (default: the second CT), and TRAIN / VAL are
    the other CT's cubes, :data:`_NODULE_DEMO_VAL_SHARE` of each class for VAL: validation shares the training
    patient (it only selects the epoch), the test patient is unseen. ``n_per_class`` cubes of each class per CT."""
    cube = _cube_size(profile, cube)
    if isinstance(n_per_class, bool) or not isinstance(n_per_class, (int, np.integer)) or n_per_class < 4:
        raise ValueError(f"n_per_class must be an int >= 4 (cubes per class and CT), got {n_per_class!r}")
    cubes = demo_data.nodule_demo(np.random.default_rng(seed), n_per_class=int(n_per_class), size=cube)
    cases = np.asarray(cubes.cases, dtype=object)
    names = list(dict.fromkeys(cubes.cases))
    test_case = names[-1] if test_case is None else test_case
    if test_case not in names:
        raise ValueError(f"test_case={test_case!r} is not one of the demo CTs {names}")
    train_case = [n for n in names if n != test_case][0]
    rng = np.random.default_rng([seed, 0xDE70])
    split = np.where(cases == test_case, "test", "train").astype(object)
    for label in (0, 1):
        members = np.flatnonzero((cases == train_case) & (cubes.labels == label))
        n_val = max(1, int(round(_NODULE_DEMO_VAL_SHARE * len(members))))
        split[rng.choice(members, size=n_val, replace=False)] = "val"
    images = normalize_hu(cubes.cubes)[:, None]                      # (N, 1, X, Y, Z) in [0, 1]
    labels_all = cubes.labels.astype(np.float32)[:, None]
    datasets, labels, patients = {}, {}, {}
    for name in SPLITS:
        rows = np.flatnonzero(split == name)
        datasets[name] = ArrayDataset(images[rows], labels_all[rows], cases[rows])
        labels[name] = labels_all[rows]
        patients[name] = cases[rows]
    protocol = {"split": f"test: {test_case}; train and val: {train_case} ({_NODULE_DEMO_VAL_SHARE:g} of its cubes "
                "per class for val; validation shares the training patient)",
                "note": "DEMO: two real chest CTs with lesion masks (pyradiomics test data); a pipeline check only",
                "cube": list(cube), "n_per_class": int(n_per_class)}
    x, y, z = cube
    return ClassificationData("nodule_demo", ("lesion",), 3, datasets["train"], datasets["val"], datasets["test"],
                              labels, patients, "demo", None, f"{x}x{y}x{z}_n{int(n_per_class)}", protocol,
                              shared_patients=(("train", "val"),))


_BUILDERS = {"nih14": nih14, "chexpert": chexpert, "luna16_fpr": luna16_fpr}


def load_task(name: str, profile: str, data_root: str | os.PathLike | None = None, **options: Any) -> ClassificationData:
    """The data of task ``name`` (one of :data:`TASKS` or :data:`DEMO_TASKS`); ``options`` go to its builder."""
    if name in _BUILDERS:
        return _BUILDERS[name](profile, data_root, **options)
    if name == "xray_pneumonia_demo":
        return xray_pneumonia_demo(profile, **options)
    if name == "nodule_demo":
        return nodule_demo(profile, **options)
    raise ValueError(f"unknown classification task {name!r}; valid: {', '.join(TASKS + DEMO_TASKS)}")

