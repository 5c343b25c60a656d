"""Volumes read once per server process and kept in memory, least recently used first out.

A reader scrolls through hundreds of slices of the same few volumes (current, prior, subtraction,
z-map), so each is read from disk once, turned to display orientation
(:class:`~reading_app.workstation.geometry.DisplayGrid`) and kept in a compact type: CT and HU differences
as ``int16`` (rounded to whole HU; 157 MiB for 512 × 512 × 300 voxels), z-maps as ``float16``.
The cache is bounded by memory (``TSCT_VOLUME_CACHE_MB``, default 3072 MiB, enough for two
clinical-size cases with all their layers); the least recently used volume is dropped first.

Thread-safe: image requests are served from several threads at once, and concurrent requests for
a volume that is being read wait for that one read instead of starting another.
:meth:`VolumeCache.prefetch` reads volumes in the background (the next case of the worklist),
so its first image appears at once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Literal

import numpy as np

from .errors import ViewError
from .geometry import DisplayGrid, extract_slice

__all__ = ["LoadedVolume", "VolumeCache", "CacheStats", "VolumeKind", "read_display_volume", "read_axial_slice", "display_grid_of"]

#: ``ct``: an exam in HU (DICOM folder or image file); ``hu``: a derived HU image (subtraction,
#: warped prior); ``z``: a z-score map.
VolumeKind = Literal["ct", "hu", "z"]


@dataclass(frozen=True, eq=False)
class LoadedVolume:
    """A display-oriented array with its grid (``array`` is ``(z, y, x)`` of ``grid``)."""

    path: Path
    kind: str
    array: np.ndarray
    grid: DisplayGrid

    @property
    def nbytes(self) -> int:
        return int(self.array.nbytes)


def _compact(array: np.ndarray, kind: str) -> np.ndarray:
    if kind == "z":
        return array.astype(np.float16)
    rounded = np.rint(array)
    return np.clip(rounded, -32768, 32767).astype(np.int16)


def read_display_volume(path: str | Path, kind: VolumeKind = "ct") -> LoadedVolume:
    """Read an exam or derived image, turn it to display orientation and store it compactly.

    Raises ``cases.ExamReadError`` (a ``ValueError`` naming the file) when it cannot be read.
    """
    from cases import read_exam, read_volume

    path = Path(path)
    fast = _read_integer_image(path) if kind != "z" else None
    if fast is not None:
        return LoadedVolume(path, kind, fast[1].reorient(fast[0]), fast[1])
    if kind == "ct":
        volume = read_exam(path, check_hu=False).volume
    else:
        volume = read_volume(path)
    grid = DisplayGrid.of(volume)
    array = grid.reorient(_compact(volume.array, kind))
    return LoadedVolume(path, kind, array, grid)


_INTEGER_TYPES = (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32)


def _read_integer_image(path: Path) -> tuple[np.ndarray, DisplayGrid] | None:
    """An image file stored as whole numbers (CT in HU, as almost always), read without a float round trip.

    Reading a 512 × 512 × 150 NIfTI this way takes about a quarter of the time of the general
    reader (which converts to float32 and back). ``None`` for DICOM folders, floating-point or
    rescaled images and anything unusual: the general reader (``cases.read_exam``) handles them.
    """
    import SimpleITK as sitk

    name = path.name.lower()
    if not path.is_file() or not name.endswith((".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")):
        return None
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError:
        return None
    if image.GetNumberOfComponentsPerPixel() != 1:
        return None
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
    if image.GetDimension() != 3:
        return None
    array = sitk.GetArrayFromImage(image)
    if array.dtype.type not in _INTEGER_TYPES:
        return None
    if array.dtype != np.int16:
        array = np.clip(array, -32768, 32767).astype(np.int16)
    from cases import Grid

    return array, DisplayGrid.from_grid(Grid.of(image))


def read_axial_slice(path: str | Path, kind: VolumeKind, index: int, grid: DisplayGrid) -> np.ndarray | None:
    """Display axial slice ``index`` read alone from an image file (streaming), or ``None`` when that is not possible.

    Possible for NIfTI/NRRD/MHA files whose slice axis is the patient's head-feet axis (axial
    acquisitions, in any in-plane orientation); DICOM folders and other files return ``None``.
    """
    import SimpleITK as sitk

    path = Path(path)
    if grid.perm[2] != 2 or not path.is_file() or not path.name.lower().endswith((".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")):
        return None
    nz = grid.size_xyz[2]
    if not 0 <= int(index) < nz:
        raise ViewError(f"Slice {index} is outside the axial images (0 to {nz - 1}).")
    z_display = nz - 1 - int(index)
    z_stored = nz - 1 - z_display if grid.flip[2] else z_display
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
        size = reader.GetSize()
        if len(size) != 3 or reader.GetNumberOfComponents() != 1:
            return None
        reader.SetExtractIndex([0, 0, z_stored])
        reader.SetExtractSize([size[0], size[1], 1])
        image = reader.Execute()
    except RuntimeError:
        return None
    array = sitk.GetArrayFromImage(image)  # (1, rows, columns) in stored order
    if kind == "z" or array.dtype.type not in _INTEGER_TYPES:
        array = _compact(array.astype(np.float32), kind)
    elif array.dtype != np.int16:
        array = np.clip(array, -32768, 32767).astype(np.int16)
    return grid.reorient(array)[0]


def _file_key(path: Path) -> tuple[str, int, int]:
    resolved = path.resolve()
    st = resolved.stat()
    return str(resolved), int(st.st_mtime_ns), int(st.st_size)


@dataclass(frozen=True)
class CacheStats:
    """Numbers of volumes and bytes held, and of reads and hits since the start."""

    n_volumes: int
    n_bytes: int
    max_bytes: int
    n_reads: int
    n_hits: int


class VolumeCache:
    """Display-oriented volumes by file, bounded by ``max_bytes``, least recently used evicted first.

    Parameters
    ----------
    max_bytes : memory budget; a single volume larger than it is still served (and evicted next).
    reader : function reading one volume (default :func:`read_display_volume`); tests pass a fake.
    """

    def __init__(self, max_bytes: int = 3072 * 2**20, *, reader: Callable[[Path, str], LoadedVolume] | None = None) -> None:
        self.max_bytes = int(max_bytes)
        self._reader = reader or read_display_volume
        self._items: OrderedDict[tuple, LoadedVolume] = OrderedDict()
        self._loading: dict[tuple, Future] = {}
        self._lock = threading.Lock()
        self._bytes = 0
        self._reads = 0
        self._hits = 0
        self._executor: ThreadPoolExecutor | None = None
        self._loader: ThreadPoolExecutor | None = None
        self._grids: dict[tuple, DisplayGrid] = {}
        self._streaming: set[tuple] = set()

    def get(self, path: str | Path, kind: VolumeKind = "ct") -> LoadedVolume:
        """The volume in ``path`` (read now, or waited for when another thread is reading it)."""
        path = Path(path)
        key = (*_file_key(path), kind)
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
                self._hits += 1
                return item
            future = self._loading.get(key)
            owner = future is None
            if owner:
                future = Future()
                self._loading[key] = future
        if not owner:
            return future.result()
        try:
            item = self._reader(path, kind)
        except BaseException as exc:
            with self._lock:
                self._loading.pop(key, None)
            future.set_exception(exc)
            raise
        with self._lock:
            self._loading.pop(key, None)
            self._reads += 1
            self._items[key] = item
            self._bytes += item.nbytes
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.nbytes
        future.set_result(item)
        return item

    def load_async(self, path: str | Path, kind: VolumeKind = "ct") -> Future:
        """A future of the volume: done at once when it is in memory, else read in a loader thread (not behind prefetches)."""
        path = Path(path)
        key = (*_file_key(path), kind)
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                done: Future = Future()
                done.set_result(item)
                return done
            future = self._loading.get(key)
            if future is not None:
                return future
            if self._loader is None:
                self._loader = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tsct-load")
            loader = self._loader
        loader.submit(self._load_quietly, path, kind)
        with self._lock:
            future = self._loading.get(key)
            item = self._items.get(key)
        if future is not None:
            return future
        done = Future()
        if item is not None:
            done.set_result(item)
            return done
        return self.load_async(path, kind)  # the loader finished or failed in between: ask again

    def _load_quietly(self, path: Path, kind: VolumeKind) -> None:
        try:
            self.get(path, kind)
        except Exception:  # noqa: BLE001 - the failure reaches whoever waits on the future
            pass

    def slice_of(self, path: str | Path, kind: VolumeKind, plane: str, index: int) -> np.ndarray:
        """One display slice of the volume in ``path``.

        From memory when the volume is there. Otherwise the whole volume starts loading, and the
        first axial slice asked for meanwhile is read on its own from the file (a few hundred
        milliseconds instead of the whole read), so a case's first image does not wait for the
        whole volume; later requests wait for the volume (one slice read per file at a time, so
        the prefetched neighbours do not each decompress the file).
        """
        path = Path(path)
        future = self.load_async(path, kind)
        if not future.done() and plane == "axial":
            key = (*_file_key(path), kind)
            with self._lock:
                mine = key not in self._streaming
                if mine:
                    self._streaming.add(key)
            if mine:
                try:
                    single = read_axial_slice(path, kind, index, self.grid_of(path))
                finally:
                    with self._lock:
                        self._streaming.discard(key)
                if single is not None:
                    return single
        return extract_slice(future.result().array, plane, index)

    def prefetch(self, items: Iterable[tuple[str | Path, VolumeKind]], *, grids: Iterable[str | Path] = ()) -> list[Future]:
        """Read volumes in a background thread (one at a time, so the reader's own requests stay fast); failures are ignored.

        ``grids``: exams whose display grid (header) is wanted soon, read first.
        """
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tsct-prefetch")
            executor = self._executor

        def grid(p: str | Path) -> DisplayGrid | None:
            try:
                return self.grid_of(p)
            except Exception:  # noqa: BLE001
                return None

        for p in grids:
            executor.submit(grid, p)

        def load(p: str | Path, k: VolumeKind) -> LoadedVolume | None:
            try:
                return self.get(p, k)
            except Exception:  # noqa: BLE001 - a missing file shows up when the reader asks for it
                return None

        return [executor.submit(load, p, k) for p, k in items]

    def grid_of(self, path: str | Path) -> DisplayGrid:
        """The display grid of an exam (:func:`display_grid_of`), remembered per file."""
        path = Path(path)
        key = _file_key(path)
        with self._lock:
            grid = self._grids.get(key)
        if grid is None:
            grid = display_grid_of(path, self)
            with self._lock:
                if len(self._grids) > 4096:
                    self._grids.clear()
                self._grids[key] = grid
        return grid

    def contains(self, path: str | Path, kind: VolumeKind = "ct") -> bool:
        """Whether the volume is in memory now."""
        try:
            key = (*_file_key(Path(path)), kind)
        except OSError:
            return False
        with self._lock:
            return key in self._items

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(len(self._items), self._bytes, self.max_bytes, self._reads, self._hits)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def __repr__(self) -> str:
        s = self.stats()
        return f"VolumeCache({s.n_volumes} volumes, {s.n_bytes / 2**20:.0f} of {s.max_bytes / 2**20:.0f} MiB)"


def display_grid_of(path: str | Path, cache: VolumeCache | None = None) -> DisplayGrid:
    """The display grid of an exam or image file, from its header when it is an image file.

    DICOM series (folders) have no single header to read: the series is read (through ``cache``
    when given, so it is read once).
    """
    from cases import GridReadError, read_grid

    path = Path(path)
    if path.is_file() and not path.name.lower().endswith(".dcm"):
        try:
            return DisplayGrid.from_grid(read_grid(path))
        except GridReadError:
            pass  # not an image file: the general reader names the problem
    loaded = cache.get(path, "ct") if cache is not None else read_display_volume(path, "ct")
    return loaded.grid
