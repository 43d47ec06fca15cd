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
neighbour). :func:`default_spacing`: the profile's ``DataConfig.spacing_mm`` (1 mm) in ``paper``; coarser in
``quick``/``smoke`` (:data:`CPU_SPACING_MM`) so that sliding-window inference over a whole case takes seconds on a
CPU; :data:`DEMO_SPACING_MM` for the demo volumes (their slices are 2–6.5 mm apart anyway).

Before preparing, every case's files are checked from their headers (shape and spacing of the mask and of each
modality against the first image: a mismatch is an error naming both files, never a silent resampling); after
preparing, the label values found are checked against the dataset's (LiTS {0, 1, 2}; BraTS {0, 1, 2, 4}; demo {0, 1}).

Splits (:func:`split_cases`): one case is one patient in both datasets, so cases are split 70 / 10 / 20 %
(train / val / test) with the kit's fixed ``SPLIT_SEED`` — every split gets at least one case, so three cases
are enough. The demo has two cases: train on one, test on the other; with no third case the training case
also serves for model selection (``data.notes`` says so; the test case stays unseen).

Structures (one sigmoid output channel each, see :mod:`pcrl_lib.finetune.segment`): LiTS liver = {1, 2},
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
from ..finetune.segment import BRATS_STRUCTURES, LITS_STRUCTURES
from ..paths import cache_dir
from . import brats, lits
from .cache import SegmentationCaseDataset, read_manifest
from .preprocess import CT_WINDOWS, SegmentationCase, prepare_segmentation_cases
from .sources import SPLIT_SEED  # the kit's fixed patient-split seed: every notebook sees the same split

TASKS = ("lits", "brats")
SOURCES = ("synthetic", "demo", "real")
SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.7, 0.1, 0.2)
STRUCTURES = {"lits": LITS_STRUCTURES, "brats": BRATS_STRUCTURES}
DEMO_STRUCTURES = {"lits": {"liver": (1,)}, "brats": {"tumour": (1,)}}
LABEL_VALUES = {"lits": (0, 1, 2), "brats": (0, 1, 2, 4)}
MODALITY = {"lits": "ct", "brats": "mri"}
# Resampling targets (mm) of the CPU profiles; ``paper`` takes DataConfig.spacing_mm.
CPU_SPACING_MM = {"smoke": {"lits": 2.0, "brats": 2.0}, "quick": {"lits": 1.5, "brats": 2.0}}
# The demo volumes (a whole abdomen or head, slices 2–6.5 mm apart) per profile: coarse enough that sliding-window
# inference over a whole demo case takes seconds on a CPU.
DEMO_SPACING_MM = {"smoke": 6.0, "quick": 4.0, "paper": 3.0}
# The demo's fixed split: (train = val, test). The abdominal CTs are two different patients (different anatomy
# and scanner frames); the brain MRIs are two cases of the pyradiomics test data.
DEMO_SPLITS = {"lits": ("abdomen_ct", "abdomen_ct_dicom"), "brats": ("brain1", "brain2")}
_DEMO_LIVER_SOURCES = {"abdomen_ct": "nifti", "abdomen_ct_dicom": "dicom"}
_SPACING_RTOL = 1e-3
# The initialisations notebooks 08/09 compare by default: a 3D segmentation run costs more than a classification
# run, so the CPU profiles keep scratch, the restoration baseline and PCRL.
COMPARISON_METHODS = {
    "smoke": ("scratch", "pcrl"),
    "quick": ("scratch", "models_genesis", "pcrl"),
    "paper": ("scratch", "models_genesis", "moco", "c2l", "pcrl_recon", "pcrl_tca", "pcrl"),
}
# Training patches per epoch per case of the FULL training split (every label fraction draws that many).
PATCHES_PER_CASE = 4
# A CPU-profile run takes ~60 optimiser steps (8 epochs × 7 steps): at the paper's 1e-3 the networks are still far
# from converged, at 3e-3 the liver / whole tumour are learned (measured on the synthetic look-alikes).
CPU_LR_FACTOR = 3.0


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


def default_methods(profile: str) -> tuple[str, ...]:
    """The initialisations notebooks 08/09 compare in ``profile`` when their ``METHODS`` is None."""
    get_profile(profile)
    return COMPARISON_METHODS[profile]


def finetune_config(profile: str, epochs: int | None = None, lr: float | None = None):
    """The profile's :class:`~pcrl_lib.config.FinetuneConfig` for segmentation: ``epochs``/``lr`` override it;
    without ``lr`` the CPU profiles (smoke, quick) train at :data:`CPU_LR_FACTOR` × the profile's rate."""
    cfg = get_profile(profile).finetune
    factor = 1.0 if profile == "paper" else CPU_LR_FACTOR
    return cfg.override(epochs=int(epochs) if epochs else cfg.epochs, lr=float(lr) if lr else cfg.lr * factor)


def default_overlap(profile: str) -> float:
    """Sliding-window overlap: 0.5 in ``paper``, 0.25 on a CPU (fewer windows per volume)."""
    get_profile(profile)
    return 0.5 if profile == "paper" else 0.25


def default_patches_per_epoch(data: "SegmentationData") -> int:
    """Training patches per epoch at every label fraction: :data:`PATCHES_PER_CASE` per case of the full training
    split, so a 10 % run takes as many optimiser steps as a 100 % run."""
    return PATCHES_PER_CASE * len(data.splits["train"])


def default_spacing(task: str, profile: str, source: str = "synthetic") -> float:
    """The isotropic resampling target (mm) of ``task`` in ``profile`` (see the module doc)."""
    _check_task(task)
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    get_profile(profile)
    if source == "demo":
        return DEMO_SPACING_MM[profile]
    if profile in CPU_SPACING_MM:
        return CPU_SPACING_MM[profile][task]
    return float(get_profile(profile).data.spacing_mm)


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


def split_cases(names: Sequence[str], fractions: Sequence[float] = SPLIT_FRACTIONS,
                seed: int = SPLIT_SEED) -> dict[str, tuple[str, ...]]:
    """Patient-level train / val / test split of case names (one case = one patient).

    ``round(f · N)`` cases go to val and test, at least one each; train takes the rest (at least one), so
    ``N = 3`` gives 1 / 1 / 1 and ``N = 131`` (LiTS) 92 / 13 / 26. The cases are drawn in the seeded order of
    :func:`pcrl_lib.finetune.fractions.split_patients`; each split is returned sorted.
    """
    from ..finetune.fractions import split_patients

    names = [str(n) for n in names]
    if len(set(names)) != len(names):
        raise ValueError("case names must be unique (one case per patient)")
    if len(fractions) != 3 or any(f <= 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be three positive shares (train, val, test) summing to 1, got {fractions}")
    n = len(names)
    n_val, n_test = (max(1, round(f * n)) for f in fractions[1:])
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ValueError(f"{n} case(s) cannot fill train, val and test splits: at least 3 are needed")
    # Exact shares, so that split_patients' rounding reproduces these counts.
    parts = split_patients(names, (n_train / n, n_val / n, n_test / n), seed=seed, names=SPLITS)
    return {split: tuple(sorted(names[i] for i in index)) for split, index in parts.items()}


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
    """Write a volume unless the file exists; through a temporary name so that a reader never sees half a file."""
    from .volume import write_volume

    if path.is_file():
        return
    tmp = path.with_name(f".{os.getpid()}.{path.name}")
    write_volume(volume, tmp)
    os.replace(tmp, path)


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
        from .sources import prepared_root

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
            from .sources import dataset_root

            root = dataset_root(data_root, task)
        else:
            from .prepare import ensure_synthetic

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


# ------------------------------------------------------------------------------------------ models for a task
def segmenter_factory(data: SegmentationData, pretrained: str | os.PathLike | None = None, *,
                      width: int | None = None, load_decoder: bool = True):
    """A function building a fresh 3D U-Net for ``data`` (what :func:`pcrl_lib.finetune.run_finetune` calls).

    ``C_in = data.in_channels`` (the pretrained first convolution is adapted when it differs), one output
    channel per structure. ``pretrained``: an ``encoder.pt`` (its encoder, and its decoder when it has one and
    ``load_decoder``); None = scratch with ``width`` base channels (pass the pretraining width for a fair
    comparison; a pretrained network takes the export's width).
    """
    from ..finetune.segment import build_segmenter

    def make():
        return build_segmenter(3, len(data.structures), pretrained=pretrained, in_channels=data.in_channels,
                               width=None if pretrained is not None else width, load_decoder=load_decoder)

    return make


def _last_conv_key(model) -> str:
    """State-dict key of the weight of the last convolution (the head predicting one channel per structure)."""
    from torch import nn

    convs = [name for name, sub in model.named_modules() if isinstance(sub, (nn.Conv2d, nn.Conv3d))]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no convolution")
    return f"{convs[-1]}.weight"


def load_finetuned(model, path: str | os.PathLike):
    """Load fine-tuned weights (a run's ``best.pt``) into ``model`` and return it in eval mode.

    A checkpoint of another input channel count or number of structures raises ``ValueError`` saying which,
    instead of a size-mismatch traceback."""
    from ..checkpoint import load_checkpoint
    from ..finetune.pretrained import first_conv_key

    state = load_checkpoint(path)
    own = model.state_dict()
    first = first_conv_key(model)
    missing = sorted(set(own) - set(state))
    if missing or set(state) - set(own):
        raise ValueError(f"{path}: the checkpoint's parameters do not match this network (e.g. "
                         f"{(missing or sorted(set(state) - set(own)))[0]!r}); was it fine-tuned with another "
                         "architecture or width?")
    theirs, ours = state[first].shape[1], own[first].shape[1]
    if theirs != ours:
        raise ValueError(f"{path} was fine-tuned with {theirs} input channel(s) but this network takes {ours}; "
                         f"build it with in_channels={theirs} (the run's CHANNELS)")
    head = _last_conv_key(model)
    if state[head].shape[0] != own[head].shape[0]:
        raise ValueError(f"{path} was fine-tuned for {state[head].shape[0]} structure(s) but this network predicts "
                         f"{own[head].shape[0]}; build it with the run's structures")
    for key, value in own.items():
        if state[key].shape != value.shape:
            raise ValueError(f"{path}: tensor {key!r} has shape {tuple(state[key].shape)}, this network needs "
                             f"{tuple(value.shape)}; was it fine-tuned with another width?")
    model.load_state_dict(state)
    return model.eval()


def run_folder(output_dir: str | os.PathLike, data: SegmentationData, task, cfg, method: str,
               encoder: str | os.PathLike | None) -> Path:
    """``<output_dir>/finetune/<task_name>/<method>-<export stamp>-<settings stamp>``: the experiment folder of one
    initialisation (:func:`pcrl_lib.finetune.run_finetune` puts one sub-folder per fraction and seed in it).

    The export stamp follows the encoder file (size, mtime; "none" for scratch) and the settings stamp the data
    (source, spacing, channels, structures, split), the task (window, overlap, patches, ...) and the fine-tuning
    config except the fractions and seeds, which only pick sub-folders. So a re-pretrained encoder or a changed
    parameter trains afresh in a new folder, while a rerun with the same settings reuses the finished runs.
    """
    from .cache import fingerprint, input_signature

    export = "none" if encoder is None else fingerprint(input_signature(encoder))[:8]
    settings = {k: v for k, v in cfg.to_dict().items() if k not in ("label_fractions", "seeds")}
    stamp = fingerprint([data.describe(), task.describe(), settings])[:8]
    return Path(output_dir) / "finetune" / data.task_name / f"{method}-{export}-{stamp}"
