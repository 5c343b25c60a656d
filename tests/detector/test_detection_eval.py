"""evaluate_detectors end to end on toy pairs whose registration outputs are already on disk."""

from __future__ import annotations

import json
import math

import pytest

from detector.detection_eval import EVALUATION_JSON_KEYS, EvaluationSettings, evaluate_detectors

from .zscore_toy import write_toy_study


@pytest.fixture(scope="module")
def toy_study(tmp_path_factory):
    return write_toy_study(tmp_path_factory.mktemp("toy-eval"))


def test_evaluation_scores_every_method(toy_study, tmp_path):
    caselist, work = toy_study
    ev = evaluate_detectors(caselist, work, methods=("plain", "voxel_matched", "analytic"), settings=EvaluationSettings(margin_mm=3.0), progress=False)
    assert set(ev.scores) == {"plain", "voxel_matched", "analytic"}
    an = ev.scores["analytic"]
    assert an.n_cases == 4 and an.n_lesions == 4 and an.n_normal_cases == 2
    # two 6 mm lesions per abnormal case with 190-670 HU of change over ~21 HU noise: all found
    assert an.sensitivity[1.0] == pytest.approx(1.0)
    assert 0.9 <= an.wafroc <= 1.0
    assert 0.0 <= an.calibration_frac_abs_gt3 < 0.02
    assert an.subgroups["lesion_type"]["lytic"]["n_lesions"] == 2
    # plain subtraction scaled by its robust sd finds them too; every score is a number
    assert ev.scores["plain"].sensitivity[3.0] == pytest.approx(1.0)
    assert all(math.isfinite(s.wafroc) for s in ev.scores.values())
    paths = ev.write_report(tmp_path / "report")
    data = json.loads(paths["json"].read_text())
    for key in ("sensitivity_at_0.5_fp", "sensitivity_at_1_fp", "sensitivity_at_3_fp", "wafroc", "calibration_frac_abs_gt3"):
        assert key in data["methods"]["analytic"] and key in EVALUATION_JSON_KEYS
    assert paths["froc"].stat().st_size > 1000
    assert "wAFROC" in paths["markdown"].read_text()
    assert len(ev.to_frame()) == 3
    # wAFROC with its 95 % CI, the operating point and the curve to choose another one
    lo, hi = an.wafroc_ci
    assert 0.0 <= lo <= an.wafroc <= hi <= 1.0
    op = data["methods"]["analytic"]["operating_point"]
    assert op["threshold"] == 8.5 and op["fp_per_case"] >= 0 and 0 <= op["sensitivity"] <= 1
    assert len(data["methods"]["analytic"]["operating_curve"]) == 35
    for key in ("wafroc_ci95", "operating_point", "operating_curve"):
        assert key in EVALUATION_JSON_KEYS
    assert "nan" not in ev.summary().lower() and "operating point" in ev.summary()
    assert data["bone_roi"]["mean_volume_ml"] > 0


def test_unknown_method_is_refused(toy_study):
    from detector._errors import DetectorInputError

    caselist, work = toy_study
    with pytest.raises(DetectorInputError, match="Unknown method"):
        evaluate_detectors(caselist, work, methods=("magic",), progress=False)
