"""Page flows with Streamlit's AppTest: log-in, worklist, reading (marks saved once), finishing, training feedback,
coordinator and statistician pages. The viewer component cannot be driven by AppTest; its events are
injected through the reading page's test seam (``_tsct_test_events``) with screen positions computed
from the same geometry the browser uses."""

from __future__ import annotations

import re

import numpy as np
import pytest

import reader_study
from reading_app.workstation import DisplayGrid, LayerNotAllowedError, TicketError, ViewTransform, get_runtime

from .conftest import LESION_VOXEL

W = H = 600


def _by_label(elements, label):
    found = [e for e in elements if e.label == label]
    assert found, f"no element labelled {label!r}; have {[e.label for e in elements]}"
    return found[0]


def login(at, username, password):
    at.run()
    _by_label(at.text_input, "User name").input(username)
    _by_label(at.text_input, "Password").input(password)
    _by_label(at.button, "Log in").click()
    at.run()
    assert not at.exception, at.exception
    return at


def shown(markdown: str) -> str:
    """What the browser shows for a Markdown source: backslash escapes (user text is escaped) removed."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown)


def texts(at) -> str:
    return shown(
        "\n".join(
            [t.value for t in at.title]
            + [m.value for m in at.markdown]
            + [e.value for e in at.error]
            + [s.value for s in at.success]
            + [i.value for i in at.info]
        )
    )


def click_event(grid: DisplayGrid, voxel_xyz, key: str, plane: str = "axial"):
    """The viewer's click event for the centre of a voxel, at zoom 1.5 about an off-centre point."""
    point = grid.index_to_point_mm(voxel_xyz)
    s, u, v = grid.mm_to_image(plane, point)
    g = grid.plane(plane)
    view = ViewTransform.for_plane(g, W, H, zoom=1.5, center_u=g.n_u / 2 + 3, center_v=g.n_v / 2 - 2)
    x, y = view.image_to_screen(u, v)
    return {
        "event": "click",
        "value": {
            "key": key,
            "plane": plane,
            "slice": int(round(s)),
            "x": x,
            "y": y,
            "W": W,
            "H": H,
            "zoom": 1.5,
            "cu": view.center_u,
            "cv": view.center_v,
            "view": {"plane": plane},
        },
    }


def reading_page(at):
    at.switch_page("reading_app/pages/reading.py").run()
    assert not at.exception, at.exception
    return at


def start_reading(at):
    _by_label(at.button, "Start session 1").click()
    at.run()
    at = reading_page(at)
    return at


# ------------------------------------------------------------------------------------------------
def test_login_refuses_a_wrong_password_and_accepts_the_right_one(app_test, app_env):
    at = app_test()
    login(at, "reader1", "wrong password!")
    assert "Unknown user name or wrong password." in texts(at)
    assert "tsct_user" not in at.session_state
    login(at, "reader1", app_env.study.password)
    assert at.title[0].value == f"Worklist — {app_env.study.study_code}"
    assert at.session_state["tsct_user"].account.role == "reader"


def test_first_log_in_asks_for_a_new_password(app_test, app_env):
    db = reader_study.open_db(app_env.database_url)
    with db.transaction() as s:
        reader_study.create_account(s, "newstat", "initial-password-1", role="statistician")
    at = login(app_test(), "newstat", "initial-password-1")
    assert at.title[0].value == "Choose your password"
    _by_label(at.text_input, "Initial password").input("initial-password-1")
    _by_label(at.text_input, "New password").input("my-own-password-2")
    _by_label(at.text_input, "New password again").input("my-own-password-2")
    _by_label(at.button, "Save password").click()
    at.run()
    assert at.title[0].value == "Analysis"
    assert reader_study.login(db, "newstat", "my-own-password-2").must_change_password is False


def _reader_service(env, username="reader1") -> reader_study.ReadingService:
    db = reader_study.open_db(env.database_url)
    with db.snapshot() as s:
        account = reader_study.find_account(s, username)
    return reader_study.ReadingService(db, reader_id=account.reader_id, study_code=env.study.study_code)


def _current(at, env, username="reader1"):
    svc = _reader_service(env, username)
    item = svc.next_case()
    view = svc.get_case(item.case_read_id)
    g = view.grid
    return svc, view, DisplayGrid.from_geometry(g.size_xyz, g.spacing_mm, g.origin_mm, g.direction)


def test_reader_marks_rates_and_the_mark_is_saved_once(app_test, app_env):
    at = start_reading(login(app_test(), "reader1", app_env.study.password))
    svc, view, grid = _current(at, app_env)
    assert view.status == "open" and f"case 1 of {view.n_in_session}" in texts(at)
    voxel = (12, 9, 5)
    at.session_state["_tsct_test_events"] = [click_event(grid, voxel, "click-1")]
    at.run()
    assert "New mark" in texts(at)
    assert svc.marks(view.case_read_id) == []  # not saved until it is rated
    _by_label(at.button, "4").click()
    at.run()
    marks = svc.marks(view.case_read_id)
    assert len(marks) == 1
    assert marks[0].index_xyz == voxel and marks[0].rating == 4 and marks[0].client_key == "click-1"
    assert np.allclose(marks[0].point_mm, grid.index_to_point_mm(voxel))
    assert "Mark saved with rating 4." in texts(at) and "Marks on this case: 1" in texts(at)
    # the same click replayed (a reload or a retried request) and rated again: still one mark
    at.session_state["_tsct_test_events"] = [click_event(grid, voxel, "click-1")]
    at.run()
    _by_label(at.button, "4").click()
    at.run()
    assert len(svc.marks(view.case_read_id)) == 1
    # keyboard rating of a new mark (the viewer's "rate" event), then change its rating and delete it
    at.session_state["_tsct_test_events"] = [click_event(grid, (30, 20, 9), "click-2"), {"event": "rate", "value": {"key": "click-2", "rating": 2}}]
    at.run()
    marks = svc.marks(view.case_read_id)
    assert [m.rating for m in marks] == [4, 2]
    at.selectbox(key=f"mark-rating-{marks[1].mark_id}").set_value(5).run()
    assert [m.rating for m in svc.marks(view.case_read_id)] == [4, 5]
    at.button(key=f"del-{marks[0].mark_id}").click().run()
    assert [m.client_key for m in svc.marks(view.case_read_id)] == ["click-2"]


def test_a_click_beside_the_image_places_nothing(app_test, app_env):
    at = start_reading(login(app_test(), "reader1", app_env.study.password))
    _, view, grid = _current(at, app_env)
    event = click_event(grid, (0, 0, 5), "outside")
    event["value"]["x"] -= 200
    at.session_state["_tsct_test_events"] = [event]
    at.run()
    assert "Click on the image to place a mark." in [w.value for w in at.warning]
    assert at.session_state["tsct_pending"] is None if "tsct_pending" in at.session_state else True


def test_finishing_without_marks_needs_confirmation_and_training_feedback_follows(app_test, app_env):
    at = start_reading(login(app_test(), "reader1", app_env.study.password))
    svc, view, grid = _current(at, app_env)
    assert view.training and view.case_code == "T001"
    finish = _by_label(at.button, "Finish case (no lesion)")
    assert finish.disabled
    at.checkbox(key=f"no-lesion-{view.case_read_id}").check().run()
    _by_label(at.button, "Finish case (no lesion)").click()
    at.run()
    done = svc.get_case(view.case_read_id)
    assert done.status == "finished" and done.no_lesion and done.reading_time_s is not None
    # training case: the truth is shown now
    assert at.title[0].value == "Training case T001: the truth"
    assert "lytic, rib" in texts(at)
    _by_label(at.button, "Continue").click()
    at.run()
    nxt = svc.next_case()
    assert f"case {nxt.position} of" in texts(at)


def test_a_case_with_marks_finishes_and_the_next_case_opens(app_test, app_env):
    at = start_reading(login(app_test(), "reader1", app_env.study.password))
    svc, view, grid = _current(at, app_env)
    at.session_state["_tsct_test_events"] = [click_event(grid, (8, 8, 3), "k-1"), {"event": "rate", "value": {"key": "k-1", "rating": 3}}]
    at.run()
    _by_label(at.button, "Finish case").click()
    at.run()
    assert svc.get_case(view.case_read_id).status == "finished"
    assert svc.next_case().position == 2


def test_other_readers_marks_are_never_shown(app_test, app_env):
    at1 = start_reading(login(app_test(), "reader1", app_env.study.password))
    _, view1, grid = _current(at1, app_env)
    at1.session_state["_tsct_test_events"] = [click_event(grid, (5, 5, 5), "r1"), {"event": "rate", "value": {"key": "r1", "rating": 5}}]
    at1.run()
    assert "Marks on this case: 1" in texts(at1)
    at2 = start_reading(login(app_test(), "reader2", app_env.study.password))
    svc2, view2, _ = _current(at2, app_env, "reader2")
    assert "Marks on this case: 0" in texts(at2)
    assert svc2.marks(view2.case_read_id) == []
    with pytest.raises(reader_study.NotFoundError):
        svc2.marks(view1.case_read_id)


def test_the_image_ticket_follows_the_treatment(app_test, app_env):
    """Read until both treatments were shown: the unaided ticket refuses the z-map, the aided one allows it;
    a finished case's ticket is refused whatever it asks for."""
    at = start_reading(login(app_test(), "reader1", app_env.study.password))
    cookie = at.session_state["tsct_user"].session_token
    tickets = get_runtime().tickets
    seen = {}
    for _ in range(4):
        svc, view, _ = _current(at, app_env)
        token = at.session_state[f"ticket:read:{view.case_read_id}"]
        aided = bool(view.overlays)
        seen[aided] = token
        if aided:
            assert tickets.authorize(token, "zmap", session_token=cookie)[1].name == "zmap.nii.gz"
        else:
            for layer in ("zmap", "subtraction"):
                with pytest.raises(LayerNotAllowedError):
                    tickets.authorize(token, layer, session_token=cookie)
        assert tickets.authorize(token, "ct", session_token=cookie)[1].exists()
        with pytest.raises(TicketError):
            tickets.authorize(token, "ct")  # no cookie
        if len(seen) == 2:
            break
        at.checkbox(key=f"no-lesion-{view.case_read_id}").check().run()
        _by_label(at.button, "Finish case (no lesion)").click()
        at.run()
        with pytest.raises(TicketError):
            tickets.authorize(token, "ct", session_token=cookie)  # the case is finished: its link is dead
        if "Continue" in [b.label for b in at.button]:
            _by_label(at.button, "Continue").click()
            at.run()
    assert set(seen) == {True, False}


def test_log_out_ends_the_session_and_its_tickets(app_test, app_env):
    at = start_reading(login(app_test(), "reader1", app_env.study.password))
    _, view, _ = _current(at, app_env)
    token = at.session_state[f"ticket:read:{view.case_read_id}"]
    at.switch_page("reading_app/pages/me.py").run()
    _by_label(at.button, "Log out").click()
    at.run()
    assert at.title[0].value == "TSCT reading workstation"
    assert not get_runtime().tickets.valid(token)


# ------------------------------------------------------------------------------------------------
def _read_everything(env, *, lesion_hit: dict[str, bool]):
    """Both readers read every case: a mark on C001's lesion (rated by treatment), nothing elsewhere."""
    db = reader_study.open_db(env.database_url)
    for username in ("reader1", "reader2"):
        svc = _reader_service(env, username)
        n = 0
        while True:
            item = svc.next_case()
            if item is None:
                if any(v.status == "scheduled" for v in svc.sessions()):
                    svc.open_session()
                    continue
                break
            view = svc.open_case(item.case_read_id)
            if view.case_code == "C001" and lesion_hit.get(view.treatment, False):
                svc.save_mark(view.case_read_id, client_key=f"{username}-{n}", rating=5 if view.treatment == "aided" else 3, index_xyz=LESION_VOXEL)
                svc.finish_case(view.case_read_id, reading_time_s=30.0)
            elif view.case_code == "C003":
                svc.save_mark(view.case_read_id, client_key=f"{username}-{n}", rating=2, index_xyz=(30, 30, 12))
                svc.finish_case(view.case_read_id, reading_time_s=20.0)
            else:
                svc.finish_case(view.case_read_id, no_lesion=True, reading_time_s=10.0)
            n += 1
    return db


def test_coordinator_pages_progress_and_export(app_test, app_env):
    _read_everything(app_env, lesion_hit={"aided": True, "unaided": False})
    at = login(app_test(), "coordinator", app_env.study.password)
    assert at.title[0].value == "Studies"
    assert app_env.study.study_code in at.dataframe[0].value["code"].tolist()
    _by_label(at.text_input, "Case list (path on the server)").input(str(app_env.detector_dir.parent / "cases.csv"))
    at.run()
    _by_label(at.button, "Validate").click()
    at.run()
    assert any("Valid:" in s.value for s in at.success)
    at.switch_page("reading_app/pages/design.py").run()
    assert not at.exception
    progress = at.dataframe[-2].value
    assert set(progress["status"]) == {"closed"} and (progress["reads"] == progress["finished"]).all()
    at.switch_page("reading_app/pages/exports.py").run()
    _by_label(at.button, "Export").click()
    at.run()
    assert not at.exception, at.exception
    exports = list((app_env.data_dir / "exports" / app_env.study.study_code).glob("*/APP-TEST-jafroc.xlsx"))
    assert len(exports) == 1
    assert any(b.proto.label == "Download the export (zip)" for b in at.get("link_button"))


def test_validate_page_runs_the_full_content_checks(app_test, app_env):
    """The page's Validate reads every exam and checks the truth against it, as `tsct cases
    validate` and study creation do: a lesion centre outside the current exam is refused."""
    import csv

    from .conftest import copy_case_list

    listed = app_env.detector_dir.parent / "cases.csv"
    abnormal = next(i for i, row in enumerate(csv.DictReader(listed.open(newline=""))) if row["lesion_id"])
    wrong = copy_case_list(listed, app_env.data_dir / "wrong-truth.csv", lambda rows: rows[abnormal].update(center_x_mm="5000"))
    at = login(app_test(), "coordinator", app_env.study.password)
    _by_label(at.text_input, "Case list (path on the server)").input(str(wrong))
    at.run()
    _by_label(at.button, "Validate").click()
    at.run()
    assert not at.exception, at.exception
    assert not at.success
    assert any("1 problem(s) in wrong-truth.csv" in shown(e.value) for e in at.error)
    table = at.dataframe[-1].value
    assert list(table["row"]) == [abnormal + 2] and "outside the current exam" in table["what to fix"].iloc[0]


def test_statistician_runs_the_analysis_of_a_closed_study(app_test, app_env):
    db = _read_everything(app_env, lesion_hit={"aided": True, "unaided": False})
    with db.transaction() as s:
        reader_study.close_study(s, app_env.study.study_code)
    at = login(app_test(), "statistician", app_env.study.password)
    assert at.title[0].value == "Analysis"
    _by_label(at.button, "Run the analysis").click()
    at.run(timeout=180)
    assert not at.exception, at.exception
    report = app_env.data_dir / "reports" / app_env.study.study_code
    assert (report / "report.html").exists() and (report / "foms.csv").exists()
    foms = at.dataframe[0].value
    assert len(foms) > 0


def test_single_sign_on_identity_maps_to_an_account_by_e_mail(app_test, app_env):
    """With OpenID Connect configured ([auth] in secrets), st.user's e-mail is the account's user name."""
    db = reader_study.open_db(app_env.database_url)
    with db.transaction() as s:
        reader_study.create_account(s, "stat@example.org", "unused-password-1", role="statistician")
    auth = {
        "auth": {
            "redirect_uri": "http://localhost/oauth2callback",
            "cookie_secret": "x" * 32,
            "client_id": "tsct",
            "client_secret": "s",
            "server_metadata_url": "https://idp.example.org/.well-known/openid-configuration",
        }
    }
    at = app_test()
    at.secrets = auth
    at.user = {"is_logged_in": True, "email": "stat@example.org"}
    at.run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Analysis"  # no password change asked for a single-sign-on log-in
    stranger = app_test()
    stranger.secrets = auth
    stranger.user = {"is_logged_in": True, "email": "nobody@example.org"}
    stranger.run()
    assert stranger.title[0].value == "TSCT reading workstation"
    assert any("nobody@example.org has no TSCT account" in shown(e.value) for e in stranger.error)


def test_coordinator_issues_an_account_with_an_initial_password(app_test, app_env):
    at = login(app_test(), "coordinator", app_env.study.password)
    at.switch_page("reading_app/pages/readers.py").run()
    assert not at.exception, at.exception
    assert list(at.dataframe[0].value["code"]) == ["R01", "R02"]
    _by_label(at.text_input, "User name").input("reader.three")
    _by_label(at.selectbox, "Role").select("statistician")
    _by_label(at.button, "Create account").click()
    at.run()
    initial = at.code[0].value
    assert len(initial) >= 10
    db = reader_study.open_db(app_env.database_url)
    account = reader_study.login(db, "reader.three", initial)
    assert account.role == "statistician" and account.must_change_password
    # a coordinator cannot create an administrator
    assert "admin" not in _by_label(at.selectbox, "Role").options
