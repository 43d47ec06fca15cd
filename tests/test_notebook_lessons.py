"""Notebooks that serve several lessons run in each of them (smoke profile).

nbval (``pytest notebooks --nbval-lax``) executes every notebook file once, with its parameters' defaults; a lesson
that runs the same file with other fixed parameters (``04_pretrain_3d``: ``03_pretrain.ipynb`` with ``DIMS = 3``)
is executed here through papermill, as the course runner does. It writes its record and exports to
``runs/smoke`` (``OUTPUT_DIR`` unset), where nbval's notebooks write theirs, so the downstream notebooks find the
3D encoders as they would after the course runner.
"""

import ast
import json

import pytest

from pcrl_lib import course, paths

OTHER_LESSONS = [nb for nb in course.discover()
                 if any(str(value) != str(ast.literal_eval(nb.parameters()[name]["default"]))
                        for name, value in nb.fixed.items())]


def test_the_3d_pretraining_lesson_is_among_them():
    assert [nb.stem for nb in OTHER_LESSONS] == ["04_pretrain_3d"]


@pytest.mark.parametrize("nb", OTHER_LESSONS, ids=lambda nb: nb.stem)
def test_lesson_runs_with_its_fixed_parameters(nb, tmp_path):
    import papermill

    record = paths.runs_dir("smoke") / "records" / f"{nb.stem}.json"
    record.unlink(missing_ok=True)
    papermill.execute_notebook(str(nb.path), str(tmp_path / f"{nb.stem}.ipynb"),
                               parameters={"PROFILE": "smoke", **nb.fixed}, kernel_name=course.ensure_kernel(),
                               cwd=str(nb.path.parent), progress_bar=False, execution_timeout=900, log_output=False)
    written = json.loads(record.read_text())
    assert written["notebook"] == nb.stem and written["status"] == "ok"
