"""What every ``tsct detect`` command module shares: the consoles, the one-line error exit and
one-line warnings."""

from __future__ import annotations

import warnings

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    """Print ``Error: message`` on stderr (no traceback) and exit with ``code``."""
    err_console.print(f"[bold red]Error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def show_warning_one_line(message, category, filename, lineno, file=None, line=None) -> None:  # type: ignore[no-untyped-def]
    """``warnings.showwarning`` for the command line: ``Warning: message`` on one line of stderr,
    without the Python class name, file and source line (those are for developers)."""
    from rich.markup import escape

    text = escape(" ".join(str(message).split()))
    err_console.print(f"[bold yellow]Warning:[/] {text}", highlight=False, soft_wrap=True)


# The tsct detect commands show warnings (e.g. a pair outside the network's training domain) as
# one clean line; importing this module is what the command modules do first.
warnings.showwarning = show_warning_one_line
