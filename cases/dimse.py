"""The DIMSE transport of ``tsct cases pull``: C-FIND to search, C-MOVE (or C-GET) to retrieve.

:class:`DimseClient` answers the same questions as the DICOMweb :class:`cases.pacs.PacsClient`
(:class:`cases.pacs.PacsSource`): the studies of a patient, the series of a study, the per-instance
attributes the series rule needs, and the instances of the chosen series written into a folder.
Everything else - the series rule, the case store, resume, the case list and the pull log - is
:func:`cases.pacs.pull`, shared by both transports.

Retrieval:

* **C-MOVE** (``retrieve="move"``): tsct starts a storage SCP in-process (pynetdicom) on
  ``move_port`` with AE title ``move_aet`` and asks the PACS to send the series there. The PACS must
  know that AE title with this machine's host and port (its list of modalities / "DICOM nodes").
* **C-GET** (``retrieve="get"``): the instances come back on the query association itself; no port
  to open and nothing to configure on the PACS, but not every PACS offers C-GET.
* ``retrieve="auto"``: C-MOVE, and C-GET for the rest of the pull once the PACS refuses a move
  (destination unknown, C-MOVE not supported).

A resumed series asks only for its missing instances (an IMAGE-level retrieve with the list of their
SOP Instance UIDs); a fresh one is retrieved at SERIES level.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from .pacs import PacsError, PacsUnreachable, _write_atomic

__all__ = ["RETRIEVE_MODES", "DimseClient", "parse_address"]

RETRIEVE_MODES = ("move", "get", "auto")

# Attributes asked for in each C-FIND (empty return keys); the answers are turned into DICOM JSON
# (PS3.18 F.2) so that cases.pacs reads them exactly as it reads QIDO-RS/WADO-RS answers.
_STUDY_KEYS = ("StudyDate", "AccessionNumber", "ModalitiesInStudy", "StudyDescription", "PatientID", "StudyInstanceUID")
_SERIES_KEYS = ("Modality", "SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "BodyPartExamined")
_IMAGE_KEYS = (
    "SOPInstanceUID",
    "SOPClassUID",
    "ImageType",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "SliceThickness",
    "ConvolutionKernel",
    "InstanceNumber",
    "NumberOfFrames",
)

# C-MOVE / C-GET failure statuses worth a sentence of their own (PS3.4 C.4.2.1.5, C.4.3.1.4).
_RETRIEVE_FAILURES = {
    0xA701: "out of resources: the PACS could not work out the number of matches",
    0xA702: "out of resources: the PACS could not perform the sub-operations",
    0xA801: "the move destination is unknown to the PACS",
    0xA900: "the request does not match the SOP class",
    0x0122: "the PACS does not support this retrieve (SOP class not supported)",
    0xC000: "the PACS could not process the request",
}


# The transfer syntaxes a C-GET offers to receive in (one presentation context each, 128 at most in all).
_GET_TRANSFER_SYNTAXES = (
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.2",  # implicit/explicit LE, deflated, BE
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",  # JPEG
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",  # JPEG-LS, JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE
)


class _RetrieveRefused(PacsError):
    """A C-MOVE the PACS refused as a whole (the ``auto`` mode then tries C-GET)."""


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` of a DICOM node, checked; raises :class:`PacsError` naming the option."""
    match = re.fullmatch(r"\[?([^\[\]]+?)\]?:(\d{1,5})", address.strip())
    if not match or not 0 < int(match.group(2)) < 65536:
        raise PacsError(f"--dimse {address!r} must be HOST:PORT of the PACS's DICOM service, e.g. pacs.hospital.org:104")
    return match.group(1), int(match.group(2))


def _check_aet(title: str, option: str) -> str:
    if not 0 < len(title) <= 16 or not all(32 <= ord(ch) < 127 for ch in title) or "\\" in title or not title.strip():
        raise PacsError(f"{option} {title!r} must be an AE title of 1 to 16 printable ASCII characters (no backslash)")
    return title


def _storage_contexts() -> list[Any]:
    """Storage SOP classes a pull may receive: CT, enhanced CT and the secondary captures a PACS keeps beside them."""
    from pynetdicom import sop_class as sc

    return [sc.CTImageStorage, sc.EnhancedCTImageStorage, sc.LegacyConvertedEnhancedCTImageStorage, sc.SecondaryCaptureImageStorage]


class DimseClient:
    """A PACS reached over DIMSE (pynetdicom): Study Root C-FIND, and C-MOVE or C-GET to retrieve."""

    def __init__(
        self,
        address: str,
        *,
        called_aet: str,
        calling_aet: str = "TSCT",
        retrieve: str = "move",
        move_aet: str | None = None,
        move_port: int | None = None,
        move_bind: str = "0.0.0.0",
        timeout_s: float = 60.0,
    ) -> None:
        """``address``: ``HOST:PORT`` of the PACS; ``called_aet``: its AE title; ``calling_aet``: ours.
        ``move_aet``/``move_port``/``move_bind``: the storage SCP tsct runs for C-MOVE (AE title
        defaults to ``calling_aet``; the port is required for ``move`` and ``auto``)."""
        self.host, self.port = parse_address(address)
        self.called_aet = _check_aet(called_aet, "--called-aet")
        self.calling_aet = _check_aet(calling_aet, "--aet")
        self.move_aet = _check_aet(move_aet or calling_aet, "--move-aet")
        if retrieve not in RETRIEVE_MODES:
            raise PacsError(f"--retrieve {retrieve!r} must be one of {', '.join(RETRIEVE_MODES)}")
        if retrieve != "get" and move_port is None:
            raise PacsError(
                f"--retrieve {retrieve} needs --move-port: the port of the storage SCP tsct starts to receive the C-MOVE "
                "(the PACS must know it), or use --retrieve get"
            )
        if move_port is not None and not 0 < move_port < 65536:
            raise PacsError(f"--move-port {move_port} must lie between 1 and 65535")
        if timeout_s <= 0:
            raise PacsError(f"--timeout {timeout_s} must be more than 0 seconds")
        self.retrieve = retrieve
        self.move_port = move_port
        self.move_bind = move_bind
        self.timeout_s = timeout_s
        self.url = f"dicom://{self.called_aet}@{self.host}:{self.port}"
        self.notes: list[str] = []  # what the client decided on its own (the auto fallback), for the CLI to print
        self._series_records: dict[str, dict[str, Any]] = {}
        self._scp: Any = None
        self._sink: dict[str, Path] = {}  # SOP Instance UID -> file to write, of the retrieve in progress
        self._arrived: queue.Queue[str] = queue.Queue()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ associations
    def _ae(self) -> Any:
        from pynetdicom import AE

        ae = AE(ae_title=self.calling_aet)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout_s
        return ae

    @contextmanager
    def _associate(self, what: str, contexts: Sequence[Any], **kwargs: Any) -> Iterator[Any]:
        """An association for ``contexts`` or a :class:`PacsError` saying why there is none."""
        from pynetdicom import build_context
        from pynetdicom.presentation import PresentationContext

        ae = self._ae()
        ae.requested_contexts = [c if isinstance(c, PresentationContext) else build_context(c) for c in contexts]
        assoc = ae.associate(self.host, self.port, ae_title=self.called_aet, **kwargs)
        if not assoc.is_established:
            if assoc.is_rejected:
                reason = getattr(assoc.acceptor.primitive, "reason_str", "no reason given")
                raise PacsError(
                    f"the PACS at {self.host}:{self.port} refused the association for {what} ({reason}); check --called-aet "
                    f"{self.called_aet} (its AE title) and that it accepts the calling AE title {self.calling_aet} (--aet)"
                )
            raise PacsUnreachable(
                f"cannot open an association with the PACS at {self.host}:{self.port} for {what}: connection refused, no answer "
                f"within {self.timeout_s:g} s or aborted; check --dimse and that its DICOM service runs"
            )
        try:
            yield assoc
        except BaseException:  # an error or Ctrl-C mid-operation: abort, the PACS stops its sub-operations
            assoc.abort()
            raise
        if assoc.is_established:
            assoc.release()

    def _find(self, level: str, identifier: dict[str, Any]) -> list[dict[str, Any]]:
        """Study Root C-FIND at ``level``; returns the matches as DICOM JSON."""
        from pydicom import Dataset
        from pynetdicom.sop_class import (
            StudyRootQueryRetrieveInformationModelFind as FIND,
        )

        query = Dataset()
        query.QueryRetrieveLevel = level
        for key, value in identifier.items():
            setattr(query, key, value)
        what = f"the {level.lower()} search"
        out: list[dict[str, Any]] = []
        with self._associate(what, [FIND]) as assoc:
            for status, answer in assoc.send_c_find(query, FIND):
                code = int(getattr(status, "Status", -1)) if status else -1
                if code in (0xFF00, 0xFF01):
                    if answer is not None:
                        out.append(answer.to_json_dict())
                elif code == 0x0000:
                    break
                elif code == -1:
                    raise PacsError(
                        f"the PACS at {self.host}:{self.port} did not answer {what} within {self.timeout_s:g} s "
                        "(or aborted it); raise --timeout or see the PACS log"
                    )
                else:
                    comment = f": {status.ErrorComment}" if "ErrorComment" in status else ""
                    raise PacsError(
                        f"the PACS at {self.host}:{self.port} refused {what} with status 0x{code:04X}{comment}; "
                        f"check that it lets AE title {self.calling_aet} query (C-FIND)"
                    )
        return out

    # ------------------------------------------------------------------ the PacsSource interface
    def find_studies(self, patient_id: str, *, accession: str = "", study_uid: str = "", date_range: str = "") -> list[dict[str, Any]]:
        """Study-level C-FIND (same filters and fields as the QIDO-RS study search)."""
        identifier: dict[str, Any] = dict.fromkeys(_STUDY_KEYS, "")
        identifier.update(PatientID=patient_id, AccessionNumber=accession, StudyInstanceUID=study_uid, StudyDate=date_range)
        return self._find("STUDY", identifier)

    def find_series(self, study_uid: str) -> list[dict[str, Any]]:
        """Series-level C-FIND within a study; the records are kept for :meth:`series_metadata`."""
        identifier: dict[str, Any] = dict.fromkeys(_SERIES_KEYS, "")
        identifier["StudyInstanceUID"] = study_uid
        records = self._find("SERIES", identifier)
        for rec in records:
            uid = (rec.get("0020000E", {}).get("Value") or [""])[0]
            self._series_records[str(uid)] = rec
        return records

    def series_metadata(self, study_uid: str, series_uid: str) -> list[dict[str, Any]]:
        """Image-level C-FIND of a series, each record completed with its series' attributes
        (a hierarchical C-FIND answers only the keys of its own level)."""
        identifier: dict[str, Any] = dict.fromkeys(_IMAGE_KEYS, "")
        identifier.update(StudyInstanceUID=study_uid, SeriesInstanceUID=series_uid)
        records = self._find("IMAGE", identifier)
        series = self._series_records.get(series_uid, {})
        for rec in records:
            for tag, element in series.items():
                if element.get("Value") and not rec.get(tag, {}).get("Value"):
                    rec[tag] = element
        return records

    def fetch_instances(
        self,
        study_uid: str,
        series_uid: str,
        sop_uids: Sequence[str],
        folder: Path,
        *,
        whole_series: bool = False,
        on_instance: Callable[[int], None] | None = None,
        workers: int = 1,
    ) -> None:
        """Retrieve ``sop_uids`` of a series into ``folder`` as ``<SOPInstanceUID>.dcm`` (each written
        to ``*.tmp`` and renamed). ``whole_series``: they are every instance of the series (one
        SERIES-level retrieve; otherwise IMAGE level with the list). ``workers`` is unused: one
        retrieve moves the whole list."""
        del workers
        if not sop_uids:
            return
        identifier = self._identifier(study_uid, series_uid, sop_uids, whole_series)
        with self._lock:
            self._sink = {sop: folder / f"{sop}.dcm" for sop in sop_uids}
        self._drain(None)  # arrivals left over from an interrupted retrieve are not this one's
        try:
            moved = False
            if self.retrieve in ("move", "auto"):
                try:
                    self._move(identifier, series_uid, on_instance)
                    moved = True
                except _RetrieveRefused as exc:
                    if self.retrieve == "move":
                        raise
                    self.retrieve = "get"
                    self.notes.append(f"C-MOVE refused ({exc}); retrieving with C-GET instead")
            if not moved:
                self._get(identifier, series_uid, on_instance)
        finally:
            with self._lock:
                self._sink = {}
        missing = [s for s in sop_uids if not (folder / f"{s}.dcm").is_file()]
        if missing:
            raise PacsError(
                f"the PACS at {self.host}:{self.port} finished the retrieve of series {series_uid} without sending "
                f"{len(missing)} of its {len(sop_uids)} instance(s) (first {missing[0]}); see the PACS log, then rerun"
            )

    def close(self) -> None:
        """Stop the storage SCP (if one was started)."""
        if self._scp is not None:
            self._scp.shutdown()
            self._scp = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ retrieval
    def _on_store(self, event: Any) -> int:
        """C-STORE handler of both the SCP (C-MOVE) and the C-GET association: write what was asked for."""
        sop = str(event.request.AffectedSOPInstanceUID)
        with self._lock:
            target = self._sink.get(sop)
        if target is None:
            return 0xC211  # an instance this pull did not ask for: refused, not stored
        try:
            _write_atomic(target, event.encoded_dataset())
        except OSError:
            return 0xA700  # out of resources: the case store could not be written
        self._arrived.put(sop)
        return 0x0000

    def _drain(self, on_instance: Callable[[int], None] | None) -> None:
        while True:
            try:
                self._arrived.get_nowait()
            except queue.Empty:
                return
            if on_instance:
                on_instance(1)

    @staticmethod
    def _identifier(study_uid: str, series_uid: str, sop_uids: Sequence[str], whole_series: bool) -> Any:
        from pydicom import Dataset

        ds = Dataset()
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.QueryRetrieveLevel = "SERIES"
        if not whole_series:  # resuming: only the missing instances (a list of UIDs, PS3.4 C.4.2.2.1)
            ds.QueryRetrieveLevel = "IMAGE"
            ds.SOPInstanceUID = list(sop_uids)
        return ds

    def _start_scp(self) -> None:
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
        from pynetdicom.presentation import AllStoragePresentationContexts

        if self._scp is not None:
            return
        ae = AE(ae_title=self.move_aet)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout_s
        for ctx in AllStoragePresentationContexts:  # any transfer syntax: keep what the PACS stores (JPEG 2000 …) bit for bit
            ae.add_supported_context(ctx.abstract_syntax, list(ALL_TRANSFER_SYNTAXES))
        try:
            self._scp = ae.start_server((self.move_bind, int(self.move_port or 0)), block=False, evt_handlers=[(evt.EVT_C_STORE, self._on_store)])
        except OSError as exc:
            raise PacsError(
                f"cannot listen on {self.move_bind}:{self.move_port} for the C-MOVE ({exc.strerror or exc}); "
                "choose a free --move-port (the one the PACS knows for this AE title)"
            ) from None

    def _move(self, identifier: Any, series_uid: str, on_instance: Callable[[int], None] | None) -> None:
        from pynetdicom.sop_class import (
            StudyRootQueryRetrieveInformationModelMove as MOVE,
        )

        self._start_scp()
        with self._associate("the C-MOVE", [MOVE]) as assoc:
            for status, _ in assoc.send_c_move(identifier, self.move_aet, MOVE):
                self._drain(on_instance)
                self._check_retrieve_status(status, "C-MOVE", series_uid)
        self._drain(on_instance)

    def _get(self, identifier: Any, series_uid: str, on_instance: Callable[[int], None] | None) -> None:
        from pynetdicom import build_context, build_role, evt
        from pynetdicom.sop_class import (
            StudyRootQueryRetrieveInformationModelGet as GET,
        )

        storage = _storage_contexts()
        roles = [build_role(cls, scp_role=True) for cls in storage]
        # one context per (class, transfer syntax): the PACS accepts one syntax per context and must find the one it
        # stores an instance in, or it would have to transcode (which Orthanc, for one, refuses for JPEG 2000)
        contexts = [build_context(GET)] + [build_context(cls, ts) for cls in storage for ts in _GET_TRANSFER_SYNTAXES]
        with self._associate("the C-GET", contexts, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, self._on_store)]) as assoc:
            for status, _ in assoc.send_c_get(identifier, GET):
                self._drain(on_instance)
                self._check_retrieve_status(status, "C-GET", series_uid, get=True)
        self._drain(on_instance)

    def _check_retrieve_status(self, status: Any, op: str, series_uid: str, *, get: bool = False) -> None:
        """Raise on a failed C-MOVE/C-GET: :class:`_RetrieveRefused` when the PACS refused the move as a whole
        (``auto`` then tries C-GET), :class:`PacsError` otherwise. Pending, success and warning pass (a warning's
        missing instances are named by the check after the retrieve)."""
        if not status or "Status" not in status:
            raise PacsError(
                f"the PACS at {self.host}:{self.port} did not answer the {op} of series {series_uid} within "
                f"{self.timeout_s:g} s (or aborted it); raise --timeout or see the PACS log"
            )
        code = int(status.Status)
        if code in (0x0000, 0xFF00, 0xFF01, 0xB000):
            return
        reason = _RETRIEVE_FAILURES.get(code, "refused")
        comment = f" ({status.ErrorComment})" if "ErrorComment" in status else ""
        where = f"the PACS at {self.host}:{self.port}"
        add_us = f"add it to the PACS's modalities (AE title {self.move_aet}, this machine's address, port {self.move_port}), or use --retrieve get"
        if not get and code == 0xA801:
            raise _RetrieveRefused(f"{where} does not know the move destination AE title {self.move_aet!r}{comment}: {add_us}")
        completed = int(status.get("NumberOfCompletedSuboperations", 0) or 0)
        if not get and completed == 0:
            # Refused before sending anything. Orthanc, for one, answers 0xC000 for an unknown destination.
            raise _RetrieveRefused(
                f"{where} refused the C-MOVE of series {series_uid} and sent nothing: {reason} (status 0x{code:04X}){comment}. "
                f"Most often the move destination AE title {self.move_aet!r} is unknown to the PACS ({add_us}) or the PACS does "
                f"not let {self.calling_aet} retrieve; see the PACS log"
            )
        raise PacsError(f"{where} failed the {op} of series {series_uid}: {reason} (status 0x{code:04X}){comment}; see the PACS log")
