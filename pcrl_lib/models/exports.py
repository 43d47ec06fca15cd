"""Pretrained exports and fine-tuned weights: one format, one loader, one rule for input channels.

An *export* is the plain dict every pretraining method writes (``method.export()``, saved as ``encoder.pt`` by
:mod:`pcrl_lib.train`), loadable with ``torch.load(weights_only=True)``::

    {"spatial_dims": 2 | 3, "method": "pcrl" | "moco" | ..., "arch": {U-Net keyword arguments},
     "encoder": encoder state_dict, "decoder": decoder state_dict or None (no decoder: MoCo, C2L)}

*Fine-tuned weights* are a run's ``best.pt``: the plain ``state_dict`` of the task network.

Loading checks before copying any tensor: the dimensionality and architecture of the export must be those of
the network it goes into (a mismatch is a ``ValueError`` naming both, e.g. "encoder export is 3D (unet3d,
width 16, norm bn) but the task needs 2D (resnet18)"), and the state-dict keys must match. Two adaptations are
allowed when loading an export (:func:`load_state`), because downstream networks legitimately differ there:

* **first convolution** — another number of input channels (BraTS: 4 MRI modalities on a 1-channel CT
  encoder; a grey 1-channel input on a 3-channel 2D encoder): the pretrained kernel ``W (O, C_old, k...)``
  becomes ``W' (O, C_new, k...)`` with every input channel ``W'[:, j] = Σ_c W[:, c] / C_new``. An input whose
  channels all equal one image then gives the response that image gave the pretrained network;
* **output head** — the decoder's last layer maps to the pretraining target (3 channels in 2D, 1 in 3D); a
  segmentation head with another number of classes keeps its random initialisation.

Fine-tuned weights are loaded without adaptation (:func:`load_finetuned`): they belong to one network.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from . import arch_kwargs, build_encoder

__all__ = ["EXPORT_KEYS", "read_export", "full_arch", "describe_arch", "check_compatible", "first_conv_key",
           "last_conv_key", "adapt_in_channels", "load_state", "load_encoder", "load_finetuned"]

EXPORT_KEYS = ("spatial_dims", "method", "arch", "encoder", "decoder")
# U-Net arguments that must agree between an export and the network it goes into (in_channels is adapted,
# heads re-made).
_MATCHING_ARCH = {2: (), 3: ("width", "norm")}


def full_arch(spatial_dims: int, arch: Mapping[str, Any] | None) -> dict:
    """``arch`` with the U-Net defaults filled in; keys the U-Net does not take are ignored."""
    defaults = arch_kwargs(spatial_dims)
    return {**defaults, **{k: v for k, v in (arch or {}).items() if k in defaults}}


def describe_arch(spatial_dims: int, arch: Mapping[str, Any] | None = None) -> str:
    """Human-readable architecture, e.g. ``"2D (resnet18)"`` or ``"3D (unet3d, width 16, norm bn)"``."""
    if spatial_dims == 2:
        return "2D (resnet18)"
    if spatial_dims == 3:
        full = full_arch(3, arch)
        return f"3D (unet3d, width {full['width']}, norm {full['norm']})"
    return f"{spatial_dims}D (unknown architecture)"


def read_export(source: Mapping | str | os.PathLike) -> dict:
    """An export, validated, with a ``"source"`` entry naming where it came from (for messages).

    ``source``: the export dict, its ``encoder.pt`` path, or the pretraining run folder holding ``encoder.pt``.
    """
    name = "the export dict"
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if path.is_dir():
            path = path / "encoder.pt"
        if not path.is_file():
            raise FileNotFoundError(f"pretrained export {path} does not exist; pass the encoder.pt written by "
                                    "pretraining (method.export())")
        name, source = str(path), torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(source, Mapping) or any(k not in source for k in EXPORT_KEYS):
        keys = sorted(source) if isinstance(source, Mapping) else type(source).__name__
        raise ValueError(f"{name} must be a dict with keys {list(EXPORT_KEYS)} (from method.export()); got {keys}")
    if source["spatial_dims"] not in (2, 3):
        raise ValueError(f"{name}: spatial_dims={source['spatial_dims']!r}, expected 2 or 3")
    if not isinstance(source["arch"], Mapping) or not isinstance(source["encoder"], Mapping):
        raise ValueError(f"{name}: 'arch' and 'encoder' must be dicts (U-Net kwargs and a state_dict)")
    if source["decoder"] is not None and not isinstance(source["decoder"], Mapping):
        raise ValueError(f"{name}: 'decoder' must be a state_dict or None")
    return {**source, "source": name}


def check_compatible(export: Mapping, spatial_dims: int, arch: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming both architectures unless ``export`` fits a ``spatial_dims``/``arch`` network."""
    theirs = describe_arch(export["spatial_dims"], export["arch"])
    ours = describe_arch(spatial_dims, arch)
    where = export.get("source", "the export dict")
    if export["spatial_dims"] != spatial_dims:
        raise ValueError(f"encoder export is {theirs} but the task needs {ours} ({where}, method "
                         f"{export['method']!r}); use an export pretrained in {spatial_dims}D")
    full_theirs, full_ours = full_arch(spatial_dims, export["arch"]), full_arch(spatial_dims, arch)
    differing = [k for k in _MATCHING_ARCH[spatial_dims] if full_theirs[k] != full_ours[k]]
    if differing:
        raise ValueError(f"encoder export is {theirs} but the task needs {ours} ({', '.join(differing)} mismatch; "
                         f"{where}, method {export['method']!r}); build the task with the export's "
                         "architecture (leave width/norm unset to take them from the export)")


def _conv_keys(module: nn.Module) -> list[str]:
    keys = [f"{name}.weight" if name else "weight" for name, sub in module.named_modules()
            if isinstance(sub, (nn.Conv2d, nn.Conv3d))]
    if not keys:
        raise ValueError(f"{type(module).__name__} has no convolution")
    return keys


def first_conv_key(module: nn.Module) -> str:
    """State-dict key of the weight of the first convolution of ``module`` (the one that sees the input)."""
    return _conv_keys(module)[0]


def last_conv_key(module: nn.Module) -> str:
    """State-dict key of the weight of the last convolution (a segmenter's head: one channel per structure)."""
    return _conv_keys(module)[-1]


def adapt_in_channels(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """``(O, C_old, *k)`` kernel → ``(O, in_channels, *k)``: each new channel = Σ_c W[:, c] / in_channels."""
    if weight.ndim < 3:
        raise ValueError(f"expected a convolution kernel (O, C, *k), got shape {tuple(weight.shape)}")
    summed = weight.sum(dim=1, keepdim=True)
    return (summed / in_channels).expand(-1, in_channels, *weight.shape[2:]).clone()


def load_state(module: nn.Module, state: Mapping[str, torch.Tensor], *, what: str, source: str,
               adapt_key: str | None = None, reinit_prefixes: tuple[str, ...] = ()) -> dict:
    """Copy ``state`` into ``module`` with strict key checks and the two adaptations of the module doc.

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


def load_encoder(source: Mapping | str | os.PathLike, spatial_dims: int | None = None, **arch: Any) -> nn.Module:
    """The pretrained encoder of an export (dict, ``encoder.pt`` or its run folder).

    ``spatial_dims`` and encoder ``arch`` arguments (in_channels, width, norm) default to the export's. Another
    ``spatial_dims``, width or norm is a ``ValueError`` naming both; another ``in_channels`` adapts the first
    convolution (module doc), as every downstream network does.
    """
    export = read_export(source)
    dims = export["spatial_dims"] if spatial_dims is None else spatial_dims
    wanted = {**export["arch"], **arch}
    check_compatible(export, dims, wanted)
    encoder = build_encoder(dims, **wanted)
    load_state(encoder, export["encoder"], what="encoder", source=export["source"],
               adapt_key=first_conv_key(encoder))
    return encoder


def load_finetuned(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load fine-tuned weights (a run's ``best.pt``) into ``model`` and return it in eval mode.

    A checkpoint of another input channel count or number of output channels (structures, classes) raises a
    ``ValueError`` saying which, instead of a size-mismatch traceback."""
    from ..checkpoint import load_checkpoint

    state = load_checkpoint(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    if missing or set(state) - set(own):
        raise ValueError(f"{path}: the checkpoint's parameters do not match this network (e.g. "
                         f"{(missing or sorted(set(state) - set(own)))[0]!r}); was it fine-tuned with another "
                         "architecture or width?")
    first = first_conv_key(model)
    theirs, ours = state[first].shape[1], own[first].shape[1]
    if theirs != ours:
        raise ValueError(f"{path} was fine-tuned with {theirs} input channel(s) but this network takes {ours}; "
                         f"build it with in_channels={theirs} (the run's CHANNELS)")
    head = last_conv_key(model)
    if state[head].shape[0] != own[head].shape[0]:
        raise ValueError(f"{path} was fine-tuned for {state[head].shape[0]} structure(s) but this network predicts "
                         f"{own[head].shape[0]}; build it with the run's structures")
    for key, value in own.items():
        if state[key].shape != value.shape:
            raise ValueError(f"{path}: tensor {key!r} has shape {tuple(state[key].shape)}, this network needs "
                             f"{tuple(value.shape)}; was it fine-tuned with another width?")
    model.load_state_dict(state)
    return model.eval()
