"""Few-label subsets and patient-level splits (PCRL_SPEC §10: "patient-level splits everywhere").

Both functions work on *patients*, never on images: all images (or cubes) of one patient land in the same
split, and a label fraction keeps or drops a patient with all of their images.

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
from typing import Any, Mapping, Sequence

import numpy as np

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


def _patient_order(ids: np.ndarray, seed: int) -> np.ndarray:
    """Unique patient ids in the seeded random order shared by every fraction of this seed."""
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
    order = _patient_order(ids, seed)
    # The small epsilon keeps e.g. 0.1 · 30 = 3.0000000000000004 from rounding up to 4 patients.
    keep = max(1, math.ceil(float(fraction) * order.size - 1e-9))
    return np.flatnonzero(np.isin(ids, order[:keep])).astype(np.int64)


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
    order = _patient_order(ids, seed)
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
