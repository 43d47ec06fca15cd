"""The records a course run leaves, read back: one status per notebook and every result row.

Inputs (in the run folder, ``runs/<profile>`` or the course's ``--output-dir``):

* ``records/NN_name.json`` — one per notebook (:func:`pcrl_lib.course.write_record`): ``status``,
  ``written_at``, ``env`` (versions, device, git commit, profile), ``results`` (a list of
  :class:`~pcrl_lib.finetune.records.ResultRow` dicts; ``wall_s`` is accepted for ``wall_time_s``).
* ``state.json`` — the runner's status per notebook (``ok`` / ``failed`` with its error / ``running``).

:func:`collect_records` never stops on a bad file: unreadable records, malformed rows and duplicates are listed in
``RunRecords.problems`` and the notebook's status says why.

Each row's data source (real / stand-in / demo, :mod:`pcrl_lib.provenance`) is decided here, from the row's ``data``
entry, its protocol, its task name and its record's DATA_ROOT, and kept in ``protocol["data_source"]`` so that every
table built from ``RunRecords.rows`` can keep the sources apart.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from .fileio import read_json
from .finetune.records import ResultRow, rows_to_frame
from .provenance import infer_source

_ROW_FIELDS = tuple(f.name for f in fields(ResultRow))


@dataclass(frozen=True)
class NotebookStatus:
    """What a run holds for one notebook: ``status`` is ``ok``, ``failed``, ``not run``, ``interrupted``,
    ``unreadable`` or ``running (this report)``; ``detail`` says why (the error's last line, ...)."""

    notebook: str
    status: str
    detail: str
    n_rows: int
    written_at: str | None
    wall_s: float | None


@dataclass
class RunRecords:
    """Everything read from a run folder. ``frame`` holds one line per result row (the
    :class:`ResultRow` fields plus ``notebook``, ``data`` (the row's data source: ``real``, ``stand-in``, ``demo`` or
    ``unknown``, also in each row's ``protocol["data_source"]``), ``profile``, ``git_commit``, ``versions``,
    ``data_root``)."""

    run_dir: Path
    notebooks: list[NotebookStatus]
    rows: list[ResultRow]
    frame: pd.DataFrame
    envs: dict[str, dict]
    problems: list[str]

    def status_frame(self) -> pd.DataFrame:
        return pd.DataFrame([vars(s) for s in self.notebooks],
                            columns=["notebook", "status", "detail", "n_rows", "written_at", "wall_s"])


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    # The runner's error ends with "executed notebook kept at ..."; the exception is the line before it.
    useful = [line for line in lines if not line.startswith("executed notebook kept at")]
    return (useful or lines or ["no error message recorded"])[-1]


def _to_row(raw: Any) -> ResultRow:
    """A result row dict → :class:`ResultRow` (``null`` → NaN, ``wall_s`` → ``wall_time_s``)."""
    if not isinstance(raw, dict):
        raise ValueError(f"a result row must be a dict, got {type(raw).__name__}")
    d = dict(raw)
    if "wall_time_s" not in d and "wall_s" in d:
        d["wall_time_s"] = d["wall_s"]
    missing = [name for name in _ROW_FIELDS if name not in d]
    if missing:
        raise ValueError(f"missing {missing}")
    try:
        for key in ("value", "ci_low", "ci_high", "wall_time_s"):
            d[key] = math.nan if d[key] is None else float(d[key])
        d["label_fraction"], d["seed"] = float(d["label_fraction"]), int(d["seed"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"non-numeric value/fraction/seed ({err})") from err
    d["protocol"] = d["protocol"] if isinstance(d["protocol"], dict) else {}
    return ResultRow.from_dict(d)


def collect_records(run_dir: str | os.PathLike, *, expected: Sequence[str] | None = None,
                    current: str | None = None) -> RunRecords:
    """Read a run folder's records and state.

    Args:
        run_dir: the folder a course run wrote (``runs/<profile>`` or its ``--output-dir``).
        expected: the course's notebook stems in order; any of them without a record is reported (``not run``,
            ``failed`` with the runner's error, or ``interrupted``). Records of other notebooks are added.
        current: the notebook writing this report (reported as running; an older record of it is ignored).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist; pass the folder a course run wrote, "
                                "e.g. runs/quick (python -m pcrl_lib.course run --profile quick)")
    problems: list[str] = []
    state: dict = {}
    if (run_dir / "state.json").is_file():
        state, err = read_json(run_dir / "state.json")
        if err or not isinstance(state, dict):
            problems.append(f"state.json is unreadable ({err or 'not a JSON object'}): statuses come from records only")
            state = {}
    record_paths = {p.stem: p for p in sorted((run_dir / "records").glob("*.json"))}
    # NN_name stems sort in course order; records and states of notebooks outside ``expected`` join in place.
    names = sorted({*(expected or []), *record_paths, *state})
    statuses: list[NotebookStatus] = []
    rows: list[ResultRow] = []
    origin: list[str] = []  # per row: its notebook
    envs: dict[str, dict] = {}
    for name in names:
        info = state.get(name, {}) if isinstance(state.get(name), dict) else {}
        wall = info.get("wall_s")
        path = record_paths.get(name)
        if name == current:  # an older record of the notebook writing this report is about to be replaced
            statuses.append(NotebookStatus(name, "running (this report)", "", 0, None, None))
            continue
        if path is None:
            if info.get("status") == "failed":
                statuses.append(NotebookStatus(name, "failed", _last_line(info.get("error")), 0, None, wall))
            elif info.get("status") == "running":
                statuses.append(NotebookStatus(name, "interrupted", "started but never finished", 0, None, None))
            else:
                statuses.append(NotebookStatus(name, "not run", "no record", 0, None, None))
            continue
        record, err = read_json(path)
        if err or not isinstance(record, dict):
            statuses.append(NotebookStatus(name, "unreadable", err or "not a JSON object", 0, None, wall))
            problems.append(f"records/{path.name} is unreadable: {err or 'not a JSON object'}")
            continue
        env = record.get("env") if isinstance(record.get("env"), dict) else {}
        envs[name] = env
        results = record.get("results") if isinstance(record.get("results"), list) else []
        # A notebook may keep other tables in "results" (e.g. dataset inventories): a result row has a metric.
        candidates = [(i, raw) for i, raw in enumerate(results)
                      if isinstance(raw, dict) and {"metric", "value"} <= set(raw)]
        good = 0
        for i, raw in candidates:
            try:
                row = _to_row(raw)
                source = infer_source(row.task, row.protocol, raw.get("data"), env or None)
                rows.append(replace(row, protocol={**row.protocol, "data_source": source}))
                origin.append(name)
                good += 1
            except ValueError as row_err:
                problems.append(f"records/{path.name}: result row {i} skipped: {row_err}")
        notes = []
        if good < len(candidates):
            notes.append(f"{len(candidates) - good} of {len(candidates)} result rows unreadable")
        if len(candidates) < len(results):
            notes.append(f"{len(results) - len(candidates)} other entries (no metric; not results)")
        statuses.append(NotebookStatus(name, str(record.get("status", "ok")), "; ".join(notes), good,
                                       record.get("written_at"), wall))
    rows, origin = _drop_duplicates(rows, origin, problems)
    return RunRecords(run_dir, statuses, rows, _context_frame(rows, origin, envs), envs, problems)


def _drop_duplicates(rows: list[ResultRow], origin: list[str], problems: list[str]):
    """Keep the last of rows with the same (task, data source, split, metric, fraction, method, seed): counting one
    result twice would fake a second seed. Rows of different data sources are different results."""
    last: dict[tuple, int] = {}
    for i, r in enumerate(rows):
        last[(r.task, r.protocol.get("data_source"), r.split, r.metric, r.label_fraction, r.method, r.seed)] = i
    if len(last) == len(rows):
        return rows, origin
    dropped = len(rows) - len(last)
    keep = sorted(last.values())
    kept = set(keep)
    where = sorted({origin[i] for i in range(len(rows)) if i not in kept})
    problems.append(f"{dropped} duplicate result rows (same task, data, split, metric, fraction, method and seed) in "
                    f"{', '.join(where)}: the last one read was kept")
    return [rows[i] for i in keep], [origin[i] for i in keep]


def _context_frame(rows: list[ResultRow], origin: list[str], envs: dict[str, dict]) -> pd.DataFrame:
    frame = rows_to_frame(rows)
    env_of = [envs.get(name, {}) for name in origin]
    frame["notebook"] = list(origin)
    frame["data"] = [r.protocol["data_source"] for r in rows]
    frame["profile"] = [e.get("profile") for e in env_of]
    frame["git_commit"] = [e.get("git_commit") for e in env_of]
    frame["data_root"] = [e.get("data_root") for e in env_of]
    frame["versions"] = [", ".join(f"{k} {v}" for k, v in (e.get("versions") or {}).items()
                                   if k in ("python", "torch", "numpy")) for e in env_of]
    return frame

