"""iMRMC input files (FDA iMRMC, Gallas et al.): ROC ratings as a long table.

Layout (as written by iMRMC and RJafroc)::

    free-text description lines
    N0:69                      (number of normal cases, optional)
    N1:45                      (number of abnormal cases, optional)
    NR:5                       (number of readers, optional)
    NM:2                       (number of modalities, optional)
    BEGIN DATA:
    -1,1,truth,0               readerID -1, caseID, "truth", 0 = normal / 1 = abnormal
    ...
    0,1,0,1.000000             readerID, caseID, modalityID, score
    ...

Only fully crossed ROC data are supported (every reader scores every case in every
modality).  Readers and modalities keep their order of first appearance in the data rows;
cases keep the order of the truth rows (normal cases first).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from analysis.data import ObserverData, ObserverDataError, Problem
from analysis.formats._common import parse_number

__all__ = ["read_imrmc", "write_imrmc"]

_HEADER_COUNT = re.compile(r"^\s*(N0|N1|NR|NM)\s*:\s*(\d+)\s*$", re.IGNORECASE)


def read_imrmc(path: str | Path, *, name: str | None = None) -> ObserverData:
    """Read an iMRMC ``.imrmc`` file as ROC :class:`ObserverData`.

    Parameters
    ----------
    path : str or Path
    name : str, optional
        Study name; default the first description line or the file name.

    Raises
    ------
    ObserverDataError
        With file, line number and field of every problem (missing ``BEGIN DATA:``, unknown
        case, non-numeric score, duplicate or missing scores, header counts that disagree).
    """
    path = Path(path)
    file = str(path)
    if not path.exists():
        raise FileNotFoundError(f"No such iMRMC file: {file!r}")
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise ObserverDataError(Problem("the file is empty.", file=file))
    try:
        begin = next(n for n, line in enumerate(lines) if line.strip().upper().startswith("BEGIN DATA"))
    except StopIteration:
        raise ObserverDataError(
            Problem(
                "no 'BEGIN DATA:' line; an iMRMC file has a header, a line 'BEGIN DATA:', then rows 'readerID,caseID,modalityID,score'.", file=file
            )
        ) from None

    counts: dict[str, int] = {}
    description = ""
    for line in lines[:begin]:
        m = _HEADER_COUNT.match(line)
        if m:
            counts[m.group(1).upper()] = int(m.group(2))
        elif line.strip() and not description:
            description = line.strip()

    problems: list[Problem] = []
    truth: dict[str, int] = {}
    truth_order: list[str] = []
    scores: dict[tuple[str, str, str], tuple[float, int]] = {}
    readers: dict[str, None] = {}
    modalities: dict[str, None] = {}
    fields = ("readerID", "caseID", "modalityID", "score")
    for n, line in enumerate(lines[begin + 1 :], start=begin + 2):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4:
            problems.append(Problem(f"expected 4 comma-separated fields {fields}, got {len(parts)}: {line.strip()!r}.", file=file, row=n))
            continue
        reader, case, modality, score = parts
        for value, fld in zip(parts[:3], fields):
            if not value:
                problems.append(Problem(f"{fld} is empty.", file=file, row=n, column=fld))
        if not all(parts[:3]):
            continue
        if reader == "-1" or modality.lower() == "truth":
            t = parse_number(score)
            if t not in (0.0, 1.0):
                problems.append(Problem(f"truth must be 0 (normal) or 1 (abnormal), got {score!r}.", file=file, row=n, column="score"))
                continue
            if case in truth:
                problems.append(Problem(f"case {case!r} has more than one truth row.", file=file, row=n, column="caseID"))
                continue
            truth[case] = int(t)
            truth_order.append(case)
            continue
        x = parse_number(score, allow_minus_inf=True)
        if x is None:
            problems.append(Problem(f"score {score!r} is not a number.", file=file, row=n, column="score"))
            continue
        key = (modality, reader, case)
        if key in scores:
            problems.append(
                Problem(
                    f"reader {reader!r} scores case {case!r} in modality {modality!r} twice (also line {scores[key][1]}).",
                    file=file,
                    row=n,
                    column="caseID",
                )
            )
            continue
        readers.setdefault(reader, None)
        modalities.setdefault(modality, None)
        scores[key] = (x, n)

    for (modality, reader, case), (_, n) in scores.items():
        if case not in truth:
            problems.append(Problem(f"case {case!r} has no truth row ('-1,{case},truth,0|1').", file=file, row=n, column="caseID"))
    normal = [c for c in truth_order if truth[c] == 0]
    abnormal = [c for c in truth_order if truth[c] == 1]
    expected = {"N0": len(normal), "N1": len(abnormal), "NR": len(readers), "NM": len(modalities)}
    for key, value in counts.items():
        if expected[key] != value:
            problems.append(Problem(f"the header says {key}:{value} but the data have {expected[key]}.", file=file))
    if not abnormal:
        problems.append(Problem("there is no abnormal case (truth 1).", file=file))
    if problems:
        raise ObserverDataError(problems)

    trt, rdr = list(modalities), list(readers)
    fp = np.full((len(trt), len(rdr), len(normal)), np.nan)
    tp = np.full((len(trt), len(rdr), len(abnormal)), np.nan)
    n_idx = {c: k for k, c in enumerate(normal)}
    a_idx = {c: k for k, c in enumerate(abnormal)}
    t_idx = {t: i for i, t in enumerate(trt)}
    r_idx = {r: j for j, r in enumerate(rdr)}
    for (modality, reader, case), (x, _) in scores.items():
        i, j = t_idx[modality], r_idx[reader]
        if case in n_idx:
            fp[i, j, n_idx[case]] = x
        else:
            tp[i, j, a_idx[case]] = x
    missing = [(trt[i], rdr[j], normal[k]) for i, j, k in np.argwhere(np.isnan(fp))]
    missing += [(trt[i], rdr[j], abnormal[k]) for i, j, k in np.argwhere(np.isnan(tp))]
    if missing:
        listed = "; ".join(f"modality {m!r} reader {r!r} case {c!r}" for m, r, c in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise ObserverDataError(
            Problem(
                f"{len(missing)} scores are missing ({listed}{more}); only fully crossed designs "
                "(every reader scores every case in every modality) are supported.",
                file=file,
            )
        )
    return ObserverData.from_roc(
        fp,
        tp,
        treatments=trt,
        readers=rdr,
        normal_cases=normal,
        abnormal_cases=abnormal,
        name=name if name is not None else (description or path.stem),
    )


def write_imrmc(data: ObserverData, path: str | Path, *, description: str | None = None) -> Path:
    """Write ROC :class:`ObserverData` as an iMRMC file.

    Scores of ``-inf`` (possible in ROC data) are written as ``min(finite scores) - 1``, which
    keeps every comparison and therefore the Wilcoxon AUC.  FROC data must be converted first
    (``data.to_roc()``).

    Raises
    ------
    ObserverDataError
        For FROC data, or IDs containing commas (the field separator).
    """
    if data.paradigm != "ROC":
        raise ObserverDataError("iMRMC files hold ROC data only; convert FROC data with data.to_roc() first (highest-rating inferred ROC).")
    bad = [x for x in (*data.treatments, *data.readers, *data.case_ids) if "," in x]
    if bad or "-1" in data.readers or "truth" in {t.lower() for t in data.treatments}:
        raise ObserverDataError(
            f"IDs {bad or ['-1' if '-1' in data.readers else 'truth']} cannot be written to an "
            "iMRMC file (commas separate fields; reader -1 and modality 'truth' mark truth "
            "rows); rename them first."
        )
    fp = data.nl[:, :, : data.n_normal, 0]
    tp = data.ll[:, :, :, 0]
    finite = np.concatenate([fp[np.isfinite(fp)], tp[np.isfinite(tp)]])
    floor = float(finite.min() - 1.0) if finite.size else 0.0
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = [
        description or data.name or "TSCT observer study",
        f"N0:{data.n_normal}",
        f"N1:{data.n_abnormal}",
        f"NR:{data.n_readers}",
        f"NM:{data.n_treatments}",
        "BEGIN DATA:",
    ]
    out += [f"-1,{c},truth,0" for c in data.normal_cases]
    out += [f"-1,{c},truth,1" for c in data.abnormal_cases]
    for i, t in enumerate(data.treatments):
        for j, r in enumerate(data.readers):
            for k, c in enumerate(data.normal_cases):
                out.append(f"{r},{c},{t},{_fmt(fp[i, j, k], floor)}")
            for k, c in enumerate(data.abnormal_cases):
                out.append(f"{r},{c},{t},{_fmt(tp[i, j, k], floor)}")
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


def _fmt(x: float, floor: float) -> str:
    return repr(float(floor if x == -math.inf else x))
