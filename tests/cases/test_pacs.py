"""``tsct cases pull`` against a real PACS: Debian's Orthanc with its DICOMweb plug-in on loopback.

The fixture starts Orthanc (not the system service) on free ports with a temporary storage folder,
loads real Siemens slices (tests/data/pacs, see PROVENANCE.md), the real GE gantry-tilted slices
(tests/data/dicom_geometry/ge_tilt) and small synthetic series over the REST API (POST /instances),
and the tests pull from it over QIDO-RS/WADO-RS and over DIMSE (C-FIND, then C-MOVE to tsct's
storage SCP, or C-GET). Without the
``Orthanc`` binary and ``libOrthancDicomWeb.so`` the PACS tests skip; the series-selection unit
tests always run.
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid
from typer.testing import CliRunner

from cases.cli import app
from cases.dicom import write_dicom_series
from cases.dimse import DimseClient
from cases.pacs import (
    MANIFEST_NAME,
    PacsClient,
    PacsError,
    SeriesCandidate,
    SeriesRule,
    classify_kernel,
    exam_complete,
    pull,
    query_case_requests,
    read_pull_requests,
    select_series,
)
from cases.volume import Volume
from tests.orthanc import DICOMWEB_PLUGIN, ORTHANC, Orthanc, free_port

DATA = Path(__file__).resolve().parents[1] / "data" / "pacs"
GE_TILT = Path(__file__).resolve().parents[1] / "data" / "dicom_geometry" / "ge_tilt"  # see its PROVENANCE.md
needs_orthanc = pytest.mark.skipif(
    ORTHANC is None or DICOMWEB_PLUGIN is None, reason="Orthanc with its DICOMweb plug-in is not installed (apt-get install orthanc orthanc-dicomweb)"
)


# ------------------------------------------------------------------ series selection (no PACS)
def _cand(
    uid: str,
    thickness: float | None,
    extent: float,
    kernel: str = "B30f",
    *,
    axial: bool = True,
    n: int = 10,
    localizer: bool = False,
    modality: str = "CT",
    body: str = "",
) -> SeriesCandidate:
    return SeriesCandidate(uid, int(uid[-1]) if uid[-1].isdigit() else None, uid, modality, n, thickness, extent, kernel, axial, localizer, body)


def test_classify_kernel_vendor_names() -> None:
    assert classify_kernel("BONE") == "bone"
    assert classify_kernel("Br64") == "bone"
    assert classify_kernel("STANDARD") == "standard"
    assert classify_kernel("STD+") == "standard" and classify_kernel("BONE+") == "bone"  # GE head kernels
    assert classify_kernel("Br38f") == "standard"
    assert classify_kernel("B30f") == "standard"
    assert classify_kernel("LUNG") == "lung"
    assert classify_kernel("B70f") == "lung"
    assert classify_kernel("") == "unknown"
    assert classify_kernel("XYZ9") == "unknown"


def test_select_thinnest_among_series_covering_the_study() -> None:
    series = [
        _cand("s1", 3.0, 400.0, "B30f"),
        _cand("s2", 1.0, 395.0, "B60f"),  # thinnest covering ≥ 90 % → chosen
        _cand("s3", 0.5, 100.0, "BONE"),  # thinner but covers only a quarter
        _cand("s4", 0.6, 400.0, "LUNG"),  # lung kernel
        _cand("s5", 0.5, 400.0, "B30f", axial=False),  # sagittal reformat
        _cand("s6", 2.0, 0.0, "B30f", n=1, localizer=True),
        _cand("s7", 6.0, 400.0, "B30f"),  # too thick
    ]
    chosen, why = select_series(series, SeriesRule())
    assert chosen is not None and chosen.series_uid == "s2"
    assert "covers 100 mm" in why["s3"]
    assert "class lung" in why["s4"]
    assert "not axial" in why["s5"]
    assert "localizer" in why["s6"]
    assert "thickness 6 mm" in why["s7"]
    assert why["s2"].startswith("chosen")
    # a stricter coverage rule changes nothing here; a looser one lets the 0.5 mm partial series win
    loose, _ = select_series(series, SeriesRule(min_coverage_fraction=0.2))
    assert loose is not None and loose.series_uid == "s3"
    # the site's own kernel names
    lung, _ = select_series(series, SeriesRule(kernel_pattern=r"^lung$"))
    assert lung is not None and lung.series_uid == "s4"


def test_select_ties_prefer_first_kernel_class_and_body_part() -> None:
    series = [_cand("s1", 1.0, 300.0, "STANDARD", body="CHEST"), _cand("s2", 1.0, 300.0, "BONE", body="CHEST")]
    assert select_series(series, SeriesRule(kernels=("bone", "standard")))[0].series_uid == "s2"
    assert select_series(series, SeriesRule(kernels=("standard", "bone")))[0].series_uid == "s1"
    chosen, why = select_series(series, SeriesRule(body_part="SPINE"))
    assert chosen is None and "body part CHEST" in why["s1"]


def test_candidate_from_real_siemens_metadata() -> None:
    """The DICOM JSON of the real Siemens slices (what WADO-RS metadata returns) summarised."""
    from cases.pacs import candidate_from_metadata

    meta = [pydicom.dcmread(p, stop_before_pixels=True).to_json_dict() for p in sorted((DATA / "siemens").glob("*.dcm"))]
    c = candidate_from_metadata(meta)
    assert (c.modality, c.kernel, c.thickness_mm, c.n_instances, c.axial, c.localizer) == ("CT", "Br38f", 3.0, 4, True, False)
    assert c.z_extent_mm == pytest.approx(6.0) and c.body_part == "PARTIALBODY"
    assert classify_kernel(c.kernel) == "standard"
    tilted = [dict(m, **{"00200037": {"vr": "DS", "Value": [1, 0, 0, 0, 0.94, -0.34]}}) for m in meta]  # ≈ 20° gantry tilt
    assert not candidate_from_metadata(tilted).axial and candidate_from_metadata(tilted, max_tilt_deg=25).axial


def test_rule_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="unknown kernel class"):
        SeriesRule(kernels=("bony",))
    with pytest.raises(ValueError, match="not a valid regular expression"):
        SeriesRule(kernel_pattern="(")
    with pytest.raises(ValueError, match="between 0 and 1"):
        SeriesRule(min_coverage_fraction=1.5)


def test_request_file_problems_are_all_reported(tmp_path: Path) -> None:
    bad = tmp_path / "req.csv"
    bad.write_text("case_id,patient_id,prior_accession,current_accession\nc 1,P1,A1,A2\nc2,,A1,\nc2,P2,A,B\nc3,P3,A,A\n")
    with pytest.raises(PacsError) as info:
        read_pull_requests(bad)
    text = str(info.value)
    assert "row 2: case_id 'c 1'" in text and "row 3: patient_id is empty" in text
    assert "row 3: give current_accession" in text and "row 4: case_id c2 appears twice" in text
    assert "row 5: prior and current name the same exam (accession A)" in text


# ------------------------------------------------------------------ the PACS (tests/orthanc.py)
def _synthetic_series(
    tmp: Path,
    *,
    patient: str,
    study_uid: str,
    accession: str,
    date: str,
    number: int,
    kernel: str,
    thickness: float,
    n: int,
    description: str,
    sagittal: bool = False,
    localizer: bool = False,
    body_part: str = "SPINE",
) -> list[pydicom.Dataset]:
    """A small synthetic CT series (16×16 pixels, HU ramp) written with the project's DICOM writer."""
    rng = np.random.default_rng(number)
    array = (rng.normal(40.0, 20.0, size=(n, 16, 16)) + np.arange(n)[:, None, None] * 50).astype(np.float32)
    direction = (0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0) if sagittal else (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    vol = Volume(array, (0.8, 0.8, thickness), origin_mm=(-6.0, -6.0, 100.0), direction=direction, metadata={"slice_thickness_mm": thickness})
    folder = tmp / f"{study_uid}_{number}"
    image_type = ("ORIGINAL", "PRIMARY", "LOCALIZER") if localizer else ("ORIGINAL", "PRIMARY", "AXIAL")
    paths = write_dicom_series(
        vol,
        folder,
        series_description=description,
        patient_id=patient,
        patient_name=patient,
        study_instance_uid=study_uid,
        study_date=date,
        series_number=number,
        image_type=image_type,
        template={"AccessionNumber": accession},
    )
    out = []
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.ConvolutionKernel = kernel
        ds.BodyPartExamined = body_part
        out.append(ds)
    return out


def _real_series(folder: Path, patient: str, study_uid: str, accession: str, date: str) -> list[pydicom.Dataset]:
    """Real slices (the Siemens ones of tests/data/pacs, or the GE tilted ones of tests/data/dicom_geometry)
    stamped into a new study and series of ``patient``: the anonymised files lack (Siemens) or share
    (GE) those identifiers. Pixel data and geometry untouched."""
    series_uid = generate_uid()
    out = []
    for path in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        ds.PatientID, ds.PatientName = patient, patient
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.AccessionNumber, ds.StudyDate = accession, date
        ds.SeriesNumber = ds.get("SeriesNumber") or 2
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        out.append(ds)
    return out


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory):
    """Orthanc loaded with P1 (synthetic, three studies), P2 (real Siemens, two studies), P3 (two long synthetic
    series) and P4 (the real GE tilted head series, two studies). It speaks DICOMweb and DIMSE (AE title ORTHANC)
    and knows tsct's storage SCP (AE title TSCT on ``pacs.scp_port``) as a C-MOVE destination."""
    if ORTHANC is None or DICOMWEB_PLUGIN is None:
        pytest.skip("Orthanc with its DICOMweb plug-in is not installed")
    tmp = tmp_path_factory.mktemp("orthanc")
    scp_port = free_port()
    server = Orthanc(tmp, dicom_port=free_port(), modalities={"TSCT": ("127.0.0.1", scp_port)})
    server.scp_port = scp_port
    uids = {k: generate_uid() for k in ("p1_old", "p1_prior", "p1_current", "p2_prior", "p2_current", "p4_prior", "p4_current")}
    series: list[pydicom.Dataset] = []

    def mk(**kw) -> None:
        series.extend(_synthetic_series(tmp / "gen", patient="P1", **kw))

    mk(study_uid=uids["p1_old"], accession="ACC0", date="20200105", number=1, kernel="B30f", thickness=3.0, n=4, description="old")
    mk(study_uid=uids["p1_prior"], accession="ACC1", date="20240110", number=1, kernel="B30f", thickness=3.0, n=5, description="prior std 3mm")
    mk(study_uid=uids["p1_prior"], accession="ACC1", date="20240110", number=2, kernel="LUNG", thickness=1.0, n=13, description="prior lung 1mm")
    mk(
        study_uid=uids["p1_prior"],
        accession="ACC1",
        date="20240110",
        number=3,
        kernel="B30f",
        thickness=1.0,
        n=1,
        description="scout",
        localizer=True,
    )
    mk(
        study_uid=uids["p1_current"],
        accession="ACC2",
        date="20250302",
        number=1,
        kernel="STANDARD",
        thickness=3.0,
        n=3,
        description="current std 3mm",
    )
    mk(study_uid=uids["p1_current"], accession="ACC2", date="20250302", number=2, kernel="BONE", thickness=1.0, n=7, description="current bone 1mm")
    mk(
        study_uid=uids["p1_current"],
        accession="ACC2",
        date="20250302",
        number=3,
        kernel="BONE",
        thickness=0.5,
        n=4,
        description="current bone 0.5mm partial",
    )
    mk(
        study_uid=uids["p1_current"],
        accession="ACC2",
        date="20250302",
        number=4,
        kernel="BONE",
        thickness=0.5,
        n=16,
        description="current sagittal",
        sagittal=True,
    )
    for acc, date in (("LONG1", "20240101"), ("LONG2", "20250101")):  # P3: two 60-slice series for the kill test
        series.extend(
            _synthetic_series(
                tmp / "gen",
                patient="P3",
                study_uid=generate_uid(),
                accession=acc,
                date=date,
                number=1,
                kernel="B30f",
                thickness=1.0,
                n=60,
                description=f"long {acc}",
            )
        )
    series += _real_series(DATA / "siemens", "P2", uids["p2_prior"], "SIE1", "20221208")
    series += _real_series(DATA / "siemens", "P2", uids["p2_current"], "SIE2", "20231208")
    series += _real_series(GE_TILT, "P4", uids["p4_prior"], "GE1", "20190301")
    series += _real_series(GE_TILT, "P4", uids["p4_current"], "GE2", "20200301")
    try:
        for ds in series:
            server.store(ds)
        server.uids = uids
        yield server
    finally:  # also when loading fails: never leave an Orthanc process behind
        server.stop()


def _requests_csv(tmp: Path, text: str) -> Path:
    path = tmp / "requests.csv"
    path.write_text(text)
    return path


@needs_orthanc
def test_pull_case_list_by_accession_and_study_uid(pacs: Orthanc, tmp_path: Path) -> None:
    req = _requests_csv(
        tmp_path,
        "case_id,patient_id,prior_accession,prior_study_uid,current_accession,current_study_uid,status\n"
        f"c1,P1,ACC1,,ACC2,,normal\nc2,P2,,{pacs.uids['p2_prior']},SIE2,,\n",
    )
    store = tmp_path / "store"
    result = pull(PacsClient(pacs.url), read_pull_requests(req), store)
    assert (result.fetched, result.skipped) == (4, 0)
    # P1 prior: the 3 mm standard series (lung kernel and scout rejected); current: the 1 mm bone series
    # covering the study (the 0.5 mm one covers 1.5 of 6 mm, the sagittal one is not axial)
    c1_prior = sorted((store / "c1" / "prior").glob("*.dcm"))
    c1_current = sorted((store / "c1" / "current").glob("*.dcm"))
    assert len(c1_prior) == 5 and len(c1_current) == 7
    assert pydicom.dcmread(c1_current[0]).SeriesDescription == "current bone 1mm"
    assert pydicom.dcmread(c1_prior[0]).SeriesDescription == "prior std 3mm"
    # the real Siemens slices come back bit for bit in their JPEG 2000 transfer syntax
    originals = {int(ds.InstanceNumber): ds for ds in map(pydicom.dcmread, (DATA / "siemens").glob("*.dcm"))}
    pulled = [pydicom.dcmread(p) for p in (store / "c2" / "current").glob("*.dcm")]
    assert len(pulled) == 4
    for ds in pulled:
        assert ds.file_meta.TransferSyntaxUID == originals[int(ds.InstanceNumber)].file_meta.TransferSyntaxUID
        assert ds.PixelData == originals[int(ds.InstanceNumber)].PixelData
        assert ds.StudyInstanceUID == pacs.uids["p2_current"]
    # case list in the project's schema; the log says why each series was chosen
    lines = (store / "cases.csv").read_text().splitlines()
    assert lines[1].startswith("c1,c1/prior,c1/current,normal") and lines[2].startswith("c2,c2/prior,c2/current,,")
    from cases.caselist import CaseListError, read_case_list

    with pytest.raises(CaseListError) as problems:  # the project's reader accepts it but for the missing truth of c2
        read_case_list(store / "cases.csv", check_files=True)
    assert [(p.row, p.column) for p in problems.value.problems] == [(3, "status")]
    log = (store / "pull_log.csv").read_text()
    assert "chosen: 1 mm slices, kernel BONE, 7 instances over 6 mm of z" in log
    assert exam_complete(store / "c2" / "prior")
    # the pulled current exam reads as a volume with the project's reader
    from cases.io import read_exam

    exam = read_exam(store / "c1" / "current")
    assert exam.volume.size[2] == 7
    real = read_exam(store / "c2" / "current")
    assert real.volume.size == (512, 512, 4) and real.volume.spacing_mm[2] == pytest.approx(2.0)


@needs_orthanc
def test_pull_by_query_with_date_range_and_pairing(pacs: Orthanc, tmp_path: Path) -> None:
    client = PacsClient(pacs.url)
    cases = query_case_requests(client, ["P1"], date_from="2021-01-01", date_to="2025-12-31")
    assert [(c.case_id, c.prior.study_uid, c.current.study_uid) for c in cases] == [("P1_20250302", pacs.uids["p1_prior"], pacs.uids["p1_current"])]
    every = query_case_requests(client, ["P1"], pairing="consecutive")
    assert [c.case_id for c in every] == ["P1_20240110", "P1_20250302"]
    with pytest.raises(PacsError, match="patient P1: 1 CT study found"):
        query_case_requests(client, ["P1"], date_from="2024-06-01")
    runner = CliRunner()
    store = tmp_path / "store"
    dry = runner.invoke(app, ["pull", str(store), "--url", pacs.url, "--patient-id", "P1", "--pairing", "consecutive", "--dry-run"])
    assert dry.exit_code == 0 and "P1_20240110: patient P1" in dry.output and not store.exists()
    res = runner.invoke(app, ["pull", str(store), "--url", pacs.url, "--patient-id", "P2", "--from", "2022-01-01"])
    assert res.exit_code == 0, res.output
    assert (store / "P2_20231208" / "current" / MANIFEST_NAME).is_file()
    assert len(list((store / "P2_20231208" / "prior").glob("*.dcm"))) == 4
    assert "fill in normal/abnormal" in res.output


@needs_orthanc
def test_pull_resumes_after_interruption(pacs: Orthanc, tmp_path: Path) -> None:
    req = _requests_csv(tmp_path, "case_id,patient_id,prior_accession,current_accession\nc1,P1,ACC1,ACC2\nc2,P2,SIE1,SIE2\n")
    store = tmp_path / "store"
    client = PacsClient(pacs.url)
    cases = read_pull_requests(req)
    count = {"n": 0}

    def interrupt(n: int) -> None:  # Ctrl-C after 8 instances: in the middle of c1/current
        count["n"] += n
        if count["n"] == 8:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pull(client, cases, store, on_instance=interrupt, workers=2)
    assert exam_complete(store / "c1" / "prior")
    partial = store / "c1" / "current.partial"
    n_done = len(list(partial.glob("*.dcm")))  # 3 reported + those finished or in flight but not yet reported
    assert not (store / "c1" / "current").exists() and 3 <= n_done < 7
    kept = {p.name: p.stat().st_mtime_ns for p in partial.glob("*.dcm")}
    (partial / "junk.dcm.tmp").write_bytes(b"half an instance")  # what a kill during a write leaves

    fetched: list[int] = []
    result = pull(client, cases, store, on_instance=fetched.append)
    assert result.skipped == 1 and result.fetched == 3
    assert len(fetched) == (7 - n_done) + 4 + 4  # the missing of c1/current, then c2 prior and current
    assert all(exam_complete(store / c / e) for c in ("c1", "c2") for e in ("prior", "current"))
    assert not partial.exists() and not list(store.rglob("*.tmp"))
    assert {p.name: p.stat().st_mtime_ns for p in (store / "c1" / "current").glob("*.dcm") if p.name in kept} == kept

    # a complete exam that lost a file is rebuilt; the others are skipped without downloads
    victim = next((store / "c2" / "prior").glob("*.dcm"))
    victim.unlink()
    again: list[int] = []
    result = pull(client, cases, store, on_instance=again.append)
    assert (result.skipped, result.fetched, len(again)) == (3, 1, 1) and victim.is_file()

    # a request that now names another exam for a complete folder is refused, not silently skipped
    swapped = _requests_csv(tmp_path, "case_id,patient_id,prior_accession,current_accession\nc1,P1,ACC0,ACC2\n")
    with pytest.raises(PacsError, match=r"c1/prior already holds patient P1, study .* \(accession ACC1\), not prior accession ACC0"):
        pull(client, read_pull_requests(swapped), store)


@needs_orthanc
@pytest.mark.parametrize("transport", ["dicomweb", "dimse"])
def test_pull_killed_mid_series_resumes(pacs: Orthanc, tmp_path: Path, transport: str) -> None:
    """SIGKILL the CLI while it downloads a 60-instance series (WADO-RS requests, or a C-MOVE into its
    storage SCP), then rerun it."""
    import os
    import signal
    import sys

    req = _requests_csv(tmp_path, "case_id,patient_id,prior_accession,current_accession\nlong,P3,LONG1,LONG2\n")
    store = tmp_path / "store"
    source = (
        ["--url", pacs.url]
        if transport == "dicomweb"
        else ["--dimse", f"127.0.0.1:{pacs.dicom_port}", "--called-aet", "ORTHANC", "--move-port", str(pacs.scp_port), "--move-bind", "127.0.0.1"]
    )
    cli = [sys.executable, "-c", "import tsct_cli; tsct_cli.main()", "cases", "pull", str(store), *source, "--requests", str(req)]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen(cli, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    partial = store / "long" / "prior.partial"
    while proc.poll() is None and len(list(partial.glob("*.dcm"))) < 3:
        time.sleep(0.002)
    pacs.proc.send_signal(signal.SIGSTOP)  # freeze the PACS so the client cannot finish before the kill
    try:
        proc.kill()
        proc.wait()
    finally:
        pacs.proc.send_signal(signal.SIGCONT)
    assert proc.returncode == -signal.SIGKILL, "the pull ended before it could be killed"
    done_before = {p.name for p in partial.glob("*.dcm")}
    assert 3 <= len(done_before) < 60 and not (store / "long" / "prior").exists()
    res = subprocess.run(cli, capture_output=True, text=True, env=env, check=False)
    assert res.returncode == 0, res.stderr
    if transport == "dicomweb":  # (a C-MOVE the PACS was still running for the killed pull may deliver some of them too)
        assert f"({120 - len(done_before)} instances downloaded)" in " ".join(res.stdout.split())
    assert exam_complete(store / "long" / "prior") and exam_complete(store / "long" / "current")
    assert done_before <= {p.name for p in (store / "long" / "prior").glob("*.dcm")}
    assert not list(store.rglob("*.tmp"))


@needs_orthanc
def test_pull_errors_are_one_line(pacs: Orthanc, tmp_path: Path) -> None:
    runner = CliRunner()
    store = str(tmp_path / "store")
    req = _requests_csv(tmp_path, "case_id,patient_id,prior_accession,current_accession\nc1,P1,ACC1,NOPE\n")

    def run(*args: str) -> str:
        res = runner.invoke(app, ["pull", store, *args])
        assert res.exit_code != 0, res.output
        assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
        assert "Traceback" not in res.output
        return " ".join(res.output.split())

    assert "no current study with accession NOPE for patient P1" in run("--url", pacs.url, "--requests", str(req))
    port = free_port()
    assert f"cannot reach the PACS at http://127.0.0.1:{port}/dicom-web" in run(
        "--url", f"http://127.0.0.1:{port}/dicom-web", "--patient-id", "P1", "--retries", "0"
    )
    assert "answered HTTP 404" in run("--url", f"{pacs.rest}/not-dicom-web", "--patient-id", "P1")
    ok = _requests_csv(tmp_path, "case_id,patient_id,prior_accession,current_accession\nc1,P1,ACC1,ACC2\n")
    out = run("--url", pacs.url, "--requests", str(ok), "--kernel", "lung", "--max-thickness", "2")
    # the prior has a 1 mm lung series (pulled); the current has none
    assert "case c1 current" in out and "no series matches the rule" in out
    assert "'current bone 1mm': kernel BONE (class bone) not accepted (lung)" in out
    assert "give either --requests" in run("--url", pacs.url)
    assert "unknown kernel class(es) bony" in run("--url", pacs.url, "--patient-id", "P1", "--kernel", "bony")
    assert "--from '2024/01/01' must be a date" in run("--url", pacs.url, "--patient-id", "P1", "--from", "2024/01/01")


# ------------------------------------------------------------------ DIMSE (C-FIND, C-MOVE, C-GET) against the same Orthanc
def _dimse(pacs: Orthanc, **kw) -> DimseClient:
    kw.setdefault("move_port", pacs.scp_port)
    return DimseClient(f"127.0.0.1:{pacs.dicom_port}", called_aet=pacs.aet, calling_aet="TSCT", move_bind="127.0.0.1", **kw)


def _store_contents(store: Path) -> dict[str, bytes]:
    """Every DICOM file of a case store (relative path -> bytes), and the case list and pull log."""
    files = {str(p.relative_to(store)): p.read_bytes() for p in store.rglob("*.dcm")}
    files.update({name: (store / name).read_bytes() for name in ("cases.csv", "pull_log.csv")})
    return files


@needs_orthanc
def test_dimse_pull_equals_the_dicomweb_pull(pacs: Orthanc, tmp_path: Path) -> None:
    """The same requests pulled over C-FIND/C-MOVE, over C-GET and over QIDO-RS/WADO-RS give the same case
    store: same series chosen (synthetic, real Siemens JPEG 2000, real GE tilted), same files, same case list and log."""
    req = _requests_csv(
        tmp_path,
        "case_id,patient_id,prior_accession,prior_study_uid,current_accession,current_study_uid,status\n"
        f"c1,P1,ACC1,,ACC2,,normal\nc2,P2,,{pacs.uids['p2_prior']},SIE2,,\nge,P4,GE1,,GE2,,normal\n",
    )
    cases = read_pull_requests(req)
    rule = SeriesRule(max_tilt_deg=20.0, max_thickness_mm=8.0)  # the GE head series: tilted 18.5°, 4 and 7 mm slices
    web = pull(PacsClient(pacs.url), cases, tmp_path / "web", rule)
    with _dimse(pacs) as client:
        moved = pull(client, cases, tmp_path / "move", rule)
    with _dimse(pacs, retrieve="get", move_port=None) as client:
        got = pull(client, cases, tmp_path / "get", rule)
    assert (web.fetched, moved.fetched, got.fetched) == (6, 6, 6)
    assert web.instances == moved.instances == got.instances == 5 + 7 + 4 + 4 + 3 + 3
    reference = _store_contents(tmp_path / "web")
    for store in ("move", "get"):
        contents = _store_contents(tmp_path / store)
        assert contents.keys() == reference.keys()
        for name, data in contents.items():
            if name.endswith(".dcm"):  # same instance, same transfer syntax, same pixels
                a, b = pydicom.dcmread(io.BytesIO(data)), pydicom.dcmread(io.BytesIO(reference[name]))
                assert (a.file_meta.TransferSyntaxUID, a.PixelData) == (b.file_meta.TransferSyntaxUID, b.PixelData), name
            else:
                assert data == reference[name], name
    manifest = json.loads((tmp_path / "move" / "ge" / "current" / MANIFEST_NAME).read_text())
    assert manifest["pacs"] == f"dicom://ORTHANC@127.0.0.1:{pacs.dicom_port}" and manifest["kernel"] == "STD+"
    # a query (patient, date range, pairing) gives the same cases over C-FIND as over QIDO-RS
    for patients, kw in ((["P1"], {"date_from": "2021-01-01", "date_to": "2025-12-31"}), (["P1", "P4"], {"pairing": "consecutive"})):
        over_dimse = query_case_requests(_dimse(pacs, retrieve="get", move_port=None), patients, **kw)
        assert over_dimse == query_case_requests(PacsClient(pacs.url), patients, **kw) and over_dimse
    # the pulled GE exam is resampled by the project's reader, tilt and uneven spacing said
    from cases.io import read_exam

    exam = read_exam(tmp_path / "move" / "ge" / "current")
    assert "gantry tilt of 18.5°" in exam.header["geometry_notes"]
    # under the default rule (≤ 10° tilt) the GE series is refused with the reason, over either transport
    ge_only = [c for c in cases if c.case_id == "ge"]
    with pytest.raises(PacsError, match=r"slice thickness 7 mm > 5 mm \(its slices are 4 to 7 mm\)"):
        pull(PacsClient(pacs.url), ge_only, tmp_path / "thick", SeriesRule(max_tilt_deg=20.0))
    for client in (PacsClient(pacs.url), _dimse(pacs, retrieve="get", move_port=None)):
        with pytest.raises(PacsError, match=r"case ge prior .* no series matches the rule .*not axial \(slice normal tilted > 10°"):
            pull(client, ge_only, tmp_path / "refused")


@needs_orthanc
def test_dimse_pull_interrupted_resumes_with_the_missing_instances(pacs: Orthanc, tmp_path: Path) -> None:
    """Ctrl-C during a C-MOVE of a 60-instance series; the rerun moves only the missing instances
    (an IMAGE-level C-MOVE with their UIDs) and leaves the received ones untouched."""
    req = _requests_csv(tmp_path, "case_id,patient_id,prior_accession,current_accession\nlong,P3,LONG1,LONG2\n")
    cases = read_pull_requests(req)
    store = tmp_path / "store"
    count = {"n": 0}

    def interrupt(n: int) -> None:
        count["n"] += n
        if count["n"] == 10:
            raise KeyboardInterrupt

    with _dimse(pacs) as client, pytest.raises(KeyboardInterrupt):
        pull(client, cases, store, on_instance=interrupt)
    partial = store / "long" / "prior.partial"
    kept = {p.name: p.stat().st_mtime_ns for p in partial.glob("*.dcm")}
    assert 10 <= len(kept) < 60 and not (store / "long" / "prior").exists() and not list(partial.glob("*.tmp"))
    arrived: list[int] = []
    with _dimse(pacs) as client:
        result = pull(client, cases, store, on_instance=arrived.append)
    assert result.instances == len(arrived) == 120 - len(kept) and result.fetched == 2
    assert exam_complete(store / "long" / "prior") and exam_complete(store / "long" / "current")
    assert {p.name: p.stat().st_mtime_ns for p in (store / "long" / "prior").glob("*.dcm") if p.name in kept} == kept
    with _dimse(pacs) as client:  # a third run finds both exams complete and asks the PACS for nothing
        again = pull(client, cases, store)
    assert (again.skipped, again.fetched, again.instances) == (2, 0, 0)


@needs_orthanc
def test_dimse_pull_cli_and_its_errors(pacs: Orthanc, tmp_path: Path) -> None:
    runner = CliRunner()
    store = tmp_path / "store"
    req = _requests_csv(tmp_path, "case_id,patient_id,prior_accession,current_accession\nc1,P1,ACC1,ACC2\n")
    dimse = ["--dimse", f"127.0.0.1:{pacs.dicom_port}", "--called-aet", "ORTHANC", "--aet", "TSCT", "--requests", str(req)]
    move = ["--move-port", str(pacs.scp_port), "--move-bind", "127.0.0.1"]

    def run(*args: str, ok: bool = False) -> str:  # a fresh store each time: nothing already complete to skip
        res = runner.invoke(app, ["pull", str(store if ok else tmp_path / f"s{len(list(tmp_path.iterdir()))}"), *args])
        assert (res.exit_code == 0) == ok, res.output
        assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
        return " ".join(res.output.split())

    out = run(*dimse, *move, ok=True)
    assert "Done 2 exam(s) fetched (12 instances downloaded)" in out
    assert len(list((store / "c1" / "current").glob("*.dcm"))) == 7
    # a PACS that refuses the association (wrong called AE title)
    assert "refused the association for the study search (Called AE title not recognised); check --called-aet WRONG" in run(
        "--dimse", f"127.0.0.1:{pacs.dicom_port}", "--called-aet", "WRONG", "--requests", str(req), "--retrieve", "get"
    )
    # nothing listening
    port = free_port()
    unreachable = run("--dimse", f"127.0.0.1:{port}", "--called-aet", "X", "--requests", str(req), "--retrieve", "get")
    assert f"cannot open an association with the PACS at 127.0.0.1:{port}" in unreachable
    # a move destination the PACS does not know
    fresh = ["pull", str(tmp_path / "other"), *dimse, "--move-port", str(pacs.scp_port), "--move-bind", "127.0.0.1"]
    res = runner.invoke(app, [*fresh, "--move-aet", "NOBODY"])
    text = " ".join(res.output.split())
    assert res.exit_code == 1 and "refused the C-MOVE" in text and "sent nothing" in text, text
    assert "move destination AE title 'NOBODY' is unknown to the PACS (add it to the PACS's modalities" in text and "--retrieve get" in text
    # ... which --retrieve auto answers with C-GET, saying so
    res = runner.invoke(app, [*fresh, "--move-aet", "NOBODY", "--retrieve", "auto"])
    text = " ".join(res.output.split())
    assert res.exit_code == 0 and "C-MOVE refused" in text and "retrieving with C-GET instead" in text
    assert exam_complete(tmp_path / "other" / "c1" / "current")
    # option mistakes, before any network traffic
    assert "give either --url (DICOMweb) or --dimse" in run("--requests", str(req))
    assert "give either --url (DICOMweb) or --dimse" in run("--url", pacs.url, *dimse)
    assert "--dimse needs --called-aet" in run("--dimse", "127.0.0.1:104", "--requests", str(req))
    assert "--dimse 'pacs' must be HOST:PORT" in run("--dimse", "pacs", "--called-aet", "X", "--requests", str(req))
    assert "--retrieve move needs --move-port" in run(*dimse)
    assert "--aet 'A_TITLE_LONGER_THAN_16' must be an AE title" in run(*dimse, *move, "--aet", "A_TITLE_LONGER_THAN_16")
    with socket.socket() as busy:  # the C-MOVE port taken by another program
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        out = run(*dimse, "--move-port", str(taken), "--move-bind", "127.0.0.1")
    assert f"cannot listen on 127.0.0.1:{taken} for the C-MOVE" in out


def test_dimse_refusals_name_the_fix() -> None:
    """The statuses a PACS answers a C-MOVE with, turned into sentences (no PACS needed)."""
    from pydicom import Dataset

    client = DimseClient("pacs.example:104", called_aet="PACS", calling_aet="TSCT", move_port=11113)
    unknown = Dataset()
    unknown.Status = 0xA801
    with pytest.raises(PacsError, match=r"does not know the move destination AE title 'TSCT'.*port 11113\), or use --retrieve get"):
        client._check_retrieve_status(unknown, "C-MOVE", "1.2.3")
    partly = Dataset()
    partly.Status, partly.NumberOfCompletedSuboperations = 0xA702, 3
    with pytest.raises(PacsError, match=r"failed the C-MOVE of series 1.2.3: out of resources.*status 0xA702"):
        client._check_retrieve_status(partly, "C-MOVE", "1.2.3")
    with pytest.raises(PacsError, match="did not answer the C-GET"):
        client._check_retrieve_status(Dataset(), "C-GET", "1.2.3", get=True)


def test_dimse_retrieve_asks_for_the_missing_and_checks_they_came(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A resumed series is an IMAGE-level retrieve listing the missing UIDs; instances the PACS did not
    send (a retrieve that ended with a warning) make a one-line error, not an incomplete exam."""
    client = DimseClient("pacs.example:104", called_aet="PACS", calling_aet="TSCT", move_port=11113)
    asked = []

    def half_move(identifier, series_uid, on_instance) -> None:  # the PACS sends only the first instance
        asked.append((identifier.QueryRetrieveLevel, list(identifier.get("SOPInstanceUID", []) or [])))
        (tmp_path / "1.1.dcm").write_bytes(b"DICM")

    monkeypatch.setattr(client, "_move", half_move)
    with pytest.raises(PacsError, match=r"without sending 1 of its 2 instance\(s\) \(first 1.2\)"):
        client.fetch_instances("9.9", "9.9.1", ["1.1", "1.2"], tmp_path, whole_series=False)
    client.fetch_instances("9.9", "9.9.1", ["1.1"], tmp_path, whole_series=True)
    assert asked == [("IMAGE", ["1.1", "1.2"]), ("SERIES", [])]


@needs_orthanc
def test_the_projects_synthetic_dicom_pair_round_trips_through_the_pacs(pacs: Orthanc, tmp_path: Path) -> None:
    """A synthetic pair written as DICOM by `tsct cases synth` is loaded into the PACS and pulled back by
    query, over DIMSE C-MOVE and over DICOMweb: both give back the exams voxel for voxel. Its series carry
    no ConvolutionKernel, so the rule must accept an unknown kernel as a last preference (`any`)."""
    from cases.io import read_exam
    from cases.synth import synthesize_pair, write_pair

    paths = write_pair(synthesize_pair("SYN001", seed=7, size="small"), tmp_path / "synth", dicom=True)
    for exam in ("prior", "current"):
        for path in sorted(paths[f"{exam}_dicom"].glob("*.dcm")):
            pacs.store(pydicom.dcmread(path))
    runner = CliRunner()
    dimse = ["--dimse", f"127.0.0.1:{pacs.dicom_port}", "--called-aet", "ORTHANC", "--move-port", str(pacs.scp_port), "--move-bind", "127.0.0.1"]
    strict = runner.invoke(app, ["pull", str(tmp_path / "strict"), *dimse, "--patient-id", "SYN001"])
    assert strict.exit_code == 1 and "kernel (none) (class unknown) not accepted (bone/standard)" in " ".join(strict.output.split())
    for name, transport in (("dimse", dimse), ("web", ["--url", pacs.url])):
        store = tmp_path / name
        res = runner.invoke(app, ["pull", str(store), *transport, "--patient-id", "SYN001", "--kernel", "bone,standard,any"])
        assert res.exit_code == 0, res.output
        (case_dir,) = [p for p in store.iterdir() if p.is_dir()]
        for exam in ("prior", "current"):
            pulled, original = read_exam(case_dir / exam).volume, read_exam(paths[f"{exam}_dicom"]).volume
            assert pulled.size == original.size and np.array_equal(pulled.array, original.array), (name, exam)
            np.testing.assert_allclose(pulled.origin_mm, original.origin_mm)
