"""Fetch the real demo data: ``pip download`` the pinned distributions, verify, extract, record provenance.

Cache layout (``<cache>`` defaults to ``pcrl_lib.paths.cache_dir() / "demo"``, git-ignored)::

    <cache>/manifest.json            written last, only when every distribution is in place
    <cache>/<folder>/...             one folder per distribution (see sources.SOURCES)
    <cache>/<folder>/provenance.json written inside the folder before it is renamed into place

Atomicity: each distribution is extracted into a hidden ``.extract-*`` folder beside its final place and
renamed only when every member is copied and hashed, so a folder that exists is complete; the manifest
appears only after all folders exist. An interrupted fetch leaves at most hidden temporary folders
(removed by the next run) and never a manifest. A rerun reuses the folders that are already complete.

Damage: a cached file that no longer matches its recorded sha256 is repaired by refetching its distribution.
The manifest of the same pins is kept meanwhile (the other folders stay usable), and when the distribution
cannot be obtained (offline) the error names the damaged file first (:class:`DamagedCacheError`).

Offline use: ``fetch(wheel_dir=...)`` or the ``PCRL_DEMO_WHEELS`` environment variable names a folder
holding the pinned files (same names, same hashes) and pip is not called.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

from ...fileio import atomic_write_text, folder_problem
from ...paths import cache_dir as _kit_cache_dir
from .sources import SOURCES, Source

MANIFEST = "manifest.json"
PROVENANCE = "provenance.json"
WHEELS_ENV = "PCRL_DEMO_WHEELS"
_CHUNK = 1 << 20
_FETCH_HINT = "python -m pcrl_lib.data.demo fetch"


class DemoFetchError(RuntimeError):
    """The demo data could not be fetched; the message says which distribution and how to retry."""


class HashMismatchError(DemoFetchError):
    """A downloaded or local distribution file is not the pinned one."""


class RegistryError(DemoFetchError):
    """pip could not obtain the distribution (registry unreachable, timeout, build step failed)."""


class DamagedCacheError(DemoFetchError):
    """A cached file no longer matches its recorded sha256, and its distribution could not be fetched again."""


@dataclass(frozen=True)
class ManifestEntry:
    """Provenance of one extracted file; ``local_path`` is relative to the cache root (its manifest key)."""

    local_path: str
    package: str
    version: str
    distribution: str          # file name of the downloaded wheel/sdist
    distribution_sha256: str
    member: str                # path of the file inside that archive
    sha256: str                # of the extracted file
    size: int                  # bytes
    licence: str
    attribution: str
    note: str = ""             # e.g. "pseudo-labels from a model"


@dataclass(frozen=True)
class Manifest:
    """All extracted demo files with their provenance; ``root`` is the cache folder holding them."""

    root: Path
    entries: tuple[ManifestEntry, ...]

    def path(self, key: str) -> Path:
        """Absolute path of the file recorded under ``key`` (e.g. ``"pyradiomics/lung1_image.nrrd"``); a missing
        file or one of another size (cut short, overwritten) is a ``FileNotFoundError`` naming it."""
        for entry in self.entries:
            if entry.local_path == key:
                path = self.root / key
                size = path.stat().st_size if path.is_file() else None
                if size != entry.size:
                    state = "is missing" if size is None else f"holds {size} bytes instead of {entry.size}"
                    raise FileNotFoundError(f"demo file {path} {state} (damaged after the fetch); rerun "
                                            f"`{_FETCH_HINT}` with the package registry reachable to repair it")
                return path
        raise KeyError(f"{key!r} is not in the demo manifest at {self.root / MANIFEST}; the demo sources may "
                       f"have changed: rerun `{_FETCH_HINT}`")

    def keys(self, prefix: str = "") -> list[str]:
        return sorted(e.local_path for e in self.entries if e.local_path.startswith(prefix))

    @property
    def size_bytes(self) -> int:
        return sum(e.size for e in self.entries)

    def to_json(self) -> dict:
        return {"format": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "files": [asdict(e) for e in self.entries]}


def default_cache() -> Path:
    """``pcrl_lib.paths.cache_dir() / "demo"`` (honours ``PCRL_CACHE``)."""
    return _kit_cache_dir() / "demo"


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, flush=True)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _folder(source: Source) -> str:
    """The single top-level cache folder a source writes into (its unit of atomic replacement)."""
    return source.members[0].dest.split("/", 1)[0]


def _check_sources(sources: Sequence[Source]) -> None:
    seen: dict[str, str] = {}
    for source in sources:
        flat = [m.dest for m in source.members if "/" not in m.dest]
        if flat:
            raise ValueError(f"source {source.requirement}: member dest {flat[0]!r} must be '<folder>/<path>'")
        folders = {m.dest.split("/", 1)[0] for m in source.members}
        if len(folders) != 1 or not source.members:
            raise ValueError(f"source {source.requirement}: all members must go under one top-level folder, "
                             f"got {sorted(folders)}")
        folder = folders.pop()
        if folder in seen:
            raise ValueError(f"sources {seen[folder]} and {source.requirement} both write to {folder!r}")
        seen[folder] = source.requirement


def _entry_ok(root: Path, entry: ManifestEntry) -> bool:
    path = root / entry.local_path
    return path.is_file() and path.stat().st_size == entry.size and sha256_of(path) == entry.sha256


def _read_entries(file: Path) -> list[ManifestEntry] | None:
    try:
        return [ManifestEntry(**f) for f in json.loads(file.read_text())["files"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable or from another format: treat as absent and refetch


def _valid_package(root: Path, source: Source) -> list[ManifestEntry] | None:
    """The entries of a complete, unmodified folder extracted from exactly this pin, else None."""
    entries = _read_entries(root / _folder(source) / PROVENANCE)
    if not entries or any(e.distribution_sha256 != source.sha256 or e.package != source.package
                          or e.version != source.version for e in entries):
        return None
    if len(entries) != sum(m.expect for m in source.members):
        return None
    return entries if all(_entry_ok(root, e) for e in entries) else None


def _damaged(root: Path, source: Source) -> list[str]:
    """Keys of the files in this pin's extracted folder that no longer match their recorded size and sha256
    (empty when the folder is absent, incomplete or from another pin: that is a plain refetch, not damage)."""
    entries = _read_entries(root / _folder(source) / PROVENANCE)
    if not entries or any(e.distribution_sha256 != source.sha256 for e in entries):
        return []
    return [e.local_path for e in entries if (root / e.local_path).is_file() and not _entry_ok(root, e)]


def _pins(entries: Sequence[ManifestEntry]) -> set[tuple[str, str, str]]:
    return {(e.package, e.version, e.distribution_sha256) for e in entries}


def _complete_manifest(root: Path, sources: Sequence[Source]) -> Manifest | None:
    entries = _read_entries(root / MANIFEST)
    if entries is None:
        return None
    pinned = {(s.package, s.version, s.sha256) for s in sources}
    if _pins(entries) != pinned or len(entries) != sum(m.expect for s in sources for m in s.members):
        return None
    return Manifest(root, tuple(entries)) if all(_entry_ok(root, e) for e in entries) else None


def load_manifest(cache_dir: str | os.PathLike | None = None) -> Manifest:
    """The manifest of a completed fetch, without re-hashing (loaders call this; :func:`fetch` verifies)."""
    root = Path(cache_dir) if cache_dir is not None else default_cache()
    file = root / MANIFEST
    entries = _read_entries(file) if file.is_file() else None
    if entries is None:
        raise FileNotFoundError(f"no demo data at {root} (missing or unreadable {MANIFEST}): run `{_FETCH_HINT}` "
                                "or pcrl_lib.data.demo.fetch() first (needs the package registry once)")
    missing = [e.local_path for e in entries if not (root / e.local_path).is_file()]
    if missing:
        raise FileNotFoundError(f"demo cache {root} lacks {len(missing)} file(s) listed in its manifest (e.g. "
                                f"{missing[0]}): rerun `{_FETCH_HINT}` to repair it")
    return Manifest(root, tuple(entries))


def _verify_distribution(source: Source, path: Path, origin: str) -> None:
    got = sha256_of(path)
    if got != source.sha256:
        raise HashMismatchError(
            f"{source.requirement}: the file {path.name} from {origin} is not the pinned distribution: "
            f"expected sha256 {source.sha256}, got {got}. Nothing was extracted and no manifest was written. "
            f"If the file was cut short, retry `{_FETCH_HINT}`; if you supply files yourself "
            f"(wheel_dir= or {WHEELS_ENV}), download the exact file with `pip download --no-deps "
            f"{source.requirement}` and check it with `sha256sum`.")


def _pip_download(source: Source, dest: Path, timeout: float) -> Path:
    """``pip download`` one pinned file into ``dest`` with pip's own hash check (so an sdist whose hash is
    wrong is never built) and return its path. Never installs anything."""
    requirements = dest / "requirements.txt"
    requirements.write_text(f"{source.requirement} --hash=sha256:{source.sha256}\n")
    out = dest / "dist"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--progress-bar", "off", "--retries", "2", *source.pip_args, "-d", str(out), "-r", str(requirements)]
    retry = (f"Check the connection to the package index (pip's index-url / proxy settings), then rerun "
             f"`{_FETCH_HINT}`; offline, put {source.filename} into a folder and pass wheel_dir= (CLI: "
             f"--wheel-dir, or set {WHEELS_ENV}).")
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RegistryError(f"{source.requirement}: `pip download` did not finish within {timeout:.0f} s. "
                            + retry) from None
    log = result.stdout + result.stderr
    if result.returncode != 0:
        mismatch = re.search(r"Got\s+([0-9a-f]{64})", log)
        if "DO NOT MATCH THE HASHES" in log and mismatch:
            raise HashMismatchError(
                f"{source.requirement}: the registry served a file that is not the pinned distribution "
                f"{source.filename}: expected sha256 {source.sha256}, got {mismatch.group(1)}. pip discarded it; "
                f"nothing was extracted. A mirror may serve a rebuilt file: download {source.filename} from "
                f"pypi.org, check it with `sha256sum` and pass its folder as wheel_dir= ({WHEELS_ENV}).")
        lines = [line.strip() for line in log.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("ERROR")]
        detail = " | ".join(errors[-3:]) or " | ".join(lines[-3:])
        # pip reports an unreachable index only as retry warnings, then "no matching distribution"
        offline = next((line for line in lines if re.search(
            r"NewConnectionError|Connection refused|Failed to establish|Name or service not known|"
            r"Temporary failure in name resolution|timed out|ProxyError|SSLError", line)), None)
        cause = f"the package index is unreachable ({offline[:200]}); " if offline else ""
        needs = f" This distribution needs {source.needs}." if source.needs and not offline else ""
        raise RegistryError(f"{source.requirement}: `pip download` failed (exit {result.returncode}): {cause}"
                            f"{detail}.{needs} {retry}")
    files = list(out.iterdir()) if out.is_dir() else []
    if [f.name for f in files] != [source.filename]:
        raise RegistryError(f"{source.requirement}: pip saved {[f.name for f in files]} instead of "
                            f"{source.filename}; check the pip_args of this source")
    return files[0]


def _obtain(source: Source, wheel_dir: Path | None, scratch: Path, timeout: float) -> Path:
    if wheel_dir is not None:
        path = wheel_dir / source.filename
        if not path.is_file():
            raise DemoFetchError(f"{source.requirement}: {path} does not exist. The local wheel folder "
                                 f"({WHEELS_ENV} / wheel_dir=) must hold the pinned file {source.filename} "
                                 f"(sha256 {source.sha256}); get it with `pip download --no-deps "
                                 f"{source.requirement}` or unset {WHEELS_ENV} to use the registry.")
        _verify_distribution(source, path, f"the local folder {wheel_dir}")
        return path
    path = _pip_download(source, scratch, timeout)
    _verify_distribution(source, path, "the package registry")
    return path


def _archive_members(archive: Path) -> Iterator[tuple[str, object]]:
    """(member name, readable binary stream) for every regular file, in archive order (one pass over a
    tar.gz, which cannot seek backwards cheaply)."""
    if archive.name.endswith(".whl") or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    with zf.open(info) as stream:
                        yield info.filename, stream
    elif archive.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(archive, "r:gz") as tf:
            for info in tf:
                if info.isfile():
                    yield info.name, tf.extractfile(info)
    else:
        raise DemoFetchError(f"{archive.name}: unknown archive type (expected .whl, .zip or .tar.gz)")


def _local_key(member_name: str, dest: str) -> str:
    return dest + member_name.rsplit("/", 1)[-1] if dest.endswith("/") else dest


def _copy_hashed(stream, target: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as out:
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _replace_dir(staging: Path, final: Path) -> None:
    """Move a finished staging folder into place, displacing an older (invalid) folder if present."""
    if final.exists():
        trash = final.with_name(f".trash-{final.name}-{os.getpid()}-{time.monotonic_ns()}")
        final.rename(trash)
        staging.rename(final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        staging.rename(final)


def _extract(source: Source, archive: Path, root: Path) -> list[ManifestEntry]:
    folder = _folder(source)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".extract-{folder}-"))
    staging.chmod(0o755)  # mkdtemp makes it private; the finished folder is an ordinary shared cache
    try:
        found: dict[int, int] = {i: 0 for i in range(len(source.members))}
        entries = []
        for name, stream in _archive_members(archive):
            index = next((i for i, m in enumerate(source.members) if fnmatch.fnmatchcase(name, m.pattern)), None)
            if index is None:
                continue
            member = source.members[index]
            key = _local_key(name, member.dest)
            if any(e.local_path == key for e in entries):
                raise DemoFetchError(f"{source.requirement}: two members of {archive.name} map to {key}")
            digest, size = _copy_hashed(stream, staging / key.split("/", 1)[1])
            found[index] += 1
            entries.append(ManifestEntry(local_path=key, package=source.package, version=source.version,
                                         distribution=source.filename, distribution_sha256=source.sha256,
                                         member=name, sha256=digest, size=size, licence=source.licence,
                                         attribution=source.attribution, note=member.note))
        wrong = [(m.pattern, m.expect, found[i]) for i, m in enumerate(source.members) if found[i] != m.expect]
        if wrong:
            detail = "; ".join(f"{p!r}: expected {e} file(s), found {f}" for p, e, f in wrong)
            raise DemoFetchError(f"{source.requirement}: {archive.name} does not hold the expected members ({detail})")
        (staging / PROVENANCE).write_text(json.dumps({"files": [asdict(e) for e in entries]}, indent=1))
        _replace_dir(staging, root / folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return entries


def _examples(keys: Sequence[str], shown: int = 3) -> str:
    more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
    return ", ".join(keys[:shown]) + more


def _remove_leftovers(root: Path, older_than_s: float = 3600.0) -> None:
    """Hidden staging/download folders of an interrupted earlier run (never the finished folders).

    Only old ones: a fetch running at the same time in another process owns the recent ones.
    """
    now = time.time()
    for leftover in root.iterdir():
        if (leftover.is_dir() and leftover.name.startswith((".extract-", ".download-", ".trash-"))
                and now - leftover.stat().st_mtime > older_than_s):
            shutil.rmtree(leftover, ignore_errors=True)


def fetch(cache_dir: str | os.PathLike | None = None, progress: bool = True,
          wheel_dir: str | os.PathLike | None = None, sources: Sequence[Source] = SOURCES,
          timeout: float = 600.0) -> Manifest:
    """Download (or take from ``wheel_dir``), verify and extract the demo data; return its :class:`Manifest`.

    Args:
        cache_dir: where to put it; default ``pcrl_lib.paths.cache_dir() / "demo"``.
        progress: print one line per step.
        wheel_dir: a folder holding the pinned distribution files, used instead of the registry
            (default: the ``PCRL_DEMO_WHEELS`` environment variable, if set).
        sources: the distributions to fetch (default: the kit's pinned :data:`SOURCES`).
        timeout: seconds allowed for each ``pip download``.

    Idempotent: when the manifest is complete and every file's sha256 matches, nothing is done.
    Raises :class:`HashMismatchError` / :class:`RegistryError` (both :class:`DemoFetchError`) with a
    message naming the distribution, the hashes and how to retry.
    """
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache()
    if root.exists() and not root.is_dir():
        raise ValueError(f"cache folder {root} is a file; pass a folder (--cache-dir / cache_dir=), created if "
                         "missing")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout) \
            or timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds per pip download, got {timeout}")
    if wheel_dir is None and os.environ.get(WHEELS_ENV):
        wheel_dir = os.environ[WHEELS_ENV]
    wheel_dir = Path(wheel_dir).expanduser() if wheel_dir is not None else None
    if wheel_dir is not None and not wheel_dir.is_dir():
        raise FileNotFoundError(f"wheel_dir / {WHEELS_ENV}: {wheel_dir} is not a folder")
    _check_sources(sources)

    manifest = _complete_manifest(root, sources) if root.is_dir() else None
    if manifest is not None:
        _say(progress, f"demo data cached at {root} ({len(manifest.entries)} files, "
                       f"{manifest.size_bytes / 2**20:.1f} MiB)")
        return manifest

    start = time.perf_counter()
    problem = folder_problem(root)
    if problem:
        raise ValueError(f"cache folder {root} {problem}; pass another --cache-dir / cache_dir= or fix its "
                         "permissions")
    recorded = _read_entries(root / MANIFEST) if (root / MANIFEST).is_file() else None
    if recorded is not None and _pins(recorded) != {(s.package, s.version, s.sha256) for s in sources}:
        # another pin set's manifest must not vouch for a cache being rebuilt; the same pins' manifest stays, so
        # that a damaged file (repaired below) does not make the intact folders unusable meanwhile
        (root / MANIFEST).unlink()
    _remove_leftovers(root)
    entries: list[ManifestEntry] = []
    unrepaired: list[tuple[Source, list[str], DemoFetchError]] = []
    for number, source in enumerate(sources, 1):
        step = f"[{number}/{len(sources)}] {source.requirement}"
        reused = _valid_package(root, source)
        if reused is not None:
            _say(progress, f"{step}: already extracted in {root / _folder(source)}")
            entries.extend(reused)
            continue
        damaged = _damaged(root, source)
        if damaged:
            _say(progress, f"{step}: {_examples(damaged)} in {root} changed after the fetch (sha256 mismatch); "
                           "fetching the distribution again to repair it")
        _say(progress, f"{step}: {'copying from ' + str(wheel_dir) if wheel_dir else 'pip download'} "
                       f"({source.kind}) ...")
        try:
            with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as scratch:
                archive = _obtain(source, wheel_dir, Path(scratch), timeout)
                extracted = _extract(source, archive, root)
        except DemoFetchError as err:
            if not damaged:
                raise
            unrepaired.append((source, damaged, err))  # go on: the other distributions may be repairable
            continue
        entries.extend(extracted)
        _say(progress, f"{step}: sha256 ok, extracted {len(extracted)} file(s) "
                       f"({sum(e.size for e in extracted) / 2**20:.1f} MiB) into {root / _folder(source)}")
    if unrepaired:
        keys = [key for _, damaged, _ in unrepaired for key in damaged]
        needed = ", ".join(source.filename for source, _, _ in unrepaired)
        raise DamagedCacheError(
            f"demo cache {root}: {_examples(keys)} no longer match(es) the sha256 recorded at fetch time (changed "
            f"or corrupted on disk); the manifest and the other demo files are intact and still usable. To repair, "
            f"rerun `{_FETCH_HINT}` where {needed} can be obtained (package registry reachable, or --wheel-dir / "
            f"{WHEELS_ENV} holding it); this time it could not: {unrepaired[0][2]}")
    manifest = Manifest(root, tuple(entries))
    atomic_write_text(root / MANIFEST, json.dumps(manifest.to_json(), indent=1))
    _say(progress, f"demo data ready at {root}: {len(entries)} files, {manifest.size_bytes / 2**20:.1f} MiB "
                   f"in {time.perf_counter() - start:.1f} s")
    return manifest
