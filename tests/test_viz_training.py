"""pcrl_lib.viz.training: history tables, loss figures, reconstructions per TCA code and for the hybrid encoder."""

import json

import numpy as np
import pytest
import torch

from pcrl_lib.pcrl import build_method
from pcrl_lib.transforms import tca_apply
from pcrl_lib.viz import training as vt


def _history(n=10, parts=("nce_a", "mse_a_ord", "p_pos"), batch=4):
    """Step records like the trainer's: part j of step s is (j + 1) * (n - s) (falling), p_pos rising."""
    records = []
    for s in range(1, n + 1):
        values = {p: (j + 1) * float(n - s + 1) for j, p in enumerate(parts) if p != "p_pos"}
        if "p_pos" in parts:
            values["p_pos"] = s / (n + 1)
        records.append({"epoch": 0, "step": s, "lr": 0.1, "loss": float(sum(v for k, v in values.items() if k != "p_pos")),
                        "parts": values, "samples_per_s": batch / 0.5})
    return records


def test_load_history_from_list_file_and_folder(tmp_path):
    history = _history(4)
    (tmp_path / "history.json").write_text(json.dumps(history))
    assert vt.load_history(history) == history
    assert vt.load_history(tmp_path) == history
    assert vt.load_history(tmp_path / "history.json") == history
    with pytest.raises(FileNotFoundError, match="no history.json"):
        vt.load_history(tmp_path / "missing")
    with pytest.raises(ValueError, match="empty"):
        vt.load_history([])
    with pytest.raises(ValueError, match="lack 'step'"):
        vt.load_history([{"loss": 1.0}])


def test_moving_average_is_trailing_and_keeps_length():
    np.testing.assert_allclose(vt.moving_average([1, 2, 3, 4, 5], 2), [1.0, 1.5, 2.5, 3.5, 4.5])
    np.testing.assert_allclose(vt.moving_average([3.0, 5.0], 1), [3.0, 5.0])
    with pytest.raises(ValueError, match="window"):
        vt.moving_average([1.0], 0)


def test_start_end_means_over_the_two_ends():
    table = vt.start_end({"a": _history(10)}, window=3)
    row = table[(table.run == "a") & (table.part == "nce_a")].iloc[0]
    # nce_a = 10, 9, 8 at steps 1..3 and 3, 2, 1 at steps 8..10
    assert row.start == pytest.approx(9.0) and row.end == pytest.approx(2.0) and row.change == pytest.approx(-7.0)
    assert row.steps == 10
    assert list(table.part) == ["loss", "nce_a", "mse_a_ord", "p_pos"]
    p = table[table.part == "p_pos"].iloc[0]
    assert p.end > p.start
    # A window larger than half the run is capped so the two ends do not overlap.
    short = vt.start_end({"b": _history(4)}, window=10)
    nce = short[short.part == "nce_a"].iloc[0]
    assert nce.start == pytest.approx(3.5) and nce.end == pytest.approx(1.5)
    with pytest.raises(ValueError, match="window"):
        vt.start_end({"a": _history(4)}, window=0)


def test_start_end_skips_the_first_steps_but_keeps_two_records():
    table = vt.start_end({"a": _history(10)}, window=2, skip=4)
    row = table[table.part == "nce_a"].iloc[0]
    # steps 5, 6 → 6, 5; steps 9, 10 → 2, 1
    assert row.start == pytest.approx(5.5) and row.end == pytest.approx(1.5) and row.from_step == 5
    short = vt.start_end({"a": _history(3)}, window=5, skip=10)
    row = short[short.part == "nce_a"].iloc[0]
    assert row.from_step == 2 and row.start == pytest.approx(2.0) and row.end == pytest.approx(1.0)
    with pytest.raises(ValueError, match="skip"):
        vt.start_end({"a": _history(4)}, skip=-1)
    per_run = vt.start_end({"a": _history(10), "b": _history(10)}, window=1, skip={"a": 8})
    assert list(per_run[per_run.part == "loss"].from_step) == [9, 1]


def test_queue_warmup_steps_counts_keys_per_step():
    assert vt.queue_warmup_steps("pcrl", 64, 8) == 3        # 24 keys per step
    assert vt.queue_warmup_steps("moco", 64, 8) == 8        # 8 keys per step
    assert vt.queue_warmup_steps("c2l", 16384, 64) == 86
    assert vt.queue_warmup_steps("models_genesis", 64, 8) == 0
    with pytest.raises(ValueError, match="unknown method"):
        vt.queue_warmup_steps("simclr", 64, 8)


def test_train_seconds_from_logged_throughput():
    assert vt.train_seconds(_history(10, batch=4), samples_per_step=4) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="samples_per_step"):
        vt.train_seconds(_history(2), samples_per_step=0)


def test_plot_runs_one_panel_per_run_with_probability_axis():
    fig = vt.plot_runs({"pcrl": _history(6), "moco": _history(6, parts=("nce_a", "p_pos")),
                        "models_genesis": _history(6, parts=("mse_restore",))}, ncols=2, smooth=2)
    titled = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in titled] == ["pcrl", "moco", "models_genesis"]
    # 2×2 grid (one hidden) + a twin axis for p_pos on each of the two contrastive runs
    assert len(fig.axes) == 4 + 2
    pcrl_lines = {line.get_label() for line in titled[0].get_lines()}
    assert pcrl_lines == {"loss", "nce_a", "mse_a_ord"}
    assert titled[0].get_yscale() == "log"
    split = vt.plot_runs({"contrastive": _history(6), "reconstruction": _history(6)},
                         parts={"contrastive": ["nce_a", "p_pos"], "reconstruction": ["mse_a_ord"]})
    first, second = (ax for ax in split.axes if ax.get_title())
    assert [line.get_label() for line in first.get_lines()] == ["nce_a"]
    assert [line.get_label() for line in second.get_lines()] == ["mse_a_ord"]
    assert len(split.axes) == 3  # one probability axis, on the contrastive panel only


def test_plot_compare_overlays_runs_that_have_the_part():
    fig = vt.plot_compare({"pcrl": _history(5), "mg": _history(5, parts=("mse_restore",))}, "p_pos")
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["pcrl"]
    assert ax.get_yscale() == "linear"
    with pytest.raises(ValueError, match="available: .*mse_restore"):
        vt.plot_compare({"mg": _history(5, parts=("mse_restore",))}, "p_pos")


def test_tca_codes_and_labels():
    codes = vt.tca_codes(2)
    assert codes.shape == (8, 6)
    assert [vt.code_label(c) for c in codes[:2]] == ["rot 0°", "rot 90°"]
    assert vt.code_label(codes[6]) == "flip H, rot 180°"
    three = vt.tca_codes(3, flips=((0, 2),))
    assert three.shape == (4, 7) and vt.code_label(three[1]) == "flip x+z, rot 90°"
    with pytest.raises(ValueError, match="flip axes"):
        vt.tca_codes(2, flips=((2,),))


@pytest.fixture(scope="module")
def pcrl_3d():
    torch.manual_seed(0)
    method = build_method("pcrl", 3, K=16, n_data=8, width=4)
    # BatchNorm running statistics of a fresh network are (0, 1); set them from one batch (momentum 1) so that
    # eval mode normalises like training would, and make E_m differ from E_o so the hybrid mix is not E_o.
    with torch.no_grad():
        for module in method.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.momentum = 1.0
        x = torch.rand(4, 1, 16, 16, 8)
        method.decode(method.gated(method.encoder_q(x), vt.tca_codes(3)[:4]))
        for p in method.encoder_k.parameters():
            p.add_(0.05 * torch.randn_like(p))
    method.encoder_k.load_state_dict({**method.encoder_k.state_dict(),
                                      **{k: v for k, v in method.encoder_q.state_dict().items() if "running" in k}})
    return method


def test_tca_reconstructions_follow_the_code(pcrl_3d):
    x = torch.rand(1, 16, 16, 8)
    codes = vt.tca_codes(3)
    pcrl_3d.train()
    targets, outputs = vt.tca_reconstructions(pcrl_3d, x, codes)
    assert pcrl_3d.training, "the previous mode is restored"
    assert targets.shape == outputs.shape == (8, 1, 16, 16, 8)
    torch.testing.assert_close(targets[1], tca_apply(x.unsqueeze(0), codes[1:2])[0])
    # The gate is live: different codes give different reconstructions of the same image.
    assert not torch.allclose(outputs[0], outputs[1])
    with pytest.raises(ValueError, match=r"\(n, 7\)"):
        vt.tca_reconstructions(pcrl_3d, x, vt.tca_codes(2))
    with pytest.raises(ValueError, match="one image"):
        vt.tca_reconstructions(pcrl_3d, torch.rand(2, 1, 16, 16, 8), codes)


def test_reconstructions_need_a_decoder_and_a_gate():
    moco = build_method("moco", 3, K=16, width=2)
    with pytest.raises(ValueError, match="no decoder"):
        vt.hybrid_reconstructions(moco, torch.rand(1, 16, 16, 8), torch.rand(1, 16, 16, 8), [1.0])
    recon = build_method("pcrl_recon", 3, K=16, n_data=8, width=2)
    with pytest.raises(ValueError, match="no TCA gate"):
        vt.tca_reconstructions(recon, torch.rand(1, 16, 16, 8), vt.tca_codes(3))


def test_hybrid_reconstructions_alpha_one_is_the_ordinary_output(pcrl_3d):
    x1, x2 = torch.rand(1, 16, 16, 8), torch.rand(1, 16, 16, 8)
    codes = vt.tca_codes(3)
    c1, c2 = codes[1], codes[6]
    targets, outputs = vt.hybrid_reconstructions(pcrl_3d, x1, x2, [1.0, 0.5], c1, c2)
    assert outputs.shape == targets.shape == (2, 1, 16, 16, 8)
    _, ordinary = vt.tca_reconstructions(pcrl_3d, x1, codes[1:2])
    torch.testing.assert_close(outputs[0], ordinary[0], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(outputs[1], outputs[0])
    expected = 0.5 * tca_apply(x1.unsqueeze(0), c1[None]) + 0.5 * tca_apply(x2.unsqueeze(0), c2[None])
    torch.testing.assert_close(targets[1:2], expected)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        vt.hybrid_reconstructions(pcrl_3d, x1, x2, [1.5])


def test_code_confusion_matches_a_loop():
    gen = torch.Generator().manual_seed(0)
    targets, outputs = torch.rand(4, 1, 3, 5, generator=gen), torch.rand(4, 1, 3, 5, generator=gen)
    matrix = vt.code_confusion(targets, outputs)
    for i in range(4):
        for j in range(4):
            assert matrix[i, j] == pytest.approx(float(((outputs[i] - targets[j]) ** 2).mean()), rel=1e-5)
    torch.testing.assert_close(matrix.diagonal(), vt.per_item_mse(targets, outputs))
    with pytest.raises(ValueError, match="differ in shape"):
        vt.code_confusion(targets, outputs[:2])


def test_to_display_2d_denormalises_and_3d_takes_the_middle_slice():
    from pcrl_lib.transforms import normalize

    image = torch.rand(1, 3, 4, 5)
    shown = vt.to_display(normalize(image)[0], 2)
    assert shown.shape == (4, 5, 3)
    np.testing.assert_allclose(shown, image[0].permute(1, 2, 0).numpy(), atol=1e-5)
    volume = torch.zeros(1, 4, 6, 8)
    volume[0, 1, 2, 4] = 1.0
    slice_ = vt.to_display(volume, 3)
    assert slice_.shape == (6, 4) and slice_[2, 1] == 1.0 and slice_.sum() == 1.0
    with pytest.raises(ValueError, match="3D item"):
        vt.to_display(torch.zeros(2, 4, 4, 4), 3)


def test_plot_reconstructions_and_confusion_figures():
    targets = torch.rand(3, 1, 8, 8, 8)
    outputs = targets.clone()
    outputs[1] += 0.5
    fig = vt.plot_reconstructions(targets, outputs, ["a", "b", "c"], 3, title="t")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:3] == ["a", "b", "c"] and titles[3] == "MSE 0" and titles[4] == "MSE 0.25"
    with pytest.raises(ValueError, match="same n items"):
        vt.plot_reconstructions(targets, outputs, ["a"], 3)
    conf = vt.plot_confusion(vt.code_confusion(targets, outputs), ["a", "b", "c"])
    assert conf.axes[0].get_xlabel().startswith("target")
