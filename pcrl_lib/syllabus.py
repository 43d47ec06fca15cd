"""The course map: what each notebook teaches and how long it takes per profile.

``planned`` times are the budgets the profiles are sized for (2-core laptop CPU for ``quick``, one modern GPU
for ``paper``); :func:`course_map` replaces them with measured wall times when a run's ``summary.json`` exists.

A lesson is one execution of a notebook. One notebook can serve several lessons with fixed parameters:
``03_pretrain.ipynb`` runs as ``03_pretrain_2d`` (``DIMS = 2``) and as ``04_pretrain_3d`` (``DIMS = 3``); each
lesson has its own record, executed copy and row in the course map (:func:`pcrl_lib.course.discover`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Lesson:
    stem: str                 # the lesson's name: its record, executed copy and row are named after it
    title: str
    teaches: str
    quick_cpu_min: float      # planned minutes, quick profile, 2-core CPU
    paper_gpu: str            # planned time, paper profile, one GPU
    notebook: str = ""        # the notebook file's stem; "" = ``stem``
    params: dict[str, Any] = field(default_factory=dict, hash=False)   # parameters the course runner fixes

    @property
    def file_stem(self) -> str:
        return self.notebook or self.stem


LESSONS: tuple[Lesson, ...] = (
    Lesson("00_overview", "Overview", "what PCRL is, the data flow, the course map, the environment", 0.2, "< 1 min"),
    Lesson("01_data_preparation", "Data preparation",
           "file formats, HU and windowing, spacing and resampling, PCRL crop pairs, labels and patient splits",
           1, "2–4 h (LUNA16 + ChestX-ray14 caches)"),
    Lesson("02_augmentations", "Augmentations",
           "Models Genesis distortions, TCA flips/rotations and their codes, the 2D views, mixup", 0.5, "< 5 min"),
    Lesson("03_pretrain_2d", "PCRL pretraining in 2D",
           "the three encoders, the TCA gate, the hybrid mix, the two passes, the losses; training a ResNet-18 U-Net",
           1.7, "~5–10 h per method on one H100 (extrapolated)", notebook="03_pretrain", params={"DIMS": 2}),
    Lesson("04_pretrain_3d", "PCRL pretraining in 3D", "the same on CT cubes with the Models Genesis 3D U-Net",
           1.5, "~1–1.5 days per method on one H100 (extrapolated)", notebook="03_pretrain", params={"DIMS": 3}),
    Lesson("05_chestxray14", "Thoracic disease classification (ChestX-ray14)",
           "fine-tuning with few labels, patient-level fractions, mean AUC with confidence intervals", 2.8, "hours"),
    Lesson("06_chexpert", "Thoracic disease classification (CheXpert)",
           "uncertainty labels and their policies, mean AUC over five competition labels", 3.4, "hours"),
    Lesson("07_luna_nodules", "Lung nodule false-positive reduction (LUNA16)",
           "candidate cubes, 3D classification, AUC", 3.3, "hours"),
    Lesson("08_lits_liver", "Liver segmentation (LiTS)",
           "3D segmentation fine-tuning, patch sampling, sliding-window inference, Dice and HD95", 3.1, "hours"),
    Lesson("09_brats", "Brain tumour segmentation (BraTS 2018)",
           "four-modality input from a one-channel encoder, WT / TC / ET regions", 3.3, "hours"),
    Lesson("10_results", "Results", "the reproduction report computed from the run's records", 0.2, "< 1 min"),
)


def record_name(notebook: str, dims: int | None = None) -> str:
    """The lesson (record) name of ``notebook`` run with ``DIMS = dims``: ``record_name("03_pretrain", 3)`` is
    ``"04_pretrain_3d"``; a notebook that serves one lesson gives its own stem (``dims`` None)."""
    lessons = [lesson for lesson in LESSONS if lesson.file_stem == notebook]
    if not lessons:
        raise ValueError(f"notebook {notebook!r} is not in the course map (pcrl_lib/syllabus.py LESSONS)")
    matching = [lesson for lesson in lessons if dims is None or lesson.params.get("DIMS") == dims]
    if len(matching) != 1:
        valid = ", ".join(f"{lesson.params['DIMS']}" for lesson in lessons if "DIMS" in lesson.params) or "None"
        raise ValueError(f"DIMS = {dims!r}: notebook {notebook} runs with DIMS {valid}")
    return matching[0].stem


def course_map(run_dir: str | Path | None = None) -> list[dict]:
    """One row per lesson; ``quick CPU`` is the measured wall time when ``run_dir/summary.json`` has it.

    Only the course runner times notebooks (``summary.json``); a notebook run in JupyterLab leaves its record
    (``records/NN_name.json``) but no time, and its row says so instead of "not run"."""
    measured: dict[str, float] = {}
    if run_dir is not None and (Path(run_dir) / "summary.json").is_file():
        try:
            rows = json.loads((Path(run_dir) / "summary.json").read_text()).get("notebooks", [])
            measured = {r["notebook"]: r["wall_s"] for r in rows if str(r.get("status", "")).startswith("ok")}
        except (OSError, ValueError, KeyError):
            measured = {}
    table = []
    for lesson in LESSONS:
        wall = measured.get(lesson.stem)
        if wall is not None:
            status = f"{wall / 60:.1f} min"
        elif run_dir is not None and (Path(run_dir) / "records" / f"{lesson.stem}.json").is_file():
            status = "run, not timed (only the course runner times notebooks)"
        else:
            status = "no timed run yet (the course runner times notebooks)"
        table.append({"notebook": lesson.stem, "title": lesson.title, "teaches": lesson.teaches,
                      "this profile (measured)": status,
                      "quick, CPU (planned)": f"{lesson.quick_cpu_min:g} min", "paper, GPU (planned)": lesson.paper_gpu})
    return table
