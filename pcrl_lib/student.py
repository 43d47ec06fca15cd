"""Student versions of the course notebooks: solutions removed, checks kept (the nbgrader convention).

``python -m pcrl_lib.course student --out DIR`` writes every course notebook to ``DIR``; in each code cell

* every region from ``### BEGIN SOLUTION`` to ``### END SOLUTION`` becomes ``# YOUR CODE HERE`` +
  ``raise NotImplementedError()`` at the marker's indentation;
* every region from ``### BEGIN HIDDEN TESTS`` to ``### END HIDDEN TESTS`` is removed;
* outputs and execution counts are cleared.

Markdown may hold a solution between the same markers (a written answer); it becomes ``YOUR ANSWER HERE``. The
student notebooks still run end to end: an unsolved exercise's check (:func:`pcrl_lib.exercises.check`) prints a
note and hands the library's function to the cells that follow. nbgrader's ``generate_assignment`` understands the
same markers and cell metadata, for teachers who grade with it.

``DIR`` is created if missing; a non-empty folder is used only when this command wrote it (marker
``.pcrl-student.json``), and a notebook there that differs from the one it would write (a learner's work) is kept
unless ``--force``.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import nbformat

from .fileio import atomic_write_text, folder_problem

MARKER = ".pcrl-student.json"
BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
_MARKER_LINE = re.compile(r"^(\s*)(### (?:BEGIN|END) (?:SOLUTION|HIDDEN TESTS))\s*$")


class StudentError(ValueError):
    """A notebook whose markers do not pair up, or an output folder the command may not write to."""


def _strip(source: str, where: str, code: bool) -> str:
    """``source`` with solution regions replaced and hidden-test regions removed (see the module docstring)."""
    out: list[str] = []
    open_marker: str | None = None
    for number, line in enumerate(source.splitlines(), start=1):
        match = _MARKER_LINE.match(line)
        marker = match.group(2) if match else None
        if marker in (BEGIN_SOLUTION, BEGIN_HIDDEN):
            if open_marker:
                raise StudentError(f"{where}, line {number}: {marker} inside an open {open_marker}")
            open_marker = marker
            if marker == BEGIN_SOLUTION:
                indent = match.group(1)
                out += [f"{indent}# YOUR CODE HERE", f"{indent}raise NotImplementedError()"] if code else \
                       ["YOUR ANSWER HERE"]
            continue
        if marker in (END_SOLUTION, END_HIDDEN):
            expected = BEGIN_SOLUTION if marker == END_SOLUTION else BEGIN_HIDDEN
            if open_marker != expected:
                raise StudentError(f"{where}, line {number}: {marker} without {expected}")
            open_marker = None
            continue
        if open_marker is None:
            out.append(line)
    if open_marker:
        raise StudentError(f"{where}: {open_marker} is never closed")
    return "\n".join(out)


def student_notebook(nb: nbformat.NotebookNode, name: str = "notebook") -> tuple[nbformat.NotebookNode, int]:
    """A copy of ``nb`` with solutions and hidden tests stripped and outputs cleared; and how many solution
    regions it removed. ``name`` only labels errors (cell numbers count from 0)."""
    copy = nbformat.from_dict(json.loads(json.dumps(nb)))
    removed = 0
    for index, cell in enumerate(copy.cells):
        removed += sum(1 for line in cell.source.splitlines()
                       if (m := _MARKER_LINE.match(line)) and m.group(2) == BEGIN_SOLUTION)
        cell.source = _strip(cell.source, f"{name}, cell {index}", cell.cell_type == "code")
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return copy, removed


@dataclass
class Written:
    path: Path
    solutions_removed: int
    kept: bool = False      # an existing, different notebook was kept (a learner's work)


def _claim(out: Path) -> None:
    problem = folder_problem(out)
    if problem:
        raise StudentError(f"--out {out} {problem}; choose a writable folder (it is created if missing)")
    if any(out.iterdir()) and not (out / MARKER).is_file():
        raise StudentError(f"--out {out} is not empty and was not written by this command; choose an empty or new "
                           "folder")
    if not (out / MARKER).is_file():
        stamp = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        atomic_write_text(out / MARKER, json.dumps({"kind": "student notebooks", "created": stamp}) + "\n")


def write_student_course(out: str | Path, notebooks: Iterable[Path], *, force: bool = False) -> list[Written]:
    """Write the student version of each notebook in ``notebooks`` into ``out`` (see the module docstring)."""
    out = Path(out).expanduser().resolve()
    _claim(out)
    written = []
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        student, removed = student_notebook(nb, path.name)
        text = nbformat.writes(student) + "\n"
        target = out / path.name
        if target.exists() and not force and target.read_text(encoding="utf-8") != text:
            written.append(Written(target, removed, kept=True))
            continue
        atomic_write_text(target, text)
        written.append(Written(target, removed))
    return written
