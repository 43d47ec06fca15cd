"""Prepared-data caches: a resumable parallel runner with a JSON manifest, and the Datasets that read caches.

Every preparation step of the data layer maps one input *item* (a CT scan, a segmentation case, a chunk of
2D images) to output files. :func:`run_cached` runs such a step over many items

- in parallel across items (``num_workers`` processes; 1 = in this process),
- with each output written atomically (:mod:`pcrl_lib.fileio`), so a killed run never leaves a half-written
  file under its final name,
- recording each finished item in ``manifest.json`` right after it finishes (also written atomically), with each
  input file's size and modification time, the parameters and the output files,

so that a second run with the same inputs and parameters reuses everything and an interrupted run continues with
the items it had not finished. Manifest layout::

    {"kind": "pretraining_cubes", "version": 1, "params": {...},
     "items": {name: {"inputs": [{"path", "size", "mtime_ns"}, ...], "key": "...", "outputs": ["name.npy"],
                      ...what the step records (boxes, labels, notes)...}},
     "failed": {name: "error message"}}

A change of parameters starts a fresh manifest (every item is recomputed); a changed input file (size or mtime)
or item key recomputes that item only. Two runs must not write the same folder at the same time.

The Datasets here read the caches: :class:`PairDataset` (PCRL crop pairs, ``(2, 1, X, Y, Z)``),
:class:`CandidateDataset` (LUNA16 candidate cubes), :class:`SegmentationCaseDataset` (normalised LiTS/BraTS
volumes) and :class:`ImageCacheDataset` (2D images, ``(1, S, S)``), the last written by :func:`prepare_image_cache`.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import warnings
import zlib
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ..fileio import atomic_path, atomic_write, atomic_write_text, fingerprint
from .images2d import RESIZE_MODES, load_image, resize_image

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1

# A step's work function: (payload, out_dir, name) -> manifest entry with at least "outputs" (file names
# relative to out_dir). It must be a module-level function so that worker processes can import it.
WorkFn = Callable[[Any, Path, str], dict]
# Called in the main process after each item: (name, entry, reused).
OnDone = Callable[[str, dict, bool], None]


# ----------------------------------------------------------------------------------------------- atomic writes
def atomic_save_npy(path: str | Path, array: np.ndarray) -> Path:
    """``np.save`` through :func:`pcrl_lib.fileio.atomic_write` (never a half-written file under ``path``)."""
    return atomic_write(path, lambda fh: np.save(fh, np.ascontiguousarray(array)))


def atomic_save_npz(path: str | Path, **arrays: np.ndarray) -> Path:
    """``np.savez`` (uncompressed, so loading is fast) through :func:`pcrl_lib.fileio.atomic_write`."""
    return atomic_write(path, lambda fh: np.savez(fh, **arrays))


# ------------------------------------------------------------------------------------------- input signatures
def _mhd_data_files(path: Path) -> list[Path]:
    """The ``ElementDataFile`` of a MetaImage header (the .raw beside it), so its changes are noticed too."""
    for line in path.read_text(errors="replace").splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "ElementDataFile":
            value = value.strip()
            # LOCAL = data inside the header; LIST / patterns name many files: the header alone then.
            if value and value != "LOCAL" and not value.startswith("LIST") and "%" not in value:
                return [path.parent / value]
    return []


def input_signature(path: str | Path) -> list[dict]:
    """``[{"path", "size", "mtime_ns"}]`` for a file (plus a MetaImage's data file); a folder (DICOM series)
    gives one record with its file count, total size and newest mtime. Raises ``FileNotFoundError``."""
    path = Path(path).resolve()
    if not path.exists():
        raise FileNotFoundError(f"{path}: input file not found")
    if path.is_dir():
        stats = [p.stat() for p in sorted(path.iterdir()) if p.is_file()]
        return [{"path": str(path), "files": len(stats), "size": sum(s.st_size for s in stats),
                 "mtime_ns": max((s.st_mtime_ns for s in stats), default=0)}]
    records = []
    for file in [path] + (_mhd_data_files(path) if path.suffix.lower() == ".mhd" else []):
        if not file.is_file():
            raise FileNotFoundError(f"{file}: data file named by {path} not found")
        st = file.stat()
        records.append({"path": str(file.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    return records


def scan_name(path: str | Path) -> str:
    """A scan's name from its path without the image suffix: ``subset0/1.3.6.mhd`` → ``1.3.6``,
    ``volume-3.nii.gz`` → ``volume-3``, a DICOM folder → the folder's name."""
    path = Path(path)
    name = path.name
    for suffix in (".nii.gz", ".nii", ".mhd", ".mha", ".nrrd", ".nhdr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def item_rng(seed: int, name: str) -> np.random.Generator:
    """The random generator of one item: depends only on ``seed`` and the item's name, so results do not
    change with the number of workers, the order of items, or which other items are in the run."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode())])


# ------------------------------------------------------------------------------------------------ the manifest
def _jsonable(obj: Any) -> Any:
    # Tuples become lists and numpy scalars plain numbers: compare parameters in their stored form.
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def read_manifest(out_dir: str | Path, kind: str | None = None) -> dict:
    """The manifest of a prepared folder. Raises ``FileNotFoundError`` (with the step to run) when absent and
    ``ValueError`` when it was written by another step than ``kind``."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        step = {"pretraining_cubes": "prepare_pretraining_cubes", "candidate_cubes": "prepare_candidate_cubes",
                "segmentation_cases": "prepare_segmentation_cases", "image_cache": "prepare_image_cache"}
        hint = f"; run pcrl_lib.data.preprocess.{step[kind]}(..., out_dir={str(out_dir)!r}) first" if kind in step else ""
        raise FileNotFoundError(f"{path}: no prepared-data manifest{hint}")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: corrupt manifest ({err}); delete the folder and prepare it again") from None
    if kind is not None and manifest.get("kind") != kind:
        raise ValueError(f"{path}: holds {manifest.get('kind')!r} data, expected {kind!r}")
    return manifest


def _load_matching(out_dir: Path, kind: str, params: dict) -> dict:
    """The existing manifest if it is for the same step and parameters, else a fresh one."""
    try:
        manifest = read_manifest(out_dir, kind)
    except (FileNotFoundError, ValueError):
        manifest = None
    if manifest and manifest.get("version") == MANIFEST_VERSION and manifest.get("params") == params:
        manifest.setdefault("failed", {})
        return manifest
    return {"kind": kind, "version": MANIFEST_VERSION, "params": params, "items": {}, "failed": {}}


def _save_manifest(out_dir: Path, manifest: dict) -> None:
    atomic_write_text(out_dir / MANIFEST, json.dumps(manifest, indent=1))


@dataclass(frozen=True)
class CacheItem:
    """One unit of work. ``inputs``: files whose size/mtime decide reuse; ``key``: a fingerprint of anything
    else the item depends on (e.g. its rows of a candidates table); ``payload``: what the work function gets
    (must be picklable)."""

    name: str
    inputs: tuple = ()
    key: str = ""
    payload: Any = None


def _limit_threads(threads: int) -> None:
    # Each worker gets its share of the cores: SimpleITK and torch would otherwise each start one thread per
    # core in every process and oversubscribe the machine.
    import SimpleITK as sitk

    torch.set_num_threads(threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


def _worker_context(work: WorkFn):
    """Worker start method. Plain fork is unsafe here (forking a process whose OpenMP/SimpleITK thread pools
    already run can deadlock). "forkserver" forks workers from a clean server process that imported the work
    function's module once (torch takes seconds to import); "spawn" where forkserver does not exist (Windows)."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([work.__module__])  # no effect once the server runs; it has them then
        return context
    return multiprocessing.get_context("spawn")


def run_cached(kind: str, items: Sequence[CacheItem], out_dir: str | Path, params: Mapping, work: WorkFn,
               num_workers: int = 1, progress: bool = True, on_error: str = "raise",
               on_done: OnDone | None = None, desc: str | None = None) -> dict:
    """Run ``work`` on every item not already in the manifest of ``out_dir``; return the manifest.

    ``num_workers``: processes (1 = in this process). ``on_error``: ``"raise"`` stops at the first failing item
    (finished items stay cached, so a rerun continues) or ``"skip"`` records the error under
    ``manifest["failed"]``, warns, and goes on. ``on_done(name, entry, reused)`` is called after each item.
    """
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    names = [item.name for item in items]
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"two inputs share the output name(s) {dupes[:5]}; give the scans distinct file names")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    params = _jsonable(dict(params))
    manifest = _load_matching(out_dir, kind, params)

    pending: list[tuple[CacheItem, list]] = []
    reused: list[str] = []
    for item in items:
        signature = [record for path in item.inputs for record in input_signature(path)]
        entry = manifest["items"].get(item.name)
        if (entry is not None and entry.get("inputs") == signature and entry.get("key") == item.key
                and all((out_dir / f).is_file() for f in entry.get("outputs", []))):
            reused.append(item.name)
        else:
            pending.append((item, signature))

    from tqdm.auto import tqdm

    # Pass ``disable`` only to switch the bar off, so that TQDM_DISABLE=1 (tests, headless runs) still applies.
    bar = tqdm(total=len(items), initial=len(reused), desc=desc or kind, unit="item",
               **({} if progress else {"disable": True}))
    try:
        for name in reused:
            if on_done is not None:
                on_done(name, manifest["items"][name], True)

        def finish(item: CacheItem, signature: list, future_or_entry) -> None:
            try:
                entry = future_or_entry.result() if isinstance(future_or_entry, Future) else future_or_entry()
            except Exception as err:  # noqa: BLE001 - every failure of one item is reported the same way
                if on_error == "raise":
                    raise
                manifest["failed"][item.name] = f"{type(err).__name__}: {err}"
                manifest["items"].pop(item.name, None)
                _save_manifest(out_dir, manifest)
                warnings.warn(f"{kind}: skipped {item.name}: {err}", stacklevel=3)
                bar.update(1)
                return
            entry = _jsonable({"inputs": signature, "key": item.key, **entry})
            manifest["items"][item.name] = entry
            manifest["failed"].pop(item.name, None)
            _save_manifest(out_dir, manifest)
            bar.update(1)
            if on_done is not None:
                on_done(item.name, entry, False)

        if num_workers == 1 or len(pending) <= 1:
            for item, signature in pending:
                finish(item, signature, lambda item=item: work(item.payload, out_dir, item.name))
        else:
            workers = min(num_workers, len(pending))
            threads = max(1, (os.cpu_count() or 1) // workers)
            with ProcessPoolExecutor(max_workers=workers, mp_context=_worker_context(work),
                                     initializer=_limit_threads, initargs=(threads,)) as pool:
                futures = {pool.submit(work, item.payload, out_dir, item.name): (item, sig) for item, sig in pending}
                try:
                    remaining = set(futures)
                    while remaining:
                        done, remaining = wait(remaining, return_when=FIRST_COMPLETED)
                        for future in done:
                            finish(*futures[future], future)
                finally:
                    # On an error (or Ctrl-C) drop the queued items; the running ones finish and are discarded.
                    pool.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()
        _save_manifest(out_dir, manifest)
    if manifest["failed"]:
        failed = ", ".join(sorted(manifest["failed"])[:5])
        warnings.warn(f"{kind}: {len(manifest['failed'])} item(s) failed (see manifest['failed']): {failed}",
                      stacklevel=2)
    return manifest


# ------------------------------------------------------------------------------------------------ 2D images
def _image_chunk_work(payload: dict, out_dir: Path, name: str) -> dict:
    images = np.load(out_dir / "images.npy", mmap_mode="r+")
    start, paths = payload["start"], payload["paths"]
    block = np.stack([resize_image(load_image(p), payload["size"], payload["mode"]) for p in paths])
    images[start:start + len(paths)] = np.rint(np.clip(block, 0.0, 1.0) * 255).astype(np.uint8)
    images.flush()
    return {"outputs": ["images.npy"], "rows": [start, start + len(paths)]}


def prepare_image_cache(paths: Sequence[str | Path], out_dir: str | Path, size: int = 224,
                        mode: str = "shorter_side", labels: np.ndarray | None = None,
                        label_names: Sequence[str] | None = None, num_workers: int = 1, chunk_size: int = 256,
                        progress: bool = True, on_done: OnDone | None = None) -> dict:
    """Read every image, make it ``size × size`` grey, store all in one uint8 ``images.npy`` ``(N, S, S)`` memmap
    with ``index.csv`` (row, path, labels). Returns the manifest.

    ``labels``: optional ``(N, L)`` array (NaN allowed for unknown labels) named by ``label_names``. Work goes
    in chunks of ``chunk_size`` images; each finished chunk is recorded, so an interrupted run continues and an
    unchanged rerun returns at once. Changing ``size``, ``mode`` or the list of images rebuilds the cache.
    """
    import pandas as pd

    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("paths is empty: nothing to cache")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if mode not in RESIZE_MODES:
        raise ValueError(f"mode must be one of {RESIZE_MODES}, got {mode!r}")
    if labels is not None:
        labels = np.asarray(labels, dtype=np.float32)
        labels = labels[:, None] if labels.ndim == 1 else labels
        if labels.ndim != 2 or len(labels) != len(paths):
            raise ValueError(f"labels must be (N, L) with N = {len(paths)} images, got shape {labels.shape}")
        label_names = list(label_names) if label_names is not None else [f"label{i}" for i in range(labels.shape[1])]
        if len(label_names) != labels.shape[1]:
            raise ValueError(f"label_names has {len(label_names)} names for {labels.shape[1]} label columns")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    signatures = [input_signature(p)[0] for p in paths]  # also raises on a missing image, naming it
    params = {"size": int(size), "mode": mode, "n": len(paths), "chunk_size": int(chunk_size),
              "paths": fingerprint([s["path"] for s in signatures])}
    store = out_dir / "images.npy"
    existing = _load_matching(out_dir, "image_cache", _jsonable(params))
    if not existing["items"] or not store.is_file():
        # New or changed cache: a fresh (sparse) memmap; its chunks are all recomputed.
        with atomic_path(store) as tmp:
            np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), size, size)).flush()
        if existing["items"]:
            existing["items"] = {}
            _save_manifest(out_dir, existing)
    index = pd.DataFrame({"row": np.arange(len(paths)), "path": [s["path"] for s in signatures]})
    if labels is not None:
        index = pd.concat([index, pd.DataFrame(labels, columns=label_names)], axis=1)
    atomic_write_text(out_dir / "index.csv", index.to_csv(index=False))
    items = [CacheItem(name=f"chunk{start // chunk_size:06d}", key=fingerprint(signatures[start:start + chunk_size]),
                       payload={"start": start, "paths": [str(p) for p in paths[start:start + chunk_size]],
                                "size": int(size), "mode": mode})
             for start in range(0, len(paths), chunk_size)]
    return run_cached("image_cache", items, out_dir, params, _image_chunk_work, num_workers=num_workers,
                      progress=progress, on_done=on_done, desc="image cache")


# ------------------------------------------------------------------------------------------------- datasets
class _CachedArrays:
    """Lazily memory-maps the cache's .npy files in each process (a memmap must not travel to DataLoader
    workers by pickling: that would copy the data)."""

    def __init__(self, root: Path):
        self.root = root
        self._open: dict[str, np.ndarray] = {}

    def __call__(self, file: str) -> np.ndarray:
        if file not in self._open:
            self._open[file] = np.load(self.root / file, mmap_mode="r")
        return self._open[file]

    def __getstate__(self):
        return {"root": self.root, "_open": {}}


def _select(manifest: dict, names: Sequence[str] | None, out_dir: Path) -> list[str]:
    items = manifest["items"]
    if names is None:
        return sorted(items)
    missing = [n for n in names if n not in items]
    if missing:
        raise KeyError(f"{out_dir}: not prepared: {missing[:5]} ({len(missing)} missing); prepared: {len(items)} items")
    return list(names)


class PairDataset(torch.utils.data.Dataset):
    """PCRL crop pairs prepared by ``prepare_pretraining_cubes``: item = float32 tensor ``(2, 1, X, Y, Z)`` in
    [0, 1] (the two overlapping crops of one scan, each resized to the cube). ``scans`` restricts to some scans
    (e.g. a patient-level split); default all prepared scans."""

    def __init__(self, out_dir: str | Path, scans: Sequence[str] | None = None):
        self.root = Path(out_dir)
        manifest = read_manifest(self.root, "pretraining_cubes")
        self.scans = _select(manifest, scans, self.root)
        counts = np.array([manifest["items"][s]["n_pairs"] for s in self.scans], dtype=np.int64)
        self._files = [manifest["items"][s]["outputs"][0] for s in self.scans]
        self._scan = np.repeat(np.arange(len(self.scans)), counts)
        self._pair = np.concatenate([np.arange(c) for c in counts]) if len(counts) else np.zeros(0, np.int64)
        self.cube = tuple(manifest["params"]["cube"])
        self._arrays = _CachedArrays(self.root)

    def __len__(self) -> int:
        return len(self._scan)

    def __getitem__(self, index: int) -> torch.Tensor:
        pairs = self._arrays(self._files[self._scan[index]])        # (P, 2, X, Y, Z)
        return torch.from_numpy(np.array(pairs[self._pair[index]])).unsqueeze(1)  # (2, 1, X, Y, Z)


class CandidateDataset(torch.utils.data.Dataset):
    """LUNA16 candidate cubes prepared by ``prepare_candidate_cubes``: item = ``(cube, label)`` with cube a
    float32 tensor ``(1, X, Y, Z)`` in [0, 1] and label a float32 scalar tensor (1 = nodule).

    ``out_size``: resize every cube (trilinear) to this model input, e.g. (64, 64, 32); default as stored."""

    def __init__(self, out_dir: str | Path, scans: Sequence[str] | None = None, out_size: Sequence[int] | None = None):
        self.root = Path(out_dir)
        manifest = read_manifest(self.root, "candidate_cubes")
        self.scans = _select(manifest, scans, self.root)
        entries = [manifest["items"][s] for s in self.scans]
        self._files = [e["outputs"][0] for e in entries]
        counts = np.array([len(e["labels"]) for e in entries], dtype=np.int64)
        self._scan = np.repeat(np.arange(len(self.scans)), counts)
        self._row = np.concatenate([np.arange(c) for c in counts]) if len(counts) else np.zeros(0, np.int64)
        self.labels = np.concatenate([np.asarray(e["labels"], np.float32) for e in entries]) if entries else np.zeros(0, np.float32)
        if out_size is not None and (len(out_size) != 3 or min(out_size) < 1):
            raise ValueError(f"out_size must be 3 positive ints (X, Y, Z), got {out_size!r}")
        self.out_size = tuple(int(s) for s in out_size) if out_size is not None else None
        self._arrays = _CachedArrays(self.root)

    def __len__(self) -> int:
        return len(self._scan)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        cubes = self._arrays(self._files[self._scan[index]])         # (N, X, Y, Z)
        cube = torch.from_numpy(np.array(cubes[self._row[index]]))[None]  # (1, X, Y, Z)
        if self.out_size is not None and tuple(cube.shape[1:]) != self.out_size:
            cube = torch.nn.functional.interpolate(cube[None], size=self.out_size, mode="trilinear",
                                                   align_corners=False)[0]
        return cube, torch.tensor(self.labels[index])


class SegmentationCaseDataset(torch.utils.data.Dataset):
    """Whole normalised cases prepared by ``prepare_segmentation_cases`` (for patch sampling and sliding-window
    evaluation): item = dict ``image`` float32 ``(C, X, Y, Z)``, ``mask`` int64 ``(X, Y, Z)`` (all zeros with
    ``has_mask`` False when the case had none), ``name``, ``spacing`` (3,), ``direction`` float64 (3, 3) (the
    voxel axes' LPS directions, for displaying the case in the radiological convention)."""

    def __init__(self, out_dir: str | Path, cases: Sequence[str] | None = None):
        self.root = Path(out_dir)
        self.manifest = read_manifest(self.root, "segmentation_cases")
        self.cases = _select(self.manifest, cases, self.root)

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index: int) -> dict:
        name = self.cases[index]
        with np.load(self.root / self.manifest["items"][name]["outputs"][0]) as data:
            image = torch.from_numpy(data["image"])
            has_mask = "mask" in data.files
            mask = torch.from_numpy(data["mask"].astype(np.int64)) if has_mask else torch.zeros(image.shape[1:], dtype=torch.int64)
            spacing = torch.from_numpy(data["spacing"])
            direction = torch.from_numpy(data["direction"].reshape(3, 3))
        return {"image": image, "mask": mask, "has_mask": has_mask, "name": name, "spacing": spacing,
                "direction": direction}


class ImageCacheDataset(torch.utils.data.Dataset):
    """2D images cached by :func:`prepare_image_cache`: item = float32 tensor ``(1, S, S)`` in [0, 1], or
    ``(image, labels)`` with labels float32 ``(L,)`` when the cache has labels. ``rows`` picks a subset (e.g. a
    split) by row number; ``transform`` is applied to the image tensor."""

    def __init__(self, out_dir: str | Path, rows: Sequence[int] | None = None,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None):
        import pandas as pd

        self.root = Path(out_dir)
        manifest = read_manifest(self.root, "image_cache")
        params = manifest["params"]
        n_chunks = -(-params["n"] // params["chunk_size"])
        if len(manifest["items"]) < n_chunks:
            raise ValueError(f"{self.root}: image cache incomplete ({len(manifest['items'])}/{n_chunks} chunks); "
                             "run prepare_image_cache again with the same arguments to finish it")
        index = pd.read_csv(self.root / "index.csv")
        self.paths = index["path"].tolist()
        self.label_names = [c for c in index.columns if c not in ("row", "path")]
        self.labels = index[self.label_names].to_numpy(np.float32) if self.label_names else None
        self.rows = np.arange(params["n"]) if rows is None else np.asarray(rows, dtype=np.int64)
        if self.rows.size and (self.rows.min() < 0 or self.rows.max() >= params["n"]):
            raise IndexError(f"rows must lie in [0, {params['n']}), got {self.rows.min()}..{self.rows.max()}")
        self.transform = transform
        self._arrays = _CachedArrays(self.root)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int):
        row = self.rows[index]
        image = torch.from_numpy(self._arrays("images.npy")[row].astype(np.float32) / 255.0)[None]  # (1, S, S)
        if self.transform is not None:
            image = self.transform(image)
        if self.labels is None:
            return image
        return image, torch.tensor(self.labels[row])          # a copy: the table may be a read-only view
