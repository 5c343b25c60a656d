"""Split-plot observer studies and their Obuchowski-Rockette analysis.

In a **split-plot** design ("split-plot-C" in Hillis' and RJafroc's naming) the readers are
divided into ``G`` groups and the cases into ``G`` groups of the same kind: every reader of group
``g`` reads every case of group ``g`` in every treatment, and no case of any other group.  It is
how multi-site studies are run (each site's radiologists read that site's patients), and it
halves or better the reading load of a fully crossed study.  The fully crossed design is the
special case ``G = 1``.

:class:`SplitPlotData` holds one fully crossed :class:`~analysis.data.ObserverData` per group
(same treatments, disjoint readers, disjoint cases).

Analysis (Obuchowski 2012; Hillis 2014, marginal-mean ANOVA approach)
---------------------------------------------------------------------
With ``theta[i, j]`` the FOM of reader ``j`` (in its group) in treatment ``i``, ``I``
treatments, ``J`` readers in all, ``J_g`` in group ``g``:

* ``MS_T = J / (I-1) sum_i (mean_j theta_ij - mean theta)^2``;
* ``MS_T*R(G)`` = the treatment x reader interaction within groups, on
  ``(I-1)(J-G)`` df: ``sum_g sum_i sum_{j in g} (theta_ij - theta_i.g - theta_.j + theta_..g)^2
  / ((I-1)(J-G))``;
* the OR error covariances from the case-deletion jackknife **within each group** (a group's
  readers are jackknifed over that group's cases only; readers of different groups share no
  case, so their errors are independent): ``Var`` (mean variance), ``Cov1`` (same reader,
  different treatments), ``Cov2`` and ``Cov3`` (different readers **of the same group**, same /
  different treatment), each averaged over all such pairs of all groups.

Under the OR model the expected mean squares give
``E[MS_T] - E[MS_T*R(G)] = c (Cov2 - Cov3)`` under the null hypothesis, with
``c = sum_g J_g^2 / J`` (``= J/G``, the readers per group, for equal groups).  Hence

* **RRRC**: ``MSden = MS_T*R(G) + c max(Cov2 - Cov3, 0)``, ``F = MS_T / MSden`` on
  ``(I-1, ddf)`` with Satterthwaite's ``ddf = MSden^2 / (MS_T*R(G)^2 / ((I-1)(J-G)))``;
  treatment differences ``SE = sqrt(2 MSden / J)`` on ``ddf``; each treatment's mean
  ``SE = sqrt(MSden_i / J)``, ``MSden_i = MS_R(G)_i + c max(Cov2_i, 0)`` (``MS_R(G)_i``: the
  readers' variance within groups in treatment ``i``) on ``MSden_i^2 / (MS_R(G)_i^2 / (J-G))``
  df.
* **FRRC** (readers fixed): ``MSden = Var - Cov1 + (c - 1) max(Cov2 - Cov3, 0)``,
  ``chi2 = (I-1) MS_T / MSden`` on ``I-1`` df; differences with z.
* **RRFC** (cases fixed): ``F = MS_T / MS_T*R(G)`` on ``(I-1, (I-1)(J-G))``.

With ``G = 1`` every formula is the crossed OR analysis (RJafroc ``St(method="OR")``); the
tests check that identity.  For unequal groups the same formulas hold with ``c`` as given
(the expectation above is exact for equal jackknife covariances across groups).

References
----------
Obuchowski NA, Gallas BD, Hillis SL. Multi-reader ROC studies with split-plot designs: a
comparison of statistical methods. Acad Radiol 2012;19:1508-1517.
Hillis SL. A marginal-mean ANOVA approach for analyzing multireader multicase radiological
imaging data. Stat Med 2014;33:330-360.
Hillis SL, Schartz KM. Multireader sample size program for diagnostic studies: demonstration and
methodology. J Med Imaging 2018;5:045503.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from analysis.data import ObserverData, ObserverDataError, Problem

__all__ = [
    "SplitPlotData",
    "SplitPlotResult",
    "split_plot_or",
    "read_split_plot_excel",
]


@dataclass(frozen=True, eq=False)
class SplitPlotData:
    """A split-plot study: one fully crossed study per reader/case group.

    Parameters
    ----------
    groups : sequence of ObserverData
        Same treatments (same order) and paradigm in every group; readers and cases must not
        repeat across groups.
    group_names : sequence of str, optional
        Names of the groups (default ``"1".."G"``), e.g. the sites.
    name : str
        Study name.
    """

    groups: tuple[ObserverData, ...]
    group_names: tuple[str, ...] = ()
    name: str = ""

    def __post_init__(self) -> None:
        groups = tuple(self.groups)
        if not groups:
            raise ObserverDataError("a split-plot study needs at least one group.")
        object.__setattr__(self, "groups", groups)
        names = tuple(str(n) for n in self.group_names) or tuple(str(g + 1) for g in range(len(groups)))
        if len(names) != len(groups):
            raise ObserverDataError(f"{len(names)} group names for {len(groups)} groups.")
        object.__setattr__(self, "group_names", names)
        first = groups[0]
        readers: dict[str, str] = {}
        cases: dict[str, str] = {}
        for g, d in zip(names, groups):
            if d.treatments != first.treatments:
                raise ObserverDataError(
                    f"group {g!r} has treatments {list(d.treatments)} but group "
                    f"{names[0]!r} has {list(first.treatments)}; every group reads all treatments."
                )
            if d.paradigm != first.paradigm:
                raise ObserverDataError(f"group {g!r} is {d.paradigm}, group {names[0]!r} is {first.paradigm}.")
            for what, ids, seen in (("reader", d.readers, readers), ("case", d.case_ids, cases)):
                for x in ids:
                    if x in seen:
                        raise ObserverDataError(
                            f"{what} {x!r} is in groups {seen[x]!r} and {g!r}; in a split-plot design each {what} belongs to one group."
                        )
                    seen[x] = g

    @property
    def treatments(self) -> tuple[str, ...]:
        """Treatment IDs."""
        return self.groups[0].treatments

    @property
    def readers(self) -> tuple[str, ...]:
        """All readers, group by group."""
        return tuple(r for d in self.groups for r in d.readers)

    @property
    def paradigm(self) -> str:
        """ROC or FROC."""
        return self.groups[0].paradigm

    @property
    def n_cases(self) -> int:
        """Total number of cases."""
        return sum(d.n_cases for d in self.groups)

    def summary(self) -> str:
        """A short human-readable description."""
        lines = [f"Split-plot study {self.name!r} ({self.paradigm}), {len(self.groups)} groups, treatments {', '.join(self.treatments)}"]
        for g, d in zip(self.group_names, self.groups):
            lines.append(f"  group {g}: readers {', '.join(d.readers)}; {d.n_cases} cases ({d.n_normal} normal, {d.n_abnormal} abnormal)")
        return "\n".join(lines)


@dataclass(frozen=True)
class SplitPlotResult:
    """Obuchowski-Rockette analysis of a split-plot study.

    ``analyses[name]`` (``RRRC``, ``FRRC``, ``RRFC``) holds ``statistic`` (F or chi2),
    ``statistic_name``, ``ndf``, ``ddf`` (None for chi2), ``p``, ``ms_den`` and the pairwise
    treatment differences (``comparisons``: treatment pair, estimate, SE, df, t/z, p, CI);
    ``RRRC`` also has ``treatment_cis`` (each treatment's mean FOM with SE, df, CI).
    """

    fom: str
    treatments: tuple[str, ...]
    readers: tuple[str, ...]
    groups: tuple[str, ...]
    readers_per_group: tuple[int, ...]
    cases_per_group: tuple[int, ...]
    foms: np.ndarray
    mean_squares: dict[str, float]
    covariances: dict[str, float]
    c_factor: float
    analyses: dict[str, dict[str, Any]]
    alpha: float
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (NaN -> None)."""

        def f(x: Any) -> Any:
            if isinstance(x, dict):
                return {k: f(v) for k, v in x.items()}
            if isinstance(x, (list, tuple, np.ndarray)):
                return [f(v) for v in x]
            if isinstance(x, (float, np.floating)):
                return float(x) if math.isfinite(float(x)) else None
            if isinstance(x, np.integer):
                return int(x)
            return x

        return f(
            {
                "analysis": "OR split-plot (split-plot-C)",
                "backend": "python",
                "FOM": self.fom,
                "alpha": self.alpha,
                "treatments": list(self.treatments),
                "readers": list(self.readers),
                "groups": list(self.groups),
                "readersPerGroup": list(self.readers_per_group),
                "casesPerGroup": list(self.cases_per_group),
                "foms": {t: dict(zip(self.readers, self.foms[i])) for i, t in enumerate(self.treatments)},
                "meanSquares": self.mean_squares,
                "covariances": self.covariances,
                "c": self.c_factor,
                "analyses": self.analyses,
                "notes": list(self.notes),
            }
        )

    def summary(self) -> str:
        """Plain-text summary."""
        lines = [
            f"Obuchowski-Rockette split-plot analysis of {self.fom}: {len(self.treatments)} "
            f"treatments, {len(self.readers)} readers in {len(self.groups)} groups "
            f"(readers {list(self.readers_per_group)}, cases {list(self.cases_per_group)})",
        ]
        means = self.foms.mean(axis=1)
        lines.append("  reader-averaged FOM: " + ", ".join(f"{t} {m:.4f}" for t, m in zip(self.treatments, means)))
        for name in ("RRRC", "FRRC", "RRFC"):
            a = self.analyses.get(name)
            if a is None:
                continue
            p = a["p"]
            ptxt = "NaN" if p is None or math.isnan(p) else (f"{p:.2e}" if p < 1e-4 else f"{p:.4f}")
            if a["statistic_name"] == "chi2":
                test = f"chi2({a['ndf']:g}) = {a['statistic']:.3f}"
            else:
                test = f"F({a['ndf']:g}, {a['ddf']:.2f}) = {a['statistic']:.3f}"
            lines.append(f"  {name}: {test}, p = {ptxt}")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


def _pair_means(cov: np.ndarray) -> dict[str, tuple[float, int]]:
    """Sums and counts of the four OR covariance kinds in one group's (I, Jg, I, Jg) matrix."""
    n_t, n_r = cov.shape[:2]
    same_t = np.eye(n_t, dtype=bool)[:, None, :, None]
    same_r = np.eye(n_r, dtype=bool)[None, :, None, :]
    out = {}
    for key, mask in (("Var", same_t & same_r), ("Cov1", ~same_t & same_r), ("Cov2", same_t & ~same_r), ("Cov3", ~same_t & ~same_r)):
        m = np.broadcast_to(mask, cov.shape)
        out[key] = (float(cov[m].sum()), int(m.sum()))
    return out


def split_plot_or(
    data: SplitPlotData,
    fom: str | None = None,
    *,
    alpha: float = 0.05,
) -> SplitPlotResult:
    """Obuchowski-Rockette analysis (RRRC, FRRC, RRFC) of a split-plot study.

    Parameters
    ----------
    data : SplitPlotData
    fom : str, optional
        Any FOM of :data:`analysis.FOMS` valid for the data; default ``Wilcoxon`` for ROC and
        ``wAFROC`` for FROC data.  The covariances come from the case-deletion jackknife.
    alpha : float, default 0.05
        Significance level; confidence intervals are ``1 - alpha``.

    Returns
    -------
    SplitPlotResult
    """
    from analysis.fom import check_fom, fom_and_jackknife
    from analysis.stats._distributions import (
        chi2_sf,
        f_sf,
        safe_sqrt,
        t_quantile,
        t_two_sided_p,
    )
    from analysis.stats.covariance import jackknife_covariance

    if not (0 < float(alpha) < 1):
        raise ObserverDataError(f"alpha must be in (0, 1); got {alpha!r}.")
    fom = fom or ("Wilcoxon" if data.paradigm == "ROC" else "wAFROC")
    n_t = len(data.treatments)
    if n_t < 2:
        raise ObserverDataError("comparing treatments needs at least 2 treatments.")
    thetas = []
    n_t0 = len(data.treatments)
    cov2_i_sum = np.zeros(n_t0)
    cov2_i_n = np.zeros(n_t0)
    sums = {k: 0.0 for k in ("Var", "Cov1", "Cov2", "Cov3")}
    counts = {k: 0 for k in sums}
    jg = []
    for g, d in zip(data.group_names, data.groups):
        check_fom(d, fom)
        th, jk = fom_and_jackknife(d, fom)
        if not np.all(np.isfinite(jk)):
            raise ObserverDataError(
                f"group {g!r}: deleting one case leaves {fom} undefined (a group needs at least 2 normal and 2 abnormal cases for the jackknife)."
            )
        thetas.append(th)
        jg.append(d.n_readers)
        cov_g = jackknife_covariance(jk)
        for key, (s, n) in _pair_means(cov_g).items():
            sums[key] += s
            counts[key] += n
        j_g = d.n_readers
        off = ~np.eye(j_g, dtype=bool)
        for i in range(n_t0):
            cov2_i_sum[i] += cov_g[i, :, i, :][off].sum()
            cov2_i_n[i] += off.sum()
    theta = np.concatenate(thetas, axis=1)
    n_r = theta.shape[1]
    n_g = len(data.groups)
    cov = {k: (sums[k] / counts[k] if counts[k] else math.nan) for k in sums}
    notes: list[str] = []
    df_trg = (n_t - 1) * (n_r - n_g)
    if df_trg == 0:
        raise ObserverDataError(
            "every group has a single reader, so the treatment-by-reader interaction within "
            "groups has no degrees of freedom and Cov2/Cov3 cannot be estimated: the split-plot "
            "OR analysis needs at least one group with 2 or more readers."
        )
    c = float(sum(j * j for j in jg)) / n_r
    # ANOVA
    grand = theta.mean()
    t_means = theta.mean(axis=1)
    ms_t = n_r * float(np.sum((t_means - grand) ** 2)) / (n_t - 1)
    ss_trg = 0.0
    ss_rg = 0.0
    start = 0
    for j_g in jg:
        block = theta[:, start : start + j_g]
        start += j_g
        resid = block - block.mean(axis=1, keepdims=True) - block.mean(axis=0, keepdims=True) + block.mean()
        ss_trg += float(np.sum(resid**2))
        ss_rg += n_t * float(np.sum((block.mean(axis=0) - block.mean()) ** 2))
    ms_trg = ss_trg / df_trg
    ms_rg = ss_rg / (n_r - n_g) if n_r > n_g else math.nan
    cov23 = cov["Cov2"] - cov["Cov3"]
    if math.isnan(cov23):
        cov23 = 0.0
    elif cov23 < 0:
        notes.append(f"Cov2 - Cov3 = {cov23:.3g} < 0 was truncated at 0 (Hillis)")
    diffs = [(a, b) for a in range(n_t) for b in range(a + 1, n_t)]

    def comparisons(se: float, df: float | None) -> list[dict[str, Any]]:
        out = []
        q = t_quantile(1 - alpha / 2, df)
        for a, b in diffs:
            est = float(t_means[a] - t_means[b])
            if not (se > 0):
                out.append(
                    {
                        "treatments": [data.treatments[a], data.treatments[b]],
                        "estimate": est,
                        "se": se,
                        "df": df,
                        "statistic": math.nan,
                        "p": math.nan,
                        "ci_lower": math.nan,
                        "ci_upper": math.nan,
                    }
                )
                continue
            stat = est / se
            out.append(
                {
                    "treatments": [data.treatments[a], data.treatments[b]],
                    "estimate": est,
                    "se": se,
                    "df": df,
                    "statistic": stat,
                    "p": t_two_sided_p(stat, df),
                    "ci_lower": est - q * se,
                    "ci_upper": est + q * se,
                }
            )
        return out

    scale = max(1.0, float(np.max(np.abs(theta))))
    tiny = 1e-12 * scale**2
    analyses: dict[str, dict[str, Any]] = {}
    # RRRC
    ms_den = ms_trg + c * max(cov23, 0.0)
    if ms_den > tiny:
        ddf = math.inf if ms_trg <= tiny else ms_den**2 / (ms_trg**2 / df_trg)
        f_stat = ms_t / ms_den
        p = f_sf(f_stat, n_t - 1, ddf)
    else:
        ddf, f_stat, p = math.nan, math.nan, math.nan
        notes.append("RRRC: the error term is zero (within floating-point noise); no test")
    # single-treatment intervals: MSden_i = MS_R(G)_i + c max(Cov2_i, 0) on Satterthwaite df
    treatment_cis = []
    for i in range(n_t):
        ss_i, start = 0.0, 0
        for j_g in jg:
            row = theta[i, start : start + j_g]
            start += j_g
            ss_i += float(np.sum((row - row.mean()) ** 2))
        ms_r_i = ss_i / (n_r - n_g)
        cov2_i = cov2_i_sum[i] / cov2_i_n[i] if cov2_i_n[i] else math.nan
        den_i = ms_r_i + c * max(0.0 if math.isnan(cov2_i) else cov2_i, 0.0)
        df_i = math.inf if ms_r_i <= tiny else den_i**2 / (ms_r_i**2 / (n_r - n_g))
        se_i = safe_sqrt(den_i / n_r)
        q_i = t_quantile(1 - alpha / 2, df_i)
        treatment_cis.append(
            {
                "treatment": data.treatments[i],
                "estimate": float(t_means[i]),
                "se": se_i,
                "df": df_i,
                "cov2": cov2_i,
                "ci_lower": float(t_means[i]) - q_i * se_i,
                "ci_upper": float(t_means[i]) + q_i * se_i,
            }
        )
    analyses["RRRC"] = {
        "statistic_name": "F",
        "statistic": f_stat,
        "ndf": n_t - 1,
        "ddf": ddf,
        "p": p,
        "ms_den": ms_den,
        "comparisons": comparisons(safe_sqrt(2 * ms_den / n_r), ddf),
        "treatment_cis": treatment_cis,
    }
    # FRRC
    ms_den_f = cov["Var"] - cov["Cov1"] + (c - 1) * max(cov23, 0.0)
    if ms_den_f > tiny:
        chi2 = (n_t - 1) * ms_t / ms_den_f
        p_f = chi2_sf(chi2, n_t - 1)
    else:
        chi2, p_f = math.nan, math.nan
        notes.append("FRRC: the error term is zero (within floating-point noise); no test")
    analyses["FRRC"] = {
        "statistic_name": "chi2",
        "statistic": chi2,
        "ndf": n_t - 1,
        "ddf": None,
        "p": p_f,
        "ms_den": ms_den_f,
        "comparisons": comparisons(safe_sqrt(2 * ms_den_f / n_r), None),
    }
    # RRFC
    if ms_trg > tiny:
        f_c = ms_t / ms_trg
        p_c = f_sf(f_c, n_t - 1, df_trg)
    else:
        f_c, p_c = math.nan, math.nan
        notes.append("RRFC: MS(T*R(G)) is zero (within floating-point noise); no test")
    analyses["RRFC"] = {
        "statistic_name": "F",
        "statistic": f_c,
        "ndf": n_t - 1,
        "ddf": df_trg,
        "p": p_c,
        "ms_den": ms_trg,
        "comparisons": comparisons(safe_sqrt(2 * ms_trg / n_r), float(df_trg)),
    }
    return SplitPlotResult(
        fom=fom,
        treatments=data.treatments,
        readers=data.readers,
        groups=data.group_names,
        readers_per_group=tuple(jg),
        cases_per_group=tuple(d.n_cases for d in data.groups),
        foms=theta,
        mean_squares={"T": ms_t, "R(G)": ms_rg, "T*R(G)": ms_trg},
        covariances=cov,
        c_factor=c,
        analyses=analyses,
        alpha=float(alpha),
        notes=tuple(notes),
    )


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------


def read_split_plot_excel(path: str | Path, *, name: str | None = None) -> SplitPlotData:
    """Read a split-plot JAFROC workbook (``Paradigm`` column: ``ROC``/``FROC``, then
    ``SPLIT-PLOT-C``).

    The TRUTH sheet's ``ReaderID`` cell of each case lists the readers that read it (RJafroc's
    toy files write ``(1)``; parentheses are ignored); ``ModalityID`` lists every treatment.
    Cases with the same reader list form a group.  The FP/TP sheets are as for a crossed study.
    Split-plot-A files (readers nested within treatments) are refused: that design compares
    different readers and is not analysed here.

    Raises
    ------
    ObserverDataError
        With file, sheet, row and column of every problem (e.g. a reader listed in two groups,
        a mark by a reader on a case of another group).
    """
    import pandas as pd

    from analysis.formats._common import is_blank, parse_id
    from analysis.formats.jafroc_excel import (
        _LL_SPEC,
        _NL_SPEC,
        _TRUTH_SPEC,
        _open_sheets,
        _split_list,
    )

    path, file, _, truth, nl_sheet, ll_sheet = _open_sheets(path)
    problems: list[Problem] = []
    t_cols, t_names = truth.columns(_TRUTH_SPEC, ["case_id", "lesion_id", "weight", "reader", "treatment", "paradigm"], file, problems)
    n_cols, n_names = nl_sheet.columns(_NL_SPEC, list(_NL_SPEC), file, problems)
    l_cols, l_names = ll_sheet.columns(_LL_SPEC, list(_LL_SPEC), file, problems)
    if problems:
        raise ObserverDataError(problems)

    def cell(row: tuple, i: int) -> Any:
        return row[i] if i < len(row) else None

    def ids(raw: Any) -> list[str]:
        if isinstance(raw, str):  # "(1, 2)" as well as "1, 2"
            raw = raw.replace("(", " ").replace(")", " ")
        return _split_list(raw)  # a number cell (1.0) is the ID "1"

    paradigm_cells = []
    truth_recs = []
    group_of_case: dict[str, tuple[str, ...]] = {}
    groups: dict[tuple[str, ...], list[int]] = {}
    treatments: list[str] | None = None
    for n, row in enumerate(truth.rows[1:], start=2):
        if all(is_blank(cell(row, i)) for i in t_cols.values()):
            continue
        paradigm_cells.append(cell(row, t_cols["paradigm"]))
        cid, err = parse_id(cell(row, t_cols["case_id"]))
        lid, err2 = parse_id(cell(row, t_cols["lesion_id"]))
        rdrs = tuple(ids(cell(row, t_cols["reader"])))
        trts = ids(cell(row, t_cols["treatment"]))
        if err or cid is None or err2 or lid is None:
            problems.append(Problem(err or err2 or "case or lesion ID is empty.", file=file, sheet=truth.title, row=n))
            continue
        if not rdrs or not trts:
            problems.append(Problem("the ReaderID and ModalityID lists must not be empty.", file=file, sheet=truth.title, row=n))
            continue
        if treatments is None:
            treatments = trts
        elif sorted(trts) != sorted(treatments):
            problems.append(
                Problem(
                    f"this case lists treatments {trts}, others {treatments}; in a split-plot-C design every case is read in every treatment.",
                    file=file,
                    sheet=truth.title,
                    row=n,
                    column=t_names["treatment"],
                )
            )
        if cid in group_of_case and group_of_case[cid] != rdrs:
            problems.append(Problem(f"case {cid!r} lists different readers on different rows.", file=file, sheet=truth.title, row=n))
        group_of_case[cid] = rdrs
        groups.setdefault(rdrs, []).append(n)
        w = cell(row, t_cols["weight"])
        truth_recs.append({"case_id": cid, "lesion_id": None if lid == "0" else lid, "weight": None if is_blank(w) else float(w)})
    p = [str(x).strip().upper() for x in paradigm_cells if not is_blank(x)]
    paradigm = p[0] if p else ""
    design = p[1] if len(p) > 1 else ""
    if paradigm not in ("ROC", "FROC"):
        problems.append(
            Problem(f"the Paradigm must be ROC or FROC; got {paradigm!r}.", file=file, sheet=truth.title, row=2, column=t_names["paradigm"])
        )
    if design == "SPLIT-PLOT-A":
        problems.append(
            Problem(
                "split-plot-A designs (different readers in each treatment) are not supported; only "
                "split-plot-C (each reader group reads its own cases in all treatments).",
                file=file,
                sheet=truth.title,
                row=3,
                column=t_names["paradigm"],
            )
        )
    elif design not in ("SPLIT-PLOT-C", "SPLIT-PLOT", "FCTRL", "CROSSED", "FACTORIAL"):
        # a bare "SPLIT-PLOT" (RJafroc's toy rocSpCVaryK.xlsx) is taken as split-plot-C: the
        # checks below refuse it unless every group reads its own cases in every treatment
        problems.append(
            Problem(f"design {design!r}: expected SPLIT-PLOT-C (or FCTRL).", file=file, sheet=truth.title, row=3, column=t_names["paradigm"])
        )
    seen: dict[str, tuple[str, ...]] = {}
    for rdrs in groups:
        for r in rdrs:
            if r in seen:
                problems.append(
                    Problem(
                        f"reader {r!r} reads cases of two groups ({list(seen[r])} and {list(rdrs)}); "
                        "in a split-plot-C design the reader groups are disjoint.",
                        file=file,
                        sheet=truth.title,
                        row=groups[rdrs][0],
                        column=t_names["reader"],
                    )
                )
            seen[r] = rdrs
    if problems:
        raise ObserverDataError(problems)

    def marks(sheet, cols, names, with_lesion):
        recs = []
        for n, row in enumerate(sheet.rows[1:], start=2):
            if all(is_blank(cell(row, i)) for i in cols.values()):
                continue
            rec = {}
            for key in ("reader", "treatment", "case_id") + (("lesion_id",) if with_lesion else ()):
                rec[key], _ = parse_id(cell(row, cols[key]))
            rec["rating"] = cell(row, cols["rating"])
            c = rec["case_id"]
            if c not in group_of_case:
                problems.append(Problem(f"case {c!r} is not in the TRUTH sheet.", file=file, sheet=sheet.title, row=n, column=names["case_id"]))
                continue
            if rec["reader"] not in group_of_case[c]:
                problems.append(
                    Problem(
                        f"reader {rec['reader']!r} rated case {c!r}, which belongs to the group of readers {list(group_of_case[c])}.",
                        file=file,
                        sheet=sheet.title,
                        row=n,
                        column=names["reader"],
                    )
                )
                continue
            rec["_row"] = n
            recs.append(rec)
        return recs

    nl_recs = marks(nl_sheet, n_cols, n_names, False)
    ll_recs = marks(ll_sheet, l_cols, l_names, True)
    if problems:
        raise ObserverDataError(problems)
    out = []
    truth_df = pd.DataFrame(truth_recs)
    for rdrs in groups:
        cases = {c for c, g in group_of_case.items() if g == rdrs}
        t_g = truth_df[truth_df["case_id"].isin(cases)]
        nl_g = pd.DataFrame(
            [{k: v for k, v in r.items() if k != "_row"} for r in nl_recs if r["case_id"] in cases],
            columns=["reader", "treatment", "case_id", "rating"],
        )
        ll_g = pd.DataFrame(
            [{k: v for k, v in r.items() if k != "_row"} for r in ll_recs if r["case_id"] in cases],
            columns=["reader", "treatment", "case_id", "lesion_id", "rating"],
        )
        try:
            out.append(
                ObserverData.from_marks(t_g, nl_g, ll_g, paradigm=paradigm, treatments=treatments, readers=list(rdrs), name=f"group {','.join(rdrs)}")
            )
        except ObserverDataError as exc:
            raise ObserverDataError([Problem(f"reader group {list(rdrs)}: {p.message}", file=file) for p in exc.problems]) from None
    return SplitPlotData(tuple(out), tuple(",".join(r) for r in groups), name if name is not None else path.stem)
