"""Make the README's screenshots of the reading view (unaided and aided) in headless Chromium.

    .venv/bin/python docs/images/make_reading_view_screenshots.py [--work DIR]

Generates a small synthetic case set (``cases.synth``), runs the detector on it (``tsct detect
batch``: registration and temporal subtraction; the z-map comes from the detector's own output
``zmap.nii.gz`` when it writes one, else from ``detector.compute_zmap``), creates a one-reader
study with the sequential design (unaided, then aided), starts ``tsct app`` on 127.0.0.1, places a
mark on a lesion and saves

* ``docs/images/reading-view-unaided.png`` — the current exam with the prior exam beside it;
* ``docs/images/reading-view-aided.png`` — the same case with the z-map overlay and the temporal
  subtraction beside it.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "docs" / "images"
from reading_app.workstation.testing import CHROMIUM_ARGS  # noqa: E402  (one list for tests, screenshots and benches)

SET_SLICE_JS = """
(index) => {
  const host = [...document.querySelectorAll('*')].find(e => e.shadowRoot && e.shadowRoot.querySelector('.tsct-viewer'));
  const slider = host.shadowRoot.querySelector('.tsct-viewer input.slice');
  slider.value = String(index);
  slider.dispatchEvent(new Event('input'));
}
"""


def _zmap_function():
    import detector

    compute = getattr(detector, "compute_zmap", None)
    if compute is None:  # the detector's z-score stage before it is exported from the package
        from detector.zscore import compute_zmap as compute
    return compute


def prepare(work: Path, seed: int) -> tuple[Path, Path, dict]:
    """Cases, detector outputs with z-maps, and the lesion to show (the one with the strongest z)."""
    from cases import CaseList, read_case_list, read_volume, write_case_list, write_volume
    from cases.synth import synthesize_case_set

    case_list = work / "cases" / "caselist.csv"
    if not case_list.exists():
        synthesize_case_set(work / "cases", n_cases=4, seed=seed, size="small", progress=True)
    detector_dir = work / "detector"
    subprocess.run([sys.executable, str(ROOT / "tsct_cli.py"), "detect", "batch", str(case_list), "--out", str(detector_dir)], check=True)
    compute = None
    best = None
    for case in read_case_list(case_list):
        folder = detector_dir / case.case_id
        current = read_volume(case.current)
        if not (folder / "zmap.nii.gz").exists():
            compute = compute or _zmap_function()
            inputs = (current, read_volume(folder / "warped_prior.nii.gz"), read_volume(folder / "bone_roi.nii.gz", label=True))
            try:
                zmap = compute(*inputs)
            except ValueError as exc:  # no shipped weights yet: the detector's analytic error model
                print(f"{case.case_id}: {exc}; using the analytic error model")
                zmap = compute(*inputs, model="analytic")
            print(f"{case.case_id}: z-map by the {zmap.method} model")
            write_volume(current.with_array(np.asarray(zmap.z.array if hasattr(zmap.z, "array") else zmap.z, np.float32)), folder / "zmap.nii.gz")
        z = read_volume(folder / "zmap.nii.gz").array
        for lesion in case.lesions:
            idx = np.rint(current.point_to_index(lesion.center_mm)).astype(int)
            zz, yy, xx = np.ogrid[: z.shape[0], : z.shape[1], : z.shape[2]]
            near = ((xx - idx[0]) * current.spacing_mm[0]) ** 2 + ((yy - idx[1]) * current.spacing_mm[1]) ** 2 + (
                (zz - idx[2]) * current.spacing_mm[2]
            ) ** 2 <= (lesion.radius_mm or 5.0) ** 2
            strength = float(np.nanmax(np.abs(z[near]))) if near.any() else 0.0
            if best is None or strength > best[0]:
                best = (strength, case, lesion)
    assert best is not None, "the synthetic set has no lesion"
    _, case, lesion = best
    one = work / "one-case.csv"
    write_case_list(CaseList((case,)), one)
    return one, detector_dir, {"case": case.case_id, "center_mm": lesion.center_mm, "lesion": lesion.lesion_id, "type": lesion.lesion_type.value}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("tsct-data/screenshots"))
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from reading_app.workstation import DisplayGrid
    from reading_app.workstation.testing import build_reading_study

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    case_list, detector_dir, target = prepare(work, args.seed)
    print(f"Showing lesion {target['lesion']} ({target['type']}) of case {target['case']}")
    data = work / f"run-{int(time.time())}"
    url = f"sqlite:///{data / 'reader-study.sqlite3'}"
    data.mkdir()
    study = build_reading_study(url, case_list, study_code="DEMO", readers=("Dr Demo",), design="sequential")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "TSCT_DATABASE_URL": url, "TSCT_DATA_DIR": str(data), "TSCT_DETECTOR_DIR": str(detector_dir)}
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "tsct_cli.py"), "app", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=(data / "server.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/_stcore/health", timeout=2)
                break
            except OSError:
                time.sleep(0.3)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_context(viewport={"width": 1440, "height": 940}, device_scale_factor=1).new_page()
            page.set_default_timeout(60_000)

            def settle(seconds: float = 0.6) -> None:
                time.sleep(seconds)
                page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')")

            page.goto(base + "/")
            page.get_by_label("User name").fill("reader1")
            page.get_by_role("textbox", name="Password").fill(study.password)
            page.get_by_role("button", name="Log in").click()
            page.get_by_role("button", name="Start session 1").click()
            page.locator(".vp.main canvas[data-shown]").wait_for()
            settle()

            import reader_study

            db = reader_study.open_db(url)
            with db.snapshot() as s:
                account = reader_study.find_account(s, "reader1")
            svc = reader_study.ReadingService(db, reader_id=account.reader_id, study_code="DEMO")
            g = svc.get_case(svc.next_case().case_read_id).grid
            grid = DisplayGrid.from_geometry(g.size_xyz, g.spacing_mm, g.origin_mm, g.direction)
            s_index, u, v = grid.mm_to_image("axial", target["center_mm"])
            s_index = int(round(s_index))

            def show_lesion(side: str) -> None:
                page.evaluate(SET_SLICE_JS, s_index)
                page.locator(f".vp.main canvas[data-shown^='axial:{s_index}:']").wait_for()
                page.locator("select.side").select_option(side)
                page.locator(".vp.side canvas[data-shown]").wait_for()
                time.sleep(0.8)

            show_lesion("prior")
            box = page.locator(".vp.main").bounding_box()
            plane = grid.plane("axial")
            from reading_app.workstation import ViewTransform

            view = ViewTransform.for_plane(plane, box["width"], box["height"])
            x, y = view.image_to_screen(u, v)
            page.locator(".vp.main").dblclick(position={"x": x, "y": y})  # a double click marks (docs/reading-app.md)
            page.get_by_role("button", name="4", exact=True).click()
            page.get_by_text("Mark saved with rating 4.").wait_for()
            settle()
            # the cursor beside the mark: its HU, and the crosshair on the prior at the same anatomy
            page.mouse.move(box["x"] + x + 30, box["y"] + y - 20)
            page.locator(".vp.side svg.cross[data-at]").wait_for()
            page.screenshot(path=str(OUT / "reading-view-unaided.png"))
            page.get_by_role("button", name="Finish case", exact=True).click()
            page.locator("input.overlay-toggle").wait_for()
            page.locator(".vp.main canvas[data-shown]").wait_for()
            settle()
            show_lesion("subtraction")
            page.locator(".vp.main canvas[data-overlay='1']").wait_for()
            settle()
            page.screenshot(path=str(OUT / "reading-view-aided.png"))
            browser.close()
        print(f"Saved {OUT / 'reading-view-unaided.png'} and {OUT / 'reading-view-aided.png'}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)


if __name__ == "__main__":
    main()
