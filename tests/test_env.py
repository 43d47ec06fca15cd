import random

import numpy as np
import pytest
import torch

from pcrl_lib import env


def _draw():
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_seed_everything_is_deterministic_and_seed_dependent():
    env.seed_everything(3)
    a = _draw()
    env.seed_everything(3)
    b = _draw()
    env.seed_everything(4)
    c = _draw()
    assert a == b and a != c


def test_seed_everything_returns_seeded_generator():
    g1, g2 = env.seed_everything(5), env.seed_everything(5)
    assert torch.equal(torch.rand(4, generator=g1), torch.rand(4, generator=g2))


def test_seed_rejects_bad_seed():
    with pytest.raises(ValueError, match="seed"):
        env.seed_everything(-1)


def test_dataloader_workers_get_distinct_but_reproducible_numpy_streams():
    class NumpyDraw(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.tensor(np.random.rand())

    def run():
        loader = torch.utils.data.DataLoader(NumpyDraw(), batch_size=1, num_workers=2, worker_init_fn=env.seed_worker,
                                             generator=torch.Generator().manual_seed(0))
        return [float(x) for x in loader]

    first, second = run(), run()
    assert first == second
    assert len(set(first)) == 4  # without seed_worker both workers would repeat the same numpy draws


def test_pick_device():
    assert env.pick_device("cpu").type == "cpu"
    assert env.pick_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="DEVICE='gpu0'"):
        env.pick_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            env.pick_device("cuda")


def test_report_has_the_fields_records_need(capsys):
    info = env.report("smoke", None, "cpu")
    for key in ("versions", "device", "torch_threads", "profile", "data_root", "git_commit"):
        assert key in info
    assert info["versions"]["torch"] == torch.__version__ and info["profile"] == "smoke"
    assert "torch" in capsys.readouterr().out
