"""Adversarial end-to-end tests in headless Debian Chromium against ``tsct app`` on loopback.

What a determined reader (or a stranger) can do from a browser: replay an image link in another
browser or after the case is finished, log in with guessed passwords, put Markdown in a user
name, make another site post to the app, fetch a download without logging in; and what a
restart of the server does to a reader's log-in. Tests wait for states (an element, a status),
never for a time. Skipped, with the reason, when /usr/bin/chromium or Playwright is missing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

import reader_study

from .conftest import make_app_env
from .test_browser import CHROMIUM, CHROMIUM_ARGS, ROOT, _diagnose, _free_port, finish_current, log_in, new_page, open_reading, settle

pytestmark = pytest.mark.browser

READERS = ("Reader One", "Reader Two", "Reader Three")
LOCK_AFTER = 4
MARKDOWN_NAME = "![pixel](http://tracker.example/p.png)**bold**:red[x]"  # user names allow no spaces


@dataclass
class Server:
    base_url: str
    env: object
    port: int
    log: Path
    process: subprocess.Popen | None = None

    def start(self) -> None:
        handle = self.log.open("a")
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "tsct_cli.py"), "app", "--port", str(self.port)],
            cwd=ROOT,
            env={**os.environ, **self.env.env},
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        while True:  # wait for the state "healthy" (or the process gone)
            try:
                with urllib.request.urlopen(self.base_url + "/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self.process.poll() is not None:
                pytest.fail(f"tsct app did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        # `tsct app` runs Streamlit as a child: wait for the state "port closed", so that the next
        # start's health check cannot be answered by the old server while it shuts down.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def server(tmp_path_factory, app_cases):
    if not CHROMIUM.exists():
        pytest.skip("Debian Chromium is not installed at /usr/bin/chromium (apt-get install -y chromium); browser tests skipped.")
    pytest.importorskip("playwright.sync_api", reason="Playwright (pip install playwright) is needed for the browser tests.")
    folder = tmp_path_factory.mktemp("app-security")
    env = make_app_env(folder / "data", app_cases, readers=READERS)
    env.env["TSCT_LOGIN_LOCK_FAILURES"] = str(LOCK_AFTER)  # a quick lockout, so the test needs no waiting
    db = reader_study.open_db(env.database_url)
    with db.transaction() as s:  # a statistician whose user name is Markdown (an image from an outside server)
        reader_study.create_account(s, MARKDOWN_NAME, "initial-" + env.study.password, role="statistician", actor="test")
    reader_study.change_password(db, MARKDOWN_NAME, "initial-" + env.study.password, env.study.password)
    db.dispose()
    port = _free_port()
    srv = Server(f"http://127.0.0.1:{port}", env, port, folder / "server.log")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def image_urls(page) -> list[str]:
    return page.evaluate("() => performance.getEntriesByType('resource').map(e => e.name).filter(u => u.includes('/api/tsct/v1/image/'))")


def fetch_status(page, url: str) -> int:
    return page.evaluate("u => fetch(u, {credentials: 'same-origin'}).then(r => r.status)", url)


def plain_get(url: str) -> int:
    """A request with no cookie at all (curl, another program)."""
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


# ------------------------------------------------------------------------------------------------
def test_an_image_link_is_refused_in_another_browser_and_after_the_case_is_finished(server, browser):
    context, page = new_page(browser)
    log_in(page, server, "reader1")
    open_reading(page, server)
    url = next(u for u in image_urls(page) if "/ct/" in u)
    assert fetch_status(page, url) == 200
    assert plain_get(url) == 401  # no cookie
    other_context, other = new_page(browser)  # another browser, logged in as the same reader
    log_in(other, server, "reader1")
    other.goto(server.base_url + "/account")
    assert fetch_status(other, url) == 401
    # another reader's browser
    third_context, third = new_page(browser)
    log_in(third, server, "reader2")
    assert fetch_status(third, url) == 401
    # the case is finished: the link dies for its own browser too (a replay from an earlier reading)
    try:
        finish_current(page, no_lesion=True)
    except Exception:
        _diagnose(page, server)
        raise
    page.wait_for_function("u => fetch(u, {credentials: 'same-origin'}).then(r => r.status === 401)", arg=url)
    for c in (context, other_context, third_context):
        c.close()


def test_markdown_in_a_user_name_is_shown_as_text_and_fetches_nothing(server, browser):
    context, page = new_page(browser)
    outside = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(("http://127.0.0.1", "data:", "blob:", "about:")) else None)
    log_in(page, server, MARKDOWN_NAME)
    page.get_by_text("Logged in as " + MARKDOWN_NAME).first.wait_for()  # literally, as typed
    page.get_by_role("link", name="My account").click()
    page.get_by_text("User name " + MARKDOWN_NAME).first.wait_for()
    assert page.locator("img[src*='tracker.example']").count() == 0
    assert outside == []
    context.close()


def _attempts(server, username: str):
    db = reader_study.open_db(server.env.database_url)
    try:
        with db.snapshot() as s:
            return reader_study.recent_login_attempts(s, username=username)
    finally:
        db.dispose()


def _submit(page, server, username: str, password: str):
    """Submit the log-in form; wait for the state "the attempt is recorded"; returns it (outcome, reason)."""
    before = len(_attempts(server, username))
    page.get_by_label("User name").fill(username)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    deadline = time.monotonic() + 60
    while len(attempts := _attempts(server, username)) == before:
        assert time.monotonic() < deadline, "the log-in attempt was not recorded"
        time.sleep(0.1)
    return attempts.iloc[0]


def test_guessed_passwords_are_throttled_and_recorded(server, browser):
    context, page = new_page(browser)
    page.goto(server.base_url + "/")
    outcomes = []
    for _ in range(30):  # guess until the account is locked (the growing delays refuse some guesses unchecked)
        last = _submit(page, server, "reader3", "a wrong guess!")
        outcomes.append(last["outcome"])
        if "locked until" in last["reason"] or (last["outcome"] == "failed" and outcomes.count("failed") == LOCK_AFTER):
            break
    assert outcomes.count("failed") == LOCK_AFTER
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=\"stAlertContentError\"]')].some(e => e.innerText.includes('wrong password') || e.innerText.includes('locked until'))"
    )
    # the right password now: refused, because of the failures before it
    last = _submit(page, server, "reader3", server.env.study.password)
    assert last["outcome"] == "throttled" and "locked until" in last["reason"]
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=\"stAlertContentError\"]')].some(e => e.innerText.includes('locked until'))"
    )
    settle(page)
    assert page.get_by_text("Logged in as").count() == 0
    db = reader_study.open_db(server.env.database_url)
    with db.snapshot() as s:
        accounts = reader_study.list_accounts(s).set_index("username")
    db.dispose()
    assert last["client"] == reader_study.LOCAL_CLIENT  # a browser on this machine
    assert accounts.loc["reader3", "failed_logins_30d"] >= LOCK_AFTER and accounts.loc["reader3", "locked_until"] is not None
    context.close()


def test_another_site_cannot_log_a_reader_out(server, browser):
    """A page on another origin (same site: 127.0.0.1 on another port, so the cookie is sent) posts to the log-out."""
    context, page = new_page(browser)
    log_in(page, server, "reader2")
    evil = f"http://127.0.0.1:{_free_port()}/evil.html"
    form = (
        f"<form id=f method=post action='{server.base_url}/api/tsct/v1/session/logout' enctype='text/plain'>"
        "<input name=x value=y></form><script>document.getElementById('f').submit()</script>"
    )
    context.route(evil, lambda route: route.fulfill(status=200, content_type="text/html", body=form))
    responses = []
    page.on("response", lambda r: responses.append(r.status) if r.url.endswith("/session/logout") else None)
    page.goto(evil)
    page.wait_for_url(f"{server.base_url}/api/tsct/v1/session/logout")
    assert responses == [403]
    page.goto(server.base_url + "/worklist")
    page.get_by_text("Logged in as").first.wait_for()  # still logged in
    context.close()


def test_the_export_download_needs_the_log_in(server, browser):
    # one reader finishes everything (through the reading service), so there is something to export
    db = reader_study.open_db(server.env.database_url)
    with db.snapshot() as s:
        account = reader_study.find_account(s, "reader3")
    svc = reader_study.ReadingService(db, reader_id=account.reader_id, study_code=server.env.study.study_code)
    while True:
        item = svc.next_case()
        if item is None:
            if any(v.status == "scheduled" for v in svc.sessions()):
                svc.open_session()
                continue
            break
        svc.open_case(item.case_read_id)
        svc.finish_case(item.case_read_id, no_lesion=True, reading_time_s=12.0)
    db.dispose()
    context, page = new_page(browser)
    log_in(page, server, "coordinator")
    page.get_by_role("link", name="Exports & backups").click()
    settle(page)
    page.get_by_text("Export the readers who have finished and leave out the others").click()
    page.get_by_role("button", name="Export", exact=True).click()
    link = page.get_by_role("link", name="Download the export (zip)")
    link.wait_for(timeout=120_000)
    href = link.get_attribute("href")
    url = href if href.startswith("http") else server.base_url + href
    assert plain_get(url) == 401  # the URL alone is not enough
    other_context, other = new_page(browser)
    log_in(other, server, "reader1")
    assert fetch_status(other, url) == 401  # a reader's browser
    with page.expect_download() as info:
        link.click()
    assert Path(info.value.path()).read_bytes()[:2] == b"PK"
    other_context.close()
    context.close()


def test_a_reader_stays_logged_in_across_a_server_restart(server, browser):
    context, page = new_page(browser)
    log_in(page, server, "reader2")
    open_reading(page, server)
    server.stop()
    server.start()
    page.reload()
    try:
        page.wait_for_selector(".vp.main canvas[data-shown]")
    except Exception:
        _diagnose(page, server)
        raise
    page.get_by_text("Logged in as").first.wait_for()
    assert page.get_by_role("button", name="Log in").count() == 0
    context.close()
