"""Reading designs (pure): fully crossed, counterbalanced, seeded orders, training first, balance checks."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from reader_study import DesignError, plan_design

READERS = [f"R{j:02d}" for j in range(1, 7)]
CASES = [f"C{k:02d}" for k in range(1, 11)]
ABNORMAL = {c: k % 2 == 0 for k, c in enumerate(CASES)}
TREATMENTS = ["unaided", "aided"]


def first_treatment(plan):
    first = {}
    for r in sorted((r for r in plan.reads if not r.training), key=lambda r: (r.session_index, r.order_index)):
        first.setdefault((r.reader, r.case), r.treatment)
    return first


def test_crossover_is_fully_crossed_and_counterbalanced():
    plan = plan_design(READERS, CASES, TREATMENTS, seed=7, abnormal=ABNORMAL, training_cases=["T1"])
    study = [r for r in plan.reads if not r.training]
    assert len(study) == 6 * 10 * 2
    assert Counter((r.reader, r.case, r.treatment) for r in study) == {(j, k, t): 1 for j in READERS for k in CASES for t in TREATMENTS}
    # Two sessions; a case is never read twice in one session by one reader.
    assert plan.n_sessions == 2
    assert max(Counter((r.reader, r.session_index, r.case) for r in study).values()) == 1
    # Half the readers meet each case unaided first, half aided first.
    first = first_treatment(plan)
    for case in CASES:
        counts = Counter(first[(j, case)] for j in READERS)
        assert counts == {"unaided": 3, "aided": 3}, case
    # Each session mixes both treatments (5 + 5 cases) for every reader.
    per = Counter((r.reader, r.session_index, r.treatment) for r in study)
    assert set(per.values()) == {5}
    # Blocks hold equal numbers of normal and abnormal cases.
    blocks = Counter((plan.case_block_of[c], ABNORMAL[c]) for c in CASES)
    assert sorted(blocks.values()) == [2, 2, 3, 3]
    report = plan.check_balance(washout_days=28)
    assert report.balanced, report.summary()


def test_ab_ba_crossover_reads_one_treatment_per_session():
    plan = plan_design(READERS, CASES, TREATMENTS, case_blocks=1, seed=1)
    study = [r for r in plan.reads if not r.training]
    per_session = defaultdict(set)
    for r in study:
        per_session[(r.reader, r.session_index)].add(r.treatment)
    assert all(len(t) == 1 for t in per_session.values())
    groups = Counter(plan.reader_groups.values())
    assert groups == {0: 3, 1: 3}
    for j in READERS:
        g = plan.reader_groups[j]
        assert per_session[(j, 1)] == {TREATMENTS[g]}
        assert per_session[(j, 2)] == {TREATMENTS[1 - g]}
    assert plan.check_balance().balanced


def test_sequential_reads_each_case_unaided_then_aided_in_one_session():
    plan = plan_design(READERS[:2], CASES, TREATMENTS, kind="sequential", seed=3, training_cases=["T1", "T2"])
    assert plan.n_sessions == 1
    for reader in READERS[:2]:
        reads = sorted((r for r in plan.reads if r.reader == reader), key=lambda r: r.order_index)
        assert [(r.case, r.treatment) for r in reads[:4]] == [("T1", "unaided"), ("T1", "aided"), ("T2", "unaided"), ("T2", "aided")]
        study = reads[4:]
        assert len(study) == 20
        for i in range(0, 20, 2):
            assert study[i].case == study[i + 1].case
            assert (study[i].treatment, study[i + 1].treatment) == ("unaided", "aided")
    report = plan.check_balance()
    assert report.ok and report.balanced, report.summary()


def test_training_cases_come_first_in_the_first_session_only():
    plan = plan_design(READERS[:2], CASES, TREATMENTS, training_cases=["T1"])
    for reader in READERS[:2]:
        s1 = sorted((r for r in plan.reads if r.reader == reader and r.session_index == 1), key=lambda r: r.order_index)
        assert [(r.case, r.training) for r in s1[:2]] == [("T1", True), ("T1", True)]
        assert {r.treatment for r in s1[:2]} == set(TREATMENTS)
        assert not any(r.training for r in s1[2:])
        assert not any(r.training for r in plan.reads if r.reader == reader and r.session_index == 2)


def test_orders_are_reproducible_per_reader_and_independent_of_other_readers():
    a = plan_design(READERS, CASES, TREATMENTS, seed=11, case_blocks=1)
    b = plan_design(READERS, CASES, TREATMENTS, seed=11, case_blocks=1)
    assert a.reads == b.reads
    c = plan_design(READERS, CASES, TREATMENTS, seed=12, case_blocks=1)
    assert [r.case for r in a.reads if r.reader == "R01"] != [r.case for r in c.reads if r.reader == "R01"]
    # Different readers get different orders.
    order = {j: [r.case for r in a.reads if r.reader == j and r.session_index == 1] for j in READERS}
    assert len({tuple(o) for o in order.values()}) == len(READERS)
    # Adding a reader does not change another reader's order within a session (blocks=1: same treatment per session).
    d = plan_design(READERS + ["R07"], CASES, TREATMENTS, seed=11, case_blocks=1)
    for j in READERS:
        assert [r.case for r in d.reads if r.reader == j and r.session_index == 1] == order[j]


def test_sequence_groups_are_balanced_within_reader_groups():
    strata = {j: ("board-certified" if i < 4 else "resident") for i, j in enumerate(READERS + ["R07", "R08"])}
    plan = plan_design(list(strata), CASES, TREATMENTS, reader_strata=strata, seed=5)
    for stratum in ("board-certified", "resident"):
        groups = Counter(plan.reader_groups[j] for j, s in strata.items() if s == stratum)
        assert groups == {0: 2, 1: 2}


def test_an_odd_number_of_readers_is_usable_but_warned():
    plan = plan_design(READERS[:5], CASES, TREATMENTS)
    report = plan.check_balance(washout_days=14)
    assert report.ok and not report.balanced
    levels = {c.name: c.level for c in report.checks}
    assert levels["equal sequence groups"] == "warning"
    assert levels["washout"] == "warning"
    assert levels["fully crossed"] == "ok"
    frame = report.to_frame()
    assert set(frame["level"]) == {"ok", "warning"}


def test_schedule_table_counts_cases_per_treatment():
    plan = plan_design(READERS[:2], CASES, TREATMENTS, training_cases=["T1"])
    table = plan.schedule_frame()
    assert list(table.columns) == ["reader", "sequence", "session", "training reads", "unaided", "aided"]
    assert table["unaided"].tolist() == [5, 5, 5, 5]
    assert table["training reads"].tolist() == [2, 0, 2, 0]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kind": "latin"}, "Unknown design"),
        ({"case_blocks": 3}, "number of case blocks"),
        ({"training_cases": ["C01"]}, "both study and training"),
        ({"kind": "sequential", "case_blocks": 2}, "crossover designs only"),
    ],
)
def test_bad_designs_are_refused(kwargs, message):
    with pytest.raises(DesignError, match=message):
        plan_design(READERS, CASES, TREATMENTS, **kwargs)


def test_missing_or_repeated_codes_are_refused():
    with pytest.raises(DesignError, match="no readers"):
        plan_design([], CASES, TREATMENTS)
    with pytest.raises(DesignError, match="repeated: C01"):
        plan_design(READERS, CASES + ["C01"], TREATMENTS)
