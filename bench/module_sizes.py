"""The module size table: every Python module over a line limit, with the reason docs/architecture.md gives.

Counts the physical lines of every Python file git tracks (untracked, not ignored files too) in
the project's packages and root modules, and prints those over ``--limit`` lines (default 600),
longest first, each with the reason stated in the table "Modules over 600 lines" of
``docs/architecture.md`` (or ``NO REASON GIVEN``). ``--check`` exits 1 when a module over the
limit has no reason there, or when the table lists a module that is no longer over the limit or
no longer exists, so the table can be kept true in CI. Tests, benchmarks, scripts and Alembic
migrations are left out unless ``--all`` is given (they are not part of the house's API).

Usage::

    python bench/module_sizes.py [--limit 600] [--all] [--check]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
#: the table's heading in docs/architecture.md
TABLE_HEADING = "Modules over 600 lines"
#: folders not part of the house's modules unless --all
NOT_MODULES = ("tests/", "bench/", "scripts/", "docs/")


def python_files(root: Path = ROOT) -> list[Path]:
    """Every Python file git tracks under ``root`` (and untracked ones git does not ignore); all ``*.py`` outside git."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"], cwd=root, capture_output=True, text=True, check=True
        ).stdout
        return sorted(root / line for line in out.splitlines() if line and (root / line).is_file())
    except (OSError, subprocess.CalledProcessError):
        return sorted(p for p in root.rglob("*.py") if ".venv" not in p.parts)


def module_sizes(limit: int, *, include_all: bool = False, root: Path = ROOT) -> list[tuple[str, int]]:
    """(path relative to ``root``, line count) of every module over ``limit`` lines, longest first."""
    rows = []
    for path in python_files(root):
        rel = path.relative_to(root).as_posix()
        if not include_all and (rel.startswith(NOT_MODULES) or "/migrations/" in rel):
            continue
        with path.open("rb") as handle:
            n = sum(1 for _ in handle)
        if n > limit:
            rows.append((rel, n))
    return sorted(rows, key=lambda r: (-r[1], r[0]))


def documented_reasons(doc: Path = DOC) -> dict[str, str]:
    """module path -> reason, from the Markdown table under :data:`TABLE_HEADING` (rows ``| `path` | lines | reason |``)."""
    if not doc.is_file():
        return {}
    text = doc.read_text(encoding="utf-8")
    start = text.find(TABLE_HEADING)
    if start < 0:
        return {}
    reasons = {}
    for line in text[start:].splitlines()[1:]:
        if line.startswith("#"):
            break
        match = re.match(r"\|\s*`([^`]+\.py)`\s*\|\s*[\d,]+\s*\|\s*(.+?)\s*\|\s*$", line)
        if match:
            reasons[match.group(1)] = match.group(2)
    return reasons


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=600, help="print modules with more lines than this (default 600)")
    parser.add_argument("--all", action="store_true", help="include tests/, bench/, scripts/ and migrations")
    parser.add_argument("--check", action="store_true", help="exit 1 when the table in docs/architecture.md is not true to the code")
    args = parser.parse_args(argv)
    rows = module_sizes(args.limit, include_all=args.all)
    reasons = documented_reasons()
    width = max((len(path) for path, _ in rows), default=10)
    print(f"{len(rows)} module(s) over {args.limit} lines ({ROOT.name}):")
    for path, n in rows:
        print(f"{n:6d}  {path:<{width}}  {reasons.get(path, 'NO REASON GIVEN in ' + DOC.relative_to(ROOT).as_posix())}")
    if not args.check:
        return 0
    over = {path for path, _ in rows}
    missing = sorted(over - set(reasons))
    stale = sorted(set(reasons) - over)
    for path in missing:
        print(f"not in the table of {DOC.name}: {path}", file=sys.stderr)
    for path in stale:
        print(f"in the table of {DOC.name} but not over {args.limit} lines (or gone): {path}", file=sys.stderr)
    return 1 if missing or stale else 0


if __name__ == "__main__":
    sys.exit(main())
