"""Which data a profile uses, and the prepared caches built from it — the one place that decides.

Notebooks and trainers never list files themselves: they ask this module. ``data_root`` (the notebooks'
``DATA_ROOT``) switches every accessor to the real datasets laid out as in ``data/README.md``
(``DATA_ROOT/nih``, ``DATA_ROOT/luna16``, ...); without it the course runs on the real demo data fetched from the
package registry plus the profile's synthetic look-alikes. The ``paper`` profile requires ``data_root``.

- :func:`pretraining_images_2d` — real: NIH ChestX-ray14's ``train_val_list.txt`` minus a patient-level
  validation part (:data:`~.splits.NIH_VAL_FRACTION` of its patients). Demo + synthetic: the 16 demo paediatric X-rays
  (JPEG), the demo DICOM radiograph (converted once to PNG, :func:`demo_radiograph_png`) and the synthetic NIH
  look-alike's training split.
- :func:`pretraining_scans_3d` — real: LUNA16 subsets 0–6 (the paper's 623 scans). Demo + synthetic: the demo
  chest CTs (lung1, lung2, the CT angiography) and the synthetic LUNA16 look-alike's subsets 0–6.
- :func:`pretraining_set_2d` — an :class:`ImageCacheDataset` (items ``(1, S, S)``) over the 2D list.
- :func:`pretraining_set_3d` — a :class:`PairDataset` (items ``(2, 1, X, Y, Z)``, PCRL crop pairs) over the 3D list.

Downstream tasks get their accessors here too, built the same way (a ``_groups`` function choosing real or
demo + synthetic inputs, a ``..._set`` function preparing the cache under :func:`prepared_root`).

The synthetic look-alikes go through the same functions as the real data (:func:`.splits.nih_splits`, LUNA16 subsets
0–6), so their held-out parts stay unseen exactly as the real ones do. The 16 demo X-rays are all used: they are
too few to hold any out, and self-supervised pretraining never reads their NORMAL/PNEUMONIA labels (the
fine-tuning demo that does is a demonstration of the pipeline, not a measurement).

Prepared caches live under ``pcrl_lib.paths.cache_dir() / "prepared" / <key> / <step>``, ``<key>`` being the
profile's name for demo + synthetic data (the look-alikes' sizes depend on the profile) or ``data-<fingerprint
of DATA_ROOT>`` for real data; ``<step>`` names the sizes (e.g. ``pretrain_2d_64px``,
``pretrain_3d_16x16x8_p4_s0``). Each cache has a manifest (:mod:`.cache`): a second call reuses it at once,
an interrupted one continues, changed inputs or sizes are recomputed.

Demo data must have been fetched (``python -m pcrl_lib.data.demo fetch``, run by the course command); missing
synthetic look-alikes are written on first use (seconds; :func:`pcrl_lib.data.embedded.ensure_synthetic`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..config import get_profile
from ..paths import cache_dir
from . import luna16
from ..fileio import atomic_path, atomic_write_text, fingerprint
from .cache import ImageCacheDataset, PairDataset, input_signature, prepare_image_cache
from .demo import load_manifest, xray_images
from .dicom import read_dicom_image
from .embedded import ensure_synthetic
from .preprocess import prepare_pretraining_cubes
from .splits import SPLIT_SEED, nih_splits

__all__ = [
    "LUNA_PRETRAINING_SUBSETS", "DEMO_CHEST_CTS", "DEMO_DICOM_RADIOGRAPH",
    "uses_real_data", "dataset_root", "prepared_root", "folder_size", "demo_radiograph_png",
    "pretraining_images_2d", "pretraining_scans_3d", "pretraining_inventory", "pretraining_set_2d",
    "pretraining_set_3d",
]

LUNA_PRETRAINING_SUBSETS = tuple(range(7))  # the paper pretrains on LUNA16 subsets 0–6
# Keys in the demo manifest (pcrl_lib.data.demo): the chest CTs in HU and the MONOCHROME1 radiograph.
DEMO_CHEST_CTS = ("pyradiomics/lung1_image.nrrd", "pyradiomics/lung2_image.nrrd",
                  "totalsegmentator/chest_cta_ct.nii.gz")
DEMO_DICOM_RADIOGRAPH = "dicom_radiograph/RG1_UNCI.dcm"
_PNG_FORMAT = 1                   # version of the DICOM → PNG conversion recorded next to the PNG

_FORMATS = {".png": "PNG", ".jpeg": "JPEG", ".jpg": "JPEG", ".dcm": "DICOM", ".nrrd": "NRRD",
            ".nii": "NIfTI", ".nii.gz": "NIfTI (gzip)", ".mhd": "MetaImage (.mhd header + .raw voxels)"}


# ------------------------------------------------------------------------------------- which data, where
def uses_real_data(profile: str, data_root: str | os.PathLike | None) -> bool:
    """True when the real datasets under ``data_root`` are used; validates the pair.

    Raises ``ValueError`` for an unknown profile and for ``paper`` without ``data_root`` (the paper's numbers
    need the real datasets; demo + synthetic data are for ``quick`` and ``smoke``)."""
    get_profile(profile)
    if data_root is None and profile == "paper":
        raise ValueError("profile 'paper' runs on the real datasets: pass data_root= (DATA_ROOT, --data-root) "
                         "holding nih/, luna16/, ... as laid out in data/README.md; use profile 'quick' or "
                         "'smoke' for demo + synthetic data")
    return data_root is not None


def dataset_root(data_root: str | os.PathLike, dataset: str) -> Path:
    """``DATA_ROOT/<dataset>`` (e.g. ``nih``, ``luna16``), resolved; ``FileNotFoundError`` saying what is
    missing and what the layout should be when either folder does not exist."""
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"DATA_ROOT {root}: folder not found; pass the folder that holds one sub-folder "
                                "per dataset (nih/, chexpert/, luna16/, lits/, brats/; see data/README.md)")
    folder = root / dataset
    if not folder.is_dir():
        present = sorted(p.name for p in root.iterdir() if p.is_dir())[:8]
        raise FileNotFoundError(f"DATA_ROOT {root}: no '{dataset}' folder (expected {folder}, laid out as in "
                                f"data/README.md); sub-folders found: {present or 'none'}")
    return folder.resolve()


def prepared_root(profile: str, data_root: str | os.PathLike | None = None) -> Path:
    """Folder of the prepared caches for this choice of data (nothing is created):
    ``<cache>/prepared/<profile>`` for demo + synthetic data, ``<cache>/prepared/data-<hash>`` for real data."""
    if uses_real_data(profile, data_root):
        return cache_dir() / "prepared" / f"data-{fingerprint(str(Path(data_root).expanduser().resolve()))}"
    return cache_dir() / "prepared" / profile


def folder_size(path: str | os.PathLike) -> int:
    """Bytes of all files under ``path`` (a prepared cache's footprint on disk)."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def _discard_if(force: bool, out_dir: Path) -> None:
    """``force``: delete a prepared cache so that it is rebuilt from its inputs (a manifest only notices
    changed inputs and parameters, not, say, a changed library version)."""
    if force and out_dir.exists():
        shutil.rmtree(out_dir)


def _quiet(message: str) -> None:
    """Log sink for :func:`ensure_synthetic`: the course runner already announces what it writes."""


def _existing(paths: Sequence[Path], where: Path, what: str) -> list[Path]:
    """``paths`` after checking that every file exists (one directory listing, not one stat per file)."""
    present = pd.Index([p.name for p in where.iterdir()]) if where.is_dir() else pd.Index([])
    missing = ~pd.Index([p.name for p in paths]).isin(present)
    if missing.any():
        examples = [paths[i].name for i in np.flatnonzero(missing)[:3]]
        raise FileNotFoundError(f"{where}: {int(missing.sum())} image(s) of {what} not found, e.g. {examples}; "
                                "unpack every image archive into this folder (see data/README.md)")
    return list(paths)


# --------------------------------------------------------------------------------------- NIH ChestX-ray14
def _nih_training_images(nih_root: Path) -> list[Path]:
    images = nih_root / "images"
    train = nih_splits(nih_root)["train"]
    return _existing([images / name for name in train["image"]], images, "the NIH training split")


# --------------------------------------------------------------------------------------------- demo data
def _demo_path(key: str) -> Path:
    return load_manifest().path(key)


def demo_radiograph_png() -> Path:
    """The demo DICOM radiograph (``RG1_UNCI.dcm``, CR, MONOCHROME1) as a 16-bit grey PNG, converted once.

    Why a PNG: the 2D cache reads PNG/JPEG like the NIH release; DICOM needs its own pipeline first. The
    conversion is :func:`pcrl_lib.data.dicom.read_dicom_image`: modality rescale, the file's VOI window, and
    the MONOCHROME1 inversion (air dark, bone bright, as in every other radiograph of the kit), stored at full
    resolution as ``round(65535 · image)``. It goes to ``<cache>/prepared/demo/RG1_UNCI.png`` with a
    ``RG1_UNCI.json`` beside it recording the source file's size and mtime and what was applied; a later call
    returns the PNG at once unless the source changed."""
    from PIL import Image

    source = _demo_path(DEMO_DICOM_RADIOGRAPH)
    out_dir = cache_dir() / "prepared" / "demo"
    png, record_file = out_dir / f"{source.stem}.png", out_dir / f"{source.stem}.json"
    signature = input_signature(source)
    if png.is_file() and record_file.is_file():
        try:
            record = json.loads(record_file.read_text())
        except json.JSONDecodeError:
            record = {}
        if record.get("source") == signature and record.get("format") == _PNG_FORMAT:
            return png
    image, meta = read_dicom_image(source)                                   # (H, W) float32 in [0, 1]
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(png) as temporary:  # a killed conversion never leaves a half-written PNG under its name
        Image.fromarray(np.rint(image * 65535.0).astype(np.uint16)).save(temporary, format="PNG")
    atomic_write_text(record_file, json.dumps({
        "format": _PNG_FORMAT, "source": signature, "photometric": meta.photometric, "inverted": meta.inverted,
        "window": list(meta.window), "window_source": meta.window_source, "voi_function": meta.voi_function,
        "shape": list(meta.shape), "png": "16-bit grey, value = round(65535 * image)"}, indent=1))
    return png


# ------------------------------------------------------------------------------------ pretraining inputs
def _image_groups_2d(profile: str, data_root) -> dict[str, list[Path]]:
    """The 2D pretraining images by origin (what :func:`pretraining_inventory` reports)."""
    if uses_real_data(profile, data_root):
        return {"NIH ChestX-ray14 (training split)": _nih_training_images(dataset_root(data_root, "nih"))}
    # The demo files first: without a fetch this fails at once, before any synthetic data is written.
    groups = {"demo: paediatric chest X-rays": [record.path for record in xray_images()],
              "demo: adult DICOM radiograph (as PNG)": [demo_radiograph_png()]}
    synthetic_nih = ensure_synthetic(profile, "nih", log=_quiet)
    groups["synthetic NIH look-alike (training split)"] = _nih_training_images(synthetic_nih)
    return groups


def _scan_groups_3d(profile: str, data_root) -> dict[str, list[Path]]:
    """The 3D pretraining scans by origin."""
    if uses_real_data(profile, data_root):
        root = dataset_root(data_root, "luna16")
        scans = luna16.list_scans(root, LUNA_PRETRAINING_SUBSETS)
        if not scans:
            raise FileNotFoundError(f"{root}: no .mhd scans in subset0..subset6, the paper's pretraining subsets; "
                                    "unpack the LUNA16 subset archives there (see data/README.md)")
        return {"LUNA16 (subsets 0-6)": scans}
    groups = {"demo: chest CTs": [_demo_path(key) for key in DEMO_CHEST_CTS]}
    synthetic_luna = ensure_synthetic(profile, "luna16", log=_quiet)
    groups["synthetic LUNA16 look-alike (subsets 0-6)"] = luna16.list_scans(synthetic_luna, LUNA_PRETRAINING_SUBSETS)
    return groups


def pretraining_images_2d(profile: str, data_root: str | os.PathLike | None = None) -> list[Path]:
    """The radiographs 2D pretraining reads (PNG/JPEG files; see the module docstring), in a fixed order."""
    return [path for group in _image_groups_2d(profile, data_root).values() for path in group]


def pretraining_scans_3d(profile: str, data_root: str | os.PathLike | None = None) -> list[Path]:
    """The CT scans (in HU) 3D pretraining cuts crop pairs from (.mhd/.nrrd/.nii.gz; see the module docstring)."""
    return [path for group in _scan_groups_3d(profile, data_root).values() for path in group]


def _format(path: Path) -> str:
    name = path.name.lower()
    suffix = ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()
    return _FORMATS.get(suffix, suffix or "folder")


def pretraining_inventory(profile: str, data_root: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per pretraining input: ``kind`` (2D/3D), ``source``, ``path``, ``format`` and ``bytes`` on disk
    (a MetaImage counts its .raw too) — what notebook 01 tabulates and records."""
    rows = [{"kind": kind, "source": source, "path": str(path), "format": _format(path),
             "bytes": sum(record["size"] for record in input_signature(path))}
            for kind, groups in (("2D", _image_groups_2d(profile, data_root)),
                                 ("3D", _scan_groups_3d(profile, data_root)))
            for source, paths in groups.items() for path in paths]
    return pd.DataFrame(rows, columns=["kind", "source", "path", "format", "bytes"])


# ------------------------------------------------------------------------------------ pretraining caches
def pretraining_set_2d(profile: str, data_root: str | os.PathLike | None = None, size: int | None = None,
                       progress: bool = True, force: bool = False) -> ImageCacheDataset:
    """The 2D pretraining images cached at ``size × size`` (default ``DataConfig.source_size_2d``; aspect ratio
    kept, centre cropped) in one uint8 memmap; items are float32 ``(1, size, size)`` in [0, 1].

    The cache is the *source* resolution the views are cut from, not the view size: like the released code,
    which crops NIH's 1024² originals, a view covering 20 % of the image keeps its detail when the source is
    larger than the view (the paper profile caches 1024², quick 128² for 64² views).

    Built with :func:`pcrl_lib.data.cache.prepare_image_cache` (``DataConfig.num_workers`` processes, a progress
    bar unless ``progress=False``) under :func:`prepared_root` ``/pretrain_2d_<size>px``; reused when unchanged,
    rebuilt from scratch with ``force=True`` (the notebooks' ``FORCE``)."""
    config = get_profile(profile).data
    size = config.source_size_2d if size is None else size
    if not isinstance(size, (int, np.integer)) or size < 8:
        raise ValueError(f"size must be an int >= 8 (pixels per side of the cached images), got {size!r}")
    paths = pretraining_images_2d(profile, data_root)
    out_dir = prepared_root(profile, data_root) / f"pretrain_2d_{int(size)}px"
    _discard_if(force, out_dir)
    prepare_image_cache(paths, out_dir, size=int(size), num_workers=config.num_workers, progress=progress)
    return ImageCacheDataset(out_dir)


def pretraining_set_3d(profile: str, data_root: str | os.PathLike | None = None,
                       cube: Sequence[int] | None = None, pairs_per_scan: int | None = None, seed: int = SPLIT_SEED,
                       progress: bool = True, force: bool = False) -> PairDataset:
    """PCRL's crop pairs of the 3D pretraining scans: each scan resampled to ``DataConfig.spacing_mm``, up to
    ``pairs_per_scan`` pairs of overlapping crops (IoU > 0.25, lung filter, margins; PCRL_SPEC §7) resized to
    ``cube`` (default ``PretrainConfig.cube_size``, (X, Y, Z)); items are float32 ``(2, 1, X, Y, Z)`` in [0, 1].
    The crop recipe is ``DataConfig.crop_sampler`` / ``lung_filter`` / ``crop_resize`` (default: as released;
    a ``"kit"`` switch adds ``_<switch>-kit`` to the folder name).

    Built with :func:`pcrl_lib.data.preprocess.prepare_pretraining_cubes` (crops drawn from ``seed`` and each
    scan's name) under :func:`prepared_root` ``/pretrain_3d_<X>x<Y>x<Z>_p<pairs>_s<seed>``; reused when
    unchanged, rebuilt from scratch with ``force=True``. The boxes and IoUs of every pair are in the cache's
    ``manifest.json``."""
    config = get_profile(profile).data
    cube = tuple(get_profile(profile).pretrain.cube_size if cube is None else cube)
    pairs_per_scan = config.pairs_per_scan if pairs_per_scan is None else pairs_per_scan
    if len(cube) != 3 or not all(isinstance(c, (int, np.integer)) and c >= 4 for c in cube):
        raise ValueError(f"cube must be three ints >= 4 (X, Y, Z voxels), got {cube!r}")
    if not isinstance(pairs_per_scan, (int, np.integer)) or pairs_per_scan < 1:
        raise ValueError(f"pairs_per_scan must be a positive int, got {pairs_per_scan!r}")
    scans = pretraining_scans_3d(profile, data_root)
    x, y, z = (int(c) for c in cube)
    recipe = {"sampler": config.crop_sampler, "lung_filter": config.lung_filter, "crop_resize": config.crop_resize}
    # The released recipe keeps the plain folder name; a kit switch gets its own folder (no rebuild ping-pong).
    variant = "".join(f"_{key}-{value}" for key, value in recipe.items() if value != "released")
    out_dir = (prepared_root(profile, data_root)
               / f"pretrain_3d_{x}x{y}x{z}_p{int(pairs_per_scan)}_s{int(seed)}{variant}")
    _discard_if(force, out_dir)
    prepare_pretraining_cubes(scans, out_dir, cube=(x, y, z), pairs_per_scan=int(pairs_per_scan), seed=int(seed),
                              num_workers=config.num_workers, progress=progress, spacing=config.spacing_mm,
                              **recipe)
    return PairDataset(out_dir)
