"""A tiny but real stand-in for a PCRL method, and a script that trains it (run by the resume/DDP tests).

``TinyMethod`` implements the trainer's interface the way ``pcrl_lib.pcrl`` methods do: a query encoder
trained by backprop, a momentum copy updated by EMA, a FIFO queue buffer, a shared decoder that
reconstructs from ordinary and hybrid (α-mixed) features, and a contrastive term against the queue; its
randomness comes only from the generator it is given. Shapes: images (B, 1, H, W).

Script usage (what ``tests/test_train.py`` runs in subprocesses)::

    python tests/_train_worker.py OUTPUT_DIR [--epochs 2] [--delay 0.0] [--seed 0]

It trains with a checkpoint every step; ``--delay`` sleeps after each step so a test can kill it mid-run.
Under ``torchrun`` it trains with DDP and writes ``rank_<r>.pt`` (its final weights) for comparison.

    python tests/_train_worker.py cli PAUSE_AT FLAG -- ARGS...

runs ``python -m pcrl_lib.train ARGS...``, but its ``PAUSE_AT``-th ``torch.save`` call (1-based; 0 = never)
first creates the file ``FLAG`` and then waits, inside the checkpoint write (the temporary file exists, the
target is untouched), until a signal ends it: the test's SIGKILL or SIGINT lands at a known point, no timing.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset


@dataclass
class StepOutput:
    loss: torch.Tensor
    parts: dict


class TinyMethod(nn.Module):
    """Conv autoencoder + momentum copy + queue. ``nan_at_call``: return a NaN loss on that forward call."""

    def __init__(self, width: int = 4, K: int = 8, m: float = 0.9, T: float = 0.2, nan_at_call: int = 0):
        super().__init__()
        self.encoder_q = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                                       nn.Conv2d(width, width, 3, padding=1))
        self.encoder_k = copy.deepcopy(self.encoder_q)
        for p in self.encoder_k.parameters():
            p.requires_grad_(False)
        self.decoder = nn.Conv2d(width, 1, 3, padding=1)
        self.m, self.T, self.nan_at_call, self.calls = m, T, nan_at_call, 0
        self.register_buffer("queue", F.normalize(torch.randn(K, width), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def forward(self, sample: dict, generator: torch.Generator) -> StepOutput:
        self.calls += 1
        f_o = self.encoder_q(sample["x1"])                                # (B, C, H, W)
        with torch.no_grad():
            f_m = self.encoder_k(sample["x2"])
        alpha = torch.rand((), generator=generator, device=f_o.device)
        alpha = torch.maximum(alpha, 1 - alpha)
        recon = F.mse_loss(self.decoder(f_o), sample["target"])
        hybrid = F.mse_loss(self.decoder(alpha * f_o + (1 - alpha) * f_m), sample["target"])
        q = F.normalize(f_o.mean(dim=(2, 3)), dim=1)                      # (B, C)
        k = F.normalize(f_m.mean(dim=(2, 3)), dim=1)
        logits = torch.cat([(q * k).sum(1, keepdim=True), q @ self.queue.clone().T], dim=1) / self.T  # (B, 1+K)
        nce = F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))
        self._enqueue(k)
        loss = (recon + hybrid) / 2 + nce
        if self.calls == self.nan_at_call:
            loss = loss * float("nan")
        return StepOutput(loss, {"recon": recon, "hybrid": hybrid, "nce": nce})

    @torch.no_grad()
    def _enqueue(self, k: torch.Tensor) -> None:
        n, K = len(k), len(self.queue)
        idx = (self.queue_ptr + torch.arange(n, device=k.device)) % K
        self.queue[idx] = k.to(self.queue.dtype)  # under autocast k may be bf16/fp16
        self.queue_ptr.copy_((self.queue_ptr + n) % K)

    @torch.no_grad()
    def momentum_update(self) -> None:
        for p_k, p_q in zip(self.encoder_k.parameters(), self.encoder_q.parameters()):
            p_k.mul_(self.m).add_(p_q.detach(), alpha=1 - self.m)

    def export(self) -> dict:
        return {"encoder": self.encoder_q.state_dict(), "spatial_dims": 2}


class TinyImages(Dataset):
    """``n`` fixed random images (1, size, size) from a seeded generator (deterministic ``__getitem__``)."""

    def __init__(self, n: int = 16, size: int = 8, seed: int = 0):
        self.images = torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def tiny_views(raw: torch.Tensor, generator: torch.Generator) -> dict:
    """Two noisy views of a (B, 1, H, W) batch and the clean target, drawn from ``generator``."""
    noise = torch.randn((2, *raw.shape), generator=generator, device=raw.device)
    return {"x1": raw + 0.1 * noise[0], "x2": raw.flip(-1) + 0.1 * noise[1], "target": raw}


def tiny_config(**overrides):
    from pcrl_lib.config import PretrainConfig

    base = dict(epochs=2, batch_size_2d=4, lr=0.05, precision="fp32", max_steps_per_epoch=0,
                checkpoint_every=1, num_workers=0, log_every=1)
    base.update(overrides)
    return PretrainConfig(**base)


def cli_with_pause(pause_at: int, flag: str, argv: list[str]) -> int:
    """``pcrl_lib.pretrain_cli.main(argv)`` with a pause inside the ``pause_at``-th ``torch.save`` (see the module doc)."""
    from pcrl_lib import pretrain_cli

    real_save, calls = torch.save, [0]

    def paused_save(*args, **kwargs):
        calls[0] += 1
        if calls[0] == pause_at:
            open(flag, "w").close()
            while True:  # until SIGKILL, or SIGINT raises KeyboardInterrupt here
                time.sleep(0.05)
        return real_save(*args, **kwargs)

    torch.save = paused_save
    torch.set_num_threads(1)
    return pretrain_cli.main(argv)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["cli"]:
        pause_at, flag, sep, *rest = argv[1:]
        assert sep == "--", "usage: cli PAUSE_AT FLAG -- ARGS..."
        return cli_with_pause(int(pause_at), flag, rest)
    parser = argparse.ArgumentParser()
    parser.add_argument("output_dir")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from pcrl_lib.env import seed_everything
    from pcrl_lib.train import Trainer

    seed_everything(args.seed)
    on_step = (lambda record: time.sleep(args.delay)) if args.delay > 0 else None
    trainer = Trainer(TinyMethod(), TinyImages(), tiny_views, tiny_config(epochs=args.epochs), args.output_dir,
                      spatial_dims=2, seed=args.seed, device="cpu", checkpoint_every_steps=1, on_step=on_step,
                      progress=False)
    if trainer.last_checkpoint.is_file():
        trainer.load_checkpoint()
    trainer.fit()
    if trainer.dist.enabled:
        torch.save(trainer.method.state_dict(), os.path.join(args.output_dir, f"rank_{trainer.dist.rank}.pt"))
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
