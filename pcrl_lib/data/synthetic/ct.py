"""Synthetic CT in Hounsfield units: a chest with lung nodules (LUNA16) and an abdomen with a liver and
liver tumours (LiTS), written in the real datasets' layouts.

Coordinates: arrays are ``(X, Y, Z)``; in the ITK/LPS frame x runs to the patient's left, y to the back
and z upwards. Shapes are modelled in normalised coordinates u, v, w ∈ [-1, 1] along x, y, z; random
textures are filtered with widths given in mm and converted per axis, so anisotropic voxels (thick slices)
still look right. ``difficulty`` in [0, 1] lowers lesion contrast and size and raises noise and clutter.

Tissue values (HU): air −1000, lung parenchyma ≈ −860, fat ≈ −100, soft tissue / blood 30–60, contrast-
enhanced liver ≈ 100, bone 400–800.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..luna16 import ANNOTATION_COLUMNS, CANDIDATE_COLUMNS, CANDIDATE_FILES
from ..volume import Volume, write_volume
from .fields import ellipse_radius, grid, sigmoid, smooth_noise

UID_ROOT = "1.3.6.1.4.1.14519.5.2.1.6279.6001."  # the LIDC/LUNA16 series-UID prefix


def _grid3(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    u, v, w = grid(shape)
    return u[0], v[0], w[0]


def _noise_mm(rng: np.random.Generator, shape, sigma_mm: float, spacing) -> np.ndarray:
    """Unit-variance smooth noise ``shape`` with a Gaussian width of ``sigma_mm`` along every axis."""
    return smooth_noise(rng, shape, tuple(sigma_mm / s for s in spacing))


def _sphere_mm(shape, spacing, centre_vox, radius_mm: float, edge_mm: float = 0.5,
               wobble: np.ndarray | None = None) -> np.ndarray:
    """Soft ball ``(X, Y, Z)`` of ``radius_mm`` around voxel ``centre_vox``; ``wobble`` (unit noise) lobulates it."""
    axes = [(np.arange(n, dtype=np.float32) - c) * s for n, c, s in zip(shape, centre_vox, spacing)]
    dist = np.sqrt(axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2)
    radius = radius_mm * (1.0 + 0.12 * wobble) if wobble is not None else radius_mm
    return sigmoid((radius - dist) / edge_mm).astype(np.float32)


def _tubes(rng: np.random.Generator, shape, spacing, sigma_mm: float, width) -> np.ndarray:
    """Vessel-like tubes ``(X, Y, Z)`` in [0, 1]: where two independent smooth fields are both near zero
    (the intersection of two random surfaces is a random curve network)."""
    f1 = _noise_mm(rng, shape, sigma_mm, spacing)
    f2 = _noise_mm(rng, shape, sigma_mm, spacing)
    return np.exp(-(f1 ** 2 + f2 ** 2) / (2 * np.asarray(width, dtype=np.float32) ** 2)).astype(np.float32)


def _pick_voxels(rng: np.random.Generator, mask: np.ndarray, k: int) -> np.ndarray:
    """``k`` distinct voxel indices ``(k, 3)`` drawn uniformly from a boolean mask (fewer if the mask is small)."""
    flat = np.flatnonzero(mask)
    chosen = rng.choice(flat, size=min(k, flat.size), replace=False) if flat.size else flat
    return np.stack(np.unravel_index(np.sort(chosen), mask.shape), axis=1)


def _geometry(rng: np.random.Generator, size: int, spacing_xy: tuple[float, float],
              spacing_z: tuple[float, float], z_ratio: float) -> tuple[tuple[int, int, int], tuple[float, ...]]:
    # Rounded so that the values survive the text headers (.mhd) and float32 fields (NIfTI) exactly enough.
    sxy = round(float(rng.uniform(*spacing_xy)), 4)
    sz = round(float(rng.uniform(*spacing_z)), 4)
    depth = int(np.clip(round(size * sxy * z_ratio / sz), 16, 4 * size))
    return (size, size, depth), (sxy, sxy, sz)


def chest_ct(rng: np.random.Generator, size: int = 64, difficulty: float = 0.3,
             spacing_xy: tuple[float, float] = (0.6, 0.8), spacing_z: tuple[float, float] = (1.25, 2.5),
             max_nodules: int = 3) -> tuple[np.ndarray, tuple[float, ...], list[dict], dict[str, np.ndarray]]:
    """One chest CT: HU int16 ``(size, size, Z)``, its spacing, its nodules and masks for candidate sampling.

    Z covers about the same mm as the in-plane field of view. Nodules (1..``max_nodules``; diameter 8–25 % of
    the field of view, within 3–30 mm; solid at difficulty 0, part-solid towards 1) sit inside the lungs at
    integer voxel centres. Returns
    ``(hu, spacing, nodules, masks)`` with nodules as ``{"voxel": [i, j, k], "diameter_mm": d}`` and masks
    ``lung``, ``vessel`` (vessel-like structures inside the lung) and ``body`` (soft tissue), all bool.
    """
    shape, spacing = _geometry(rng, size, spacing_xy, spacing_z, 1.0)
    u, v, w = _grid3(shape)
    body_r = ellipse_radius([u, v], [0.0, 0.04], [rng.uniform(0.93, 0.98), rng.uniform(0.76, 0.82)])
    body = body_r < 1.0
    hu = np.full(shape, -1000.0, dtype=np.float32)
    hu = np.where(body, 40.0, hu)                                       # muscle / mediastinum
    hu = np.where(body & (body_r > 0.9), -100.0, hu)                    # subcutaneous fat
    rib_band = (body_r > 0.8) & (body_r < 0.86)
    ribs = rib_band & (np.cos(np.pi * rng.uniform(5, 7) * w + 2.0 * np.abs(u) + rng.uniform(0, 2 * np.pi)) > 0.3)
    spine_r = ellipse_radius([u, v], [0.0, 0.6], [0.13, 0.13])
    hu = np.where(spine_r < 1.0, 350.0, hu)                             # cancellous bone
    hu = np.where((spine_r > 0.8) & (spine_r < 1.0), 750.0, hu)         # cortical shell
    hu = np.where(ellipse_radius([u, v], [0.0, 0.6], [0.04, 0.04]) < 1.0, 20.0, hu)  # spinal canal
    hu = np.where(ellipse_radius([u, v], [0.0, -0.68], [0.1, 0.04]) < 1.0, 500.0, hu)  # sternum
    hu = np.where(ribs, 700.0, hu)

    # Lungs: two deformed ellipsoids above a diaphragm dome, minus the heart and the great vessels.
    wobble = _noise_mm(rng, shape, 8.0, spacing)
    lung = np.zeros(shape, dtype=bool)
    interior = np.zeros(shape, dtype=bool)
    for side in (-1, 1):
        cu = side * rng.uniform(0.45, 0.49)
        radius = ellipse_radius([u, v, w], [cu, 0.0, 0.12], [0.42, 0.68, 1.15]) + 0.05 * wobble
        dome = -0.75 + 0.4 * np.clip(1 - ((u - cu) / 0.42) ** 2 - (v / 0.68) ** 2, 0, 1)
        inside = (radius < 1.0) & (w > dome)
        lung |= inside
        interior |= (radius < 0.72) & (w > dome + 0.15)
    heart = ellipse_radius([u, v, w], [0.12, -0.18, -0.45], [0.34, 0.38, 0.5]) < 1.0
    aorta = ellipse_radius([u, v], [0.1, 0.36], [0.08, 0.08]) < 1.0
    lung &= ~(heart | aorta) & body
    interior &= lung
    hu = np.where(heart | (aorta & body), 45.0, hu)
    parenchyma = -860.0 + 20.0 * _noise_mm(rng, shape, 1.5, spacing)
    hu = np.where(lung, parenchyma, hu)

    # Vessels: a tube network, thicker and denser towards the hila, more clutter when harder.
    hilum = np.exp(-((np.abs(u) - 0.2) ** 2 + v ** 2 + (w + 0.1) ** 2) / 0.5)
    vessels = _tubes(rng, shape, spacing, 3.0, (0.25 + 0.1 * difficulty) * (0.7 + 0.6 * hilum)) * lung
    hu = hu * (1 - vessels) + 40.0 * vessels

    fov = shape[0] * spacing[0]
    nodules, blocked = [], np.zeros(shape, dtype=bool)
    lobes = _noise_mm(rng, shape, 2.0, spacing)
    for _ in range(int(rng.integers(1, max_nodules + 1))):
        # Sized to the field of view: the look-alike chest is small, a real-size nodule would fill a lung.
        diameter = float(np.clip(rng.uniform(0.08, 0.25) * fov * (1 - 0.3 * difficulty), 3.0, 30.0))
        centre = _pick_voxels(rng, interior & ~blocked, 1)
        if len(centre) == 0:
            break
        centre = centre[0]
        ball = _sphere_mm(shape, spacing, centre, diameter / 2, wobble=lobes)
        nodule_hu = -860.0 + 900.0 * (1 - 0.55 * difficulty) + 30.0 * lobes
        hu = hu * (1 - ball) + nodule_hu * ball
        blocked |= _sphere_mm(shape, spacing, centre, diameter / 2 + 6.0) > 0.5
        nodules.append({"voxel": [int(c) for c in centre], "diameter_mm": round(diameter, 3)})

    hu = hu + (10.0 + 30.0 * difficulty) * rng.standard_normal(shape, dtype=np.float32)
    masks = {"lung": lung & ~blocked, "vessel": (vessels > 0.5) & ~blocked,
             "body": body & ~lung & ~blocked & (hu > -200) & (hu < 200)}
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16), spacing, nodules, masks


def _series_uid(rng: np.random.Generator) -> str:
    return UID_ROOT + "".join(str(d) for d in rng.integers(0, 10, 30)).lstrip("0")


def write_luna16(root: Path, n: int, seed: int, size: int, difficulty: float, negatives: int = 24,
                 spacing_xy: tuple[float, float] = (0.6, 0.8), spacing_z: tuple[float, float] = (1.25, 2.5)) -> dict:
    """``subsetK/<uid>.mhd|.raw`` (scan i in subset i mod 10), ``annotations.csv``, ``candidates.csv`` and
    ``candidates_V2.csv`` for ``n`` scans.

    Candidates per scan: each nodule centre plus one jittered point inside it (class 1), and ``negatives``
    class-0 points: half on vessel-like structures (the hard false positives), a third in plain lung, the
    rest in soft tissue, all at least 6 mm from any nodule's surface.
    """
    rng = np.random.default_rng(seed)
    annotations, candidates, scans = [], [], []
    for i in range(n):
        hu, spacing, nodules, masks = chest_ct(rng, size, difficulty, spacing_xy, spacing_z)
        uid = _series_uid(rng)
        extent = np.asarray(hu.shape) * np.asarray(spacing)
        origin = np.round([-extent[0] / 2 + rng.uniform(-20, 20), -extent[1] / 2 + rng.uniform(-20, 20),
                           -extent[2] - rng.uniform(50, 300)], 3)
        volume = Volume(array=hu, spacing=spacing, origin=tuple(float(o) for o in origin))
        subset = f"subset{i % 10}"
        write_volume(volume, root / subset / f"{uid}.mhd")

        centres = np.asarray([nod["voxel"] for nod in nodules], dtype=np.float64).reshape(-1, 3)
        radii_vox = np.asarray([nod["diameter_mm"] / 2 for nod in nodules]).reshape(-1, 1) / np.asarray(spacing)
        jitter = centres + np.rint(rng.uniform(-0.35, 0.35, centres.shape) * radii_vox)
        n_vessel, n_lung = negatives // 2, negatives // 3
        negative = np.concatenate([_pick_voxels(rng, masks["vessel"], n_vessel),
                                   _pick_voxels(rng, masks["lung"], n_lung),
                                   _pick_voxels(rng, masks["body"], negatives - n_vessel - n_lung)]).astype(float)
        points = np.concatenate([centres, jitter, negative])
        labels = np.r_[np.ones(2 * len(centres), dtype=np.int64), np.zeros(len(negative), dtype=np.int64)]
        order = rng.permutation(len(points))
        world = np.round(volume.voxel_to_world(points[order]), 6)
        candidates.append(pd.DataFrame({"seriesuid": uid, "coordX": world[:, 0], "coordY": world[:, 1],
                                        "coordZ": world[:, 2], "class": labels[order]}))
        for nod, xyz in zip(nodules, volume.voxel_to_world(centres) if len(centres) else []):
            nod["world"] = [round(float(c), 6) for c in xyz]
            annotations.append((uid, *nod["world"], nod["diameter_mm"]))
        scans.append({"seriesuid": uid, "file": f"{subset}/{uid}.mhd", "shape": list(hu.shape),
                      "spacing": list(spacing), "origin": [float(o) for o in origin], "nodules": nodules,
                      "candidates": int(len(points)), "positive_candidates": int(labels.sum())})
    pd.DataFrame(annotations, columns=list(ANNOTATION_COLUMNS)).to_csv(root / "annotations.csv", index=False)
    table = pd.concat(candidates, ignore_index=True)[list(CANDIDATE_COLUMNS)]
    for name in CANDIDATE_FILES:
        table.to_csv(root / name, index=False)
    return {"scans": scans}


def abdomen_ct(rng: np.random.Generator, size: int = 64, difficulty: float = 0.3,
               spacing_xy: tuple[float, float] = (0.6, 0.9), spacing_z: tuple[float, float] = (0.8, 2.5),
               max_tumours: int = 3) -> tuple[np.ndarray, np.ndarray, tuple[float, ...], list[dict]]:
    """One contrast-enhanced (portal-venous) abdominal CT with a liver and hypodense liver tumours.

    Returns ``(hu int16 (X, Y, Z), mask uint8 (X, Y, Z) with 0 bg / 1 liver / 2 tumour, spacing, tumours)``;
    tumours (10–30 % of the field of view) as ``{"voxel": [i, j, k], "diameter_mm": d}``; 15 % of
    cases have no tumour (as in LiTS).
    """
    shape, spacing = _geometry(rng, size, spacing_xy, spacing_z, 0.8)
    u, v, w = _grid3(shape)
    body_r = ellipse_radius([u, v], [0.0, 0.05], [rng.uniform(0.9, 0.97), rng.uniform(0.7, 0.78)])
    body = body_r < 1.0
    bowel = _noise_mm(rng, shape, 4.0, spacing)
    hu = np.full(shape, -1000.0, dtype=np.float32)
    hu = np.where(body, np.where(bowel > 0.3, 35.0, -90.0), hu)          # bowel loops in mesenteric fat
    hu = np.where(body & (bowel > 1.6), -700.0, hu)                      # bowel gas
    hu = np.where(body & (body_r > 0.78) & (body_r < 0.86), 50.0, hu)    # abdominal wall muscle
    hu = np.where(body & (body_r >= 0.86), -100.0, hu)                   # subcutaneous fat
    for cu in (-0.2, 0.2):
        hu = np.where(ellipse_radius([u, v], [cu, 0.58], [0.12, 0.1]) < 1.0, 55.0, hu)  # paraspinal muscles
    spine_r = ellipse_radius([u, v], [0.0, 0.52], [0.14, 0.14])
    hu = np.where(spine_r < 1.0, np.where(spine_r > 0.8, 800.0, 400.0), hu)
    hu = np.where(ellipse_radius([u, v], [0.08, 0.3], [0.06, 0.06]) < 1.0, 150.0, hu)    # aorta
    hu = np.where(ellipse_radius([u, v], [-0.1, 0.28], [0.07, 0.06]) < 1.0, 120.0, hu)   # inferior vena cava
    for cu in (-0.38, 0.38):
        hu = np.where(ellipse_radius([u, v, w], [cu, 0.42, -0.35], [0.13, 0.15, 0.4]) < 1.0, 150.0, hu)  # kidneys
    hu = np.where(ellipse_radius([u, v, w], [0.55, 0.25, 0.35], [0.17, 0.26, 0.4]) < 1.0, 110.0, hu)  # spleen
    stomach = ellipse_radius([u, v, w], [0.3, -0.2, 0.45], [0.2, 0.2, 0.3]) < 1.0
    hu = np.where(stomach, np.where(v < -0.28, -800.0, 20.0), hu)

    # Liver: a large deformed ellipsoid in the right upper abdomen, with enhancing hepatic vessels.
    liver_r = ellipse_radius([u, v, w], [rng.uniform(-0.4, -0.3), rng.uniform(-0.05, 0.05), 0.25],
                             [0.5, 0.58, 0.75]) + 0.1 * _noise_mm(rng, shape, 10.0, spacing)
    liver = (liver_r < 1.0) & body & (body_r < 0.78)
    liver_hu = 100.0 + 8.0 * _noise_mm(rng, shape, 1.5, spacing)
    hu = np.where(liver, liver_hu, hu)
    hepatic = _tubes(rng, shape, spacing, 6.0, 0.1) * liver
    hu = hu * (1 - hepatic) + 160.0 * hepatic
    mask = liver.astype(np.uint8)

    tumours, fov = [], shape[0] * spacing[0]
    count = 0 if rng.random() < 0.15 else int(rng.integers(1, max_tumours + 1))
    blocked = np.zeros(shape, dtype=bool)
    lobes = _noise_mm(rng, shape, 2.0, spacing)
    for _ in range(count):
        diameter = float(np.clip(rng.uniform(0.1, 0.3) * fov * (1 - 0.3 * difficulty), 4.0, 60.0))
        centre = _pick_voxels(rng, liver & (liver_r < 0.75) & ~blocked, 1)
        if len(centre) == 0:
            break
        centre = centre[0]
        ball = _sphere_mm(shape, spacing, centre, diameter / 2, wobble=lobes) * liver
        tumour_hu = 100.0 - 70.0 * (1 - 0.7 * difficulty) + 10.0 * lobes
        hu = hu * (1 - ball) + tumour_hu * ball
        mask[ball > 0.5] = 2
        blocked |= _sphere_mm(shape, spacing, centre, diameter / 2 + 4.0) > 0.5
        tumours.append({"voxel": [int(c) for c in centre], "diameter_mm": round(diameter, 3)})
    hu = hu + (8.0 + 20.0 * difficulty) * rng.standard_normal(shape, dtype=np.float32)
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16), mask, spacing, tumours


def save_nifti(array: np.ndarray, spacing, path: Path, origin=(0.0, 0.0, 0.0), flip_xy: bool = True) -> None:
    """Write ``(X, Y, Z)`` ``array`` as NIfTI with a scanner (qform = sform, code 1) affine.

    NIfTI affines are RAS; with ``flip_xy`` the x and y axes point to the patient's right and front, as in
    DICOM-derived volumes, so the ITK (LPS) view of the file has an identity direction.
    """
    import nibabel as nib

    signs = np.array([-1.0, -1.0, 1.0]) if flip_xy else np.ones(3)
    affine = np.eye(4)
    affine[:3, :3] = np.diag(signs * np.asarray(spacing, dtype=np.float64))
    affine[:3, 3] = signs * np.asarray(origin, dtype=np.float64)
    image = nib.Nifti1Image(array, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, str(path))


def write_lits(root: Path, n: int, seed: int, size: int, difficulty: float) -> dict:
    """``Training Batch 1/`` (the first half) and ``Training Batch 2/`` with ``volume-N.nii`` (int16 HU) and
    ``segmentation-N.nii`` (uint8: 0 bg, 1 liver, 2 tumour) for N = 0..n-1."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        hu, mask, spacing, tumours = abdomen_ct(rng, size, difficulty)
        folder = root / ("Training Batch 1" if i < (n + 1) // 2 else "Training Batch 2")
        origin = (rng.uniform(-200, -150), rng.uniform(-200, -150), rng.uniform(-400, -100))
        save_nifti(hu, spacing, folder / f"volume-{i}.nii", origin)
        save_nifti(mask, spacing, folder / f"segmentation-{i}.nii", origin)
        cases.append({"case_id": i, "volume": str((folder / f"volume-{i}.nii").relative_to(root)),
                      "shape": list(hu.shape), "spacing": list(spacing), "tumours": tumours,
                      "voxels": {"liver": int((mask >= 1).sum()), "tumour": int((mask == 2).sum())}})
    return {"cases": cases}
