"""The paper's claims in checkable form, and their verdicts from a run's aggregated results.

Read by :func:`load_claims` from ``data/paper_claims.json``; checked by :func:`check_claims` against the table of
:func:`pcrl_lib.report.aggregate`. Legend: ``f`` label fraction, ``s`` seed, ``n`` seeds with a defined value,
``CI`` 95 % confidence interval.

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

Data sources are never pooled: :func:`check_claims` decides every claim on the rows of one data source (real,
stand-in or demo, :mod:`pcrl_lib.provenance`), and the report shows one set of verdicts per source. Linear-probe
tasks (``<task>_probe``) count only for a claim that names a probe task.

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
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .finetune.records import ResultRow
from .paths import repo_root
from .pretrain_runs import PRETRAIN_METHODS
from .provenance import LABELS, ON, REAL, UNKNOWN, is_probe, order, row_source

CLAIMS_SCHEMA = "pcrl-claims/1"
MIN_SEEDS = 2
# Display order of initialisations: supervised baselines, then the pretraining methods from weakest to PCRL.
METHOD_ORDER = ("scratch", "imagenet", *PRETRAIN_METHODS)
FOR, AGAINST, OVERLAP, DISAGREE = "for", "against", "CIs overlap", "seeds disagree"
FEW_SEEDS, NO_CI = "too few seeds", "no CI"
SUPPORTED, CONTRADICTED, CANNOT_TELL = "supported", "contradicted", "cannot tell"


def default_claims_path() -> Path:
    return repo_root() / "data" / "paper_claims.json"


def higher_is_better(metric: str) -> bool:
    """AUC and Dice: higher is better; distances (``hd95_*``) and losses: lower is better."""
    return not (metric.startswith("hd95") or "loss" in metric)


def seed_values(rows: Sequence[ResultRow], split: str = "test") -> dict[tuple, dict[int, float]]:
    """(task, metric, fraction, method) → {seed: value} over defined values (the paired comparisons)."""
    out: dict[tuple, dict[int, float]] = {}
    for r in rows:
        if r.split == split and math.isfinite(r.value):
            out.setdefault((r.task, r.metric, r.label_fraction, r.method), {})[r.seed] = r.value
    return out


def fmt_number(value, like: float | None = None, sign: bool = False) -> str:
    """3 decimals for scores in [0, 1], 1 for distances and seconds (``like``: the value setting the scale)."""
    if value is None or not isinstance(value, (int, float, np.floating, np.integer)) or not math.isfinite(value):
        return "–"
    scale = abs(value if like is None or not math.isfinite(like) else like)
    return f"{value:{'+' if sign else ''}.{1 if scale >= 10 else 3}f}"


def fmt_percent(fraction: float) -> str:
    return f"{100 * fraction:g} %"


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
            return f"{fmt_number(m)} [{fmt_number(d['ci_low'], m)}, {fmt_number(d['ci_high'], m)}] n={d['n_seeds']}"
        return (f"{self.task} {self.metric} @ {fmt_percent(self.label_fraction)}: {side(self.better)} vs "
                f"{side(self.than)} → {self.outcome}")


@dataclass(frozen=True)
class Verdict:
    """A claim's verdict on the rows of one data source ``data`` (``real``, ``stand-in``, ``demo``, ``unknown``)."""

    claim: Claim
    verdict: str
    reason: str
    cells: tuple[Cell, ...]
    data: str = UNKNOWN

    @property
    def qualified(self) -> str:
        """The verdict with the data it rests on, e.g. "supported on stand-ins (synthetic look-alikes)"."""
        return f"{self.verdict} {ON[self.data]}"


def task_matches(run_task: str, claim_task: str) -> bool:
    """A run's task counts for a claim's task when it is that task or a look-alike of it: the segmentation data
    name their source (``lits_synthetic``, ``brats_demo``), the cells say which one was compared. A linear-probe
    task (``nih14_probe``) counts only for a claim task that is itself a probe: probes are not fine-tuning."""
    if is_probe(run_task) != is_probe(claim_task):
        return False
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
                 min_seeds: int = MIN_SEEDS, data: str | None = None) -> list[Verdict]:
    """Verdict per claim from the run's aggregated ``table`` (:func:`pcrl_lib.report.aggregate`, with its ``data``
    column), on the rows of ONE data source (rules in the module docstring).

    Args:
        data: the source to decide on (``real``, ``stand-in``, ``demo``, ``unknown``); default the first the rows
            hold in that order — the real datasets when the run has them. Other sources' rows are left out, never
            pooled: check each source with its own call.
    """
    if not isinstance(min_seeds, int) or min_seeds < 1:
        raise ValueError(f"min_seeds must be a positive int, got {min_seeds!r}")
    sources = [row_source(r) for r in rows]
    if data is None:
        data = (order(sources) or [REAL])[0]
    if data not in ON:
        raise ValueError(f"data={data!r} is not a data source; use one of {', '.join(ON)}")
    rows = [r for r, s in zip(rows, sources) if s == data]
    if "data" in table.columns:
        table = table[table["data"] == data]
    per_seed = seed_values(rows)
    run_tasks = sorted(set(table["task"])) if not table.empty else []
    verdicts = []
    for claim in claims.claims:
        tasks = [t for t in run_tasks if any(task_matches(t, c) for c in claim.tasks)] if claim.tasks is not None \
            else [t for t in run_tasks if not is_probe(t)]
        cells = []
        for task in tasks:
            metric = claim.metric or headline.get(task)
            here = table[(table["task"] == task) & (table["metric"] == metric)]
            for fraction in sorted(set(here["label_fraction"])):
                if _in_scope(fraction, claim.fractions, claims.low_fraction_max):
                    cells.append(_evaluate_cell(task, metric, fraction, claim, table, per_seed, min_seeds))
        verdicts.append(replace(_decide(claim, tuple(cells), tasks, claims.low_fraction_max, min_seeds), data=data))
    return verdicts


def check_claims_by_source(claims: ClaimSet, rows: Sequence[ResultRow], table: pd.DataFrame,
                           headline: dict[str, str], *, min_seeds: int = MIN_SEEDS) -> list[Verdict]:
    """:func:`check_claims` on each data source of ``table`` in turn (real first), never pooled: one verdict per
    claim and source. A table without rows is checked as "on the real datasets" (every claim: cannot tell)."""
    sources = order(table["data"]) if "data" in table.columns else []
    return [v for source in (sources or [REAL])
            for v in check_claims(claims, rows, table, headline, min_seeds=min_seeds, data=source)]


def _decide(claim: Claim, cells: tuple[Cell, ...], tasks: list[str], low_max: float, min_seeds: int) -> Verdict:
    if not tasks:
        wanted = ", ".join(claim.tasks) if claim.tasks else "any"
        return Verdict(claim, CANNOT_TELL, f"no task of the claim in this run (claim tasks: {wanted})", cells)
    if not cells:
        scope = f"≤ {fmt_percent(low_max)}" if claim.fractions == "low" else str(claim.fractions)
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
    """One line per verdict; ``data`` names the data source it rests on (:data:`pcrl_lib.provenance.LABELS`)."""
    return pd.DataFrame([{"claim": v.claim.id, "data": LABELS[v.data], "verdict": v.verdict, "reason": v.reason,
                          "cells": len(v.cells), "statement": v.claim.statement} for v in verdicts],
                        columns=["claim", "data", "verdict", "reason", "cells", "statement"])
