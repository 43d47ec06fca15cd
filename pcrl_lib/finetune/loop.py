"""The fine-tuning loop shared by classification and segmentation: train, validate, select, stop, resume.

One epoch (PCRL_SPEC §10 protocol)::

    for batch in epoch_batches(seed, epoch):              # order = pure function of (seed, epoch)
        with autocast: loss = task.training_loss(model, batch)
        AdamW/SGD step (through a GradScaler for fp16)
    val = task.validate(model, val_set)                   # {"score": higher is better, "loss", ...}
    keep the weights of the best validation score; stop after ``patience`` epochs without improvement

Legend: ``task`` — an object with the :class:`Task` methods (:class:`~pcrl_lib.finetune.classify.ClassificationTask`,
:class:`~pcrl_lib.finetune.segment.SegmentationTask`); ``epoch`` — 0-based; ``patience`` — epochs without a
better validation score before stopping (0 = never stop early).

Files under ``output_dir``::

    checkpoints/last.pt    after every epoch: model, optimizer, scaler, best weights, counters, history, RNGs;
                           once the run is finished, only its counters and history (``"finished": True``)
    best.pt                the selected (best-validation) weights, a plain state_dict
    history.json           one record per epoch: train loss, validation score and loss, time

Exact resume happens at epoch boundaries: the data order and any per-epoch sampling depend only on
(seed, epoch) (datasets with a ``set_epoch(epoch)`` method are told the epoch, like PyTorch's
``DistributedSampler``), and every RNG the step can touch (dropout) is saved, so a run killed at any
moment and restarted continues to the same weights as an uninterrupted run (bit-identical on CPU). A
finished run is reused: calling :func:`fit` again loads the selected weights without training. A finished run
keeps one copy of its weights (``best.pt``): ``last.pt`` then drops the model, optimizer and best-weight copies,
which would otherwise triple every run's size on disk (a 2D ResNet-18 run: ~45 MB instead of ~180 MB).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..checkpoint import atomic_save, capture_rng_state, load_checkpoint, remove_stale_temporaries, restore_rng_state
from ..config import FinetuneConfig
from ..env import pick_device, seed_worker
from ..fileio import atomic_write_json
from ..precision import Precision, make_precision
from ..runs import config_differences, run_folder
from ..training import NonFiniteLossError, derive_seed, epoch_permutation, to_device

OPTIMIZERS = ("adamw", "sgd")
CHECKPOINT_FORMAT = 1
# FinetuneConfig keys that cannot change one run's weights (loader workers; the experiment's list of fractions
# and seeds; test-time bootstrap): a checkpoint written with other values still resumes or is reused.
_NON_RESULT_KEYS = ("num_workers", "label_fractions", "seeds", "bootstrap")


@dataclass(frozen=True)
class EvalContext:
    """How a task evaluates: device, autocast, batch size and loader workers."""

    device: torch.device
    precision: Precision
    batch_size: int
    num_workers: int = 0


def eval_context(spatial_dims: int, cfg: FinetuneConfig, device: str | torch.device = "auto") -> EvalContext:
    """The evaluation settings :func:`fit` uses: resolved device and precision, the config's batch size.

    ``precision="auto"`` resolves as in pretraining, per dimensionality (:func:`pcrl_lib.precision.cpu_auto`):
    bf16 on GPUs and, for 2D models, on CPUs with native bf16; 3D on a CPU only where its conv3d check passes."""
    dev = pick_device(device)
    batch_size = cfg.batch_size_2d if spatial_dims == 2 else cfg.batch_size_3d
    return EvalContext(dev, make_precision(dev, cfg.precision, spatial_dims=spatial_dims), batch_size,
                       cfg.num_workers)


class Task(Protocol):
    """What :func:`fit` needs from a task (see ClassificationTask / SegmentationTask)."""

    name: str
    spatial_dims: int

    def training_loss(self, model: nn.Module, batch: Any) -> torch.Tensor: ...

    def validate(self, model: nn.Module, dataset: Dataset, ctx: EvalContext) -> dict: ...

    def describe(self) -> dict: ...


def make_optimizer(name: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """``"adamw"`` (AdamW) or ``"sgd"`` (momentum 0.9, as in pretraining)."""
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    raise ValueError(f"optimizer={name!r} is not supported; choose one of {', '.join(OPTIMIZERS)}")


def epoch_batches(num_items: int, batch_size: int, seed: int, epoch: int, max_steps: int = 0) -> list[list[int]]:
    """Index batches of one epoch: a permutation seeded by (seed, epoch), cut into ``batch_size`` chunks.

    Unlike pretraining, the last incomplete batch is kept (few-label sets are small and every label counts);
    a last batch of a single item is merged into the one before, because BatchNorm cannot train on one
    sample. ``max_steps > 0`` caps the number of batches.
    """
    if num_items < 1:
        raise ValueError("the training set is empty: nothing to fine-tune on (check the label fraction and split)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = epoch_permutation(num_items, seed, "finetune_order", epoch).tolist()
    batches = [order[i:i + batch_size] for i in range(0, num_items, batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2].extend(batches.pop())
    return batches[:max_steps] if max_steps > 0 else batches


@dataclass
class FitResult:
    """What :func:`fit` returns; the model holds the selected (best-validation) weights afterwards."""

    output_dir: Path
    best_epoch: int
    best_score: float
    epochs_run: int
    stopped_early: bool
    history: list[dict]
    wall_time_s: float
    precision: str
    reused: bool


def _run_config(task: Task, cfg: FinetuneConfig, seed: int, optimizer: str, n_train: int, n_val: int) -> dict:
    finetune = {k: v for k, v in cfg.to_dict().items() if k not in _NON_RESULT_KEYS}
    return {"task": task.describe(), "seed": seed, "optimizer": optimizer, "n_train": n_train, "n_val": n_val,
            "finetune": finetune}


def _cpu_state(model: nn.Module) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def fit(model: nn.Module, task: Task, train_set: Dataset, val_set: Dataset, cfg: FinetuneConfig,
        output_dir: str | Path, *, seed: int = 0, device: str | torch.device = "auto", optimizer: str = "adamw",
        resume: bool = True, force: bool = False, progress: bool = True,
        on_epoch: Callable[[dict], None] | None = None) -> FitResult:
    """Fine-tune ``model`` on ``train_set``, select on ``val_set``; see the module doc.

    Args:
        model: the network (e.g. from ``build_classifier`` / ``build_segmenter``), moved to the device here.
        task: the task object (loss and validation).
        train_set, val_set: map-style datasets whose items the task understands.
        cfg: :class:`pcrl_lib.config.FinetuneConfig` (epochs, lr, weight_decay, patience, precision, batch size
            per dimensionality, max_steps_per_epoch, num_workers).
        output_dir: the run folder (checkpoints, best weights, history).
        seed: data order and checkpoint identity (seed the model's initialisation before building it).
        optimizer: ``"adamw"`` or ``"sgd"``.
        resume: continue from ``checkpoints/last.pt`` (or reuse a finished run) when present.
        force: delete this run's files first and train from scratch (only in a run folder the kit created:
            ``output_dir`` must be new, empty or the kit's, see :mod:`pcrl_lib.runs`; a ``RunFolderError``
            otherwise, and while another run holds it).
        on_epoch: called with each epoch's history record (live plots, tests).
    """
    if not isinstance(cfg, FinetuneConfig):
        raise TypeError(f"cfg must be a FinetuneConfig, got {type(cfg).__name__}")
    if cfg.epochs < 1:
        raise ValueError(f"cfg.epochs must be >= 1, got {cfg.epochs}")
    if cfg.patience < 0:
        raise ValueError(f"cfg.patience must be >= 0 (0 = no early stopping), got {cfg.patience}")
    if len(val_set) == 0:
        raise ValueError("the validation set is empty: model selection needs a validation split")
    out = Path(output_dir)
    # The run folder: new, empty or the kit's own (marker file); locked while training (pcrl_lib.runs).
    with run_folder(out, "finetune", force=force):
        return _fit(model, task, train_set, val_set, cfg, out, seed=seed, device=device, optimizer=optimizer,
                    resume=resume, progress=progress, on_epoch=on_epoch)


def _fit(model: nn.Module, task: Task, train_set: Dataset, val_set: Dataset, cfg: FinetuneConfig, out: Path, *,
         seed: int, device: str | torch.device, optimizer: str, resume: bool, progress: bool,
         on_epoch: Callable[[dict], None] | None) -> FitResult:
    ckpt_dir, last, best_path = out / "checkpoints", out / "checkpoints" / "last.pt", out / "best.pt"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(ckpt_dir)
    remove_stale_temporaries(out)

    ctx = eval_context(task.spatial_dims, cfg, device)
    dev, precision, batch_size = ctx.device, ctx.precision, ctx.batch_size
    model.to(dev)
    opt = make_optimizer(optimizer, model.parameters(), cfg.lr, cfg.weight_decay)
    scaler = precision.grad_scaler()
    config = _run_config(task, cfg, seed, optimizer, len(train_set), len(val_set))

    epoch, best_epoch, best_score, bad_epochs, stopped = 0, -1, -math.inf, 0, False
    history: list[dict] = []
    best_state: dict | None = None
    wall = 0.0
    already_final = False                                    # last.pt is the weightless record of a finished run
    if resume and last.is_file():
        state = load_checkpoint(last, map_location="cpu")
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"checkpoint {last} has format {state.get('format')!r}, expected {CHECKPOINT_FORMAT}; "
                             "pass force=True to retrain")
        diff = config_differences(state["config"], config)
        if diff:
            raise ValueError(f"checkpoint {last} was written by a run with another configuration "
                             f"({'; '.join(diff)}); pass force=True to retrain or use another output_dir")
        epoch, best_epoch, best_score = state["epoch"], state["best_epoch"], state["best_score"]
        bad_epochs, stopped, history = state["bad_epochs"], state["stopped_early"], list(state["history"])
        wall = state["wall_time_s"]
        already_final = bool(state.get("finished"))
        if already_final:
            if not best_path.is_file():
                raise FileNotFoundError(f"{last} records a finished run but its weights {best_path} are missing; "
                                        "pass force=True to retrain")
            best_state = load_checkpoint(best_path, map_location="cpu")
        else:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            if state["scaler"]:
                scaler.load_state_dict(state["scaler"])
            best_state = state["best_model"]
            restore_rng_state(state["rng"])
    atomic_write_json(config, ckpt_dir / "config.json")
    start_epoch = epoch

    from tqdm.auto import tqdm

    bar_kw = {} if progress else {"disable": True}  # TQDM_DISABLE=1 in the environment still applies
    with tqdm(total=cfg.epochs, initial=epoch, desc=f"fine-tune {task.name}", dynamic_ncols=True, **bar_kw) as bar:
        while epoch < cfg.epochs and not stopped:
            tick = time.perf_counter()
            train_loss = _train_epoch(model, task, train_set, opt, scaler, precision, dev, seed, epoch,
                                      batch_size, cfg, progress, last)
            model.eval()
            with torch.no_grad():
                val = task.validate(model, val_set, ctx)
            score = float(val["score"])
            if math.isnan(score):
                raise ValueError(f"the validation score of task {task.name!r} is undefined at epoch {epoch} "
                                 f"({val.get('note', 'no detail')}); model selection needs a validation split "
                                 "with positives and negatives for at least one class")
            improved = score > best_score
            if improved:
                best_epoch, best_score, bad_epochs, best_state = epoch, score, 0, _cpu_state(model)
            else:
                bad_epochs += 1
            epoch += 1
            stopped = cfg.patience > 0 and bad_epochs >= cfg.patience and epoch < cfg.epochs
            elapsed = time.perf_counter() - tick
            wall += elapsed
            record = {"epoch": epoch - 1, "train_loss": train_loss, "val_score": score,
                      "val_loss": float(val.get("loss", math.nan)), "improved": improved, "time_s": elapsed,
                      "lr": opt.param_groups[0]["lr"]}
            history.append(record)
            atomic_save({"format": CHECKPOINT_FORMAT, "config": config, "model": model.state_dict(),
                         "optimizer": opt.state_dict(), "scaler": scaler.state_dict() if precision.needs_scaler else {},
                         "epoch": epoch, "best_epoch": best_epoch, "best_score": best_score, "bad_epochs": bad_epochs,
                         "stopped_early": stopped, "history": history, "best_model": best_state,
                         "wall_time_s": wall, "rng": capture_rng_state()}, last)
            atomic_write_json(history, out / "history.json")
            bar.update(1)
            bar.set_postfix({"loss": f"{train_loss:.4g}", "val": f"{score:.4g}", "best": f"{best_score:.4g}"})
            if on_epoch is not None:
                on_epoch(record)
    model.load_state_dict(best_state)
    model.eval()
    if not already_final:
        atomic_save(best_state, best_path)
        # best.pt is written (atomically) before last.pt forgets the weights: a crash in between leaves a
        # complete run either way.
        atomic_save({"format": CHECKPOINT_FORMAT, "config": config, "finished": True, "epoch": epoch,
                     "best_epoch": best_epoch, "best_score": best_score, "bad_epochs": bad_epochs,
                     "stopped_early": stopped, "history": history, "wall_time_s": wall}, last)
    return FitResult(out, best_epoch, best_score, epoch, stopped, history, wall, precision.name,
                     reused=epoch == start_epoch)


def _train_epoch(model: nn.Module, task: Task, train_set: Dataset, opt: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler, precision: Precision, dev: torch.device, seed: int, epoch: int,
                 batch_size: int, cfg: FinetuneConfig, progress: bool, last: Path) -> float:
    """One pass over the epoch's batches; returns the mean training loss."""
    from tqdm.auto import tqdm

    if hasattr(train_set, "set_epoch"):
        train_set.set_epoch(epoch)
    batches = epoch_batches(len(train_set), batch_size, seed, epoch, cfg.max_steps_per_epoch)
    # Loader workers get their base seed from this generator, never from the global RNG.
    gen = torch.Generator().manual_seed(derive_seed(seed, "finetune_loader", epoch))
    loader = DataLoader(train_set, batch_sampler=batches, num_workers=cfg.num_workers, worker_init_fn=seed_worker,
                        generator=gen, pin_memory=dev.type == "cuda")
    model.train()
    total = torch.zeros((), device=dev)
    bar_kw = {} if progress else {"disable": True}
    with tqdm(total=len(batches), leave=False, desc=f"epoch {epoch + 1}", dynamic_ncols=True, **bar_kw) as bar:
        for step, batch in enumerate(loader):
            batch = to_device(batch, dev)
            with precision.autocast():
                loss = task.training_loss(model, batch)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise NonFiniteLossError(step + 1, epoch, value, {}, last if last.is_file() else None)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            total += loss.detach().float()
            bar.update(1)
    return float(total) / len(batches)
