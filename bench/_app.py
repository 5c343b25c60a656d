"""``tsct app`` on a loopback port for the browser benchmarks: started, waited for, stopped."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["start_app", "stop_app"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(env: dict[str, str], log_path: Path, *, timeout_s: float = 120.0) -> tuple[subprocess.Popen, str, IO]:
    """Start ``tsct app`` with ``env`` on a free port of 127.0.0.1, its output to ``log_path``; wait until it answers.

    Returns the process, the base URL and the open log (give both to :func:`stop_app`). Exits with
    a message naming the log when the app does not start within ``timeout_s``.
    """
    port = _free_port()
    log = log_path.open("w")
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "tsct_cli.py"), "app", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(base + "/_stcore/health", timeout=2):
                return server, base, log
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                stop_app(server, log)
                raise SystemExit(f"the app did not start; see {log_path}")
            time.sleep(0.3)


def stop_app(server: subprocess.Popen, log: IO) -> None:
    """Stop the app started by :func:`start_app` (its whole process group) and close its log."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
    log.close()


def write_results(path: Path | None, results: dict) -> None:
    """Write a bench's results as indented JSON to ``path`` (parents made), when one was given."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results written to {path}")
