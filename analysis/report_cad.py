"""The report's optional section "The detector alone vs the radiologists" (``--cad-marks``).

The detector's marks (``marks_<method>.csv`` of ``tsct detect evaluate``, or any file that
:func:`analysis.cad_vs_rad.read_cad_marks` reads) are added to the study as one more reader
(:func:`analysis.cad_vs_rad.add_cad_reader`) and compared with the radiologists in one
treatment, normally the unaided one, by RJafroc's ``StCadVsRad`` 1T-RRRC analysis
(:func:`analysis.cad_vs_rad.st_cad_vs_rad`; random readers and random cases, Hillis 2007).
"""

from __future__ import annotations

import math
from typing import Any

from analysis.cad_vs_rad import add_cad_reader, st_cad_vs_rad
from analysis.data import ObserverData, ObserverDataError

__all__ = ["UNAIDED_NAMES", "cad_section", "choose_unaided_treatment"]

#: Treatment names taken as "unaided" when none is chosen (case-insensitive substrings).
UNAIDED_NAMES: tuple[str, ...] = ("unaided", "without", "no_cad", "no-cad", "nocad", "baseline", "control")


def choose_unaided_treatment(data: ObserverData, treatment: str | None = None) -> str:
    """The treatment in which the detector is compared with the radiologists.

    ``treatment`` when given (it must be one of the study's); else the study's only treatment;
    else the one treatment whose name contains one of :data:`UNAIDED_NAMES`. Anything else is
    refused with a message that names the option to use (``--cad-treatment``).
    """
    names = [str(t) for t in data.treatments]
    if treatment is not None:
        if str(treatment) not in names:
            raise ObserverDataError(f"--cad-treatment: unknown treatment {treatment!r}; the study has {names}.")
        return str(treatment)
    if len(names) == 1:
        return names[0]
    hits = [t for t in names if any(k in t.lower() for k in UNAIDED_NAMES)]
    if len(hits) == 1:
        return hits[0]
    raise ObserverDataError(
        f"the detector is compared with the radiologists in one treatment, normally the unaided one; "
        f"the study has {names} and none is recognisably unaided: choose it with --cad-treatment."
    )


def cad_section(
    data: ObserverData, marks: Any, fom: str, *, alpha: float = 0.05, treatment: str | None = None, source: str | None = None
) -> dict[str, Any]:
    """The section's content: the 1T-RRRC result in words and numbers, and its JSON.

    Parameters
    ----------
    data : the radiologists' study.
    marks : the detector's marks (``case_id, lesion_id, rating``; :func:`read_cad_marks`).
    fom : the report's figure of merit (the same for the detector and the radiologists).
    alpha : significance level.
    treatment : the treatment compared (default: :func:`choose_unaided_treatment`).
    source : the marks file, recorded in the section.

    Returns
    -------
    dict with ``sentence`` (the result in words), ``rows`` (label, value pairs), ``notes``,
    ``treatment``, ``source`` and ``json`` (:meth:`CadVsRadResult.to_dict`, RJafroc's names).
    """
    treatment = choose_unaided_treatment(data, treatment)
    rid = "CAD" if "CAD" not in data.readers else "detector"
    with_cad = add_cad_reader(data, marks, reader_id=rid)
    res = st_cad_vs_rad(with_cad, fom, cad_reader=rid, method="1T-RRRC", alpha=alpha, treatment=treatment)
    level = f"{100 * (1 - alpha):g}%"
    lo, hi = res.ci_avg_diff_fom
    if math.isnan(res.pval):
        verdict = "no test is possible: " + "; ".join(res.notes)
    elif res.significant:
        verdict = (
            "the radiologists performed significantly better than the detector alone"
            if res.avg_diff_fom > 0
            else "the detector alone performed significantly better than the radiologists"
        )
    else:
        verdict = "the difference between the radiologists and the detector alone is not significant"
    p = "" if math.isnan(res.pval) else (f"{res.pval:.2e}" if res.pval < 1e-4 else f"{res.pval:.4f}")
    sentence = (
        f"In the {treatment} treatment, the detector alone had {fom} {res.fom_cad:.4f} and the {len(res.readers)} "
        f"radiologists a mean of {res.avg_rad_fom:.4f} (range {min(res.fom_rad):.4f}-{max(res.fom_rad):.4f}); "
        f"radiologists minus detector {res.avg_diff_fom:+.4f} ({level} CI {lo:+.4f} to {hi:+.4f})"
        + (f", t = {res.tstat:.3f} on {res.df:.2f} df, p = {p}" if p else "")
        + f" (1T-RRRC, random readers and cases, {res.n_cases} cases): {verdict}"
        + (f" at alpha = {alpha:g}." if p else ".")
    )
    rows = [
        ("Treatment", treatment),
        ("Detector's FOM", f"{res.fom_cad:.4f}"),
        ("Radiologists' mean FOM", f"{res.avg_rad_fom:.4f} ({level} CI {res.ci_avg_rad_fom[0]:.4f} to {res.ci_avg_rad_fom[1]:.4f})"),
        ("Radiologists - detector", f"{res.avg_diff_fom:+.4f} ({level} CI {lo:+.4f} to {hi:+.4f})"),
        ("t, df, p", f"{res.tstat:.3f}, {res.df:.2f}, {p}" if p else "not computed"),
    ]
    rows += [(f"Radiologist {r}", f"{v:.4f}") for r, v in zip(res.readers, res.fom_rad)]
    doc = res.to_dict()
    doc["cadMarksFile"] = source
    return {"sentence": sentence, "rows": rows, "notes": list(res.notes), "treatment": treatment, "source": source, "json": doc}
