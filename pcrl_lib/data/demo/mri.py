"""Demo brain MRI data (real but tiny; for demos and tests, never for reported results).

The two pyradiomics brain cases (``brain1``, ``brain2``: 256×256 pixels of 0.78 mm, 6.5 mm slices) each
hold ONE MR sequence (the files do not say which) and a tumour mask. BraTS, the paper's brain dataset,
has four co-registered sequences per case (T1, T1ce, T2, FLAIR) and a multi-class mask; with
``channels > 1`` the single sequence is repeated so a multi-channel model can run, which adds no
information (the records say so in ``replicated`` and ``channel_names``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..volume import Volume, read_volume
from .fetching import load_manifest

CASES = ("brain1", "brain2")


@dataclass
class BrainMRI:
    """One demo case: ``image`` the MR sequence ``(X, Y, Z)`` (scanner units, not normalised);
    ``channels`` float32 ``(C, X, Y, Z)``; ``tumour`` a {0,1} uint8 mask on the same grid."""

    name: str
    image: Volume
    channels: np.ndarray
    channel_names: tuple[str, ...]
    replicated: bool
    tumour: Volume

    @property
    def tumour_ml(self) -> float:
        return float(self.tumour.array.sum() * np.prod(self.tumour.spacing) / 1000.0)


def brain_mris(channels: int = 1, cache_dir: str | os.PathLike | None = None) -> list[BrainMRI]:
    """DEMO: the two brain MRIs with tumour masks; ``channels`` copies of the single sequence (see module)."""
    if not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels must be a positive int, got {channels!r}")
    manifest = load_manifest(cache_dir)
    cases = []
    for name in CASES:
        image = read_volume(manifest.path(f"pyradiomics/{name}_image.nrrd"))
        tumour = read_volume(manifest.path(f"pyradiomics/{name}_label.nrrd"), dtype=np.uint8)
        tumour.array = (tumour.array > 0).astype(np.uint8)
        if tumour.shape != image.shape:
            raise ValueError(f"{tumour.path}: mask shape {tumour.shape} differs from the image's {image.shape}")
        names = ("MR",) if channels == 1 else tuple(f"MR (copy {k + 1} of {channels})" for k in range(channels))
        cases.append(BrainMRI(name=name, image=image,
                              channels=np.broadcast_to(image.array, (channels, *image.shape)).copy(),
                              channel_names=names, replicated=channels > 1, tumour=tumour))
    return cases
