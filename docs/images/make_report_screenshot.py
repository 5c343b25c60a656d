"""Screenshot the top of an analysis report (HTML) for the README.

Usage (after ``make demo ARGS=--no-app``)::

    .venv/bin/python docs/images/make_report_screenshot.py reports/DEMO/report.html docs/images/report-demo.png

Needs Debian's chromium (``/usr/bin/chromium``) and the ``playwright`` Python package; nothing is
downloaded and no outside host is contacted.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from reading_app.workstation.testing import CHROMIUM_ARGS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="report.html written by `tsct analyze report` or `tsct demo`")
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--width", type=int, default=1100, help="viewport width, px")
    parser.add_argument("--height", type=int, default=1400, help="height of the captured top part, px")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": args.width, "height": args.height})
        page.goto(args.report.resolve().as_uri())
        page.wait_for_load_state("load")
        page.screenshot(path=str(args.out), clip={"x": 0, "y": 0, "width": args.width, "height": args.height})
        browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
