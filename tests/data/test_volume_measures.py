"""Volume's physical measures (used by notebook 01 instead of functions defined in the notebook)."""

import numpy as np

from pcrl_lib.data.volume import Volume


def test_extent_and_mask_volume_follow_the_spacing():
    mask = np.zeros((10, 20, 4), dtype=np.uint8)
    mask[:5, :10, :2] = 1                                    # 100 voxels of 0.5 × 0.5 × 2 mm = 50 mm³
    volume = Volume(mask, spacing=(0.5, 0.5, 2.0))
    assert volume.extent_mm.tolist() == [5.0, 10.0, 8.0]
    assert volume.volume_ml() == 0.05
