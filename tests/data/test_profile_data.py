"""pcrl_lib.data.profile_data: which files a profile pretrains on, and the prepared caches built from them.

Embedded data (demo + smoke synthetic) comes from the shared cache, prepared once by ``prepare_embedded``; every
test writes its *prepared* caches into a temporary ``PCRL_CACHE`` whose ``demo`` and ``synthetic`` folders link
to the shared ones, so tests never race the notebooks over the shared ``prepared/`` folder. The "real data" is
synthetic look-alikes written into a temporary ``DATA_ROOT/{nih,luna16}``: same formats, same code path.
"""

import json
import shutil

import numpy as np
import pytest
import torch

from pcrl_lib.data import luna16, profile_data, synthetic
from pcrl_lib.data.cache import read_manifest
from pcrl_lib.data.demo import load_manifest
from pcrl_lib.data.dicom import read_dicom_image
from pcrl_lib.data.images2d import load_image
from pcrl_lib.data.splits import nih_splits


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """A DATA_ROOT laid out like the real datasets; subset7 holds a scan the paper does not pretrain on."""
    root = tmp_path_factory.mktemp("DATA_ROOT")
    synthetic.write("nih", root / "nih", n=16, seed=1, size=32)
    synthetic.write("luna16", root / "luna16", n=2, seed=1, size=48)
    held_out = root / "luna16" / "subset7"
    held_out.mkdir()
    for file in (root / "luna16" / "subset0").iterdir():
        shutil.copy(file, held_out / file.name)
    return root


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """A PCRL_CACHE with nothing in it: real-data runs must not need the demo or synthetic data."""
    monkeypatch.setenv("PCRL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# ---------------------------------------------------------------------------------- demo + synthetic
def test_embedded_lists_name_existing_files_without_held_out_images(embedded):
    images = profile_data.pretraining_images_2d("smoke")
    scans = profile_data.pretraining_scans_3d("smoke")
    assert images and scans and all(p.is_file() for p in images + scans)
    assert {p.suffix.lower() for p in images} == {".jpeg", ".png"}
    assert sum(p.suffix.lower() == ".jpeg" for p in images) == 16
    # The synthetic NIH part is its training split: no test-list image, no validation patient.
    nih_root = embedded / "synthetic" / "smoke" / "nih"
    splits = nih_splits(nih_root)
    synthetic_names = {p.name for p in images if p.parent.parent.name == "nih"}
    assert synthetic_names == set(splits["train"]["image"])
    assert not synthetic_names & (set(splits["test"]["image"]) | set(splits["val"]["image"]))
    assert not set(splits["train"]["patient_id"]) & set(splits["val"]["patient_id"])
    demo = load_manifest()
    assert scans[:3] == [demo.path(key) for key in profile_data.DEMO_CHEST_CTS]
    assert scans[3:] == luna16.list_scans((embedded / "synthetic" / "smoke" / "luna16").resolve(), range(7))


def test_dicom_radiograph_becomes_an_inverted_png_once(embedded):
    png = profile_data.demo_radiograph_png()
    assert png.parent == embedded / "prepared" / "demo" and png in profile_data.pretraining_images_2d("smoke")
    converted = load_image(png)
    expected, meta = read_dicom_image(load_manifest().path(profile_data.DEMO_DICOM_RADIOGRAPH))
    assert meta.photometric == "MONOCHROME1" and meta.inverted
    assert converted.shape == expected.shape == (1955, 1841)
    np.testing.assert_allclose(converted, expected, atol=1 / 65535 + 1e-6)
    record = json.loads(png.with_suffix(".json").read_text())
    assert record["inverted"] is True and record["photometric"] == "MONOCHROME1"
    stamp = png.stat().st_mtime_ns
    assert profile_data.demo_radiograph_png() == png and png.stat().st_mtime_ns == stamp  # reused, not rewritten
    png.with_suffix(".json").write_text("{broken")  # a damaged record: converted again, not trusted
    assert load_image(profile_data.demo_radiograph_png()).shape == (1955, 1841)
    assert json.loads(png.with_suffix(".json").read_text())["format"] == record["format"]


def test_prepared_sets_have_the_profile_shapes_and_are_reused(embedded):
    images = profile_data.pretraining_images_2d("smoke")
    set_2d = profile_data.pretraining_set_2d("smoke", progress=False)
    assert set_2d.root == embedded / "prepared" / "smoke" / "pretrain_2d_64px"
    assert len(set_2d) == len(images) and set_2d.paths == [str(p.resolve()) for p in images]
    image = set_2d[0]
    assert image.shape == (1, 64, 64) and image.dtype == torch.float32
    assert 0.0 <= image.min() < image.max() <= 1.0

    with pytest.warns(UserWarning, match="margin reduced"):  # the tiny look-alike scans: adapted, and said so
        set_3d = profile_data.pretraining_set_3d("smoke", progress=False)
    manifest = read_manifest(set_3d.root, "pretraining_cubes")
    assert sorted(manifest["items"]) == sorted(set_3d.scans) and len(set_3d.scans) == 6
    pairs = [entry["n_pairs"] for entry in manifest["items"].values()]
    assert len(set_3d) == sum(pairs) and all(1 <= n <= 4 for n in pairs)  # smoke: 4 pairs per scan at most
    assert all(iou > 0.25 for entry in manifest["items"].values() for iou in entry["iou"])
    pair = set_3d[0]
    assert pair.shape == (2, 1, 16, 16, 8) and pair.dtype == torch.float32
    assert not torch.equal(pair[0], pair[1])  # two different crops

    stamps = {f.name: f.stat().st_mtime_ns for root in (set_2d.root, set_3d.root) for f in root.glob("*.npy")}
    manifests = (read_manifest(set_2d.root), manifest)
    again_2d = profile_data.pretraining_set_2d("smoke", progress=False)
    with pytest.warns(UserWarning, match="margin reduced"):
        again_3d = profile_data.pretraining_set_3d("smoke", progress=False)
    assert (read_manifest(again_2d.root), read_manifest(again_3d.root)) == manifests
    assert {f.name: f.stat().st_mtime_ns for root in (set_2d.root, set_3d.root) for f in root.glob("*.npy")} == stamps
    assert torch.equal(again_3d[0], pair)
    assert profile_data.pretraining_set_2d("smoke", size=32, progress=False)[0].shape == (1, 32, 32)
    rebuilt = profile_data.pretraining_set_2d("smoke", progress=False, force=True)
    assert (rebuilt.root / "images.npy").stat().st_mtime_ns != stamps["images.npy"]
    assert torch.equal(rebuilt[0], image)


def test_inventory_counts_every_input_with_its_format_and_bytes(embedded):
    table = profile_data.pretraining_inventory("smoke")
    assert len(table) == (len(profile_data.pretraining_images_2d("smoke"))
                          + len(profile_data.pretraining_scans_3d("smoke")))
    assert set(table["format"]) >= {"JPEG", "PNG", "NRRD", "NIfTI (gzip)", "MetaImage (.mhd header + .raw voxels)"}
    assert (table["bytes"] > 0).all()
    mhd = table[table["format"].str.startswith("MetaImage")].iloc[0]
    assert mhd["bytes"] > 10 * (len(open(mhd["path"]).read()))  # the .raw voxels are counted, not just the header


def test_missing_demo_data_says_how_to_fetch(empty_cache):
    with pytest.raises(FileNotFoundError, match="fetch"):
        profile_data.pretraining_images_2d("smoke")
    assert not (empty_cache / "synthetic").exists()  # failed before writing anything


# ------------------------------------------------------------------------------------------ real data
def test_data_root_takes_the_real_layout_path(data_root, empty_cache):
    images = profile_data.pretraining_images_2d("paper", data_root)
    train = nih_splits(data_root / "nih")["train"]
    assert images == [(data_root / "nih" / "images" / name).resolve() for name in train["image"]]
    test_names = set((data_root / "nih" / "test_list.txt").read_text().split())
    assert test_names and not {p.name for p in images} & test_names
    scans = profile_data.pretraining_scans_3d("paper", data_root)
    assert scans == luna16.list_scans(data_root / "luna16", range(7)) and len(scans) == 2
    assert all("subset7" not in str(p) for p in scans)

    root = profile_data.prepared_root("smoke", data_root)
    assert root.parent == empty_cache.resolve() / "prepared" and root.name.startswith("data-")
    set_2d = profile_data.pretraining_set_2d("smoke", data_root, size=16, progress=False)
    assert set_2d.root.parent == root and len(set_2d) == len(images) and set_2d[0].shape == (1, 16, 16)
    with pytest.warns(UserWarning, match="margin reduced"):
        set_3d = profile_data.pretraining_set_3d("smoke", data_root, cube=(16, 16, 8), pairs_per_scan=2, progress=False)
    assert set_3d.root.name == "pretrain_3d_16x16x8_p2_s0" and len(set_3d) >= 2
    assert set_3d[len(set_3d) - 1].shape == (2, 1, 16, 16, 8)
    assert not (empty_cache / "demo").exists() and not (empty_cache / "synthetic").exists()


def test_bad_data_root_and_arguments_give_clear_errors(data_root, tmp_path, empty_cache):
    with pytest.raises(FileNotFoundError, match="DATA_ROOT .*nowhere: folder not found"):
        profile_data.pretraining_images_2d("paper", tmp_path / "nowhere")
    (tmp_path / "other").mkdir()
    with pytest.raises(FileNotFoundError, match="no 'luna16' folder"):
        profile_data.pretraining_scans_3d("paper", tmp_path / "other")
    with pytest.raises(ValueError, match="profile 'paper' runs on the real datasets: pass data_root="):
        profile_data.pretraining_scans_3d("paper")
    with pytest.raises(ValueError, match="unknown profile"):
        profile_data.pretraining_images_2d("fast", data_root)
    with pytest.raises(ValueError, match="size must be an int >= 8"):
        profile_data.pretraining_set_2d("smoke", data_root, size=4)
    with pytest.raises(ValueError, match="cube must be three ints"):
        profile_data.pretraining_set_3d("smoke", data_root, cube=(16, 16))
    with pytest.raises(ValueError, match="pairs_per_scan must be a positive int"):
        profile_data.pretraining_set_3d("smoke", data_root, pairs_per_scan=0)


def test_incomplete_real_datasets_are_named(tmp_path, empty_cache):
    root = tmp_path / "DATA_ROOT"
    synthetic.write("nih", root / "nih", n=16, seed=2, size=32)
    train = nih_splits(root / "nih")["train"]
    (root / "nih" / "images" / train["image"].iloc[0]).unlink()
    with pytest.raises(FileNotFoundError, match=f"1 image.*not found, e.g. \\['{train['image'].iloc[0]}'\\]"):
        profile_data.pretraining_images_2d("paper", root)
    listed = root / "nih" / "train_val_list.txt"
    listed.write_text(listed.read_text() + "99999999_000.png\n")
    with pytest.raises(ValueError, match="train_val_list.txt: 1 image.*not in the label table"):
        profile_data.pretraining_images_2d("paper", root)
    (root / "luna16" / "subset8").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no .mhd scans in subset0..subset6"):
        profile_data.pretraining_scans_3d("paper", root)
