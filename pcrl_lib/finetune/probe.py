"""Linear probe: how good are the frozen encoder's features, before any fine-tuning?

The standard check of self-supervised features (MoCo, SimCLR): freeze the encoder, pool its bottleneck to one vector
per image or cube, and fit only a linear classifier on the labelled fraction. It is cheap (one forward pass per
item, then a convex fit) and it separates "the pretrained features already encode the labels" from "fine-tuning
recovered them":

    x (B, C_in, *S) → frozen encoder → bottleneck (B, C, *s) → global average pool → z (B, C)
    z → standardise (mean/std of the labelled training items) → L2-regularised logistic regression per label

For each label fraction and seed, the same patient-level subset as fine-tuning (:func:`sample_fraction`, nested)
fits the probe; the TEST split gives the mean AUC with its bootstrap interval, in the same result rows as
fine-tuning under the task name ``<task>_probe``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..config import FinetuneConfig
from ..data.splits import sample_fraction
from ..env import seed_everything
from ..metrics import roc_auc
from ..provenance import PROBE_SUFFIX
from .classify import ClassificationTask, match_channels
from .few_label import protocol_inputs
from .loop import EvalContext, eval_context
from .records import ResultRow


@torch.no_grad()
def encoder_features(model: nn.Module, task: ClassificationTask, dataset: Dataset, ctx: EvalContext
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Pooled bottleneck features ``(N, C)`` (float64) and labels ``(N, L)`` (NaN where unknown) of ``dataset``.

    ``model`` is a classifier with an ``encoder`` (:class:`~pcrl_lib.finetune.classify.Classifier`); its head is
    not used. Inputs get the task's preprocessing (grey → 3 channels, ImageNet normalisation in 2D)."""
    encoder = model.encoder.to(ctx.device).eval()
    loader = DataLoader(dataset, batch_size=ctx.batch_size, shuffle=False, num_workers=ctx.num_workers)
    features, labels = [], []
    for batch in loader:
        x, y, known = task.unpack(batch)
        x = match_channels(x.float().to(ctx.device), getattr(model, "in_channels", x.shape[1]))
        if task.transform is not None:
            x = task.transform(x)
        with ctx.precision.autocast():
            bottleneck = encoder(x)[-1]
        features.append(bottleneck.float().flatten(2).mean(2).cpu().double())
        labels.append(torch.where(known, y, torch.full_like(y, math.nan)))
    return torch.cat(features).numpy(), torch.cat(labels).double().numpy()


def fit_probe(features: np.ndarray, labels: np.ndarray, *, C: float = 1.0) -> Callable[[np.ndarray], np.ndarray]:
    """Fit one logistic regression per label on ``features (N, C)`` / ``labels (N, L)`` (NaN = unknown, skipped).

    Features are standardised with the training items' mean and standard deviation. ``C`` is the inverse L2
    strength (scikit-learn's). A label with only one class among the known training items gets that class's
    rate as a constant score (its test AUC is then 0.5 if defined). Returns ``predict(features) → (M, L)``
    probabilities."""
    from sklearn.linear_model import LogisticRegression

    if features.ndim != 2 or labels.ndim != 2 or len(features) != len(labels):
        raise ValueError(f"features (N, C) and labels (N, L) must have the same N, got {features.shape} and "
                         f"{labels.shape}")
    mean, std = features.mean(0), features.std(0)
    std = np.where(std > 0, std, 1.0)
    standard = (features - mean) / std
    models: list[Any] = []
    for column in labels.T:
        known = ~np.isnan(column)
        y = column[known].astype(int)
        if known.sum() == 0 or y.min() == y.max():
            models.append(float(y.mean()) if known.any() else 0.5)
            continue
        models.append(LogisticRegression(C=C, max_iter=2000).fit(standard[known], y))

    def predict(x: np.ndarray) -> np.ndarray:
        z = (x - mean) / std
        return np.stack([np.full(len(z), m) if isinstance(m, float) else m.predict_proba(z)[:, 1] for m in models], 1)

    return predict


def linear_probe(task: ClassificationTask, make_model: Callable[[], nn.Module], train_set: Dataset,
                 test_set: Dataset, cfg: FinetuneConfig, *, method: str, train_patients: Sequence[Any] | None = None,
                 label_fractions: Sequence[float] | None = None, seeds: Sequence[int] | None = None,
                 device: str | torch.device = "auto", C: float = 1.0) -> list[ResultRow]:
    """Linear-probe rows for one initialisation over label fractions × seeds (see the module docstring).

    ``make_model`` is the fine-tuning factory (called after ``seed_everything(seed)``, so a random encoder is the
    one fine-tuning starts from). Rows: split ``test``, metric ``auc_mean`` and ``auc_<class>``, task
    ``<task.name>_probe``, ``protocol["probe"]`` holding the probe's settings; ``wall_time_s`` is the feature
    extraction plus fit time."""
    import time

    fractions, seeds, patients = protocol_inputs(cfg, train_set, test_set, train_patients, label_fractions, seeds)
    ctx = eval_context(task.spatial_dims, cfg, device)
    rows: list[ResultRow] = []
    for seed in seeds:
        started = time.perf_counter()
        seed_everything(int(seed))
        model = make_model()
        train_z, train_y = encoder_features(model, task, train_set, ctx)
        test_z, test_y = encoder_features(model, task, test_set, ctx)
        extract_s = time.perf_counter() - started
        for fraction in fractions:
            began = time.perf_counter()
            kept = sample_fraction(patients, fraction, seed)
            predict = fit_probe(train_z[kept], train_y[kept], C=C)
            report = roc_auc(test_y, predict(test_z), class_names=task.class_names, n_bootstrap=cfg.bootstrap,
                             rng=np.random.default_rng([int(seed), 0x9B0E]))
            protocol = {"label_fraction": fraction, "seed": int(seed), "task": task.describe(),
                        "init": getattr(model, "init_report", None),
                        "probe": {"features": "global average pool of the frozen encoder's bottleneck",
                                  "classifier": "logistic regression per label on standardised features",
                                  "C": C, "dims": int(train_z.shape[1])},
                        "n_patients_train": int(len(set(patients[kept].tolist()))), "bootstrap": cfg.bootstrap}
            common = {"task": task.name + PROBE_SUFFIX, "label_fraction": float(fraction), "method": method,
                      "seed": int(seed), "wall_time_s": extract_s + time.perf_counter() - began,
                      "device": str(ctx.device), "n_train": int(len(kept)), "n_val": 0, "n_test": len(test_set)}
            rows.append(ResultRow(split="test", metric="auc_mean", value=float(report.mean),
                                  ci_low=float(report.mean_ci_low), ci_high=float(report.mean_ci_high),
                                  protocol={**protocol, "detail": {"note": report.note}}, **common))
            for c in report.classes:
                rows.append(ResultRow(split="test", metric=f"auc_{c.name}", value=float(c.auc),
                                      ci_low=float(c.ci_low), ci_high=float(c.ci_high),
                                      protocol={**protocol, "detail": {"n_pos": c.n_pos, "n_neg": c.n_neg,
                                                                       "reason": c.reason}}, **common))
    return rows
