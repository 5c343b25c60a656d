"""Workbooks saved by LibreOffice Calc (.xlsx, .xls, .ods) read to the same study as the originals.

The files in ``tests/data/libreoffice`` were converted by LibreOffice 7.4 (see PROVENANCE.md
there); LibreOffice itself is not needed to run these tests.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from analysis import fom_matrix, read_observer_data
from analysis.formats.lroc_excel import read_lroc_excel
from analysis.lroc import lroc_fom_matrix

DATA = Path(__file__).resolve().parents[1] / "data"
LO = DATA / "libreoffice"
RJ = DATA / "rjafroc"


def _idmapped_dataset04():
    """The study dataset04_idmap_lo.* was made from (PROVENANCE.md)."""
    d = read_observer_data(RJ / "datasets" / "dataset04.xlsx")
    return dataclasses.replace(
        d,
        normal_cases=tuple(f"N-{c}" for c in d.normal_cases),
        abnormal_cases=tuple(f"A-{c}" for c in d.abnormal_cases),
        reader_groups={r: ("resident" if n % 2 else "attending") for n, r in enumerate(d.readers)},
    )


@pytest.mark.parametrize("name", ["dataset02_lo.xlsx", "dataset02_lo.xls", "dataset02_lo.ods", "dataset04_lo.xlsx"])
def test_libreoffice_copy_reads_as_the_original(name):
    original = read_observer_data(RJ / "datasets" / f"{name.split('_')[0]}.xlsx")
    copy = read_observer_data(LO / name)
    assert copy.equals(original)
    fom = "Wilcoxon" if original.paradigm == "ROC" else "wAFROC"
    np.testing.assert_array_equal(fom_matrix(copy, fom), fom_matrix(original, fom))


@pytest.mark.parametrize("ext", ["xlsx", "xls", "ods"])
def test_libreoffice_copy_keeps_the_id_map_and_reader_groups(ext):
    """The TSCT_ID_MAP and TSCT_READERS sheets survive LibreOffice: IDs and groups restored."""
    copy = read_observer_data(LO / f"dataset04_idmap_lo.{ext}")
    expected = _idmapped_dataset04()
    assert copy.normal_cases[:2] == ("N-1", "N-2")
    assert copy.reader_groups == {"1": "attending", "3": "resident", "4": "attending", "5": "resident"}
    assert copy.equals(expected)


@pytest.mark.parametrize("ext", ["xlsx", "xls", "ods"])
def test_libreoffice_lroc_copy_reads_as_the_original(ext):
    original = read_lroc_excel(RJ / "excel-examples" / "toyFiles" / "LROC" / "lroc.xlsx")
    copy = read_lroc_excel(LO / f"lroc_lo.{ext}")
    for f in dataclasses.fields(original):
        if f.name != "name":
            a, b = getattr(original, f.name), getattr(copy, f.name)
            assert np.array_equal(a, b, equal_nan=True) if isinstance(a, np.ndarray) else a == b, f.name
    for fom in ("PCL", "ALROC", "Wilcoxon"):
        np.testing.assert_array_equal(lroc_fom_matrix(copy, fom, 0.2), lroc_fom_matrix(original, fom, 0.2))


def test_cli_reads_an_xls_file():
    from typer.testing import CliRunner

    from analysis.cli import app

    res = CliRunner().invoke(app, ["fom", str(LO / "dataset02_lo.xls"), "--fom", "Wilcoxon"])
    assert res.exit_code == 0, res.output
    orig = fom_matrix(read_observer_data(RJ / "datasets" / "dataset02.xlsx"), "Wilcoxon")
    assert f"{orig[0, 0]:.4f}" in res.output
