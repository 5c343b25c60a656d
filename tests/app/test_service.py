"""Volumes read once and evicted by memory; the image service renders only what the ticket allows."""

import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cases import Volume, write_volume
from reading_app.workstation import (
    DisplayGrid,
    ImageService,
    LayerNotAllowedError,
    LoadedVolume,
    TicketError,
    TicketRegistry,
    ViewError,
    VolumeCache,
    WorkstationSettings,
    allowed_layers,
    display_grid_of,
    read_display_volume,
    window_to_uint8,
)
from reading_app.workstation.render import WINDOW_LIMITS_HU

SPACING = (0.8, 0.8, 2.5)


@pytest.fixture()
def case_files(tmp_path):
    """A 12 x 10 x 6 case stored feet-first (z flipped), with a subtraction and a z-map on its grid."""
    rng = np.random.default_rng(0)
    shape = (6, 10, 12)
    ct = np.rint(rng.normal(40, 300, shape)).astype(np.float32)
    z = np.zeros(shape, dtype=np.float32)
    z[2, 4, 5] = 9.0  # a blastic spot
    z[3, 6, 7] = -6.0  # a lytic spot
    direction = (1, 0, 0, 0, 1, 0, 0, 0, -1)
    files = {
        "ct": write_volume(Volume(ct, SPACING, (0, 0, 20), direction), tmp_path / "current.nii.gz"),
        "prior": write_volume(Volume(ct + 5, SPACING, (0, 0, 20), direction), tmp_path / "prior.nii.gz"),
        "subtraction": write_volume(Volume(np.full(shape, 100, np.float32), SPACING, (0, 0, 20), direction), tmp_path / "subtraction.nii.gz"),
        "zmap": write_volume(Volume(z, SPACING, (0, 0, 20), direction), tmp_path / "zmap.nii.gz"),
    }
    return {k: Path(v) for k, v in files.items()}, ct, z


def _settings(tmp_path, **kw):
    return WorkstationSettings(data_dir=tmp_path, detector_dir=tmp_path, **kw)


def _decode(data: bytes) -> np.ndarray:
    """The pixels of an encoded image; a paletted one (the z-map overlay) as the RGBA its palette gives."""
    image = Image.open(io.BytesIO(data))
    return np.asarray(image.convert("RGBA") if image.mode == "P" else image)


def test_read_display_volume_turns_feet_first_exams_head_up(case_files):
    files, ct, z = case_files
    loaded = read_display_volume(files["ct"], "ct")
    assert loaded.array.dtype == np.int16
    assert np.array_equal(loaded.array, ct[::-1].astype(np.int16))  # z flipped back
    assert loaded.grid == display_grid_of(files["ct"])  # header-only grid agrees
    zmap = read_display_volume(files["zmap"], "z")
    assert zmap.array.dtype == np.float16 and zmap.array[3, 4, 5] == 9.0


def test_volume_cache_reads_once_evicts_least_recently_used_and_rereads_changed_files(tmp_path):
    reads = []

    def reader(path, kind):
        reads.append(path.name)
        time.sleep(0.05)
        return LoadedVolume(path, kind, np.zeros(1000, dtype=np.uint8), DisplayGrid.from_geometry((10, 10, 10), (1, 1, 1), (0, 0, 0)))

    paths = []
    for name in "abc":
        p = tmp_path / f"{name}.nii"
        p.write_bytes(name.encode())
        paths.append(p)
    cache = VolumeCache(max_bytes=2500, reader=reader)
    threads = [threading.Thread(target=cache.get, args=(paths[0],)) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert reads == ["a.nii"]  # five concurrent requests, one read
    cache.get(paths[1])
    cache.get(paths[0])  # a is now the most recently used
    cache.get(paths[2])  # over budget: b goes
    assert cache.contains(paths[0]) and cache.contains(paths[2]) and not cache.contains(paths[1])
    assert cache.stats().n_bytes == 2000
    paths[0].write_bytes(b"changed!")
    cache.get(paths[0])
    assert reads == ["a.nii", "b.nii", "c.nii", "a.nii"]
    futures = cache.prefetch([(paths[1], "ct"), (tmp_path / "missing.nii", "ct")])
    assert futures[0].result() is not None and futures[1].result() is None


def test_image_service_unaided_never_reads_the_zmap(case_files, tmp_path):
    files, ct, _ = case_files
    read = []

    def reader(path, kind):
        read.append(path.name)
        return read_display_volume(path, kind)

    tickets = TicketRegistry()
    service = ImageService(_settings(tmp_path), VolumeCache(reader=reader), tickets)
    token = tickets.issue(account_id=1, reader_id=1, study_code="S", case_read_id=1, case_code="C", layers=allowed_layers(()), files=files)
    image = service.render(token, "ct", "axial", 0, level_hu=40, width_hu=400, fmt="png")
    assert image.media_type == "image/png"
    assert np.array_equal(_decode(image.data), window_to_uint8(ct[0], 40, 400))  # slice 0 = the top of the scan
    # the default: the slice's own values (int16, little-endian, rows first), windowed by the browser
    raw = service.render(token, "ct", "axial", 0)
    assert raw.media_type == "application/octet-stream"
    assert np.array_equal(np.frombuffer(raw.data, dtype="<i2").reshape(ct[0].shape), ct[0].astype(np.int16))
    for layer in ("zmap", "subtraction"):
        with pytest.raises(LayerNotAllowedError):
            service.render(token, layer, "axial", 0)
    assert read == ["current.nii.gz"]
    with pytest.raises(TicketError):
        service.render("not-a-ticket", "ct", "axial", 0, level_hu=40, width_hu=400)


def test_image_service_aided_overlay_and_subtraction(case_files, tmp_path):
    files, ct, z = case_files
    tickets = TicketRegistry()
    service = ImageService(_settings(tmp_path, image_format="jpeg"), VolumeCache(), tickets)
    token = tickets.issue(
        account_id=1, reader_id=1, study_code="S", case_read_id=2, case_code="C", layers=allowed_layers(("subtraction", "zmap")), files=files
    )
    # stored slice 2 (feet-first) is display z index 3, i.e. axial slice 6 - 1 - 3 = 2
    overlay = service.render(token, "zmap", "axial", 2)
    assert overlay.media_type == "image/png"
    assert Image.open(io.BytesIO(overlay.data)).mode == "P"  # one byte per pixel; the palette colours it
    rgba = _decode(overlay.data)
    assert rgba.shape == (10, 12, 4)
    assert tuple(rgba[4, 5]) == (0, 220, 60, round(255 * (0.35 / 0.85 + (1 - 0.35 / 0.85) * 5 / 6)))  # z = 9: green
    assert (rgba[..., 3] > 0).sum() == 1
    lytic = _decode(service.render(token, "zmap", "axial", 3).data)
    assert tuple(lytic[6, 7, :3]) == (255, 140, 0) and 0 < lytic[6, 7, 3] < 255
    # the subtraction uses its own symmetric window whatever the reader's window is
    sub = service.render(token, "subtraction", "axial", 0, level_hu=500, width_hu=2000)
    assert sub.media_type == "image/jpeg"
    assert abs(float(_decode(sub.data).mean()) - 255 * 600 / 1000) < 2
    with pytest.raises(ViewError, match="out of range"):
        service.render(token, "ct", "axial", 0, level_hu=40, width_hu=0)
    # the server's limits are the W/L inputs' (WINDOW_LIMITS_HU): a width the page refuses is refused here too
    assert service.render(token, "ct", "axial", 0, level_hu=40, width_hu=WINDOW_LIMITS_HU["widthMax"]).media_type == "image/jpeg"
    for level, width in (
        (40, WINDOW_LIMITS_HU["widthMax"] + 1),
        (40, 20000),
        (WINDOW_LIMITS_HU["levelMax"] + 1, 400),
        (WINDOW_LIMITS_HU["levelMin"] - 1, 400),
    ):
        with pytest.raises(ViewError, match="out of range .width 1 to 8000 HU, level -2000 to 4000 HU"):
            service.render(token, "ct", "axial", 0, level_hu=level, width_hu=width)
    with pytest.raises(ViewError, match="Unknown image format"):
        service.render(token, "ct", "axial", 0, fmt="gif")
    with pytest.raises(ViewError, match="outside"):
        service.render(token, "ct", "axial", 6, level_hu=40, width_hu=400)
    with pytest.raises(ViewError, match="Unknown plane"):
        service.render(token, "ct", "oblique", 0, level_hu=40, width_hu=400)


def test_settings_from_environment(monkeypatch, tmp_path):
    from reading_app.workstation import WorkstationError

    monkeypatch.setenv("TSCT_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("TSCT_DETECTOR_DIR", raising=False)
    monkeypatch.setenv("TSCT_IMAGE_FORMAT", "JPG")
    monkeypatch.setenv("TSCT_ZMAP_THRESHOLD", "3")
    s = WorkstationSettings.from_env()
    assert s.detector_dir == tmp_path / "detector" and s.image_format == "jpeg" and s.zmap_threshold == 3.0 and s.zmap_saturation == 10.0
    monkeypatch.setenv("TSCT_ZMAP_THRESHOLD", "-1")
    with pytest.raises(WorkstationError, match="TSCT_ZMAP_THRESHOLD must be between"):
        WorkstationSettings.from_env()


def test_integer_files_are_read_directly_and_agree_with_the_general_reader(tmp_path):
    from cases import read_exam

    rng = np.random.default_rng(5)
    array = rng.integers(-1024, 3000, (5, 7, 9)).astype(np.int16)
    direction = (0, 0, 1, 1, 0, 0, 0, -1, 0)  # a sagittal acquisition
    path = write_volume(Volume(array, (0.7, 0.9, 2.0), (3.0, -4.0, 50.0), direction), tmp_path / "int16.nii.gz")
    fast = read_display_volume(path, "ct")
    general = read_exam(path, check_hu=False).volume
    grid = DisplayGrid.of(general)
    assert fast.grid == grid
    assert fast.array.dtype == np.int16
    assert np.array_equal(fast.array, grid.reorient(general.array).astype(np.int16))


@pytest.mark.parametrize("direction", [(1, 0, 0, 0, 1, 0, 0, 0, 1), (1, 0, 0, 0, 1, 0, 0, 0, -1), (0, 1, 0, -1, 0, 0, 0, 0, 1)])
@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_a_first_axial_slice_read_alone_equals_the_slice_of_the_whole_volume(tmp_path, direction, dtype):
    from reading_app.workstation import extract_slice, read_axial_slice

    rng = np.random.default_rng(9)
    array = rng.integers(-1000, 2000, (6, 7, 8)).astype(dtype)
    path = write_volume(Volume(array, (0.7, 0.8, 2.5), (1.0, 2.0, 3.0), direction), tmp_path / f"v-{dtype.__name__}.nii.gz")
    whole = read_display_volume(path, "ct")
    for s in range(6):
        single = read_axial_slice(path, "ct", s, whole.grid)
        assert single is not None and single.dtype == np.int16
        assert np.array_equal(single, extract_slice(whole.array, "axial", s))
    cache = VolumeCache()
    assert np.array_equal(cache.slice_of(path, "ct", "axial", 2), extract_slice(whole.array, "axial", 2))
    assert np.array_equal(cache.slice_of(path, "ct", "sagittal", 3), extract_slice(whole.array, "sagittal", 3))
    assert cache.load_async(path, "ct").result().array.shape == whole.array.shape


def _score_case(tmp_path, *, with_score: bool, threshold: float = 3.0):
    """A detector case folder with a z-map (all 3.5) and, optionally, the candidates' score and candidates.json."""
    import json

    from detector.outputs import ROLES, write_case_outputs

    shape = (4, 6, 8)
    folder = tmp_path / "det" / "C1"
    folder.mkdir(parents=True)
    vol = Volume(np.zeros(shape, np.float32), SPACING, (0, 0, 0))
    z = np.zeros(shape, np.float32)
    z[1, 2, 3] = 3.5  # below the settings' z threshold (4): transparent on a z-map
    files = {"zmap": write_volume(vol.with_array(z), folder / ROLES["zmap"][0])}
    if with_score:
        score = np.zeros(shape, np.float32)
        score[1, 2, 3] = 3.5  # above the candidates' threshold (3): coloured
        score[1, 4, 5] = -5.0  # a lytic candidate
        files["candidate_score"] = write_volume(vol.with_array(score), folder / ROLES["candidate_score"][0])
        files["candidates_json"] = folder / ROLES["candidates_json"][0]
        files["candidates_json"].write_text(json.dumps({"candidates": [], "parameters": {"threshold": threshold}}), encoding="utf-8")
    write_case_outputs(folder, files, grid=vol.grid, case_id="C1", hash_exams=False)
    ct = write_volume(vol, tmp_path / "current.nii.gz")
    return Path(ct), folder


@pytest.mark.parametrize("with_score", [True, False])
def test_zmap_layer_shows_the_candidates_score_from_their_threshold(tmp_path, with_score):
    from detector.overlay import overlay_pixels
    from reading_app.workstation.layers import layer_files

    ct, folder = _score_case(tmp_path, with_score=with_score)
    files = layer_files(case_code="C1", current_path=ct, prior_path=None, overlays=("zmap",), detector_dir=folder.parent)
    assert files["zmap"].name == ("candidate_score.nii.gz" if with_score else "zmap.nii.gz")
    tickets = TicketRegistry()
    service = ImageService(_settings(tmp_path), VolumeCache(), tickets)
    token = tickets.issue(account_id=1, reader_id=1, study_code="S", case_read_id=1, case_code="C1", layers=allowed_layers(("zmap",)), files=files)
    rgba = _decode(service.render(token, "zmap", "axial", 4 - 1 - 1).data)  # stored slice 1, head-first: axial 2
    # the one overlay rule, with the candidates' threshold 3 and saturation 2.5 x 3 (or the settings' 4 and 10 for a z-map)
    values = read_display_volume(files["zmap"], "z").array[1].astype(np.float32)
    t, sat = (3.0, 7.5) if with_score else (4.0, 10.0)
    (rows, cols), _, _ = overlay_pixels(values, threshold=t, z_max=sat, palette="green-orange")
    coloured = set(zip(*np.nonzero(rgba[..., 3])))
    assert coloured == set(zip(rows.tolist(), cols.tolist()))
    if with_score:
        assert coloured == {(2, 3), (4, 5)}  # the 3.5 the z-map would hide, and the lytic -5
        assert tuple(rgba[4, 5, :3]) == (255, 140, 0)
    else:
        assert coloured == set()


def test_zmap_layer_names_a_missing_candidates_threshold(tmp_path):
    from reading_app.workstation.layers import layer_files

    ct, folder = _score_case(tmp_path, with_score=True)
    (folder / "candidates.json").write_text("{}", encoding="utf-8")
    files = layer_files(case_code="C1", current_path=ct, prior_path=None, overlays=("zmap",), detector_dir=folder.parent)
    tickets = TicketRegistry()
    service = ImageService(_settings(tmp_path), VolumeCache(), tickets)
    token = tickets.issue(account_id=1, reader_id=1, study_code="S", case_read_id=1, case_code="C1", layers=allowed_layers(("zmap",)), files=files)
    with pytest.raises(ViewError, match="candidates.json"):
        service.render(token, "zmap", "axial", 2)


def test_prior_sync_reads_the_case_registration(tmp_path):
    import SimpleITK as sitk

    from detector.outputs import ROLES, write_case_outputs
    from reading_app.workstation.geometry import synced_prior_slices
    from reading_app.workstation.layers import registration_prior_sync

    ct, folder = _score_case(tmp_path, with_score=False)
    grid = display_grid_of(ct)
    assert registration_prior_sync(folder.parent, "C1", grid, grid) is None  # no transform: table position
    shift = sitk.TranslationTransform(3, (0.0, 0.0, 5.0))
    sitk.WriteTransform(shift, str(folder / ROLES["transform"][0]))
    vol = Volume(np.zeros((4, 6, 8), np.float32), SPACING, (0, 0, 0))
    write_case_outputs(
        folder, {"zmap": folder / ROLES["zmap"][0], "transform": folder / ROLES["transform"][0]}, grid=vol.grid, case_id="C1", hash_exams=False
    )
    sync = registration_prior_sync(folder.parent, "C1", grid, grid)
    assert sync["axial"] == synced_prior_slices(grid, grid, shift, "axial") == [0, 0, 0, 1]  # 5 mm up = 2 slices of 2.5 mm
    assert registration_prior_sync(folder.parent, "C1", grid, None) is None
