"""One prepared check of the kit on a machine with one NVIDIA GPU (at most ~8 minutes); writes one JSON.

Run ``python benchmarks/gpu_check.py --out gpu_check.json`` from the repository root. Without a CUDA device it
prints ``no CUDA device: nothing to check``, writes ``{"cuda": false, ...}`` and exits 0. With one it runs, in
order, each section guarded (a failing section is recorded with its error and the next one runs) and skipped
once ``--budget`` seconds (default 420) are spent:

1. ``device``: name, compute capability, memory, bf16 support, torch/CUDA/cuDNN versions, and the GPU's dense
   bf16 tensor peak from :data:`BF16_PEAK_TFLOPS` (looked up by name; ``null`` for GPUs not in the table).
2. ``tests``: the CUDA-only tests (``-k cuda`` over the test files that skip with ``reason="needs CUDA"``, among
   them the bf16 loss-curve tests of ``tests/test_precision.py`` on CUDA), through pytest with a JUnit report:
   passed / failed / skipped counts and the failures' messages.
3. ``conv3d_bf16``: the bf16 conv3d weight-gradient check of :mod:`pcrl_lib.precision` on CUDA (the CPU bug it
   guards against, on this GPU's kernels).
4. ``augment``: the kit rows of ``benchmarks/augment.py`` on CUDA (ms per sample at batch 16, median of 7 runs;
   the released side is CPU-only and is not run).
5. ``steps``: one PCRL pretraining step at the paper's sizes and batches (2D 224² batch 64; 3D 64×64×32 width 32
   batch 16; K 16384) in fp32, bf16 and bf16 + channels-last, through ``benchmarks/pretrain.run_case`` (2 warm-up
   + 5 timed steps): seconds per step, samples/s, peak memory (``torch.cuda.max_memory_allocated``), FLOPs per
   sample (``FlopCounterMode``), achieved TFLOP/s and their share of the bf16 peak.
6. ``pipeline``: whether the data pipeline keeps up with the step at the paper's batches: the host-to-device
   copy of a pinned uint8 raw batch (2D: the 1024² source images the views are cut from; 3D: the crop pairs)
   and the on-GPU views, against the faster bf16 step; the trainer runs views and step one after the other, so
   ``pipeline_share`` = (copy + views) / (copy + views + step) is the throughput they cost, and ``keeps_up`` is
   ``pipeline_share <= 0.2``. Reading the items from the memmap caches (DataLoader workers, in parallel with
   the GPU) is not measured here.

The JSON holds every section as ``{"ok": bool, "seconds": float, ...}`` plus ``"summary"`` lines, also printed.
Usage: ``python benchmarks/gpu_check.py [--out gpu_check.json] [--budget 420] [--steps 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pcrl_lib.precision import bf16_conv3d_correct, bf16_conv3d_errors  # noqa: E402

NO_CUDA = "no CUDA device: nothing to check"

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s from NVIDIA's datasheets, matched in order against the
# device name (first match wins: "L40S" before "L40" before "L4", "PCIe"/"NVL" variants before the SXM default).
BF16_PEAK_TFLOPS = (
    (("H100", "PCIe"), 756.0), (("H100", "NVL"), 835.0), (("H100",), 989.0), (("H200",), 989.0),
    (("GH200",), 989.0), (("B200",), 2250.0), (("A100",), 312.0), (("A10G",), 70.0), (("A10",), 125.0),
    (("L40S",), 362.0), (("L40",), 181.0), (("L4",), 121.0), (("RTX 4090",), 165.0), (("A6000",), 155.0),
)

PAPER_BATCH = {2: 64, 3: 16}
PIPELINE_SHARE_OK = 0.2


def bf16_peak_tflops(name: str) -> float | None:
    """The dense bf16 peak of the GPU called ``name`` (``torch.cuda.get_device_name``), None when unknown."""
    upper = name.upper()
    for keys, peak in BF16_PEAK_TFLOPS:
        if all(k.upper() in upper for k in keys):
            return peak
    return None


def cuda_test_files(tests_dir: Path) -> list[str]:
    """The test files (relative to the repository root) that hold tests skipped with ``reason="needs CUDA"``."""
    return sorted(str(p.relative_to(tests_dir.parent)) for p in tests_dir.rglob("test_*.py")
                  if 'reason="needs CUDA"' in p.read_text())


def junit_counts(xml_text: str) -> dict:
    """passed / failed / skipped counts and the failures (``name: message``) of a pytest JUnit report."""
    root = ET.fromstring(xml_text)
    counts = {"passed": 0, "failed": 0, "skipped": 0, "failures": []}
    for case in root.iter("testcase"):
        outcome = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
        if outcome is None:
            counts["passed"] += 1
        elif outcome.tag == "skipped":
            counts["skipped"] += 1
        else:
            counts["failed"] += 1
            counts["failures"].append(f"{case.get('classname')}.{case.get('name')}: "
                                      f"{(outcome.get('message') or '')[:300]}")
    return counts


def pipeline_verdict(copy_s: float, views_s: float, step_s: float) -> dict:
    """How much of the trainer's throughput the data side costs (module doc, section 6)."""
    share = (copy_s + views_s) / (copy_s + views_s + step_s)
    return {"copy_s": copy_s, "views_s": views_s, "step_s": step_s, "pipeline_share": share,
            "keeps_up": share <= PIPELINE_SHARE_OK}


class Check:
    """Runs sections under a shared time budget and collects their results."""

    def __init__(self, budget_s: float):
        self.budget_s = budget_s
        self.started = time.perf_counter()
        self.results: dict[str, dict] = {}

    def remaining(self) -> float:
        return self.budget_s - (time.perf_counter() - self.started)

    def section(self, name: str, fn: Callable[[], dict]) -> dict:
        if self.remaining() <= 0:
            result = {"ok": False, "skipped": f"time budget of {self.budget_s:.0f} s spent"}
        else:
            start = time.perf_counter()
            try:
                result = {"ok": True, **fn()}
            except Exception as err:  # recorded, and the next section still runs
                result = {"ok": False, "error": f"{type(err).__name__}: {err}",
                          "traceback": traceback.format_exc(limit=5)}
            result["seconds"] = round(time.perf_counter() - start, 2)
        self.results[name] = result
        print(f"[{time.perf_counter() - self.started:6.0f} s] {name}: "
              f"{'ok' if result['ok'] else result.get('error') or result.get('skipped')}", flush=True)
        return result


def _device_info() -> dict:
    index = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    name = torch.cuda.get_device_name(index)
    return {"name": name, "capability": list(torch.cuda.get_device_capability(index)),
            "memory_gib": round(props.total_memory / 2**30, 1), "bf16": torch.cuda.is_bf16_supported(),
            "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "bf16_peak_tflops": bf16_peak_tflops(name)}


def _tests(timeout_s: float) -> dict:
    files = cuda_test_files(ROOT / "tests")
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", *files, "-k", "cuda", "-q", "-p", "no:cacheprovider",
               f"--junitxml={report}"]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=max(timeout_s, 30))
        counts = junit_counts(report.read_text()) if report.is_file() else {}
    if not counts:
        raise RuntimeError(f"pytest wrote no report (exit {proc.returncode}): {proc.stdout[-1500:]}{proc.stderr[-1500:]}")
    return {"files": files, "exit_code": proc.returncode, **counts, "ok_tests": proc.returncode == 0,
            "tail": proc.stdout[-1500:]}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _conv3d_bf16(device: torch.device) -> dict:
    errors = bf16_conv3d_errors(device)
    return {"relative_errors": errors, "correct": bf16_conv3d_correct(errors)}


def _augment(device: torch.device, batch: int, repeats: int) -> dict:
    from benchmarks import augment

    tables = {"3d 64x64x32": augment.rows_3d(batch, device)}
    for size, source in augment.VIEWS_2D:
        tables[f"2d {size} from {source}"] = augment.rows_2d(batch, size, source, device)
    out = {}
    for title, rows in tables.items():
        out[title] = {}
        for name, kit, _released, _n in rows:
            kit()
            _sync(device)
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                kit()
                _sync(device)
                times.append(time.perf_counter() - start)
            out[title][name] = round(1e3 * statistics.median(times) / batch, 4)
    return {"batch": batch, "ms_per_sample": out}


def _steps(device: torch.device, size: str, batches: dict, steps: int, warmup: int, peak: float | None) -> dict:
    from benchmarks import pretrain

    rows = []
    for dims in (2, 3):
        for precision, channels_last in (("fp32", False), ("bf16", False), ("bf16", True)):
            case = pretrain.Case(dims, size, "pcrl", batches[dims], precision, channels_last, steps, warmup)
            try:
                row = pretrain.run_case(case, device)
            except Exception as err:  # e.g. out of memory: the other cases still run
                row = None
            finally:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            if row is None:
                row = {"case": case.label, "method": case.method, "precision": precision,
                       "layout": "channels_last" if channels_last else "contiguous",
                       "error": f"{type(err).__name__}: {err}"}
            if "error" not in row and row.get("gflop_per_sample"):
                tflops = row["gflop_per_sample"] * row["batch"] / row["step_s"] / 1e3
                row["tflops"] = tflops
                row["share_of_bf16_peak"] = tflops / peak if peak else None
            rows.append(row)
            figures = (row["error"] if "error" in row
                       else f"{row['step_s']:.3f} s/step, {row['samples_per_s_model']:.1f} samples/s")
            print(f"    {row['case']} {precision}{' channels_last' if channels_last else ''}: {figures}", flush=True)
    return {"rows": rows}


def _pipeline(device: torch.device, size: str, batches: dict, step_rows: list[dict]) -> dict:
    from benchmarks import pretrain
    from pcrl_lib.config import get_profile

    profile = get_profile(size)
    gen = torch.Generator(device=device).manual_seed(0)
    out = {}
    for dims in (2, 3):
        batch = batches[dims]
        # uint8 as in the caches; 2D items are the source images the views are cut from (DataConfig.source_size_2d)
        shape = ((batch, 1, profile.data.source_size_2d, profile.data.source_size_2d) if dims == 2
                 else (batch, 2, 1, *profile.pretrain.cube_size))
        raw = torch.randint(0, 256, shape, dtype=torch.uint8)
        raw = raw.pin_memory() if device.type == "cuda" else raw
        views = pretrain._views(profile.pretrain, dims)

        def copy():
            return raw.to(device, non_blocking=True).float().div_(255)

        def copy_and_views():
            return views(copy(), gen)

        timings = {}
        for name, fn in (("copy", copy), ("copy_views", copy_and_views)):
            fn()
            _sync(device)
            times = []
            for _ in range(5):
                start = time.perf_counter()
                fn()
                _sync(device)
                times.append(time.perf_counter() - start)
            timings[name] = statistics.median(times)
        bf16 = [r for r in step_rows if r.get("precision") == "bf16" and "error" not in r
                and r["case"].startswith(f"{dims}D")]
        if not bf16:
            out[f"{dims}d"] = {"error": "no bf16 step row to compare with"}
            continue
        best = min(bf16, key=lambda r: r["step_s"])
        out[f"{dims}d"] = {"batch": batch, "raw_shape": list(shape), "layout": best["layout"],
                           **pipeline_verdict(timings["copy"], timings["copy_views"] - timings["copy"],
                                              best["step_s"])}
    return out


def _summary(results: dict) -> list[str]:
    lines = []
    dev = results.get("device", {})
    lines.append(f"device: {dev.get('name')} (bf16 peak {dev.get('bf16_peak_tflops')} TFLOP/s)")
    tests = results.get("tests", {})
    lines.append(f"tests: {tests.get('passed')} passed, {tests.get('failed')} failed, {tests.get('skipped')} skipped"
                 if "passed" in tests else f"tests: {tests.get('error') or tests.get('skipped')}")
    conv = results.get("conv3d_bf16", {})
    lines.append(f"bf16 conv3d weight gradient correct: {conv.get('correct')}")
    for row in results.get("steps", {}).get("rows", []):
        if "error" in row:
            lines.append(f"{row['case']}: {row['error']}")
            continue
        share = row.get("share_of_bf16_peak")
        lines.append(f"{row['case']} {row['precision']} {row['layout']}: {row['step_s']:.3f} s/step, "
                     f"{row['samples_per_s_model']:.1f} samples/s, peak {row['peak_mib']:.0f} MiB"
                     + (f", {row['tflops']:.1f} TFLOP/s = {100 * share:.1f} % of bf16 peak" if share else ""))
    for key, verdict in results.get("pipeline", {}).items():
        if isinstance(verdict, dict) and "keeps_up" in verdict:
            lines.append(f"pipeline {key}: copy {verdict['copy_s'] * 1e3:.1f} ms + views {verdict['views_s'] * 1e3:.1f}"
                         f" ms vs step {verdict['step_s'] * 1e3:.1f} ms: {100 * verdict['pipeline_share']:.0f} % of the"
                         f" time, keeps up: {verdict['keeps_up']}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="gpu_check.json", help="the JSON to write (default gpu_check.json)")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds after which sections are skipped")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per case")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if not torch.cuda.is_available():
        print(NO_CUDA)
        out.write_text(json.dumps({"cuda": False, "message": NO_CUDA, "torch": torch.__version__}, indent=1))
        return 0
    run_checks(out, torch.device("cuda"), budget_s=args.budget, steps=args.steps)
    return 0


def run_checks(out: Path, device: torch.device, *, budget_s: float = 420.0, size: str = "paper",
               batches: dict | None = None, steps: int = 5, warmup: int = 2, augment_batch: int = 16,
               augment_repeats: int = 7, run_tests: bool = True) -> dict:
    """Run the sections (module doc) on ``device`` and write ``out``; the arguments other than ``out`` and
    ``device`` are the GPU check's own values and exist so that a test can run every section small on a CPU."""
    batches = batches or PAPER_BATCH
    check = Check(budget_s)
    if device.type == "cuda":
        info = check.section("device", _device_info)
    else:
        info = check.section("device", lambda: {"name": "CPU", "bf16_peak_tflops": None})
    if run_tests:
        check.section("tests", lambda: _tests(min(240.0, check.remaining())))
    check.section("conv3d_bf16", lambda: _conv3d_bf16(device))
    check.section("augment", lambda: _augment(device, augment_batch, augment_repeats))
    rows = check.section("steps", lambda: _steps(device, size, batches, steps, warmup, info.get("bf16_peak_tflops")))
    check.section("pipeline", lambda: _pipeline(device, size, batches, rows.get("rows", [])))
    results = {"cuda": device.type == "cuda", **check.results}
    results["summary"] = _summary(results)
    out.write_text(json.dumps(results, indent=1, default=str))
    print("\n".join(results["summary"]))
    print(f"wrote {out} ({time.perf_counter() - check.started:.0f} s)")
    return results


if __name__ == "__main__":
    sys.exit(main())
