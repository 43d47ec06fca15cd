"""Files written whole or not at all, and the JSON helpers the kit's writers share (standard library only).

Every file the kit writes (checkpoints, exports, histories, run markers, prepared caches, course records and
reports) goes through :func:`atomic_write` or :func:`atomic_path`: the content goes to a temporary file beside the
target (named ``.tmp-<random>-<name>``), is flushed and ``fsync``-ed, then ``os.replace``-d onto the target. A
reader sees the old file or the new one, never half of one; an interrupted write, Ctrl-C included, leaves the old
file. Files get ordinary permissions (0666 minus the umask).

The module is named ``fileio`` rather than ``io``: a module ``io`` inside the package would shadow the standard
library's ``io`` whenever ``pcrl_lib/`` itself is on ``sys.path`` (a file there run as a script).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import secrets
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

__all__ = ["TMP_PREFIX", "atomic_write", "atomic_path", "atomic_write_bytes", "atomic_write_text",
           "atomic_write_json", "jsonable", "read_json", "fingerprint"]

TMP_PREFIX = ".tmp-"  # temporaries of atomic writes (a writer killed mid-write may leave one)


def _fsync_dir(folder: Path) -> None:
    # The rename itself lives in the directory entry; sync it so the new name survives a power cut.
    # Windows cannot open a directory; there os.replace is already durable enough.
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temporary_name(path: Path) -> Path:
    # Same folder as the target so that os.replace is a rename on one filesystem (atomic); the target's name at
    # the end keeps its suffix, which writers that pick a format by suffix (NIfTI, PNG) need.
    return path.with_name(f"{TMP_PREFIX}{secrets.token_hex(4)}-{path.name}")


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new temporary file next to ``path``, created with mode 0666 minus the umask like any ordinary file
    (``tempfile.mkstemp`` would make it 0600, and ``os.replace`` would carry that onto the output)."""
    while True:
        tmp = _temporary_name(path)
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def folder_problem(path: Path) -> str | None:
    """Create ``path`` (and its parents) when missing. None when it is then a writable folder, else what is
    wrong, to end the caller's message: "is a file", "cannot be created (<reason>)" or "is read-only"."""
    if path.exists() and not path.is_dir():
        return "is a file"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return f"cannot be created ({err.strerror})"
    return None if os.access(path, os.W_OK | os.X_OK) else "is read-only"


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> Path:
    """Call ``write(fh)`` on a temporary file beside ``path``, flush and ``fsync`` it, then ``os.replace`` it onto
    ``path``. Creates the parent folder when missing. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt included: the old file stays, the partial one goes
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """For writers that need a file name (``nibabel``, ``PIL``): yields a temporary path beside ``path`` (same
    suffix) to write to; when the block ends without an exception the file is ``os.replace``-d onto ``path``,
    otherwise it is deleted. Creates the parent folder when missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    return atomic_write_bytes(text.encode(), path)


def atomic_write_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented JSON (plus a final newline), atomically; returns the path."""
    return atomic_write_bytes((json.dumps(obj, indent=2, sort_keys=False) + "\n").encode(), path)


def jsonable(value: Any) -> Any:
    """``value`` with numpy/torch numbers and arrays as plain numbers and lists, non-finite floats as ``None``,
    paths as strings, dict keys as strings: what ``json.dumps`` accepts and reads back the same."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy / torch scalars and arrays
        return jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def read_json(path: str | os.PathLike) -> tuple[Any, str | None]:
    """``(value, None)`` for a readable JSON file, ``(None, "ErrorType: message")`` for a missing, unreadable or
    malformed one (callers that report problems instead of stopping)."""
    try:
        return json.loads(Path(path).read_text()), None
    except (OSError, json.JSONDecodeError) as err:
        return None, f"{type(err).__name__}: {err}"


def fingerprint(obj: Any) -> str:
    """A short stable hash (16 hex digits) of a JSON-serialisable object: cache keys and folder stamps."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def read_csv_table(path: str | os.PathLike, what: str, columns: tuple[str, ...], dtype: dict | None = None):
    """A dataset's CSV as a ``pandas.DataFrame`` holding at least ``columns``; ``what`` names it in errors
    (``"LUNA16 annotations"``). FileNotFoundError when missing, ValueError naming the file when it does not parse
    or lacks a column."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} CSV not found")
    try:
        table = pd.read_csv(path, dtype=dtype)
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError) as err:
        raise ValueError(f"{path}: cannot parse as CSV: {err}") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected {list(columns)}, found {list(table.columns)}")
    return table
