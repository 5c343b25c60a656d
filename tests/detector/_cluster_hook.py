"""A run_pair ``on_stage`` hook for the cluster tests, importable on the Dask workers.

It logs ``<pid> <stage>`` lines and, until a ``release`` file exists, holds the first case that
reaches ``stage`` (writing ``held-<pid>``), so that the test can kill that worker mid-case
knowing which process to kill: a state to wait for, not a time.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class HoldAtStage:
    folder: Path
    stage: str = "warp"

    def __call__(self, name: str) -> None:
        folder = Path(self.folder)
        with open(folder / "stages.log", "a", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()} {name}\n")
        if name != self.stage or (folder / "release").exists():
            return
        (folder / f"held-{os.getpid()}").write_text(name, encoding="utf-8")
        while not (folder / "release").exists():
            time.sleep(0.05)


@dataclass(frozen=True)
class FailOnce:
    """Raise in the first case that reaches ``stage`` (a transient error, once per ``folder``)."""

    folder: Path
    stage: str = "warp"

    def __call__(self, name: str) -> None:
        marker = Path(self.folder) / "failed-once"
        if name == self.stage and not marker.exists():
            marker.write_text(str(os.getpid()), encoding="utf-8")
            raise RuntimeError("transient failure injected by the test hook")
