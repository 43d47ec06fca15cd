"""Models Genesis local pixel shuffling, batched (PCRL_SPEC §7; Zhou et al., Models Genesis, 2019).

The released per-cube loop draws ``n_blocks`` = 10,000 small boxes (each side uniform in
``1..max(1, ⌊n·0.1⌋)``, anywhere inside the cube), shuffles the voxels of each box read from the
*original* cube, and writes them into the output in order, so a later box overwrites an earlier one
where they overlap. Here the same result comes from index arithmetic on the whole batch:

1. ``draw`` gives every block a uniformly random permutation with a Fisher–Yates pass that is
   vectorised over all blocks of all samples (the only Python loop runs over the position inside a
   block, at most ``6·6·3 = 108`` steps for a 64×64×32 cube, never over blocks or samples);
2. ``apply`` turns (block, local index) into flat voxel indices with a small lookup table, resolves
   overlaps with one ``scatter_reduce(amax)`` of (block number, source voxel) packed into an int64
   (the last block writing a voxel wins, as in the loop) and reads every output voxel with one
   gather.

The result equals the released loop exactly for the same draws (``tests/transforms``); its cost is
linear in the ~2·10⁵ block voxels per cube, whose random draws and index passes dominate on a CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .base import (Params, RandomTransform, active_index, check_batch, check_generator, check_params,
                   check_positive_int, check_probability, check_shape, rand, randint)


@dataclass(frozen=True)
class ShuffleParams(Params):
    """Drawn blocks of :class:`LocalPixelShuffle`.

    Fields:
        batch_size: B.
        index: ``(A,)`` long — the samples that are shuffled (the others are returned unchanged).
        corners: ``(A, N, sd)`` long — first voxel of each of the ``N`` blocks per shuffled sample.
        sizes: ``(A, N, sd)`` long — block extent per spatial axis.
        perm: ``(M,)`` int32, ``M = sizes.prod(-1).sum()`` — the blocks' permutations concatenated in
            block order (sample-major, then block number): for a block of ``n`` voxels listed in raster
            order (last axis fastest), entry ``m`` is the local index of the voxel whose value lands on
            local position ``m``.
    """

    batch_size: int
    index: torch.Tensor
    corners: torch.Tensor
    sizes: torch.Tensor
    perm: torch.Tensor


def _segment_ids(lengths: torch.Tensor, total: int, dtype: torch.dtype = torch.int32) -> torch.Tensor:
    """``(total,)`` ``dtype``: element e belongs to segment s when segments of ``lengths`` are laid end to end.

    A cumulative sum of start markers; ``repeat_interleave`` does the same, far slower on CPU.
    Segments must be non-empty.
    """
    marker = torch.zeros(total, dtype=dtype, device=lengths.device)
    starts = torch.cumsum(lengths, 0)[:-1]
    marker.scatter_(0, starts, 1)
    return torch.cumsum(marker, 0, dtype=dtype)


def block_permutations(volumes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Independent uniform random permutations of ``range(v)`` for every ``v`` in ``volumes`` (Nb,).

    Returns ``(sum(volumes),)`` int32, the permutations concatenated in the order of ``volumes``.
    Fisher–Yates on all blocks at once: blocks are sorted by size (largest first) and stored row by
    row, row ``j`` holding element ``j`` of every block longer than ``j``; step ``j`` swaps that row
    (a contiguous slice) with a uniformly chosen row ``r <= j`` of the same blocks.
    """
    device = volumes.device
    Nb = volumes.numel()
    total = int(volumes.sum())
    if Nb == 0:
        return torch.zeros(0, dtype=torch.int32, device=device)
    volumes = volumes.long()
    vol_sorted, order = torch.sort(volumes, descending=True, stable=True)
    P = int(vol_sorted[0])
    ge = torch.bincount(vol_sorted, minlength=P + 1).flip(0).cumsum(0).flip(0)   # ge[v] = #blocks with vol >= v
    row_len = ge[1:P + 1]                                                      # row j: blocks with vol > j
    row_off = torch.cumsum(row_len, 0) - row_len
    row_of = _segment_ids(row_len, total, torch.long)                           # row (= local index) of each element
    values = row_of.clone()                                                     # identity permutations
    # Every element's Fisher–Yates partner, drawn at once: element (row j, column col) swaps with
    # (row r, column col), r uniform in 0..j; only the swaps themselves run row by row.
    col = torch.arange(total, device=device) - row_off.index_select(0, row_of)
    row_scale = torch.arange(1, P + 1, dtype=torch.float32, device=device)        # j + 1 for row j
    r = (rand((total,), generator) * row_scale.index_select(0, row_of)).long()
    r = torch.minimum(r, row_of)                                                 # guards float rounding
    partner = row_off.index_select(0, r) + col
    lengths, offsets = row_len.tolist(), row_off.tolist()
    for j in range(P - 1, 0, -1):
        c, o = lengths[j], offsets[j]
        mine = values[o:o + c].clone()
        values[o:o + c] = values.index_select(0, partner[o:o + c])
        values.scatter_(0, partner[o:o + c], mine)
    # Back to block-major order: element (row j, column col) is entry j of block order[col].
    block_off = torch.cumsum(volumes, 0) - volumes
    target = block_off.index_select(0, order).index_select(0, col) + row_of
    return torch.empty_like(values).scatter_(0, target, values).to(torch.int32)


def _offset_table(max_sizes: list[int], strides: list[int], device) -> torch.Tensor:
    """``(S, P)`` long: flat voxel offset of local raster index m inside a block of shape id s.

    Shape id of sizes (s_0, ..., s_k) is ``Σ (s_d - 1) · Π_{d' > d} max_sizes[d']``; P = Π max_sizes.
    Entries with m beyond the block's volume are never read.
    """
    sd = len(max_sizes)
    grids = torch.meshgrid(*[torch.arange(1, m + 1, device=device) for m in max_sizes], indexing="ij")
    sizes = torch.stack([g.reshape(-1) for g in grids], 1)                    # (S, sd), shape-id order
    m = torch.arange(math.prod(max_sizes), device=device).view(1, -1)
    offset = torch.zeros(sizes.shape[0], m.shape[1], dtype=torch.long, device=device)
    inner = torch.ones(sizes.shape[0], 1, dtype=torch.long, device=device)
    for d in range(sd - 1, -1, -1):
        coord = (m // inner) % sizes[:, d:d + 1]
        offset += coord * strides[d]
        inner = inner * sizes[:, d:d + 1]
    return offset


class LocalPixelShuffle(RandomTransform):
    """Shuffle the voxels inside many small random blocks (Models Genesis), with probability ``p``.

    Args:
        spatial_dims: 2 or 3.
        p: probability that a sample is shuffled at all (released: 0.5).
        n_blocks: blocks per sample (released: 10,000 for a 64×64×32 cube).
        max_block_frac: largest block side as a fraction of each side (released: 1/10);
            sides are drawn in ``1..max(1, ⌊n · max_block_frac⌋)`` (the ``max(1, ·)`` keeps tiny
            teaching cubes legal where the released code would fail).
    """

    def __init__(self, spatial_dims: int, p: float = 0.5, n_blocks: int = 10_000, max_block_frac: float = 0.1):
        super().__init__(spatial_dims)
        self.p = check_probability(p, "p")
        self.n_blocks = check_positive_int(n_blocks, "n_blocks")
        if not isinstance(max_block_frac, (int, float)) or not 0.0 < max_block_frac <= 1.0:
            raise ValueError(f"max_block_frac must be in (0, 1], got {max_block_frac!r}")
        self.max_block_frac = float(max_block_frac)

    def max_sizes(self, spatial) -> list[int]:
        """Largest block side per spatial axis for a cube of ``spatial`` sizes."""
        return [max(1, int(n * self.max_block_frac + 1e-9)) for n in spatial]

    def draw(self, shape, generator) -> ShuffleParams:
        B, _, *spatial = check_shape(shape, self.spatial_dims)
        check_generator(generator)
        index = active_index(B, self.p, generator)
        A, N, dev = index.numel(), self.n_blocks, generator.device
        one = torch.ones((A, N, self.spatial_dims), dtype=torch.long, device=dev)
        high = torch.tensor(self.max_sizes(spatial), dtype=torch.long, device=dev)
        sizes = randint(one, one * high, generator)
        corners = randint(torch.zeros_like(sizes), torch.tensor(spatial, device=dev) - sizes, generator)
        perm = block_permutations(sizes.prod(-1).flatten(), generator)
        return ShuffleParams(batch_size=B, index=index, corners=corners, sizes=sizes, perm=perm)

    def apply(self, x, params: ShuffleParams) -> torch.Tensor:
        check_batch(x, self.spatial_dims)
        check_params(params, ShuffleParams, x.shape[0])
        B, C, *spatial = x.shape
        out = x.clone()
        A = params.index.numel()
        if A == 0:
            return out
        params = params.to(x.device)
        max_sizes = self.max_sizes(spatial)
        if bool((params.sizes > torch.tensor(max_sizes, device=x.device)).any()) or \
                bool((params.corners + params.sizes > torch.tensor(spatial, device=x.device)).any()):
            raise ValueError(f"params were drawn for a larger volume than x's spatial size {tuple(spatial)}")
        V = math.prod(spatial)
        strides = [math.prod(spatial[d + 1:]) for d in range(self.spatial_dims)]
        table = _offset_table(max_sizes, strides, x.device).reshape(-1)                     # (S·P,) long
        P = math.prod(max_sizes)

        sizes = params.sizes.reshape(-1, self.spatial_dims)                        # (Nb, sd)
        volumes = sizes.prod(-1)
        total = params.perm.numel()
        if total != int(volumes.sum()):
            raise ValueError(f"params.perm has {total} entries, but the blocks hold {int(volumes.sum())} voxels")
        # Per block (Nb,): first row of its shape in `table`, its first voxel in the (A·V) batch, and
        # the same voxel tagged with the block number (see the scatter below).
        shape_id = torch.zeros_like(volumes)
        for d in range(self.spatial_dims):
            shape_id = shape_id * max_sizes[d] + (sizes[:, d] - 1)
        number = torch.arange(volumes.numel(), device=x.device)
        span = A * V
        base = (number // params.sizes.shape[1]) * V + (params.corners.reshape(-1, self.spatial_dims)
                                                        * torch.tensor(strides, device=x.device)).sum(-1)
        tagged = number * span + base
        row = (shape_id * P).to(torch.int32)
        start = (torch.cumsum(volumes, 0) - volumes).to(torch.int32)
        # Per entry (M,): index arithmetic in int32, voxel addresses in int64 (no mixed-dtype ops).
        block = _segment_ids(volumes, total)
        element = torch.arange(total, dtype=torch.int32, device=x.device)
        dest_key = (row - start).index_select(0, block) + element                  # table row + local index
        src_key = row.index_select(0, block) + params.perm.to(torch.int32)
        dest = base.index_select(0, block) + table.index_select(0, dest_key)
        # The loop writes blocks in order, so the last block covering a voxel wins. Packing
        # (block number, source voxel) into one int64 lets a single scatter-amax find the winner
        # and where its value comes from.
        packed = torch.full((span,), -1, dtype=torch.long, device=x.device)
        packed.scatter_reduce_(0, dest, tagged.index_select(0, block) + table.index_select(0, src_key), reduce="amax")
        identity = torch.arange(span, device=x.device)
        source = torch.where(packed >= 0, packed % span, identity)                 # (A·V,) voxel read per voxel

        xs = x.index_select(0, params.index).transpose(0, 1).reshape(C, span)
        ys = xs.index_select(1, source)
        out.index_copy_(0, params.index, ys.view(C, A, *spatial).transpose(0, 1))
        return out
