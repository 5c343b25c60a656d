"""``tsct cases pull``: retrieve prior/current CT series from a PACS (DICOMweb or DIMSE) into a case store;
``tsct cases push``: store DICOM files on a PACS over STOW-RS."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def _fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]Error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def pull_command(
    store: Path = typer.Argument(..., help="Case store folder: one sub-folder per case with prior/ and current/, plus cases.csv."),
    url: str | None = typer.Option(None, "--url", help="DICOMweb root of the PACS, e.g. http://pacs:8042/dicom-web (QIDO-RS and WADO-RS)."),
    dimse: str | None = typer.Option(None, "--dimse", help="Instead of --url: HOST:PORT of the PACS's DICOM service (C-FIND, then C-MOVE or C-GET)."),
    called_aet: str | None = typer.Option(None, "--called-aet", help="DIMSE: the PACS's AE title."),
    aet: str = typer.Option("TSCT", "--aet", help="DIMSE: tsct's own (calling) AE title, as the PACS knows it."),
    retrieve: str = typer.Option(
        "move",
        "--retrieve",
        help="DIMSE: 'move' (C-MOVE to the storage SCP tsct starts on --move-port), 'get' (C-GET on the query association) or 'auto' (C-MOVE, then C-GET once the PACS refuses a move).",
    ),
    move_port: int | None = typer.Option(
        None,
        "--move-port",
        help="DIMSE C-MOVE: port of the storage SCP tsct starts; the PACS must know --move-aet at this machine's address and this port.",
    ),
    move_aet: str | None = typer.Option(
        None, "--move-aet", help="DIMSE C-MOVE: AE title of tsct's storage SCP (the move destination); default --aet."
    ),
    move_bind: str = typer.Option("0.0.0.0", "--move-bind", help="DIMSE C-MOVE: address the storage SCP listens on (0.0.0.0: every interface)."),
    requests_csv: Path | None = typer.Option(
        None, "--requests", help="CSV of cases: case_id, patient_id, prior_accession|prior_study_uid, current_accession|current_study_uid[, status]."
    ),
    patient_id: list[str] = typer.Option([], "--patient-id", help="Query mode: a patient whose CT studies to pair (repeat for several)."),
    date_from: str | None = typer.Option(None, "--from", help="Query mode: earliest study date, YYYY-MM-DD."),
    date_to: str | None = typer.Option(None, "--to", help="Query mode: latest study date, YYYY-MM-DD."),
    pairing: str = typer.Option(
        "last-two", help="Query mode: 'last-two' (latest study = current, the one before = prior) or 'consecutive' (a case per consecutive pair)."
    ),
    body_part: str | None = typer.Option(None, "--body-part", help="Only series whose BodyPartExamined contains this text (e.g. SPINE, CHEST)."),
    kernel: str = typer.Option("bone,standard", "--kernel", help="Accepted kernel classes in order of preference: bone, standard, lung, any."),
    kernel_pattern: str | None = typer.Option(
        None, "--kernel-pattern", help="Regular expression on ConvolutionKernel instead of the classes (the site's own kernel names)."
    ),
    max_thickness: float = typer.Option(5.0, "--max-thickness", help="Thickest accepted slice (mm)."),
    min_coverage: float = typer.Option(
        0.9, "--min-coverage", help="Keep series covering at least this fraction of the widest z-extent in the study, then take the thinnest."
    ),
    min_slices: int = typer.Option(2, "--min-slices", help="Fewest instances a series may have."),
    max_tilt: float = typer.Option(
        10.0, "--max-tilt", help="Largest angle (degrees) between the slice normal and the patient z axis for an axial series."
    ),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds to wait for each PACS answer."),
    retries: int = typer.Option(
        2, "--retries", help="DICOMweb: extra attempts of a request that cannot connect or gets 'busy' (429/503), with back-off 1 s, 2 s, 4 s …"
    ),
    workers: int = typer.Option(4, "--workers", min=1, help="DICOMweb: instances downloaded at a time (parallel WADO-RS requests)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the cases the request or query gives and stop."),
) -> None:
    """Pull prior and current CT series of a case list or a query from a PACS (DICOMweb or DIMSE); resumable."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from .pacs import (
        PacsClient,
        PacsError,
        SeriesRule,
        pull,
        query_case_requests,
        read_pull_requests,
    )

    if (url is None) == (dimse is None):
        _fail("give either --url (DICOMweb) or --dimse HOST:PORT with --called-aet (DIMSE), not both and not neither")
    if dimse is not None and not called_aet:
        _fail("--dimse needs --called-aet: the PACS's AE title")
    if (requests_csv is None) == (not patient_id):
        _fail("give either --requests CSV (a case list to pull) or --patient-id (a query), not both and not neither")
    try:
        rule = SeriesRule(
            kernels=tuple(k.strip().lower() for k in kernel.split(",") if k.strip()),
            kernel_pattern=kernel_pattern,
            max_thickness_mm=max_thickness,
            min_slices=min_slices,
            min_coverage_fraction=min_coverage,
            max_tilt_deg=max_tilt,
            body_part=body_part,
        )
    except ValueError as exc:
        _fail(str(exc))
        return
    from .pacs import _date_range

    try:
        _date_range(date_from, date_to)
    except PacsError as exc:
        _fail(str(exc))
    try:
        if dimse is not None:
            from .dimse import DimseClient

            client = DimseClient(
                dimse,
                called_aet=called_aet or "",
                calling_aet=aet,
                retrieve=retrieve,
                move_aet=move_aet,
                move_port=move_port,
                move_bind=move_bind,
                timeout_s=timeout,
            )
        else:
            client = PacsClient(url or "", timeout_s=timeout, retries=retries)
    except PacsError as exc:
        _fail(str(exc))
        return
    try:
        if requests_csv is not None:
            cases = read_pull_requests(requests_csv)
        else:
            cases = query_case_requests(client, patient_id, date_from=date_from, date_to=date_to, pairing=pairing)
        if dry_run:
            for c in cases:
                console.print(f"{c.case_id}: patient {c.patient_id}, prior {c.prior.describe()}, current {c.current.describe()}", highlight=False)
            return
        console.print(f"Pulling {len(cases)} case(s) from {client.url} into {store}\nSeries rule: {rule.describe()}", highlight=False)
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err_console, transient=False
        ) as progress:
            exams = progress.add_task("exams", total=2 * len(cases))
            inst = progress.add_task("instances", total=0)

            def on_exam(case_id: str, exam: str, n: int) -> None:
                progress.update(exams, description=f"{case_id}/{exam}")
                if n == 0:
                    progress.advance(exams)
                else:
                    progress.update(inst, total=(progress.tasks[inst].total or 0) + n)

            def on_instance(n: int) -> None:
                progress.advance(inst, n)
                task = progress.tasks[inst]
                if task.completed >= (task.total or 0):
                    progress.advance(exams)

            result = pull(client, cases, store, rule, on_exam=on_exam, on_instance=on_instance, workers=workers)
    except PacsError as exc:
        _fail(str(exc), 1)
        return
    except OSError as exc:
        _fail(f"cannot write to the case store {store}: {exc.strerror or exc}", 1)
        return
    finally:
        if hasattr(client, "close"):
            client.close()  # the DIMSE storage SCP, when one was started
    for note in getattr(client, "notes", []):
        console.print(f"Note: {note}", highlight=False, soft_wrap=True)
    missing_status = sum(1 for c in cases if not c.status)
    console.print(
        f"[bold green]Done[/] {result.fetched} exam(s) fetched ({result.instances} instances downloaded), {result.skipped} already complete; "
        f"case list {result.case_list}, series choices in {result.log}",
        highlight=False,
    )
    if missing_status:
        console.print(
            f"Note: {missing_status} case(s) have no status; fill in normal/abnormal (and lesions) in {result.case_list} "
            f"before a reader study, then run `tsct cases validate {result.case_list}`.",
            highlight=False,
        )


def push_command(
    folder: Path = typer.Argument(..., help="Folder of DICOM files to store (searched recursively): derived objects, readers' SRs, any series."),
    url: str = typer.Option(..., "--url", help="DICOMweb root of the PACS, e.g. http://pacs:8042/dicom-web (STOW-RS)."),
    batch_size: int = typer.Option(20, "--batch-size", help="Instances sent in one STOW-RS request."),
    max_batch_mb: float = typer.Option(200.0, "--max-batch-mb", help="Largest STOW-RS request body (MB); a larger single file goes alone."),
    log: Path | None = typer.Option(
        None, "--log", help="Write a CSV with one row per file: path, status (stored/failed/skipped), SOP Instance UID, message."
    ),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds to wait for each PACS answer."),
    retries: int = typer.Option(
        2, "--retries", help="Extra attempts of a batch that cannot connect, times out or gets 'busy' (429/503), with back-off 1 s, 2 s, 4 s …"
    ),
) -> None:
    """Store every DICOM file under FOLDER on a PACS over DICOMweb STOW-RS; exit 1 when any file failed."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from .pacs import PacsClient, PacsError, push, scan_dicom_folder

    if batch_size < 1:
        _fail(f"--batch-size {batch_size} must be 1 or more")
    if max_batch_mb <= 0:
        _fail(f"--max-batch-mb {max_batch_mb} must be more than 0")
    try:
        client = PacsClient(url, timeout_s=timeout, retries=retries)
        instances, _ = scan_dicom_folder(folder)
        if not instances:
            _fail(f"{folder}: no DICOM instances found to store")
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err_console, transient=False
        ) as progress:
            task = progress.add_task("storing", total=len(instances))
            result = push(
                client,
                folder,
                batch_size=batch_size,
                max_batch_mb=max_batch_mb,
                retries=retries,
                log_path=log,
                on_batch=lambda n: progress.advance(task, n),
            )
    except PacsError as exc:
        _fail(str(exc), 1)
        return
    except OSError as exc:
        _fail(f"{log}: could not write the push log ({exc.strerror or exc})", 1)
        return
    for item in result.failed:
        err_console.print(f"[red]failed[/] {item.path}: {item.message}", highlight=False, soft_wrap=True)
    by_series: dict[tuple[str, str], int] = {}
    for item in result.stored:
        key = (item.modality or "?", item.series_uid)
        by_series[key] = by_series.get(key, 0) + 1
    for (modality, series), n in sorted(by_series.items()):
        console.print(f"stored {n} {modality} instance(s) of series {series}", highlight=False, soft_wrap=True)
    if result.skipped:
        console.print(
            f"{len(result.skipped)} file(s) skipped (not storable DICOM instances)" + ("; see the log" if result.log else ""), highlight=False
        )
    summary = f"{len(result.stored)} stored, {len(result.failed)} failed, {len(result.skipped)} skipped on {client.url}"
    if result.log:
        summary += f"; per-file log {result.log}"
    if result.failed:
        err_console.print(f"[bold red]Error:[/] {summary}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print(f"[bold green]Done[/] {summary}", highlight=False, soft_wrap=True)
