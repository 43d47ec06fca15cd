"""What the two training loops share: named random streams, the epoch's data order, device moves and the
non-finite loss error. Pretraining (:mod:`pcrl_lib.train`) and fine-tuning (:mod:`pcrl_lib.finetune.loop`) both
draw from here, so a seed means the same thing in both and neither imports the other's helpers.

Run folders, their lock and the reuse check of a finished run (:func:`pcrl_lib.runs.config_differences`) live in
:mod:`pcrl_lib.runs`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

__all__ = ["SEED_STREAMS", "derive_seed", "epoch_permutation", "to_device", "NonFiniteLossError"]


class NonFiniteLossError(FloatingPointError):
    """The loss or one of its parts became NaN/inf; training stopped before the optimizer step."""

    def __init__(self, step: int, epoch: int, loss: float, parts: Mapping[str, float], checkpoint: Path | None):
        self.step, self.epoch, self.loss, self.parts, self.checkpoint = step, epoch, loss, dict(parts), checkpoint
        listed = ", ".join(f"{k}={v:.4g}" for k, v in self.parts.items())
        kept = f"; the last good checkpoint is kept at {checkpoint}" if checkpoint else "; no checkpoint was written yet"
        super().__init__(f"non-finite loss at step {step} (epoch {epoch}): loss={loss:.4g} [{listed}]{kept}. "
                         "Lower the learning rate, use precision='fp32', or inspect the data of this step.")


# Every random stream a run draws from, by name. The ids are part of the seeds: never renumber them.
SEED_STREAMS = {"data_order": 1, "views": 2, "method": 3, "loader": 4, "finetune_order": 5, "finetune_loader": 6}


def derive_seed(seed: int, stream: str, *index: int) -> int:
    """An independent 63-bit seed for ``stream`` (a name in :data:`SEED_STREAMS`) at ``index`` (e.g. the epoch,
    or the rank).

    The stream's id and the number of indices come first in the spawn key, so no two (stream, index) pairs
    share a seed: ``SeedSequence([seed, *salt])`` alone ignores trailing zeros, which made the epoch-1 data
    order of one stream the seed of another.
    """
    if stream not in SEED_STREAMS:
        raise ValueError(f"unknown seed stream {stream!r}; known: {', '.join(SEED_STREAMS)}")
    key = (SEED_STREAMS[stream], len(index), *(int(i) for i in index))
    return int(np.random.SeedSequence(seed, spawn_key=key).generate_state(1, np.uint64)[0] >> 1)


def epoch_permutation(num_items: int, seed: int, stream: str, epoch: int) -> torch.Tensor:
    """The order of the ``num_items`` items in ``epoch``: a permutation drawn from the ``stream`` seed of
    (``seed``, ``epoch``), so it depends on nothing else (resume skips exactly the consumed batches)."""
    gen = torch.Generator().manual_seed(derive_seed(seed, stream, epoch))
    return torch.randperm(num_items, generator=gen)


def to_device(batch: Any, device: torch.device) -> Any:
    """Move a batch (tensor, dict, list/tuple of them, or an object with ``.to``) to ``device``."""
    non_blocking = device.type == "cuda"
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    if hasattr(batch, "to"):
        return batch.to(device)
    return batch
