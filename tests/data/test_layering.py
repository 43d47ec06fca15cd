"""The data side stays below the training side: nothing under pcrl_lib/data imports fine-tuning, training, models
or checkpoints (lazy imports inside functions included), and patient splits have one home, pcrl_lib/data/splits.py."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pcrl_lib

LIBRARY = Path(pcrl_lib.__file__).parent
ABOVE_DATA = ("pcrl_lib.finetune", "pcrl_lib.train", "pcrl_lib.models", "pcrl_lib.checkpoint", "pcrl_lib.pcrl")


def _imports(path: Path) -> set[str]:
    """Absolute names of the modules ``path`` imports (``from . import x`` → ``package.x``)."""
    package = ".".join(path.relative_to(LIBRARY.parent).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def test_data_imports_nothing_from_the_training_side():
    arrows = sorted(f"{path.relative_to(LIBRARY)} → {name}" for path in (LIBRARY / "data").rglob("*.py")
                    for name in _imports(path) if name.startswith(ABOVE_DATA))
    assert arrows == [], "pcrl_lib/data must not import the training side; move the code to finetune/ instead"


def test_patient_splits_and_label_fractions_live_in_data_splits():
    # Public functions named *_split(s) or split_* (official_split reads NIH's list files, it splits nothing).
    pattern = re.compile(r"^def ([a-z]\w*_splits?|split_\w+|sample_fraction)\(", re.M)
    elsewhere = sorted(f"{path.relative_to(LIBRARY)}: {name}" for path in LIBRARY.rglob("*.py")
                       if path != LIBRARY / "data" / "splits.py"
                       for name in pattern.findall(path.read_text()) if name != "official_split")
    assert elsewhere == []
