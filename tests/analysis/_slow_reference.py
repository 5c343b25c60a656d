"""Slow, obvious implementations of every FOM, written straight from the definitions.

Used to check the vectorised code in :mod:`analysis.fom` on small random studies.  One
(treatment, reader) at a time, explicit Python loops over cases, marks and lesions, no NumPy
tricks.  A study is given as plain lists:

* ``nl[k]`` -- list of the finite NL ratings on case ``k`` (normal cases first),
* ``ll[k2]`` -- list of the LL ratings of the lesions of abnormal case ``k2`` (``-inf`` if the
  lesion is unmarked),
* ``w[k2]`` -- the lesion weights of abnormal case ``k2``.
"""

from __future__ import annotations

import math

NEG_INF = -math.inf


def psi(x: float, y: float) -> float:
    if x < y:
        return 1.0
    if x == y:
        return 0.5
    return 0.0


def highest(values: list[float]) -> float:
    out = NEG_INF
    for v in values:
        if v > out:
            out = v
    return out


def slow_fom(fom: str, nl: list[list[float]], ll: list[list[float]], w: list[list[float]], k1: int) -> float:
    k2 = len(ll)
    k = k1 + k2
    n_les = sum(len(c) for c in ll)
    if fom in ("Wilcoxon", "HrAuc"):
        total = 0.0
        for a in range(k1):
            fp = highest(nl[a])
            for b in range(k2):
                tp = max(highest(ll[b]), highest(nl[k1 + b]))
                total += psi(fp, tp)
        return total / (k1 * k2)
    if fom in ("AFROC", "wAFROC", "AFROC1", "wAFROC1"):
        negatives = range(k) if fom.endswith("1") else range(k1)
        total = 0.0
        for a in negatives:
            fp = highest(nl[a])
            for b in range(k2):
                for l, rating in enumerate(ll[b]):
                    weight = w[b][l] if fom.startswith("w") else 1.0
                    total += weight * psi(fp, rating)
        n_neg = len(negatives)
        return total / (n_neg * (k2 if fom.startswith("w") else n_les))
    if fom == "HrSe":
        hits = 0
        for b in range(k2):
            if any(x != NEG_INF for x in ll[b]) or len(nl[k1 + b]) > 0:
                hits += 1
        return hits / k2
    if fom == "HrSp":
        marked = sum(1 for a in range(k1) if len(nl[a]) > 0)
        return 1.0 - marked / k1
    if fom == "MaxLLF":
        return sum(1 for c in ll for x in c if x != NEG_INF) / n_les
    if fom == "MaxNLF":
        return sum(len(nl[a]) for a in range(k1)) / k1
    if fom == "MaxNLFAllCases":
        return sum(len(nl[a]) for a in range(k)) / k
    if fom == "FROC":
        total = 0.0
        for a in range(k):
            for x in nl[a]:
                for c in ll:
                    for y in c:
                        total += psi(x, y)
        return total / (k * n_les)
    if fom == "ROI":
        # Obuchowski: every lesion-free region (an NL rating, any case) against every lesion region
        negatives = [x for a in range(k) for x in nl[a]]
        positives = [y for c in ll for y in c]
        return sum(psi(x, y) for x in negatives for y in positives) / (len(negatives) * len(positives))
    raise ValueError(fom)


def slow_jackknife(fom: str, nl, ll, w, k1: int, case_set: str) -> list[float]:
    """FOM with each case of ``case_set`` ("all", "normal", "abnormal") deleted in turn."""
    k2 = len(ll)
    if case_set == "normal":
        cases = list(range(k1))
    elif case_set == "abnormal":
        cases = list(range(k1, k1 + k2))
    else:
        cases = list(range(k1 + k2))
    out = []
    for c in cases:
        nl_c = [m for n, m in enumerate(nl) if n != c]
        if c < k1:
            ll_c, w_c, k1_c = ll, w, k1 - 1
        else:
            ll_c = [x for n, x in enumerate(ll) if n != c - k1]
            w_c = [x for n, x in enumerate(w) if n != c - k1]
            k1_c = k1
        try:
            out.append(slow_fom(fom, nl_c, ll_c, w_c, k1_c))
        except ZeroDivisionError:
            out.append(math.nan)
    return out


def as_lists(data, i: int, j: int):
    """Extract (nl, ll, w, k1) for one (treatment, reader) of an ObserverData."""
    nl = [[float(x) for x in data.nl[i, j, k] if x != NEG_INF] for k in range(data.n_cases)]
    ll = [[float(data.ll[i, j, b, l]) for l in range(len(case))] for b, case in enumerate(data.lesions)]
    w = [[les.weight for les in case] for case in data.lesions]
    if data.paradigm == "ROC":
        # ROC: the rating of a normal case is its (possibly -inf) NL rating; keep it as a mark
        nl = [[float(data.nl[i, j, k, 0])] if k < data.n_normal else [] for k in range(data.n_cases)]
    return nl, ll, w, data.n_normal
