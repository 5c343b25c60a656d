"""Simulated readers: what they see in the images and how they decide (no database needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reader_study.simulation import (
    Candidate,
    CaseEvidence,
    ReaderProfile,
    SuspicionScale,
    ct_blob_map,
    default_reader_profiles,
    read_case,
)


def _bone_block(shape=(40, 48, 48), hu=250.0, noise=15.0, seed=0):
    rng = np.random.default_rng(seed)
    ct = np.full(shape, -50.0, np.float32)  # soft tissue around
    bone = np.zeros(shape, bool)
    bone[6:34, 8:40, 8:40] = True
    ct[bone] = hu
    ct += rng.normal(0, noise, shape).astype(np.float32)
    return ct, bone


def _ball(shape, centre, radius):
    zz, yy, xx = np.indices(shape)
    return (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= radius**2


def test_blob_map_finds_dense_and_lytic_blobs_with_their_sign():
    ct, bone = _bone_block()
    dense, lytic = _ball(ct.shape, (14, 18, 18), 3), _ball(ct.shape, (26, 30, 30), 3)
    ct[dense] += 600.0
    ct[lytic] -= 200.0
    blob = ct_blob_map(ct, (1.5, 1.5, 1.5), bone)
    assert blob[14, 18, 18] > 2.0 and blob[14, 18, 18] == pytest.approx(blob[dense].max(), rel=0.5)
    assert blob[26, 30, 30] < -2.0
    # Away from both blobs the bone reads as ordinary: well below the lesions' conspicuity.
    quiet = bone & ~_ball(ct.shape, (14, 18, 18), 8) & ~_ball(ct.shape, (26, 30, 30), 8)
    assert np.percentile(np.abs(blob[quiet]), 99) < 0.5 * min(blob[dense].max(), -blob[lytic].min())
    assert np.all(blob[~bone] == 0)


def test_blob_map_ignores_the_bone_boundary_and_a_dense_sheet():
    ct, bone = _bone_block(noise=5.0)
    ct[20, 10:38, 10:38] += 600.0  # a one-voxel dense plate, like an endplate
    ball = _ball(ct.shape, (12, 24, 24), 3)
    ct[ball] += 600.0
    blob = ct_blob_map(ct, (1.5, 1.5, 1.5), bone)
    assert blob[ball].max() > 2.0 * np.abs(blob[19:22, 14:34, 14:34]).max()


def test_suspicion_scale_counts_findings_per_case():
    cands = lambda values: tuple(Candidate((0.0, 0.0, 0.0), v, 0.0, 1, True, False) for v in values)  # noqa: E731
    scale = SuspicionScale.from_cases([CaseEvidence("a", cands([1, 2, 3]), False), CaseEvidence("b", cands([4]), False)])
    assert scale.ct(1.0) == pytest.approx(-math.log10(4 / 2))
    assert scale.ct(4.0) == pytest.approx(-math.log10(1 / 2))
    assert scale.ct(99.0) == pytest.approx(-math.log10(0.5 / 2))  # rarer than anything seen
    assert scale.ct(2.5) < scale.ct(3.5)


def _profile(**kw) -> ReaderProfile:
    base = dict(name="R", group="resident", perceptual_noise=0.0, search_coverage=1.0, criterion=0.0, overlay_attention=1.0, localisation_sd_mm=0.0)
    base.update(kw)
    return ReaderProfile(**base)


def _evidence(has_overlay=True):
    cands = (
        Candidate((0.0, 0.0, 0.0), 5.0, 0.0, 1, True, False),  # on the CT, no change on the overlay (old island)
        Candidate((30.0, 0.0, 0.0), 0.0, 9.0, -1, False, True),  # only on the overlay (thin-bone lytic)
        Candidate((60.0, 0.0, 0.0), 0.5, 4.5, 1, True, True),  # faint on both
    )
    return CaseEvidence("c", cands, has_overlay)


def test_read_case_sees_only_what_each_treatment_shows():
    ev = _evidence()
    scale = SuspicionScale(np.array([0.5, 1.0, 2.0, 5.0]), np.array([4.5, 9.0]), n_cases=2)
    unaided = read_case(_profile(), ev, aided=False, rng=np.random.default_rng(0), scale=scale)
    aided = read_case(_profile(), ev, aided=True, rng=np.random.default_rng(0), scale=scale)
    assert {m.point_mm[0] for m in unaided} >= {0.0} and all(abs(m.point_mm[0] - 30.0) > 10 for m in unaided)
    assert any(abs(m.point_mm[0] - 30.0) < 10 for m in aided)
    # The old island keeps its CT suspicion unaided and is discounted aided (no change on the overlay).
    island_unaided = next(m for m in unaided if abs(m.point_mm[0]) < 10)
    island_aided = next((m for m in aided if abs(m.point_mm[0]) < 10), None)
    assert island_aided is None or island_aided.evidence < island_unaided.evidence


def test_no_overlay_means_no_difference_between_treatments():
    ev = _evidence(has_overlay=False)
    scale = SuspicionScale(np.array([0.5, 1.0, 5.0]), np.array([]), n_cases=1)
    profile = default_reader_profiles([("Dr X", "board-certified")], seed=3)[0]
    a = read_case(profile, ev, aided=False, rng=np.random.default_rng(7), scale=scale)
    b = read_case(profile, ev, aided=True, rng=np.random.default_rng(7), scale=scale)
    assert a == b


def test_reader_profiles_are_seeded_and_differ_by_group():
    names = [("Dr A", "board-certified"), ("Dr B", "resident")]
    p1, p2 = default_reader_profiles(names, seed=1), default_reader_profiles(names, seed=1)
    assert p1 == p2
    assert p1[0].perceptual_noise < p1[1].perceptual_noise and p1[0].search_coverage > p1[1].search_coverage
