"""Malformed inputs for the study and analysis side, generated here, and how each one is judged.

Each :class:`Hostile` case is a ``tsct`` command line (study commands, marks, accounts, backups,
exports, JAFROC/iMRMC/CSV analysis files, output paths) with the input files it needs written by
its ``setup``. :func:`run_case` runs it in-process on a private copy of the database and returns
one of:

``clear``      non-zero exit, no traceback, the message names the culprit, nothing left behind
``vague``      refused, but the message does not name the culprit
``traceback``  a Python traceback reached the user
``silent``     exit code 0: the bad input was accepted
``partial``    refused, but something was left behind (a new file, a changed file)

Used by ``tests/integrity/test_hostile_study.py`` (every case must be ``clear``) and by
``bench/hostile_study_tally.py`` (prints the totals).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ._study_env import StudyEnv, copy_db, write_detector_outputs

OUTCOMES = ("clear", "vague", "traceback", "silent", "partial")


@dataclass(frozen=True)
class Hostile:
    """One malformed input: the command line (``{W}`` = the case's folder, ``{CASES}``, ``{DET}``,
    ``{READERS}``, ``{JAFROC}``, ``{IMRMC}``, ``{TIDY}``, ``{DB}`` = shared inputs), words one of
    which the message must contain, files to write first, and paths that must not exist after."""

    id: str
    category: str
    args: tuple[str, ...]
    culprit: tuple[str, ...]
    setup: Callable[[Path, StudyEnv], None] | None = None
    absent: tuple[str, ...] = ()
    exit_codes: tuple[int, ...] = (1, 2)
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Outcome:
    case: Hostile
    kind: str
    exit_code: int
    output: str
    detail: str = ""


# ------------------------------------------------------------------------------------------------
# input-file helpers
def _text(name: str, content: str | bytes) -> Callable[[Path, StudyEnv], None]:
    def setup(w: Path, env: StudyEnv) -> None:
        target = w / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content.replace("{CASES_DIR}", str(env.case_list.parent)))

    return setup


def _chain(*steps: Callable[[Path, StudyEnv], None] | None) -> Callable[[Path, StudyEnv], None]:
    def setup(w: Path, env: StudyEnv) -> None:
        for step in steps:
            if step is not None:
                step(w, env)

    return setup


def _copy_cases(w: Path, env: StudyEnv) -> None:
    shutil.copytree(env.case_list.parent, w / "cases")


def _truncate(rel: str, keep: float = 0.5) -> Callable[[Path, StudyEnv], None]:
    def setup(w: Path, env: StudyEnv) -> None:
        path = w / rel
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])

    return setup


def _half_voxels(rel: str) -> Callable[[Path, StudyEnv], None]:
    """A NIfTI (.nii.gz) whose gzip stream is complete but holds only half of its voxels."""

    def setup(w: Path, env: StudyEnv) -> None:
        path = w / rel
        raw = gzip.decompress(path.read_bytes())
        path.write_bytes(gzip.compress(raw[: 352 + (len(raw) - 352) // 2]))

    return setup


def _flip_byte(rel: str) -> Callable[[Path, StudyEnv], None]:
    def setup(w: Path, env: StudyEnv) -> None:
        path = w / rel
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))

    return setup


def _list_in_manifest(case_rel: str, role: str, name: str, content: bytes) -> Callable[[Path, StudyEnv], None]:
    """Write ``content`` as ``name`` in a detector case folder and list it in the case's outputs.json as ``role`` (with its true hash)."""

    def setup(w: Path, env: StudyEnv) -> None:
        folder = w / case_rel
        (folder / name).write_bytes(content)
        manifest = folder / "outputs.json"
        doc = json.loads(manifest.read_text(encoding="utf-8"))
        doc["files"][role] = {"path": name, "sha256": hashlib.sha256(content).hexdigest(), "kind": "image"}
        manifest.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")

    return setup


def _unlist(case_rel: str, role: str) -> Callable[[Path, StudyEnv], None]:
    """Drop ``role`` from a detector case's outputs.json (the file stays in the folder)."""

    def setup(w: Path, env: StudyEnv) -> None:
        manifest = w / case_rel / "outputs.json"
        doc = json.loads(manifest.read_text(encoding="utf-8"))
        del doc["files"][role]
        manifest.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")

    return setup


def _copy_detector(w: Path, env: StudyEnv) -> None:
    shutil.copytree(env.detector_dir, w / "det")


def _remove(rel: str) -> Callable[[Path, StudyEnv], None]:
    def setup(w: Path, env: StudyEnv) -> None:
        path = w / rel
        shutil.rmtree(path) if path.is_dir() else path.unlink()

    return setup


def _locked_study_on_copies(code: str = "V") -> Callable[[Path, StudyEnv], None]:
    """A study locked over private copies of the exams and detector outputs (so they can be damaged)."""

    def setup(w: Path, env: StudyEnv) -> None:
        from reader_study import ReaderSpec, create_study, lock_study, make_design, open_db

        shutil.copytree(env.case_list.parent, w / "cases")
        write_detector_outputs(w / "cases" / "cases.csv", w / "det")
        db = open_db(f"sqlite:///{w / 'study.sqlite3'}")
        with db.transaction() as s:
            create_study(
                s, code=code, case_list=w / "cases" / "cases.csv", readers=[ReaderSpec(f"{code} One"), ReaderSpec(f"{code} Two")], washout_days=0
            )
            make_design(s, code)
            lock_study(s, code, detector_dir=w / "det")
        db.dispose()

    return setup


def _open_locked(code: str) -> Callable[[Path, StudyEnv], None]:
    def setup(w: Path, env: StudyEnv) -> None:
        from reader_study import open_db, open_study

        db = open_db(f"sqlite:///{w / 'study.sqlite3'}")
        with db.transaction() as s:
            open_study(s, code)
        db.dispose()

    return setup


def _unrelated(rel: str, text: str = "my notes, not a backup\n") -> Callable[[Path, StudyEnv], None]:
    return _text(rel, text)


def _read_tidy(env: StudyEnv) -> list[str]:
    return env.tidy.read_text().splitlines()


def _tidy_variant(name: str, change: Callable[[list[str]], list[str]]) -> Callable[[Path, StudyEnv], None]:
    def setup(w: Path, env: StudyEnv) -> None:
        (w / name).write_text("\n".join(change(_read_tidy(env))) + "\n")

    return setup


def _replace_rating(value: str) -> Callable[[list[str]], list[str]]:
    def change(lines: list[str]) -> list[str]:
        out, done = [], False
        for line in lines:
            cells = line.split(",")
            if not done and cells[0] == "LL":
                cells[8] = value
                done = True
            out.append(",".join(cells))
        return out

    return change


def _imrmc_variant(name: str, change: Callable[[list[str]], list[str]]) -> Callable[[Path, StudyEnv], None]:
    def setup(w: Path, env: StudyEnv) -> None:
        (w / name).write_text("\n".join(change(env.imrmc.read_text().splitlines())) + "\n")

    return setup


def _xlsx_variant(name: str, change: Callable[[dict], None]) -> Callable[[Path, StudyEnv], None]:
    def setup(w: Path, env: StudyEnv) -> None:
        import pandas as pd

        sheets = pd.read_excel(env.jafroc, sheet_name=None, engine="openpyxl")
        change(sheets)
        with pd.ExcelWriter(w / name) as writer:
            for sheet, frame in sheets.items():
                frame.to_excel(writer, sheet_name=sheet, index=False)

    return setup


MARK_HEADER = "reader,case_id,treatment,rating,x_mm,y_mm,z_mm\n"


def _marks(name: str, rows: str, header: str = MARK_HEADER) -> Callable[[Path, StudyEnv], None]:
    return _text(name, header + rows)


# ------------------------------------------------------------------------------------------------
def _study_cases() -> list[Hostile]:
    cases: list[Hostile] = []
    add = cases.append
    create = ("study", "create")
    # study codes
    for i, code in enumerate(["", "_lead", "a b", "x" * 65, "../evil", "é-study", "a/b", ".hidden"]):
        add(Hostile(f"create-code-{i}", "study create", (*create, code, "--case-list", "{CASES}"), ("study code",)))
    add(Hostile("create-code-taken", "study create", (*create, "OPEN", "--case-list", "{CASES}"), ("already exists",)))
    # settings
    for opt, value, word in [
        ("--paradigm", "LROC", "paradigm"),
        ("--paradigm", "", "paradigm"),
        ("--scale", "1-10", "rating scale"),
        ("--scale", "abc", "rating scale"),
        ("--acceptance", "near", "acceptance rule"),
        ("--radius-mm", "0", "radius"),
        ("--radius-mm", "-3", "radius"),
        ("--radius-mm", "nan", "radius"),
        ("--washout-days", "-1", "washout"),
        ("--washout-days", "nan", "washout"),
        ("--treatment", "a b", "treatment"),
        ("--treatment", "=zmap", "treatment"),
    ]:
        add(Hostile(f"create-{opt.strip('-')}-{value or 'empty'}", "study create", (*create, "NEW", "--case-list", "{CASES}", opt, value), (word,)))
    add(
        Hostile(
            "create-treatment-unknown-overlay",
            "study create",
            (*create, "NEW", "--case-list", "{CASES}", "--treatment", "unaided", "--treatment", "aided=heatmap"),
            ("heatmap",),
        )
    )
    add(
        Hostile(
            "create-treatment-twice", "study create", (*create, "NEW", "--case-list", "{CASES}", "--treatment", "a", "--treatment", "a"), ("unique",)
        )
    )
    # case list and exams
    add(Hostile("create-caselist-missing", "study create", (*create, "NEW", "--case-list", "{W}/nope.csv"), ("nope.csv",)))
    add(
        Hostile(
            "create-caselist-folder",
            "study create",
            (*create, "NEW", "--case-list", "{W}/list-folder.csv"),
            ("list-folder.csv",),
            setup=_text("list-folder.csv/keep", ""),
        )
    )
    add(
        Hostile(
            "create-caselist-empty",
            "study create",
            (*create, "NEW", "--case-list", "{W}/empty.csv"),
            ("empty.csv", "empty", "no cases"),
            setup=_text("empty.csv", ""),
        )
    )
    add(
        Hostile(
            "create-caselist-binary",
            "study create",
            (*create, "NEW", "--case-list", "{W}/bin.csv"),
            ("bin.csv",),
            setup=_text("bin.csv", bytes(range(256)) * 4),
        )
    )
    for who in ("prior", "current"):
        add(
            Hostile(
                f"create-{who}-truncated",
                "study create",
                (*create, "NEW", "--case-list", "{W}/cases/cases.csv"),
                (who,),
                setup=_chain(_copy_cases, _truncate(f"cases/C002_{who}.nii.gz", 0.5)),
            )
        )
        add(
            Hostile(
                f"create-{who}-half-voxels",
                "study create",
                (*create, "NEW", "--case-list", "{W}/cases/cases.csv"),
                (who,),
                setup=_chain(_copy_cases, _half_voxels(f"cases/C003_{who}.nii.gz")),
            )
        )
        add(
            Hostile(
                f"create-{who}-missing",
                "study create",
                (*create, "NEW", "--case-list", "{W}/cases/cases.csv"),
                (who, "C004"),
                setup=_chain(_copy_cases, _remove(f"cases/C004_{who}.nii.gz")),
            )
        )
        add(
            Hostile(
                f"create-{who}-empty",
                "study create",
                (*create, "NEW", "--case-list", "{W}/cases/cases.csv"),
                (who,),
                setup=_chain(_copy_cases, _text(f"cases/C001_{who}.nii.gz", b"")),
            )
        )
        add(
            Hostile(
                f"create-{who}-garbage",
                "study create",
                (*create, "NEW", "--case-list", "{W}/cases/cases.csv"),
                (who,),
                setup=_chain(_copy_cases, _text(f"cases/C001_{who}.nii.gz", b"\x1f\x8b" + b"garbage" * 50)),
            )
        )
    add(Hostile("create-training-clash", "study create", (*create, "NEW", "--case-list", "{CASES}", "--training-cases", "{CASES}"), ("training",)))
    # readers files
    readers_files = {
        "missing": None,
        "no-name-column": "who,group\nA,b\n",
        "duplicate-names": "name\nDr A\ndr a\n",
        "negative-years": "name,experience_years\nDr A,-2\n",
        "text-years": "name,experience_years\nDr A,ten\n",
        "empty-name": "name,group\n,resident\n",
        "unknown-column": "name,shoe_size\nDr A,44\n",
        "empty-file": "",
        "header-only": "name,group\n",
        "binary": bytes(range(256)) * 3,
    }
    for label, content in readers_files.items():
        setup = None if content is None else _text("readers.csv", content)
        add(
            Hostile(
                f"create-readers-{label}",
                "readers file",
                (*create, "NEW", "--case-list", "{CASES}", "--readers", "{W}/readers.csv"),
                ("readers.csv",),
                setup=setup,
            )
        )
        add(
            Hostile(
                f"readers-add-file-{label}",
                "readers file",
                ("study", "readers", "add", "DRAFT", "--file", "{W}/readers.csv"),
                ("readers.csv",),
                setup=setup,
            )
        )
    # readers add
    add(
        Hostile("readers-add-both", "study readers", ("study", "readers", "add", "DRAFT", "--name", "X", "--file", "{READERS}"), ("--name", "--file"))
    )
    add(Hostile("readers-add-neither", "study readers", ("study", "readers", "add", "DRAFT"), ("--name", "--file")))
    add(Hostile("readers-add-duplicate", "study readers", ("study", "readers", "add", "DRAFT", "--name", "Draft Ada"), ("Draft Ada",)))
    add(
        Hostile(
            "readers-add-duplicate-case", "study readers", ("study", "readers", "add", "DRAFT", "--name", "draft ada"), ("draft ada", "Draft Ada")
        )
    )
    add(Hostile("readers-add-locked", "study readers", ("study", "readers", "add", "LOCKED", "--name", "Dr Late"), ("locked",)))
    add(Hostile("readers-add-unknown-study", "study readers", ("study", "readers", "add", "NOPE", "--name", "Dr X"), ("NOPE",)))
    add(Hostile("readers-add-empty-name", "study readers", ("study", "readers", "add", "DRAFT", "--name", ""), ("name",)))
    add(Hostile("readers-add-blank-name", "study readers", ("study", "readers", "add", "DRAFT", "--name", "   "), ("name",)))
    add(
        Hostile(
            "readers-add-negative-years",
            "study readers",
            ("study", "readers", "add", "DRAFT", "--name", "Dr Y", "--years", "-4"),
            ("years", "experience"),
        )
    )
    add(
        Hostile(
            "readers-add-nan-years",
            "study readers",
            ("study", "readers", "add", "DRAFT", "--name", "Dr Y", "--years", "nan"),
            ("years", "experience"),
        )
    )
    add(Hostile("readers-list-unknown", "study readers", ("study", "readers", "list", "NOPE"), ("NOPE",)))
    # design
    add(Hostile("design-unknown-study", "study design", ("study", "design", "NOPE"), ("NOPE",)))
    add(Hostile("design-kind", "study design", ("study", "design", "DRAFT", "--kind", "parallel"), ("parallel", "crossover")))
    for blocks in ("0", "-1", "99"):
        add(Hostile(f"design-blocks-{blocks}", "study design", ("study", "design", "DRAFT", "--blocks", blocks), ("block",)))
    add(Hostile("design-locked", "study design", ("study", "design", "LOCKED"), ("locked",)))
    add(Hostile("design-show-none", "study design", ("study", "design", "DRAFT", "--show"), ("no design",)))
    # lock
    add(Hostile("lock-unknown", "study lock", ("study", "lock", "NOPE"), ("NOPE",)))
    add(Hostile("lock-again", "study lock", ("study", "lock", "LOCKED", "--detector-dir", "{DET}"), ("locked",)))
    add(Hostile("lock-no-design", "study lock", ("study", "lock", "DRAFT", "--detector-dir", "{DET}"), ("design",)))

    def _designed(w: Path, env: StudyEnv) -> None:
        from reader_study import make_design, open_db

        db = open_db(f"sqlite:///{w / 'study.sqlite3'}")
        with db.transaction() as s:
            make_design(s, "DRAFT")
        db.dispose()

    add(Hostile("lock-no-detector-dir", "study lock", ("study", "lock", "DRAFT"), ("--detector-dir",), setup=_designed))
    add(Hostile("lock-detector-missing", "study lock", ("study", "lock", "DRAFT", "--detector-dir", "{W}/nodet"), ("nodet",), setup=_designed))
    add(
        Hostile(
            "lock-detector-is-file",
            "study lock",
            ("study", "lock", "DRAFT", "--detector-dir", "{W}/plainfile"),
            ("plainfile",),
            setup=_chain(_designed, _text("plainfile", "x")),
        )
    )
    add(
        Hostile(
            "lock-detector-both-flags",
            "study lock",
            ("study", "lock", "DRAFT", "--detector-dir", "{DET}", "--without-detector-outputs"),
            ("--without-detector-outputs",),
            setup=_designed,
        )
    )
    for label, step, word in [
        ("case-folder-missing", _remove("det/C002"), "C002"),
        ("zmap-missing", _remove("det/C003/zmap.nii.gz"), "zmap.nii.gz"),
        ("zmap-truncated", _truncate("det/C001/zmap.nii.gz", 0.6), "zmap.nii.gz"),
        ("zmap-half-voxels", _half_voxels("det/C004/zmap.nii.gz"), "zmap.nii.gz"),
        ("subtraction-truncated", _truncate("det/C002/subtraction.nii.gz", 0.3), "subtraction.nii.gz"),
        ("subtraction-empty", _text("det/C002/subtraction.nii.gz", b""), "subtraction.nii.gz"),
        ("zmap-altered-after-detector", _flip_byte("det/C003/zmap.nii.gz"), "zmap.nii.gz"),
        ("zmap-not-in-manifest", _unlist("det/C004", "zmap"), "zmap"),
        ("manifest-missing", _remove("det/C001/outputs.json"), "outputs.json"),
        ("manifest-truncated", _truncate("det/C001/outputs.json", 0.5), "outputs.json"),
    ]:
        add(
            Hostile(
                f"lock-detector-{label}",
                "study lock",
                ("study", "lock", "DRAFT", "--detector-dir", "{W}/det"),
                (word,),
                setup=_chain(_designed, _copy_detector, step),
            )
        )
    # verify: a changed byte is reported by case and file
    for label, step, words in [
        ("current-byte", _flip_byte("cases/C001_current.nii.gz"), ("C001", "C001_current.nii.gz")),
        ("prior-byte", _flip_byte("cases/C003_prior.nii.gz"), ("C003", "C003_prior.nii.gz")),
        ("prior-deleted", _remove("cases/C002_prior.nii.gz"), ("C002", "C002_prior.nii.gz")),
        ("zmap-byte", _flip_byte("det/C004/zmap.nii.gz"), ("C004", "zmap.nii.gz")),
        ("subtraction-replaced", _text("det/C002/subtraction.nii.gz", b"not the image"), ("C002", "subtraction.nii.gz")),
        ("detector-output-added", _list_in_manifest("det/C001", "bone_roi", "bone_roi.nii.gz", b"x"), ("C001", "bone_roi.nii.gz", "outputs.json")),
        ("qc-edited", _text("det/C003/qc.json", "{}"), ("C003", "qc.json")),
        ("manifest-edited", _text("det/C002/outputs.json", "{}"), ("C002", "outputs.json")),
    ]:
        add(
            Hostile(
                f"verify-{label}", "study verify", ("study", "verify", "V"), words, setup=_chain(_locked_study_on_copies("V"), step), exit_codes=(1,)
            )
        )
    add(Hostile("verify-draft", "study verify", ("study", "verify", "DRAFT"), ("not locked",), exit_codes=(1,)))
    add(Hostile("verify-unknown", "study verify", ("study", "verify", "NOPE"), ("NOPE",)))
    # open / close / status / waive
    add(Hostile("open-draft", "study open", ("study", "open", "DRAFT"), ("not locked",)))
    add(Hostile("open-unknown", "study open", ("study", "open", "NOPE"), ("NOPE",)))
    add(Hostile("open-closed", "study open", ("study", "open", "DONE"), ("closed",)))
    add(Hostile("close-draft", "study close", ("study", "close", "DRAFT"), ("draft",)))
    add(Hostile("status-unknown", "study status", ("study", "status", "NOPE"), ("NOPE",)))
    for label, args, word in [
        ("reader-unknown", ("--reader", "Dr Nobody", "--session", "2", "--reason", "r"), "Dr Nobody"),
        ("session-0", ("--reader", "Open Ada", "--session", "0", "--reason", "r"), "session 0"),
        ("session-negative", ("--reader", "Open Ada", "--session", "-1", "--reason", "r"), "session -1"),
        ("session-99", ("--reader", "Open Ada", "--session", "99", "--reason", "r"), "session 99"),
        ("session-text", ("--reader", "Open Ada", "--session", "two", "--reason", "r"), "--session"),
        ("reason-blank", ("--reader", "Open Ada", "--session", "2", "--reason", "  "), "reason"),
    ]:
        add(Hostile(f"waive-{label}", "study waive-washout", ("study", "waive-washout", "OPEN", *args), (word,)))
    add(
        Hostile(
            "waive-unknown-study",
            "study waive-washout",
            ("study", "waive-washout", "NOPE", "--reader", "Open Ada", "--session", "2", "--reason", "r"),
            ("NOPE",),
        )
    )
    add(Hostile("audit-unknown-study", "study audit", ("study", "audit", "NOPE"), ("NOPE",)))
    add(Hostile("audit-limit-negative", "study audit", ("study", "audit", "--limit", "-5"), ("--limit",)))
    # database URL
    add(Hostile("db-bad-url", "database", ("study", "--db", "nonsense://x", "list"), ("nonsense", "--db")))
    add(
        Hostile(
            "db-not-a-database",
            "database",
            ("study", "--db", "sqlite:///{W}/notes.txt", "list"),
            ("notes.txt",),
            setup=_text("notes.txt", "hello\n" * 100),
        )
    )
    add(Hostile("db-is-folder", "database", ("study", "--db", "sqlite:///{W}/dbdir", "list"), ("dbdir",), setup=_text("dbdir/keep", "")))
    add(Hostile("db-empty-file", "database", ("study", "--db", "sqlite:///{W}/empty.sqlite3", "list"), ("empty.sqlite3", "init-db")))
    return cases


def _marks_cases() -> list[Hostile]:
    cases: list[Hostile] = []
    add = cases.append
    imp = ("study", "import-marks", "OPEN", "{W}/marks.csv")
    rows = {
        "reader-unknown": ("Dr Nobody,C001,aided,4,0,0,12\n", "Dr Nobody"),
        "case-unknown": ("Open Ada,C999,aided,4,0,0,12\n", "C999"),
        "treatment-unknown": ("Open Ada,C001,magic,4,0,0,12\n", "magic"),
        "rating-0": ("Open Ada,C001,aided,0,0,0,12\n", "rating"),
        "rating-6": ("Open Ada,C001,aided,6,0,0,12\n", "rating"),
        "rating-fraction": ("Open Ada,C001,aided,2.5,0,0,12\n", "rating"),
        "rating-text": ("Open Ada,C001,aided,high,0,0,12\n", "rating"),
        "rating-nan": ("Open Ada,C001,aided,nan,0,0,12\n", "rating"),
        "rating-inf": ("Open Ada,C001,aided,inf,0,0,12\n", "rating"),
        "rating-negative": ("Open Ada,C001,aided,-1,0,0,12\n", "rating"),
        "rating-empty": ("Open Ada,C001,aided,,0,0,12\n", "rating"),
        "x-outside": ("Open Ada,C001,aided,4,5000,0,12\n", "outside"),
        "z-outside": ("Open Ada,C001,aided,4,0,0,-40\n", "outside"),
        "x-nan": ("Open Ada,C001,aided,4,nan,0,12\n", "x_mm"),
        "y-text": ("Open Ada,C001,aided,4,0,left,12\n", "y_mm"),
        "z-empty": ("Open Ada,C001,aided,4,0,0,\n", "z_mm"),
        "x-inf": ("Open Ada,C001,aided,4,inf,0,12\n", "x_mm"),
        "one-bad-of-three": ("Open Ada,C001,aided,4,0,0,12\nOpen Ada,C003,aided,9,0,0,12\nOpen Ben,C001,aided,3,0,0,12\n", "Rating '9'"),
    }
    for label, (body, word) in rows.items():
        add(Hostile(f"marks-{label}", "import marks", imp, (word,), setup=_marks("marks.csv", body)))
    idx_header = "reader,case_id,treatment,rating,index_x,index_y,index_z\n"
    for label, body, word in [
        ("index-negative", "Open Ada,C001,aided,4,-1,0,0\n", "index"),
        ("index-too-big", "Open Ada,C001,aided,4,0,0,12\n", "index"),
        ("index-fraction", "Open Ada,C001,aided,4,1.5,0,0\n", "index"),
        ("index-huge", "Open Ada,C001,aided,4,99999,0,0\n", "index"),
    ]:
        add(Hostile(f"marks-{label}", "import marks", imp, (word,), setup=_marks("marks.csv", body, idx_header)))
    for label, content, word in [
        ("file-missing", None, "marks.csv"),
        ("file-empty", "", "marks.csv"),
        ("header-only", MARK_HEADER, "marks.csv"),
        ("no-position", "reader,case_id,treatment,rating\nOpen Ada,C001,aided,4\n", "x_mm"),
        ("both-positions", "reader,case_id,treatment,rating,x_mm,y_mm,z_mm,index_x,index_y,index_z\nOpen Ada,C001,aided,4,0,0,12,8,8,6\n", "index"),
        ("no-reader-column", "case_id,treatment,rating,x_mm,y_mm,z_mm\nC001,aided,4,0,0,12\n", "reader"),
        ("semicolons", "reader;case_id;treatment;rating;x_mm;y_mm;z_mm\nOpen Ada;C001;aided;4;0;0;12\n", "reader"),
        ("binary", bytes(range(256)) * 4, "marks.csv"),
        (
            "key-reused",
            "reader,case_id,treatment,rating,x_mm,y_mm,z_mm,client_key\nOpen Ada,C001,aided,4,0,0,12,k1\nOpen Ada,C003,aided,4,0,0,12,k1\n",
            "k1",
        ),
    ]:
        setup = None if content is None else _text("marks.csv", content)
        add(Hostile(f"marks-{label}", "import marks", imp, (word,), setup=setup))
    many = "".join(f"Open Ada,C001,aided,{9 + i},0,0,12\n" for i in range(80))
    add(Hostile("marks-eighty-bad-rows", "import marks", imp, ("the full list of 80",), setup=_marks("marks.csv", many)))
    add(
        Hostile(
            "marks-unknown-study",
            "import marks",
            ("study", "import-marks", "NOPE", "{W}/marks.csv"),
            ("NOPE",),
            setup=_marks("marks.csv", "Open Ada,C001,aided,4,0,0,12\n"),
        )
    )
    add(
        Hostile(
            "marks-closed-study",
            "import marks",
            ("study", "import-marks", "DONE", "{W}/marks.csv"),
            ("closed",),
            setup=_marks("marks.csv", "Done Ada,C001,aided,4,0,0,12\n"),
        )
    )
    add(
        Hostile(
            "marks-draft-study",
            "import marks",
            ("study", "import-marks", "DRAFT", "{W}/marks.csv"),
            ("draft", "not open"),
            setup=_marks("marks.csv", "Draft Ada,C001,aided,4,0,0,12\n"),
        )
    )
    return cases


def _exchange_cases() -> list[Hostile]:
    cases: list[Hostile] = []
    add = cases.append
    # exports
    add(
        Hostile(
            "export-out-is-file", "study export", ("study", "export", "DONE", "--out", "{W}/file.txt"), ("file.txt",), setup=_unrelated("file.txt")
        )
    )
    add(
        Hostile(
            "export-out-under-file",
            "study export",
            ("study", "export", "DONE", "--out", "{W}/file.txt/sub"),
            ("file.txt",),
            setup=_unrelated("file.txt"),
        )
    )
    add(Hostile("export-out-unwritable", "study export", ("study", "export", "DONE", "--out", "/proc/tsct-export"), ("/proc",)))
    add(Hostile("export-out-dev-null", "study export", ("study", "export", "DONE", "--out", "/dev/null"), ("/dev/null",)))
    add(
        Hostile(
            "export-format-bogus", "study export", ("study", "export", "DONE", "--out", "{W}/out", "--format", "spss"), ("spss",), absent=("{W}/out",)
        )
    )
    add(Hostile("export-unknown-study", "study export", ("study", "export", "NOPE", "--out", "{W}/out"), ("NOPE",), absent=("{W}/out",)))
    add(
        Hostile(
            "export-nothing-read",
            "study export",
            ("study", "export", "OPEN", "--out", "{W}/out"),
            ("unfinished", "not finished", "no finished", "nothing"),
        ),
    )
    add(Hostile("export-draft", "study export", ("study", "export", "DRAFT", "--out", "{W}/out"), ("DRAFT",), absent=("{W}/out",)))
    # backups
    add(Hostile("backup-onto-live-db", "study backup", ("study", "backup", "--out", "{W}/study.sqlite3"), ("live database",)))
    add(Hostile("backup-onto-live-wal", "study backup", ("study", "backup", "--out", "{W}/study.sqlite3-wal"), ("live database",)))
    add(Hostile("backup-onto-live-db-force", "study backup", ("study", "backup", "--out", "{W}/study.sqlite3", "--force"), ("live database",)))
    add(
        Hostile(
            "backup-onto-live-db-relative",
            "study backup",
            ("study", "backup", "--out", "{W}/./sub/../study.sqlite3"),
            ("live database",),
            setup=_text("sub/keep", ""),
        )
    )
    add(Hostile("backup-existing-file", "study backup", ("study", "backup", "--out", "{W}/notes.txt"), ("notes.txt",), setup=_unrelated("notes.txt")))
    add(
        Hostile(
            "backup-existing-file-force",
            "study backup",
            ("study", "backup", "--out", "{W}/notes.txt", "--force"),
            ("notes.txt",),
            setup=_unrelated("notes.txt"),
        )
    )
    add(
        Hostile(
            "backup-existing-sqlite-force",
            "study backup",
            ("study", "backup", "--out", "{W}/other.sqlite3", "--force"),
            ("other.sqlite3",),
            setup=_other_sqlite("other.sqlite3"),
        )
    )
    add(
        Hostile(
            "backup-previous-no-force",
            "study backup",
            ("study", "backup", "--out", "{W}/old-backup.sqlite3"),
            ("--force",),
            setup=_previous_backup("old-backup.sqlite3"),
        )
    )
    add(Hostile("backup-folder", "study backup", ("study", "backup", "--out", "{W}/folder"), ("folder",), setup=_text("folder/keep", "")))
    add(Hostile("backup-folder-slash", "study backup", ("study", "backup", "--out", "{W}/folder/"), ("folder",), setup=_text("folder/keep", "")))
    add(
        Hostile(
            "backup-under-file",
            "study backup",
            ("study", "backup", "--out", "{W}/notes.txt/b.sqlite3"),
            ("notes.txt",),
            setup=_unrelated("notes.txt"),
        )
    )
    add(Hostile("backup-unwritable", "study backup", ("study", "backup", "--out", "/proc/tsct-backup.sqlite3"), ("/proc",)))
    add(Hostile("backup-dev-full", "study backup", ("study", "backup", "--out", "/dev/full"), ("/dev/full",)))
    # simulated readers
    sim = ("study", "simulate-readers", "OPEN")
    add(Hostile("simulate-no-detector", "simulate-readers", sim, ("--detector-dir",)))
    add(Hostile("simulate-detector-missing", "simulate-readers", (*sim, "--detector-dir", "{W}/nodet"), ("nodet",)))
    add(
        Hostile(
            "simulate-detector-is-file", "simulate-readers", (*sim, "--detector-dir", "{W}/plainfile"), ("plainfile",), setup=_text("plainfile", "x")
        )
    )
    for label, step, words in [
        ("case-folder-missing", _remove("det/C003"), ("C003",)),
        ("zmap-missing", _remove("det/C001/zmap.nii.gz"), ("C001", "zmap.nii.gz")),
        ("zmap-truncated", _truncate("det/C002/zmap.nii.gz", 0.5), ("C002", "zmap.nii.gz")),
        ("zmap-half-voxels", _half_voxels("det/C004/zmap.nii.gz"), ("C004", "zmap.nii.gz")),
        ("subtraction-truncated", _truncate("det/C001/subtraction.nii.gz", 0.4), ("C001", "subtraction.nii.gz")),
        ("zmap-changed-after-lock", _flip_byte("det/C003/zmap.nii.gz"), ("C003", "zmap.nii.gz")),
        (
            "bone-roi-truncated",
            _list_in_manifest("det/C002", "bone_roi", "bone_roi.nii.gz", gzip.compress(b"\x5c\x01" + b"\0" * 400)[:30]),
            ("C002", "bone_roi.nii.gz"),
        ),
        ("manifest-missing", _remove("det/C004/outputs.json"), ("C004", "outputs.json")),
        ("zmap-not-in-manifest", _unlist("det/C001", "zmap"), ("C001", "zmap")),
    ]:
        add(Hostile(f"simulate-{label}", "simulate-readers", (*sim, "--detector-dir", "{W}/det"), words, setup=_chain(_copy_detector, step)))
    add(Hostile("simulate-draft", "simulate-readers", ("study", "simulate-readers", "DRAFT", "--detector-dir", "{DET}"), ("draft", "open")))
    add(Hostile("simulate-closed", "simulate-readers", ("study", "simulate-readers", "DONE", "--detector-dir", "{DET}"), ("closed",)))
    add(Hostile("simulate-unknown", "simulate-readers", ("study", "simulate-readers", "NOPE", "--detector-dir", "{DET}"), ("NOPE",)))
    # accounts
    acc = ("study", "accounts", "add")
    pw = _text("pw.txt", "a-long-enough-password-123\n")
    for label, args, word, setup in [
        ("role-bogus", ("u1", "--role", "superuser", "--password-file", "{W}/pw.txt"), "superuser", pw),
        ("reader-no-name", ("u2", "--role", "reader", "--password-file", "{W}/pw.txt"), "--reader", pw),
        ("reader-unknown", ("u3", "--role", "reader", "--reader", "Dr Nobody", "--password-file", "{W}/pw.txt"), "Dr Nobody", pw),
        ("password-file-missing", ("u4", "--role", "coordinator", "--password-file", "{W}/nope.txt"), "nope.txt", None),
        ("password-file-folder", ("u5", "--role", "coordinator", "--password-file", "{W}"), "password", None),
        ("password-empty", ("u6", "--role", "coordinator", "--password-file", "{W}/pw.txt"), "password", _text("pw.txt", "\n")),
        ("password-short", ("u7", "--role", "coordinator", "--password-file", "{W}/pw.txt"), "password", _text("pw.txt", "abc\n")),
        ("password-binary", ("u8", "--role", "coordinator", "--password-file", "{W}/pw.txt"), "password", _text("pw.txt", b"\xff\xfe\x00bad")),
        ("username-empty", ("", "--role", "coordinator", "--password-file", "{W}/pw.txt"), "user name", pw),
        ("username-blank", ("   ", "--role", "coordinator", "--password-file", "{W}/pw.txt"), "user name", pw),
        ("username-long", ("u" * 300, "--role", "coordinator", "--password-file", "{W}/pw.txt"), "user name", pw),
        ("username-control", ("bad\nname", "--role", "coordinator", "--password-file", "{W}/pw.txt"), "user name", pw),
        ("reader-role-mismatch", ("u9", "--role", "coordinator", "--reader", "Open Ada", "--password-file", "{W}/pw.txt"), "--reader", pw),
    ]:
        add(Hostile(f"accounts-{label}", "accounts", (*acc, *args), (word,), setup=setup))
    add(
        Hostile(
            "accounts-duplicate",
            "accounts",
            (*acc, "taken", "--role", "coordinator", "--password-file", "{W}/pw.txt"),
            ("taken",),
            setup=_chain(pw, _account("taken")),
        )
    )
    add(
        Hostile(
            "accounts-duplicate-case",
            "accounts",
            (*acc, "TAKEN", "--role", "coordinator", "--password-file", "{W}/pw.txt"),
            ("TAKEN", "taken"),
            setup=_chain(pw, _account("taken")),
        )
    )
    add(Hostile("accounts-disable-unknown", "accounts", ("study", "accounts", "disable", "ghost"), ("ghost",)))
    return cases


def _account(name: str) -> Callable[[Path, StudyEnv], None]:
    def setup(w: Path, env: StudyEnv) -> None:
        from reader_study import open_db
        from reader_study.accounts import create_account

        db = open_db(f"sqlite:///{w / 'study.sqlite3'}")
        with db.transaction() as s:
            create_account(s, name, "a-long-enough-password-123", role="coordinator")
        db.dispose()

    return setup


def _other_sqlite(name: str) -> Callable[[Path, StudyEnv], None]:
    def setup(w: Path, env: StudyEnv) -> None:
        import sqlite3

        con = sqlite3.connect(w / name)
        con.execute("CREATE TABLE recipes (name TEXT)")
        con.commit()
        con.close()

    return setup


def _previous_backup(name: str) -> Callable[[Path, StudyEnv], None]:
    def setup(w: Path, env: StudyEnv) -> None:
        shutil.copyfile(env.db_template, w / name)

    return setup


def _analysis_cases() -> list[Hostile]:
    cases: list[Hostile] = []
    add = cases.append
    # input files
    bad_files: dict[str, tuple[str, Callable | None, tuple[str, ...]]] = {
        "missing": ("nope.csv", None, ("nope.csv",)),
        "folder": ("dir.csv", _text("dir.csv/keep", ""), ("folder",)),
        "empty-csv": ("e.csv", _text("e.csv", ""), ("e.csv",)),
        "empty-xlsx": ("e.xlsx", _text("e.xlsx", b""), ("e.xlsx",)),
        "garbage-xlsx": ("g.xlsx", _text("g.xlsx", b"PK\x03\x04 not really a zip" * 20), ("g.xlsx",)),
        "garbage-imrmc": ("g.imrmc", _text("g.imrmc", bytes(range(256)) * 4), ("g.imrmc",)),
        "unknown-extension": ("d.txt", _text("d.txt", "a,b\n1,2\n"), ("d.txt", ".txt")),
        "tidy-no-record-column": ("t.csv", _tidy_variant("t.csv", lambda ls: [",".join(l.split(",")[1:]) for l in ls]), ("record",)),
        "tidy-rating-text": ("t.csv", _tidy_variant("t.csv", _replace_rating("high")), ("rating", "high")),
        "tidy-rating-nan": ("t.csv", _tidy_variant("t.csv", _replace_rating("nan")), ("rating",)),
        "tidy-rating-inf": ("t.csv", _tidy_variant("t.csv", _replace_rating("inf")), ("rating",)),
        "tidy-rating-empty": ("t.csv", _tidy_variant("t.csv", _replace_rating("")), ("rating",)),
        "tidy-unknown-case": ("t.csv", _tidy_variant("t.csv", lambda ls: ls + ["NL,,aided,R01,,C999,,,3.0,,"]), ("C999",)),
        "tidy-unknown-reader": ("t.csv", _tidy_variant("t.csv", lambda ls: ls + ["NL,,aided,R99,,C001,,,3.0,,"]), ("R99",)),
        "tidy-unknown-treatment": ("t.csv", _tidy_variant("t.csv", lambda ls: ls + ["NL,,magic,R01,,C001,,,3.0,,"]), ("magic",)),
        "tidy-unknown-lesion": ("t.csv", _tidy_variant("t.csv", lambda ls: ls + ["LL,,aided,R01,,C001,L9,,3.0,,"]), ("L9",)),
        "tidy-bad-record": ("t.csv", _tidy_variant("t.csv", lambda ls: ls + ["XX,,aided,R01,,C001,,,3.0,,"]), ("XX",)),
        "tidy-weights-not-one": ("t.csv", _tidy_variant("t.csv", lambda ls: [l.replace("C001,L1,1.0", "C001,L1,0.3") for l in ls]), ("weight",)),
        "tidy-truncated": ("t.csv", _tidy_variant("t.csv", lambda ls: ls[:8]), ("t.csv",)),
        "tidy-many-problems": ("t.csv", _tidy_variant("t.csv", lambda ls: ls + [f"NL,,aided,R01,,X{i:03d},,,3.0,," for i in range(60)]), ("X000",)),
        "imrmc-truncated": ("t.imrmc", _imrmc_variant("t.imrmc", lambda ls: ls[:9]), ("t.imrmc",)),
        "imrmc-no-begin": ("t.imrmc", _imrmc_variant("t.imrmc", lambda ls: [l for l in ls if not l.startswith("BEGIN")]), ("BEGIN DATA",)),
        "imrmc-rating-text": ("t.imrmc", _imrmc_variant("t.imrmc", lambda ls: ls[:-1] + ["R02,C003,aided,high"]), ("high",)),
        "imrmc-unknown-case": ("t.imrmc", _imrmc_variant("t.imrmc", lambda ls: ls + ["R02,C999,aided,3"]), ("C999",)),
        "imrmc-bad-truth": ("t.imrmc", _imrmc_variant("t.imrmc", lambda ls: [l.replace("C001,truth,1", "C001,truth,7") for l in ls]), ("truth",)),
        "xlsx-no-truth-sheet": ("x.xlsx", _xlsx_variant("x.xlsx", lambda sh: sh.pop("TRUTH", None)), ("Truth",)),
        "xlsx-rating-text": (
            "x.xlsx",
            _xlsx_variant("x.xlsx", lambda sh: sh["TP"].__setitem__("TP_Rating", ["high"] * len(sh["TP"]))),
            ("rating", "high"),
        ),
        "xlsx-unknown-case": ("x.xlsx", _xlsx_variant("x.xlsx", lambda sh: sh["TP"].__setitem__("CaseID", [9999] * len(sh["TP"]))), ("9999",)),
        "xlsx-no-tp-columns": (
            "x.xlsx",
            _xlsx_variant("x.xlsx", lambda sh: sh.__setitem__("TP", sh["TP"].drop(columns=["LesionID"]))),
            ("LesionID",),
        ),
        "single-treatment": ("t.csv", _tidy_variant("t.csv", lambda ls: [l for l in ls if ",aided," not in l]), ("treatment",)),
    }
    for label, (name, setup, words) in bad_files.items():
        for command in (("analyze", "st"), ("analyze", "fom"), ("analyze", "report", "--no-pdf", "--out", "{W}/reports")):
            cmd = command[1]
            if cmd == "fom" and label in ("single-treatment",):
                continue
            absent = ("{W}/reports",) if cmd == "report" else ()
            add(
                Hostile(f"{cmd}-{label}", f"analysis input ({cmd})", (*command[:2], f"{{W}}/{name}", *command[2:]), words, setup=setup, absent=absent)
            )
    # options and output paths
    add(
        Hostile(
            "st-analysis-rrrc-one-reader",
            "analysis options",
            ("analyze", "st", "{W}/t.csv", "--analysis", "RRRC"),
            ("--analysis FRRC",),
            setup=_tidy_variant("t.csv", lambda ls: [l for l in ls if ",R02," not in l]),
        )
    )
    add(Hostile("st-json-folder", "analysis output", ("analyze", "st", "{TIDY}", "--json", "{W}/out"), ("folder",), setup=_text("out/keep", "")))
    add(
        Hostile(
            "st-json-under-file",
            "analysis output",
            ("analyze", "st", "{TIDY}", "--json", "{W}/notes.txt/r.json"),
            ("notes.txt",),
            setup=_unrelated("notes.txt"),
        )
    )
    add(Hostile("st-json-unwritable", "analysis output", ("analyze", "st", "{TIDY}", "--json", "/proc/tsct/r.json"), ("/proc",)))
    add(Hostile("st-json-dev-full", "analysis output", ("analyze", "st", "{TIDY}", "--json", "/dev/full"), ("/dev/full",)))
    add(Hostile("st-alpha", "analysis options", ("analyze", "st", "{TIDY}", "--alpha", "1.5"), ("alpha",)))
    add(Hostile("st-fom-bogus", "analysis options", ("analyze", "st", "{TIDY}", "--fom", "Accuracy"), ("Accuracy",)))
    add(Hostile("fom-json-folder", "analysis output", ("analyze", "fom", "{TIDY}", "--json", "{W}/out"), ("folder",), setup=_text("out/keep", "")))
    add(
        Hostile("power-json-folder", "analysis output", ("analyze", "power", "{TIDY}", "--json", "{W}/out"), ("folder",), setup=_text("out/keep", ""))
    )
    add(
        Hostile(
            "power-json-under-file",
            "analysis output",
            ("analyze", "power", "{TIDY}", "--json", "{W}/notes.txt/p.json"),
            ("notes.txt",),
            setup=_unrelated("notes.txt"),
        )
    )
    rep = ("analyze", "report", "{TIDY}", "--no-pdf")
    add(
        Hostile("report-subgroups-bogus", "analysis options", (*rep, "--out", "{W}/r", "--subgroups", "bogus"), ("bogus", "reader_group")),
    )
    add(
        Hostile(
            "report-subgroups-one-bogus",
            "analysis options",
            (*rep, "--out", "{W}/r", "--subgroups", "reader_group,shoe_size"),
            ("shoe_size",),
            absent=("{W}/r",),
        )
    )
    add(
        Hostile(
            "report-subgroups-empty-lesion", "analysis options", (*rep, "--out", "{W}/r", "--subgroups", "lesion:"), ("lesion:",), absent=("{W}/r",)
        )
    )
    add(Hostile("report-alpha", "analysis options", (*rep, "--out", "{W}/r", "--alpha", "0"), ("alpha",), absent=("{W}/r",)))
    add(Hostile("report-out-is-file", "analysis output", (*rep, "--out", "{W}/notes.txt"), ("notes.txt",), setup=_unrelated("notes.txt")))
    add(Hostile("report-out-under-file", "analysis output", (*rep, "--out", "{W}/notes.txt/r"), ("notes.txt",), setup=_unrelated("notes.txt")))
    add(Hostile("report-out-unwritable", "analysis output", (*rep, "--out", "/proc/tsct-reports"), ("/proc",)))
    add(Hostile("report-study-folder-is-file", "analysis output", (*rep, "--out", "{W}/r", "--study", "s1"), ("s1",), setup=_unrelated("r/s1")))
    return cases


# ------------------------------------------------------------------------------------------------
# second round: spreadsheet formulas, encodings and special files, duplicated columns and rows,
# a database from a newer TSCT, full and read-only disks
FORMULA = "=cmd|' /C calc'!A0"


def _fifo(rel: str) -> Callable[[Path, StudyEnv], None]:
    def setup(w: Path, env: StudyEnv) -> None:
        os.mkfifo(w / rel)

    return setup


_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # an encrypted .xlsx or an old .xls starts so


def _zip_bomb(name: str) -> Callable[[Path, StudyEnv], None]:
    """The study's JAFROC workbook whose first part declares 4 GB unpacked (the central directory's
    size field is patched, so writing the file costs nothing)."""

    def setup(w: Path, env: StudyEnv) -> None:
        data = bytearray(env.jafroc.read_bytes())
        at = data.index(b"PK\x01\x02")
        data[at + 24 : at + 28] = (0xFFFFFFF0).to_bytes(4, "little")
        (w / name).write_bytes(bytes(data))

    return setup


def _newer_db(name: str) -> Callable[[Path, StudyEnv], None]:
    """A copy of the study database stamped with a schema revision this TSCT does not know."""

    def setup(w: Path, env: StudyEnv) -> None:
        import sqlite3

        shutil.copyfile(env.db_template, w / name)
        con = sqlite3.connect(w / name)
        con.execute("UPDATE alembic_version SET version_num = 'zz99_from_the_future'")
        con.commit()
        con.close()

    return setup


#: True where this process may mount a tmpfs (root in a container): the full/read-only disk cases run only there.
CAN_MOUNT = os.geteuid() == 0 and shutil.which("mount") is not None and os.environ.get("TSCT_TEST_NO_MOUNT") != "1"


def _disk(rel: str, kind: str) -> Callable[[Path, StudyEnv], None]:
    """Mount a tiny tmpfs at ``rel``: ``full`` (filled up) or ``ro`` (read-only). Unmounted by :func:`run_case`."""

    def setup(w: Path, env: StudyEnv) -> None:
        import subprocess

        target = w / rel
        target.mkdir(parents=True)
        options = "size=16k" if kind == "full" else "ro,size=64k"
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], check=True, capture_output=True)
        if kind == "full":
            (target / "filler").write_bytes(b"x" * 14000)

    return setup


def _unmount_under(w: Path) -> None:
    import subprocess

    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return
    for line in mounts:
        point = line.split()[1] if len(line.split()) > 1 else ""
        if point.startswith(str(w) + "/"):
            subprocess.run(["umount", point], capture_output=True, check=False)


def _second_round_cases() -> list[Hostile]:
    cases: list[Hostile] = []
    add = cases.append
    radd = ("study", "readers", "add", "DRAFT")
    add(Hostile("readers-add-formula-name", "spreadsheet formulas", (*radd, "--name", FORMULA), ("starts with '='",)))
    add(Hostile("readers-add-plus-name", "spreadsheet formulas", (*radd, "--name", "+SUM(A1:A9)"), ("starts with '+'",)))
    add(Hostile("readers-add-minus-name", "spreadsheet formulas", (*radd, "--name", "-2+3"), ("starts with '-'",)))
    add(Hostile("readers-add-formula-group", "spreadsheet formulas", (*radd, "--name", "Dr Zed", "--group", "@SUM(A1)"), ("group '@SUM(A1)'",)))
    for label, content, word in [
        ("formula-name", f'name,group\n"{FORMULA}",resident\n', "starts with '='"),
        ("formula-group", 'name,group\nDr Q,=HYPERLINK("http://x")\n', "starts with '='"),
        ("duplicate-column", "name,group,name\nDr Q,resident,Dr R\n", "more than once"),
        ("cell-over-csv-limit", 'name,group\n"Dr ' + "q" * 200_000 + "\n", "longer than"),
        ("utf16-without-bom", "name,group\nDr Q,resident\n".encode("utf-16-le"), "UTF-16"),
        ("latin1", "name,group\nDr Qu\xe9bec,resident\n".encode("latin-1"), "not UTF-8"),
    ]:
        add(Hostile(f"readers-file-{label}", "readers file", (*radd, "--file", "{W}/readers.csv"), (word,), setup=_text("readers.csv", content)))
        add(
            Hostile(
                f"create-readers-{label}",
                "readers file",
                ("study", "create", "NEW", "--case-list", "{CASES}", "--readers", "{W}/readers.csv"),
                (word,),
                setup=_text("readers.csv", content),
            )
        )
    add(Hostile("readers-file-named-pipe", "readers file", (*radd, "--file", "{W}/readers.csv"), ("not a regular file",), setup=_fifo("readers.csv")))
    imp = ("study", "import-marks", "OPEN", "{W}/marks.csv")
    for label, content, word in [
        ("duplicate-column", "reader,case_id,treatment,rating,rating,x_mm,y_mm,z_mm\nOpen Ada,C001,aided,4,5,0,0,12\n", "more than once"),
        ("cell-over-csv-limit", MARK_HEADER + 'Open Ada,C001,aided,4,0,0,"' + "1" * 200_000 + "\n", "longer than"),
        ("duplicate-mark", MARK_HEADER + "Open Ada,C001,aided,4,0,0,12\nOpen Ada,C001,aided,4,0,0,12\n", "repeats the mark of row 2"),
        ("duplicate-mark-reader-code", MARK_HEADER + "Open Ada,C001,aided,4,0,0,12\nR01,C001,aided,3,0.2,0,12\n", "repeats the mark of row 2"),
        ("utf16-without-bom", (MARK_HEADER + "Open Ada,C001,aided,4,0,0,12\n").encode("utf-16-le"), "UTF-16"),
        ("nul-bytes", (MARK_HEADER + "Open Ada,C001,aided,4,0,0,12\n").encode().replace(b"Ada", b"A\x00a"), "NUL"),
    ]:
        add(Hostile(f"marks-{label}", "import marks", imp, (word,), setup=_text("marks.csv", content)))
    add(Hostile("marks-named-pipe", "import marks", imp, ("not a regular file",), setup=_fifo("marks.csv")))
    add(Hostile("marks-device", "import marks", imp, ("not a regular file",), setup=lambda w, env: os.symlink("/dev/zero", w / "marks.csv")))
    for cmd in ("st", "fom"):
        args = ("analyze", cmd, "{W}/t.csv")
        add(
            Hostile(
                f"{cmd}-tidy-duplicate-column",
                "analysis input (second round)",
                args,
                ("more than once",),
                setup=_tidy_variant("t.csv", lambda ls: [ls[0] + ",rating"] + [line + ",1" for line in ls[1:]]),
            )
        )
        add(Hostile(f"{cmd}-tidy-named-pipe", "analysis input (second round)", args, ("not a regular file",), setup=_fifo("t.csv")))
        add(
            Hostile(
                f"{cmd}-tidy-utf16-without-bom",
                "analysis input (second round)",
                args,
                ("UTF-16",),
                setup=lambda w, env: (w / "t.csv").write_bytes(env.tidy.read_text().encode("utf-16-le")),
            )
        )
    for cmd in ("st", "fom", "report"):
        tail = ("--no-pdf", "--out", "{W}/r") if cmd == "report" else ()
        for label, setup, word in [
            ("xlsx-zip-bomb", _zip_bomb("x.xlsx"), "zip bomb"),
            ("xlsx-password-protected", _text("x.xlsx", _OLE_MAGIC + bytes(4000)), "password-protected"),
        ]:
            add(
                Hostile(
                    f"{cmd}-{label}", "analysis input (second round)", ("analyze", cmd, "{W}/x.xlsx", *tail), (word,), setup=setup, absent=("{W}/r",)
                )
            )
    add(
        Hostile(
            "report-tidy-duplicate-column",
            "analysis input (second round)",
            ("analyze", "report", "{W}/t.csv", "--no-pdf", "--out", "{W}/r"),
            ("more than once",),
            setup=_tidy_variant("t.csv", lambda ls: [ls[0] + ",reader"] + [line + ",R01" for line in ls[1:]]),
            absent=("{W}/r",),
        )
    )
    newer = ("study", "--db", "sqlite:///{W}/newer.sqlite3")
    for label, args in [
        ("list", ("list",)),
        ("init-db", ("init-db",)),
        ("status", ("status", "OPEN")),
        ("backup", ("backup", "--out", "{W}/b.sqlite3")),
        ("export", ("export", "DONE", "--out", "{W}/x")),
    ]:
        add(
            Hostile(
                f"db-newer-schema-{label}",
                "database",
                (*newer, *args),
                ("newer TSCT",),
                setup=_newer_db("newer.sqlite3"),
                absent=("{W}/b.sqlite3", "{W}/x"),
            )
        )
    if CAN_MOUNT:
        for kind, word in (("full", "full"), ("ro", "not writable")):
            add(
                Hostile(
                    f"backup-disk-{kind}",
                    "disk and mounts",
                    ("study", "backup", "--out", "{W}/disk/b.sqlite3"),
                    (word,),
                    setup=_disk("disk", kind),
                    absent=("{W}/disk/b.sqlite3",),
                )
            )
            add(
                Hostile(
                    f"export-disk-{kind}",
                    "disk and mounts",
                    ("study", "export", "DONE", "--out", "{W}/disk/x"),
                    (word,),
                    setup=_disk("disk", kind),
                    absent=("{W}/disk/x",),
                )
            )
            add(
                Hostile(
                    f"report-disk-{kind}",
                    "disk and mounts",
                    ("analyze", "report", "{TIDY}", "--no-pdf", "--out", "{W}/disk/r"),
                    ("disk/r",),
                    setup=_disk("disk", kind),
                    absent=("{W}/disk/r",),
                )
            )
            add(
                Hostile(
                    f"st-json-disk-{kind}",
                    "disk and mounts",
                    ("analyze", "st", "{TIDY}", "--json", "{W}/disk/r.json"),
                    ("r.json",),
                    setup=_disk("disk", kind),
                    absent=("{W}/disk/r.json",),
                )
            )
    return cases


def all_cases() -> list[Hostile]:
    """Every hostile case, in a stable order (ids are unique)."""
    cases = _study_cases() + _marks_cases() + _exchange_cases() + _analysis_cases() + _second_round_cases()
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})
    return cases


# ------------------------------------------------------------------------------------------------
_DB_FILES = ("study.sqlite3", "study.sqlite3-wal", "study.sqlite3-shm", "study.sqlite3-journal")


def _snapshot(folder: Path) -> dict[str, str]:
    out = {}
    for p in folder.rglob("*"):
        if p.is_file() and p.name not in _DB_FILES:
            out[p.relative_to(folder).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _fill(text: str, w: Path, env: StudyEnv) -> str:
    return (
        text.replace("{W}", str(w))
        .replace("{CASES}", str(env.case_list))
        .replace("{DET}", str(env.detector_dir))
        .replace("{READERS}", str(env.readers_csv))
        .replace("{JAFROC}", str(env.jafroc))
        .replace("{IMRMC}", str(env.imrmc))
        .replace("{TIDY}", str(env.tidy))
    )


def run_case(case: Hostile, w: Path, env: StudyEnv) -> Outcome:
    """Run one hostile case in folder ``w`` (created) and judge it."""
    w.mkdir(parents=True, exist_ok=True)
    copy_db(env, w)
    try:
        if case.setup is not None:
            case.setup(w, env)
        before = _snapshot(w)
        args = [_fill(a, w, env) for a in case.args]
        environ = {
            "TSCT_DATABASE_URL": f"sqlite:///{w / 'study.sqlite3'}",
            "TSCT_DETECTOR_DIR": None,
            "COLUMNS": "400",
            "TSCT_DATA_DIR": str(w / "data"),
            "TMPDIR": str(w / ".tmp"),
            **case.env,
        }
        (w / ".tmp").mkdir(exist_ok=True)
        return _invoke_and_judge(case, w, env, args, environ, before)
    finally:
        _unmount_under(w)  # tmpfs mounted by a disk case's setup


def _invoke_and_judge(case: Hostile, w: Path, env: StudyEnv, args: list[str], environ: dict, before: dict[str, str]) -> Outcome:
    from typer.testing import CliRunner

    import tsct_cli

    result = CliRunner().invoke(tsct_cli.app, args, env=environ, catch_exceptions=True)
    output = result.output or ""
    flat = " ".join(output.split())
    exc = result.exception
    if (exc is not None and not isinstance(exc, SystemExit)) or "Traceback" in output:
        return Outcome(case, "traceback", result.exit_code, flat, f"{type(exc).__name__}: {exc}" if exc else "")
    if result.exit_code == 0:
        return Outcome(case, "silent", 0, flat)
    after = _snapshot(w)
    left = sorted(k for k in after if k not in before and not k.endswith(".problems.txt") and not k.startswith(".tmp/"))
    changed = sorted(k for k in before if k in after and before[k] != after[k])
    gone = [a for a in (_fill(x, w, env) for x in case.absent) if Path(a).exists()]
    if left or changed or gone:
        return Outcome(case, "partial", result.exit_code, flat, f"left {left} changed {changed} present {gone}")
    lowered = flat.lower()
    if result.exit_code in case.exit_codes and any(word.lower() in lowered for word in case.culprit):
        return Outcome(case, "clear", result.exit_code, flat)
    return Outcome(case, "vague", result.exit_code, flat, f"expected exit {case.exit_codes} and one of {case.culprit}")
