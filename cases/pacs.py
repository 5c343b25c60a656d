"""Pull prior/current CT series from a PACS over DICOMweb (QIDO-RS search, WADO-RS retrieve) or DIMSE.

The transport is a :class:`PacsSource`: :class:`PacsClient` (DICOMweb) here, or
:class:`cases.dimse.DimseClient` (C-FIND, then C-MOVE to a storage SCP tsct runs, or C-GET). The
rest - series rule, case store, resume, case list, pull log - is the same code for both.

The coordinator states *which exams* (a request CSV, or a query by patient and date range) and
*which series* of each exam (:class:`SeriesRule`); :func:`pull` finds the studies, picks one series
per study, downloads it into a case store and writes a case list::

    STORE/
      cases.csv                    case list (schema docs/case-list.md), prior/current paths filled
      pull_log.csv                 one row per exam: study, chosen series, why, instance count
      <case_id>/prior/             one DICOM file per instance, named <SOPInstanceUID>.dcm
      <case_id>/prior/.tsct-pull.json   manifest: series UID + every SOP UID (written last)
      <case_id>/current/ …

Downloads are resumable: every instance is written to ``*.tmp`` and renamed, an exam folder is
built under ``<exam>.partial/`` and renamed once every instance named by the manifest is on disk,
and a rerun skips complete exams and fetches only the missing instances of a partial one.

Series selection (defaults in :class:`SeriesRule`; documented in ``docs/pacs.md``):

1. **eligible**: modality CT, not a localizer, axial (slice normal within ``max_tilt_deg`` of the
   patient z axis), at least ``min_slices`` instances, slice thickness ≤ ``max_thickness_mm`` (a
   series mixing thicknesses counts by its thickest slice),
   reconstruction kernel in one of the accepted ``kernels`` classes, body part matching
   ``body_part`` when given;
2. **coverage**: of the eligible series, keep those covering ≥ ``min_coverage_fraction`` of the
   largest z-extent any eligible series of the study covers;
3. **thinnest** of those (ties: larger z-extent, then the kernel class listed first, then more
   instances, then lower series number).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "KERNEL_CLASSES",
    "MANIFEST_NAME",
    "CaseRequest",
    "ExamRequest",
    "PacsClient",
    "PacsError",
    "PacsSource",
    "PacsUnreachable",
    "PullResult",
    "PushItem",
    "PushResult",
    "SeriesCandidate",
    "SeriesRule",
    "classify_kernel",
    "pull",
    "push",
    "query_case_requests",
    "read_pull_requests",
    "scan_dicom_folder",
    "select_series",
    "store_datasets",
]

MANIFEST_NAME = ".tsct-pull.json"

# Heuristic vendor kernel names per class (case-insensitive regular expressions on the first value
# of ConvolutionKernel). Sites with other names pass --kernel-pattern.
KERNEL_CLASSES: dict[str, str] = {
    # GE BONE/BONE+/BONEPLUS/EDGE, Siemens B/Br/I/Q 50-69 (e.g. B60f, Br59, Br64), Philips D/E/YD, Canon FC3x/FC8x
    "bone": r"^(bone\+?|boneplus|edge|detail)$|^(b|br|i|ir|q|qr|h|hr)[56]\d|^(d|e|yd|ye)$|^fc[38]\d",
    # GE STANDARD/STD+/SOFT, Siemens B/Br/I/Q 20-49 (e.g. B30f, Br38f, I40f), Philips A/B/C/YA/YB/YC, Canon FC0x-FC1x
    "standard": r"^(standard|std\+?|soft|body)$|^(b|br|i|ir|q|qr|h|hr)[234]\d|^(a|b|c|ya|yb|yc)$|^fc[01]\d",
    # GE LUNG, Siemens B/Bl/Br 70-89 and Bl5x, Philips L/YL, Canon FC5x
    "lung": r"^lung$|^(b|bl|br|i|ir|q|qr|h|hr)[78]\d|^bl\d\d|^(l|yl)$|^fc5\d",
}


class PacsError(RuntimeError):
    """A pull failed in a way the coordinator can fix (server, request file, no matching data)."""


@dataclass(frozen=True)
class ExamRequest:
    """One exam of a case, identified by study UID or by accession number (within the patient)."""

    study_uid: str = ""
    accession: str = ""

    def describe(self) -> str:
        return f"study {self.study_uid}" if self.study_uid else f"accession {self.accession}"


@dataclass(frozen=True)
class CaseRequest:
    """A case to pull: a patient's prior and current exams."""

    case_id: str
    patient_id: str
    prior: ExamRequest
    current: ExamRequest
    status: str = ""
    source: str = ""  # where the request came from (file:row or query), for error messages


@dataclass(frozen=True)
class SeriesCandidate:
    """What :func:`select_series` needs to know about one series (from its WADO-RS metadata)."""

    series_uid: str
    series_number: int | None
    description: str
    modality: str
    n_instances: int
    thickness_mm: float | None
    z_extent_mm: float
    kernel: str
    axial: bool
    localizer: bool
    body_part: str
    sop_uids: tuple[str, ...] = ()
    thinnest_mm: float | None = None  # thinnest slice when the series mixes thicknesses (thickness_mm is the thickest)

    def label(self) -> str:
        number = "" if self.series_number is None else f"#{self.series_number} "
        return f"{number}'{self.description}'"


@dataclass(frozen=True)
class SeriesRule:
    """How to pick one series of a study (see the module docstring for the order of the rules)."""

    kernels: tuple[str, ...] = ("bone", "standard")
    kernel_pattern: str | None = None
    max_thickness_mm: float = 5.0
    min_slices: int = 2
    min_coverage_fraction: float = 0.9
    max_tilt_deg: float = 10.0
    body_part: str | None = None

    def __post_init__(self) -> None:
        unknown = [k for k in self.kernels if k not in KERNEL_CLASSES and k != "any"]
        if unknown:
            raise ValueError(
                f"unknown kernel class(es) {', '.join(unknown)}: use {', '.join(KERNEL_CLASSES)} or 'any', "
                "or give --kernel-pattern REGEX for the site's own kernel names"
            )
        if self.kernel_pattern:
            try:
                re.compile(self.kernel_pattern)
            except re.error as exc:
                raise ValueError(f"--kernel-pattern {self.kernel_pattern!r} is not a valid regular expression: {exc}") from None
        if not 0.0 <= self.min_coverage_fraction <= 1.0:
            raise ValueError(f"min coverage fraction {self.min_coverage_fraction} must lie between 0 and 1")
        if self.max_thickness_mm <= 0:
            raise ValueError(f"max slice thickness {self.max_thickness_mm} mm must be positive")

    def kernel_rank(self, kernel: str) -> int | None:
        """Preference rank of a kernel (0 = best), or None when the rule does not accept it."""
        if self.kernel_pattern:
            return 0 if re.search(self.kernel_pattern, kernel, flags=re.IGNORECASE) else None
        cls = classify_kernel(kernel)
        if cls in self.kernels:
            return self.kernels.index(cls)
        if "any" in self.kernels:
            return len(self.kernels)
        return None

    def describe(self) -> str:
        kernels = f"kernel matching /{self.kernel_pattern}/" if self.kernel_pattern else f"kernel class {'/'.join(self.kernels)}"
        body = f", body part {self.body_part}" if self.body_part else ""
        return (
            f"axial CT (tilt ≤ {self.max_tilt_deg:g}°), {kernels}, thickness ≤ {self.max_thickness_mm:g} mm, "
            f"≥ {self.min_slices} slices{body}; thinnest of those covering ≥ {self.min_coverage_fraction:.0%} of the widest z-extent"
        )


def classify_kernel(kernel: str) -> str:
    """Class of a reconstruction kernel name: 'bone', 'standard', 'lung' or 'unknown'."""
    name = kernel.strip()
    if not name:
        return "unknown"
    for cls, pattern in KERNEL_CLASSES.items():
        if re.search(pattern, name, flags=re.IGNORECASE):
            return cls
    return "unknown"


def select_series(candidates: Sequence[SeriesCandidate], rule: SeriesRule) -> tuple[SeriesCandidate | None, dict[str, str]]:
    """Pick the series of one study by ``rule``.

    Returns the chosen series (None when none qualifies) and, for every series, why it was chosen
    or rejected (keyed by SeriesInstanceUID) — the text of the pull log and of the error message.
    """
    reasons: dict[str, str] = {}
    eligible: list[tuple[SeriesCandidate, int]] = []
    for c in candidates:
        why = _ineligible(c, rule)
        if why:
            reasons[c.series_uid] = why
            continue
        eligible.append((c, rule.kernel_rank(c.kernel) or 0))
    if not eligible:
        return None, reasons
    widest = max(c.z_extent_mm for c, _ in eligible)
    covering = []
    for c, rank in eligible:
        if widest > 0 and c.z_extent_mm < rule.min_coverage_fraction * widest - 1e-6:
            reasons[c.series_uid] = f"covers {c.z_extent_mm:.0f} mm of z, < {rule.min_coverage_fraction:.0%} of the widest series ({widest:.0f} mm)"
        else:
            covering.append((c, rank))
    covering.sort(
        key=lambda cr: (
            round(cr[0].thickness_mm if cr[0].thickness_mm is not None else math.inf, 2),
            -cr[0].z_extent_mm,
            cr[1],
            -cr[0].n_instances,
            cr[0].series_number if cr[0].series_number is not None else 1 << 30,
        )
    )
    chosen = covering[0][0]
    for c, _ in covering[1:]:
        reasons[c.series_uid] = f"eligible, but {chosen.label()} ranks first (thinner or covers more)"
    reasons[chosen.series_uid] = (
        f"chosen: {_fmt_mm(chosen.thickness_mm)} slices, kernel {chosen.kernel or '(none)'}, "
        f"{chosen.n_instances} instances over {chosen.z_extent_mm:.0f} mm of z"
    )
    return chosen, reasons


def _fmt_mm(value: float | None) -> str:
    return "unknown-thickness" if value is None else f"{value:g} mm"


def _ineligible(c: SeriesCandidate, rule: SeriesRule) -> str:
    if c.modality.upper() != "CT":
        return f"modality {c.modality or '(none)'}, not CT"
    if c.localizer:
        return "localizer (scout) image"
    if not c.axial:
        return f"not axial (slice normal tilted > {rule.max_tilt_deg:g}° from z, or no orientation)"
    if c.n_instances < rule.min_slices:
        return f"{c.n_instances} instance(s), fewer than {rule.min_slices}"
    if c.thickness_mm is None:
        return "no slice thickness or slice positions"
    if c.thickness_mm > rule.max_thickness_mm + 1e-6:
        mixed = (
            f" (its slices are {c.thinnest_mm:g} to {c.thickness_mm:g} mm)"
            if c.thinnest_mm is not None and c.thinnest_mm < c.thickness_mm - 1e-6
            else ""
        )
        return f"slice thickness {c.thickness_mm:g} mm > {rule.max_thickness_mm:g} mm{mixed}"
    if rule.kernel_rank(c.kernel) is None:
        accepted = f"/{rule.kernel_pattern}/" if rule.kernel_pattern else "/".join(rule.kernels)
        return f"kernel {c.kernel or '(none)'} (class {classify_kernel(c.kernel)}) not accepted ({accepted})"
    if rule.body_part and rule.body_part.lower() not in c.body_part.lower():
        return f"body part {c.body_part or '(none)'}, not {rule.body_part}"
    return ""


# --------------------------------------------------------------------------------------------
# DICOM JSON helpers (PS3.18 F.2)
def _value(item: dict[str, Any], tag: str, default: Any = None) -> Any:
    values = item.get(tag, {}).get("Value")
    if not values:
        return default
    return values[0]


def _values(item: dict[str, Any], tag: str) -> list[Any]:
    return list(item.get(tag, {}).get("Value") or [])


def _text(item: dict[str, Any], tag: str) -> str:
    v = _value(item, tag, "")
    if isinstance(v, dict):  # PersonName
        return str(v.get("Alphabetic", ""))
    return str(v)


TAG = {
    "StudyDate": "00080020",
    "Modality": "00080060",
    "ModalitiesInStudy": "00080061",
    "AccessionNumber": "00080050",
    "ImageType": "00080008",
    "SeriesDescription": "0008103E",
    "StudyDescription": "00081030",
    "PatientID": "00100020",
    "BodyPartExamined": "00180015",
    "SliceThickness": "00180050",
    "ConvolutionKernel": "00181210",
    "StudyInstanceUID": "0020000D",
    "SeriesInstanceUID": "0020000E",
    "SeriesNumber": "00200011",
    "ImagePositionPatient": "00200032",
    "ImageOrientationPatient": "00200037",
    "SOPInstanceUID": "00080018",
    "SOPClassUID": "00080016",
    "NumberOfFrames": "00280008",
}


def candidate_from_metadata(instances: Sequence[dict[str, Any]], max_tilt_deg: float = 10.0) -> SeriesCandidate:
    """Summarise a series from its WADO-RS metadata (one DICOM JSON object per instance)."""
    first = instances[0]
    image_type = [str(v).upper() for v in _values(first, TAG["ImageType"])]
    kernel_values = _values(first, TAG["ConvolutionKernel"])
    orient = [float(v) for v in _values(first, TAG["ImageOrientationPatient"])]
    axial = False
    normal = None
    if len(orient) == 6:
        r, c = orient[:3], orient[3:]
        n = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
        norm = math.sqrt(sum(x * x for x in n)) or 1.0
        normal = tuple(x / norm for x in n)
        axial = abs(normal[2]) >= math.cos(math.radians(max_tilt_deg))
    positions = []
    for inst in instances:
        p = _values(inst, TAG["ImagePositionPatient"])
        if len(p) == 3 and normal is not None:
            positions.append(sum(float(a) * b for a, b in zip(p, normal)))
    positions.sort()
    thicknesses = sorted(float(t) for t in (_value(i, TAG["SliceThickness"]) for i in instances) if t not in (None, ""))
    # a series whose slices differ in thickness (e.g. GE head CTs: 4 mm at the skull base, 7 mm above) counts by its thickest
    thickness = thicknesses[-1] if thicknesses else None
    thinnest = thicknesses[0] if thicknesses else None
    if thickness is None and len(positions) > 1:
        gaps = sorted(b - a for a, b in pairwise(positions) if b - a > 1e-3)
        thickness = gaps[len(gaps) // 2] if gaps else None
    z_extent = (positions[-1] - positions[0]) if len(positions) > 1 else 0.0
    number = _value(first, TAG["SeriesNumber"])
    return SeriesCandidate(
        series_uid=_text(first, TAG["SeriesInstanceUID"]),
        series_number=int(number) if number not in (None, "") else None,
        description=_text(first, TAG["SeriesDescription"]),
        modality=_text(first, TAG["Modality"]),
        n_instances=len(instances),
        thickness_mm=thickness,
        z_extent_mm=float(z_extent),
        kernel="\\".join(str(k) for k in kernel_values[:1]),
        axial=axial,
        localizer="LOCALIZER" in image_type,
        body_part=_text(first, TAG["BodyPartExamined"]),
        sop_uids=tuple(_text(i, TAG["SOPInstanceUID"]) for i in instances),
        thinnest_mm=thinnest if thinnest is not None else thickness,
    )


# --------------------------------------------------------------------------------------------
class PacsSource(Protocol):
    """What :func:`pull` asks of a PACS, whatever the transport: :class:`PacsClient` (DICOMweb) or
    :class:`cases.dimse.DimseClient` (DIMSE C-FIND and C-MOVE/C-GET). Records are DICOM JSON
    (PS3.18 F.2) in both; failures raise :class:`PacsError` with a sentence the coordinator can act on."""

    url: str  # where the PACS is, for messages and the exam manifests

    def find_studies(self, patient_id: str, *, accession: str = "", study_uid: str = "", date_range: str = "") -> list[dict[str, Any]]:
        """Studies of a patient, by accession number, study UID and/or date range (YYYYMMDD-YYYYMMDD)."""
        ...

    def find_series(self, study_uid: str) -> list[dict[str, Any]]:
        """Series of a study (Modality, SeriesInstanceUID at least)."""
        ...

    def series_metadata(self, study_uid: str, series_uid: str) -> list[dict[str, Any]]:
        """One record per instance with what :func:`candidate_from_metadata` reads."""
        ...

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
        """Write each of ``sop_uids`` into ``folder`` as ``<SOPInstanceUID>.dcm`` atomically, calling ``on_instance(1)`` per file."""
        ...


class PacsClient:
    """A thin wrapper over :class:`dicomweb_client.DICOMwebClient` that turns failures into :class:`PacsError`."""

    def __init__(self, url: str, *, timeout_s: float = 60.0, retries: int = 2, headers: dict[str, str] | None = None) -> None:
        """``retries``: extra attempts of a request that failed to connect or got 408/429/503/504,
        with exponential back-off (1 s, 2 s, 4 s …)."""
        from dicomweb_client import DICOMwebClient

        if not re.match(r"^https?://", url):
            raise PacsError(f"PACS URL {url!r} must start with http:// or https:// (the DICOMweb root, e.g. http://pacs:8042/dicom-web)")
        self.url = url.rstrip("/")
        if retries < 0:
            raise PacsError(f"--retries {retries} must be 0 or more")
        self._client = DICOMwebClient(self.url, headers=headers, timeout=timeout_s)
        self._client.set_http_retry_params(retry=retries > 0, max_attempts=retries + 1, wait_exponential_multiplier=500)

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        import requests

        try:
            return fn(*args, **kwargs)
        except requests.exceptions.ConnectionError:
            raise PacsError(
                f"cannot reach the PACS at {self.url} ({what}): connection refused or host unknown; check --url and that the server runs"
            ) from None
        except requests.exceptions.Timeout:
            raise PacsError(f"the PACS at {self.url} did not answer in time ({what}); raise --timeout or try later") from None
        except requests.exceptions.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else "?"
            hint = {
                401: "it needs credentials",
                403: "access is denied",
                404: "no DICOMweb service at this URL (check the path, e.g. /dicom-web)",
            }.get(code, "see the server log")
            raise PacsError(f"the PACS at {self.url} answered HTTP {code} to {what}: {hint}") from None

    def find_studies(self, patient_id: str, *, accession: str = "", study_uid: str = "", date_range: str = "") -> list[dict[str, Any]]:
        """QIDO-RS study search; returns DICOM JSON study records."""
        filters: dict[str, Any] = {"PatientID": patient_id} if patient_id else {}
        if accession:
            filters["AccessionNumber"] = accession
        if study_uid:
            filters["StudyInstanceUID"] = study_uid
        if date_range:
            filters["StudyDate"] = date_range
        fields = ["StudyDate", "AccessionNumber", "ModalitiesInStudy", "StudyDescription", "PatientID"]
        return self._call("the study search", self._client.search_for_studies, search_filters=filters, fields=fields, get_remaining=True) or []

    def find_series(self, study_uid: str) -> list[dict[str, Any]]:
        """QIDO-RS series search within a study."""
        return self._call(f"the series search of study {study_uid}", self._client.search_for_series, study_uid, get_remaining=True) or []

    def series_metadata(self, study_uid: str, series_uid: str) -> list[dict[str, Any]]:
        """WADO-RS metadata of every instance of a series."""
        return self._call(f"the metadata of series {series_uid}", self._client.retrieve_series_metadata, study_uid, series_uid) or []

    def instance_bytes(self, study_uid: str, series_uid: str, sop_uid: str) -> bytes:
        """WADO-RS retrieve of one instance, in the transfer syntax it is stored in, as Part 10 bytes."""
        ds = self._call(
            f"the retrieval of instance {sop_uid}",
            self._client.retrieve_instance,
            study_uid,
            series_uid,
            sop_uid,
            media_types=(("application/dicom", "*"),),
        )
        if str(ds.get("SOPInstanceUID", "")) != sop_uid:
            raise PacsError(f"the PACS at {self.url} returned instance {ds.get('SOPInstanceUID', '(none)')} when asked for {sop_uid}")
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=False)
        return buffer.getvalue()

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
        """WADO-RS retrieve of ``sop_uids`` into ``folder`` as ``<SOPInstanceUID>.dcm`` (each written to
        ``*.tmp`` and renamed), ``workers`` requests at a time; ``on_instance(1)`` after each file.
        ``whole_series`` changes nothing here: DICOMweb asks for each instance by its UID."""
        del whole_series

        def fetch(sop: str) -> None:
            _write_atomic(folder / f"{sop}.dcm", self.instance_bytes(study_uid, series_uid, sop))

        pool = ThreadPoolExecutor(max_workers=max(1, workers))
        try:
            for future in as_completed([pool.submit(fetch, sop) for sop in sop_uids]):
                future.result()
                if on_instance:
                    on_instance(1)
        finally:  # on an error or Ctrl-C: drop queued downloads, let running ones finish their rename
            pool.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------------------------------
REQUEST_COLUMNS = ("case_id", "patient_id", "prior_accession", "prior_study_uid", "current_accession", "current_study_uid", "status")


def read_pull_requests(path: str | Path) -> list[CaseRequest]:
    """Read a pull request CSV: ``case_id, patient_id`` and per exam an accession number or a study UID.

    Columns: ``case_id``, ``patient_id``, ``prior_accession`` or ``prior_study_uid``,
    ``current_accession`` or ``current_study_uid``, optional ``status`` (normal/abnormal, copied to
    the case list). Every bad row is reported at once.
    """
    path = Path(path)
    if not path.is_file():
        raise PacsError(f"request file {path} does not exist")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in ("case_id", "patient_id") if c not in header]
        if missing:
            raise PacsError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(REQUEST_COLUMNS)}")
        rows = [{(k or "").strip(): (v or "").strip() for k, v in rec.items()} for rec in reader]
    problems: list[str] = []
    out: list[CaseRequest] = []
    seen: set[str] = set()
    for i, rec in enumerate(rows, start=2):
        where = f"{path.name} row {i}"
        case_id = rec.get("case_id", "")
        if not case_id:
            problems.append(f"{where}: case_id is empty")
            continue
        if not re.fullmatch(r"[A-Za-z0-9._-]+", case_id):
            problems.append(f"{where}: case_id {case_id!r} may hold only letters, digits, '.', '_' and '-' (it names a folder)")
        if case_id in seen:
            problems.append(f"{where}: case_id {case_id} appears twice")
        seen.add(case_id)
        if not rec.get("patient_id"):
            problems.append(f"{where}: patient_id is empty")
        exams = {}
        for exam in ("prior", "current"):
            acc, uid = rec.get(f"{exam}_accession", ""), rec.get(f"{exam}_study_uid", "")
            if not acc and not uid:
                problems.append(f"{where}: give {exam}_accession or {exam}_study_uid")
            exams[exam] = ExamRequest(study_uid=uid, accession=acc)
        if exams["prior"] == exams["current"]:
            problems.append(f"{where}: prior and current name the same exam ({exams['prior'].describe()})")
        status = rec.get("status", "").lower()
        if status not in ("", "normal", "abnormal"):
            problems.append(f"{where}: status {status!r} must be normal, abnormal or empty")
        out.append(CaseRequest(case_id, rec.get("patient_id", ""), exams["prior"], exams["current"], status, where))
    if problems:
        raise PacsError(f"{len(problems)} problem(s) in {path}: " + "; ".join(problems))
    if not out:
        raise PacsError(f"{path} lists no cases")
    return out


def _date_range(date_from: str | None, date_to: str | None) -> str:
    def norm(d: str | None, name: str) -> str:
        if not d:
            return ""
        digits = d.replace("-", "")
        if not re.fullmatch(r"\d{8}", digits):
            raise PacsError(f"{name} {d!r} must be a date YYYY-MM-DD")
        return digits

    a, b = norm(date_from, "--from"), norm(date_to, "--to")
    return f"{a}-{b}" if (a or b) else ""


def query_case_requests(
    client: PacsSource, patient_ids: Sequence[str], *, date_from: str | None = None, date_to: str | None = None, pairing: str = "last-two"
) -> list[CaseRequest]:
    """Turn a query (patients, date range, modality CT) into case requests.

    Each patient's CT studies in the range are sorted by date. ``pairing="last-two"`` makes one case
    (the latest study is the current exam, the one before it the prior); ``"consecutive"`` makes a
    case of every consecutive pair. Case ids are ``<patient>_<current date>``.
    """
    if pairing not in ("last-two", "consecutive"):
        raise PacsError(f"--pairing {pairing!r} must be last-two or consecutive")
    date_range = _date_range(date_from, date_to)
    out: list[CaseRequest] = []
    for pid in patient_ids:
        studies = client.find_studies(pid, date_range=date_range)
        ct = [s for s in studies if not _values(s, TAG["ModalitiesInStudy"]) or "CT" in _values(s, TAG["ModalitiesInStudy"])]
        ct.sort(key=lambda s: (_text(s, TAG["StudyDate"]), _text(s, TAG["StudyInstanceUID"])))
        if len(ct) < 2:
            span = f" between {date_range.replace('-', ' and ')}" if date_range else ""
            raise PacsError(f"patient {pid}: {len(ct)} CT stud{'y' if len(ct) == 1 else 'ies'} found{span}; a case needs a prior and a current")
        pairs = [(ct[-2], ct[-1])] if pairing == "last-two" else list(pairwise(ct))
        for prior, current in pairs:
            case_id = re.sub(r"[^A-Za-z0-9._-]", "_", f"{pid}_{_text(current, TAG['StudyDate']) or 'nodate'}")
            if any(c.case_id == case_id for c in out):
                case_id = f"{case_id}_{len(out)}"
            out.append(
                CaseRequest(
                    case_id,
                    pid,
                    ExamRequest(_text(prior, TAG["StudyInstanceUID"])),
                    ExamRequest(_text(current, TAG["StudyInstanceUID"])),
                    "",
                    f"query patient {pid}",
                )
            )
    return out


# --------------------------------------------------------------------------------------------
@dataclass
class PullResult:
    """What a pull did: the case list written, exams fetched/skipped, and the log rows."""

    case_list: Path
    log: Path
    fetched: int = 0  # exams downloaded (wholly or the missing part of an interrupted one)
    skipped: int = 0  # exams already complete
    instances: int = 0  # instances downloaded in this run
    rows: list[dict[str, str]] = field(default_factory=list)


def exam_complete(folder: Path) -> bool:
    """True when ``folder`` holds a pull manifest and every instance it names."""
    manifest = folder / MANIFEST_NAME
    if not manifest.is_file():
        return False
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    sops = data.get("sop_instance_uids") or []
    return bool(sops) and len(sops) == data.get("n_instances") and all((folder / f"{s}.dcm").is_file() for s in sops)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _resolve_study(client: PacsSource, case: CaseRequest, exam_name: str, exam: ExamRequest) -> dict[str, Any]:
    studies = client.find_studies(case.patient_id, accession=exam.accession, study_uid=exam.study_uid)
    if not studies:
        raise PacsError(f"case {case.case_id} ({case.source}): no {exam_name} study with {exam.describe()} for patient {case.patient_id} on the PACS")
    if len(studies) > 1:
        uids = ", ".join(_text(s, TAG["StudyInstanceUID"]) for s in studies)
        raise PacsError(
            f"case {case.case_id} ({case.source}): {exam.describe()} matches {len(studies)} studies ({uids}); give {exam_name}_study_uid instead"
        )
    return studies[0]


def pull(
    client: PacsSource,
    cases: Sequence[CaseRequest],
    store: str | Path,
    rule: SeriesRule | None = None,
    *,
    on_exam: Callable[[str, str, int], None] | None = None,
    on_instance: Callable[[int], None] | None = None,
    workers: int = 4,
) -> PullResult:
    """Retrieve the chosen prior and current series of every case into ``store`` and write ``cases.csv``.

    ``workers`` instances of a series are downloaded at a time (parallel WADO-RS requests).
    ``on_exam(case_id, exam, n_instances_to_fetch)`` and ``on_instance(1)`` report progress (the
    CLI drives a progress bar with them). Raises :class:`PacsError` on the first case that cannot
    be pulled; the exams finished before it stay in the store, and a rerun
    resumes from there.
    """
    rule = rule or SeriesRule()
    store = Path(store)
    store.mkdir(parents=True, exist_ok=True)
    result = PullResult(case_list=store / "cases.csv", log=store / "pull_log.csv")
    for case in cases:
        for exam_name in ("prior", "current"):
            exam: ExamRequest = getattr(case, exam_name)
            final = store / case.case_id / exam_name
            row = {"case_id": case.case_id, "exam": exam_name, "patient_id": case.patient_id, "request": exam.describe()}
            if exam_complete(final):
                data = json.loads((final / MANIFEST_NAME).read_text(encoding="utf-8"))
                _check_same_exam(data, case, exam_name, exam, final)
                row.update({k: str(data.get(k, "")) for k in ("study_uid", "series_uid", "n_instances", "why")}, action="skipped (complete)")
                result.skipped += 1
                result.rows.append(row)
                if on_exam:
                    on_exam(case.case_id, exam_name, 0)
                continue
            study = _resolve_study(client, case, exam_name, exam)
            study_uid = _text(study, TAG["StudyInstanceUID"])
            series = client.find_series(study_uid)
            candidates = []
            for s in series:
                suid = _text(s, TAG["SeriesInstanceUID"])
                modality = _text(s, TAG["Modality"])
                if modality and modality.upper() != "CT":
                    continue
                meta = client.series_metadata(study_uid, suid)
                if meta:
                    candidates.append(candidate_from_metadata(meta, rule.max_tilt_deg))
            chosen, reasons = select_series(candidates, rule)
            if chosen is None:
                detail = "; ".join(f"{c.label()}: {reasons.get(c.series_uid, '')}" for c in candidates) or "the study holds no CT series"
                raise PacsError(f"case {case.case_id} {exam_name} (study {study_uid}): no series matches the rule ({rule.describe()}) — {detail}")
            n_fetched = _fetch_series(
                client,
                study_uid,
                chosen,
                final,
                reasons[chosen.series_uid],
                case,
                exam_name,
                on_exam,
                on_instance,
                workers,
                accession=_text(study, TAG["AccessionNumber"]),
            )
            row.update(
                study_uid=study_uid,
                series_uid=chosen.series_uid,
                n_instances=str(chosen.n_instances),
                why=reasons[chosen.series_uid],
                action="fetched",
            )
            result.fetched += 1
            result.instances += n_fetched
            result.rows.append(row)
    _write_case_list(result.case_list, cases, store)
    _write_log(result.log, result.rows)
    return result


def _check_same_exam(data: dict[str, Any], case: CaseRequest, exam_name: str, exam: ExamRequest, folder: Path) -> None:
    """Refuse to skip a complete exam folder that holds another exam than the request now names."""
    same = data.get("patient_id") == case.patient_id and (
        (exam.study_uid and data.get("study_uid") == exam.study_uid)
        or (not exam.study_uid and exam.accession and data.get("accession_number") == exam.accession)
    )
    if not same:
        held = f"patient {data.get('patient_id')}, study {data.get('study_uid')} (accession {data.get('accession_number') or 'none'})"
        raise PacsError(
            f"case {case.case_id} ({case.source}): {folder} already holds {held}, not {exam_name} {exam.describe()} of patient "
            f"{case.patient_id}; fix the request, or delete that folder to pull the exam again"
        )


def _fetch_series(
    client: PacsSource,
    study_uid: str,
    chosen: SeriesCandidate,
    final: Path,
    why: str,
    case: CaseRequest,
    exam_name: str,
    on_exam: Callable | None,
    on_instance: Callable | None,
    workers: int = 1,
    *,
    accession: str = "",
) -> int:
    """Download the instances of ``chosen`` missing from ``<final>.partial`` and rename it to ``final``;
    returns how many instances were downloaded."""
    if final.exists():  # an incomplete final folder (e.g. deleted files): rebuild it via .partial
        partial = final.with_name(final.name + ".partial")
        if partial.exists():
            shutil.rmtree(partial)
        os.replace(final, partial)
    partial = final.with_name(final.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    manifest = partial / MANIFEST_NAME
    if manifest.exists():
        old = json.loads(manifest.read_text(encoding="utf-8") or "{}")
        if old.get("series_uid") != chosen.series_uid:  # a different series was chosen last time: start over
            shutil.rmtree(partial)
            partial.mkdir(parents=True)
    for stale in partial.glob("*.tmp"):
        stale.unlink()
    wanted = set(chosen.sop_uids)
    for extra in partial.glob("*.dcm"):
        if extra.stem not in wanted:
            extra.unlink()
    todo = [s for s in chosen.sop_uids if not (partial / f"{s}.dcm").is_file()]
    if on_exam:
        on_exam(case.case_id, exam_name, len(todo))
    client.fetch_instances(
        study_uid, chosen.series_uid, todo, partial, whole_series=len(todo) == len(chosen.sop_uids), on_instance=on_instance, workers=workers
    )
    data = {
        "case_id": case.case_id,
        "exam": exam_name,
        "patient_id": case.patient_id,
        "pacs": client.url,
        "study_uid": study_uid,
        "accession_number": accession,
        "series_uid": chosen.series_uid,
        "series_description": chosen.description,
        "kernel": chosen.kernel,
        "slice_thickness_mm": chosen.thickness_mm,
        "z_extent_mm": chosen.z_extent_mm,
        "why": why,
        "n_instances": len(chosen.sop_uids),
        "sop_instance_uids": list(chosen.sop_uids),
    }
    _write_atomic(manifest, json.dumps(data, indent=1).encode("utf-8"))
    os.replace(partial, final)
    return len(todo)


def _write_case_list(path: Path, cases: Iterable[CaseRequest], store: Path) -> None:
    from .caselist import CASE_LIST_COLUMNS

    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CASE_LIST_COLUMNS)
        for case in cases:
            cells = {"case_id": case.case_id, "prior": f"{case.case_id}/prior", "current": f"{case.case_id}/current", "status": case.status}
            writer.writerow([cells.get(c, "") for c in CASE_LIST_COLUMNS])
    os.replace(tmp, path)


def _write_log(path: Path, rows: list[dict[str, str]]) -> None:
    cols = ["case_id", "exam", "patient_id", "request", "study_uid", "series_uid", "n_instances", "action", "why"]
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=cols, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# STOW-RS: store DICOM files (derived objects, readers' SRs, any series) on a PACS.

PUSH_LOG_COLUMNS = ("path", "status", "sop_instance_uid", "sop_class_uid", "modality", "study_uid", "series_uid", "message")

# STOW-RS FailureReason values (PS3.18 table "Store Instances Response Attribute Description" and PS3.4 C.4.2.1.4).
STOW_FAILURE_REASONS: dict[int, str] = {
    0x0110: "processing failure",
    0x0111: "duplicate SOP instance",
    0x0112: "no such object instance",
    0x0122: "SOP class not supported",
    0x0124: "not authorized",
    0xA700: "out of resources",
    0xA770: "out of resources (no storage space)",
    0xA900: "data set does not match the SOP class",
    0xC000: "cannot understand",
    0xC122: "transfer syntax not supported",
}

_DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"


@dataclass(frozen=True)
class PushItem:
    """The fate of one file of a push: ``stored``, ``failed`` or ``skipped`` (not a storable instance)."""

    path: Path
    status: str
    sop_instance_uid: str = ""
    sop_class_uid: str = ""
    modality: str = ""
    study_uid: str = ""
    series_uid: str = ""
    message: str = ""

    def row(self) -> dict[str, str]:
        return {c: str(getattr(self, c)) for c in PUSH_LOG_COLUMNS}


@dataclass
class PushResult:
    """What :func:`push` did, one :class:`PushItem` per file found under the folder."""

    items: list[PushItem] = field(default_factory=list)
    log: Path | None = None

    def with_status(self, status: str) -> list[PushItem]:
        return [i for i in self.items if i.status == status]

    @property
    def stored(self) -> list[PushItem]:
        return self.with_status("stored")

    @property
    def failed(self) -> list[PushItem]:
        return self.with_status("failed")

    @property
    def skipped(self) -> list[PushItem]:
        return self.with_status("skipped")


class PacsUnreachable(PacsError):
    """The PACS could not be reached (connection refused, timeout) even after the retries."""


def store_datasets(client: PacsClient, datasets: Sequence[Any], *, retries: int = 2, backoff_s: float = 1.0) -> dict[str, tuple[str, str]]:
    """STOW-RS one batch of datasets; return ``{SOPInstanceUID: (status, message)}`` for each.

    ``status`` is ``stored`` or ``failed``. HTTP 408/429/503/504 answers are retried by the
    DICOMweb client (``PacsClient(retries=...)``); a connection error or a timeout is retried here
    ``retries`` times with back-off ``backoff_s``, 2×, 4× … and then raises
    :class:`PacsUnreachable`. An HTTP 409/400 answer with a STOW-RS response body (some instances
    refused) gives a per-instance result; any other HTTP error raises :class:`PacsError`.
    """
    import time

    import pydicom
    import requests

    uids = [str(ds.SOPInstanceUID) for ds in datasets]
    attempt = 0
    while True:
        try:
            response = client._client.store_instances(list(datasets))
            break
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            if attempt >= retries:
                kind = (
                    "did not answer in time"
                    if isinstance(exc, requests.exceptions.Timeout)
                    else "cannot be reached (connection refused or host unknown)"
                )
                raise PacsUnreachable(
                    f"the PACS at {client.url} {kind} while storing {len(uids)} instance(s), after {attempt + 1} attempt(s); check --url and that the server runs"
                ) from None
            time.sleep(backoff_s * (2**attempt))
            attempt += 1
        except requests.exceptions.HTTPError as exc:
            answer = exc.response
            code = answer.status_code if answer is not None else "?"
            response = None
            if answer is not None and code in (400, 409) and answer.content:
                try:
                    response = pydicom.Dataset.from_json(answer.content.decode("utf-8"))
                except Exception:  # noqa: BLE001 - a body that is not DICOM JSON: report the HTTP error
                    response = None
            if response is None:
                hint = {
                    401: "it needs credentials",
                    403: "access is denied",
                    404: "no DICOMweb service at this URL (check the path, e.g. /dicom-web)",
                    413: "the batch is too large for the server: lower --batch-size",
                }.get(code, "see the server log")
                raise PacsError(f"the PACS at {client.url} answered HTTP {code} to a store of {len(uids)} instance(s): {hint}") from None
            break
    result: dict[str, tuple[str, str]] = {}
    for item in response.get("FailedSOPSequence", None) or []:
        uid = str(item.get("ReferencedSOPInstanceUID", ""))
        reason = item.get("FailureReason", None)
        text = STOW_FAILURE_REASONS.get(int(reason), "refused") if reason is not None else "refused"
        code_text = f" (FailureReason 0x{int(reason):04X})" if reason is not None else ""
        result[uid] = ("failed", f"the PACS refused it: {text}{code_text}")
    for item in response.get("ReferencedSOPSequence", None) or []:
        uid = str(item.get("ReferencedSOPInstanceUID", ""))
        warning = item.get("WarningReason", None)
        result.setdefault(uid, ("stored", f"stored with WarningReason 0x{int(warning):04X}" if warning is not None else ""))
    acknowledged = bool(result)
    for uid in uids:
        if uid not in result:
            result[uid] = (
                ("failed", "the PACS did not acknowledge this instance")
                if acknowledged
                else ("stored", "the PACS answered success without a per-instance list")
            )
    return result


def scan_dicom_folder(folder: str | Path) -> tuple[list[PushItem], list[PushItem]]:
    """Every file under ``folder`` (recursively, hidden files and ``*.tmp`` left out), as
    ``(instances, skipped)``: storable DICOM instances (status ``pending``) and the rest
    (``skipped``: not DICOM, a DICOMDIR, no SOP Instance/Class UID, a repeated SOP Instance UID)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    root = Path(folder)
    if not root.is_dir():
        raise PacsError(f"{root}: not a folder; give the folder of DICOM files to store")
    instances: list[PushItem] = []
    skipped: list[PushItem] = []
    seen: dict[str, Path] = {}
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts) and not p.name.endswith(".tmp")
    )
    for path in files:
        try:
            ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        except (InvalidDicomError, EOFError, ValueError, OSError) as exc:
            skipped.append(PushItem(path, "skipped", message=f"not a DICOM file ({type(exc).__name__})"))
            continue
        sop, cls = str(ds.get("SOPInstanceUID", "")), str(ds.get("SOPClassUID", ""))
        if not sop or not cls:
            skipped.append(PushItem(path, "skipped", message="no SOP Instance UID or SOP Class UID: not a storable instance"))
            continue
        if cls == _DICOMDIR_SOP_CLASS:
            skipped.append(PushItem(path, "skipped", sop, cls, message="a DICOMDIR (a media index), not an instance"))
            continue
        item = PushItem(
            path, "pending", sop, cls, str(ds.get("Modality", "")), str(ds.get("StudyInstanceUID", "")), str(ds.get("SeriesInstanceUID", ""))
        )
        if sop in seen:
            skipped.append(PushItem(**{**item.__dict__, "status": "skipped", "message": f"same SOP Instance UID as {seen[sop]}; stored once"}))
            continue
        seen[sop] = path
        instances.append(item)
    return instances, skipped


def push(
    client: PacsClient,
    folder: str | Path,
    *,
    batch_size: int = 20,
    max_batch_mb: float = 200.0,
    retries: int = 2,
    backoff_s: float = 1.0,
    log_path: str | Path | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> PushResult:
    """Store every DICOM instance under ``folder`` on the PACS over STOW-RS, in batches.

    A batch holds at most ``batch_size`` files and ``max_batch_mb`` MB (a larger single file goes
    alone). A batch the server refuses as a whole (an HTTP error) marks its files ``failed`` and the
    push goes on; an unreachable server (after ``retries``) marks the rest ``failed`` as not sent.
    ``on_batch(n)`` is called after each batch with its file count. When ``log_path`` is given,
    a CSV (:data:`PUSH_LOG_COLUMNS`) with one row per file is written there atomically.
    Storing an instance twice is harmless: a PACS keeps one copy per SOP Instance UID.
    """
    import pydicom

    if batch_size < 1:
        raise PacsError(f"--batch-size {batch_size} must be 1 or more")
    instances, skipped = scan_dicom_folder(folder)
    result = PushResult(items=list(skipped))
    batches: list[list[PushItem]] = []
    size = 0.0
    for item in instances:
        mb = item.path.stat().st_size / 1e6
        if not batches or len(batches[-1]) >= batch_size or (batches[-1] and size + mb > max_batch_mb):
            batches.append([])
            size = 0.0
        batches[-1].append(item)
        size += mb
    unreachable = ""
    for batch in batches:
        if unreachable:
            result.items += [PushItem(**{**i.__dict__, "status": "failed", "message": f"not sent: {unreachable}"}) for i in batch]
            if on_batch:
                on_batch(len(batch))
            continue
        datasets, sendable = [], []
        for item in batch:
            try:
                datasets.append(pydicom.dcmread(str(item.path)))
                sendable.append(item)
            except (OSError, ValueError, EOFError) as exc:
                result.items.append(PushItem(**{**item.__dict__, "status": "failed", "message": f"could not be read in full: {exc}"}))
        try:
            outcome = store_datasets(client, datasets, retries=retries, backoff_s=backoff_s) if datasets else {}
        except PacsUnreachable as exc:
            unreachable = str(exc)
            outcome = {i.sop_instance_uid: ("failed", f"not sent: {exc}") for i in sendable}
        except PacsError as exc:
            outcome = {i.sop_instance_uid: ("failed", str(exc)) for i in sendable}
        for item in sendable:
            status, message = outcome[item.sop_instance_uid]
            result.items.append(PushItem(**{**item.__dict__, "status": status, "message": message}))
        if on_batch:
            on_batch(len(batch))
    result.items.sort(key=lambda i: str(i.path))
    if log_path is not None:
        result.log = Path(log_path)
        result.log.parent.mkdir(parents=True, exist_ok=True)
        tmp = result.log.with_name(result.log.name + ".tmp")
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(PUSH_LOG_COLUMNS))
            writer.writeheader()
            writer.writerows(i.row() for i in result.items)
        os.replace(tmp, result.log)
    return result
