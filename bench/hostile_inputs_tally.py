"""Run every hostile input of tests/integrity/hostile_inputs.py and tally the outcomes.

    PYTHONPATH=$PWD python bench/hostile_inputs_tally.py [--json tally.json] [--show vague,traceback]

Prints, per family (image file, DICOM, output path, case list, truth and exams, label map) and in
total: tried / clear error / vague error / traceback / silent acceptance / partial output.
The hostile-input module is loaded by file path, so the same inputs can be run against another
checkout of the code (put that checkout first on PYTHONPATH) to compare before and after.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODULE = HERE.parent / "tests" / "integrity" / "hostile_inputs.py"
sys.path.insert(0, str(HERE.parent))
from bench._tally import print_tally  # noqa: E402


def _load():
    spec = importlib.util.spec_from_file_location("hostile_inputs", MODULE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["hostile_inputs"] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write every outcome to this JSON file")
    parser.add_argument(
        "--show", default="vague error,traceback,silent acceptance,partial output", help="categories whose cases are listed with their output"
    )
    args = parser.parse_args()
    hostile = _load()
    by_family: dict[str, Counter] = defaultdict(Counter)
    records = []
    show = {s.strip() for s in args.show.split(",") if s.strip()}
    start = time.perf_counter()
    for case in hostile.HOSTILE:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                outcome = hostile.run_case(case, Path(tmp))
                category = hostile.classify(outcome)
                output = outcome.output
            except Exception as exc:  # a builder that fails on this checkout counts as a traceback
                category, output = "traceback", f"{type(exc).__name__}: {exc}"
        by_family[case.family][category] += 1
        records.append({"id": case.id, "family": case.family, "category": category, "output": output[-2000:]})
        if category in show:
            print(f"--- {case.id}: {category}\n{' '.join(output.split())[:400]}", file=sys.stderr)
    seconds = time.perf_counter() - start
    total = print_tally(by_family, hostile.CATEGORIES, "family")
    print(
        f"\ntried / clear error / traceback / silent acceptance / partial output: "
        f"{sum(total.values())} / {total['clear error']} / {total['traceback']} / {total['silent acceptance']} / {total['partial output']}"
        f"  (vague error: {total['vague error']}); {seconds:.0f} s"
    )
    if args.json:
        tmp = args.json.with_name(f".{args.json.name}.partial")
        tmp.write_text(json.dumps({"totals": dict(total), "cases": records}, indent=1))
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
