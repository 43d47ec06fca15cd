"""The reproduction report on fabricated records: aggregation, CI, gains, ablation, claim verdicts, missing records."""

import json
import math
import re
import subprocess
import sys

import nbformat
import numpy as np
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from pcrl_lib import claims as claim_checks
from pcrl_lib import course, course_records, report

CI = 0.02  # half-width of every fabricated bootstrap interval


def _rows(task, metric, fraction, method, values, *, ci=CI, val_metric=None, split="test"):
    """One fabricated ResultRow dict per seed (seed = position), CI = value ± ci."""
    out = []
    for seed, v in enumerate(values):
        lo, hi = (None, None) if v is None else (v - ci, v + ci)
        out.append({"task": task, "split": split, "label_fraction": fraction, "metric": metric, "value": v,
                    "ci_low": lo, "ci_high": hi, "method": method, "seed": seed,
                    "protocol": {"finetune": {"epochs": 8}, "epochs_run": 5, "best_epoch": 3},
                    "wall_s": 2.0, "device": "cpu", "n_train": 10, "n_val": 4, "n_test": 6})
        if val_metric:
            out.append({**out[-1], "split": "val", "metric": val_metric, "ci_low": None, "ci_high": None})
    return out


NIH = {  # method → (values at 10 %, values at 100 %)
    "pcrl": ([0.80, 0.82, 0.84], [0.85, 0.86, 0.87]),
    "scratch": ([0.60, 0.62, 0.64], [0.84, 0.86, 0.88]),
    "c2l": ([0.81, 0.80, 0.85], None),
    "moco": ([0.90, 0.91, 0.92], None),
    "models_genesis": ([0.50], None),
    "pcrl_recon": ([0.70, 0.70, 0.70], None),
    "pcrl_tca": ([0.90, 0.90, 0.65], None),  # CI separated from pcrl_recon, but seed 2 flips
}
ENV = {"versions": {"python": "3.11.7", "torch": "2.14.1", "numpy": "2.4"}, "device": "cpu",
       "git_commit": "abc1234", "profile": "quick", "data_root": None}


def _record(stem, results, status="ok"):
    return {"notebook": stem, "status": status, "written_at": "2026-01-01T00:00:00", "figures": {},
            "results": results, "env": ENV}


@pytest.fixture
def run_dir(tmp_path):
    rows = []
    for method, (low, full) in NIH.items():
        rows += _rows("nih14", "auc_mean", 0.1, method, low, val_metric="auc_mean")
        if full:
            rows += _rows("nih14", "auc_mean", 1.0, method, full, val_metric="auc_mean")
    rows += _rows("nih14", "auc_Effusion", 0.1, "pcrl", [0.7, None, 0.9])     # one seed undefined
    bad = dict(rows[0])
    del bad["seed"]
    rows.append(bad)                                                          # malformed: reported, skipped
    rows.append({"kind": "2D", "files": 16})                                  # not a result row: ignored
    lits = (_rows("lits", "dice_mean", 0.5, "pcrl", [0.90, 0.92], val_metric="dice_mean")
            + _rows("lits", "dice_mean", 0.5, "scratch", [0.70, 0.72], val_metric="dice_mean")
            + _rows("lits", "hd95_liver", 0.5, "pcrl", [5.0, 6.0], ci=1.0)
            + _rows("lits", "hd95_liver", 0.5, "scratch", [20.0, 22.0], ci=1.0))
    lits.append(dict(lits[0]))                                                # duplicate: kept once
    records = tmp_path / "run" / "records"
    records.mkdir(parents=True)
    (records / "05_chestxray14.json").write_text(json.dumps(_record("05_chestxray14", rows)))
    (records / "08_lits_liver.json").write_text(json.dumps(_record("08_lits_liver", lits)))
    (records / "07_luna_nodules.json").write_text("{ not json")
    state = {"00_overview": {"status": "running"},
             "05_chestxray14": {"status": "ok", "wall_s": 12.5},
             "06_chexpert": {"status": "failed", "wall_s": 3.0,
                             "error": "notebook 06_chexpert.ipynb failed in cell 4:\n    x()\n"
                                      "RuntimeError: out of memory\nexecuted notebook kept at /x"}}
    (tmp_path / "run" / "state.json").write_text(json.dumps(state))
    return tmp_path / "run"


EXPECTED = ["00_overview", "05_chestxray14", "06_chexpert", "07_luna_nodules", "08_lits_liver", "09_brats",
            "10_results"]


def _claims(tmp_path, checks, low=0.25):
    data = {"schema": "pcrl-claims/1", "paper": "P", "definitions": {"low_fraction_max": low,
                                                                      "paper_tasks": ["nih14", "lits"]},
            "claims": [{"id": f"c{i}", "statement": "s", "source": "abstract", "check": c}
                       for i, c in enumerate(checks)]}
    path = tmp_path / "claims.json"
    path.write_text(json.dumps(data))
    return path


def _row(table, task, metric, fraction, method):
    hit = table[(table.task == task) & (table.metric == metric) & (table.label_fraction == fraction)
                & (table.method == method)]
    assert len(hit) == 1
    return hit.iloc[0]


def test_statuses_missing_failed_unreadable_and_row_problems(run_dir):
    rec = course_records.collect_records(run_dir, expected=EXPECTED, current="10_results")
    status = {s.notebook: s for s in rec.notebooks}
    assert [s.notebook for s in rec.notebooks] == EXPECTED
    assert status["00_overview"].status == "interrupted"
    assert status["05_chestxray14"].status == "ok" and status["05_chestxray14"].wall_s == 12.5
    assert "1 of" in status["05_chestxray14"].detail and "1 other entries" in status["05_chestxray14"].detail
    assert status["06_chexpert"].status == "failed" and status["06_chexpert"].detail == "RuntimeError: out of memory"
    assert status["07_luna_nodules"].status == "unreadable"
    assert status["09_brats"].status == "not run"
    assert status["10_results"].status == "running (this report)"
    problems = "\n".join(rec.problems)
    assert "05_chestxray14.json: result row" in problems and "'seed'" in problems
    assert "1 duplicate result rows" in problems and "08_lits_liver" in problems
    n_nih = sum(len(low) + len(full or []) for low, full in NIH.values()) * 2 + 3
    assert status["05_chestxray14"].n_rows == n_nih
    assert status["08_lits_liver"].n_rows == 13 and len(rec.rows) == n_nih + 12  # the duplicate counted once


def test_aggregation_mean_std_ci_and_undefined_values(run_dir):
    rows = course_records.collect_records(run_dir).rows
    table = report.aggregate(rows)
    r = _row(table, "nih14", "auc_mean", 0.1, "pcrl")
    values = np.array(NIH["pcrl"][0])
    assert r["mean"] == pytest.approx(values.mean()) and r["std"] == pytest.approx(values.std(ddof=1))
    assert r["n_seeds"] == 3 and r["seeds"] == (0, 1, 2)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((values.mean() - CI, values.mean() + CI))
    eff = _row(table, "nih14", "auc_Effusion", 0.1, "pcrl")
    assert eff["n_seeds"] == 2 and eff["mean"] == pytest.approx(0.8) and eff["seeds"] == (0, 2)
    assert math.isnan(_row(table, "nih14", "auc_mean", 0.1, "models_genesis")["std"])  # one seed: no std
    assert list(table[(table.task == "nih14") & (table.label_fraction == 0.1)
                      & (table.metric == "auc_mean")].method)[:3] == ["scratch", "models_genesis", "moco"]
    assert report.headline_metrics(rows) == {"lits": "dice_mean", "nih14": "auc_mean"}


def test_gains_are_oriented_and_paired(run_dir):
    rows = course_records.collect_records(run_dir).rows
    table = report.aggregate(rows)
    g = report.gains(rows, table, report.headline_metrics(rows))
    s = g[(g.task == "nih14") & (g.label_fraction == 0.1) & (g.method == "scratch")].iloc[0]
    assert s["gain"] == pytest.approx(0.20) and (s["wins"], s["paired"]) == (3, 3)
    c = g[(g.task == "nih14") & (g.label_fraction == 0.1) & (g.method == "c2l")].iloc[0]
    assert (c["wins"], c["paired"]) == (1, 3)  # 0.80 > 0.81? no; 0.82 > 0.80 yes; 0.84 > 0.85 no
    d = report.gains(rows, table, {"lits": "hd95_liver"})  # distances: lower is better, gain still > 0
    assert d.iloc[0]["gain"] == pytest.approx(21.0 - 5.5) and d.iloc[0]["wins"] == 2
    assert "pcrl" not in set(g["method"])


def test_ablation_chain_and_deltas(run_dir):
    rows = course_records.collect_records(run_dir).rows
    table = report.aggregate(rows)
    a = report.ablation(table, report.headline_metrics(rows))
    low = a[(a.task == "nih14") & (a.label_fraction == 0.1)]
    assert list(low.method) == ["moco", "c2l", "pcrl_recon", "pcrl_tca", "pcrl"]
    means = {m: np.mean(NIH[m][0]) for m in low.method}
    assert low.set_index("method").loc["pcrl_recon", "delta"] == pytest.approx(means["pcrl_recon"] - means["c2l"])
    assert low.set_index("method").loc["pcrl", "delta"] == pytest.approx(means["pcrl"] - means["pcrl_tca"])
    assert a[a.task == "lits"].empty  # only pcrl + scratch: no chain
    assert a[(a.task == "nih14") & (a.label_fraction == 1.0)].empty


def test_claim_verdicts_supported_contradicted_and_cannot_tell(run_dir, tmp_path):
    checks = [
        {"better": "pcrl", "than": "scratch", "tasks": ["nih14"], "fractions": "low"},       # separated → supported
        {"better": "pcrl", "than": "moco", "tasks": "paper", "fractions": "low"},           # moco above: contradicted
        {"better": "pcrl", "than": "c2l", "tasks": "paper", "fractions": "low"},            # CIs overlap
        {"better": "pcrl", "than": "imagenet", "tasks": "all", "fractions": "low"},         # method missing
        {"better": "pcrl", "than": "models_genesis", "tasks": "paper", "fractions": "low"},  # 1 seed
        {"better": "pcrl_tca", "than": "pcrl_recon", "tasks": "all", "fractions": [0.1]},   # a seed flips
        {"better": "pcrl", "than": "scratch", "tasks": "all", "fractions": "all"},          # 2 of 3 cells for
        {"better": "pcrl", "than": "scratch", "tasks": ["lits"], "fractions": "low"},       # no fraction ≤ 25 %
        {"better": "pcrl", "than": "scratch", "tasks": ["brats"], "fractions": "all"},      # task absent
        {"better": "pcrl", "than": "scratch", "tasks": ["lits"], "fractions": "all", "metric": "hd95_liver"},
    ]
    rep = report.build_report(run_dir, claims=_claims(tmp_path, checks), expected=EXPECTED)
    v = {x.claim.id: x for x in rep.verdicts}
    assert v["c0"].verdict == "supported" and "1 of 1" in v["c0"].reason
    assert v["c1"].verdict == "contradicted" and v["c1"].cells[0].outcome == "against"
    assert v["c2"].verdict == "cannot tell" and "overlap" in v["c2"].reason
    assert v["c3"].verdict == "cannot tell" and "method missing from this run: imagenet" in v["c3"].reason
    assert v["c4"].verdict == "cannot tell" and "too few seeds: 1 common seed(s), at least 2" in v["c4"].reason
    assert v["c5"].verdict == "cannot tell" and v["c5"].cells[0].outcome == "seeds disagree"
    assert v["c6"].verdict == "supported" and "2 of 3" in v["c6"].reason
    assert [(c.task, c.outcome) for c in v["c6"].cells] == [("lits", "for"), ("nih14", "for"), ("nih14", "CIs overlap")]
    assert v["c7"].verdict == "cannot tell" and "no label fraction in scope (≤ 25 %)" in v["c7"].reason
    assert v["c8"].verdict == "cannot tell" and "no task of the claim" in v["c8"].reason
    assert v["c9"].verdict == "supported"  # 5.5 mm vs 21 mm: lower is better
    strict = report.build_report(run_dir, claims=_claims(tmp_path, checks), min_seeds=4)
    assert all(x.verdict == "cannot tell" for x in strict.verdicts)
    assert rep.counts()["claims_supported"] == 3 and rep.counts()["claims_contradicted"] == 1


def test_majority_rule_mixed_evidence_is_cannot_tell(run_dir, tmp_path):
    # pcrl > scratch at 10 % (for) and pcrl > moco at 10 % (against) become one claim through a custom metric
    # name shared by both: fabricate a run where one task is for and another against.
    rows = (_rows("a", "auc_mean", 0.1, "pcrl", [0.9, 0.9]) + _rows("a", "auc_mean", 0.1, "scratch", [0.5, 0.5])
            + _rows("b", "auc_mean", 0.1, "pcrl", [0.5, 0.5]) + _rows("b", "auc_mean", 0.1, "scratch", [0.9, 0.9]))
    run = tmp_path / "mixed"
    (run / "records").mkdir(parents=True)
    (run / "records" / "05_x.json").write_text(json.dumps(_record("05_x", rows)))
    rep = report.build_report(run, claims=_claims(tmp_path, [{"better": "pcrl", "than": "scratch", "tasks": "all",
                                                              "fractions": "all"}]))
    assert rep.verdicts[0].verdict == "cannot tell" and rep.verdicts[0].reason.startswith("mixed")


def test_write_report_markdown_figures_and_protocol(run_dir):
    rep = report.build_report(run_dir, expected=EXPECTED, current="10_results")
    path = report.write_report(rep)
    text = path.read_text()
    assert path == run_dir / "RESULTS.md"
    png = run_dir / "label_efficiency_nih14.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "](label_efficiency_nih14.png)" in text
    assert (run_dir / "label_efficiency_lits.png").is_file()
    assert "| 06_chexpert | failed | 0 |" in text and "RuntimeError: out of memory" in text
    assert "**Missing or failed:** 00_overview, 06_chexpert, 07_luna_nodules, 09_brats" in text
    assert "0.820 ± 0.020 [0.800, 0.840] (n=3)" in text                  # pcrl at 10 %, nih14
    assert "+0.200 (3/3)" in text                                          # gain over scratch
    assert "+ reconstruction" in text and "No ablation for this task" in text  # nih14 has it, lits not
    assert "| pcrl_over_scratch_low |" in text and "cannot tell" in text  # the kit's claims file by default
    assert "| stand-in (synthetic look-alike) | quick |" in text and "8 planned; run 5,5,5; best 3,3,3" in text
    assert "abc1234" in text and "torch 2.14.1" in text and "not recorded" in text


def test_report_of_a_run_without_results_says_so(tmp_path):
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "00_overview.json").write_text(json.dumps(_record("00_overview", [])))
    rep = report.build_report(tmp_path, expected=["00_overview", "05_chestxray14"])
    text = report.write_report(rep).read_text()
    assert "No result rows in this run" in text and "05_chestxray14 — their results are absent" in text
    assert all(v.verdict == "cannot tell" for v in rep.verdicts) and rep.counts()["result_rows"] == 0
    (tmp_path / "records" / "10_results.json").write_text(json.dumps(_record("10_results", [])))  # an older one
    rec = course_records.collect_records(tmp_path, expected=["00_overview", "10_results"], current="10_results")
    assert [s.status for s in rec.notebooks] == ["ok", "running (this report)"]
    with pytest.raises(FileNotFoundError, match="run folder .*nowhere does not exist"):
        course_records.collect_records(tmp_path / "nowhere")


def test_the_kits_claims_file_is_valid_and_number_free():
    claims = claim_checks.load_claims()
    assert len(claims.claims) >= 8 and claims.low_fraction_max <= 0.5
    methods = {m for c in claims.claims for m in (c.better, c.than)}
    assert methods <= set(claim_checks.METHOD_ORDER)
    assert {"scratch", "imagenet", "models_genesis", "moco", "c2l", "pcrl_recon", "pcrl_tca"} <= methods
    for c in claims.claims:
        # Never the paper's numbers: no decimals or percentages in what a claim says or cites.
        assert not re.search(r"\d[.,]\d|\d\s*%|percent", c.statement + " " + c.source), c.id


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(schema="v0"), 'expected "schema": "pcrl-claims/1"'),
    (lambda d: d["claims"][0].pop("source"), "claim #0 (c0): 'source' must be a non-empty string"),
    (lambda d: d["claims"][0]["check"].update(tasks="3d"), "check.tasks '3d' is not 'all'"),
    (lambda d: d["claims"][0]["check"].update(fractions="few"), "check.fractions must be 'low', 'all'"),
    (lambda d: d["claims"][0]["check"].update(than="pcrl"), "same method"),
    (lambda d: d["claims"].append(dict(d["claims"][0])), "claim id 'c0' appears twice"),
    (lambda d: d["definitions"].update(low_fraction_max=5), "low_fraction_max must be a number in (0, 1]"),
])
def test_bad_claims_files_name_the_file_and_claim(tmp_path, mutate, message):
    path = _claims(tmp_path, [{"better": "pcrl", "than": "scratch", "tasks": "paper", "fractions": "low"}])
    data = json.loads(path.read_text())
    mutate(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="claims file .*claims.json") as err:
        claim_checks.load_claims(path)
    assert message in str(err.value)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "pcrl_lib.course", *args], capture_output=True, text=True)


def test_cli_report_writes_results_and_bad_input_is_one_line(run_dir, tmp_path):
    proc = _cli("report", str(run_dir))
    assert proc.returncode == 0, proc.stderr
    assert "RESULTS.md" in proc.stdout and (run_dir / "RESULTS.md").is_file()
    for args, message in [(["report", str(tmp_path / "none")], "run folder"),
                          (["report", str(run_dir), "--claims", str(tmp_path / "x.json")], "--claims"),
                          (["report", str(run_dir), "--min-seeds", "0"], "--min-seeds must be at least 1")]:
        bad = _cli(*args)
        assert bad.returncode == 2 and message in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def _write_nb(path, stem):
    nb = new_notebook()
    params = new_code_cell('PROFILE = "quick"\nDATA_ROOT = None\nOUTPUT_DIR = None\nSEED = 0\nDEVICE = "auto"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, new_code_cell(f"from pcrl_lib.course import write_record\n"
                                      f"write_record(OUTPUT_DIR, '{stem}', figures={{}})")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_run_ends_with_the_report_only_when_it_covers_the_course(tmp_path):
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    for stem in ("00_a", "10_results", "11_extra"):
        _write_nb(nbdir / f"{stem}.ipynb", stem)
    out = tmp_path / "run"
    logs = []
    course.run("smoke", output_dir=out, notebooks_dir=nbdir, prepare=False, only="10", log=logs.append)
    assert not (out / "RESULTS.md").exists()  # 00_a was not part of this run
    assert course.covers_course(course.select(course.discover(nbdir), "00,10"), course.discover(nbdir))
    course.run("smoke", output_dir=out, notebooks_dir=nbdir, prepare=False, only="00,10", resume=True,
               log=logs.append)
    text = (out / "RESULTS.md").read_text()
    assert any(line.startswith("results report:") for line in logs)
    assert "| 00_a | ok |" in text and "| 10_results | ok |" in text and "| 11_extra | not run |" in text


def test_notebook_10_declares_every_parameter_to_papermill():
    # papermill's own inspection (papermill --help-notebook) skips a parameter line whose comment holds "=".
    import papermill

    from pcrl_lib.paths import notebooks_dir

    declared = papermill.inspect_notebook(str(notebooks_dir() / "10_results.ipynb"))
    assert {*course.SHARED_PARAMETERS, "CLAIMS", "MIN_SEEDS"} <= set(declared)


def test_look_alike_tasks_count_for_the_paper_task_and_degenerate_cis_do_not(tmp_path):
    rows = (_rows("lits_synthetic", "dice_mean", 0.1, "pcrl", [0.90, 0.92])
            + _rows("lits_synthetic", "dice_mean", 0.1, "scratch", [0.70, 0.72])
            + _rows("brats_demo", "dice_mean", 0.1, "pcrl", [0.90, 0.92], ci=0.0)     # one test case: CI of width 0
            + _rows("brats_demo", "dice_mean", 0.1, "scratch", [0.70, 0.72], ci=0.0)
            + _rows("lithium", "dice_mean", 0.1, "pcrl", [0.9, 0.9]))                 # not a look-alike of lits
    for r in rows:
        r["data"] = "synthetic"
    run = tmp_path / "alike"
    (run / "records").mkdir(parents=True)
    (run / "records" / "08_x.json").write_text(json.dumps(_record("08_x", rows)))
    checks = [{"better": "pcrl", "than": "scratch", "tasks": ["lits"], "fractions": "all"},
              {"better": "pcrl", "than": "scratch", "tasks": ["brats"], "fractions": "all"}]
    rep = report.build_report(run, claims=_claims(tmp_path, checks))
    lits, brats = rep.verdicts
    assert lits.verdict == "supported" and [c.task for c in lits.cells] == ["lits_synthetic"]
    assert brats.verdict == "cannot tell" and "zero width" in brats.reason and brats.cells[0].outcome == "no CI"
    assert set(rep.records.frame["data"]) == {"stand-in"}                       # the row's own "data" entry wins
    assert set(rep.protocol["data"]) == {"stand-in (synthetic look-alike)"}
    assert claim_checks.task_matches("lits_demo", "lits") and not claim_checks.task_matches("lithium", "lits")
