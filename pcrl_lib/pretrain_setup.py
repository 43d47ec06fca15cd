"""Assembling a pretraining run from a config: the method, the label-free dataset and the views.

Used by the course (:func:`pcrl_lib.pretrain_runs.run_pretraining`, notebook 03 in 2D and 3D) and by the command line
(:mod:`pcrl_lib.pretrain_cli`); the loop itself is :mod:`pcrl_lib.train`.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import Dataset

from .config import PretrainConfig


class ImagesOnly(Dataset):
    """Pretraining is label-free: items ``(image, labels)`` become ``image``; other items pass unchanged."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        item = self.dataset[index]
        return item[0] if isinstance(item, tuple) else item


class GenesisViews:
    """Models Genesis input for the CLI (PCRL_SPEC §9): the first crop of each 3D pair ``(B, 2, 1, X, Y, Z)``,
    or the gray images ``(B, 1, S, S)`` repeated to 3 channels, distorted by ``GenesisRestoration``. 2D images
    from a cache larger than the views are resized (antialiased) to ``size`` first, the input size of PCRL's views."""

    def __init__(self, spatial_dims: int, size: int | None = None):
        from .transforms import GenesisRestoration

        self.spatial_dims, self.size = spatial_dims, size
        self.restoration = GenesisRestoration(spatial_dims)

    def __call__(self, raw: torch.Tensor, generator: torch.Generator):
        if self.spatial_dims == 3:
            return self.restoration(raw[:, 0], generator)
        if self.size is not None and tuple(raw.shape[-2:]) != (self.size, self.size):
            raw = torch.nn.functional.interpolate(raw, size=(self.size, self.size), mode="bilinear",
                                                  align_corners=False, antialias=True)
        return self.restoration(raw.expand(-1, 3, -1, -1), generator)


def assemble(cfg: PretrainConfig, spatial_dims: int, dataset: Dataset) -> tuple[nn.Module, Dataset, Callable]:
    """The method, label-free dataset and views for ``cfg.method`` on a prepared cache.

    ``dataset`` is an :class:`~pcrl_lib.data.cache.ImageCacheDataset` (2D) or a
    :class:`~pcrl_lib.data.cache.PairDataset` of ``cfg.cube_size`` crop pairs (3D).
    """
    from .pcrl import build_method_from_config
    from .transforms import PCRLViews2D, PCRLViews3D

    if spatial_dims == 2:
        dataset = ImagesOnly(dataset)
        views: Callable = PCRLViews2D(size=cfg.image_size_2d, align_targets=cfg.align_targets,
                                      rotation_mode=cfg.rotation_2d)
    else:
        cube = tuple(getattr(dataset, "cube", cfg.cube_size))
        if cube != tuple(cfg.cube_size):
            raise ValueError(f"the crop-pair cache holds {cube} cubes but cube_size is {tuple(cfg.cube_size)}; "
                             f"pass -p cube_size '{list(cube)}' or prepare the cache with the profile's cube size")
        views = PCRLViews3D(align_targets=cfg.align_targets)
    if cfg.method == "models_genesis":
        views = GenesisViews(spatial_dims, cfg.image_size_2d)
    # torchrun's WORLD_SIZE: the global batch, and so the released NCE n (batches per epoch), spans every rank.
    method = build_method_from_config(cfg, spatial_dims, num_items=len(dataset),
                                      world_size=int(os.environ.get("WORLD_SIZE", "1")))
    return method, dataset, views
