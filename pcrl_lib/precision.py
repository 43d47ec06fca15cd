"""Mixed precision through ``torch.amp`` and the memory layout of the model: which autocast dtype, whether a
``GradScaler`` is needed, and whether the convolutions run channels-last.

The trainer asks for a precision by name (``PretrainConfig.precision``) and this module turns the name
into an autocast context and a gradient scaler, the ``nullcontext``/``autocast`` switch of nanoGPT.

How a requested precision resolves on each device (:func:`resolve_precision`):

==============================  ===============  ======  ==========  =================
device                          ``auto``         fp32    bf16        fp16
==============================  ===============  ======  ==========  =================
CUDA with bf16 (Ampere and up)  bf16             fp32    bf16        fp16 + GradScaler
CUDA without bf16 (pre-Ampere)  fp16 + scaler    fp32    ValueError  fp16 + GradScaler
CPU                             see below        fp32    bf16        ValueError
other (e.g. Apple MPS)          fp32             fp32    ValueError  ValueError
==============================  ===============  ======  ==========  =================

bf16 keeps fp32's exponent range, so it needs no loss scaling; fp16 overflows/underflows easily, so its
gradients go through ``torch.amp.GradScaler``. ``fp32`` runs without autocast (a ``nullcontext``).
On CPU, ``auto`` is bf16 where the CPU has native bf16 arithmetic (x86 flags ``avx512_bf16`` or ``amx_bf16`` in
``/proc/cpuinfo``: Intel Cooper Lake / Sapphire Rapids and later, AMD Zen 4 and later) and fp32 elsewhere (there
bf16 is emulated and slower than fp32): :data:`CPU_AUTO_2D` for 2D models; for 3D models only if
:func:`cpu_bf16_conv3d_ok` too, and fp32 when the model's dimensions are not given (:data:`CPU_AUTO`). Why the
3D check: with torch 2.14 on an AMD EPYC (Zen 4, ``avx512_bf16``) the bf16 ``conv3d`` weight gradient is garbage
(relative error 1e28-1e36, different on every call) whenever a spatial side is 2 with a 3-wide padded kernel,
which is the bottom of the kit's 3D U-Net at 32×32×16 and 64×64×32; bf16 3D pretraining there turns NaN within
a few steps. The check computes that gradient once per process (milliseconds) and compares it with fp32.

Memory layout (``PretrainConfig.memory_format``, :func:`resolve_memory_format`): ``channels_last`` puts the
model's 4D/5D weights in ``channels_last`` / ``channels_last_3d`` (converting the weights is enough: the
convolutions then pick channels-last kernels for contiguous inputs too). ``auto`` does so only for 2D models on
CUDA under bf16/fp16 autocast, where the tensor-core convolutions are channels-last kernels;
``benchmarks/gpu_check.py`` measures fp32, bf16 and bf16 + channels-last on a GPU, 2D and 3D. On CPU ``auto``
stays contiguous: measured with ``benchmarks/pretrain.py`` on a 2-core AMD EPYC (Zen 4, ``avx512_bf16``),
torch 2.14, one thread, PCRL step, quick profile: 2D 64² batch 8 fp32 0.79 s, bf16 0.49 s, bf16 + channels_last
0.45 s, fp32 + channels_last 0.77 s; 3D 32×32×16 batch 4 at width 4 fp32 0.59 s, fp32 + channels_last_3d 0.41 s,
but at width 16 3.47 s against 3.33 s (4 %; the paper's width is 32). ``memory_format='channels_last'`` asks
for it.
"""

from __future__ import annotations

import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import ContextManager

import torch
from torch import nn

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
MEMORY_FORMATS = ("auto", "contiguous", "channels_last")

# CPU flags (Linux /proc/cpuinfo) of native bf16 arithmetic: AVX512-BF16 dot products, AMX bf16 tiles.
_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@lru_cache(maxsize=None)
def cpu_bf16_flags(cpuinfo: str = "/proc/cpuinfo") -> tuple[str, ...]:
    """The native-bf16 flags this CPU reports (empty where there are none or ``cpuinfo`` cannot be read)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return ()
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return tuple(f for f in _CPU_BF16_FLAGS if f in flags)


def cpu_capability() -> str:
    """One line for benchmark headers: torch's vector ISA and the native-bf16 flags, e.g. ``AVX512, avx512_bf16``."""
    flags = cpu_bf16_flags()
    return f"{torch.backends.cpu.get_cpu_capability()}, {', '.join(flags) if flags else 'no native bf16'}"


def bf16_conv3d_errors(device: str | torch.device = "cpu", repeats: int = 3) -> list[float]:
    """Relative max error of bf16 ``conv3d`` weight gradients against fp32 at a 2×2×2 input with 32 channels
    (module doc), one value per call: bf16 rounding gives ~0.3 %, the CPU bug 1e28 or NaN."""
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(2, 32, 2, 2, 2, device=device, generator=gen)   # 32 channels: the bug does not show at 8
    w = torch.randn(32, 32, 3, 3, 3, device=device, generator=gen)

    def weight_grad(dtype: torch.dtype) -> torch.Tensor:
        wd = w.to(dtype, copy=True).requires_grad_()
        torch.nn.functional.conv3d(x.to(dtype), wd, padding=1).float().sum().backward()
        return wd.grad.float()

    ref = weight_grad(torch.float32)
    return [((weight_grad(torch.bfloat16) - ref).abs().max() / ref.abs().max()).item() for _ in range(repeats)]


def bf16_conv3d_correct(errors: list[float]) -> bool:
    """Whether :func:`bf16_conv3d_errors` stay under 5 % (NaN compares False)."""
    return all(e < 0.05 for e in errors)


@lru_cache(maxsize=None)
def cpu_bf16_conv3d_ok() -> bool:
    """Whether bf16 ``conv3d`` on CPU computes a correct weight gradient where a spatial side is 2 (module doc)."""
    return bf16_conv3d_correct(bf16_conv3d_errors("cpu"))


# What ``precision="auto"`` means on a CPU (module doc). Native bf16 made the quick 2D step 1.1-1.6x faster than
# fp32 (benchmarks/pretrain.py, 2-core Zen 4 under load); emulated bf16 is slower than fp32. CPU_AUTO: models
# whose dimensions the caller does not give.
CPU_AUTO_2D = "bf16" if cpu_bf16_flags() else "fp32"
CPU_AUTO = "fp32"


def cpu_auto(spatial_dims: int | None) -> str:
    """What ``precision="auto"`` resolves to on this CPU for a model of ``spatial_dims`` (2, 3 or None)."""
    if spatial_dims == 2:
        return CPU_AUTO_2D
    if spatial_dims == 3 and CPU_AUTO_2D == "bf16" and cpu_bf16_conv3d_ok():
        return "bf16"
    return CPU_AUTO


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def _cuda_bf16_ok(device: torch.device) -> bool:
    index = device.index if device.index is not None else torch.cuda.current_device()
    major, _ = torch.cuda.get_device_capability(index)
    return major >= 8


def resolve_precision(device: torch.device | str, requested: str = "auto", spatial_dims: int | None = None) -> str:
    """The precision that will actually run: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (table in the module doc);
    on CPU ``auto`` depends on the model's ``spatial_dims`` (:func:`cpu_auto`).

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
            return cpu_auto(spatial_dims)
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

    ``name``: ``"fp32"`` | ``"bf16"`` | ``"fp16"``; ``device_type``: ``"cpu"`` | ``"cuda"`` | ...;
    ``memory_format``: ``"contiguous"`` | ``"channels_last"`` (what :meth:`prepare` does to a model).
    """

    name: str
    device_type: str
    memory_format: str = "contiguous"

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

    def prepare(self, module: nn.Module, spatial_dims: int) -> nn.Module:
        """``module`` (in place) with its (C_out, C_in, *k) conv weights in this precision's memory format:
        ``channels_last`` for ``spatial_dims`` 2, ``channels_last_3d`` for 3; contiguous leaves it as it is."""
        if self.memory_format == "contiguous":
            return module
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
        return module.to(memory_format=torch.channels_last if spatial_dims == 2 else torch.channels_last_3d)


def resolve_memory_format(device_type: str, precision: str, spatial_dims: int | None,
                          requested: str = "auto") -> str:
    """``"contiguous"`` or ``"channels_last"``; ``auto`` is channels-last only for 2D models (``spatial_dims``
    2) on CUDA under a resolved ``precision`` of bf16/fp16 (module doc)."""
    if requested not in MEMORY_FORMATS:
        raise ValueError(f"memory_format={requested!r} is not one of {', '.join(MEMORY_FORMATS)}")
    if requested == "auto":
        fast = device_type == "cuda" and precision != "fp32" and spatial_dims == 2
        return "channels_last" if fast else "contiguous"
    return requested


def make_precision(device: torch.device | str, requested: str = "auto", memory_format: str = "auto",
                   spatial_dims: int | None = None) -> Precision:
    """Resolve ``requested`` on ``device`` (see :func:`resolve_precision`) and ``memory_format`` (see
    :func:`resolve_memory_format`) for a model of ``spatial_dims`` into a :class:`Precision`."""
    device = torch.device(device)
    name = resolve_precision(device, requested, spatial_dims)
    if device.type == "cpu" and name == "bf16" and spatial_dims == 3 and not cpu_bf16_conv3d_ok():
        warnings.warn("precision='bf16' for a 3D model on this CPU: its bf16 conv3d weight gradient is wrong at "
                      "2-voxel sides (pcrl_lib.precision.cpu_bf16_conv3d_ok); use precision='auto' or 'fp32'",
                      stacklevel=2)
    return Precision(name, device.type, resolve_memory_format(device.type, name, spatial_dims, memory_format))
