"""Initialising downstream networks: pretraining exports, local ImageNet weights, or scratch.

An *export* is the plain dict every pretraining method writes (``method.export()``, saved as
``encoder.pt`` by :mod:`pcrl_lib.train`)::

    {"spatial_dims": 2 | 3, "method": "pcrl" | "moco" | ..., "arch": {U-Net keyword arguments},
     "encoder": encoder state_dict, "decoder": decoder state_dict or None (no decoder: MoCo, C2L)}

Loading checks before copying any tensor: the dimensionality and architecture of the export must be those
the task builds (a mismatch is a ``ValueError`` naming both, e.g. "encoder export is 3D (unet3d, width 16,
norm bn) but the task needs 2D (resnet18)"), and the state-dict keys must match.

Two adaptations are allowed, because downstream tasks legitimately differ from pretraining there:

* **first convolution** — when the task has another number of input channels (BraTS: 4 MRI modalities on a
  1-channel CT encoder; a grey 1-channel input on a 3-channel 2D encoder), the pretrained kernel
  ``W (O, C_old, k...)`` becomes ``W' (O, C_new, k...)`` with every input channel
  ``W'[:, j] = Σ_c W[:, c] / C_new``. An input whose channels are all equal to one image then gives the
  same response as that image gave the pretrained network, so the pretrained filters keep their meaning.
* **output head** — the decoder's last layer maps to the pretraining target (3 channels in 2D, 1 in 3D);
  a segmentation head with another number of classes keeps its random initialisation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..models import arch_kwargs

# U-Net arguments that must agree between the export and the task (in_channels is adapted, heads re-made).
_MATCHING_ARCH = {2: (), 3: ("width", "norm")}


def _full_arch(spatial_dims: int, arch: Mapping[str, Any] | None) -> dict:
    """``arch`` with the U-Net defaults filled in; keys the U-Net does not take are ignored."""
    defaults = arch_kwargs(spatial_dims)
    return {**defaults, **{k: v for k, v in (arch or {}).items() if k in defaults}}


def describe_arch(spatial_dims: int, arch: Mapping[str, Any] | None = None) -> str:
    """Human-readable architecture, e.g. ``"2D (resnet18)"`` or ``"3D (unet3d, width 16, norm bn)"``."""
    if spatial_dims == 2:
        return "2D (resnet18)"
    if spatial_dims == 3:
        full = _full_arch(3, arch)
        return f"3D (unet3d, width {full['width']}, norm {full['norm']})"
    return f"{spatial_dims}D (unknown architecture)"


def load_export(source: Mapping | str | os.PathLike) -> dict:
    """Read (through :func:`pcrl_lib.pcrl.read_export`) and validate an export; returns it with a ``source`` name.

    ``source``: the export dict, its ``encoder.pt`` path, or the pretraining run folder holding ``encoder.pt``.
    """
    from ..pcrl import read_export

    name = "the export dict"
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if path.is_dir():
            path = path / "encoder.pt"
        name, source = str(path), path
    export = read_export(source)
    if export["spatial_dims"] not in (2, 3):
        raise ValueError(f"{name}: spatial_dims={export['spatial_dims']!r}, expected 2 or 3")
    if not isinstance(export["arch"], Mapping) or not isinstance(export["encoder"], Mapping):
        raise ValueError(f"{name}: 'arch' and 'encoder' must be dicts (U-Net kwargs and a state_dict)")
    if export["decoder"] is not None and not isinstance(export["decoder"], Mapping):
        raise ValueError(f"{name}: 'decoder' must be a state_dict or None")
    return {**export, "source": name}


def check_compatible(export: Mapping, spatial_dims: int, arch: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming both architectures unless ``export`` fits a ``spatial_dims``/``arch`` network."""
    theirs = describe_arch(export["spatial_dims"], export["arch"])
    ours = describe_arch(spatial_dims, arch)
    where = export.get("source", "the export dict")
    if export["spatial_dims"] != spatial_dims:
        raise ValueError(f"encoder export is {theirs} but the task needs {ours} ({where}, method "
                         f"{export['method']!r}); use an export pretrained in {spatial_dims}D")
    full_theirs, full_ours = _full_arch(spatial_dims, export["arch"]), _full_arch(spatial_dims, arch)
    differing = [k for k in _MATCHING_ARCH[spatial_dims] if full_theirs[k] != full_ours[k]]
    if differing:
        raise ValueError(f"encoder export is {theirs} but the task needs {ours} ({', '.join(differing)} mismatch; "
                         f"{where}, method {export['method']!r}); build the task with the export's "
                         "architecture (leave width/norm unset to take them from the export)")


def first_conv_key(module: nn.Module) -> str:
    """State-dict key of the weight of the first convolution of ``module`` (the one that sees the input)."""
    for name, sub in module.named_modules():
        if isinstance(sub, (nn.Conv2d, nn.Conv3d)):
            return f"{name}.weight" if name else "weight"
    raise ValueError(f"{type(module).__name__} has no convolution")


def adapt_in_channels(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """``(O, C_old, *k)`` kernel → ``(O, in_channels, *k)``: each new channel = Σ_c W[:, c] / in_channels."""
    if weight.ndim < 3:
        raise ValueError(f"expected a convolution kernel (O, C, *k), got shape {tuple(weight.shape)}")
    summed = weight.sum(dim=1, keepdim=True)
    return (summed / in_channels).expand(-1, in_channels, *weight.shape[2:]).clone()


def load_state(module: nn.Module, state: Mapping[str, torch.Tensor], *, what: str, source: str,
               adapt_key: str | None = None, reinit_prefixes: tuple[str, ...] = ()) -> dict:
    """Copy ``state`` into ``module`` with strict key checks, the two adaptations of the module doc.

    Args:
        what: "encoder" / "decoder" (for messages).
        adapt_key: key whose input-channel axis may be adapted with :func:`adapt_in_channels`.
        reinit_prefixes: keys starting with these may keep their random init when the shapes differ.

    Returns:
        ``{"loaded": n_tensors, "adapted": [keys], "reinitialised": [keys]}``.
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(f"{source}: its {what} does not fit this network's {what} — missing keys {missing[:5]}, "
                         f"unexpected keys {unexpected[:5]}; was it exported by another architecture?")
    new_state, adapted, reinit = {}, [], []
    for key, target in own.items():
        value = state[key]
        if value.shape != target.shape:
            if key == adapt_key and value.shape[0] == target.shape[0] and value.shape[2:] == target.shape[2:]:
                value = adapt_in_channels(value, target.shape[1])
                adapted.append(key)
            elif key.startswith(reinit_prefixes):
                reinit.append(key)
                continue
            else:
                raise ValueError(f"{source}: {what} tensor {key!r} has shape {tuple(value.shape)} but this network "
                                 f"needs {tuple(target.shape)}; was it exported by another architecture?")
        new_state[key] = value.to(dtype=target.dtype)
    module.load_state_dict({**own, **new_state})
    return {"loaded": len(new_state), "adapted": adapted, "reinitialised": reinit}


def imagenet_encoder_state(path: str | os.PathLike) -> dict:
    """A local torchvision ResNet-18 state dict (``fc.*`` dropped), validated by loading it into the 2D encoder.

    The kit never downloads weights: ``path`` must be a file the user placed there.
    """
    from ..models import ResNet18Encoder

    return ResNet18Encoder(in_channels=3, weights=path).state_dict()


def resolve_arch(spatial_dims: int, export: Mapping | None, *, in_channels: int | None = None,
                 width: int | None = None, norm: str | None = None) -> dict:
    """The task network's encoder arguments: explicit values, else the export's, else the U-Net defaults.

    Returns ``{"in_channels"}`` in 2D and ``{"in_channels", "width", "norm"}`` in 3D; raises ``ValueError``
    (naming both architectures) when an explicit value contradicts the export.
    """
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    if spatial_dims == 2 and (width is not None or norm is not None):
        raise ValueError("width and norm describe the 3D Models-Genesis U-Net; the 2D network is a fixed ResNet-18")
    base = _full_arch(spatial_dims, export["arch"] if export is not None else None)
    arch = {"in_channels": in_channels if in_channels is not None else base["in_channels"]}
    if spatial_dims == 3:
        arch["width"] = width if width is not None else base["width"]
        arch["norm"] = norm if norm is not None else base["norm"]
    if export is not None:
        check_compatible(export, spatial_dims, arch)
    return arch


def init_encoder(encoder: nn.Module, export: Mapping | None, imagenet_weights: str | os.PathLike | None) -> dict:
    """Load ``encoder`` from a validated export, from local ImageNet weights (2D), or leave it random.

    Returns the initialisation report kept in result protocols: ``{"init": "pretrained" | "imagenet" |
    "scratch", "method", "source", "encoder": load report}``.
    """
    if export is not None and imagenet_weights is not None:
        raise ValueError("pass either pretrained= (an encoder export) or imagenet_weights=, not both")
    adapt = first_conv_key(encoder)
    if export is not None:
        report = load_state(encoder, export["encoder"], what="encoder", source=export.get("source", "the export dict"),
                            adapt_key=adapt)
        return {"init": "pretrained", "method": export["method"], "source": export.get("source"), "encoder": report}
    if imagenet_weights is not None:
        if getattr(encoder, "spatial_dims", None) != 2:
            raise ValueError("imagenet_weights are ResNet-18 (2D) weights; the 3D network has no ImageNet init")
        report = load_state(encoder, imagenet_encoder_state(imagenet_weights), what="encoder",
                            source=str(imagenet_weights), adapt_key=adapt)
        return {"init": "imagenet", "method": "imagenet", "source": str(imagenet_weights), "encoder": report}
    return {"init": "scratch", "method": "scratch", "source": None, "encoder": None}
