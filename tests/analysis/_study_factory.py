"""A small simulated FROC reader study with reader groups and lesion classes (for report tests).

Two treatments (``CT`` and ``CT+TS``), readers in two groups (board-certified, resident),
lesions with a ``location`` (vertebral_body / arch) and a ``lesion_type`` (lytic / blastic).
In ``CT+TS`` lesions are found more often.  Deterministic for a given seed.
"""

from __future__ import annotations

import numpy as np

from analysis import ObserverData


def simulated_study(
    seed: int = 7,
    *,
    n_normal: int = 24,
    n_abnormal: int = 24,
    readers: dict[str, str] | None = None,
    name: str = "simulated spine study",
) -> ObserverData:
    """A fully crossed FROC study; see the module docstring."""
    rng = np.random.default_rng(seed)
    readers = readers or {"R1": "board-certified", "R2": "board-certified", "R3": "board-certified", "R4": "resident", "R5": "resident"}
    treatments = ["CT", "CT+TS"]
    truth = [{"case_id": f"N{k + 1:02d}", "lesion_id": None} for k in range(n_normal)]
    lesions = []
    for k in range(n_abnormal):
        case = f"A{k + 1:02d}"
        for n in range(int(rng.integers(1, 4))):
            loc = "vertebral_body" if rng.random() < 0.6 else "arch"
            typ = "lytic" if rng.random() < 0.5 else "blastic"
            truth.append({"case_id": case, "lesion_id": f"L{n + 1}", "location": loc, "lesion_type": typ})
            lesions.append((case, f"L{n + 1}", loc, typ))
    nl, ll = [], []
    for t_idx, t in enumerate(treatments):
        for j, r in enumerate(readers):
            skill = 0.15 * j
            for row in truth:
                n_fp = rng.poisson(0.5)
                for _ in range(n_fp):
                    nl.append({"treatment": t, "reader": r, "case_id": row["case_id"], "rating": float(np.round(rng.normal(1.0, 1.0), 3))})
            for case, les, loc, typ in lesions:
                p_find = 0.45 + 0.2 * t_idx + (0.1 if typ == "blastic" else 0.0) - skill * 0.3
                if rng.random() < p_find:
                    ll.append(
                        {
                            "treatment": t,
                            "reader": r,
                            "case_id": case,
                            "lesion_id": les,
                            "rating": float(np.round(rng.normal(2.0 + 0.5 * t_idx, 1.0), 3)),
                        }
                    )
    return ObserverData.from_marks(truth, nl, ll, treatments=treatments, readers=list(readers), reader_groups=readers, name=name)
