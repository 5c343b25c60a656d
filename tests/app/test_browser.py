"""End to end in headless Debian Chromium (Playwright) against ``tsct app`` on loopback.

One app server for the module (a study with five readers, so that each test has readers of its
own). Skipped, with the reason, when /usr/bin/chromium or Playwright is missing (install the
Debian package ``chromium``; never ``playwright install``).
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import reader_study
from reading_app.workstation import DisplayGrid, ViewTransform

from .conftest import make_app_env

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
from reading_app.workstation.testing import CHROMIUM_ARGS  # noqa: E402  (one list for tests, screenshots and benches)

ROOT = Path(__file__).resolve().parents[2]
READERS = ("Reader One", "Reader Two", "Reader Three", "Reader Four", "Reader Five")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    base_url: str
    env: object
    process: subprocess.Popen
    log: Path


@pytest.fixture(scope="module")
def server(tmp_path_factory, app_cases):
    if not CHROMIUM.exists():
        pytest.skip("Debian Chromium is not installed at /usr/bin/chromium (apt-get install -y chromium); browser tests skipped.")
    pytest.importorskip("playwright.sync_api", reason="Playwright (pip install playwright) is needed for the browser tests.")
    folder = tmp_path_factory.mktemp("app-e2e")
    env = make_app_env(folder / "data", app_cases, readers=READERS)
    port = _free_port()
    log = folder / "server.log"
    with log.open("w") as handle:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "tsct_cli.py"), "app", "--port", str(port)],
            cwd=ROOT,
            env={**os.environ, **env.env},
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(base + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"tsct app did not start: {log.read_text()[-2000:]}")
        time.sleep(0.3)
    yield Server(base, env, process, log)
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def new_page(browser):
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page._tsct_console = []
    page.on("console", lambda m: page._tsct_console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: page._tsct_console.append(f"page error: {e}"))
    return context, page


def settle(page, seconds: float = 0.4):
    """Let Streamlit finish its rerun (the status widget disappears)."""
    time.sleep(seconds)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')")


def log_in(page, server, username):
    page.goto(server.base_url + "/")
    page.get_by_label("User name").fill(username)
    page.get_by_role("textbox", name="Password").fill(server.env.study.password)
    page.get_by_role("button", name="Log in").click()
    page.get_by_text("Logged in as").first.wait_for()
    deadline = time.monotonic() + 15
    while not any(c["name"] == "tsct_session" for c in page.context.cookies()):  # the log-in cookie (survives reloads)
        assert time.monotonic() < deadline, "the tsct_session cookie was not set after log-in"
        time.sleep(0.1)
    cookie = next(c for c in page.context.cookies() if c["name"] == "tsct_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    settle(page)


def _diagnose(page, server) -> None:
    """On a failure: a screenshot beside the server log, the page text, the browser console and the server log's end."""
    page.screenshot(path=str(server.log.with_name("failure.png")))
    print(page.inner_text("body")[:2000])
    print("\n".join(page._tsct_console))
    print(server.log.read_text()[-3000:])


def open_reading(page, server):
    """Go to the reading page (starting the first session when needed) and wait for the first image."""
    page.goto(server.base_url + "/read")
    start = page.get_by_role("button", name="Start session 1")
    canvas = page.locator(".vp.main canvas[data-shown]")
    try:
        start.or_(canvas).first.wait_for()
        if start.count():
            start.click()
        page.wait_for_selector(".vp.main canvas[data-shown]")
    except Exception:
        _diagnose(page, server)
        raise
    settle(page)


def shown_slice(page) -> int:
    return int(page.locator(".vp.main canvas").get_attribute("data-shown").split(":")[1])


def wait_slice(page, index: int, plane: str = "axial"):
    page.locator(f".vp.main canvas[data-shown^='{plane}:{index}:']").wait_for()


def reader_service(server, username) -> reader_study.ReadingService:
    db = reader_study.open_db(server.env.database_url)
    with db.snapshot() as s:
        account = reader_study.find_account(s, username)
    return reader_study.ReadingService(db, reader_id=account.reader_id, study_code=server.env.study.study_code)


def current_case(svc):
    item = svc.next_case()
    return svc.get_case(item.case_read_id)


_NEXT_VIEWER = "[data-instance]:not([data-instance='{old}']):not([data-instance$=':review']) .vp.main canvas[data-shown]"
_AFTER_FINISH = """old => {
  if ([...document.querySelectorAll('button')].some(b => b.innerText.trim() === 'Continue')) return true;  // training truth
  const text = document.body.innerText;
  if (text.includes('You have finished every case') || /Session \\d+ (is ready|cannot start yet)/.test(text)) return true;
  return [...document.querySelectorAll('[data-instance]')].some(
    e => e.dataset.instance !== old && !e.dataset.instance.endsWith(':review') && e.querySelector('.vp.main canvas[data-shown]'));
}"""


def finish_current(page, *, no_lesion: bool):
    """Finish the case shown; wait for the state after it: the training truth (then Continue), and the
    next case's own viewer showing its first image (not the finished case's viewer still on the page)."""
    old = page.locator("[data-instance]").first.get_attribute("data-instance")
    if no_lesion:
        page.get_by_text("I found no lesion in this case").click()
        settle(page)
        page.get_by_role("button", name="Finish case (no lesion)").click()
    else:
        page.get_by_role("button", name="Finish case", exact=True).click()
    page.wait_for_function(_AFTER_FINISH, arg=old)
    cont = page.get_by_role("button", name="Continue")
    if cont.count():  # training case: its truth is shown first
        cont.click()
    page.wait_for_selector(_NEXT_VIEWER.format(old=old))
    settle(page)


# ------------------------------------------------------------------------------------------------
def test_log_in_scroll_mark_rate_and_reload(server, browser):
    context, page = new_page(browser)
    log_in(page, server, "reader1")
    open_reading(page, server)
    svc = reader_service(server, "reader1")
    view = current_case(svc)
    s0 = shown_slice(page)
    for k in range(1, 4):
        page.keyboard.press("ArrowDown")
        wait_slice(page, s0 + k)
    viewport = page.locator(".vp.main")
    box = viewport.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, 120)
    wait_slice(page, s0 + 4)
    page.keyboard.press("ArrowUp")
    wait_slice(page, s0 + 3)
    s = s0 + 3

    # a plain click with the default tool (window/level) places nothing; with the Mark tool (M) it marks
    page.keyboard.press("m")
    page.locator(".tsct-viewer[data-tool='mark']").wait_for()
    viewport.click(position={"x": box["width"] / 2, "y": box["height"] / 2})
    page.get_by_text("how confident are you that this is a lesion").wait_for()
    assert svc.marks(view.case_read_id) == []
    page.get_by_role("button", name="4", exact=True).click()
    page.get_by_text("Mark saved with rating 4.").wait_for()
    marks = svc.marks(view.case_read_id)
    assert len(marks) == 1 and marks[0].rating == 4
    # the centre of the viewport at zoom 1 is the centre of the image, on the slice shown
    g = view.grid
    grid = DisplayGrid.from_geometry(g.size_xyz, g.spacing_mm, g.origin_mm, g.direction)
    plane = grid.plane("axial")
    expected = grid.image_point_to_mm("axial", s, plane.n_u / 2, plane.n_v / 2)
    one_px_mm = 1.0 / ViewTransform.for_plane(plane, box["width"], box["height"]).fit_px_per_mm  # the browser rounds to whole pixels
    assert np.allclose(marks[0].point_mm, expected, atol=one_px_mm), (marks[0].point_mm, expected)
    assert marks[0].point_mm[2] == pytest.approx(expected[2], abs=1e-9)  # on the slice shown
    page.wait_for_selector(".vp.main svg g.mark")

    page.reload()
    page.wait_for_selector(".vp.main canvas[data-shown]")
    settle(page)
    page.get_by_text("Marks on this case: 1").wait_for()
    assert shown_slice(page) == s  # the view is restored after a reload
    page.wait_for_selector(f".vp.main svg g.mark[data-mark-id='{marks[0].mark_id}']")
    assert len(svc.marks(view.case_read_id)) == 1
    context.close()


def test_double_click_makes_one_mark(server, browser):
    context, page = new_page(browser)
    log_in(page, server, "reader2")
    open_reading(page, server)
    svc = reader_service(server, "reader2")
    view = current_case(svc)
    box = page.locator(".vp.main").bounding_box()
    page.locator(".vp.main").dblclick(position={"x": box["width"] * 0.4, "y": box["height"] * 0.45})
    page.get_by_text("how confident are you that this is a lesion").wait_for()
    page.get_by_role("button", name="3", exact=True).dblclick()
    page.get_by_text("Mark saved with rating 3.").wait_for()
    settle(page, 1.0)
    assert [m.rating for m in svc.marks(view.case_read_id)] == [3]
    assert page.get_by_text("Marks on this case: 1").count() == 1
    # finishing the case moves on to the next one in the reader's order
    finish_current(page, no_lesion=False)
    assert svc.get_case(view.case_read_id).status == "finished"
    nxt = svc.next_case()
    page.get_by_text(f"case {nxt.position} of {nxt.n_in_session}").wait_for()
    context.close()


def test_two_readers_never_see_each_others_marks(server, browser):
    ca, a = new_page(browser)
    cb, b = new_page(browser)
    log_in(a, server, "reader3")
    log_in(b, server, "reader4")
    open_reading(a, server)
    open_reading(b, server)
    box = a.locator(".vp.main").bounding_box()
    a.locator(".vp.main").dblclick(position={"x": box["width"] * 0.5, "y": box["height"] * 0.5})
    a.get_by_text("how confident are you that this is a lesion").wait_for()
    a.keyboard.press("5")  # rate with the keyboard
    a.get_by_text("Mark saved with rating 5.").wait_for()
    a.wait_for_selector(".vp.main svg g.mark")
    b.reload()
    b.wait_for_selector(".vp.main canvas[data-shown]")
    settle(b, 1.0)
    assert b.get_by_text("Marks on this case: 0").count() == 1
    assert b.locator(".vp.main svg g.mark").count() == 0
    assert reader_service(server, "reader4").marks(current_case(reader_service(server, "reader4")).case_read_id) == []
    svc3 = reader_service(server, "reader3")
    assert len(svc3.marks(current_case(svc3).case_read_id)) == 1
    ca.close()
    cb.close()


def test_no_overlay_request_succeeds_in_the_unaided_reading(server, browser):
    context, page = new_page(browser)
    responses = []
    page.on("response", lambda r: responses.append((r.url, r.status)) if "/api/tsct/v1/image/" in r.url else None)
    log_in(page, server, "reader5")
    open_reading(page, server)
    svc = reader_service(server, "reader5")
    checked = set()
    for _ in range(6):
        view = current_case(svc)
        aided = bool(view.overlays)
        page.keyboard.press("o")  # overlay off and on again: does nothing without a z-map layer
        page.keyboard.press("o")
        page.keyboard.press("ArrowDown")
        settle(page, 1.0)
        seen = list(responses)  # every image request since this case opened
        ct_url = [url for url, status in seen if "/ct/" in url and status == 200][-1]
        probes = {layer: ct_url.split("?")[0].replace("/ct/", f"/{layer}/") for layer in ("zmap", "subtraction")}
        statuses = {layer: page.evaluate("u => fetch(u).then(r => r.status)", url) for layer, url in probes.items()}
        # the overlay comes as a layer of its own, or riding with the raw CT slice (overlay=zmap)
        overlay = lambda url: "/zmap/" in url or "overlay=zmap" in url  # noqa: E731
        if aided:
            assert statuses == {"zmap": 200, "subtraction": 200}, (statuses, ct_url, view.case_code, seen[-6:])
            assert any(overlay(url) and status == 200 for url, status in seen)  # the overlay is on by default
            assert page.locator(".vp.main canvas[data-overlay='1']").count() == 1  # and drawn
        else:
            assert statuses == {"zmap": 403, "subtraction": 403}
            assert page.evaluate("u => fetch(u + '?fmt=raw&overlay=zmap').then(r => r.status)", ct_url.split("?")[0]) == 403
            assert not any((overlay(url) or "/subtraction/" in url) and status == 200 for url, status in seen)
            assert page.locator("input.overlay-toggle").count() == 0
        checked.add(aided)
        if checked == {True, False}:
            break
        responses.clear()
        finish_current(page, no_lesion=True)
    assert checked == {True, False}
    context.close()


def test_coordinator_exports_the_study(server, browser):
    # one reader finishes everything (through the reading service), so there is something to export
    svc = reader_service(server, "reader5")
    while True:
        item = svc.next_case()
        if item is None:
            if any(v.status == "scheduled" for v in svc.sessions()):
                svc.open_session()
                continue
            break
        svc.open_case(item.case_read_id)
        svc.finish_case(item.case_read_id, no_lesion=True, reading_time_s=12.0)
    context, page = new_page(browser)
    log_in(page, server, "coordinator")
    page.get_by_role("link", name="Exports & backups").click()
    settle(page)
    page.get_by_text("Export the readers who have finished and leave out the others").click()
    page.get_by_role("button", name="Export", exact=True).click()
    link = page.get_by_role("link", name="Download the export (zip)")  # served only to this log-in (docs/security.md)
    link.wait_for(timeout=60_000)
    with page.expect_download() as info:
        link.click()
    data = Path(info.value.path()).read_bytes()
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert any(n.endswith("APP-TEST-jafroc.xlsx") for n in names)
    assert any(n.endswith("provenance.json") for n in names)
    context.close()
