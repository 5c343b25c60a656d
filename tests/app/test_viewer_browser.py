"""The viewer's reading tools in headless Debian Chromium: HU readout, ruler, cine, W/L inputs and W/L drag.

One app server for the module (the fixtures and helpers of :mod:`tests.app.test_browser`), one
reader per test. Every step waits for a state of the page (a data attribute, a message), never a time.
"""

from __future__ import annotations

import numpy as np
import pytest

from reading_app.workstation import DisplayGrid, ViewTransform

from .test_browser import browser, current_case, log_in, new_page, open_reading, reader_service, server, shown_slice  # noqa: F401  (fixtures)
from .test_readout import _file_hu

pytestmark = pytest.mark.browser


def _grid(view) -> DisplayGrid:  # noqa: ANN001
    g = view.grid
    return DisplayGrid.from_geometry(g.size_xyz, g.spacing_mm, g.origin_mm, g.direction)


def _screen(page, grid: DisplayGrid, plane: str, u: float, v: float) -> tuple[float, float]:
    """Page coordinates of image point (u, v) on the main panel at zoom 1 (the formula the viewer draws with)."""
    box = page.locator(".vp.main").bounding_box()
    x, y = ViewTransform.for_plane(grid.plane(plane), box["width"], box["height"]).image_to_screen(u, v)
    return box["x"] + x, box["y"] + y


def _window(page) -> tuple[int, int]:
    """(level, width) of the picture on screen (the main canvas's ``data-shown`` is plane:slice:level:width)."""
    _, _, level, width = page.locator(".vp.main canvas").get_attribute("data-shown").split(":")
    return int(level), int(width)


def _reading(server, browser, reader: str):  # noqa: ANN001, ANN202
    """A new browser context logged in as ``reader`` on the reading page with its first image drawn: (context, page, the case read's view)."""
    context, page = new_page(browser)
    log_in(page, server, reader)
    open_reading(page, server)
    return context, page, current_case(reader_service(server, reader))


def test_the_hu_readout_shows_the_exams_hu_under_the_cursor_and_the_prior_beside_it(server, browser):
    context, page, view = _reading(server, browser, "reader1")
    grid = _grid(view)
    s = shown_slice(page)
    col, row = 20, 18
    page.mouse.move(*_screen(page, grid, "axial", col + 0.5, row + 0.5))
    readout = page.locator(f".readout[data-slice='{s}'][data-hu]:not([data-hu=''])")
    readout.wait_for()
    point = grid.image_point_to_mm("axial", s, col + 0.5, row + 0.5)
    expected = _file_hu(view.current_path, point)
    assert float(readout.get_attribute("data-hu")) == expected
    assert f"{expected:.0f} HU" in readout.inner_text() and "mm LPS" in readout.inner_text()
    # the prior beside it (P): its HU at the same anatomy, and the crosshair there
    page.keyboard.press("p")
    page.locator(".vp.side canvas[data-shown^='prior:axial:']").wait_for()
    page.mouse.move(*_screen(page, grid, "axial", col + 0.2, row + 0.7))
    linked = page.locator(".readout[data-linked-hu]:not([data-linked-hu=''])")
    linked.wait_for()
    page.locator(".vp.side svg.cross[data-at]").wait_for()
    assert float(linked.get_attribute("data-linked-hu")) == _file_hu(view.prior_path, point)  # same grid in these test pairs
    u, v = (float(c) for c in page.locator(".vp.side svg.cross").get_attribute("data-at").split(","))
    assert (u, v) == pytest.approx((col + 0.2, row + 0.7), abs=0.08)
    context.close()


def test_the_ruler_measures_millimetres_on_the_grid_spacing_and_saves_no_mark(server, browser):
    context, page = new_page(browser)
    log_in(page, server, "reader2")
    open_reading(page, server)
    svc = reader_service(server, "reader2")
    view = current_case(svc)
    grid = _grid(view)
    # coronal images: u along x (0.8 mm pixels), v along z (2.5 mm slices): anisotropic on purpose
    page.keyboard.press("c")
    page.locator(".vp.main canvas[data-shown^='coronal:']").wait_for()
    page.keyboard.press("d")
    page.locator(".tsct-viewer[data-tool='ruler']").wait_for()
    a, b = (10.5, 4.5), (30.5, 12.5)
    page.mouse.click(*_screen(page, grid, "coronal", *a))
    page.mouse.click(*_screen(page, grid, "coronal", *b))
    ruler = page.locator(".vp.main svg[data-ruler-mm]")
    ruler.wait_for()
    du, dv = grid.plane("coronal").du_mm, grid.plane("coronal").dv_mm
    expected = float(np.hypot((b[0] - a[0]) * du, (b[1] - a[1]) * dv))  # 16 mm across, 20 mm down: 25.6 mm
    box = page.locator(".vp.main").bounding_box()
    one_px_mm = 1.0 / ViewTransform.for_plane(grid.plane("coronal"), box["width"], box["height"]).fit_px_per_mm
    assert float(ruler.get_attribute("data-ruler-mm")) == pytest.approx(expected, abs=one_px_mm)  # clicks land on whole screen pixels
    assert page.locator(".vp.main svg g.ruler text").text_content() == f"{float(ruler.get_attribute('data-ruler-mm')):.1f} mm"
    assert svc.marks(view.case_read_id) == []
    page.keyboard.press("Escape")
    page.locator(".vp.main svg.marks:not([data-ruler-mm])").wait_for()
    context.close()


def test_cine_plays_through_the_slices_and_pauses(server, browser):
    context, page = new_page(browser)
    log_in(page, server, "reader3")
    open_reading(page, server)
    s0 = shown_slice(page)
    page.locator("input.fps").fill("0")
    page.locator("input.fps").press("Enter")
    page.get_by_text("Cine speed must be a whole number of frames per second from 1 to 30.").wait_for()
    page.locator("input.fps").fill("12")
    page.locator("input.fps").press("Enter")
    page.locator("button.cine").click()
    page.locator(".tsct-viewer[data-cine='playing']").wait_for()
    n = int(page.locator("input.slice").get_attribute("max")) + 1
    # three slices on (wrapping after the last), each drawn in turn
    page.wait_for_function(
        """([s0, n]) => { const c = [...document.querySelectorAll('*')].map(e => e.shadowRoot).filter(Boolean)
             .map(r => r.querySelector('.vp.main canvas')).find(Boolean);
           const s = Number(c.dataset.shown.split(':')[1]); return (s - s0 + n) % n >= 3; }""",
        arg=[s0, n],
    )
    page.keyboard.press(" ")
    page.locator(".tsct-viewer[data-cine='paused']").wait_for()
    assert page.locator("button.cine").inner_text().strip() == "▶ Cine"
    context.close()


def test_a_wrong_window_is_named_and_not_applied(server, browser):
    context, page = new_page(browser)
    log_in(page, server, "reader4")
    open_reading(page, server)
    before = _window(page)
    page.locator("input.ww").fill("0")
    page.locator("input.ww").press("Enter")
    message = page.locator(".wl-message")
    page.get_by_text("Window width must be a number greater than 0").wait_for()
    assert page.locator("input.ww[aria-invalid='true']").count() == 1
    assert _window(page) == before
    page.locator("input.ww").fill("400")
    page.locator("input.ww").press("Enter")
    page.locator(f".vp.main canvas[data-shown$=':{before[0]}:400']").wait_for()
    assert message.inner_text() == ""
    page.locator("input.wl").fill("-5000")
    page.locator("input.wl").press("Enter")
    page.get_by_text("Window level must be a number from -2000 to 4000 HU (not -5000).").wait_for()
    assert _window(page) == (before[0], 400)
    page.locator("input.wl").fill("55")
    page.locator("input.wl").press("Enter")
    page.locator(".vp.main canvas[data-shown$=':55:400']").wait_for()
    assert message.inner_text() == ""
    context.close()


def test_dragging_changes_the_window_as_in_a_pacs(server, browser):
    context, page = new_page(browser)
    log_in(page, server, "reader5")
    open_reading(page, server)
    box = page.locator(".vp.main").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    level0, width0 = _window(page)
    # right-drag: right = wider, down = higher level
    page.mouse.move(cx, cy)
    page.mouse.down(button="right")
    page.mouse.move(cx + 30, cy + 20, steps=5)
    page.mouse.up(button="right")
    page.locator(f".vp.main canvas[data-shown$=':{level0 + 40}:{width0 + 120}']").wait_for()
    # the default tool's left-drag windows too; left = narrower
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx - 25, cy, steps=5)
    page.mouse.up()
    page.locator(f".vp.main canvas[data-shown$=':{level0 + 40}:{width0 + 20}']").wait_for()
    # with the Pan tool, left-drag pans and the window stays; Ctrl + left-drag still windows
    page.keyboard.press("h")
    page.locator(".tsct-viewer[data-tool='pan']").wait_for()
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + 40, cy + 40, steps=5)
    page.mouse.up()
    assert _window(page) == (level0 + 40, width0 + 20)
    page.keyboard.down("Control")
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx, cy - 10, steps=5)
    page.mouse.up()
    page.keyboard.up("Control")
    page.locator(f".vp.main canvas[data-shown$=':{level0 + 20}:{width0 + 20}']").wait_for()
    context.close()


_DRAWN_GREY = """() => {
  const host = [...document.querySelectorAll('*')].find(e => e.shadowRoot && e.shadowRoot.querySelector('.tsct-viewer'));
  const o = host.shadowRoot.querySelector('.tsct-viewer').__tsct.offscreen.main;
  const px = o.ctx.getImageData(0, 0, o.canvas.width, o.canvas.height).data;
  const grey = [];
  for (let i = 0; i < px.length; i += 4) grey.push(px[i]);
  return { w: o.canvas.width, h: o.canvas.height, grey };
}"""

_ALL_LOADED = """() => {
  const host = [...document.querySelectorAll('*')].find(e => e.shadowRoot && e.shadowRoot.querySelector('.tsct-viewer'));
  return [...host.shadowRoot.querySelector('.tsct-viewer').__tsct.cache.values()].every(e => e.ok || e.err);
}"""

_IMAGE_REQUESTS = "() => performance.getEntriesByType('resource').filter(e => e.name.includes('/api/tsct/v1/image/')).length"


def test_the_browser_windows_the_raw_slice_as_the_server_does_and_a_window_change_asks_for_no_image(server, browser):
    from reading_app.workstation import read_display_volume, window_to_uint8
    from reading_app.workstation.geometry import extract_slice

    context, page, view = _reading(server, browser, "reader1")
    s = shown_slice(page)
    values = extract_slice(read_display_volume(view.current_path, "ct").array, "axial", s)

    def drawn() -> np.ndarray:
        out = page.evaluate(_DRAWN_GREY)
        return np.array(out["grey"], dtype=np.uint8).reshape(out["h"], out["w"])

    level, width = _window(page)
    assert np.array_equal(drawn(), window_to_uint8(values, level, width))  # the server's window_to_uint8, done in the browser
    page.wait_for_function(_ALL_LOADED)  # the prefetched neighbours are in
    requests = page.evaluate(_IMAGE_REQUESTS)
    page.locator("input.ww").fill("600")
    page.locator("input.ww").press("Enter")
    page.locator(f".vp.main canvas[data-shown='axial:{s}:{level}:600']").wait_for()
    assert np.array_equal(drawn(), window_to_uint8(values, level, 600))
    assert page.evaluate(_IMAGE_REQUESTS) == requests  # windowed from the slice already here
    context.close()
