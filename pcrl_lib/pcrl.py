"""The PCRL objective and its baselines on one code path (PCRL_SPEC §3–§6, §9).

Legend (names from the paper and MoCo):

===========  ===================================================================================
encoder_q    E_o, the ordinary (query) encoder, trained by backprop
encoder_k    E_m, the momentum (key) encoder: EMA of encoder_q, no gradient
head_q/k     projection heads of E_o / E_m → q / k, unit vectors (N, D)
decoder      D, the one shared U-Net decoder (ordinary and hybrid outputs)
gate         the TCA gate: code c → channel weights on the bottleneck
E_h          the hybrid encoder: at every scale α·F_o + (1−α)·F_m, F_m without gradient (not a network)
contrast     the queue (K keys), temperature T, and the NCE / InfoNCE estimator (:mod:`pcrl_lib.contrastive`)
m            EMA momentum (0.999): θ_k ← m·θ_k + (1−m)·θ_q after every optimizer step (:func:`ema_momentum`)
α, λ, π      hybrid weight, mixup weight, mixup permutation; α, λ ~ Beta(1,1) = U(0,1), then max(·, 1−·)
===========  ===================================================================================

One step (:meth:`PCRL.forward`, spec §5) on a :class:`pcrl_lib.transforms.PCRLSample` with fields x1, x2
(encoder inputs), T1, T2 (targets after their coded flip/rotation), c1, c2 (TCA codes), g1, g2 (clean crops):

Pass A: k, F_m = E_m(x2); q, F_o = E_o(x1); ordinary D(gate(c1)·F_o) → T1; hybrid
D(mix_α1(gate(c1)·F_o, gate(c2)·F_m)) → α1·T1 + (1−α1)·T2; contrastive (q, k).
Pass B: λ, π mix x1, x2, g1, g2 and the pass-A keys k; k̃ = E_m(x̃2); q̃ = E_o(x̃1); ordinary → g̃1; hybrid
(new α2, no TCA) → α2·g̃1 + (1−α2)·g̃2; contrastive (q̃, k̃) and (q̃, k̃_mix).
Loss = mean of the contrastive terms + mean of the MSE terms. The queue receives k, k̃ and k̃_mix, each right
after its contrastive call, as in the released code.

Variants (:data:`METHODS`, spec §9), all ``forward(sample, generator) -> StepOutput``:

==============  =====  ===  ======  =====  ==========================================================
name            recon  TCA  hybrid  mixup  parts
==============  =====  ===  ======  =====  ==========================================================
pcrl            ✓      ✓    ✓       ✓      nce_a, nce_b, nce_b_mix, mse_a_ord, mse_a_hyb, mse_b_ord,
                                           mse_b_hyb, p_pos
pcrl_tca        ✓      ✓            ✓      nce_a, nce_b, nce_b_mix, mse_a_ord, mse_b_ord, p_pos
pcrl_recon      ✓                   ✓      nce_a, nce_b, nce_b_mix, mse_a_ord, mse_b_ord, p_pos
c2l                                 ✓      nce_a, nce_b, nce_b_mix, p_pos
moco                                       nce_a, p_pos          (InfoNCE by default)
==============  =====  ===  ======  =====  ==========================================================

``models_genesis`` (:class:`ModelsGenesis`) has no contrastive part: a U-Net restores the clean crop from its
distorted version (part ``mse_restore``).

Without TCA (pcrl_recon) the pass-A target is x1 itself: T1 is x1 after a flip/rotation the decoder is not
told about, so the untransformed view is the only learnable target and the ablation isolates the gate.
The "nce_*" parts hold whichever estimator ``nce`` selects (``nce_exact``: the released numerics or the exact
estimator, :mod:`pcrl_lib.contrastive`). Pass-B's mixed keys k̃_mix (``key_mix``):

=========  ==================================================================================
"raw"      default, released: mix the pass-A projections before normalising, k̃_mix = ‖mix(z)‖⁻¹·mix(z)
"unit"     kit: mix the pass-A unit keys k = z/‖z‖, then re-normalise
=========  ==================================================================================

The two differ whenever the projections' norms differ across the batch (a few 1e-3 in nce_b_mix at init).
``benchmarks/released_step.py`` checks one step of each against the authors' released code.

Exports (:meth:`PCRL.export`) are plain dicts {"spatial_dims", "method", "arch", "encoder", "decoder"} loadable
with ``torch.load(weights_only=True)``; :mod:`pcrl_lib.models.exports` reads and loads them.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .config import PRETRAIN_METHODS
from .contrastive import ContrastiveMemory, concat_all_gather, distributed
from .models import (ProjectionHead, TCAGate, arch_kwargs, bottleneck_channels, build_encoder, build_unet,
                     tca_code_dim)
from .transforms.mixup import draw_mix, fold_coefficient, mix

METHODS: dict[str, dict[str, Any]] = {
    "pcrl": {"recon": True, "tca": True, "hybrid": True, "mixup": True, "nce": "nce"},
    "pcrl_tca": {"recon": True, "tca": True, "hybrid": False, "mixup": True, "nce": "nce"},
    "pcrl_recon": {"recon": True, "tca": False, "hybrid": False, "mixup": True, "nce": "nce"},
    "c2l": {"recon": False, "tca": False, "hybrid": False, "mixup": True, "nce": "nce"},
    "moco": {"recon": False, "tca": False, "hybrid": False, "mixup": False, "nce": "infonce"},
}
# Every pretraining method: the contrastive ones above plus the restoration baseline (one list, config's).
METHOD_NAMES = PRETRAIN_METHODS
KEY_MIXES = ("raw", "unit")
# What NCE's n counts (the noise distribution is uniform over n items, Pn = 1/n, and Z = mean(exp(s))·n).
# CMC, where the estimator comes from, counts samples; the released PCRL passes ``len(train_loader)``, the
# number of batches per epoch (its loader keeps the last partial batch), which makes the noise mass K/n
# ~batch-size times larger. Default: as released.
NCE_NOISE = ("batches", "samples")


@dataclass
class StepOutput:
    """What one training step returns: ``loss`` (scalar with gradient) and its named, detached ``parts``."""

    loss: torch.Tensor
    parts: dict[str, torch.Tensor] = field(default_factory=dict)


def draw_alpha(generator: torch.Generator) -> float:
    """The hybrid weight: α ~ Beta(1,1) = U(0,1), folded to max(α, 1−α) ∈ [0.5, 1]."""
    return fold_coefficient(torch.rand((), generator=generator, device=generator.device).item())


def hybrid_mix(features_o: list[torch.Tensor], features_m: list[torch.Tensor], alpha: float) -> list[torch.Tensor]:
    """E_h at every scale: α·F_o + (1−α)·F_m.

    F_m arrives detached (E_m runs under ``no_grad``); when its bottleneck has been multiplied by gate(c2), the
    gate still receives gradient through that product, as in the released code.
    """
    if len(features_o) != len(features_m):
        raise ValueError(f"hybrid mix needs as many momentum levels as ordinary ones: {len(features_m)} vs "
                         f"{len(features_o)}")
    return [alpha * f_o + (1.0 - alpha) * f_m for f_o, f_m in zip(features_o, features_m)]


def _check_fields(sample: Any, names: tuple[str, ...], method: str) -> None:
    missing = [n for n in names if not isinstance(getattr(sample, n, None), torch.Tensor)]
    if missing:
        raise ValueError(f"method {method!r} needs tensor fields {list(names)} on the sample "
                         f"(a pcrl_lib.transforms.PCRLSample); missing {missing}")
    batch = getattr(sample, names[0]).shape[0]
    wrong = {n: tuple(getattr(sample, n).shape) for n in names if getattr(sample, n).shape[0] != batch}
    if wrong:
        raise ValueError(f"sample fields disagree on the batch size {batch}: {wrong}")


def _check_target(output: torch.Tensor, target: torch.Tensor, name: str) -> None:
    if output.shape != target.shape:
        raise ValueError(f"reconstruction target {name} has shape {tuple(target.shape)} but the decoder produces "
                         f"{tuple(output.shape)}; check out_channels and the view size")


def _mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # fp32 even under autocast (the MSE of small residuals underflows in half precision); fp64 stays fp64.
    dtype = torch.promote_types(output.dtype, torch.float32)
    return F.mse_loss(output.to(dtype), target.to(dtype))


def ema_momentum(m: float, horizon_fraction: float, total_steps: int) -> float:
    """The EMA momentum a run uses: ``m`` when ``horizon_fraction`` is 0 (released: 0.999 whatever the budget),
    else m = 1 − 1/max(1, horizon_fraction · total_steps), i.e. an EMA horizon 1/(1−m) of that fraction of the
    run's optimizer steps. The paper's 2D run (78.5k images / batch 64 × 240 epochs ≈ 294k steps) has a horizon
    of 1/(1−0.999) = 1000 steps ≈ 0.34 % of it.

    After t steps the key encoder keeps a share m^t of its initial weights: 0.999^60 ≈ 0.94 (quick profile).
    """
    if not (isinstance(horizon_fraction, (int, float)) and 0.0 <= horizon_fraction <= 1.0):
        raise ValueError(f"ema_horizon_fraction must be in [0, 1] (0 = keep m), got {horizon_fraction!r}")
    if horizon_fraction == 0:
        return float(m)
    return 1.0 - 1.0 / max(1.0, horizon_fraction * total_steps)


@torch.no_grad()
def ema_update(theta_m: list[torch.Tensor], theta_o: list[torch.Tensor], m: float) -> list[torch.Tensor]:
    """One momentum-encoder update as a function: [m·θ_m + (1−m)·θ_o] for each pair of tensors (new tensors,
    no gradient). :meth:`PCRL.momentum_update` writes it into E_m's parameters after every optimizer step."""
    if len(theta_m) != len(theta_o):
        raise ValueError(f"ema_update: {len(theta_m)} momentum tensors but {len(theta_o)} ordinary ones")
    return [t_m * m + t_o.detach() * (1.0 - m) for t_m, t_o in zip(theta_m, theta_o)]


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


class PCRL(nn.Module):
    """PCRL and its contrastive ablations/baselines (the table in the module docstring).

    Args:
        spatial_dims: 2 (ResNet-18 U-Net, X-rays) or 3 (Models-Genesis U-Net, CT cubes).
        method: one of ``METHODS`` ("pcrl", "pcrl_tca", "pcrl_recon", "c2l", "moco").
        K: queue length. m: EMA momentum. T: temperature τ. feat_dim: D.
        nce: "nce" | "infonce"; None → the method's default (NCE, InfoNCE for moco).
        n_data: n of the NCE estimator's uniform noise distribution (required by "nce"); see
            :func:`nce_noise_count` (released: batches per epoch, CMC: samples).
        key_mix: "raw" (released) | "unit" (kit): how pass B mixes the keys (module docstring).
        nce_exact: False = the released NCE numerics (ε = 1e-5, integer Z), True = the exact estimator.
        queue_generator: draws the queue's initial values (global RNG when None).
        **arch: U-Net arguments (:func:`pcrl_lib.models.build_unet`), e.g. width=32, norm="bn" in 3D.
    """

    def __init__(self, spatial_dims: int, method: str = "pcrl", *, K: int = 16384, m: float = 0.999,
                 T: float = 0.2, feat_dim: int = 128, nce: str | None = None, n_data: int | None = None,
                 queue_generator: torch.Generator | None = None, key_mix: str = "raw", nce_exact: bool = False,
                 **arch: Any):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"method={method!r} is not a contrastive method; choose one of {sorted(METHODS)} "
                             "(models_genesis: use build_method)")
        if not (isinstance(m, (int, float)) and 0.0 <= m <= 1.0):
            raise ValueError(f"EMA momentum m must be in [0, 1] (paper: 0.999), got {m!r}")
        if key_mix not in KEY_MIXES:
            raise ValueError(f"key_mix={key_mix!r}; choose 'raw' (released: mix projections, then normalise) or "
                             "'unit' (mix unit keys, then re-normalise)")
        flags = METHODS[method]
        self.method, self.spatial_dims, self.m, self.key_mix = method, spatial_dims, float(m), key_mix
        self.recon, self.tca, self.hybrid, self.mixup = flags["recon"], flags["tca"], flags["hybrid"], flags["mixup"]
        self.arch = {k: v for k, v in arch_kwargs(spatial_dims, **arch).items() if k != "weights"}
        channels = bottleneck_channels(spatial_dims, self.arch.get("width", 32))

        if self.recon:
            unet = build_unet(spatial_dims, **arch)
            self.encoder_q, self.decoder = unet.encoder, unet.decoder
        else:
            self.encoder_q, self.decoder = build_encoder(spatial_dims, **arch), None
        self.head_q = ProjectionHead(channels, 128, feat_dim)
        self.gate = TCAGate(tca_code_dim(spatial_dims), channels, spatial_dims) if self.tca else None
        # E_m starts as an exact copy of E_o and never receives gradients.
        self.encoder_k = copy.deepcopy(self.encoder_q)
        self.head_k = copy.deepcopy(self.head_q)
        for p in (*self.encoder_k.parameters(), *self.head_k.parameters()):
            p.requires_grad_(False)
        self.contrast = ContrastiveMemory(feat_dim, K, T, nce or flags["nce"], n_data, queue_generator,
                                          exact=nce_exact)

    # ----------------------------------------------------------------------------------------------- momentum
    @torch.no_grad()
    def momentum_update(self) -> None:
        """θ_k ← m·θ_k + (1−m)·θ_q for encoder_k/head_k; call after every optimizer step."""
        momentum = [*self.encoder_k.parameters(), *self.head_k.parameters()]
        ordinary = [*self.encoder_q.parameters(), *self.head_q.parameters()]
        for p_k, new in zip(momentum, ema_update(momentum, ordinary, self.m)):
            p_k.copy_(new)

    @torch.no_grad()
    def _key_features(self, x: torch.Tensor, generator: torch.Generator,
                      with_features: bool) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """E_m(x) → (z (N, D) the key projection before normalisation, F_m list or None), without gradient.

        Under torch.distributed this is batch-shuffle BN: the global batch is permuted (rank 0's draw from
        ``generator``), each rank encodes its slice, and the outputs are gathered and un-shuffled, so BN
        statistics never see a query and its own key on the same device.
        """
        if not distributed():
            features = self.encoder_k(x)
            return self.head_k.project(features[-1]), features if with_features else None
        world, rank = dist.get_world_size(), dist.get_rank()
        x_all = concat_all_gather(x)
        perm = torch.randperm(x_all.shape[0], generator=generator, device=generator.device).to(x.device)
        dist.broadcast(perm, src=0)
        features = self.encoder_k(x_all[perm].chunk(world)[rank])
        inverse = torch.argsort(perm)

        def unshuffle(t: torch.Tensor) -> torch.Tensor:
            return concat_all_gather(t)[inverse].chunk(world)[rank]

        z = unshuffle(self.head_k.project(features[-1]))
        return z, [unshuffle(f) for f in features] if with_features else None

    # ----------------------------------------------------------------------------------------------- decoding
    def gated(self, features: list[torch.Tensor], code: torch.Tensor) -> list[torch.Tensor]:
        """TCA: the bottleneck multiplied channel-wise by gate(code); skips unchanged."""
        return [*features[:-1], features[-1] * self.gate(code).to(features[-1].dtype)]

    def _decode_both(self, ordinary: list[torch.Tensor],
                     hybrid: list[torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(decoded ordinary features, decoded hybrid features or None), in the released call order: the 2D
        model decodes the ordinary features first, the 3D model the hybrid ones. The outputs do not depend on the
        order, but the decoder's BatchNorm running statistics do (each train-mode call updates them)."""
        if hybrid is None:
            return self.decode(ordinary), None
        if self.spatial_dims == 3:
            out_hyb = self.decode(hybrid)
            return self.decode(ordinary), out_hyb
        out = self.decode(ordinary)
        return out, self.decode(hybrid)

    def decode(self, features: list[torch.Tensor]) -> torch.Tensor:
        """D(features) followed by the U-Net's final activation (sigmoid in 3D pretraining, none in 2D)."""
        out = self.decoder(features)
        return torch.sigmoid(out) if self.arch.get("final_activation") == "sigmoid" else out

    # ----------------------------------------------------------------------------------------------- the step
    def forward(self, sample: Any, generator: torch.Generator) -> StepOutput:
        """One PCRL step on ``sample`` (fields above, (B, C, *S) tensors on one device) → StepOutput."""
        fields = ("x1", "x2") + (("T1", "T2", "c1", "c2") if self.tca else ()) + \
            (("g1", "g2") if self.recon and self.mixup else ())
        _check_fields(sample, fields, self.method)
        x1, x2 = sample.x1, sample.x2
        if x1.shape != x2.shape:
            raise ValueError(f"views x1 {tuple(x1.shape)} and x2 {tuple(x2.shape)} must have the same shape")
        contrastive: dict[str, torch.Tensor] = {}
        mse: dict[str, torch.Tensor] = {}

        # Pass A (plain).
        z, features_m = self._key_features(x2, generator, with_features=self.hybrid)
        k = F.normalize(z, dim=1)
        features_o = self.encoder_q(x1)
        q = self.head_q(features_o[-1])
        if self.recon:
            (t1, t2), names = ((sample.T1, sample.T2), ("T1", "T2")) if self.tca else ((x1, x2), ("x1", "x2"))
            dec_o = self.gated(features_o, sample.c1) if self.tca else features_o
            if self.hybrid:
                alpha1 = draw_alpha(generator)
                dec_m = self.gated(features_m, sample.c2) if self.tca else features_m
            out, out_hyb = self._decode_both(dec_o, hybrid_mix(dec_o, dec_m, alpha1) if self.hybrid else None)
            _check_target(out, t1, names[0])
            mse["mse_a_ord"] = _mse(out, t1)
            if self.hybrid:
                _check_target(out, t2, names[1])
                mse["mse_a_hyb"] = _mse(out_hyb, alpha1 * t1 + (1.0 - alpha1) * t2)
        contrastive["nce_a"], p_pos = self.contrast(q, k)

        # Pass B (cross-model mixup, no TCA).
        if self.mixup:
            lam, perm = draw_mix(x1.shape[0], generator)
            z_tilde, features_m = self._key_features(mix(x2, lam, perm), generator, with_features=self.hybrid)
            k_tilde = F.normalize(z_tilde, dim=1)
            features_o = self.encoder_q(mix(x1, lam, perm))
            q_tilde = self.head_q(features_o[-1])
            if self.recon:
                g1_tilde, g2_tilde = mix(sample.g1, lam, perm), mix(sample.g2, lam, perm)
                alpha2 = draw_alpha(generator) if self.hybrid else None
                out, out_hyb = self._decode_both(
                    features_o, hybrid_mix(features_o, features_m, alpha2) if self.hybrid else None)
                _check_target(out, g1_tilde, "g1")
                mse["mse_b_ord"] = _mse(out, g1_tilde)
                if self.hybrid:
                    mse["mse_b_hyb"] = _mse(out_hyb, alpha2 * g1_tilde + (1.0 - alpha2) * g2_tilde)
            k_mix = F.normalize(mix(z if self.key_mix == "raw" else k, lam, perm), dim=1)
            contrastive["nce_b"], _ = self.contrast(q_tilde, k_tilde)
            contrastive["nce_b_mix"], _ = self.contrast(q_tilde, k_mix)

        loss = torch.stack(list(contrastive.values())).mean()
        if mse:
            loss = loss + torch.stack(list(mse.values())).mean()
        parts = {name: v.detach() for name, v in {**contrastive, **mse}.items()}
        parts["p_pos"] = p_pos
        return StepOutput(loss=loss, parts=parts)

    # ----------------------------------------------------------------------------------------------- export
    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        """encoder_q's weights (CPU copies): what downstream tasks start from."""
        return _cpu_state(self.encoder_q)

    def export(self) -> dict[str, Any]:
        """{"spatial_dims", "method", "arch", "encoder", "decoder" (None without reconstruction)}."""
        return {"spatial_dims": self.spatial_dims, "method": self.method, "arch": dict(self.arch),
                "encoder": self.encoder_state_dict(),
                "decoder": _cpu_state(self.decoder) if self.decoder is not None else None}


class ModelsGenesis(nn.Module):
    """Models Genesis (spec §9): a U-Net restores the clean crop from its distorted version, MSE.

    The sample is either a :class:`pcrl_lib.transforms.RestorationSample` (``x`` → ``target``, the Models
    Genesis pipeline, input and target aligned) or a :class:`pcrl_lib.transforms.PCRLSample` (``x1`` → ``g1``).

    Args:
        spatial_dims: 2 or 3. **arch: U-Net arguments (:func:`pcrl_lib.models.build_unet`).
    """

    method = "models_genesis"

    def __init__(self, spatial_dims: int, **arch: Any):
        super().__init__()
        self.spatial_dims = spatial_dims
        self.arch = {k: v for k, v in arch_kwargs(spatial_dims, **arch).items() if k != "weights"}
        self.unet = build_unet(spatial_dims, **arch)

    def momentum_update(self) -> None:
        """No momentum encoder: nothing to update (kept so every method has the same interface)."""

    def forward(self, sample: Any, generator: torch.Generator | None = None) -> StepOutput:
        """Distorted (B, C, *S) → restored (B, out_channels, *S), MSE to the clean crop; ``generator`` unused."""
        names = ("x", "target") if hasattr(sample, "target") else ("x1", "g1")
        _check_fields(sample, names, self.method)
        source, target = (getattr(sample, n) for n in names)
        out = self.unet(source)
        _check_target(out, target, names[1])
        loss = _mse(out, target)
        return StepOutput(loss=loss, parts={"mse_restore": loss.detach()})

    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        return _cpu_state(self.unet.encoder)

    def export(self) -> dict[str, Any]:
        return {"spatial_dims": self.spatial_dims, "method": self.method, "arch": dict(self.arch),
                "encoder": self.encoder_state_dict(), "decoder": _cpu_state(self.unet.decoder)}


def build_method(name: str, spatial_dims: int, **cfg: Any) -> PCRL | ModelsGenesis:
    """The pretraining method ``name`` (one of :data:`METHOD_NAMES`) for 2D or 3D.

    ``cfg``: for contrastive methods K, m, T, feat_dim, nce, n_data, queue_generator; for every method the U-Net
    arguments (3D: in_channels, out_channels, width, norm, final_activation; 2D: in_channels, out_channels,
    weights). Unknown keys raise ValueError naming the valid ones.
    """
    if name not in METHOD_NAMES:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHOD_NAMES)}")
    if name == "models_genesis":
        return ModelsGenesis(spatial_dims, **cfg)
    return PCRL(spatial_dims, name, **cfg)


def nce_noise_count(num_items: int, batch_size: int, noise: str = "batches", world_size: int = 1) -> int:
    """NCE's n for a pretraining set of ``num_items`` samples: ``"batches"`` (released: ``len(train_loader)``,
    ceil(num_items / global batch), the global batch being ``batch_size × world_size``) or ``"samples"``
    (CMC: ``num_items``)."""
    if noise not in NCE_NOISE:
        raise ValueError(f"nce_noise={noise!r}; choose 'batches' (released: batches per epoch) or 'samples' (CMC)")
    if noise == "samples":
        return int(num_items)
    return max(1, math.ceil(num_items / (batch_size * world_size)))


def build_method_from_config(pretrain_cfg: Any, spatial_dims: int, num_items: int, world_size: int = 1,
                             **extra: Any) -> PCRL | ModelsGenesis:
    """:func:`build_method` from a :class:`pcrl_lib.config.PretrainConfig` (method, K, m, T, feat_dim, nce,
    key_mix, nce_exact, nce_noise, width_3d) and the pretraining set's sample count ``num_items`` (NCE's n is
    derived from it by :func:`nce_noise_count`); ``extra`` adds or overrides arguments.

    ``m`` is the configured momentum; the trainer rescales it with :func:`ema_momentum` when
    ``ema_horizon_fraction`` > 0."""
    if pretrain_cfg.method == "models_genesis":
        cfg: dict[str, Any] = {}
    else:
        batch = pretrain_cfg.batch_size_2d if spatial_dims == 2 else pretrain_cfg.batch_size_3d
        n_data = nce_noise_count(num_items, batch, pretrain_cfg.nce_noise, world_size)
        cfg = {"K": pretrain_cfg.K, "m": pretrain_cfg.m, "T": pretrain_cfg.T, "feat_dim": pretrain_cfg.feat_dim,
               "nce": pretrain_cfg.nce, "n_data": n_data, "key_mix": pretrain_cfg.key_mix,
               "nce_exact": pretrain_cfg.nce_exact}
    if spatial_dims == 3:
        cfg["width"] = pretrain_cfg.width_3d
    return build_method(pretrain_cfg.method, spatial_dims, **{**cfg, **extra})
