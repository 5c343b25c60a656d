"""The command line starts without loading the numerical stack (issue 12 item 4, issue 15).

Checked by what a fresh process has imported, not by timing (``bench/bench_cli_startup.py``
measures the time): ``tsct --help`` loads no command group, ``tsct analyze --help`` loads
``analysis.cli`` but none of NumPy, pandas, SciPy, Matplotlib, pydantic or the analysis
modules, ``tsct analyze st`` on a workbook runs without pandas, pydantic or scipy.special's
``__init__``, the plain options convert as typer's own layer converts them, and every name
``analysis`` exports still resolves.
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
    "pydantic",  # typer's conversion layer: plain options and --help go without it (tsct_cli._PlainValues)
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


def test_st_loads_neither_pydantic_nor_scipys_array_api_layer():
    """``tsct analyze st`` converts its plain options without typer's pydantic layer
    (``tsct_cli._PlainValues``) and takes its p values from scipy.special's compiled ufuncs
    without running ``scipy.special``'s ``__init__`` (``analysis.stats._distributions._special``):
    together about 0.35 s of CPU per run (issue 15, whole-process speed)."""
    workbook = ROOT / "tests" / "data" / "rjafroc" / "datasets" / "dataset04.xlsx"
    watched = ("pydantic", "typer._adapters", "scipy._lib._array_api", "numpy.f2py", "scipy.special._ufuncs", "analysis.significance")
    out = _probe(["analyze", "st", str(workbook), "--method", "BOTH", "--seed", "3", "--alpha", "0.05"], watched)
    assert out["code"] in (0, None)
    assert out["loaded"] == ["scipy.special._ufuncs", "analysis.significance"]


#: (annotation, values typed on the command line or given as defaults) for the plain conversion
PLAIN_VALUES = {
    str: ["wAFROC", "", " x ", "12", "é"],
    int: ["12", "0012", "+3", "-0", "-7", "99999999999999999999", "1_000", " 12", "12.0", "1.5", "abc", "", 2000, True],
    float: ["0.05", ".5", "5.", "1e-3", "+1", "-2.5E+2", "1_0.5", " 0.1", "inf", "nan", "0x10", "abc", "", 0.05, 1],
    bool: [True, False, "true", "0", "maybe"],
}


def _one_option_command(**options: tuple[object, object]):
    """The click command typer builds for ``def command(name: annotation = typer.Option(default), ...)``."""
    import inspect

    import typer
    from typer.models import OptionInfo

    app = typer.Typer(add_completion=False)

    def command(**_values: object) -> None: ...

    command.__signature__ = inspect.Signature(
        [
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=default if isinstance(default, OptionInfo) else typer.Option(default), annotation=kind
            )
            for name, (kind, default) in options.items()
        ]
    )
    app.command()(command)
    return typer.main.get_command(app)


def _typer_param(annotation: object, default: object):
    """A typer parameter as typer builds it (None under a typer without the pydantic layer)."""
    param = _one_option_command(value=(annotation, default)).params[0]
    return param if hasattr(param, "type_descriptor") else None


def _convert(runtime, value, param):
    try:
        out = runtime.coerce(value, param=param, ctx=None)
    except Exception as exc:  # noqa: BLE001 - the error itself is compared
        return ("error", type(exc).__name__, str(exc))
    return ("value", type(out), repr(out))


@pytest.mark.parametrize("annotation", list(PLAIN_VALUES), ids=lambda a: a.__name__)
def test_plain_values_convert_as_typers_pydantic_layer(annotation):
    """Every value converts to the same value and type, or fails with the same error, as with typer's own conversion."""
    import tsct_cli

    param = _typer_param(annotation, PLAIN_VALUES[annotation][0])
    if param is None:
        pytest.skip("this typer has no pydantic conversion layer")
    from typer._coercion import build_runtime_param

    tsct_cli._plain_param(param)
    assert isinstance(param._runtime_param, tsct_cli._PlainValues)
    theirs = build_runtime_param(param.type_descriptor)
    for value in [None, *PLAIN_VALUES[annotation]]:
        assert _convert(param._runtime_param, value, param) == _convert(theirs, value, param), value


def test_plain_paths_convert_as_typers_pydantic_layer(tmp_path):
    import tsct_cli

    param = _typer_param(Path, Path("reports"))
    if param is None:
        pytest.skip("this typer has no pydantic conversion layer")
    from typer._coercion import build_runtime_param

    tsct_cli._plain_param(param)
    assert isinstance(param._runtime_param, tsct_cli._PlainValues)
    theirs = build_runtime_param(param.type_descriptor)
    (tmp_path / "study.xlsx").write_bytes(b"")
    for value in [None, str(tmp_path / "study.xlsx"), str(tmp_path), str(tmp_path / "missing"), "", "-", "~/x", Path("reports"), 12]:
        assert _convert(param._runtime_param, value, param) == _convert(theirs, value, param), value


def test_options_with_bounds_or_lists_keep_typers_conversion():
    import typer

    import tsct_cli

    params = _one_option_command(n=(int, 1), names=(list[str], [])).params
    bounded = _one_option_command(n=(int, typer.Option(1, min=0))).params
    if not hasattr(params[0], "type_descriptor"):
        pytest.skip("this typer has no pydantic conversion layer")
    tsct_cli._plain_param(params[0])
    assert isinstance(params[0]._runtime_param, tsct_cli._PlainValues)
    for param in (params[1], *bounded):
        tsct_cli._plain_param(param)
        assert param._runtime_param is None


def test_a_typer_without_the_layer_keeps_its_own_conversion(monkeypatch):
    import tsct_cli

    param = _typer_param(int, 1)
    if param is None:
        pytest.skip("this typer has no pydantic conversion layer")
    monkeypatch.setattr(tsct_cli, "_typer_layer", lambda: None)
    tsct_cli._plain_param(param)
    assert param._runtime_param is None
