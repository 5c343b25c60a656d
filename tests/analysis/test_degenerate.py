"""Degenerate data get an honest answer: no p-value from floating-point noise (issue 15).

* dataset04 with every treatment given treatment 1's marks: the differences and their standard
  errors are zero in exact arithmetic (unguarded: RRRC F(4, 12) = 6.95, p = 0.0039);
* a file without any mark: every FOM is 0.5 (unguarded: FRRC p = 0.008, "significant");
* zero variance with a real difference: F is infinite, p = 0 for want of variability;
* and the ordinary datasets are left exactly as they were.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from analysis import read_jafroc_excel, significance_test, write_jafroc_excel
from analysis.cli import app
from analysis.degenerate import guard_degenerate, identical_treatments
from analysis.stats import or_analysis

DATA = Path(__file__).resolve().parents[1] / "data" / "rjafroc" / "datasets"


@pytest.fixture(scope="module")
def dataset04():
    return read_jafroc_excel(DATA / "dataset04.xlsx")


@pytest.fixture(scope="module")
def same_marks(dataset04):
    d = dataset04
    return d._replace(nl=np.repeat(d.nl[:1], d.n_treatments, axis=0), ll=np.repeat(d.ll[:1], d.n_treatments, axis=0))


@pytest.fixture(scope="module")
def no_marks(dataset04):
    return dataset04._replace(nl=np.full_like(dataset04.nl, -np.inf), ll=np.full_like(dataset04.ll, -np.inf))


def _quiet(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return significance_test(*args, **kwargs)


@pytest.mark.parametrize("method", ["OR", "DBM"])
def test_identical_treatments_give_no_p_value_and_say_why(same_marks, method):
    res = _quiet(same_marks, "wAFROC", method=method)
    assert identical_treatments(res.foms)
    for name, a in res.analyses.items():
        assert math.isnan(a.p_value) and math.isnan(a.statistic), name
        assert all(c.estimate == 0.0 and math.isnan(c.p_value) for c in a.differences)
        assert any("no p-value is given" in w for w in a.warnings), a.warnings
    doc = json.loads(res.to_json())
    assert doc["analyses"]["RRRC"]["p"] is None
    assert any("floating-point rounding" in w for w in doc["warnings"])


def test_no_marks_every_fom_one_half_and_no_p_value(no_marks):
    for method in ("OR", "DBM"):
        res = _quiet(no_marks, "wAFROC", method=method)
        assert np.allclose(res.foms, 0.5, rtol=0, atol=1e-12)  # 0.5 up to rounding: the noise the guard is for
        assert all(math.isnan(a.p_value) for a in res.analyses.values())


def test_zero_variance_with_a_difference_gives_no_p_value():
    foms = np.array([[0.70, 0.72, 0.74], [0.80, 0.82, 0.84]])  # the same difference for every reader
    raw = or_analysis(foms, np.zeros((2, 3, 2, 3)), n_cases=50)
    assert raw.analyses["RRRC"].p_value < 1e-20  # unguarded: F ~ 6e29 from a rounding-residue denominator
    res = guard_degenerate(raw)
    for name in ("RRRC", "FRRC", "RRFC"):
        a = res.analyses[name]
        assert math.isnan(a.p_value), name
        assert a.differences[0].estimate == pytest.approx(-0.1)  # the estimate itself is kept
        assert any("no reader or case variability" in w for w in a.warnings)


def test_zero_difference_with_real_variance_is_an_ordinary_test():
    # equal reader averages but real case variability: t = 0, p = 1 is a legitimate answer
    foms = np.array([[0.70, 0.80], [0.80, 0.70]])
    cov = np.zeros((2, 2, 2, 2))
    for i in range(2):
        for j in range(2):
            cov[i, j, i, j] = 1e-3
    res = guard_degenerate(or_analysis(foms, cov, n_cases=50))
    assert res.analyses["FRRC"].differences[0].p_value == pytest.approx(1.0)
    assert not any("rounding" in w for w in res.warnings)


@pytest.mark.parametrize("name,fom", [("dataset02", "Wilcoxon"), ("dataset04", "wAFROC"), ("dataset04", "HrSe"), ("dataset05", "MaxNLF")])
def test_ordinary_datasets_are_untouched(name, fom):
    data = read_jafroc_excel(DATA / f"{name}.xlsx")
    for method in ("OR", "DBM"):
        res = _quiet(data, fom, method=method)
        assert guard_degenerate(res) is res
        assert all(not math.isnan(a.p_value) for a in res.analyses.values())


def test_cli_and_report_say_so_in_words(tmp_path, no_marks):
    path = write_jafroc_excel(no_marks, tmp_path / "nomarks.xlsx")
    runner = CliRunner()
    res = runner.invoke(app, ["st", str(path), "--json", str(tmp_path / "st.json")])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "no p-value" in text and "significant at" not in text
    assert json.loads((tmp_path / "st.json").read_text())["backend"] == "python"
    from analysis.report import write_report

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paths = write_report(no_marks, tmp_path / "reports", study_name="nomarks", subgroups=[], pdf=False)
    html = paths.html.read_text(encoding="utf-8") if hasattr(paths, "html") else (paths.directory / "report.html").read_text(encoding="utf-8")
    assert "no p-value" in html
    assert "statistically significant at" not in html


def test_power_from_a_degenerate_pilot_is_refused_in_words(tmp_path, same_marks):
    pilot = same_marks.select_treatments(["1", "2"])
    path = write_jafroc_excel(pilot, tmp_path / "pilot.xlsx")
    runner = CliRunner()
    res = runner.invoke(app, ["power", str(path)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "no observed effect" in " ".join(res.output.split())
    res = runner.invoke(app, ["power", str(path), "--effect-size", "0.05"])
    assert res.exit_code == 2 and "zero within rounding" in " ".join(res.output.split())
    res = runner.invoke(app, ["power", str(DATA / "dataset03.xlsx"), "--fom", "Wilcoxon", "--effect-size", "5"])
    assert res.exit_code == 2 and "between -1 and 1" in " ".join(res.output.split())
    res = runner.invoke(app, ["power", str(DATA / "dataset04.xlsx")])
    assert res.exit_code == 2 and "--treatments" in " ".join(res.output.split())
    res = runner.invoke(app, ["power", str(DATA / "dataset04.xlsx"), "--treatments", "4,5", "-j", "5"])
    assert res.exit_code == 0, res.output
    assert "4 vs 5" in res.output and "converted to OR" in " ".join(res.output.split())
