"""pcrl_lib.fileio: the one home of atomic writes and JSON helpers; the package's import graph has no cycle."""

from __future__ import annotations

import ast
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from pcrl_lib.data.cache import atomic_save_npy, atomic_save_npz
from pcrl_lib.fileio import (TMP_PREFIX, atomic_path, atomic_write_text, fingerprint, folder_problem, jsonable,
                             read_json)

PACKAGE = Path(__file__).resolve().parent.parent / "pcrl_lib"
# A reader that dispatches on what it finds (a folder → the DICOM reader, which returns the same Volume type);
# both directions are function-level and stay inside data/.
def test_atomic_path_replaces_on_success_and_leaves_the_old_file_on_error(tmp_path):
    target = tmp_path / "sub" / "scan.nii.gz"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(TMP_PREFIX) and tmp.name.endswith(".nii.gz")
        tmp.write_bytes(b"first")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("writer failed")
    assert target.read_bytes() == b"first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["scan.nii.gz"]


def test_cache_arrays_are_written_like_every_other_file(tmp_path):
    # Before: the data caches had their own writer (no fsync, ".name.PID.tmp" temporaries); now one writer.
    umask = os.umask(0o022)
    try:
        npy = atomic_save_npy(tmp_path / "a.npy", np.arange(6).reshape(2, 3)[:, ::2])
        npz = atomic_save_npz(tmp_path / "b.npz", x=np.ones(2))
    finally:
        os.umask(umask)
    assert np.load(npy).tolist() == [[0, 2], [3, 5]] and np.load(npz)["x"].tolist() == [1.0, 1.0]
    assert [oct(p.stat().st_mode & 0o777) for p in (npy, npz)] == ["0o644"] * 2
    with pytest.raises(TypeError):
        atomic_save_npz(tmp_path / "b.npz", x=np.ones(2), **{"file": 1})  # np.savez refuses 'file': old file kept
    assert np.load(npz)["x"].tolist() == [1.0, 1.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy", "b.npz"]


def test_jsonable_read_json_and_fingerprint(tmp_path):
    value = jsonable({1: np.float32(0.5), "t": (np.int64(2), math.nan), "p": Path("x")})
    assert value == {"1": 0.5, "t": [2, None], "p": "x"}
    path = atomic_write_text(tmp_path / "v.json", json.dumps(value))
    assert read_json(path) == (value, None)
    (tmp_path / "bad.json").write_text("{")
    assert read_json(tmp_path / "bad.json")[0] is None and "JSONDecodeError" in read_json(tmp_path / "bad.json")[1]
    assert read_json(tmp_path / "missing.json")[1].startswith("FileNotFoundError")
    assert fingerprint({"b": 1, "a": [1, 2]}) == fingerprint({"a": [1, 2], "b": 1}) and len(fingerprint(1)) == 16


def _imports() -> dict[str, set[str]]:
    """Module → the package modules it imports, at module level or inside functions."""
    modules = {}
    for file in PACKAGE.rglob("*.py"):
        parts = list(file.relative_to(PACKAGE.parent).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = file
    graph: dict[str, set[str]] = {}
    for name, file in modules.items():
        package = name.split(".") if file.name == "__init__.py" else name.split(".")[:-1]
        targets = set()
        tree = ast.parse(file.read_text())
        # The `if __name__ == "__main__":` block runs only when the file is the program (`python -m ...`), never
        # when the module is imported: its imports are not arrows of the module graph.
        tree.body = [n for n in tree.body if not (isinstance(n, ast.If) and "__main__" in ast.unparse(n.test))]
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
                module = ".".join(p for p in (base, node.module or "") if p)
                targets |= {f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module for a in node.names}
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
        resolved = set()
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            # A package importing its own submodules (re-exports) is not an arrow back up.
            if target and target != name and not target.startswith(name + "."):
                resolved.add(target)
        graph[name] = resolved
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module."""
    reach = {}
    for start in graph:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        reach[start] = seen
    found = []
    for a in graph:
        component = {a} | {b for b in reach[a] if a in reach[b]}
        if len(component) > 1 and component not in found:
            found.append(component)
    return found


def test_the_package_import_graph_has_no_cycle():
    graph = _imports()
    assert "pcrl_lib.course" not in graph["pcrl_lib.report"]   # the report writes through fileio
    # The two training loops share pcrl_lib.training and pcrl_lib.runs, not each other's helpers.
    assert "pcrl_lib.train" not in graph["pcrl_lib.finetune.loop"]
    assert not {m for m in graph["pcrl_lib.train"] if m.startswith("pcrl_lib.finetune")}
    assert _cycles(graph) == []


def test_folder_problem_creates_the_folder_or_says_what_is_wrong(tmp_path):
    assert folder_problem(tmp_path / "a" / "b") is None and (tmp_path / "a" / "b").is_dir()
    (tmp_path / "file").write_text("x")
    assert folder_problem(tmp_path / "file") == "is a file"
    assert folder_problem(tmp_path / "file" / "sub") == "cannot be created (Not a directory)"
