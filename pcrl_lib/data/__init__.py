"""Data layer: readers for the real datasets' on-disk formats, synthetic look-alikes written in those
formats, real demo data fetched from the package registry, preprocessing and layout checks; the downstream
tasks' datasets (``tasks_cls``, ``tasks_seg``) and their patient-level splits and label fractions (``splits``).
It imports nothing from the training side (``finetune``, ``train``, ``models``, checkpoints).

Axis convention (everywhere in the kit): 3D NumPy arrays are ``(X, Y, Z)`` with Z the slice axis, as
nibabel returns them; 3D tensors are ``(B, C, X, Y, Z)``, so the paper's 64×64×32 cube is
``(B, 1, 64, 64, 32)``. 2D images are ``(H, W)`` arrays and ``(B, C, H, W)`` tensors.
"""

from .check import CheckReport, check  # noqa: E402  (re-exported: validate a layout before any long job)

__all__ = ["check", "CheckReport"]
