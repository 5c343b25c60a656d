"""The command line shows warnings as one clean line (no Python class, file or source line)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_out_of_domain_warning_is_one_clean_line():
    code = (
        "import warnings\n"
        "from detector import _cli_common\n"
        "from detector.zscore import OutOfDomainWarning\n"
        "warnings.warn('voxel spacing of the current exam along z is 5.00 mm,\\n trained on [1.50-3.00] mm', OutOfDomainWarning)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "COLUMNS": "200"}, check=True
    )
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert lines == ["Warning: voxel spacing of the current exam along z is 5.00 mm, trained on [1.50-3.00] mm"]
    assert "OutOfDomainWarning" not in out.stderr and "warnings.warn" not in out.stderr


def test_registration_summary_never_says_nan():
    from detector.evaluation import RegistrationMeasurement

    nan = float("nan")
    m = RegistrationMeasurement("N1", 10, 0, 5.0, 1.0, 0.1, 0.2, 0.3, 20.0, 4.0, 0, nan, nan)
    text = m.summary()
    assert "nan" not in text.lower() and "no lesions" in text
    m = RegistrationMeasurement("A1", 0, 10, nan, nan, nan, nan, nan, nan, nan, 1, nan, nan)
    assert "nan" not in m.summary().lower() and "n/a" in m.summary()
