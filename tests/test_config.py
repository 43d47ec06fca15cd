import json

import pytest

from pcrl_lib.config import PROFILES, PretrainConfig, Profile, get_profile


def test_profiles_exist_and_scale_up():
    smoke, quick, paper = (get_profile(p) for p in PROFILES)
    assert smoke.pretrain.epochs < quick.pretrain.epochs < paper.pretrain.epochs
    # the paper profile carries the paper's numbers (PCRL_SPEC §6, §8)
    assert paper.pretrain.K == 16384 and paper.pretrain.T == 0.2 and paper.pretrain.m == 0.999
    assert paper.pretrain.cube_size == (64, 64, 32) and paper.pretrain.image_size_2d == 224
    assert paper.pretrain.batch_size_2d == 64 and paper.pretrain.batch_size_3d == 16 and paper.pretrain.width_3d == 32
    assert paper.pretrain.lr == 1e-3 and paper.pretrain.epochs == 240


def test_unknown_profile_names_valid_ones():
    with pytest.raises(ValueError, match=r"unknown profile 'fast'; valid profiles: smoke, quick, paper"):
        get_profile("fast")


def test_section_override_returns_new_frozen_object():
    cfg = get_profile("quick").pretrain
    new = cfg.override(epochs=7, lr=0.01)
    assert (new.epochs, new.lr) == (7, 0.01) and cfg.epochs != 7
    with pytest.raises(Exception):
        new.epochs = 3  # frozen


def test_section_override_rejects_unknown_keys_listing_valid_ones():
    with pytest.raises(KeyError) as err:
        get_profile("quick").pretrain.override(epoch=3)
    assert "epoch" in str(err.value) and "valid keys" in str(err.value) and "epochs" in str(err.value)


@pytest.mark.parametrize("kw", [{"pretrain__epochs": 2}, {"pretrain": {"epochs": 2}}])
def test_profile_override_flat_and_nested(kw):
    p = get_profile("smoke", **kw)
    assert p.pretrain.epochs == 2 and p.name == "smoke"


def test_profile_override_rejects_unknown_section_and_key():
    with pytest.raises(KeyError, match="valid keys"):
        get_profile("smoke").override(optimizer__lr=1)
    with pytest.raises(KeyError, match="unknown PretrainConfig key"):
        get_profile("smoke").override(pretrain__lrate=1)
    with pytest.raises(TypeError, match="takes a dict"):
        get_profile("smoke").override(pretrain=3)


def test_json_round_trip_keeps_tuples():
    p = get_profile("paper")
    back = Profile.from_dict(json.loads(p.to_json()))
    assert back == p and isinstance(back.pretrain.cube_size, tuple)
    assert PretrainConfig.from_dict(p.pretrain.to_dict()) == p.pretrain
