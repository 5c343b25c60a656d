"""Adversarial HTTP tests of the workstation's routes, in process (no browser, no network).

Each test plays an attacker against the real routes (:func:`reading_app.workstation.make_routes`), the real
runtime (tickets checked against the study database, sessions in the database) and a real open
study: reader vs reader, no cookie, forged tickets, replay from an earlier reading, unaided vs
aid, traversal, downloads without the page's authorisation, cross-site POSTs, revoked sessions
and a restart of the server. docs/security.md lists the promises these tests check.
"""

from __future__ import annotations

import io
import zipfile

import pytest
from starlette.applications import Starlette

import reader_study
from reading_app.workstation import SESSION_COOKIE, allowed_layers, get_runtime, layer_files, make_routes, reset_runtime

from ._asgi import request

API = "/api/tsct/v1"


class Rig:
    """The app server's routes and runtime over the test study, and what a page would do (log in, open a case, issue a ticket)."""

    def __init__(self, env) -> None:  # noqa: ANN001
        self.env = env
        self.restart()

    def restart(self) -> None:
        """A new runtime, as after a restart of the app server (tickets in memory are gone, sessions are in the database)."""
        reset_runtime()
        self.rt = get_runtime()
        self.rt.case_state_s = 0.0  # no grace: every request sees the database's state
        self.rt.sessions.cache_s = 0.0
        self.app = Starlette(routes=make_routes("", runtime=get_runtime))
        self.db = self.rt.database()

    def account(self, username: str) -> reader_study.AccountInfo:
        with self.db.snapshot() as s:
            return reader_study.find_account(s, username)

    def log_in(self, username: str) -> str:
        account = self.account(username)
        token, _ = self.rt.sessions.create(account_id=account.account_id, username=account.username, client="127.0.0.1")
        return token

    def service(self, username: str) -> reader_study.ReadingService:
        return reader_study.ReadingService(self.db, reader_id=self.account(username).reader_id, study_code=self.env.study.study_code)

    def ticket(self, username: str, cookie: str, view: reader_study.CaseView, *, kind: str = "read", layers=None, registration=None) -> str:  # noqa: ANN001
        account = self.account(username)
        files = layer_files(
            case_code=view.case_code,
            current_path=view.current_path,
            prior_path=view.prior_path or None,
            overlays=view.overlays if layers is None else ("subtraction", "zmap"),
            detector_dir=self.env.detector_dir,
        )
        return self.rt.tickets.issue(
            account_id=account.account_id,
            reader_id=account.reader_id,
            study_code=self.env.study.study_code,
            case_read_id=view.case_read_id,
            case_code=view.case_code,
            layers=allowed_layers(view.overlays) if layers is None else layers,
            files=files,
            session_key=self.rt.sessions.key_of(cookie),
            kind=kind,
            registration=registration,
        )

    def image(self, ticket: str, layer: str = "ct", cookie: str | None = None, plane: str = "axial", index: int = 0, query: str = "wl=40&ww=400"):  # noqa: ANN201
        return request(self.app, "GET", f"{API}/image/{ticket}/{layer}/{plane}/{index}?{query}", cookies={SESSION_COOKIE: cookie} if cookie else None)


@pytest.fixture()
def rig(app_env):
    r = Rig(app_env)
    yield r
    reset_runtime()


def open_next(svc: reader_study.ReadingService) -> reader_study.CaseView:
    item = svc.next_case()
    if item is None:
        svc.open_session()
        item = svc.next_case()
    return svc.open_case(item.case_read_id)


def read_until(svc: reader_study.ReadingService, aided: bool) -> reader_study.CaseView:
    """Finish cases until the open one is in the wanted treatment (aided or not); returns it."""
    while True:
        view = open_next(svc)
        if bool(view.overlays) == aided and not view.training:
            return view
        svc.finish_case(view.case_read_id, no_lesion=True, reading_time_s=1.0)


# ------------------------------------------------------------------------------------------------
def test_an_image_link_works_only_with_the_log_in_it_was_made_for(rig):
    cookie = rig.log_in("reader1")
    view = open_next(rig.service("reader1"))
    ticket = rig.ticket("reader1", cookie, view)
    ok = rig.image(ticket, cookie=cookie)
    assert ok.status == 200 and "no-store" in ok.headers["cache-control"]  # the browser's cache never answers a replay
    no_cookie = rig.image(ticket)
    assert no_cookie.status == 401 and "no session cookie" in no_cookie.text
    # the same reader logged in in another browser: another session, refused
    assert rig.image(ticket, cookie=rig.log_in("reader1")).status == 401
    # another reader's log-in (reader vs reader)
    assert rig.image(ticket, cookie=rig.log_in("reader2")).status == 401
    # a made-up cookie, and a forged or altered ticket
    assert rig.image(ticket, cookie="forged-cookie-value").status == 401
    assert rig.image("A" * 43, cookie=cookie).status == 401
    assert rig.image(ticket[:-2] + ("AA" if not ticket.endswith("AA") else "BB"), cookie=cookie).status == 401


def test_a_ticket_for_another_readers_case_read_is_refused(rig):
    """Even a ticket the server issued, if it names a case read of another reader (reader vs reader)."""
    cookie = rig.log_in("reader1")
    theirs = open_next(rig.service("reader2"))
    forged = rig.ticket("reader1", cookie, theirs)
    reply = rig.image(forged, cookie=cookie)
    assert reply.status == 401 and "not for a reading of yours" in reply.text


def test_the_aid_never_reaches_the_unaided_reading_even_from_an_earlier_reading(rig):
    cookie = rig.log_in("reader2")
    svc = rig.service("reader2")
    aided = read_until(svc, aided=True)
    aided_ticket = rig.ticket("reader2", cookie, aided)
    assert rig.image(aided_ticket, "zmap", cookie).status == 200
    assert rig.image(aided_ticket, "subtraction", cookie).status == 200
    # the overlay riding with the raw CT slice (the viewer's aided request): the CT's bytes, then the overlay's
    both = rig.image(aided_ticket, "ct", cookie, query="fmt=raw&overlay=zmap")
    ct_only = rig.image(aided_ticket, "ct", cookie, query="fmt=raw")
    assert both.status == 200 and both.body.startswith(ct_only.body) and len(both.body) == len(ct_only.body) * 3 // 2 + 1024
    case = aided.case_code
    svc.finish_case(aided.case_read_id, no_lesion=True, reading_time_s=1.0)
    # the case read is finished: its link is dead, whatever it asks for (replay after finishing)
    for layer in ("ct", "zmap"):
        assert rig.image(aided_ticket, layer, cookie).status == 401
    # read on until the same case comes up unaided (the crossover's other session)
    while True:
        view = open_next(svc)
        if view.case_code == case:
            break
        svc.finish_case(view.case_read_id, no_lesion=True, reading_time_s=1.0)
    assert not view.overlays
    unaided_ticket = rig.ticket("reader2", cookie, view)
    assert rig.image(unaided_ticket, "ct", cookie).status == 200
    for layer in ("zmap", "subtraction", "subtraction_vm", "warped_prior"):
        assert rig.image(unaided_ticket, layer, cookie).status == 403
        assert rig.image(unaided_ticket, layer, cookie, query="fmt=raw").status == 403
    # the overlay cannot ride in with the CT either: the whole response is refused, no CT bytes with it
    reply = rig.image(unaided_ticket, "ct", cookie, query="fmt=raw&overlay=zmap")
    assert reply.status == 403 and reply.headers["content-type"].startswith("application/json")
    for query in ("fmt=raw&overlay=subtraction", "fmt=png&wl=40&ww=400&overlay=zmap"):
        assert rig.image(unaided_ticket, "ct", cookie, query=query).status == 400
    assert rig.image(aided_ticket, "zmap", cookie).status == 401  # the earlier reading's link, replayed now
    # a ticket claiming the aids for this unaided case read (the treatment differs): refused
    widened = rig.ticket("reader2", cookie, view, layers=allowed_layers(("subtraction", "zmap")))
    reply = rig.image(widened, "zmap", cookie)
    assert reply.status == 401 and "another treatment" in reply.text


def test_the_localizer_shows_the_current_exam_only_and_dies_with_the_reading(rig):
    """The localizer route takes no layer: in the unaided reading it is the current CT's projection, never an aid,
    refused without the log-in and after the case read is finished, like a slice image."""
    import numpy as np
    from PIL import Image

    from reading_app.workstation.localizer import projection
    from reading_app.workstation.render import WINDOW_PRESETS, window_to_uint8

    cookie = rig.log_in("reader2")
    svc = rig.service("reader2")
    view = read_until(svc, aided=False)
    ticket = rig.ticket("reader2", cookie, view)

    def get(plane: str, c: str | None = cookie, t: str = ticket):  # noqa: ANN202
        return request(rig.app, "GET", f"{API}/localizer/{t}/{plane}", cookies={SESSION_COOKIE: c} if c else None)

    reply = get("coronal")
    assert reply.status == 200 and reply.headers["content-type"] == "image/png" and "no-store" in reply.headers["cache-control"]
    shown = np.asarray(Image.open(io.BytesIO(reply.body)))
    bone = WINDOW_PRESETS[0]
    current = rig.rt.volumes.get(view.current_path, "ct").array
    assert np.array_equal(
        shown, window_to_uint8(projection(current, "coronal"), bone.level_hu, bone.width_hu)
    )  # the current CT, nothing laid over it
    assert get("sagittal").status == 200
    assert get("axial").status == 400 and get("..%2F..").status in (400, 404)
    assert get("coronal", c=None).status == 401
    assert get("coronal", c=rig.log_in("reader1")).status == 401  # another reader's log-in
    svc.finish_case(view.case_read_id, no_lesion=True, reading_time_s=1.0)
    assert get("coronal").status == 401


def test_path_traversal_in_the_image_route_reaches_no_file(rig):
    cookie = rig.log_in("reader1")
    view = open_next(rig.service("reader1"))
    ticket = rig.ticket("reader1", cookie, view)
    for layer in ("..%2F..%2F..%2Fetc%2Fpasswd", "..", "ct%00", "CT", "truth"):
        reply = rig.image(ticket, layer, cookie)
        assert reply.status in (400, 403, 404), (layer, reply.status)
        assert b"root:" not in reply.body
    for plane in ("..%2F..", "oblique"):
        assert rig.image(ticket, "ct", cookie, plane=plane).status in (400, 404)
    assert rig.image(ticket, "ct", cookie, index=10_000).status == 400


def test_image_links_die_with_the_session(rig):
    cookie = rig.log_in("reader1")
    view = open_next(rig.service("reader1"))
    ticket = rig.ticket("reader1", cookie, view)
    assert rig.image(ticket, cookie=cookie).status == 200
    # the coordinator revokes the session (in the database)
    with rig.db.snapshot() as s:
        live = reader_study.list_web_sessions(s)
    sid = int(live.loc[live["username"] == "reader1", "session"].iloc[-1])
    with rig.db.transaction() as s:
        reader_study.revoke_web_session(s, sid, actor="app:coordinator")
    assert rig.image(ticket, cookie=cookie).status == 401
    assert rig.rt.sessions.lookup(cookie) is None
    # log-out through the route ends the session and its tickets
    cookie2 = rig.log_in("reader1")
    ticket2 = rig.ticket("reader1", cookie2, view)
    assert (
        request(rig.app, "POST", f"{API}/session/logout", cookies={SESSION_COOKIE: cookie2}, headers={"origin": "http://127.0.0.1:8501"}).status
        == 200
    )
    assert rig.image(ticket2, cookie=cookie2).status == 401


def test_sessions_survive_a_restart_and_old_links_do_not(rig):
    cookie = rig.log_in("reader2")
    view = open_next(rig.service("reader2"))
    ticket = rig.ticket("reader2", cookie, view)
    assert rig.image(ticket, cookie=cookie).status == 200
    rig.restart()
    assert rig.rt.sessions.lookup(cookie) is not None  # still logged in
    assert rig.image(ticket, cookie=cookie).status == 401  # the page asks for a new ticket
    assert rig.image(rig.ticket("reader2", cookie, view), cookie=cookie).status == 200


def test_cross_site_posts_are_refused(rig):
    cookie = rig.log_in("reader1")
    for headers in ({"origin": "http://evil.example"}, {"sec-fetch-site": "cross-site"}, {"origin": "null"}):
        reply = request(rig.app, "POST", f"{API}/session/logout", cookies={SESSION_COOKIE: cookie}, headers=headers)
        assert reply.status == 403, headers
        claim = request(rig.app, "POST", f"{API}/session/claim", headers=headers, body=b'{"code": "x"}')
        assert claim.status == 403
    assert rig.rt.sessions.lookup(cookie) is not None  # the forged log-out did nothing
    # a claim code works once, from the app's own page
    account = rig.account("reader1")
    _, code = rig.rt.sessions.create(account_id=account.account_id, username=account.username)
    body = ('{"code": "%s"}' % code).encode()
    first = request(rig.app, "POST", f"{API}/session/claim", headers={"origin": "http://127.0.0.1:8501", "sec-fetch-site": "same-origin"}, body=body)
    assert first.status == 200 and "httponly" in first.headers["set-cookie"].lower() and "samesite=strict" in first.headers["set-cookie"].lower()
    assert request(rig.app, "POST", f"{API}/session/claim", body=body).status == 401


def test_downloads_need_the_page_s_authorisation(rig, tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "APP-TEST-jafroc.xlsx").write_bytes(b"workbook")
    coordinator = rig.log_in("coordinator")
    account = rig.account("coordinator")
    token = rig.rt.downloads.offer(
        session_key=rig.rt.sessions.key_of(coordinator),
        account_id=account.account_id,
        roles=frozenset({"coordinator", "statistician"}),
        path=folder,
        filename="export.zip",
    )
    url = f"{API}/download/{token}"
    assert request(rig.app, "GET", url).status == 401  # no cookie (the media-URL hole of st.download_button)
    assert request(rig.app, "GET", url, cookies={SESSION_COOKIE: rig.log_in("reader1")}).status == 401  # a reader
    assert request(rig.app, "GET", url, cookies={SESSION_COOKIE: rig.log_in("coordinator")}).status == 401  # another browser
    assert request(rig.app, "GET", f"{API}/download/made-up", cookies={SESSION_COOKIE: coordinator}).status == 404
    reply = request(rig.app, "GET", url, cookies={SESSION_COOKIE: coordinator})
    assert reply.status == 200 and reply.headers["content-disposition"].startswith("attachment")
    assert zipfile.ZipFile(io.BytesIO(reply.body)).namelist() == ["export/APP-TEST-jafroc.xlsx"]
    # the account is disabled: its sessions end, the link with them
    with rig.db.transaction() as s:
        reader_study.set_account_active(s, "coordinator", False, actor="app:admin")
    rig.rt.sessions.forget(account_id=account.account_id)
    assert request(rig.app, "GET", url, cookies={SESSION_COOKIE: coordinator}).status == 401


def test_no_truth_route_exists(rig):
    cookie = rig.log_in("reader1")
    for path in ("/truth", "/lesions", "/marks", "/study/APP-TEST", "/session/list"):
        assert request(rig.app, "GET", API + path, cookies={SESSION_COOKIE: cookie}).status == 404


def test_the_server_refuses_a_window_the_inputs_refuse(rig):
    """One limit (WINDOW_LIMITS_HU) for the W/L inputs and the image route: a wider window is a 400, not an image."""
    from reading_app.workstation.render import WINDOW_LIMITS_HU

    cookie = rig.log_in("reader1")
    ticket = rig.ticket("reader1", cookie, open_next(rig.service("reader1")))
    widest = int(WINDOW_LIMITS_HU["widthMax"])
    assert rig.image(ticket, cookie=cookie, query=f"fmt=png&wl=40&ww={widest}").status == 200
    for query in (f"fmt=png&wl=40&ww={widest + 1}", "fmt=png&wl=40&ww=20000", f"fmt=jpeg&wl={int(WINDOW_LIMITS_HU['levelMax']) + 1}&ww=400"):
        reply = rig.image(ticket, cookie=cookie, query=query)
        assert reply.status == 400 and f"width 1 to {widest} HU" in reply.text, query
    # raw values carry no window (the browser applies it): the same slice, int16 little-endian
    raw = rig.image(ticket, cookie=cookie, query="fmt=raw")
    assert raw.status == 200 and raw.headers["content-type"] == "application/octet-stream" and "no-store" in raw.headers["cache-control"]
    assert len(raw.body) % 2 == 0 and len(raw.body) > 0
