"""The PCRL objective: losses against loop references and closed forms, queue, EMA, gradients, hybrid, TCA."""

import copy
import math
import socket

import pytest
import torch
import torch.distributed as dist

from pcrl_lib import pcrl as pcrl_module
from pcrl_lib.contrastive import ContrastiveMemory, KeyQueue, contrastive_logits, infonce_loss, nce_loss
from pcrl_lib.pcrl import build_method, hybrid_mix
from pcrl_lib.transforms import PCRLSample


def tca_codes(batch, dims, gen):
    flips = torch.randint(0, 2, (batch, dims), generator=gen).float()
    rot = torch.nn.functional.one_hot(torch.randint(0, 4, (batch,), generator=gen), 4).float()
    return torch.cat([flips, rot], dim=1)


def make_sample(batch=2, size=(16, 16, 8), seed=0):
    gen = torch.Generator().manual_seed(seed)
    dims = len(size)
    channels = 1 if dims == 3 else 3

    def cube():
        return torch.rand(batch, channels, *size, generator=gen)

    return PCRLSample(cube(), cube(), cube(), cube(), tca_codes(batch, dims, gen), tca_codes(batch, dims, gen),
                      cube(), cube())


def small_pcrl(method="pcrl", **kw):
    torch.manual_seed(0)
    return build_method(method, 3, width=4, K=16, n_data=40, **kw)


def unit(n, d, seed):
    return torch.nn.functional.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


# ------------------------------------------------------------------------------------------------ losses
def loop_infonce(q, k, queue, T):
    total = 0.0
    for i in range(q.shape[0]):
        logits = [float(q[i] @ k[i]) / T] + [float(q[i] @ queue[j]) / T for j in range(queue.shape[0])]
        total += -logits[0] + math.log(sum(math.exp(v) for v in logits))
    return total / q.shape[0]


def loop_nce(q, k, queue, T, Z, n_data, eps=0.0):
    """The released NCECriterion, entry by entry: log P/(P + K·Pn + eps) and log K·Pn/(P + K·Pn + eps)."""
    num_neg, noise = queue.shape[0], queue.shape[0] / n_data
    total = 0.0
    for i in range(q.shape[0]):
        p0 = math.exp(float(q[i] @ k[i]) / T) / Z
        total += math.log(p0 / (p0 + noise + eps))
        for j in range(num_neg):
            pj = math.exp(float(q[i] @ queue[j]) / T) / Z
            total += math.log(noise / (pj + noise + eps))
    return -total / q.shape[0]


def test_infonce_matches_loop():
    q, k, queue = unit(4, 8, 0), unit(4, 8, 1), unit(10, 8, 2)
    loss, p_pos = infonce_loss(contrastive_logits(q, k, queue) / 0.2)
    assert loss.item() == pytest.approx(loop_infonce(q, k, queue, 0.2), rel=1e-5)
    assert 0 < p_pos.item() < 1


def test_infonce_closed_form_orthogonal_queue():
    # q = k = e0, queue rows e1..eK ⟂ q: loss = log(1 + K·exp(0)/exp(1/τ)).
    K, T = 6, 0.2
    eye = torch.eye(K + 1)
    q = eye[:1].repeat(3, 1)
    memory = ContrastiveMemory(K + 1, K, T, nce="infonce")
    memory.queue.queue.copy_(eye[1:])
    loss, p_pos = memory(q, q.clone())
    assert loss.item() == pytest.approx(math.log(1 + K * math.exp(-1 / T)), rel=1e-6)
    assert p_pos.item() == pytest.approx(1 / (1 + K * math.exp(-1 / T)), rel=1e-6)


@pytest.mark.parametrize("eps", [0.0, 1e-5, 0.3])
def test_nce_matches_loop(eps):
    # n_data 5000 puts the noise mass K·Pn = 1.4e-3 near the guard, so eps = 1e-5 changes the loss.
    q, k, queue = unit(3, 8, 3).double(), unit(3, 8, 4).double(), unit(7, 8, 5).double()
    Z, n_data = 37.5, 5000
    loss, _ = nce_loss(contrastive_logits(q, k, queue) / 0.2, math.log(Z), n_data, eps)
    assert loss.item() == pytest.approx(loop_nce(q, k, queue, 0.2, Z, n_data, eps), rel=1e-9)
    if eps:
        assert abs(loss.item() - loop_nce(q, k, queue, 0.2, Z, n_data)) > 1e-6


def test_nce_stays_finite_where_the_probabilities_underflow():
    logits = torch.tensor([[-200.0, 150.0, -300.0]], requires_grad=True)  # exp(s) under/overflows in fp32
    loss, p_pos = nce_loss(logits, 0.0, 10, 1e-5)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all() and p_pos.item() < 1e-30


@pytest.mark.parametrize("exact", [True, False])
def test_nce_closed_form_with_Z_from_first_batch(exact):
    # s_pos = 1, s_neg = 0: Z = n·(e^{1/τ} + K)/(1 + K); P0 = e^{1/τ}/Z, Pj = 1/Z, noise c = K/n;
    # loss = −log(P0/(P0 + c + ε)) − K·log(c/(1/Z + c + ε)). Released numerics (exact=False): ε = 1e-5 and
    # Z truncated to an integer (the released MemoryC2L stores it in an int64 buffer).
    K, T, n_data = 5, 0.2, 1000
    eye = torch.eye(K + 1, dtype=torch.float64)
    q = eye[:1].repeat(2, 1)
    memory = ContrastiveMemory(K + 1, K, T, nce="nce", n_data=n_data, exact=exact).double()
    memory.queue.queue.copy_(eye[1:])
    loss, p_pos = memory(q, q.clone())
    e = math.exp(1 / T)
    Z = n_data * (e + K) / (1 + K)
    Z, eps = (Z, 0.0) if exact else (math.trunc(Z), 1e-5)
    c = K / n_data
    expected = -math.log((e / Z) / (e / Z + c + eps)) - K * math.log(c / (1 / Z + c + eps))
    assert memory.Z.item() == pytest.approx(Z, rel=1e-12)
    assert loss.item() == pytest.approx(expected, rel=1e-10)
    assert p_pos.item() == pytest.approx((e / Z) / (e / Z + c + eps), rel=1e-10)
    assert loss.dtype == torch.float64  # fp64 models keep fp64 scores (the released-step comparison relies on it)


def test_nce_Z_fixed_once_scales_with_n_and_is_checkpointed():
    q, k = unit(4, 8, 6), unit(4, 8, 7)
    small = ContrastiveMemory(8, 16, 0.2, nce="nce", n_data=100, generator=torch.Generator().manual_seed(0),
                              exact=True)
    large = ContrastiveMemory(8, 16, 0.2, nce="nce", n_data=1000, generator=torch.Generator().manual_seed(0),
                              exact=True)
    small(q, k)
    large(q, k)
    assert large.Z.item() == pytest.approx(10 * small.Z.item(), rel=1e-6)  # Z ∝ n
    z_first = small.Z.clone()
    small(unit(4, 8, 8), unit(4, 8, 9))
    assert torch.equal(small.Z, z_first)
    assert torch.equal(small.state_dict()["Z"], z_first)
    with pytest.raises(ValueError, match="noise distribution"):
        ContrastiveMemory(8, 16, 0.2, nce="nce")
    with pytest.raises(ValueError, match="infonce"):
        ContrastiveMemory(8, 16, 0.2, nce="softmax")


# ------------------------------------------------------------------------------------------------ queue
def test_queue_pointer_and_wraparound():
    queue = KeyQueue(5, 3)
    a, b, c = torch.ones(2, 3), 2 * torch.ones(2, 3), torch.arange(6.0).view(2, 3)
    queue.enqueue(a)
    assert queue.ptr.item() == 2
    queue.enqueue(b)
    assert queue.ptr.item() == 4
    queue.enqueue(c)  # rows 4 and 0
    assert queue.ptr.item() == 1
    assert torch.equal(queue.queue, torch.stack([c[1], a[1], b[0], b[1], c[0]]))
    with pytest.raises(ValueError, match="K=5"):
        queue.enqueue(torch.zeros(6, 3))


def test_queue_init_uniform_unit_norm_on_average():
    queue = KeyQueue(4096, 128, generator=torch.Generator().manual_seed(0)).queue
    bound = 1 / math.sqrt(128 / 3)
    assert queue.abs().max() <= bound
    assert queue.pow(2).sum(1).mean().item() == pytest.approx(1.0, abs=0.02)


def test_memory_scores_then_enqueues_the_keys():
    memory = ContrastiveMemory(8, 6, 0.2, nce="infonce")
    before = memory.queue.queue.clone()
    q, k = unit(4, 8, 10), unit(4, 8, 11)
    loss, _ = memory(q, k)
    assert loss.item() == pytest.approx(loop_infonce(q, k, before, 0.2), rel=1e-5)  # scored on the old queue
    assert torch.equal(memory.queue.queue[:4], k) and memory.queue.ptr.item() == 4


# ------------------------------------------------------------------------------------------------ momentum
def test_momentum_encoder_starts_as_exact_copy_and_follows_ema():
    model = small_pcrl(m=0.9)
    for a, b in zip(model.encoder_q.state_dict().values(), model.encoder_k.state_dict().values()):
        assert torch.equal(a, b)
    with torch.no_grad():
        for p in model.encoder_q.parameters():
            p.add_(torch.randn_like(p))
    q_params = [p.clone() for p in model.encoder_q.parameters()]
    k_params = [p.clone() for p in model.encoder_k.parameters()]
    model.momentum_update()
    for p_q, p_k0, p_k in zip(q_params, k_params, model.encoder_k.parameters()):
        assert torch.allclose(p_k, 0.9 * p_k0 + 0.1 * p_q, atol=1e-6)


def test_ema_update_is_the_momentum_update_as_a_function():
    model = small_pcrl(m=0.9)
    with torch.no_grad():
        for p in model.encoder_q.parameters():
            p.add_(torch.randn_like(p))
    momentum = [p.clone() for p in [*model.encoder_k.parameters(), *model.head_k.parameters()]]
    ordinary = [*model.encoder_q.parameters(), *model.head_q.parameters()]
    expected = pcrl_module.ema_update(momentum, ordinary, 0.9)
    assert not any(t.requires_grad for t in expected)
    assert torch.equal(momentum[0], next(model.encoder_k.parameters()))       # inputs untouched
    model.momentum_update()
    for want, got in zip(expected, [*model.encoder_k.parameters(), *model.head_k.parameters()]):
        assert torch.equal(got, want)
    assert torch.allclose(pcrl_module.ema_update([torch.ones(2)], [torch.zeros(2)], 0.75)[0], torch.full((2,), 0.75))
    with pytest.raises(ValueError, match="2 momentum tensors but 1 ordinary"):
        pcrl_module.ema_update([torch.ones(1), torch.ones(1)], [torch.ones(1)], 0.9)


def test_gradients_reach_query_decoder_gate_never_momentum():
    model = small_pcrl()
    out = model(make_sample(), torch.Generator().manual_seed(0))
    out.loss.backward()
    for name, module in [("encoder_q", model.encoder_q), ("decoder", model.decoder), ("gate", model.gate),
                         ("head_q", model.head_q)]:
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None for g in grads), name
        assert sum(g.abs().sum() for g in grads) > 0, name
    for p in [*model.encoder_k.parameters(), *model.head_k.parameters()]:
        assert not p.requires_grad and p.grad is None


# ------------------------------------------------------------------------------------------------ hybrid, TCA
def test_hybrid_mix_weights_every_scale_gate_gets_gradient_momentum_none():
    model = small_pcrl()
    sample = make_sample()
    f_o = model.encoder_q(sample.x1)
    _, f_m = model._key_features(sample.x2, torch.Generator(), with_features=True)
    assert all(not f.requires_grad for f in f_m)
    gated_m = model.gated(f_m, sample.c2)
    mixed = hybrid_mix(f_o, gated_m, 0.75)
    assert len(mixed) == 4
    for level, (a, b, c) in enumerate(zip(mixed, f_o, gated_m)):
        assert torch.allclose(a, 0.75 * b + 0.25 * c), level
    # Only the momentum path: gradient reaches the gate (via gate(c2)·F_m), never the momentum encoder.
    hybrid_mix([f.detach() for f in f_o], gated_m, 0.75)[-1].sum().backward()
    assert model.gate.fc2.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in [*model.encoder_k.parameters(), *model.encoder_q.parameters()])


def test_alpha_one_makes_hybrid_equal_ordinary(monkeypatch):
    monkeypatch.setattr(pcrl_module, "draw_alpha", lambda generator: 1.0)
    parts = small_pcrl()(make_sample(), torch.Generator().manual_seed(0)).parts
    assert torch.equal(parts["mse_a_hyb"], parts["mse_a_ord"])
    assert torch.equal(parts["mse_b_hyb"], parts["mse_b_ord"])


def test_alpha_below_one_makes_hybrid_differ():
    parts = small_pcrl()(make_sample(), torch.Generator().manual_seed(0)).parts
    assert parts["mse_a_hyb"] != parts["mse_a_ord"]


def test_tca_gate_is_live():
    model = small_pcrl()
    sample = make_sample()
    flipped = copy.deepcopy(sample)
    flipped.c1 = 1 - sample.c1
    same = copy.deepcopy(model)(sample, torch.Generator().manual_seed(0)).parts
    again = copy.deepcopy(model)(sample, torch.Generator().manual_seed(0)).parts
    changed = copy.deepcopy(model)(flipped, torch.Generator().manual_seed(0)).parts
    assert torch.equal(same["mse_a_ord"], again["mse_a_ord"])
    assert not torch.equal(same["mse_a_ord"], changed["mse_a_ord"])
    features = model.encoder_q(sample.x1)
    assert not torch.allclose(model.decode(model.gated(features, sample.c1)),
                              model.decode(model.gated(features, flipped.c1)))


# ------------------------------------------------------------------------------------------------ mixed keys
def test_mixed_keys_raw_as_released_or_unit(monkeypatch):
    # released (key_mix="raw"): k̃_mix = mix(z)/‖mix(z)‖ with z the momentum projection before normalisation;
    # kit (key_mix="unit"): the unit keys k = z/‖z‖ are mixed, then re-normalised. A fixed λ and a non-identity
    # π make the two differ whenever the projections' norms differ.
    lam, perm = 0.7, torch.tensor([1, 2, 0])
    monkeypatch.setattr(pcrl_module, "draw_mix", lambda batch, generator: (lam, perm.clone()))
    sample = make_sample(batch=3)
    mixed = {}
    for key_mix in ("raw", "unit"):
        model = small_pcrl(key_mix=key_mix)
        keys = []

        def recording(q, k, contrast=model.contrast.forward, keys=keys):
            keys.append(k)
            return contrast(q, k)

        monkeypatch.setattr(model.contrast, "forward", recording)
        model(sample, torch.Generator().manual_seed(0))
        with torch.no_grad():
            z = model.head_k.project(model.encoder_k(sample.x2)[-1])
        k = torch.nn.functional.normalize(z, dim=1)
        expected = torch.nn.functional.normalize(lam * (z if key_mix == "raw" else k) + (1 - lam) *
                                                 (z if key_mix == "raw" else k)[perm], dim=1)
        assert torch.allclose(keys[0], k, atol=1e-6)                       # pass A: the unit key
        assert torch.allclose(keys[2], expected, atol=1e-6)                # pass B: k̃_mix
        mixed[key_mix] = keys[2]
    assert (mixed["raw"] - mixed["unit"]).abs().max() > 1e-4
    with pytest.raises(ValueError, match="key_mix"):
        small_pcrl(key_mix="projections")


# ------------------------------------------------------------------------------------------------ the step
def test_full_loss_is_three_contrastive_plus_four_mse_terms():
    model = small_pcrl()
    out = model(make_sample(), torch.Generator().manual_seed(0))
    contrastive = ["nce_a", "nce_b", "nce_b_mix"]
    mse = ["mse_a_ord", "mse_a_hyb", "mse_b_ord", "mse_b_hyb"]
    assert set(out.parts) == set(contrastive + mse + ["p_pos"])
    expected = torch.stack([out.parts[n] for n in contrastive]).mean() + torch.stack([out.parts[n] for n in mse]).mean()
    assert torch.allclose(out.loss.detach(), expected)
    assert out.loss.requires_grad and all(not v.requires_grad for v in out.parts.values())
    assert 0 < out.parts["p_pos"].item() < 1
    assert model.contrast.queue.ptr.item() == 3 * 2  # k, k̃ and k̃_mix enqueued


def test_same_generator_seed_same_step_different_seed_differs():
    model = small_pcrl()
    sample = make_sample()
    a = copy.deepcopy(model)(sample, torch.Generator().manual_seed(5))
    b = copy.deepcopy(model)(sample, torch.Generator().manual_seed(5))
    c = copy.deepcopy(model)(sample, torch.Generator().manual_seed(6))
    assert torch.equal(a.loss, b.loss)
    assert not torch.equal(a.loss, c.loss)


def test_runs_under_bf16_autocast_with_fp32_losses():
    model = small_pcrl()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(make_sample(), torch.Generator().manual_seed(0))
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    out.loss.backward()


def test_bad_samples_are_named():
    model = small_pcrl()
    sample = make_sample()
    missing = copy.deepcopy(sample)
    missing.c2 = None
    with pytest.raises(ValueError, match="c2"):
        model(missing, torch.Generator())
    wrong = copy.deepcopy(sample)
    wrong.T1 = wrong.T1[:, :, :8]
    with pytest.raises(ValueError, match="T1"):
        model(wrong, torch.Generator())
    with pytest.raises(ValueError, match="multiples of 8"):
        model(make_sample(size=(12, 16, 8)), torch.Generator())


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_batch_shuffle_path_under_a_process_group():
    model = small_pcrl()
    x = make_sample(batch=4).x2
    k_plain, f_plain = model._key_features(x, torch.Generator().manual_seed(0), with_features=True)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        k_dist, f_dist = model._key_features(x, torch.Generator().manual_seed(0), with_features=True)
        model.contrast.queue.enqueue(k_dist)
    finally:
        dist.destroy_process_group()
    assert torch.allclose(k_plain, k_dist, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(f_plain, f_dist))
    assert torch.equal(model.contrast.queue.queue[:4], k_dist)
