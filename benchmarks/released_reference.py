"""Per-sample reimplementation of the authors' released PCRL augmentations, for timing the kit against.

The released code (github.com/Luchixiang/PCRL, folder ``pytorch/``) augments one sample at a time
inside ``Dataset.__getitem__`` with Python's ``random``, NumPy, torchio (3D) and torchvision on PIL
images (2D). This module redoes each of those steps the same way — same libraries where they are
installed, same per-sample loops, same array sizes and dtypes, same copies — on in-memory arrays
(file loading is not timed). It is written for ``benchmarks/augment.py``; its outputs are random
draws of the same laws as the released code, not bit-identical replays.

What each function mirrors (released file → function):

=============================  ================================================================
``torchio_flip``               ``data.py`` ``pcrl_luna_pretask``: ``torchio.transforms.RandomFlip()``
                               (axis 0, p 0.5). With torchio importable (:data:`TORCHIO`), the real
                               transform on the NumPy crop; else a stand-in: ``np.flip`` + copy
``torchio_affine``             same list: ``torchio.transforms.RandomAffine()`` (scale U(0.9, 1.1)
                               and angle U(−10°, 10°) per axis, linear, padded with the minimum):
                               real torchio (SimpleITK resampling) when importable, else
                               ``scipy.ndimage.affine_transform(order=1)`` as a stand-in
``torchio_blur``               same list: ``torchio.transforms.RandomBlur()`` (σ U(0, 2) per axis):
                               real torchio when importable, else ``scipy.ndimage.gaussian_filter``
``local_pixel_shuffling``      ``datasets/luna_pcrl_pretask.py`` ``PCRLLunaPretask.local_pixel_shuffling``
``nonlinear_transformation``   ``PCRLLunaPretask.nonlinear_transformation`` (+ ``bezier_curve``,
                               ``bernstein_poly``: 100,000 curve points, ``np.sort``, ``np.interp``)
``image_in_painting``          ``PCRLLunaPretask.image_in_painting``
``image_out_painting``         ``PCRLLunaPretask.image_out_painting``
``spatial_aug_3d``             ``PCRLLunaPretask.spatial_aug`` (TCA flips + ``np.rot90``, code of 7)
``genesis_flips``              ``PCRLLunaPretask.data_augmentation`` (Models Genesis flips)
``luna_pair``                  ``PCRLLunaPretask.__getitem__`` after ``np.load``: both crops of a pair
``chest_transforms``           ``data.py`` ``pcrl_chest_pretask``: torchvision ``RandomResizedCrop``,
                               ``RandomRotation(10)``, ``RandomHorizontalFlip``, ``RandomGrayscale(0.2)``,
                               ``RandomApply([GaussianBlur], 0.5)`` (``utils.py`` ``GaussianBlur``:
                               PIL ``ImageFilter.GaussianBlur``, σ U(0.1, 2)), ``ColorJitter(0.4 ×4)``,
                               ``ToTensor``, ``Normalize``, ``utils.py`` ``Cutout(3, 32)``
``cutout``                     ``utils.py`` ``Cutout.__call__``
``spatial_aug_2d``             ``datasets/reverse_pcrl_pretask.py`` ``PCRLChestPretask.aug`` (code of 6)
``chest_pair``                 ``PCRLChestPretask.__getitem__`` after ``Image.open(...).convert('RGB')``
=============================  ================================================================

torchio is not a dependency of the kit. To time the real thing, install it outside the project
(``pip install --target DIR torchio`` and its dependencies) and put ``DIR`` on ``PYTHONPATH``;
:data:`TORCHIO` says which side ran. torchio draws its parameters from torch's global generator.

Inputs: a 3D crop is a float ``(1, X, Y, Z)`` NumPy array in [0, 1] (the released pairs are stored so);
a 2D image is a PIL RGB image (uint8). ``rng`` is a ``random.Random`` and ``nprng`` a
``np.random.RandomState`` (the released code uses the global ``random`` and ``np.random``, the same
generators).
"""

from __future__ import annotations

import copy
import math
import random

import numpy as np
import scipy.ndimage as ndi
import torch
from PIL import Image, ImageFilter
from scipy.special import comb
from torchvision import transforms as T

try:                        # the released 3D spatial transforms, when torchio is installed
    import torchio
except Exception:           # absent, or one of its dependencies is: scipy stand-ins below
    torchio = None

#: ``"torchio X.Y.Z"`` when the real torchio transforms run, else ``"scipy stand-in"``.
TORCHIO = f"torchio {torchio.__version__}" if torchio is not None else "scipy stand-in"
_TIO = ({"flip": torchio.transforms.RandomFlip(), "affine": torchio.transforms.RandomAffine(),
         "blur": torchio.transforms.RandomBlur()} if torchio is not None else {})
if _TIO:
    _TIO["compose"] = torchio.transforms.Compose([_TIO["flip"], _TIO["affine"], _TIO["blur"]])

# ----------------------------------------------------------------------------------------------
# 3D: torchio's spatial transforms (data.py).


def torchio_flip(x: np.ndarray, rng: random.Random, axes=(0,), p: float = 0.5) -> np.ndarray:
    """``RandomFlip()``: each listed spatial axis of ``x`` ``(C, X, Y, Z)`` mirrored with ``p``."""
    if _TIO and tuple(axes) == (0,) and p == 0.5:
        return _TIO["flip"](x)
    flipped = [1 + a for a in axes if rng.random() < p]
    return np.flip(x, axis=flipped).copy() if flipped else x


def _rotation(angles_deg) -> np.ndarray:
    """Rotation about axes 0, 1, 2 composed as ``R_z R_y R_x`` (3, 3)."""
    cx, cy, cz = (math.cos(math.radians(a)) for a in angles_deg)
    sx, sy, sz = (math.sin(math.radians(a)) for a in angles_deg)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def torchio_affine(x: np.ndarray, rng: random.Random, degrees: float = 10.0,
                   scales=(0.9, 1.1)) -> np.ndarray:
    """``RandomAffine()``: per axis scale and angle, about the centre, linear, minimum padding."""
    if _TIO and degrees == 10.0 and tuple(scales) == (0.9, 1.1):
        return _TIO["affine"](x)
    s = np.array([rng.uniform(*scales) for _ in range(3)])
    angles = [rng.uniform(-degrees, degrees) for _ in range(3)]
    A = np.diag(1.0 / s) @ _rotation(angles).T
    centre = (np.array(x.shape[1:]) - 1) / 2.0
    out = np.empty_like(x)
    for c in range(x.shape[0]):
        out[c] = ndi.affine_transform(x[c], A, offset=centre - A @ centre, order=1, mode="constant",
                                      cval=float(x[c].min()))
    return out


def torchio_blur(x: np.ndarray, rng: random.Random, std=(0.0, 2.0)) -> np.ndarray:
    """``RandomBlur()``: σ U(std) per spatial axis, ``gaussian_filter`` per channel."""
    if _TIO and tuple(std) == (0.0, 2.0):
        return _TIO["blur"](x)
    sigma = [rng.uniform(*std) for _ in range(3)]
    return np.stack([ndi.gaussian_filter(x[c], sigma) for c in range(x.shape[0])])


def torchio_transforms(x: np.ndarray, rng: random.Random) -> np.ndarray:
    """``Compose([RandomFlip(), RandomAffine(), RandomBlur()])`` (torchio's own when importable)."""
    if _TIO:
        return _TIO["compose"](x)
    return torchio_blur(torchio_affine(torchio_flip(x, rng), rng), rng)


# ----------------------------------------------------------------------------------------------
# 3D: Models Genesis distortions as released in luna_pcrl_pretask.py.


def local_pixel_shuffling(x: np.ndarray, rng: random.Random, nprng: np.random.RandomState,
                          prob: float = 0.5, num_block: int = 10_000) -> np.ndarray:
    """Block by block: sides U{1..n//10}, corner uniform, voxels read from the original and shuffled."""
    if rng.random() >= prob:
        return x
    out = copy.deepcopy(x)
    orig = copy.deepcopy(x)
    _, rows, cols, deps = x.shape
    for _ in range(num_block):
        bx, by, bz = rng.randint(1, rows // 10), rng.randint(1, cols // 10), rng.randint(1, deps // 10)
        px, py, pz = rng.randint(0, rows - bx), rng.randint(0, cols - by), rng.randint(0, deps - bz)
        window = orig[0, px:px + bx, py:py + by, pz:pz + bz].flatten()
        nprng.shuffle(window)
        out[0, px:px + bx, py:py + by, pz:pz + bz] = window.reshape((bx, by, bz))
    return out


def _bezier(points, n_times: int):
    """Cubic Bézier through ``points`` sampled at ``np.linspace(0, 1, n_times)`` (Bernstein basis via comb)."""
    n = len(points) - 1
    t = np.linspace(0.0, 1.0, n_times)
    basis = np.array([comb(n, i) * t ** (n - i) * (1 - t) ** i for i in range(n + 1)])
    return np.dot(np.array([p[0] for p in points]), basis), np.dot(np.array([p[1] for p in points]), basis)


def nonlinear_transformation(x: np.ndarray, rng: random.Random, prob: float = 0.5) -> np.ndarray:
    """Random monotone Bézier intensity curve (100,000 points), inverted half of the time."""
    if rng.random() >= prob:
        return x
    points = [[0, 0], [rng.random(), rng.random()], [rng.random(), rng.random()], [1, 1]]
    xs, ys = _bezier(points, 100_000)
    if rng.random() < 0.5:
        xs = np.sort(xs)                       # released: only x sorted, so y stays descending (inverted)
    else:
        xs, ys = np.sort(xs), np.sort(ys)
    return np.interp(x, xs, ys)


def image_in_painting(x: np.ndarray, rng: random.Random, nprng: np.random.RandomState) -> np.ndarray:
    """Up to 5 boxes (sides n//6..n//3, 3 voxels off the border) filled in place with U[0, 1) noise."""
    _, rows, cols, deps = x.shape
    count = 5
    while count > 0 and rng.random() < 0.95:
        bx, by, bz = (rng.randint(rows // 6, rows // 3), rng.randint(cols // 6, cols // 3),
                      rng.randint(deps // 6, deps // 3))
        px, py, pz = rng.randint(3, rows - bx - 3), rng.randint(3, cols - by - 3), rng.randint(3, deps - bz - 3)
        x[:, px:px + bx, py:py + by, pz:pz + bz] = nprng.rand(bx, by, bz) * 1.0
        count -= 1
    return x


def _window(rows, cols, deps, rng):
    bx = rows - rng.randint(3 * rows // 7, 4 * rows // 7)
    by = cols - rng.randint(3 * cols // 7, 4 * cols // 7)
    bz = deps - rng.randint(3 * deps // 7, 4 * deps // 7)
    px, py, pz = rng.randint(3, rows - bx - 3), rng.randint(3, cols - by - 3), rng.randint(3, deps - bz - 3)
    return (slice(None), slice(px, px + bx), slice(py, py + by), slice(pz, pz + bz))


def image_out_painting(x: np.ndarray, rng: random.Random, nprng: np.random.RandomState) -> np.ndarray:
    """A full-volume U[0, 1) canvas that keeps the original inside 1 + up to 4 windows."""
    _, rows, cols, deps = x.shape
    original = copy.deepcopy(x)
    x = nprng.rand(*x.shape) * 1.0
    box = _window(rows, cols, deps, rng)
    x[box] = original[box]
    count = 4
    while count > 0 and rng.random() < 0.95:
        box = _window(rows, cols, deps, rng)
        x[box] = original[box]
        count -= 1
    return x


def genesis_flips(x: np.ndarray, y: np.ndarray, rng: random.Random, prob: float = 0.5):
    """Models Genesis flips: while U < prob (at most 3 times) flip x and y along a random axis 0..2."""
    count = 3
    while rng.random() < prob and count > 0:
        axis = rng.choice([0, 1, 2])
        x, y = np.flip(x, axis=axis), np.flip(y, axis=axis)
        count -= 1
    return x, y


def spatial_aug_3d(img: np.ndarray, rng: random.Random):
    """TCA target: flips of the 3 spatial axes (p 0.5 each), ``np.rot90`` k·90° in (X, Y); code (7,)."""
    code = [0] * 7
    for axis in (1, 2, 3):
        if rng.random() < 0.5:
            img = np.flip(img, axis=axis)
            code[axis - 1] = 1
    k = int(rng.random() // 0.25)
    img = np.rot90(img, k=k, axes=(1, 2))
    code[k + 3] = 1
    return torch.tensor(img.copy(), dtype=torch.float), torch.tensor(code)


def luna_pair(pair: np.ndarray, rng: random.Random, nprng: np.random.RandomState, local_rate: float = 0.5,
              paint_rate: float = 0.9, inpaint_rate: float = 0.2):
    """One released 3D sample from a crop pair ``(2, X, Y, Z)``: the 8 tensors ``__getitem__`` returns."""
    crop1, crop2 = np.expand_dims(pair[0], 0), np.expand_dims(pair[1], 0)
    gt1, gt2 = copy.deepcopy(crop1), copy.deepcopy(crop2)
    in1, in2 = torchio_transforms(crop1, rng), torchio_transforms(crop2, rng)
    in1 = local_pixel_shuffling(in1, rng, nprng, prob=local_rate)
    in2 = local_pixel_shuffling(in2, rng, nprng, prob=local_rate)
    if rng.random() < paint_rate:
        if rng.random() < inpaint_rate:
            in1, in2 = image_in_painting(in1, rng, nprng), image_in_painting(in2, rng, nprng)
        else:
            in1, in2 = image_out_painting(in1, rng, nprng), image_out_painting(in2, rng, nprng)
    mask1, code1 = spatial_aug_3d(copy.deepcopy(in1), rng)
    mask2, code2 = spatial_aug_3d(copy.deepcopy(in2), rng)
    as_tensor = [torch.tensor(a, dtype=torch.float) for a in (in1, in2)]
    return (*as_tensor, mask1, mask2, torch.tensor(gt1, dtype=torch.float), torch.tensor(gt2, dtype=torch.float),
            code1, code2)


# ----------------------------------------------------------------------------------------------
# 2D: the chest X-ray pipeline (data.py, utils.py, reverse_pcrl_pretask.py).

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


class PILGaussianBlur:
    """``utils.py`` ``GaussianBlur``: PIL ``ImageFilter.GaussianBlur`` with radius U(0.1, 2)."""

    def __init__(self, rng: random.Random, sigma=(0.1, 2.0)):
        self.rng, self.sigma = rng, sigma

    def __call__(self, img: Image.Image) -> Image.Image:
        return img.filter(ImageFilter.GaussianBlur(radius=self.rng.uniform(*self.sigma)))


def cutout(img: torch.Tensor, nprng: np.random.RandomState, n_holes: int = 3, length: int = 32) -> torch.Tensor:
    """``Cutout(n_holes, length)``: a float32 NumPy mask with square holes, multiplied in."""
    h, w = img.size(1), img.size(2)
    mask = np.ones((h, w), np.float32)
    for _ in range(n_holes):
        y, x = nprng.randint(h), nprng.randint(w)
        y1, y2 = np.clip(y - length // 2, 0, h), np.clip(y + length // 2, 0, h)
        x1, x2 = np.clip(x - length // 2, 0, w), np.clip(x + length // 2, 0, w)
        mask[y1:y2, x1:x2] = 0.0
    return img * torch.from_numpy(mask).expand_as(img)


class Cutout:
    def __init__(self, nprng: np.random.RandomState, n_holes: int, length: int):
        self.nprng, self.n_holes, self.length = nprng, n_holes, length

    def __call__(self, img):
        return cutout(img, self.nprng, self.n_holes, self.length)


def chest_transforms(size: int, rng: random.Random, nprng: np.random.RandomState, hole: int | None = None):
    """``(spatial_transform, train_transform, normalize_trans)`` as ``pcrl_chest_pretask`` builds them
    (torchvision's v1 transforms on PIL images; ``size`` 224 as released, the hole scaled with it)."""
    hole = hole if hole is not None else max(1, round(32 * size / 224))
    normalize = T.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD)
    spatial = T.Compose([T.RandomResizedCrop(size, scale=(0.2, 1))])
    train = T.Compose([T.RandomRotation(10), T.RandomHorizontalFlip(), T.RandomGrayscale(p=0.2),
                       T.RandomApply([PILGaussianBlur(rng)], p=0.5), T.ColorJitter(0.4, 0.4, 0.4, 0.4),
                       T.ToTensor(), normalize, Cutout(nprng, 3, hole)])
    return spatial, train, T.Compose([T.ToTensor(), normalize])


def spatial_aug_2d(img: torch.Tensor, rng: random.Random):
    """TCA target: flips of H and W (p 0.5 each), ``np.rot90`` k·90°; code (6,)."""
    img = img.numpy()
    code = [0] * 6
    for axis in (1, 2):
        if rng.random() < 0.5:
            img = np.flip(img, axis=axis)
            code[axis - 1] = 1
    k = int(rng.random() // 0.25)
    img = np.rot90(img, k=k, axes=(1, 2))
    code[k + 2] = 1
    return torch.tensor(img.copy(), dtype=torch.float), torch.tensor(code)


def chest_pair(image: Image.Image, pipeline, rng: random.Random):
    """One released 2D sample from a PIL RGB image: the 8 tensors ``__getitem__`` returns.
    ``pipeline`` is :func:`chest_transforms`' triple."""
    spatial, train, normalize_trans = pipeline
    y1, y2 = spatial(image), spatial(image)
    gt1, gt2 = normalize_trans(copy.deepcopy(y1)), normalize_trans(copy.deepcopy(y2))
    in1, in2 = train(y1), train(y2)
    mask1, code1 = spatial_aug_2d(copy.deepcopy(in1), rng)
    mask2, code2 = spatial_aug_2d(copy.deepcopy(in2), rng)
    return in1, in2, mask1, mask2, gt1, gt2, code1, code2
