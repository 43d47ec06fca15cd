"""The fine-tuning side of the downstream tasks: their models, fine-tuned weights, configs and run folders."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from pcrl_lib.config import get_profile
from pcrl_lib.data import tasks_seg
from pcrl_lib.finetune import SegmentationTask, segment
from pcrl_lib.finetune.classify import classification_task, classifier_factory
from pcrl_lib.finetune.few_label import (classification_run_folder, encoder_tag, segmentation_run_folder,
                                         study_settings)
from pcrl_lib.models.exports import load_finetuned
from pcrl_lib.transforms import normalize


def _tiny(spatial_dims=2):
    """What the fine-tuning side reads of a ClassificationData: its name, classes, dimensionality and variant."""
    return SimpleNamespace(name="toy", class_names=("a",), spatial_dims=spatial_dims, variant="v")


# ------------------------------------------------------------------------------------------ classification
def test_task_normalises_2d_inputs_like_pretraining_and_builders_match_the_exports():
    data2 = _tiny()
    x = torch.rand(2, 1, 8, 8)
    task = classification_task(data2)
    assert torch.allclose(task.transform(x.expand(-1, 3, -1, -1)), normalize(x.expand(-1, 3, -1, -1)))
    assert task.describe()["transform"] == "ImageNetNormalize" and task.class_names == ("a",)
    data3 = _tiny(spatial_dims=3)
    assert classification_task(data3).transform is None
    model = classifier_factory(data3, None, width=4)()
    assert model.encoder.out_channels[-1] == model.head.fc.in_features == 16 * 4 and model.num_classes == 1
    assert classifier_factory(data2, None, width=4)().encoder.out_channels[-1] == 512   # 2D: a fixed ResNet-18


def test_encoder_tag_follows_the_export(tmp_path):
    export = tmp_path / "encoder.pt"
    export.write_bytes(b"one")
    first = encoder_tag(export)
    export.write_bytes(b"other export")
    assert encoder_tag(None) == "none" and encoder_tag(export) != first


def test_classification_run_folder_names_the_data_build_and_the_encoder(tmp_path):
    data = _tiny()
    export = tmp_path / "encoder.pt"
    export.write_bytes(b"weights")
    folder = classification_run_folder(tmp_path, data, "pcrl", export)
    assert folder == tmp_path / "finetune" / "toy" / "v" / f"pcrl-{encoder_tag(export)}"
    assert classification_run_folder(tmp_path, data, "scratch", None).name == "scratch-none"


# -------------------------------------------------------------------------------------------- segmentation
def _tiny_seg(channels: int, structures: dict) -> tasks_seg.SegmentationData:
    return tasks_seg.SegmentationData(task="brats", source="synthetic", prepared=None, splits={},
                                      structures=structures, channels=tuple(f"c{i}" for i in range(channels)),
                                      spacing_mm=2.0)


def test_segmenter_factory_and_finetuned_weights_round_trip(tmp_path):
    from pcrl_lib.checkpoint import atomic_save

    torch.manual_seed(0)
    data = _tiny_seg(4, tasks_seg.STRUCTURES["brats"])
    model = segment.segmenter_factory(data, width=4)()
    x = torch.randn(1, 4, 16, 16, 8)
    assert model(x).shape == (1, 3, 16, 16, 8) and model.init_report["init"] == "scratch"
    atomic_save(model.state_dict(), tmp_path / "best.pt")
    other = load_finetuned(segment.segmenter_factory(data, width=4)(), tmp_path / "best.pt")
    model.eval()
    assert torch.equal(other(x), model(x))
    with pytest.raises(ValueError, match=r"4 input channel\(s\) but this network takes 1"):
        load_finetuned(segment.segmenter_factory(_tiny_seg(1, data.structures), width=4)(),
                                 tmp_path / "best.pt")
    with pytest.raises(ValueError, match=r"3 structure\(s\) but this network predicts 1"):
        load_finetuned(segment.segmenter_factory(_tiny_seg(4, {"WT": (1, 2, 4)}), width=4)(),
                                 tmp_path / "best.pt")
    with pytest.raises(ValueError, match="another width"):
        load_finetuned(segment.segmenter_factory(data, width=8)(), tmp_path / "best.pt")


def test_segmenter_factory_loads_encoder_and_decoder_and_adapts_the_first_conv():
    from pcrl_lib.pcrl import build_method

    torch.manual_seed(0)
    export = build_method("models_genesis", 3, width=4).export()
    model = segment.segmenter_factory(_tiny_seg(4, tasks_seg.STRUCTURES["brats"]), export, width=999)()
    report = model.init_report
    assert report["init"] == "pretrained" and report["method"] == "models_genesis"
    assert report["encoder"]["adapted"] and report["decoder"]["loaded"] > 0
    first = next(k for k in export["encoder"] if k.endswith("weight"))
    assert model.encoder.state_dict()[first].shape[1] == 4
    torch.testing.assert_close(model.encoder.state_dict()[first].sum(1), export["encoder"][first].sum(1))
    encoder_only = segment.segmenter_factory(_tiny_seg(1, {"liver": (1, 2)}), export, load_decoder=False)()
    assert encoder_only.init_report["decoder"] is None


def test_run_folder_changes_with_the_encoder_the_task_and_the_settings(tmp_path):
    data = _tiny_seg(4, tasks_seg.STRUCTURES["brats"])
    task = SegmentationTask("brats_synthetic", data.structures, (16, 16, 8))
    cfg = get_profile("smoke").finetune
    export = tmp_path / "encoder.pt"
    export.write_bytes(b"weights")
    base = segmentation_run_folder(tmp_path, data, task, cfg, "pcrl", export)
    assert base.parent == tmp_path / "finetune" / "brats_synthetic" and base.name.startswith("pcrl-")
    assert segmentation_run_folder(tmp_path, data, task, cfg.override(seeds=(5,), label_fractions=(0.2,)), "pcrl",
                                export) == base                     # fractions and seeds are sub-folders
    assert segmentation_run_folder(tmp_path, data, task, cfg.override(epochs=3), "pcrl", export) != base
    assert segmentation_run_folder(tmp_path, data, SegmentationTask("brats_synthetic", data.structures, (16, 16, 16)),
                                cfg, "pcrl", export) != base
    assert segmentation_run_folder(tmp_path, data, task, cfg, "scratch", None).name.startswith("scratch-none-")
    export.write_bytes(b"other weights")                              # a re-pretrained encoder
    assert segmentation_run_folder(tmp_path, data, task, cfg, "pcrl", export) != base


def test_segmentation_notebook_defaults():
    paper, quick = segment.segmentation_config("paper"), segment.segmentation_config("quick")
    assert paper.lr == get_profile("paper").finetune.lr                       # the paper's rate on a GPU
    assert quick.lr == pytest.approx(3 * get_profile("quick").finetune.lr)    # ~60 CPU steps need a larger one
    assert segment.segmentation_config("quick", epochs=2, lr=0.01).override() == quick.override(epochs=2, lr=0.01)
    data = tasks_seg.SegmentationData("lits", "synthetic", None, {"train": ("a", "b", "c"), "val": ("d",), "test": ("e",)},
                                      tasks_seg.STRUCTURES["lits"], ("CT",), 1.5)
    assert segment.default_patches_per_epoch(data) == 3 * segment.PATCHES_PER_CASE
    with pytest.raises(ValueError, match="unknown profile"):
        segment.segmentation_config("fast")


def test_segmentation_run_folder_ignores_the_fields_that_only_pick_runs(tmp_path):
    """The comparison lists, the lr factor (already in lr) and the overlap (already in the task) are not stamped,
    so a profile that differs only there reuses the same runs."""
    data = _tiny_seg(1, {"liver": (1, 2)})
    task = SegmentationTask("lits_synthetic", data.structures, (16, 16, 8))
    cfg = get_profile("smoke").finetune
    base = segmentation_run_folder(tmp_path, data, task, cfg, "pcrl", None)
    same = cfg.override(methods_cls=("scratch",), methods_seg=("pcrl",), seg_overlap=0.5, seg_lr_factor=1.0)
    assert segmentation_run_folder(tmp_path, data, task, same, "pcrl", None) == base


def test_study_settings_resolve_the_notebook_knobs_against_the_profile():
    smoke = get_profile("smoke")
    cls = study_settings(smoke, "cls")
    assert (cls.finetune, cls.methods, cls.fractions, cls.seeds) == (smoke.finetune, smoke.finetune.methods_cls,
                                                                      smoke.finetune.label_fractions, smoke.finetune.seeds)
    assert cls.window is None and cls.runs == len(cls.methods) * len(cls.fractions) * len(cls.seeds)
    chosen = study_settings(smoke, "cls", epochs=3, methods=["pcrl"], label_fractions=[1.0, 0.25], seeds=[2, 5])
    assert (chosen.finetune.epochs, chosen.methods, chosen.fractions, chosen.seeds) == (3, ("pcrl",), (0.25, 1.0), (2, 5))
    assert chosen.parameters() == {"methods": ["pcrl"], "label_fractions": [0.25, 1.0], "seeds": [2, 5], "epochs": 3}
    # Segmentation: the notebooks' segmentation rate and methods, the pretraining cube as window.
    seg = study_settings(smoke, "seg", epochs=2)
    assert seg.finetune == segment.segmentation_config("smoke", epochs=2) and seg.methods == smoke.finetune.methods_seg
    assert seg.window == tuple(smoke.pretrain.cube_size) and seg.overlap == smoke.finetune.seg_overlap
    assert study_settings(smoke, "seg", lr=0.01, window=[16, 16, 16], overlap=0.5).parameters()["window"] == [16, 16, 16]
    assert "lr 0.01" in str(study_settings(smoke, "seg", lr=0.01))


@pytest.mark.parametrize("knobs, named", [({"label_fractions": [0, 1]}, "LABEL_FRACTIONS"),
                                          ({"methods": ["pcr"]}, "METHODS"), ({"seeds": [-1]}, "SEEDS"),
                                          ({"epochs": 0}, "EPOCHS"), ({"task": "det"}, "task"),
                                          ({"task": "seg", "overlap": 1.0}, "OVERLAP"),
                                          ({"lr": 0.1}, "segmentation settings")])
def test_study_settings_name_the_bad_knob(knobs, named):
    knobs = {"task": "cls", **knobs}
    with pytest.raises(ValueError, match=named):
        study_settings(get_profile("smoke"), knobs.pop("task"), **knobs)
