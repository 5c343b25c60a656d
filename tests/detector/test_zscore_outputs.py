"""The z-score stage of a case folder: zmap, sigma, candidates and the overlay series on disk."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pydicom
import pytest

from cases import read_volume
from detector.candidates import CandidateSet
from detector.zscore import OutOfDomainWarning
from detector.zscore_outputs import ZSCORE_OUTPUT_FILES, ZScoreSettings, zscore_stage

from .zscore_toy import BLASTIC_CENTRE, LYTIC_CENTRE, toy_pair


@pytest.mark.parametrize("model", ["analytic", "default"])
def test_stage_writes_every_output(tmp_path, model):
    pair = toy_pair(seed=21)
    template = {"PatientID": "P9", "StudyInstanceUID": "1.2.826.0.1.9", "FrameOfReferenceUID": "1.2.826.0.1.10"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfDomainWarning)  # the toy pair is outside the shipped network's domain
        out = zscore_stage(
            pair.current,
            pair.prior,
            pair.roi,
            tmp_path,
            settings=ZScoreSettings(model=model, force_model=True),
            prior_spacing_mm=(1.5, 1.5, 1.5),
            dicom_template=template,
            case_id="T21",
        )
    for key, name in ZSCORE_OUTPUT_FILES.items():
        assert (tmp_path / name).exists(), key
    z = read_volume(tmp_path / "zmap.nii.gz")
    assert z.same_space(pair.current)
    np.testing.assert_allclose(z.array, out.zmap.z.array, atol=1e-5)
    sigma = read_volume(tmp_path / "sigma.nii.gz").array
    assert (sigma[pair.roi.array == 0] == 0).all() and (sigma[pair.roi.array != 0] > 0).all()
    cands = CandidateSet.read_json(tmp_path / "candidates.json")
    assert cands.parameters["z_method"] == ("network" if model == "default" else "analytic")
    # the lytic and the blastic sphere are both found with the right polarity near their centres
    for polarity, centre in (("lytic", LYTIC_CENTRE), ("blastic", BLASTIC_CENTRE)):
        where = np.asarray(pair.current.index_to_point_mm(centre[::-1]))
        near = [c for c in cands.by_polarity(polarity) if np.linalg.norm(np.asarray(c.center_mm) - where) < 4.0]
        assert near, f"no {polarity} candidate near {where}"
    files = sorted((tmp_path / ZSCORE_OUTPUT_FILES["dicom_zscore_overlay"]).glob("*.dcm"))
    assert len(files) == pair.current.shape[0]
    ds = pydicom.dcmread(files[0])
    assert ds.StudyInstanceUID == template["StudyInstanceUID"] and ds.PatientID == "P9"
    assert "research use only" in ds.DerivationDescription.lower()
    entry = out.qc_entry()
    json.dumps(entry)
    assert entry["method"] == out.zmap.method and entry["n_candidates"] == len(cands)


def test_run_pair_writes_zscore_outputs_and_finds_both_lesions(reg_pair, reg_run):
    """End to end on a registered synthetic DICOM pair (shared fixture of the pipeline tests)."""
    out = reg_run["out"]
    result = reg_run["result"]
    for key in ("zmap", "sigma", "candidates_json", "candidates_csv", "dicom_zscore_overlay"):
        assert key in result.outputs and result.outputs[key].exists(), key
    qc = json.loads((out / "qc.json").read_text())
    assert qc["zscore"]["method"] == result.zscore.zmap.method
    assert qc["zscore"]["n_candidates"] == len(result.zscore.candidates)
    sc = sorted((out / ZSCORE_OUTPUT_FILES["dicom_zscore_overlay"]).glob("*.dcm"))
    ds = pydicom.dcmread(sc[0])
    assert ds.StudyInstanceUID == reg_run["current"].header["StudyInstanceUID"]
    assert ds.FrameOfReferenceUID == reg_run["current"].header["FrameOfReferenceUID"]
    cands = CandidateSet.read_json(out / "candidates.json")
    for lesion in reg_pair.lesions:
        polarity = "lytic" if lesion.lesion_type.value == "lytic" else "blastic"
        hits = [
            c for c in cands.by_polarity(polarity) if np.linalg.norm(np.asarray(c.center_mm) - np.asarray(lesion.center_mm)) <= lesion.radius_mm + 3.0
        ]
        assert hits, f"{lesion.lesion_type.value} lesion at {lesion.center_mm} not found"
