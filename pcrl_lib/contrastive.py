"""The contrastive part of PCRL (PCRL_SPEC §6): a FIFO queue of keys and two ways to score q against it.

Legend (MoCo / CMC names):

====  ==========================================================================================
q     query embeddings from the ordinary encoder E_o, (N, D), unit rows, with gradient
k     key embeddings from the momentum encoder E_m, (N, D), unit rows, no gradient
K     queue length (16,384 in the paper); the queue holds the K most recent keys, (K, D)
T     temperature τ (0.2)
Z     NCE normaliser: fixed from the first batch as mean(exp(q·k/τ)) · n_data, then a constant
n     n_data: size of the uniform noise distribution, Pn = 1/n (released: batches per epoch; CMC: samples)
====  ==========================================================================================

Scores: logits s = [q·k, q·queue_1, ..., q·queue_K] / T, shape N×(1+K); column 0 is the positive.

- ``"infonce"`` (MoCo): cross-entropy of softmax(s) against column 0.
- ``"nce"`` (CMC/C2L, the released PCRL code): P = exp(s)/Z; each entry is a binary "data vs noise" decision
  with noise mass K·Pn: loss = −(1/N) Σ_i [log P_i0/(P_i0 + K·Pn + ε) + Σ_j log K·Pn/(P_ij + K·Pn + ε)].
  Computed in log space with softplus (no overflow or log 0 for any τ). The released code set n to the number
  of *batches*; here it is the number of samples and must be passed in.

Released numerics vs the kit's exact estimator (``ContrastiveMemory(exact=...)``, ``PretrainConfig.nce_exact``):

=================  ==========================================  ==========================================
                   ``exact=False`` (default, released code)    ``exact=True`` (kit)
=================  ==========================================  ==========================================
ε                  1e-5 (``NCECriterion``'s guard)             0
Z                  truncated to an integer (it is stored in    the float mean(exp(s))·n
                   an int64 buffer, ``MemoryC2L.params``)
=================  ==========================================  ==========================================

``p_pos`` (reported, not optimised): the mean probability the positive is recognised — softmax(s)_0 for
InfoNCE, the NCE posterior P_0/(P_0 + K·Pn + ε) for NCE (the released code logged P_0 itself).
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

ESTIMATORS = ("nce", "infonce")
NCE_EPS = 1e-5  # the released NCECriterion's guard in P/(P + K·Pn + eps)


def distributed() -> bool:
    """True inside an initialised ``torch.distributed`` process group (torchrun)."""
    return dist.is_available() and dist.is_initialized()


@torch.no_grad()
def concat_all_gather(x: torch.Tensor) -> torch.Tensor:
    """(N, ...) on every rank → (world·N, ...) in rank order; ``x`` itself outside a process group.

    Used for enqueueing every rank's keys and for batch-shuffle BN. No gradient flows back.
    """
    if not distributed():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def contrastive_logits(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor) -> torch.Tensor:
    """q, k: (N, D); queue: (K, D) → raw scores (N, 1+K): column 0 = q·k (positive), then q·queue_j."""
    if q.ndim != 2 or q.shape != k.shape:
        raise ValueError(f"q and k must both be (N, D); got q {tuple(q.shape)} and k {tuple(k.shape)}")
    if queue.ndim != 2 or queue.shape[1] != q.shape[1]:
        raise ValueError(f"queue must be (K, {q.shape[1]}), got {tuple(queue.shape)}")
    l_pos = (q * k).sum(dim=1, keepdim=True)            # N×1
    l_neg = q @ queue.t()                               # N×K
    return torch.cat([l_pos, l_neg], dim=1)             # N×(1+K)


def infonce_loss(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """logits: N×(1+K), already divided by T, positive in column 0 → (loss, p_pos), both scalars."""
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    loss = F.cross_entropy(logits, target)
    p_pos = logits.softmax(dim=1)[:, 0].mean()
    return loss, p_pos


def nce_loss(logits: torch.Tensor, log_Z: torch.Tensor | float, n_data: int,
             eps: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """logits: N×(1+K), already divided by T; log_Z: log of the normaliser → (loss, p_pos), both scalars.

    P = exp(logits)/Z; noise mass c = K·Pn = K/n_data; ``eps`` the released guard (0 = the exact estimator).
    With a = log(c + eps): −log P0/(P0 + c + eps) = softplus(a − log P0) and
    −log c/(Pj + c + eps) = (a − log c) + softplus(log Pj − a).
    """
    num_neg = logits.shape[1] - 1
    log_P = logits - log_Z                                          # N×(1+K)
    log_noise = math.log(num_neg / n_data)                          # log(K·Pn)
    log_guard = math.log(num_neg / n_data + eps)                    # log(K·Pn + eps)
    neg_log_d1 = F.softplus(log_guard - log_P[:, 0])                # N: −log posterior "data" of the positive
    neg_log_d0 = F.softplus(log_P[:, 1:] - log_guard) + (log_guard - log_noise)  # N×K: −log "noise"
    loss = (neg_log_d1.sum() + neg_log_d0.sum()) / logits.shape[0]
    return loss, torch.exp(-neg_log_d1).mean()


class KeyQueue(nn.Module):
    """FIFO memory of the K most recent keys: buffers ``queue`` (K, D) and ``ptr`` (next row to overwrite).

    Initialised like the released code (CMC's memory): uniform in [−a, a] with a = 1/sqrt(D/3), so each row
    has expected squared norm D·a²/3 = 1 (unit length on average, not normalised exactly). Being buffers, both
    travel with ``state_dict`` (checkpoints) and ``.to(device)``.
    """

    def __init__(self, K: int, dim: int, generator: torch.Generator | None = None):
        super().__init__()
        if not isinstance(K, int) or K < 1:
            raise ValueError(f"queue length K must be a positive int (paper: 16384), got {K!r}")
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"key dimension must be a positive int (paper: 128), got {dim!r}")
        self.K = K
        bound = 1.0 / math.sqrt(dim / 3)
        self.register_buffer("queue", (torch.rand(K, dim, generator=generator) * 2 - 1) * bound)  # K×D
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write keys (N, D) — every rank's under DDP — over the oldest rows, wrapping around the end."""
        keys = concat_all_gather(keys.detach())
        n = keys.shape[0]
        if n > self.K:
            raise ValueError(f"cannot enqueue {n} keys into a queue of K={self.K}; use K >= the (global) batch size")
        rows = (self.ptr + torch.arange(n, device=self.ptr.device)) % self.K
        self.queue.index_copy_(0, rows, keys.to(self.queue.dtype))
        self.ptr.copy_((self.ptr + n) % self.K)


class ContrastiveMemory(nn.Module):
    """Score q against its key k and the queue, then enqueue k (PCRL_SPEC §6).

    Args:
        dim: D, embedding dimension.
        K: queue length.
        T: temperature τ.
        nce: "nce" (CMC/C2L estimator, the released code) or "infonce" (MoCo).
        n_data: n of the uniform noise distribution (``pcrl.nce_noise_count``); required for "nce".
        generator: draws the queue's initial values (the global RNG when None).
        exact: NCE numerics: False = the released code's (ε = 1e-5, Z truncated to an integer), True = the
            exact estimator (module docstring table). InfoNCE ignores it.

    Buffers: ``queue.queue`` (K, D), ``queue.ptr``, ``Z`` (the NCE normaliser; −1 until the first batch).
    """

    def __init__(self, dim: int, K: int, T: float, nce: str = "nce", n_data: int | None = None,
                 generator: torch.Generator | None = None, exact: bool = False):
        super().__init__()
        if nce not in ESTIMATORS:
            raise ValueError(f"nce={nce!r}; choose 'nce' (released code, CMC/C2L) or 'infonce' (MoCo)")
        if not (isinstance(T, (int, float)) and T > 0):
            raise ValueError(f"temperature T must be a positive number (paper: 0.2), got {T!r}")
        if nce == "nce" and not (isinstance(n_data, numbers.Integral) and n_data > 0):
            raise ValueError(f"n_data={n_data!r}: the NCE estimator needs n, the size of its noise distribution "
                             "set (len(dataset), not the number of batches) as a positive int")
        self.nce, self.exact = nce, bool(exact)
        self.T = float(T)
        self.n_data = int(n_data) if n_data is not None else None
        self.queue = KeyQueue(K, dim, generator)
        self.register_buffer("Z", torch.tensor(-1.0))

    @torch.no_grad()
    def _fix_Z(self, scaled_logits: torch.Tensor) -> None:
        """Set Z = mean(exp(s)) · n_data from the first batch seen (averaged over ranks; truncated to an
        integer unless ``exact``); keep it afterwards."""
        estimate = scaled_logits.exp().mean() * self.n_data
        if distributed():
            dist.all_reduce(estimate)
            estimate /= dist.get_world_size()
        if not self.exact:
            estimate = estimate.trunc()
        # torch.where instead of an `if`: no host synchronisation on every call.
        self.Z.copy_(torch.where(self.Z < 0, estimate, self.Z))

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q, k: (N, D) unit rows → (loss, p_pos) scalars in fp32 (fp64 for fp64 inputs); then k is enqueued."""
        # Scores and losses in fp32 even under autocast: exp(1/τ) and log-sums lose too much in half precision.
        dtype = torch.promote_types(q.dtype, torch.float32)
        with torch.autocast(device_type=q.device.type, enabled=False):
            q32, k32 = q.to(dtype), k.detach().to(dtype)
            # A copy of the queue: autograd keeps it for q's gradient while enqueue overwrites the buffer.
            negatives = self.queue.queue.detach().clone().to(dtype)                       # K×D
            logits = contrastive_logits(q32, k32, negatives) / self.T                     # N×(1+K)
            if self.nce == "infonce":
                loss, p_pos = infonce_loss(logits)
            else:
                self._fix_Z(logits.detach())
                loss, p_pos = nce_loss(logits, self.Z.to(dtype).log(), self.n_data,
                                       0.0 if self.exact else NCE_EPS)
        self.queue.enqueue(k32)
        return loss, p_pos.detach()
