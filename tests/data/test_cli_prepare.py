"""``python -m pcrl_lib.data.cli prepare``: the cache that ``python -m pcrl_lib.train --data`` takes."""

import subprocess
import sys

import pytest

from pcrl_lib.data.cache import ImageCacheDataset


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "pcrl_lib.data.cli", *args], capture_output=True, text=True)


def test_paper_profile_without_data_root_is_a_clear_error():
    proc = _cli("prepare", "--dim", "2", "--profile", "paper")
    assert proc.returncode == 2
    assert "pass data_root=" in proc.stderr and "--data-root" in proc.stderr


@pytest.mark.network
def test_prepare_prints_a_cache_folder_the_trainer_reads():
    from pcrl_lib.data.embedded import prepare_embedded

    prepare_embedded("smoke", log=lambda *_: None)
    proc = _cli("prepare", "--dim", "2", "--profile", "smoke")
    assert proc.returncode == 0, proc.stderr
    folder = proc.stdout.strip().rsplit(" ready in ", 1)[1]
    dataset = ImageCacheDataset(folder)
    assert len(dataset) == int(proc.stdout.split()[0]) > 0
    assert tuple(dataset[0].shape[-2:]) == (64, 64)
