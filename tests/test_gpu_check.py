"""benchmarks/gpu_check.py: the no-GPU answer, its helpers, and every section run small on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from benchmarks import gpu_check as G


def test_without_cuda_it_says_so_and_exits_0(repo_root, tmp_path):
    out = tmp_path / "check.json"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--out", str(out)], cwd=repo_root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "no CUDA device: nothing to check"
    assert json.loads(out.read_text())["cuda"] is False


@pytest.mark.parametrize("name, peak", [("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0),
                                        ("NVIDIA H100 NVL", 835.0), ("NVIDIA H200", 989.0),
                                        ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA L40S", 362.0), ("NVIDIA L4", 121.0),
                                        ("NVIDIA A10G", 70.0), ("Tesla V100-SXM2-16GB", None)])
def test_bf16_peak_by_device_name(name, peak):
    assert G.bf16_peak_tflops(name) == peak


def test_cuda_test_files_are_the_ones_that_skip_without_cuda(repo_root):
    files = G.cuda_test_files(repo_root / "tests")
    assert "tests/test_precision.py" in files and "tests/transforms/test_views.py" in files
    assert "tests/test_gpu_check.py" not in files


def test_junit_counts():
    xml = ('<testsuites><testsuite><testcase classname="a" name="ok"/>'
           '<testcase classname="a" name="bad"><failure message="assert 1 == 2"/></testcase>'
           '<testcase classname="a" name="err"><error message="boom"/></testcase>'
           '<testcase classname="a" name="skip"><skipped message="needs CUDA"/></testcase></testsuite></testsuites>')
    counts = G.junit_counts(xml)
    assert (counts["passed"], counts["failed"], counts["skipped"]) == (1, 2, 1)
    assert counts["failures"] == ["a.bad: assert 1 == 2", "a.err: boom"]


def test_pipeline_verdict():
    assert G.pipeline_verdict(0.01, 0.01, 0.18) == pytest.approx(
        {"copy_s": 0.01, "views_s": 0.01, "step_s": 0.18, "pipeline_share": 0.1, "keeps_up": True})
    assert not G.pipeline_verdict(0.05, 0.10, 0.20)["keeps_up"]


def test_a_failing_section_is_recorded_and_the_next_runs(capsys):
    check = G.Check(budget_s=60)

    def broken():
        raise RuntimeError("CUDA out of memory")

    assert check.section("first", broken)["error"] == "RuntimeError: CUDA out of memory"
    assert check.section("second", lambda: {"x": 1}) == {"ok": True, "x": 1, "seconds": pytest.approx(0, abs=1)}
    check.budget_s = 0
    assert check.section("third", lambda: {"x": 2})["skipped"].startswith("time budget")
    assert "first: RuntimeError: CUDA out of memory" in capsys.readouterr().out


def test_every_section_runs_small_on_cpu(tmp_path):
    """The GPU check's code paths (all but the pytest run) at smoke size on the CPU: what it writes on a GPU."""
    torch.set_num_threads(1)
    out = tmp_path / "check.json"
    results = G.run_checks(out, torch.device("cpu"), size="smoke", batches={2: 1, 3: 1}, steps=1, warmup=0,
                           augment_batch=1, augment_repeats=1, run_tests=False)
    assert json.loads(out.read_text())["summary"] == results["summary"]
    sections = ("device", "conv3d_bf16", "augment", "steps", "pipeline")
    assert {name: results[name]["ok"] for name in sections} == dict.fromkeys(sections, True)
    rows = results["steps"]["rows"]
    assert [(r["precision"], r["layout"]) for r in rows] == [("fp32", "contiguous"), ("bf16", "contiguous"),
                                                             ("bf16", "channels_last")] * 2
    assert all(r["step_s"] > 0 and r["peak_mib"] > 0 for r in rows)
    assert all("keeps_up" in results["pipeline"][dims] for dims in ("2d", "3d"))
    assert any(name.startswith("3d") for name in results["augment"]["ms_per_sample"])
