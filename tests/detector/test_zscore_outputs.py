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
            pair.current, pair.prior, pair.roi, tmp_path, settings=ZScoreSettings(model=model, force_model=True),
            prior_spacing_mm=(1.5, 1.5, 1.5), dicom_template=template, case_id="T21",
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

