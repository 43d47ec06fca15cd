"""Linear probe on frozen encoder features (pcrl_lib.finetune.probe)."""

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from pcrl_lib.config import get_profile
from pcrl_lib.finetune.classify import ClassificationTask, build_classifier
from pcrl_lib.finetune.probe import encoder_features, fit_probe, linear_probe
from pcrl_lib.finetune.loop import eval_context
from pcrl_lib.metrics import roc_auc


def test_fit_probe_separates_separable_features_and_skips_unknown_labels():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(200, 5))
    y = np.stack([(z[:, 0] > 0), (z[:, 1] + z[:, 2] > 0), np.zeros(200)], 1).astype(float)
    y[:20, 0] = np.nan                               # unknown labels are skipped, not read as 0
    predict = fit_probe(z[:100], y[:100])
    p = predict(z[100:])
    assert p.shape == (100, 3) and ((0 <= p) & (p <= 1)).all()
    report = roc_auc(y[100:], p, n_bootstrap=0)
    assert report.classes[0].auc > 0.97 and report.classes[1].auc > 0.95
    assert np.allclose(p[:, 2], 0.0), "a label with one class in training gets its rate as a constant"


def test_fit_probe_is_invariant_to_feature_scale():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(80, 4))
    y = (z[:, :1] - z[:, 1:2] > 0).astype(float)
    a = fit_probe(z, y)(z)
    b = fit_probe(z * 1e4 + 7, y)(z * 1e4 + 7)
    assert np.allclose(a, b, atol=1e-6), "features are standardised with the training items' statistics"


def test_fit_probe_checks_shapes():
    with pytest.raises(ValueError, match="same N"):
        fit_probe(np.zeros((3, 2)), np.zeros((4, 1)))


def _images(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, generator=g) > 0.5).float()
    x = torch.rand(n, 1, 32, 32, generator=g) * 0.2
    x[y == 1, :, :16] += 0.8                          # positives: a bright upper half
    return TensorDataset(x, y[:, None])


def test_linear_probe_rows_on_a_frozen_random_encoder(tmp_path):
    cfg = get_profile("smoke").finetune.override(bootstrap=50)
    task = ClassificationTask("toy", ["bright_top"], 2)
    train, test = _images(40, 0), _images(30, 1)
    make = lambda: build_classifier(2, 1)  # noqa: E731
    rows = linear_probe(task, make, train, test, cfg, method="scratch", label_fractions=(0.5, 1.0), seeds=(0, 1),
                        device="cpu")
    means = [r for r in rows if r.metric == "auc_mean"]
    assert [(r.label_fraction, r.seed) for r in means] == [(0.5, 0), (1.0, 0), (0.5, 1), (1.0, 1)]
    assert all(r.task == "toy_probe" and r.split == "test" and r.n_test == 30 for r in rows)
    assert [r.n_train for r in means] == [20, 40, 20, 40]
    assert all(r.value > 0.9 and r.ci_low <= r.value <= r.ci_high for r in means), \
        "a bright half is linearly readable from pooled random-conv features"
    assert means[0].protocol["probe"]["dims"] == 512
    again = linear_probe(task, make, train, test, cfg, method="scratch", label_fractions=(0.5,), seeds=(1,),
                         device="cpu")
    assert again[0].value == means[2].value and again[0].ci_low == means[2].ci_low, "seeded: the same rows again"


def test_encoder_features_leave_the_encoder_unchanged():
    cfg = get_profile("smoke").finetune
    model = build_classifier(2, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    z, y = encoder_features(model, ClassificationTask("toy", ["a"], 2), _images(6, 2), eval_context(2, cfg, "cpu"))
    assert z.shape == (6, 512) and y.shape == (6, 1)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "frozen: BN statistics untouched"
