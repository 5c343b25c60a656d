"""The package import graph is the one docs/architecture.md draws.

Imports (module-level and inside functions) may only point down this stack:

    app.py, app_server.py, app_pages/   the Streamlit reading app (pages, server entry)
    workstation/                        the viewer's server-side logic
    reader_study/                       studies, readers, marks, scoring, simulated readers
    detector/                           registration, subtraction, z-maps, candidates, outputs.json
    cases/       analysis/              exams, grids, truth | statistics on tidy tables

``cases`` and ``analysis`` import no other package of the project: ``analysis`` is last in the data
flow (it reads the study's export) but, being pure statistics, a library that ``detector``'s FROC
and ``reader_study``'s exporter call. No package imports another package's private ``_module`` or
``_name``. The entry points ``tsct_cli.py`` and ``tsct_demo.py`` wire everything and may import any
package. ``tsct_files.py`` (checked output paths, atomic writes) is a root-level utility below
every package: any unit may import it, and it imports no project module. The test reads the
source with ``ast``; nothing is imported.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: package (or root module) -> the project packages it may import.
ALLOWED: dict[str, set[str]] = {
    "cases": set(),
    "analysis": set(),
    "detector": {"cases", "analysis"},
    "reader_study": {"cases", "detector", "analysis"},
    "workstation": {"cases", "detector", "reader_study", "analysis"},
    "app_pages": {"cases", "detector", "reader_study", "analysis", "workstation"},
    "app": {"app_pages", "workstation", "reader_study", "cases", "analysis"},
    "app_server": {"app_pages", "workstation", "reader_study"},
}
#: root-level utility modules: importable by every unit, themselves importing no project module.
UTILITIES = {"tsct_files"}
ALLOWED.update({name: set() for name in UTILITIES})
PROJECT = set(ALLOWED) | {"tsct_cli", "tsct_demo"}


def _sources(unit: str) -> list[Path]:
    folder = ROOT / unit
    if folder.is_dir():
        return sorted(p for p in folder.rglob("*.py") if "migrations" not in p.parts or p.name == "env.py")
    return [ROOT / f"{unit}.py"]


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, absolute module, imported names) of every absolute import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module, [alias.name for alias in node.names]))
    return out


def _violations(unit: str) -> list[str]:
    problems = []
    for path in _sources(unit):
        for line, module, names in _imports(path):
            parts = module.split(".")
            top = parts[0]
            if top not in PROJECT or top == unit:
                continue
            where = f"{path.relative_to(ROOT)}:{line}"
            if top not in ALLOWED[unit] and top not in UTILITIES:
                problems.append(f"{where}: {unit} imports {module} (allowed: {', '.join(sorted(ALLOWED[unit])) or 'no project package'})")
            private = [p for p in parts[1:] if p.startswith("_") and not p.startswith("__")] + [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private:
                problems.append(f"{where}: {unit} imports {module}{' (' + ', '.join(names) + ')' if names else ''}, private to {top}")
    return problems


@pytest.mark.parametrize("unit", sorted(ALLOWED))
def test_imports_point_down_the_stack_and_never_at_private_modules(unit):
    assert _sources(unit) and all(p.is_file() for p in _sources(unit))
    problems = _violations(unit)
    assert not problems, "\n".join(problems)


def test_the_checker_sees_a_violation(tmp_path, monkeypatch):
    """The rule is not vacuous: an upward and a private import are both reported."""
    fake = tmp_path / "cases"
    fake.mkdir()
    (fake / "bad.py").write_text("def f():\n    from reader_study import open_db\n    from detector._geometry import crop\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    problems = _violations("cases")
    assert len(problems) == 3 and "cases imports reader_study" in problems[0] and "private to detector" in problems[2]
