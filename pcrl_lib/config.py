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

Every value is checked when a section is built (constructor, ``override``, ``from_dict``), so the CLI's ``-p``,
the notebooks and the API refuse the same values with the same one-line ``ValueError`` naming the field, the
value and what is allowed: the field's type (an ``int`` field refuses 1.5 and "abc"; a ``float`` field takes
an int), the section's ``_RANGES`` (``">= 1"``, ``"(0, 1]"``, …), ``_TUPLES`` (element type and length) and
``_CHOICES``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from dataclasses import dataclass, field, fields
from typing import Any

PROFILES = ("smoke", "quick", "paper")
# The pretraining methods (PCRL_SPEC §9), in the order of the ablation chain that tables and folders follow; the
# one list that PretrainConfig.method, pretrain_runs, pcrl.build_method and the report draw on.
PRETRAIN_METHODS = ("models_genesis", "moco", "c2l", "pcrl_recon", "pcrl_tca", "pcrl")
# What a fine-tuning comparison can start from: a random initialisation ("scratch") or a pretraining export.
INITIALISATIONS = ("scratch", *PRETRAIN_METHODS)


# The value kinds of fields (and of the course runner's notebook parameters): kind -> (one, several) in messages.
KINDS = {"int": ("an int", "ints"), "float": ("a number", "numbers"), "bool": ("true or false", "bools"),
         "str": ("a string", "strings")}
INVALID = object()  # what convert_value returns for a value that is not of the kind


def convert_value(kind: str, value: Any) -> Any:
    """``value`` as ``kind`` (int, float, bool, str), or ``INVALID``: 1.5 is no int, True is no number."""
    if kind == "bool" or isinstance(value, bool):
        return value if kind == "bool" and isinstance(value, bool) else INVALID
    if kind == "str":
        return value if isinstance(value, str) else INVALID
    if not isinstance(value, numbers.Real) or not math.isfinite(value):
        return INVALID
    if kind == "int":
        return int(value) if float(value).is_integer() else INVALID
    return float(value)


def _within(value: float, rule: str) -> bool:
    """``rule`` is ``">= a"``, ``"> a"`` or an interval such as ``"(0, 1]"``."""
    if rule[0] in "[(":
        low, high = (float(bound) for bound in rule[1:-1].split(","))
        above = low <= value if rule[0] == "[" else low < value
        return above and (value <= high if rule[-1] == "]" else value < high)
    op, bound = rule.split()
    return value >= float(bound) if op == ">=" else value > float(bound)


def _describe(kind: str, rule: str | None, plural: bool = False) -> str:
    name = KINDS[kind][1 if plural else 0]
    return name if rule is None else f"{name} {rule}" if rule[0] in "<>" else f"{name} in {rule}"


class _Section:
    """Mixin: ``override`` with validated keys, ``to_dict`` / ``from_dict`` for checkpoints, and the value checks
    (``_RANGES``: field → rule; ``_TUPLES``: field → (element type, length or None for any non-empty length);
    ``_CHOICES``: field → allowed values). A field without a rule is checked by its type only."""

    _RANGES: dict = {}
    _TUPLES: dict = {}
    _CHOICES: dict = {}

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            checked = self._checked(f.name, str(f.type), value)
            if checked is not value:  # ints given to float fields, lists given to tuple fields
                object.__setattr__(self, f.name, checked)

    def _checked(self, name: str, annotation: str, value: Any) -> Any:
        """``value`` converted to the field's type, or one ``ValueError`` naming field, value and what is allowed."""
        kinds = [part.strip() for part in annotation.split("|")]
        kind = kinds[0].split("[")[0]
        if value is None and "None" in kinds:
            return None
        where, rule = f"{type(self).__name__}.{name}", self._RANGES.get(name)
        if name in self._CHOICES and kind == "tuple":  # a non-empty list of choices
            choices = self._CHOICES[name]
            items = tuple(value) if isinstance(value, (list, tuple)) else ()
            if items and all(isinstance(item, str) and item in choices for item in items):
                return items
            raise ValueError(f"{where} must be a non-empty list of {', '.join(choices)}, got {value!r}")
        if name in self._CHOICES:
            choices = self._CHOICES[name]
            if isinstance(value, str) and value in choices:
                return value
            allowed = ", ".join(map(str, choices)) + (" or None" if "None" in kinds else "")
            raise ValueError(f"{where} must be one of {allowed}, got {value!r}")
        if kind == "tuple":
            element, length = self._TUPLES.get(name, (None, None))
            items = tuple(value) if isinstance(value, (list, tuple)) else None
            if element is None:
                if items is None:
                    raise ValueError(f"{where} must be a list, got {value!r}")
                return items
            converted = None if items is None else tuple(convert_value(element, item) for item in items)
            if converted is None or not converted or (length is not None and len(converted) != length) \
                    or any(item is INVALID or (rule is not None and not _within(item, rule)) for item in converted):
                size = f"{length} " if length is not None else "non-empty list of "
                raise ValueError(f"{where} must be a {'list of ' if length is not None else ''}{size}"
                                 f"{_describe(element, rule, plural=True)}, got {value!r}")
            return converted
        if kind not in KINDS:  # e.g. a nested section: checked by its own class
            return value
        converted = convert_value(kind, value)
        if converted is INVALID or (rule is not None and not _within(converted, rule)):
            raise ValueError(f"{where} must be {_describe(kind, rule)}, got {value!r}")
        return converted

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
    """Data preparation. Sizes are (H, W) in 2D and (D0, D1, D2) = (x, y, z) in 3D (z = slices).

    The sizes the networks see are PretrainConfig's (``image_size_2d``: the 2D views; ``cube_size``: the 3D crops,
    also the fine-tuning cubes and windows); ``source_size_2d`` is the cache the 2D views are cut from."""

    _RANGES = {"source_size_2d": ">= 1", "spacing_mm": "> 0", "lits_spacing_mm": "> 0", "brats_spacing_mm": "> 0",
               "seg_demo_spacing_mm": "> 0", "pairs_per_scan": ">= 1", "synthetic_2d": ">= 1", "synthetic_3d": ">= 1",
               "synthetic_seg": ">= 1", "synthetic_3d_size": ">= 1", "num_workers": ">= 0"}
    # crops.RECIPES: the authors' released 3D crop recipe or the kit's variant (pcrl_lib.data.crops)
    _CHOICES = {"crop_sampler": ("released", "kit"), "lung_filter": ("released", "kit"),
                "crop_resize": ("released", "kit")}

    source_size_2d: int = 128         # 2D cache side: the source views are cut from (>= PretrainConfig.image_size_2d)
    spacing_mm: float = 1.0           # CT resampling target of pretraining and LUNA16 cubes (isotropic)
    # Segmentation resampling targets (isotropic, mm): coarser than 1 mm on a CPU, so that sliding-window inference
    # over a whole case takes seconds; the demo volumes (a whole abdomen or head, slices 2–6.5 mm apart) coarser still.
    lits_spacing_mm: float = 1.5
    brats_spacing_mm: float = 2.0
    seg_demo_spacing_mm: float = 4.0
    pairs_per_scan: int = 16          # PCRL crop pairs cut from each CT scan
    synthetic_2d: int = 96            # images per synthetic 2D look-alike
    synthetic_3d: int = 6             # CT scans of the synthetic LUNA16 look-alike
    synthetic_seg: int = 10           # volumes per synthetic LiTS/BraTS look-alike (split 7/1/2: 2 test cases)
    synthetic_3d_size: int = 96       # in-plane side of synthetic CT volumes (voxels)
    num_workers: int = 2              # preprocessing processes
    crop_sampler: str = "released"    # 3D crop pairs: boxes drawn independently, IoU > 0.25 kept | kit: B near A
    lung_filter: str = "released"     # soft-tissue sum of the resized crop vs 15 % of the original size | kit: 15 %
    crop_resize: str = "released"     # skimage resize (anti-aliased) to cube_z + 3 slices, first cube_z kept | kit


@dataclass(frozen=True)
class PretrainConfig(_Section):
    """Self-supervised pretraining (PCRL_SPEC §5, §6, §8). Legend: K queue size, m EMA momentum, T τ."""

    _RANGES = {"epochs": ">= 1", "batch_size_2d": ">= 1", "batch_size_3d": ">= 1", "image_size_2d": ">= 1",
               "cube_size": ">= 1", "width_3d": ">= 1", "lr": "> 0", "momentum": "[0, 1)", "weight_decay": ">= 0",
               "K": ">= 1", "m": "[0, 1]", "T": "> 0", "feat_dim": ">= 1", "max_steps_per_epoch": ">= 0",
               "ema_horizon_fraction": "[0, 1]",
               "checkpoint_every": ">= 0", "num_workers": ">= 0", "log_every": ">= 1"}
    _TUPLES = {"cube_size": ("int", 3)}
    # contrastive.ESTIMATORS, precision.PRECISIONS, precision.MEMORY_FORMATS and
    # pcrl.KEY_MIXES (tests keep them equal)
    _CHOICES = {"method": PRETRAIN_METHODS,
                "nce": ("nce", "infonce"), "precision": ("auto", "fp32", "bf16", "fp16"), "key_mix": ("raw", "unit"),
                "nce_noise": ("batches", "samples"), "memory_format": ("auto", "contiguous", "channels_last"),
                "rotation_2d": ("nearest", "bilinear")}

    method: str = "pcrl"              # pcrl | pcrl_tca | pcrl_recon | c2l | moco | models_genesis
    epochs: int = 4
    batch_size_2d: int = 16
    batch_size_3d: int = 4
    image_size_2d: int = 64           # 2D view side (cut from the DataConfig.source_size_2d cache)
    cube_size: tuple = (32, 32, 16)   # 3D crop (paper 64×64×32); also the fine-tuning cubes and windows
    width_3d: int = 16                # base channels of the 3D U-Net (paper: 32)
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    K: int = 1024                     # queue length (paper: 16,384)
    m: float = 0.999                  # EMA momentum of the key encoder
    ema_horizon_fraction: float = 0.0  # 0 = keep m (released); f > 0: m = 1 − 1/max(1, f·steps), pcrl.ema_momentum
    T: float = 0.2                    # temperature τ
    feat_dim: int = 128
    nce: str | None = None            # None = the method's own ("nce" for PCRL/C2L as released, "infonce" for MoCo)
    nce_exact: bool = False           # False = released NCE numerics (eps 1e-5, integer Z) | True = exact estimator
    key_mix: str = "raw"              # pass-B mixed keys: raw = released (mix projections, then normalise) | unit
    nce_noise: str = "batches"        # NCE's n (Pn = 1/n, Z): batches = released len(train_loader) | samples (CMC)
    align_targets: bool = False       # align pass-B clean targets with the input geometry (spec §7)
    rotation_2d: str = "nearest"      # 2D views' ±10° rotation: nearest = released (torchvision default) | bilinear
    precision: str = "auto"           # auto | fp32 | bf16 | fp16 (auto: bf16 on GPUs and native-bf16 CPUs)
    memory_format: str = "auto"       # auto (channels-last: 2D on CUDA under bf16/fp16) | contiguous | channels_last
    max_steps_per_epoch: int = 0      # 0 = a full pass over the data
    checkpoint_every: int = 0         # keep a copy every N epochs (0 = none; last.pt resumes, encoder.pt is exported)
    num_workers: int = 0
    log_every: int = 1


@dataclass(frozen=True)
class FinetuneConfig(_Section):
    """Few-label fine-tuning and evaluation (PCRL_SPEC §10)."""

    # lr 0 keeps the initial weights: a fixed-model baseline (and how the early-stopping test freezes a model)
    _RANGES = {"epochs": ">= 1", "batch_size_2d": ">= 1", "batch_size_3d": ">= 1", "lr": ">= 0", "weight_decay": ">= 0",
               "label_fractions": "(0, 1]", "seeds": ">= 0", "patience": ">= 0", "bootstrap": ">= 0",
               "num_workers": ">= 0", "max_steps_per_epoch": ">= 0", "seg_overlap": "[0, 1)", "seg_lr_factor": "> 0",
               "seg_patches_per_epoch": ">= 0", "seg_val_cases": ">= 0"}
    _TUPLES = {"label_fractions": ("float", None), "seeds": ("int", None)}
    _CHOICES = {"precision": ("auto", "fp32", "bf16", "fp16"), "methods_cls": INITIALISATIONS,
                "methods_seg": INITIALISATIONS}

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
    # The initialisations notebooks 05-07 (classification) and 08/09 (segmentation) compare when their METHODS is
    # None. Classification compares the whole ablation chain (MoCo → C2L → + reconstruction → + TCA → PCRL): cheap,
    # and the report's ablation table and component claims need every step. A 3D segmentation run costs more, so
    # the CPU profiles keep scratch, the restoration baseline and PCRL.
    methods_cls: tuple = INITIALISATIONS
    methods_seg: tuple = ("scratch", "models_genesis", "pcrl")
    seg_overlap: float = 0.25         # sliding-window overlap of segmentation inference (paper 0.5; fewer windows)
    # Segmentation lr = lr × this factor: a CPU-profile run takes ~60 optimiser steps (8 epochs × 7 steps); at the
    # paper's 1e-3 the networks are still far from converged, at 3e-3 the liver / whole tumour are learned
    # (measured on the synthetic look-alikes).
    seg_lr_factor: float = 3.0
    # Training patches per epoch of a segmentation run, at every label fraction (0: segment.PATCHES_PER_CASE per
    # case of the full training split), and the validation cases that select its best epoch (0: all of them).
    # Sliding-window validation of every case after every epoch is most of a CPU run's cost.
    seg_patches_per_epoch: int = 0
    seg_val_cases: int = 0


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
        data=DataConfig(source_size_2d=64, pairs_per_scan=4, synthetic_2d=32, synthetic_3d=3, synthetic_seg=3,
                        synthetic_3d_size=64, num_workers=1, lits_spacing_mm=2.0, seg_demo_spacing_mm=6.0),
        pretrain=PretrainConfig(epochs=1, batch_size_2d=4, batch_size_3d=2, image_size_2d=64, cube_size=(16, 16, 8),
                                width_3d=8, K=64, max_steps_per_epoch=2, precision="fp32"),
        finetune=FinetuneConfig(epochs=1, batch_size_2d=8, batch_size_3d=2, label_fractions=(0.5, 1.0), seeds=(0,),
                                patience=1, bootstrap=20, max_steps_per_epoch=2, precision="fp32",
                                methods_cls=("scratch", "pcrl"), methods_seg=("scratch", "pcrl")),
    )


def _quick() -> Profile:
    # A controlled miniature study (issue 16; the design is written out in notebook 10, section "The quick study"):
    # what varies is the initialisation (scratch and the six pretraining methods), the label fraction and the seed;
    # the data, the networks and every schedule are held fixed. Sizes:
    # - stand-ins large enough to measure: NIH 1,600 images (test ≈ 20 % of the patients, > 300 images), CheXpert
    #   1,600 training + 400 validation (= test) studies, LUNA16 60 scans (test 20 % ≈ 12 scans, > 300
    #   candidates), LiTS and BraTS 60 cases (70/10/20: 12 test cases); the unlabelled pretraining pools are the
    #   whole training splits, > 10× the 10 % labelled fraction (the paper's regime);
    # - pretraining of 200 steps per method (4 epochs × 50; ~3.5× the previous 60–72) with the EMA horizon a tenth
    #   of the run (m = 0.95) so that the key encoder moves; the queue holds 256 keys (about a fifth of the 2D pool,
    #   as the paper's 16,384 of ~78k images); lr 0.03 because a few hundred steps at the paper's 1e-3 barely move;
    #   the 3D U-Net at width 4 (benchmarks/pretrain.py: a 3D PCRL step at 32×32×16 costs ~1.2 s at width 4, ~3 s at
    #   width 8, ~8 s at width 16; fp32, 1 thread);
    # - fine-tuning at the low label fractions the claims are about, 5 % and 10 %, with 3 seeds; segmentation runs
    #   keep the earlier CPU budget (28 patches per epoch, 8 epochs) and select the epoch on 2 validation cases.
    # Cost measured on an idle 2-core CPU: the whole quick course in README.md.
    return Profile(
        name="quick",
        data=DataConfig(synthetic_2d=1600, synthetic_3d=60, synthetic_seg=60),
        pretrain=PretrainConfig(epochs=4, batch_size_2d=8, batch_size_3d=4, image_size_2d=64, cube_size=(32, 32, 16),
                                width_3d=4, lr=0.03, K=256, ema_horizon_fraction=0.1, max_steps_per_epoch=50),
        finetune=FinetuneConfig(label_fractions=(0.05, 0.1), seeds=(0, 1, 2), seg_patches_per_epoch=28,
                                seg_val_cases=2),
    )


def _paper() -> Profile:
    return Profile(
        name="paper",
        # The 2D cache keeps NIH's original 1024² pixels: the released code cuts its 224² views from the originals.
        data=DataConfig(source_size_2d=1024, pairs_per_scan=16, num_workers=8, lits_spacing_mm=1.0,
                        brats_spacing_mm=1.0, seg_demo_spacing_mm=3.0),
        pretrain=PretrainConfig(epochs=240, batch_size_2d=64, batch_size_3d=16, image_size_2d=224,
                                cube_size=(64, 64, 32), width_3d=32, K=16384, checkpoint_every=60,
                                num_workers=8, log_every=50),
        finetune=FinetuneConfig(epochs=100, batch_size_2d=32, batch_size_3d=8, label_fractions=(0.05, 0.1, 0.2, 0.5, 1.0),
                                seeds=(0, 1, 2), patience=10, bootstrap=1000, num_workers=8,
                                methods_seg=INITIALISATIONS, seg_overlap=0.5, seg_lr_factor=1.0),
    )


_BUILDERS = {"smoke": _smoke, "quick": _quick, "paper": _paper}


def get_profile(name: str, **overrides: Any) -> Profile:
    """The named profile (``smoke`` / ``quick`` / ``paper``), optionally overridden."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown profile {name!r}; valid profiles: {', '.join(PROFILES)}")
    profile = _BUILDERS[name]()
    return profile.override(**overrides) if overrides else profile
