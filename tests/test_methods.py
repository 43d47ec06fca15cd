"""Method variants (PCRL_SPEC §9): their terms, momentum, exports and loading into encoders/U-Nets."""

import pytest
import torch

from pcrl_lib.config import PretrainConfig, get_profile
from pcrl_lib.models import build_encoder
from pcrl_lib.models.exports import load_encoder
from pcrl_lib.pcrl import (KEY_MIXES, METHOD_NAMES, NCE_NOISE, build_method, build_method_from_config,
                           ema_momentum, nce_noise_count)
from pcrl_lib.train import Trainer

from test_pcrl import make_sample  # tests/ is on sys.path (pytest rootdir-less modules)

CONTRASTIVE = {"nce_a", "nce_b", "nce_b_mix", "p_pos"}
EXPECTED_PARTS = {
    "pcrl": CONTRASTIVE | {"mse_a_ord", "mse_a_hyb", "mse_b_ord", "mse_b_hyb"},
    "pcrl_tca": CONTRASTIVE | {"mse_a_ord", "mse_b_ord"},
    "pcrl_recon": CONTRASTIVE | {"mse_a_ord", "mse_b_ord"},
    "c2l": CONTRASTIVE,
    "moco": {"nce_a", "p_pos"},
    "models_genesis": {"mse_restore"},
}
ARCH_3D = {"width": 4}


def build(name, dims, **kw):
    torch.manual_seed(0)
    objective = {} if name == "models_genesis" else {"K": 32, "n_data": 40}
    arch = ARCH_3D if dims == 3 else {}
    return build_method(name, dims, **objective, **arch, **kw)


def sample_for(dims, batch=2):
    return make_sample(batch=batch, size=(16, 16, 8) if dims == 3 else (32, 32))


def test_every_name_is_covered():
    assert set(METHOD_NAMES) == set(EXPECTED_PARTS)
    with pytest.raises(ValueError, match="models_genesis"):
        build_method("simclr", 3)


@pytest.mark.parametrize("name", sorted(EXPECTED_PARTS))
def test_3d_variant_parts_and_loss(name):
    method = build(name, 3)
    out = method(sample_for(3), torch.Generator().manual_seed(0))
    assert set(out.parts) == EXPECTED_PARTS[name]
    terms = [v for k, v in out.parts.items() if k != "p_pos"]
    contrastive = [v for k, v in out.parts.items() if k.startswith("nce")]
    mse = [v for k, v in out.parts.items() if k.startswith("mse")]
    expected = sum(torch.stack(group).mean() for group in (contrastive, mse) if group)
    assert torch.allclose(out.loss.detach(), expected) and all(torch.isfinite(t) for t in terms)
    out.loss.backward()


@pytest.mark.parametrize("name", ["pcrl", "models_genesis"])
def test_2d_variant_runs(name):
    method = build(name, 2)
    out = method(sample_for(2), torch.Generator().manual_seed(0))
    assert set(out.parts) == EXPECTED_PARTS[name] and torch.isfinite(out.loss)


def test_without_tca_pass_a_reconstructs_the_input():
    method = build("pcrl_recon", 3)
    assert method.gate is None
    sample = sample_for(3)
    sample.T1 = sample.T2 = sample.c1 = sample.c2 = None  # not needed without TCA
    out = method(sample, torch.Generator().manual_seed(0))
    with torch.no_grad():
        fresh = build("pcrl_recon", 3)
        expected = torch.nn.functional.mse_loss(fresh.decode(fresh.encoder_q(sample.x1)), sample.x1)
    assert torch.allclose(out.parts["mse_a_ord"], expected, atol=1e-6)


def test_moco_uses_infonce_and_nce_switch():
    assert build("moco", 3).contrast.nce == "infonce"
    assert build("c2l", 3).contrast.nce == "nce"
    assert build("pcrl", 3, nce="infonce").contrast.nce == "infonce"
    with pytest.raises(ValueError, match="noise distribution"):
        build_method("pcrl", 3, width=4, K=32)


@pytest.mark.parametrize("name", sorted(EXPECTED_PARTS))
def test_momentum_update_per_method(name):
    method = build(name, 3, **({} if name == "models_genesis" else {"m": 0.5}))
    before = {k: v.clone() for k, v in method.state_dict().items()}
    with torch.no_grad():
        for p in method.parameters():
            if p.requires_grad:
                p.add_(1.0)
    method.momentum_update()
    changed_k = [k for k, v in method.state_dict().items()
                 if "_k." in k and not torch.equal(v, before[k])]
    if name == "models_genesis":
        assert not any("_k." in k for k in before)
    else:
        assert changed_k and all(k.startswith(("encoder_k.", "head_k.")) for k in changed_k)


# Every variant in 3D; in 2D one of each export shape (with decoder, without, U-Net-only) keeps the test fast.
@pytest.mark.parametrize("name, dims", [(name, 3) for name in sorted(EXPECTED_PARTS)]
                         + [("pcrl", 2), ("moco", 2), ("models_genesis", 2)])
def test_export_loads_into_build_encoder(name, dims, tmp_path):
    method = build(name, dims)
    export = method.export()
    assert set(export) == {"spatial_dims", "method", "arch", "encoder", "decoder"}
    assert export["method"] == name and export["spatial_dims"] == dims
    assert (export["decoder"] is None) == (name in ("c2l", "moco"))
    encoder = build_encoder(export["spatial_dims"], **export["arch"])
    encoder.load_state_dict(export["encoder"])
    if dims == 3:  # the file round trip once per method (a 2D export is ~45 MB)
        path = tmp_path / "encoder.pt"
        torch.save(export, path)
        loaded = load_encoder(path, spatial_dims=dims)
    else:
        loaded = load_encoder(export, spatial_dims=dims)
    x = sample_for(dims, batch=1).x1
    own = method.unet.encoder if name == "models_genesis" else method.encoder_q
    own.eval()
    loaded.eval()
    assert torch.allclose(own(x)[-1], loaded(x)[-1])


def test_load_encoder_mismatch_names_both_sides():
    export = build("c2l", 3).export()
    with pytest.raises(ValueError, match=r"export is 3D \(unet3d, width 4, norm bn\) but the task needs 2D.*'c2l'"):
        load_encoder(export, spatial_dims=2)
    with pytest.raises(ValueError, match="width 4, norm bn.*width 8, norm bn.*width mismatch"):
        load_encoder(export, width=8)
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        load_encoder("nowhere.pt")
    with pytest.raises(ValueError, match="keys"):
        load_encoder({"encoder": export["encoder"]})


def test_load_encoder_adapts_the_input_channels_like_every_downstream_network():
    # One rule for in_channels: before, load_encoder refused another in_channels while build_classifier /
    # build_segmenter adapted the first convolution; now both adapt it (sum over the old channels / C_new).
    method = build("models_genesis", 3)
    export = method.export()
    four = load_encoder(export, in_channels=4).eval()
    x = sample_for(3, batch=1).x1                                   # (1, 1, X, Y, Z)
    method.unet.encoder.eval()
    assert torch.allclose(four(x.expand(-1, 4, -1, -1, -1))[-1], method.unet.encoder(x)[-1], atol=1e-5)


def test_build_from_profile_config():
    cfg = get_profile("smoke").pretrain
    method = build_method_from_config(cfg, 3, num_items=10)
    assert method.contrast.queue.K == cfg.K and method.arch["width"] == cfg.width_3d
    assert method.contrast.n_data == 5  # released: len(train_loader) = ceil(10 / batch 2)


def test_nce_noise_counts_batches_as_released_or_samples():
    cfg = get_profile("smoke").pretrain.override(batch_size_2d=16)
    assert cfg.nce_noise == "batches" and PretrainConfig._CHOICES["nce_noise"] == NCE_NOISE
    assert nce_noise_count(1227, 16) == 77                      # the last partial batch counts, as in the loader
    assert nce_noise_count(1227, 16, world_size=2) == 39        # DDP: one global batch per step
    assert nce_noise_count(1227, 16, "samples") == 1227
    assert build_method_from_config(cfg, 2, num_items=1227).contrast.n_data == 77
    assert build_method_from_config(cfg.override(nce_noise="samples"), 2, num_items=1227).contrast.n_data == 1227
    with pytest.raises(ValueError, match="nce_noise"):
        nce_noise_count(10, 2, "epochs")


def test_config_switches_reach_the_method():
    cfg = get_profile("smoke").pretrain
    assert (cfg.key_mix, cfg.nce_exact, cfg.ema_horizon_fraction) == ("raw", False, 0.0)  # released defaults
    assert PretrainConfig._CHOICES["key_mix"] == KEY_MIXES
    method = build_method_from_config(cfg.override(key_mix="unit", nce_exact=True), 3, num_items=10)
    assert method.key_mix == "unit" and method.contrast.exact
    released = build_method_from_config(cfg, 3, num_items=10)
    assert released.key_mix == "raw" and not released.contrast.exact


def test_ema_momentum_rule():
    assert ema_momentum(0.999, 0.0, 60) == 0.999                       # 0: the configured m, whatever the budget
    assert ema_momentum(0.999, 0.1, 600) == pytest.approx(1 - 1 / 60)  # horizon 1/(1−m) = 10 % of 600 steps
    assert ema_momentum(0.999, 0.5, 1) == 0.0                           # a horizon under one step: E_m copies E_o
    with pytest.raises(ValueError, match="ema_horizon_fraction"):
        ema_momentum(0.999, 1.5, 10)


@pytest.mark.parametrize("fraction, expected", [(0.0, 0.999), (0.25, 0.5)])
def test_trainer_scales_m_to_the_step_budget(fraction, expected, tmp_path):
    # 8 items, batch 2, 2 epochs: 8 steps; a quarter of them is a horizon of 2 steps, m = 1 − 1/2.
    cfg = get_profile("smoke").pretrain.override(epochs=2, batch_size_3d=2, max_steps_per_epoch=0,
                                                 ema_horizon_fraction=fraction)
    dataset = [torch.zeros(2, 1, 16, 16, 8)] * 8
    trainer = Trainer(build("pcrl", 3), dataset, None, cfg, tmp_path, spatial_dims=3, device="cpu", progress=False)
    assert trainer.method.m == pytest.approx(expected)


def test_wrong_size_inputs_are_explained():
    with pytest.raises(ValueError, match="multiples of 32"):
        build("moco", 2)(make_sample(size=(48, 48)), torch.Generator())
    with pytest.raises(ValueError, match="multiples of 8"):
        build("models_genesis", 3)(make_sample(size=(16, 16, 4)), torch.Generator())


def test_models_genesis_takes_restoration_samples():
    from pcrl_lib.transforms.genesis import RestorationSample

    method = build("models_genesis", 3)
    cube = make_sample().x1
    perfect = RestorationSample(x=cube, target=method.unet(cube).detach())
    assert method(perfect).parts["mse_restore"].item() == pytest.approx(0.0, abs=1e-10)
    assert method(RestorationSample(x=cube, target=1 - cube)).loss > 0


def test_one_step_on_real_3d_views():
    from pcrl_lib.transforms import PCRLViews3D

    gen = torch.Generator().manual_seed(0)
    sample = PCRLViews3D()(torch.rand(2, 2, 1, 16, 16, 8, generator=gen), gen)
    out = build("pcrl", 3)(sample, gen)
    assert set(out.parts) == EXPECTED_PARTS["pcrl"] and torch.isfinite(out.loss)


@pytest.mark.parametrize("dims, expected", [(2, ["ordinary", "hybrid"] * 2), (3, ["hybrid", "ordinary"] * 2)])
def test_decoder_call_order_is_the_released_one(dims, expected, monkeypatch):
    """BatchNorm running statistics depend on the order of the decoder's train-mode calls: the released 2D model
    decodes the ordinary features first, the released 3D model the hybrid ones (both passes)."""
    import pcrl_lib.pcrl as pcrl_module

    class Hybrid(list):
        pass

    mix_features = pcrl_module.hybrid_mix
    monkeypatch.setattr(pcrl_module, "hybrid_mix", lambda *args: Hybrid(mix_features(*args)))
    method, calls = build("pcrl", dims), []
    decode = method.decode
    monkeypatch.setattr(method, "decode",
                        lambda features: calls.append("hybrid" if isinstance(features, Hybrid) else "ordinary")
                        or decode(features))
    method(sample_for(dims), torch.Generator().manual_seed(0))
    assert calls == expected
