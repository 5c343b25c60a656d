"""How much of the browser window the reading page gives the image, measured in headless Chromium.

What it does:

1. Writes two small synthetic cases with clinical-size slices (512 x 512 voxels of 0.7 mm, 48
   slices of 2.5 mm; ``reader_study.harness.write_synthetic_case_list``) and stand-in detector
   outputs (``reading_app.workstation.testing.write_test_detector_outputs``: they only have to
   render), a study with one reader, and starts ``tsct app`` on 127.0.0.1.
2. Logs in with Playwright (Debian Chromium at /usr/bin/chromium), opens the reading page, and at
   each window size (default 1280x720, 1366x768, 1920x1080) measures, in the normal reading page
   and with the viewer filling the window (F):

   * the main image panel's size and its share of the window;
   * the 512 x 512 slice as drawn (its share of the window: a square image in a 16:9 window can
     take at most (h / w) of it, 56 % at 1280x720);
   * the localizer's size, and whether the whole viewer (toolbar to readout) is on screen
     without scrolling.

Usage::

    .venv/bin/python bench/bench_app_layout.py                  # prints the figures
    .venv/bin/python bench/bench_app_layout.py --screenshots DIR --json reports/app-layout.json

:func:`image_share` is also called by ``bench/bench_app_scroll.py`` on its clinical-size case.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._app import start_app, stop_app, write_results  # noqa: E402
from reading_app.workstation.testing import CHROMIUM_ARGS, CHROMIUM_PATH  # noqa: E402

SIZES = ((1280, 720), (1366, 768), (1920, 1080))

#: The viewer's boxes in page pixels (the viewer lives in a shadow root, out of reach of CSS selectors' pierce).
BOXES_JS = """
() => {
  const host = [...document.querySelectorAll('*')].find(e => e.shadowRoot && e.shadowRoot.querySelector('.tsct-viewer'));
  const root = host.shadowRoot.querySelector('.tsct-viewer');
  const box = (el) => { if (!el || !el.getClientRects().length) return null; const r = el.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; };
  return { viewer: box(root), main: box(root.querySelector('.vp.main')), loc: box(root.querySelector('.loc')),
           imagePx: root.querySelector('.vp.main canvas').dataset.imagePx || '' };
}
"""


def image_share(page, sizes=SIZES, *, screenshots: Path | None = None) -> dict:  # noqa: ANN001
    """Share of the window the main image panel and the drawn slice take at each size, in the page and filling it (F)."""
    out = {}
    for w, h in sizes:
        page.set_viewport_size({"width": w, "height": h})
        for mode in ("page", "fill"):
            if mode == "fill":
                page.keyboard.press("f")
                page.locator(".tsct-viewer.full").wait_for()
            # the viewer lays itself out again on the window's resize event; wait for it to fit
            page.wait_for_function("([w, h]) => window.innerWidth === w && window.innerHeight === h", arg=[w, h])
            page.wait_for_function(
                "(w) => { const m = [...document.querySelectorAll('*')].map(e => e.shadowRoot).filter(Boolean)"
                ".map(r => r.querySelector('.tsct-viewer')).find(Boolean); return m && Number(m.dataset.layoutFor) === w; }",
                arg=w,
            )
            page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
            b = page.evaluate(BOXES_JS)
            _, my, mw, mh = b["main"]
            iw, ih = (int(c) for c in b["imagePx"].split("x"))
            vx, vy, vw, vh = b["viewer"]
            row = {
                "panel_px": [round(mw), round(mh)],
                "panel_share": mw * mh / (w * h),
                "image_px": [iw, ih],
                "image_share": iw * ih / (w * h),
                "localizer_px": [round(b["loc"][2]), round(b["loc"][3])] if b["loc"] else None,
                "viewer_on_screen": vy >= -0.5 and vy + vh <= h + 0.5,
            }
            out[f"{w}x{h}_{mode}"] = row
            print(
                f"at {w}x{h} ({'viewer fills the window' if mode == 'fill' else 'reading page'}): image panel "
                f"{mw:.0f} x {mh:.0f} px ({100 * row['panel_share']:.0f} % of the window), "
                f"the slice drawn {iw} x {ih} px ({100 * row['image_share']:.0f} %), "
                f"localizer {'x'.join(map(str, row['localizer_px'])) if row['localizer_px'] else 'hidden'}, "
                f"whole viewer on screen: {'yes' if row['viewer_on_screen'] else 'NO'}"
            )
            if screenshots is not None:
                screenshots.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshots / f"reading-{w}x{h}-{mode}.png"))
            if mode == "fill":
                page.keyboard.press("Escape")
                page.locator(".tsct-viewer:not(.full)").wait_for()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=None, help="folder for the cases and the study (default: a temporary one)")
    parser.add_argument("--screenshots", type=Path, default=None, help="save a screenshot per window size here")
    parser.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    if not CHROMIUM_PATH.exists():
        sys.exit(f"{CHROMIUM_PATH} is missing: install Debian's chromium package (apt-get install -y chromium).")
    from playwright.sync_api import sync_playwright

    from reader_study.harness import SyntheticLesion, write_synthetic_case_list
    from reading_app.workstation.testing import build_reading_study, write_test_detector_outputs

    work = Path(args.work or tempfile.mkdtemp(prefix="tsct-layout-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    size, spacing = (512, 512, 48), (0.7, 0.7, 2.5)
    origin = (-size[0] * spacing[0] / 2, -size[1] * spacing[1] / 2, 0.0)
    case_list = write_synthetic_case_list(
        work / "cases", [[SyntheticLesion((256, 300, 24), 6.0)], []], size_xyz=size, spacing_mm=spacing, origin_mm=origin, prefix="L", seed=3
    )
    write_test_detector_outputs(case_list, work / "detector")
    url = f"sqlite:///{work / 'reader-study.sqlite3'}"
    study = build_reading_study(url, case_list, study_code="LAYOUT", readers=("Layout Reader",), design="sequential")
    env = {**os.environ, "TSCT_DATABASE_URL": url, "TSCT_DATA_DIR": str(work), "TSCT_DETECTOR_DIR": str(work / "detector")}
    server, base, log = start_app(env, work / "server.log")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM_PATH), args=CHROMIUM_ARGS)
            page = browser.new_context(viewport={"width": 1280, "height": 720}).new_page()
            page.set_default_timeout(60_000)
            page.goto(base + "/")
            page.get_by_label("User name").fill("reader1")
            page.get_by_role("textbox", name="Password").fill(study.password)
            page.get_by_role("button", name="Log in").click()
            page.get_by_text("Logged in as").first.wait_for()
            deadline = time.monotonic() + 30  # the log-in cookie, so that the reading page's address keeps the log-in
            while not any(c["name"] == "tsct_session" for c in page.context.cookies()):
                if time.monotonic() > deadline:
                    raise SystemExit("the log-in cookie was not set")
                time.sleep(0.1)
            page.goto(base + "/read")
            start, canvas = page.get_by_role("button", name="Start session 1"), page.locator(".vp.main canvas[data-shown]")
            try:
                start.or_(canvas).first.wait_for()
                if start.count():
                    start.click()
                canvas.wait_for()
            except Exception:
                page.screenshot(path=str(work / "failure.png"))
                raise SystemExit(f"the reading page did not show the first image; see {work / 'failure.png'} and {work / 'server.log'}")
            page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')")
            results = {"slice_px": [size[0], size[1]], "sizes": image_share(page, screenshots=args.screenshots)}
            browser.close()
    finally:
        stop_app(server, log)
    write_results(args.json, results)


if __name__ == "__main__":
    main()
