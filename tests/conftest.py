import os

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
os.environ.setdefault("TQDM_DISABLE", "1")
# Tests use tiny tensors, where extra threads cost more in synchronisation than they gain; one thread also keeps
# the test process from competing with the notebook kernels nbval starts.
torch.set_num_threads(1)


@pytest.fixture
def repo_root():
    from pcrl_lib.paths import repo_root

    return repo_root()
