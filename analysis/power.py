"""Power and sample size for a planned two-treatment MRMC study, from pilot variance components.

A pilot study analysed with :func:`analysis.significance_test` gives the OR covariances
(``Var, Cov1, Cov2, Cov3`` and ``VarTR``) or the DBM variance components (``VarTR, VarTC,
VarErr``).  For a planned study with ``J`` readers, ``K`` cases and an effect size ``d`` (the
difference of the two reader-averaged FOMs) the test statistic follows a non-central F
distribution whose non-centrality and denominator df are:

**OR method** (Hillis, Obuchowski & Berbaum 2011; case covariances scale as ``K*/K`` with
``K*`` the pilot's number of cases; ``VarTR`` truncated at 0; ``c = max(Cov2 - Cov3, 0)``)::

    RRRC: den = VarTR + K*/K (Var - Cov1 + (J-1) c)      ncp = J d^2 / (2 den)
          ddf = den^2 / ([VarTR + K*/K (Var - Cov1 - c)]^2 / (J-1))
    FRRC: den = K*/K (Var - Cov1 + (J-1) c)              ncp = J d^2 / (2 den), chi-square (ddf = inf)
    RRFC: den = VarTR + K*/K (Var - Cov1 - c)            ncp = J d^2 / (2 den), ddf = J - 1

**DBM method** (Hillis & Berbaum 2004; pseudovalue-scale components, ``VarTR`` and ``VarTC``
truncated at 0)::

    RRRC: den = VarErr + K VarTR + J VarTC     ncp = J K d^2 / (2 den)
          ddf = den^2 / ((VarErr + K VarTR)^2 / (J-1))
    FRRC: den = VarErr + J VarTC               ddf = K - 1
    RRFC: den = VarErr + K VarTR               ddf = J - 1

**DBM converted to OR** (RJafroc's default for ``method = "DBM"``, ``UseDBMHB2004 = FALSE``, and
the default here): the DBM components of the pilot (``K*`` cases) are converted to OR ones
(Hillis, Obuchowski & Berbaum 2011; Hillis 2005)::

    VarTR(OR) = VarTR   Var - Cov1 = (VarTC + VarErr) / K*   Cov2 - Cov3 = VarTC / K*

and the OR formulas above are applied.  With the jackknife this gives the OR route's numbers
(the two analyses are equivalent); it differs from Hillis-Berbaum 2004 only where ``VarTC`` < 0
(truncated inside ``c`` only, not in ``Var - Cov1``) and in FRRC (chi-square, not ``K - 1`` df).

Routes are named by :data:`POWER_METHODS` and recorded in every result.  A pilot with more than
two treatments must be reduced to the two compared (:func:`pilot_variance_components` with
``treatments=``), as RJafroc's sample-size functions take exactly two.

**Number of cases** (:func:`sample_size`): the smallest ``K`` from 2 up to ``max_cases``
(default 2000, RJafroc's search limit) that reaches the target power.  When none does, RJafroc
returns ``K = max_cases + 1`` (2001); here ``n_cases`` is ``None`` (JSON ``null``) and the
result carries ``rjafroc_n_cases = max_cases + 1`` so the two can be compared, and the tables
print "> 2000 (RJafroc: 2001)".

Power is ``P(F'(1, ddf, ncp) > F_{1-alpha}(1, ddf))``.  These reproduce RJafroc 2.1.3's
``SsSampleSizeKGivenJ(dataset03, "Wilcoxon", effectSize = 0.05, J = 6, method = "OR")``
(K = 121, power 0.8004469) and ``SsPowerGivenJK(..., J = 6, K = 121, method = "DBM",
UseDBMHB2004 = TRUE)`` (power 0.78574588); see ``tests/analysis/test_power.py``.

References
----------
Hillis SL, Obuchowski NA, Berbaum KS. Power estimation for multireader ROC methods: an updated
and unified approach. Acad Radiol 2011;18:129-142.
Hillis SL, Berbaum KS. Power estimation for the Dorfman-Berbaum-Metz method. Acad Radiol
2004;11:1260-1273.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping

from analysis.results import PowerResult, PowerTable, SampleSizeResult, SignificanceResult
from analysis.stats._common import MRMCInputError, validate_alpha
from analysis.stats._distributions import noncentral_f_power

__all__ = [
    "POWER_METHODS",
    "DEFAULT_MAX_CASES",
    "PilotVarianceComponents",
    "pilot_variance_components",
    "planned_effect_size",
    "power_method",
    "power_from_or_components",
    "power_from_dbm_components",
    "study_power",
    "sample_size",
    "power_table",
]


#: The power routes, as named in every output.
POWER_METHODS = {
    "DBM": 'DBM variance components converted to OR (Hillis, Obuchowski & Berbaum 2011); RJafroc\'s default (method = "DBM", UseDBMHB2004 = FALSE)',
    "DBM-HB2004": 'DBM variance components, Hillis & Berbaum 2004 (RJafroc method = "DBM", UseDBMHB2004 = TRUE)',
    "OR": 'Obuchowski-Rockette variance components, Hillis, Obuchowski & Berbaum 2011 (RJafroc method = "OR")',
}
DEFAULT_MAX_CASES = 2000  # RJafroc's sample-size search limit
#: FOMs not bounded by 1 (NL marks per case); every other FOM lies in [0, 1], so that a
#: difference must lie strictly between -1 and 1.
_UNBOUNDED_FOMS = {"MaxNLF", "MaxNLFAllCases"}


def power_method(method: str) -> str:
    """Normalise a power route name: ``DBM`` (default), ``DBM-HB2004`` or ``OR``."""
    key = str(method).strip().upper().replace("_", "-")
    key = {"HB2004": "DBM-HB2004", "DBMHB2004": "DBM-HB2004", "DBM-HB": "DBM-HB2004", "ORH": "OR", "DBMH": "DBM"}.get(key, key)
    if key not in POWER_METHODS:
        raise MRMCInputError(
            f"method must be one of {', '.join(POWER_METHODS)} (DBM = RJafroc's default: DBM converted to OR). Got {method!r} instead."
        )
    return key


@dataclass(frozen=True)
class PilotVarianceComponents:
    """Variance components of a pilot study, the input of the power functions.

    Attributes
    ----------
    method : {"DBM", "DBM-HB2004", "OR"}
        The power route (:data:`POWER_METHODS`): DBM components converted to OR (RJafroc's
        default), DBM components with Hillis-Berbaum 2004, or OR components.
    components : mapping of str to float
        OR: ``VarTR, Cov1, Cov2, Cov3, Var``; DBM: ``VarTR, VarTC, VarErr``.
    n_cases_pilot : int
        ``K*``, the pilot's number of cases (used by the OR method only).
    observed_effect_size : float or None
        Difference of the first two treatments' reader-averaged FOMs in the pilot.
    fom : str
    """

    method: str
    components: Mapping[str, float]
    n_cases_pilot: int
    observed_effect_size: float | None = None
    fom: str = ""

    @property
    def description(self) -> str:
        """The route in words, with its reference (for outputs)."""
        return POWER_METHODS.get(self.method, self.method)

    @classmethod
    def from_result(cls, result: SignificanceResult, *, dbm_formula: str = "converted") -> "PilotVarianceComponents":
        """Take the components of a DBM or OR :class:`SignificanceResult`.

        ``dbm_formula`` (DBM results only): ``"converted"`` (default; RJafroc's default, DBM
        converted to OR) or ``"HB2004"`` (Hillis & Berbaum 2004).  A pilot with more than two
        treatments is refused: choose the two to compare first (``select_treatments``).
        """
        if len(result.treatments) > 2:
            raise MRMCInputError(
                f"the pilot has {len(result.treatments)} treatments {list(result.treatments)}; "
                "sample size is planned for a comparison of two: choose them (command line: "
                "--treatments A,B; Python: data.select_treatments([A, B])), as RJafroc's "
                "sample-size functions take exactly two."
            )
        vc = {k: result.variance_components.value(k, "estimate") for k in result.variance_components.index}
        means = result.treatment_means
        effect = float(means[0] - means[1]) if len(means) >= 2 else None
        if result.method == "OR":
            keys = ("VarTR", "Cov1", "Cov2", "Cov3", "Var")
            method = "OR"
        else:
            keys = ("VarTR", "VarTC", "VarErr")
            formula = str(dbm_formula).strip().upper()
            if formula not in ("CONVERTED", "HB2004"):
                raise MRMCInputError(f"dbm_formula must be 'converted' or 'HB2004'. Got {dbm_formula!r} instead.")
            method = "DBM-HB2004" if formula == "HB2004" else "DBM"
        return cls(
            method=method,
            components={k: float(vc[k]) for k in keys},
            n_cases_pilot=int(result.n_cases),
            observed_effect_size=effect,
            fom=result.fom,
        )


def pilot_variance_components(
    data, fom: str = "wAFROC", *, method: str = "DBM", treatments: tuple[str, str] | list[str] | None = None
) -> PilotVarianceComponents:
    """Analyse a pilot :class:`~analysis.ObserverData` and return its variance components.

    Parameters
    ----------
    data : ObserverData
        Pilot study with 2 readers or more.
    fom : str, default "wAFROC"
    method : {"DBM", "DBM-HB2004", "OR"}, default "DBM"
        Power route (:data:`POWER_METHODS`); ``DBM`` is RJafroc's default (DBM converted to OR).
    treatments : pair of str, optional
        The two treatments to compare; required when the pilot has more than two.
    """
    from analysis.significance import significance_test

    route = power_method(method)
    if treatments is not None:
        chosen = [str(t) for t in treatments]
        unknown = [t for t in chosen if t not in data.treatments]
        if len(chosen) != 2 or len(set(chosen)) != 2 or unknown:
            raise MRMCInputError(f"treatments must name two different treatments of the pilot {list(data.treatments)}; got {chosen}.")
        data = data.select_treatments(chosen)
    elif data.n_treatments > 2:
        raise MRMCInputError(
            f"the pilot has {data.n_treatments} treatments {list(data.treatments)}; choose the two "
            "to compare (treatments=(A, B); command line --treatments A,B), as RJafroc's "
            "sample-size functions take exactly two."
        )
    result = significance_test(data, fom, method="OR" if route == "OR" else "DBM", analyses="RRRC")
    return PilotVarianceComponents.from_result(result, dbm_formula="HB2004" if route == "DBM-HB2004" else "converted")


def _check_counts(n_readers: int, n_cases: int) -> tuple[int, int]:
    j, k = int(n_readers), int(n_cases)
    if j != n_readers or j < 2:
        raise MRMCInputError(f"n_readers must be an integer >= 2. Got {n_readers!r} instead.")
    if k != n_cases or k < 2:
        raise MRMCInputError(f"n_cases must be an integer >= 2. Got {n_cases!r} instead.")
    return j, k


def _analysis(analysis: str) -> str:
    a = str(analysis).upper()
    if a not in ("RRRC", "FRRC", "RRFC"):
        raise MRMCInputError(f"analysis must be 'RRRC', 'FRRC' or 'RRFC'. Got {analysis!r} instead.")
    return a


def _result(analysis, method, j, k, d, alpha, ncp, ddf) -> PowerResult:
    if not (ncp >= 0) or not (ddf > 0):
        power, fcrit = math.nan, math.nan
    else:
        power = noncentral_f_power(ncp, 1.0, ddf, alpha)
        from scipy import special

        fcrit = float(special.chdtri(1, alpha)) if math.isinf(ddf) else float(special.fdtri(1, ddf, 1.0 - alpha))
    return PowerResult(
        analysis=analysis,
        method=method,
        n_readers=j,
        n_cases=k,
        effect_size=float(d),
        alpha=alpha,
        power=power,
        ncp=float(ncp),
        df=1.0,
        ddf=float(ddf),
        f_critical=fcrit,
    )


def power_from_or_components(
    *,
    n_readers: int,
    n_cases: int,
    n_cases_pilot: int,
    effect_size: float,
    var_tr: float,
    cov1: float,
    cov2: float,
    cov3: float,
    var: float,
    alpha: float = 0.05,
    analysis: str = "RRRC",
) -> PowerResult:
    """Power from Obuchowski-Rockette variance components (Hillis et al. 2011).

    Parameters
    ----------
    n_readers, n_cases : int
        Planned numbers of readers ``J`` and cases ``K``.
    n_cases_pilot : int
        ``K*``: the number of cases of the pilot the covariances were estimated on.
    effect_size : float
        Difference of reader-averaged FOMs to detect (its sign is irrelevant).
    var_tr, cov1, cov2, cov3, var : float
        OR ``VarTR``, ``Cov1``, ``Cov2``, ``Cov3``, ``Var`` of the pilot (``VarTR`` < 0 is
        set to 0).
    alpha : float, default 0.05
    analysis : {"RRRC", "FRRC", "RRFC"}

    Returns
    -------
    PowerResult
    """
    alpha = validate_alpha(alpha, "power_from_or_components")
    j, k = _check_counts(n_readers, n_cases)
    analysis = _analysis(analysis)
    scale = int(n_cases_pilot) / k
    vtr = max(float(var_tr), 0.0)
    c = max(float(cov2) - float(cov3), 0.0)
    d2 = float(effect_size) ** 2
    if analysis == "RRRC":
        den = vtr + scale * (var - cov1 + (j - 1) * c)
        den_tr = vtr + scale * (var - cov1 - c)
        ddf = den * den / (den_tr * den_tr / (j - 1)) if den_tr != 0 else math.inf
    elif analysis == "FRRC":
        den = scale * (var - cov1 + (j - 1) * c)
        ddf = math.inf
    else:
        den = vtr + scale * (var - cov1 - c)
        ddf = float(j - 1)
    ncp = j * d2 / (2.0 * den) if den > 0 else math.nan
    return _result(analysis, "OR", j, k, effect_size, alpha, ncp, ddf)


def power_from_dbm_components(
    *,
    n_readers: int,
    n_cases: int,
    effect_size: float,
    var_tr: float,
    var_tc: float,
    var_err: float,
    alpha: float = 0.05,
    analysis: str = "RRRC",
) -> PowerResult:
    """Power from DBM (pseudovalue) variance components (Hillis & Berbaum 2004).

    Parameters
    ----------
    n_readers, n_cases : int
    effect_size : float
    var_tr, var_tc, var_err : float
        DBM ``VarTR``, ``VarTC`` (each truncated at 0) and ``VarErr``.
    alpha : float, default 0.05
    analysis : {"RRRC", "FRRC", "RRFC"}
    """
    alpha = validate_alpha(alpha, "power_from_dbm_components")
    j, k = _check_counts(n_readers, n_cases)
    analysis = _analysis(analysis)
    vtr = max(float(var_tr), 0.0)
    vtc = max(float(var_tc), 0.0)
    d2 = float(effect_size) ** 2
    if analysis == "RRRC":
        den = var_err + k * vtr + j * vtc
        den_tr = var_err + k * vtr
        ddf = den * den / (den_tr * den_tr / (j - 1)) if den_tr != 0 else math.inf
    elif analysis == "FRRC":
        den = var_err + j * vtc
        ddf = float(k - 1)
    else:
        den = var_err + k * vtr
        ddf = float(j - 1)
    ncp = j * k * d2 / (2.0 * den) if den > 0 else math.nan
    return _result(analysis, "DBM", j, k, effect_size, alpha, ncp, ddf)


def _pilot(pilot) -> PilotVarianceComponents:
    if isinstance(pilot, PilotVarianceComponents):
        return pilot
    if isinstance(pilot, SignificanceResult):
        return PilotVarianceComponents.from_result(pilot)
    raise MRMCInputError(
        "pilot must be a SignificanceResult (from significance_test on the pilot data) or "
        f"PilotVarianceComponents; got {type(pilot).__name__}. For raw data use "
        "pilot_variance_components(data, fom)."
    )


def planned_effect_size(pilot: "SignificanceResult | PilotVarianceComponents", effect_size: float | None = None) -> float:
    """The effect size a power calculation uses, checked (a clear error when it is not usable).

    ``None`` takes the pilot's observed difference, refused when it is zero within rounding;
    an explicit value must be finite, non-zero and, for FOMs on a 0..1 scale, below 1.
    """
    return _effect(_pilot(pilot), effect_size)


def _effect(p: PilotVarianceComponents, effect_size: float | None) -> float:
    from analysis.degenerate import FOM_TOLERANCE

    if effect_size is None:
        if p.observed_effect_size is None:
            raise MRMCInputError("effect_size is required: the pilot has no observed treatment difference.")
        if abs(p.observed_effect_size) <= FOM_TOLERANCE:
            raise MRMCInputError(
                f"the pilot's two treatments have the same {p.fom or 'figure of merit'} (difference "
                f"{p.observed_effect_size:.1e}, zero within rounding), so there is no observed effect "
                "to plan for: give the difference the planned study should detect (effect_size; "
                "command line --effect-size, e.g. 0.05)."
            )
        return abs(p.observed_effect_size)
    try:
        d = float(effect_size)
    except (TypeError, ValueError):
        d = math.nan
    if not math.isfinite(d) or d == 0:
        raise MRMCInputError(f"effect_size must be a finite non-zero number. Got {effect_size!r} instead.")
    if p.fom not in _UNBOUNDED_FOMS and abs(d) >= 1:
        raise MRMCInputError(
            f"effect_size {d:g} is impossible for {p.fom if p.fom not in ('', 'FOM') else 'an AUC-type figure of merit'}, "
            "whose values lie between 0 and 1: a "
            "difference of two such figures of merit lies strictly between -1 and 1 (typical "
            "planned effects are 0.03 to 0.10)."
        )
    return d


def _check_pilot(p: PilotVarianceComponents) -> None:
    """Refuse pilots whose variance components leave nothing to estimate power from."""
    c = p.components
    if p.method == "OR":
        spread = max(c["VarTR"], 0.0) + abs(c["Var"] - c["Cov1"]) + abs(c["Cov2"] - c["Cov3"])
    else:
        spread = max(c["VarTR"], 0.0) + abs(c["VarTC"]) + abs(c["VarErr"])
    if not math.isfinite(spread) or spread <= 1e-16:
        raise MRMCInputError(
            "the pilot's variance components are zero within rounding (no reader or case "
            "variability in the treatment difference: identical treatments, or no marks at all), "
            "so power and sample size cannot be estimated from it; use a pilot in which the "
            "treatments' readings differ."
        )


def study_power(
    pilot: SignificanceResult | PilotVarianceComponents,
    *,
    n_readers: int,
    n_cases: int,
    effect_size: float | None = None,
    analysis: str = "RRRC",
    alpha: float = 0.05,
) -> PowerResult:
    """Predicted power of a planned study with ``n_readers`` readers and ``n_cases`` cases.

    Parameters
    ----------
    pilot : SignificanceResult or PilotVarianceComponents
        Pilot analysis; its method (OR or DBM) selects the power formula.
    n_readers, n_cases : int
    effect_size : float, optional
        FOM difference to detect; default: the pilot's observed difference of the first two
        treatments (as RJafroc's ``SsPowerGivenJK``).
    analysis : {"RRRC", "FRRC", "RRFC"}, default "RRRC"
    alpha : float, default 0.05

    Examples
    --------
    >>> p = PilotVarianceComponents("OR", {"VarTR": 0.0002, "Cov1": 3.5e-4, "Cov2": 3.4e-4,
    ...     "Cov3": 2.4e-4, "Var": 8.0e-4}, n_cases_pilot=114)
    >>> round(study_power(p, n_readers=10, n_cases=114, effect_size=0.05).power, 4)
    0.8
    """
    from dataclasses import replace

    p = _pilot(pilot)
    d = _effect(p, effect_size)
    _check_pilot(p)
    c = p.components
    if p.method == "OR":
        return power_from_or_components(
            n_readers=n_readers,
            n_cases=n_cases,
            n_cases_pilot=p.n_cases_pilot,
            effect_size=d,
            var_tr=c["VarTR"],
            cov1=c["Cov1"],
            cov2=c["Cov2"],
            cov3=c["Cov3"],
            var=c["Var"],
            alpha=alpha,
            analysis=analysis,
        )
    if p.method == "DBM":  # RJafroc's default: DBM components converted to OR (K* = pilot cases)
        k_star = int(p.n_cases_pilot)
        res = power_from_or_components(
            n_readers=n_readers,
            n_cases=n_cases,
            n_cases_pilot=k_star,
            effect_size=d,
            var_tr=c["VarTR"],
            cov1=0.0,
            cov2=c["VarTC"] / k_star,
            cov3=0.0,
            var=(c["VarTC"] + c["VarErr"]) / k_star,
            alpha=alpha,
            analysis=analysis,
        )
        return replace(res, method="DBM")
    res = power_from_dbm_components(
        n_readers=n_readers,
        n_cases=n_cases,
        effect_size=d,
        var_tr=c["VarTR"],
        var_tc=c["VarTC"],
        var_err=c["VarErr"],
        alpha=alpha,
        analysis=analysis,
    )
    return replace(res, method="DBM-HB2004")


def sample_size(
    pilot: SignificanceResult | PilotVarianceComponents,
    *,
    n_readers: int,
    target_power: float = 0.8,
    effect_size: float | None = None,
    analysis: str = "RRRC",
    alpha: float = 0.05,
    max_cases: int = DEFAULT_MAX_CASES,
) -> SampleSizeResult:
    """Smallest number of cases giving at least ``target_power`` with ``n_readers`` readers.

    Power increases with the number of cases, so the answer is found by doubling an upper
    bound and bisecting; the returned ``n_cases`` is the exact smallest integer (power at
    ``n_cases - 1`` is below the target).  ``n_cases`` is ``None`` if even ``max_cases`` cases
    do not reach the target (the treatment-by-reader variance limits the power: add readers).

    Parameters
    ----------
    pilot : SignificanceResult or PilotVarianceComponents
    n_readers : int
    target_power : float, default 0.8
    effect_size : float, optional
        Default: the pilot's observed difference.
    analysis : {"RRRC", "FRRC", "RRFC"}, default "RRRC"
    alpha : float, default 0.05
    max_cases : int, default 2000
        Search limit (RJafroc's).  When it is not enough, ``n_cases`` is None and
        ``rjafroc_n_cases`` is ``max_cases + 1``, the number RJafroc reports.
    """
    tp = float(target_power)
    if not 0.0 < tp < 1.0:
        raise MRMCInputError(f"target_power must be a float in (0, 1). Got {target_power!r} instead.")
    p = _pilot(pilot)
    d = _effect(p, effect_size)
    _check_pilot(p)

    def pw(k: int) -> float:
        return study_power(p, n_readers=n_readers, n_cases=k, effect_size=d, analysis=analysis, alpha=alpha).power

    def ok(k: int) -> bool:
        v = pw(k)
        return (not math.isnan(v)) and v >= tp

    lo, hi = 2, 2
    if ok(lo):
        return SampleSizeResult(_analysis(analysis), p.method, int(n_readers), lo, tp, pw(lo), d, alpha, max_cases)
    while not ok(hi):
        if hi >= max_cases:
            return SampleSizeResult(_analysis(analysis), p.method, int(n_readers), None, tp, pw(max_cases), d, alpha, max_cases)
        lo, hi = hi, min(2 * hi, max_cases)
    while hi - lo > 1:  # invariant: not ok(lo), ok(hi)
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return SampleSizeResult(_analysis(analysis), p.method, int(n_readers), hi, tp, pw(hi), d, alpha, max_cases)


def power_table(
    pilot: SignificanceResult | PilotVarianceComponents,
    *,
    readers: Iterable[int] = range(3, 11),
    target_power: float = 0.8,
    effect_size: float | None = None,
    analyses: Iterable[str] = ("RRRC",),
    alpha: float = 0.05,
    max_cases: int = DEFAULT_MAX_CASES,
) -> PowerTable:
    """Cases needed for ``target_power`` for each number of readers (like RJafroc's ``SsPowerTable``).

    Parameters
    ----------
    pilot : SignificanceResult or PilotVarianceComponents
    readers : iterable of int, default 3..10
    target_power, effect_size, alpha, max_cases
        As in :func:`sample_size`.
    analyses : iterable of {"RRRC", "FRRC", "RRFC"}, default ("RRRC",)

    Returns
    -------
    PowerTable
        One row per (analysis, number of readers).
    """
    rows = []
    for a in analyses:
        for j in readers:
            rows.append(
                sample_size(
                    pilot,
                    n_readers=j,
                    target_power=target_power,
                    effect_size=effect_size,
                    analysis=a,
                    alpha=alpha,
                    max_cases=max_cases,
                )
            )
    return PowerTable(rows=tuple(rows))
