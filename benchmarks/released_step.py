"""One PCRL training step of the authors' released code and of the kit, on the same weights, batch and draws.

    python benchmarks/released_step.py PATH [--dims 2 3] [--dtypes float64 float32] [--batch 4] [--size 64]
                                            [--cube 16 16 16] [--K 16384] [--n-data 1227] [--seed 0]

``PATH`` is a checkout of the authors' repository (github.com/Luchixiang/PCRL: the folder holding ``pytorch/``,
or ``pytorch/`` itself). Its imports must resolve: ``segmentation_models_pytorch`` (with timm,
huggingface_hub < 1, safetensors) and ``pretrainedmodels`` (with munch), e.g. ``pip install --no-deps --target
DIR segmentation_models_pytorch pretrainedmodels timm "huggingface_hub<1" safetensors munch`` and
``PYTHONPATH=DIR``. Nothing of the checkout is copied into the kit.

What runs on each side, on the CPU:

=========  ======================================================================================================
released   ``pcrl.train_rep_C2L`` (2D) / ``pcrl_3d.train_rep_C2L`` (3D) on a one-batch loader, with its
           ``PCRLModel`` / ``PCRLModel3d`` (student and EMA copy), ``MemoryC2L``, ``NCECriterion``, ``MSELoss``
           and ``torch.optim.SGD``, exactly as ``train_pcrl_2d/3d`` builds them (minus DataParallel and apex)
kit        ``build_method("pcrl", ...)`` with the released weights copied in (state-dict keys mapped one to
           one), then the trainer's step: SGD (same lr, momentum 0.9, weight decay 1e-4), backward, step,
           ``momentum_update()``
=========  ======================================================================================================

Shims, only while the released code runs: ``.cuda()`` and ``torch.cuda.synchronize`` are no-ops; apex's
``amp.scale_loss`` yields the loss unscaled (apex absent: fp32 step, no loss scaling); smp's ``use_batchnorm`` is
passed on as ``use_norm`` where the installed smp renamed it; in float64 its ``.float()`` casts keep float64.
Its random draws (``np.random.beta`` for α1, λ, α2; ``torch.randperm`` for the shuffle-BN ids and the mixup
permutation) are replaced by the kit's draws of the same step (the shuffle ids by a fixed permutation: on one
device shuffle-BN only reorders the batch).

Printed for 2D and 3D, float64 and float32: every loss term and the total of both sides, and after the
update the largest |ΔW| between the two models' trained weights, momentum encoders, queues and BN statistics.
In float32 each side is also compared with the float64 value of the same term.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import inspect
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pcrl_lib import pcrl as kit_pcrl  # noqa: E402
from pcrl_lib.transforms import PCRLSample  # noqa: E402

RELEASED_MODULES = ("models", "models.pcrl_model", "models.pcrl_model_3d", "models.resnet_mixup", "utils",
                    "losses", "memory_c2l", "pcrl", "pcrl_3d")
NCE_TERMS = ("nce_a", "nce_b", "nce_b_mix")                          # the order of the released criterion calls
MSE_TERMS = ("mse_a_ord", "mse_b_ord", "mse_a_hyb", "mse_b_hyb")     # the order of its criterion2 calls
RELEASED = {"T": 0.2, "m": 0.999, "lr": 1e-3, "momentum": 0.9, "weight_decay": 1e-4, "feat_dim": 128}
# The released n_data is len(train_loader): ~78.5k ChestX-ray14 training images / batch 64 ≈ 1227 batches.
DEFAULT_N_DATA = 1227


def released_dir(path: str | Path) -> Path:
    """The folder of the checkout that holds ``pcrl.py`` (``PATH/pytorch`` or ``PATH``); ValueError otherwise."""
    path = Path(path).expanduser()
    for candidate in (path / "pytorch", path):
        if (candidate / "pcrl.py").is_file() and (candidate / "models" / "pcrl_model_3d.py").is_file():
            return candidate
    raise ValueError(f"{path} is not a checkout of the authors' PCRL repository (no pytorch/pcrl.py and "
                     "pytorch/models/pcrl_model_3d.py under it); pass the folder of a clone")


@contextlib.contextmanager
def _patched(*patches: tuple[Any, str, Any]) -> Iterator[None]:
    """Set ``obj.name = value`` for each patch; on exit restore the old value, or delete what was absent
    (the released modules have no ``amp`` without apex)."""
    missing = object()
    saved = [(obj, name, getattr(obj, name, missing)) for obj, name, _ in patches]
    try:
        for obj, name, value in patches:
            setattr(obj, name, value)
        yield
    finally:
        for obj, name, value in reversed(saved):
            if value is missing:
                delattr(obj, name)
            else:
                setattr(obj, name, value)


class _SmpModules:
    """The smp ``base.modules`` the released 2D model sees: smp ≥ 0.5 renamed Conv2dReLU's ``use_batchnorm`` to
    ``use_norm``, so the released keyword is passed on under the new name. Only the released module's ``md``
    points here: patching smp itself would break smp's own ``super(Conv2dReLU, self)`` calls."""

    def __init__(self, modules: Any):
        self._modules = modules

    def __getattr__(self, name: str) -> Any:
        return getattr(self._modules, name)

    def Conv2dReLU(self, *args: Any, use_batchnorm: bool = True, **kw: Any) -> nn.Module:  # noqa: N802 (smp's name)
        return self._modules.Conv2dReLU(*args, use_norm=use_batchnorm, **kw)


def _shim_smp(pcrl_model: Any) -> None:
    """Point the released ``models/pcrl_model.py`` at :class:`_SmpModules` where the installed smp renamed the
    keyword."""
    if "use_batchnorm" not in inspect.signature(pcrl_model.md.Conv2dReLU.__init__).parameters:
        pcrl_model.md = _SmpModules(pcrl_model.md)


@contextlib.contextmanager
def cpu_shims(keep_float64: bool) -> Iterator[None]:
    """``.cuda()`` → no-op, ``torch.cuda.synchronize`` → no-op; with ``keep_float64`` ``.float()`` keeps float64."""
    original_float = torch.Tensor.float

    def float_(self: torch.Tensor, *args: Any, **kw: Any) -> torch.Tensor:
        return self if self.dtype == torch.float64 else original_float(self, *args, **kw)

    patches = [(torch.Tensor, "cuda", lambda self, *a, **k: self), (nn.Module, "cuda", lambda self, *a, **k: self),
               (torch.cuda, "synchronize", lambda *a, **k: None), (torch.cuda, "empty_cache", lambda *a, **k: None)]
    if keep_float64:
        patches.append((torch.Tensor, "float", float_))
    with _patched(*patches), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the released momentum update uses add_(Number, Tensor), deprecated
        yield


@dataclass
class Released:
    """The released modules: ``step2d``/``step3d`` (train_rep_C2L), models, memory, criterion, moment_update."""

    pcrl: Any
    pcrl_3d: Any
    models: Any
    memory: Any
    losses: Any


def import_released(path: str | Path) -> Released:
    """Import the released training code from a checkout, leaving ``sys.path`` and ``sys.modules`` as they were
    (its top-level names ``models``, ``utils``, ``losses``... would shadow other packages)."""
    folder = str(released_dir(path))
    saved = {name: sys.modules.pop(name) for name in RELEASED_MODULES if name in sys.modules}
    sys.path.insert(0, folder)
    try:
        with cpu_shims(keep_float64=False):
            modules = {name: importlib.import_module(name) for name in ("pcrl", "pcrl_3d", "models", "memory_c2l",
                                                                         "losses", "models.pcrl_model")}
        _shim_smp(modules["models.pcrl_model"])
    except ImportError as error:
        raise ImportError(f"the released code in {folder} does not import ({error}); install its dependencies, "
                          "see benchmarks/released_step.py's docstring") from error
    finally:
        sys.path.remove(folder)
        for name in RELEASED_MODULES:
            sys.modules.pop(name, None)
        sys.modules.update(saved)
    return Released(modules["pcrl"], modules["pcrl_3d"], modules["models"], modules["memory_c2l"], modules["losses"])


# ------------------------------------------------------------------------------------------ weight mapping
_LU = {"conv1": 0, "bn1": 1}  # released LUConv(conv1, bn1) → the kit's Sequential(conv, norm, ReLU)
_DOWN = {"down_tr64": 0, "down_tr128": 1, "down_tr256": 2, "down_tr512": 3}
_UP = {"up_tr256": 0, "up_tr128": 1, "up_tr64": 2}
_RULES = {
    2: [(r"^model\.encoder\.(.*)$", lambda rest: f"encoder_q.{rest}"),
        (r"^model\.decoder\.blocks\.(\d+)\.conv([12])\.(\d)\.(.*)$",
         lambda block, conv, layer, rest: f"decoder.blocks.{block}.convs.{int(conv) - 1}.{layer}.{rest}"),
        (r"^model\.segmentation_head\.0\.(.*)$", lambda rest: f"decoder.head.{rest}"),
        (r"^(fc1|fc2)\.(.*)$", lambda fc, rest: f"head_q.{fc}.{rest}"),
        (r"^aug_(fc1|fc2)\.(.*)$", lambda fc, rest: f"gate.{fc}.{rest}")],
    3: [(r"^(down_tr\d+)\.ops\.(\d)\.(conv1|bn1)\.(.*)$",
         lambda block, layer, kind, rest: f"encoder_q.blocks.{_DOWN[block]}.{layer}.{_LU[kind]}.{rest}"),
        (r"^(up_tr\d+)\.ops\.(\d)\.(conv1|bn1)\.(.*)$",
         lambda block, layer, kind, rest: f"decoder.blocks.{_UP[block]}.convs.{layer}.{_LU[kind]}.{rest}"),
        (r"^(up_tr\d+)\.up_conv\.(.*)$", lambda block, rest: f"decoder.blocks.{_UP[block]}.up.{rest}"),
        (r"^out_tr\.final_conv\.(.*)$", lambda rest: f"decoder.head.{rest}"),
        (r"^(fc1|fc2)\.(.*)$", lambda fc, rest: f"head_q.{fc}.{rest}"),
        (r"^aug_(fc1|fc2)\.(.*)$", lambda fc, rest: f"gate.{fc}.{rest}")],
}


def kit_key(key: str, dims: int) -> str | None:
    """A released ``PCRLModel`` (2D) / ``PCRLModel3d`` state-dict key → the kit PCRL key of the student
    (None: no counterpart, e.g. smp's unused attention Identity has none to map)."""
    for pattern, build in _RULES[dims]:
        match = re.match(pattern, key)
        if match:
            return build(*match.groups())
    return None


def key_map(released_state: dict, dims: int, ema: bool) -> dict[str, str]:
    """{released key: kit key} for the student (``ema=False``) or the EMA model's encoder and head (``ema=True``:
    encoder_k/head_k; the EMA copy's decoder and gate are never used by the released step)."""
    mapping = {}
    for key in released_state:
        kit = kit_key(key, dims)
        if kit is None:
            continue
        if ema:
            if not kit.startswith(("encoder_q.", "head_q.")):
                continue
            kit = kit.replace("encoder_q.", "encoder_k.", 1).replace("head_q.", "head_k.", 1)
        mapping[key] = kit
    return mapping


def copy_released_weights(kit: nn.Module, student: nn.Module, ema: nn.Module, dims: int) -> None:
    """Load the released student and EMA weights (and BN statistics) into the kit model; every kit entry of
    encoder_q, decoder, head_q, gate, encoder_k and head_k must be written exactly once."""
    kit_state = kit.state_dict()
    written: set[str] = set()
    for model, is_ema in ((student, False), (ema, True)):
        state = model.state_dict()
        for r_key, k_key in key_map(state, dims, is_ema).items():
            if k_key not in kit_state or kit_state[k_key].shape != state[r_key].shape:
                raise ValueError(f"released {r_key} {tuple(state[r_key].shape)} has no kit counterpart {k_key}")
            kit_state[k_key].copy_(state[r_key])
            written.add(k_key)
    expected = {k for k in kit_state if not k.startswith("contrast.")}
    if written != expected:
        raise ValueError(f"weights not mapped: kit {sorted(expected - written)[:5]}, "
                         f"extra {sorted(written - expected)[:5]}")


# ------------------------------------------------------------------------------------------ the step
@dataclass
class StepResult:
    terms: dict[str, float]
    total: float
    weights: dict[str, torch.Tensor] = field(default_factory=dict)     # kit names, after the step
    moved: float = 0.0                                                 # max |W_after − W_before|, trained weights


class _Recorder(nn.Module):
    """Wraps a released criterion and keeps every value it returns."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.values = inner, []

    def forward(self, *args: Any) -> torch.Tensor:
        value = self.inner(*args)
        self.values.append(value)
        return value


class _Amp:
    """apex's ``amp.scale_loss`` without apex: yields the loss itself and keeps it."""

    def __init__(self):
        self.losses: list[torch.Tensor] = []

    @contextlib.contextmanager
    def scale_loss(self, loss: torch.Tensor, optimizer: Any) -> Iterator[torch.Tensor]:
        self.losses.append(loss)
        yield loss


def make_batch(dims: int, batch: int, size: tuple[int, ...], seed: int) -> PCRLSample:
    """Random views (x1, x2), TCA targets (T1, T2), clean crops (g1, g2; in [0, 1] in 3D) and valid TCA codes."""
    gen = torch.Generator().manual_seed(seed)
    channels = 3 if dims == 2 else 1

    def image() -> torch.Tensor:
        x = torch.rand(batch, channels, *size, generator=gen)
        return (x - 0.45) / 0.25 if dims == 2 else x

    def code() -> torch.Tensor:
        flips = torch.randint(0, 2, (batch, dims), generator=gen).float()
        return torch.cat([flips, nn.functional.one_hot(torch.randint(0, 4, (batch,), generator=gen), 4).float()], 1)

    x1, x2, t1, t2, g1, g2 = (image() for _ in range(6))
    return PCRLSample(x1, x2, t1, t2, code(), code(), g1, g2)


def _trained_weights(kit: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in kit.state_dict().items()}


def run_kit(kit: nn.Module, sample: PCRLSample, seed: int) -> tuple[StepResult, dict[str, Any]]:
    """The kit's step (method forward, SGD step, EMA update) → result and the draws it made (α1, λ, π, α2)."""
    draws: dict[str, Any] = {"alpha": []}

    def draw_alpha(generator: torch.Generator) -> float:
        value = original_alpha(generator)
        draws["alpha"].append(value)
        return value

    def draw_mix(batch_size: int, generator: torch.Generator):
        lam, perm = original_mix(batch_size, generator)
        draws["lam"], draws["perm"] = lam, perm.clone()
        return lam, perm

    original_alpha, original_mix = kit_pcrl.draw_alpha, kit_pcrl.draw_mix
    before = _trained_weights(kit)
    params = [p for p in kit.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=RELEASED["lr"], momentum=RELEASED["momentum"],
                                weight_decay=RELEASED["weight_decay"])
    with _patched((kit_pcrl, "draw_alpha", draw_alpha), (kit_pcrl, "draw_mix", draw_mix)):
        out = kit(sample, torch.Generator().manual_seed(seed))
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    optimizer.step()
    kit.momentum_update()
    after = _trained_weights(kit)
    moved = max((after[k] - before[k]).abs().max().item() for k, p in kit.named_parameters() if p.requires_grad)
    terms = {name: out.parts[name].item() for name in (*NCE_TERMS, *MSE_TERMS)}
    return StepResult(terms, out.loss.item(), after, moved), draws


def run_released(released: Released, dims: int, student: nn.Module, ema: nn.Module, contrast: nn.Module,
                 n_data: int, sample: PCRLSample, draws: dict[str, Any], shuffle: torch.Tensor,
                 float64: bool) -> tuple[StepResult, dict[str, torch.Tensor]]:
    """The released ``train_rep_C2L`` for one batch with the kit's draws → result (released names) and the
    weights after the step, renamed to kit keys."""
    module = released.pcrl if dims == 2 else released.pcrl_3d
    criterion = _Recorder(released.losses.NCECriterion(n_data))
    criterion2 = _Recorder(nn.MSELoss())
    amp = _Amp()
    optimizer = torch.optim.SGD(student.parameters(), lr=RELEASED["lr"], momentum=RELEASED["momentum"],
                                weight_decay=RELEASED["weight_decay"])
    betas = [draws["alpha"][0], draws["lam"], draws["alpha"][1]]     # the order train_rep_C2L draws them
    perms = [shuffle.clone(), draws["perm"].clone()]                  # get_shuffle_ids, then mixup_data

    def beta(a: float, b: float) -> float:
        return betas.pop(0)

    def randperm(n: int, *args: Any, **kw: Any) -> torch.Tensor:
        return perms.pop(0)

    numpy_stub = type("np", (), {"random": type("random", (), {"beta": staticmethod(beta)})})
    batch = [(sample.x1, sample.x2, sample.T1, sample.T2, sample.g1, sample.g2, sample.c1, sample.c2)]
    before = {k: v.detach().clone() for k, v in student.state_dict().items()}
    with cpu_shims(keep_float64=float64), _patched((module, "np", numpy_stub), (module, "amp", amp),
                                                   (torch, "randperm", randperm)):
        module.train_rep_C2L(0, [tuple(t.clone() for t in batch[0])], student, ema, contrast, criterion,
                             optimizer, criterion2)
    if betas or perms:
        raise RuntimeError(f"the released step drew {3 - len(betas)} Beta and {2 - len(perms)} permutation values "
                           "instead of 3 and 2: the draws no longer line up with the kit's")
    terms = {name: v.item() for name, v in zip(NCE_TERMS, criterion.values)}
    terms.update({name: v.item() for name, v in zip(MSE_TERMS, criterion2.values)})
    weights = {}
    for model, is_ema in ((student, False), (ema, True)):
        state = model.state_dict()
        weights.update({k_key: state[r_key].detach().clone() for r_key, k_key in key_map(state, dims, is_ema).items()})
    weights["contrast.queue.queue"] = contrast.memory.detach().clone()
    after = student.state_dict()
    moved = max((after[k] - before[k]).abs().max().item() for k, _ in student.named_parameters())
    return StepResult(terms, amp.losses[0].item(), weights, moved), weights


def build_pair(released: Released, dims: int, K: int, n_data: int, seed: int, dtype: torch.dtype, key_mix: str,
               nce_exact: bool) -> tuple[nn.Module, nn.Module, nn.Module, nn.Module]:
    """(released student, released EMA copy, released MemoryC2L, kit PCRL with the same weights and queue)."""
    torch.manual_seed(seed)
    with cpu_shims(keep_float64=False):
        if dims == 2:
            student, ema = released.models.PCRLModel(student=True), released.models.PCRLModel(student=False)
        else:
            student = released.models.PCRLModel3d(in_channels=1, n_class=1, student=True, norm="bn")
            ema = released.models.PCRLModel3d(in_channels=1, n_class=1, student=False, norm="bn")
        contrast = released.memory.MemoryC2L(RELEASED["feat_dim"], n_data, K, RELEASED["T"], False)
        released.pcrl.moment_update(student, ema, 0)                # as train_pcrl_2d/3d: E_m starts as a copy
    arch = {"width": 32, "norm": "bn"} if dims == 3 else {}
    kit = kit_pcrl.build_method("pcrl", dims, K=K, m=RELEASED["m"], T=RELEASED["T"], feat_dim=RELEASED["feat_dim"],
                                n_data=n_data, key_mix=key_mix, nce_exact=nce_exact, **arch)
    copy_released_weights(kit, student, ema, dims)
    kit.contrast.queue.queue.copy_(contrast.memory)
    return student.to(dtype), ema.to(dtype), contrast.to(dtype), kit.to(dtype)


@dataclass
class Comparison:
    dims: int
    dtype: torch.dtype
    released: StepResult
    kit: StepResult
    draws: dict[str, Any]
    delta: dict[str, float]                    # |released − kit| for every term, "total" and the weight groups


WEIGHT_GROUPS = {"trained weights (E_o, decoder, heads, gate)": ("encoder_q.", "decoder.", "head_q.", "gate."),
                 "momentum encoder E_m": ("encoder_k.", "head_k."), "queue": ("contrast.queue.queue",)}
# BatchNorm running statistics: each forward in train mode updates them, so they depend on the call order. The
# released 2D decoder alternates block by block (ordinary, then hybrid: the same order for every BN layer); the
# released 3D model decodes the hybrid path first. The kit follows both (PCRL._decode_both).
BN_GROUPS = {"BN statistics of E_o and E_m": ("encoder_q.", "encoder_k."),
             "BN statistics of the decoder": ("decoder.",)}


def compare(released: Released, dims: int, dtype: torch.dtype, *, batch: int = 4, size: tuple[int, ...] = (64, 64),
            K: int = 16384, n_data: int = DEFAULT_N_DATA, seed: int = 0, key_mix: str = "raw",
            nce_exact: bool = False) -> Comparison:
    """One step of each side on the same weights, batch and draws (see the module docstring)."""
    student, ema, contrast, kit = build_pair(released, dims, K, n_data, seed, dtype, key_mix, nce_exact)
    sample = make_batch(dims, batch, size, seed + 1)
    sample = PCRLSample(**{f.name: getattr(sample, f.name).to(dtype) for f in dataclasses.fields(sample)})
    kit_result, draws = run_kit(kit, sample, seed + 2)
    shuffle = torch.randperm(batch, generator=torch.Generator().manual_seed(seed + 3))
    released_result, released_weights = run_released(released, dims, student, ema, contrast, n_data, sample, draws,
                                                     shuffle, dtype == torch.float64)
    draws["shuffle"] = shuffle
    delta = {name: abs(released_result.terms[name] - kit_result.terms[name]) for name in (*NCE_TERMS, *MSE_TERMS)}
    delta["total"] = abs(released_result.total - kit_result.total)
    for group, prefixes in WEIGHT_GROUPS.items():
        keys = [k for k in released_weights if k.startswith(prefixes) and released_weights[k].is_floating_point()
                and not _is_bn_statistic(k)]
        delta[group] = max((released_weights[k] - kit_result.weights[k]).abs().max().item() for k in keys)
    for group, prefixes in BN_GROUPS.items():
        keys = [k for k in released_weights if k.startswith(prefixes) and _is_bn_statistic(k)
                and released_weights[k].is_floating_point()]
        delta[group] = max((released_weights[k] - kit_result.weights[k]).abs().max().item() for k in keys)
    return Comparison(dims, dtype, released_result, kit_result, draws, delta)


def _is_bn_statistic(key: str) -> bool:
    return key.endswith(("running_mean", "running_var", "num_batches_tracked"))


# ------------------------------------------------------------------------------------------ report
def report(result: Comparison, reference: Comparison | None = None) -> str:
    """A text table of the terms and the weight differences (``reference``: the float64 run of the same case)."""
    d = result.draws
    lines = [f"== {result.dims}D, {str(result.dtype).replace('torch.', '')} ==",
             f"draws: alpha1 {d['alpha'][0]:.6f}, lambda {d['lam']:.6f}, alpha2 {d['alpha'][1]:.6f}, "
             f"mixup permutation {d['perm'].tolist()}, shuffle-BN ids {d['shuffle'].tolist()}"]
    head = f"{'term':<10} {'released':>22} {'kit':>22} {'|released - kit|':>16}"
    if reference is not None:
        head += f" {'|released - fp64|':>17} {'|kit - fp64|':>13}"
    lines.append(head)
    rows = [(name, result.released.terms[name], result.kit.terms[name]) for name in (*NCE_TERMS, *MSE_TERMS)]
    rows.append(("total", result.released.total, result.kit.total))
    for name, r, k in rows:
        line = f"{name:<10} {r:>22.15g} {k:>22.15g} {abs(r - k):>16.2e}"
        if reference is not None:
            ref = reference.released.total if name == "total" else reference.released.terms[name]
            line += f" {abs(r - ref):>17.2e} {abs(k - ref):>13.2e}"
        lines.append(line)
    lines.append(f"after the update (the step moved the trained weights by up to {result.released.moved:.2e} "
                 f"released / {result.kit.moved:.2e} kit), max |released - kit|:")
    for group in (*WEIGHT_GROUPS, *BN_GROUPS):
        lines.append(f"  {group:<50} {result.delta[group]:.2e}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/released_step.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="a checkout of the authors' PCRL repository")
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 3], choices=(2, 3))
    parser.add_argument("--dtypes", nargs="+", default=["float64", "float32"], choices=("float64", "float32"))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=64, help="2D view side (a multiple of 32)")
    parser.add_argument("--cube", type=int, nargs=3, default=[16, 16, 16], help="3D cube (multiples of 8)")
    parser.add_argument("--K", type=int, default=16384, help="queue length (released: 16384)")
    parser.add_argument("--n-data", type=int, default=DEFAULT_N_DATA,
                        help="the NCE n (released: len(train_loader), the number of batches)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--key-mix", default="raw", choices=kit_pcrl.KEY_MIXES)
    parser.add_argument("--nce-exact", action="store_true", help="the kit's exact NCE instead of the released one")
    args = parser.parse_args(argv)
    try:
        released = import_released(args.path)
    except (ValueError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"released code: {released_dir(args.path)}; batch {args.batch}, 2D {args.size}², 3D "
          f"{'×'.join(map(str, args.cube))} (width 32), K {args.K}, n_data {args.n_data}, T {RELEASED['T']}, "
          f"m {RELEASED['m']}, lr {RELEASED['lr']}; kit key_mix={args.key_mix!r}, nce_exact={args.nce_exact}")
    worst = 0.0
    for dims in args.dims:
        size = (args.size, args.size) if dims == 2 else tuple(args.cube)
        reference = None
        for name in args.dtypes:
            dtype = getattr(torch, name)
            result = compare(released, dims, dtype, batch=args.batch, size=size, K=args.K, n_data=args.n_data,
                             seed=args.seed, key_mix=args.key_mix, nce_exact=args.nce_exact)
            print(report(result, reference if dtype == torch.float32 else None), flush=True)
            if dtype == torch.float64:
                reference = result
                worst = max(worst, *(result.delta[n] for n in (*NCE_TERMS, *MSE_TERMS, "total")))
    if "float64" not in args.dtypes:
        return 0
    agree = worst <= 1e-5
    print(f"float64: every loss term and the total {'agree' if agree else 'DIFFER'} (largest |released - kit| "
          f"{worst:.1e}; tolerance 1e-5)")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
