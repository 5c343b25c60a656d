"""The HU readout route (``/api/tsct/v1/hu/…``): true HU from the exam file, the linked prior point, and the image tickets' checks.

In process against the real routes and runtime (no browser), with the rig of the security tests.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from cases import read_volume
from reading_app.workstation import LAYERS, SESSION_COOKIE, DisplayGrid, layer_files

from ._asgi import request
from .test_security_http import API, open_next, read_until, rig  # noqa: F401  (rig is a fixture)


def _hu(rig, ticket, cookie, layer="ct", plane="axial", index=8, u=20.5, v=18.5, **query):  # noqa: ANN001, ANN202
    q = "&".join([f"u={u}", f"v={v}"] + [f"{k}={val}" for k, val in query.items()])
    return request(rig.app, "GET", f"{API}/hu/{ticket}/{layer}/{plane}/{index}?{q}", cookies={SESSION_COOKIE: cookie} if cookie else None)


def _file_hu(path, point_mm) -> float:  # noqa: ANN001
    """The exam file's own value at an LPS point, read independently of the viewer's display orientation."""
    volume = read_volume(path)
    x, y, z = (int(round(c)) for c in volume.grid.point_to_index(point_mm))
    return float(np.rint(volume.array[z, y, x]))


@pytest.mark.parametrize("plane,index,u,v", [("axial", 8, 20.7, 18.2), ("coronal", 17, 5.3, 10.9), ("sagittal", 30, 11.5, 2.0)])
def test_the_readout_is_the_exams_hu_at_the_voxel_under_the_cursor(rig, plane, index, u, v):
    cookie = rig.log_in("reader1")
    view = open_next(rig.service("reader1"))
    reply = _hu(rig, rig.ticket("reader1", cookie, view), cookie, plane=plane, index=index, u=u, v=v)
    assert reply.status == 200 and "no-store" in reply.headers["cache-control"], reply.text
    got = json.loads(reply.text)
    assert got["inside"] and got["unit"] == "HU" and got["slice"] == index
    g = view.grid
    grid = DisplayGrid.from_geometry(g.size_xyz, g.spacing_mm, g.origin_mm, g.direction)
    # the pixel drawn at (u, v) is the voxel whose square holds the point: its centre is at (floor + 0.5)
    centre = grid.image_point_to_mm(plane, index, np.floor(u) + 0.5, np.floor(v) + 0.5)
    assert np.allclose(got["mm"], centre, atol=0.01)
    assert got["value"] == _file_hu(view.current_path, centre)


def test_a_point_beside_the_image_has_no_value(rig):
    cookie = rig.log_in("reader1")
    view = open_next(rig.service("reader1"))
    got = json.loads(_hu(rig, rig.ticket("reader1", cookie, view), cookie, u=-3, v=5).text)
    assert got["inside"] is False and got["value"] is None


def test_the_readout_needs_what_an_image_link_needs(rig):
    """No cookie, another log-in, an aid the treatment does not show (also as the linked layer), a finished case: refused as for images."""
    cookie = rig.log_in("reader1")
    svc = rig.service("reader1")
    view = read_until(svc, aided=False)
    ticket = rig.ticket("reader1", cookie, view)
    assert _hu(rig, ticket, cookie).status == 200
    assert _hu(rig, ticket, None).status == 401
    assert _hu(rig, ticket, rig.log_in("reader2")).status == 401
    assert _hu(rig, ticket, cookie, layer="subtraction").status == 403
    assert _hu(rig, ticket, cookie, linked="subtraction").status == 403
    assert _hu(rig, ticket, cookie, layer="../../etc/passwd").status in (403, 404)
    assert _hu(rig, ticket, cookie, u="nan").status == 400
    svc.finish_case(view.case_read_id, no_lesion=True, reading_time_s=1.0)
    assert _hu(rig, ticket, cookie).status == 401


def test_the_aided_reading_reads_the_subtraction_but_the_z_map_has_no_hu(rig):
    cookie = rig.log_in("reader1")
    view = read_until(rig.service("reader1"), aided=True)
    ticket = rig.ticket("reader1", cookie, view)
    sub = _hu(rig, ticket, cookie, layer="subtraction")
    got = json.loads(sub.text)
    assert sub.status == 200 and got["label"] == LAYERS["subtraction"].label
    assert got["value"] == _file_hu(
        layer_files(
            case_code=view.case_code, current_path=view.current_path, prior_path=None, overlays=view.overlays, detector_dir=rig.env.detector_dir
        )["subtraction"],
        got["mm"],
    )
    z = _hu(rig, ticket, cookie, layer="zmap")
    assert z.status == 400 and "no HU" in z.text


def test_the_linked_prior_point_follows_the_registration(rig, tmp_path):
    import SimpleITK as sitk

    cookie = rig.log_in("reader1")
    view = open_next(rig.service("reader1"))
    # without a registration: the same patient coordinate on the prior (table position)
    plain = json.loads(_hu(rig, rig.ticket("reader1", cookie, view), cookie, linked="prior").text)
    here = np.array(plain["mm"])
    assert plain["linked"]["registered"] is False and np.allclose(plain["linked"]["mm"], here, atol=0.8)
    # with one (current -> prior points: 5 mm towards S), the linked point is the mapped one, read on the slice the panel shows
    path = tmp_path / "transform.tfm"
    sitk.WriteTransform(sitk.TranslationTransform(3, (0.0, 0.0, 5.0)), str(path))
    moved = json.loads(_hu(rig, rig.ticket("reader1", cookie, view, registration=path), cookie, linked="prior").text)
    link = moved["linked"]
    assert link["registered"] is True
    prior_grid = DisplayGrid.from_grid(read_volume(view.prior_path).grid)
    exact = np.asarray(rig.rt.volumes.grid_of(view.current_path).image_point_to_mm("axial", 8, 20.5, 18.5)) + (0.0, 0.0, 5.0)
    s, u, v = prior_grid.mm_to_image("axial", exact)
    assert link["slice"] == int(round(s)) and link["u"] == pytest.approx(u, abs=1e-3) and link["v"] == pytest.approx(v, abs=1e-3)
    assert link["value"] == _file_hu(view.prior_path, link["mm"])
    shown = json.loads(_hu(rig, rig.ticket("reader1", cookie, view, registration=path), cookie, linked="prior", linked_slice=3).text)
    assert shown["linked"]["slice"] == 3  # the value is read on the slice the prior panel shows
