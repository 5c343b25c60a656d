"""Test and benchmark harnesses for reader studies: not part of the study data layer.

* :mod:`.postgres`: :class:`TemporaryPostgres`, a throw-away PostgreSQL server on 127.0.0.1;
* :mod:`.caselists`: :func:`write_synthetic_case_list`, tiny NIfTI exams and their case list;
* :mod:`.loadtest`: concurrent readers saving marks through a mark server that is killed
  mid-run (``python -m reader_study.harness.loadtest``; imported by name, not from here).

Used by ``tests/`` and ``bench/`` only; nothing in the data layer, the simulated readers or
another package imports it (``tests/test_architecture.py``).
"""

from .caselists import BONE_BLOCK_HU, SyntheticLesion, write_synthetic_case_list
from .postgres import PostgresUnavailable, TemporaryPostgres

__all__ = ["BONE_BLOCK_HU", "PostgresUnavailable", "SyntheticLesion", "TemporaryPostgres", "write_synthetic_case_list"]
