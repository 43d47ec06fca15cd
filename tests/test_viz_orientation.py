"""Every viewer shows a volume in one radiological convention whatever its storage order (issue 14, item 5).

The same anatomical phantom, a bright block in the patient's right-anterior corner, is stored in several voxel
orders, each with the direction matrix ITK would report for it. Whatever the order, every viewer must put the
block in the top-left of the displayed axial slice (anterior up, patient right on the image left).
"""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from pcrl_lib import viz
from pcrl_lib.data import orientation
from pcrl_lib.viz import augment as va
from pcrl_lib.viz import playground as vp
from pcrl_lib.viz import segmentation as seg

SHAPE_LPS = (10, 12, 8)        # L-R, A-P, I-S extents of the phantom (distinct, so a transposed slice shows)
PHANTOM_WINDOW = (0.5, 1.0)    # (level, width): background 0 → black, block 1 → white


def phantom(superior_only: bool = False) -> np.ndarray:
    """(X, Y, Z) in LPS order: 1 in the patient's right-anterior corner (low x, low y), for every slice, or only in
    the superior third (high z) so coronal and sagittal slices show which way is up."""
    lps = np.zeros(SHAPE_LPS, dtype=np.float32)
    lps[:3, :3, (-3 if superior_only else 0):] = 1.0
    return lps


def rotation_z(degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


# storage order → (how the LPS array is stored, the direction ITK reports for that storage). Direction column i is
# the LPS world direction in which storage index i grows.
STORAGES = {
    "LPS (DICOM, MetaImage, synthetic CT)": (lambda a: a, np.eye(3)),
    "RAS (NIfTI)": (lambda a: a[::-1, ::-1, :], np.diag([-1.0, -1.0, 1.0])),
    "z flipped (head first)": (lambda a: a[:, :, ::-1], np.diag([1.0, 1.0, -1.0])),
    "permuted (S, L, P)": (lambda a: a.transpose(2, 0, 1), np.array([[0.0, 1, 0], [0, 0, 1], [1, 0, 0]])),
    "permuted and flipped (P, I, R)": (lambda a: a.transpose(1, 2, 0)[::-1, ::-1, ::-1],
                                       np.array([[0.0, 0, -1], [-1, 0, 0], [0, -1, 0]])),
    "oblique (LPS rotated 10°)": (lambda a: a, rotation_z(10.0)),
}


def stored(name: str, superior_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    store, direction = STORAGES[name]
    return np.ascontiguousarray(store(phantom(superior_only))), direction


def storage_axis_of(direction: np.ndarray, world: int) -> int:
    """The storage axis running along LPS world axis ``world`` (computed independently of the kit)."""
    return int(np.argmax(np.abs(direction[world])))


def marker_slice(array: np.ndarray, axis: int) -> int:
    return int(np.flatnonzero(array.sum(axis=tuple(a for a in range(3) if a != axis)))[0])


def corner(image: np.ndarray) -> tuple[float, float]:
    """Centre of the bright pixels of a display array (row 0 at the top) as fractions (row, col) of its size."""
    bright = image.max(-1) if image.ndim == 3 else image     # the overlays tint the marker; the background is black
    rows, cols = np.nonzero(bright > 0.5)
    assert rows.size, "the marker is not visible"
    return (rows.mean() + 0.5) / bright.shape[0], (cols.mean() + 0.5) / bright.shape[1]


def displayed(ax) -> np.ndarray:
    """What the axes shows, row 0 at the top of the screen (imshow's origin taken into account)."""
    image = ax.images[0]
    array = np.asarray(image.get_array())
    return array[::-1] if image.origin == "lower" else array


def assert_top_left(image: np.ndarray, what: str) -> None:
    row, col = corner(image)
    assert row < 0.5 and col < 0.5, f"{what}: right-anterior marker shown at (row {row:.2f}, col {col:.2f}) " \
                                    f"of the image, expected the top-left"


def assert_states_convention(fig) -> None:
    texts = [fig._suptitle.get_text() if fig._suptitle else ""] + [ax.get_title() for ax in fig.axes]
    assert any("anterior up, patient right on the image left" in t for t in texts)
    letters = {t.get_text() for ax in fig.axes for t in ax.texts}
    assert {"A", "P", "R", "L"} <= letters


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.mark.parametrize("name", list(STORAGES))
def test_to_lps_recovers_the_phantom(name):
    array, direction = stored(name)
    np.testing.assert_array_equal(orientation.to_lps(array, direction), phantom())
    assert orientation.to_lps(array[None], direction).shape == (1, *SHAPE_LPS)   # leading channel axes kept


def test_lps_volumes_are_upright_in_every_viewer_by_default(monkeypatch):
    """No direction given = LPS as ITK reads DICOM: the marker must be top-left, not bottom-left (upside down)."""
    monkeypatch.setenv("PCRL_HEADLESS", "1")
    volume = phantom()
    assert_top_left(viz.render_slice(volume, 2, 4, *PHANTOM_WINDOW), "render_slice")
    fig = viz.slice_viewer(volume, window=PHANTOM_WINDOW)
    for ax in fig.axes:
        assert_top_left(displayed(ax), "slice_viewer (headless montage)")
    empty = np.zeros(volume.shape, dtype=bool)
    fig = seg.comparison_figure(volume, volume > 0.5, {"model": empty}, ["marker"])
    for ax in fig.axes:
        assert_top_left(displayed(ax), "comparison_figure")
    cube = torch.from_numpy(volume)[None] * 0.4      # the top of the default 3D window
    fig = va.plot_grid([[va.Panel(va.display_array(cube))]])
    assert_top_left(displayed(fig.axes[0]), "augment.display_array")


@pytest.mark.parametrize("name", list(STORAGES))
def test_render_slice_puts_right_anterior_top_left(name):
    array, direction = stored(name)
    axis = storage_axis_of(direction, 2)
    for index in (0, array.shape[axis] - 1):
        image = viz.render_slice(array, axis, index, *PHANTOM_WINDOW, direction=direction)
        assert image.shape[:2] == (SHAPE_LPS[1], SHAPE_LPS[0])      # rows A→P, columns R→L
        assert_top_left(image, f"render_slice, {name}, slice {index}")


@pytest.mark.parametrize("name", list(STORAGES))
@pytest.mark.parametrize("plane, world", [("sagittal", 0), ("coronal", 1), ("axial", 2)])
def test_every_plane_has_superior_or_anterior_up_and_right_or_anterior_left(name, plane, world):
    """Right-anterior-superior block: top-left in axial (A up, R left), coronal (S up, R left), sagittal (S up,
    A left)."""
    array, direction = stored(name, superior_only=True)
    axis = storage_axis_of(direction, world)
    assert orientation.plane_of(axis, direction) == plane
    image = viz.render_slice(array, axis, marker_slice(array, axis), *PHANTOM_WINDOW, direction=direction)
    assert_top_left(image, f"{plane} slice, {name}")


@pytest.mark.parametrize("name", list(STORAGES))
def test_slice_viewer_montage_is_radiological_and_says_so(name, monkeypatch):
    monkeypatch.setenv("PCRL_HEADLESS", "1")
    array, direction = stored(name)
    fig = viz.slice_viewer(array, window=PHANTOM_WINDOW, title="phantom", direction=direction)
    assert len(fig.axes) == 6
    for ax in fig.axes:
        assert "axial" in ax.get_title()
        assert_top_left(displayed(ax), f"slice_viewer, {name}")
    assert_states_convention(fig)


def test_slice_viewer_widget_draws_radiologically(monkeypatch):
    pytest.importorskip("ipywidgets")
    shown = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: shown.append(plt.gcf()))
    array, direction = stored("RAS (NIfTI)")
    panel = viz.slice_viewer(array, window=PHANTOM_WINDOW, interactive=True, direction=direction)
    assert panel.children[0].children[0].value == storage_axis_of(direction, 2)    # opens on the axial plane
    assert_top_left(displayed(shown[-1].axes[0]), "slice_viewer widget")
    assert "anterior up, patient right on the image left" in shown[-1].axes[0].get_title()


@pytest.mark.parametrize("name", list(STORAGES))
def test_segmentation_figures_are_radiological(name, monkeypatch):
    monkeypatch.setenv("PCRL_HEADLESS", "1")
    array, direction = stored(name)
    truth = array > 0.5
    pred = np.zeros_like(truth)
    image = seg.render_comparison(array, pred, truth, window=PHANTOM_WINDOW, alpha=0.0, direction=direction)
    assert_top_left(image, f"render_comparison, {name}")
    fig = seg.comparison_figure(array, truth, {"model": pred}, ["marker"], window=PHANTOM_WINDOW,
                                direction=direction)
    for ax in fig.axes:
        assert_top_left(displayed(ax), f"comparison_figure, {name}")
    assert_states_convention(fig)
    fig = seg.comparison_viewer(array, pred, truth, window=PHANTOM_WINDOW, direction=direction)
    for ax in fig.axes:
        assert_top_left(displayed(ax), f"comparison_viewer, {name}")


@pytest.mark.parametrize("name", list(STORAGES))
def test_augmentation_figures_are_radiological(name):
    array, direction = stored(name)
    cube = torch.from_numpy(array)[None] * 0.4                     # (1, X, Y, Z); 0.4 = top of the 3D window
    assert_top_left(va.display_array(cube, direction=direction), f"display_array, {name}")
    assert_top_left(va.display_mask(cube[0] > 0, direction=direction).astype(float), f"display_mask, {name}")
    frame = vp.render_transform("non-linear intensity", cube, seed=0, direction=direction)
    assert_top_left(frame.before, f"render_transform, {name}")
    batch = cube[None].expand(2, -1, -1, -1, -1)
    fig = va.mixup_figure(batch, 0.7, torch.tensor([1, 0]), samples=(0, 1), direction=direction)
    for ax in fig.axes:
        assert_top_left(displayed(ax), f"mixup_figure, {name}")
    assert_states_convention(fig)


def test_display_box_outlines_the_marker_in_every_storage():
    for name in STORAGES:
        array, direction = stored(name)
        axis = storage_axis_of(direction, 2)
        found = np.argwhere(array > 0.5)
        box = [*found.min(0), *(found.max(0) + 1)]
        col, row, width, height = orientation.display_box(box, array.shape, axis, direction)
        assert (col, row, width, height) == (-0.5, -0.5, 3.0, 3.0), name  # the 3×3 block at the top-left


def test_bad_direction_is_a_named_error():
    with pytest.raises(ValueError, match="direction must be an invertible 3x3"):
        viz.render_slice(phantom(), direction=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="direction must be an invertible 3x3"):
        orientation.to_lps(phantom(), np.eye(2))


def test_prepared_segmentation_case_carries_its_direction(tmp_path):
    """A RAS-stored NIfTI case → case["direction"] → the comparison figure shows it upright, not mirrored."""
    from pcrl_lib.data.cache import SegmentationCaseDataset
    from pcrl_lib.data.preprocess import prepare_segmentation_cases
    from pcrl_lib.data.volume import Volume, write_volume

    array, direction = stored("RAS (NIfTI)")
    ct = write_volume(Volume(array=array * 400.0, spacing=(1.0, 1.0, 1.0), direction=direction), tmp_path / "ct.nii.gz")
    label = write_volume(Volume(array=(array > 0.5).astype(np.uint8), spacing=(1.0, 1.0, 1.0), direction=direction),
                         tmp_path / "label.nii.gz")
    prepare_segmentation_cases([{"name": "case", "images": (str(ct),), "mask": str(label)}], tmp_path / "prepared",
                               window=(-1000.0, 1000.0), progress=False)
    case = SegmentationCaseDataset(tmp_path / "prepared")[0]
    np.testing.assert_allclose(case["direction"].numpy(), direction)
    truth = case["mask"].numpy() > 0
    fig = seg.comparison_figure(case["image"][0].numpy(), truth, {"model": truth}, ["marker"],
                                window=(0.6, 0.2), direction=case["direction"])  # 0 HU → 0.5 black, 400 → 0.7 white
    for ax in fig.axes:
        assert_top_left(displayed(ax), "comparison_figure of a prepared RAS case")


def test_pretraining_cubes_are_cut_in_lps_order_whatever_the_storage(tmp_path):
    """The same chest stored LPS (.mhd) and RAS (.nii.gz) gives the same cached crop pairs, so every cached cube
    shares one orientation and the augmentation figures (direction None = LPS) show it upright."""
    from pcrl_lib.data.preprocess import prepare_pretraining_cubes
    from pcrl_lib.data.volume import Volume, write_volume

    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in (72, 72, 40)], indexing="ij")
    hu = np.full(x.shape, -1000.0, dtype=np.float32)
    hu[(x / 0.95) ** 2 + (y / 0.9) ** 2 < 1] = 40.0
    hu[((np.abs(x) - 0.42) / 0.38) ** 2 + (y / 0.7) ** 2 + (z / 1.05) ** 2 < 1] = -850.0
    hu[:36, :20] += 300.0 * (hu[:36, :20] > -900)       # a right-anterior landmark, so a flip changes the cubes
    hu += np.random.default_rng(0).normal(0, 15, hu.shape).astype(np.float32)
    spacing = (1.0, 1.0, 1.0)
    lps = write_volume(Volume(hu, spacing), tmp_path / "lps" / "scan.mhd")
    ras = write_volume(Volume(np.ascontiguousarray(hu[::-1, ::-1]), spacing, direction=np.diag([-1.0, -1.0, 1.0])),
                       tmp_path / "ras" / "scan.nii.gz")
    kw = dict(cube=(16, 16, 8), pairs_per_scan=3, seed=0, margin=(6, 6, 3), progress=False)
    prepare_pretraining_cubes([lps], tmp_path / "cubes_lps", **kw)
    prepare_pretraining_cubes([ras], tmp_path / "cubes_ras", **kw)
    cubes = {name: np.load(tmp_path / f"cubes_{name}" / "scan.npy") for name in ("lps", "ras")}
    np.testing.assert_allclose(cubes["ras"], cubes["lps"], atol=1e-5)
