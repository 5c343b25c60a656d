"""A random FROC study for the analysis benchmarks (bench_fom.py, bench_analysis.py)."""

from __future__ import annotations

import argparse

import numpy as np

from analysis import Lesion, ObserverData

__all__ = ["synthetic_froc_study", "add_study_options"]


def synthetic_froc_study(
    n_treatments: int = 2,
    n_readers: int = 11,
    n_cases: int = 2000,
    *,
    max_lesions: int = 5,
    seed: int = 1,
) -> ObserverData:
    """Random fully crossed FROC study (normal cases first), reproducible from ``seed``.

    Lesion ratings are ``N(mu_ij, 1)`` with ``mu_ij = 1.2 + 0.15 i + reader effect``; a lesion
    is marked with probability 0.75; each case carries Poisson(0.7) NL marks rated ``N(0, 1)``
    (at most 4).  Ratings are rounded to 0.1 so ties occur, as with real rating scales.
    """
    rng = np.random.default_rng(seed)
    k2 = n_cases // 2
    k1 = n_cases - k2
    per_case = rng.integers(1, max_lesions + 1, size=k2)
    lesions = tuple(tuple(Lesion(str(l + 1), 1.0 / n) for l in range(n)) for n in per_case)
    max_nl = 4
    n_marks = np.minimum(rng.poisson(0.7, size=(n_treatments, n_readers, n_cases)), max_nl)
    nl = np.round(rng.normal(0.0, 1.0, size=(n_treatments, n_readers, n_cases, max_nl)), 1)
    nl[np.arange(max_nl)[None, None, None, :] >= n_marks[..., None]] = -np.inf
    mu = 1.2 + 0.15 * np.arange(n_treatments)[:, None] + rng.normal(0.0, 0.2, size=n_readers)[None, :]
    ll = np.round(rng.normal(mu[:, :, None, None], 1.0, size=(n_treatments, n_readers, k2, max_lesions)), 1)
    marked = rng.random(ll.shape) < 0.75
    real = np.arange(max_lesions)[None, :] < per_case[:, None]
    ll[~(marked & real[None, None])] = -np.inf
    return ObserverData(
        treatments=tuple(f"T{i + 1}" for i in range(n_treatments)),
        readers=tuple(f"R{j + 1}" for j in range(n_readers)),
        normal_cases=tuple(f"N{k + 1}" for k in range(k1)),
        abnormal_cases=tuple(f"A{k + 1}" for k in range(k2)),
        lesions=lesions,
        nl=nl,
        ll=ll,
        paradigm="FROC",
        name=f"synthetic FROC, seed {seed}",
    )


def add_study_options(parser: argparse.ArgumentParser) -> None:
    """The options that size :func:`synthetic_froc_study`: --treatments, --readers, --cases, --seed."""
    parser.add_argument("--treatments", type=int, default=2)
    parser.add_argument("--readers", type=int, default=11)
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
