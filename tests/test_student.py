"""Student notebooks (pcrl_lib.student, ``python -m pcrl_lib.course student``): solutions out, checks in."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from pcrl_lib import course
from pcrl_lib.paths import notebooks_dir, repo_root
from pcrl_lib.student import MARKER, StudentError, student_notebook, write_student_course

SOLUTION_CELL = '''def window(hu, level, width):
    """HU -> [0, 1]."""
    ### BEGIN SOLUTION
    low = level - width / 2
    return ((hu - low) / width).clip(0, 1)
    ### END SOLUTION
'''
CHECK_CELL = '''window = exercises.check("ex_w", window, reference=viz.window, cases=[(1, 2, 3)])
### BEGIN HIDDEN TESTS
exercises.check("ex_w", window, reference=viz.window, cases=[(4, 5, 6)])
### END HIDDEN TESTS
print("done")'''


def _notebook(*sources, markdown=None):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    if markdown:
        nb.cells.append(nbformat.v4.new_markdown_cell(markdown))
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", text="old output")]
    nb.cells[0].execution_count = 4
    return nb


def test_solutions_become_not_implemented_at_their_indentation_and_hidden_tests_go():
    student, removed = student_notebook(_notebook(SOLUTION_CELL, CHECK_CELL,
                                                  markdown="Why?\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION"))
    solution, check_cell, answer = (c.source for c in student.cells)
    assert removed == 2
    assert solution == ('def window(hu, level, width):\n    """HU -> [0, 1]."""\n    # YOUR CODE HERE\n'
                        '    raise NotImplementedError()')
    assert "low" not in solution and "clip" not in solution
    assert check_cell == 'window = exercises.check("ex_w", window, reference=viz.window, cases=[(1, 2, 3)])\nprint("done")'
    assert answer == "Why?\nYOUR ANSWER HERE"
    assert student.cells[0].outputs == [] and student.cells[0].execution_count is None
    ast.parse(solution)


@pytest.mark.parametrize("source, message", [
    ("### BEGIN SOLUTION\nx = 1", "never closed"),
    ("x = 1\n### END SOLUTION", "without ### BEGIN SOLUTION"),
    ("### BEGIN SOLUTION\n### BEGIN HIDDEN TESTS\n### END HIDDEN TESTS\n### END SOLUTION", "inside an open"),
])
def test_unpaired_markers_are_named(source, message):
    with pytest.raises(StudentError, match=rf"t\.ipynb, cell 0.*{message}"):
        student_notebook(_notebook(source), "t.ipynb")


def test_the_output_folder_is_claimed_and_a_learners_work_is_kept(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    nbformat.write(_notebook(SOLUTION_CELL), source / "01_x.ipynb")
    out = tmp_path / "student"
    first = write_student_course(out, [source / "01_x.ipynb"])
    assert (out / MARKER).is_file() and first[0].solutions_removed == 1 and not first[0].kept
    worked = nbformat.read(out / "01_x.ipynb", as_version=4)
    worked.cells[0].source = worked.cells[0].source.replace("raise NotImplementedError()", "return hu")
    nbformat.write(worked, out / "01_x.ipynb")
    again = write_student_course(out, [source / "01_x.ipynb"])
    assert again[0].kept and "return hu" in (out / "01_x.ipynb").read_text(), "a learner's answer is not overwritten"
    write_student_course(out, [source / "01_x.ipynb"], force=True)
    assert "return hu" not in (out / "01_x.ipynb").read_text()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("mine")
    with pytest.raises(StudentError, match="not empty and was not written by this command"):
        write_student_course(foreign, [source / "01_x.ipynb"])
    (tmp_path / "file").write_text("x")
    with pytest.raises(StudentError, match="is a file"):
        write_student_course(tmp_path / "file", [source / "01_x.ipynb"])


def test_cli_refuses_a_foreign_folder_in_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    done = subprocess.run([sys.executable, "-m", "pcrl_lib.course", "student", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "not written by this command" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


# --------------------------------------------------------------------------- the course's own exercises

COURSE_FILES = sorted({nb.path for nb in course.discover(notebooks_dir())})


def _exercise_cells(nb):
    solutions = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
    checks = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    return solutions, checks


def _solution_lines(source):
    lines, inside = [], False
    for line in source.splitlines():
        if line.strip() in ("### BEGIN SOLUTION", "### END SOLUTION"):
            inside = line.strip() == "### BEGIN SOLUTION"
        elif inside and line.strip() and not line.strip().startswith("#"):
            lines.append(line)
    return lines


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    done = subprocess.run([sys.executable, "-m", "pcrl_lib.course", "student", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return out


def test_the_course_has_its_exercises():
    """Issue 17: at least 2 exercises in notebooks 01, 02, 03, 05, 08 and at least 12 in all, each a solution
    cell followed by its check cell."""
    counts = {}
    for path in COURSE_FILES:
        nb = nbformat.read(path, as_version=4)
        solutions, checks = _exercise_cells(nb)
        ids = [c.metadata["nbgrader"]["grade_id"] for c in solutions]
        assert [c.metadata["nbgrader"]["grade_id"] for c in checks] == [f"{i}_check" for i in ids], path.name
        for cell in solutions:
            index = nb.cells.index(cell)
            follower = nb.cells[index + 1]
            assert follower.metadata.get("nbgrader", {}).get("grade"), f"{path.name}: no check after {cell.metadata}"
            tree = ast.parse(cell.source)
            assert len(tree.body) == 1 and isinstance(tree.body[0], ast.FunctionDef), \
                f"{path.name}: a solution cell defines one function and does nothing else at top level"
            assert f"exercises.check(\"{cell.metadata['nbgrader']['grade_id']}\", {tree.body[0].name}," \
                in follower.source, f"{path.name}: the check cell checks the function the solution cell defines"
            assert _solution_lines(cell.source), f"{path.name}: empty solution"
        counts[path.name[:2]] = len(ids)
    assert all(counts.get(n, 0) >= 2 for n in ("01", "02", "03", "05", "08")), counts
    assert sum(counts.values()) >= 12, counts


def test_student_notebooks_hold_no_solution_text_and_every_exercise_raises(student_dir):
    for path in COURSE_FILES:
        original = nbformat.read(path, as_version=4)
        student = nbformat.read(student_dir / path.name, as_version=4)
        assert len(student.cells) == len(original.cells)
        for before, after in zip(original.cells, student.cells):
            assert "### BEGIN" not in after.source and "### END" not in after.source
            leaked = [line for line in _solution_lines(before.source) if line in after.source.splitlines()]
            assert not leaked, f"{path.name}: solution text left in the student version: {leaked}"
            if before.metadata.get("nbgrader", {}).get("solution") and before.cell_type == "code":
                function = ast.parse(after.source).body[0]
                body = [s for s in function.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
                assert ast.unparse(body[0]) == "raise NotImplementedError()", f"{path.name}: {function.name}"


def _papermill(notebook: Path, out: Path, strict: bool, tmp_path: Path):
    env = {**os.environ, "PCRL_PROFILE": "smoke", "TQDM_DISABLE": "1", "PCRL_HOME": str(repo_root())}
    if strict:
        env["PCRL_EXERCISES"] = "strict"
    else:
        env.pop("PCRL_EXERCISES", None)
    return subprocess.run([sys.executable, "-m", "papermill", str(notebook), str(out), "-k", course.ensure_kernel(),
                           "-p", "OUTPUT_DIR", str(tmp_path / "run"), "--execution-timeout", "600", "--cwd",
                           str(notebook.parent)], capture_output=True, text=True, timeout=900, env=env)


def test_a_student_notebook_runs_end_to_end_and_fails_its_checks_in_strict_mode(student_dir, tmp_path):
    """The course never breaks on an unsolved exercise (the library's function stands in, with a note); a grader's
    strict run fails at the first unsolved check."""
    name = "02_augmentations.ipynb"
    ids = [c.metadata["nbgrader"]["grade_id"] for c in _exercise_cells(nbformat.read(notebooks_dir() / name, 4))[0]]
    assert ids
    done = _papermill(student_dir / name, tmp_path / "lenient.ipynb", strict=False, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    executed = (tmp_path / "lenient.ipynb").read_text()
    for ex in ids:
        assert f"exercise {ex}: not solved yet" in executed
    record = json.loads((tmp_path / "run" / "records" / "02_augmentations.json").read_text())
    assert record["exercises"] == {ex: "not solved" for ex in ids}
    done = _papermill(student_dir / name, tmp_path / "strict.ipynb", strict=True, tmp_path=tmp_path)
    assert done.returncode != 0
    assert "ExerciseNotSolved" in done.stderr + (tmp_path / "strict.ipynb").read_text()
    assert f"exercise {ids[0]}: not solved yet" in (tmp_path / "strict.ipynb").read_text()
