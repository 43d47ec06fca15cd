"""Self-supervised pretraining loop: SGD + cosine decay, mixed precision, exact resume, DDP, encoder export.

The loop is short and flat (nanoGPT style). One step (PCRL_SPEC §5, §8)::

    raw    = next(loader)                       # a batch of raw items, moved to the device
    sample = views(raw, gen_views)              # on-device augmentation with the trainer's generator
    out    = method(sample, gen_method)         # StepOutput(loss, parts) under autocast
    SGD step (through a GradScaler for fp16), then method.momentum_update()

Legend: ``method`` — an ``nn.Module`` holding E_o, E_m, the decoder, heads and the queue (all parameters or
buffers, so one ``state_dict`` captures them); ``views`` — ``callable(raw_batch, generator) -> sample``;
``gen_views`` / ``gen_method`` — the trainer's own ``torch.Generator``s on the training device;
epoch ``e`` — 0-based; ``step`` — optimizer steps done so far, over all epochs.

What is written under ``output_dir``::

    checkpoints/last.pt        latest state (every epoch, and every ``checkpoint_every_steps`` steps)
    checkpoints/last.json      {"step", "epoch", "batch_in_epoch"} of last.pt, for humans and monitors
    checkpoints/epoch_NNN.pt   every ``cfg.checkpoint_every`` epochs and at the end (NNN = epochs completed);
                               none when it is 0 (the CPU profiles: a 2D PCRL state is ~155 MB)
    checkpoints/config.json    the run's configuration
    history.json               one record per logged step: epoch, step, lr, loss, parts, samples_per_s
    encoder.pt, encoder.json   ``method.export()`` and its sidecar; ``encoder.json`` with
                               ``"finished": true`` marks a finished run that :func:`pretrain` reuses
    .pcrl-run.json, .pcrl-lock the kit's marker and the lock a live run holds (:func:`pretrain`; see
                               :mod:`pcrl_lib.runs`)

Exact resume: a checkpoint holds the method, optimizer, scheduler and scaler states, the step/epoch/batch
position and every RNG (torch CPU/CUDA, NumPy, Python, the trainer's generators, per rank). The data
order is a pure function of (seed, epoch) (:class:`EpochBatchSampler`), so resuming skips the batches
already consumed and a run killed at any moment continues to bit-identical weights on CPU. Every stream
is seeded from the run's ``seed`` through :func:`pcrl_lib.training.derive_seed` (the CLI also seeds the
model's initialisation). With ``num_workers > 0`` each worker is seeded with :func:`pcrl_lib.env.seed_worker`
from a base seed drawn from a per-epoch generator; datasets whose ``__getitem__`` is deterministic (the kit's
caches are) keep exact resume, random augmentation belongs in ``views``.

The command line and the assembly of a run from a config live in :mod:`pcrl_lib.pretrain_cli` and
:mod:`pcrl_lib.pretrain_setup`; ``python -m pcrl_lib.train`` runs that command line.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from .checkpoint import atomic_save, capture_rng_state, load_checkpoint, remove_stale_temporaries, restore_rng_state
from .config import PretrainConfig
from .env import pick_device, seed_worker
from .fileio import atomic_write_json
from .precision import make_precision
from .runs import config_differences, run_folder
from .training import NonFiniteLossError, derive_seed, epoch_permutation, to_device

CHECKPOINT_FORMAT = 1
# PretrainConfig keys that cannot change the trained weights or the history: a finished run is reused
# even when they differ (e.g. a notebook re-run with more data-loading workers; memory_format changes the layout
# of the same arithmetic, rounding-level differences only).
_NON_RESULT_KEYS = tuple(f"pretrain.{k}" for k in ("num_workers", "checkpoint_every", "memory_format"))


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped training; ``checkpoint_step`` is where the same command resumes (0: from scratch)."""

    def __init__(self, step: int, checkpoint_step: int):
        self.step, self.checkpoint_step = step, checkpoint_step
        super().__init__(f"interrupted at step {step} (last checkpoint: step {checkpoint_step}); "
                         "resume with the same command")


# ---------------------------------------------------------------------------------------- data order
class EpochBatchSampler(Sampler[list]):
    """Batches of indices for one epoch: a permutation seeded by (seed, epoch), sharded over ranks.

    ``steps`` batches of ``batch_size`` per rank; rank ``r`` takes every ``world_size``-th index of the
    permutation (the DistributedSampler layout), incomplete batches are dropped (BatchNorm and the queue
    want full batches). ``start_batch`` skips batches already consumed, for mid-epoch resume.
    """

    def __init__(self, num_items: int, batch_size: int, seed: int, epoch: int, *, start_batch: int = 0,
                 max_steps: int = 0, rank: int = 0, world_size: int = 1, shuffle: bool = True):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.num_items, self.batch_size, self.seed, self.epoch = num_items, batch_size, seed, epoch
        self.rank, self.world_size, self.shuffle = rank, world_size, shuffle
        self.steps = steps_per_epoch(num_items, batch_size, world_size, max_steps)
        if not 0 <= start_batch <= self.steps:
            raise ValueError(f"start_batch={start_batch} outside 0..{self.steps}")
        self.start_batch = start_batch

    def indices(self) -> torch.Tensor:
        """All of this rank's indices for the epoch, (steps, batch_size)."""
        if self.shuffle:
            order = epoch_permutation(self.num_items, self.seed, "data_order", self.epoch)
        else:
            order = torch.arange(self.num_items)
        mine = order[self.rank::self.world_size][: self.steps * self.batch_size]
        return mine.view(self.steps, self.batch_size)

    def __iter__(self) -> Iterator[list]:
        yield from self.indices()[self.start_batch:].tolist()

    def __len__(self) -> int:
        return self.steps - self.start_batch


def steps_per_epoch(num_items: int, batch_size: int, world_size: int = 1, max_steps: int = 0) -> int:
    """Full batches per rank in one epoch, capped by ``max_steps`` when it is > 0."""
    steps = num_items // (batch_size * world_size)
    return min(steps, max_steps) if max_steps > 0 else steps


class CosineDecay:
    """LR factor for ``LambdaLR`` stepped once per epoch: ``0.5 (1 + cos(π e / E))`` (PCRL_SPEC §8).

    A small class (not a lambda) so the scheduler's ``state_dict`` stays plain data.
    """

    def __init__(self, epochs: int):
        self.epochs = epochs

    def __call__(self, epoch: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(epoch, self.epochs) / self.epochs))


# ----------------------------------------------------------------------------------------- distributed
@dataclass(frozen=True)
class DistContext:
    """Where this process sits in a ``torchrun`` job (rank 0 of 1 without one)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str | torch.device = "auto") -> tuple[DistContext, torch.device]:
    """Join the process group that ``torchrun`` describes in ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``.

    NCCL when the device is CUDA (one GPU per process: ``cuda:LOCAL_RANK``), gloo on CPU. Without
    ``torchrun`` (``WORLD_SIZE`` unset or 1) returns a single-process context and ``pick_device(device)``.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext(), pick_device(device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistContext(rank, world_size, local_rank), dev


# -------------------------------------------------------------------------------------------- trainer
def run_config(cfg: PretrainConfig, *, spatial_dims: int, seed: int, num_items: int, world_size: int = 1,
               dataset: Dataset | None = None) -> dict:
    """The JSON-able description of a run that decides whether a finished run can be reused; with a ``dataset``
    read from a prepared cache also its data recipe (``data``: cache sizes, crop recipe, input files)."""
    from .data.preprocess import data_recipe

    config = {"method": cfg.method, "spatial_dims": spatial_dims, "seed": seed, "num_items": num_items,
              "world_size": world_size, "pretrain": cfg.to_dict()}
    recipe = data_recipe(dataset)
    if recipe is not None:
        config["data"] = recipe
    return json.loads(json.dumps(config))


class Trainer:
    """Pretrains ``method`` on ``dataset`` (see the module doc for the step, files and resume).

    Args:
        method: ``nn.Module`` with ``forward(sample, generator) -> StepOutput(loss, parts)``,
            ``momentum_update()`` and ``export() -> dict``.
        dataset: a map-style ``Dataset`` of raw items; default collation stacks them into a batch.
        views: ``callable(raw_batch_on_device, generator) -> sample``; ``None`` passes the raw batch on.
        cfg: :class:`pcrl_lib.config.PretrainConfig` (epochs, lr, batch sizes, precision, ...).
        output_dir: the run folder.
        spatial_dims: 2 or 3 (picks ``batch_size_2d`` / ``batch_size_3d``).
        seed: seeds data order and the trainer's generators.
        device: ``"auto"`` / ``"cpu"`` / ``"cuda"`` ...; under ``torchrun``, ``cuda:LOCAL_RANK``.
        checkpoint_every_steps: also write ``last.pt`` every this many steps (0 = only at epoch ends).
        on_step: called on every rank after each step with the step record (progress hooks, live plots).
        progress: show a tqdm bar on rank 0 (``TQDM_DISABLE=1`` also hides it).
        find_unused_parameters: passed to ``DistributedDataParallel`` for methods with idle heads.
    """

    def __init__(self, method: nn.Module, dataset: Dataset, views: Callable | None, cfg: PretrainConfig,
                 output_dir: str | os.PathLike, *, spatial_dims: int, seed: int = 0,
                 device: str | torch.device = "auto", checkpoint_every_steps: int = 0,
                 on_step: Callable[[dict], None] | None = None, progress: bool = True,
                 find_unused_parameters: bool = False):
        if not isinstance(method, nn.Module):
            raise TypeError(f"method must be an nn.Module, got {type(method).__name__}")
        for attr in ("momentum_update", "export"):
            if not callable(getattr(method, attr, None)):
                raise TypeError(f"method {type(method).__name__} has no {attr}() (needed by the trainer)")
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
        if not isinstance(cfg, PretrainConfig):
            raise TypeError(f"cfg must be a PretrainConfig, got {type(cfg).__name__}")
        if cfg.epochs < 1:
            raise ValueError(f"cfg.epochs must be >= 1, got {cfg.epochs}")
        if checkpoint_every_steps < 0:
            raise ValueError(f"checkpoint_every_steps must be >= 0, got {checkpoint_every_steps}")
        if views is not None and not callable(views):
            raise TypeError(f"views must be callable(raw_batch, generator) or None, got {type(views).__name__}")

        self.dist, self.device = init_distributed(device)
        self.cfg, self.spatial_dims, self.seed = cfg, spatial_dims, seed
        self.dataset, self.views, self.on_step, self.progress = dataset, views, on_step, progress
        self.output_dir = Path(output_dir)
        self.checkpoint_every_steps = checkpoint_every_steps
        self.batch_size = cfg.batch_size_2d if spatial_dims == 2 else cfg.batch_size_3d
        self.num_items = len(dataset)
        self.steps_per_epoch = steps_per_epoch(self.num_items, self.batch_size, self.dist.world_size,
                                               cfg.max_steps_per_epoch)
        if self.steps_per_epoch < 1:
            raise ValueError(f"dataset has {self.num_items} items, fewer than one batch of {self.batch_size} "
                             f"per rank x {self.dist.world_size} rank(s); lower batch_size_{spatial_dims}d "
                             "or provide more data")
        self.config = run_config(cfg, spatial_dims=spatial_dims, seed=seed, num_items=self.num_items,
                                 world_size=self.dist.world_size, dataset=dataset)

        self.precision = make_precision(self.device, cfg.precision, cfg.memory_format, spatial_dims)
        self.method = self.precision.prepare(method.to(self.device), spatial_dims)  # before DDP sees the weights
        if cfg.ema_horizon_fraction > 0 and hasattr(self.method, "m"):
            from .pcrl import ema_momentum

            # The EMA horizon as a fraction of this run's steps (PretrainConfig.ema_horizon_fraction); 0 keeps cfg.m.
            self.method.m = ema_momentum(cfg.m, cfg.ema_horizon_fraction, cfg.epochs * self.steps_per_epoch)
        self.model: nn.Module = self.method
        if self.dist.enabled:
            self.model = nn.parallel.DistributedDataParallel(
                self.method, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=find_unused_parameters)
        self.scaler = self.precision.grad_scaler()
        params = [p for p in self.method.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, CosineDecay(cfg.epochs))
        # Separate streams so a change in how many numbers the views draw leaves the method's draws alone.
        self.generators = {
            "views": torch.Generator(device=self.device).manual_seed(derive_seed(seed, "views", self.dist.rank)),
            "method": torch.Generator(device=self.device).manual_seed(derive_seed(seed, "method", self.dist.rank)),
        }
        self.epoch = 0
        self.batch_in_epoch = 0
        self.step = 0
        self.checkpoint_step = 0  # the step of the newest checkpoint on disk (where a rerun resumes)
        self.history: list[dict] = []

    # -- paths
    @property
    def checkpoint_dir(self) -> Path:
        return self.output_dir / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoint_dir / "last.pt"

    @property
    def finished(self) -> bool:
        return self.epoch >= self.cfg.epochs

    # -- checkpoints
    def state_dict(self, rng: list[dict]) -> dict:
        """The checkpoint dict (plain data + tensors). ``rng``: one :func:`capture_rng_state` per rank."""
        return {
            "format": CHECKPOINT_FORMAT,
            "method": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "precision": self.precision.name,
            "device_type": self.device.type,
            "config": self.config,
            "rng": rng,
            "history": self.history,
        }

    def _gather_rng(self) -> list[dict]:
        state = capture_rng_state(self.generators)
        if not self.dist.enabled:
            return [state]
        gathered: list = [None] * self.dist.world_size
        dist.all_gather_object(gathered, state)
        return gathered

    def save_checkpoint(self, epoch_copy: bool = False) -> Path:
        """Write ``last.pt`` (+ ``epoch_NNN.pt``) on rank 0; every rank must call it (RNG states are gathered)."""
        rng = self._gather_rng()
        if self.dist.is_main:
            state = self.state_dict(rng)
            atomic_save(state, self.last_checkpoint)
            self.checkpoint_step = self.step
            atomic_write_json({"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch},
                              self.checkpoint_dir / "last.json")
            if epoch_copy:
                atomic_save(state, self.checkpoint_dir / f"epoch_{self.epoch:03d}.pt")
        return self.last_checkpoint

    def load_checkpoint(self, path: str | os.PathLike | None = None) -> None:
        """Restore everything :meth:`state_dict` saved; refuses a checkpoint of a different run config."""
        path = Path(path) if path is not None else self.last_checkpoint
        state = load_checkpoint(path)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"checkpoint {path} has format {state.get('format')!r}, this kit writes "
                             f"{CHECKPOINT_FORMAT}; retrain with force=True")
        diff = config_differences(state["config"], self.config, ignore=_NON_RESULT_KEYS)
        if diff:
            raise ValueError(f"checkpoint {path} was written by a run with another configuration "
                             f"({'; '.join(diff)}); pass force=True to retrain or use another output_dir")
        self.method.load_state_dict(state["method"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        self.checkpoint_step = self.step
        self.history = list(state["history"])
        if state["device_type"] == self.device.type:
            restore_rng_state(state["rng"][self.dist.rank], self.generators)
        else:
            # CPU and CUDA generators have different state formats: keep this run's freshly seeded ones.
            restore_rng_state(state["rng"][self.dist.rank])
            warnings.warn(f"checkpoint {path} was written on {state['device_type']}, resuming on "
                          f"{self.device.type}: weights, optimizer and data order continue exactly, the random "
                          "augmentation/mixing streams restart from the seed", stacklevel=2)

    # -- export
    def export_encoder(self, path: str | os.PathLike | None = None) -> Path:
        """Write ``method.export()`` to ``path`` (default ``output_dir/encoder.pt``) + a ``.json`` sidecar."""
        path = Path(path) if path is not None else self.output_dir / "encoder.pt"
        if not self.dist.is_main:
            return path
        exported = self.method.export()
        if not isinstance(exported, dict):
            raise TypeError(f"{type(self.method).__name__}.export() returned {type(exported).__name__}, expected a dict")
        atomic_save(exported, path)
        last = self.history[-1] if self.history else None
        atomic_write_json({
            "method": self.cfg.method, "spatial_dims": self.spatial_dims, "config": self.config,
            "steps": self.step, "epochs_completed": self.epoch, "precision": self.precision.name,
            "memory_format": self.precision.memory_format,
            "final_loss": last["loss"] if last else None, "final_parts": last["parts"] if last else {},
            "finished": self.finished, "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }, path.with_suffix(".json"))
        return path

    def _write_history(self) -> None:
        if self.dist.is_main:
            atomic_write_json(self.history, self.output_dir / "history.json")

    # -- the loop
    def _loader(self) -> DataLoader:
        sampler = EpochBatchSampler(self.num_items, self.batch_size, self.seed, self.epoch,
                                    start_batch=self.batch_in_epoch, max_steps=self.cfg.max_steps_per_epoch,
                                    rank=self.dist.rank, world_size=self.dist.world_size)
        # The loader draws its workers' base seed from this generator, never from the global RNG.
        gen = torch.Generator().manual_seed(derive_seed(self.seed, "loader", self.epoch, self.dist.rank))
        return DataLoader(self.dataset, batch_sampler=sampler, num_workers=self.cfg.num_workers,
                          worker_init_fn=seed_worker, generator=gen, pin_memory=self.device.type == "cuda")

    def _forward(self, raw: Any):
        raw = to_device(raw, self.device)
        sample = self.views(raw, self.generators["views"]) if self.views is not None else raw
        with self.precision.autocast():
            out = self.model(sample, self.generators["method"])
        if not (hasattr(out, "loss") and hasattr(out, "parts")):
            raise TypeError(f"{type(self.method).__name__}.forward must return StepOutput(loss, parts), "
                            f"got {type(out).__name__}")
        return out

    def _scalars(self, out) -> tuple[float, dict[str, float]]:
        names = list(out.parts)
        values = torch.stack([out.loss.detach().float().reshape(())]
                             + [out.parts[n].detach().float().reshape(()) for n in names])
        if self.dist.enabled:
            # Every rank must see the same numbers: the NaN check then stops all ranks together.
            dist.all_reduce(values)
            values = values / self.dist.world_size
        loss, *parts = values.tolist()
        return loss, dict(zip(names, parts))

    def _train_step(self, raw: Any) -> tuple[float, dict[str, float]]:
        out = self._forward(raw)
        loss, parts = self._scalars(out)
        if not (math.isfinite(loss) and all(math.isfinite(v) for v in parts.values())):
            self._write_history()
            kept = self.last_checkpoint if self.last_checkpoint.is_file() else None
            raise NonFiniteLossError(self.step + 1, self.epoch, loss, parts, kept)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(out.loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.method.momentum_update()
        return loss, parts

    def _progress_bar(self):
        from tqdm.auto import tqdm

        kwargs = {} if (self.progress and self.dist.is_main) else {"disable": True}
        # `disable` is passed only to switch the bar off, so TQDM_DISABLE=1 in the environment still applies.
        return tqdm(total=self.steps_per_epoch, initial=self.batch_in_epoch, leave=False, dynamic_ncols=True,
                    desc=f"epoch {self.epoch + 1}/{self.cfg.epochs}", **kwargs)

    def _run_epoch(self) -> None:
        self.method.train()
        samples_per_step = self.batch_size * self.dist.world_size
        log_every = max(1, self.cfg.log_every)
        with self._progress_bar() as bar:
            tick = time.perf_counter()
            for raw in self._loader():
                lr = self.optimizer.param_groups[0]["lr"]
                loss, parts = self._train_step(raw)
                self.step += 1
                self.batch_in_epoch += 1
                now = time.perf_counter()
                record = {"epoch": self.epoch, "step": self.step, "lr": lr, "loss": loss, "parts": parts,
                          "samples_per_s": samples_per_step / max(now - tick, 1e-9)}
                tick = now
                end_of_epoch = self.batch_in_epoch == self.steps_per_epoch
                if self.step % log_every == 0 or end_of_epoch:
                    self.history.append(record)
                bar.update(1)
                bar.set_postfix({"loss": f"{loss:.4g}", **{k: f"{v:.3g}" for k, v in parts.items()}})
                if self.on_step is not None:
                    self.on_step(record)
                if (self.checkpoint_every_steps and self.step % self.checkpoint_every_steps == 0
                        and not end_of_epoch):
                    self.save_checkpoint()

    def fit(self) -> list[dict]:
        """Train from the current position to ``cfg.epochs``; then export the encoder. Returns the history.

        Ctrl-C raises :class:`TrainingInterrupted` (a ``KeyboardInterrupt``) naming the step; a checkpoint being
        written at that moment is abandoned and the previous one stays intact (atomic writes).
        """
        try:
            return self._fit()
        except KeyboardInterrupt:
            raise TrainingInterrupted(self.step, self.checkpoint_step) from None

    def _fit(self) -> list[dict]:
        if self.dist.is_main:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.checkpoint_dir)
            remove_stale_temporaries(self.output_dir)
            atomic_write_json(self.config, self.checkpoint_dir / "config.json")
        while not self.finished:
            self._run_epoch()
            self.scheduler.step()
            self.epoch += 1
            self.batch_in_epoch = 0
            self._write_history()
            every = self.cfg.checkpoint_every
            self.save_checkpoint(epoch_copy=every > 0 and (self.epoch % every == 0 or self.finished))
        self.export_encoder()
        if self.dist.enabled:
            dist.barrier()
        return self.history


# ---------------------------------------------------------------------------------------- entry point
@dataclass
class PretrainResult:
    """What :func:`pretrain` hands back. ``method`` holds the trained weights in both cases."""

    output_dir: Path
    encoder_path: Path
    history: list[dict]
    steps: int
    final_parts: dict[str, float]
    reused: bool
    method: nn.Module = field(repr=False)

    @property
    def final_loss(self) -> float | None:
        return self.history[-1]["loss"] if self.history else None


@contextlib.contextmanager
def _held_run_folder(out: Path, ctx: DistContext, force: bool) -> Iterator[None]:
    """Rank 0 holds the run folder (checks, marker, lock, ``force``'s clearing); the other ranks wait for it."""
    with run_folder(out, "pretrain", force=force) if ctx.is_main else contextlib.nullcontext():
        if ctx.enabled:
            dist.barrier()
        yield


def pretrain(method: nn.Module, dataset: Dataset, views: Callable | None, cfg: PretrainConfig,
             output_dir: str | os.PathLike, *, spatial_dims: int, seed: int = 0, device: str | torch.device = "auto",
             resume: bool = True, force: bool = False, checkpoint_every_steps: int = 0,
             on_step: Callable[[dict], None] | None = None, progress: bool = True) -> PretrainResult:
    """Pretrain ``method``, reusing a finished run or resuming an unfinished one in ``output_dir``.

    * a finished run (``encoder.json`` with ``finished: true``) with the same configuration is returned
      without training; its last weights are loaded into ``method``;
    * ``force=True`` deletes the run files (checkpoints, history, encoder) and trains from scratch;
    * ``output_dir`` must be new, empty or a run folder the kit created (:mod:`pcrl_lib.runs`: a marker file,
      and a lock held while training, so a second run there fails at once naming the first one's PID);
      otherwise :class:`pcrl_lib.runs.RunFolderError` (a ``ValueError``), ``force`` or not;
    * ``resume=True`` continues from ``checkpoints/last.pt`` when present; ``resume=False`` starts over;
    * a finished or unfinished run with a *different* configuration is a ``ValueError`` listing the
      differences (so nothing is overwritten by accident).

    Other arguments are those of :class:`Trainer`.
    """
    out = Path(output_dir)
    trainer = Trainer(method, dataset, views, cfg, out, spatial_dims=spatial_dims, seed=seed, device=device,
                      checkpoint_every_steps=checkpoint_every_steps, on_step=on_step, progress=progress)
    with _held_run_folder(out, trainer.dist, force):
        sidecar = out / "encoder.json"
        if not force and sidecar.is_file() and json.loads(sidecar.read_text()).get("finished"):
            diff = config_differences(json.loads(sidecar.read_text())["config"], trainer.config,
                                      ignore=_NON_RESULT_KEYS)
            if diff:
                raise ValueError(f"{out} holds a finished run with another configuration ({'; '.join(diff)}); "
                                 "pass force=True to retrain there or choose another output_dir")
            trainer.load_checkpoint()
            return PretrainResult(out, out / "encoder.pt", trainer.history, trainer.step,
                                  trainer.history[-1]["parts"] if trainer.history else {}, True, trainer.method)
        if resume and trainer.last_checkpoint.is_file():
            trainer.load_checkpoint()
        history = trainer.fit()
    return PretrainResult(out, out / "encoder.pt", history, trainer.step,
                          history[-1]["parts"] if history else {}, False, trainer.method)


if __name__ == "__main__":  # `python -m pcrl_lib.train`, the documented command: the CLI lives in pretrain_cli
    from pcrl_lib.pretrain_cli import main

    sys.exit(main())
