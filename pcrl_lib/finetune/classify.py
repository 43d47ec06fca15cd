"""Classification fine-tuning: pretrained encoder + pooled linear head, multi-label BCE, ROC-AUC evaluation.

Tasks (PCRL_SPEC §10): NIH ChestX-ray14 (14 labels, 2D), CheXpert (multi-label with unknown labels, 2D),
LUNA16 false-positive reduction (1 label, 3D cubes).

Model (:func:`build_classifier`)::

    x (B, C_in, *S) → encoder → [features..., bottleneck (B, C, *s)] → global average pool (B, C)
                    → dropout → linear → logits (B, L)

The encoder is the 2D ResNet-18 or the 3D Models-Genesis encoder, initialised from a pretraining export
(any method), from a *local* ImageNet ResNet-18 file (2D only; never downloaded), or randomly (scratch).

Batches the task understands: a dict with ``image`` ``(B, C, *S)``, ``labels`` ``(B, L)`` or ``(B,)`` and an
optional ``mask`` ``(B, L)`` (False where a label is unknown, e.g. CheXpert's "ignore" policy), or a tuple
``(image, labels)`` (:class:`pcrl_lib.data.cache.CandidateDataset`, ``ImageCacheDataset``).
Grey ``(B, 1, H, W)`` X-rays given to a 3-channel 2D encoder are repeated to 3 channels first.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..metrics import roc_auc
from ..transforms import normalize
from ..models import ClassificationHead, build_encoder
from ..models.exports import read_export
from .loop import EvalContext
from .pretrained import init_encoder, resolve_arch
from .records import MetricValue


class Classifier(nn.Module):
    """x ``(B, in_channels, *S)`` → logits ``(B, num_classes)``: encoder → pool → dropout → linear.

    ``init_report`` records how the encoder was initialised (kept in every result's protocol).
    """

    def __init__(self, encoder: nn.Module, num_classes: int, dropout: float = 0.2):
        super().__init__()
        self.encoder = encoder
        self.head = ClassificationHead(encoder.out_channels[-1], num_classes, dropout)
        self.spatial_dims = encoder.spatial_dims
        self.in_channels = encoder.in_channels
        self.num_classes = num_classes
        self.init_report: dict = {"init": "scratch", "method": "scratch", "source": None, "encoder": None}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def build_classifier(spatial_dims: int, num_classes: int, *, pretrained: Mapping | str | os.PathLike | None = None,
                     imagenet_weights: str | os.PathLike | None = None, in_channels: int | None = None,
                     width: int | None = None, norm: str | None = None, dropout: float = 0.2) -> Classifier:
    """The downstream classifier of one initialisation.

    Args:
        spatial_dims: 2 (ResNet-18) or 3 (Models-Genesis encoder).
        num_classes: number of labels ``L``.
        pretrained: an export dict, an ``encoder.pt`` path or its run folder (None = no pretraining).
        imagenet_weights: path to a local torchvision ResNet-18 state dict (2D only).
        in_channels: input channels (default: the export's, else 3 in 2D / 1 in 3D); a different count than
            the export's adapts the first convolution (see :mod:`pcrl_lib.finetune.pretrained`).
        width, norm: 3D encoder width/norm (default: the export's, else 32 / "bn").
        dropout: dropout before the linear layer.
    """
    export = read_export(pretrained) if pretrained is not None else None
    arch = resolve_arch(spatial_dims, export, in_channels=in_channels, width=width, norm=norm)
    model = Classifier(build_encoder(spatial_dims, **arch), num_classes, dropout)
    model.init_report = init_encoder(model.encoder, export, imagenet_weights)
    return model


def match_channels(x: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Repeat a 1-channel input to ``in_channels`` (grey X-ray → 3-channel encoder); else return ``x`` unchanged."""
    if x.shape[1] == 1 and in_channels > 1:
        return x.expand(-1, in_channels, *x.shape[2:])
    return x


@dataclass
class ClassificationTask:
    """Multi-label (or binary) classification task for :func:`pcrl_lib.finetune.loop.fit`.

    Args:
        name: task name in result rows (e.g. "nih14", "chexpert", "luna16_fpr").
        class_names: the ``L`` label names (metric rows are ``auc_<name>``).
        spatial_dims: 2 or 3 (picks the batch size of the config).
        transform: applied to the input batch on the device before the model (e.g. ImageNet normalisation
            so inputs match pretraining); ``(B, C, *S) → (B, C, *S)``.
    """

    name: str
    class_names: Sequence[str]
    spatial_dims: int
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    main_metric = "auc_mean"

    def __post_init__(self):
        if self.spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {self.spatial_dims!r}")
        if len(self.class_names) < 1:
            raise ValueError("class_names must name at least one label")
        self.class_names = tuple(self.class_names)

    def describe(self) -> dict:
        return {"type": "classification", "name": self.name, "classes": list(self.class_names),
                "spatial_dims": self.spatial_dims,
                "transform": None if self.transform is None else type(self.transform).__name__}

    def train_dataset(self, subset: Dataset, seed: int) -> Dataset:
        """The training view of the labelled subset: the items themselves."""
        return subset

    def unpack(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batch → ``x (B, C, *S)``, ``y (B, L)`` float, ``known (B, L)`` bool."""
        if isinstance(batch, Mapping):
            if "image" not in batch or "labels" not in batch:
                raise ValueError(f"classification batches need 'image' and 'labels' keys, got {sorted(batch)}")
            x, y, known = batch["image"], batch["labels"], batch.get("mask")
        elif isinstance(batch, (list, tuple)) and len(batch) == 2:
            (x, y), known = batch, None
        else:
            raise ValueError("classification batches must be a dict (image, labels[, mask]) or a tuple (image, labels)")
        y = y.float().reshape(y.shape[0], -1)
        if y.shape[1] != len(self.class_names):
            raise ValueError(f"task {self.name!r} has {len(self.class_names)} classes but the batch has "
                             f"{y.shape[1]} label columns")
        known = torch.ones_like(y, dtype=torch.bool) if known is None else known.reshape(y.shape).bool()
        known = known & ~torch.isnan(y)
        return x, torch.nan_to_num(y, nan=0.0), known

    def logits(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        x = match_channels(x.float(), getattr(model, "in_channels", x.shape[1]))
        if self.transform is not None:
            x = self.transform(x)
        return model(x)

    @staticmethod
    def _masked_bce(logits: torch.Tensor, y: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        # Unknown labels (CheXpert blanks/uncertain under some policies) contribute no gradient.
        loss = F.binary_cross_entropy_with_logits(logits.float(), y, reduction="none")
        return (loss * known).sum() / known.sum().clamp_min(1)

    def training_loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        x, y, known = self.unpack(batch)
        return self._masked_bce(self.logits(model, x), y, known)

    @torch.no_grad()
    def predict(self, model: nn.Module, dataset: Dataset, ctx: EvalContext) -> tuple[np.ndarray, np.ndarray, float]:
        """Probabilities ``(N, L)``, labels ``(N, L)`` with NaN where unknown, and the mean masked BCE."""
        model.eval()
        loader = DataLoader(dataset, batch_size=ctx.batch_size, shuffle=False, num_workers=ctx.num_workers)
        probs, labels, loss_sum, count = [], [], 0.0, 0
        for batch in loader:
            x, y, known = self.unpack(batch)
            x, y, known = x.to(ctx.device), y.to(ctx.device), known.to(ctx.device)
            with ctx.precision.autocast():
                logits = self.logits(model, x)
            loss_sum += float(self._masked_bce(logits, y, known)) * int(known.sum())
            count += int(known.sum())
            probs.append(torch.sigmoid(logits.float()).cpu())
            labels.append(torch.where(known, y, torch.full_like(y, math.nan)).cpu())
        return torch.cat(probs).numpy(), torch.cat(labels).numpy(), loss_sum / max(count, 1)

    def validate(self, model: nn.Module, dataset: Dataset, ctx: EvalContext) -> dict:
        """``{"score": mean AUC over defined classes, "loss": masked BCE, "note": exclusions}`` (no bootstrap)."""
        probs, labels, loss = self.predict(model, dataset, ctx)
        report = roc_auc(labels, probs, class_names=self.class_names, n_bootstrap=0)
        return {"score": report.mean, "loss": loss, "note": report.note or "all classes defined"}

    def evaluate(self, model: nn.Module, dataset: Dataset, ctx: EvalContext, *, n_bootstrap: int,
                 rng: np.random.Generator) -> list[MetricValue]:
        """Test metrics: ``auc_mean`` then ``auc_<class>`` per class, with bootstrap intervals.

        Undefined classes (no positives or negatives in the split) get a NaN value and the reason in ``detail``.
        """
        probs, labels, loss = self.predict(model, dataset, ctx)
        report = roc_auc(labels, probs, class_names=self.class_names, n_bootstrap=n_bootstrap, rng=rng)
        out = [MetricValue("auc_mean", report.mean, report.mean_ci_low, report.mean_ci_high,
                           {"note": report.note, "bce": loss})]
        for c in report.classes:
            out.append(MetricValue(f"auc_{c.name}", c.auc, c.ci_low, c.ci_high,
                                   {"n_pos": c.n_pos, "n_neg": c.n_neg, "reason": c.reason}))
        return out


# ------------------------------------------------------------------------------------------- a task's models
class ImageNetNormalize:
    """``(B, 3, H, W)`` in [0, 1] → ImageNet-normalised: the 2D encoders were pretrained on such inputs
    (:class:`~pcrl_lib.transforms.PCRLViews2D`), so fine-tuning feeds them the same statistics."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return normalize(x)


def classification_task(data: Any) -> ClassificationTask:
    """The :class:`ClassificationTask` of a :class:`~pcrl_lib.data.tasks_cls.ClassificationData` (its name,
    classes and dimensionality; ImageNet normalisation in 2D)."""
    return ClassificationTask(data.name, data.class_names, data.spatial_dims,
                              transform=ImageNetNormalize() if data.spatial_dims == 2 else None)


def classifier_factory(data: Any, pretrained: str | os.PathLike | None, *, width: int | None = None,
                       dropout: float = 0.2) -> Callable[[], nn.Module]:
    """A zero-argument factory of the classifier of ``data`` (a :class:`~pcrl_lib.data.tasks_cls.ClassificationData`;
    what :func:`~pcrl_lib.finetune.run_finetune` calls once per run).

    ``pretrained``: an encoder export (``encoder.pt``) or None for a random initialisation. ``width``: the
    3D encoder's width for a random initialisation, so that it has the architecture of the exports it is
    compared with (a pretrained 3D encoder takes its width from the export)."""
    kw = {"dropout": dropout}
    if data.spatial_dims == 3 and pretrained is None and width is not None:
        kw["width"] = width
    return partial(build_classifier, data.spatial_dims, len(data.class_names), pretrained=pretrained, **kw)
