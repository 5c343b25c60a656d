"""Screen ↔ image ↔ voxel ↔ patient mm, with zoom, anisotropic spacing and exams stored in other orientations."""

import itertools

import numpy as np
import pytest

from cases import Volume
from reading_app.workstation import (
    PLANES,
    DisplayGrid,
    ViewError,
    ViewTransform,
    click_to_point,
    extract_slice,
    image_to_voxel,
    mark_positions,
    voxel_to_image,
)

IDENTITY = (1, 0, 0, 0, 1, 0, 0, 0, 1)


def _volume(direction, size_xyz=(5, 4, 3), spacing=(0.7, 0.9, 2.5), origin=(10.0, -20.0, 30.0)):
    nx, ny, nz = size_xyz
    array = np.arange(nx * ny * nz, dtype=np.float32).reshape(nz, ny, nx)  # every voxel unique
    return Volume(array, spacing, origin, direction)


# Directions whose columns are the stored index axes in LPS: identity, feet-first (z flipped),
# rows flipped (y), and a sagittal acquisition (stored x runs posterior, y inferior, z left).
DIRECTIONS = {
    "identity": IDENTITY,
    "z flipped": (1, 0, 0, 0, 1, 0, 0, 0, -1),
    "y flipped": (1, 0, 0, 0, -1, 0, 0, 0, 1),
    "sagittal acquisition": (0, 0, 1, 1, 0, 0, 0, -1, 0),
}


@pytest.mark.parametrize("name", list(DIRECTIONS))
def test_display_grid_keeps_every_voxel_at_its_patient_position(name):
    volume = _volume(DIRECTIONS[name])
    grid = DisplayGrid.of(volume)
    shown = grid.reorient(volume.array)
    assert shown.shape == grid.shape_zyx
    assert np.allclose(np.asarray(grid.direction).reshape(3, 3), np.eye(3))  # index axes point L, P, S
    nx, ny, nz = volume.size
    for i, j, k in itertools.product(range(nx), range(ny), range(nz)):
        point = volume.index_to_point_mm((i, j, k))
        idx = grid.point_to_index(point)
        assert np.allclose(idx, np.round(idx), atol=1e-9)
        x, y, z = (int(round(c)) for c in idx)
        assert shown[z, y, x] == volume.array[k, j, i]
        assert np.allclose(grid.index_to_point_mm((x, y, z)), point)
    assert grid.is_identity == (name == "identity")


def test_display_grid_from_header_matches_the_volume():
    volume = _volume(DIRECTIONS["sagittal acquisition"])
    a = DisplayGrid.of(volume)
    b = DisplayGrid.from_geometry(volume.size, volume.spacing_mm, volume.origin_mm, volume.direction)
    assert a == b
    # stored x runs posterior, stored y inferior, stored z to the left: display (L, P, S) = (z, x, -y)
    assert b.size_xyz == (volume.size[2], volume.size[0], volume.size[1])
    assert b.spacing_mm == (2.5, 0.7, 0.9)
    assert b.perm == (2, 0, 1) and b.flip == (False, False, True)


@pytest.mark.parametrize("plane", PLANES)
def test_image_and_voxel_coordinates_are_inverse(plane):
    rng = np.random.default_rng(1)
    size = (7, 6, 5)
    for _ in range(20):
        idx = rng.uniform(-0.5, 4.5, 3)
        s, u, v = voxel_to_image(plane, size, idx)
        assert np.allclose(image_to_voxel(plane, size, s, u, v), idx)


def test_planes_are_shown_the_radiological_way():
    """Axial: anterior up, patient's right on the left; slice 0 is the top of the scan. Coronal/sagittal: superior up."""
    grid = DisplayGrid.of(_volume(IDENTITY, size_xyz=(4, 3, 5)))
    nz, ny, nx = grid.shape_zyx
    array = np.zeros(grid.shape_zyx)
    axial = extract_slice(array, "axial", 0)
    assert axial.shape == (ny, nx) and np.shares_memory(axial, array)
    # slice positions: axial runs head -> feet, coronal front -> back, sagittal right -> left
    assert np.all(np.diff(grid.slice_positions_mm("axial")) < 0)
    assert np.all(np.diff(grid.slice_positions_mm("coronal")) > 0)
    assert np.all(np.diff(grid.slice_positions_mm("sagittal")) > 0)
    # image rows: axial row 0 is the most anterior (smallest y, LPS); coronal/sagittal row 0 the most superior
    top_left = {plane: grid.image_point_to_mm(plane, 0, 0.5, 0.5) for plane in PLANES}
    bottom_right = {plane: grid.image_point_to_mm(plane, 0, grid.plane(plane).n_u - 0.5, grid.plane(plane).n_v - 0.5) for plane in PLANES}
    assert top_left["axial"][1] < bottom_right["axial"][1]  # anterior at the top
    assert top_left["axial"][0] < bottom_right["axial"][0]  # patient's right (smaller x in LPS) on the left
    for plane in ("coronal", "sagittal"):
        assert top_left[plane][2] > bottom_right[plane][2]  # superior at the top
    assert top_left["sagittal"][1] < bottom_right["sagittal"][1]  # anterior on the left


def test_extract_slice_values_and_range():
    array = np.arange(3 * 4 * 5).reshape(3, 4, 5)
    assert np.array_equal(extract_slice(array, "axial", 0), array[2])
    assert np.array_equal(extract_slice(array, "coronal", 1), array[::-1, 1, :])
    assert np.array_equal(extract_slice(array, "sagittal", 4), array[::-1, :, 4])
    with pytest.raises(ViewError, match="outside the axial images"):
        extract_slice(array, "axial", 3)
    with pytest.raises(ViewError, match="Unknown plane"):
        extract_slice(array, "oblique", 0)


def test_view_transform_fits_and_keeps_millimetres_square():
    # sagittal reformat: pixels 0.75 mm wide, 2 mm high; 400 columns x 120 rows = 300 x 240 mm
    view = ViewTransform(600, 600, n_u=400, n_v=120, du_mm=0.75, dv_mm=2.0)
    assert view.fit_px_per_mm == pytest.approx(2.0)  # width-limited: 600 px / 300 mm
    assert view.px_per_u == pytest.approx(1.5) and view.px_per_v == pytest.approx(4.0)
    assert view.image_to_screen(0, 0) == pytest.approx((0.0, 300 - 60 * 4.0))
    assert view.image_to_screen(400, 120) == pytest.approx((600.0, 300 + 60 * 4.0))
    # one mm is the same number of screen pixels across and down
    x0, y0 = view.image_to_screen(100, 50)
    x1, _ = view.image_to_screen(100 + 1 / 0.75, 50)
    _, y1 = view.image_to_screen(100, 50 + 1 / 2.0)
    assert x1 - x0 == pytest.approx(y1 - y0)


def test_view_transform_zoom_about_a_centre_and_round_trip():
    view = ViewTransform(800, 500, n_u=512, n_v=512, du_mm=0.7, dv_mm=0.7, zoom=3.0, center_u=100.0, center_v=300.0)
    assert view.image_to_screen(100, 300) == pytest.approx((400.0, 250.0))  # the centre is drawn mid-viewport
    base = ViewTransform(800, 500, n_u=512, n_v=512, du_mm=0.7, dv_mm=0.7)
    assert view.px_per_u == pytest.approx(3 * base.px_per_u)
    rng = np.random.default_rng(0)
    for x, y in rng.uniform(0, 500, (25, 2)):
        assert view.image_to_screen(*view.screen_to_image(x, y)) == pytest.approx((x, y))
    with pytest.raises(ViewError):
        ViewTransform(0, 500, 10, 10, 1, 1)


@pytest.mark.parametrize("name", ["identity", "z flipped", "sagittal acquisition"])
@pytest.mark.parametrize("plane", PLANES)
@pytest.mark.parametrize("zoom", [1.0, 2.5])
def test_click_on_a_voxel_gives_its_patient_position(name, plane, zoom):
    volume = _volume(DIRECTIONS[name], size_xyz=(9, 7, 6), spacing=(0.6, 0.8, 2.0))
    grid = DisplayGrid.of(volume)
    g = grid.plane(plane)
    stored = (5, 3, 2)  # a voxel in the stored (file) grid
    target_mm = volume.index_to_point_mm(stored)
    s, u, v = grid.mm_to_image(plane, target_mm)
    assert s == pytest.approx(round(s))
    view = ViewTransform.for_plane(g, 640, 480, zoom=zoom, center_u=g.n_u / 2 + 0.7, center_v=g.n_v / 2 - 0.3)
    x, y = view.image_to_screen(u, v)
    clicked = click_to_point(
        grid,
        plane=plane,
        slice_index=int(round(s)),
        screen_x=x,
        screen_y=y,
        viewport_w_px=640,
        viewport_h_px=480,
        zoom=zoom,
        center_u=view.center_u,
        center_v=view.center_v,
    )
    assert clicked.inside
    assert np.allclose(clicked.point_mm, target_mm, atol=1e-9)
    assert np.allclose(volume.point_to_index(clicked.point_mm), stored, atol=1e-9)
    # half a pixel to the right moves the point by half a pixel width in mm, within the slice
    clicked2 = click_to_point(
        grid,
        plane=plane,
        slice_index=int(round(s)),
        screen_x=x + 0.5 * view.px_per_u,
        screen_y=y,
        viewport_w_px=640,
        viewport_h_px=480,
        zoom=zoom,
        center_u=view.center_u,
        center_v=view.center_v,
    )
    assert np.linalg.norm(np.subtract(clicked2.point_mm, clicked.point_mm)) == pytest.approx(0.5 * g.du_mm)


def test_click_beside_the_image_is_outside():
    grid = DisplayGrid.of(_volume(IDENTITY, size_xyz=(10, 10, 4), spacing=(1.0, 1.0, 1.0)))
    # a 10 x 10 mm image in a 400 x 200 viewport: drawn 200 px wide in the middle, 100 px margins
    inside = click_to_point(grid, plane="axial", slice_index=0, screen_x=200, screen_y=100, viewport_w_px=400, viewport_h_px=200)
    beside = click_to_point(grid, plane="axial", slice_index=0, screen_x=50, screen_y=100, viewport_w_px=400, viewport_h_px=200)
    assert inside.inside and not beside.inside
    assert inside.u == pytest.approx(5.0) and inside.v == pytest.approx(5.0)
    with pytest.raises(ViewError, match="outside"):
        click_to_point(grid, plane="axial", slice_index=4, screen_x=1, screen_y=1, viewport_w_px=400, viewport_h_px=200)


def test_mark_positions_place_a_mark_on_its_slice_in_every_plane():
    volume = _volume(DIRECTIONS["z flipped"], size_xyz=(9, 7, 6))
    grid = DisplayGrid.of(volume)
    point = volume.index_to_point_mm((4, 2, 1))
    positions = mark_positions(grid, point)
    assert set(positions) == set(PLANES)
    for plane, (s, u, v) in positions.items():
        assert np.allclose(grid.image_point_to_mm(plane, s, u, v), point)
        assert s == pytest.approx(round(s))


def test_prior_follows_the_current_through_the_registration():
    import SimpleITK as sitk

    from reading_app.workstation.geometry import DisplayGrid, synced_prior_slices

    current = DisplayGrid.from_geometry((8, 6, 20), (1.0, 1.0, 2.5), (0.0, 0.0, 0.0))
    prior = DisplayGrid.from_geometry((8, 6, 20), (1.0, 1.0, 2.5), (0.0, 0.0, -5.0))  # table moved 5 mm
    # anatomy: the prior point of a current point lies 10 mm higher (+z, superior) in the prior's frame
    shift = sitk.TranslationTransform(3, (0.0, 0.0, 10.0))
    axial = synced_prior_slices(current, prior, shift, "axial")
    # current slice s (0 = top) sits at z = 2.5 * (19 - s); its anatomy is at z + 10 in the prior,
    # whose slice k sits at -5 + 2.5 * (19 - k): k = s - 6, clamped to the prior's slices
    assert axial == [max(s - 6, 0) for s in range(20)]
    # by table position it would have been s - 2: the registration, not the table, decides
    table = [int(np.argmin(np.abs(prior.slice_positions_mm("axial") - p))) for p in current.slice_positions_mm("axial")]
    assert table[10] == 8 and axial[10] == 4
    # a callable works too, and the identity pairs slices by position
    assert synced_prior_slices(current, current, lambda p: p, "coronal") == list(range(current.plane("coronal").n_slices))
