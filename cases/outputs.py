"""Output paths checked before any work, and files written atomically (temporary name, then rename).

Commands that write call :func:`check_output_file` or :func:`check_output_folder` first, so a
file where a folder is expected, an unwritable folder or an existing output is reported in one
clean line before anything is computed. :func:`atomic_folder` builds a whole output folder under
a temporary name beside the target and renames it into place only when complete, so a failed or
interrupted command leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator

__all__ = ["OutputPathError", "check_output_file", "check_output_folder", "atomic_folder", "temporary_sibling"]


class OutputPathError(ValueError):
    """An output path cannot be written; the message names it and says what to do."""


def _first_existing_ancestor(path: Path) -> Path:
    for parent in [path, *path.parents]:
        if parent.exists() or parent.is_symlink():
            return parent
    return Path(".")


def _check_parent(path: Path, what: str) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    anchor = _first_existing_ancestor(parent)
    if not anchor.is_dir():
        raise OutputPathError(f"{path}: cannot write the {what} there because {anchor} is a file, not a folder. Choose another output path.")
    if not os.access(anchor, os.W_OK | os.X_OK):
        raise OutputPathError(f"{path}: cannot write the {what} there: no permission to write into {anchor}. Choose a folder you can write to.")


def check_output_file(path: str | Path, *, overwrite: bool = False, what: str = "output file") -> Path:
    """Refuse an output file path that cannot or should not be written (before any work is done)."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{path}: is a folder; give a file name for the {what} (e.g. {path / 'exam.nii.gz'}).")
    if path.exists() and not overwrite:
        raise OutputPathError(f"{path}: already exists; choose a new name, or pass --overwrite to replace it.")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputPathError(f"{path}: exists and is read-only; choose another name.")
    _check_parent(path, what)
    return path


def check_output_folder(path: str | Path, *, what: str = "output folder") -> Path:
    """Refuse an output folder that is a file, is not empty, or cannot be created/written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{path}: is a file, not a folder; give a new or empty folder for the {what}.")
    if path.is_dir():
        if any(path.iterdir()):
            raise OutputPathError(f"{path}: already holds files; give a new or empty folder for the {what} (nothing is overwritten).")
        if not os.access(path, os.W_OK | os.X_OK):
            raise OutputPathError(f"{path}: no permission to write into this folder; choose another.")
    _check_parent(path, what)
    return path


def temporary_sibling(path: Path, suffix: str = "") -> Path:
    """A hidden, unique name beside ``path`` for writing before the final rename."""
    return path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:8]}{suffix}")


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Build a folder under a temporary name; rename it to ``path`` on success, delete it on failure.

    ``path`` must not exist or be an empty folder (see :func:`check_output_folder`). Parent
    folders created for it are removed again when the work fails.
    """
    path = Path(path)
    created = []
    for parent in reversed(path.parents):
        if not parent.exists():
            parent.mkdir()
            created.append(parent)
    tmp = temporary_sibling(path)
    tmp.mkdir()
    try:
        yield tmp
        if path.is_dir():
            path.rmdir()  # empty (checked before); rename cannot replace a non-empty folder
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for parent in reversed(created):
            with contextlib.suppress(OSError):
                parent.rmdir()
        raise
