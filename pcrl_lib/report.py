"""The reproduction report: every number of a run computed from the run's own records, never typed by hand.

::

    python -m pcrl_lib.course report runs/quick        # → runs/quick/RESULTS.md + label_efficiency_<task>.png

Inputs (what a course run leaves in its folder):

* ``records/NN_name.json`` — one per notebook (:func:`pcrl_lib.course.write_record`): ``status``,
  ``written_at``, ``env`` (versions, device, git commit, profile), ``results`` (a list of
  :class:`~pcrl_lib.finetune.records.ResultRow` dicts; ``wall_s`` is accepted for ``wall_time_s``).
* ``state.json`` — the runner's status per notebook (``ok`` / ``failed`` with its error / ``running``).
* the claims file ``data/paper_claims.json`` (schema below).

Aggregation (test split). Per (task, metric, label fraction ``f``, method) over the seeds ``s`` with a defined
value ``v_s``: mean, standard deviation (``ddof = 1``, undefined for one seed) and ``n`` — the table of
:func:`pcrl_lib.finetune.records.summarize` — plus the CI ``[mean_s ci_low_s, mean_s ci_high_s]``: each row's
95 % bootstrap interval over test samples/cases, averaged over seeds. Each task's *headline* metric is the
one its notebooks selected on (the metric of its validation rows: ``auc_mean``, ``dice_mean``).

Gain of PCRL over another initialisation ``b`` at one cell: ``Δ = o · (mean_pcrl − mean_b)`` with ``o = +1``
when higher is better and ``o = −1`` for distances (``hd95_*``), so ``Δ > 0`` always means PCRL is better;
``wins`` counts the seeds (paired: same seed, same label subset) in which PCRL is better.

Claims file schema (``pcrl-claims/1``, JSON)::

    {"schema": "pcrl-claims/1", "paper": "...", "note": "...",
     "definitions": {"low_fraction_max": 0.25,                      # "low" label fractions: f <= this
                     "paper_tasks": ["nih14", ...],                   # what "tasks": "paper" means
                     "task_sets": {"2d": ["nih14", "chexpert"]}},     # other named task lists
     "claims": [{"id": "...", "statement": "...", "source": "where the paper says it, in words",
                 "check": {"better": "pcrl", "than": "scratch",
                           "tasks": "paper" | "all" | "<task set>" | ["nih14", ...],
                           "fractions": "low" | "all" | [0.1, ...],
                           "metric": "auc_mean"}}]}                   # optional; default: the headline

Verdict rules. A claim "``better`` beats ``than``" is checked in every *cell* (task × label fraction in its
scope that the run has; a run task ``lits_synthetic`` counts for the claim task ``lits``). A cell is

* ``for`` / ``against`` — both methods have at least ``min_seeds`` common seeds, their CIs do not overlap
  and the paired per-seed difference has the same sign in every seed;
* ``CIs overlap`` / ``seeds disagree`` — comparable but not separated;
* ``too few seeds`` / ``no CI`` (none, or zero width: a one-case test split) / ``missing <method>`` — not
  comparable.

Over the comparable cells: **supported** when more than half are ``for`` and none ``against``;
**contradicted** when more than half are ``against`` and none ``for``; otherwise, or when no cell is
comparable, **cannot tell** — with the reason (too few seeds, CIs overlap, method missing, mixed evidence).

Legend: ``f`` label fraction (share of training patients), ``s`` seed, ``n`` seeds with a defined value,
``CI`` 95 % confidence interval, ``Δ`` oriented gain.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .experiments import PRETRAIN_METHODS
from .finetune.records import ResultRow, rows_to_frame, summarize
from .paths import repo_root

RESULTS_NAME = "RESULTS.md"
CLAIMS_SCHEMA = "pcrl-claims/1"
REFERENCE = "pcrl"
MIN_SEEDS = 2
KEYS = ["task", "metric", "label_fraction", "method"]
# Display order of initialisations: supervised baselines, then the pretraining methods from weakest to PCRL.
METHOD_ORDER = ("scratch", "imagenet", *PRETRAIN_METHODS)
# The ablation chain of PCRL_SPEC §9, each step adding one component to the one before.
ABLATION_CHAIN = (("moco", "MoCo v2 (contrastive only)"), ("c2l", "C2L = MoCo + cross-model mixup"),
                  ("pcrl_recon", "+ reconstruction"), ("pcrl_tca", "+ TCA"), ("pcrl", "+ hybrid encoder = PCRL"))
FOR, AGAINST, OVERLAP, DISAGREE = "for", "against", "CIs overlap", "seeds disagree"
FEW_SEEDS, NO_CI = "too few seeds", "no CI"
SUPPORTED, CONTRADICTED, CANNOT_TELL = "supported", "contradicted", "cannot tell"
_ROW_FIELDS = tuple(f.name for f in fields(ResultRow))


def default_claims_path() -> Path:
    return repo_root() / "data" / "paper_claims.json"


def higher_is_better(metric: str) -> bool:
    """AUC and Dice: higher is better; distances (``hd95_*``) and losses: lower is better."""
    return not (metric.startswith("hd95") or "loss" in metric)


# --------------------------------------------------------------------------------------------------- records
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
    :class:`ResultRow` fields plus ``notebook``, ``data``, ``profile``, ``git_commit``, ``versions``,
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


def _read_json(path: Path) -> tuple[Any, str | None]:
    try:
        return json.loads(path.read_text()), None
    except (OSError, json.JSONDecodeError) as err:
        return None, f"{type(err).__name__}: {err}"


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
        state, err = _read_json(run_dir / "state.json")
        if err or not isinstance(state, dict):
            problems.append(f"state.json is unreadable ({err or 'not a JSON object'}): statuses come from records only")
            state = {}
    record_paths = {p.stem: p for p in sorted((run_dir / "records").glob("*.json"))}
    # NN_name stems sort in course order; records and states of notebooks outside ``expected`` join in place.
    names = sorted({*(expected or []), *record_paths, *state})
    statuses: list[NotebookStatus] = []
    rows: list[ResultRow] = []
    origin: list[tuple[str, Any]] = []  # per row: its notebook and the row's own "data" entry, if any
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
        record, err = _read_json(path)
        if err or not isinstance(record, dict):
            statuses.append(NotebookStatus(name, "unreadable", err or "not a JSON object", 0, None, wall))
            problems.append(f"records/{path.name} is unreadable: {err or 'not a JSON object'}")
            continue
        envs[name] = record.get("env") or {}
        results = record.get("results") if isinstance(record.get("results"), list) else []
        # A notebook may keep other tables in "results" (e.g. dataset inventories): a result row has a metric.
        candidates = [(i, raw) for i, raw in enumerate(results)
                      if isinstance(raw, dict) and {"metric", "value"} <= set(raw)]
        good = 0
        for i, raw in candidates:
            try:
                rows.append(_to_row(raw))
                origin.append((name, raw.get("data")))
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


def _drop_duplicates(rows: list[ResultRow], origin: list[tuple], problems: list[str]):
    """Keep the last of rows with the same (task, split, metric, fraction, method, seed): counting one result
    twice would fake a second seed."""
    last: dict[tuple, int] = {}
    for i, r in enumerate(rows):
        last[(r.task, r.split, r.metric, r.label_fraction, r.method, r.seed)] = i
    if len(last) == len(rows):
        return rows, origin
    dropped = len(rows) - len(last)
    keep = sorted(last.values())
    kept = set(keep)
    where = sorted({origin[i][0] for i in range(len(rows)) if i not in kept})
    problems.append(f"{dropped} duplicate result rows (same task, split, metric, fraction, method and seed) in "
                    f"{', '.join(where)}: the last one read was kept")
    return [rows[i] for i in keep], [origin[i] for i in keep]


def _context_frame(rows: list[ResultRow], origin: list[tuple], envs: dict[str, dict]) -> pd.DataFrame:
    frame = rows_to_frame(rows)
    env_of = [envs.get(name, {}) for name, _ in origin]
    frame["notebook"] = [name for name, _ in origin]
    frame["data"] = [_data_source(r.protocol, data, env.get("data_root"))
                     for r, (_, data), env in zip(rows, origin, env_of)]
    frame["profile"] = [e.get("profile") for e in env_of]
    frame["git_commit"] = [e.get("git_commit") for e in env_of]
    frame["data_root"] = [e.get("data_root") for e in env_of]
    frame["versions"] = [", ".join(f"{k} {v}" for k, v in (e.get("versions") or {}).items()
                                   if k in ("python", "torch", "numpy")) for e in env_of]
    return frame


# --------------------------------------------------------------------------------------------------- tables
def aggregate(rows: Sequence[ResultRow], split: str = "test") -> pd.DataFrame:
    """Per (task, metric, label_fraction, method): ``mean``, ``std``, ``n_seeds`` (from
    :func:`~pcrl_lib.finetune.records.summarize`), ``ci_low`` / ``ci_high`` (per-seed bootstrap bounds averaged
    over the seeds with a defined value) and ``seeds`` (a tuple). Empty frame when the split has no rows."""
    columns = [*KEYS, "mean", "std", "n_seeds", "ci_low", "ci_high", "seeds"]
    rows = [r for r in rows if r.split == split]
    if not rows:
        return pd.DataFrame(columns=columns)
    table = summarize(rows, split)
    frame = rows_to_frame(rows)
    defined = frame[np.isfinite(frame["value"].astype(float))]
    extra = defined.groupby(KEYS, sort=True).agg(ci_low=("ci_low", "mean"), ci_high=("ci_high", "mean"),
                                                 seeds=("seed", lambda s: tuple(sorted(int(x) for x in s))))
    table = table.merge(extra.reset_index(), on=KEYS, how="left")
    table["seeds"] = [s if isinstance(s, tuple) else () for s in table["seeds"]]
    table["method"] = pd.Categorical(table["method"], _method_order(table["method"]), ordered=True)
    table = table.sort_values(KEYS).reset_index(drop=True)
    table["method"] = table["method"].astype(str)
    return table[columns]


def _method_order(methods) -> list[str]:
    present = set(methods)
    return [m for m in METHOD_ORDER if m in present] + sorted(present - set(METHOD_ORDER))


def headline_metrics(rows: Sequence[ResultRow]) -> dict[str, str]:
    """Task → the metric its notebooks selected on (the metric of its ``val`` rows); without validation rows
    ``auc_mean`` / ``dice_mean`` when present, else the task's first metric."""
    tasks = sorted({r.task for r in rows})
    chosen = {}
    for task in tasks:
        val = [r.metric for r in rows if r.task == task and r.split == "val"]
        test = sorted({r.metric for r in rows if r.task == task and r.split == "test"})
        if val:
            chosen[task] = max(set(val), key=val.count)
        elif test:
            chosen[task] = next((m for m in ("auc_mean", "dice_mean") if m in test), test[0])
    return chosen


def _seed_values(rows: Sequence[ResultRow], split: str = "test") -> dict[tuple, dict[int, float]]:
    """(task, metric, fraction, method) → {seed: value} over defined values (the paired comparisons)."""
    out: dict[tuple, dict[int, float]] = {}
    for r in rows:
        if r.split == split and math.isfinite(r.value):
            out.setdefault((r.task, r.metric, r.label_fraction, r.method), {})[r.seed] = r.value
    return out


def gains(rows: Sequence[ResultRow], table: pd.DataFrame, headline: dict[str, str],
          reference: str = REFERENCE) -> pd.DataFrame:
    """Oriented gain ``Δ`` of ``reference`` over every other method per (task, headline metric, fraction),
    with ``wins`` = seeds in which ``reference`` is better out of ``paired`` common seeds."""
    columns = ["task", "metric", "label_fraction", "method", "reference_mean", "other_mean", "gain", "wins", "paired"]
    per_seed = _seed_values(rows)
    out = []
    for (task, metric, fraction), cell in table.groupby(["task", "metric", "label_fraction"], sort=False):
        if headline.get(task) != metric or reference not in set(cell["method"]):
            continue
        ref = cell[cell["method"] == reference].iloc[0]
        sign = 1.0 if higher_is_better(metric) else -1.0
        for _, other in cell[cell["method"] != reference].iterrows():
            a = per_seed.get((task, metric, fraction, reference), {})
            b = per_seed.get((task, metric, fraction, other["method"]), {})
            common = sorted(set(a) & set(b))
            wins = sum(sign * (a[s] - b[s]) > 0 for s in common)
            out.append({"task": task, "metric": metric, "label_fraction": fraction, "method": other["method"],
                        "reference_mean": ref["mean"], "other_mean": other["mean"],
                        "gain": sign * (ref["mean"] - other["mean"]), "wins": wins, "paired": len(common)})
    return pd.DataFrame(out, columns=columns)


def ablation(table: pd.DataFrame, headline: dict[str, str]) -> pd.DataFrame:
    """The ablation chain (MoCo →) C2L → + reconstruction → + TCA → PCRL per task and fraction, where the run
    has at least two of its steps; ``delta`` is the oriented change from the previous step present."""
    columns = ["task", "metric", "label_fraction", "method", "step", "mean", "std", "n_seeds", "delta"]
    steps = dict(ABLATION_CHAIN)
    out = []
    for (task, metric, fraction), cell in table.groupby(["task", "metric", "label_fraction"], sort=False):
        chain = cell[cell["method"].isin(steps)]
        if headline.get(task) != metric or len(chain) < 2:
            continue
        sign = 1.0 if higher_is_better(metric) else -1.0
        previous = math.nan
        for method, _ in ABLATION_CHAIN:
            hit = chain[chain["method"] == method]
            if hit.empty:
                continue
            r = hit.iloc[0]
            out.append({"task": task, "metric": metric, "label_fraction": fraction, "method": method,
                        "step": steps[method], "mean": r["mean"], "std": r["std"], "n_seeds": r["n_seeds"],
                        "delta": sign * (r["mean"] - previous)})
            previous = r["mean"]
    return pd.DataFrame(out, columns=columns)


def protocol_table(frame: pd.DataFrame, headline: dict[str, str]) -> pd.DataFrame:
    """One line per (task, method, fraction) of the headline metric's test rows: data, split, seeds, profile,
    epochs, device, wall time, peak memory (a protocol key starting with ``peak``, when recorded), versions,
    git commit, notebook and sizes."""
    columns = ["task", "method", "label_fraction", "split", "seeds", "data", "profile", "epochs", "device",
               "wall_s", "peak_memory", "versions", "git_commit", "notebook", "n_train/val/test"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    test = frame[(frame["split"] == "test") & (frame["metric"] == frame["task"].map(headline))]
    out = []
    order = {m: i for i, m in enumerate(_method_order(test["method"]))}
    groups = sorted(test.groupby(["task", "method", "label_fraction"]),
                    key=lambda kv: (kv[0][0], order[kv[0][1]], kv[0][2]))
    for (task, method, fraction), g in groups:
        g = g.sort_values("seed")
        protocols = list(g["protocol"])
        planned = sorted({str((p.get("finetune") or {}).get("epochs", "?")) for p in protocols})
        run = [str(p.get("epochs_run", "?")) for p in protocols]
        best = [str(p.get("best_epoch", "?")) for p in protocols]
        peaks = [v for p in protocols for k, v in p.items() if k.startswith("peak")]
        sizes = sorted({f"{a}/{b}/{c}" for a, b, c in zip(g["n_train"], g["n_val"], g["n_test"])})
        out.append({"task": task, "method": method, "label_fraction": fraction, "split": "test",
                    "seeds": ",".join(str(s) for s in sorted(g["seed"])),
                    "data": _join(g["data"]), "profile": _join(g["profile"]),
                    "epochs": f"{'/'.join(planned)} planned; run {','.join(run)}; best {','.join(best)}",
                    "device": _join(g["device"]), "wall_s": float(np.nansum(g["wall_time_s"].astype(float))),
                    "peak_memory": _join(peaks) if peaks else "not recorded", "versions": _join(g["versions"]),
                    "git_commit": _join(g["git_commit"]), "notebook": _join(g["notebook"]),
                    "n_train/val/test": "; ".join(sizes)})
    return pd.DataFrame(out, columns=columns)


def _join(values) -> str:
    seen = [str(v) for v in dict.fromkeys(values) if v is not None and v == v and str(v) != ""]
    return "; ".join(seen) if seen else "unknown"


def _data_source(protocol: dict, data: Any, data_root: str | None) -> str:
    """The data behind one row: the row's own ``data`` entry (``real`` / ``synthetic`` / ``demo``), else what its
    protocol names, else the notebook's DATA_ROOT, else the profile's demo + synthetic data."""
    task = protocol.get("task") if isinstance(protocol.get("task"), dict) else {}
    named = data or protocol.get("data") or task.get("data") or task.get("source")
    if named:
        return str(named)
    return f"DATA_ROOT {data_root}" if data_root else "demo + synthetic (no DATA_ROOT)"


# --------------------------------------------------------------------------------------------------- claims
@dataclass(frozen=True)
class Claim:
    """One claim of the paper in checkable form: ``better`` beats ``than`` on ``tasks`` (None = every task of
    the run) at ``fractions`` ("low", "all" or explicit values) on ``metric`` (None = each task's headline)."""

    id: str
    statement: str
    source: str
    better: str
    than: str
    tasks: tuple[str, ...] | None
    fractions: str | tuple[float, ...]
    metric: str | None


@dataclass(frozen=True)
class ClaimSet:
    path: Path
    paper: str
    note: str
    low_fraction_max: float
    claims: tuple[Claim, ...]


def load_claims(path: str | os.PathLike | None = None) -> ClaimSet:
    """Read and validate a claims file (schema in the module docstring); errors name the file and the claim."""
    path = Path(path) if path is not None else default_claims_path()
    if not path.is_file():
        raise FileNotFoundError(f"claims file {path} does not exist; the kit's is data/paper_claims.json")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"claims file {path} is not valid JSON: {err}") from err
    if not isinstance(data, dict) or data.get("schema") != CLAIMS_SCHEMA:
        raise ValueError(f"claims file {path}: expected \"schema\": \"{CLAIMS_SCHEMA}\" at the top level")
    definitions = data.get("definitions") or {}
    low = definitions.get("low_fraction_max")
    if not isinstance(low, (int, float)) or not 0 < low <= 1:
        raise ValueError(f"claims file {path}: definitions.low_fraction_max must be a number in (0, 1], got {low!r}")
    task_sets = {"paper": definitions.get("paper_tasks"), **(definitions.get("task_sets") or {})}
    claims, seen = [], set()
    for i, raw in enumerate(data.get("claims") or []):
        claim = _parse_claim(raw, i, task_sets, path)
        if claim.id in seen:
            raise ValueError(f"claims file {path}: claim id {claim.id!r} appears twice")
        seen.add(claim.id)
        claims.append(claim)
    if not claims:
        raise ValueError(f"claims file {path} lists no claims")
    return ClaimSet(path, str(data.get("paper", "")), str(data.get("note", "")), float(low), tuple(claims))


def _parse_claim(raw: Any, index: int, task_sets: dict, path: Path) -> Claim:
    where = f"claims file {path}: claim #{index}"
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be an object")
    where += f" ({raw.get('id', 'no id')})"
    for key in ("id", "statement", "source"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise ValueError(f"{where}: {key!r} must be a non-empty string (every claim names its source)")
    check = raw.get("check")
    if not isinstance(check, dict):
        raise ValueError(f"{where}: 'check' must be an object like {{\"better\": \"pcrl\", \"than\": \"scratch\", "
                         "\"tasks\": \"paper\", \"fractions\": \"low\"}")
    for key in ("better", "than"):
        if not isinstance(check.get(key), str):
            raise ValueError(f"{where}: check.{key} must be a method name (e.g. {', '.join(METHOD_ORDER)})")
    if check["better"] == check["than"]:
        raise ValueError(f"{where}: check.better and check.than are the same method")
    tasks = check.get("tasks", "all")
    if tasks == "all":
        task_tuple = None
    elif isinstance(tasks, str):
        if not isinstance(task_sets.get(tasks), list):
            raise ValueError(f"{where}: check.tasks {tasks!r} is not 'all', a list or a defined task set "
                             f"({', '.join(k for k, v in task_sets.items() if v)})")
        task_tuple = tuple(task_sets[tasks])
    elif isinstance(tasks, list) and tasks and all(isinstance(t, str) for t in tasks):
        task_tuple = tuple(tasks)
    else:
        raise ValueError(f"{where}: check.tasks must be 'all', a task-set name or a list of task names")
    fractions = check.get("fractions", "all")
    if isinstance(fractions, list) and fractions and all(isinstance(f, (int, float)) and 0 < f <= 1
                                                          for f in fractions):
        fractions = tuple(float(f) for f in fractions)
    elif fractions not in ("low", "all"):
        raise ValueError(f"{where}: check.fractions must be 'low', 'all' or a list of fractions in (0, 1]")
    metric = check.get("metric")
    if metric is not None and not isinstance(metric, str):
        raise ValueError(f"{where}: check.metric must be a metric name or absent")
    return Claim(raw["id"], raw["statement"], raw["source"], check["better"], check["than"], task_tuple,
                 fractions, metric)


@dataclass(frozen=True)
class Cell:
    """One comparison of a claim: ``outcome`` is ``for``, ``against``, ``CIs overlap``, ``seeds disagree``,
    ``too few seeds``, ``no CI`` or ``missing <method>``."""

    task: str
    metric: str
    label_fraction: float
    outcome: str
    better: dict | None
    than: dict | None
    paired: int

    @property
    def comparable(self) -> bool:
        return self.outcome in (FOR, AGAINST, OVERLAP, DISAGREE)

    def describe(self) -> str:
        def side(d):
            if not d:
                return "absent"
            m = d["mean"]
            return f"{_fmt(m)} [{_fmt(d['ci_low'], m)}, {_fmt(d['ci_high'], m)}] n={d['n_seeds']}"
        return (f"{self.task} {self.metric} @ {_pct(self.label_fraction)}: {side(self.better)} vs "
                f"{side(self.than)} → {self.outcome}")


@dataclass(frozen=True)
class Verdict:
    claim: Claim
    verdict: str
    reason: str
    cells: tuple[Cell, ...]


def task_matches(run_task: str, claim_task: str) -> bool:
    """A run's task counts for a claim's task when it is that task or a look-alike of it: the segmentation data
    name their source (``lits_synthetic``, ``brats_demo``), the cells say which one was compared."""
    return run_task == claim_task or run_task.startswith(claim_task + "_")


def _in_scope(fraction: float, scope, low_max: float) -> bool:
    if scope == "all":
        return True
    if scope == "low":
        return fraction <= low_max + 1e-9
    return any(math.isclose(fraction, f, abs_tol=1e-9) for f in scope)


def _evaluate_cell(task, metric, fraction, claim, table, per_seed, min_seeds) -> Cell:
    def lookup(method):
        hit = table[(table["task"] == task) & (table["metric"] == metric)
                    & (table["label_fraction"] == fraction) & (table["method"] == method)]
        if hit.empty or int(hit.iloc[0]["n_seeds"]) == 0:
            return None
        r = hit.iloc[0]
        return {"mean": float(r["mean"]), "ci_low": float(r["ci_low"]), "ci_high": float(r["ci_high"]),
                "n_seeds": int(r["n_seeds"])}

    a, b = lookup(claim.better), lookup(claim.than)
    sa = per_seed.get((task, metric, fraction, claim.better), {})
    sb = per_seed.get((task, metric, fraction, claim.than), {})
    common = sorted(set(sa) & set(sb))
    missing = [m for m, d in ((claim.better, a), (claim.than, b)) if d is None]
    if missing:
        return Cell(task, metric, fraction, f"missing {', '.join(missing)}", a, b, 0)
    if len(common) < min_seeds:
        return Cell(task, metric, fraction, FEW_SEEDS, a, b, len(common))
    # A zero-width interval comes from a test split too small to resample (one case): it proves nothing.
    if not all(math.isfinite(d["ci_low"]) and math.isfinite(d["ci_high"]) and d["ci_high"] > d["ci_low"]
               for d in (a, b)):
        return Cell(task, metric, fraction, NO_CI, a, b, len(common))
    sign = 1.0 if higher_is_better(metric) else -1.0
    diffs = np.array([sign * (sa[s] - sb[s]) for s in common])
    # Oriented intervals: "a above b" means a's worst bound beats b's best bound.
    a_lo, a_hi = sorted((sign * a["ci_low"], sign * a["ci_high"]))
    b_lo, b_hi = sorted((sign * b["ci_low"], sign * b["ci_high"]))
    if a_lo > b_hi:
        outcome = FOR if (diffs > 0).all() else DISAGREE
    elif b_lo > a_hi:
        outcome = AGAINST if (diffs < 0).all() else DISAGREE
    else:
        outcome = OVERLAP
    return Cell(task, metric, fraction, outcome, a, b, len(common))


def check_claims(claims: ClaimSet, rows: Sequence[ResultRow], table: pd.DataFrame, headline: dict[str, str], *,
                 min_seeds: int = MIN_SEEDS) -> list[Verdict]:
    """Verdict per claim from the run's aggregated ``table`` (rules in the module docstring)."""
    if not isinstance(min_seeds, int) or min_seeds < 1:
        raise ValueError(f"min_seeds must be a positive int, got {min_seeds!r}")
    per_seed = _seed_values(rows)
    run_tasks = sorted(set(table["task"])) if not table.empty else []
    verdicts = []
    for claim in claims.claims:
        tasks = [t for t in run_tasks if claim.tasks is None or any(task_matches(t, c) for c in claim.tasks)]
        cells = []
        for task in tasks:
            metric = claim.metric or headline.get(task)
            here = table[(table["task"] == task) & (table["metric"] == metric)]
            for fraction in sorted(set(here["label_fraction"])):
                if _in_scope(fraction, claim.fractions, claims.low_fraction_max):
                    cells.append(_evaluate_cell(task, metric, fraction, claim, table, per_seed, min_seeds))
        verdicts.append(_decide(claim, tuple(cells), tasks, claims.low_fraction_max, min_seeds))
    return verdicts


def _decide(claim: Claim, cells: tuple[Cell, ...], tasks: list[str], low_max: float, min_seeds: int) -> Verdict:
    if not tasks:
        wanted = ", ".join(claim.tasks) if claim.tasks else "any"
        return Verdict(claim, CANNOT_TELL, f"no task of the claim in this run (claim tasks: {wanted})", cells)
    if not cells:
        scope = f"≤ {_pct(low_max)}" if claim.fractions == "low" else str(claim.fractions)
        return Verdict(claim, CANNOT_TELL, f"no label fraction in scope ({scope}) in this run", cells)
    n_for = sum(c.outcome == FOR for c in cells)
    n_against = sum(c.outcome == AGAINST for c in cells)
    comparable = [c for c in cells if c.comparable]
    left_out = len(cells) - len(comparable)
    suffix = f"; {left_out} cell(s) not comparable" if left_out and comparable else ""
    if not comparable:
        reasons = []
        missing = sorted({m for c in cells if c.outcome.startswith("missing ")
                          for m in c.outcome.removeprefix("missing ").split(", ")})
        if missing:
            reasons.append(f"method missing from this run: {', '.join(missing)}")
        if any(c.outcome == FEW_SEEDS for c in cells):
            have = max(c.paired for c in cells if c.outcome == FEW_SEEDS)
            reasons.append(f"too few seeds: {have} common seed(s), at least {min_seeds} needed")
        if any(c.outcome == NO_CI for c in cells):
            reasons.append("no usable confidence interval (none recorded, or zero width from a one-case test split)")
        return Verdict(claim, CANNOT_TELL, "; ".join(reasons), cells)
    n = len(comparable)
    if n_for * 2 > n and n_against == 0:
        return Verdict(claim, SUPPORTED, f"{claim.better} above {claim.than} with separated CIs and in every seed "
                                         f"in {n_for} of {n} comparable cell(s){suffix}", cells)
    if n_against * 2 > n and n_for == 0:
        return Verdict(claim, CONTRADICTED, f"{claim.than} above {claim.better} with separated CIs and in every "
                                            f"seed in {n_against} of {n} comparable cell(s){suffix}", cells)
    if n_for and n_against:
        reason = f"mixed: for in {n_for}, against in {n_against} of {n} comparable cell(s){suffix}"
    else:
        undecided = n - n_for - n_against
        reason = (f"CIs overlap or seeds disagree in {undecided} of {n} comparable cell(s)"
                  f"{f' (for in {n_for})' if n_for else ''}{f' (against in {n_against})' if n_against else ''}"
                  f"{suffix}")
    return Verdict(claim, CANNOT_TELL, reason, cells)


def verdict_frame(verdicts: Sequence[Verdict]) -> pd.DataFrame:
    return pd.DataFrame([{"claim": v.claim.id, "verdict": v.verdict, "reason": v.reason,
                          "cells": len(v.cells), "statement": v.claim.statement} for v in verdicts],
                        columns=["claim", "verdict", "reason", "cells", "statement"])


# --------------------------------------------------------------------------------------------------- report
@dataclass
class Report:
    """Everything RESULTS.md shows; built by :func:`build_report`, written by :func:`write_report`."""

    run_dir: Path
    records: RunRecords
    table: pd.DataFrame
    headline: dict[str, str]
    gains: pd.DataFrame
    ablation: pd.DataFrame
    protocol: pd.DataFrame
    claims: ClaimSet
    verdicts: list[Verdict]
    min_seeds: int
    figures: dict[str, Path] = field(default_factory=dict)

    @property
    def profile(self) -> str:
        profiles = [e.get("profile") for e in self.records.envs.values() if e.get("profile")]
        return max(set(profiles), key=profiles.count) if profiles else self.run_dir.name

    def counts(self) -> dict[str, int]:
        """Key figures: readable records, result rows, tasks and the number of claims per verdict."""
        out = {"records": len(self.records.envs),
               "result_rows": len(self.records.rows), "tasks": len(self.headline)}
        for name in (SUPPORTED, CONTRADICTED, CANNOT_TELL):
            out[f"claims_{name.replace(' ', '_')}"] = sum(v.verdict == name for v in self.verdicts)
        return out


def build_report(run_dir: str | os.PathLike, *, claims: str | os.PathLike | ClaimSet | None = None,
                 expected: Sequence[str] | None = None, current: str | None = None,
                 min_seeds: int = MIN_SEEDS) -> Report:
    """Read a run folder and compute every table of the report (nothing is written).

    Args:
        run_dir: the run folder; ``claims``: a claims file or a loaded :class:`ClaimSet` (default
            ``data/paper_claims.json``); ``expected`` / ``current``: as in :func:`collect_records`;
        min_seeds: common seeds both methods need before a claim's cell counts as comparable.
    """
    claim_set = claims if isinstance(claims, ClaimSet) else load_claims(claims)
    records = collect_records(run_dir, expected=expected, current=current)
    table = aggregate(records.rows)
    headline = headline_metrics(records.rows)
    return Report(Path(run_dir), records, table, headline, gains(records.rows, table, headline),
                  ablation(table, headline), protocol_table(records.frame, headline), claim_set,
                  check_claims(claim_set, records.rows, table, headline, min_seeds=min_seeds), min_seeds)


def plot_label_efficiency(table: pd.DataFrame, task: str, metric: str):
    """Label-efficiency curves of one task and metric from :func:`aggregate`'s table, drawn by
    :func:`pcrl_lib.viz.results.plot_label_efficiency` (band: bootstrap CI; bars: ± std over seeds).

    Returns a ``matplotlib.figure.Figure`` made without pyplot, so writing reports leaves no open figures."""
    from matplotlib.figure import Figure

    from .viz.results import plot_label_efficiency as draw

    data = table[(table["task"] == task) & (table["metric"] == metric)]
    if data.empty:
        raise ValueError(f"no rows for task {task!r} and metric {metric!r} in the table")
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    chance = 0.5 if metric.startswith("auc") else None
    draw(data, ax=fig.add_subplot(), title=f"{task}: label efficiency (band: test bootstrap 95 % CI; "
                                           "bars: ± std over seeds)", ylabel=f"test {metric}", chance=chance)
    return fig


def figure_name(task: str) -> str:
    return f"label_efficiency_{re.sub(r'[^A-Za-z0-9_.-]', '_', task)}.png"


def write_report(report: Report, output: str | os.PathLike | None = None) -> Path:
    """Write the label-efficiency PNGs and ``RESULTS.md`` (default: into the run folder); returns its path."""
    path = Path(output) if output is not None else report.run_dir / RESULTS_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    report.figures = {}
    for task, metric in report.headline.items():
        if ((report.table["task"] == task) & (report.table["metric"] == metric)).any():
            png = path.parent / figure_name(task)
            plot_label_efficiency(report.table, task, metric).savefig(png, dpi=110)
            report.figures[task] = png
    from .course import atomic_write_text

    atomic_write_text(path, render_markdown(report))
    return path


# --------------------------------------------------------------------------------------------------- markdown
def _fmt(value, like: float | None = None, sign: bool = False) -> str:
    """3 decimals for scores in [0, 1], 1 for distances and seconds (``like``: the value setting the scale)."""
    if value is None or not isinstance(value, (int, float, np.floating, np.integer)) or not math.isfinite(value):
        return "–"
    scale = abs(value if like is None or not math.isfinite(like) else like)
    return f"{value:{'+' if sign else ''}.{1 if scale >= 10 else 3}f}"


def _pct(fraction: float) -> str:
    return f"{100 * fraction:g} %"


def _md(rows: list[list[Any]], header: list[str]) -> list[str]:
    def cell(v):
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines + [""]


def _result_cell(r) -> str:
    m = r["mean"]
    std = _fmt(r["std"], m) if r["n_seeds"] > 1 else "–"
    return f"{_fmt(m)} ± {std} [{_fmt(r['ci_low'], m)}, {_fmt(r['ci_high'], m)}] (n={int(r['n_seeds'])})"


def _method_by_fraction(data: pd.DataFrame, render) -> tuple[list[str], list[list[str]]]:
    fractions = sorted(set(data["label_fraction"]))
    rows = []
    for method in _method_order(data["method"]):
        d = data[data["method"] == method].set_index("label_fraction")
        rows.append([f"**{method}**" if method == REFERENCE else method]
                    + [render(d.loc[f]) if f in d.index else "–" for f in fractions])
    return ["method", *(_pct(f) for f in fractions)], rows


def render_markdown(report: Report) -> str:
    """The RESULTS.md text."""
    rec = report.records
    envs = list(rec.envs.values())
    commits, devices = _join(e.get("git_commit") for e in envs), _join(e.get("device") for e in envs)
    versions = _join(", ".join(f"{k} {v}" for k, v in (e.get("versions") or {}).items()
                               if k in ("python", "torch", "numpy")) for e in envs)
    out = [f"# Reproduction report — profile `{report.profile}`", "",
           f"Generated {time.strftime('%Y-%m-%d %H:%M')} from {sum(s.n_rows > 0 for s in rec.notebooks)} notebook "
           f"record(s) with results ({len(rec.rows)} result rows) in `{report.run_dir}`; regenerate with "
           f"`python -m pcrl_lib.course report {report.run_dir}`. Git commit(s): {commits}. Device(s): {devices}. "
           f"Versions: {versions}.",
           "", "**How to read it.** Every number below is computed from this run's records; nothing is typed by hand. "
           "A result cell reads `mean ± std [CI low, CI high] (n=seeds)`: mean and standard deviation over seeds of "
           "the test-split metric, and the 95 % bootstrap confidence interval over test samples/cases averaged over "
           "seeds. The paper's claims are checked as orderings (the paper's own numbers are not reproduced here: "
           f"see `{_relative(report.claims.path)}`). A claim is *supported* only when the confidence intervals "
           f"separate in the claimed direction, in every seed, in most comparable cells, with ≥ {report.min_seeds} "
           "seeds; small runs (smoke, quick) mostly answer *cannot tell* — that is the honest answer for them. "
           "Without DATA_ROOT the tasks run on synthetic look-alikes and demo data (column *data* of the protocol "
           "table): a verdict then tests the paper's ordering on those stand-ins, not on the paper's datasets.", ""]
    out += ["## Notebooks and records", ""]
    out += _md([[s.notebook, s.status, s.n_rows, s.written_at or "–", f"{s.wall_s:.1f}" if s.wall_s else "–",
                 s.detail or ""] for s in rec.notebooks],
               ["notebook", "status", "result rows", "record written", "wall time (s)", "detail"])
    missing = [s.notebook for s in rec.notebooks if s.status in ("not run", "failed", "interrupted", "unreadable")]
    if missing:
        out += [f"**Missing or failed:** {', '.join(missing)} — their results are absent from every table below.", ""]
    out += [f"- {p}" for p in rec.problems] + ([""] if rec.problems else [])

    out += ["## The paper's claims", "", f"Paper: {report.claims.paper}", ""]
    counts = report.counts()
    out += [f"{counts['claims_supported']} supported, {counts['claims_contradicted']} contradicted, "
            f"{counts['claims_cannot_tell']} cannot tell (rules: `pcrl_lib/report.py`; “low” label fractions are "
            f"≤ {_pct(report.claims.low_fraction_max)}).", ""]
    out += _md([[v.claim.id, v.claim.statement, f"**{v.verdict}**", v.reason, v.claim.source] for v in report.verdicts],
               ["claim", "statement", "verdict", "why", "source in the paper"])
    evidence = [f"- `{v.claim.id}`: " + "; ".join(c.describe() for c in v.cells) for v in report.verdicts if v.cells]
    if evidence:
        out += ["<details><summary>Evidence per claim (every cell compared)</summary>", "", *evidence, "",
                "</details>", ""]

    out += ["## Results per task", ""]
    if report.table.empty:
        out += ["No result rows in this run: the downstream notebooks (05–09) have not written any yet. "
                "Run them (`python -m pcrl_lib.course run --profile quick`) and regenerate this report.", ""]
    for task, metric in report.headline.items():
        out += _task_section(report, task, metric)

    out += ["## Protocol of every result", "",
            "One line per task × method × label fraction (headline metric, test split).", ""]
    proto = report.protocol
    out += _md([[r["task"], r["method"], _pct(r["label_fraction"]), r["split"], r["seeds"], r["data"], r["profile"],
                 r["epochs"], r["device"], f"{r['wall_s']:.1f}", r["peak_memory"], r["versions"], r["git_commit"],
                 r["notebook"], r["n_train/val/test"]] for _, r in proto.iterrows()],
               ["task", "method", "fraction", "split", "seeds", "data", "profile", "epochs", "device", "wall time (s)",
                "peak memory", "versions", "git commit", "notebook", "n train/val/test"]) if not proto.empty else \
        ["No results, so no protocol.", ""]
    return "\n".join(out)


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(repo_root()))
    except ValueError:
        return str(path)


def _task_section(report: Report, task: str, metric: str) -> list[str]:
    table = report.table
    data = table[(table["task"] == task) & (table["metric"] == metric)]
    direction = "higher" if higher_is_better(metric) else "lower"
    out = [f"### {task} — `{metric}` ({direction} is better)", ""]
    if task in report.figures:
        out += [f"![label efficiency, {task}]({report.figures[task].name})", ""]
    header, rows = _method_by_fraction(data, _result_cell)
    out += _md(rows, header)
    g = report.gains[report.gains["task"] == task]
    if not g.empty:
        out += [f"Gain of **{REFERENCE}** over each initialisation (Δ > 0: {REFERENCE} better; wins = seeds won of "
                "paired seeds):", ""]
        header, rows = _method_by_fraction(
            g, lambda r: f"{_fmt(r['gain'], r['reference_mean'], sign=True)} ({int(r['wins'])}/{int(r['paired'])})")
        out += _md(rows, header)
    elif REFERENCE not in set(data["method"]):
        out += [f"No {REFERENCE} rows for this task: no gains.", ""]
    a = report.ablation[report.ablation["task"] == task]
    if not a.empty:
        fractions = sorted(set(a["label_fraction"]))
        rows = []
        for method, step in ABLATION_CHAIN:
            d = a[a["method"] == method].set_index("label_fraction")
            if d.empty:
                continue
            rows.append([step] + [f"{_fmt(d.loc[f, 'mean'])} (Δ {_fmt(d.loc[f, 'delta'], d.loc[f, 'mean'], True)})"
                                  if f in d.index else "–"
                                  for f in fractions])
        out += ["Ablation (each step adds one component; Δ: oriented change from the step above):", ""]
        out += _md(rows, ["step", *(_pct(f) for f in fractions)])
    else:
        present = [m for m, _ in ABLATION_CHAIN if m in set(data["method"])]
        out += [f"No ablation for this task: the run has {', '.join(present) or 'none'} of the chain "
                f"{' → '.join(m for m, _ in ABLATION_CHAIN)} (run the notebook with those METHODS).", ""]
    others = table[(table["task"] == task) & (table["metric"] != metric)]
    if not others.empty:
        out += ["<details><summary>All other test metrics of this task</summary>", ""]
        out += _md([[r["metric"], r["method"], _pct(r["label_fraction"]), _result_cell(r)]
                    for _, r in others.iterrows()], ["metric", "method", "fraction", "mean ± std [CI] (n)"])
        out += ["</details>", ""]
    return out
