import itertools
import math

import pytest
import torch

from pcrl_lib.transforms import LocalPixelShuffle
from pcrl_lib.transforms.base import randint
from pcrl_lib.transforms.shuffle import (ShuffleParams, block_permutations, draw_blocks, volume_classes,
                                         winning_sources)

from . import oracles


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("shape, n_blocks, p", [((6, 1, 30, 30, 20), 400, 0.6), ((5, 2, 40, 30), 300, 0.6),
                                                ((3, 1, 20, 20, 10), 300, 1.0)])
def test_batched_equals_released_loop(shape, n_blocks, p):
    x = torch.rand(shape, generator=_gen())
    t = LocalPixelShuffle(len(shape) - 2, p=p, n_blocks=n_blocks)
    y, params = t(x, _gen(1), return_params=True)
    assert 0 < params.index.numel() < shape[0] or p == 1.0 and params.index.numel() == shape[0]
    # sides in 1..⌊n/10⌋, all reached
    assert params.sizes.flatten(0, 1).amax(0).tolist() == [n // 10 for n in shape[2:]] and params.sizes.min() == 1
    assert torch.equal(y, oracles.local_shuffle(x, params))
    assert not torch.equal(y, x)


def test_paper_cube_int32_packing_equals_int64_and_the_released_loop():
    """A 64x64x32 cube with 10,000 blocks packs (block, source) into int32 per sample; the int64
    packing (used when that would overflow) gives the same sources, and both the released loop's output."""
    x = torch.rand(2, 1, 64, 64, 32, generator=_gen(10))
    t = LocalPixelShuffle(3, p=1.0)
    params = t.draw(x.shape, _gen(11))
    args = (params.corners, params.sizes, params.perm, (64, 64, 32), t.max_sizes((64, 64, 32)))
    narrow, wide = winning_sources(*args), winning_sources(*args, wide=True)
    assert narrow.dtype == torch.int32 and wide.dtype == torch.int64
    assert torch.equal(narrow.long(), wide)
    assert torch.equal(t.apply(x, params), oracles.local_shuffle(x, params))


@pytest.mark.parametrize("count, max_sizes, spatial", [((3, 10_000), [6, 6, 3], [64, 64, 32]),
                                                        ((5, 300), [4, 3], [40, 30]), ((2, 50), [1, 1, 1], [9, 9, 9])])
def test_draw_blocks_gives_the_numbers_of_the_generic_randint(count, max_sizes, spatial):
    """The float64 shortcut draws exactly what two base.randint calls drew before (same stream)."""
    one = torch.ones((*count, len(spatial)), dtype=torch.long)
    gen = _gen(12)
    sizes = randint(one, one * torch.tensor(max_sizes), gen)
    corners = randint(torch.zeros_like(sizes), torch.tensor(spatial) - sizes, gen)
    got_corners, got_sizes = draw_blocks(count, max_sizes, spatial, _gen(12))
    assert got_sizes.dtype == got_corners.dtype == torch.long
    assert torch.equal(got_sizes, sizes) and torch.equal(got_corners, corners)


def test_single_block_keeps_its_multiset_and_nothing_else_moves():
    x = torch.rand(8, 1, 40, 40, 20, generator=_gen(2))
    t = LocalPixelShuffle(3, p=1.0, n_blocks=1)
    y, params = t(x, _gen(3), return_params=True)
    for b in range(8):
        (cx, cy, cz), (sx, sy, sz) = params.corners[b, 0].tolist(), params.sizes[b, 0].tolist()
        inside = torch.zeros(x.shape[2:], dtype=torch.bool)
        inside[cx:cx + sx, cy:cy + sy, cz:cz + sz] = True
        assert torch.equal(y[b, 0][~inside], x[b, 0][~inside])
        assert torch.equal(y[b, 0][inside].sort().values, x[b, 0][inside].sort().values)


def test_every_output_value_comes_from_its_own_sample():
    x = torch.arange(4 * 20 * 20 * 10, dtype=torch.float32).view(4, 1, 20, 20, 10)
    y = LocalPixelShuffle(3, p=1.0, n_blocks=2000)(x, _gen(4))
    for b in range(4):
        assert set(y[b].flatten().tolist()) <= set(x[b].flatten().tolist())
    assert (y != x).float().mean() > 0.2


def test_block_permutations_are_valid_and_uniform():
    volumes = torch.tensor([5, 3] + [3] * 5999 + [1, 130, 2])
    perm = block_permutations(volumes, _gen(5))
    assert perm.shape == (int(volumes.sum()),)
    # layout: by volume, ascending (1, 2, 3 x 6000, 5, 130)
    order, classes = volume_classes(volumes)
    assert classes == [(1, 1), (2, 1), (3, 6000), (5, 1), (130, 1)] and order[:3].tolist() == [6001, 6003, 1]
    offsets = [0] + torch.cumsum(volumes[order], 0).tolist()
    for j in range(len(volumes)):
        assert sorted(perm[offsets[j]:offsets[j + 1]].tolist()) == list(range(int(volumes[order[j]])))
    # all 3! orders of a 3-voxel block, each about 1000 times in 6000 blocks
    counts = {p: 0 for p in itertools.permutations(range(3))}
    for i in range(6000):
        counts[tuple(perm[3 + 3 * i:6 + 3 * i].tolist())] += 1
    assert all(850 < c < 1150 for c in counts.values()), counts


@pytest.mark.parametrize("high", [109, 40_000])
def test_volume_classes_order_is_the_stable_torch_sort(high):
    """The radix (NumPy int16) argsort for small volumes, torch's stable sort above, same order."""
    volumes = torch.randint(1, high, (5000,), generator=_gen(13))
    order, classes = volume_classes(volumes)
    assert torch.equal(order, torch.sort(volumes, stable=True).indices)
    values, counts = torch.unique(volumes, return_counts=True)
    assert classes == list(zip(values.tolist(), counts.tolist()))


def test_block_permutations_equal_the_torch_sort_of_the_same_keys():
    """The faster row sorts (NumPy, one compare-exchange for pairs) give exactly the permutations of
    the key sort they replace: same generator, same numbers."""
    volumes = torch.arange(1, 131).repeat_interleave(7)[torch.randperm(910, generator=_gen(6))]
    reference, gen = [], _gen(7)
    for v, c in volume_classes(volumes)[1]:
        local = torch.arange(v, dtype=torch.int32)
        if v == 1:
            reference.append(torch.zeros(c, dtype=torch.int32))
        elif v <= 128:
            keys = torch.randint(0, 1 << 24, (c, v), generator=gen, dtype=torch.int32)
            reference.append((torch.sort((keys << 7) | local, dim=1).values & 127).view(-1))
        else:
            reference.append(torch.rand((c, v), generator=gen).argsort(1).to(torch.int32).view(-1))
    assert torch.equal(block_permutations(volumes, _gen(7)), torch.cat(reference))


def test_released_block_sizes_for_a_paper_cube():
    t = LocalPixelShuffle(3)
    assert t.max_sizes((64, 64, 32)) == [6, 6, 3]
    params = t.draw((2, 1, 64, 64, 32), _gen(6))
    assert params.corners.shape[1] == 10_000
    assert (params.corners + params.sizes <= torch.tensor([64, 64, 32])).all()
    assert params.perm.numel() == int(params.sizes.prod(-1).sum())
    assert t.max_sizes((16, 16, 8)) == [1, 1, 1]                      # tiny cube: legal, no-op blocks


def test_probability_zero_is_identity_and_seed_controls_output():
    x = torch.rand(3, 1, 20, 20, 10, generator=_gen(7))
    assert torch.equal(LocalPixelShuffle(3, p=0.0)(x, _gen()), x)
    t = LocalPixelShuffle(3, p=1.0, n_blocks=100)
    assert torch.equal(t(x, _gen(8)), t(x, _gen(8)))
    assert not torch.equal(t(x, _gen(8)), t(x, _gen(9)))


def test_bad_arguments_and_mismatched_params():
    with pytest.raises(ValueError, match="p"):
        LocalPixelShuffle(3, p=1.1)
    with pytest.raises(ValueError, match="n_blocks"):
        LocalPixelShuffle(3, n_blocks=0)
    with pytest.raises(ValueError, match="max_block_frac"):
        LocalPixelShuffle(3, max_block_frac=0.0)
    t = LocalPixelShuffle(3, p=1.0, n_blocks=50)
    params = t.draw((2, 1, 40, 40, 20), _gen())
    with pytest.raises(ValueError, match="larger volume"):
        t.apply(torch.rand(2, 1, 20, 20, 10), params)
    broken = ShuffleParams(batch_size=2, index=params.index, corners=params.corners, sizes=params.sizes,
                           perm=params.perm[:-1])
    with pytest.raises(ValueError, match="perm"):
        t.apply(torch.rand(2, 1, 40, 40, 20), broken)
    assert math.prod(params.sizes.shape[:2]) == 100


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_generator_and_apply_match_the_oracle():
    x = torch.rand(4, 1, 30, 30, 20)
    t = LocalPixelShuffle(3, p=1.0, n_blocks=300)
    y, params = t(x.cuda(), torch.Generator(device="cuda").manual_seed(0), return_params=True)
    assert torch.equal(y.cpu(), oracles.local_shuffle(x, params.to("cpu")))
