"""Benchmark: `tsct cases pull` throughput from a local Orthanc on loopback, DICOMweb and DIMSE.

Loads the real Siemens series (``../shared/reference/real-ct/totalsegmentator/siemens_abdomen_dicom``,
20 slices, 512×512 JPEG 2000) twice, as a prior and a current study of one patient, into a
throw-away Orthanc (``tests/orthanc.py``), then pulls the case over DICOMweb with 1 and with 4
parallel downloads and over DIMSE with C-MOVE (to tsct's in-process storage SCP) and with C-GET
(``--repeats`` times each), and times a rerun over the complete store.

Usage::

    python bench/bench_pacs_pull.py [--repeats 2] [--series-dir DIR]

Needs Debian's ``orthanc`` and ``orthanc-dicomweb``. Loopback has no network latency, so this
measures the client and server overhead, not what parallel requests gain against a remote PACS.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--series-dir", type=Path, default=ROOT.parent / "shared/reference/real-ct/totalsegmentator/siemens_abdomen_dicom")
    args = parser.parse_args()

    import pydicom
    from pydicom.uid import generate_uid

    from cases.dimse import DimseClient
    from cases.pacs import PacsClient, pull, query_case_requests
    from tests.orthanc import DICOMWEB_PLUGIN, ORTHANC, Orthanc, free_port

    if ORTHANC is None or DICOMWEB_PLUGIN is None:
        sys.exit("Orthanc with its DICOMweb plug-in is not installed (apt-get install orthanc orthanc-dicomweb)")
    files = sorted(args.series_dir.glob("*.dcm"))
    if not files:
        sys.exit(f"no .dcm files in {args.series_dir}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        scp_port = free_port()
        server = Orthanc(tmp / "orthanc", dicom_port=free_port(), modalities={"TSCT": ("127.0.0.1", scp_port)})
        try:
            for accession, date in (("BENCH1", "20221208"), ("BENCH2", "20231208")):
                study, series = generate_uid(), generate_uid()
                for path in files:
                    ds = pydicom.dcmread(path)
                    ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = "BENCH", study, series
                    ds.AccessionNumber, ds.StudyDate = accession, date
                    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
                    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
                    server.store(ds)
            client = PacsClient(server.url)
            cases = query_case_requests(client, ["BENCH"])
            dimse = f"127.0.0.1:{server.dicom_port}"
            transports = {
                "DICOMweb workers=1": (client, 1),
                "DICOMweb workers=4": (client, 4),
                "DIMSE C-MOVE": (DimseClient(dimse, called_aet=server.aet, move_port=scp_port, move_bind="127.0.0.1"), 1),
                "DIMSE C-GET": (DimseClient(dimse, called_aet=server.aet, retrieve="get"), 1),
            }
            for rep in range(args.repeats):
                for n, (name, (source, workers)) in enumerate(transports.items()):
                    store = tmp / f"store_{n}_{rep}"
                    t0 = time.perf_counter()
                    result = pull(source, cases, store, workers=workers)
                    dt = time.perf_counter() - t0
                    mb = sum(p.stat().st_size for p in store.rglob("*.dcm")) / 1e6
                    print(
                        f"{name:<19} run {rep + 1}: {result.instances} instances, {mb:.1f} MB in {dt:.2f} s ({result.instances / dt:.1f} instances/s)"
                    )
            transports["DIMSE C-MOVE"][0].close()
            t0 = time.perf_counter()
            result = pull(client, cases, tmp / "store_1_0", workers=4)
            print(f"rerun over the complete store: {1e3 * (time.perf_counter() - t0):.1f} ms, {result.skipped} exams skipped")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
