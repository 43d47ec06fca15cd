"""The papermill course runner on tiny notebooks: parameter injection, failure report, resume, records."""

import json
import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from pcrl_lib import course

# The comments hold a second "=", which papermill's own inspection skips (the runner must still inject them).
PARAMS = """PROFILE = "quick"
DATA_ROOT = None  # None = demo data
OUTPUT_DIR = None  # None = runs/<PROFILE>
SEED = 0
DEVICE = "auto"
SCALE = 2  # a notebook's own knob
"""


def _write_nb(path, body, params=PARAMS):
    nb = new_notebook()
    cell = new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


RECORD = """
from pcrl_lib.course import write_record
write_record(OUTPUT_DIR, "{stem}", figures={{"scaled": SCALE * 10, "profile": PROFILE}})
"""


@pytest.fixture
def nbdir(tmp_path):
    d = tmp_path / "notebooks"
    d.mkdir()
    _write_nb(d / "00_first.ipynb", RECORD.format(stem="00_first"))
    _write_nb(d / "01_second.ipynb", RECORD.format(stem="01_second"))
    (d / "README.ipynb").write_text("{}")  # not NN_name: not part of the course
    return d


def _run(nbdir, out, **kw):
    logs = []
    outcomes = course.run("smoke", output_dir=out, notebooks_dir=nbdir, prepare=False, log=logs.append, **kw)
    return outcomes, logs


def test_discover_and_select(nbdir):
    names = [nb.stem for nb in course.discover(nbdir)]
    assert names == ["00_first", "01_second"]
    assert [nb.stem for nb in course.select(course.discover(nbdir), "01")] == ["01_second"]
    with pytest.raises(course.CourseError, match=r"unknown notebook 07; valid: 00_first, 01_second"):
        course.select(course.discover(nbdir), "07")


def test_run_injects_parameters_and_collects_records(nbdir, tmp_path):
    out = tmp_path / "run"
    outcomes, logs = _run(nbdir, out, params={"SCALE": 7})
    assert [o.status for o in outcomes] == ["ok", "ok"]
    rec = json.loads((out / "records" / "00_first.json").read_text())
    assert rec["figures"] == {"scaled": 70, "profile": "smoke"} and rec["status"] == "ok"
    executed = nbformat.read(out / "notebooks" / "00_first.ipynb", as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)
    summary = json.loads((out / "summary.json").read_text())
    assert [r["status"] for r in summary["notebooks"]] == ["ok", "ok"]
    table = (out / "summary.md").read_text()
    assert "| 00_first | ok |" in table and "scaled = 70" in table
    walls = [r["wall_s"] for r in summary["notebooks"]]
    assert summary["total_wall_s"] == pytest.approx(sum(walls), abs=0.1) and summary["output_bytes"] > 0
    assert f"| **total** | | {summary['total_wall_s']:.1f} | output folder" in table


def test_resume_skips_done_notebooks_unless_parameters_change(nbdir, tmp_path):
    out = tmp_path / "run"
    _run(nbdir, out)
    outcomes, logs = _run(nbdir, out, resume=True)
    assert [o.status for o in outcomes] == ["skipped", "skipped"]
    assert any("skipped" in line for line in logs)
    outcomes, _ = _run(nbdir, out, resume=True, params={"SCALE": 3})
    assert [o.status for o in outcomes] == ["ok", "ok"]
    outcomes, _ = _run(nbdir, out, resume=True, force=False, params={"SCALE": 3}, only="01")
    assert [o.status for o in outcomes] == ["skipped"]


def test_failure_stops_reports_cell_and_marks_failed(nbdir, tmp_path):
    out = tmp_path / "run"
    _run(nbdir, out)  # a good record of 01 exists from a previous run ...
    _write_nb(nbdir / "01_second.ipynb", "x = 1\nraise RuntimeError('boom in the lesson')")
    _write_nb(nbdir / "02_third.ipynb", RECORD.format(stem="02_third"))
    outcomes, logs = _run(nbdir, out)
    assert [o.status for o in outcomes] == ["ok", "failed"]  # stops: 02 never runs
    report = "\n".join(logs)
    assert "01_second.ipynb failed" in report and "raise RuntimeError('boom in the lesson')" in report
    assert "RuntimeError: boom in the lesson" in report
    assert (out / "notebooks" / "01_second.ipynb").is_file()  # kept for inspection
    assert not (out / "records" / "01_second.json").exists()  # ... and was removed: nothing stale looks done
    summary = json.loads((out / "summary.json").read_text())
    assert {r["notebook"]: r["status"] for r in summary["notebooks"]}["01_second"] == "failed"
    assert "| 01_second | failed |" in (out / "summary.md").read_text()
    outcomes, _ = _run(nbdir, out, resume=True)
    assert [o.status for o in outcomes] == ["skipped", "failed"]  # a failed notebook is never skipped


def test_notebook_without_record_is_a_failure(nbdir, tmp_path):
    _write_nb(nbdir / "00_first.ipynb", "y = 2")
    outcomes, _ = _run(nbdir, tmp_path / "run", only="00")
    assert outcomes[0].status == "failed" and "without writing records/00_first.json" in outcomes[0].error


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "pcrl_lib.course", *args], capture_output=True, text=True)


@pytest.mark.parametrize("args, message", [
    (["run", "--profile", "fast"], "unknown profile 'fast'; valid profiles: smoke, quick, paper"),
    (["run", "--profile", "smoke", "--only", "99"], "unknown notebook 99; valid: 00_first, 01_second"),
    (["run", "--profile", "smoke", "-p", "EPOCHZ", "3"], "unknown parameter EPOCHZ; valid: DATA_ROOT, DEVICE"),
    (["run", "--profile", "smoke", "--data-root", "/no/such/dir"], "--data-root /no/such/dir does not exist"),
])
def test_cli_bad_input_is_one_line_exit_2(nbdir, args, message):
    proc = _cli("--notebooks-dir", str(nbdir), *args, "--no-prepare")
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_cli_list_shows_parameters_and_defaults(nbdir):
    proc = _cli("--notebooks-dir", str(nbdir), "list")
    assert proc.returncode == 0, proc.stderr
    assert "00_first.ipynb" in proc.stdout and "SCALE" in proc.stdout and "= 2" in proc.stdout


def test_write_record_is_json_safe(tmp_path):
    import numpy as np
    import torch

    path = course.write_record(tmp_path, "05_x", figures={"auc": np.float32(0.5), "loss": torch.tensor(1.5),
                                                         "bad": float("nan")})
    rec = json.loads(path.read_text())
    assert rec["figures"] == {"auc": 0.5, "loss": 1.5, "bad": None}


# --------------------------------------------------------------------------- checks before any notebook runs
TYPED_PARAMS = PARAMS + """FORCE = False
EPOCHS = None  # epochs; None: the profile's
METHODS = None  # e.g. ["moco", "pcrl"]
"""
READS_LITS = """
if DATA_ROOT is not None:
    from pcrl_lib.data import profile_data
    profile_data.dataset_root(DATA_ROOT, "lits")
from pcrl_lib.course import write_record
write_record(OUTPUT_DIR, "00_typed", figures={"methods": "+".join(METHODS), "epochs": EPOCHS})
"""


@pytest.fixture
def typed_nbdir(tmp_path):
    d = tmp_path / "typed"
    d.mkdir()
    _write_nb(d / "00_typed.ipynb", READS_LITS, params=TYPED_PARAMS)
    return d


@pytest.mark.parametrize("args, message", [
    (["-p", "EPOCHS", "abc"], '-p EPOCHS "abc": 00_typed needs an int or null (EPOCHS = None  # epochs;'),
    (["-p", "EPOCHS", "1.5"], "-p EPOCHS 1.5: 00_typed needs an int or null"),
    (["-p", "SCALE", "big"], '-p SCALE "big": 00_typed needs an int (SCALE = 2  # a notebook\'s own knob)'),
    (["-p", "FORCE", "maybe"], '-p FORCE "maybe": 00_typed needs true or false'),
    (["-p", "METHODS", "[1, 2]"], "-p METHODS [1, 2]: 00_typed needs a list of strings or null"),
    (["--cell-timeout", "-5"], "--cell-timeout must be a positive number of seconds, got -5.0"),
    (["--cell-timeout", "nan"], "--cell-timeout must be a positive number of seconds, got nan"),
    (["--data-root", "{empty}"], "no 'lits' folder (expected {empty}/lits, laid out as in data/README.md); "
                                 "sub-folders found: none (read by 00_typed)"),
    (["--data-root", "{wrong}"], "--data-root {wrong}: lits/ is not laid out as expected (read by 00_typed): "
                                 "{wrong}/lits: folder is empty"),
])
def test_cli_bad_parameters_and_data_root_are_one_line_exit_2_before_any_work(typed_nbdir, tmp_path, capsys, args,
                                                                              message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "wrong" / "lits").mkdir(parents=True)
    args = [a.format(empty=tmp_path / "empty", wrong=tmp_path / "wrong") for a in args]
    out = tmp_path / "run"
    code = course.main(["--notebooks-dir", str(typed_nbdir), "run", "--profile", "smoke", "--output-dir", str(out),
                        *args, "--no-prepare"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message.format(empty=tmp_path / "empty", wrong=tmp_path / "wrong") in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_parameters_are_converted_to_the_declared_kind(typed_nbdir, tmp_path):
    # METHODS pcrl is the one-element list ["pcrl"], not the characters p, c, r, l; EPOCHS 2.0 is the int 2
    outcomes, _ = _run(typed_nbdir, tmp_path / "run", params={"METHODS": "pcrl", "EPOCHS": 2.0})
    assert outcomes[0].status == "ok", outcomes[0].error
    assert outcomes[0].params["METHODS"] == ["pcrl"] and outcomes[0].params["EPOCHS"] == 2
    rec = json.loads((tmp_path / "run" / "records" / "00_typed.json").read_text())
    assert rec["figures"] == {"methods": "pcrl", "epochs": 2}


def test_data_root_with_the_expected_layout_passes(typed_nbdir, tmp_path):
    from pcrl_lib.data import synthetic

    synthetic.write("lits", tmp_path / "data" / "lits", n=2, size=32)
    course.check_data_root(tmp_path / "data", course.discover(typed_nbdir))  # no error
    assert course.discover(typed_nbdir)[0].datasets() == ["lits"]


def test_real_notebooks_name_the_datasets_they_read():
    read = {nb.number: nb.datasets() for nb in course.discover()}
    assert read["01"] == ["nih", "luna16"] and read["03"] == ["nih"] and read["04"] == ["luna16"]
    assert read["08"] == ["lits"]
    assert read["00"] == [] and read["10"] == []


def test_ctrl_c_stops_the_runner_with_one_line(tmp_path):
    import os
    import signal
    import time

    d = tmp_path / "nb"
    d.mkdir()
    flag = tmp_path / "started"
    _write_nb(d / "00_slow.ipynb", f"import time\nopen({str(flag)!r}, 'w').close()\ntime.sleep(600)")
    # CI may run the suite with SIGINT ignored (a background job), which a child inherits; a user's Ctrl-C reaches
    # a foreground process with the default disposition, so the child gets that back.
    proc = subprocess.Popen([sys.executable, "-m", "pcrl_lib.course", "--notebooks-dir", str(d), "run", "--profile",
                             "smoke", "--output-dir", str(tmp_path / "run"), "--no-prepare"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 300
        while not flag.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["interrupted while running 00_slow; rerun with --resume to continue"], err
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["00_slow"]["status"] == "interrupted"


def test_records_and_summaries_get_ordinary_permissions(tmp_path):
    import os

    umask = os.umask(0o022)  # mkstemp would have made them 0600, unreadable to the rest of a shared group
    try:
        path = course.write_record(tmp_path, "00_first", figures={"x": 1})
    finally:
        os.umask(umask)
    assert oct(path.stat().st_mode & 0o777) == "0o644"


# --------------------------------------------------------------------------- one notebook, several lessons
DIMS_PARAMS = PARAMS + "DIMS = 2  # 2 or 3; the course runner sets it\n"
DIMS_BODY = """
from pcrl_lib import lesson
run = lesson.start({{2: "03_dims_2d", 3: "04_dims_3d"}}[DIMS], profile=PROFILE, data_root=DATA_ROOT,
                   output_dir=OUTPUT_DIR, seed=SEED, quiet=True, datasets=("nih",) if DIMS == 2 else ("luna16",))
run.record({{"dims": DIMS, "scaled": SCALE * 10}})
"""


@pytest.fixture
def dims_nbdir(tmp_path, monkeypatch):
    """00_first.ipynb and 03_dims.ipynb, which the course map runs twice: 03_dims_2d (DIMS 2), 04_dims_3d (DIMS 3)."""
    from pcrl_lib import syllabus

    d = tmp_path / "dims"
    d.mkdir()
    _write_nb(d / "00_first.ipynb", RECORD.format(stem="00_first"))
    _write_nb(d / "03_dims.ipynb", DIMS_BODY.format(), params=DIMS_PARAMS)
    lessons = (syllabus.Lesson("03_dims_2d", "2D", "x", 1, "-", notebook="03_dims", params={"DIMS": 2}),
               syllabus.Lesson("04_dims_3d", "3D", "x", 1, "-", notebook="03_dims", params={"DIMS": 3}))
    monkeypatch.setattr(syllabus, "LESSONS", lessons)
    return d


def test_discover_yields_one_entry_per_lesson_of_a_shared_notebook(dims_nbdir):
    found = course.discover(dims_nbdir)
    assert [(nb.stem, nb.path.name, nb.fixed) for nb in found] == [
        ("00_first", "00_first.ipynb", {}), ("03_dims_2d", "03_dims.ipynb", {"DIMS": 2}),
        ("04_dims_3d", "03_dims.ipynb", {"DIMS": 3})]
    stems = lambda only: [nb.stem for nb in course.select(found, only)]  # noqa: E731
    assert stems("04") == stems("04_dims_3d") == ["04_dims_3d"]
    assert stems("03,04") == stems("03_dims") == ["03_dims_2d", "04_dims_3d"]
    assert stems("03") == ["03_dims_2d"]
    # datasets= is evaluated with the lesson's own DIMS: each lesson checks only the dataset it reads
    assert [nb.datasets() for nb in found] == [[], ["nih"], ["luna16"]]


def test_runner_runs_a_shared_notebook_once_per_lesson_and_resumes_each(dims_nbdir, tmp_path):
    out = tmp_path / "run"
    outcomes, _ = _run(dims_nbdir, out, only="03,04", params={"SCALE": 3})
    assert [(o.notebook, o.status, o.params["DIMS"]) for o in outcomes] == [("03_dims_2d", "ok", 2),
                                                                           ("04_dims_3d", "ok", 3)]
    for stem, dims in (("03_dims_2d", 2), ("04_dims_3d", 3)):
        assert json.loads((out / "records" / f"{stem}.json").read_text())["figures"] == {"dims": dims, "scaled": 30}
        assert (out / "notebooks" / f"{stem}.ipynb").is_file()
    assert not (out / "notebooks" / "03_dims.ipynb").exists()
    state = json.loads((out / "state.json").read_text())
    assert state["03_dims_2d"]["digest"] != state["04_dims_3d"]["digest"], "the resume digest includes DIMS"
    assert "| 04_dims_3d | ok |" in (out / "summary.md").read_text()
    outcomes, logs = _run(dims_nbdir, out, only="03,04", params={"SCALE": 3}, resume=True)
    assert [o.status for o in outcomes] == ["skipped", "skipped"]
    (out / "records" / "04_dims_3d.json").unlink()
    outcomes, _ = _run(dims_nbdir, out, only="03,04", params={"SCALE": 3}, resume=True)
    assert [o.status for o in outcomes] == ["skipped", "ok"]


def test_resume_digest_differs_by_fixed_parameters(dims_nbdir, tmp_path):
    two, three = course.discover(dims_nbdir)[1:]
    declared = two.parameters()
    params = [course.build_parameters(nb, declared, "smoke", None, tmp_path, {"SCALE": 3}) for nb in (two, three)]
    assert (params[0]["DIMS"], params[1]["DIMS"]) == (2, 3)
    assert course.params_digest(two, params[0]) != course.params_digest(three, params[1])


@pytest.mark.parametrize("only", [None, "04", "03_dims"])
def test_a_parameter_the_course_map_fixes_is_refused(dims_nbdir, tmp_path, capsys, only):
    out = tmp_path / "run"
    code = course.main(["--notebooks-dir", str(dims_nbdir), "run", "--profile", "smoke", "--output-dir", str(out),
                        "-p", "DIMS", "3", *(["--only", only] if only else []), "--no-prepare"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "-p DIMS: the course runs 03_dims.ipynb once per lesson and sets DIMS itself (03_dims_2d with DIMS=2, " \
           "04_dims_3d with DIMS=3); drop -p DIMS and pick lessons with --only" in err
    assert not out.exists()


def test_a_parameter_fixed_only_elsewhere_is_unknown_for_the_others(dims_nbdir, tmp_path, capsys):
    code = course.main(["--notebooks-dir", str(dims_nbdir), "run", "--profile", "smoke", "--output-dir",
                        str(tmp_path / "run"), "--only", "00", "-p", "DIMS", "3", "--no-prepare"])
    assert code == 2 and "unknown parameter DIMS" in capsys.readouterr().err


def test_list_shows_each_lesson_of_a_shared_notebook(dims_nbdir, capsys):
    assert course.main(["--notebooks-dir", str(dims_nbdir), "list"]) == 0
    printed = capsys.readouterr().out
    assert "03_dims_2d: 03_dims.ipynb with DIMS = 2" in printed
    assert "04_dims_3d: 03_dims.ipynb with DIMS = 3" in printed
    assert "    DIMS           = 3  (set by the course runner for 04_dims_3d)" in printed


def test_the_pretraining_notebook_serves_the_2d_and_the_3d_lesson():
    found = {nb.stem: nb for nb in course.discover()}
    two, three = found["03_pretrain_2d"], found["04_pretrain_3d"]
    assert two.path == three.path and two.path.name == "03_pretrain.ipynb"
    assert (two.fixed, three.fixed) == ({"DIMS": 2}, {"DIMS": 3})
    assert "DIMS" in two.parameters()
    assert [nb.stem for nb in course.select(list(found.values()), "03,04")] == ["03_pretrain_2d", "04_pretrain_3d"]


def test_record_names_come_from_the_course_map():
    from pcrl_lib import syllabus

    assert syllabus.record_name("03_pretrain", 2) == "03_pretrain_2d"
    assert syllabus.record_name("03_pretrain", 3) == "04_pretrain_3d"
    assert syllabus.record_name("05_chestxray14") == "05_chestxray14"
    with pytest.raises(ValueError, match="DIMS = 4: notebook 03_pretrain runs with DIMS 2, 3"):
        syllabus.record_name("03_pretrain", 4)
    with pytest.raises(ValueError, match="'04_pretrain_3d' is not in the course map"):
        syllabus.record_name("04_pretrain_3d")
