"""The readers' SRs of a finished study stored on a real PACS (STOW-RS) and retrieved back (WADO-RS).

``tsct study export-sr`` writes one SR per reader and case; ``tsct cases push`` sends the folder
to Debian's Orthanc with its DICOMweb plug-in on loopback (``tests/orthanc.py``); each SR comes back
with its SOP Instance UID, in its case's study, with the same observer and the same marks.
Skips without Orthanc or highdicom.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pydicom
import pytest
from typer.testing import CliRunner

from tests.orthanc import DICOMWEB_PLUGIN, ORTHANC, Orthanc

from .test_marks_sr import finished  # noqa: F401  (a finished study with a DICOM current exam per case)

hd = pytest.importorskip("highdicom")
pytestmark = pytest.mark.skipif(
    ORTHANC is None or DICOMWEB_PLUGIN is None, reason="Orthanc with its DICOMweb plug-in is not installed (apt-get install orthanc orthanc-dicomweb)"
)


def _marks(sr: hd.sr.Comprehensive3DSR) -> list[tuple[str, tuple[float, ...], float]]:
    out = []
    for g in sr.content.get_volumetric_roi_measurement_groups():
        (m,) = g.get_measurements()
        out.append((g.tracking_identifier, tuple(float(v) for v in g.roi[0].GraphicData), float(m.value)))
    return out


def test_readers_srs_round_trip_through_the_pacs(finished, tmp_path):  # noqa: F811
    from dicomweb_client import DICOMwebClient

    from cases.cli import app as cases_app
    from reader_study.cli import app as study_app

    db, study, tmp = finished
    out = tmp / "sr"
    res = CliRunner().invoke(study_app, ["--db", db.url, "export-sr", study.code, "--out", str(out), "--dicom-map", str(tmp / "map.csv")])
    assert res.exit_code == 0, res.output
    files = sorted(out.rglob("*.dcm"))
    assert files
    server = Orthanc(tmp_path / "orthanc")
    try:
        log = tmp_path / "push.csv"
        res = CliRunner().invoke(cases_app, ["push", str(out), "--url", server.url, "--log", str(log)])
        assert res.exit_code == 0, res.output
        rows = list(csv.DictReader(log.open(encoding="utf-8")))
        assert sorted(Path(r["path"]) for r in rows if r["status"] == "stored") == files
        client = DICOMwebClient(server.url)
        for path in files:
            local = pydicom.dcmread(str(path))
            back = client.retrieve_instance(local.StudyInstanceUID, local.SeriesInstanceUID, local.SOPInstanceUID)
            assert back.SOPInstanceUID == local.SOPInstanceUID and back.StudyInstanceUID == local.StudyInstanceUID
            assert back.PatientID == local.PatientID
            assert back.ContentSequence == local.ContentSequence
            sr_back, sr_local = hd.sr.Comprehensive3DSR.from_dataset(back), hd.sr.srread(str(path))
            (obs_back,), (obs_local,) = sr_back.content.get_observer_contexts(), sr_local.content.get_observer_contexts()
            assert obs_back.observer_identifying_attributes.name == obs_local.observer_identifying_attributes.name
            assert _marks(sr_back) == _marks(sr_local)
        # the PACS lists one SR per reader in each case's study
        for study_uid in {pydicom.dcmread(str(p), stop_before_pixels=True).StudyInstanceUID for p in files}:
            found = client.search_for_instances(study_uid, search_filters={"Modality": "SR"})
            assert len(found) == sum(1 for p in files if pydicom.dcmread(str(p), stop_before_pixels=True).StudyInstanceUID == study_uid)
    finally:
        server.stop()
