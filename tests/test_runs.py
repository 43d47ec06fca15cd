"""pcrl_lib.runs: the kit writes (and deletes with force) only in its own run folders, one run at a time."""

from __future__ import annotations

import json
import os

import pytest

from pcrl_lib.runs import LOCK, MARKER, RunFolderBusy, RunFolderError, read_marker, run_folder


def _listing(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_new_folder_is_created_marked_and_locked_while_held(tmp_path):
    out = tmp_path / "a" / "run"
    with run_folder(out, "pretrain") as held:
        assert held.created and not held.adopted
        marker = read_marker(out)
        assert marker["kind"] == "pretrain" and marker["kit_version"] and marker["created"]
        assert (out / LOCK).read_text().strip() == str(os.getpid())
        # A second run (here a second open file description, as another process would hold) is refused at once.
        with pytest.raises(RunFolderBusy, match=rf"is in use by another run \(PID {os.getpid()}\)") as info:
            with run_folder(out, "pretrain"):
                pass
        assert info.value.pid == os.getpid() and "\n" not in str(info.value)
    with run_folder(out, "pretrain") as again:  # released at the end of the block, marker kept
        assert not again.created


def test_a_folder_with_a_users_files_is_refused_even_with_force(tmp_path):
    (tmp_path / "history.json").write_text("mine")
    (tmp_path / "checkpoints").mkdir()
    for force in (False, True):
        with pytest.raises(RunFolderError, match="holds files the kit did not write .*choose an empty or new folder"):
            with run_folder(tmp_path, "finetune", force=force):
                pass
    assert _listing(tmp_path) == ["checkpoints", "history.json"]  # nothing deleted, no marker, no lock file


def test_force_deletes_only_this_kinds_run_files_inside_a_marked_folder(tmp_path):
    with run_folder(tmp_path, "finetune"):
        (tmp_path / "checkpoints").mkdir()
        (tmp_path / "checkpoints" / "last.pt").write_bytes(b"x")
        for name in ("best.pt", "history.json", "results.json", "notes.txt"):
            (tmp_path / name).write_text("x")
    with run_folder(tmp_path, "finetune", force=True):
        assert _listing(tmp_path) == [LOCK, MARKER, "notes.txt"]


def test_an_older_kits_run_folder_is_adopted(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    for name in ("last.pt", "config.json", "last.json"):
        (tmp_path / "checkpoints" / name).write_text("x")
    (tmp_path / "history.json").write_text("[]")
    with run_folder(tmp_path, "pretrain") as held:
        assert held.adopted and read_marker(tmp_path)["adopted"]
    other = tmp_path.parent / "other"
    other.mkdir()
    (other / "checkpoints").mkdir()
    (other / "checkpoints" / "last.pt").write_text("x")
    with pytest.raises(RunFolderError, match="did not write"):  # last.pt alone is not enough to adopt it
        with run_folder(other, "pretrain"):
            pass


def test_a_run_of_another_kind_and_bad_paths_are_one_line_errors(tmp_path):
    with run_folder(tmp_path / "pre", "pretrain"):
        pass
    with pytest.raises(RunFolderError, match="holds a pretrain run; a finetune run needs a folder of its own"):
        with run_folder(tmp_path / "pre", "finetune"):
            pass
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunFolderError, match="is a file"):
        with run_folder(tmp_path / "file", "pretrain"):
            pass
    with pytest.raises(RunFolderError, match="cannot be created"):
        with run_folder(tmp_path / "file" / "below", "pretrain"):
            pass
    with pytest.raises(ValueError, match="kind must be one of"):
        with run_folder(tmp_path / "x", "train"):
            pass


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write into a read-only folder")
def test_a_read_only_folder_is_a_one_line_error(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(RunFolderError, match="is read-only"):
            with run_folder(folder, "pretrain"):
                pass
    finally:
        folder.chmod(0o755)


def test_marker_is_plain_json(tmp_path):
    with run_folder(tmp_path, "pretrain"):
        pass
    assert set(json.loads((tmp_path / MARKER).read_text())) == {"kind", "kit_version", "created"}


def test_finetune_fit_with_force_never_deletes_a_users_files(tmp_path):
    import torch

    from pcrl_lib.config import get_profile
    from pcrl_lib.finetune import ClassificationTask, build_classifier, fit

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "thesis.tex").write_text("years of work")
    (tmp_path / "history.json").write_text("mine")
    data = [{"image": torch.rand(1, 16, 16, 8), "labels": torch.tensor([i % 2, 1 - i % 2], dtype=torch.float32)}
            for i in range(4)]
    cfg = get_profile("smoke").finetune.override(epochs=1, batch_size_3d=2, precision="fp32")
    with pytest.raises(RunFolderError, match="holds files the kit did not write"):
        fit(build_classifier(3, 2, width=4), ClassificationTask("toy", ["a", "b"], spatial_dims=3), data, data, cfg,
            tmp_path, force=True, progress=False)
    assert (tmp_path / "checkpoints" / "thesis.tex").read_text() == "years of work"
    assert (tmp_path / "history.json").read_text() == "mine"
