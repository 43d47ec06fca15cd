"""Synthetic chest radiographs whose findings change what the image shows, and their label sampler.

The image model works like a radiograph: brightness is tissue density along the beam. Air-filled lung is
dark; heart, mediastinum, spine, ribs and diaphragm are bright; a finding either *fills lung air* (an
opacity: effusion, consolidation, mass, ...) or changes anatomy (cardiomegaly = a larger heart shadow,
emphysema = larger, darker lungs, pneumothorax = an apex without lung markings and a pleural line).

Legend: ``labels`` ``(N, 14)`` 0/1 in :data:`~pcrl_lib.data.nih.NIH_LABELS` order; ``strength`` ``(N, 14)``
in [0, 1] scales each finding's visible effect (1 = fully shown, 0.5 = ambiguous, used for CheXpert's
uncertain labels); ``difficulty`` in [0, 1] shrinks every effect (amplitude 1 − 0.7·difficulty) and raises
the noise (σ = 0.01 + 0.04·difficulty). Images are float32 ``(N, H, W)`` in [0, 1], rows = top → bottom,
columns = patient's right → left (a PA view as displayed).
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

from ..nih import NIH_LABELS
from .fields import col, ellipse_radius, grid, sigmoid, smooth_noise, soft_inside

L = {name: i for i, name in enumerate(NIH_LABELS)}

# Prevalences are higher than in the real release (where Hernia is 0.2 %) so that a few dozen images carry
# positives of most labels; the ordering of frequencies follows the real table.
PREVALENCE = np.array([0.16, 0.10, 0.20, 0.24, 0.08, 0.10, 0.05, 0.08, 0.08, 0.06, 0.05, 0.05, 0.07, 0.03])
# Latent factors behind co-occurrence: cardiac failure (cardiomegaly, effusion, edema), infection/air-space
# disease, focal lesions (mass, nodule), chronic lung disease. Loadings squared sum to < 1 per label.
FACTORS = ("cardiac", "airspace", "lesion", "chronic")
LOADINGS = np.zeros((len(NIH_LABELS), len(FACTORS)))
for _name, _loads in {
    "Cardiomegaly": (0.75, 0, 0, 0), "Effusion": (0.5, 0.45, 0, 0), "Edema": (0.7, 0.2, 0, 0),
    "Atelectasis": (0.2, 0.6, 0, 0), "Infiltration": (0, 0.6, 0, 0), "Pneumonia": (0, 0.7, 0, 0),
    "Consolidation": (0, 0.7, 0, 0), "Mass": (0, 0, 0.7, 0), "Nodule": (0, 0, 0.7, 0),
    "Emphysema": (0, 0, 0, 0.7), "Fibrosis": (0, 0, 0, 0.65), "Pleural_Thickening": (0, 0, 0.2, 0.6),
    "Pneumothorax": (0, 0, 0, 0.45), "Hernia": (0, 0, 0, 0.2),
}.items():
    LOADINGS[L[_name]] = _loads


def sample_findings(rng: np.random.Generator, patient_of_image: np.ndarray, patient_correlation: float = 0.6,
                    prevalence: np.ndarray = PREVALENCE) -> np.ndarray:
    """Draw 0/1 labels ``(N, 14)`` with realistic co-occurrence and per-patient persistence.

    A Gaussian copula: ``z = Λ f + sqrt(1 − |Λ_i|²) e`` with factors ``f`` and noise ``e`` each shared within a
    patient to the extent ``patient_correlation``; label i is positive when ``z_i > Φ⁻¹(1 − prevalence_i)``.
    ``patient_of_image`` ``(N,)`` holds each image's patient index (0..P-1).
    """
    patient_of_image = np.asarray(patient_of_image)
    n, n_patients = len(patient_of_image), int(patient_of_image.max()) + 1
    rho = float(patient_correlation)
    k = len(FACTORS)
    shared = rng.standard_normal((n_patients, k + len(NIH_LABELS)))[patient_of_image]
    own = rng.standard_normal((n, k + len(NIH_LABELS)))
    latent = np.sqrt(rho) * shared + np.sqrt(1.0 - rho) * own
    unique = np.sqrt(1.0 - (LOADINGS ** 2).sum(axis=1))
    z = latent[:, :k] @ LOADINGS.T + latent[:, k:] * unique
    thresholds = np.array([NormalDist().inv_cdf(1.0 - p) for p in prevalence])
    return (z > thresholds).astype(np.uint8)


def sample_anatomy(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Per-person anatomy ``(n,)`` arrays: body width, lung size and height, heart size and offset, rib phase."""
    return {
        "body_w": rng.uniform(0.84, 0.97, n), "lung_w": rng.uniform(0.92, 1.05, n),
        "lung_h": rng.uniform(0.92, 1.05, n), "lung_cy": rng.uniform(-0.12, -0.03, n),
        "heart": rng.uniform(0.9, 1.05, n), "heart_u": rng.uniform(0.08, 0.15, n),
        "rib_phase": rng.uniform(0.0, 2 * np.pi, n), "rib_freq": rng.uniform(5.5, 7.0, n),
    }


def jitter_anatomy(rng: np.random.Generator, anatomy: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same person imaged again: positioning and inspiration vary a little, anatomy stays."""
    n = len(anatomy["heart"])
    out = dict(anatomy)
    out["shift_u"] = rng.uniform(-0.04, 0.04, n)
    out["shift_v"] = rng.uniform(-0.04, 0.04, n)
    out["lung_h"] = anatomy["lung_h"] * rng.uniform(0.97, 1.03, n)
    out["gain"] = rng.uniform(0.9, 1.1, n)
    out["offset"] = rng.uniform(-0.03, 0.03, n)
    return out


def _point_in(rng: np.random.Generator, centre_u, centre_v, axis_u, axis_v, reach: float = 0.6):
    """A uniformly drawn point inside each item's ellipse scaled by ``reach``: ``(N,)`` u and v."""
    n = centre_u.shape[0]
    radius = reach * np.sqrt(rng.uniform(0, 1, n))
    angle = rng.uniform(0, 2 * np.pi, n)
    return centre_u + axis_u * radius * np.cos(angle), centre_v + axis_v * radius * np.sin(angle)


def _blob(u, v, cu, cv, radius, edge: float = 0.012):
    """Soft disc ``(N, H, W)`` at per-item centres ``(N,)`` with per-item radii ``(N,)``."""
    dist = np.sqrt((u - col(cu, 2)) ** 2 + (v - col(cv, 2)) ** 2)
    return sigmoid((col(radius, 2) - dist) / edge)


def chest_xrays(labels: np.ndarray, rng: np.random.Generator, size: int = 64, difficulty: float = 0.3,
                anatomy: dict[str, np.ndarray] | None = None, strength: np.ndarray | None = None,
                devices: np.ndarray | None = None) -> np.ndarray:
    """Render frontal (PA) chest radiographs for ``labels`` ``(N, 14)`` → float32 ``(N, size, size)`` in [0, 1].

    ``anatomy``: per-image parameters from :func:`sample_anatomy` + :func:`jitter_anatomy` (drawn when None);
    ``strength`` ``(N, 14)``: visibility of each finding (default = ``labels``); ``devices`` ``(N,)`` bool:
    draw a support-device tube (CheXpert's "Support Devices").
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape[1] != len(NIH_LABELS):
        raise ValueError(f"labels must have shape (N, {len(NIH_LABELS)}), got {labels.shape}")
    if not 0.0 <= difficulty <= 1.0:
        raise ValueError(f"difficulty must be in [0, 1], got {difficulty}")
    n = labels.shape[0]
    anatomy = anatomy if anatomy is not None else jitter_anatomy(rng, sample_anatomy(rng, n))
    shown = (labels if strength is None else strength).astype(np.float32)
    s = shown * (1.0 - 0.7 * difficulty)
    S = {name: col(s[:, i], 2) for name, i in L.items()}  # (N, 1, 1) effect size per finding
    a = anatomy
    v, u = grid((size, size))
    u = u - col(a["shift_u"], 2)
    v = v - col(a["shift_v"], 2)
    px = 1.0 / size  # one pixel in normalised units (the grid spans 2)

    body = soft_inside(ellipse_radius([u, v], [0.0, 0.12], [col(a["body_w"], 2), 1.2]), 0.02)

    # Lung geometry, modified by the findings that change lung volume.
    atel_side = rng.integers(0, 2, n)
    h_scale = a["lung_h"] * (1 + 0.06 * s[:, L["Emphysema"]]) * (1 - 0.05 * s[:, L["Fibrosis"]])
    w_scale = a["lung_w"] * (1 + 0.04 * s[:, L["Emphysema"]])
    lung_u = [-0.40 * w_scale, 0.40 * w_scale]
    lung_au = [0.27 * w_scale, 0.25 * w_scale]
    lung_av = [0.58 * h_scale * (1 - 0.10 * s[:, L["Atelectasis"]] * (atel_side == side)) for side in (0, 1)]
    # Volume loss pulls the base up while the apex stays put.
    lung_v = [a["lung_cy"] + (lung_av[side] - 0.58 * h_scale) for side in (0, 1)]
    radius = [ellipse_radius([u, v], [col(lung_u[k], 2), col(lung_v[k], 2)],
                             [col(lung_au[k], 2), col(lung_av[k], 2)]) for k in (0, 1)]
    lungs_side = [soft_inside(r, 0.03) for r in radius]
    lungs = np.maximum(*lungs_side)

    def side_mask(side):  # per-item choice of the right (0) or left (1) lung
        return np.where(col(side, 2) == 0, lungs_side[0], lungs_side[1])

    def side_geometry(side):  # per-item (centre u, centre v, half-width, half-height) of the chosen lung
        return tuple(np.where(side == 0, pair[0], pair[1]) for pair in (lung_u, lung_v, lung_au, lung_av))

    heart_scale = a["heart"] * (1 + 0.35 * s[:, L["Cardiomegaly"]])
    heart = soft_inside(ellipse_radius([u, v], [col(a["heart_u"], 2), col(a["lung_cy"] + 0.36, 2)],
                                       [col(0.29 * heart_scale, 2), col(0.22 * heart_scale, 2)]), 0.04)
    spine = sigmoid((0.085 - np.abs(u)) / 0.01) * (1 + 0.25 * np.cos(2 * np.pi * 9 * v))
    # Posterior ribs: bands that leave the spine and fall laterally.
    rib_curve = v - 0.5 * np.abs(u) + 0.3 * u ** 2
    ribs = np.clip(np.cos(np.pi * col(a["rib_freq"], 2) * rib_curve + col(a["rib_phase"], 2)), 0, 1) ** 3
    ribs = ribs * sigmoid((np.abs(u) - 0.1) / 0.02)

    # Lung markings: vessel-like texture, denser towards the hila.
    hilum = np.exp(-((np.abs(u) - 0.22) ** 2 + (v - col(a["lung_cy"], 2)) ** 2) / 0.12)
    texture = smooth_noise(rng, (n, size, size), 1.2 * size / 64, ndim=2) * (0.5 + hilum)
    texture = texture * (1 - 0.5 * S["Emphysema"])

    fill = np.zeros((n, size, size), dtype=np.float32)  # how much lung air each finding replaces
    extra = np.zeros((n, size, size), dtype=np.float32)  # brightness changes that are not air-space filling

    # Atelectasis: plate-like band in the lower lung plus the volume loss above.
    cu, cv, au, av = side_geometry(atel_side)
    slope = rng.uniform(-0.3, 0.3, n)
    band = np.exp(-((v - col(cv + 0.3 * av, 2) - col(slope, 2) * (u - col(cu, 2))) / 0.04) ** 2)
    fill += 0.8 * S["Atelectasis"] * band * side_mask(atel_side)

    # Effusion: fluid filling the base, meniscus rising laterally (blunted costophrenic angle).
    eff_side = rng.integers(0, 3, n)  # 0 right, 1 left, 2 both
    for side in (0, 1):
        cu, cv, au, av = side_geometry(np.full(n, side))
        meniscus = 0.2 * col(av, 2) * ((u - col(cu, 2)) / col(au, 2)) ** 2
        level = col(cv + av * (1 - rng.uniform(0.5, 0.8, n)), 2) - meniscus
        on = col((eff_side == side) | (eff_side == 2), 2)
        fill += 0.95 * S["Effusion"] * on * sigmoid((v - level) / 0.02) * lungs_side[side]

    # Infiltration: patchy ill-defined opacities.
    patches = sigmoid((smooth_noise(rng, (n, size, size), 3.5 * size / 64, ndim=2) - 0.7) / 0.25)
    fill += 0.5 * S["Infiltration"] * patches * lungs

    # Mass (> 3 cm): one large round opacity; Nodule: up to three small ones.
    side = rng.integers(0, 2, n)
    pu, pv = _point_in(rng, *side_geometry(side), reach=0.5)
    fill += S["Mass"] * _blob(u, v, pu, pv, rng.uniform(0.09, 0.14, n)) * side_mask(side)
    for k in range(3):
        present = col(rng.integers(0, 3, n) >= k, 2)  # first nodule always, more with decreasing chance
        side = rng.integers(0, 2, n)
        pu, pv = _point_in(rng, *side_geometry(side), reach=0.7)
        fill += 0.95 * S["Nodule"] * present * _blob(u, v, pu, pv, rng.uniform(0.03, 0.05, n), 0.006) * side_mask(side)

    # Pneumonia: a fluffy lower-lobe opacity; Consolidation: a dense homogeneous lobar region.
    side = rng.integers(0, 2, n)
    cu, cv, au, av = side_geometry(side)
    fluffy = 0.75 + 0.25 * smooth_noise(rng, (n, size, size), 1.5 * size / 64, ndim=2)
    blob = np.exp(-((u - col(cu, 2)) ** 2 + (v - col(cv + 0.35 * av, 2)) ** 2) / (2 * 0.13 ** 2))
    fill += 0.8 * S["Pneumonia"] * blob * fluffy * side_mask(side)
    side = rng.integers(0, 2, n)
    pu, pv = _point_in(rng, *side_geometry(side), reach=0.4)
    lobe = soft_inside(ellipse_radius([u, v], [col(pu, 2), col(pv, 2)],
                                      [col(rng.uniform(0.12, 0.2, n), 2), col(rng.uniform(0.1, 0.16, n), 2)]), 0.02)
    fill += S["Consolidation"] * lobe * side_mask(side)

    # Edema: bilateral perihilar ("bat-wing") haze.
    perihilar = np.exp(-(np.abs(u) - 0.22) ** 2 / (2 * 0.16 ** 2) - (v - col(a["lung_cy"], 2)) ** 2 / (2 * 0.25 ** 2))
    fill += 0.6 * S["Edema"] * perihilar * lungs

    # Fibrosis: coarse reticular lines, worst at the bases.
    reticular = np.maximum(smooth_noise(rng, (n, size, size), 0.7 * size / 64, ndim=2), 0)
    fill += 0.35 * S["Fibrosis"] * reticular * lungs * sigmoid((v - col(a["lung_cy"], 2)) / 0.15)

    fill = np.clip(fill, 0.0, 1.0)
    air = lungs * (1 - heart) * (1 - fill)

    # Pneumothorax: apical air without lung markings, darker, with a thin visceral pleural line.
    side = rng.integers(0, 2, n)
    cu, cv, au, av = side_geometry(side)
    edge_v = col(cv - av * (1 - 0.8 * rng.uniform(0.5, 1.0, n)), 2)
    apex = sigmoid((edge_v - v) / 0.015) * side_mask(side)
    texture = texture * (1 - col(shown[:, L["Pneumothorax"]], 2) * apex)  # markings vanish at any difficulty
    pleural_line = np.exp(-((v - edge_v) / (1.5 * px)) ** 2) * side_mask(side)
    extra += S["Pneumothorax"] * (0.12 * pleural_line - 0.12 * apex)

    # Pleural thickening: a bright rim along one lung's outline.
    side = rng.integers(0, 2, n)
    rim_radius = np.where(col(side, 2) == 0, radius[0], radius[1])
    extra += 0.16 * S["Pleural_Thickening"] * np.exp(-((rim_radius - 0.97) / 0.04) ** 2)

    # Hiatal hernia: a round retrocardiac structure with an air-fluid level.
    hernia = _blob(u, v, np.full(n, 0.04), a["lung_cy"] + 0.5, np.full(n, 0.11))
    air_part = sigmoid((col(a["lung_cy"] + 0.5, 2) - v) / 0.01)
    extra += S["Hernia"] * hernia * (0.15 * (1 - air_part) - 0.25 * air_part)

    image = (0.04 + 0.50 * body + 0.12 * spine * body + 0.07 * ribs * body
             - (0.36 + 0.06 * S["Emphysema"]) * air + 0.045 * texture * air + extra)
    if devices is not None:
        # Support device: a bright tube entering from the top, ending near the carina.
        start = col(rng.uniform(-0.15, 0.15, n), 2)
        tip_v = col(a["lung_cy"] + rng.uniform(-0.2, 0.1, n), 2)
        path_u = start + 0.1 * (v + 1)
        tube = np.exp(-((u - path_u) / (1.2 * px)) ** 2) * sigmoid((tip_v - v) / 0.01)
        image = image + 0.35 * tube * col(np.asarray(devices, dtype=np.float32), 2)
    image = image * col(a["gain"], 2) + col(a["offset"], 2)
    image = image + (0.01 + 0.04 * difficulty) * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def lateral_xrays(labels: np.ndarray, rng: np.random.Generator, size: int = 64, difficulty: float = 0.3,
                  anatomy: dict[str, np.ndarray] | None = None, strength: np.ndarray | None = None) -> np.ndarray:
    """Render lateral chest radiographs ``(N, size, size)`` in [0, 1] (anterior on the left).

    Fewer findings show on a lateral view: cardiomegaly (a larger anterior heart), effusion (posterior
    costophrenic blunting), mass / nodule / consolidation (round opacities).
    """
    labels = np.asarray(labels)
    n = labels.shape[0]
    anatomy = anatomy if anatomy is not None else jitter_anatomy(rng, sample_anatomy(rng, n))
    s = (labels if strength is None else strength).astype(np.float32) * (1.0 - 0.7 * difficulty)
    S = {name: col(s[:, i], 2) for name, i in L.items()}
    a = anatomy
    v, u = grid((size, size))
    u = u - col(a["shift_u"], 2)
    v = v - col(a["shift_v"], 2)
    body = soft_inside(ellipse_radius([u, v], [0.0, 0.1], [0.85, 1.2]), 0.02)
    lung = soft_inside(ellipse_radius([u, v], [0.05, col(a["lung_cy"], 2)], [0.55, col(0.6 * a["lung_h"], 2)]), 0.03)
    heart_scale = a["heart"] * (1 + 0.35 * s[:, L["Cardiomegaly"]])
    heart = soft_inside(ellipse_radius([u, v], [-0.28, col(a["lung_cy"] + 0.3, 2)],
                                       [col(0.24 * heart_scale, 2), col(0.26 * heart_scale, 2)]), 0.04)
    spine = sigmoid((0.1 - np.abs(u - 0.68)) / 0.01) * (1 + 0.3 * np.cos(2 * np.pi * 9 * v))
    fill = 0.95 * S["Effusion"] * sigmoid((v - col(a["lung_cy"] + 0.4, 2) - 0.3 * (0.5 - u)) / 0.03)
    for name, radius in (("Mass", (0.09, 0.14)), ("Nodule", (0.03, 0.05)), ("Consolidation", (0.12, 0.18))):
        pu, pv = _point_in(rng, np.full(n, 0.05), a["lung_cy"], np.full(n, 0.55), 0.6 * a["lung_h"], reach=0.6)
        fill = fill + 0.95 * S[name] * _blob(u, v, pu, pv, rng.uniform(*radius, n))
    texture = smooth_noise(rng, (n, size, size), 1.2 * size / 64, ndim=2)
    air = lung * (1 - heart) * (1 - np.clip(fill, 0, 1))
    image = 0.04 + 0.52 * body + 0.15 * spine * body - 0.3 * air + 0.04 * texture * air
    image = image * col(a["gain"], 2) + col(a["offset"], 2)
    image = image + (0.01 + 0.04 * difficulty) * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(image, 0.0, 1.0).astype(np.float32)
