"""Run a case list on Dask distributed: a local cluster, an existing scheduler, or SLURM/PBS.

The unit of work is one case: each case runs :func:`detector.pipeline.run_pair` on one worker,
exactly as the serial :func:`detector.pipeline.run_case_list` does, and writes into
``<out_dir>/<case_id>/``; so the outputs are the same whichever way the batch ran. The
workers and the client must see ``out_dir`` and the exams at the same paths (a shared
filesystem); only the case descriptions and a one-line result per case travel over the network.

* **Resume**: a case whose manifest (``outputs.json``, written last) is readable is skipped.
* **Retries**: a case that raises is retried ``retries`` times (Dask ``retries=``); a case whose
  worker dies (killed, out of memory) is re-run on another worker by the scheduler, up to
  ``distributed.scheduler.allowed-failures`` times (set to ``retries + 1`` on clusters this
  module starts).
* **Isolation**: one failed case never stops the others; failures are listed at the end (and in
  ``<out_dir>/<case_id>/error.txt`` and ``batch_report.json``).
* **Memory**: the worker memory limit is sized from the largest exam grid of the case list
  (:func:`estimate_case_memory`), so a clinical pair is not killed by a small default limit.

See docs/cluster.md for the commands and the scaling model.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from cases import Case, CaseList, read_case_list
from cases.grid import read_grid

from ._errors import DetectorInputError
from .outputs import case_outputs_status
from .pipeline import BatchResult

__all__ = [
    "BASE_WORKER_BYTES",
    "BYTES_PER_VOXEL",
    "ClusterError",
    "WORKING_COPIES",
    "estimate_case_memory",
    "estimate_worker_memory",
    "open_client",
    "parse_memory",
    "run_case_list_on_cluster",
]

#: bytes of one voxel of a working volume (float32)
BYTES_PER_VOXEL = 4
#: how many whole-exam float32 volumes one case may hold at its peak (exams, warped prior,
#: deformation field (3 components), subtractions, bone ROI, z-map and sigma, network tiles).
#: A deliberately generous figure: a worker that is killed costs a whole case.
WORKING_COPIES = 24
#: the worker process itself (Python, NumPy, SimpleITK, torch and the network weights)
BASE_WORKER_BYTES = 3 * 1024**3 // 2
#: never size a worker below this
MIN_WORKER_BYTES = 2 * 1024**3

RUNNING_MARKER = "running.json"


class ClusterError(DetectorInputError):
    """The cluster cannot be reached or started (names the option and what to do)."""


def parse_memory(text: str) -> int:
    """Bytes from a size such as ``"8GB"``, ``"6 GiB"``, ``"512MB"`` or a plain byte count."""
    t = str(text).strip().replace(" ", "")
    units = {
        "": 1,
        "b": 1,
        "kb": 1000,
        "mb": 1000**2,
        "gb": 1000**3,
        "tb": 1000**4,
        "kib": 1024,
        "mib": 1024**2,
        "gib": 1024**3,
        "tib": 1024**4,
        "k": 1024,
        "m": 1024**2,
        "g": 1024**3,
    }
    num = t.rstrip("BbKkMmGgTtIi")
    unit = t[len(num) :].lower()
    try:
        value = float(num)
    except ValueError:
        raise ClusterError(f"--worker-memory {text!r}: not a size; write e.g. 8GB, 6GiB, 512MB or 'auto'.") from None
    if unit not in units or value <= 0:
        raise ClusterError(f"--worker-memory {text!r}: not a size; write e.g. 8GB, 6GiB, 512MB or 'auto'.")
    return int(value * units[unit])


def estimate_case_memory(case: Case) -> int | None:
    """Bytes a worker needs for one case, from the exam headers (no pixel data is read).

    ``BASE_WORKER_BYTES + voxels × BYTES_PER_VOXEL × WORKING_COPIES`` with ``voxels`` the larger of
    the two exam grids. None when neither header can be read (the case will fail with a clear
    message on its worker).
    """
    voxels = 0
    for path in (case.prior, case.current):
        try:
            grid = read_grid(path)
        except Exception:  # noqa: BLE001 - an unreadable exam is that case's error, reported by its worker
            continue
        sx, sy, sz = grid.size
        voxels = max(voxels, sx * sy * sz)
    if voxels == 0:
        return None
    return BASE_WORKER_BYTES + voxels * BYTES_PER_VOXEL * WORKING_COPIES


def estimate_worker_memory(cases: list[Case] | CaseList) -> int:
    """The worker memory limit for a list of cases: the largest per-case estimate, at least 2 GiB."""
    estimates = [e for e in (estimate_case_memory(c) for c in cases) if e is not None]
    return max([MIN_WORKER_BYTES, *estimates])


def _fmt_bytes(n: int) -> str:
    return f"{n / 1024**3:.1f} GiB"


@contextlib.contextmanager
def open_client(
    cluster: str = "local", *, n_workers: int = 2, memory_limit: int = MIN_WORKER_BYTES, threads_per_worker: int = 1, retries: int = 2
) -> Iterator[Any]:
    """A ``distributed.Client`` on the requested cluster, closed (and a started cluster shut down) on exit.

    Parameters
    ----------
    cluster : ``"local"`` (a LocalCluster of ``n_workers`` processes), a scheduler address
        (``tcp://host:port`` or ``tls://…``), or ``"slurm"`` / ``"pbs"`` (``dask-jobqueue``,
        ``n_workers`` jobs of one worker each; queue, account and walltime come from the
        ``jobqueue`` section of the Dask configuration).
    memory_limit : bytes per worker (the local cluster's limit, the batch jobs' memory request).
    threads_per_worker : cases run at once per worker (1: a case is already multi-threaded).
    retries : worker deaths allowed per case on a cluster started here is ``retries + 1``.
    """
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError:
        raise ClusterError("--cluster needs Dask distributed: pip install 'dask[distributed]'.") from None
    if n_workers < 1:
        raise ClusterError(f"--workers must be at least 1, got {n_workers}.")
    started = None
    with dask.config.set({"distributed.scheduler.allowed-failures": max(0, retries) + 1}):
        if cluster == "local":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. "dashboard needs bokeh", "port in use, using a random port"
                try:
                    started = LocalCluster(
                        n_workers=n_workers,
                        threads_per_worker=threads_per_worker,
                        processes=True,
                        memory_limit=memory_limit,
                        dashboard_address=":0",
                        silence_logs=logging.CRITICAL,
                    )  # failures are reported per case, with error.txt
                except (RuntimeError, OSError, TimeoutError) as exc:
                    raise ClusterError(
                        f"Could not start a local Dask cluster of {n_workers} worker process(es) ({exc}). "
                        "Try again, give fewer --workers, or run without --cluster (serially)."
                    ) from None
        elif cluster in ("slurm", "pbs"):
            try:
                import dask_jobqueue
            except ImportError:
                raise ClusterError(
                    f"--cluster {cluster} needs dask-jobqueue: pip install dask-jobqueue (or start a scheduler yourself and give its tcp:// address)."
                ) from None
            cls = dask_jobqueue.SLURMCluster if cluster == "slurm" else dask_jobqueue.PBSCluster
            gib = max(1, -(-memory_limit // 1024**3))
            try:
                started = cls(cores=threads_per_worker, processes=1, memory=f"{gib}GiB")
            except Exception as exc:  # noqa: BLE001 - jobqueue raises plain ValueError for missing config
                raise ClusterError(
                    f"--cluster {cluster}: could not set up the batch jobs ({exc}). Set queue/account/walltime in the 'jobqueue.{cluster}' section of ~/.config/dask/jobqueue.yaml."
                ) from None
            started.scale(jobs=n_workers)
        elif cluster.startswith(("tcp://", "tls://", "ucx://", "inproc://")):
            pass
        else:
            raise ClusterError(f"--cluster {cluster!r}: use 'local', a scheduler address such as tcp://10.0.0.5:8786, 'slurm' or 'pbs'.")
        try:
            client = Client(started if started is not None else cluster, timeout="60s")
        except (OSError, TimeoutError) as exc:
            if started is not None:
                started.close()
            raise ClusterError(
                f"--cluster {cluster}: cannot reach the scheduler ({exc}). Check the address and that 'dask scheduler' is running there."
            ) from None
    try:
        yield client
    finally:
        client.close()
        if started is not None:
            started.close()


def _run_case_task(case: Case, out_dir: str, pair_options: dict[str, Any], itk_threads: int | None = None) -> tuple[str, str, str]:
    """Run one case on a worker: ``run_pair`` into ``<out_dir>/<case_id>/``. Returns (case_id, QC status, worker host:pid).

    ``itk_threads`` pins SimpleITK's thread count to the serial run's, so a worker runs the case as
    the serial run does. The registration itself is bit-reproducible for a seed whatever the thread
    count (its rigid metric runs on one work unit and the B-spline cost is summed over a fixed split;
    tests/detector/test_registration.py); equality with the serial run is tested with one thread.

    Writes ``running.json`` (host, pid, start time) while the case runs and ``error.txt`` when it raises
    (the exception is re-raised so that Dask retries it).
    """
    import SimpleITK as sitk

    from .pipeline import run_pair

    if itk_threads:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(itk_threads))
    case_dir = Path(out_dir) / case.case_id
    case_dir.mkdir(parents=True, exist_ok=True)
    where = f"{socket.gethostname()}:{os.getpid()}"
    marker = case_dir / RUNNING_MARKER
    tmp = marker.with_name(marker.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}) + "\n", encoding="utf-8")
    os.replace(tmp, marker)
    try:
        result = run_pair(case.prior, case.current, case_dir, case_id=case.case_id, **pair_options)
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
        (case_dir / "error.txt").write_text(f"{message}\n(worker {where})\n\n{traceback.format_exc()}", encoding="utf-8")
        raise
    finally:
        with contextlib.suppress(OSError):
            marker.unlink()
    with contextlib.suppress(OSError):
        (case_dir / "error.txt").unlink()
    return case.case_id, result.qc.status, where


@dataclass
class _Todo:
    case: Case
    memory: int | None


def _failure_message(exc: BaseException) -> str:
    name = type(exc).__name__
    if name == "KilledWorker":
        return "KilledWorker: every worker that ran this case died (out of memory or killed); see the worker logs, raise --worker-memory or check the exam."
    return f"{name}: {exc}"


def run_case_list_on_cluster(
    case_list: CaseList | str | Path,
    out_dir: str | Path,
    *,
    cluster: str = "local",
    n_workers: int = 2,
    retries: int = 2,
    worker_memory: int | str | None = "auto",
    itk_threads: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
    console: Any = None,
    on_case: Callable[[str, str], None] | None = None,
    **pair_options: Any,
) -> BatchResult:
    """Run :func:`run_pair` on every case of a case list on Dask workers, into ``<out_dir>/<case_id>/``.

    Parameters
    ----------
    case_list : a :class:`cases.CaseList` or the path of a case-list CSV (exam paths must be
        readable from the workers at the same paths: shared filesystem).
    out_dir : batch output folder, also on the shared filesystem.
    cluster : ``"local"``, a scheduler address ``tcp://HOST:PORT``, ``"slurm"`` or ``"pbs"``.
    n_workers : workers of a cluster started here (ignored for an existing scheduler).
    retries : times a case that raises is retried (and worker deaths allowed per case, plus one).
    worker_memory : ``"auto"``/None (from the exam grids, :func:`estimate_worker_memory`), bytes,
        or a size such as ``"8GB"``.
    itk_threads : SimpleITK threads per case on the workers; default: this process's count, so that
        the outputs are those of the serial run here (registration sums depend on the thread split).
    overwrite : re-run cases that are already finished (``outputs.json`` present).
    progress : show a rich progress bar; the dashboard address is printed on ``console``.
    on_case : called as ``on_case(case_id, outcome)`` (``"completed"``, ``"skipped"``, ``"error"``).
    **pair_options : passed to :func:`run_pair` on the workers (config, zscore, zscore_settings, ...).

    Returns
    -------
    BatchResult
        The same record as the serial run, also written to ``<out_dir>/batch_report.json``.
    """
    if not isinstance(case_list, CaseList):
        case_list = read_case_list(case_list)
    if retries < 0:
        raise ClusterError(f"--retries must be 0 or more, got {retries}.")
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    completed: list[str] = []
    skipped: list[str] = []
    failed: dict[str, str] = {}
    qc_status: dict[str, str] = {}
    todo: list[Case] = []
    for case in case_list:
        status = None if overwrite else case_outputs_status(out / case.case_id)
        if status is not None:
            skipped.append(case.case_id)
            qc_status[case.case_id] = status
            if on_case is not None:
                on_case(case.case_id, "skipped")
        else:
            todo.append(case)

    if worker_memory in (None, "auto"):
        memory = estimate_worker_memory(todo)
    elif isinstance(worker_memory, str):
        memory = parse_memory(worker_memory)
    else:
        memory = int(worker_memory)

    def say(text: str) -> None:
        if console is not None:
            console.print(text, highlight=False)

    if itk_threads is None:
        import SimpleITK as sitk

        itk_threads = int(sitk.ProcessObject.GetGlobalDefaultNumberOfThreads())
    if todo:
        from distributed import as_completed

        with open_client(cluster, n_workers=n_workers, memory_limit=memory, retries=retries) as client:
            say(f"Dask dashboard: {client.dashboard_link}")
            workers = client.scheduler_info().get("workers", {})
            limits = [w.get("memory_limit") or 0 for w in workers.values()]
            existing = cluster.startswith(("tcp://", "tls://", "ucx://", "inproc://"))
            mem_text = (
                f"needs {_fmt_bytes(memory)} per worker (the running workers keep their own limit)" if existing else f"limit {_fmt_bytes(memory)}"
            )
            say(f"{len(workers)} worker(s) up; worker memory {mem_text}; {len(todo)} case(s) to run, {len(skipped)} already finished.")
            small = [lim for lim in limits if 0 < lim < memory]
            if small:
                say(
                    f"[yellow]{len(small)} worker(s) have a memory limit below the {_fmt_bytes(memory)} these exams need (smallest {_fmt_bytes(min(small))}); start them with 'dask worker --memory-limit {(memory + 1024**3 - 1) // 1024**3}GiB'.[/]"
                )
            futures = {}
            for case in todo:
                fut = client.submit(
                    _run_case_task,
                    case,
                    str(out),
                    pair_options,
                    itk_threads,
                    key=f"tsct-case-{case.case_id}-{time.time_ns()}",
                    retries=retries,
                    pure=False,
                )
                futures[fut] = case.case_id
            bar = task = None
            if progress:
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

                bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console)
                bar.start()
                task = bar.add_task("cases", total=len(todo))
            try:
                for fut in as_completed(list(futures)):
                    cid = futures[fut]
                    if fut.status == "finished":
                        _, status, _where = fut.result()
                        completed.append(cid)
                        qc_status[cid] = status
                        outcome = "completed"
                    else:
                        exc = fut.exception()
                        failed[cid] = _failure_message(exc)
                        err = out / cid / "error.txt"
                        if not err.exists():
                            err.parent.mkdir(parents=True, exist_ok=True)
                            err.write_text(failed[cid] + "\n", encoding="utf-8")
                        outcome = "error"
                    if on_case is not None:
                        on_case(cid, outcome)
                    if bar is not None:
                        bar.update(task, advance=1, description=f"cases ({len(failed)} failed)" if failed else "cases")  # type: ignore[arg-type]
            finally:
                if bar is not None:
                    bar.stop()
    order = {c.case_id: i for i, c in enumerate(case_list)}
    batch = BatchResult(
        out_dir=out,
        completed=tuple(sorted(completed, key=order.__getitem__)),
        skipped=tuple(skipped),
        failed={k: failed[k] for k in sorted(failed, key=order.__getitem__)},
        qc_status={k: qc_status[k] for k in sorted(qc_status, key=order.__getitem__)},
        elapsed_s=time.perf_counter() - start,
    )
    report = {
        "case_list": str(case_list.source) if case_list.source else None,
        "cluster": cluster,
        "worker_memory_bytes": memory,
        "retries": retries,
        "completed": list(batch.completed),
        "skipped": list(batch.skipped),
        "failed": batch.failed,
        "qc_status": batch.qc_status,
        "elapsed_s": round(batch.elapsed_s, 3),
    }
    tmp = out / "batch_report.json.tmp"
    tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out / "batch_report.json")
    return batch
