"""Make the training set of the z-score network: lesion-free pairs from real CTs and from the phantom.

Usage (the command that made the shipped ``zscore-v2`` bundle's data, see docs/detector-zscore.md)::

    PYTHONPATH=. python bench/zscore_training_set.py OUT \
        --from-ct ../shared/reference/real-ct/totalsegmentator/abdomen_ct_3mm.nii.gz \
        --from-ct ../shared/reference/real-ct/totalsegmentator/abdomen_ct_3mm_30slices.nii.gz \
        --from-ct ../shared/reference/real-ct/totalsegmentator/thorax_cta_1.5mm.nii.gz \
        --labels none --labels ../shared/reference/real-ct/totalsegmentator/abdomen_ct_3mm_30slices_labels.nii.gz --labels none \
        --n-real 15 --n-phantom 10 --seed 7000

Writes ``OUT/real/`` (pairs made by :func:`cases.real_ct_pairs.real_ct_case_set` with the
re-acquisition widened: current slices 1.5-5 mm, soft/same/sharp kernels, current noise 4-25 HU,
prior noise 2-12 HU), ``OUT/phantom/`` (:func:`cases.synth.synthesize_case_set`, ``small``
preset) and ``OUT/caselist.csv`` with both, for ``tsct detect train``. Seeds: the real pairs use
``--seed``, the phantom pairs ``--seed + 1``; keep them away from the tuning (100, 3000) and
held-out (200, 5000) seeds of docs/detector-zscore.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cases import CaseList, read_case_list, write_case_list
from cases.real_ct_pairs import RealPairSettings, real_ct_case_set
from cases.synth import synthesize_case_set

#: The re-acquisition of the training pairs' current exam (wider than the defaults of ``cases synth --from-ct``).
TRAINING_SETTINGS = RealPairSettings(
    slice_choices_mm=(1.5, 2.0, 3.0, 5.0),
    current_noise_hu=(4.0, 25.0),
    prior_noise_hu=(2.0, 12.0),
)
RESERVED_SEEDS = {100, 200, 3000, 5000}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--from-ct", action="append", default=[], type=Path, help="a real CT (repeat)")
    ap.add_argument("--labels", action="append", default=None, help="label map of each --from-ct, or 'none'")
    ap.add_argument("--n-real", type=int, default=15)
    ap.add_argument("--n-phantom", type=int, default=10)
    ap.add_argument("--seed", type=int, default=7000)
    a = ap.parse_args(argv)
    if {a.seed, a.seed + 1} & RESERVED_SEEDS:
        print(f"--seed {a.seed}: seeds {sorted(RESERVED_SEEDS)} are the tuning and held-out sets; choose another.", file=sys.stderr)
        return 2
    if a.n_real and not a.from_ct:
        print("--n-real needs at least one --from-ct.", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    lists: list[CaseList] = []
    if a.n_real:
        labels = [None if str(x).lower() == "none" else x for x in a.labels] if a.labels else None
        path = real_ct_case_set(
            a.out / "real", a.from_ct, labels=labels, n_cases=a.n_real, abnormal_fraction=0.0, seed=a.seed, settings=TRAINING_SETTINGS, progress=True
        )
        lists.append(read_case_list(path))
    if a.n_phantom:
        path = synthesize_case_set(a.out / "phantom", n_cases=a.n_phantom, abnormal_fraction=0.0, seed=a.seed + 1, size="small", progress=True)
        lists.append(read_case_list(path))
    combined = CaseList(tuple(c for cl in lists for c in cl.cases))
    out = write_case_list(combined, a.out / "caselist.csv")
    print(f"{len(combined.cases)} lesion-free pairs in {out} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
