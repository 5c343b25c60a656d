"""The ``tsct`` command: one sub-command group per user task.

``tsct cases …``   coordinators: import exams, validate case lists, make synthetic CT pairs
``tsct detect …``  imaging scientists: registration, temporal subtraction, z-score maps
``tsct study …``   coordinators: studies, readers, reading design, marks, exports
``tsct analyze …`` statisticians: figures of merit, DBM/OR significance tests, reports
``tsct app``       everyone: start the reading workstation (Streamlit)
``tsct demo``      a newcomer: run the whole chain on synthetic cases

Each group lives in its package (``<package>/cli.py``) and imports heavy libraries only inside
its commands, so ``tsct --help`` answers at once.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)

app = typer.Typer(
    name="tsct",
    help=(
        "TSCT: temporal-subtraction CT for bone metastases. Generate or import prior/current CT "
        "pairs, run the detector, run reader studies with and without the overlay, and analyse "
        "them with JAFROC."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_GROUPS = {
    "cases": ("cases.cli", "Import CT exams, validate case lists and generate synthetic spine CT pairs (study coordinators)."),
    "detect": ("detector.cli", "Register prior onto current CT, make temporal subtraction images and z-score maps."),
    "study": ("reader_study.cli", "Create and run reader studies: readers, reading design, marks, exports (study coordinators)."),
    "analyze": ("analysis.cli", "Figures of merit, DBM and Obuchowski-Rockette tests, and reports (statisticians)."),
}

for _name, (_module, _help) in _GROUPS.items():
    try:
        _sub = importlib.import_module(_module).app
    except ModuleNotFoundError as _exc:
        if _exc.name != _module:
            raise
        _sub = typer.Typer(help=_help + " (not available in this build yet)", no_args_is_help=True)
    app.add_typer(_sub, name=_name, help=_help)


def default_data_dir() -> Path:
    """Where generated data goes: ``$TSCT_DATA_DIR`` or ``./tsct-data``."""
    return Path(os.environ.get("TSCT_DATA_DIR", "tsct-data")).resolve()


@app.command("app")
def run_app(
    port: int = typer.Option(8501, help="Port to listen on."),
    address: str = typer.Option("127.0.0.1", help="Address to bind; use 0.0.0.0 only behind a reverse proxy."),
    headless: bool = typer.Option(True, help="Do not open a browser window."),
) -> None:
    """Start the reading workstation (Streamlit) for readers, coordinators and statisticians."""
    app_file = Path(__file__).with_name("app.py")
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(app_file),
        "--server.port", str(port), "--server.address", address,
        "--server.headless", str(headless).lower(), "--browser.gatherUsageStats", "false",
    ]
    console.print(f"Reading app on http://{address}:{port} (Ctrl+C to stop)")
    raise typer.Exit(subprocess.call(cmd))


@app.command("demo")
def demo(
    out_dir: Path = typer.Option(None, "--out", help="Where to put the demo data (default: $TSCT_DATA_DIR or ./tsct-data)."),
    n_cases: int = typer.Option(20, help="Number of synthetic prior/current pairs."),
    seed: int = typer.Option(0, help="Random seed; the same seed gives the same cases."),
    size: str = typer.Option("small", help="'small' (about 128x128x96, fast) or 'clinical' (512x512x300)."),
) -> None:
    """Run the platform's main job on embedded defaults: generate a synthetic case set and say where it went."""
    from cases.synth import synthesize_case_set

    start = time.perf_counter()
    out_dir = (out_dir or default_data_dir() / f"synthetic-{size}-seed{seed}").resolve()
    case_list = synthesize_case_set(out_dir, n_cases=n_cases, seed=seed, size=size, progress=True)
    from cases import read_case_list

    cl = read_case_list(case_list)
    console.print(f"[bold green]Synthetic case set ready[/]: {cl.summary()}")
    console.print(f"  case list: {case_list}")
    console.print(f"  exams:     {out_dir / 'cases'}")
    console.print(f"Validate it with: tsct cases validate {case_list}")
    console.print(f"Done in {time.perf_counter() - start:.1f} s.")


def main() -> None:
    """Console entry point: run the CLI, turning known input errors into one-line messages."""
    try:
        app()
    except (ValueError, FileNotFoundError) as exc:  # domain errors carry what-to-fix messages
        err_console.print(f"[bold red]Error:[/] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
