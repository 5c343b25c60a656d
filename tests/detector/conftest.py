"""Shared fixtures of the registration/subtraction tests: small synthetic pairs, registered once.

Registration of a small pair (128x128x96) takes about 10 s on two cores, so each pair is
registered once per test session and the results are shared.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cases import read_exam, synthesize_pair, write_pair


@pytest.fixture(scope="session")
def reg_pair():
    """A small abnormal pair with one lytic and one blastic vertebral-body lesion, same slice
    spacing in both exams (seeded, so the same every run)."""
    return synthesize_pair(
        "reg-t1",
        seed=11,
        size="small",
        abnormal=True,
        n_lesions=2,
        lesion_types=["lytic", "blastic"],
        lesion_locations=["vertebral_body", "vertebral_body"],
        lesion_radius_mm=(5.0, 7.0),
        vary_acquisition=False,
        benign_finding=False,
    )


@pytest.fixture(scope="session")
def reg_pair_dicom(reg_pair, tmp_path_factory) -> dict[str, Path]:
    """The pair written as NIfTI and DICOM series (same patient, two studies)."""
    folder = tmp_path_factory.mktemp("reg-pair")
    return write_pair(reg_pair, folder, dicom=True)


@pytest.fixture(scope="session")
def reg_run(reg_pair_dicom, tmp_path_factory):
    """``run_pair`` on the DICOM exams of the pair, with outputs written (NIfTI + DICOM)."""
    from detector import run_pair

    out = tmp_path_factory.mktemp("reg-out")
    prior = read_exam(reg_pair_dicom["prior_dicom"])
    current = read_exam(reg_pair_dicom["current_dicom"])
    result = run_pair(prior, current, out, case_id="reg-t1")
    return {"result": result, "out": out, "prior": prior, "current": current}
