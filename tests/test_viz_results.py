"""pcrl_lib.viz.results: seed aggregation, per-class tables, the text table and the two figures, on fabricated rows."""

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from pcrl_lib.finetune import ResultRow
from pcrl_lib.viz.results import (best_initialisation, format_results, label_efficiency_table, per_class_table,
                                  plot_label_efficiency, plot_per_class_auc, rows_frame)


def _row(method, fraction, seed, metric, value, task="t", split="test", half=0.05, n_train=10):
    low, high = (None, None) if value is None else (value - half, value + half)
    return {"task": task, "split": split, "label_fraction": fraction, "metric": metric, "value": value,
            "ci_low": low, "ci_high": high, "method": method, "seed": seed, "n_train": n_train}


@pytest.fixture
def rows():
    out = []
    for method, base in (("scratch", 0.60), ("pcrl", 0.70)):       # scratch first: the order must be kept
        for fraction in (1.0, 0.1):                                   # fractions given out of order on purpose
            for seed in (0, 1):
                value = base + 0.1 * fraction + 0.02 * seed
                out.append(_row(method, fraction, seed, "auc_mean", value, n_train=int(100 * fraction)))
                out.append(_row(method, fraction, seed, "auc_Effusion", value + 0.01))
                out.append(_row(method, fraction, seed, "auc_Hernia", None))     # undefined in this test split
                out.append(_row(method, fraction, seed, "auc_mean", 0.99, split="val"))
    return out


def test_label_efficiency_table_aggregates_over_seeds(rows):
    table = label_efficiency_table(rows)
    assert table["method"].tolist() == ["scratch", "scratch", "pcrl", "pcrl"]
    assert table["label_fraction"].tolist() == [0.1, 1.0, 0.1, 1.0]
    first = table.iloc[0]                                              # scratch at 10 %: 0.61 and 0.63
    assert first["mean"] == pytest.approx(0.62)
    assert first["std"] == pytest.approx(np.std([0.61, 0.63], ddof=1))
    assert (first["ci_low"], first["ci_high"]) == (pytest.approx(0.57), pytest.approx(0.67))
    assert first["n_seeds"] == 2 and first["n_train"] == 10
    assert not (table["mean"] > 0.9).any(), "validation rows must not leak into the test table"


def test_undefined_values_are_left_out_of_the_mean():
    rows = [_row("m", 0.5, 0, "auc_mean", 0.8), _row("m", 0.5, 1, "auc_mean", None)]
    table = label_efficiency_table(rows)
    assert table.loc[0, "mean"] == pytest.approx(0.8) and table.loc[0, "n_seeds"] == 1
    assert math.isnan(table.loc[0, "std"])


def test_result_row_objects_are_accepted(rows):
    objects = [ResultRow(**{**r, "ci_low": r["ci_low"] if r["ci_low"] is not None else math.nan,
                            "ci_high": r["ci_high"] if r["ci_high"] is not None else math.nan,
                            "value": r["value"] if r["value"] is not None else math.nan,
                            "protocol": {}, "wall_time_s": 1.0, "device": "cpu", "n_val": 3, "n_test": 4})
               for r in rows]
    pd.testing.assert_frame_equal(label_efficiency_table(objects), label_efficiency_table(rows))


def test_several_tasks_need_a_choice(rows):
    mixed = rows + [_row("scratch", 0.1, 0, "auc_mean", 0.5, task="other")]
    with pytest.raises(ValueError, match="several tasks"):
        label_efficiency_table(mixed)
    assert label_efficiency_table(mixed, task="other")["mean"].tolist() == [0.5]
    with pytest.raises(ValueError, match="no rows of task 'nope'"):
        label_efficiency_table(mixed, task="nope")


def test_bad_rows_and_metrics_are_named(rows):
    with pytest.raises(ValueError, match="row 0 is a list"):
        rows_frame([[1, 2]])
    with pytest.raises(ValueError, match="lacks"):
        rows_frame([{"task": "t"}])
    with pytest.raises(ValueError, match="metric='dice_WT'"):
        label_efficiency_table(rows, metric="dice_WT")
    with pytest.raises(ValueError, match="split='train'"):
        label_efficiency_table(rows, split="train")


def test_per_class_table_defaults_to_the_smallest_fraction(rows):
    table = per_class_table(rows)
    assert table.attrs["label_fraction"] == 0.1
    assert table["class"].tolist() == ["Effusion", "Effusion", "Hernia", "Hernia"]
    effusion = table[(table["class"] == "Effusion") & (table["method"] == "pcrl")].iloc[0]
    assert effusion["mean"] == pytest.approx(0.73)                    # (0.72 + 0.74) / 2
    assert table[table["class"] == "Hernia"]["mean"].isna().all()
    assert per_class_table(rows, label_fraction=1.0).attrs["label_fraction"] == 1.0
    with pytest.raises(ValueError, match="label_fraction=0.3 has no rows"):
        per_class_table(rows, label_fraction=0.3)


def test_format_results_writes_mean_std_and_interval(rows):
    text = format_results(label_efficiency_table(rows))
    assert text.index.tolist() == ["scratch", "pcrl"] and text.columns.tolist() == ["10 %", "100 %"]
    assert text.loc["scratch", "10 %"] == "0.620 ± 0.014 [0.570, 0.670]"
    one_seed = format_results(label_efficiency_table([_row("m", 0.5, 0, "auc_mean", 0.8)]))
    assert one_seed.loc["m", "50 %"] == "0.800 [0.750, 0.850]"
    undefined = format_results(label_efficiency_table([_row("m", 0.5, 0, "auc_mean", None)]))
    assert undefined.loc["m", "50 %"] == "n/a"


def test_label_efficiency_plot_draws_means_and_bands(rows):
    table = label_efficiency_table(rows)
    fig = plot_label_efficiency(table)
    ax = fig.axes[0]
    curves = {line.get_label(): line for line in ax.get_lines() if line.get_label() in ("scratch", "pcrl")}
    assert set(curves) == {"scratch", "pcrl"}
    np.testing.assert_allclose(curves["pcrl"].get_ydata(), table[table["method"] == "pcrl"]["mean"])
    np.testing.assert_allclose(curves["pcrl"].get_xdata(), [0.1, 1.0])
    bands = [c for c in ax.collections if type(c).__name__ in ("PolyCollection", "FillBetweenPolyCollection")]
    assert len(bands) == 2
    assert ax.get_xscale() == "log" and [t.get_text() for t in ax.get_xticklabels()] == ["10 %", "100 %"]
    plt.close(fig)
    with pytest.raises(ValueError, match="empty"):
        plot_label_efficiency(table.iloc[:0])


def test_per_class_plot_bars_match_means_and_mark_undefined(rows):
    table = per_class_table(rows)
    fig = plot_per_class_auc(table)
    ax = fig.axes[0]
    heights = [patch.get_height() for patch in ax.patches]
    scratch = table[table["method"] == "scratch"]["mean"].fillna(0).tolist()
    pcrl = table[table["method"] == "pcrl"]["mean"].fillna(0).tolist()
    np.testing.assert_allclose(heights, scratch + pcrl)
    assert [t.get_text() for t in ax.texts] == ["n/a"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Effusion", "Hernia"]
    assert "10 %" in ax.get_title()
    plt.close(fig)


def _scores_table(scores, half):
    """A label-efficiency table of one seed per method at 50 %: ``scores`` {method: value}, intervals value ± half."""
    return label_efficiency_table([_row(m, 0.5, 0, "auc_mean", v, half=half) for m, v in scores.items()])


def test_best_initialisation_says_when_the_intervals_overlap():
    scores = {"scratch": 0.60, "moco": 0.66, "pcrl": 0.70}
    overlapping = best_initialisation(_scores_table(scores, half=0.1))
    assert overlapping.startswith("at 50 % labels the best initialisation is pcrl (test mean AUC 0.700 [0.600, 0.800])")
    assert "overlaps those of scratch and moco: no initialisation is separated from the others at this scale" in overlapping
    assert best_initialisation(_scores_table(scores, half=0.01)).endswith("clear of every other initialisation's")
    partly = best_initialisation(_scores_table(scores, half=0.025))         # pcrl [0.675, 0.725], moco up to 0.685
    assert "clear of scratch only, it overlaps moco" in partly and "no initialisation is separated" not in partly
    # Lower is better for a distance; without intervals (bootstrap 0) the ordering cannot be judged.
    assert "best initialisation is scratch (HD95 0.6" in best_initialisation(_scores_table(scores, half=0.01),
                                                                               metric="HD95", higher_is_better=False)
    assert "cannot be judged" in best_initialisation(_scores_table(scores, half=math.nan))
    assert "nothing to compare" in best_initialisation(_scores_table({"pcrl": 0.7}, half=0.1))
    with pytest.raises(ValueError, match="label_fraction=0.3"):
        best_initialisation(_scores_table(scores, half=0.1), 0.3)
