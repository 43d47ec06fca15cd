"""Synthetic brain MRI with a glioma, in the BraTS 2018 layout (four modalities + a label map).

The brain (skull-stripped, zero outside) has white matter, a folded grey-matter cortex and ventricles.
The tumour is a deformed ball around a centre in one hemisphere: a necrotic / non-enhancing core
(label 1), an enhancing rim (label 4, bright on T1ce only) and surrounding edema (label 2, bright on
T2 and FLAIR). Low-grade cases (every third case, folder ``LGG/``) have no enhancing rim.

``difficulty`` in [0, 1] pulls the tumour intensities towards white matter (× 1 − 0.6·difficulty) and
raises the noise; each modality also gets its own smooth bias field, as real scans do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..brats import MODALITIES
from .ct import save_nifti
from .fields import ellipse_radius, grid, smooth_noise

TISSUES = ("background", "csf", "grey", "white", "necrosis", "edema", "enhancing")
# Relative intensity of each tissue per modality (rows follow MODALITIES, columns TISSUES).
CONTRAST = np.array([
    [0.0, 0.30, 0.65, 0.85, 0.35, 0.55, 0.60],   # t1
    [0.0, 0.30, 0.65, 0.85, 0.35, 0.55, 1.35],   # t1ce: the blood-brain-barrier breakdown enhances
    [0.0, 1.50, 0.85, 0.55, 1.30, 1.10, 0.90],   # t2: fluid bright
    [0.0, 0.20, 0.75, 0.60, 0.70, 1.35, 0.95],   # flair: free water suppressed, edema bright
], dtype=np.float32)
SEG_OF_TISSUE = np.array([0, 0, 0, 0, 1, 2, 4], dtype=np.uint8)


def brain_mri(rng: np.random.Generator, size: int = 64, difficulty: float = 0.3, high_grade: bool = True
              ) -> tuple[np.ndarray, np.ndarray, dict]:
    """One case: ``image`` float32 ``(4, X, Y, Z)`` (MODALITIES order, zero outside the brain), ``seg`` uint8
    ``(X, Y, Z)`` with labels {0, 1, 2, 4}, and the tumour's description (centre voxel, radius in voxels).

    The grid is ``(size, size, round(size · 155 / 240))``, BraTS's aspect, at 1 mm.
    """
    shape = (size, size, max(8, round(size * 155 / 240)))
    u, v, w = (g[0] for g in grid(shape))
    fold = smooth_noise(rng, shape, size / 40)
    brain_r = ellipse_radius([u, v, w], [0.0, 0.0, 0.0], [0.78, 0.9, 0.85]) + 0.04 * smooth_noise(rng, shape, size / 10)
    brain = brain_r < 1.0
    tissue = np.zeros(shape, dtype=np.uint8)
    tissue[brain] = TISSUES.index("white")
    tissue[brain & (brain_r + 0.08 * fold > 0.82)] = TISSUES.index("grey")
    tissue[brain & (brain_r > 0.96)] = TISSUES.index("csf")            # subarachnoid space
    for cu in (-0.12, 0.12):                                             # lateral ventricles
        tissue[ellipse_radius([u, v, w], [cu, -0.05, 0.1], [0.07, 0.3, 0.12]) < 1.0] = TISSUES.index("csf")

    side = rng.choice([-1.0, 1.0])
    centre = np.array([side * rng.uniform(0.25, 0.45), rng.uniform(-0.4, 0.4), rng.uniform(-0.3, 0.4)])
    reach = rng.uniform(0.25, 0.4)                                       # edema radius, normalised units
    dist = ellipse_radius([u, v, w], list(centre), [reach] * 3) + 0.15 * smooth_noise(rng, shape, size / 16)
    core, rim = rng.uniform(0.25, 0.4), rng.uniform(0.5, 0.65)
    tumour = brain & (dist < 1.0)
    tissue[tumour] = TISSUES.index("edema")
    if high_grade:
        tissue[brain & (dist < rim)] = TISSUES.index("enhancing")
        tissue[brain & (dist < core)] = TISSUES.index("necrosis")
    else:
        tissue[brain & (dist < rim)] = TISSUES.index("necrosis")       # non-enhancing core (also label 1)

    contrast = CONTRAST.copy()
    white = contrast[:, TISSUES.index("white")][:, None]
    lesion = slice(TISSUES.index("necrosis"), None)
    contrast[:, lesion] = white + (contrast[:, lesion] - white) * (1 - 0.6 * difficulty)
    clean = contrast[:, tissue]                                          # (4, X, Y, Z) by fancy indexing
    texture = 1 + 0.04 * smooth_noise(rng, (4, *shape), 1.0, ndim=3)
    bias = np.exp(0.12 * smooth_noise(rng, (4, *shape), size / 3, ndim=3))
    sigma = 0.03 + 0.05 * difficulty
    # Magnitude images: Rician noise from two Gaussian channels.
    signal = clean * texture * bias
    noisy = np.sqrt((signal + sigma * rng.standard_normal(signal.shape, dtype=np.float32)) ** 2
                    + (sigma * rng.standard_normal(signal.shape, dtype=np.float32)) ** 2)
    image = np.where(brain[None], noisy, 0.0).astype(np.float32)
    seg = SEG_OF_TISSUE[tissue]
    voxel_centre = np.rint((centre + 1) / 2 * (np.asarray(shape) - 1)).astype(int)
    return image, seg, {"centre_voxel": voxel_centre.tolist(), "high_grade": bool(high_grade)}


def write_brats(root: Path, n: int, seed: int, size: int, difficulty: float) -> dict:
    """``HGG/<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz`` (every third case under ``LGG/``), case names
    ``Brats18_SYN_NNN_1``; modalities int16 (scaled to ~0..1000), seg uint8, 1 mm, BraTS-like affine."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        high_grade = i % 3 != 2
        image, seg, tumour = brain_mri(rng, size, difficulty, high_grade)
        name = f"Brats18_SYN_{i:03d}_1"
        folder = root / ("HGG" if high_grade else "LGG") / name
        origin = (0.0, -(size - 1.0), 0.0)  # BraTS files put voxel (0, 239, 0) at the RAS origin
        scaled = np.clip(np.rint(image * 700), 0, 32767).astype(np.int16)
        for modality, volume in zip(MODALITIES, scaled):
            save_nifti(volume, (1.0, 1.0, 1.0), folder / f"{name}_{modality}.nii.gz", origin)
        save_nifti(seg, (1.0, 1.0, 1.0), folder / f"{name}_seg.nii.gz", origin)
        counts = {str(label): int((seg == label).sum()) for label in (1, 2, 4)}
        cases.append({"case": name, "folder": str(folder.relative_to(root)), "shape": list(seg.shape),
                      "grade": "HGG" if high_grade else "LGG", "tumour": tumour, "label_voxels": counts})
    return {"cases": cases}
