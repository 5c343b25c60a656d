"""A stand-in for the R call of :mod:`analysis.rjafroc_backend`, returning RJafroc's stored
``St()`` output (``tests/data/rjafroc/expected/st/``: RJafroc 2.1.3, commit 44b0e39e, R 4.2.2)
for the file the backend writes.  Lets the whole backend and the crosscheck command run without R.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from analysis import fom_matrix, read_jafroc_excel
from tests.analysis.rjafroc_reference import raw_st, reference_data

DATA = Path(__file__).resolve().parents[1] / "data" / "rjafroc"


_st = raw_st


_data = reference_data


_LABEL = re.compile(r"\b(trt|rdr)([A-Za-z0-9_.]+)")


def relabel(plain, mapping: dict[str, dict[str, str]]):
    """Rename RJafroc's trt/rdr labels (row names, column names, dimnames) in a plain St() output."""

    def sub(s: str) -> str:
        return _LABEL.sub(lambda m: m.group(1) + mapping[m.group(1)].get(m.group(2), m.group(2)), s)

    if isinstance(plain, dict):
        if plain.get("__type__") == "data.frame":
            return {**plain, "rownames": [sub(r) for r in plain["rownames"]], "columns": {sub(k): v for k, v in plain["columns"].items()}}
        if plain.get("__type__") == "array":
            return {**plain, "dimnames": [[sub(x) for x in d] for d in plain["dimnames"]]}
        return {k: relabel(v, mapping) for k, v in plain.items()}
    return plain


def fake_r_layer(dataset: str, fom: str, calls: list | None = None, tamper=None):
    """A stand-in for ``_run_st_in_r`` that checks the file written for RJafroc and returns
    RJafroc's stored St() output, relabelled with the positional IDs of that file."""
    data = _data(dataset)

    def run(xlsx_path, fom_, method, analyses, alpha):
        written = read_jafroc_excel(xlsx_path)
        wt, wr = len(str(data.n_treatments)), len(str(data.n_readers))
        assert written.treatments == tuple(f"T{i + 1:0{wt}d}" for i in range(data.n_treatments))
        assert written.readers == tuple(f"R{j + 1:0{wr}d}" for j in range(data.n_readers))
        np.testing.assert_array_equal(fom_matrix(written, fom_), fom_matrix(data, fom_))
        mapping = {"trt": {t: w for t, w in zip(data.treatments, written.treatments)}, "rdr": {r: w for r, w in zip(data.readers, written.readers)}}
        if calls is not None:
            calls.append((fom_, method, tuple(analyses), alpha))
        out = {a: relabel(_st(dataset)[f"{fom}|{method}|{a}"], mapping) for a in analyses}
        return tamper(out) if tamper else out

    return run
