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
    last_code = [c for c in cells if c.cell_type == "code"][-1]
    assert "run.record(" in last_code.source, "the last code cell writes the notebook's record (run.record)"
    assert ".cuda(" not in code


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda nb: nb.stem)
def test_ends_with_what_you_learned_next_and_references(nb):
    last = nbformat.read(nb.path, as_version=4).cells[-1]
    assert last.cell_type == "markdown" and "## What you learned" in last.source and "Next" in last.source
    assert "### References" in last.source and "2109.04379" in last.source, "the PCRL paper is cited"
    assert "github.com/Luchixiang/PCRL" in last.source, "the released code is cited"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda nb: nb.stem)
def test_setup_and_record_are_one_library_call_each(nb):
    """The cell after ``parameters`` holds imports and one ``lesson.start(...)`` call; the record is one
    ``run.record(...)`` call (what they share lives in pcrl_lib.lesson)."""
    cells = nbformat.read(nb.path, as_version=4).cells
    index = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
    setup = next(c for c in cells[index + 1:] if c.cell_type == "code")
    statements = [s for s in ast.parse(setup.source).body if not isinstance(s, (ast.Import, ast.ImportFrom))]
    assert len(statements) == 1 and "lesson.start(" in ast.unparse(statements[0]), \
        f"setup cell: imports + run = lesson.start(...), found {len(statements)} statements"
    record = [c for c in cells if c.cell_type == "code"][-1]
    calls = [s for s in ast.parse(record.source).body if "run.record(" in ast.unparse(s)]
    assert len(calls) == 1


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda nb: nb.stem)
def test_notebooks_define_no_functions_or_classes(nb):
    """Notebooks call the library; what they would define belongs in pcrl_lib (tested, reused, one copy).
    The one exception is an exercise's solution cell (nbgrader ``solution``), where the learner writes a function."""
    notebook = nbformat.read(nb.path, as_version=4)
    defined = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code" or cell.metadata.get("nbgrader", {}).get("solution"):
            continue
        # IPython magics and shell escapes are not Python: blank them before parsing.
        source = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in cell.source.splitlines())
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.append(f"cell {index}: {type(node).__name__} {node.name}")
    assert not defined, f"{nb.path.name} defines {defined}; move them to pcrl_lib"
