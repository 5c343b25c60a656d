"""The ``tsct`` command: one sub-command group per user task.

``tsct cases …``   coordinators: import exams, validate case lists, make synthetic CT pairs
``tsct detect …``  imaging scientists: registration, temporal subtraction, z-score maps
``tsct study …``   coordinators: studies, readers, reading design, marks, exports
``tsct analyze …`` statisticians: figures of merit, DBM/OR significance tests, reports
``tsct app``       everyone: start the reading workstation (Streamlit)
``tsct demo``      a newcomer: run the whole chain on synthetic cases

Each group lives in its package (``<package>/cli.py``), is imported only when its sub-command
runs (:class:`_LazyGroup`), and imports heavy libraries only inside its commands, so
``tsct --help`` and ``tsct analyze --help`` answer at once (``bench/bench_cli_startup.py``).
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from typer.core import TyperGroup

if TYPE_CHECKING:  # typer runs on its own copy of click; the click package is not imported at run time
    import click

console = Console()
err_console = Console(stderr=True)

#: The command groups, imported only when their sub-command runs (``tsct --help`` imports none).
_GROUPS = {
    "cases": ("cases.cli", "Import CT exams, validate case lists and generate synthetic spine CT pairs (study coordinators)."),
    "detect": ("detector.cli", "Register prior onto current CT, make temporal subtraction images and z-score maps."),
    "study": ("reader_study.cli", "Create and run reader studies: readers, reading design, marks, exports (study coordinators)."),
    "analyze": ("analysis.cli", "Figures of merit, DBM and Obuchowski-Rockette tests, and reports (statisticians)."),
}


_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class _PlainValues:
    """typer's conversion of one ``bool``, ``str``, ``int``, ``float`` or ``Path`` option, without pydantic.

    typer (0.2x) converts every option value through a pydantic ``TypeAdapter``, built when the
    command runs; importing pydantic and building the adapters costs about 0.15 s of CPU per
    command, more than ``tsct analyze st`` spends on the analysis.  The values a statistician
    types are plain: a string, a decimal integer or number, a path.  Those are converted here
    exactly as pydantic converts them (``int('0012')``, ``float('1e-3')``: the same values;
    paths through typer's own ``coerce_cli_path``, so its checks and messages are unchanged);
    anything else (``1_000``, a number with blanks, ``nan``, a bad value) goes to typer's own
    conversion, so every error message is typer's.  Installed by :func:`_plain_param` where
    typer has this layer.
    """

    def __init__(self, annotation: type) -> None:
        self.annotation = annotation
        self._typer: object | None = None  # typer's own runtime parameter, built on first need

    def coerce(self, value: object, param: object, ctx: object) -> object:
        if value is None:  # an absent optional value, as typer leaves it
            return None
        kind = self.annotation
        if type(value) is kind and kind is not Path:
            return value
        if isinstance(value, str):
            if kind is str:
                return value
            if kind is int and _INT.fullmatch(value):
                return int(value)
            if kind is float and _FLOAT.fullmatch(value):
                return float(value)
        build_runtime_param, coerce_cli_path = _typer_layer()
        if kind is Path and (isinstance(value, Path) or (isinstance(value, str) and "\0" not in value)):
            path = value if isinstance(value, Path) else Path(value)
            return coerce_cli_path(path, param.type_descriptor.parameter_info, path_type=Path, param=param, ctx=ctx)
        if self._typer is None:
            self._typer = build_runtime_param(param.type_descriptor)
        return self._typer.coerce(value, param=param, ctx=ctx)


def _typer_layer() -> tuple | None:
    """typer's own ``build_runtime_param`` and ``coerce_cli_path``, or None under a typer without them.

    Both are imported by ``typer.core`` already, so this costs nothing; :func:`_plain_param`
    installs :class:`_PlainValues` only where they exist.
    """
    try:
        from typer._coercion import build_runtime_param
        from typer._param_types import coerce_cli_path
    except ImportError:
        return None
    return build_runtime_param, coerce_cli_path


def _plain_param(param: click.Parameter) -> None:
    """Give ``param`` a :class:`_PlainValues` where typer has its pydantic layer and the option is plain.

    Plain: one value of type ``bool``, ``str``, ``int``, ``float`` or ``Path``, with no parser,
    bounds or other path type.  Every other option, and every option under a typer without that
    layer (no ``type_descriptor``, no unset ``_runtime_param``, or no :func:`_typer_layer`), keeps
    typer's own conversion.
    """
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is None or getattr(param, "_runtime_param", False) is not None or _typer_layer() is None:
        return
    info = descriptor.parameter_info
    if (
        descriptor.annotation not in (bool, str, int, float, Path)
        or param.multiple
        or param.nargs != 1
        or descriptor.file_annotation is not None
        or getattr(info, "parser", None) is not None
        or getattr(info, "min", None) is not None
        or getattr(info, "max", None) is not None
        or getattr(info, "path_type", None) not in (None, Path)
    ):
        return
    param._runtime_param = _PlainValues(descriptor.annotation)


def _plain_values(command: click.Command) -> None:
    """:func:`_plain_param` for every option of ``command`` and its sub-commands, ``--help`` included.

    typer makes a command's ``--help`` option when the command first parses its arguments, so
    the command's ``get_help_option`` is wrapped to treat that option too.
    """
    for sub in getattr(command, "commands", {}).values():
        _plain_values(sub)
    for param in getattr(command, "params", ()):
        _plain_param(param)
    make_help_option = command.get_help_option

    def get_help_option(ctx: click.Context) -> click.Option | None:
        option = make_help_option(ctx)
        if option is not None:
            _plain_param(option)
        return option

    command.get_help_option = get_help_option


class _LazyGroup(TyperGroup):
    """The ``tsct`` group: each package's command group is imported when it is invoked.

    ``tsct --help`` lists the groups from :data:`_GROUPS` (static help texts) without importing
    them; ``tsct analyze ...`` imports ``analysis.cli`` only.  Each package's ``cli`` module in
    turn imports heavy libraries inside its commands, so ``tsct analyze --help`` is fast too.
    """

    _listing = False

    def get_help_option(self, ctx: click.Context) -> click.Option | None:
        option = super().get_help_option(ctx)
        if option is not None:
            _plain_param(option)  # see _PlainValues
        return option

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(_GROUPS) + [n for n in super().list_commands(ctx) if n not in _GROUPS]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _GROUPS and cmd_name not in self.commands:
            module, help_text = _GROUPS[cmd_name]
            if self._listing:  # help listing: a stand-in with the static help, nothing imported
                return TyperGroup(name=cmd_name, help=help_text, short_help=help_text)
            try:
                sub = importlib.import_module(module).app
            except ModuleNotFoundError as exc:
                if exc.name != module:
                    raise
                sub = typer.Typer(help=help_text + " (not available in this build yet)", no_args_is_help=True)
            command = typer.main.get_command(sub)
            _plain_values(command)
            command.help = help_text
            command.short_help = help_text
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        type(self)._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            type(self)._listing = False


app = typer.Typer(
    name="tsct",
    cls=_LazyGroup,
    help=(
        "TSCT: temporal-subtraction CT for bone metastases. Generate or import prior/current CT "
        "pairs, run the detector, run reader studies with and without the overlay, and analyse "
        "them with JAFROC."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def default_data_dir() -> Path:
    """Where generated data goes: ``$TSCT_DATA_DIR`` or ``./tsct-data``."""
    return Path(os.environ.get("TSCT_DATA_DIR", "tsct-data")).resolve()


@app.command("app")
def run_app(
    port: int = typer.Option(8501, help="Port to listen on."),
    address: str = typer.Option("127.0.0.1", help="Address to bind; keep 127.0.0.1 behind a reverse proxy on the same machine."),
    headless: bool = typer.Option(True, help="Do not open a browser window."),
    theme: str = typer.Option("dark", help="'dark' (the reading-room default, for every page) or 'light'."),
    base_url_path: str = typer.Option(
        "", "--base-url-path", help="Serve under this path (e.g. 'reader') when a reverse proxy forwards https://host/reader/ to the app."
    ),
) -> None:
    """Start the reading workstation (Streamlit) for readers, coordinators and statisticians.

    The database is $TSCT_DATABASE_URL (default: SQLite under $TSCT_DATA_DIR); detector outputs
    are read from $TSCT_DETECTOR_DIR (default: $TSCT_DATA_DIR/detector/<case id>/).
    """
    if not isinstance(base_url_path, str):  # called as a Python function (tsct demo) without it
        base_url_path = ""
    if not isinstance(theme, str):
        theme = "dark"
    if theme not in ("dark", "light"):
        err_console.print(f"[red]--theme must be 'dark' or 'light', not {theme!r}.[/red]")
        raise typer.Exit(2)
    root = Path(__file__).resolve().parent
    app_file = root / "reading_app" / "server.py"
    # Streamlit puts the script's folder (reading_app/) on sys.path; the pages import
    # ``reading_app.…``, so the folder holding the package goes first.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH", "")]))}
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app_file),
        "--server.port",
        str(port),
        "--server.address",
        address,
        "--server.headless",
        str(headless).lower(),
        "--browser.gatherUsageStats",
        "false",
        "--server.enableXsrfProtection",
        "true",
        "--server.fileWatcherType",
        "none",
        "--client.toolbarMode",
        "minimal",
        "--theme.base",
        theme,
    ]
    if base_url_path.strip("/"):
        cmd += ["--server.baseUrlPath", base_url_path.strip("/")]
    shown = f"/{base_url_path.strip('/')}/" if base_url_path.strip("/") else "/"
    console.print(f"Reading app on http://{address}:{port}{shown} (Ctrl+C to stop)")
    raise typer.Exit(subprocess.call(cmd, env=env))


@app.command("demo")
def demo(
    data_dir: Path = typer.Option(None, "--data-dir", help="Where the demo's data and database go (default: $TSCT_DATA_DIR or ./tsct-data)."),
    reports_dir: Path = typer.Option(Path("reports"), "--reports", help="Where the analysis report goes (REPORTS/<study>/)."),
    n_cases: int = typer.Option(40, help="Number of synthetic prior/current pairs (half with new lesions)."),
    seed: int = typer.Option(0, help="Random seed; the same seed gives the same cases and readings."),
    size: str = typer.Option("small", help="'small' (about 128x128x96, fast) or 'clinical' (512x512x300)."),
    start_app: bool = typer.Option(True, "--app/--no-app", help="Start the reading app at the end (--no-app for CI and scripts)."),
    port: int = typer.Option(8501, help="Port of the reading app."),
) -> None:
    """Run the platform's main job on embedded defaults: cases, detector, a locked crossover study read by simulated readers, and the JAFROC report."""
    from rich.table import Table

    from tsct_demo import DemoSettings, run_demo

    start = time.perf_counter()
    settings = DemoSettings(
        data_dir=(data_dir or default_data_dir()),
        reports_dir=reports_dir.resolve(),
        n_cases=n_cases,
        seed=seed,
        size=size,
        database_url=os.environ.get("TSCT_DATABASE_URL"),
    )
    result = run_demo(settings, say=console.print)
    console.print()
    console.print(f"[bold green]Done in {time.perf_counter() - start:.0f} s[/] ({', '.join(f'{k} {v:.0f} s' for k, v in result.timings_s.items())})")
    console.print(f"  case list:        {result.case_list}")
    console.print(f"  detector outputs: {result.detector_dir}")
    console.print(f"  study database:   {result.database_url} (study {result.study_code})")
    console.print(f"  exports:          {result.export_dir}")
    console.print(f"  report:           {result.report_dir / 'report.html'}")
    console.print(f"[bold]Result[/]: {result.headline}")
    for message in result.messages:
        console.print(f"[yellow]Note:[/] {message}")
    table = Table(title="Accounts for the reading app")
    for column in ("user", "password", "role"):
        table.add_column(column)
    for user, (password, role) in result.accounts.items():
        table.add_row(user, password, role)
    console.print(table)
    if result.practice_study:
        console.print(
            f"[bold]Read it yourself[/]: `tsct app` (the same TSCT_DATA_DIR), log in as [bold]radiologist[/] and read study "
            f"{result.practice_study} (unaided, then aided); the first log-in asks you to choose your own password."
        )
    if start_app:
        os.environ.setdefault("TSCT_DETECTOR_DIR", str(result.detector_dir))
        os.environ.setdefault(
            "TSCT_DATABASE_URL",
            result.database_url
            if "://" in result.database_url and "***" not in result.database_url
            else f"sqlite:///{settings.data_dir.resolve() / 'reader-study.sqlite3'}",
        )
        run_app(port=port, address="127.0.0.1", headless=True)


def main() -> None:
    """Console entry point: run the CLI, turning known input errors into one-line messages."""
    try:
        app()
    except (ValueError, FileNotFoundError) as exc:  # domain errors carry what-to-fix messages
        err_console.print(f"[bold red]Error:[/] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
