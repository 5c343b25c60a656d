"""Load and crash test: concurrent readers saving marks through a server that is killed mid-run.

A small HTTP server (stdlib ``ThreadingHTTPServer``, bound to 127.0.0.1 only, run as a separate
process) saves marks through :class:`~reader_study.reading.ReadingService`. Simulated reader
clients (one thread each) open their session, then for each case in their worklist open it,
save marks (each with its own client key) and finish it. Once a given share of the marks is
acknowledged, the server process is killed with SIGKILL and started again; requests that were in
flight fail, and every client retries its unacknowledged request with the **same client key**
until it is acknowledged. Afterwards the database is checked: every acknowledged mark is present
exactly once (same id), and there is no other mark.

This is a test harness, not a service: the server has no authentication and exists only for the
duration of a run. Used by ``bench/bench_marks_load.py`` and ``tests/reader_study/test_load.py``.

Run the server by hand (for debugging)::

    python -m reader_study.harness.loadtest serve --url sqlite:///x.sqlite3 --study LOAD --port-file port.txt
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

__all__ = ["LoadTestResult", "prepare_load_study", "run_load_test", "serve"]


# ------------------------------------------------------------------------------------------------
# Server (runs in its own process)
def serve(url: str, study_code: str, port_file: Path) -> None:
    """Serve mark saving for ``study_code`` on 127.0.0.1 (a free port, written to ``port_file``) until killed."""
    from ..db import open_db
    from ..errors import ReaderStudyError
    from ..reading import ReadingService

    db = open_db(url)
    services: dict[int, ReadingService] = {}
    lock = threading.Lock()

    def service(reader_id: int) -> ReadingService:
        with lock:
            svc = services.get(reader_id)
            if svc is None:
                svc = services[reader_id] = ReadingService(db, reader_id=reader_id, study_code=study_code)
            return svc

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes; do not wait for the client's delayed ACK

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
            return

        def _reply(self, status: int, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802 - http.server API
            try:
                request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
                svc = service(int(request["reader_id"]))
                if self.path == "/session":
                    svc.open_session()
                    items = svc.worklist()
                    self._reply(200, {"reads": [i.case_read_id for i in items if i.status != "finished"]})
                elif self.path == "/open":
                    svc.open_case(int(request["case_read_id"]))
                    self._reply(200, {})
                elif self.path == "/mark":
                    mark = svc.save_mark(
                        int(request["case_read_id"]), client_key=request["client_key"], point_mm=request["point_mm"], rating=request["rating"]
                    )
                    self._reply(200, {"mark_id": mark.mark_id})
                elif self.path == "/finish":
                    svc.finish_case(int(request["case_read_id"]))
                    self._reply(200, {})
                else:
                    self._reply(404, {"error": f"unknown path {self.path}"})
            except ReaderStudyError as exc:
                self._reply(409, {"error": str(exc)})
            except Exception as exc:  # noqa: BLE001 - report, do not kill the server thread
                self._reply(500, {"error": f"{type(exc).__name__}: {exc}"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    tmp = port_file.with_name(port_file.name + ".tmp")
    tmp.write_text(str(server.server_address[1]))
    os.replace(tmp, port_file)
    server.serve_forever()


class _ServerProcess:
    """Starts the server subprocess and knows its port; ``kill()`` sends SIGKILL, ``start()`` starts a new one."""

    def __init__(self, url: str, study_code: str, folder: Path) -> None:
        self.url, self.study_code, self.folder = url, study_code, folder
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.generation = 0
        self.ready = threading.Event()

    def start(self, timeout_s: float = 60.0) -> None:
        port_file = self.folder / f"port-{self.generation + 1}.txt"
        port_file.unlink(missing_ok=True)
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "reader_study.harness.loadtest",
                "serve",
                "--url",
                self.url,
                "--study",
                self.study_code,
                "--port-file",
                str(port_file),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout_s
        while not port_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"The mark server exited at start: {self.proc.stderr.read().decode(errors='replace') if self.proc.stderr else ''}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("The mark server did not start within its time limit.")
            time.sleep(0.02)
        self.port = int(port_file.read_text())
        self.generation += 1
        self.ready.set()

    def kill(self) -> None:
        self.ready.clear()
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


# ------------------------------------------------------------------------------------------------
def prepare_load_study(db, folder: Path, *, n_readers: int = 11, n_cases: int = 40, study_code: str = "LOAD", seed: int = 0) -> dict[str, int]:  # noqa: ANN001
    """Create, design, lock and open a study for the load test; returns reader name → reader id."""
    from ..coordinator import create_study, make_design, open_study
    from ..lock import lock_study
    from ..models import StudyReader
    from ..study_inputs import ReaderSpec
    from .caselists import SyntheticLesion, write_synthetic_case_list

    rng = np.random.default_rng(seed)
    lesions = [
        [SyntheticLesion((int(rng.integers(2, 14)), int(rng.integers(2, 14)), int(rng.integers(1, 11))), 3.0)] if k % 2 else []
        for k in range(n_cases)
    ]
    case_list = write_synthetic_case_list(folder / "cases", lesions, seed=seed)
    with db.transaction() as s:
        create_study(
            s,
            code=study_code,
            case_list=case_list,
            readers=[ReaderSpec(f"Load reader {j + 1:02d}", "board-certified" if j % 2 else "resident") for j in range(n_readers)],
            hash_files=False,
            actor="loadtest",
        )
        make_design(s, study_code, actor="loadtest")
        lock_study(s, study_code, actor="loadtest")
        open_study(s, study_code, actor="loadtest")
    with db.snapshot() as s:
        from sqlalchemy import select

        from ..models import Reader

        rows = s.execute(select(Reader.name, Reader.id).join(StudyReader, StudyReader.reader_id == Reader.id)).all()
    return {name: rid for name, rid in rows}


@dataclass
class LoadTestResult:
    """Outcome of :func:`run_load_test`: counts, throughput, latencies and the exactly-once check."""

    backend: str
    n_readers: int
    n_marks_acknowledged: int
    n_marks_in_db: int
    n_duplicates: int
    n_missing: int
    n_wrong_id: int
    n_retried_requests: int
    n_failed_at_kill: int
    killed_after_marks: int
    elapsed_s: float
    downtime_s: float
    latencies_ms: list[float] = field(repr=False, default_factory=list)
    outage_latencies_ms: list[float] = field(repr=False, default_factory=list)
    integrity: str = ""

    @property
    def exactly_once(self) -> bool:
        return self.n_duplicates == 0 and self.n_missing == 0 and self.n_wrong_id == 0 and self.n_marks_in_db == self.n_marks_acknowledged

    @property
    def marks_per_s(self) -> float:
        return self.n_marks_acknowledged / self.elapsed_s if self.elapsed_s > 0 else math.nan

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else math.nan

    def summary(self) -> str:
        return (
            f"{self.backend}: {self.n_readers} readers, {self.n_marks_acknowledged} marks acknowledged in {self.elapsed_s:.1f} s "
            f"({self.marks_per_s:.0f} marks/s including {self.downtime_s:.2f} s restart); save latency (acknowledged attempt) p50 {self.percentile_ms(50):.1f} ms, "
            f"p95 {self.percentile_ms(95):.1f} ms, p99 {self.percentile_ms(99):.1f} ms; server killed (SIGKILL) after {self.killed_after_marks} marks, "
            f"{self.n_failed_at_kill} requests in flight failed and {self.n_retried_requests} attempts were retried"
            + (
                f" (the {len(self.outage_latencies_ms)} saves caught by the kill were acknowledged after at most {max(self.outage_latencies_ms):.0f} ms)"
                if self.outage_latencies_ms
                else ""
            )
            + f"; in the database: {self.n_marks_in_db} marks, "
            f"{self.n_missing} missing, {self.n_duplicates} duplicated, {self.n_wrong_id} with another id -> "
            f"{'every acknowledged mark present exactly once' if self.exactly_once else 'CHECK FAILED'}"
            + (f"; integrity check: {self.integrity}" if self.integrity else "")
        )


class _Client(threading.Thread):
    """One simulated reader: open the session, then open / mark / finish every case in order."""

    def __init__(self, server: _ServerProcess, reader_id: int, marks_per_read: int, seed: int, on_ack, stop_event: threading.Event) -> None:  # noqa: ANN001
        super().__init__(daemon=True)
        self.server, self.reader_id, self.marks_per_read = server, reader_id, marks_per_read
        self.rng = np.random.default_rng(seed)
        self.on_ack, self.stop_event = on_ack, stop_event
        self.acked: dict[str, int] = {}
        self.latencies_ms: list[float] = []
        self.outage_latencies_ms: list[float] = []
        self.retries = 0
        self.failed_at_kill = 0
        self.error: BaseException | None = None
        self._conn: http.client.HTTPConnection | None = None
        self._conn_generation = -1

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None or self._conn_generation != self.server.generation:
            if self._conn is not None:
                self._conn.close()
            self.server.ready.wait(timeout=120)
            self._conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=60)
            self._conn_generation = self.server.generation
        return self._conn

    def _post(self, path: str, payload: dict, *, is_mark: bool = False) -> dict:
        body = json.dumps({"reader_id": self.reader_id, **payload})
        attempt = 0
        first_start = time.perf_counter()
        while True:
            if self.stop_event.is_set():
                raise RuntimeError("stopped")
            conn = self._connection()
            start = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                data = json.loads(response.read() or b"{}")
            except (ConnectionError, http.client.HTTPException, OSError, json.JSONDecodeError):
                # The server died (or is restarting): retry the same request, same client key.
                if attempt == 0:
                    self.failed_at_kill += 1
                attempt += 1
                self.retries += 1
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                time.sleep(0.01)
                continue
            if response.status != 200:
                raise RuntimeError(f"{path} failed with {response.status}: {data.get('error')}")
            if is_mark:
                self.latencies_ms.append((time.perf_counter() - start) * 1000.0)
                if attempt:
                    self.outage_latencies_ms.append((time.perf_counter() - first_start) * 1000.0)
            return data

    def run(self) -> None:
        try:
            reads = self._post("/session", {})["reads"]
            for read_id in reads:
                self._post("/open", {"case_read_id": read_id})
                for n in range(self.marks_per_read):
                    key = f"load-{self.reader_id}-{read_id}-{n}"
                    point = [float(self.rng.uniform(-7.5, 7.5)), float(self.rng.uniform(-7.5, 7.5)), float(self.rng.uniform(0.0, 22.0))]
                    data = self._post(
                        "/mark", {"case_read_id": read_id, "client_key": key, "point_mm": point, "rating": int(self.rng.integers(1, 6))}, is_mark=True
                    )
                    self.acked[key] = int(data["mark_id"])
                    self.on_ack()
                self._post("/finish", {"case_read_id": read_id})
        except BaseException as exc:  # noqa: BLE001 - reported by run_load_test
            self.error = exc


def run_load_test(
    url: str,
    folder: Path,
    *,
    n_readers: int = 11,
    n_marks: int = 10_000,
    n_cases: int = 40,
    kill_fraction: float = 0.4,
    seed: int = 0,
    progress: bool = False,
) -> LoadTestResult:
    """Run the load and crash test against a fresh database at ``url`` (schema created here).

    Parameters
    ----------
    url : database URL (SQLite file or PostgreSQL); the database must be empty or new.
    folder : scratch folder (synthetic exams, port files).
    n_readers : simulated readers saving concurrently.
    n_marks : at least this many marks in all (spread evenly over readers and their first session's cases).
    n_cases : study cases (each reader's first session reads every case once).
    kill_fraction : kill the server once this share of the marks is acknowledged (``None`` or 0: never).
    seed : seed of positions and ratings.
    progress : show a progress bar.
    """
    from sqlalchemy import func, select

    from ..db import init_db
    from ..models import Mark

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    db = init_db(url)
    reader_ids = sorted(prepare_load_study(db, folder, n_readers=n_readers, n_cases=n_cases, seed=seed).values())
    marks_per_read = math.ceil(n_marks / (n_readers * n_cases))
    target = marks_per_read * n_readers * n_cases
    server = _ServerProcess(url, "LOAD", folder)
    server.start()
    acked_count = [0]
    count_lock = threading.Lock()
    kill_at = int(target * kill_fraction) if kill_fraction else None
    killed = threading.Event()
    kill_info = {"after": 0, "downtime": 0.0}

    def on_ack() -> None:
        with count_lock:
            acked_count[0] += 1
            n = acked_count[0]
        if kill_at is not None and n >= kill_at and not killed.is_set():
            with count_lock:
                if killed.is_set():
                    return
                killed.set()
            kill_info["after"] = n
            t0 = time.perf_counter()
            server.kill()
            server.start()
            kill_info["downtime"] = time.perf_counter() - t0

    stop = threading.Event()
    clients = [_Client(server, rid, marks_per_read, seed * 1000 + rid, on_ack, stop) for rid in reader_ids]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=target, desc=f"marks ({db.dialect})", unit="mark")
    start = time.perf_counter()
    try:
        for c in clients:
            c.start()
        while any(c.is_alive() for c in clients):
            time.sleep(0.2)
            if bar is not None:
                bar.n = acked_count[0]
                bar.refresh()
            if any(c.error is not None for c in clients):
                stop.set()
        elapsed = time.perf_counter() - start
    finally:
        stop.set()
        server.stop()
        if bar is not None:
            bar.close()
    errors = [c.error for c in clients if c.error is not None]
    if errors:
        raise RuntimeError(f"A simulated reader failed: {errors[0]!r}")

    acked = {(c.reader_id, key): mid for c in clients for key, mid in c.acked.items()}
    with db.snapshot() as s:
        rows = s.execute(select(Mark.reader_id, Mark.client_key, Mark.id).where(Mark.client_key.like("load-%"))).all()
        n_in_db = s.scalar(select(func.count()).select_from(Mark))
        integrity = ""
        if db.dialect == "sqlite":
            integrity = str(s.connection().exec_driver_sql("PRAGMA integrity_check").scalar())
    found: dict[tuple[int, str], list[int]] = {}
    for rid, key, mid in rows:
        found.setdefault((rid, key), []).append(mid)
    duplicates = sum(1 for ids in found.values() if len(ids) > 1)
    missing = sum(1 for k in acked if k not in found)
    wrong = sum(1 for k, mid in acked.items() if k in found and found[k] != [mid])
    db.dispose()
    return LoadTestResult(
        backend=db.dialect,
        n_readers=n_readers,
        n_marks_acknowledged=len(acked),
        n_marks_in_db=int(n_in_db or 0),
        n_duplicates=duplicates,
        n_missing=missing,
        n_wrong_id=wrong,
        n_retried_requests=sum(c.retries for c in clients),
        n_failed_at_kill=sum(c.failed_at_kill for c in clients),
        killed_after_marks=kill_info["after"],
        elapsed_s=elapsed,
        downtime_s=kill_info["downtime"],
        latencies_ms=[x for c in clients for x in c.latencies_ms],
        outage_latencies_ms=[x for c in clients for x in c.outage_latencies_ms],
        integrity=integrity,
    )


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m reader_study.harness.loadtest", description="Mark server for the load test (127.0.0.1 only).")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the mark server until killed")
    p.add_argument("--url", required=True)
    p.add_argument("--study", required=True)
    p.add_argument("--port-file", required=True, type=Path)
    args = parser.parse_args(argv)
    serve(args.url, args.study, args.port_file)


if __name__ == "__main__":
    _main()
