"""The course says the same thing everywhere (issue 17, item 5): title-cell times match the course map, notebook
metadata is what JupyterLab writes (saving does not dirty git), the course map is honest about untimed runs."""

import json
import re

import nbformat
import pytest

from pcrl_lib.paths import notebooks_dir
from pcrl_lib.syllabus import LESSONS, course_map

# What JupyterLab writes on save with the kit's environment (`.venv/bin/jupyter lab`): ipykernel's own `python3`
# spec, which runs the interpreter Jupyter runs in (the course runner names its `pcrl-kit` kernel itself), and the
# kernel's language_info. Only `version` is left out: it is the reader's Python, different on every machine.
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def _planned_range(title: str) -> tuple[float, float]:
    """The quick-profile minutes a title cell's **Time** paragraph states, as a (low, high) range."""
    time = " ".join(title[title.index("**Time**"):].split())      # line breaks as spaces
    phrases = [(r"under a minute", lambda m: (0.0, 1.0)), (r"\bseconds\b", lambda m: (0.0, 1.0)),
               (r"about a minute", lambda m: (0.5, 1.5)),
               (r"about (\d+)(½?)(?:–(\d+)(½?))? minutes",
                lambda m: (0.8 * (int(m[1]) + 0.5 * bool(m[2])),
                           1.2 * (int(m[3] or m[1]) + 0.5 * bool(m[4] if m[3] else m[2]))))]
    found = [(m.start(), parse(m)) for pattern, parse in phrases for m in [re.search(pattern, time)] if m]
    assert found, f"no quick-profile time in {time[:200]!r}"
    return min(found)[1]


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda lesson: lesson.stem)
def test_title_cell_time_agrees_with_the_course_map(lesson):
    """A notebook that serves several lessons (``03_pretrain``: DIMS 2 and 3) states each one's time after
    ``2D:`` / ``3D:`` in its **Time** paragraph."""
    title = nbformat.read(notebooks_dir() / f"{lesson.file_stem}.ipynb", as_version=4).cells[0].source
    if "DIMS" in lesson.params:
        time = title[title.index("**Time**"):]
        title = "**Time** " + time[time.index(f"{lesson.params['DIMS']}D:"):]
    low, high = _planned_range(title)
    assert low <= lesson.quick_cpu_min <= high, \
        f"{lesson.stem}: the title says {low:g}–{high:g} min, syllabus.py plans {lesson.quick_cpu_min:g} min"


@pytest.mark.parametrize("path", sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.stem)
def test_notebook_metadata_is_what_jupyterlab_saves(path):
    from ipykernel.ipkernel import IPythonKernel
    from ipykernel.kernelspec import KERNEL_NAME, get_kernel_dict

    meta = json.loads(path.read_text())["metadata"]
    assert meta["kernelspec"] == KERNELSPEC
    assert (KERNEL_NAME, get_kernel_dict()["display_name"]) == (KERNELSPEC["name"], KERNELSPEC["display_name"])
    expected = {k: v for k, v in IPythonKernel.language_info.items() if k != "version"}
    assert meta["language_info"] == expected


def test_course_map_says_why_a_notebook_has_no_time(tmp_path):
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "02_augmentations.json").write_text("{}")
    (tmp_path / "summary.json").write_text(json.dumps({"notebooks": [
        {"notebook": "00_overview", "status": "ok", "wall_s": 30.0}]}))
    rows = {r["notebook"]: r["this profile (measured)"] for r in course_map(tmp_path)}
    assert rows["00_overview"] == "0.5 min"
    assert rows["02_augmentations"].startswith("run, not timed")
    assert rows["01_data_preparation"].startswith("no timed run yet")
    assert all("not run yet" not in status for status in rows.values())


def _course_texts():
    root = notebooks_dir().parent
    texts = {p.name: "\n".join(c.source for c in nbformat.read(p, as_version=4).cells)
             for p in sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb"))}
    texts.update({p.name: p.read_text() for p in (root / "README.md", root / "data" / "README.md")})
    return texts


def test_commands_named_in_the_course_exist():
    """No `make` target without a Makefile; `check --root` examples use the lower-case dataset folders."""
    has_makefile = (notebooks_dir().parent / "Makefile").is_file()
    for name, text in _course_texts().items():
        assert has_makefile or not re.search(r"^\s*make \w", text, flags=re.M), f"{name} names a make target"
        for dataset, root in re.findall(r"check --dataset (\w+) --root (\S+?)[`\s]", text):
            assert root.rstrip("/").endswith("/" + dataset), f"{name}: --root {root} for --dataset {dataset}"


@pytest.mark.parametrize("stem", ["00_overview", "02_augmentations"])
def test_saving_in_jupyterlab_leaves_the_committed_file_unchanged(stem, tmp_path):
    """What JupyterLab sends on save (the kernel's kernelspec and language_info, version included) goes through
    the kit's pre-save hook and jupyter_server's FileContentsManager: the file's bytes are the committed ones."""
    pytest.importorskip("jupyter_server")
    from ipykernel.ipkernel import IPythonKernel
    from jupyter_server.services.contents.filemanager import FileContentsManager

    from pcrl_lib.notebook_save import HOOK

    committed = (notebooks_dir() / f"{stem}.ipynb").read_bytes()
    (tmp_path / "nb.ipynb").write_bytes(committed)
    manager = FileContentsManager(root_dir=str(tmp_path), pre_save_hook=HOOK)
    model = manager.get("nb.ipynb")
    model["content"]["metadata"]["language_info"] = dict(IPythonKernel.language_info)   # what the kernel reports
    model["content"]["metadata"]["kernelspec"] = dict(KERNELSPEC)
    manager.save(model, "nb.ipynb")
    assert (tmp_path / "nb.ipynb").read_bytes() == committed


def test_the_kit_registers_the_save_hook_for_its_environment(tmp_path):
    from pcrl_lib.notebook_save import HOOK, write_server_config

    path = write_server_config(tmp_path)
    assert path == tmp_path / "etc" / "jupyter" / "jupyter_server_config.d" / "pcrl-kit.json"
    assert json.loads(path.read_text()) == {"FileContentsManager": {"pre_save_hook": HOOK}}
    assert write_server_config(tmp_path).read_text() == path.read_text()        # idempotent


def test_no_notebook_repeats_another():
    """One notebook per idea: 2D and 3D pretraining are one notebook run twice (``DIMS``), not two near-copies (the
    old 03/04 pair shared 29 of their 36 cells). A few identical short cells (a results table call) are fine."""
    import itertools

    cells = {p.name: {c.source.strip() for c in nbformat.read(p, as_version=4).cells if c.source.strip()}
             for p in sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb"))}
    for (a, cells_a), (b, cells_b) in itertools.combinations(cells.items(), 2):
        shared = cells_a & cells_b
        assert len(shared) <= 5, f"{a} and {b} share {len(shared)} identical cells; make one notebook with a parameter"
