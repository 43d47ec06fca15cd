"""pcrl_lib.checkpoint: atomic writes, weights_only loading, RNG capture/restore."""

from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest
import torch

from pcrl_lib.checkpoint import (atomic_save, capture_rng_state, load_checkpoint, remove_stale_temporaries,
                                 restore_rng_state)
from pcrl_lib.fileio import atomic_write_bytes, atomic_write_json


def _draw(gens: dict) -> tuple:
    return (torch.rand(3).tolist(), np.random.rand(3).tolist(), np.random.randn(1).tolist(),
            [random.random() for _ in range(3)], random.gauss(0, 1),
            {name: torch.rand(2, generator=g).tolist() for name, g in gens.items()})


def test_atomic_save_roundtrip_weights_only_and_leaves_no_temporaries(tmp_path):
    obj = {"w": torch.arange(6.0).view(2, 3), "step": 7, "cfg": {"size": (64, 64, 32), "x": None}}
    path = atomic_save(obj, tmp_path / "sub" / "last.pt")
    loaded = torch.load(path, weights_only=True)
    assert torch.equal(loaded["w"], obj["w"]) and loaded["step"] == 7 and loaded["cfg"] == obj["cfg"]
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_failed_write_keeps_old_file_and_cleans_up(tmp_path):
    path = atomic_save({"step": 1}, tmp_path / "last.pt")
    with pytest.raises(Exception):
        atomic_save({"bad": lambda: 0}, path)  # lambdas cannot be pickled: the write fails half-way
    assert load_checkpoint(path) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_atomic_write_json(tmp_path):
    path = atomic_write_json({"a": [1, 2], "b": None}, tmp_path / "x.json")
    assert json.loads(path.read_text()) == {"a": [1, 2], "b": None}


def test_remove_stale_temporaries(tmp_path):
    (tmp_path / ".tmp-last.pt.abc").write_bytes(b"partial")
    (tmp_path / "last.pt").write_bytes(b"keep")
    assert remove_stale_temporaries(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    assert remove_stale_temporaries(tmp_path / "missing") == 0


def test_load_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt.pt"):
        load_checkpoint(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"obj": np.random.default_rng(0)}, foreign)  # an arbitrary object: refused by weights_only
    with pytest.raises(ValueError, match="weights_only"):
        load_checkpoint(foreign)
    not_dict = tmp_path / "list.pt"
    torch.save([1, 2], not_dict)
    with pytest.raises(ValueError, match="expected a dict"):
        load_checkpoint(not_dict)


def test_rng_capture_restore_roundtrip_through_weights_only_file(tmp_path):
    gens = {"views": torch.Generator().manual_seed(1), "method": torch.Generator().manual_seed(2)}
    torch.manual_seed(3)
    np.random.seed(4)
    random.seed(5)
    np.random.randn(1)  # leaves a cached Gaussian in NumPy's state: it must survive too
    random.gauss(0, 1)  # likewise Python's gauss_next
    state = capture_rng_state(gens)
    path = atomic_save({"rng": state}, tmp_path / "rng.pt")
    expected = _draw(gens)
    _draw(gens)  # move every stream on
    restore_rng_state(load_checkpoint(path)["rng"], gens)
    assert _draw(gens) == expected


def test_restore_requires_every_generator(tmp_path):
    state = capture_rng_state({"views": torch.Generator()})
    with pytest.raises(KeyError, match="method"):
        restore_rng_state(state, {"views": torch.Generator(), "method": torch.Generator()})


def test_outputs_get_ordinary_permissions(tmp_path):
    umask = os.umask(0o022)  # what a user's shell usually has; mkstemp would have made the files 0600
    try:
        paths = [atomic_save({"w": torch.ones(2)}, tmp_path / "last.pt"), atomic_write_json([], tmp_path / "h.json"),
                 atomic_write_bytes(b"abc", tmp_path / "raw.bin")]
    finally:
        os.umask(umask)
    assert [oct(p.stat().st_mode & 0o777) for p in paths] == ["0o644"] * 3
    assert (tmp_path / "raw.bin").read_bytes() == b"abc"


def test_a_checkpoint_refused_by_weights_only_is_one_line_naming_the_file(tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"obj": np.random.default_rng(0)}, foreign)
    with pytest.raises(ValueError) as info:
        load_checkpoint(foreign)
    message = str(info.value)
    assert "\n" not in message and str(foreign) in message
    assert "non-tensor objects" in message and "not written by this kit" in message
    assert "weights_only=False" not in message and "arbitrary code" not in message  # torch's unsafe advice
    assert info.value.__cause__ is None and info.value.__suppress_context__
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"garbage\.pt cannot be read .*corrupt") as info:
        load_checkpoint(garbage)
    assert "\n" not in str(info.value) and "weights_only=False" not in str(info.value)
