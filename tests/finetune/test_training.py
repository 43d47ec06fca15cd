"""The fine-tuning loop: tiny overfits (2D, 3D, segmentation), selection, early stopping, resume, result rows."""

import math

import numpy as np
import pytest
import torch

from pcrl_lib.config import get_profile
from pcrl_lib.env import seed_everything
from pcrl_lib.finetune import (LITS_STRUCTURES, ClassificationTask, SegmentationTask, build_classifier,
                               build_segmenter, epoch_batches, eval_context, fit, load_rows, make_optimizer,
                               run_finetune, summarize)
from pcrl_lib.training import NonFiniteLossError


@pytest.fixture(autouse=True)
def one_thread():
    # These tiny models gain nothing from a second thread; on a busy 2-core machine it only adds spin-waiting.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _config(**kw):
    base = dict(epochs=3, patience=0, max_steps_per_epoch=0, lr=3e-3, batch_size_2d=8, batch_size_3d=4,
                precision="fp32", bootstrap=20)
    return get_profile("smoke").finetune.override(**{**base, **kw})


def _cls_items(n, spatial_dims, seed, patient_prefix="p"):
    """Items whose two labels are visible: a bright block (label a), a bright slab at the end (label b)."""
    g = torch.Generator().manual_seed(seed)
    size = (32, 32) if spatial_dims == 2 else (16, 16, 8)
    x = torch.randn(n, 1, *size, generator=g) * 0.3
    y = torch.zeros(n, 2)
    y[: n // 2, 0] = 1
    y[::2, 1] = 1
    x[y[:, 0] == 1, :, 4:12, 4:12] += 2.0
    x[y[:, 1] == 1, ..., -4:] += 2.0
    return [{"image": x[i], "labels": y[i], "patient": f"{patient_prefix}{i // 2}"} for i in range(n)]


def _seg_cases(n, seed):
    g = torch.Generator().manual_seed(seed)
    cases = []
    for i in range(n):
        image = torch.randn(1, 16, 16, 16, generator=g) * 0.2
        mask = torch.zeros(16, 16, 16, dtype=torch.long)
        o = torch.randint(2, 7, (3,), generator=g).tolist()
        mask[o[0]:o[0] + 7, o[1]:o[1] + 7, o[2]:o[2] + 7] = 1            # "liver"
        mask[o[0] + 1:o[0] + 5, o[1] + 1:o[1] + 5, o[2] + 1:o[2] + 5] = 2  # "tumour" inside it
        image[0][mask == 1] += 1.0
        image[0][mask == 2] += 2.0
        cases.append({"image": image, "mask": mask, "spacing": torch.tensor([1.0, 1.0, 2.0]), "name": f"c{i}"})
    return cases


def test_2d_classifier_overfits_a_handful_of_images(tmp_path):
    data = _cls_items(8, 2, seed=0)
    task = ClassificationTask("toy2d", ["a", "b"], spatial_dims=2)
    seed_everything(0)
    model = build_classifier(2, 2, dropout=0.0)             # grey (B, 1, H, W) inputs go to the 3-channel encoder
    result = fit(model, task, data, data, _config(epochs=5, lr=1e-3), tmp_path, progress=False)
    assert result.history[-1]["train_loss"] < 0.05 < result.history[0]["train_loss"]
    assert result.best_score == 1.0
    assert (tmp_path / "best.pt").is_file() and (tmp_path / "history.json").is_file()


def test_3d_classifier_overfits_and_keeps_the_best_weights(tmp_path):
    data = _cls_items(8, 3, seed=1)
    task = ClassificationTask("toy3d", ["a", "b"], spatial_dims=3)
    seed_everything(0)
    model = build_classifier(3, 2, width=4, dropout=0.0)
    result = fit(model, task, data, data, _config(epochs=10), tmp_path, progress=False)
    assert result.history[-1]["train_loss"] < 0.5 * result.history[0]["train_loss"]
    assert result.best_score == 1.0
    best = max(range(len(result.history)), key=lambda e: (result.history[e]["val_score"], -e))
    assert result.best_epoch == best
    # The model left behind holds the selected weights: validating it again gives the best score.
    ctx = eval_context(3, _config(), "cpu")
    assert task.validate(model, data, ctx)["score"] == result.best_score


def test_segmenter_overfits_two_cases_and_reports_dice_and_hd95(tmp_path):
    cases = _seg_cases(2, seed=0)
    task = SegmentationTask("toy_lits", LITS_STRUCTURES, window=(16, 16, 16), patches_per_case=8)
    seed_everything(0)
    model = build_segmenter(3, 2, width=4)
    cfg = _config(epochs=9, lr=1e-2, batch_size_3d=2)
    result = fit(model, task, task.train_dataset(cases, 0), cases, cfg, tmp_path, progress=False)
    assert result.best_score > 0.9
    metrics = {m.name: m for m in task.evaluate(model, cases, eval_context(3, cfg, "cpu"), n_bootstrap=20,
                                                rng=np.random.default_rng(0))}
    assert set(metrics) == {"dice_mean", "dice_liver", "dice_tumour", "hd95_liver", "hd95_tumour"}
    assert metrics["dice_liver"].value > 0.9 and metrics["hd95_liver"].value <= 2.0
    assert metrics["hd95_liver"].detail["unit"] == "mm"


def _interrupt_after(epochs):
    def hook(record):
        if record["epoch"] + 1 == epochs:
            raise KeyboardInterrupt
    return hook


def test_resume_after_an_interruption_gives_identical_weights(tmp_path):
    data = _cls_items(10, 3, seed=2)
    task = ClassificationTask("toy3d", ["a", "b"], spatial_dims=3)
    cfg = _config(epochs=4)

    def fresh():
        seed_everything(0)
        return build_classifier(3, 2, width=4, dropout=0.3)   # dropout: the restored RNG state matters

    straight = fresh()
    ref = fit(straight, task, data, data, cfg, tmp_path / "a", progress=False)
    with pytest.raises(KeyboardInterrupt):
        fit(fresh(), task, data, data, cfg, tmp_path / "b", progress=False, on_epoch=_interrupt_after(2))
    seed_everything(123)                                      # the global RNG state must come from the checkpoint
    resumed_model = build_classifier(3, 2, width=4, dropout=0.3)
    resumed = fit(resumed_model, task, data, data, cfg, tmp_path / "b", progress=False)
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in ref.history]
    assert resumed.best_epoch == ref.best_epoch and not resumed.reused
    best_a = torch.load(tmp_path / "a" / "best.pt", weights_only=True)
    best_b = torch.load(tmp_path / "b" / "best.pt", weights_only=True)
    assert all(torch.equal(best_a[k], best_b[k]) for k in best_a)
    assert all(torch.equal(v, resumed_model.state_dict()[k]) for k, v in straight.state_dict().items())


def test_early_stopping_reuse_and_config_guard(tmp_path):
    data = _cls_items(6, 3, seed=3)
    task = ClassificationTask("toy3d", ["a", "b"], spatial_dims=3)
    cfg = _config(epochs=6, patience=2, lr=0.0)                # nothing changes → no improvement after epoch 0
    seed_everything(0)
    result = fit(build_classifier(3, 2, width=4), task, data, data, cfg, tmp_path, progress=False)
    assert result.stopped_early and result.epochs_run == 3 and result.best_epoch == 0
    # A finished run keeps one copy of its weights: last.pt becomes a weightless record.
    final = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert final["finished"] and not {"model", "optimizer", "best_model"} & set(final)
    assert (tmp_path / "checkpoints" / "last.pt").stat().st_size < (tmp_path / "best.pt").stat().st_size / 4
    reused_model = build_classifier(3, 2, width=4)
    again = fit(reused_model, task, data, data, cfg, tmp_path, progress=False)
    assert again.reused and again.epochs_run == 3 and len(again.history) == 3
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert all(torch.equal(v, best[k]) for k, v in reused_model.state_dict().items())
    (tmp_path / "best.pt").rename(tmp_path / "kept.pt")
    with pytest.raises(FileNotFoundError, match="best.pt are missing.*force=True"):
        fit(build_classifier(3, 2, width=4), task, data, data, cfg, tmp_path, progress=False)
    (tmp_path / "kept.pt").rename(tmp_path / "best.pt")
    with pytest.raises(ValueError, match="another configuration.*lr"):
        fit(build_classifier(3, 2, width=4), task, data, data, cfg.override(lr=1e-3), tmp_path, progress=False)
    more_seeds = cfg.override(seeds=(0, 1, 2), label_fractions=(0.1,), bootstrap=5, num_workers=0)
    assert fit(build_classifier(3, 2, width=4), task, data, data, more_seeds, tmp_path, progress=False).reused
    forced = fit(build_classifier(3, 2, width=4), task, data, data, cfg.override(lr=1e-3), tmp_path, force=True,
                 progress=False)
    assert not forced.reused


def test_bf16_autocast_trains_on_cpu(tmp_path):
    seed_everything(9)
    data = _cls_items(4, 2, seed=9)
    task = ClassificationTask("toy2d", ["a", "b"], spatial_dims=2)
    result = fit(build_classifier(2, 2), task, data, data, _config(epochs=1, precision="bf16"), tmp_path,
                 progress=False)
    assert result.precision == "bf16" and math.isfinite(result.history[0]["train_loss"])


def test_explicit_bf16_for_3d_is_honoured_and_warned_where_the_conv3d_check_fails(monkeypatch):
    # (Training 3D in bf16 on such a CPU can go non-finite: its conv3d weight gradients are wrong.)
    from pcrl_lib import precision as P
    from pcrl_lib.finetune.loop import eval_context

    monkeypatch.setattr(P, "cpu_bf16_conv3d_ok", lambda: False)
    with pytest.warns(UserWarning, match="conv3d"):
        assert eval_context(3, _config(precision="bf16"), "cpu").precision.name == "bf16"


@pytest.mark.parametrize("dims", [2, 3])
def test_auto_precision_of_fine_tuning_is_pretrainings_rule(monkeypatch, dims):
    """``precision="auto"`` resolves per dimensionality, as in pretraining: bf16 for 2D on a native-bf16 CPU,
    3D only where the conv3d check passes (fp32 before: the model's dims were not passed on)."""
    from pcrl_lib import precision as P
    from pcrl_lib.finetune.loop import eval_context

    monkeypatch.setattr(P, "CPU_AUTO_2D", "bf16")
    monkeypatch.setattr(P, "cpu_bf16_conv3d_ok", lambda: False)
    assert eval_context(dims, _config(precision="auto"), "cpu").precision.name == ("bf16" if dims == 2 else "fp32")
    monkeypatch.setattr(P, "CPU_AUTO_2D", "fp32")
    assert eval_context(dims, _config(precision="auto"), "cpu").precision.name == "fp32"


def test_bf16_fine_tuning_curve_matches_fp32_within_seed_noise(tmp_path):
    """2D fine-tuning under bf16 autocast (what ``auto`` picks on a native-bf16 CPU): the per-epoch training loss
    stays within the gap between two fp32 seeds."""
    data = _cls_items(16, 2, seed=5)
    task = ClassificationTask("toy2d", ["a", "b"], spatial_dims=2)

    def curve(precision, seed):
        torch.manual_seed(seed)
        result = fit(build_classifier(2, 2), task, data, data, _config(epochs=4, precision=precision, lr=1e-3),
                     tmp_path / f"{precision}_{seed}", seed=seed, progress=False)
        return torch.tensor([h["train_loss"] for h in result.history])

    fp32_a, fp32_b, bf16_a = curve("fp32", 0), curve("fp32", 1), curve("bf16", 0)
    assert torch.isfinite(bf16_a).all()
    assert (bf16_a - fp32_a).abs().mean() < (fp32_a - fp32_b).abs().mean(), (bf16_a, fp32_a, fp32_b)


def test_validation_without_any_defined_class_is_a_clear_error(tmp_path):
    data = _cls_items(6, 3, seed=4)
    val = [{**item, "labels": torch.zeros(2)} for item in data]  # no positives for any class
    task = ClassificationTask("toy3d", ["a", "b"], spatial_dims=3)
    with pytest.raises(ValueError, match="validation score.*undefined"):
        fit(build_classifier(3, 2, width=4), task, data, val, _config(epochs=1), tmp_path, progress=False)


def test_non_finite_loss_stops_training(tmp_path):
    data = _cls_items(4, 3, seed=5)
    data[0] = {**data[0], "image": torch.full_like(data[0]["image"], float("nan"))}
    task = ClassificationTask("toy3d", ["a", "b"], spatial_dims=3)
    with pytest.raises(NonFiniteLossError, match="non-finite loss"):
        fit(build_classifier(3, 2, width=4), task, data, data, _config(epochs=1, batch_size_3d=4), tmp_path,
            progress=False)


def test_epoch_batches_keep_every_item_and_avoid_single_item_batches():
    batches = epoch_batches(9, 4, seed=0, epoch=0)
    assert [len(b) for b in batches] == [4, 5]
    assert sorted(i for b in batches for i in b) == list(range(9))
    assert batches == epoch_batches(9, 4, seed=0, epoch=0) != epoch_batches(9, 4, seed=0, epoch=1)
    assert len(epoch_batches(100, 4, 0, 0, max_steps=3)) == 3
    with pytest.raises(ValueError, match="training set is empty"):
        epoch_batches(0, 4, 0, 0)


def test_optimizers():
    params = [torch.nn.Parameter(torch.zeros(2))]
    assert isinstance(make_optimizer("sgd", params, 0.1, 0.0), torch.optim.SGD)
    assert isinstance(make_optimizer("adamw", params, 0.1, 0.0), torch.optim.AdamW)
    with pytest.raises(ValueError, match="optimizer='adam'"):
        make_optimizer("adam", params, 0.1, 0.0)


def test_run_finetune_rows_on_a_held_out_test_split(tmp_path):
    train = _cls_items(12, 3, seed=6, patient_prefix="tr")
    val = _cls_items(6, 3, seed=7, patient_prefix="va")
    test = _cls_items(8, 3, seed=8, patient_prefix="te")
    test = [{**item, "labels": torch.tensor([item["labels"][0].item(), 0.0])} for item in test]  # no "b" positives
    task = ClassificationTask("toy3d", ["a", "b"], spatial_dims=3)
    cfg = _config(epochs=2, label_fractions=(0.5, 1.0), seeds=(0,))
    rows = run_finetune(task, lambda: build_classifier(3, 2, width=4), train, val, test, cfg, tmp_path,
                        method="scratch", train_patients=train, progress=False)
    by = {(r.label_fraction, r.split, r.metric): r for r in rows}
    assert set(by) == {(f, "test", m) for f in (0.5, 1.0) for m in ("auc_mean", "auc_a", "auc_b")} | \
        {(f, "val", "auc_mean") for f in (0.5, 1.0)}
    half, full = by[(0.5, "test", "auc_a")], by[(1.0, "test", "auc_a")]
    assert (half.n_train, full.n_train, full.n_val, full.n_test) == (6, 12, 6, 8)
    assert half.protocol["n_patients_train"] == 3 and half.protocol["init"]["init"] == "scratch"
    assert half.ci_low <= half.value <= half.ci_high and half.device == "cpu" and half.wall_time_s > 0
    undefined = by[(1.0, "test", "auc_b")]
    assert math.isnan(undefined.value) and "no positive" in undefined.protocol["detail"]["reason"]
    assert by[(1.0, "test", "auc_mean")].value == full.value          # the mean excludes the undefined class
    saved = load_rows(tmp_path / "results.json")
    assert len(saved) == len(rows) and math.isnan([r for r in saved if r.metric == "auc_b"][0].value)
    table = summarize(rows)
    assert set(table["label_fraction"]) == {0.5, 1.0}
    assert dict(zip(table["metric"], table["n_seeds"])) == {"auc_a": 1, "auc_b": 0, "auc_mean": 1}
    with pytest.raises(ValueError, match="fraction"):
        run_finetune(task, lambda: build_classifier(3, 2, width=4), train, val, test, cfg, tmp_path,
                     method="scratch", label_fractions=(1.5,), progress=False)


def test_run_finetune_segmentation_uses_patches_of_the_kept_cases(tmp_path):
    cases = _seg_cases(5, seed=3)
    task = SegmentationTask("toy_lits", LITS_STRUCTURES, window=(16, 16, 8), patches_per_case=1)
    cfg = _config(epochs=1, label_fractions=(0.34,), seeds=(1,), batch_size_3d=2)
    rows = run_finetune(task, lambda: build_segmenter(3, 2, width=4), cases[:3], cases[3:4], cases[4:], cfg,
                        tmp_path, method="scratch", progress=False)
    metrics = {r.metric for r in rows if r.split == "test"}
    assert metrics == {"dice_mean", "dice_liver", "dice_tumour", "hd95_liver", "hd95_tumour"}
    row = rows[0]
    assert (row.n_train, row.n_val, row.n_test) == (2, 1, 1)             # ceil(0.34 · 3) = 2 cases
    assert row.protocol["task"]["window"] == [16, 16, 8] and row.protocol["label_fraction"] == 0.34
    assert (tmp_path / "frac_0.34" / "seed_1" / "results.json").is_file()
