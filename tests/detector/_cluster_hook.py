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
