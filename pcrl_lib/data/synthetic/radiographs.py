"""Writers of the 2D look-alikes: NIH ChestX-ray14 and CheXpert, in their exact on-disk layouts.

Each writer fills an (empty) folder and returns the ground truth as a JSON-ready dict, which
:func:`pcrl_lib.data.synthetic.write` stores in ``synthetic.json`` next to the data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..chexpert import DATASET_FOLDER, META_COLUMNS, OBSERVATIONS
from ..nih import NIH_LABELS, NO_FINDING, SPLIT_FILES
from .xray import L, chest_xrays, jitter_anatomy, lateral_xrays, sample_anatomy, sample_findings

NIH_CSV = "Data_Entry_2017_v2020.csv"
# Header of the real v2020 table, including the two bracketed column names that the commas split in two.
NIH_COLUMNS = ("Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
               "View Position", "OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]")
CHUNK = 64  # images rendered per vectorised batch (bounds memory for large images)


def _patients(rng: np.random.Generator, n: int, mean_extra: float) -> np.ndarray:
    """Patient index ``(n,)`` for n images/studies: each patient gets 1 + Poisson(mean_extra) of them."""
    counts = 1 + rng.poisson(mean_extra, n)
    return np.repeat(np.arange(n), counts)[:n]


def _render(render, labels: np.ndarray, rng: np.random.Generator, size: int, difficulty: float,
            anatomy: dict[str, np.ndarray], **per_item) -> np.ndarray:
    """Render in chunks of :data:`CHUNK` items; per-item arrays in ``anatomy`` / ``per_item`` are sliced along."""
    parts = []
    for start in range(0, len(labels), CHUNK):
        part = slice(start, start + CHUNK)
        extra = {k: (None if v is None else v[part]) for k, v in per_item.items()}
        parts.append(render(labels[part], rng, size=size, difficulty=difficulty,
                            anatomy={k: v[part] for k, v in anatomy.items()}, **extra))
    return np.concatenate(parts) if parts else np.zeros((0, size, size), np.float32)


def _save(image: np.ndarray, path: Path, quality: int | None = None) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = Image.fromarray(np.round(image * 255).astype(np.uint8))
    if quality is None:
        pixels.save(path, format="PNG")
    else:
        pixels.save(path, format="JPEG", quality=quality)


def write_nih(root: Path, n: int, seed: int, size: int, difficulty: float) -> dict:
    """``images/*.png``, ``Data_Entry_2017_v2020.csv``, ``train_val_list.txt``, ``test_list.txt`` for ``n`` images.

    Patients have 1 + Poisson(1.5) follow-up images with persistent anatomy and correlated findings;
    the official-style split holds ~20 % of the patients out as the test list.
    """
    rng = np.random.default_rng(seed)
    patient = _patients(rng, n, 1.5)
    n_patients = int(patient.max()) + 1
    labels = sample_findings(rng, patient)
    anatomy = jitter_anatomy(rng, {k: v[patient] for k, v in sample_anatomy(rng, n_patients).items()})
    images = _render(chest_xrays, labels, rng, size, difficulty, anatomy)

    follow_up = np.zeros(n, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, patient[1:] != patient[:-1]])
    follow_up[:] = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    age = rng.integers(18, 86, n_patients)[patient] + follow_up // 2
    sex = np.where(rng.random(n_patients) < 0.56, "M", "F")[patient]
    view = np.where(rng.random(n) < 0.6, "PA", "AP")
    patient_id = patient + 1
    names = [f"{p:08d}_{f:03d}.png" for p, f in zip(patient_id, follow_up)]
    findings = ["|".join(NIH_LABELS[j] for j in np.flatnonzero(row)) or NO_FINDING for row in labels]
    spacing = round(350.0 / size, 4)  # a ~35 cm field of view
    table = pd.DataFrame(dict(zip(NIH_COLUMNS, (names, findings, follow_up, patient_id, age, sex, view,
                                                 size, size, spacing, spacing))))
    (root / "images").mkdir(parents=True)
    for image, name in zip(images, names):
        _save(image, root / "images" / name)
    table.to_csv(root / NIH_CSV, index=False)

    test_patients = rng.permutation(n_patients)[:max(1, round(0.2 * n_patients))] if n_patients > 1 else []
    in_test = np.isin(patient, test_patients)
    for file, keep in zip(SPLIT_FILES, (~in_test, in_test)):
        (root / file).write_text("".join(f"{name}\n" for name, k in zip(names, keep) if k))
    return {"images": names, "patient_id": patient_id.astype(str).tolist(), "labels": labels.tolist(),
            "label_names": list(NIH_LABELS), "test": [m for m, k in zip(names, in_test) if k]}


def _chexpert_observations(rng: np.random.Generator, labels: np.ndarray, devices: np.ndarray) -> np.ndarray:
    """NIH-space findings ``(N, 14)`` → CheXpert's 14 observations ``(N, 14)`` as 0/1 (before uncertainty)."""
    n = len(labels)
    lab = {name: labels[:, i].astype(bool) for name, i in L.items()}
    opacity = lab["Infiltration"] | lab["Pneumonia"] | lab["Consolidation"] | lab["Edema"] | lab["Atelectasis"]
    obs = {
        "Enlarged Cardiomediastinum": lab["Cardiomegaly"] | (rng.random(n) < 0.03),
        "Cardiomegaly": lab["Cardiomegaly"], "Lung Opacity": opacity | lab["Mass"] | lab["Fibrosis"],
        "Lung Lesion": lab["Mass"] | lab["Nodule"], "Edema": lab["Edema"], "Consolidation": lab["Consolidation"],
        "Pneumonia": lab["Pneumonia"], "Atelectasis": lab["Atelectasis"], "Pneumothorax": lab["Pneumothorax"],
        "Pleural Effusion": lab["Effusion"], "Pleural Other": lab["Pleural_Thickening"],
        "Fracture": rng.random(n) < 0.04, "Support Devices": devices,
    }
    matrix = np.zeros((n, len(OBSERVATIONS)), dtype=np.float64)
    for name, values in obs.items():
        matrix[:, OBSERVATIONS.index(name)] = values
    matrix[:, 0] = ~matrix[:, 1:].any(axis=1)  # "No Finding"
    return matrix


# Which NIH-space finding draws each CheXpert observation, so an uncertain label is shown half as strongly.
_SHOWN_AS = {"Cardiomegaly": "Cardiomegaly", "Edema": "Edema", "Consolidation": "Consolidation",
             "Pneumonia": "Pneumonia", "Atelectasis": "Atelectasis", "Pneumothorax": "Pneumothorax",
             "Pleural Effusion": "Effusion", "Pleural Other": "Pleural_Thickening"}


def write_chexpert(root: Path, n: int, seed: int, size: int, difficulty: float) -> dict:
    """``CheXpert-v1.0-small/{train,valid}.csv`` and ``{train,valid}/patientNNNNN/studyK/viewJ_*.jpg``.

    ``n`` training studies (1 + Poisson(0.8) per patient; each a frontal view, 30 % also a lateral one),
    plus ``max(2, n // 4)`` validation studies from other patients. Training labels carry CheXpert's
    uncertainty: 20 % of positives become -1.0 (and are drawn half as visibly), 3 % of negatives become
    -1.0; negatives are mostly blank, sometimes an explicit 0.0. Validation labels are all 0.0 / 1.0.
    """
    rng = np.random.default_rng(seed)
    n_valid = max(2, n // 4)
    train_patient = _patients(rng, n, 0.8)
    n_train_patients = int(train_patient.max()) + 1
    patient = np.r_[train_patient, n_train_patients + np.arange(n_valid)]
    is_valid = np.r_[np.zeros(n, bool), np.ones(n_valid, bool)]
    total = n + n_valid
    labels = sample_findings(rng, patient)
    devices = rng.random(total) < 0.3
    obs = _chexpert_observations(rng, labels, devices)

    strength = labels.astype(np.float32)
    uncertain_pos = (obs == 1) & (rng.random(obs.shape) < 0.2) & ~is_valid[:, None]
    uncertain_neg = (obs == 0) & (rng.random(obs.shape) < 0.03) & ~is_valid[:, None]
    uncertain_pos[:, 0] = uncertain_neg[:, 0] = False  # "No Finding" is never uncertain
    for name, finding in _SHOWN_AS.items():
        half = uncertain_pos[:, OBSERVATIONS.index(name)]
        strength[half, L[finding]] *= 0.5
    explicit_negative = rng.random(obs.shape) < 0.15
    values = np.where(obs == 1, 1.0, np.where(explicit_negative | is_valid[:, None], 0.0, np.nan))
    values[uncertain_pos | uncertain_neg] = -1.0
    values[:, 0] = np.where(obs[:, 0] == 1, 1.0, np.where(is_valid, 0.0, np.nan))

    anatomy_p = sample_anatomy(rng, int(patient.max()) + 1)
    anatomy = jitter_anatomy(rng, {k: v[patient] for k, v in anatomy_p.items()})
    frontal = _render(chest_xrays, labels, rng, size, difficulty, anatomy, strength=strength, devices=devices)
    has_lateral = rng.random(total) < 0.3
    lateral = _render(lateral_xrays, labels[has_lateral], rng, size, difficulty,
                      {k: v[has_lateral] for k, v in anatomy.items()}, strength=strength[has_lateral])
    study = np.zeros(total, dtype=np.int64)
    for group in (~is_valid, is_valid):  # study number counts within each patient
        p = patient[group]
        starts = np.flatnonzero(np.r_[True, p[1:] != p[:-1]])
        study[group] = 1 + np.arange(len(p)) - np.repeat(starts, np.diff(np.r_[starts, len(p)]))
    sex = np.where(rng.random(int(patient.max()) + 1) < 0.6, "Male", "Female")[patient]
    age = rng.integers(18, 91, int(patient.max()) + 1)[patient] + study - 1
    projection = np.where(rng.random(total) < 0.7, "AP", "PA")

    dataset = root / DATASET_FOLDER
    rows, lateral_images = [], iter(lateral)
    for i in range(total):
        split = "valid" if is_valid[i] else "train"
        folder = f"{DATASET_FOLDER}/{split}/patient{patient[i] + 1:05d}/study{study[i]}"
        views = [("view1_frontal.jpg", "Frontal", projection[i], frontal[i])]
        if has_lateral[i]:
            views.append(("view2_lateral.jpg", "Lateral", np.nan, next(lateral_images)))
        for file, kind, proj, image in views:
            _save(image, root / folder / file, quality=95)
            rows.append((split, f"{folder}/{file}", sex[i], int(age[i]), kind, proj, *values[i]))
    table = pd.DataFrame(rows, columns=["split", *META_COLUMNS, *OBSERVATIONS])
    for split in ("train", "valid"):
        part = table[table["split"] == split].drop(columns="split")
        part.to_csv(dataset / f"{split}.csv", index=False, na_rep="", float_format="%.1f")
    truth_rows = table.drop(columns=[c for c in OBSERVATIONS])
    truth_values = table[list(OBSERVATIONS)].to_numpy()
    return {"paths": truth_rows["Path"].tolist(), "split": truth_rows["split"].tolist(),
            "observations": list(OBSERVATIONS),
            "values": [[None if np.isnan(x) else float(x) for x in row] for row in truth_values]}
