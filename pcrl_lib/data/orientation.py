"""Anatomical orientation of stored volumes, and the one display convention every figure of the kit uses.

A volume's voxel axes can point anywhere: DICOM, MetaImage and the kit's synthetic CT store x towards the
patient's left and y towards the back (LPS, identity direction in ITK); a NIfTI written in RAS order reads in
ITK with direction diag(-1, -1, 1); other files permute or flip axes. :func:`to_lps` reorders and flips an
array so that its last three axes run L, P, S (a view, no copy). The display helpers then draw every slice in
one radiological convention, stated by :data:`CONVENTION`:

* axial: anterior up, patient right on the image left (the patient seen from the feet);
* coronal: superior up, patient right on the image left (seen from the front);
* sagittal: superior up, anterior on the image left.

Display arrays are ``(rows, cols)`` with row 0 at the top (``imshow``'s default ``origin="upper"``).

Legend: ``array`` ``(..., X, Y, Z)`` (any leading axes, e.g. channels, are kept); ``direction`` the 3×3 ITK
direction matrix of :class:`~pcrl_lib.data.volume.Volume` (column ``i`` = world direction of voxel axis ``i``
in LPS); ``axis`` a *storage* axis 0, 1, 2 of the array and ``index`` a storage index along it (as computed from
the array, e.g. ``argmax`` over a mask), so callers never convert indices themselves. Oblique directions
are displayed along their nearest anatomical axes (no resampling).
"""

from __future__ import annotations

import itertools

import numpy as np

# Plane normal to each LPS world axis: x (left-right) → sagittal, y (front-back) → coronal, z (up-down) → axial.
PLANES = ("sagittal", "coronal", "axial")
CONVENTION = "radiological: anterior up, patient right on the image left"
CONVENTIONS = {"axial": CONVENTION,
               "coronal": "radiological: superior up, patient right on the image left",
               "sagittal": "superior up, anterior on the image left"}
# Letters on the (top, bottom, left, right) edges of a displayed plane.
EDGE_LETTERS = {"axial": ("A", "P", "R", "L"), "coronal": ("S", "I", "R", "L"), "sagittal": ("S", "I", "A", "P")}


def check_direction(direction, name: str = "direction") -> np.ndarray:
    """``direction`` as a float 3×3 matrix (None = identity, i.e. LPS); ValueError naming ``name`` otherwise."""
    if direction is None:
        return np.eye(3)
    d = np.asarray(direction.detach().cpu() if hasattr(direction, "detach") else direction, dtype=np.float64)
    if d.size == 9:
        d = d.reshape(3, 3)
    if d.shape != (3, 3) or not np.isfinite(d).all() or abs(np.linalg.det(d)) < 1e-6:
        raise ValueError(f"{name} must be an invertible 3x3 direction matrix (Volume.direction, columns = world "
                         f"directions of the x, y, z voxel axes), got {np.asarray(d).tolist()}")
    return d


def axis_map(direction=None) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """For each storage axis ``i``: the LPS world axis it runs along (0 L, 1 P, 2 S) and its sign (+1 when the
    index grows towards L, P or S). Oblique axes take the nearest world axis (the permutation with the largest
    total |cosine|, so two voxel axes never share one world axis)."""
    d = check_direction(direction)
    world = max(itertools.permutations(range(3)), key=lambda p: sum(abs(d[p[i], i]) for i in range(3)))
    signs = tuple(1 if d[world[i], i] > 0 else -1 for i in range(3))
    return tuple(int(w) for w in world), signs


def to_lps(array, direction=None):
    """``array`` ``(..., X, Y, Z)`` with its last three axes permuted and flipped to run L, P, S (a view)."""
    array = np.asarray(array)
    if array.ndim < 3:
        raise ValueError(f"array must be (..., X, Y, Z), got shape {array.shape}")
    world, signs = axis_map(direction)
    lead = array.ndim - 3
    out = np.moveaxis(array, [lead + i for i in range(3)], [lead + w for w in world])
    for i in range(3):
        if signs[i] < 0:
            out = np.flip(out, axis=lead + world[i])
    return out


def plane_of(axis: int, direction=None) -> str:
    """The anatomical plane (``"axial"``, ``"coronal"``, ``"sagittal"``) of a slice along storage ``axis``."""
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis!r}")
    return PLANES[axis_map(direction)[0][axis]]


def storage_axis(plane: str, direction=None) -> int:
    """The storage axis whose slices show ``plane`` (e.g. the axial slices of a volume stored sagittally)."""
    if plane not in PLANES:
        raise ValueError(f"plane must be one of {PLANES}, got {plane!r}")
    return axis_map(direction)[0].index(PLANES.index(plane))


def orient_plane(lps_slice: np.ndarray, plane: str) -> np.ndarray:
    """A slice ``(..., A, B)`` of an LPS array (the two remaining world axes in L, P, S order) → display
    ``(..., rows, cols)`` in :data:`CONVENTIONS`' order for ``plane``."""
    if plane not in PLANES:
        raise ValueError(f"plane must be one of {PLANES}, got {plane!r}")
    image = np.swapaxes(lps_slice, -1, -2)       # rows = the second world axis, columns = the first
    # axial: rows P (anterior at row 0), cols L (patient right at col 0) — already in place.
    # coronal / sagittal: rows S, which must grow upwards, so flip them.
    return image if plane == "axial" else np.flip(image, axis=-2)


def display_slice(volume, index: int, axis: int = 2, direction=None) -> np.ndarray:
    """Slice ``index`` along storage ``axis`` of ``volume`` ``(..., X, Y, Z)`` → display ``(..., rows, cols)``
    in the radiological convention of its plane (:func:`plane_of`), whatever the storage order."""
    volume = np.asarray(volume)
    if volume.ndim < 3:
        raise ValueError(f"expected a (..., X, Y, Z) array, got shape {volume.shape}")
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis!r}")
    n = volume.shape[volume.ndim - 3 + axis]
    if not 0 <= index < n:
        raise ValueError(f"slice index {index} outside 0..{n - 1} along axis {axis}")
    world, signs = axis_map(direction)
    w = world[axis]
    lps = to_lps(volume, direction)
    k = index if signs[axis] > 0 else n - 1 - index
    return orient_plane(np.take(lps, k, axis=lps.ndim - 3 + w), PLANES[w])


def display_box(box, shape, axis: int = 2, direction=None) -> tuple[float, float, float, float]:
    """Where the voxel box ``box`` = ``(x0, y0, z0, x1, y1, z1)`` (storage indices, ends exclusive) of an array of
    ``shape`` ``(X, Y, Z)`` lands in :func:`display_slice`'s image along ``axis``: ``(col, row, width, height)``
    of its outline in ``imshow`` pixel coordinates, ready for ``matplotlib.patches.Rectangle((col, row), w, h)``."""
    if len(box) != 6 or len(shape) != 3:
        raise ValueError(f"box must be (x0, y0, z0, x1, y1, z1) and shape (X, Y, Z), got {box!r} and {shape!r}")
    world, signs = axis_map(direction)
    lo, hi, size = [0.0] * 3, [0.0] * 3, [0] * 3
    for i in range(3):
        # voxel k spans [k - 0.5, k + 0.5]; mirroring n voxels maps the edge c to n - 1 - c
        a, b = float(box[i]) - 0.5, float(box[i + 3]) - 0.5
        if signs[i] < 0:
            a, b = shape[i] - 1 - b, shape[i] - 1 - a
        lo[world[i]], hi[world[i]], size[world[i]] = a, b, shape[i]
    first, second = [a for a in range(3) if a != world[axis]]
    row0, row1 = lo[second], hi[second]
    if PLANES[world[axis]] != "axial":
        row0, row1 = size[second] - 1 - row1, size[second] - 1 - row0
    return lo[first], row0, hi[first] - lo[first], row1 - row0


def label_edges(ax, plane: str, fontsize: int = 8, colour: str = "yellow") -> None:
    """Write the anatomical letters (e.g. A, P, R, L for axial) inside the edges of an ``imshow`` axes."""
    top, bottom, left, right = EDGE_LETTERS[plane]
    style = dict(transform=ax.transAxes, fontsize=fontsize, color=colour, fontweight="bold")
    ax.text(0.5, 0.98, top, ha="center", va="top", **style)
    ax.text(0.5, 0.02, bottom, ha="center", va="bottom", **style)
    ax.text(0.02, 0.5, left, ha="left", va="center", **style)
    ax.text(0.98, 0.5, right, ha="right", va="center", **style)
