"""Pretraining throughput and peak memory of one PCRL training step, 2D and 3D, quick and paper sizes.

A step is what :class:`pcrl_lib.train.Trainer` runs: the on-device views (the data pipeline, optional), the
method's forward under the precision's autocast, backward, an SGD step and the EMA update of E_m. For every
case the script prints

* ``views s`` — seconds per batch of the view pipeline alone (``PCRLViews2D`` / ``PCRLViews3D``);
* ``step s`` — seconds per training step on a ready batch (forward + backward + SGD + EMA);
* ``samples/s model`` = batch / step s, and ``samples/s +views`` = batch / (views s + step s): the trainer runs
  the two one after the other on the same device, so their times add;
* ``GFLOP/sample`` — floating-point operations of one step per sample, counted by
  ``torch.utils.flop_counter.FlopCounterMode`` during the first step (the warm-up step, or the first timed step
  of cases without one; convolutions and matmuls, forward and backward) — what time predictions for other
  hardware start from;
* ``peak MiB`` — peak memory: on CPU the process's peak resident set (``VmHWM``, reset through
  ``/proc/self/clear_refs`` at the start of the case; each case runs in a forked child so that memory kept by
  the allocator from one case never hides the next) and ``Δ MiB``, the growth over the resident set at the
  start of the case (weights, optimizer state, activations); on CUDA ``torch.cuda.max_memory_allocated``.

Cases of the default CPU run (about 3 minutes on a 2-core CPU; more when other processes share it):

=========  ======================================  ===========  =======================================
size       input                                   batch        note
=========  ======================================  ===========  =======================================
quick      the quick profile's (2D 64², 3D         the profile  fp32 and the default, 1 warm-up + 2
           32×32×16 width 4)                                    timed steps
paper      2D 224², 3D 64×64×32 width 32, K 16384  4 / 1        fp32 and the default; the paper's
                                                                batch is 64 / 16: pass
                                                                ``--paper-batch full``; 2D 1 warm-up + 1
                                                                timed step, 3D 1 timed step (no warm-up:
                                                                one step takes minutes on a CPU)
bf16-cpu   2D 64², 3D 16×16×8 width 8              2            fp32 vs bf16 autocast, 1 timed step, no
                                                                warm-up (bf16 is several times slower on CPUs
                                                                without AVX512-BF16/AMX, so small sizes)
=========  ======================================  ===========  =======================================

"The default" is what the trainer runs with ``precision='auto'`` and ``memory_format='auto'``
(:mod:`pcrl_lib.precision`): on CPU bf16 autocast for 2D where the CPU has native bf16 (the header prints the
CPU's capability and the defaults it resolves to), fp32 for 3D unless the CPU passes the bf16 conv3d check; a
default that resolves to fp32 contiguous is the fp32 row and is not measured twice. ``× fp32`` is the fp32 step
time of the same case over the row's.

On CUDA (``--device cuda``, or ``auto`` when a GPU is present) every size runs at the profile's full batch in
fp32 and bf16, each with and without ``channels_last`` memory format, 5 timed steps after 2 warm-up steps.
The method is ``pcrl`` (``--methods`` adds the baselines, e.g. ``--methods pcrl,moco,models_genesis``). Inputs
are random tensors of the cached data's shapes (reading the uint8 memmap caches costs microseconds per item).
The header prints the load average: other processes on the same cores slow every figure down.

Usage: ``python benchmarks/pretrain.py [--sizes quick,paper,bf16-cpu] [--dims 2,3] [--methods pcrl]
[--device auto|cpu|cuda] [--threads N] [--paper-batch reduced|full] [--channels-last] [--steps N]
[--json out.json]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pcrl_lib.config import get_profile  # noqa: E402
from pcrl_lib.pcrl import build_method_from_config  # noqa: E402
from pcrl_lib.precision import cpu_capability, make_precision  # noqa: E402
from pcrl_lib.pretrain_setup import GenesisViews  # noqa: E402
from pcrl_lib.transforms import PCRLViews2D, PCRLViews3D  # noqa: E402

SIZES = ("quick", "paper", "bf16-cpu")
N_DATA = 1024          # NCE's sample count; it only scales the noise mass, not the cost
_PAPER_REDUCED_BATCH = {2: 4, 3: 1}


@dataclass(frozen=True)
class Case:
    """One measured configuration (see the module table)."""

    dims: int
    size: str
    method: str
    batch: int
    precision: str                    # fp32 | bf16 | fp16 | auto (the trainer's default)
    channels_last: bool | None        # None: the default layout of the precision (precision.resolve_memory_format)
    steps: int
    warmup: int

    def config(self):
        """The PretrainConfig of this case: the size's profile values with the case's method and batch."""
        if self.size == "bf16-cpu":
            base = get_profile("quick").pretrain.override(cube_size=(16, 16, 8), width_3d=8, K=256)
        else:
            base = get_profile(self.size).pretrain
        return base.override(method=self.method, precision=self.precision,
                             **{f"batch_size_{self.dims}d": self.batch})

    @property
    def label(self) -> str:
        cfg = self.config()
        shape = f"{cfg.image_size_2d}²" if self.dims == 2 else "×".join(map(str, cfg.cube_size)) + f" w{cfg.width_3d}"
        return f"{self.dims}D {self.size} {shape}"


def _memory_format(dims: int):
    return torch.channels_last if dims == 2 else torch.channels_last_3d


def _to_format(sample, dims: int):
    """Every (B, C, *S) field of a sample dataclass in channels-last layout (codes untouched)."""
    fmt = _memory_format(dims)
    changes = {f.name: getattr(sample, f.name).contiguous(memory_format=fmt) for f in dataclasses.fields(sample)
               if getattr(sample, f.name).ndim == dims + 2}
    return dataclasses.replace(sample, **changes)


def _raw_batch(cfg, dims: int, batch: int, device: torch.device) -> torch.Tensor:
    """Random data shaped like the caches: 2D gray images (B, 1, S, S), 3D crop pairs (B, 2, 1, X, Y, Z)."""
    gen = torch.Generator().manual_seed(1)
    if dims == 2:
        raw = torch.rand(batch, 1, cfg.image_size_2d, cfg.image_size_2d, generator=gen)
    else:
        raw = torch.rand(batch, 2, 1, *cfg.cube_size, generator=gen)
    return raw.to(device)


def _views(cfg, dims: int):
    if cfg.method == "models_genesis":
        return GenesisViews(dims)
    return PCRLViews2D(size=cfg.image_size_2d) if dims == 2 else PCRLViews3D()


class _Memory:
    """Peak memory of the running case: CUDA allocator peak, or the CPU process's VmHWM after a reset."""

    def __init__(self, device: torch.device):
        self.device = device
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            self.start = torch.cuda.memory_allocated(device)
        else:
            self.resettable = _reset_peak_rss()
            self.start = _status_kib("VmRSS")

    def peak_mib(self) -> tuple[float, float]:
        """(peak MiB, growth over the start MiB)."""
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device)
            return peak / 2**20, (peak - self.start) / 2**20
        peak = _status_kib("VmHWM") if self.resettable else _maxrss_kib()
        return peak / 1024, (peak - self.start) / 1024


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return _maxrss_kib()


def _maxrss_kib() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0); False where that is not possible (then ru_maxrss)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_case(case: Case, device: torch.device) -> dict:
    """Measure one case in this process; returns the table row."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    memory = _Memory(device)
    cfg = case.config()
    extra = {} if case.method == "models_genesis" else {"queue_generator": torch.Generator().manual_seed(0)}
    method = build_method_from_config(cfg, case.dims, num_items=N_DATA, **extra).to(device)
    precision = make_precision(device, case.precision, spatial_dims=case.dims)
    channels_last = _channels_last(case, device)
    if channels_last:
        method = method.to(memory_format=_memory_format(case.dims))
    method.train()
    views = _views(cfg, case.dims)
    scaler = precision.grad_scaler()
    params = [p for p in method.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    gen_views = torch.Generator(device=device).manual_seed(1)
    gen_method = torch.Generator(device=device).manual_seed(2)
    raw = _raw_batch(cfg, case.dims, case.batch, device)

    def make_sample():
        sample = views(raw, gen_views)
        return _to_format(sample, case.dims) if channels_last else sample

    def step(sample):
        with precision.autocast():
            out = method(sample, gen_method)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(out.loss).backward()
        scaler.step(optimizer)
        scaler.update()
        method.momentum_update()

    counter = FlopCounterMode(display=False)
    sample = make_sample()
    for i in range(case.warmup):
        with counter if i == 0 else nullcontext():
            step(sample)
    _sync(device)
    view_times, step_times = [], []
    for i in range(case.steps):
        start = time.perf_counter()
        sample = make_sample()
        _sync(device)
        view_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        # Without a warm-up step the FLOPs are counted in the first timed one (the counter's per-op overhead is
        # negligible next to a step of these sizes).
        with counter if (case.warmup == 0 and i == 0) else nullcontext():
            step(sample)
        _sync(device)
        step_times.append(time.perf_counter() - start)
    flops = counter.get_total_flops()
    peak, grown = memory.peak_mib()
    t_views, t_step = min(view_times), min(step_times)
    return {"case": case.label, "method": case.method, "batch": case.batch, "precision": precision.name,
            "default": case.precision == "auto",
            "layout": "channels_last" if channels_last else "contiguous", "device": device.type,
            "steps": case.steps, "views_s": t_views, "step_s": t_step,
            "samples_per_s_model": case.batch / t_step, "samples_per_s_views": case.batch / (t_views + t_step),
            "gflop_per_sample": flops / case.batch / 1e9 if flops else None, "peak_mib": peak, "delta_mib": grown}


def _channels_last(case: Case, device: torch.device) -> bool:
    if case.channels_last is not None:
        return case.channels_last
    return make_precision(device, case.precision, spatial_dims=case.dims).memory_format == "channels_last"


def _is_fp32_contiguous(case: Case, device: torch.device) -> bool:
    return (make_precision(device, case.precision, spatial_dims=case.dims).name == "fp32"
            and not _channels_last(case, device))


def _child(case: Case, device: str, threads: int, queue) -> None:
    torch.set_num_threads(threads)
    try:
        queue.put(run_case(case, torch.device(device)))
    except Exception as err:  # reported in the table instead of killing the whole benchmark
        queue.put({"case": case.label, "method": case.method, "error": f"{type(err).__name__}: {err}"})


def measure(case: Case, device: torch.device, threads: int) -> dict:
    """CPU: in a forked child (a fresh peak-memory figure, allocator state not shared); CUDA: in process."""
    if device.type == "cuda":
        try:
            return run_case(case, device)
        finally:
            torch.cuda.empty_cache()
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(case, str(device), threads, queue))
    child.start()
    row = queue.get()
    child.join()
    return row


def plan(args, device: torch.device) -> list[Case]:
    """The cases to run, in order (see the module table)."""
    cases = []
    cuda = device.type == "cuda"
    for size in args.sizes:
        if size == "bf16-cpu":
            if cuda:
                continue
            for dims in args.dims:
                for precision in ("fp32", "bf16"):
                    cases.append(Case(dims, size, "pcrl", 2, precision, False, steps=1, warmup=0))
            continue
        for dims in args.dims:
            profile = get_profile(size).pretrain
            batch = getattr(profile, f"batch_size_{dims}d")
            if size == "paper" and args.paper_batch == "reduced" and not cuda:
                batch = _PAPER_REDUCED_BATCH[dims]
            steps = args.steps or (5 if cuda else (2 if size == "quick" else 1))
            # A 3D paper-size step takes minutes on a CPU: no separate warm-up there.
            warmup = 2 if cuda else (0 if (size == "paper" and dims == 3) else 1)
            precisions = ("fp32", "bf16") if cuda else ("fp32",)
            layouts = (False, True) if (cuda or args.channels_last) else (False,)
            for method in args.methods:
                for precision in precisions:
                    for channels_last in layouts:
                        cases.append(Case(dims, size, method, batch, precision, channels_last, steps, warmup))
                default = Case(dims, size, method, batch, "auto", None, steps, warmup)
                if not cuda and not _is_fp32_contiguous(default, device):
                    cases.append(default)
    return cases


def _format(rows: list[dict]) -> str:
    header = (f"{'case':<28} {'method':<14} {'batch':>5} {'prec':<10} {'layout':<13} {'views s':>8} {'step s':>8} "
              f"{'× fp32':>6} {'samples/s model':>15} {'samples/s +views':>16} {'GFLOP/sample':>12} {'peak MiB':>9} "
              f"{'Δ MiB':>8}")
    lines = [header, "-" * len(header)]
    fp32 = {(r["case"], r["method"], r["batch"]): r["step_s"] for r in rows
            if "error" not in r and r["precision"] == "fp32" and r["layout"] == "contiguous"}
    for r in rows:
        if "error" in r:
            lines.append(f"{r['case']:<28} {r['method']:<14} failed: {r['error']}")
            continue
        gflop = f"{r['gflop_per_sample']:.2f}" if r["gflop_per_sample"] else "-"
        base = fp32.get((r["case"], r["method"], r["batch"]))
        speedup = f"{base / r['step_s']:.2f}" if base else "-"
        prec = r["precision"] + (" (def)" if r.get("default") else "")
        lines.append(f"{r['case']:<28} {r['method']:<14} {r['batch']:>5} {prec:<10} {r['layout']:<13} "
                     f"{r['views_s']:>8.3f} {r['step_s']:>8.3f} {speedup:>6} {r['samples_per_s_model']:>15.2f} "
                     f"{r['samples_per_s_views']:>16.2f} {gflop:>12} {r['peak_mib']:>9.0f} {r['delta_mib']:>8.0f}")
    return "\n".join(lines)


def _csv(text: str, cast=str) -> list:
    return [cast(t) for t in text.split(",") if t.strip()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(SIZES), help=f"comma-separated, from {', '.join(SIZES)}")
    parser.add_argument("--dims", default="2,3", help="2, 3 or 2,3")
    parser.add_argument("--methods", default="pcrl", help="comma-separated pretraining methods (pcrl, moco, ...)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--paper-batch", choices=("reduced", "full"), default="reduced",
                        help="CPU only: paper sizes at batch 4 (2D) / 1 (3D), or at the paper's 64 / 16")
    parser.add_argument("--channels-last", action="store_true", help="CPU: also measure channels_last (CUDA: always)")
    parser.add_argument("--steps", type=int, default=0, help="timed steps per case (0 = the defaults above)")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    args.sizes = _csv(args.sizes)
    args.dims = _csv(args.dims, int)
    args.methods = _csv(args.methods)
    unknown = [s for s in args.sizes if s not in SIZES]
    if unknown or not set(args.dims) <= {2, 3}:
        parser.error(f"--sizes takes {', '.join(SIZES)} and --dims takes 2,3; got sizes {args.sizes}, dims {args.dims}")
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but no CUDA GPU is visible")
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} thread(s)"
    print(f"torch {torch.__version__} on {name}; {os.cpu_count()} cores, load average "
          f"{' '.join(f'{v:.2f}' if isinstance(v, float) else v for v in load)}")
    defaults = [make_precision(device, "auto", spatial_dims=d) for d in (2, 3)]
    print(f"CPU capability: {cpu_capability()}; default (precision='auto', memory_format='auto') on {device.type}: "
          + ", ".join(f"{d}D {p.name} {p.memory_format}" for d, p in zip((2, 3), defaults)))
    rows = []
    started = time.perf_counter()
    for case in plan(args, device):
        rows.append(measure(case, device, args.threads))
        print(f"  measured {case.label} {case.method} {case.precision}"
              f"{' channels_last' if case.channels_last else ''} ({time.perf_counter() - started:.0f} s)", flush=True)
    print()
    print(_format(rows))
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load average now "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
