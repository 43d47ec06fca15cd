import pytest
import torch

from pcrl_lib.transforms.mixup import draw_mix, fold_coefficient, mix


def test_lambda_at_least_half_and_perm_is_a_permutation():
    g = torch.Generator().manual_seed(0)
    lams = []
    for _ in range(300):
        lam, perm = draw_mix(7, g)
        assert isinstance(lam, float) and 0.5 <= lam <= 1.0
        assert perm.dtype == torch.long and sorted(perm.tolist()) == list(range(7))
        lams.append(lam)
    lams = torch.tensor(lams)
    # max(U, 1 - U) is uniform on [0.5, 1]: mean 0.75, both halves populated
    assert abs(lams.mean() - 0.75) < 0.03 and (lams < 0.6).any() and (lams > 0.9).any()


def test_mix_matches_per_sample_formula_and_is_shared_across_tensors():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(5, 1, 4, 4, 2, generator=g)
    k = torch.rand(5, 128, generator=g)
    lam, perm = draw_mix(5, g)
    mx, mk = mix(x, lam, perm), mix(k, lam, perm)
    for b in range(5):
        p = int(perm[b])
        assert torch.allclose(mx[b], lam * x[b] + (1 - lam) * x[p])
        assert torch.allclose(mk[b], lam * k[b] + (1 - lam) * k[p])
    assert torch.equal(mix(x, 1.0, perm), x)


def test_seeded():
    a = draw_mix(16, torch.Generator().manual_seed(3))
    b = draw_mix(16, torch.Generator().manual_seed(3))
    c = draw_mix(16, torch.Generator().manual_seed(4))
    assert a[0] == b[0] and torch.equal(a[1], b[1]) and (a[0] != c[0] or not torch.equal(a[1], c[1]))


def test_bad_arguments():
    x = torch.rand(3, 2)
    with pytest.raises(ValueError, match="lam"):
        mix(x, 1.5, torch.arange(3))
    with pytest.raises(ValueError, match="perm"):
        mix(x, 0.7, torch.arange(4))
    with pytest.raises(ValueError, match="permutation"):
        mix(x, 0.7, torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match="batch_size"):
        draw_mix(0, torch.Generator())
    with pytest.raises(TypeError, match="generator"):
        draw_mix(3, None)


def test_fold_coefficient_and_both_draws_use_it(monkeypatch):
    from pcrl_lib import pcrl
    from pcrl_lib.transforms import mixup

    assert [fold_coefficient(u) for u in (0.0, 0.2, 0.5, 0.9, 1)] == [1.0, 0.8, 0.5, 0.9, 1.0]
    assert type(fold_coefficient(1)) is float
    for bad in (-0.1, 1.5, True, "0.3"):
        with pytest.raises(ValueError, match="u must be a number in"):
            fold_coefficient(bad)
    # The pass-B λ and the hybrid α are folded by this one function.
    monkeypatch.setattr(mixup, "fold_coefficient", lambda u: 0.625)
    monkeypatch.setattr(pcrl, "fold_coefficient", lambda u: 0.375)
    assert draw_mix(3, torch.Generator().manual_seed(0))[0] == 0.625
    assert pcrl.draw_alpha(torch.Generator().manual_seed(0)) == 0.375
