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

Data sources. Every table carries a ``data`` column — ``real`` (the paper's datasets, read from DATA_ROOT),
``stand-in`` (synthetic look-alikes), ``demo`` (the kit's tiny real cases) or ``unknown`` — decided per row by
:mod:`pcrl_lib.provenance`. Rows of different sources are aggregated, compared and checked against the claims
separately, never pooled; RESULTS.md gives one set of verdicts per source, and says when the run has none on the
real datasets. Linear-probe rows (task ``<task>_probe``, :mod:`pcrl_lib.finetune.probe`) get their own table per
task and count for no claim unless a claim names a probe task.

Where a table names the best initialisation at a label fraction, the sentence (from
:func:`pcrl_lib.viz.results.best_initialisation`) says when its interval overlaps the others'.

Legend: ``f`` label fraction (share of training patients), ``s`` seed, ``n`` seeds with a defined value,
``CI`` 95 % confidence interval, ``Δ`` oriented gain.
"""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .claims import (CANNOT_TELL, CONTRADICTED, METHOD_ORDER, MIN_SEEDS, SUPPORTED, ClaimSet, Verdict,
                     check_claims_by_source, fmt_number, fmt_percent, higher_is_better, load_claims, seed_values)
from .course_records import RunRecords, collect_records
from .fileio import atomic_write_text
from .finetune.records import ResultRow, rows_to_frame, summarize
from .paths import repo_root
from .provenance import DEMO, LABELS, ON, PROBE_SUFFIX, REAL, SOURCES, STAND_IN, UNKNOWN, is_probe, order, row_source
from .viz.results import best_initialisation

RESULTS_NAME = "RESULTS.md"
REFERENCE = "pcrl"
KEYS = ["task", "metric", "label_fraction", "method"]
# The ablation chain of PCRL_SPEC §9, each step adding one component to the one before.
ABLATION_CHAIN = (("moco", "MoCo v2 (contrastive only)"), ("c2l", "C2L = MoCo + cross-model mixup"),
                  ("pcrl_recon", "+ reconstruction"), ("pcrl_tca", "+ TCA"), ("pcrl", "+ hybrid encoder = PCRL"))


# --------------------------------------------------------------------------------------------------- tables
def aggregate(rows: Sequence[ResultRow], split: str = "test") -> pd.DataFrame:
    """Per (task, data source, metric, label_fraction, method): ``mean``, ``std``, ``n_seeds`` (from
    :func:`~pcrl_lib.finetune.records.summarize`), ``ci_low`` / ``ci_high`` (per-seed bootstrap bounds averaged
    over the seeds with a defined value) and ``seeds`` (a tuple). ``data`` is the rows' source
    (:func:`pcrl_lib.provenance.row_source`): rows of two sources are never pooled. Empty frame when the split
    has no rows."""
    columns = ["task", "data", *KEYS[1:], "mean", "std", "n_seeds", "ci_low", "ci_high", "seeds"]
    rows = [r for r in rows if r.split == split]
    if not rows:
        return pd.DataFrame(columns=columns)
    sources = [row_source(r) for r in rows]
    parts = [_aggregate_one([r for r, s in zip(rows, sources) if s == source], split).assign(data=source)
             for source in order(sources)]
    table = pd.concat(parts, ignore_index=True)
    table["data"] = pd.Categorical(table["data"], list(SOURCES), ordered=True)
    table["method"] = pd.Categorical(table["method"], _method_order(table["method"]), ordered=True)
    table = table.sort_values(["task", "data", *KEYS[1:]]).reset_index(drop=True)
    table[["data", "method"]] = table[["data", "method"]].astype(str)
    return table[columns]


def _aggregate_one(rows: Sequence[ResultRow], split: str) -> pd.DataFrame:
    """:func:`aggregate` of rows of one data source (no ``data`` column)."""
    table = summarize(rows, split)
    frame = rows_to_frame(rows)
    defined = frame[np.isfinite(frame["value"].astype(float))]
    extra = defined.groupby(KEYS, sort=True).agg(ci_low=("ci_low", "mean"), ci_high=("ci_high", "mean"),
                                                 seeds=("seed", lambda s: tuple(sorted(int(x) for x in s))))
    table = table.merge(extra.reset_index(), on=KEYS, how="left")
    table["seeds"] = [s if isinstance(s, tuple) else () for s in table["seeds"]]
    return table


def _by_source(rows: Sequence[ResultRow], table: pd.DataFrame):
    """(source, its rows, its part of ``table``) per data source of ``table``, in display order."""
    sources = [row_source(r) for r in rows]
    for source in order(table["data"]):
        yield source, [r for r, s in zip(rows, sources) if s == source], table[table["data"] == source]


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
    """Oriented gain ``Δ`` of ``reference`` over every other method per (task, data source, headline metric,
    fraction), with ``wins`` = seeds in which ``reference`` is better out of ``paired`` common seeds."""
    columns = ["task", "data", "metric", "label_fraction", "method", "reference_mean", "other_mean", "gain", "wins",
               "paired"]
    out = []
    for source, source_rows, source_table in _by_source(rows, table):
        out += [{**g, "data": source} for g in _gains_one(source_rows, source_table, headline, reference)]
    return pd.DataFrame(out, columns=columns)


def _gains_one(rows: Sequence[ResultRow], table: pd.DataFrame, headline: dict[str, str], reference: str) -> list:
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
    return out


def ablation(table: pd.DataFrame, headline: dict[str, str]) -> pd.DataFrame:
    """The ablation chain (MoCo →) C2L → + reconstruction → + TCA → PCRL per task, data source and fraction, where
    the run has at least two of its steps; ``delta`` is the oriented change from the previous step present."""
    columns = ["task", "data", "metric", "label_fraction", "method", "step", "mean", "std", "n_seeds", "delta"]
    steps = dict(ABLATION_CHAIN)
    out = []
    for (task, data, metric, fraction), cell in table.groupby(["task", "data", "metric", "label_fraction"],
                                                               sort=False):
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
            out.append({"task": task, "data": data, "metric": metric, "label_fraction": fraction, "method": method,
                        "step": steps[method], "mean": r["mean"], "std": r["std"], "n_seeds": r["n_seeds"],
                        "delta": sign * (r["mean"] - previous)})
            previous = r["mean"]
    return pd.DataFrame(out, columns=columns)


def protocol_table(frame: pd.DataFrame, headline: dict[str, str]) -> pd.DataFrame:
    """One line per (task, data source, method, fraction) of the headline metric's test rows: split, seeds, profile,
    epochs, device, wall time, peak memory (a protocol key starting with ``peak``, when recorded), versions,
    git commit, notebook and sizes."""
    columns = ["task", "method", "label_fraction", "split", "seeds", "data", "profile", "epochs", "device",
               "wall_s", "peak_memory", "versions", "git_commit", "notebook", "n_train/val/test"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    test = frame[(frame["split"] == "test") & (frame["metric"] == frame["task"].map(headline))]
    out = []
    rank = {m: i for i, m in enumerate(_method_order(test["method"]))}
    sources = {s: i for i, s in enumerate(SOURCES)}
    groups = sorted(test.groupby(["task", "data", "method", "label_fraction"]),
                    key=lambda kv: (kv[0][0], sources.get(kv[0][1], len(sources)), rank[kv[0][2]], kv[0][3]))
    for (task, data, method, fraction), g in groups:
        g = g.sort_values("seed")
        protocols = list(g["protocol"])
        planned = sorted({str((p.get("finetune") or {}).get("epochs", "?")) for p in protocols})
        run = [str(p.get("epochs_run", "?")) for p in protocols]
        best = [str(p.get("best_epoch", "?")) for p in protocols]
        peaks = [v for p in protocols for k, v in p.items() if k.startswith("peak")]
        sizes = sorted({f"{a}/{b}/{c}" for a, b, c in zip(g["n_train"], g["n_val"], g["n_test"])})
        strengths = sorted({str((p.get("probe") or {}).get("C", "?")) for p in protocols})
        epochs = (f"linear probe, no epochs (logistic regression, C = {'/'.join(strengths)})" if is_probe(task)
                  else f"{'/'.join(planned)} planned; run {','.join(run)}; best {','.join(best)}")
        out.append({"task": task, "method": method, "label_fraction": fraction, "split": "test",
                    "seeds": ",".join(str(s) for s in sorted(g["seed"])),
                    "data": LABELS.get(data, data), "profile": _join(g["profile"]),
                    "epochs": epochs,
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
    verdicts: list[Verdict]     # one per claim and data source of the run (Verdict.data), real first
    min_seeds: int
    figures: dict[str, Path] = field(default_factory=dict)  # task, or "task [source]" for a mixed task → PNG

    def verdicts_on(self, source: str) -> list[Verdict]:
        return [v for v in self.verdicts if v.data == source]

    @property
    def profile(self) -> str:
        profiles = [e.get("profile") for e in self.records.envs.values() if e.get("profile")]
        return max(set(profiles), key=profiles.count) if profiles else self.run_dir.name

    def counts(self) -> dict[str, int | str]:
        """Key figures: readable records, result rows, tasks; ``claims_data``, the data source of the main verdicts
        (the real datasets when the run has them), with the number of claims per verdict on it
        (``claims_supported``, ...); and the same per source present (``claims_supported_stand_in``, ...)."""
        out: dict[str, int | str] = {"records": len(self.records.envs),
                                     "result_rows": len(self.records.rows), "tasks": len(self.headline)}
        sources = order(v.data for v in self.verdicts)
        out["claims_data"] = sources[0] if sources else REAL
        for source in sources:
            on = self.verdicts_on(source)
            for name in (SUPPORTED, CONTRADICTED, CANNOT_TELL):
                key = f"claims_{name.replace(' ', '_')}"
                if source == out["claims_data"]:
                    out[key] = sum(v.verdict == name for v in on)
                out[f"{key}_{source.replace('-', '_')}"] = sum(v.verdict == name for v in on)
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
    verdicts = check_claims_by_source(claim_set, records.rows, table, headline, min_seeds=min_seeds)
    return Report(Path(run_dir), records, table, headline, gains(records.rows, table, headline),
                  ablation(table, headline), protocol_table(records.frame, headline), claim_set, verdicts, min_seeds)


def plot_label_efficiency(table: pd.DataFrame, task: str, metric: str, data: str | None = None):
    """Label-efficiency curves of one task, metric and data source (default: the task's only one) from
    :func:`aggregate`'s table, drawn by :func:`pcrl_lib.viz.results.plot_label_efficiency` (band: bootstrap CI;
    bars: ± std over seeds); the title names the data source.

    Returns a ``matplotlib.figure.Figure`` made without pyplot, so writing reports leaves no open figures."""
    from matplotlib.figure import Figure

    from .viz.results import plot_label_efficiency as draw

    rows = table[(table["task"] == task) & (table["metric"] == metric)]
    sources = order(rows["data"])
    if data is None and len(sources) > 1:
        raise ValueError(f"task {task!r} has rows of several data sources ({', '.join(sources)}): pass data= to "
                         "pick one (sources are never pooled)")
    data = data if data is not None else (sources or [UNKNOWN])[0]
    rows = rows[rows["data"] == data]
    if rows.empty:
        raise ValueError(f"no rows for task {task!r}, metric {metric!r} and data {data!r} in the table")
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    chance = 0.5 if metric.startswith("auc") else None
    what = "linear probe on frozen features" if is_probe(task) else "label efficiency"
    draw(rows, ax=fig.add_subplot(), title=f"{task} on {LABELS[data]}: {what}\n(band: test bootstrap 95 % CI; "
                                           "bars: ± std over seeds)", ylabel=f"test {metric}", chance=chance)
    return fig


def _task_sources(table: pd.DataFrame, task: str, metric: str) -> list[str]:
    return order(table[(table["task"] == task) & (table["metric"] == metric)]["data"])


def figure_name(task: str) -> str:
    return f"label_efficiency_{re.sub(r'[^A-Za-z0-9_.-]', '_', task)}.png"


def write_report(report: Report, output: str | os.PathLike | None = None) -> Path:
    """Write the label-efficiency PNGs and ``RESULTS.md`` (default: into the run folder); returns its path."""
    path = Path(output) if output is not None else report.run_dir / RESULTS_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    report.figures = {}
    for task, metric in report.headline.items():
        sources = _task_sources(report.table, task, metric)
        for source in sources:
            key = task if len(sources) == 1 else f"{task} [{source}]"
            png = path.parent / figure_name(task if len(sources) == 1 else f"{task}_{source}")
            plot_label_efficiency(report.table, task, metric, source).savefig(png, dpi=110)
            report.figures[key] = png
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
           f"Every verdict and table names the data it rests on (column *data*): **{LABELS[REAL]}** — the paper's "
           f"datasets; **{LABELS[STAND_IN]}** — generated look-alikes, used without DATA_ROOT; **{LABELS[DEMO]}** — "
           "a few real cases bundled with the kit. Sources are decided on separately and never pooled: a verdict "
           "on stand-ins tests the paper's ordering on look-alikes, it does not reproduce the paper.", ""]
    out += ["## Notebooks and records", ""]
    out += _md([[s.notebook, s.status, s.n_rows, s.written_at or "–", f"{s.wall_s:.1f}" if s.wall_s else "–",
                 s.detail or ""] for s in rec.notebooks],
               ["notebook", "status", "result rows", "record written", "wall time (s)", "detail"])
    missing = [s.notebook for s in rec.notebooks if s.status in ("not run", "failed", "interrupted", "unreadable")]
    if missing:
        out += [f"**Missing or failed:** {', '.join(missing)} — their results are absent from every table below.", ""]
    out += [f"- {p}" for p in rec.problems] + ([""] if rec.problems else [])

    out += ["## The paper's claims", "", f"Paper: {report.claims.paper}", "",
            "Each claim is decided on each kind of data this run holds, separately (rules: `pcrl_lib/report.py`; "
            f"“low” label fractions are ≤ {fmt_percent(report.claims.low_fraction_max)}; linear-probe results count "
            "for no claim).", ""]
    for source in order([REAL, *(v.data for v in report.verdicts)]):
        out += _verdict_section(report, source)

    out += ["## Results per task", ""]
    if report.table.empty:
        out += ["No result rows in this run: the downstream notebooks (05–09) have not written any yet. "
                "Run them (`python -m pcrl_lib.course run --profile quick`) and regenerate this report.", ""]
    probes = {t for t in report.headline if is_probe(t)}
    for task, metric in report.headline.items():
        if is_probe(task):
            if task.removesuffix(PROBE_SUFFIX) not in report.headline:  # a probe without fine-tuning rows
                out += _probe_section(report, task, metric, "###")
            continue
        out += _task_section(report, task, metric)
        if task + PROBE_SUFFIX in probes:
            out += _probe_section(report, task + PROBE_SUFFIX, report.headline[task + PROBE_SUFFIX], "####")

    out += ["## Protocol of every result", "",
            "One line per task × data source × method × label fraction (headline metric, test split).", ""]
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


_SOURCE_NOTES = {
    REAL: "Decided on the paper's datasets, read from DATA_ROOT.",
    STAND_IN: "These verdicts test the paper's orderings on synthetic look-alikes of its datasets, generated by the "
              "kit: they say what the initialisations do on the stand-ins at this scale, **not** whether the paper's "
              "results reproduce.",
    DEMO: "Tiny real cases bundled with the kit (a case or two per split; the demo CT masks are pseudo-labels): too "
          "few to separate initialisations, shown for completeness.",
    UNKNOWN: "Rows whose record names no data source (no `data` entry, no DATA_ROOT record): decided on their own; "
             "read them with care.",
}


def _verdict_section(report: Report, source: str) -> list[str]:
    verdicts = report.verdicts_on(source)
    out = [f"### Verdicts {ON[source]}", ""]
    if not verdicts:
        return out + ["None: this run has no result on the real datasets (they are read from DATA_ROOT), so no verdict "
                      "in this report reproduces or refutes the paper's results.", ""]
    tally = {name: sum(v.verdict == name for v in verdicts) for name in (SUPPORTED, CONTRADICTED, CANNOT_TELL)}
    out += [_SOURCE_NOTES[source], "",
            f"{tally[SUPPORTED]} supported, {tally[CONTRADICTED]} contradicted, {tally[CANNOT_TELL]} cannot tell "
            f"{ON[source]}.", ""]
    out += _md([[v.claim.id, v.claim.statement, LABELS[v.data], f"**{v.verdict}** {ON[v.data]}", v.reason,
                 v.claim.source] for v in verdicts],
               ["claim", "statement", "data", "verdict", "why", "source in the paper"])
    evidence = [f"- `{v.claim.id}`: " + "; ".join(c.describe() for c in v.cells) for v in verdicts if v.cells]
    if evidence:
        out += [f"<details><summary>Evidence per claim {ON[source]} (every cell compared)</summary>", "", *evidence,
                "", "</details>", ""]
    return out


def _result_table(data: pd.DataFrame) -> list[str]:
    """Method × fraction table of one task, metric and data source, with its data column."""
    header, rows = _method_by_fraction(data, _result_cell)
    return _md([[r[0], LABELS[data["data"].iloc[0]], *r[1:]] for r in rows], [header[0], "data", *header[1:]])


def _best_lines(data: pd.DataFrame, metric: str) -> list[str]:
    """The best initialisation at each fraction, saying when its interval overlaps the others'
    (:func:`pcrl_lib.viz.results.best_initialisation`)."""
    if data["method"].nunique() < 2:
        return []
    lines = [f"- {best_initialisation(data, f, metric=f'test {metric}', higher_is_better=higher_is_better(metric))}"
             for f in sorted(set(data["label_fraction"]))]
    return ["Best initialisation per label fraction (95 % intervals compared):", "", *lines, ""]


def _mixed_note(task: str, sources: list[str]) -> list[str]:
    if len(sources) < 2:
        return []
    return [f"**{task} holds results on several data sources ({'; '.join(LABELS[s] for s in sources)}): each is "
            "shown on its own and decided on separately, never pooled.**", ""]


def _figure(report: Report, task: str, source: str, sources: list[str]) -> list[str]:
    key = task if len(sources) == 1 else f"{task} [{source}]"
    return [f"![label efficiency, {key}]({report.figures[key].name})", ""] if key in report.figures else []


def _probe_section(report: Report, task: str, metric: str, level: str) -> list[str]:
    """A linear-probe task's own table: frozen features, a logistic regression per label (no fine-tuning)."""
    table = report.table
    base = task.removesuffix(PROBE_SUFFIX)
    sources = _task_sources(table, task, metric)
    out = [f"{level} {base} — linear probe on frozen features (`{metric}`, "
           f"{'higher' if higher_is_better(metric) else 'lower'} is better)", "",
           "The encoder is frozen; a logistic regression per label is fitted on its pooled features "
           "(`pcrl_lib.finetune.probe`). Not fine-tuning: these rows count for no claim.", ""]
    out += _mixed_note(task, sources)
    for source in sources:
        data = table[(table["task"] == task) & (table["metric"] == metric) & (table["data"] == source)]
        out += _figure(report, task, source, sources) + _result_table(data) + _best_lines(data, metric)
        g = report.gains[(report.gains["task"] == task) & (report.gains["data"] == source)]
        if not g.empty:
            out += _gain_table(g)
    return out


def _gain_table(g: pd.DataFrame) -> list[str]:
    out = [f"Gain of **{REFERENCE}** over each initialisation (Δ > 0: {REFERENCE} better; wins = seeds won of "
           "paired seeds):", ""]
    header, rows = _method_by_fraction(
        g, lambda r: f"{fmt_number(r['gain'], r['reference_mean'], sign=True)} ({int(r['wins'])}/{int(r['paired'])})")
    return out + _md([[r[0], LABELS[g["data"].iloc[0]], *r[1:]] for r in rows], [header[0], "data", *header[1:]])


def _task_section(report: Report, task: str, metric: str) -> list[str]:
    table = report.table
    direction = "higher" if higher_is_better(metric) else "lower"
    sources = _task_sources(table, task, metric)
    out = [f"### {task} — `{metric}` ({direction} is better)", ""]
    out += _mixed_note(task, sources)
    for source in sources:
        if len(sources) > 1:
            out += [f"#### {task} {ON[source]}", ""]
        out += _task_source_section(report, task, metric, source, sources)
    return out


def _task_source_section(report: Report, task: str, metric: str, source: str, sources: list[str]) -> list[str]:
    table = report.table[(report.table["task"] == task) & (report.table["data"] == source)]
    data = table[table["metric"] == metric]
    out = _figure(report, task, source, sources) + _result_table(data) + _best_lines(data, metric)
    g = report.gains[(report.gains["task"] == task) & (report.gains["data"] == source)]
    if not g.empty:
        out += _gain_table(g)
    elif REFERENCE not in set(data["method"]):
        out += [f"No {REFERENCE} rows for this task: no gains.", ""]
    a = report.ablation[(report.ablation["task"] == task) & (report.ablation["data"] == source)]
    if not a.empty:
        fractions = sorted(set(a["label_fraction"]))
        rows = []
        for method, step in ABLATION_CHAIN:
            d = a[a["method"] == method].set_index("label_fraction")
            if d.empty:
                continue
            rows.append([step, LABELS[source]]
                        + [f"{fmt_number(d.loc[f, 'mean'])} (Δ {fmt_number(d.loc[f, 'delta'], d.loc[f, 'mean'], True)})"
                           if f in d.index else "–" for f in fractions])
        out += ["Ablation (each step adds one component; Δ: oriented change from the step above):", ""]
        out += _md(rows, ["step", "data", *(fmt_percent(f) for f in fractions)])
    else:
        present = [m for m, _ in ABLATION_CHAIN if m in set(data["method"])]
        out += [f"No ablation for this task: the run has {', '.join(present) or 'none'} of the chain "
                f"{' → '.join(m for m, _ in ABLATION_CHAIN)} (run the notebook with those METHODS).", ""]
    others = table[table["metric"] != metric]
    if not others.empty:
        out += ["<details><summary>All other test metrics of this task</summary>", ""]
        out += _md([[r["metric"], r["method"], LABELS[source], fmt_percent(r["label_fraction"]), _result_cell(r)]
                    for _, r in others.iterrows()], ["metric", "method", "data", "fraction", "mean ± std [CI] (n)"])
        out += ["</details>", ""]
    return out
