"""The course runner: execute the notebooks headless with papermill and collect what they measured.

Usage::

    python -m pcrl_lib.course list
    python -m pcrl_lib.course run --profile quick [--data-root DIR] [--output-dir DIR] [--only 03,04]
                                  [--resume] [--force] [-p NAME VALUE ...]
    python -m pcrl_lib.course report runs/quick [--claims FILE] [--min-seeds N]
    python -m pcrl_lib.course student --out DIR [--force]

A run writes, under ``runs/<profile>/`` (or ``--output-dir``):

* ``notebooks/NN_name.ipynb`` — each executed notebook (kept on failure, for inspection), and
  ``notebooks/NN_name.kernel.log`` — its kernel process's own log; named by lesson: a notebook that serves
  several lessons with fixed parameters (:mod:`pcrl_lib.syllabus`; ``03_pretrain.ipynb`` with ``DIMS`` 2 and 3)
  is executed once per lesson (``03_pretrain_2d``, ``04_pretrain_3d``), and ``-p`` cannot set those parameters;
* ``records/NN_name.json``     — the record each notebook's last cell writes (:func:`write_record`);
* ``state.json``               — per notebook: status, parameters hash, wall time (what ``--resume`` reads);
* ``summary.json`` / ``summary.md`` — status, wall time and key figures of every notebook;
* ``RESULTS.md`` + ``label_efficiency_<task>.png`` — the reproduction report (:mod:`pcrl_lib.report`), written
  by ``report`` and at the end of every ``run`` that included all notebooks through 10.

A notebook whose execution fails is recorded as ``failed``; its stale record is removed before it runs, so
nothing half-written looks like a success.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import hashlib
import json
import logging
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from . import paths
from .config import INVALID, KINDS, PROFILES, convert_value
from .fileio import atomic_write_text, jsonable, read_json

SHARED_PARAMETERS = ("PROFILE", "DATA_ROOT", "OUTPUT_DIR", "SEED", "DEVICE")
KERNEL_NAME = "pcrl-kit"
_NOTEBOOK_RE = re.compile(r"^(\d\d)_[A-Za-z0-9_]+\.ipynb$")
_ASSIGNMENT_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*([^#\n]*?)\s*(?:#(.*))?$", re.M)
# Per-cell limit: a cell that hangs (say, an interactive widget waiting for a click) fails instead of blocking.
CELL_TIMEOUT_S = {"smoke": 600, "quick": 3600, "paper": None}
# What a ``-p`` value must be for the course's parameters whose default is None (the others are checked against
# their default's type). A ``list[...]`` parameter given one value gets a one-element list (METHODS pcrl);
# ``int[3]`` is exactly three ints, (X, Y, Z).
PARAMETER_KINDS = {"DATA_ROOT": "str", "OUTPUT_DIR": "str", "CLAIMS": "str", "EPOCHS": "int", "IMAGE_SIZE": "int",
                   "PAIRS_PER_SCAN": "int", "MAX_NEGATIVES": "int", "PATCHES_PER_EPOCH": "int", "LR": "float",
                   "SPACING_MM": "float", "OVERLAP": "float", "CUBE": "int[3]", "WINDOW": "int[3]",
                   "METHODS": "list[str]", "LABEL_FRACTIONS": "list[float]", "SEEDS": "list[int]"}
# A notebook reads the real dataset X when it calls profile_data.dataset_root(DATA_ROOT, "X") (or loops over names).
_DATASET_CALL_RE = re.compile(r"dataset_root\(DATA_ROOT,\s*(?:[\"'](\w+)[\"']|(\w+))\s*\)")
# ... or names it in the setup call: lesson.start(..., datasets=("nih", "luna16")) (see _start_datasets).


class CourseError(Exception):
    """A user error: printed as one line, exit code 2."""


class CourseInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the run during ``notebook`` (recorded as ``interrupted`` in ``state.json``)."""

    def __init__(self, notebook: str):
        self.notebook = notebook
        super().__init__(f"interrupted while running {notebook}; rerun with --resume to continue")


@contextlib.contextmanager
def _papermill_errors_only():
    """Hide papermill's warnings: it cannot parse parameter lines whose comment holds another ``=`` and then
    warns that the (declared, correctly injected) parameter is unknown; the runner checks parameters itself."""
    quiet = logging.getLogger("papermill")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        yield
    finally:
        quiet.setLevel(level)


# --------------------------------------------------------------------------- records


def write_record(output_dir: str | os.PathLike, notebook: str, figures: dict, *, env: dict | None = None,
                 results: list | None = None, **extra: Any) -> Path:
    """Write the machine-readable record of one notebook (its last cell calls this).

    Args:
        output_dir: the notebook's ``OUTPUT_DIR``; the record goes to ``<output_dir>/records/<notebook>.json``.
        notebook: the notebook's stem, e.g. ``"03_pretrain_2d"``.
        figures: the key figures (scalars) shown in the run's summary table.
        env: the environment report (:func:`pcrl_lib.env.report`).
        results: per-experiment result rows (task, method, fraction, metric, value, CI, …) for the results report.
        extra: anything else worth keeping (parameters, paths of figures, …).
    """
    record = {"notebook": notebook, "status": "ok", "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "figures": jsonable(figures), "results": jsonable(results or []), "env": jsonable(env or {}),
              **jsonable(extra)}
    path = Path(output_dir) / "records" / f"{notebook}.json"
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=False))
    return path


# --------------------------------------------------------------------------- notebooks and parameters


@dataclass
class Notebook:
    """One lesson of the course: the notebook file ``path`` executed with the parameters ``fixed`` (the course map
    may run one file several times, e.g. ``03_pretrain.ipynb`` as ``03_pretrain_2d`` with ``DIMS = 2`` and as
    ``04_pretrain_3d`` with ``DIMS = 3``); ``name`` is the lesson's name ("" = the file's stem)."""
    path: Path
    name: str = ""
    fixed: dict[str, Any] = field(default_factory=dict)

    @property
    def stem(self) -> str:
        """The lesson's name: its record (``records/<stem>.json``), executed copy and state entry."""
        return self.name or self.path.stem

    @property
    def number(self) -> str:
        return self.stem[:2]

    def parameters(self) -> dict[str, dict]:
        """Papermill's own inspection of the ``parameters`` cell: name → {default, inferred_type_name, help}.

        Papermill skips assignment lines whose comment holds another ``=`` (``OUTPUT_DIR = None  # None = ...``);
        such names are added from a plain scan of the cell so that they are still declared and injected.
        """
        import nbformat
        import papermill

        with _papermill_errors_only():  # its "Unable to parse line" warnings are handled below
            found = {name: dict(info) for name, info in papermill.inspect_notebook(str(self.path)).items()}
        nb = nbformat.read(self.path, as_version=4)
        for cell in nb.cells:
            if "parameters" in cell.metadata.get("tags", []):
                for name, default, comment in _ASSIGNMENT_RE.findall(cell.source):
                    found.setdefault(name, {"name": name, "default": default.strip(), "inferred_type_name": "None",
                                            "help": comment.strip()})
        return found

    def datasets(self) -> list[str]:
        """The real datasets the notebook reads under ``DATA_ROOT``: the names in its
        ``profile_data.dataset_root(DATA_ROOT, "nih")`` calls, or in the ``for`` line of a loop variable given there,
        or in the ``datasets=`` of its ``lesson.start(...)`` call, evaluated with the lesson's fixed parameters (so
        that ``datasets=("nih",) if DIMS == 2 else ("luna16",)`` names one dataset per lesson)."""
        import nbformat

        found: list[str] = []
        for cell in nbformat.read(self.path, as_version=4).cells:
            if cell.cell_type != "code":
                continue
            for literal, variable in _DATASET_CALL_RE.findall(cell.source):
                loop = re.search(rf"for\s+{variable}\s+in\s+[(\[]([^)\]]*)[)\]]", cell.source) if variable else None
                names = [literal] if literal else re.findall(r"[\"'](\w+)[\"']", loop.group(1)) if loop else []
                found += [name for name in names if name not in found]
            found += [name for name in _start_datasets(cell.source, self.fixed) if name not in found]
        return found

    def digest(self) -> str:
        """Hash of the notebook's code cells (editing a notebook invalidates ``--resume``)."""
        import nbformat

        nb = nbformat.read(self.path, as_version=4)
        code = "\n\x00".join(c.source for c in nb.cells if c.cell_type == "code")
        return hashlib.sha256(code.encode()).hexdigest()[:16]


def _start_datasets(source: str, fixed: dict[str, Any]) -> list[str]:
    """The dataset names of a ``lesson.start(..., datasets=EXPR)`` call in a cell's ``source``: ``EXPR`` evaluated
    with only the lesson's fixed parameters in scope (no builtins); every string literal in it when it needs more."""
    try:
        tree = ast.parse("\n".join("" if line.lstrip().startswith(("%", "!")) else line
                                   for line in source.splitlines()))
    except SyntaxError:
        return []
    names: list[str] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "start"):
            continue
        for keyword in node.keywords:
            if keyword.arg != "datasets":
                continue
            try:
                value = eval(compile(ast.Expression(keyword.value), "<datasets>", "eval"),  # noqa: S307
                             {"__builtins__": {}}, dict(fixed))
                value = [value] if isinstance(value, str) else list(value or ())
            except Exception:  # depends on more than the fixed parameters: every name it could be
                value = [n.value for n in ast.walk(keyword.value) if isinstance(n, ast.Constant)]
            names += [v for v in value if isinstance(v, str) and v not in names]
    return names


def discover(notebooks_dir: Path | None = None, lessons: Sequence[Any] | None = None) -> list[Notebook]:
    """The course's lessons in order: one entry per notebook file (``NN_name.ipynb``), or one per lesson of the
    course map (:data:`pcrl_lib.syllabus.LESSONS`, or ``lessons``) that runs that file with fixed parameters."""
    from .syllabus import LESSONS

    folder = Path(notebooks_dir) if notebooks_dir else paths.notebooks_dir()
    if not folder.is_dir():
        raise CourseError(f"notebooks folder {folder} does not exist")
    lessons = LESSONS if lessons is None else lessons
    found: list[Notebook] = []
    for path in sorted(folder.glob("*.ipynb")):
        if not _NOTEBOOK_RE.match(path.name):
            continue
        variants = [lesson for lesson in lessons if lesson.file_stem == path.stem and lesson.params]
        found += [Notebook(path, lesson.stem, dict(lesson.params)) for lesson in variants] or [Notebook(path)]
    return sorted(found, key=lambda nb: nb.stem)


def select(notebooks: list[Notebook], only: str | Sequence[str] | None) -> list[Notebook]:
    """Filter by ``--only 03,04`` (numbers, lesson names or notebook file stems: ``03_pretrain`` selects both of
    its lessons); unknown names raise :class:`CourseError`."""
    if not only:
        return notebooks
    wanted = [w.strip() for w in (only.split(",") if isinstance(only, str) else only) if w.strip()]
    by_key: dict[str, set[str]] = {}
    for nb in notebooks:
        for key in (nb.number, nb.stem, nb.path.stem):
            by_key.setdefault(key, set()).add(nb.stem)
    unknown = [w for w in wanted if w not in by_key]
    if unknown:
        valid = ", ".join(nb.stem for nb in notebooks)
        raise CourseError(f"unknown notebook {', '.join(unknown)}; valid: {valid}")
    chosen = set().union(*(by_key[w] for w in wanted))
    return [nb for nb in notebooks if nb.stem in chosen]


def _parse_value(text: str) -> Any:
    """``-p NAME VALUE``: JSON when it parses (numbers, true/false, null, lists), else the plain string."""
    for candidate in (text, text.lower()):
        try:
            return json.loads(candidate)
        except json.JSONDecodeError:
            continue
    return text


def _parameter_kind(name: str, default: str) -> str | None:
    """``int``, ``float``, ``bool``, ``str``, ``list[<kind>]`` or ``<kind>[n]`` from a parameter's default (the
    source text of its value in the parameters cell), :data:`PARAMETER_KINDS` for a None default; None = not
    checked."""
    try:
        value = ast.literal_eval(default)
    except (ValueError, SyntaxError):  # an expression, e.g. PROFILE = os.environ.get(...)
        return None
    if value is None:
        return PARAMETER_KINDS.get(name)
    if isinstance(value, (list, tuple)):
        return f"list[{type(value[0]).__name__ if value else 'str'}]"
    kind = type(value).__name__
    return kind if kind in KINDS else None


def check_parameter(notebook: Notebook, name: str, info: dict, value: Any) -> Any:
    """``value`` converted to the kind of ``notebook``'s parameter ``name``, or :class:`CourseError` (one line)."""
    default = str(info.get("default", "None"))
    kind = _parameter_kind(name, default)
    if kind is None or (value is None and default == "None"):
        return value
    listed = re.fullmatch(r"list\[(\w+)\]|(\w+)\[(\d+)\]", kind)
    if listed:
        element, length = listed.group(1) or listed.group(2), int(listed.group(3)) if listed.group(3) else None
        items = list(value) if isinstance(value, (list, tuple)) else [value] if length is None else None
        converted: Any = None if items is None else [convert_value(element, item) for item in items]
        ok = converted is not None and element in KINDS and INVALID not in converted \
            and length in (None, len(converted))
        what = f"a list of {f'{length} ' if length else ''}{KINDS.get(element, ('', 'values'))[1]}"
    else:
        converted = convert_value(kind, value)
        ok, what = converted is not INVALID, KINDS[kind][0]
    if not ok:
        note = f"  # {info['help']}" if info.get("help") else ""
        raise CourseError(f"-p {name} {json.dumps(value, default=str)}: {notebook.stem} needs {what}"
                          f"{' or null' if default == 'None' else ''} ({name} = {default}{note})")
    return converted


def check_data_root(root: Path, notebooks: list[Notebook]) -> None:
    """Check the real datasets the selected notebooks read (:meth:`Notebook.datasets`) against the expected layout
    (:func:`pcrl_lib.data.check.check`, headers only), before anything runs; :class:`CourseError` naming what is
    missing."""
    from .data import profile_data
    from .data.check import check

    users: dict[str, list[str]] = {}
    for nb in notebooks:
        for dataset in nb.datasets():
            users.setdefault(dataset, []).append(nb.stem)
    for dataset, stems in users.items():
        try:
            folder = profile_data.dataset_root(root, dataset)
            report = check(folder, dataset, limit=0)
        except (FileNotFoundError, ValueError) as err:
            raise CourseError(f"--data-root: {err} (read by {', '.join(stems)})") from err
        if not report.ok:
            first = report.errors[0]
            more = f" and {len(report.errors) - 1} more" if len(report.errors) > 1 else ""
            raise CourseError(f"--data-root {root}: {dataset}/ is not laid out as expected (read by "
                              f"{', '.join(stems)}): {first.path}: {first.message}{more}; list every problem with "
                              f"python -m pcrl_lib.data.cli check --dataset {dataset} --root {folder}"
                              .replace("\n", " "))


def build_parameters(notebook: Notebook, declared: dict[str, dict], profile: str, data_root: Path | None,
                     output_dir: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """The parameters injected into one notebook: the shared vocabulary, the ``-p`` values it declares and the
    lesson's fixed parameters (``DIMS`` of the pretraining lessons)."""
    params: dict[str, Any] = {"PROFILE": profile, "DATA_ROOT": str(data_root) if data_root else None,
                              "OUTPUT_DIR": str(output_dir)}
    params.update({k: v for k, v in extra.items() if k in declared})
    params.update(notebook.fixed)
    return {k: v for k, v in params.items() if k in declared}


def check_fixed(notebooks: list[Notebook], params: dict[str, Any], course: list[Notebook] | None = None) -> None:
    """:class:`CourseError` when ``-p`` sets a parameter that the course map fixes for a selected lesson (the
    message lists every lesson of ``course``, default ``notebooks``, that runs the same file)."""
    for nb in notebooks:
        clash = sorted(set(params) & set(nb.fixed))
        if clash:
            runs = ", ".join(f"{other.stem} with " + " ".join(f"{k}={other.fixed[k]}" for k in clash)
                             for other in course or notebooks if other.path == nb.path and other.fixed)
            raise CourseError(f"-p {clash[0]}: the course runs {nb.path.name} once per lesson and sets {clash[0]} "
                              f"itself ({runs}); drop -p {clash[0]} and pick lessons with --only")


def params_digest(notebook: Notebook, params: dict) -> str:
    blob = json.dumps({"params": params, "code": notebook.digest()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- kernel


def ensure_kernel() -> str:
    """A kernel spec for *this* interpreter, inside its own environment (``sys.prefix``).

    Papermill starts the kernel named in a notebook's metadata; a user-wide ``python3`` spec can point at
    another Python. Registering ``pcrl-kit`` in the environment itself makes every run use this one.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
        if spec.argv and Path(spec.argv[0]).resolve() == Path(sys.executable).resolve():
            return KERNEL_NAME
    except NoSuchKernel:
        pass
    from ipykernel.kernelspec import install

    install(kernel_name=KERNEL_NAME, display_name="Python (pcrl-kit)", prefix=sys.prefix)
    return KERNEL_NAME


def _logged_kernel_manager(executed: Path) -> type:
    """A kernel manager class whose kernel writes its own stdout/stderr to ``<executed>.kernel.log``.

    The kernel's process output is not the notebook's output (that travels over ZeroMQ into the executed
    notebook): it is the kernel's own log (transport warnings, its shutdown noise after a Ctrl-C), which would
    otherwise interleave with the runner's one-line messages.
    """
    from jupyter_client.manager import AsyncKernelManager

    log_path = executed.with_suffix(".kernel.log")

    class LoggedKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            with open(log_path, "wb") as log:  # the kernel keeps its own copy of the descriptor
                await super()._async_launch_kernel(kernel_cmd, **{**kw, "stdout": log, "stderr": log})

    return LoggedKernelManager


# --------------------------------------------------------------------------- run


@dataclass
class Outcome:
    notebook: str
    status: str                  # ok | failed | skipped
    wall_s: float = 0.0
    params: dict = field(default_factory=dict)
    error: str | None = None


def _load_json(path: Path) -> dict:
    value, error = read_json(path)
    return {} if error else value


def _failure_report(nb: Notebook, err: Exception, executed: Path) -> str:
    from papermill.exceptions import PapermillExecutionError

    name = nb.path.name if not nb.fixed else f"{nb.path.name} ({nb.stem})"
    if isinstance(err, PapermillExecutionError):
        source = "\n".join("    " + line for line in err.source.splitlines())
        return (f"notebook {name} failed in cell {err.exec_count}:\n{source}\n"
                f"{err.ename}: {err.evalue}\nexecuted notebook kept at {executed}")
    return f"notebook {name} failed: {type(err).__name__}: {err}\nexecuted notebook kept at {executed}"


def run(profile: str, *, data_root: str | os.PathLike | None = None, output_dir: str | os.PathLike | None = None,
        only: str | Sequence[str] | None = None, resume: bool = False, force: bool = False,
        params: dict[str, Any] | None = None, notebooks_dir: str | os.PathLike | None = None,
        cell_timeout: float | None = -1, prepare: bool = True, log=print) -> list[Outcome]:
    """Execute the course's notebooks in order; stop at the first failure.

    ``resume`` skips notebooks that already ran successfully with the same parameters and code; ``force``
    re-executes everything and asks the notebooks that declare ``FORCE`` to recompute their cached results.
    Returns one :class:`Outcome` per selected notebook (the ones after a failure are absent).
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    if profile not in PROFILES:
        raise CourseError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    if cell_timeout not in (None, -1) and not (isinstance(cell_timeout, (int, float)) and math.isfinite(cell_timeout)
                                               and cell_timeout > 0):
        raise CourseError(f"--cell-timeout must be a positive number of seconds, got {cell_timeout}")
    root = Path(data_root).expanduser().resolve() if data_root else None
    if root is not None and not root.is_dir():
        raise CourseError(f"--data-root {data_root} does not exist or is not a folder")
    out = Path(output_dir).expanduser().resolve() if output_dir else paths.runs_dir(profile)
    all_notebooks = discover(notebooks_dir)
    notebooks = select(all_notebooks, only)
    declared = {nb.stem: nb.parameters() for nb in notebooks}
    check_fixed(notebooks, dict(params or {}), all_notebooks)
    extra = dict(params or {})
    if force:
        extra["FORCE"] = True
    fixed = {name for nb in notebooks for name in nb.fixed}      # set by the runner, refused above
    all_declared = (set().union(*declared.values()) if declared else set()) - fixed
    unknown = sorted(set(params or {}) - all_declared)
    if unknown:
        raise CourseError(f"unknown parameter {', '.join(unknown)}; valid: {', '.join(sorted(all_declared))}")
    checked = {nb.stem: {name: check_parameter(nb, name, declared[nb.stem][name], value)
                         for name, value in extra.items() if name in declared[nb.stem]} for nb in notebooks}
    if root is not None:
        check_data_root(root, notebooks)
    timeout = CELL_TIMEOUT_S[profile] if cell_timeout == -1 else cell_timeout

    out.mkdir(parents=True, exist_ok=True)
    if prepare:
        from .data.embedded import prepare_embedded

        log(f"preparing embedded data for profile {profile!r} ...")
        prepare_embedded(profile, log=log)
    kernel = ensure_kernel()
    # The kernels inherit the environment: widgets render as static figures, progress bars stay quiet.
    os.environ.setdefault("PCRL_HEADLESS", "1")
    state_path = out / "state.json"
    state = _load_json(state_path)
    outcomes: list[Outcome] = []
    for i, nb in enumerate(notebooks, 1):
        nb_params = build_parameters(nb, declared[nb.stem], profile, root, out, checked[nb.stem])
        digest = params_digest(nb, nb_params)
        previous = state.get(nb.stem, {})
        tag = f"[{i}/{len(notebooks)}] {nb.stem}"
        if resume and not force and previous.get("status") == "ok" and previous.get("digest") == digest \
                and (out / "records" / f"{nb.stem}.json").is_file():
            log(f"{tag}: skipped (already executed with the same parameters)")
            outcomes.append(Outcome(nb.stem, "skipped", previous.get("wall_s", 0.0), nb_params))
            continue
        (out / "records" / f"{nb.stem}.json").unlink(missing_ok=True)
        executed = out / "notebooks" / f"{nb.stem}.ipynb"
        executed.parent.mkdir(parents=True, exist_ok=True)
        log(f"{tag}: running ...")
        state[nb.stem] = {"status": "running", "digest": digest, "params": nb_params}
        atomic_write_text(state_path, json.dumps(state, indent=2))
        start = time.perf_counter()
        try:
            with _papermill_errors_only():
                papermill.execute_notebook(str(nb.path), str(executed), parameters=nb_params, kernel_name=kernel,
                                           cwd=str(nb.path.parent), progress_bar=sys.stderr.isatty(),
                                           execution_timeout=timeout, log_output=False,
                                           kernel_manager_class=_logged_kernel_manager(executed))
            error = None
            if not (out / "records" / f"{nb.stem}.json").is_file():
                error = f"notebook {nb.path.name} finished without writing records/{nb.stem}.json"
        except PapermillExecutionError as err:
            error = _failure_report(nb, err, executed)
        except Exception as err:  # kernel died, timeout, ... : report it the same way
            error = _failure_report(nb, err, executed)
        except KeyboardInterrupt:  # Ctrl-C: papermill has stopped the kernel; --resume reruns this notebook
            state[nb.stem] = {"status": "interrupted", "digest": digest, "params": nb_params,
                              "wall_s": round(time.perf_counter() - start, 2)}
            atomic_write_text(state_path, json.dumps(state, indent=2))
            raise CourseInterrupted(nb.stem) from None
        wall = time.perf_counter() - start
        status = "failed" if error else "ok"
        state[nb.stem] = {"status": status, "digest": digest, "params": nb_params, "wall_s": round(wall, 2),
                          "error": error}
        atomic_write_text(state_path, json.dumps(state, indent=2))
        outcomes.append(Outcome(nb.stem, status, wall, nb_params, error))
        if error:
            log(f"{tag}: FAILED after {wall:.1f} s\n{error}")
            break
        log(f"{tag}: done in {wall:.1f} s")
    write_summary(out, profile, outcomes)
    if covers_course(notebooks, all_notebooks):
        try:
            report_path = write_results(out, expected=[nb.stem for nb in all_notebooks])
            log(f"results report: {report_path}")
        except (OSError, ValueError) as err:  # a broken claims file must not hide the run's own outcome
            log(f"ERROR: the results report could not be written: {err}")
    return outcomes


# --------------------------------------------------------------------------- results report


def covers_course(selected: list[Notebook], course: list[Notebook], through: str = "10") -> bool:
    """Whether a run's selection holds every notebook of the course numbered up to ``through``."""
    wanted = {nb.stem for nb in course if nb.number <= through}
    return bool(wanted) and wanted <= {nb.stem for nb in selected}


def write_results(run_dir: Path, *, claims: str | os.PathLike | None = None, expected: Sequence[str] | None = None,
                  min_seeds: int | None = None) -> Path:
    """Build and write ``<run_dir>/RESULTS.md`` and its figures from the run's records (see :mod:`pcrl_lib.report`)."""
    from . import report

    built = report.build_report(run_dir, claims=claims, expected=expected,
                                min_seeds=report.MIN_SEEDS if min_seeds is None else min_seeds)
    return report.write_report(built)


# --------------------------------------------------------------------------- summary


def _format_figure(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_summary(out: Path, profile: str, outcomes: list[Outcome], max_figures: int = 6) -> dict:
    """Collect ``records/*.json`` with the run's outcomes into ``summary.json`` and ``summary.md``."""
    records = {p.stem: _load_json(p) for p in sorted((out / "records").glob("*.json"))}
    state = _load_json(out / "state.json")
    rows = []
    names = sorted(set(state) | {o.notebook for o in outcomes})
    by_name = {o.notebook: o for o in outcomes}
    for name in names:
        o = by_name.get(name)
        status = o.status if o else state.get(name, {}).get("status", "unknown")
        if status == "skipped":
            status = "ok (resumed)"
        wall = o.wall_s if o else state.get(name, {}).get("wall_s", 0.0)
        rec = records.get(name, {}) if not status.startswith("failed") else {}
        rows.append({"notebook": name, "status": status, "wall_s": round(wall, 2), "figures": rec.get("figures", {}),
                     "error": (o.error if o else state.get(name, {}).get("error"))})
    summary = {"profile": profile, "output_dir": str(out), "notebooks": rows, "records": records}
    lines = [f"# Course run — profile `{profile}`", "", "| notebook | status | wall time (s) | key figures |",
             "|---|---|---:|---|"]
    for row in rows:
        figs = ", ".join(f"{k} = {_format_figure(v)}" for k, v in list(row["figures"].items())[:max_figures])
        lines.append(f"| {row['notebook']} | {row['status']} | {row['wall_s']:.1f} | {figs} |")
    total = sum(row["wall_s"] for row in rows)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    summary["total_wall_s"], summary["output_bytes"] = round(total, 1), size
    atomic_write_text(out / "summary.json", json.dumps(jsonable(summary), indent=2))
    lines.append(f"| **total** | | {total:.1f} | output folder {size / 2**30:.2f} GiB on disk |")
    atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")
    return summary


# --------------------------------------------------------------------------- CLI


def _cmd_list(args) -> int:
    for nb in discover(args.notebooks_dir):
        fixed = ", ".join(f"{k} = {v!r}" for k, v in nb.fixed.items())
        print(nb.path.name if not nb.fixed else f"{nb.stem}: {nb.path.name} with {fixed}")
        for name, info in nb.parameters().items():
            typ = info.get("inferred_type_name", "")
            hint = f"  # {info['help']}" if info.get("help") else ""
            if name in nb.fixed:
                print(f"    {name:<14} = {nb.fixed[name]!r}  (set by the course runner for {nb.stem})")
                continue
            print(f"    {name:<14} = {info.get('default')}  ({typ}){hint}")
    return 0


def _cmd_run(args) -> int:
    params = {name: _parse_value(value) for name, value in (args.param or [])}
    outcomes = run(args.profile, data_root=args.data_root, output_dir=args.output_dir, only=args.only,
                   resume=args.resume, force=args.force, params=params, notebooks_dir=args.notebooks_dir,
                   cell_timeout=args.cell_timeout, prepare=not args.no_prepare)
    out = Path(args.output_dir).resolve() if args.output_dir else paths.runs_dir(args.profile)
    print(f"summary: {out / 'summary.md'}")
    return 1 if any(o.status == "failed" for o in outcomes) else 0


def _cmd_report(args) -> int:
    run_dir = Path(args.run_dir).expanduser().resolve()
    if not run_dir.is_dir():
        raise CourseError(f"run folder {args.run_dir} does not exist; run the course first "
                          "(python -m pcrl_lib.course run --profile quick) or pass the run's --output-dir")
    if args.claims and not Path(args.claims).is_file():
        raise CourseError(f"--claims {args.claims} does not exist; the kit's claims file is data/paper_claims.json")
    if args.min_seeds is not None and args.min_seeds < 1:
        raise CourseError(f"--min-seeds must be at least 1, got {args.min_seeds}")
    try:
        expected = [nb.stem for nb in discover(args.notebooks_dir)]
    except CourseError:
        expected = None  # no course folder here: report the records that exist
    try:
        path = write_results(run_dir, claims=args.claims, expected=expected, min_seeds=args.min_seeds)
    except ValueError as err:
        raise CourseError(str(err)) from err
    print(f"results report: {path}")
    return 0


def _cmd_student(args) -> int:
    from .student import StudentError, write_student_course

    files = sorted({nb.path for nb in discover(args.notebooks_dir)})
    try:
        written = write_student_course(args.out, files, force=args.force)
    except StudentError as err:
        raise CourseError(str(err)) from err
    for item in written:
        note = "kept (differs from the generated version: a learner's work? --force overwrites)" if item.kept \
            else f"{item.solutions_removed} solution(s) removed"
        print(f"{item.path.name:<28} {note}")
    print(f"student notebooks: {Path(args.out).expanduser().resolve()} (run them in place, or "
          f"python -m pcrl_lib.course --notebooks-dir {args.out} run ...)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pcrl_lib.course", description=__doc__.split("\n\n")[0])
    parser.add_argument("--notebooks-dir", default=None, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the notebooks in order with their parameters and defaults")
    r = sub.add_parser("run", help="execute the notebooks headless with papermill")
    r.add_argument("--profile", default="quick", help=f"one of {', '.join(PROFILES)} (default quick)")
    r.add_argument("--data-root", default=None, help="folder with the real datasets (paper profile)")
    r.add_argument("--output-dir", default=None, help="default runs/<profile>")
    r.add_argument("--only", default=None, help="comma-separated notebook numbers or names, e.g. 03,04")
    r.add_argument("--resume", action="store_true", help="skip notebooks already executed with the same parameters")
    r.add_argument("--force", action="store_true", help="re-execute all and recompute cached results")
    r.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="inject a notebook parameter (JSON values: 3, 0.1, true, null, [1,2])")
    r.add_argument("--cell-timeout", type=float, default=-1, help="seconds per cell (default by profile)")
    r.add_argument("--no-prepare", action="store_true", help="skip fetching demo data / writing synthetic data")
    rep = sub.add_parser("report", help="write RESULTS.md (+ figures) from a run's records")
    rep.add_argument("run_dir", help="the run folder, e.g. runs/quick")
    rep.add_argument("--claims", default=None, help="claims file (default data/paper_claims.json)")
    rep.add_argument("--min-seeds", type=int, default=None,
                     help="common seeds a comparison needs to count for a claim (default 2)")
    st = sub.add_parser("student", help="write student versions of the notebooks (exercise solutions removed)")
    st.add_argument("--out", required=True, help="folder for the student notebooks (created if missing)")
    st.add_argument("--force", action="store_true", help="overwrite notebooks there that differ (a learner's work)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "list":
            return _cmd_list(args)
        if args.command == "report":
            return _cmd_report(args)
        if args.command == "student":
            return _cmd_student(args)
        return _cmd_run(args)
    except CourseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except CourseInterrupted as err:
        print(err, file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # outside a notebook (preparing data, writing the summary)
        print("interrupted; rerun with --resume to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
