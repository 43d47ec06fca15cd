"""U-Nets, encoders and heads: shapes per level, norms, activations, local weights, input checks."""

import pytest
import torch
import torchvision
from torch import nn

from pcrl_lib.models import (ClassificationHead, ProjectionHead, TCAGate, bottleneck_channels, build_encoder,
                             build_unet, tca_code_dim)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_2d_encoder_levels_and_unet_output():
    unet = build_unet(2)
    x = torch.randn(2, 3, 64, 64)
    features = unet.encoder(x)
    assert [tuple(f.shape) for f in features] == [(2, 64, 32, 32), (2, 64, 16, 16), (2, 128, 8, 8),
                                                  (2, 256, 4, 4), (2, 512, 2, 2)]
    assert [b.convs[1][0].out_channels for b in unet.decoder.blocks] == [256, 128, 64, 32, 16]
    y = unet(x)
    assert y.shape == (2, 3, 64, 64)
    assert y.min() < 0  # no output activation in 2D: targets are ImageNet-normalised


def test_2d_decoder_reuses_encoder_features():
    unet = build_unet(2, out_channels=2).eval()
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(unet.decoder(unet.encoder(x)), unet(x))


@pytest.mark.parametrize("width", [4, 8])
def test_3d_levels_follow_width(width):
    unet = build_unet(3, width=width)
    x = torch.rand(2, 1, 16, 16, 8)
    features = unet.encoder(x)
    w = width
    assert [tuple(f.shape) for f in features] == [(2, 2 * w, 16, 16, 8), (2, 4 * w, 8, 8, 4), (2, 8 * w, 4, 4, 2),
                                                  (2, 16 * w, 2, 2, 1)]
    assert bottleneck_channels(3, w) == 16 * w
    y = unet(x)
    assert y.shape == (2, 1, 16, 16, 8) and 0 < y.min() and y.max() < 1


def test_3d_paper_width_has_512_channel_bottleneck():
    encoder = build_encoder(3)
    assert encoder.out_channels[-1] == 512 == bottleneck_channels(3) == bottleneck_channels(2)


def test_3d_logits_switch_is_sigmoid_free():
    torch.manual_seed(1)
    pretrain = build_unet(3, width=4, out_channels=2).eval()
    seg = build_unet(3, width=4, out_channels=2, final_activation=None).eval()
    seg.load_state_dict(pretrain.state_dict())
    x = torch.rand(1, 1, 16, 16, 8)
    logits = seg(x)
    assert torch.allclose(torch.sigmoid(logits), pretrain(x), atol=1e-6)
    assert not torch.allclose(logits, pretrain(x))


@pytest.mark.parametrize("norm, cls", [("bn", nn.BatchNorm3d), ("gn", nn.GroupNorm), ("in", nn.InstanceNorm3d)])
def test_3d_norm_selectable(norm, cls):
    unet = build_unet(3, width=4, norm=norm)
    norms = [m for m in unet.modules() if isinstance(m, (nn.BatchNorm3d, nn.GroupNorm, nn.InstanceNorm3d))]
    assert norms and all(type(m) is cls for m in norms)
    assert unet(torch.rand(1, 1, 16, 16, 16)).shape == (1, 1, 16, 16, 16)


def test_3d_in_channels_for_multimodal_mri():
    unet = build_unet(3, in_channels=4, out_channels=3, width=4, final_activation=None)
    assert unet(torch.rand(1, 4, 16, 16, 8)).shape == (1, 3, 16, 16, 8)


@pytest.mark.parametrize("dims, shape, rule", [
    (2, (1, 3, 60, 64), "60×64"),
    (2, (1, 3, 64, 48), "multiples of 32"),
    (3, (1, 1, 16, 16, 6), "16×16×6"),
    (3, (1, 1, 12, 16, 8), "multiples of 8"),
])
def test_wrong_sizes_name_size_and_rule(dims, shape, rule):
    encoder = build_encoder(dims, width=4) if dims == 3 else build_encoder(2)
    with pytest.raises(ValueError, match=rule):
        encoder(torch.zeros(shape))


def test_wrong_channels_and_ndim():
    with pytest.raises(ValueError, match="in_channels=3"):
        build_encoder(2)(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, C, X, Y, Z\)"):
        build_encoder(3, width=4)(torch.zeros(1, 16, 16, 8))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="spatial_dims"):
        build_unet(4)
    with pytest.raises(ValueError, match="width"):
        build_unet(2, width=8)  # 2D has no width
    with pytest.raises(ValueError, match="norm"):
        build_unet(3, norm="layer")
    with pytest.raises(ValueError, match="final_activation"):
        build_unet(3, final_activation="relu")


def test_build_encoder_accepts_a_whole_arch_dict():
    encoder = build_encoder(3, in_channels=1, out_channels=5, width=4, norm="gn", final_activation=None)
    assert isinstance(encoder.blocks[0][0][1], nn.GroupNorm)


def test_local_resnet_weights_load_and_errors(tmp_path):
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pt"
    torch.save(reference.state_dict(), path)  # torchvision format, fc.* included
    encoder = build_encoder(2, weights=path)
    assert torch.equal(encoder.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    assert not torch.equal(build_encoder(2).conv1.weight, reference.conv1.weight)  # random init by default

    with pytest.raises(FileNotFoundError, match="missing.pt"):
        build_encoder(2, weights=tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, bad)
    with pytest.raises(ValueError, match="bad.pt.*missing"):
        build_encoder(2, weights=bad)
    with pytest.raises(ValueError, match="in_channels"):
        build_encoder(2, in_channels=1, weights=path)


def test_projection_head_unit_vectors():
    head = ProjectionHead(32, 16, 8)
    z = head([torch.randn(3, 16, 4, 4), torch.randn(3, 32, 2, 2, 1)])
    assert z.shape == (3, 8)
    assert torch.allclose(z.norm(dim=1), torch.ones(3), atol=1e-6)
    with pytest.raises(ValueError, match="in_channels=32"):
        head(torch.randn(3, 64, 2, 2))


def test_projection_head_project_is_the_projection_before_normalising():
    head = ProjectionHead(32, 16, 8)
    x = torch.randn(3, 32, 2, 2)
    z = head.project(x)
    assert z.shape == (3, 8)
    assert torch.allclose(z, head.fc2(torch.relu(head.fc1(x.mean(dim=(2, 3))))), atol=1e-6)
    assert torch.equal(head(x), torch.nn.functional.normalize(z, dim=1))
    with pytest.raises(ValueError, match="in_channels=32"):
        head.project(torch.randn(3, 64, 2, 2))


@pytest.mark.parametrize("dims", [2, 3])
def test_tca_gate_shape_and_range(dims):
    channels = bottleneck_channels(dims, 4)
    gate = TCAGate(tca_code_dim(dims), channels, dims)
    code = torch.zeros(5, tca_code_dim(dims))
    code[:, dims] = 1  # rotation 0
    g = gate(code)
    assert g.shape == (5, channels) + (1,) * dims
    assert (g > 0).all() and (g < 1).all()
    with pytest.raises(ValueError, match=f"\\(B, {tca_code_dim(dims)}\\)"):
        gate(torch.zeros(5, 3))


def test_classification_head():
    head = ClassificationHead(64, 14, dropout=0.5).eval()
    x = torch.randn(2, 64, 2, 2, 1)
    logits = head(x)
    assert logits.shape == (2, 14)
    # Pooling is a mean over space: a spatially constant map gives the same logits as its 1×1×1 version.
    assert torch.allclose(head(x.mean(dim=(2, 3, 4), keepdim=True).expand_as(x)), logits, atol=1e-6)
    with pytest.raises(ValueError, match="dropout"):
        ClassificationHead(64, 2, dropout=1.0)
