"""Every course notebook follows the course's conventions (checked statically; nbval executes them): see the README's
notebook section."""

import ast
import re

import nbformat
import pytest

from pcrl_lib.course import SHARED_PARAMETERS, discover
from pcrl_lib.paths import notebooks_dir

NOTEBOOKS = discover(notebooks_dir())


def test_there_are_notebooks():
    assert NOTEBOOKS and NOTEBOOKS[0].stem == "00_overview"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda nb: nb.stem)
def test_conventions(nb):
    notebook = nbformat.read(nb.path, as_version=4)
    nbformat.validate(notebook)
    cells = notebook.cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# "), "first cell: a title"
    assert "learn" in cells[0].source.lower() and "time" in cells[0].source.lower(), "title: what you learn + time"
    tagged = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    names = set(re.findall(r"^([A-Z_][A-Z0-9_]*)\s*=", tagged[0].source, flags=re.M))
    assert set(SHARED_PARAMETERS) <= names, f"missing shared parameters {set(SHARED_PARAMETERS) - names}"
    assert 'os.environ.get("PCRL_PROFILE", "quick")' in tagged[0].source
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in cells if c.cell_type == "code"), \
        "notebooks are committed without outputs"
    code = "\n".join(c.source for c in cells if c.cell_type == "code")
    assert "from pcrl_lib" in code or "import pcrl_lib" in code
    assert "write_record(" in cells[-1].source, "the last cell writes the notebook's record"
    assert ".cuda(" not in code


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda nb: nb.stem)
def test_notebooks_define_no_functions_or_classes(nb):
    """Notebooks call the library; what they would define belongs in pcrl_lib (tested, reused, one copy)."""
    notebook = nbformat.read(nb.path, as_version=4)
    defined = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        # IPython magics and shell escapes are not Python: blank them before parsing.
        source = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in cell.source.splitlines())
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.append(f"cell {index}: {type(node).__name__} {node.name}")
    assert not defined, f"{nb.path.name} defines {defined}; move them to pcrl_lib"
