import pytest
import torch

from pcrl_lib.transforms import code_size, decode_tca, draw_tca, encode_tca, flip_rotate, tca_apply, tca_invert

from . import oracles


def _all_codes(sd: int) -> torch.Tensor:
    """Every flip pattern × every rotation, one per sample: (2^sd · 4, sd + 4)."""
    flips = torch.tensor([[(i >> d) & 1 for d in range(sd)] for i in range(2 ** sd)], dtype=torch.bool)
    flips = flips.repeat_interleave(4, 0)
    k = torch.arange(4).repeat(2 ** sd)
    return encode_tca(flips, k)


@pytest.mark.parametrize("shape", [(16, 2, 6, 6), (32, 1, 5, 5, 3)])
def test_apply_matches_numpy_flip_rot90_for_every_code(shape):
    sd = len(shape) - 2
    code = _all_codes(sd)
    x = torch.rand(code.shape[0], *shape[1:], generator=torch.Generator().manual_seed(0))
    flips, k = decode_tca(code)
    assert torch.equal(tca_apply(x, code), oracles.tca_numpy(x, flips, k))
    assert torch.equal(tca_invert(x, code), oracles.tca_numpy(x, flips, k, inverse=True))


@pytest.mark.parametrize("shape", [(9, 3, 8, 8), (9, 1, 6, 6, 4)])
def test_invert_undoes_apply_exactly(shape):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(shape, generator=g)
    code = draw_tca(shape[0], len(shape) - 2, g)
    y = tca_apply(x, code)
    assert not torch.equal(y, x)  # some sample was transformed
    assert torch.equal(tca_invert(y, code), x)
    assert torch.equal(tca_apply(tca_invert(x, code), code), x)


def test_code_layout_and_decoding():
    g = torch.Generator().manual_seed(2)
    for sd, width in ((2, 6), (3, 7)):
        code = draw_tca(400, sd, g)
        assert code.shape == (400, width) == (400, code_size(sd)) and code.dtype == torch.float32
        assert torch.equal(code[:, sd:].sum(1), torch.ones(400))
        flips, k = decode_tca(code)
        assert torch.equal(encode_tca(flips, k), code)
        # flips ~ Bernoulli(0.5) per axis, k uniform over 4: loose frequency bounds for 400 draws
        assert ((flips.float().mean(0) - 0.5).abs() < 0.1).all()
        assert (torch.bincount(k, minlength=4) > 60).all()


def test_code_names_the_transform():
    """[flip H, flip W, onehot(k)]: a code with only 'flip W' mirrors the columns."""
    x = torch.arange(6.0).view(1, 1, 2, 3)
    code = torch.tensor([[0.0, 1.0, 1.0, 0.0, 0.0, 0.0]])
    assert torch.equal(tca_apply(x, code), x.flip(3))
    code = torch.tensor([[0.0, 0.0, 0.0, 1.0, 0.0, 0.0]])       # k = 1 on a square image
    sq = torch.arange(4.0).view(1, 1, 2, 2)
    assert torch.equal(tca_apply(sq, code), torch.rot90(sq, 1, dims=(2, 3)))


def test_odd_rotation_needs_square_plane_even_does_not():
    x = torch.rand(1, 1, 4, 6)
    with pytest.raises(ValueError, match="square"):
        tca_apply(x, torch.tensor([[0.0, 0.0, 0.0, 1.0, 0.0, 0.0]]))
    y = tca_apply(x, torch.tensor([[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]]))     # flip H + 180°
    assert torch.equal(y, torch.rot90(x.flip(2), 2, dims=(2, 3)))


def test_bad_codes_and_shapes_raise():
    x = torch.rand(2, 1, 4, 4)
    with pytest.raises(ValueError, match="code"):
        tca_apply(x, torch.zeros(2, 7))                     # 3D code for a 2D batch
    with pytest.raises(ValueError, match="one-hot"):
        tca_apply(x, torch.zeros(2, 6))                     # no rotation bit set
    with pytest.raises(ValueError, match="x must be"):
        tca_apply(torch.rand(4, 4), torch.zeros(1, 6))
    with pytest.raises(ValueError, match="spatial_dims"):
        draw_tca(2, 4, torch.Generator())
    with pytest.raises(ValueError, match="batch_size"):
        draw_tca(0, 2, torch.Generator())
    with pytest.raises(ValueError, match="flips"):
        flip_rotate(x, torch.zeros(2, 3, dtype=torch.bool), torch.zeros(2, dtype=torch.long))


def test_same_seed_same_codes_different_seed_different_codes():
    a = draw_tca(32, 3, torch.Generator().manual_seed(5))
    b = draw_tca(32, 3, torch.Generator().manual_seed(5))
    c = draw_tca(32, 3, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x = torch.rand(8, 1, 6, 6, 4)
    code = draw_tca(8, 3, torch.Generator().manual_seed(0))
    assert torch.equal(tca_apply(x.cuda(), code.cuda()).cpu(), tca_apply(x, code))


def test_flip_rotate_numpy_and_torch_paths_agree():
    # CPU tensors go through NumPy views; tensors that need grad (and CUDA ones) through torch.flip
    x = torch.rand(12, 2, 6, 6, 4, generator=torch.Generator().manual_seed(40))
    flips = torch.rand(12, 3, generator=torch.Generator().manual_seed(41)) < 0.5
    k = torch.arange(12) % 4
    for inverse in (False, True):
        fast = flip_rotate(x, flips, k, inverse=inverse)
        slow = flip_rotate(x.clone().requires_grad_(), flips, k, inverse=inverse)
        assert fast.is_contiguous() and torch.equal(fast, slow.detach())
    assert torch.equal(flip_rotate(flip_rotate(x, flips, k), flips, k, inverse=True), x)
