"""``tsct study …``: the study coordinator's commands.

The database is ``--db URL`` (before the command), else ``$TSCT_DATABASE_URL``, else the SQLite
file ``$TSCT_DATA_DIR/reader-study.sqlite3``. Every change is recorded in the audit log under the
name given with ``--actor`` (default: ``cli:<login name>``).
"""

from __future__ import annotations

import contextlib
import getpass
import math
from pathlib import Path
from typing import Iterator, List, Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)

app = typer.Typer(
    help=(
        "Create and run reader studies: cases and truth, readers, the reading design (crossover with washout "
        "or sequential), lock, progress, exports for JAFROC/iMRMC, backups and imported marks."
    ),
    no_args_is_help=True,
)
readers_app = typer.Typer(help="Add and list readers.", no_args_is_help=True)
accounts_app = typer.Typer(help="Log-in accounts for the reading app.", no_args_is_help=True)
app.add_typer(readers_app, name="readers")
app.add_typer(accounts_app, name="accounts")


class _State:
    db_url: Optional[str] = None
    actor: str = ""


_state = _State()


@app.callback()
def _main(
    db: Optional[str] = typer.Option(
        None,
        "--db",
        envvar="TSCT_DATABASE_URL",
        help="Database URL: sqlite:///FILE or postgresql://USER@HOST/DB (default: SQLite file under $TSCT_DATA_DIR or ./tsct-data).",
    ),
    actor: Optional[str] = typer.Option(None, "--actor", help="Your name for the audit log (default: cli:<login name>)."),
) -> None:
    _state.db_url = db
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        user = "unknown"
    _state.actor = actor or f"cli:{user}"


def _fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]Error:[/] {message}")
    raise typer.Exit(code)


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Turn the package's refusals into one clear message and exit code 2 (no traceback)."""
    from cases import CaseListError

    from .errors import InputFileError, ReaderStudyError

    try:
        yield
    except (InputFileError, CaseListError) as exc:
        problems = getattr(exc, "problems", [])
        err_console.print(str(exc).splitlines()[0], soft_wrap=True, highlight=False, markup=False)
        table = Table(show_lines=False)
        table.add_column("row", justify="right")
        table.add_column("column")
        table.add_column("what to fix")
        shown = problems if len(problems) <= 50 else problems[:50]
        for p in shown:
            table.add_row("" if p.row is None else str(p.row), p.column or "", p.message)
        err_console.print(table)
        if len(shown) < len(problems):
            from tsct_files import problems_file

            full = problems_file(
                [f"row {p.row if p.row is not None else '-'}, {p.column or '-'}: {p.message}" for p in problems],
                near=getattr(exc, "path", None),
                stem="tsct-study-problems",
            )
            err_console.print(
                f"{len(problems) - len(shown)} more problem(s) not shown; the full list of {len(problems)} is in {full}",
                soft_wrap=True,
                highlight=False,
            )
        raise typer.Exit(2) from None
    except ReaderStudyError as exc:
        _fail(str(exc))
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    except OSError as exc:  # a folder that cannot be written, a disk that is full …
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        _fail(f"{where}{exc.strerror or exc}; nothing was changed.")
    except Exception as exc:  # noqa: BLE001 - database driver errors: one line, not a traceback
        from sqlalchemy.exc import ArgumentError, SQLAlchemyError

        if isinstance(exc, ArgumentError):
            _fail(f"--db {_state.db_url!r} is not a database URL; give sqlite:///FILE or postgresql://USER@HOST/DB.")
        if isinstance(exc, SQLAlchemyError):
            reason = " ".join(str(getattr(exc, "orig", None) or exc).split())[:300]
            _fail(f"The database {_safe_url()} refused the request ({reason}); nothing was changed.")
        raise


def _safe_url() -> str:
    from sqlalchemy.engine import make_url

    from .db import default_database_url

    try:
        return make_url(_state.db_url or default_database_url()).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for a message
        return str(_state.db_url)


def _db(create: bool = False):  # noqa: ANN202
    from sqlalchemy.engine import make_url

    from .db import default_database_url, init_db, open_db

    if not create:
        url = make_url(_state.db_url or default_database_url())
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") and not Path(url.database).is_file():
            _fail(f"There is no database at {url.database}; create it with `tsct study init-db` (or give --db / $TSCT_DATABASE_URL).")
    return init_db(_state.db_url) if create else open_db(_state.db_url)


# ------------------------------------------------------------------------------------------------
@app.command("init-db")
def init_database() -> None:
    """Create the database schema, or upgrade it to this version of TSCT (safe to run again)."""
    with _errors():
        db = _db(create=True)
        console.print(f"[bold green]Database ready[/] {db.safe_url} (schema revision {db.schema_revision()})")


@app.command("create")
def create(
    code: str = typer.Argument(..., help="Short unique study code, e.g. TS-2026."),
    case_list: Path = typer.Option(..., "--case-list", help="Case-list CSV with the truth lesions (docs/case-list.md)."),
    readers: Optional[Path] = typer.Option(
        None, "--readers", help="Readers CSV: name, group (e.g. board-certified, resident), role, experience_years."
    ),
    training_cases: Optional[Path] = typer.Option(None, "--training-cases", help="Case list of training cases, read first and never analysed."),
    title: str = typer.Option("", help="Study title."),
    paradigm: str = typer.Option("FROC", help="FROC (mark each lesion with a rating) or ROC (one rating per case)."),
    scale: str = typer.Option("1-5", "--scale", help="Rating scale: 1-5 (whole numbers) or 0-100."),
    treatment: Optional[List[str]] = typer.Option(
        None,
        "--treatment",
        help="Reading condition CODE or CODE=OVERLAY+OVERLAY, in reading order; repeat. Default: unaided, aided=subtraction+zmap.",
    ),
    acceptance: str = typer.Option(
        "radius", help="When a mark hits a lesion: 'radius' (within --radius-mm of its centre) or 'extent' (inside the lesion's label map or sphere)."
    ),
    radius_mm: float = typer.Option(10.0, "--radius-mm", help="Acceptance radius in mm for the radius rule."),
    washout_days: float = typer.Option(28.0, "--washout-days", help="Minimum days between a reader's sessions (crossover design)."),
    seed: int = typer.Option(0, help="Seed of the design's random choices (groups, blocks, case orders)."),
    hash_files: bool = typer.Option(True, help="Store the SHA-256 of every exam and label map (part of the lock's content hash)."),
    detector_dir: Optional[Path] = typer.Option(
        None,
        "--detector-dir",
        help="The detector's batch output folder (DIR/<case>/outputs.json): every case's outputs are checked (finished, on the exam's grid) and recorded in the study's audit log.",
    ),
) -> None:
    """Create a draft study from a case list (with truth) and, optionally, a readers file."""
    from .coordinator import create_study
    from .study_inputs import DEFAULT_TREATMENTS, parse_treatment, read_readers_file

    with _errors():
        specs = read_readers_file(readers) if readers else []
        treatments = tuple(parse_treatment(t) for t in treatment) if treatment else DEFAULT_TREATMENTS
        db = _db(create=True)
        with db.transaction() as s:
            study = create_study(
                s,
                code=code,
                case_list=case_list,
                readers=specs,
                title=title,
                paradigm=paradigm,
                rating_scale=scale,
                treatments=treatments,
                acceptance_rule=acceptance,
                acceptance_radius_mm=radius_mm if acceptance == "radius" else None,
                washout_days=washout_days,
                seed=seed,
                training_case_list=training_cases,
                hash_files=hash_files,
                actor=_state.actor,
                detector_dir=detector_dir,
            )
            n_cases = sum(1 for c in study.cases if not c.is_training)
            n_train = sum(1 for c in study.cases if c.is_training)
        console.print(
            f"[bold green]Created study {code}[/] ({paradigm}, scale {scale}, {len(treatments)} treatments: {', '.join(t.code for t in treatments)}): "
            f"{n_cases} cases, {n_train} training cases, {len(specs)} readers. Next: tsct study design {code}"
        )


@app.command("list")
def list_cmd() -> None:
    """List the studies in the database."""
    from .coordinator import list_studies

    with _errors():
        db = _db()
        with db.snapshot() as s:
            frame = list_studies(s)
        _print_frame(frame, "Studies")


@readers_app.command("add")
def readers_add(
    code: str = typer.Argument(..., help="Study code."),
    name: Optional[str] = typer.Option(None, help="Reader's name (unique)."),
    group: str = typer.Option("", help="Group, e.g. board-certified or resident (used to balance the design and for subgroup analyses)."),
    role: str = typer.Option("radiologist", help="Role, e.g. radiologist."),
    years: Optional[float] = typer.Option(None, help="Years of experience."),
    file: Optional[Path] = typer.Option(None, "--file", help="A readers CSV instead of one --name."),
) -> None:
    """Add readers to a draft study (one with --name, or many with --file)."""
    from .coordinator import add_readers
    from .study_inputs import ReaderSpec, read_readers_file

    with _errors():
        if (name is None) == (file is None):
            _fail("Give either --name or --file.")
        specs = read_readers_file(file) if file else [ReaderSpec(name or "", group, role, years)]
        db = _db()
        with db.transaction() as s:
            added = add_readers(s, code, specs, actor=_state.actor)
            codes = [sr.reader_code for sr in added]
        console.print(f"[bold green]Added {len(codes)} reader(s)[/] to {code}: {', '.join(codes)}")


@readers_app.command("list")
def readers_list(code: str = typer.Argument(..., help="Study code.")) -> None:
    """List a study's readers with their codes and groups."""
    import pandas as pd
    from sqlalchemy import select

    from .coordinator import get_study
    from .models import Reader, StudyReader

    with _errors():
        db = _db()
        with db.snapshot() as s:
            study = get_study(s, code)
            rows = s.execute(
                select(StudyReader.reader_code, Reader.name, Reader.group, Reader.role, Reader.experience_years, StudyReader.sequence_group)
                .join(Reader, Reader.id == StudyReader.reader_id)
                .where(StudyReader.study_id == study.id)
                .order_by(StudyReader.reader_code)
            ).all()
        frame = pd.DataFrame(rows, columns=["code", "name", "group", "role", "years", "sequence group"])
        _print_frame(frame, f"Readers of {code}")


def _print_frame(frame, title: str) -> None:  # noqa: ANN001
    table = Table(title=title)
    for col in frame.columns:
        table.add_column(str(col))
    for row in frame.itertuples(index=False):
        table.add_row(*[_fmt(v) for v in row])
    console.print(table)


def _fmt(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.1f}" if not value.is_integer() else f"{value:.0f}"
    if hasattr(value, "strftime"):
        try:
            return value.strftime("%Y-%m-%d %H:%M")  # type: ignore[attr-defined]
        except ValueError:
            return ""
    return str(value)


@app.command("design")
def design(
    code: str = typer.Argument(..., help="Study code."),
    kind: str = typer.Option(
        "crossover", help="crossover: sessions separated by the washout, counterbalanced; sequential: each case unaided then aided in one session."
    ),
    blocks: Optional[int] = typer.Option(
        None,
        help="Crossover case blocks: 1 (AB/BA: a whole session per treatment) or the number of treatments (default: treatments mixed within each session).",
    ),
    seed: Optional[int] = typer.Option(None, help="Seed (default: the study's seed)."),
    show: bool = typer.Option(False, help="Only show the stored design; do not make a new one."),
    reads: bool = typer.Option(False, help="Also list every reading in order."),
) -> None:
    """Make (or show) the fully crossed reading design, print it as a table and check its balance."""
    from .coordinator import get_study, load_design, make_design

    with _errors():
        db = _db()
        if show:
            with db.snapshot() as s:
                plan = load_design(s, code)
                washout = get_study(s, code).washout_days
        else:
            with db.transaction() as s:
                plan = make_design(s, code, kind=kind, case_blocks=blocks, seed=seed, actor=_state.actor)
                washout = get_study(s, code).washout_days
        console.print(plan.summary())
        _print_frame(plan.schedule_frame(), f"Design of {code}: study cases per reader, session and treatment")
        if reads:
            _print_frame(plan.to_frame(), "Readings in order")
        report = plan.check_balance(washout_days=washout)
        colour = {"ok": "green", "warning": "yellow", "error": "red"}
        console.print(f"[bold]Balance check[/]: {'balanced' if report.balanced else ('usable, with warnings' if report.ok else 'NOT usable')}")
        for c in report.checks:
            console.print(f"  [{colour[c.level]}]{c.level:>7}[/] {c.name}: {c.message}")
        if not report.ok:
            raise typer.Exit(1)


@app.command("lock")
def lock(
    code: str = typer.Argument(..., help="Study code."),
    detector_dir: Optional[Path] = typer.Option(
        None,
        "--detector-dir",
        envvar="TSCT_DETECTOR_DIR",
        help="The detector's batch output folder readers' overlays come from (DIR/<case id>/); every output file is hashed into the lock.",
    ),
    without_detector_outputs: bool = typer.Option(
        False,
        "--without-detector-outputs",
        help="Lock a study with aided treatments without hashing detector outputs (not recommended).",
    ),
) -> None:
    """Freeze truth, design, settings and the files readers read (exams, label maps, detector outputs): stores their SHA-256 content hash. Any later change is refused or reported."""
    from .lock import lock_study

    with _errors():
        if detector_dir is not None and without_detector_outputs:
            _fail("Give either --detector-dir or --without-detector-outputs, not both.")
        if detector_dir is not None and not detector_dir.is_dir():
            _fail(f"--detector-dir {detector_dir} is not a folder; give the detector's batch output folder (DIR/<case id>/).")
        db = _db()
        with db.transaction() as s:
            digest = lock_study(s, code, actor=_state.actor, detector_dir=detector_dir, require_detector=not without_detector_outputs)
            from sqlalchemy import func, select

            from .models import Study, StudyFile

            n_files = s.scalar(select(func.count()).select_from(StudyFile).join(Study, Study.id == StudyFile.study_id).where(Study.code == code))
        console.print(f"[bold green]Locked {code}[/]: content hash {digest} over truth, design and {n_files} file(s). Next: tsct study open {code}")


@app.command("verify")
def verify(code: str = typer.Argument(..., help="Study code.")) -> None:
    """Recompute the content hash of a locked study and re-hash every locked file; names each file that changed, by case."""
    from .integrity import describe_changes
    from .lock import verify_study

    with _errors():
        db = _db()
        with db.snapshot() as s:
            result = verify_study(s, code)
        if result.stored_hash is None:
            _fail(f"Study {code} is not locked; its content hash would be {result.now_hash}.", 1)
        if result.ok:
            console.print(
                f"[bold green]OK[/] {code}: truth, design and {result.n_files} locked file(s) unchanged since the lock (sha256 {result.stored_hash})."
            )
            with db.snapshot() as s:
                from sqlalchemy import func, select

                from .models import Study, StudyFile, Treatment

                study_id = s.scalar(select(Study.id).where(Study.code == code))
                aided = s.scalar(select(func.count()).select_from(Treatment).where(Treatment.study_id == study_id, Treatment.overlays != ""))
                det = s.scalar(select(func.count()).select_from(StudyFile).where(StudyFile.study_id == study_id, StudyFile.role == "detector"))
            if aided and not det:
                console.print(
                    "[yellow]Note:[/] the detector outputs readers see in the aided treatment(s) were not part of this lock (locked without --detector-dir)."
                )
            return
        if result.changes:
            message = f"{code}: {describe_changes(result.changes)}."
            if len(result.changes) > 10:
                from tsct_files import problems_file

                message += f" Full list: {problems_file([str(c) for c in result.changes], stem=f'tsct-verify-{code}')}"
            if not result.hash_matches:
                message += " The truth or design in the database changed too."
            _fail(message, 1)
        _fail(f"{code}: content hash differs: stored {result.stored_hash}, now {result.now_hash}. Truth or design changed after the lock.", 1)


@app.command("open")
def open_cmd(code: str = typer.Argument(..., help="Study code.")) -> None:
    """Open a locked study for reading."""
    from .coordinator import open_study

    with _errors():
        db = _db()
        with db.transaction() as s:
            open_study(s, code, actor=_state.actor)
        console.print(f"[bold green]Study {code} is open[/] for reading.")


@app.command("close")
def close_cmd(code: str = typer.Argument(..., help="Study code.")) -> None:
    """Close an open study: no more reading or marks."""
    from .coordinator import close_study

    with _errors():
        db = _db()
        with db.transaction() as s:
            close_study(s, code, actor=_state.actor)
        console.print(f"[bold green]Study {code} is closed.[/] Export it with: tsct study export {code} --out DIR")


@app.command("status")
def status(code: str = typer.Argument(..., help="Study code.")) -> None:
    """Progress per reader and session, time per case, and when each next session may open (washout)."""
    from .status import study_status

    with _errors():
        db = _db()
        with db.snapshot() as s:
            st = study_status(s, code)
        frame = st.to_frame()
        table = frame[["reader", "name", "group", "session", "status"]].copy()
        table["done"] = [f"{f}/{n}" for f, n in zip(frame["finished"], frame["reads"], strict=True)]
        table["median s"] = frame["median_time_s"]
        table["opens"] = [
            "waived" if w else (_fmt(t) if t is not None and t == t else "")
            for t, w in zip(frame["not_before"], frame["washout_waived"], strict=True)
        ]
        _print_frame(table, f"Progress of {code} (session k+1 opens after the washout)")
        console.print(st.summary())


@app.command("waive-washout")
def waive(
    code: str = typer.Argument(..., help="Study code."),
    reader: str = typer.Option(..., help="Reader's name."),
    session: int = typer.Option(..., help="Session index to open early."),
    reason: str = typer.Option(..., help="Why (kept in the audit log)."),
) -> None:
    """Let one reader open a session before the washout has passed (audited)."""
    from .coordinator import waive_washout

    with _errors():
        db = _db()
        with db.transaction() as s:
            waive_washout(s, code, reader, session, reason=reason, actor=_state.actor)
        console.print(f"Washout waived for {reader}, session {session}.")


@app.command("export")
def export(
    code: str = typer.Argument(..., help="Study code."),
    out: Path = typer.Option(..., "--out", help="Folder to write the files to."),
    format: Optional[List[str]] = typer.Option(
        None, "--format", help="jafroc (RJafroc Excel), imrmc (FDA iMRMC), csv (tidy tables); repeat. Default: all."
    ),
    allow_incomplete: bool = typer.Option(False, help="Export the readers who have finished, leaving out the others (named in the output)."),
) -> None:
    """Score every finished reading against the truth and export for analysis (JAFROC Excel, iMRMC, CSV)."""
    from .exchange import EXPORT_FORMATS, export_study

    with _errors():
        db = _db()
        result = export_study(
            db, code, out, formats=tuple(format) if format else EXPORT_FORMATS, allow_incomplete=allow_incomplete, actor=_state.actor
        )
        console.print(result.summary())


@app.command("backup")
def backup(
    out: Path = typer.Option(
        ..., "--out", help="Backup file to write (SQLite database copy, or pg_dump archive for PostgreSQL); never the live database."
    ),
    force: bool = typer.Option(False, "--force", help="Replace --out if it is an earlier TSCT backup (any other file is never replaced)."),
) -> None:
    """Write a consistent snapshot of the whole database while readers keep working; the copy is checked after writing."""
    from .backup import backup_database

    with _errors():
        db = _db()
        result = backup_database(db, out, actor=_state.actor, force=force)
        console.print(f"[bold green]{result.summary()}[/]")


@app.command("import-marks")
def import_marks_cmd(
    code: str = typer.Argument(..., help="Study code."),
    file: Path = typer.Argument(
        ..., help="CSV: reader, case_id, treatment, rating, and x_mm,y_mm,z_mm or index_x,index_y,index_z; optional client_key."
    ),
    complete_reads: bool = typer.Option(False, help="Also finish the other readings of the readers in the file as read without findings."),
) -> None:
    """Import marks made with another tool, checked row by row; all or nothing."""
    from .exchange import import_marks

    with _errors():
        db = _db()
        with db.transaction() as s:
            result = import_marks(s, code, file, complete_reads=complete_reads, actor=_state.actor)
        console.print(f"[bold green]{result.summary()}[/]")


@app.command("simulate-readers")
def simulate_readers_cmd(
    code: str = typer.Argument(..., help="Study code (an open study)."),
    detector_dir: Optional[Path] = typer.Option(
        None,
        "--detector-dir",
        help="The detector's batch output folder (DIR/<case>/outputs.json and the files it lists); the aided reading's overlay comes from there.",
    ),
    seed: int = typer.Option(0, help="Random seed: the same seed gives the same readings."),
) -> None:
    """Fill an open study with readings by simulated readers that read the images (for demos and method studies).

    Unaided they see the CT alone; aided they also see the subtraction z-map. Their marks go
    through the same reading service as the app. See docs/simulated-readers.md.
    """
    from rich.progress import Progress

    from .simulation import simulate_readers

    with _errors():
        db = _db()
        with Progress(console=console) as bar:
            task = bar.add_task("simulated reading", total=None)

            def _progress(done: int, total: int, what: str) -> None:
                bar.update(task, completed=done, total=total, description=what)

            summary = simulate_readers(db, code, detector_dir=detector_dir, seed=seed, progress=_progress)
        console.print(f"[bold green]Simulated readings saved[/]: {summary}")


@app.command("audit")
def audit_cmd(
    code: Optional[str] = typer.Argument(None, help="Study code (default: every event)."),
    limit: int = typer.Option(50, help="Show the last N events."),
) -> None:
    """Show the audit log (newest last)."""
    from .audit import audit_frame
    from .coordinator import get_study

    with _errors():
        if limit < 1:
            _fail(f"--limit must be 1 or more, got {limit}.")
        db = _db()
        with db.snapshot() as s:
            if code is not None:
                get_study(s, code)  # an unknown study is an error, not an empty log
            frame = audit_frame(s, study_code=code, limit=limit)
        _print_frame(frame, "Audit log")


@accounts_app.command("add")
def accounts_add(
    username: str = typer.Argument(..., help="Log-in name."),
    role: str = typer.Option(..., help="reader, coordinator, statistician or admin."),
    reader: Optional[str] = typer.Option(None, help="For a reader account: the reader's name."),
    password_file: Optional[Path] = typer.Option(None, help="Read the initial password from this file instead of prompting."),
) -> None:
    """Create a log-in with an initial password (the user must change it at first log-in)."""
    from .accounts import create_account

    with _errors():
        if password_file is not None:
            if not password_file.is_file():
                _fail(f"--password-file {password_file} is not a file; give a text file holding the initial password.")
            try:
                password = password_file.read_text(encoding="utf-8").strip()
            except UnicodeDecodeError:
                _fail(f"--password-file {password_file} is not UTF-8 text; write the initial password as plain text.")
        else:
            password = typer.prompt("Initial password", hide_input=True, confirmation_prompt=True)
        db = _db()
        with db.transaction() as s:
            info = create_account(s, username, password, role=role, reader_name=reader, actor=_state.actor)
        console.print(f"[bold green]Account {info.username}[/] ({info.role}) created; the password must be changed at first log-in.")


@accounts_app.command("disable")
def accounts_disable(username: str = typer.Argument(..., help="Log-in name.")) -> None:
    """Disable an account (it can no longer log in; nothing is deleted)."""
    from .accounts import set_account_active

    with _errors():
        db = _db()
        with db.transaction() as s:
            set_account_active(s, username, False, actor=_state.actor)
        console.print(f"Account {username} disabled.")


@accounts_app.command("unlock")
def accounts_unlock(username: str = typer.Argument(..., help="Log-in name.")) -> None:
    """End an account's lockout after failed log-ins (the record of the failures stays; audited)."""
    from .accounts import unlock_account

    with _errors():
        db = _db()
        with db.transaction() as s:
            unlock_account(s, username, actor=_state.actor)
        console.print(f"Account {username} unlocked.")


# Readers' marks as DICOM SR: _marks_sr_cli.py.
from ._marks_sr_cli import register_marks_sr_command as _register_marks_sr_command  # noqa: E402

_register_marks_sr_command(app)
