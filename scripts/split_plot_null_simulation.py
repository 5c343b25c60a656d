"""Type I error of the split-plot OR analysis under a null Roe-Metz-type model.

Usage: PYTHONPATH=$PWD python scripts/split_plot_null_simulation.py [REPS] [SEED] [READERS_PER_GROUP]

G = 3 reader groups x 3 readers (or READERS_PER_GROUP, e.g. "2,4"), each group reading its own 30 normal + 30 abnormal cases in 2
treatments with equal accuracy.  Ratings: case, reader x case, treatment x case and pure noise
effects (Roe & Metz 1997 style, variances 0.3 / 0.2 / 0.2 / 0.3), abnormal shift 1.5 plus a
reader effect (sd 0.25).  Prints the RRRC, FRRC and RRFC rejection rates at alpha = 0.05, and
for comparison the rate obtained with c = 1 in place of sum(J_g^2)/J.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np

from analysis.data import ObserverData
from analysis.split_plot import SplitPlotData, split_plot_or


def simulate(rng: np.random.Generator, sizes=(3, 3, 3), k1=30, k2=30) -> SplitPlotData:
    out = []
    for g, readers in enumerate(sizes):
        shift = 1.5 + rng.normal(0, 0.25, size=readers)  # reader skill

        def ratings(n, mu, readers=readers):
            case = rng.normal(0, np.sqrt(0.3), size=(1, 1, n))
            rc = rng.normal(0, np.sqrt(0.2), size=(1, readers, n))
            tc = rng.normal(0, np.sqrt(0.2), size=(2, 1, n))
            e = rng.normal(0, np.sqrt(0.3), size=(2, readers, n))
            return mu + case + rc + tc + e

        fp = ratings(k1, np.zeros((1, readers, 1)))
        tp = ratings(k2, shift[None, :, None])
        out.append(
            ObserverData.from_roc(
                fp,
                tp,
                treatments=["A", "B"],
                readers=[f"g{g}r{j}" for j in range(readers)],
                normal_cases=[f"g{g}n{k}" for k in range(k1)],
                abnormal_cases=[f"g{g}a{k}" for k in range(k2)],
            )
        )
    return SplitPlotData(tuple(out))


def main() -> None:
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    rng = np.random.default_rng(int(sys.argv[2]) if len(sys.argv) > 2 else 20261205)
    sizes = tuple(int(x) for x in sys.argv[3].split(",")) if len(sys.argv) > 3 else (3, 3, 3)
    from scipy import stats

    hits = {"RRRC": 0, "FRRC": 0, "RRFC": 0, "RRRC with c=1": 0}
    for _ in range(reps):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = split_plot_or(simulate(rng, sizes), "Wilcoxon")
        for k in ("RRRC", "FRRC", "RRFC"):
            hits[k] += r.analyses[k]["p"] < 0.05
        ms_trg = r.mean_squares["T*R(G)"]
        den = ms_trg + max(r.covariances["Cov2"] - r.covariances["Cov3"], 0)
        ddf = den**2 / (ms_trg**2 / (len(r.readers) - len(r.groups)))
        hits["RRRC with c=1"] += stats.f.sf(r.mean_squares["T"] / den, 1, ddf) < 0.05
    for k, v in hits.items():
        se = np.sqrt(0.05 * 0.95 / reps)
        print(f"{k:14s} rejection rate {v / reps:.3f}  (nominal 0.050, MC s.e. {se:.3f}; {reps} studies, readers per group {sizes})")


if __name__ == "__main__":
    main()
