"""Helpers for tests and benchmarks: a throw-away PostgreSQL server and a small synthetic study.

:class:`TemporaryPostgres` starts a private PostgreSQL cluster in a temporary folder, listening on
127.0.0.1 only (and a Unix socket in that folder), on a free port, with trust authentication for
local connections, and removes it again. It finds ``initdb``/``pg_ctl`` under
``/usr/lib/postgresql/*/bin`` (Debian's ``postgresql`` package) or on ``PATH``. PostgreSQL refuses
to run as root, so when run as root the cluster runs as the ``postgres`` system user (created by
the Debian package) through ``runuser``.

:func:`write_synthetic_case_list` writes tiny NIfTI exams and a case list so studies can be made
without real data.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["TemporaryPostgres", "PostgresUnavailable", "find_postgres_bin", "write_synthetic_case_list", "SyntheticLesion"]


class PostgresUnavailable(RuntimeError):
    """A throw-away PostgreSQL server cannot be started here; the message says why and what to install."""


def find_postgres_bin() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl`` (newest Debian version first), or ``None``."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0, reverse=True)
    for folder in candidates:
        if Path(folder, "initdb").exists() and Path(folder, "pg_ctl").exists():
            return Path(folder)
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(os.path.realpath(initdb)).parent
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TemporaryPostgres:
    """A private PostgreSQL server for tests: ``start()``, ``create_database()``, ``stop()``.

    Use as a context manager. ``url(dbname)`` gives a SQLAlchemy URL (psycopg 3 driver).
    With ``durable=False`` (tests) the server skips flushing to disk (``fsync=off``); benchmarks
    pass ``durable=True`` so commits are as durable as in production.
    """

    def __init__(self, *, user: str = "tsct", durable: bool = False) -> None:
        self.user = user
        self.durable = durable
        self.bin_dir = find_postgres_bin()
        self.port: int | None = None
        self.root: Path | None = None
        self._run_as: list[str] = []

    # -------------------------------------------------------------------------------------
    def _cmd(self, *args: str) -> list[str]:
        return [*self._run_as, *args]

    def start(self) -> "TemporaryPostgres":
        if self.bin_dir is None:
            raise PostgresUnavailable(
                "PostgreSQL server programs (initdb, pg_ctl) were not found under /usr/lib/postgresql/*/bin or on PATH. "
                "Install the Debian package 'postgresql' (scripts/install.sh does so when run as root), "
                "or set TSCT_TEST_POSTGRES_URL to a server you may create databases on."
            )
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            try:
                import pwd

                pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable("Running as root, but there is no 'postgres' system user to run the server as (PostgreSQL refuses to run as root); install the Debian package 'postgresql'.") from None
            if runuser is None:
                raise PostgresUnavailable("Running as root, but 'runuser' is missing, so the server cannot be started as the 'postgres' user.")
            self._run_as = [runuser, "-u", "postgres", "--"]
        self.root = Path(tempfile.mkdtemp(prefix="tsct-pg-"))
        os.chmod(self.root, 0o700)
        if self._run_as:
            shutil.chown(self.root, "postgres", "postgres")
        data = self.root / "data"
        try:
            subprocess.run(
                self._cmd(str(self.bin_dir / "initdb"), "-D", str(data), "-U", self.user, "-A", "trust", "-E", "UTF8", "--no-sync", "--locale=C"),
                check=True, capture_output=True, text=True,
            )
        except subprocess.CalledProcessError as exc:
            self._cleanup()
            raise PostgresUnavailable(f"initdb failed: {exc.stderr.strip() or exc.stdout.strip()}") from None
        for attempt in range(5):
            self.port = _free_port()
            speed = "" if self.durable else " -c fsync=off -c full_page_writes=off -c synchronous_commit=off"
            options = f"-h 127.0.0.1 -p {self.port} -k {self.root} -c max_connections=200{speed}"
            result = subprocess.run(
                self._cmd(str(self.bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(self.root / "server.log"), "-w", "-t", "60", "start"),
                capture_output=True, text=True,
            )
            if result.returncode == 0:
                return self
            time.sleep(0.2 * (attempt + 1))
        log = (self.root / "server.log").read_text(errors="replace")[-2000:] if (self.root / "server.log").exists() else ""
        self._cleanup()
        raise PostgresUnavailable(f"pg_ctl start failed: {result.stderr.strip()}\n{log}")

    def url(self, dbname: str = "postgres") -> str:
        if self.port is None:
            raise RuntimeError("The server is not running; call start() first.")
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str | None = None, *, template: str | None = None) -> str:
        """Create a database (optionally a copy of ``template``) and return its URL."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres", autocommit=True) as conn:
            suffix = f' TEMPLATE "{template}"' if template else ""
            conn.execute(f'CREATE DATABASE "{name}"{suffix}')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.root is not None and self.bin_dir is not None and (self.root / "data").exists():
            subprocess.run(self._cmd(str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop"), capture_output=True)
        self._cleanup()

    def _cleanup(self) -> None:
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> "TemporaryPostgres":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SyntheticLesion:
    """A lesion to place in a synthetic case: centre in voxel index ``(x, y, z)`` and radius in mm."""

    index_xyz: tuple[int, int, int]
    radius_mm: float
    lesion_type: str = "lytic"
    location: str = "vertebral_body"


#: HU of the bone block :func:`write_synthetic_case_list` puts under each lesion centre.
BONE_BLOCK_HU = 400.0


def write_synthetic_case_list(
    folder: str | Path,
    lesions_per_case: Sequence[Sequence[SyntheticLesion]],
    *,
    size_xyz: tuple[int, int, int] = (16, 16, 12),
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 2.0),
    origin_mm: tuple[float, float, float] = (-8.0, -8.0, 0.0),
    prefix: str = "C",
    seed: int = 0,
    label_maps: bool = False,
    name: str = "cases.csv",
) -> Path:
    """Write small prior/current NIfTI pairs and a case list; an empty lesion list makes a normal case.

    The exams are noise around -500 HU with a 3x3x3-voxel block of bone (:data:`BONE_BLOCK_HU`)
    around each lesion centre, in both exams, so the truth passes the case list's content checks
    (:func:`cases.read_case_list` with ``check_images``: a lesion centre must lie in bone).

    Lesion centres are given as voxel indices and written in LPS mm of the current exam. With
    ``label_maps`` each abnormal case also gets a label map (lesion ``n`` = value ``n``: the
    voxels within ``radius_mm`` of the centre) and lesions are described by it instead of a radius.
    Returns the case-list path.
    """
    from cases import Case, CaseList, LabelVolume, Lesion, Volume, write_case_list, write_volume

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape_zyx = (size_xyz[2], size_xyz[1], size_xyz[0])
    cases = []
    for k, lesion_specs in enumerate(lesions_per_case):
        code = f"{prefix}{k + 1:03d}"
        array = rng.normal(0.0, 20.0, shape_zyx).astype(np.float32) - 500.0
        array[0, 0, 0] = -1000.0
        array[-1, -1, -1] = 1200.0
        for spec in lesion_specs:  # truth lies in bone: a small block of bone under each lesion centre
            ix, iy, iz = spec.index_xyz
            array[max(iz - 1, 0):iz + 2, max(iy - 1, 0):iy + 2, max(ix - 1, 0):ix + 2] = BONE_BLOCK_HU
        current = Volume(array, spacing_mm, origin_mm)
        prior = Volume(array + rng.normal(0.0, 5.0, shape_zyx).astype(np.float32), spacing_mm, origin_mm)
        prior_path = write_volume(prior, folder / f"{code}_prior.nii.gz")
        current_path = write_volume(current, folder / f"{code}_current.nii.gz")
        lesions = []
        label_path = None
        if label_maps and lesion_specs:
            labels = np.zeros(shape_zyx, dtype=np.uint8)
            zz, yy, xx = np.indices(shape_zyx)
            for n, spec in enumerate(lesion_specs, start=1):
                ix, iy, iz = spec.index_xyz
                dist = np.sqrt(((xx - ix) * spacing_mm[0]) ** 2 + ((yy - iy) * spacing_mm[1]) ** 2 + ((zz - iz) * spacing_mm[2]) ** 2)
                labels[(dist <= spec.radius_mm) & (labels == 0)] = n
            label_path = write_volume(LabelVolume(labels, spacing_mm, origin_mm), folder / f"{code}_labels.nii.gz")
        for n, spec in enumerate(lesion_specs, start=1):
            center = tuple(float(c) for c in current.index_to_point_mm(spec.index_xyz))
            lesions.append(
                Lesion(
                    lesion_id=f"L{n}",
                    center_mm=center,
                    lesion_type=spec.lesion_type,
                    location=spec.location,
                    radius_mm=None if label_path else spec.radius_mm,
                    label_map=label_path,
                    label_value=n if label_path else None,
                )
            )
        cases.append(Case(case_id=code, prior=prior_path, current=current_path, abnormal=bool(lesions), lesions=tuple(lesions)))
    return write_case_list(CaseList(tuple(cases)), folder / name)
