"""Few-label fine-tuning and evaluation of pretrained encoders (PCRL_SPEC §10).

==================  ==========================================================================================
module              what it holds
==================  ==========================================================================================
``pretrained``      reading and checking pretraining exports; first-conv adaptation; local ImageNet weights
``classify``        encoder + pooled linear head, masked multi-label BCE, ROC-AUC evaluation; a task's models
``segment``         U-Net with logits, Dice + BCE, patch sampling, sliding-window inference, Dice/HD95 evaluation;
                    a task's models, fine-tuning config and loading of fine-tuned weights
``loop``            the shared train / validate / select / early-stop / resume loop
``few_label``       the few-label protocol: fractions × seeds → fine-tune → held-out TEST split → result
                    rows; the run folders
``records``         result rows, JSON round trip, seed-aggregated summary table
==================  ==========================================================================================

Patient-level splits and label fractions are data: :mod:`pcrl_lib.data.splits`.
"""

from ..data.brats import STRUCTURES as BRATS_STRUCTURES
from ..data.lits import STRUCTURES as LITS_STRUCTURES
from .classify import ClassificationTask, Classifier, build_classifier
from .few_label import run_finetune
from .loop import EvalContext, FitResult, epoch_batches, eval_context, fit, make_optimizer
from .records import MetricValue, ResultRow, load_rows, rows_to_frame, save_rows, summarize
from .segment import (DiceBCELoss, PatchDataset, SegmentationTask, build_segmenter, gaussian_importance,
                      sliding_window_inference, structure_masks)

__all__ = ["ClassificationTask", "Classifier", "build_classifier", "run_finetune", "EvalContext", "FitResult",
           "epoch_batches", "eval_context", "fit", "make_optimizer", "MetricValue",
           "ResultRow", "load_rows", "rows_to_frame", "save_rows", "summarize", "BRATS_STRUCTURES",
           "LITS_STRUCTURES", "DiceBCELoss", "PatchDataset", "SegmentationTask", "build_segmenter",
           "gaussian_importance", "sliding_window_inference", "structure_masks"]
