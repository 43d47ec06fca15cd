"""Mixed precision through ``torch.amp``: which autocast dtype, and whether a ``GradScaler`` is needed.

The trainer asks for a precision by name (``PretrainConfig.precision``) and this module turns the name
into an autocast context and a gradient scaler, the ``nullcontext``/``autocast`` switch of nanoGPT.

How a requested precision resolves on each device (:func:`resolve_precision`):

==============================  ===============  ======  ==========  =================
device                          ``auto``         fp32    bf16        fp16
==============================  ===============  ======  ==========  =================
CUDA with bf16 (Ampere and up)  bf16             fp32    bf16        fp16 + GradScaler
CUDA without bf16 (pre-Ampere)  fp16 + scaler    fp32    ValueError  fp16 + GradScaler
CPU                             ``CPU_AUTO``     fp32    bf16        ValueError
other (e.g. Apple MPS)          fp32             fp32    ValueError  ValueError
==============================  ===============  ======  ==========  =================

bf16 keeps fp32's exponent range, so it needs no loss scaling; fp16 overflows/underflows easily, so its
gradients go through ``torch.amp.GradScaler``. ``fp32`` runs without autocast (a ``nullcontext``).
On CPU, bf16 autocast is used only when asked: whether it pays off depends on the CPU (AVX512-BF16/AMX),
so ``auto`` means :data:`CPU_AUTO`.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import ContextManager

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")

# What ``precision="auto"`` means on a CPU. fp32: bf16 autocast is only faster on CPUs with native bf16
# units, and this kit's default user is a laptop.
CPU_AUTO = "fp32"

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def _cuda_bf16_ok(device: torch.device) -> bool:
    index = device.index if device.index is not None else torch.cuda.current_device()
    major, _ = torch.cuda.get_device_capability(index)
    return major >= 8


def resolve_precision(device: torch.device | str, requested: str = "auto") -> str:
    """The precision that will actually run: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (table in the module doc).

    Raises ``ValueError`` naming the argument when ``requested`` is unknown or the device cannot run it.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision={requested!r} is not one of {', '.join(PRECISIONS)}")
    device = torch.device(device)
    if requested == "fp32":
        return "fp32"
    if device.type == "cuda":
        bf16_ok = _cuda_bf16_ok(device)
        if requested == "auto":
            return "bf16" if bf16_ok else "fp16"
        if requested == "bf16" and not bf16_ok:
            raise ValueError(f"precision='bf16' but {torch.cuda.get_device_name(device)} has no bf16 support; "
                             "use precision='fp16' or 'auto'")
        return requested
    if device.type == "cpu":
        if requested == "auto":
            return CPU_AUTO
        if requested == "fp16":
            raise ValueError("precision='fp16' is not offered on CPU (no fp16 gradient scaling there); "
                             "use precision='bf16' or 'fp32'")
        return requested
    if requested == "auto":
        return "fp32"
    raise ValueError(f"precision={requested!r} is not offered on device {device.type!r}; use precision='fp32'")


@dataclass(frozen=True)
class Precision:
    """A resolved precision on one device.

    ``name``: ``"fp32"`` | ``"bf16"`` | ``"fp16"``; ``device_type``: ``"cpu"`` | ``"cuda"`` | ...
    """

    name: str
    device_type: str

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES[self.name]

    @property
    def needs_scaler(self) -> bool:
        return self.name == "fp16"

    def autocast(self) -> ContextManager:
        """``torch.autocast`` for bf16/fp16, a ``nullcontext`` for fp32."""
        if self.name == "fp32":
            return nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A ``GradScaler`` that is enabled only for fp16 (a disabled one passes ``step``/``update`` through)."""
        return torch.amp.GradScaler(self.device_type, enabled=self.needs_scaler)


def make_precision(device: torch.device | str, requested: str = "auto") -> Precision:
    """Resolve ``requested`` on ``device`` (see :func:`resolve_precision`) into a :class:`Precision`."""
    device = torch.device(device)
    return Precision(resolve_precision(device, requested), device.type)
