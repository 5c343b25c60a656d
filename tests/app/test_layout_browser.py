"""The reading page's layout and the localizer, in headless Debian Chromium.

The image must take most of the window in the normal reading page (not only with Fill), and the
localizer beside it must follow the slice shown, mirror the cursor and take the reader to the slice
clicked. One app server for the module (the fixtures of :mod:`tests.app.test_browser`), one reader
per test; every step waits for a state of the page, never a time.
"""

from __future__ import annotations

import pytest

from reading_app.workstation import ViewTransform

from .test_browser import browser, current_case, log_in, new_page, open_reading, reader_service, server, shown_slice, wait_slice  # noqa: F401
from .test_viewer_browser import _grid, _screen

pytestmark = pytest.mark.browser

_BOXES = """() => {
  const root = [...document.querySelectorAll('*')].map(e => e.shadowRoot).filter(Boolean).map(r => r.querySelector('.tsct-viewer')).find(Boolean);
  const box = (el) => { const r = el.getBoundingClientRect(); return {x: r.left, y: r.top, w: r.width, h: r.height}; };
  const side = [...document.querySelectorAll('[data-testid="stColumn"]')].map(box).sort((a, b) => b.w * b.h - a.w * a.h);
  return {viewer: box(root), main: box(root.querySelector('.vp.main')), rail: box(root.querySelector('.rail')),
          loc: box(root.querySelector('.loc')), columns: side, layoutFor: Number(root.dataset.layoutFor)};
}"""


def _boxes_at(page, w: int, h: int) -> dict:
    page.set_viewport_size({"width": w, "height": h})
    page.wait_for_function(
        "(w) => [...document.querySelectorAll('*')].map(e => e.shadowRoot).filter(Boolean).map(r => r.querySelector('.tsct-viewer'))"
        ".some(v => v && Number(v.dataset.layoutFor) === w)",
        arg=w,
    )
    return page.evaluate(_BOXES)


def test_the_image_takes_most_of_the_window_in_the_reading_page(server, browser):
    context, page = new_page(browser)
    log_in(page, server, "reader1")
    open_reading(page, server)
    for w, h in ((1280, 720), (1366, 768), (1920, 1080)):
        b = _boxes_at(page, w, h)
        main = b["main"]
        # the main image panel: at least half the window, the largest thing on the page but the
        # viewer holding it, and the whole viewer (controls to readout) on screen without scrolling
        assert main["w"] * main["h"] >= 0.5 * w * h, (w, h, main)
        others = [c for c in b["columns"] if c["w"] < b["viewer"]["w"]] + [b["rail"]]
        assert all(main["w"] * main["h"] > o["w"] * o["h"] for o in others), (w, h, b)
        assert b["viewer"]["y"] >= 0 and b["viewer"]["y"] + b["viewer"]["h"] <= h + 0.5, (w, h, b["viewer"])
    context.close()


def test_the_localizer_follows_the_slice_mirrors_the_cursor_and_a_click_goes_there(server, browser):
    context, page = new_page(browser)
    log_in(page, server, "reader2")
    open_reading(page, server)
    view = current_case(reader_service(server, "reader2"))
    grid = _grid(view)
    coronal = grid.plane("coronal")
    page.locator(".loc canvas[data-shown='coronal']").wait_for()
    loc = page.locator(".loc").bounding_box()
    T = ViewTransform.for_plane(coronal, loc["width"], loc["height"])
    line = page.locator(".loc svg")

    def line_y(s: int) -> float:
        return T.image_to_screen(0.0, s + 0.5)[1]  # axial slice s is row s of the coronal picture

    s = shown_slice(page)
    page.locator(f".loc svg[data-line='axial:{s}']").wait_for()
    assert float(line.get_attribute("data-line-px")) == pytest.approx(line_y(s), abs=0.06)
    # scrolling moves the line with the slice
    page.keyboard.press("ArrowDown")
    wait_slice(page, s + 1)
    page.locator(f".loc svg[data-line='axial:{s + 1}']").wait_for()
    assert float(line.get_attribute("data-line-px")) == pytest.approx(line_y(s + 1), abs=0.06)
    # the cursor on the axial image is mirrored on the localizer: its column, on the slice's row
    page.mouse.move(*_screen(page, grid, "axial", 12.5, 20.5))
    page.locator(".loc svg[data-cursor]").wait_for()
    u, v = (float(c) for c in line.get_attribute("data-cursor").split(","))
    assert (u, v) == pytest.approx((12.5, s + 1.5), abs=0.05)
    # a click on the localizer goes to the slice under it
    target = 3 if s + 1 != 3 else 4
    page.mouse.click(loc["x"] + loc["width"] / 2, loc["y"] + line_y(target))
    wait_slice(page, target)
    page.locator(f".loc svg[data-line='axial:{target}']").wait_for()
    # with the coronal view, the localizer is the sagittal picture and the line is the coronal slice's column
    page.keyboard.press("c")
    page.locator(".loc canvas[data-shown='sagittal']").wait_for()
    sc = int(page.locator(".vp.main canvas[data-shown^='coronal:']").get_attribute("data-shown").split(":")[1])
    page.locator(f".loc svg[data-line='coronal:{sc}']").wait_for()
    # the localizer's pictures came through the ticket-checked route, for the current CT only
    assert all(
        "/localizer/" in u and u.rsplit("/", 1)[1] in ("coronal", "sagittal")
        for u in page.evaluate("() => performance.getEntriesByType('resource').map(e => e.name).filter(n => n.includes('/localizer/'))")
    )
    context.close()
