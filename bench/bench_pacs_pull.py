"""Benchmark: `tsct cases pull` throughput from a local Orthanc (DICOMweb) on loopback.

Loads the real Siemens series (``../shared/reference/real-ct/totalsegmentator/siemens_abdomen_dicom``,
20 slices, 512×512 JPEG 2000) twice, as a prior and a current study of one patient, into a
throw-away Orthanc (``tests/orthanc.py``), then pulls the case with 1 and with 4 parallel
downloads (``--repeats`` times each) and times a rerun over the complete store.

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

    from cases.pacs import PacsClient, pull, query_case_requests
    from tests.orthanc import DICOMWEB_PLUGIN, ORTHANC, Orthanc

    if ORTHANC is None or DICOMWEB_PLUGIN is None:
        sys.exit("Orthanc with its DICOMweb plug-in is not installed (apt-get install orthanc orthanc-dicomweb)")
    files = sorted(args.series_dir.glob("*.dcm"))
    if not files:
        sys.exit(f"no .dcm files in {args.series_dir}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        server = Orthanc(tmp / "orthanc")
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
            for rep in range(args.repeats):
                for workers in (1, 4):
                    store = tmp / f"store_{workers}_{rep}"
                    t0 = time.perf_counter()
                    result = pull(client, cases, store, workers=workers)
                    dt = time.perf_counter() - t0
                    mb = sum(p.stat().st_size for p in store.rglob("*.dcm")) / 1e6
                    print(f"workers={workers} run {rep + 1}: {result.instances} instances, {mb:.1f} MB in {dt:.2f} s "
                          f"({result.instances / dt:.1f} instances/s)")
            t0 = time.perf_counter()
            result = pull(client, cases, tmp / "store_4_0", workers=4)
            print(f"rerun over the complete store: {1e3 * (time.perf_counter() - t0):.1f} ms, {result.skipped} exams skipped")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
