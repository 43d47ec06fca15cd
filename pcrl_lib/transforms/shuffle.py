"""Models Genesis local pixel shuffling, batched (PCRL_SPEC §7; Zhou et al., Models Genesis, 2019).

The released per-cube loop draws ``n_blocks`` = 10,000 small boxes (each side uniform in
``1..max(1, ⌊n·0.1⌋)``, anywhere inside the cube), shuffles the voxels of each box read from the
*original* cube, and writes them into the output in order, so a later box overwrites an earlier one
where they overlap. Here the same result comes from index arithmetic on the whole batch:

1. ``draw`` gives every block a uniformly random permutation: the blocks of one volume form one
   matrix whose rows are sorted by random keys, so the only Python loop runs over the distinct
   block volumes (at most ``6·6·3 = 108`` for a 64×64×32 cube), never over blocks or samples;
2. ``apply`` turns (block, local index) into flat voxel indices with a small lookup table, volume
   by volume on the same matrices, resolves overlaps with ``scatter_reduce(amax)`` of (block
   number within the sample, source voxel) packed into one int32 (the last block writing a voxel
   wins, as in the loop; :func:`winning_sources`) and reads every output voxel with one gather.

The result equals the released loop exactly for the same draws (``tests/transforms``); its cost is
linear in the ~2.5·10⁵ block voxels per cube, whose random keys, row sorts, table lookups and
scatter dominate on a CPU (~4.5 ms a 64×64×32 cube on one thread, draw and apply about half each).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .base import (Params, RandomTransform, active_index, check_batch, check_generator, check_params,
                   check_positive_int, check_probability, check_shape, rand)


@dataclass(frozen=True)
class ShuffleParams(Params):
    """Drawn blocks of :class:`LocalPixelShuffle`.

    Fields:
        batch_size: B.
        index: ``(A,)`` long — the samples that are shuffled (the others are returned unchanged).
        corners: ``(A, N, sd)`` long — first voxel of each of the ``N`` blocks per shuffled sample.
        sizes: ``(A, N, sd)`` long — block extent per spatial axis.
        perm: ``(M,)`` int32, ``M = sizes.prod(-1).sum()`` — the blocks' permutations, concatenated in
            the order of :func:`volume_classes` (blocks by volume, ascending, then by block number,
            sample-major): for a block of ``n`` voxels listed in raster order (last axis fastest),
            entry ``m`` is the local index of the voxel whose value lands on local position ``m``.
    """

    batch_size: int
    index: torch.Tensor
    corners: torch.Tensor
    sizes: torch.Tensor
    perm: torch.Tensor


def volume_classes(volumes: torch.Tensor) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Blocks grouped by volume: ``(order, classes)``.

    ``order`` ``(Nb,)`` long lists the block numbers by volume, ascending (stable: block number
    order within a volume); ``classes`` is ``[(volume, count), ...]`` for the volumes present, in
    that order. :attr:`ShuffleParams.perm` stores the ``(count, volume)`` permutation matrices of
    the classes one after the other.
    """
    volumes = volumes.long()
    counts = torch.bincount(volumes) if volumes.numel() else volumes.new_zeros(1)
    if volumes.device.type == "cpu" and counts.numel() <= 1 << 15:
        # NumPy's stable argsort of int16 is a radix sort: ~5x faster than torch's stable sort here.
        order = torch.from_numpy(np.argsort(volumes.to(torch.int16).numpy(), kind="stable"))
    else:
        order = torch.sort(volumes, stable=True).indices
    present = torch.nonzero(counts).flatten()
    return order, list(zip(present.tolist(), counts.index_select(0, present).tolist()))


def block_permutations(volumes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Independent uniform random permutations of ``range(v)`` for every ``v`` in ``volumes`` (Nb,).

    Returns ``(sum(volumes),)`` int32 in the layout of :func:`volume_classes`: per volume ``v``
    present, a ``(count, v)`` matrix, row r for block ``order[first + r]``. Each row is sorted by
    random keys (a uniform permutation per row). For ``v <= 128`` a key is 24 random bits above the
    7-bit local index in one int32, and sorting the keys' values (no argsort) leaves the permutation
    in the low bits; larger blocks argsort float keys.
    """
    device = volumes.device
    _, classes = volume_classes(volumes) if volumes.numel() else (None, [])
    perm = torch.empty(sum(v * c for v, c in classes), dtype=torch.int32, device=device)
    first = 0
    for v, c in classes:          # each class's matrix built in place in its slice of the output
        rows = perm[first:first + c * v].view(c, v)
        first += c * v
        if v == 1:
            rows.zero_()
        elif v <= 128:
            torch.randint(0, 1 << 24, (c, v), generator=generator, device=device, dtype=torch.int32, out=rows)
            rows.bitwise_left_shift_(7).bitwise_or_(torch.arange(v, dtype=torch.int32, device=device))
            _sort_rows_(rows).bitwise_and_(127)
        else:
            rows.copy_(torch.rand((c, v), generator=generator, device=device).argsort(1))
    return perm


def _sort_rows_(keys: torch.Tensor) -> torch.Tensor:
    """Sort the rows of a contiguous ``(c, v)`` int32 matrix of distinct-per-row keys in place.

    The sorted rows are unique, so any sort gives the same numbers: on CPU, NumPy's in place (SIMD
    sorting networks per row, 10-40x faster than ``torch.sort`` for rows of 8-128) for ``v >= 4``,
    one compare-exchange for ``v == 2``; ``torch.sort`` otherwise (NumPy costs ~25 ns per row).
    """
    v = keys.shape[1]
    if v == 2:
        low = torch.minimum(keys[:, 0], keys[:, 1])
        keys[:, 1] = torch.maximum(keys[:, 0], keys[:, 1])
        keys[:, 0] = low
    elif keys.device.type == "cpu" and v >= 4:
        keys.numpy().sort(axis=1)
    else:
        keys.copy_(torch.sort(keys, dim=1).values)
    return keys


def draw_blocks(count, max_sizes, spatial, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(corners, sizes)``, each ``(*count, sd)`` long: block sides uniform in ``1..max_sizes[d]``,
    then corners uniform in ``0..spatial[d] - side``.

    The numbers of :func:`~.base.randint` (``randint(1, max_sizes)`` then ``randint(0, spatial -
    sizes)``, one float64 draw of ``(*count, sd)`` each) with its integer arithmetic done in float64
    on the exact small integers: 2 conversions instead of ~10 int64 passes (~3x faster).
    """
    dev, sd = generator.device, len(spatial)
    top = torch.tensor(max_sizes, dtype=torch.float64, device=dev)
    n = torch.tensor(spatial, dtype=torch.float64, device=dev)
    sizes = rand((*count, sd), generator, dtype=torch.float64).mul_(top).floor_()
    sizes = torch.minimum(sizes, top - 1, out=sizes).add_(1)           # randint's guard against rounding
    corners = rand((*count, sd), generator, dtype=torch.float64).mul_(n + 1 - sizes).floor_()
    corners = torch.minimum(corners, n - sizes, out=corners)
    return corners.long(), sizes.long()


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


def winning_sources(corners: torch.Tensor, sizes: torch.Tensor, perm: torch.Tensor, spatial, max_sizes: list[int],
                    wide: bool | None = None) -> torch.Tensor:
    """``(A, V)``: for every voxel of every shuffled sample, the voxel of the same sample (flat index,
    raster order) whose value it receives; voxels no block covers read themselves.

    ``corners``, ``sizes`` ``(A, N, sd)`` and ``perm`` as in :class:`ShuffleParams`; ``spatial`` the
    sample's spatial sizes and ``max_sizes`` the largest block sides. Every block entry is scattered
    with ``amax`` of (block number within its sample + 1, source voxel) packed into one integer, so
    the last block writing a voxel wins, as in the released loop. The packing is per sample, so it
    fits int32 (a ~2x cheaper scatter on CPU) while ``(N + 1) · 2^⌈log2 V⌉ < 2^31``
    (10,000 blocks in a 64×64×32 cube: 1.3e9) and ``A · V < 2^31``; else int64 (``wide=True``
    forces it; both give the same sources).
    """
    A, N, sd = corners.shape
    dev = corners.device
    V = math.prod(spatial)
    bits = max(1, (V - 1).bit_length())
    if wide is None:
        wide = (N + 1) << bits >= 1 << 31 or A * V >= 1 << 31
    itype = torch.int64 if wide else torch.int32
    strides = [math.prod(spatial[d + 1:]) for d in range(sd)]
    table = _offset_table(max_sizes, strides, dev).reshape(-1)                      # (S·P,) local offsets
    # Destinations stay int64: the CPU scatter converts int32 indices first (~2x slower).
    table_dest, table_src = table, table.to(itype)
    P = math.prod(max_sizes)
    flat = sizes.reshape(-1, sd)                                                   # (Nb, sd)
    volumes = flat.prod(-1)
    shape_id = torch.zeros_like(volumes)
    for d in range(sd):
        shape_id = shape_id * max_sizes[d] + (flat[:, d] - 1)
    # Per block, in the order of volume_classes: first row of its shape in `table`, its first voxel
    # in the sample (the source tag) and in the (A·V) batch (the destination).
    order, classes = volume_classes(volumes)
    row = (shape_id * P).index_select(0, order).to(itype)
    start = (corners.reshape(-1, sd) * torch.tensor(strides, device=dev)).sum(-1).index_select(0, order)
    dest_base = start + (order // N) * V
    tag = ((((order % N) + 1) << bits) + start).to(itype)
    packed = torch.arange(V, dtype=itype, device=dev).repeat(A)                  # tag 0: reads itself
    local = torch.arange(max(v for v, _ in classes), dtype=itype, device=dev)
    first = entry = 0
    for v, c in classes:        # one (c, v) matrix per volume: block quantities broadcast over the row
        rows = row[first:first + c].view(c, 1)
        dest = table_dest.index_select(0, (rows + local[:v]).view(-1)).view(c, v)
        dest.add_(dest_base[first:first + c].view(c, 1))
        src = table_src.index_select(0, (rows + perm[entry:entry + c * v].view(c, v)).view(-1)).view(c, v)
        packed.scatter_reduce_(0, dest.view(-1), src.add_(tag[first:first + c].view(c, 1)).view(-1), reduce="amax")
        first, entry = first + c, entry + c * v
    return packed.bitwise_and_((1 << bits) - 1).view(A, V)


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
        corners, sizes = draw_blocks((index.numel(), self.n_blocks), self.max_sizes(spatial), spatial, generator)
        perm = block_permutations(sizes.prod(-1).flatten(), generator)
        return ShuffleParams(batch_size=B, index=index, corners=corners, sizes=sizes, perm=perm)

    def apply(self, x, params: ShuffleParams) -> torch.Tensor:
        check_batch(x, self.spatial_dims)
        check_params(params, ShuffleParams, x.shape[0])
        B, C, *spatial = x.shape
        A = params.index.numel()
        if A == 0:
            return x.clone()
        params = params.to(x.device)
        sd, dev = self.spatial_dims, x.device
        max_sizes = self.max_sizes(spatial)
        flat_sizes = params.sizes.reshape(-1, sd)                                   # (Nb, sd)
        if flat_sizes.amax(0).gt(torch.tensor(max_sizes, device=dev)).any() or \
                (params.corners.reshape(-1, sd) + flat_sizes).amax(0).gt(torch.tensor(spatial, device=dev)).any():
            raise ValueError(f"params were drawn for a larger volume than x's spatial size {tuple(spatial)}")
        V, N = math.prod(spatial), params.sizes.shape[1]
        volumes = flat_sizes.prod(-1)
        total = params.perm.numel()
        if total != int(volumes.sum()):
            raise ValueError(f"params.perm has {total} entries, but the blocks hold {int(volumes.sum())} voxels")
        source = winning_sources(params.corners, params.sizes, params.perm, spatial, max_sizes)   # (A, V)

        if C == 1 and x.is_contiguous():
            # One gather from x itself: shift each shuffled sample's sources to its place in the batch.
            source = source.add_((params.index * V).to(source.dtype).view(A, 1))
            ys = x.reshape(-1).index_select(0, source.view(-1))
            if A == B:
                return ys.view(x.shape)
            out = x.clone()
            return out.index_copy_(0, params.index, ys.view(A, C, *spatial))
        out = x.clone()
        source = source.add_((torch.arange(A, device=dev) * V).to(source.dtype).view(A, 1))
        xs = x.index_select(0, params.index).transpose(0, 1).reshape(C, A * V)
        ys = xs.index_select(1, source.view(-1))
        out.index_copy_(0, params.index, ys.view(C, A, *spatial).transpose(0, 1))
        return out
