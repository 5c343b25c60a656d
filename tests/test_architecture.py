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
``reading_app.workstation``, never the reverse). ``tsct_chain.py``, the end-to-end chain (cases →
detector → reading → analysis → report), is the one module that imports every package;
``tsct_demo.py`` runs it on synthetic cases and ``tsct_cli.py`` (which imports each package's
``cli`` by name, lazily) calls the demo. ``tsct_files.py`` (checked output paths, atomic writes)
is a root-level utility below every package: any unit may import it, and it imports no project module.

Inside a package, modules are grouped by role (:data:`ROLES`): in ``reader_study`` the study data
layer (models, db, design, scoring, coordinator, reading, exchange ...) never imports the
simulated readers (``simulation/``), the test and load-test harnesses (``harness/``) or the
command line (``cli``); other packages see the data layer only. The test reads the source with
``ast``; nothing is imported.
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
    # the end-to-end chain, the demo that runs it, and the command line that runs the demo
    "tsct_chain": {"cases", "detector", "reader_study", "analysis"},
    "tsct_demo": {"tsct_chain"},
    "tsct_cli": {"tsct_demo"},
}
#: packages that only group units (their ``__init__`` holds no code): ``from reading_app import pages``
#: is an import of the unit ``reading_app.pages``.
CONTAINERS = {"reading_app"}
#: root-level utility modules: importable by every unit, themselves importing no project module.
UTILITIES = {"tsct_files"}
ALLOWED.update({name: set() for name in UTILITIES})
PROJECT = set(ALLOWED)

#: package -> {role: the roles it may import}; a module's role is the sub-package or module it lies
#: in (``reader_study/simulation/readers.py``: ``simulation``), "data" for every one not named.
ROLES: dict[str, dict[str, set[str]]] = {
    "reader_study": {
        "data": {"data"},
        "simulation": {"simulation", "data"},
        "harness": {"harness", "data"},
        "cli": {"cli", "simulation", "data"},
    },
}
#: module names inside a package that belong to a role other than their own name
ROLE_OF: dict[str, dict[str, str]] = {"reader_study": {"_marks_sr_cli": "cli"}}
#: the roles of a package that units outside it may import (beside the entry points' own rules)
SEEN_FROM_OUTSIDE: dict[str, dict[str, set[str]]] = {
    "reader_study": {"*": {"data"}, "tsct_chain": {"data", "simulation"}},
}


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
                inner = parts[len(top.split(".")) :]
                private = [p for p in inner if p.startswith("_") and not p.startswith("__")] + [
                    n for n in names if n.startswith("_") and not n.startswith("__")
                ]
                if private:
                    problems.append(f"{where}: {unit} imports {module}{' (' + ', '.join(names) + ')' if names else ''}, private to {top}")
    return problems


def _role(package: str, parts: list[str]) -> str:
    """The role of module ``package.parts...`` (``parts`` below the package; empty: its ``__init__``)."""
    roles = ROLES.get(package, {})
    if not parts or parts[0] == "__init__":
        return "data"
    name = ROLE_OF.get(package, {}).get(parts[0], parts[0])
    return name if name in roles else "data"


def _resolved_imports(path: Path) -> list[tuple[int, list[str]]]:
    """(line, absolute module parts) of every import in a file, relative ones resolved; ``from X import y`` gives X.y."""
    package = list(path.relative_to(ROOT).with_suffix("").parts[:-1])
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name.split(".")) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - (node.level - 1)] if node.level else []
            module = base + (node.module.split(".") if node.module else [])
            out += [(node.lineno, module + [alias.name]) for alias in node.names]
    return out


def _role_violations(unit: str) -> list[str]:
    """Imports that cross a package's roles the wrong way (:data:`ROLES`, :data:`SEEN_FROM_OUTSIDE`)."""
    problems = []
    for path in _sources(unit):
        here = list(path.relative_to(ROOT).with_suffix("").parts)
        for line, parts in _resolved_imports(path):
            package = parts[0]
            if package not in ROLES or len(parts) < 2:
                continue
            target = _role(package, parts[1:])
            where = f"{path.relative_to(ROOT)}:{line}"
            if package == here[0]:
                source = _role(package, here[1:])
                if target not in ROLES[package][source]:
                    problems.append(
                        f"{where}: {package}'s {source} imports {'.'.join(parts)} ({target}; {source} may import: {', '.join(sorted(ROLES[package][source]))})"
                    )
            else:
                seen = SEEN_FROM_OUTSIDE[package]
                if target not in seen.get(unit, seen["*"]):
                    problems.append(
                        f"{where}: {unit} imports {'.'.join(parts)}, {package}'s {target} (not for {unit}: {', '.join(sorted(seen.get(unit, seen['*'])))})"
                    )
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


@pytest.mark.parametrize("unit", sorted(ALLOWED))
def test_the_data_layer_never_imports_simulation_harness_or_command_line(unit):
    """reader_study's data layer imports no simulated reader, harness or CLI; other packages see the data layer only."""
    problems = _role_violations(unit)
    assert not problems, "\n".join(problems)


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


def test_the_role_checker_sees_a_violation(tmp_path, monkeypatch):
    """The role rule is not vacuous: the data layer importing the harness or the simulated readers is reported."""
    fake = tmp_path / "reader_study"
    (fake / "simulation").mkdir(parents=True)
    (fake / "scoring.py").write_text(
        "from .harness import TemporaryPostgres\n\ndef f():\n    from reader_study.simulation import read_case\n    from . import models\n"
    )
    (fake / "simulation" / "readers.py").write_text("from ..reading import ReadingService\nfrom ..harness.caselists import SyntheticLesion\n")
    (tmp_path / "app.py").write_text("from reader_study.harness import write_synthetic_case_list\nfrom reader_study import open_db\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    problems = _role_violations("reader_study")
    assert len(problems) == 3, problems
    assert "scoring.py:1: reader_study's data imports reader_study.harness.TemporaryPostgres" in problems[0]
    assert "reader_study.simulation.read_case (simulation" in problems[1]
    assert "simulation imports reader_study.harness.caselists.SyntheticLesion" in problems[2]
    outside = _role_violations("app")
    assert len(outside) == 1 and "app imports reader_study.harness.write_synthetic_case_list" in outside[0]
