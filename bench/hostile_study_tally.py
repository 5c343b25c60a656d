"""Tally of the study/analysis-side hostile-input suite: tried / clear error / traceback / silent acceptance / partial output.

Runs every case of ``tests/integrity/hostile_study_cases.py`` (the same cases the test suite
runs) in a temporary folder and prints the totals, per category and overall, then the cases that
were not a clear error with what was seen. Usage::

    PYTHONPATH=. python bench/hostile_study_tally.py [--show-all]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._tally import print_tally  # noqa: E402
from tests.integrity._study_env import build_env  # noqa: E402
from tests.integrity.hostile_study_cases import OUTCOMES, all_cases, run_case  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show-all", action="store_true", help="print every case's outcome")
    args = parser.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = build_env(root / "world")
        outcomes = [run_case(case, root / "cases" / case.id, env) for case in all_cases()]
    per_category: dict[str, Counter] = defaultdict(Counter)
    for o in outcomes:
        per_category[o.case.category][o.kind] += 1
    total = print_tally(per_category, OUTCOMES, "category")
    print(
        f"\n{len(outcomes)} tried / {total['clear']} clear error / {total['traceback']} traceback / "
        f"{total['silent']} silent acceptance / {total['partial']} partial output ({total['vague']} refused with a vague message); "
        f"{time.perf_counter() - start:.0f} s"
    )
    for o in outcomes:
        if args.show_all or o.kind != "clear":
            print(f"  [{o.kind}] {o.case.id} (exit {o.exit_code}): {o.detail} :: {o.output[:300]}")
    return 0 if total["clear"] == len(outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
