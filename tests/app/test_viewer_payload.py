"""What the browser viewer is given: only the allowed layers, marks placed by the server's geometry."""

import json

import pytest

from reading_app.workstation import DisplayGrid, allowed_layers, layer_files, viewer_payload

GRID = DisplayGrid.from_geometry((20, 16, 10), (0.8, 0.8, 2.5), (-8.0, -6.4, 100.0))
PRIOR = DisplayGrid.from_geometry((20, 16, 12), (0.8, 0.8, 2.5), (-8.0, -6.4, 97.5))


def _payload(overlays, **kw):
    files = layer_files(case_code="C1", current_path="/c.nii.gz", prior_path="/p.nii.gz", overlays=overlays, detector_dir="/det")
    return viewer_payload(instance="S:1", api_base="/reader/api/tsct/v1/", ticket="t0k", current=GRID, prior=PRIOR, layers=files.keys(), **kw)


def test_unaided_payload_names_no_aid():
    payload = _payload(())
    assert set(payload["layers"]) == {"ct", "prior"}
    assert payload["api"] == "/reader/api/tsct/v1"
    text = json.dumps(payload)
    assert "zmap" not in text and "subtraction" not in text


def test_aided_payload_and_missing_layer():
    payload = _payload(("subtraction", "zmap"), missing_layers=["zmap"])
    assert payload["layers"]["zmap"] == {"label": "z-map overlay", "role": "overlay", "fixed": False, "available": False}
    assert payload["layers"]["subtraction"]["fixed"] is True and payload["layers"]["subtraction"]["role"] == "side"


def test_planes_and_slice_positions():
    payload = _payload(())
    axial = payload["volumes"]["current"]["axial"]
    assert (axial["n"], axial["nu"], axial["nv"], axial["du"], axial["dv"], axial["ds"]) == (10, 20, 16, 0.8, 0.8, 2.5)
    assert axial["pos"][0] == pytest.approx(100.0 + 9 * 2.5) and axial["pos"][-1] == pytest.approx(100.0)
    sagittal = payload["volumes"]["current"]["sagittal"]
    assert (sagittal["n"], sagittal["nu"], sagittal["nv"], sagittal["du"], sagittal["dv"]) == (20, 16, 10, 0.8, 2.5)
    assert len(payload["volumes"]["prior"]["axial"]["pos"]) == 12


def test_marks_and_pending_in_image_coordinates():
    point = GRID.index_to_point_mm((5, 7, 3))
    payload = _payload(
        (), marks=[{"id": 11, "n": 1, "rating": 4.0, "point_mm": point}], pending={"key": "k1", "point_mm": point}, rating_keys="12345"
    )
    mark = payload["marks"][0]
    assert mark["id"] == 11 and mark["rating"] == 4 and isinstance(mark["rating"], int)
    assert mark["pos"]["axial"] == [6.0, 5.5, 7.5]  # slice 10 - 1 - 3, centre of column 5, row 7
    assert mark["pos"]["coronal"] == [7.0, 5.5, 6.5]
    assert mark["pos"]["sagittal"] == [5.0, 7.5, 6.5]
    assert payload["pending"]["key"] == "k1" and payload["pending"]["pos"] == mark["pos"]
    assert payload["ratingKeys"] == ["1", "2", "3", "4", "5"]
    assert payload["truth"] == []


def test_no_prior_no_prior_layer():
    files = layer_files(case_code="C1", current_path="/c.nii.gz", prior_path="/p.nii.gz", overlays=(), detector_dir="/d")
    payload = viewer_payload(instance="x", api_base="/api/tsct/v1", ticket="t", current=GRID, prior=None, layers=files.keys())
    assert set(payload["layers"]) == {"ct"} and "prior" not in payload["volumes"]
    assert allowed_layers(()) >= set(payload["layers"])
