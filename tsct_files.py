"""Writing outputs safely: check the path first, write to a temporary name, rename when complete.

One rule for every file TSCT writes on the study and analysis side (exports, reports, JSON
results, backups): a command that fails, or is killed, never leaves a truncated file under the
name the user asked for, and a bad output path (a folder where a file is expected, a file where a
folder is expected, a folder that cannot be written) is refused before any work starts, with one
message that names the path and says what to do.

* :func:`check_output_file` / :func:`check_output_dir` - refuse a bad path early
  (:class:`OutputPathError`, a :class:`ValueError`, so every CLI prints it as one line).
* :func:`atomic_file` - a context manager yielding a temporary path beside the target; on success
  it is renamed onto the target (``os.replace``), on error it is removed.
* :func:`atomic_write_text` / :func:`atomic_write_bytes` - the same for data in memory.
* :func:`staged_dir` - build a whole folder of outputs under a hidden staging folder beside the
  target, then move the files in; a killed run leaves only the hidden staging folder, which the
  next run removes.
* :func:`problems_file` - write a full list of problems to a file when it is too long for a
  terminal message (the message then gives a summary and the file's path).
* :func:`pause_point` - a fault-injection hook for the kill -9 tests (inactive unless
  ``TSCT_TEST_PAUSE_AT`` names the point).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator

__all__ = [
    "OutputPathError",
    "check_output_file",
    "check_output_dir",
    "atomic_file",
    "atomic_write_text",
    "atomic_write_bytes",
    "staged_dir",
    "remove_stale_staging",
    "problems_file",
    "summarise_problems",
    "pause_point",
    "STAGING_PREFIX",
]

STAGING_PREFIX = ".tsct-partial-"


class OutputPathError(ValueError):
    """An output path cannot be used (wrong kind of thing there, or not writable); nothing was written."""


def _writable_dir(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_output_dir(path: str | Path, *, option: str = "--out") -> Path:
    """Check that ``path`` can be (or is) a writable folder; create nothing. Returns the path.

    Raises
    ------
    OutputPathError
        ``path`` is a file, lies under a file, or its nearest existing folder is not writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{option} {path} is a file, but a folder is expected there; give a folder (it is created if missing).")
    existing = _nearest_existing(path.absolute())
    if not existing.is_dir():
        raise OutputPathError(f"{option} {path}: {existing} is a file, so no folder can be made under it; give another folder.")
    if not _writable_dir(existing) or not _probe(existing):
        raise OutputPathError(f"{option} {path}: the folder {existing} is not writable; give a folder you can write to.")
    return path


def _probe(folder: Path) -> bool:
    """Whether a file can really be created in ``folder`` (access() says yes to root even where writing fails)."""
    try:
        fd, name = tempfile.mkstemp(prefix=".tsct-probe-", dir=folder)
    except OSError:
        return False
    os.close(fd)
    try:
        os.unlink(name)
    except OSError:
        pass
    return True


def check_output_file(path: str | Path, *, option: str = "--out", overwrite: bool = True) -> Path:
    """Check that a file can be written at ``path`` (atomically, so its folder must be writable).

    Raises
    ------
    OutputPathError
        ``path`` is a folder, its parent is a file, the folder is not writable, or (with
        ``overwrite=False``) a file is already there.
    """
    path = Path(path)
    if str(path).endswith(("/", os.sep)) or path.is_dir():
        raise OutputPathError(f"{option} {path} is a folder, but a file name is expected; give a file path, e.g. {Path(path) / 'result.json'}.")
    if path.exists() and not path.is_file():
        raise OutputPathError(f"{option} {path} exists and is not a regular file; give another file name.")
    if path.exists() and not overwrite:
        raise OutputPathError(f"{option} {path} already exists; give a new file name.")
    check_output_dir(path.parent if str(path.parent) else Path("."), option=f"{option} {path}: its folder")
    return path


@contextlib.contextmanager
def atomic_file(path: str | Path, *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; rename it onto ``path`` when the block succeeds.

    The temporary file is named ``.<name>.<random>.part`` (hidden, never mistaken for a result);
    on any exception it is removed and the exception propagates; ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=(suffix or "") + ".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary name, then rename)."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (temporary name, then rename)."""
    return atomic_write_bytes(path, text.encode(encoding))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_staging(parent: str | Path) -> list[Path]:
    """Remove staging folders (``.tsct-partial-<pid>-…``) under ``parent`` left by killed runs; returns them."""
    parent = Path(parent)
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    for child in parent.iterdir():
        if not child.name.startswith(STAGING_PREFIX) or not child.is_dir():
            continue
        try:
            pid = int(child.name[len(STAGING_PREFIX):].split("-", 1)[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(child, ignore_errors=True)
            removed.append(child)
    return removed


@contextlib.contextmanager
def staged_dir(target: str | Path) -> Iterator[Path]:
    """Yield a hidden staging folder beside ``target``; on success move its files into ``target``.

    Files are moved one by one with ``os.replace`` (each lands complete), files of the same name
    in ``target`` are replaced and others left alone. On error the staging folder is removed and
    ``target`` is unchanged; a killed run leaves only the hidden staging folder, which the next
    call removes (:func:`remove_stale_staging`). A ``target`` that did not exist is created only
    when the work succeeded.
    """
    target = Path(target)
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(parent)
    stage = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-{target.name}-", dir=parent))
    try:
        yield stage
        if not target.exists():
            os.rename(stage, target)
            return
        for item in sorted(stage.rglob("*")):
            if item.is_file():
                dest = target / item.relative_to(stage)
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(item, dest)
        shutil.rmtree(stage, ignore_errors=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def summarise_problems(lines: Iterable[str], *, shown: int = 10, limit_chars: int = 600) -> tuple[str, list[str]]:
    """A short summary of ``lines`` (the first ``shown`` within ``limit_chars``) and the full list."""
    full = [str(x) for x in lines]
    head: list[str] = []
    size = 0
    for line in full[:shown]:
        if size + len(line) > limit_chars and head:
            break
        head.append(line)
        size += len(line)
    return "; ".join(head), full


def problems_file(lines: Iterable[str], *, near: str | Path | None = None, stem: str = "tsct-problems") -> Path:
    """Write every problem, one a line, to a file and return its path.

    The file goes beside ``near`` (``<near>.problems.txt``) when that folder is writable, else
    into the system's temporary folder. It is written atomically.
    """
    text = "\n".join(str(x) for x in lines) + "\n"
    if near is not None:
        near = Path(near)
        candidate = near.with_name(near.name + ".problems.txt")
        if candidate.parent.is_dir() and _writable_dir(candidate.parent) and _probe(candidate.parent):
            try:
                return atomic_write_text(candidate, text)
            except OSError:
                pass
    fd, name = tempfile.mkstemp(prefix=f"{stem}-", suffix=".txt")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    return Path(name)


def pause_point(name: str) -> None:
    """Fault-injection hook for tests: when ``$TSCT_TEST_PAUSE_AT`` equals ``name``, write
    ``$TSCT_TEST_PAUSE_FILE`` and wait there until the process is killed.

    The kill -9 tests use it to stop a command at a known moment (state-waiting, not
    time-waiting). Without the variable it does nothing.
    """
    if os.environ.get("TSCT_TEST_PAUSE_AT") != name:
        return
    marker = os.environ.get("TSCT_TEST_PAUSE_FILE")
    if marker:
        Path(marker).write_text(f"{os.getpid()} {name}\n")
    while True:  # pragma: no cover - ends by SIGKILL
        time.sleep(0.05)
