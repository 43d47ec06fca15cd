"""The reproduction report: every number of a run computed from the run's own records, never typed by hand.

::

    python -m pcrl_lib.course report runs/quick        # → runs/quick/RESULTS.md + label_efficiency_<task>.png

Inputs (what a course run leaves in its folder):

* ``records/NN_name.json`` — one per notebook (:func:`pcrl_lib.course.write_record`): ``status``,
  ``written_at``, ``env`` (versions, device, git commit, profile), ``results`` (a list of
  :class:`~pcrl_lib.finetune.records.ResultRow` dicts; ``wall_s`` is accepted for ``wall_time_s``).
* ``state.json`` — the runner's status per notebook (``ok`` / ``failed`` with its error / ``running``).
* the claims file ``data/paper_claims.json`` (schema and verdict rules: :mod:`pcrl_lib.claims`).

Records are read by :mod:`pcrl_lib.course_records`, claims checked by :mod:`pcrl_lib.claims`; this module
aggregates, compares and writes ``RESULTS.md``.

Aggregation (test split). Per (task, metric, label fraction ``f``, method) over the seeds ``s`` with a defined
value ``v_s``: mean, standard deviation (``ddof = 1``, undefined for one seed) and ``n`` — the table of
:func:`pcrl_lib.finetune.records.summarize` — plus the CI ``[mean_s ci_low_s, mean_s ci_high_s]``: each row's
95 % bootstrap interval over test samples/cases, averaged over seeds. Each task's *headline* metric is the
one its notebooks selected on (the metric of its validation rows: ``auc_mean``, ``dice_mean``).

Gain of PCRL over another initialisation ``b`` at one cell: ``Δ = o · (mean_pcrl − mean_b)`` with ``o = +1``
when higher is better and ``o = −1`` for distances (``hd95_*``), so ``Δ > 0`` always means PCRL is better;
``wins`` counts the seeds (paired: same seed, same label subset) in which PCRL is better.

Legend: ``f`` label fraction (share of training patients), ``s`` seed, ``n`` seeds with a defined value,
``CI`` 95 % confidence interval, ``Δ`` oriented gain.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .claims import (CANNOT_TELL, CONTRADICTED, METHOD_ORDER, MIN_SEEDS, SUPPORTED, ClaimSet, Verdict, check_claims,
                     fmt_number, fmt_percent, higher_is_better, load_claims, seed_values)
from .course_records import RunRecords, collect_records
from .fileio import atomic_write_text
from .finetune.records import ResultRow, rows_to_frame, summarize
from .paths import repo_root

RESULTS_NAME = "RESULTS.md"
REFERENCE = "pcrl"
KEYS = ["task", "metric", "label_fraction", "method"]
# The ablation chain of PCRL_SPEC §9, each step adding one component to the one before.
ABLATION_CHAIN = (("moco", "MoCo v2 (contrastive only)"), ("c2l", "C2L = MoCo + cross-model mixup"),
                  ("pcrl_recon", "+ reconstruction"), ("pcrl_tca", "+ TCA"), ("pcrl", "+ hybrid encoder = PCRL"))


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


def gains(rows: Sequence[ResultRow], table: pd.DataFrame, headline: dict[str, str],
          reference: str = REFERENCE) -> pd.DataFrame:
    """Oriented gain ``Δ`` of ``reference`` over every other method per (task, headline metric, fraction),
    with ``wins`` = seeds in which ``reference`` is better out of ``paired`` common seeds."""
    columns = ["task", "metric", "label_fraction", "method", "reference_mean", "other_mean", "gain", "wins", "paired"]
    per_seed = seed_values(rows)
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
    atomic_write_text(path, render_markdown(report))
    return path


# --------------------------------------------------------------------------------------------------- markdown
def _md(rows: list[list[Any]], header: list[str]) -> list[str]:
    def cell(v):
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines + [""]


def _result_cell(r) -> str:
    m = r["mean"]
    std = fmt_number(r["std"], m) if r["n_seeds"] > 1 else "–"
    return f"{fmt_number(m)} ± {std} [{fmt_number(r['ci_low'], m)}, {fmt_number(r['ci_high'], m)}] (n={int(r['n_seeds'])})"


def _method_by_fraction(data: pd.DataFrame, render) -> tuple[list[str], list[list[str]]]:
    fractions = sorted(set(data["label_fraction"]))
    rows = []
    for method in _method_order(data["method"]):
        d = data[data["method"] == method].set_index("label_fraction")
        rows.append([f"**{method}**" if method == REFERENCE else method]
                    + [render(d.loc[f]) if f in d.index else "–" for f in fractions])
    return ["method", *(fmt_percent(f) for f in fractions)], rows


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
            f"≤ {fmt_percent(report.claims.low_fraction_max)}).", ""]
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
    out += _md([[r["task"], r["method"], fmt_percent(r["label_fraction"]), r["split"], r["seeds"], r["data"], r["profile"],
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
            g, lambda r: f"{fmt_number(r['gain'], r['reference_mean'], sign=True)} ({int(r['wins'])}/{int(r['paired'])})")
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
            rows.append([step] + [f"{fmt_number(d.loc[f, 'mean'])} (Δ {fmt_number(d.loc[f, 'delta'], d.loc[f, 'mean'], True)})"
                                  if f in d.index else "–"
                                  for f in fractions])
        out += ["Ablation (each step adds one component; Δ: oriented change from the step above):", ""]
        out += _md(rows, ["step", *(fmt_percent(f) for f in fractions)])
    else:
        present = [m for m, _ in ABLATION_CHAIN if m in set(data["method"])]
        out += [f"No ablation for this task: the run has {', '.join(present) or 'none'} of the chain "
                f"{' → '.join(m for m, _ in ABLATION_CHAIN)} (run the notebook with those METHODS).", ""]
    others = table[(table["task"] == task) & (table["metric"] != metric)]
    if not others.empty:
        out += ["<details><summary>All other test metrics of this task</summary>", ""]
        out += _md([[r["metric"], r["method"], fmt_percent(r["label_fraction"]), _result_cell(r)]
                    for _, r in others.iterrows()], ["metric", "method", "fraction", "mean ± std [CI] (n)"])
        out += ["</details>", ""]
    return out
