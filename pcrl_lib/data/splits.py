"""Patient-level splits and label fractions (PCRL_SPEC §10: "patient-level splits everywhere"), for every task.

Every function here works on *patients*, never on images: all images (or cubes, or the one volume of a case) of
one patient land in the same split, and a label fraction keeps or drops a patient with all of their images.

=============================  ====================================================================================
function                       used for
=============================  ====================================================================================
:func:`patient_split`          a label table (column ``patient_id``) → train / val (/ test) tables; NIH's 70/10/20
:func:`nih_splits`             the kit's NIH splits: the release's test list, its train_val list split by patient
:func:`grow_validation_split`  a train / val split whose val part gives a defined ROC-AUC (classification tasks)
:func:`stratified_patient_split` train / val / test within each stratum (class), so every split holds every class
:func:`luna_subset_split`      real LUNA16: the split of each scan from its ``subsetN`` folder
:func:`split_cases`            segmentation cases (one case = one patient): 70 / 10 / 20 %
:func:`split_patients`         any items → disjoint seeded parts (what :func:`stratified_patient_split` and
                               :func:`split_cases` cut with)
:func:`sample_fraction`        a nested label fraction of a training split
:func:`patient_order`          the seeded patient order a label fraction takes a prefix of
:func:`items_of_first_patients` the items of the first ``ceil(f · P)`` patients of an order (one fraction's items)
=============================  ====================================================================================

:func:`sample_fraction` is **nested**: for one seed, the patients are put in one seeded random order and a
fraction ``f`` keeps the first ``ceil(f · P)`` of them (``P`` = number of patients, at least one is kept).
So the 5 % set is contained in the 10 % set, which is contained in the 20 % set, and so on — a learning
curve over fractions then compares nested training sets, not unrelated draws. The order depends only on
the seed and on the *set* of patient ids (they are sorted before shuffling), not on the order of the items.

Items can be patient ids themselves (str/int), objects with a ``patient`` or ``patient_id`` attribute
(:class:`pcrl_lib.data.images2d.ImageRecord`), or mappings with a ``"patient"`` / ``"patient_id"`` key.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from . import nih

SPLITS = ("train", "val", "test")
SPLIT_SEED = 0                    # the kit's fixed patient-split seed: every notebook sees the same split
NIH_VAL_FRACTION = 0.1            # of the train_val list's patients, held out for validation (never pretrained on)
SPLIT_FRACTIONS = (0.7, 0.1, 0.2)  # train / val / test shares of the segmentation cases
# Real LUNA16: the paper pretrains on subsets 0-6, so subsets 7-9 are a test set no encoder has seen.
LUNA_FPR_SUBSETS = {"train": (0, 1, 2, 3, 4, 5), "val": (6,), "test": (7, 8, 9)}


# ----------------------------------------------------------------- label fractions and generic patient splits
_PATIENT_KEYS = ("patient", "patient_id")


def patient_of(item: Any) -> str:
    """The patient id of one item (see the module doc for what an item can be), as a string."""
    if isinstance(item, (str, int, np.integer)):
        return str(item)
    if isinstance(item, Mapping):
        for key in _PATIENT_KEYS:
            if key in item:
                return str(item[key])
    else:
        for key in _PATIENT_KEYS:
            if hasattr(item, key):
                return str(getattr(item, key))
    raise ValueError(f"cannot tell the patient of item {item!r}: pass patient ids, records with a 'patient' "
                     "attribute, or dicts with a 'patient' key")


def patient_ids(items: Sequence[Any]) -> np.ndarray:
    """``(N,)`` array of patient-id strings, one per item."""
    if isinstance(items, (str, bytes)):
        raise ValueError("items must be a sequence of items, not a single string")
    return np.array([patient_of(item) for item in items], dtype=object)


def patient_order(ids: np.ndarray, seed: int) -> np.ndarray:
    """``(P,)`` unique patient ids (of the ``(N,)`` per-item ids ``ids``) in the seeded random order shared by every
    label fraction of this seed; it depends on the *set* of ids only, not on their order."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    unique = np.array(sorted(set(ids.tolist())), dtype=object)
    # A salted SeedSequence keeps this stream independent of other uses of the same seed (weights, batches).
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED_F4AC]))
    return unique[rng.permutation(unique.size)]


def sample_fraction(items: Sequence[Any], fraction: float, seed: int) -> np.ndarray:
    """Indices of the items kept by a patient-level label fraction (nested across fractions, deterministic).

    Args:
        items: ``N`` items, one per image/cube/case (patient ids or records, see the module doc).
        fraction: share of the *patients* to keep, in (0, 1]; 1 keeps everything.
        seed: selects the patient order; the same seed gives nested subsets for growing fractions.

    Returns:
        Sorted ``int64`` indices into ``items`` of every item of the kept patients.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating, np.integer)) \
            or not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"fraction={fraction!r} is outside (0, 1]: pass the share of labelled training patients, "
                         "e.g. 0.05 for 5 %, 1.0 for all")
    ids = patient_ids(items)
    if ids.size == 0:
        raise ValueError("items is empty: there is nothing to sample a label fraction from")
    return items_of_first_patients(ids, patient_order(ids, seed), float(fraction))


def items_of_first_patients(ids: Sequence[Any], order: Sequence[Any], fraction: float) -> np.ndarray:
    """Indices of the items whose patient is among the first ``max(1, ceil(fraction · P))`` patients of ``order``.

    Args:
        ids: ``(N,)`` patient id of each item.
        order: ``(P,)`` the unique patient ids in the order patients are labelled (:func:`patient_order`).
        fraction: share of the patients to keep, in (0, 1].

    Returns:
        Sorted ``int64`` indices into ``ids``. Prefixes of one order are nested: a smaller fraction's items are a
        subset of a larger one's.
    """
    order = np.asarray(order, dtype=object)
    # The small epsilon keeps e.g. 0.1 · 30 = 3.0000000000000004 from rounding up to 4 patients.
    keep = max(1, math.ceil(float(fraction) * order.size - 1e-9))
    return np.flatnonzero(np.isin(np.asarray(ids, dtype=object), order[:keep])).astype(np.int64)


def split_patients(items: Sequence[Any], fractions: Sequence[float] = (0.7, 0.1, 0.2), seed: int = 0,
                   names: Sequence[str] = ("train", "val", "test")) -> dict[str, np.ndarray]:
    """Split items into disjoint patient-level parts (default 70/10/20 train/val/test, as the paper's NIH split).

    Patients are shuffled with ``seed`` and cut into consecutive groups of ``round(f · P)`` patients (the last
    group takes the remainder); every part gets at least one patient when there are enough patients.

    Returns:
        ``{name: sorted int64 item indices}``.
    """
    if len(fractions) != len(names):
        raise ValueError(f"fractions {tuple(fractions)} and names {tuple(names)} must have the same length")
    if any(f <= 0 for f in fractions) or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise ValueError(f"fractions must be positive and sum to 1, got {tuple(fractions)}")
    ids = patient_ids(items)
    order = patient_order(ids, seed)
    if order.size < len(names):
        raise ValueError(f"{order.size} patient(s) cannot fill {len(names)} splits {tuple(names)}: "
                         "each split needs at least one patient")
    sizes = [max(1, round(f * order.size)) for f in fractions[:-1]]
    if sum(sizes) >= order.size:
        raise ValueError(f"{order.size} patients are too few for fractions {tuple(fractions)}: the last split "
                         f"{names[-1]!r} would be empty")
    bounds = np.cumsum([0, *sizes, order.size - sum(sizes)])
    return {name: np.flatnonzero(np.isin(ids, order[bounds[i]:bounds[i + 1]])).astype(np.int64)
            for i, name in enumerate(names)}


# ------------------------------------------------------------------------------- label tables (NIH, CheXpert)
def patient_split(df: pd.DataFrame, val_fraction: float = 0.1, seed: int = 0,
                  test_fraction: float = 0.0) -> dict[str, pd.DataFrame]:
    """Seeded patient-level split of a label table into ``train`` / ``val`` (/ ``test``) DataFrames.

    Patients (column ``patient_id``) are shuffled with ``numpy.random.default_rng(seed)`` and cut by
    fraction of patients, so no patient appears in two splits. The paper's NIH protocol is 70/10/20:
    ``patient_split(df, val_fraction=0.1, test_fraction=0.2)``.
    """
    if "patient_id" not in df.columns:
        raise ValueError("patient_split needs a 'patient_id' column (use load_labels to read the table)")
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(f"val_fraction + test_fraction must be < 1, got {val_fraction + test_fraction}")
    patients = np.asarray(sorted(df["patient_id"].astype(str).unique()))
    rng = np.random.default_rng(seed)
    order = patients[rng.permutation(len(patients))]
    n_val = int(round(val_fraction * len(order)))
    n_test = int(round(test_fraction * len(order)))
    if (val_fraction > 0 and n_val == 0) or (test_fraction > 0 and n_test == 0) or n_val + n_test >= len(order):
        raise ValueError(f"cannot split {len(order)} patient(s) into val_fraction={val_fraction}, "
                         f"test_fraction={test_fraction} with a non-empty train split")
    groups = {"val": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}
    patient = df["patient_id"].astype(str)
    out = {name: df[patient.isin(set(ids))].reset_index(drop=True) for name, ids in groups.items()}
    if test_fraction == 0.0:
        del out["test"]
    return out


def nih_splits(nih_root: str | os.PathLike, val_fraction: float = NIH_VAL_FRACTION,
               seed: int = SPLIT_SEED) -> dict[str, pd.DataFrame]:
    """The kit's NIH splits, label tables (``nih.load_labels`` columns) keyed ``train`` / ``val`` / ``test``.

    ``test``: the release's ``test_list.txt``; ``train`` and ``val``: its ``train_val_list.txt`` split by patient
    (``val_fraction`` of the patients, at least one, drawn with ``seed``), so no patient is in two splits.
    Pretraining uses ``train`` only. Raises ``ValueError`` when a listed image is missing from the label table."""
    root = Path(nih_root)
    table = nih.load_labels(nih.find_label_csv(root))
    official = nih.official_split(root)
    known = pd.Index(table["image"])
    for name, listed in (("train_val_list.txt", official.train_val), ("test_list.txt", official.test)):
        unknown = ~pd.Index(listed).isin(known)
        if unknown.any():
            examples = [listed[i] for i in np.flatnonzero(unknown)[:3]]
            raise ValueError(f"{root / name}: {int(unknown.sum())} image(s) not in the label table "
                             f"{nih.find_label_csv(root).name}, e.g. {examples}; are the files from one release?")
    train_val = table[table["image"].isin(set(official.train_val))].reset_index(drop=True)
    patients = train_val["patient_id"].nunique()
    if patients < 2:
        raise ValueError(f"{root / 'train_val_list.txt'}: lists images of {patients} patient(s); at least 2 are "
                         "needed to hold a validation patient out of pretraining")
    # At least one validation patient, so that small datasets (look-alikes, samples) are split too.
    parts = patient_split(train_val, val_fraction=max(val_fraction, 1.0 / patients), seed=seed)
    test = table[table["image"].isin(set(official.test))].reset_index(drop=True)
    return {"train": parts["train"], "val": parts["val"], "test": test}


def has_defined_auc(labels: np.ndarray) -> bool:
    """True when at least one class of ``labels`` ``(N, L)`` (NaN = unknown) has a positive and a negative."""
    labels = np.asarray(labels, dtype=np.float64).reshape(len(labels), -1)
    return bool(((labels == 1).any(axis=0) & (labels == 0).any(axis=0)).any())


def grow_validation_split(table: pd.DataFrame, label_columns: Sequence[str], val_fraction: float,
                          seed: int = SPLIT_SEED, what: str = "the training table") -> tuple[dict, int]:
    """Patient-level train / val split of ``table`` (column ``patient_id``) whose val part gives a defined AUC.

    The val part takes ``max(1, round(val_fraction · P))`` of the ``P`` patients in the seeded order of
    :func:`pcrl_lib.data.patient_split` (the split notebook 03 uses for NIH) and, only when no class has
    both a positive and a negative there, the next patients in the same order one by one. Returns
    ``({"train": DataFrame, "val": DataFrame}, added)`` with ``added`` the number of patients added.
    """
    patients = table["patient_id"].astype(str).nunique()
    if patients < 2:
        raise ValueError(f"{what}: holds {patients} patient(s); a patient-level validation split needs at least 2")
    first = max(1, int(round(val_fraction * patients)))
    for n_val in range(first, patients):
        parts = patient_split(table, val_fraction=n_val / patients, seed=seed)
        if has_defined_auc(parts["val"][list(label_columns)].to_numpy(np.float64)):
            return {"train": parts["train"], "val": parts["val"]}, n_val - first
    raise ValueError(f"{what}: no patient-level validation split leaves a class with both positive and negative "
                     f"labels (checked {first}..{patients - 1} of {patients} patients); model selection needs one")


# -------------------------------------------- item lists (demo radiographs, LUNA16 scans, segmentation cases)
def stratified_patient_split(patients: Sequence[str], strata: Sequence[Any],
                             fractions: Sequence[float] = (0.7, 0.1, 0.2),
                             seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """Train / val / test item indices, split by patient *within each stratum* (e.g. class), so every split
    holds every stratum. Each patient must belong to one stratum. Returns ``{split: sorted int64 indices}``."""
    patients = np.asarray([str(p) for p in patients], dtype=object)
    strata = np.asarray(strata)
    if len(patients) != len(strata):
        raise ValueError(f"{len(patients)} patients but {len(strata)} strata; pass one stratum per item")
    per_patient = pd.Series(strata).groupby(pd.Series(patients)).nunique()
    if (per_patient > 1).any():
        raise ValueError(f"patient(s) {per_patient[per_patient > 1].index[:3].tolist()} belong to several strata; "
                         "a stratified patient split needs one stratum per patient")
    parts = {split: [] for split in SPLITS}
    for stratum in pd.unique(strata):
        members = np.flatnonzero(strata == stratum)
        for split, local in split_patients(patients[members], fractions, seed, SPLITS).items():
            parts[split].append(members[local])
    return {split: np.sort(np.concatenate(chunks)).astype(np.int64) for split, chunks in parts.items()}


def luna_subset_split(scans: Mapping[str, Path]) -> dict[str, list[str]]:
    """Real LUNA16: the split of each scan from its ``subsetN`` folder (:data:`LUNA_FPR_SUBSETS`).

    Raises ``ValueError`` naming the missing subsets when a split gets no scan (e.g. subsets 7-9 not downloaded)."""
    subset_of = {}
    for uid, path in scans.items():
        folder = Path(path).parent.name
        if not folder.startswith("subset") or not folder[len("subset"):].isdigit():
            raise ValueError(f"{path}: LUNA16 scans must lie in subset0..subset9 folders")
        subset_of[uid] = int(folder[len("subset"):])
    out = {}
    for split, subsets in LUNA_FPR_SUBSETS.items():
        out[split] = sorted(uid for uid, s in subset_of.items() if s in subsets)
        if not out[split]:
            raise ValueError(f"LUNA16 {split} split is empty: no scans in subset(s) {list(subsets)} "
                             f"(found subsets {sorted(set(subset_of.values()))}); unpack them under the LUNA16 root "
                             "(see data/README.md)")
    return out


def split_cases(names: Sequence[str], fractions: Sequence[float] = SPLIT_FRACTIONS,
                seed: int = SPLIT_SEED) -> dict[str, tuple[str, ...]]:
    """Patient-level train / val / test split of case names (one case = one patient).

    ``round(f · N)`` cases go to val and test, at least one each; train takes the rest (at least one), so
    ``N = 3`` gives 1 / 1 / 1 and ``N = 131`` (LiTS) 92 / 13 / 26. The cases are drawn in the seeded order of
    :func:`split_patients`; each split is returned sorted.
    """
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
