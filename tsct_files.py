"""Writing outputs safely: check the path first, write to a temporary name, rename when complete.

One rule for every file TSCT writes (images, DICOM series, case sets, exports, reports, JSON
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
  target, then move the files in; :func:`atomic_folder` - the same for a folder that must be new
  (or empty), renamed into place in one step.
* :func:`temporary_sibling` - the one naming rule for every temporary output,
  ``.<name>.partial-<pid>-<random>[suffix]`` beside the target. A run killed with ``kill -9``
  leaves such a hidden file or folder; the next run writing the same target removes those whose
  process is gone (:func:`remove_stale_partials`), never another live run's.
* :func:`problems_file` - write a full list of problems to a file when it is too long for a
  terminal message (the message then gives a summary and the file's path).
* :func:`read_input_text` - the one way a text input (case list, readers, marks, tidy CSV) is
  read: a regular file (not a folder, pipe or device), UTF-8 (with or without BOM) or UTF-16
  with its BOM; anything else is one :class:`InputFileError` naming the file.
* :func:`csv_safe_cell` / :func:`csv_safe_frame` - neutralise text cells that a spreadsheet
  would run as a formula (starting with ``=``, ``+``, ``-``, ``@``, tab or CR) before they are
  written to a CSV or Excel export.
* :func:`pause_point` - a fault-injection hook for the kill -9 tests (inactive unless
  ``TSCT_TEST_PAUSE_AT`` names the point).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterable, Iterator

__all__ = [
    "OutputPathError",
    "check_output_file",
    "check_output_dir",
    "atomic_file",
    "atomic_write_text",
    "atomic_write_bytes",
    "atomic_folder",
    "staged_dir",
    "temporary_sibling",
    "remove_stale_partials",
    "pid_alive",
    "problems_file",
    "summarise_problems",
    "pause_point",
    "PARTIAL_MARK",
    "InputFileError",
    "read_input_text",
    "csv_safe_cell",
    "csv_safe_frame",
    "csv_field_error",
]

#: what every temporary output's name holds: ``.<target name>.partial-<pid>-<random>[suffix]``.
PARTIAL_MARK = ".partial-"


class OutputPathError(ValueError):
    """An output path cannot be used (wrong kind of thing there, or not writable); nothing was written."""


def _writable_dir(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_output_dir(path: str | Path, *, option: str = "--out", empty: bool = False, what: str = "outputs") -> Path:
    """Check that ``path`` can be (or is) a writable folder; create nothing. Returns the path.

    With ``empty=True`` the folder must be new or empty (nothing in it is ever overwritten);
    ``what`` names its content in that message.

    Raises
    ------
    OutputPathError
        ``path`` is a file, lies under a file, its nearest existing folder is not writable, or
        (with ``empty``) it already holds files.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{option} {path} is a file, but a folder is expected there; give a folder (it is created if missing).")
    if empty and path.is_dir() and any(path.iterdir()):
        raise OutputPathError(f"{option} {path} already holds files; give a new or empty folder for the {what} (nothing is overwritten).")
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


def check_output_file(path: str | Path, *, option: str = "--out", overwrite: bool = True, overwrite_option: str | None = None) -> Path:
    """Check that a file can be written at ``path`` (atomically, so its folder must be writable).

    ``overwrite_option`` (e.g. ``"--overwrite"``) is named in the message when ``overwrite`` is
    false and a file is already there.

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
        hint = f", or pass {overwrite_option} to replace it" if overwrite_option else ""
        raise OutputPathError(f"{option} {path} already exists; give a new file name{hint}.")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputPathError(f"{option} {path} exists and is read-only; give another file name.")
    check_output_dir(path.parent if str(path.parent) else Path("."), option=f"{option} {path}: its folder")
    return path


def temporary_sibling(path: str | Path, suffix: str = "") -> Path:
    """A hidden, unique name beside ``path`` to write to before the final rename.

    ``.<name>.partial-<pid>-<random><suffix>``: the process id lets a later run tell a killed
    run's leftovers (:func:`remove_stale_partials`) from a live run's work; ``suffix`` keeps a
    format-selecting extension (``.nii.gz``) for writers that choose the format by name.
    """
    path = Path(path)
    return path.with_name(f".{path.name}{PARTIAL_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs (on this machine)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _process_start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), where /proc tells; else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime "))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _is_stale(partial: Path, pid: int) -> bool:
    """A partial output whose writer is gone: its process is dead, or the id now belongs to a
    process started after the partial was last written (the id was reused)."""
    if pid == os.getpid():
        return False
    if not pid_alive(pid):
        return True
    started = _process_start_time(pid)
    try:
        written = partial.lstat().st_mtime
    except OSError:
        return False
    return started is not None and started > written + 1.0


def remove_stale_partials(target: str | Path) -> list[Path]:
    """Remove the temporary outputs (:func:`temporary_sibling`) of ``target`` left by killed runs.

    Only hidden ``.<target name>.partial-<pid>-…`` files and folders beside ``target`` whose
    process is gone are removed; those of a live run (this one included) and any other file are
    left alone. Returns what was removed.
    """
    target = Path(target)
    prefix = f".{target.name}{PARTIAL_MARK}"
    removed: list[Path] = []
    if not target.parent.is_dir():
        return removed
    for child in target.parent.iterdir():
        if not child.name.startswith(prefix):
            continue
        pid_text = child.name[len(prefix) :].split("-", 1)[0]
        if not pid_text.isdigit() or not _is_stale(child, int(pid_text)):
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
        removed.append(child)
    return removed


@contextlib.contextmanager
def atomic_file(path: str | Path, *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; rename it onto ``path`` when the block succeeds.

    The temporary file is :func:`temporary_sibling` (hidden, never mistaken for a result); a
    killed earlier run's leftovers for ``path`` are removed first. On any exception it is removed
    and the exception propagates; ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(path)
    tmp = temporary_sibling(path, suffix)
    tmp.touch(exist_ok=False)
    try:
        yield tmp
        if tmp.is_file():
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


@contextlib.contextmanager
def _staging(target: Path, *, merge: bool) -> Iterator[Path]:
    created = [p for p in reversed(target.parents) if not p.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(target)
    stage = temporary_sibling(target)
    stage.mkdir()
    try:
        yield stage
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()  # empty: rename cannot replace a folder that holds files
        if not target.exists():
            os.replace(stage, target)
            return
        if not merge:
            raise OutputPathError(f"{target} was filled by something else while this run worked; its outputs were not moved in.")
        for item in sorted(stage.rglob("*")):
            if item.is_file():
                dest = target / item.relative_to(stage)
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(item, dest)
        shutil.rmtree(stage, ignore_errors=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        for parent in reversed(created):
            with contextlib.suppress(OSError):
                parent.rmdir()
        raise


@contextlib.contextmanager
def staged_dir(target: str | Path) -> Iterator[Path]:
    """Yield a hidden staging folder beside ``target``; on success move its files into ``target``.

    Files are moved one by one with ``os.replace`` (each lands complete), files of the same name
    in ``target`` are replaced and others left alone. On error the staging folder (and any parent
    folder made for it) is removed and ``target`` is unchanged; a killed run leaves only the
    hidden staging folder, which the next call for the same target removes
    (:func:`remove_stale_partials`). A ``target`` that did not exist (or was empty) is renamed
    into place in one step, only when the work succeeded.
    """
    with _staging(Path(target), merge=True) as stage:
        yield stage


@contextlib.contextmanager
def atomic_folder(target: str | Path) -> Iterator[Path]:
    """Build a new folder under a hidden temporary name; rename it to ``target`` when complete.

    ``target`` must not exist or be an empty folder (check it first with
    ``check_output_dir(..., empty=True)``). On failure the temporary folder and any parent folder
    made for it are removed, so nothing is left behind.
    """
    with _staging(Path(target), merge=False) as stage:
        yield stage


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


# ------------------------------------------------------------------------------------------------
# reading text inputs
class InputFileError(ValueError):
    """A text input file cannot be read as text (missing, not a regular file, wrong encoding)."""


#: text inputs larger than this are refused before they are read (a case list, marks file or
#: tidy CSV of a very large study is a few MB).
MAX_TEXT_INPUT_BYTES = 512 * 1024 * 1024


def read_input_text(path: str | Path, *, what: str = "file") -> str:
    """The text of an input file, decoded; raises :class:`InputFileError` naming ``path``.

    Accepted: a regular file (or a link to one) in UTF-8, with or without a byte-order mark, or
    UTF-16 with its byte-order mark (what Excel's "Unicode text" writes). Refused with a message
    saying what to do: a missing file, a folder, a pipe or device (reading one would block or
    never end), UTF-16 without a byte-order mark, NUL bytes, and other encodings.
    """
    import stat as _stat

    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise InputFileError(f"{path}: {what} not found.") from None
    except OSError as exc:
        raise InputFileError(f"{path}: cannot be read ({exc.strerror or exc}).") from None
    if _stat.S_ISDIR(info.st_mode):
        raise InputFileError(f"{path}: is a folder; give the {what} itself.")
    if not _stat.S_ISREG(info.st_mode):
        raise InputFileError(f"{path}: is not a regular file (a pipe, socket or device); give the {what} itself.")
    if info.st_size > MAX_TEXT_INPUT_BYTES:
        raise InputFileError(f"{path}: {info.st_size:,} bytes, larger than any {what} should be ({MAX_TEXT_INPUT_BYTES:,}); is it the right file?")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputFileError(f"{path}: cannot be read ({exc.strerror or exc}). Check the file's permissions.") from None
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise InputFileError(
                f"{path}: starts like UTF-16 text but cannot be decoded ({exc.reason} at byte {exc.start}); save it as CSV (UTF-8)."
            ) from None
    if b"\x00" in raw:
        at = raw.index(b"\x00")
        hint = "it looks like UTF-16 text without a byte-order mark" if raw[1::2].count(0) > len(raw) // 4 else "a binary file?"
        raise InputFileError(f"{path}: holds NUL bytes (first at byte {at}): {hint}. Save it as CSV (UTF-8).")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputFileError(f"{path}: is not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); save it as CSV (UTF-8).") from None


def csv_field_error(path: str | Path, exc: Exception, line: int | None = None) -> str:
    """A message for a :class:`csv.Error` (e.g. a field over the csv module's size limit)."""
    where = f" on line {line}" if line else ""
    text = str(exc)
    if "field larger than field limit" in text:
        return f"{path}: a cell{where} is longer than {text.rsplit('(', 1)[-1].rstrip(')')} characters (a missing closing quote, or not a CSV file); fix or remove it."
    return f"{path}: not a valid CSV file{where} ({text}); save it as comma-separated CSV (UTF-8)."


# ------------------------------------------------------------------------------------------------
# spreadsheet formula injection
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe_cell(value: object) -> object:
    """``value`` unchanged unless it is text a spreadsheet would run as a formula; then ``'`` + it.

    Text starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return is prefixed with a
    single quote (OWASP's advice for CSV injection). Numbers, and text that is a number (``-3.5``,
    ``-inf``), are left alone so the files stay readable by analysis tools.
    """
    if not isinstance(value, str) or not value.startswith(_FORMULA_STARTS):
        return value
    try:
        float(value)
        return value
    except ValueError:
        return "'" + value


def csv_safe_frame(frame):  # a pandas DataFrame (pandas is not imported here)
    """A copy of a DataFrame with every text cell (and column name) passed through :func:`csv_safe_cell`."""
    out = frame.copy()
    for column in out.columns:
        if getattr(out[column].dtype, "kind", "O") not in "biufcmM":  # text columns (object or string dtype)
            out[column] = out[column].map(csv_safe_cell)
    out.columns = [csv_safe_cell(c) for c in out.columns]
    return out
