"""Simulated readers: a whole study read without radiologists, for rehearsals and method studies.

Not part of the study data layer: it *uses* the data layer (marks go through
:class:`reader_study.ReadingService`, exactly as the reading app's do), and nothing in the data
layer imports it (``tests/test_architecture.py``). Two roles:

* :mod:`.evidence`: image analysis, what a reader sees in a case (the CT's Hessian blob search,
  the detector's z-map overlay) as candidate regions with their evidence;
* :mod:`.readers`: how readers of each group decide, and :func:`simulate_readers`, which reads
  every session of an open study (``tsct study simulate-readers``).

Documentation: ``docs/simulated-readers.md``.
"""

from .evidence import Candidate, CaseEvidence, SuspicionScale, case_evidence, ct_blob_map
from .readers import (
    GROUP_DEFAULTS,
    ReaderProfile,
    SimulatedMark,
    SimulationSummary,
    check_simulation_inputs,
    default_reader_profiles,
    read_case,
    simulate_readers,
)

__all__ = [
    # what a reader sees
    "Candidate",
    "CaseEvidence",
    "SuspicionScale",
    "case_evidence",
    "ct_blob_map",
    # how readers decide, and a whole study read
    "GROUP_DEFAULTS",
    "ReaderProfile",
    "SimulatedMark",
    "SimulationSummary",
    "check_simulation_inputs",
    "default_reader_profiles",
    "read_case",
    "simulate_readers",
]
