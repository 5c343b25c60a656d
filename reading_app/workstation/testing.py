"""Ready-to-read studies for tests, benchmarks and demonstrations of the reading app.

:func:`build_reading_study` turns a case list into a database with an open study, readers with
accounts (passwords already chosen, so they can log in at once) and a coordinator and a
statistician account; :func:`write_test_detector_outputs` writes stand-in detector outputs for
cases whose prior and current exams share one grid (the small volumes of
``reader_study.harness.write_synthetic_case_list``): the subtraction ``current − prior`` and a
z-map ``subtraction / noise_hu``. They exercise the viewer's aided layers; they are not the
detector's method (``tsct detect batch`` writes the real ones).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from detector.outputs import ModelRecord

__all__ = ["ReadingStudy", "build_reading_study", "write_test_detector_outputs", "DEFAULT_PASSWORD", "CHROMIUM_PATH", "CHROMIUM_ARGS"]

#: Debian's chromium, which the browser tests, screenshots and benchmarks drive through Playwright.
CHROMIUM_PATH = Path("/usr/bin/chromium")

#: Headless chromium as root, with no outside lookups (only 127.0.0.1 resolves).
CHROMIUM_ARGS: tuple[str, ...] = (
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
)

#: Password of every account made by :func:`build_reading_study` (tests and local demos only).
DEFAULT_PASSWORD = "reading-test-pw-1"


@dataclass(frozen=True)
class ReadingStudy:
    """A study made by :func:`build_reading_study`: where its database is and who can log in."""

    database_url: str
    study_code: str
    readers: tuple[str, ...]
    accounts: dict[str, str] = field(default_factory=dict)  # user name -> role
    password: str = DEFAULT_PASSWORD


def write_test_detector_outputs(
    case_list: str | Path,
    detector_dir: str | Path,
    *,
    noise_hu: float = 20.0,
    zmap: bool = True,
    model: "ModelRecord | None" = None,
    qc: bool = False,
) -> list[Path]:
    """Write stand-in detector outputs per case: a subtraction (current − prior) and a z-map
    (subtraction / ``noise_hu``), with the case's ``outputs.json`` manifest (:func:`detector.write_case_outputs`).

    ``model``: the model the manifest records (default: a stand-in named after ``noise_hu``).
    ``qc``: also write a ``qc.json`` (verdict ``passed``) and list it as the ``qc`` output.
    Needs prior and current exams on the same grid. Returns the folders written.
    """
    from cases import read_case_list, read_volume, write_volume
    from detector.outputs import MANIFEST_NAME, ROLES, ModelRecord, write_case_outputs

    folders = []
    for case in read_case_list(case_list):
        current = read_volume(case.current)
        prior = read_volume(case.prior)
        if current.shape != prior.shape:
            raise ValueError(
                f"Case {case.case_id}: prior {prior.shape} and current {current.shape} differ in shape; run `tsct detect` for real outputs."
            )
        folder = Path(detector_dir) / case.case_id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MANIFEST_NAME).unlink(missing_ok=True)
        diff = (current.array - prior.array).astype(np.float32)
        files = {"subtraction": write_volume(current.with_array(np.rint(diff).astype(np.int16)), folder / ROLES["subtraction"][0])}
        if zmap:
            files["zmap"] = write_volume(current.with_array((diff / float(noise_hu)).astype(np.float32)), folder / ROLES["zmap"][0])
        if qc:
            files["qc"] = folder / ROLES["qc"][0]
            files["qc"].write_text(json.dumps({"case_id": case.case_id, "status": "passed"}) + "\n", encoding="utf-8")
        write_case_outputs(
            folder,
            files,
            grid=current.grid,
            case_id=case.case_id,
            qc_status="passed",
            model=model or ModelRecord(f"test stand-in (difference / {noise_hu:g} HU)"),
            exams={"prior": (case.prior, prior.grid), "current": (case.current, current.grid)},
            hash_exams=False,
        )
        folders.append(folder)
    return folders


def build_reading_study(
    database_url: str,
    case_list: str | Path,
    *,
    study_code: str = "APP-TEST",
    readers: Sequence[str] = ("Reader One", "Reader Two"),
    reader_usernames: Sequence[str] | None = None,
    training_case_list: str | Path | None = None,
    design: str = "crossover",
    case_blocks: int | None = None,
    treatments: Sequence[str] = ("unaided", "aided=subtraction+zmap"),
    paradigm: str = "FROC",
    rating_scale: str = "1-5",
    password: str = DEFAULT_PASSWORD,
    seed: int = 0,
    open_study: bool = True,
) -> ReadingStudy:
    """Create the schema, an open study on ``case_list``, its readers and accounts that can log in at once.

    Accounts: one per reader (``reader_usernames``, default ``reader1``, ``reader2``, …), plus
    ``coordinator`` and ``statistician``; all with ``password`` (already changed from the initial
    one, so no password change is asked at log-in).
    """
    import reader_study as rs

    db = rs.init_db(database_url)
    usernames = list(reader_usernames or [f"reader{i + 1}" for i in range(len(readers))])
    try:
        with db.transaction() as s:
            rs.create_study(
                s,
                code=study_code,
                case_list=Path(case_list),
                readers=[rs.ReaderSpec(name, "board-certified" if i % 2 == 0 else "resident") for i, name in enumerate(readers)],
                title="Reading app test study",
                paradigm=paradigm,
                rating_scale=rating_scale,
                treatments=tuple(rs.parse_treatment(t) for t in treatments),
                washout_days=0.0,
                seed=seed,
                training_case_list=Path(training_case_list) if training_case_list else None,
                hash_files=False,
                actor="test",
            )
            rs.make_design(s, study_code, kind=design, case_blocks=case_blocks, actor="test")
            rs.lock_study(s, study_code, actor="test")
            if open_study:
                rs.open_study(s, study_code, actor="test")
            initial = "initial-" + password
            accounts = {}
            for name, username in zip(readers, usernames):
                rs.create_account(s, username, initial, role="reader", reader_name=name, actor="test")
                accounts[username] = "reader"
            for role in ("coordinator", "statistician"):
                rs.create_account(s, role, initial, role=role, actor="test")
                accounts[role] = role
        for username in accounts:
            rs.change_password(db, username, initial, password)
    finally:
        db.dispose()
    return ReadingStudy(database_url, study_code, tuple(readers), accounts, password)
