"""The course's pretraining runs, as the notebooks run them: one call per (profile, 2D/3D, method), cached on disk.

A run lives in ``<output_dir>/pretrain/<N>d/<method>/`` (checkpoints, history, ``encoder.pt``). Running the same
call again reuses the finished run; an interrupted run resumes. The downstream notebooks find the exported
encoders with :func:`available_encoders` and, when a method has none yet, pretrain it here first
(:func:`ensure_encoders`), so every notebook also runs on its own.

Methods (PCRL_SPEC §9): ``models_genesis``, ``moco``, ``c2l``, ``pcrl_recon``, ``pcrl_tca``, ``pcrl``; ``scratch``
(random initialisation) needs no pretraining and is handled by the fine-tuning code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from .config import PRETRAIN_METHODS, get_profile
from .paths import resolve_output_dir


def pretrain_dir(output_dir: str | os.PathLike, spatial_dims: int, method: str) -> Path:
    """``<output_dir>/pretrain/<N>d/<method>``."""
    return Path(output_dir) / "pretrain" / f"{spatial_dims}d" / method


def _check(spatial_dims: int, method: str) -> None:
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    if method not in PRETRAIN_METHODS:
        raise ValueError(f"unknown pretraining method {method!r}; valid: {', '.join(PRETRAIN_METHODS)}")


def pretraining_dataset(profile: str, spatial_dims: int, data_root: str | os.PathLike | None = None,
                        progress: bool = True, **pretrain_overrides: Any):
    """The prepared pretraining set of ``profile``: 2D image cache or 3D crop-pair cache at the profile's sizes.

    2D: the cache holds the images at the *source* size ``DataConfig.source_size_2d`` (paper 1024, quick 128);
    the views (``PretrainConfig.image_size_2d``: 224, 64) are cut from it and resized, as the released code cuts
    its views from the originals. A source smaller than the views is a ``ValueError``."""
    from .data import profile_data

    profile_cfg = get_profile(profile)
    cfg = profile_cfg.pretrain.override(**pretrain_overrides)
    if spatial_dims == 2:
        source = profile_cfg.data.source_size_2d
        if source < cfg.image_size_2d:
            raise ValueError(f"the 2D cache size DataConfig.source_size_2d={source} is smaller than the views "
                             f"(PretrainConfig.image_size_2d={cfg.image_size_2d}); views are cut from the cache, "
                             "so make the cache at least as large as the views")
        return profile_data.pretraining_set_2d(profile, data_root, size=source, progress=progress)
    return profile_data.pretraining_set_3d(profile, data_root, cube=cfg.cube_size, progress=progress)


def run_pretraining(profile: str, spatial_dims: int, method: str = "pcrl", *,
                    data_root: str | os.PathLike | None = None, output_dir: str | os.PathLike | None = None,
                    seed: int = 0, device: str = "auto", force: bool = False, progress: bool = True,
                    dataset=None, **pretrain_overrides: Any):
    """Pretrain ``method`` in 2D or 3D with ``profile``'s schedule (overridable), reusing a finished run.

    Returns :class:`pcrl_lib.train.PretrainResult` (``encoder_path``, ``history``, ``final_parts``, ``reused``).
    ``dataset`` may be passed to reuse an already-built pretraining set.
    """
    from .env import seed_everything
    from .pretrain_setup import assemble
    from .train import pretrain

    _check(spatial_dims, method)
    cfg = get_profile(profile).pretrain.override(method=method, **pretrain_overrides)
    out = resolve_output_dir(output_dir, profile)
    if dataset is None:
        dataset = pretraining_dataset(profile, spatial_dims, data_root, progress=progress, **pretrain_overrides)
    seed_everything(seed)  # the method's initial weights and queue, as `python -m pcrl_lib.train --seed` does
    model, data, views = assemble(cfg, spatial_dims, dataset)
    return pretrain(model, data, views, cfg, pretrain_dir(out, spatial_dims, method), spatial_dims=spatial_dims,
                    seed=seed, device=device, force=force, progress=progress)


def available_encoders(output_dir: str | os.PathLike, spatial_dims: int) -> dict[str, Path]:
    """Finished exports under ``<output_dir>/pretrain/<N>d/``: method → ``encoder.pt``, in the methods' order."""
    found = {}
    for method in PRETRAIN_METHODS:
        folder = pretrain_dir(output_dir, spatial_dims, method)
        sidecar = folder / "encoder.json"
        try:
            finished = json.loads(sidecar.read_text()).get("finished", False)
        except (OSError, ValueError):
            finished = False
        if finished and (folder / "encoder.pt").is_file():
            found[method] = folder / "encoder.pt"
    return found


def ensure_encoders(profile: str, spatial_dims: int, methods: Iterable[str], *,
                    data_root: str | os.PathLike | None = None, output_dir: str | os.PathLike | None = None,
                    seed: int = 0, device: str = "auto", progress: bool = True,
                    log=print) -> dict[str, Path]:
    """The exported encoder of every method in ``methods``, pretraining (with the profile's schedule) those that
    the pretraining notebooks have not produced yet."""
    out = resolve_output_dir(output_dir, profile)
    methods = [m for m in methods if m != "scratch"]
    for method in methods:
        _check(spatial_dims, method)
    have = available_encoders(out, spatial_dims)
    missing = [m for m in methods if m not in have]
    dataset = None
    for method in missing:
        log(f"no {spatial_dims}D {method} encoder in {out}: pretraining it now ({profile} profile)")
        if dataset is None:
            dataset = pretraining_dataset(profile, spatial_dims, data_root, progress=progress)
        run_pretraining(profile, spatial_dims, method, data_root=data_root, output_dir=out, seed=seed,
                        device=device, progress=progress, dataset=dataset)
    have = available_encoders(out, spatial_dims)
    return {m: have[m] for m in methods}
