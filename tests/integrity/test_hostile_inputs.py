"""Hostile inputs on the input side (``tsct cases import / synth / validate``), generated here.

Every malformed input (tests/integrity/hostile_inputs.py: image files, DICOM series, output
paths, case lists, truth, label maps, case ids) must be refused with a non-zero exit, no
traceback, a message naming the culprit (file, row and column, or option), and nothing left
behind. ``bench/hostile_inputs_tally.py`` runs the same inputs and prints the totals.
"""

from __future__ import annotations

import pytest

from tests.integrity.hostile_inputs import CATEGORIES, HOSTILE, classify, run_case


def test_the_suite_is_large_enough():
    assert len(HOSTILE) >= 180
    assert len({case.id for case in HOSTILE}) == len(HOSTILE)


@pytest.mark.parametrize("case", HOSTILE, ids=[case.id for case in HOSTILE])
def test_hostile_input_is_refused_cleanly(case, tmp_path):
    outcome = run_case(case, tmp_path)
    category = classify(outcome)
    assert category in CATEGORIES
    detail = (
        f"{case.id}: {category}; exit {outcome.exit_code}; expected to name {outcome.built.culprit!r}; "
        f"left behind {[str(p) for p in outcome.left_behind]}; exception {outcome.exception!r}\n{outcome.output}"
    )
    assert outcome.exception is None, detail
    assert "Traceback" not in outcome.output, detail
    assert outcome.exit_code != 0, detail
    assert not outcome.left_behind, detail
    assert category == "clear error", detail


def test_killed_synth_leaves_nothing_under_the_final_name(tmp_path):
    """kill -9 in the middle of `tsct cases synth`: the case set appears only complete (renamed
    from a hidden temporary folder), so a killed run leaves no caselist.csv under the target."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    target = tmp_path / "set"
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen(
        [sys.executable, "-c", "import tsct_cli; tsct_cli.app()", "cases", "synth", str(target), "--n-cases", "6", "--size", "small"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # wait for a state: the first case's files exist in the hidden work folder
        while proc.poll() is None and not any(tmp_path.glob(".set.partial-*/cases/*/*.nii.gz")):
            time.sleep(0.05)
        assert proc.poll() is None, "synth finished before it could be interrupted"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".set.partial-")] == []
