"""One training step of the kit against the authors' released code (benchmarks/released_step.py).

Skipped unless ``PCRL_RELEASED_CODE`` names a checkout of the authors' repository and its dependencies import
(see the benchmark's docstring), e.g.::

    PYTHONPATH=DEPS PCRL_RELEASED_CODE=~/PCRL python -m pytest tests/test_released_step.py

Small sizes (batch 2, 2D 64², 3D 8³ at the released width 32, K = 256): one comparison takes a few seconds.
"""

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

CHECKOUT = os.environ.get("PCRL_RELEASED_CODE")
pytestmark = pytest.mark.skipif(not CHECKOUT, reason="PCRL_RELEASED_CODE (a checkout of the authors' code) not set")

SMALL = {"batch": 2, "K": 256, "n_data": 50}
SIZE = {2: (64, 64), 3: (8, 8, 8)}
TERMS = ("nce_a", "nce_b", "nce_b_mix", "mse_a_ord", "mse_b_ord", "mse_a_hyb", "mse_b_hyb", "total")
WEIGHTS = ("trained weights (E_o, decoder, heads, gate)", "momentum encoder E_m", "queue", "BN statistics of E_o and E_m",
           "BN statistics of the decoder")


@pytest.fixture(scope="module")
def bench():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "released_step.py"
    spec = importlib.util.spec_from_file_location("released_step", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def released(bench):
    return bench.import_released(CHECKOUT)


@pytest.mark.parametrize("dims", [2, 3])
def test_float64_step_equals_the_released_step(bench, released, dims):
    result = bench.compare(released, dims, torch.float64, size=SIZE[dims], **SMALL)
    assert max(result.delta[t] for t in TERMS) < 1e-9, result.delta
    assert max(result.delta[w] for w in WEIGHTS) < 1e-12, result.delta
    assert result.kit.moved > 1e-6  # the step did move the weights


def test_float32_step_agrees_with_the_released_step(bench, released):
    result = bench.compare(released, 2, torch.float32, size=SIZE[2], **SMALL)
    assert max(result.delta[t] for t in TERMS) < 1e-5, result.delta
    assert max(result.delta[w] for w in WEIGHTS) < 1e-6, result.delta


def test_kit_switches_are_what_differs(bench, released):
    # key_mix="unit" changes only the mixed-key term; nce_exact=True every contrastive term; the MSE terms never.
    # Batch 4: its mixup permutation (seed 0) is not the identity, which would mix nothing.
    unit = bench.compare(released, 2, torch.float64, size=SIZE[2], key_mix="unit", **{**SMALL, "batch": 4})
    assert not torch.equal(unit.draws["perm"], torch.arange(4))
    assert unit.delta["nce_b_mix"] > 1e-6 and max(unit.delta[t] for t in ("nce_a", "nce_b")) < 1e-9
    exact = bench.compare(released, 2, torch.float64, size=SIZE[2], nce_exact=True, **SMALL)
    assert min(exact.delta[t] for t in ("nce_a", "nce_b", "nce_b_mix")) > 1e-6
    assert max(exact.delta[t] for t in ("mse_a_ord", "mse_b_ord", "mse_a_hyb", "mse_b_hyb")) < 1e-12
