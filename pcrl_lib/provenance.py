"""Which data a result rests on: the real datasets, synthetic stand-ins or the tiny real demo cases.

A verdict on synthetic look-alikes tests the paper's orderings on stand-ins; it is not a reproduction of the paper.
The report (:mod:`pcrl_lib.report`) therefore keeps every table and every verdict per data source and never pools
two sources. The source of one result row, in this order:

1. ``protocol["data_source"]`` — set by :func:`pcrl_lib.course_records.collect_records` from steps 2–4;
2. the row's own ``data`` entry in its record (the notebooks write ``real`` / ``synthetic`` / ``demo``), else the
   protocol's ``data`` (a name, or a dict with ``source``: the segmentation notebooks), else the task's ``source``;
3. the task name: ``<task>_synthetic`` is a stand-in, ``<task>_demo`` demo data (``_probe`` is ignored);
4. the record's environment: DATA_ROOT set → real; recorded without DATA_ROOT → stand-in (the real datasets are
   only read from DATA_ROOT); no environment → unknown.

A name the kit does not know (not real / synthetic / stand-in / demo) is ``unknown``: a row is called real only
when its record says so.
"""

from __future__ import annotations

from typing import Any

REAL, STAND_IN, DEMO, UNKNOWN = "real", "stand-in", "demo", "unknown"
SOURCES = (REAL, STAND_IN, DEMO, UNKNOWN)  # display order: the paper's datasets first
LABELS = {REAL: "real (DATA_ROOT)", STAND_IN: "stand-in (synthetic look-alike)", DEMO: "demo (real, tiny)",
          UNKNOWN: "unknown (the record names no data source)"}
# How a verdict on each source is qualified wherever it is printed.
ON = {REAL: "on the real datasets (DATA_ROOT)", STAND_IN: "on stand-ins (synthetic look-alikes)",
      DEMO: "on demo data (real, tiny)", UNKNOWN: "on data of unknown source"}
_NAMES = {"real": REAL, "synthetic": STAND_IN, "stand-in": STAND_IN, "stand_in": STAND_IN, "demo": DEMO,
          "unknown": UNKNOWN}
PROBE_SUFFIX = "_probe"  # linear-probe rows: task "<task>_probe" (pcrl_lib.finetune.probe)


def normalise(name: Any) -> str | None:
    """A recorded source name → one of :data:`SOURCES`; None when ``name`` is empty or absent."""
    if isinstance(name, dict):
        name = name.get("source")
    if not isinstance(name, str) or not name.strip():
        return None
    return _NAMES.get(name.strip().lower(), UNKNOWN)


def is_probe(task: str) -> bool:
    return task.endswith(PROBE_SUFFIX)


def infer_source(task: str, protocol: dict, data: Any = None, env: dict | None = None) -> str:
    """The data source of one row (steps 1–4 of the module docstring); ``data`` is the row's ``data`` entry,
    ``env`` its record's environment (None when the record has none)."""
    protocol = protocol if isinstance(protocol, dict) else {}
    task_info = protocol.get("task") if isinstance(protocol.get("task"), dict) else {}
    for named in (protocol.get("data_source"), data, protocol.get("data"), task_info.get("source")):
        source = normalise(named)
        if source is not None:
            return source
    base = task.removesuffix(PROBE_SUFFIX)
    if base.endswith("_synthetic"):
        return STAND_IN
    if base.endswith("_demo"):
        return DEMO
    if env:
        return REAL if env.get("data_root") else STAND_IN
    return UNKNOWN


def row_source(row) -> str:
    """The data source of a :class:`~pcrl_lib.finetune.records.ResultRow` from the row alone (its protocol and
    task name); rows read by :func:`~pcrl_lib.course_records.collect_records` carry it in
    ``protocol["data_source"]``."""
    return infer_source(row.task, row.protocol)


def order(sources) -> list[str]:
    """The distinct ``sources`` in display order (real first)."""
    present = set(sources)
    return [s for s in SOURCES if s in present]
