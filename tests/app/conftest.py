"""Fixtures of the reading-app tests: small cases with stand-in detector outputs, ready studies, app environments.

Cases are small synthetic volumes (40 x 36 x 16 voxels of 0.8 x 0.8 x 2.5 mm: anisotropic, like
real CT) so that every test stays fast; the geometry code is the same at any size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from reader_study.harness import SyntheticLesion, write_synthetic_case_list
from reading_app.workstation import reset_runtime
from reading_app.workstation.testing import ReadingStudy, build_reading_study, write_test_detector_outputs

SIZE_XYZ = (40, 36, 16)
SPACING_MM = (0.8, 0.8, 2.5)
ORIGIN_MM = (-16.0, -14.4, 0.0)
#: voxel (x, y, z) of the lesion of case C001
LESION_VOXEL = (20, 18, 8)


@dataclass(frozen=True)
class CaseSet:
    case_list: Path
    training_list: Path
    detector_dir: Path


@pytest.fixture(scope="session")
def app_cases(tmp_path_factory) -> CaseSet:
    folder = tmp_path_factory.mktemp("app-cases")
    lesions = [[SyntheticLesion(LESION_VOXEL, 4.0)], [], [SyntheticLesion((10, 10, 4), 3.0, "blastic", "pedicle")], []]
    case_list = write_synthetic_case_list(folder, lesions, size_xyz=SIZE_XYZ, spacing_mm=SPACING_MM, origin_mm=ORIGIN_MM, prefix="C", seed=1)
    training = write_synthetic_case_list(
        folder / "training",
        [[SyntheticLesion((30, 12, 10), 4.0, "lytic", "rib")]],
        size_xyz=SIZE_XYZ,
        spacing_mm=SPACING_MM,
        origin_mm=ORIGIN_MM,
        prefix="T",
        seed=2,
        name="training.csv",
    )
    detector = folder / "detector"
    write_test_detector_outputs(case_list, detector)
    write_test_detector_outputs(training, detector)
    return CaseSet(case_list, training, detector)


@dataclass(frozen=True)
class AppEnv:
    """A study ready to read and the environment the app runs with."""

    study: ReadingStudy
    data_dir: Path
    detector_dir: Path
    env: dict

    @property
    def database_url(self) -> str:
        return self.study.database_url


def make_app_env(folder: Path, cases: CaseSet, *, training: bool = True, **kwargs) -> AppEnv:
    folder.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{folder / 'reader-study.sqlite3'}"
    study = build_reading_study(url, cases.case_list, training_case_list=cases.training_list if training else None, **kwargs)
    env = {
        "TSCT_DATABASE_URL": url,
        "TSCT_DATA_DIR": str(folder),
        "TSCT_DETECTOR_DIR": str(cases.detector_dir),
        "TSCT_SQLITE_SYNCHRONOUS": "NORMAL",
        # paths typed in the app may point into the data folder and the test cases' folder
        "TSCT_STUDY_DIRS": os.pathsep.join([str(folder), str(cases.case_list.parent)]),
    }
    return AppEnv(study, folder, cases.detector_dir, env)


@pytest.fixture()
def app_env(tmp_path, app_cases, monkeypatch) -> AppEnv:
    """A fresh open study (2 readers, training case first) and the app's environment set for this test."""
    env = make_app_env(tmp_path / "data", app_cases)
    for key, value in env.env.items():
        monkeypatch.setenv(key, value)
    reset_runtime()
    yield env
    reset_runtime()


APP_FILE = str(Path(__file__).resolve().parents[2] / "app.py")


@pytest.fixture()
def app_test(app_env):
    """A factory of AppTest instances of ``app.py`` for the prepared study."""
    from streamlit.testing.v1 import AppTest

    def make():
        return AppTest.from_file(APP_FILE, default_timeout=60)

    return make


def copy_case_list(source: Path, dest: Path, edit=None) -> Path:  # noqa: ANN001
    """Copy a case list to ``dest`` with absolute exam and label paths; ``edit(rows)`` may change its rows first."""
    import csv

    rows = list(csv.DictReader(source.open(newline="")))
    for row in rows:
        for column in ("prior", "current", "label_map", "true_transform"):
            if row.get(column):
                row[column] = str((source.parent / row[column]).resolve())
    if edit is not None:
        edit(rows)
    with dest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return dest
