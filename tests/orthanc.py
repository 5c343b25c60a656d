"""A throw-away Orthanc PACS for tests and benchmarks: Debian's ``orthanc`` + ``orthanc-dicomweb``.

:class:`Orthanc` starts its own process (never the system service) on a free loopback port with a
temporary storage folder and no authentication, with the DICOMweb plug-in at ``/dicom-web``.
With ``dicom_port`` it also speaks DIMSE (AE title ``aet``) and knows ``modalities`` (AE title →
host, port) as C-MOVE destinations; the tests connect to it on 127.0.0.1 only (Orthanc 1.10 has no
option to bind its DICOM port to loopback, so the port is a free one nothing else knows).
``ORTHANC`` / ``DICOMWEB_PLUGIN`` are None when the packages are not installed (tests skip then).
"""

from __future__ import annotations

import io
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pydicom

ORTHANC = shutil.which("Orthanc")
PLUGIN_DIRS = (Path("/usr/share/orthanc/plugins"), Path("/usr/lib/orthanc"))
DICOMWEB_PLUGIN = next((p for d in PLUGIN_DIRS if d.is_dir() for p in sorted(d.glob("libOrthancDicomWeb.so*"))), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Orthanc:
    """An Orthanc process on loopback with a throw-away storage folder."""

    def __init__(
        self, folder: Path, *, dicom_port: int | None = None, aet: str = "ORTHANC", modalities: dict[str, tuple[str, int]] | None = None
    ) -> None:
        import requests

        self.port = free_port()
        self.dicom_port, self.aet = dicom_port, aet
        storage = folder / "storage"
        storage.mkdir(parents=True)
        config = {
            "Name": "tsct-test",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "HttpPort": self.port,
            "DicomServerEnabled": dicom_port is not None,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        if dicom_port is not None:  # DIMSE: C-FIND/C-MOVE/C-GET only for the known modalities, called AE title checked
            config.update(
                {
                    "DicomAet": aet,
                    "DicomPort": dicom_port,
                    "DicomCheckCalledAet": True,
                    "DicomModalities": {title.lower(): [title, host, port] for title, (host, port) in (modalities or {}).items()},
                    "DicomAlwaysAllowFind": False,
                    "DicomAlwaysAllowMove": False,
                    "DicomAlwaysAllowGet": False,
                }
            )
        cfg = folder / "orthanc.json"
        cfg.write_text(json.dumps(config))
        self.log = (folder / "orthanc.log").open("wb")
        self.proc = subprocess.Popen([ORTHANC, str(cfg)], stdout=self.log, stderr=subprocess.STDOUT, cwd=folder)
        self.rest = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.rest}/dicom-web"
        self.session = requests.Session()
        deadline = time.monotonic() + 120  # a safety net against a hung start, not a timing assumption
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited with code {self.proc.returncode}; see {folder / 'orthanc.log'}")
            try:
                if self.session.get(f"{self.rest}/plugins/dicom-web", timeout=5).ok and self._dicom_listening():
                    break
            except requests.exceptions.ConnectionError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("Orthanc did not start listening")
            time.sleep(0.1)

    def _dicom_listening(self) -> bool:
        if self.dicom_port is None:
            return True
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.dicom_port)) == 0

    def store(self, ds: pydicom.Dataset) -> None:
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        answer = self.session.post(f"{self.rest}/instances", data=buffer.getvalue(), timeout=60)
        assert answer.ok, f"Orthanc refused {ds.SOPInstanceUID} ({ds.get('SeriesDescription', '')}): {answer.text}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
