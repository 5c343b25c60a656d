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
    ev = evaluate_detectors(
        caselist, work, methods=("plain", "voxel_matched", "analytic"), settings=EvaluationSettings(margin_mm=3.0), progress=False
    )
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
    from detector.zscore_outputs import OPERATING_THRESHOLDS

    assert op["threshold"] == OPERATING_THRESHOLDS["analytic"] and op["fp_per_case"] >= 0 and 0 <= op["sensitivity"] <= 1
    assert len(data["methods"]["analytic"]["operating_curve"]) == 35
    for key in ("wafroc_ci95", "operating_point", "operating_curve"):
        assert key in EVALUATION_JSON_KEYS
    assert "nan" not in ev.summary().lower() and "operating point" in ev.summary()
    assert data["bone_roi"]["mean_volume_ml"] > 0
    # the detector's marks per method, in the format the CAD-vs-radiologists analysis reads
    from analysis.cad_vs_rad import read_cad_marks

    for m in ("plain", "voxel_matched", "analytic"):
        assert paths[f"marks_{m}"] == tmp_path / "report" / f"marks_{m}.csv"
    cad = read_cad_marks(str(paths["marks_analytic"]))
    hits = cad[cad["lesion_id"] != ""]
    n_nl = sum(len(cm.nl_ratings) for cm in ev.marks["analytic"])
    assert len(cad) - len(hits) == n_nl
    # every lesion is found (sensitivity 1 above), each once, with its rating from the scoring
    assert len(hits) == an.n_lesions == len(set(zip(hits["case_id"], hits["lesion_id"])))
    by_case = {cm.case_id: cm for cm in ev.marks["analytic"]}
    for c, lid, r in zip(hits["case_id"], hits["lesion_id"], hits["rating"]):
        assert r == by_case[c].ll_ratings[lid]


def test_unknown_method_is_refused(toy_study):
    from detector._errors import DetectorInputError

    caselist, work = toy_study
    with pytest.raises(DetectorInputError, match="Unknown method"):
        evaluate_detectors(caselist, work, methods=("magic",), progress=False)


def test_marks_csv_round_trips_through_the_cad_reader(tmp_path):
    from analysis.cad_vs_rad import cad_marks_from_case_marks, read_cad_marks
    from detector.detection_eval import write_marks_csv
    from detector.froc import CaseMarks

    marks = [
        CaseMarks("n1", (4.25, 3.5), {}, False),
        CaseMarks("a1", (3.125,), {"1": 9.0, "2": None}, True),
        CaseMarks("a2", (), {"L7": 5.5}, True),
        CaseMarks("n2", (), {}, False),
    ]
    path = write_marks_csv(marks, tmp_path / "m" / "marks_x.csv")
    assert path.read_text().splitlines()[0] == "case_id,rating,lesion_id"
    assert not list(path.parent.glob(".*tmp"))
    got = read_cad_marks(str(path)).sort_values(["case_id", "rating"]).reset_index(drop=True)
    want = cad_marks_from_case_marks(marks).fillna("").sort_values(["case_id", "rating"]).reset_index(drop=True)
    assert list(got["case_id"]) == list(want["case_id"]) == ["a1", "a1", "a2", "n1", "n1"]
    assert list(got["rating"]) == list(want["rating"])
    assert list(got["lesion_id"]) == list(want["lesion_id"])
