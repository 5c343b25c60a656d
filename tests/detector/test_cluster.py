"""``detector.cluster``: a batch on a real Dask scheduler and two workers (separate processes on
loopback) gives the serial run's outputs, survives a worker killed mid-case, lists failed cases
and resumes by skipping finished ones."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("distributed")

from cases import Case, CaseList, synthesize_pair, write_case_list, write_volume  # noqa: E402
from cases.io import read_volume  # noqa: E402
from detector import RegistrationConfig, run_case_list  # noqa: E402
from detector.cluster import (  # noqa: E402
    ClusterError,
    estimate_case_memory,
    estimate_worker_memory,
    parse_memory,
    run_case_list_on_cluster,
)
from detector.outputs import read_case_outputs  # noqa: E402

from ._cluster_hook import FailOnce, HoldAtStage  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
OPTIONS = {"config": RegistrationConfig(deformable="none"), "zscore": False, "save_transform": False}


def _wait_for(predicate, what: str, procs=(), guard_s: float = 900.0):  # type: ignore[no-untyped-def]
    """Poll until ``predicate()`` is truthy; fail early if a helper process died (the guard only stops a hang)."""
    deadline = time.monotonic() + guard_s
    while True:
        value = predicate()
        if value:
            return value
        for p in procs:
            if p.poll() is not None:
                pytest.fail(f"{what}: helper process {p.args[:4]} exited with {p.returncode}")
        if time.monotonic() > deadline:
            pytest.fail(f"never reached: {what}")
        time.sleep(0.1)


def _crop(path: Path, out: Path) -> Path:
    image = sitk.ReadImage(str(path))
    sx, sy, sz = image.GetSize()
    tiny = sitk.RegionOfInterest(image, [64, 64, 48], [(sx - 64) // 2, (sy - 64) // 2, (sz - 48) // 2])
    sitk.WriteImage(tiny, str(out), True)
    return out


@pytest.fixture(scope="module")
def case_list(tmp_path_factory) -> Path:
    """Three tiny cases (64 x 64 x 48 voxels) and one whose current exam is not an image."""
    folder = tmp_path_factory.mktemp("cluster-cases")
    pair = synthesize_pair(
        "cl-1",
        seed=5,
        size="small",
        abnormal=True,
        n_lesions=1,
        lesion_types=["lytic"],
        lesion_locations=["vertebral_body"],
        vary_acquisition=False,
        benign_finding=False,
    )
    write_volume(pair.prior, folder / "prior_full.nii.gz")
    write_volume(pair.current, folder / "current_full.nii.gz")
    prior = _crop(folder / "prior_full.nii.gz", folder / "prior.nii.gz")
    current = _crop(folder / "current_full.nii.gz", folder / "current.nii.gz")
    (folder / "broken.nii.gz").write_bytes(b"not an image")
    cases = CaseList(
        (
            Case("A", prior, current, abnormal=False),
            Case("B", current, prior, abnormal=False),
            Case("C", prior, prior, abnormal=False),
            Case("BAD", prior, folder / "broken.nii.gz", abnormal=False),
        )
    )
    return write_case_list(cases, folder / "cases.csv")


@pytest.fixture(scope="module")
def serial_out(case_list, tmp_path_factory) -> Path:
    # one SimpleITK thread: the multi-threaded registration itself varies by up to 1 HU between
    # runs on a loaded machine, so bit-for-bit comparison needs the single-threaded pipeline
    out = tmp_path_factory.mktemp("serial")
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        result = run_case_list(case_list, out, **OPTIONS)
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)
    assert result.completed == ("A", "B", "C") and list(result.failed) == ["BAD"]
    return out


@pytest.fixture()
def loopback_cluster(tmp_path):  # type: ignore[no-untyped-def]
    """``dask scheduler`` and two ``dask worker`` processes (no nanny) on 127.0.0.1, free ports."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    sched_file = tmp_path / "scheduler.json"
    logs = tmp_path / "logs"
    logs.mkdir()
    procs: list[subprocess.Popen] = []

    def start(args: list[str], name: str) -> subprocess.Popen:
        log = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        p = subprocess.Popen([sys.executable, "-m", *args], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        procs.append(p)
        return p

    start(
        ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(sched_file)], "scheduler"
    )
    _wait_for(lambda: sched_file.is_file() and sched_file.stat().st_size > 0 and "address" in sched_file.read_text(), "scheduler file written", procs)
    address = json.loads(sched_file.read_text())["address"]
    workers = [
        start(
            [
                "distributed.cli.dask_worker",
                address,
                "--host",
                "127.0.0.1",
                "--nthreads",
                "1",
                "--no-nanny",
                "--no-dashboard",
                "--memory-limit",
                "0",
                "--name",
                f"w{i}",
            ],
            f"worker{i}",
        )
        for i in range(2)
    ]
    from distributed import Client

    with Client(address, timeout="60s") as client:
        client.wait_for_workers(2)
    try:
        yield {"address": address, "workers": workers, "procs": procs, "logs": logs}
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _same_outputs(a: Path, b: Path) -> None:
    oa, ob = read_case_outputs(a), read_case_outputs(b)
    assert oa.qc_status == ob.qc_status
    assert set(oa.files) == set(ob.files) and oa.files
    for role, entry in oa.files.items():
        pa, pb = oa.path(role), ob.path(role)
        if entry.path.endswith((".nii.gz", ".nii")):
            va, vb = read_volume(pa), read_volume(pb)
            assert np.array_equal(va.array, vb.array), (
                f"{a.name}/{entry.path} differs from the serial run (max |diff| {np.nanmax(np.abs(va.array - vb.array))})"
            )
        elif pa.is_file() and role != "qc":
            assert pa.read_bytes() == pb.read_bytes(), (
                f"{a.name}/{entry.path} differs from the serial run (max |diff| {np.nanmax(np.abs(va.array - vb.array))})"
            )


def test_worker_killed_mid_case_batch_completes_like_serial(case_list, serial_out, loopback_cluster, tmp_path):
    hook = tmp_path / "hook"
    hook.mkdir()
    out = tmp_path / "out"
    workers = loopback_cluster["workers"]
    outcome: dict = {}

    import threading

    def batch() -> None:
        try:
            outcome["result"] = run_case_list_on_cluster(
                case_list, out, cluster=loopback_cluster["address"], retries=1, itk_threads=1, on_stage=HoldAtStage(hook), **OPTIONS
            )
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=batch)
    thread.start()
    held = _wait_for(lambda: sorted(hook.glob("held-*")), "a case held mid-run on a worker", loopback_cluster["procs"])
    pid = int(held[0].name.split("-")[1])
    victim = next(p for p in workers if p.pid == pid)
    survivor = next(p for p in workers if p.pid != pid)
    os.kill(pid, signal.SIGKILL)
    victim.wait()
    (hook / "release").write_text("go")
    thread.join()
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert result.completed == ("A", "B", "C") and result.skipped == ()
    assert list(result.failed) == ["BAD"] and "broken.nii.gz" in result.failed["BAD"]
    assert (out / "BAD" / "error.txt").is_file()
    assert survivor.poll() is None
    # every case finished on the survivor after the kill
    lines = (hook / "stages.log").read_text().split()
    assert str(survivor.pid) in lines
    for cid in ("A", "B", "C"):
        assert not (out / cid / "running.json").exists()
        _same_outputs(out / cid, serial_out / cid)
    report = json.loads((out / "batch_report.json").read_text())
    assert report["completed"] == ["A", "B", "C"] and list(report["failed"]) == ["BAD"]

    # resume: finished cases are skipped (from their manifests), only the failed one runs again
    again = run_case_list_on_cluster(case_list, out, cluster=loopback_cluster["address"], retries=0, **OPTIONS)
    assert again.skipped == ("A", "B", "C") and again.completed == () and list(again.failed) == ["BAD"]
    assert again.qc_status == {k: result.qc_status[k] for k in again.qc_status}


def test_memory_estimate_sized_from_the_exam_grid(case_list):
    from cases import read_case_list

    cases = list(read_case_list(case_list))
    tiny = estimate_case_memory(cases[0])
    assert tiny is not None and tiny > 64 * 64 * 48 * 4
    assert estimate_case_memory(Case("X", cases[0].prior.parent / "broken.nii.gz", cases[0].prior.parent / "broken.nii.gz", abnormal=False)) is None
    assert estimate_worker_memory(cases) == max(2 * 1024**3, tiny)
    # a clinical pair (512 x 512 x 300) must get more than 4 GB
    clinical = cases[0].prior.parent / "clinical.nii.gz"
    header = sitk.Image(512, 512, 300, sitk.sitkInt16)
    sitk.WriteImage(header, str(clinical), True)
    need = estimate_case_memory(Case("CL", clinical, clinical, abnormal=False))
    assert need is not None and need > 4 * 1024**3
    assert parse_memory("8GB") == 8 * 1000**3 and parse_memory("6GiB") == 6 * 1024**3
    with pytest.raises(ClusterError, match="--worker-memory"):
        parse_memory("lots")


def test_unknown_cluster_is_one_clear_error(case_list, tmp_path):
    with pytest.raises(ClusterError, match="--cluster 'moon'"):
        run_case_list_on_cluster(case_list, tmp_path / "o", cluster="moon", **OPTIONS)


def test_cli_cluster_options_fail_with_one_line(case_list, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from detector.cli import app

    runner = CliRunner()
    common = ["batch", str(case_list), "--out", str(tmp_path / "o"), "--no-zscore", "--deformable", "none"]
    result = runner.invoke(app, [*common, "--cluster", "moon"])
    assert result.exit_code == 2 and "--cluster 'moon'" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, [*common, "--cluster", "local", "--worker-memory", "lots"])
    assert result.exit_code == 2 and "--worker-memory 'lots'" in result.output
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # as if not installed
    result = runner.invoke(app, [*common, "--cluster", "slurm"])
    assert result.exit_code == 2 and "pip install dask-jobqueue" in result.output


def test_cli_local_cluster_runs_the_batch_and_lists_failures(case_list, serial_out, tmp_path):
    # As a user runs it: a fresh `tsct` process (a LocalCluster's worker processes are spawned from
    # it; inside the long test process, state left by other tests' event loops can stop them).
    out = tmp_path / "o"
    root = Path(__file__).resolve().parents[2]
    args = [
        "detect",
        "batch",
        str(case_list),
        "--out",
        str(out),
        "--no-zscore",
        "--deformable",
        "none",
        "--cluster",
        "local",
        "--workers",
        "2",
        "--retries",
        "0",
    ]
    proc = subprocess.run(
        [sys.executable, str(root / "tsct_cli.py"), *args], cwd=root, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "Traceback" not in output
    assert "Dask dashboard: http" in output and "ERROR BAD" in output
    report = json.loads((out / "batch_report.json").read_text())
    assert report["completed"] == ["A", "B", "C"] and report["cluster"] == "local"


def test_a_case_that_raises_is_retried_per_case(case_list, serial_out, loopback_cluster, tmp_path):
    """--retries: the first case to reach the warp stage raises once; with one retry it completes on
    the second attempt with the serial run's outputs, without retries it alone is reported failed."""
    from cases import read_case_list

    two = write_case_list(CaseList(tuple(c for c in read_case_list(case_list) if c.case_id in ("A", "B"))), tmp_path / "ab.csv")
    for retries in (1, 0):
        hook = tmp_path / f"hook{retries}"
        hook.mkdir()
        out = tmp_path / f"out{retries}"
        result = run_case_list_on_cluster(
            two, out, cluster=loopback_cluster["address"], retries=retries, itk_threads=1, on_stage=FailOnce(hook), **OPTIONS
        )
        assert (hook / "failed-once").is_file()
        if retries:
            assert result.completed == ("A", "B") and not result.failed
            for cid in ("A", "B"):
                assert not (out / cid / "error.txt").exists()  # the failed attempt's message is removed by the successful one
                _same_outputs(out / cid, serial_out / cid)
        else:
            (failed,) = result.failed
            assert "transient failure injected" in result.failed[failed] and result.completed == tuple(c for c in ("A", "B") if c != failed)
            assert (out / failed / "error.txt").is_file()
