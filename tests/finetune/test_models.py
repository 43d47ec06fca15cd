"""Downstream networks from pretraining exports: loading, adaptation, architecture checks."""

import pytest
import torch
import torchvision

from pcrl_lib.finetune import build_classifier, build_segmenter
from pcrl_lib.models.exports import describe_arch, read_export
from pcrl_lib.pcrl import build_method


@pytest.fixture(scope="module")
def genesis3d():
    torch.manual_seed(0)
    return build_method("models_genesis", 3, width=4).export()


@pytest.fixture(scope="module")
def moco3d():
    torch.manual_seed(1)
    return build_method("moco", 3, width=4, K=8, n_data=16).export()


def _same(state_a, state_b):
    return set(state_a) == set(state_b) and all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def test_classifier_loads_any_methods_encoder(moco3d, tmp_path):
    model = build_classifier(3, 1, pretrained=moco3d)
    assert _same(model.encoder.state_dict(), moco3d["encoder"])
    assert model.init_report["init"] == "pretrained" and model.init_report["method"] == "moco"
    assert model(torch.randn(2, 1, 16, 16, 8)).shape == (2, 1)
    # The same export from a file and from the run folder that holds encoder.pt.
    torch.save(moco3d, tmp_path / "encoder.pt")
    for source in (tmp_path / "encoder.pt", tmp_path):
        assert _same(build_classifier(3, 1, pretrained=source).encoder.state_dict(), moco3d["encoder"])


def test_scratch_classifier_takes_width_and_2d_default():
    model = build_classifier(3, 2, width=4, norm="gn", dropout=0.5)
    assert model.init_report["init"] == "scratch" and model.encoder.out_channels[-1] == 64
    model2d = build_classifier(2, 14)
    assert model2d.in_channels == 3 and model2d.head.fc.out_features == 14


def test_wrong_dimensionality_names_both_architectures(genesis3d):
    with pytest.raises(ValueError) as err:
        build_classifier(2, 14, pretrained=genesis3d)
    message = str(err.value)
    assert "3D (unet3d, width 4, norm bn)" in message and "2D (resnet18)" in message
    with pytest.raises(ValueError, match=r"width 4.*width 8"):
        build_segmenter(3, 2, pretrained=genesis3d, width=8)
    assert describe_arch(3, {"width": 16}) == "3D (unet3d, width 16, norm bn)"


def test_export_with_foreign_weights_is_refused(genesis3d):
    bad = {**genesis3d, "encoder": {k + ".x": v for k, v in genesis3d["encoder"].items()}}
    with pytest.raises(ValueError, match="missing keys"):
        build_classifier(3, 1, pretrained=bad)
    with pytest.raises(ValueError, match="keys"):
        read_export({"encoder": {}})


def test_segmenter_adapts_first_conv_for_four_modalities(genesis3d):
    net = build_segmenter(3, 3, pretrained=genesis3d, in_channels=4)
    key = "blocks.0.0.0.weight"
    old, new = genesis3d["encoder"][key], net.encoder.state_dict()[key]
    assert new.shape[1] == 4 and torch.allclose(new, old.expand_as(new) / 4)
    assert net.init_report["encoder"]["adapted"] == [key]
    # Four copies of one image give the pretrained first convolution's response to that image.
    x = torch.randn(1, 1, 16, 16, 8)
    conv_new = net.encoder.blocks[0][0][0]
    conv_old = torch.nn.Conv3d(1, conv_new.out_channels, 3, padding=1)
    conv_old.load_state_dict({"weight": old, "bias": genesis3d["encoder"]["blocks.0.0.0.bias"]})
    assert torch.allclose(conv_new(x.expand(-1, 4, -1, -1, -1)), conv_old(x), atol=1e-5)


def test_segmenter_loads_decoder_and_remakes_head(genesis3d, moco3d):
    net = build_segmenter(3, 3, pretrained=genesis3d)
    decoder = net.decoder.state_dict()
    assert all(torch.equal(decoder[k], v) for k, v in genesis3d["decoder"].items() if not k.startswith("head."))
    assert decoder["head.weight"].shape[0] == 3
    assert sorted(net.init_report["decoder"]["reinitialised"]) == ["head.bias", "head.weight"]
    assert net(torch.randn(1, 1, 16, 16, 8)).shape == (1, 3, 16, 16, 8)   # logits: no sigmoid clamp
    same_head = build_segmenter(3, 1, pretrained=genesis3d)
    assert torch.equal(same_head.decoder.head.weight, genesis3d["decoder"]["head.weight"])
    no_decoder = build_segmenter(3, 2, pretrained=moco3d)
    assert no_decoder.init_report["decoder"] is None
    encoder_only = build_segmenter(3, 2, pretrained=genesis3d, load_decoder=False)
    assert encoder_only.init_report["decoder"] is None


def test_imagenet_weights_only_from_a_local_file_and_only_2d(tmp_path, genesis3d):
    torch.manual_seed(0)
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    model = build_classifier(2, 3, imagenet_weights=path)
    reference = torch.load(path, weights_only=True)
    assert torch.equal(model.encoder.conv1.weight, reference["conv1.weight"])
    assert model.init_report["init"] == "imagenet"
    grey = build_segmenter(2, 1, imagenet_weights=path, in_channels=1)
    assert torch.allclose(grey.encoder.conv1.weight, reference["conv1.weight"].sum(1, keepdim=True))
    with pytest.raises(FileNotFoundError, match="never downloads"):
        build_classifier(2, 3, imagenet_weights=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="2D"):
        build_classifier(3, 1, imagenet_weights=path, width=4)
    with pytest.raises(ValueError, match="not both"):
        build_classifier(3, 1, pretrained=genesis3d, imagenet_weights=path)
