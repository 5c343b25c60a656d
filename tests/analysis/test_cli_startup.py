"""The command line starts without loading the numerical stack (issue 12 item 4, issue 15).

Checked by what a fresh process has imported, not by timing (``bench/bench_cli_startup.py``
measures the time): ``tsct --help`` loads no command group, ``tsct analyze --help`` loads
``analysis.cli`` but none of NumPy, pandas, SciPy, Matplotlib or the analysis modules,
``tsct analyze st`` on a workbook runs without pandas, and every name ``analysis`` exports
still resolves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = (
    "numpy",
    "pandas",
    "scipy",
    "matplotlib",
    "torch",
    "SimpleITK",
    "sqlalchemy",
    "streamlit",
    "analysis.data",
    "analysis.significance",
    "analysis.report",
    "openpyxl",
    "python_calamine",
)
GROUPS = ("cases.cli", "detector.cli", "reader_study.cli", "analysis.cli")

PROBE = """
import json, sys
mods = json.loads(sys.argv[2])
sys.argv = ["tsct", *json.loads(sys.argv[1])]
import tsct_cli
try:
    tsct_cli.main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print(json.dumps({"code": code, "loaded": [m for m in mods if m in sys.modules]}))
"""


def _probe(args: list[str], modules: tuple[str, ...]) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    res = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args), json.dumps(list(modules))], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_tsct_help_loads_no_command_group_and_no_numerical_library():
    out = _probe(["--help"], HEAVY + GROUPS)
    assert out["code"] in (0, None)
    assert out["loaded"] == []


def test_tsct_analyze_help_loads_only_the_analysis_command_group():
    out = _probe(["analyze", "--help"], HEAVY + GROUPS)
    assert out["code"] in (0, None)
    assert out["loaded"] == ["analysis.cli"]


@pytest.mark.parametrize("group", ["cases", "detect", "study", "analyze"])
def test_every_group_still_answers_help(group):
    out = _probe([group, "--help"], ())
    assert out["code"] in (0, None)


def test_every_exported_name_resolves():
    import analysis

    missing = [name for name in analysis.__all__ if getattr(analysis, name, None) is None]
    assert missing == []
    assert set(analysis.__all__) <= set(dir(analysis))
    with pytest.raises(AttributeError):
        analysis.no_such_name  # noqa: B018


def test_st_on_a_workbook_loads_no_pandas():
    """``tsct analyze st`` reads a workbook and runs DBM and OR without pandas (or pyarrow,
    Matplotlib, openpyxl): pandas alone cost about 0.4 s of CPU per run (issue 15 item 4)."""
    workbook = ROOT / "tests" / "data" / "rjafroc" / "datasets" / "dataset04.xlsx"
    out = _probe(["analyze", "st", str(workbook), "--method", "BOTH"], ("pandas", "pyarrow", "matplotlib", "openpyxl", "analysis.significance"))
    assert out["code"] in (0, None)
    assert out["loaded"] == ["analysis.significance"]  # it did run the analysis
