"""evaluate_detectors end to end on toy pairs whose registration outputs are already on disk."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cases import Case, CaseList, Lesion, write_case_list, write_volume
from detector.detection_eval import EVALUATION_JSON_KEYS, EvaluationSettings, evaluate_detectors

from .zscore_toy import BLASTIC_CENTRE, LYTIC_CENTRE, toy_pair


@pytest.fixture(scope="module")
def toy_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy-eval")
    work = root / "work"
    cases = []
    for i, abnormal in enumerate((False, True, False, True)):
        pair = toy_pair(seed=100 + i, lesions=abnormal)
        folder = root / "cases" / f"T{i}"
        prior = write_volume(pair.prior, folder / "prior.nii.gz")
        current = write_volume(pair.current, folder / "current.nii.gz")
        lesions = ()
        if abnormal:
            labels = write_volume(pair.lesions, folder / "lesions.nii.gz")
            lesions = tuple(
                Lesion(f"T{i}-{k}", tuple(float(v) for v in pair.current.index_to_point_mm(c[::-1])), t, "vertebral_body", radius_mm=6.0, label_map=labels, label_value=k)
                for k, (t, c) in enumerate((("lytic", LYTIC_CENTRE), ("blastic", BLASTIC_CENTRE)), start=1)
            )
        cases.append(Case(f"T{i}", prior, current, abnormal, lesions))
        out = work / f"T{i}"
        write_volume(pair.prior, out / "warped_prior.nii.gz")
        write_volume(pair.roi, out / "bone_roi.nii.gz")
        vm = np.where(pair.roi.array != 0, pair.current.array - pair.prior.array, 0).astype(np.float32)
        write_volume(pair.current.like(vm), out / "subtraction_vm.nii.gz")
        (out / "qc.json").write_text(json.dumps({"status": "ok", "inputs": {"prior": {"spacing_mm": [1.5, 1.5, 1.5]}}}))
    path = write_case_list(CaseList(tuple(cases)), root / "caselist.csv")
    return path, work


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


def test_unknown_method_is_refused(toy_study):
    from detector._errors import DetectorInputError

    caselist, work = toy_study
    with pytest.raises(DetectorInputError, match="Unknown method"):
        evaluate_detectors(caselist, work, methods=("magic",), progress=False)
