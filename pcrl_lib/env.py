"""Reproducibility and environment: seeding, device choice, the environment report.

Every notebook's setup cell calls :func:`seed_everything`, :func:`pick_device` and :func:`report`;
every JSON record embeds the report so a number always travels with the software that produced it.
"""

from __future__ import annotations

import os
import platform
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from .paths import repo_root


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and every CUDA device).

    Returns a ``torch.Generator`` seeded with ``seed`` for code that takes an explicit generator.
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    os.environ["PYTHONHASHSEED"] = str(seed)
    return torch.Generator().manual_seed(seed)


def seed_worker(worker_id: int) -> None:
    """``DataLoader(worker_init_fn=seed_worker)``: derive NumPy/Python seeds from torch's per-worker seed.

    torch seeds each worker as ``base_seed + worker_id``; NumPy and ``random`` would otherwise start
    identical in every worker and repeat the same augmentations.
    """
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → CUDA if available, else Apple MPS, else CPU; any other string is validated."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"DEVICE={device!r} is not a device; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"DEVICE={device!r} but CUDA is not available here; use DEVICE='auto' or 'cpu'")
    return dev


def git_commit(root: Path | None = None) -> str | None:
    """Short commit of the kit's checkout (with ``+dirty`` when the tree has changes), or None."""
    root = root or repo_root()
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+dirty" if dirty else "") if sha else None


def report(profile: str | None = None, data_root: str | os.PathLike | None = None,
           device: str | torch.device = "auto", quiet: bool = False) -> dict:
    """Print and return versions, device, threads, profile, data root and git commit."""
    dev = pick_device(device)
    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for name in ("torchvision", "papermill", "SimpleITK", "nibabel", "pydicom", "sklearn"):
        module = sys.modules.get(name)
        if module is None:
            try:
                module = __import__(name)
            except ImportError:
                continue
        versions[name] = getattr(module, "__version__", None) or getattr(module, "Version", lambda: "?")()
    info = {
        "versions": versions,
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "profile": profile,
        "data_root": str(data_root) if data_root else None,
        "git_commit": git_commit(),
        "platform": platform.platform(),
    }
    if not quiet:
        width = max(len(k) for k in info)
        for key, value in info.items():
            if key == "versions":
                value = ", ".join(f"{k} {v}" for k, v in value.items())
            print(f"{key:<{width}}  {value}")
    return info
