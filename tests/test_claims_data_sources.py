"""The report keeps data sources apart (real / stand-in / demo) and linear-probe rows out of the claims (issue 16)."""

import json

import pytest

from pcrl_lib import claims as claim_checks
from pcrl_lib import provenance, report
from pcrl_lib.finetune.records import ResultRow

SEPARATE = "no initialisation is separated from the others at this scale"


def _rows(task, fraction, method, values, *, ci=0.02, data=None, metric="auc_mean"):
    """Fabricated test rows, one per seed (seed = position), CI = value ± ci; ``data`` as the notebooks write it."""
    out = []
    for seed, v in enumerate(values):
        row = {"task": task, "split": "test", "label_fraction": fraction, "metric": metric, "value": v,
               "ci_low": v - ci, "ci_high": v + ci, "method": method, "seed": seed, "protocol": {},
               "wall_s": 1.0, "device": "cpu", "n_train": 10, "n_val": 4, "n_test": 300}
        if data is not None:
            row["data"] = data
        out.append(row)
    return out


def _run(tmp_path, records):
    """records: {stem: (results, data_root)} → a run folder."""
    run = tmp_path / "run"
    (run / "records").mkdir(parents=True)
    for stem, (results, data_root) in records.items():
        env = {"profile": "quick", "device": "cpu", "git_commit": "abc", "data_root": data_root}
        (run / "records" / f"{stem}.json").write_text(json.dumps(
            {"notebook": stem, "status": "ok", "written_at": "2026-01-01T00:00:00", "results": results, "env": env}))
    return run


def _claims(tmp_path, tasks):
    data = {"schema": "pcrl-claims/1", "paper": "test", "definitions": {"low_fraction_max": 0.25},
            "claims": [{"id": "pcrl_over_scratch", "statement": "PCRL beats scratch", "source": "test",
                        "check": {"better": "pcrl", "than": "scratch", "tasks": tasks, "fractions": "low"}}]}
    path = tmp_path / "claims.json"
    path.write_text(json.dumps(data))
    return path


def test_data_source_of_hand_built_rows():
    infer = provenance.infer_source
    assert infer("nih14", {}, "synthetic", {"data_root": None}) == "stand-in"          # the row's own entry wins
    assert infer("nih14", {}, "real", {"data_root": None}) == "real"
    assert infer("xray_pneumonia_demo", {}, "demo") == "demo"
    assert infer("lits_synthetic", {"data": {"source": "synthetic", "task": "lits"}}) == "stand-in"  # protocol
    assert infer("lits_synthetic", {}) == "stand-in" and infer("brats_demo_probe", {}) == "demo"  # task name
    assert infer("nih14", {}, None, {"data_root": "/data"}) == "real"                   # record's DATA_ROOT
    assert infer("nih14", {}, None, {"data_root": None}) == "stand-in"                  # no DATA_ROOT: no real data
    assert infer("nih14", {}) == "unknown"                                             # nothing recorded
    assert infer("nih14", {}, "NIH ChestX-ray14", {"data_root": "/d"}) == "unknown"    # never guessed to be real
    row = ResultRow.from_dict({**_rows("nih14", 0.1, "pcrl", [0.8])[0], "wall_time_s": 1.0,
                               "protocol": {"data_source": "demo"}})
    assert provenance.row_source(row) == "demo"


def test_stand_in_and_real_verdicts_are_separate_and_labelled(tmp_path):
    # Same task and seeds on two sources: PCRL above scratch on the stand-ins, below it on the real data.
    stand_in = _rows("nih14", 0.1, "pcrl", [0.80, 0.81, 0.82]) + _rows("nih14", 0.1, "scratch", [0.60, 0.61, 0.62])
    real = (_rows("nih14", 0.1, "pcrl", [0.60, 0.61, 0.62], data="real")
            + _rows("nih14", 0.1, "scratch", [0.80, 0.81, 0.82], data="real"))
    run = _run(tmp_path, {"05_chestxray14": (stand_in, None), "05b_chestxray14_real": (real, "/data")})
    rep = report.build_report(run, claims=_claims(tmp_path, ["nih14"]))
    assert not rep.records.problems                          # same keys on two sources: not duplicates
    nih = rep.table[rep.table["task"] == "nih14"]
    assert sorted(nih["data"]) == ["real", "real", "stand-in", "stand-in"] and set(nih["n_seeds"]) == {3}
    by_source = {v.data: v.verdict for v in rep.verdicts}
    assert by_source == {"real": "contradicted", "stand-in": "supported"}   # pooled, it would be "cannot tell"
    counts = rep.counts()
    assert counts["claims_data"] == "real" and counts["claims_contradicted"] == 1
    assert counts["claims_supported_stand_in"] == 1 and counts["claims_supported_real"] == 0
    text = report.render_markdown(rep)
    assert "**supported** on stand-ins (synthetic look-alikes)" in text
    assert "**contradicted** on the real datasets (DATA_ROOT)" in text
    assert text.index("### Verdicts on the real datasets") < text.index("### Verdicts on stand-ins")
    assert "nih14 holds results on several data sources" in text and "never pooled" in text
    assert "| scratch | stand-in (synthetic look-alike) | 0.610 ± 0.010" in text
    assert "| scratch | real (DATA_ROOT) | 0.810 ± 0.010" in text
    # The one-call check decides on one source only: the real datasets first, the others on request.
    rows, table, headline = rep.records.rows, rep.table, rep.headline
    claim_set = claim_checks.load_claims(_claims(tmp_path, ["nih14"]))
    assert claim_checks.check_claims(claim_set, rows, table, headline)[0].qualified == \
        "contradicted on the real datasets (DATA_ROOT)"
    assert claim_checks.check_claims(claim_set, rows, table, headline, data="stand-in")[0].verdict == "supported"
    assert [v.data for v in claim_checks.check_claims_by_source(claim_set, rows, table, headline)] == \
        ["real", "stand-in"]
    with pytest.raises(ValueError, match="not a data source"):
        claim_checks.check_claims(claim_set, rows, table, headline, data="synthetic")


def test_run_without_real_data_says_no_verdict_reproduces_the_paper(tmp_path):
    rows = _rows("nih14", 0.1, "pcrl", [0.80, 0.81]) + _rows("nih14", 0.1, "scratch", [0.60, 0.61])
    demo = (_rows("xray_pneumonia_demo", 0.1, "pcrl", [0.7, 0.7], data="demo")
            + _rows("xray_pneumonia_demo", 0.1, "scratch", [0.6, 0.6], data="demo"))
    rep = report.build_report(_run(tmp_path, {"05_chestxray14": (rows + demo, None)}),
                              claims=_claims(tmp_path, "all"))
    assert [(v.data, v.verdict) for v in rep.verdicts] == [("stand-in", "supported"), ("demo", "supported")]
    assert [c.task for c in rep.verdicts[0].cells] == ["nih14"]              # the demo task stays out of it
    text = report.render_markdown(rep)
    real = text.split("### Verdicts on the real datasets (DATA_ROOT)")[1].split("###")[0]
    assert "None: this run has no result on the real datasets" in real
    assert "1 supported, 0 contradicted, 0 cannot tell on stand-ins (synthetic look-alikes)." in text
    assert "| demo (real, tiny) |" in text and "| **pcrl** | stand-in (synthetic look-alike) |" in text
    assert rep.counts()["claims_data"] == "stand-in"


def test_linear_probe_rows_have_their_own_table_and_count_for_no_claim(tmp_path):
    finetune = (_rows("nih14", 0.1, "pcrl", [0.70, 0.71], ci=0.1)            # overlapping CIs: cannot tell
                + _rows("nih14", 0.1, "scratch", [0.69, 0.70], ci=0.1))
    probe = (_rows("nih14_probe", 0.1, "pcrl", [0.90, 0.91]) + _rows("nih14_probe", 0.1, "scratch", [0.55, 0.56]))
    for r in probe:
        r["protocol"] = {"probe": {"C": 1.0}}
    run = _run(tmp_path, {"05_chestxray14": (finetune + probe, None)})
    for tasks in (["nih14"], "all"):
        rep = report.build_report(run, claims=_claims(tmp_path, tasks))
        (verdict,) = rep.verdicts
        assert verdict.verdict == "cannot tell" and {c.task for c in verdict.cells} == {"nih14"}, tasks
    assert claim_checks.task_matches("nih14_probe", "nih14_probe")
    assert not claim_checks.task_matches("nih14_probe", "nih14")
    assert not claim_checks.task_matches("nih14", "nih14_probe")
    report.write_report(rep)
    text = (run / "RESULTS.md").read_text()
    finetune_part, probe_part = text.split("#### nih14 — linear probe on frozen features")
    assert "| **pcrl** | stand-in (synthetic look-alike) | 0.705 ± 0.007 [0.605, 0.805] (n=2) |" in finetune_part
    assert "0.905" not in finetune_part.split("## Results per task")[1]      # no probe number in fine-tuning
    assert "| **pcrl** | stand-in (synthetic look-alike) | 0.905 ± 0.007 [0.885, 0.925] (n=2) |" in probe_part
    assert "its 95 % interval is clear of every other initialisation's" in probe_part
    assert SEPARATE in finetune_part                                          # overlapping fine-tuning intervals
    assert (run / "label_efficiency_nih14_probe.png").is_file()
    probe_protocol = rep.protocol[rep.protocol["task"] == "nih14_probe"]["epochs"]
    assert set(probe_protocol) == {"linear probe, no epochs (logistic regression, C = 1.0)"}


def test_best_initialisation_wording_follows_the_intervals(tmp_path):
    rows = (_rows("lits", 0.1, "pcrl", [0.80, 0.81], metric="dice_mean", data="real")
            + _rows("lits", 0.1, "scratch", [0.79, 0.80], metric="dice_mean", data="real")
            + _rows("lits", 1.0, "pcrl", [0.90, 0.91], metric="dice_mean", data="real")
            + _rows("lits", 1.0, "scratch", [0.50, 0.51], metric="dice_mean", data="real"))
    rep = report.build_report(_run(tmp_path, {"08_lits_liver": (rows, "/data")}), claims=_claims(tmp_path, "all"))
    text = report.render_markdown(rep)
    assert f"- at 10 % labels the best initialisation is pcrl (test dice_mean 0.805 [0.785, 0.825]), but its 95 % " \
           f"interval overlaps those of scratch: {SEPARATE}" in text
    assert "- at 100 % labels the best initialisation is pcrl (test dice_mean 0.905 [0.885, 0.925]); its 95 % " \
           "interval is clear of every other initialisation's" in text
