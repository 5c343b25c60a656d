"""Load and crash test (small version of bench/bench_marks_load.py), on SQLite and PostgreSQL.

11 simulated readers save 1,100 marks concurrently through a mark server on 127.0.0.1; the
server process is killed with SIGKILL once 40 % of the marks are acknowledged and started again;
clients retry unacknowledged saves with the same client key. Afterwards every acknowledged mark
must be in the database exactly once, with the id the client was given, and nothing else.
"""

from __future__ import annotations

from reader_study.harness.loadtest import run_load_test


def test_every_acknowledged_mark_survives_a_server_kill_exactly_once(db_url, tmp_path):
    result = run_load_test(db_url, tmp_path, n_readers=11, n_marks=1000, n_cases=10, kill_fraction=0.4, seed=1)
    print(result.summary())
    assert result.n_marks_acknowledged == 1100
    assert result.killed_after_marks >= 440
    assert result.n_retried_requests >= 1, "no request was in flight when the server was killed"
    assert result.exactly_once, result.summary()
    assert result.n_marks_in_db == 1100
    if result.backend == "sqlite":
        assert result.integrity == "ok"
