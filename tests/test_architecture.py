"""The package import graph is the one docs/architecture.md draws.

Imports (module-level and inside functions) may only point down this stack:

    app.py                              the Streamlit entry (a router over the pages)
    reading_app/server.py, pages/       the reading app's server entry and pages
    reading_app/workstation/            the viewer's server-side logic (images, HU, tickets, routes)
    reader_study/                       studies, readers, marks, scoring, simulated readers
    detector/                           registration, subtraction, z-maps, candidates, outputs.json
    cases/       analysis/              exams, grids, truth | statistics on tidy tables

``cases`` and ``analysis`` import no other package of the project: ``analysis`` is last in the data
flow (it reads the study's export) but, being pure statistics, a library that ``detector``'s FROC
and ``reader_study``'s exporter call. No package imports another package's private ``_module`` or
``_name``. The reading app's three parts are units of their own (``reading_app.pages`` may import
``reading_app.workstation``, never the reverse). The entry points ``tsct_cli.py`` and ``tsct_demo.py`` wire everything and may import any
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
    "reading_app.workstation": {"cases", "detector", "reader_study", "analysis"},
    "reading_app.pages": {"cases", "detector", "reader_study", "analysis", "reading_app.workstation"},
    "reading_app.server": {"reading_app.pages", "reading_app.workstation", "reader_study"},
    "app": {"reading_app.pages", "reading_app.workstation", "reader_study", "cases", "analysis"},
}
#: packages that only group units (their ``__init__`` holds no code): ``from reading_app import pages``
#: is an import of the unit ``reading_app.pages``.
CONTAINERS = {"reading_app"}
#: root-level utility modules: importable by every unit, themselves importing no project module.
UTILITIES = {"tsct_files"}
ALLOWED.update({name: set() for name in UTILITIES})
PROJECT = set(ALLOWED) | {"tsct_cli", "tsct_demo"}


def _sources(unit: str) -> list[Path]:
    folder = ROOT.joinpath(*unit.split("."))
    if folder.is_dir():
        return sorted(p for p in folder.rglob("*.py") if "migrations" not in p.parts or p.name == "env.py")
    return [folder.with_suffix(".py")]


def _targets(module: str, names: list[str]) -> list[str]:
    """The project units an import reaches (``""`` for a module outside the project)."""
    parts = module.split(".")
    if parts[0] in CONTAINERS:
        if len(parts) == 1:  # from reading_app import pages, workstation
            return [f"{module}.{name}" for name in names]
        return [".".join(parts[:2])]
    return [parts[0] if parts[0] in PROJECT else ""]


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
            where = f"{path.relative_to(ROOT)}:{line}"
            for top in _targets(module, names):
                if not top or top == unit:
                    continue
                if top not in PROJECT:
                    problems.append(f"{where}: {unit} imports {module}, which is no unit of the project (add it to ALLOWED)")
                    continue
                if top not in ALLOWED[unit] and top not in UTILITIES:
                    reached = module if top == module.split(".")[0] else f"{top} ({module})"
                    problems.append(f"{where}: {unit} imports {reached} (allowed: {', '.join(sorted(ALLOWED[unit])) or 'no project package'})")
                inner = parts[len(top.split(".")):]
                private = [p for p in inner if p.startswith("_") and not p.startswith("__")] + [n for n in names if n.startswith("_") and not n.startswith("__")]
                if private:
                    problems.append(f"{where}: {unit} imports {module}{' (' + ', '.join(names) + ')' if names else ''}, private to {top}")
    return problems


@pytest.mark.parametrize("unit", sorted(ALLOWED))
def test_imports_point_down_the_stack_and_never_at_private_modules(unit):
    assert _sources(unit) and all(p.is_file() for p in _sources(unit))
    problems = _violations(unit)
    assert not problems, "\n".join(problems)


def test_every_module_of_a_container_belongs_to_a_unit():
    """``reading_app`` holds only its units (and an ``__init__`` without imports): nothing escapes the rules."""
    for container in CONTAINERS:
        units = [u for u in ALLOWED if u.startswith(container + ".")]
        covered = {p for u in units for p in _sources(u)}
        init = ROOT / container / "__init__.py"
        assert not _imports(init), f"{init.relative_to(ROOT)} imports code; keep it a docstring"
        stray = sorted(str(p.relative_to(ROOT)) for p in (ROOT / container).rglob("*.py") if p not in covered and p != init)
        assert not stray, f"modules of {container} outside every unit: {stray}"


def test_the_checker_sees_a_violation(tmp_path, monkeypatch):
    """The rule is not vacuous: an upward and a private import are both reported."""
    fake = tmp_path / "cases"
    fake.mkdir()
    (fake / "bad.py").write_text("def f():\n    from reader_study import open_db\n    from detector._geometry import crop\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    problems = _violations("cases")
    assert len(problems) == 3 and "cases imports reader_study" in problems[0] and "private to detector" in problems[2]


def test_the_checker_sees_the_viewer_logic_import_a_page(tmp_path, monkeypatch):
    """Inside the reading app too: the viewer's logic may not import a page, in either import style."""
    fake = tmp_path / "reading_app" / "workstation"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text("from reading_app import pages\nfrom reading_app.pages.common import text\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    problems = _violations("reading_app.workstation")
    assert len(problems) == 2 and all("reading_app.workstation imports reading_app.pages" in p for p in problems)
