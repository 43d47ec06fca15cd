"""Checkpoints as plain dicts: atomic writes, ``weights_only`` loading, RNG state capture and restore.

A checkpoint must survive a crash at any instant (a SIGKILL, a full disk, a pre-empted GPU node) and must
be loadable with ``torch.load(path, weights_only=True)``, which refuses arbitrary pickled objects. So:

* files are written to a temporary name in the same folder, flushed, ``fsync``-ed and renamed over the
  target with ``os.replace`` (atomic on POSIX and Windows): a reader sees the old file or the new one,
  never half of one (:func:`pcrl_lib.fileio.atomic_write`);
* everything inside is a tensor or a plain type (dict, list, tuple, int, float, str, bool, None). NumPy's
  and Python's RNG states are converted to tensors/lists by :func:`capture_rng_state`.
"""

from __future__ import annotations

import os
import pickle
import random
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from .fileio import TMP_PREFIX, atomic_write

__all__ = ["atomic_save", "capture_rng_state", "load_checkpoint", "remove_stale_temporaries", "restore_rng_state"]

# The unsupported global that torch's weights_only unpickler names, e.g. "GLOBAL numpy.random._pickle..."
_UNSAFE_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_UNPICKLER_DETAIL = re.compile(r"WeightsUnpickler error:\s*([^\n]+)")


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)`` through a temporary file + fsync + ``os.replace``; returns the path."""
    return atomic_write(path, lambda fh: torch.save(obj, fh))


def remove_stale_temporaries(folder: str | os.PathLike) -> int:
    """Delete temporary files left by a writer that was killed mid-write; returns how many."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    stale = [p for p in folder.iterdir() if p.name.startswith(TMP_PREFIX) and p.is_file()]
    for p in stale:
        p.unlink()
    return len(stale)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """``torch.load(path, weights_only=True)`` with errors that say which file and what to do."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; train first or check OUTPUT_DIR")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's own message advises retrying with weights_only=False, i.e. running the file's code: not here.
        found = _UNSAFE_GLOBAL.search(str(err))
        if found:
            raise ValueError(f"checkpoint {path} holds non-tensor objects (e.g. {found.group(1)}) that "
                             "weights_only=True refuses: it was not written by this kit, or it is corrupt; delete it "
                             "(or pass force=True) to retrain") from None
        detail = _UNPICKLER_DETAIL.search(str(err))
        raise ValueError(f"checkpoint {path} cannot be read with weights_only=True"
                         f"{f' ({detail.group(1)})' if detail else ''}: it is corrupt or was not written by this "
                         "kit; delete it (or pass force=True) to retrain") from None
    except Exception as err:  # torch raises several types for truncated/foreign files
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"checkpoint {path} cannot be read ({reason}); it is truncated or not a checkpoint: "
                         "delete it (or pass force=True) to retrain") from None
    if not isinstance(obj, dict):
        raise ValueError(f"checkpoint {path} holds a {type(obj).__name__}, expected a dict")
    return obj


# --------------------------------------------------------------------------------------------- RNG state
def _numpy_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _set_numpy_state(state: Mapping) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state((state["name"], keys, state["pos"], state["has_gauss"], state["cached_gaussian"]))


def _python_state() -> dict:
    version, internal, gauss_next = random.getstate()
    return {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss_next": gauss_next}


def _set_python_state(state: Mapping) -> None:
    random.setstate((state["version"], tuple(int(v) for v in state["state"].tolist()), state["gauss_next"]))


def capture_rng_state(generators: Mapping[str, torch.Generator] | None = None) -> dict:
    """Every RNG a training step can touch, as tensors and plain types.

    Keys: ``torch`` (CPU default generator, ByteTensor), ``cuda`` (list of ByteTensors, one per device,
    empty without CUDA), ``numpy`` (MT19937 keys as an int64 tensor + position/gaussian cache), ``python``
    (``random``'s 625-word state as an int64 tensor), ``generators`` (``name -> ByteTensor`` for each
    explicit ``torch.Generator`` passed in, e.g. the trainer's view and method generators).
    """
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": _numpy_state(),
        "python": _python_state(),
        "generators": {name: gen.get_state() for name, gen in (generators or {}).items()},
    }


def restore_rng_state(state: Mapping, generators: Mapping[str, torch.Generator] | None = None) -> None:
    """Put back what :func:`capture_rng_state` captured.

    ``generators`` must hold the same names as at capture time (a missing one is a ``KeyError`` naming it,
    because silently re-seeding would break exact resume). CUDA states are restored when the number of
    visible devices matches; otherwise (e.g. resuming a GPU run on CPU) they are skipped.
    """
    torch.set_rng_state(state["torch"])
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)
    _set_numpy_state(state["numpy"])
    _set_python_state(state["python"])
    saved = state.get("generators", {})
    for name, gen in (generators or {}).items():
        if name not in saved:
            raise KeyError(f"checkpoint has no state for generator {name!r} (it has {sorted(saved)})")
        gen.set_state(saved[name])
