"""Named profiles — one vocabulary for every notebook, test and CLI.

========  ===================  ==========================================  ======================
profile   for                  data                                        scale
========  ===================  ==========================================  ======================
smoke     CI and tests         synthetic look-alikes + demo data           seconds per notebook
quick     a learner's CPU      demo data (real, small) + synthetic         minutes per notebook
paper     GPU reproduction     the real datasets under ``DATA_ROOT``       the paper's sizes
========  ===================  ==========================================  ======================

A profile only sets defaults; every value can be overridden::

    cfg = get_profile("quick")
    cfg.pretrain.override(epochs=3)            # one section
    cfg.override(pretrain={"epochs": 3})       # the same through the profile
    cfg.override(pretrain__epochs=3)           # the same, flat (what the CLI's -p uses)

Unknown keys raise ``KeyError`` listing the valid ones. All dataclasses are frozen: an override
returns a new object, so a config stored in a checkpoint is exactly what ran.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from typing import Any

PROFILES = ("smoke", "quick", "paper")


class _Section:
    """Mixin: ``override`` with validated keys, ``to_dict`` / ``from_dict`` for checkpoints."""

    def override(self, **kw: Any):
        valid = [f.name for f in fields(self)]
        unknown = sorted(set(kw) - set(valid))
        if unknown:
            raise KeyError(f"unknown {type(self).__name__} key(s) {unknown}; valid keys: {', '.join(valid)}")
        return dataclasses.replace(self, **kw)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        kw = {}
        for f in fields(cls):
            if f.name in d:
                value = d[f.name]
                # JSON turns tuples into lists; keep the frozen dataclasses hashable.
                kw[f.name] = tuple(value) if isinstance(value, list) else value
        return cls(**kw)


@dataclass(frozen=True)
class DataConfig(_Section):
    """Data preparation. Sizes are (H, W) in 2D and (D0, D1, D2) = (x, y, z) in 3D (z = slices)."""

    image_size_2d: int = 128          # 2D cache / crop side
    cube_size: tuple = (32, 32, 16)   # 3D pretraining cube (paper: 64×64×32)
    spacing_mm: float = 1.0           # CT resampling target (isotropic)
    pairs_per_scan: int = 16          # PCRL crop pairs cut from each CT scan
    synthetic_2d: int = 96            # images per synthetic 2D look-alike
    synthetic_3d: int = 6             # CT scans of the synthetic LUNA16 look-alike
    synthetic_seg: int = 10           # volumes per synthetic LiTS/BraTS look-alike (split 7/1/2: 2 test cases)
    synthetic_3d_size: int = 96       # in-plane side of synthetic CT volumes (voxels)
    num_workers: int = 2              # preprocessing processes


@dataclass(frozen=True)
class PretrainConfig(_Section):
    """Self-supervised pretraining (PCRL_SPEC §5, §6, §8). Legend: K queue size, m EMA momentum, T τ."""

    method: str = "pcrl"              # pcrl | pcrl_tca | pcrl_recon | c2l | moco | models_genesis
    epochs: int = 4
    batch_size_2d: int = 16
    batch_size_3d: int = 4
    image_size_2d: int = 64
    cube_size: tuple = (32, 32, 16)
    width_3d: int = 16                # base channels of the 3D U-Net (paper: 32)
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    K: int = 1024                     # queue length (paper: 16,384)
    m: float = 0.999                  # EMA momentum of the key encoder
    T: float = 0.2                    # temperature τ
    feat_dim: int = 128
    nce: str | None = None            # None = the method's own ("nce" for PCRL/C2L as released, "infonce" for MoCo)
    align_targets: bool = False       # align pass-B clean targets with the input geometry (spec §7)
    precision: str = "auto"           # auto | fp32 | bf16 | fp16
    max_steps_per_epoch: int = 0      # 0 = a full pass over the data
    checkpoint_every: int = 0         # keep a copy every N epochs (0 = none; last.pt resumes, encoder.pt is exported)
    num_workers: int = 0
    log_every: int = 1


@dataclass(frozen=True)
class FinetuneConfig(_Section):
    """Few-label fine-tuning and evaluation (PCRL_SPEC §10)."""

    epochs: int = 8
    batch_size_2d: int = 16
    batch_size_3d: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-4
    label_fractions: tuple = (0.1, 0.5, 1.0)
    seeds: tuple = (0, 1)
    patience: int = 4                 # early stopping on the validation metric (epochs)
    bootstrap: int = 200              # bootstrap resamples for confidence intervals
    precision: str = "auto"
    num_workers: int = 0
    max_steps_per_epoch: int = 0


@dataclass(frozen=True)
class Profile(_Section):
    name: str = "quick"
    data: DataConfig = field(default_factory=DataConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def override(self, **kw: Any) -> "Profile":
        """Override whole sections (``pretrain={...}``) or single keys (``pretrain__epochs=3``)."""
        sections = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "name"}
        updates: dict[str, dict] = {name: {} for name in sections}
        for key, value in kw.items():
            section, _, sub = key.partition("__")
            if section not in sections:
                valid = sorted(sections) + [f"{s}__{f.name}" for s in sections for f in fields(sections[s])]
                raise KeyError(f"unknown profile key {key!r}; valid keys: {', '.join(valid)}")
            if sub:
                updates[section][sub] = value
            elif isinstance(value, dict):
                updates[section].update(value)
            else:
                raise TypeError(f"{key}= takes a dict of {type(sections[section]).__name__} keys")
        new = {name: sec.override(**updates[name]) if updates[name] else sec for name, sec in sections.items()}
        return dataclasses.replace(self, **new)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> "Profile":
        return cls(name=d.get("name", "custom"), data=DataConfig.from_dict(d.get("data", {})),
                   pretrain=PretrainConfig.from_dict(d.get("pretrain", {})),
                   finetune=FinetuneConfig.from_dict(d.get("finetune", {})))


def _smoke() -> Profile:
    return Profile(
        name="smoke",
        data=DataConfig(image_size_2d=64, cube_size=(16, 16, 8), pairs_per_scan=4, synthetic_2d=32,
                        synthetic_3d=3, synthetic_seg=3, synthetic_3d_size=64, num_workers=1),
        pretrain=PretrainConfig(epochs=1, batch_size_2d=4, batch_size_3d=2, image_size_2d=64, cube_size=(16, 16, 8),
                                width_3d=8, K=64, max_steps_per_epoch=2, precision="fp32"),
        finetune=FinetuneConfig(epochs=1, batch_size_2d=8, batch_size_3d=2, label_fractions=(0.5, 1.0), seeds=(0,),
                                patience=1, bootstrap=20, max_steps_per_epoch=2, precision="fp32"),
    )


def _quick() -> Profile:
    # Sized with benchmarks/pretrain.py so that notebooks 03 and 04 (PCRL plus the five baselines) run in minutes on
    # a 2-core CPU: a full 3D PCRL step at 32×32×16 costs ~1.2 s at width 4 but ~3 s at width 8 and ~8 s at
    # width 16 (fp32, 1 thread); the cap of 12 steps per epoch keeps 3D at 72 steps, 2D at 60. The queue is
    # shorter than the quick pretraining sets (86 images, 144 pairs) and refills within ~3 steps, so the curves
    # leave the random initial queue behind early; lr 0.03 because 60–72 steps at the paper's 1e-3 barely move.
    return Profile(
        name="quick",
        pretrain=PretrainConfig(epochs=6, batch_size_2d=8, batch_size_3d=4, image_size_2d=64, cube_size=(32, 32, 16),
                                width_3d=4, lr=0.03, K=64, max_steps_per_epoch=12),
    )


def _paper() -> Profile:
    return Profile(
        name="paper",
        data=DataConfig(image_size_2d=224, cube_size=(64, 64, 32), pairs_per_scan=16, num_workers=8),
        pretrain=PretrainConfig(epochs=240, batch_size_2d=64, batch_size_3d=16, image_size_2d=224,
                                cube_size=(64, 64, 32), width_3d=32, K=16384, checkpoint_every=60,
                                num_workers=8, log_every=50),
        finetune=FinetuneConfig(epochs=100, batch_size_2d=32, batch_size_3d=8, label_fractions=(0.05, 0.1, 0.2, 0.5, 1.0),
                                seeds=(0, 1, 2), patience=10, bootstrap=1000, num_workers=8),
    )


_BUILDERS = {"smoke": _smoke, "quick": _quick, "paper": _paper}


def get_profile(name: str, **overrides: Any) -> Profile:
    """The named profile (``smoke`` / ``quick`` / ``paper``), optionally overridden."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown profile {name!r}; valid profiles: {', '.join(PROFILES)}")
    profile = _BUILDERS[name]()
    return profile.override(**overrides) if overrides else profile
