"""The setup and record cells every course notebook shares, as one call each.

Setup (after the ``parameters`` cell)::

    run = lesson.start("05_chestxray14", profile=PROFILE, data_root=DATA_ROOT, output_dir=OUTPUT_DIR, seed=SEED,
                       device=DEVICE, datasets=("nih",))

seeds Python/NumPy/torch, picks the device, prints the environment report, resolves the output folder and, when
the real datasets are used (``DATA_ROOT`` set), checks the layout of each dataset the notebook reads before anything
long runs. The course runner reads ``datasets=`` to check ``--data-root`` up front
(:meth:`pcrl_lib.course.Notebook.datasets`).

Record (the last code cell)::

    run.record({"auc_pcrl_0.1": 0.71}, results=rows, parameters={...})

writes ``OUTPUT_DIR/records/<notebook>.json`` (:func:`pcrl_lib.course.write_record`) with the environment report and
the exercises' status (:func:`pcrl_lib.exercises.status`), and prints its path.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from . import env, exercises, paths
from .config import Profile, get_profile


@dataclass
class LessonRun:
    """What a notebook's cells share: ``out_dir`` (records, runs), ``device``, ``env`` (the environment report),
    ``cfg`` (the profile's configuration), ``real`` (the real datasets are used), ``generator`` (seeded with
    ``seed`` on ``device``) and ``started`` (``time.perf_counter()`` at setup, for the notebook's wall time)."""

    notebook: str
    profile: str
    data_root: str | None
    seed: int
    out_dir: Path
    device: torch.device
    env: dict
    cfg: Profile
    real: bool
    generator: torch.Generator
    started: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        """Seconds since :func:`start`."""
        return time.perf_counter() - self.started

    def record(self, figures: dict, results: list | None = None, **extra: Any) -> Path:
        """Write this notebook's record (figures, result rows, anything in ``extra``) and print its path."""
        from .course import write_record

        solved = exercises.status()
        if solved:
            extra.setdefault("exercises", solved)
        path = write_record(self.out_dir, self.notebook, figures=figures, env=self.env, results=results, **extra)
        print("record written:", path)
        return path


def start(notebook: str, *, profile: str, data_root: str | os.PathLike | None = None,
          output_dir: str | os.PathLike | None = None, seed: int = 0, device: str = "auto",
          datasets: Sequence[str] = (), quiet: bool = False) -> LessonRun:
    """Set a notebook up from its shared parameters (see the module docstring).

    Args:
        notebook: the record's name, e.g. ``"05_chestxray14"``.
        profile, data_root, output_dir, seed, device: the notebook's ``PROFILE``, ``DATA_ROOT``, ``OUTPUT_DIR``,
            ``SEED`` and ``DEVICE`` parameters.
        datasets: the real datasets the notebook reads under ``DATA_ROOT`` (``nih``, ``chexpert``, ``luna16``,
            ``lits``, ``brats``); each is checked (:func:`pcrl_lib.data.check`) when real data is used, and a
            layout problem stops here with every problem listed.
        quiet: do not print the environment report.

    Raises ValueError for an unknown profile, ``paper`` without ``DATA_ROOT`` or a bad seed, naming the parameter.
    """
    from .data import check, profile_data

    cfg = get_profile(profile)
    real = profile_data.uses_real_data(profile, data_root)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"SEED must be a non-negative int, got {seed!r}")
    out_dir = paths.resolve_output_dir(output_dir, profile)
    env.seed_everything(seed)
    picked = env.pick_device(device)
    report = env.report(profile, data_root, picked, quiet=quiet)
    if real:
        for name in datasets:
            print(check(profile_data.dataset_root(data_root, name), name, raise_on_error=True))
    generator = torch.Generator(device=picked).manual_seed(seed)
    return LessonRun(notebook=notebook, profile=profile, data_root=str(data_root) if data_root else None, seed=seed,
                     out_dir=out_dir, device=picked, env=report, cfg=cfg, real=real, generator=generator)
