import dataclasses
import json

import pytest

from pcrl_lib.config import PROFILES, DataConfig, FinetuneConfig, PretrainConfig, Profile, get_profile


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


# ------------------------------------------------------------------------------------------- value checks
@pytest.mark.parametrize("section, key, value, message", [
    ("pretrain", "batch_size_2d", 0, "PretrainConfig.batch_size_2d must be an int >= 1, got 0"),
    ("pretrain", "epochs", 1.5, "PretrainConfig.epochs must be an int >= 1, got 1.5"),
    ("pretrain", "epochs", "abc", "PretrainConfig.epochs must be an int >= 1, got 'abc'"),
    ("pretrain", "epochs", True, "PretrainConfig.epochs must be an int >= 1, got True"),
    ("pretrain", "max_steps_per_epoch", -3, "PretrainConfig.max_steps_per_epoch must be an int >= 0, got -3"),
    ("pretrain", "lr", 0, "PretrainConfig.lr must be a number > 0, got 0"),
    ("pretrain", "lr", float("nan"), "PretrainConfig.lr must be a number > 0, got nan"),
    ("pretrain", "m", 1.5, "PretrainConfig.m must be a number in [0, 1], got 1.5"),
    ("pretrain", "cube_size", (16, 16), "PretrainConfig.cube_size must be a list of 3 ints >= 1, got (16, 16)"),
    ("pretrain", "method", "simclr",
     "PretrainConfig.method must be one of models_genesis, moco, c2l, pcrl_recon, pcrl_tca, pcrl"),
    ("pretrain", "nce", "ce", "PretrainConfig.nce must be one of nce, infonce or None, got 'ce'"),
    ("pretrain", "precision", "half", "PretrainConfig.precision must be one of auto, fp32, bf16, fp16, got 'half'"),
    ("pretrain", "align_targets", "yes", "PretrainConfig.align_targets must be true or false, got 'yes'"),
    ("finetune", "label_fractions", (0.0, 1.0), "FinetuneConfig.label_fractions must be a non-empty list of numbers "
                                                "in (0, 1], got (0.0, 1.0)"),
    ("finetune", "seeds", (), "FinetuneConfig.seeds must be a non-empty list of ints >= 0, got ()"),
    ("finetune", "patience", -1, "FinetuneConfig.patience must be an int >= 0, got -1"),
    ("data", "spacing_mm", -1.0, "DataConfig.spacing_mm must be a number > 0, got -1.0"),
    ("data", "num_workers", 0.5, "DataConfig.num_workers must be an int >= 0, got 0.5"),
])
def test_bad_values_raise_one_line_naming_field_value_and_range(section, key, value, message):
    # the same check through every door: a section's override, the profile (flat and nested) and from_dict
    cfg = get_profile("quick")
    for build in (lambda: getattr(cfg, section).override(**{key: value}),
                  lambda: get_profile("quick", **{f"{section}__{key}": value}),
                  lambda: cfg.override(**{section: {key: value}}),
                  lambda: type(getattr(cfg, section)).from_dict({key: value})):
        with pytest.raises(ValueError) as err:
            build()
        assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_values_are_converted_to_the_field_type():
    cfg = PretrainConfig(lr=1, epochs=2.0, cube_size=[8, 8, 4], nce=None)
    assert (cfg.lr, cfg.epochs, cfg.cube_size) == (1.0, 2, (8, 8, 4))
    assert isinstance(cfg.lr, float) and isinstance(cfg.epochs, int)
    assert get_profile("smoke", finetune__seeds=[3]).finetune.seeds == (3,)


def test_choices_match_the_library():
    from pcrl_lib import config, pcrl, pretrain_runs
    from pcrl_lib.contrastive import ESTIMATORS
    from pcrl_lib.precision import PRECISIONS

    # One method list: what the config accepts, what pretrain_runs pretrains and what pcrl builds are the same object.
    assert PretrainConfig._CHOICES["method"] is config.PRETRAIN_METHODS is pretrain_runs.PRETRAIN_METHODS \
        is pcrl.METHOD_NAMES
    assert set(pcrl.METHODS) | {"models_genesis"} == set(config.PRETRAIN_METHODS)
    assert FinetuneConfig._CHOICES["methods_cls"] == ("scratch", *config.PRETRAIN_METHODS)
    assert tuple(PretrainConfig._CHOICES["nce"]) == tuple(ESTIMATORS)
    assert tuple(PretrainConfig._CHOICES["precision"]) == tuple(PRECISIONS)
    assert tuple(FinetuneConfig._CHOICES["precision"]) == tuple(PRECISIONS)


@pytest.mark.parametrize("key, value, message", [
    ("batch_size_2d", "0", "PretrainConfig.batch_size_2d must be an int >= 1, got 0"),
    ("epochs", "1.5", "PretrainConfig.epochs must be an int >= 1, got 1.5"),
    ("max_steps_per_epoch", "-3", "PretrainConfig.max_steps_per_epoch must be an int >= 0, got -3"),
    ("epochs", "abc", "PretrainConfig.epochs must be an int >= 1, got 'abc'"),
])
def test_train_cli_refuses_bad_values_in_one_line_before_any_work(tmp_path, capsys, key, value, message):
    from pcrl_lib import pretrain_cli

    out = tmp_path / "run"
    code = pretrain_cli.main(["--dim", "2", "--profile", "smoke", "--data", str(tmp_path / "cache"), "--output-dir", str(out),
                       "-p", key, value])
    err = capsys.readouterr().err
    assert code == 2 and err == f"error: {message}\n"
    assert not out.exists()  # refused before the output folder (or anything else) was touched


def test_segmentation_and_comparison_knobs_are_config_fields():
    """The per-profile settings of the downstream notebooks live in the profiles (values as they were)."""
    smoke, quick, paper = (get_profile(name) for name in ("smoke", "quick", "paper"))
    spacing = {p.name: (p.data.lits_spacing_mm, p.data.brats_spacing_mm, p.data.seg_demo_spacing_mm)
               for p in (smoke, quick, paper)}
    assert spacing == {"smoke": (2.0, 2.0, 6.0), "quick": (1.5, 2.0, 4.0), "paper": (1.0, 1.0, 3.0)}
    assert [(p.finetune.seg_overlap, p.finetune.seg_lr_factor) for p in (smoke, quick, paper)] == \
        [(0.25, 3.0), (0.25, 3.0), (0.5, 1.0)]
    chain = ("scratch", "models_genesis", "moco", "c2l", "pcrl_recon", "pcrl_tca", "pcrl")
    assert (smoke.finetune.methods_cls, quick.finetune.methods_cls, paper.finetune.methods_cls) == \
        (("scratch", "pcrl"), chain, chain)
    assert (smoke.finetune.methods_seg, quick.finetune.methods_seg, paper.finetune.methods_seg) == \
        (("scratch", "pcrl"), ("scratch", "models_genesis", "pcrl"), chain)
    assert get_profile("quick", finetune__methods_seg=["scratch", "moco"]).finetune.methods_seg == ("scratch", "moco")
    with pytest.raises(ValueError, match=r"FinetuneConfig.methods_cls must be a non-empty list of scratch, "
                                         r"models_genesis, .*, got \('scratch', 'simclr'\)"):
        FinetuneConfig(methods_cls=("scratch", "simclr"))
    with pytest.raises(ValueError, match="FinetuneConfig.methods_seg must be a non-empty list"):
        FinetuneConfig(methods_seg=())


def test_one_source_per_size():
    """The cube is PretrainConfig's alone; the 2D cache side is DataConfig.source_size_2d, the views' side
    PretrainConfig.image_size_2d."""
    names = {f.name for f in dataclasses.fields(DataConfig)}
    assert "cube_size" not in names and "image_size_2d" not in names and "source_size_2d" in names
    assert get_profile("paper").data.source_size_2d == 1024 and get_profile("paper").pretrain.image_size_2d == 224
