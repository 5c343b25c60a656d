"""Image tickets enforce the treatment; browser sessions; active reading time; which layers a treatment shows."""

from pathlib import Path

import pytest

from reading_app.workstation import (
    ActiveTimeTracker,
    ImageLayerMissingError,
    LayerNotAllowedError,
    TicketError,
    TicketRegistry,
    WebSessionStore,
    allowed_layers,
    check_detector_outputs,
    layer_files,
    unknown_overlays,
)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_allowed_layers_unaided_shows_exams_only():
    assert allowed_layers(()) == {"ct", "prior"}
    assert allowed_layers(("subtraction", "zmap")) == {"ct", "prior", "subtraction", "zmap"}
    assert allowed_layers(("zmap", "heatmap")) == {"ct", "prior", "zmap"}
    assert unknown_overlays(("zmap", "heatmap")) == ("heatmap",)


def test_layer_files_list_only_the_allowed_layers(tmp_path):
    unaided = layer_files(case_code="C1", current_path="/x/cur.nii.gz", prior_path="/x/pri.nii.gz", overlays=(), detector_dir=tmp_path)
    assert unaided == {"ct": Path("/x/cur.nii.gz"), "prior": Path("/x/pri.nii.gz")}
    aided = layer_files(case_code="C1", current_path="/x/cur.nii.gz", prior_path=None, overlays=("subtraction", "zmap"), detector_dir=tmp_path)
    # no outputs.json for the case: each aid points at the missing manifest (named when the layer is asked for)
    assert aided == {"ct": Path("/x/cur.nii.gz"), "subtraction": tmp_path / "C1" / "outputs.json", "zmap": tmp_path / "C1" / "outputs.json"}


def _outputs(folder: Path, roles=("zmap",), grid_origin=(0.0, 0.0, 0.0)):
    """A case folder with a manifest listing ``roles`` (tiny images on one grid)."""
    import numpy as np

    from cases import Volume, write_volume
    from detector import write_case_outputs

    volume = Volume(np.zeros((3, 4, 5), np.float32), (1.0, 1.0, 2.0), grid_origin)
    folder.mkdir(parents=True, exist_ok=True)
    files = {role: write_volume(volume, folder / f"renamed_{role}.nii.gz") for role in roles}
    write_case_outputs(folder, files, grid=volume.grid, case_id=folder.name, qc_status="passed")
    return volume


def test_layer_files_follow_the_manifest_not_file_names(tmp_path):
    _outputs(tmp_path / "C1", roles=("zmap",))
    aided = layer_files(case_code="C1", current_path="/x/cur.nii.gz", prior_path=None, overlays=("subtraction", "zmap"), detector_dir=tmp_path)
    assert aided["zmap"] == tmp_path / "C1" / "renamed_zmap.nii.gz"
    assert not aided["subtraction"].exists()  # the case has no subtraction output


def test_check_detector_outputs_names_missing_files_and_other_grids(tmp_path):
    from cases import Volume, write_volume

    volume = _outputs(tmp_path / "C1")
    (tmp_path / "C3").mkdir()
    (tmp_path / "C3" / "zmap.nii.gz").write_bytes(b"x")  # a file without a manifest does not count
    frame = check_detector_outputs(["C1", "C2", "C3"], ("zmap",), tmp_path)
    assert frame[["case", "layer", "present"]].values.tolist() == [["C1", "zmap", True], ["C2", "zmap", False], ["C3", "zmap", False]]
    assert "rerun tsct detect" in frame["problem"][1].lower() and "rerun tsct detect" in frame["problem"][2].lower()
    assert check_detector_outputs(["C1"], (), tmp_path).empty
    other = write_volume(Volume(volume.array, volume.spacing_mm, (0.0, 0.0, 5.0)), tmp_path / "other_exam.nii.gz")
    same = write_volume(volume, tmp_path / "exam.nii.gz")
    assert check_detector_outputs(["C1"], ("zmap",), tmp_path, current={"C1": same})["present"].tolist() == [True]
    bad = check_detector_outputs(["C1"], ("zmap",), tmp_path, current={"C1": other})
    assert bad["present"].tolist() == [False] and "grid" in bad["problem"][0]
    assert check_detector_outputs(["C1"], ("zmap",), tmp_path, current={"C1": volume.grid})["present"].tolist() == [True]


def _files(tmp_path):
    files = {}
    for name in ("ct", "prior", "subtraction", "zmap"):
        files[name] = tmp_path / f"{name}.nii.gz"
        files[name].write_bytes(b"image")
    return files


def test_unaided_ticket_refuses_aids_and_does_not_even_hold_their_files(tmp_path):
    registry = TicketRegistry()
    files = _files(tmp_path)
    token = registry.issue(account_id=1, reader_id=1, study_code="S", case_read_id=7, case_code="C1", layers=allowed_layers(()), files=files)
    ticket, path = registry.authorize(token, "ct")
    assert path == files["ct"] and ticket.case_read_id == 7
    assert set(ticket.files) == {"ct", "prior"}
    for layer in ("zmap", "subtraction", "warped_prior"):
        with pytest.raises(LayerNotAllowedError, match="not shown in this reading"):
            registry.authorize(token, layer)


def test_aided_ticket_gives_the_aids_and_reports_a_missing_file(tmp_path):
    registry = TicketRegistry()
    files = _files(tmp_path)
    files["zmap"].unlink()
    token = registry.issue(
        account_id=1, reader_id=1, study_code="S", case_read_id=8, case_code="C2", layers=allowed_layers(("subtraction", "zmap")), files=files
    )
    assert registry.authorize(token, "subtraction")[1] == files["subtraction"]
    with pytest.raises(ImageLayerMissingError, match="z-map overlay of case C2 is not available"):
        registry.authorize(token, "zmap")


def test_tickets_expire_when_unused_and_can_be_revoked(tmp_path):
    clock = Clock()
    registry = TicketRegistry(ttl_s=60, clock=clock)
    files = _files(tmp_path)
    key_a, key_b = WebSessionStore.key_of("cookie-a"), WebSessionStore.key_of("cookie-b")
    a = registry.issue(
        account_id=1, reader_id=1, study_code="S", case_read_id=1, case_code="C", layers=frozenset({"ct"}), files=files, session_key=key_a
    )
    b = registry.issue(
        account_id=2, reader_id=2, study_code="S", case_read_id=2, case_code="C", layers=frozenset({"ct"}), files=files, session_key=key_b
    )
    clock.t += 50
    registry.authorize(a, "ct", session_token="cookie-a")  # use pushes expiry back
    with pytest.raises(TicketError, match="no session cookie"):
        registry.authorize(a, "ct")  # a ticket bound to a log-in needs its cookie
    with pytest.raises(TicketError, match="another log-in"):
        registry.authorize(a, "ct", session_token="cookie-b")
    clock.t += 50
    assert registry.valid(a) and not registry.valid(b)
    with pytest.raises(TicketError):
        registry.authorize(b, "ct", session_token="cookie-b")
    with pytest.raises(TicketError):
        registry.authorize("made-up", "ct")
    assert registry.revoke(session_key=key_a) == 1
    assert not registry.valid(a)
    with pytest.raises(LayerNotAllowedError, match="Unknown image layer"):
        registry.issue(account_id=1, reader_id=1, study_code="S", case_read_id=1, case_code="C", layers=frozenset({"ct", "truth"}), files=files)


def test_browser_session_claim_code_works_once_and_sessions_expire():
    clock = Clock()
    store = WebSessionStore(idle_s=100, claim_s=10, clock=clock)
    token, code = store.create(account_id=5, username="reader1")
    assert store.claim(code) == token
    assert store.claim(code) is None  # one-time
    session = store.lookup(token)
    assert session is not None and session.account_id == 5 and session.username == "reader1"
    clock.t += 90
    assert store.lookup(token) is not None  # sliding expiry
    clock.t += 101
    assert store.lookup(token) is None
    token2, code2 = store.create(account_id=6, username="reader2")
    clock.t += 11
    assert store.claim(code2) is None  # claim code expired
    assert store.lookup(token2) is not None
    assert store.end_account(6) == 1 and store.lookup(token2) is None
    assert store.lookup(None) is None and store.lookup("nonsense") is None


def test_active_time_caps_each_pause():
    clock = Clock()
    timer = ActiveTimeTracker(idle_cap_s=60, clock=clock)
    key = (1, 42)
    assert timer.touch(key) == 0.0
    for gap in (5, 10, 15):
        clock.t += gap
        timer.touch(key)
    assert timer.total_s(key) == 30.0
    clock.t += 3600  # a long break counts as one idle cap
    assert timer.touch(key) == 90.0
    assert timer.total_s((1, 43)) == 0.0
    assert timer.pop(key) == 90.0 and timer.total_s(key) == 0.0
    with pytest.raises(ValueError):
        ActiveTimeTracker(idle_cap_s=0)
