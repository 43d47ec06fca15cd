"""Run folders: only write where the kit may, one run at a time per folder, and reuse only the same run.

A training run (pretraining, fine-tuning) owns its output folder. Two accidents cost users their files or their
results, and this module stops both:

* **a folder the kit did not create**: ``--force`` deletes a run's checkpoints, history and exports, and a new
  run overwrites ``history.json``. The kit therefore writes a marker file ``.pcrl-run.json`` (kind, kit version,
  creation time) into every run folder it creates and only ever writes, or deletes with ``force``, inside a
  folder that carries it. A non-empty folder without the marker is refused, whatever ``force`` says. A run
  folder written by an older kit (no marker, but its own ``checkpoints/last.pt`` and ``checkpoints/config.json``
  and nothing foreign at the top) is adopted: the marker is added and the run resumes;
* **two runs into one folder**: both would report success while overwriting each other's checkpoints. A run
  holds an exclusive ``fcntl.flock`` on ``.pcrl-lock`` from start to end; the file records the holder's PID,
  and a second run fails at once with a one-line error naming it. The operating system drops the lock when
  the holder exits, however it exits (SIGKILL included), so a stale lock file never blocks a rerun.

Usage::

    with run_folder(out, "pretrain", force=force) as folder:   # raises RunFolderError (a ValueError)
        ...                                                    # train; folder.adopted / folder.created
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from .fileio import TMP_PREFIX, atomic_write_json, folder_problem

MARKER = ".pcrl-run.json"
LOCK = ".pcrl-lock"
KINDS = ("pretrain", "finetune")
# What each kind of run writes at the top of its folder (an older kit's run is adopted only if it holds no more).
_KIT_FILES = {
    "pretrain": {"checkpoints", "history.json", "encoder.pt", "encoder.json"},
    "finetune": {"checkpoints", "history.json", "best.pt", "results.json"},
}


# ------------------------------------------------------------------------------------------------ run reuse
def config_differences(stored: Mapping, requested: Mapping, *, ignore: Iterable[str] = ()) -> list[str]:
    """``"key: stored -> requested"`` for every setting that differs between a run folder's configuration and
    the one asked for, keys as dotted paths through nested dicts, in key order; empty when the run can be
    resumed or reused. ``ignore``: dotted keys that cannot change a run's results (loader workers, ...)."""
    ignored = set(ignore)

    def flat(d: Mapping, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            key = f"{prefix}{k}"
            if isinstance(v, Mapping):
                out.update(flat(v, f"{key}."))
            elif key not in ignored:
                out[key] = v
        return out

    a, b = flat(stored), flat(requested)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


# ------------------------------------------------------------------------------------------------ run folders
class RunFolderError(ValueError):
    """The output folder cannot hold this run (a user's folder, a file, read-only, or in use); one line."""


class RunFolderBusy(RunFolderError):
    """Another live process holds the folder's lock."""

    def __init__(self, path: Path, pid: int | None):
        self.path, self.pid = path, pid
        holder = f"PID {pid}" if pid else "PID unknown"
        super().__init__(f"output folder {path} is in use by another run ({holder}); wait for it to finish or "
                         "choose another --output-dir")


@dataclass(frozen=True)
class RunFolder:
    """A run folder held by this process: ``created`` (the marker was written now), ``adopted`` (an older
    kit's run folder that had no marker)."""

    path: Path
    kind: str
    created: bool
    adopted: bool


def _kit_version() -> str:
    from . import __version__

    return __version__


def read_marker(path: str | os.PathLike) -> dict | None:
    """The marker of a kit run folder (``{"kind", "kit_version", "created"}``), or ``None`` when there is none."""
    try:
        marker = json.loads((Path(path) / MARKER).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # present but unreadable: still written by the kit
    return marker if isinstance(marker, dict) else {}


def _foreign_entries(path: Path, kind: str) -> list[str]:
    """Top-level names that are neither this kind's run files nor the kit's bookkeeping."""
    allowed = _KIT_FILES[kind] | {MARKER, LOCK}
    return sorted(p.name for p in path.iterdir() if p.name not in allowed and not p.name.startswith(TMP_PREFIX))


def _is_older_kit_run(path: Path, kind: str) -> bool:
    ckpt = path / "checkpoints"
    return (ckpt / "last.pt").is_file() and (ckpt / "config.json").is_file() and not _foreign_entries(path, kind)


def _check_ownership(path: Path, kind: str) -> tuple[bool, bool]:
    """(created, adopted) for a folder this kind of run may use; raises :class:`RunFolderError` otherwise."""
    marker = read_marker(path)
    if marker is not None:
        other = marker.get("kind")
        if other and other != kind:
            raise RunFolderError(f"output folder {path} holds a {other} run; a {kind} run needs a folder of its own")
        return False, False
    entries = [p.name for p in path.iterdir() if p.name != LOCK]
    if not entries:
        return True, False
    if _is_older_kit_run(path, kind):
        return False, True
    shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
    raise RunFolderError(f"output folder {path} holds files the kit did not write ({shown}); choose an empty or "
                         "new folder (the kit never writes into, nor deletes with --force/force=True, a folder it "
                         "did not create)")


def _clear(path: Path, kind: str) -> None:
    """Delete this kind's run files; only ever called on a folder that carries the marker and is locked."""
    for name in sorted(_KIT_FILES[kind]):
        target = path / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()


def _prepare(path: Path) -> None:
    problem = folder_problem(path)
    if problem:
        raise RunFolderError(f"output folder {path} {problem}; choose a writable folder (it is created if missing)")


def _holder_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
    except (OSError, ValueError):
        return None


def _lock(path: Path) -> int:
    """Open and exclusively lock ``path/.pcrl-lock``; returns its descriptor (closing it releases the lock)."""
    import fcntl

    fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        pid = _holder_pid(fd)
        os.close(fd)
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise RunFolderBusy(path, pid) from None
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


@contextlib.contextmanager
def run_folder(path: str | os.PathLike, kind: str, *, force: bool = False) -> Iterator[RunFolder]:
    """Hold ``path`` as the folder of a ``kind`` run (``"pretrain"`` or ``"finetune"``) for the ``with`` block.

    Creates the folder when missing, refuses a file, a read-only folder, a non-empty folder the kit did not
    create (whatever ``force`` says) and a folder another live run holds; writes the marker; with ``force``
    deletes this kind's run files (checkpoints, history, exports, results) so the run starts from scratch; holds
    the lock until the block ends. Errors are :class:`RunFolderError` (a ``ValueError``) with a one-line message
    naming the folder.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    path = Path(path)
    _prepare(path)
    created, adopted = _check_ownership(path, kind)  # before locking: never leave a lock file in a user's folder
    fd = _lock(path)
    try:
        if read_marker(path) is None:
            marker = {"kind": kind, "kit_version": _kit_version(),
                      "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                      **({"adopted": True} if adopted else {})}
            atomic_write_json(marker, path / MARKER)
        if force:
            _clear(path, kind)
        yield RunFolder(path, kind, created, adopted)
    finally:
        os.close(fd)
