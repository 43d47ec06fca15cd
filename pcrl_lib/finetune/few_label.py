"""The few-label protocol end to end (PCRL_SPEC §10): fractions × seeds → fine-tune → TEST split → result rows.

For every label fraction ``f`` and seed ``s``::

    kept  = sample_fraction(train patients, f, s)        # nested over f for one s, patient level
    seed_everything(s); model = make_model()             # the same initial head/decoder weights per seed
    fit(model, task, task.train_dataset(kept), val)      # select on validation, early stopping, resume
    task.evaluate(model, TEST split)                     # metrics + bootstrap intervals (seeded by s)

Each run lives in ``output_dir/frac_<f>/seed_<s>/`` (checkpoints, best weights, history, ``results.json``);
all rows go to ``output_dir/results.json``. A finished run is reused (only the test evaluation reruns), an
interrupted one resumes; ``force=True`` retrains.

:func:`study_settings` resolves a notebook's knobs (``EPOCHS``, ``METHODS``, ``LABEL_FRACTIONS``, ``SEEDS``, and for
segmentation ``LR``, ``WINDOW``, ``OVERLAP``; None = the profile's) into one :class:`StudySettings`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from ..config import FinetuneConfig, Profile
from ..data.cache import input_signature
from ..data.splits import patient_ids, sample_fraction
from ..env import seed_everything
from ..fileio import fingerprint
from .loop import eval_context, fit
from .records import ResultRow, save_rows


TASK_KINDS = ("cls", "seg")


@dataclass(frozen=True)
class StudySettings:
    """What one few-label study runs: ``finetune`` (the profile's fine-tuning config with the notebook's epochs, and
    for segmentation its learning rate), the initialisations ``methods``, the label ``fractions`` (ascending), the
    ``seeds``; for segmentation the inference ``window`` (X, Y, Z) and sliding-window ``overlap`` (None otherwise)."""

    task: str
    finetune: FinetuneConfig
    methods: tuple[str, ...]
    fractions: tuple[float, ...]
    seeds: tuple[int, ...]
    window: tuple[int, ...] | None = None
    overlap: float | None = None

    @property
    def runs(self) -> int:
        """Fine-tuning runs of the study: methods × fractions × seeds."""
        return len(self.methods) * len(self.fractions) * len(self.seeds)

    def parameters(self) -> dict:
        """The settings as JSON-ready values, for the notebook's record."""
        out = {"methods": list(self.methods), "label_fractions": list(self.fractions), "seeds": list(self.seeds),
               "epochs": self.finetune.epochs}
        if self.task == "seg":
            out.update(lr=self.finetune.lr, window=list(self.window), overlap=self.overlap)
        return out

    def __str__(self) -> str:
        text = (f"methods {self.methods}, label fractions {self.fractions}, seeds {self.seeds}, "
                f"{self.finetune.epochs} epochs")
        if self.task == "seg":
            text += f", lr {self.finetune.lr:g}, window {self.window}, overlap {self.overlap}"
        return text


def study_settings(cfg: Profile, task: str, *, epochs: int | None = None, methods: Sequence[str] | None = None,
                   label_fractions: Sequence[float] | None = None, seeds: Sequence[int] | None = None,
                   lr: float | None = None, window: Sequence[int] | None = None,
                   overlap: float | None = None) -> StudySettings:
    """Resolve a fine-tuning notebook's knobs against the profile ``cfg``; None (or empty) takes the profile's value.

    Args:
        cfg: the notebook's :class:`~pcrl_lib.config.Profile` (``run.cfg``).
        task: ``"cls"`` (notebooks 05-07: ``methods_cls``, the profile's epochs and rate) or ``"seg"`` (08/09:
            ``methods_seg``, lr × ``seg_lr_factor`` as :func:`pcrl_lib.finetune.segment.segmentation_config`).
        epochs, methods, label_fractions, seeds: ``EPOCHS``, ``METHODS``, ``LABEL_FRACTIONS`` (sorted ascending),
            ``SEEDS``.
        lr, window, overlap: segmentation only (``LR``; ``WINDOW`` default the 3D pretraining cube; ``OVERLAP``
            default ``FinetuneConfig.seg_overlap``).

    Raises ValueError naming the notebook parameter (e.g. ``LABEL_FRACTIONS``) when a value is not allowed.
    """
    from .segment import segmentation_config

    if task not in TASK_KINDS:
        raise ValueError(f"task={task!r}: choose 'cls' (classification) or 'seg' (segmentation)")
    if task == "cls" and (lr is not None or window is not None or overlap is not None):
        raise ValueError("lr, window and overlap are segmentation settings: pass them with task='seg'")
    try:
        if task == "seg":
            ft = segmentation_config(cfg, epochs=epochs, lr=lr)
        else:
            ft = cfg.finetune if epochs is None else cfg.finetune.override(epochs=epochs)
    except (TypeError, ValueError) as error:
        knobs = f"EPOCHS={epochs!r}" + (f", LR={lr!r}" if task == "seg" else "")
        raise ValueError(f"{knobs}: {error}") from None
    methods_field = "methods_seg" if task == "seg" else "methods_cls"
    chosen = {"METHODS": (methods_field, methods), "LABEL_FRACTIONS": ("label_fractions", label_fractions),
              "SEEDS": ("seeds", seeds)}
    resolved = {}
    for parameter, (name, value) in chosen.items():
        if value is None or (isinstance(value, (list, tuple)) and not value):
            resolved[name] = getattr(ft, name)
            continue
        try:                                      # the config's own checks (range, choices), under the knob's name
            resolved[name] = getattr(ft.override(**{name: list(value)}), name)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{parameter}={value!r}: {error}") from None
    window_out = overlap_out = None
    if task == "seg":
        window_out = tuple(int(w) for w in window) if window else tuple(cfg.pretrain.cube_size)
        overlap_out = float(overlap) if overlap is not None else ft.seg_overlap
        if not 0.0 <= overlap_out < 1.0:
            raise ValueError(f"OVERLAP={overlap!r}: the sliding-window overlap must be in [0, 1)")
    return StudySettings(task, ft, tuple(resolved[methods_field]), tuple(sorted(resolved["label_fractions"])),
                         tuple(resolved["seeds"]), window_out, overlap_out)


def protocol_inputs(cfg: FinetuneConfig, train_set: Dataset, test_set: Dataset,
                    train_patients: Sequence[Any] | None, label_fractions: Sequence[float] | None,
                    seeds: Sequence[int] | None) -> tuple[tuple, tuple, np.ndarray]:
    """The fractions, seeds and per-item patient ids of one few-label experiment (fine-tuning or linear probe):
    ``cfg``'s fractions/seeds unless given; every training item its own patient unless ``train_patients`` says
    otherwise. Raises ValueError for no fraction or seed, an empty test split or a patient list of the wrong length."""
    fractions = tuple(cfg.label_fractions if label_fractions is None else label_fractions)
    seeds = tuple(cfg.seeds if seeds is None else seeds)
    if not fractions or not seeds:
        raise ValueError("label_fractions and seeds must each hold at least one value")
    if len(test_set) == 0:
        raise ValueError("the test split is empty: the protocol reports on a held-out test split")
    patients = (np.array([str(i) for i in range(len(train_set))], dtype=object) if train_patients is None
                else patient_ids(train_patients))
    if len(patients) != len(train_set):
        raise ValueError(f"train_patients has {len(patients)} entries for {len(train_set)} training items; "
                         "pass one patient id per item")
    return fractions, seeds, patients


def run_finetune(task: Any, make_model: Callable[[], nn.Module], train_set: Dataset, val_set: Dataset,
                 test_set: Dataset, cfg: FinetuneConfig, output_dir: str | os.PathLike, *, method: str,
                 train_patients: Sequence[Any] | None = None, label_fractions: Sequence[float] | None = None,
                 seeds: Sequence[int] | None = None, device: str | torch.device = "auto", optimizer: str = "adamw",
                 resume: bool = True, force: bool = False, progress: bool = True) -> list[ResultRow]:
    """Fine-tune one initialisation over label fractions and seeds; evaluate each run on the test split.

    Args:
        task: a :class:`~pcrl_lib.finetune.classify.ClassificationTask` or
            :class:`~pcrl_lib.finetune.segment.SegmentationTask`.
        make_model: builds a fresh model (called after seeding, once per run), e.g.
            ``lambda: build_classifier(2, 14, pretrained="runs/pcrl/encoder.pt")``.
        train_set, val_set, test_set: disjoint patient-level splits (items as the task expects).
        cfg: :class:`pcrl_lib.config.FinetuneConfig`; ``label_fractions``/``seeds`` default to its own.
        output_dir: experiment folder (one sub-folder per run).
        method: the initialisation's name in the rows ("pcrl", "moco", "scratch", "imagenet", ...).
        train_patients: one patient id (or record) per training item; default: every item is its own patient
            (right for one-case-per-patient sets such as LiTS and BraTS, wrong for multi-image patients).
        device, optimizer, resume, force, progress: as in :func:`pcrl_lib.finetune.loop.fit`.

    Returns:
        The result rows of every run: each test metric (split "test") and the selected validation score
        (split "val", metric ``task.main_metric``).
    """
    fractions, seeds, patients = protocol_inputs(cfg, train_set, test_set, train_patients, label_fractions, seeds)
    out = Path(output_dir)
    ctx = eval_context(task.spatial_dims, cfg, device)
    rows: list[ResultRow] = []
    for fraction in fractions:
        for seed in seeds:
            kept = sample_fraction(patients, fraction, seed)              # validates the fraction
            run_dir = out / f"frac_{fraction:g}" / f"seed_{seed}"
            seed_everything(int(seed))
            model = make_model()
            train_data = task.train_dataset(Subset(train_set, kept.tolist()), int(seed))
            result = fit(model, task, train_data, val_set, cfg, run_dir, seed=int(seed), device=device,
                         optimizer=optimizer, resume=resume, force=force, progress=progress)
            metrics = task.evaluate(model, test_set, ctx, n_bootstrap=cfg.bootstrap,
                                    rng=np.random.default_rng([int(seed), 0xE7A1]))
            protocol = {
                "label_fraction": fraction, "seed": int(seed), "optimizer": optimizer,
                "task": task.describe(), "finetune": {k: (list(v) if isinstance(v, tuple) else v)
                                                      for k, v in cfg.to_dict().items()},
                "init": getattr(model, "init_report", None), "selection": f"best validation {task.main_metric}",
                "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                "stopped_early": result.stopped_early, "precision": result.precision,
                "n_patients_train": int(len(set(patients[kept].tolist()))), "bootstrap": cfg.bootstrap,
                "run_dir": str(run_dir),
            }
            common = {"task": task.name, "label_fraction": float(fraction), "method": method, "seed": int(seed),
                      "wall_time_s": result.wall_time_s, "device": str(ctx.device), "n_train": int(len(kept)),
                      "n_val": len(val_set), "n_test": len(test_set)}
            run_rows = [ResultRow(split="test", metric=m.name, value=float(m.value), ci_low=float(m.ci_low),
                                  ci_high=float(m.ci_high), protocol={**protocol, "detail": m.detail}, **common)
                        for m in metrics]
            run_rows.append(ResultRow(split="val", metric=task.main_metric, value=result.best_score,
                                      ci_low=float("nan"), ci_high=float("nan"), protocol=protocol, **common))
            save_rows(run_rows, run_dir / "results.json")
            rows.extend(run_rows)
    save_rows(rows, out / "results.json")
    return rows


# ------------------------------------------------------------------------------------------------ run folders
# FinetuneConfig fields that pick which runs are made (sub-folders, initialisations) or are already applied to
# other fields (the segmentation lr factor is in lr, the overlap in the task's description): not in the stamp.
_NOT_IN_STAMP = ("label_fractions", "seeds", "methods_cls", "methods_seg", "seg_overlap", "seg_lr_factor")


def encoder_tag(path: str | os.PathLike | None) -> str:
    """A short stamp of an encoder export (its size and modification time), ``"none"`` without one: the
    fine-tuning folders carry it, so a re-pretrained encoder is fine-tuned afresh instead of being reused."""
    if path is None:
        return "none"
    return fingerprint(input_signature(path))[:8]


def classification_run_folder(output_dir: str | os.PathLike, data: Any, method: str,
                              encoder: str | os.PathLike | None) -> Path:
    """``<output_dir>/finetune/<task>/<variant>/<method>-<export stamp>``: the experiment folder of one
    initialisation on a :class:`~pcrl_lib.data.tasks_cls.ClassificationData` (:func:`run_finetune` puts one
    sub-folder per fraction and seed in it). The variant names the data's build (sizes, policy) and the stamp the
    encoder file (:func:`encoder_tag`), so other inputs or a re-pretrained encoder train afresh."""
    return Path(output_dir) / "finetune" / data.name / data.variant / f"{method}-{encoder_tag(encoder)}"


def segmentation_run_folder(output_dir: str | os.PathLike, data: Any, task: Any, cfg: FinetuneConfig, method: str,
                            encoder: str | os.PathLike | None) -> Path:
    """``<output_dir>/finetune/<task_name>/<method>-<export stamp>-<settings stamp>``: the experiment folder of one
    initialisation on a :class:`~pcrl_lib.data.tasks_seg.SegmentationData` (:func:`run_finetune` puts one
    sub-folder per fraction and seed in it).

    The export stamp follows the encoder file (size, mtime; "none" for scratch) and the settings stamp the data
    (source, spacing, channels, structures, split), the task (window, overlap, patches, ...) and the fine-tuning
    config except the fractions and seeds, which only pick sub-folders (and the fields that pick the runs
    or are already applied to others, :data:`_NOT_IN_STAMP`). So a re-pretrained encoder or a changed
    parameter trains afresh in a new folder, while a rerun with the same settings reuses the finished runs.
    """
    export = encoder_tag(encoder)
    settings = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_IN_STAMP}
    stamp = fingerprint([data.describe(), task.describe(), settings])[:8]
    return Path(output_dir) / "finetune" / data.task_name / f"{method}-{export}-{stamp}"
