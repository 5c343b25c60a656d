"""How the simulated readers score on a case set with truth: wAFROC per group and treatment.

Used to choose the readers' criteria (docs/simulated-readers.md) on a set that is not the
demo's, without any database: the candidate regions of every case are computed once (cached in
``CASES/simulated-reader-evidence.pkl``), six readers (three per group) read every case unaided
and aided, marks are scored with the demo's rule (within 10 mm of a lesion centre) and wAFROC
comes from ``analysis``.

Usage::

    tsct cases synth tune --n-cases 20 --seed 77 && tsct detect batch tune/caselist.csv --out tune-det
    python bench/bench_simulated_readers.py tune tune-det [board-certified:criterion:0.1,resident:criterion:0.0 ...]

Each extra argument changes group defaults (``group:parameter:value``, cumulative) and prints
one more line.
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np

from analysis import ObserverData, fom_matrix
from cases import read_case_list
from reader_study import AcceptanceRule, MarkToScore, TruthLesion, score_marks
from reader_study import simulation as sim

READERS = [("A", "board-certified"), ("B", "board-certified"), ("C", "board-certified"), ("D", "resident"), ("E", "resident"), ("F", "resident")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", type=Path, help="folder with caselist.csv (a synthetic set with truth)")
    parser.add_argument("detector_dir", type=Path, help="`tsct detect batch` output folder for those cases")
    parser.add_argument("changes", nargs="*", help="group:parameter:value[,…] changes of GROUP_DEFAULTS, one line each")
    args = parser.parse_args()

    cl = read_case_list(args.cases / "caselist.csv")
    cache = args.cases / "simulated-reader-evidence.pkl"
    if cache.is_file():
        evidence = pickle.loads(cache.read_bytes())
    else:
        evidence = {c.case_id: sim.case_evidence(c.case_id, c.current, args.detector_dir / c.case_id) for c in cl.cases}
        cache.write_bytes(pickle.dumps(evidence))
    scale = sim.SuspicionScale.from_cases(evidence.values())
    lesions = [TruthLesion(c.case_id, les.lesion_id, les.center_mm, les.radius_mm) for c in cl.cases for les in c.lesions]
    truth = [{"case_id": c.case_id, "lesion_id": les.lesion_id} for c in cl.cases for les in c.lesions]
    truth += [{"case_id": c.case_id, "lesion_id": None} for c in cl.cases if not c.lesions]

    for change in ["(defaults)", *args.changes]:
        if change != "(defaults)":
            for item in change.split(","):
                group, key, value = item.split(":")
                sim.GROUP_DEFAULTS[group][key] = float(value)
        profiles = sim.default_reader_profiles(READERS, seed=0)
        marks, k = [], 0
        for ti, treatment in enumerate(("unaided", "aided")):
            for pi, profile in enumerate(profiles):
                for ci, case in enumerate(cl.cases):
                    rng = np.random.default_rng([0, pi, ci, ti])
                    for m in sim.read_case(profile, evidence[case.case_id], aided=treatment == "aided", rng=rng, scale=scale):
                        k += 1
                        marks.append(MarkToScore(k, treatment, profile.name, case.case_id, m.point_mm, m.rating))
        res = score_marks(marks, lesions, AcceptanceRule("radius", 10.0))
        data = ObserverData.from_marks(truth, res.nl_frame(), res.ll_frame(), treatments=["unaided", "aided"], readers=[p.name for p in profiles])
        fom = fom_matrix(data, "wAFROC")
        nl = res.nl_frame().groupby("treatment").size() / (len(profiles) * len(cl.cases))
        ll = res.ll_frame().groupby("treatment").size() / (len(profiles) * max(len(lesions), 1))
        print(
            f"{change}: wAFROC unaided/aided board-certified {fom[0, :3].mean():.3f}/{fom[1, :3].mean():.3f}, "
            f"resident {fom[0, 3:].mean():.3f}/{fom[1, 3:].mean():.3f}; NL per case unaided/aided "
            f"{nl.get('unaided', 0.0):.2f}/{nl.get('aided', 0.0):.2f}; lesions found {ll.get('unaided', 0.0):.2f}/{ll.get('aided', 0.0):.2f}"
        )


if __name__ == "__main__":
    main()
