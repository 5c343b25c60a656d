"""The detector's DICOM objects stored on a real PACS over STOW-RS and retrieved back (WADO-RS).

``tsct cases push`` sends the SEG, Parametric Map, TID 1500 SR and overlay series of a small
synthetic case (the ``case`` fixture of ``test_dicom_objects``) to Debian's Orthanc with its
DICOMweb plug-in on loopback (``tests/orthanc.py``); each object is retrieved over WADO-RS and
compared with the file it was made from. Skips without Orthanc or highdicom.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests
from typer.testing import CliRunner

from tests.orthanc import DICOMWEB_PLUGIN, ORTHANC, Orthanc, free_port

from .test_dicom_objects import case  # noqa: F401  (the module-scoped exported case)

hd = pytest.importorskip("highdicom")
pytestmark = pytest.mark.skipif(
    ORTHANC is None or DICOMWEB_PLUGIN is None, reason="Orthanc with its DICOMweb plug-in is not installed (apt-get install orthanc orthanc-dicomweb)"
)


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    server = Orthanc(tmp_path_factory.mktemp("orthanc-stow"))
    try:
        yield server
    finally:
        server.stop()


def _push(folder: Path, url: str, *extra: str):
    from cases.cli import app

    return CliRunner().invoke(app, ["push", str(folder), "--url", url, *extra])


def _retrieve(url: str, local: Path) -> pydicom.Dataset:
    from dicomweb_client import DICOMwebClient

    ds = pydicom.dcmread(str(local), stop_before_pixels=True)
    got = DICOMwebClient(url).retrieve_instance(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    assert got.SOPInstanceUID == ds.SOPInstanceUID and got.SOPClassUID == ds.SOPClassUID
    assert got.StudyInstanceUID == ds.StudyInstanceUID and got.SeriesInstanceUID == ds.SeriesInstanceUID
    return got


def test_push_stores_every_object_and_they_read_back_the_same(case, pacs, tmp_path):  # noqa: F811
    folder = tmp_path / "to-pacs"
    shutil.copytree(case["out"], folder)
    (folder / "notes.txt").write_text("not DICOM\n", encoding="utf-8")
    log = tmp_path / "push_log.csv"
    res = _push(folder, pacs.url, "--batch-size", "7", "--log", str(log))
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(log.open(encoding="utf-8")))
    files = sorted(p for p in folder.rglob("*.dcm"))
    stored = {Path(r["path"]) for r in rows if r["status"] == "stored"}
    assert stored == set(files)
    assert [(Path(r["path"]).name, r["status"]) for r in rows if r["status"] != "stored"] == [("notes.txt", "skipped")]
    assert f"{len(files)} stored, 0 failed, 1 skipped" in res.output

    # the PACS holds every instance once, in the current exam's study
    study = pydicom.dcmread(str(folder / "SEG.dcm"), stop_before_pixels=True).StudyInstanceUID
    instances = requests.get(f"{pacs.url}/studies/{study}/instances", timeout=30).json()
    assert sorted(i["00080018"]["Value"][0] for i in instances) == sorted(r["sop_instance_uid"] for r in rows if r["status"] == "stored")

    # SEG: same segments, same pixels
    seg_local = hd.seg.segread(str(folder / "SEG.dcm"))
    seg_back = hd.seg.Segmentation.from_dataset(_retrieve(pacs.url, folder / "SEG.dcm"))
    assert seg_back.number_of_segments == seg_local.number_of_segments == 1 + len(case["cands"])
    assert [d.SegmentLabel for d in seg_back.SegmentSequence] == [d.SegmentLabel for d in seg_local.SegmentSequence]
    uids = [str(pydicom.dcmread(str(f), stop_before_pixels=True).SOPInstanceUID) for f in case["current"].files]
    segments = list(range(1, 1 + seg_local.number_of_segments))
    np.testing.assert_array_equal(
        seg_back.get_pixels_by_source_instance(uids, segment_numbers=segments),
        seg_local.get_pixels_by_source_instance(uids, segment_numbers=segments),
    )

    # Parametric Map: the float z-map, bit for bit
    pm_back = _retrieve(pacs.url, folder / "PM.dcm")
    np.testing.assert_array_equal(pm_back.pixel_array, pydicom.dcmread(str(folder / "PM.dcm")).pixel_array)
    vol = case["current"].volume
    for i, item in enumerate(pm_back.PerFrameFunctionalGroupsSequence):  # frame i is the z-map slice at its position
        k = int(np.rint(vol.point_to_index([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient])[2]))
        np.testing.assert_array_equal(pm_back.pixel_array[i], case["z"][k])

    # SR: the same content tree and the same candidates
    sr_back = _retrieve(pacs.url, folder / "SR.dcm")
    assert sr_back.ContentSequence == pydicom.dcmread(str(folder / "SR.dcm")).ContentSequence
    groups = hd.sr.Comprehensive3DSR.from_dataset(sr_back).content.get_volumetric_roi_measurement_groups()
    assert [g.tracking_identifier for g in groups] == [f"Candidate {c.candidate_id}" for c in case["cands"]]

    # overlay: RGB pixels unchanged
    first = min((folder / "overlay").glob("*.dcm"))
    np.testing.assert_array_equal(_retrieve(pacs.url, first).pixel_array, pydicom.dcmread(str(first)).pixel_array)

    # pushing again is harmless: the PACS keeps one copy of each instance
    again = _push(folder, pacs.url)
    assert again.exit_code == 0, again.output
    assert len(requests.get(f"{pacs.url}/studies/{study}/instances", timeout=30).json()) == len(files)


def test_push_errors_are_one_line_and_exit_non_zero(case, tmp_path):  # noqa: F811
    dead = f"http://127.0.0.1:{free_port()}/dicom-web"
    log = tmp_path / "log.csv"
    res = _push(case["out"], dead, "--retries", "0", "--log", str(log))
    assert res.exit_code == 1
    assert "Traceback" not in res.output and "cannot be reached" in res.output
    rows = list(csv.DictReader(log.open(encoding="utf-8")))
    assert rows and all(r["status"] == "failed" for r in rows)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.txt").write_text("x", encoding="utf-8")
    res = _push(empty, dead)
    assert res.exit_code == 2 and "no DICOM instances found" in res.output
    res = _push(tmp_path / "missing", dead)
    assert res.exit_code == 1 and "not a folder" in res.output and "Traceback" not in res.output
    res = _push(case["out"], "pacs:8042")
    assert res.exit_code == 1 and "must start with http" in res.output


def test_a_partly_refused_batch_reports_each_file():
    """A STOW-RS 409 answer (some instances refused) gives each instance its own status and reason."""
    from cases.pacs import PacsClient, store_datasets

    ok, bad = pydicom.Dataset(), pydicom.Dataset()
    ok.SOPInstanceUID, bad.SOPInstanceUID = "1.2.3.1", "1.2.3.2"
    body = pydicom.Dataset()
    body.ReferencedSOPSequence = [pydicom.Dataset()]
    body.ReferencedSOPSequence[0].ReferencedSOPInstanceUID = "1.2.3.1"
    body.FailedSOPSequence = [pydicom.Dataset()]
    body.FailedSOPSequence[0].ReferencedSOPInstanceUID = "1.2.3.2"
    body.FailedSOPSequence[0].FailureReason = 0xA900

    class Refusing:
        def store_instances(self, datasets):
            answer = requests.Response()
            answer.status_code = 409
            answer._content = body.to_json().encode("utf-8")
            raise requests.exceptions.HTTPError(response=answer)

    client = PacsClient("http://127.0.0.1:1/dicom-web")
    client._client = Refusing()
    out = store_datasets(client, [ok, bad])
    assert out["1.2.3.1"] == ("stored", "")
    assert out["1.2.3.2"][0] == "failed" and "does not match the SOP class" in out["1.2.3.2"][1] and "0xA900" in out["1.2.3.2"][1]
