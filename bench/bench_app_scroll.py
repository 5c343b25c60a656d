"""How fast the reading app changes slices and opens cases, measured in headless Chromium.

What it does:

1. Uses (or generates, ~1-2 min per case) a clinical-size synthetic case set (``cases.synth``,
   512 x 512 voxels per slice) and reads detector outputs from ``--detector-dir`` (``tsct detect
   batch``); for a case without them it writes *stand-in* layers for timing only (seeded random
   values in bone, i.e. where the current CT is above 150 HU, and 0 elsewhere, like the support of
   real ones; they render and travel like real ones but mean nothing), and as its registration the
   synthetic pair's true transform (so the prior scrolls through a registration, as with real
   outputs), and says so.
2. Creates a study (sequential design: each case read unaided, then aided with the z-map overlay)
   with one reader, starts ``tsct app`` on 127.0.0.1 and logs in with Playwright (Debian
   Chromium at /usr/bin/chromium).
3. Measures, in the page: a keyboard slice change (key press → the new slice drawn, then the next
   animation frame), scrolling at most 20 slices a second, and random jumps through the slider
   (no prefetch can help); unaided (CT only) and aided (CT + z-map overlay). With the prior beside
   the current (P): key press → the current slice *and* the prior slice synced to it through the
   registration both drawn. And the first image of a case: cold (nothing in memory: the volume
   is read from disk) and the next case (read in the background while the previous case was read).
4. Where the time goes: per measurement and layer, the image requests' Resource Timing (whole
   request, until the first byte, transfer); with raw slices (the default ``--image-format``), the
   browser's main-thread time to window one aided slice, colour its overlay and draw it.

Usage::

    .venv/bin/python bench/bench_app_scroll.py                       # generates cases under ./tsct-data/bench-app
    .venv/bin/python bench/bench_app_scroll.py --cases DIR --detector-dir DIR --steps 150 --json reports/app-scroll.json

Prints p50/p95/max per measurement, and at the end the three figures of issue 17 against their
targets: slice change p95 ≤ 50 ms (aided scrolling, the slowest reading), synced prior p95 ≤ 80 ms,
next case ≤ 1.5 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHROMIUM = "/usr/bin/chromium"
from bench._app import start_app, stop_app, write_results  # noqa: E402
from bench.bench_app_layout import image_share  # noqa: E402  (the image's share of the window, on this clinical-size case)
from reading_app.workstation.testing import CHROMIUM_ARGS  # noqa: E402  (one list for tests, screenshots and benches)

MEASURE_JS = """
async (args) => {
  const host = [...document.querySelectorAll('*')].find(e => e.shadowRoot && e.shadowRoot.querySelector('.tsct-viewer'));
  const root = host.shadowRoot.querySelector('.tsct-viewer');
  const canvas = root.querySelector('.vp.main canvas');
  const slider = root.querySelector('input.slice');
  const n = Number(slider.max) + 1;
  const frame = () => new Promise(r => requestAnimationFrame(() => r()));
  const sleep = (ms) => new Promise(r => setTimeout(r, ms));
  const side = root.querySelector('.vp.side canvas');
  const shown = () => Number((canvas.dataset.shown || 'x:-1').split(':')[1]);
  // with the prior: the prior panel's picture must be the one synced to the target slice too
  const done = (target) => shown() === target && (!args.prior || side.dataset.for === `axial:${target}`);
  function waitShown(target, timeoutMs) {
    return new Promise((resolve) => {
      if (done(target)) return resolve(true);
      const timer = setTimeout(() => { obs.disconnect(); resolve(false); }, timeoutMs);
      const obs = new MutationObserver(() => { if (done(target)) { obs.disconnect(); clearTimeout(timer); resolve(true); } });
      obs.observe(canvas, { attributes: true, attributeFilter: ['data-shown'] });
      obs.observe(side, { attributes: true, attributeFilter: ['data-for'] });
    });
  }
  let seed = args.seed >>> 0;
  const random = () => { seed = (1664525 * seed + 1013904223) >>> 0; return seed / 4294967296; };
  const out = [];
  let s = shown(), dir = 1;
  for (let i = 0; i < args.steps; i++) {
    let target;
    if (args.mode === 'jump') {
      do { target = Math.floor(random() * n); } while (Math.abs(target - s) < 12);
    } else {
      if (s + dir < 0 || s + dir >= n) dir = -dir;
      target = s + dir;
    }
    const t0 = performance.now();
    if (args.mode === 'jump') { slider.value = String(target); slider.dispatchEvent(new Event('input')); }
    else document.dispatchEvent(new KeyboardEvent('keydown', { key: dir > 0 ? 'ArrowDown' : 'ArrowUp', bubbles: true }));
    const ok = await waitShown(target, 10000);
    await frame();
    out.push(ok ? performance.now() - t0 : null);
    s = target;
    await sleep(args.pauseMs);
  }
  return out;
}
"""


DRAW_JS = """
() => {
  const host = [...document.querySelectorAll('*')].find(e => e.shadowRoot && e.shadowRoot.querySelector('.tsct-viewer'));
  const v = host.shadowRoot.querySelector('.tsct-viewer').__tsct;
  const S = v.S, plane = S.plane, g = v.data.volumes.current[plane];
  const e = v.cache.get(v.url('ct', plane, S.slice[plane], v.rawOverlay()));
  if (!e || !e.buf) return null;
  const out = [];
  for (let k = 0; k < 40; k++) {
    v.offscreen.main.entry = null;  // as for a slice not drawn before
    if (v.offscreen.overlay) v.offscreen.overlay.entry = null;
    const t0 = performance.now();
    v.lastImages.main = { base: v.picture(e, 'main', 'ct', g), overlay: v.overlayPicture(e, g), plane, volume: 'current' };
    v.redraw('main');
    out.push(performance.now() - t0);
  }
  return out;
}
"""


def _stats(values: list[float | None]) -> dict:
    ok = np.array([v for v in values if v is not None], dtype=float)
    return {
        "n": len(values),
        "n_timed_out": sum(v is None for v in values),
        "p50_ms": float(np.percentile(ok, 50)) if ok.size else None,
        "p95_ms": float(np.percentile(ok, 95)) if ok.size else None,
        "max_ms": float(ok.max()) if ok.size else None,
        "mean_ms": float(ok.mean()) if ok.size else None,
    }


def _ensure_cases(work: Path, cases: Path | None, seed: int, n_cases: int) -> Path:
    if cases is not None:
        return cases / "caselist.csv" if cases.is_dir() else cases
    case_list = work / "cases" / "caselist.csv"
    if case_list.exists():
        print(f"Using the clinical-size cases in {case_list.parent}")
        return case_list
    from cases.synth import synthesize_case_set

    print(f"Generating {n_cases} clinical-size synthetic pairs (512 x 512 per slice) in {work / 'cases'} …")
    t = time.perf_counter()
    path = synthesize_case_set(work / "cases", n_cases=n_cases, seed=seed, size="clinical", progress=True)
    print(f"  generated in {time.perf_counter() - t:.0f} s")
    return path


def _ensure_layers(case_list: Path, detector_dir: Path, seed: int) -> list[str]:
    """Stand-in subtraction and z-map (timing only) and the pair's true transform as registration, for cases without detector outputs; returns those cases."""
    from cases import Volume, read_case_list, read_grid, read_volume, write_volume
    from detector.outputs import ROLES, CaseOutputsError, ModelRecord, read_case_outputs, write_case_outputs

    stand_ins = []
    rng = np.random.default_rng(seed)
    for case in read_case_list(case_list):
        folder = detector_dir / case.case_id
        try:
            outputs = read_case_outputs(folder)
        except CaseOutputsError:
            outputs = None
        if outputs is not None and outputs.has("subtraction") and outputs.has("zmap"):
            continue
        grid = read_grid(case.current)
        folder.mkdir(parents=True, exist_ok=True)
        current = read_volume(case.current)
        bone = current.array > 150  # where a z-map has values: bone (a real one is 0 outside the bone ROI)
        stand_in = Volume(np.zeros(grid.shape, np.float32), grid.spacing_mm, grid.origin_mm, grid.direction)
        files = {
            "subtraction": write_volume(
                stand_in.with_array(np.where(bone, rng.normal(0, 40, grid.shape), 0).astype(np.int16)), folder / ROLES["subtraction"][0]
            ),
            "zmap": write_volume(
                stand_in.with_array(np.where(bone, rng.standard_normal(grid.shape, dtype=np.float32), 0).astype(np.float32)),
                folder / ROLES["zmap"][0],
            ),
        }
        if case.true_transform is not None and Path(case.true_transform).exists():
            import shutil

            files["transform"] = Path(shutil.copyfile(case.true_transform, folder / ROLES["transform"][0]))
        write_case_outputs(
            folder,
            files,
            grid=grid,
            case_id=case.case_id,
            qc_status="passed",
            model=ModelRecord("bench stand-in (random, timing only)"),
            hash_exams=False,
        )
        stand_ins.append(case.case_id)
    return stand_ins


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("tsct-data/bench-app"), help="working folder (cases, database)")
    parser.add_argument("--cases", type=Path, default=None, help="an existing case list (or its folder) instead of generating one")
    parser.add_argument("--detector-dir", type=Path, default=None, help="detector outputs (<dir>/<case id>/); default <work>/detector")
    parser.add_argument("--n-cases", type=int, default=2)
    parser.add_argument("--steps", type=int, default=120, help="slice changes per scroll measurement")
    parser.add_argument("--jumps", type=int, default=40, help="random slice jumps per measurement")
    parser.add_argument("--pause-ms", type=float, default=50.0, help="pause after each slice change (50 ms: at most 20 slices a second)")
    parser.add_argument(
        "--image-format",
        choices=["raw", "png", "jpeg"],
        default="raw",
        help="grey slices: raw int16 windowed in the browser, or png/jpeg windowed on the server",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()

    if not Path(CHROMIUM).exists():
        sys.exit(f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install -y chromium).")
    from playwright.sync_api import sync_playwright

    from reading_app.workstation.testing import build_reading_study

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    case_list = _ensure_cases(work, args.cases, args.seed, args.n_cases)
    detector_dir = (args.detector_dir or work / "detector").resolve()
    stand_ins = _ensure_layers(case_list, detector_dir, args.seed)
    if stand_ins:
        print(f"Stand-in subtraction/z-map (timing only, not detector output) for: {', '.join(stand_ins)}")

    data = work / f"run-{int(time.time())}"
    data.mkdir()
    url = f"sqlite:///{data / 'reader-study.sqlite3'}"
    study = build_reading_study(url, case_list, study_code="BENCH", readers=("Bench Reader",), design="sequential")
    env = {
        **os.environ,
        "TSCT_DATABASE_URL": url,
        "TSCT_DATA_DIR": str(data),
        "TSCT_DETECTOR_DIR": str(detector_dir),
        "TSCT_IMAGE_FORMAT": args.image_format,
    }
    server, base, log = start_app(env, data / "server.log")
    results: dict = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "case_list": str(case_list),
        "stand_in_layers": stand_ins,
        "image_format": args.image_format,
        "pause_ms": args.pause_ms,
    }
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_context(viewport={"width": 1600, "height": 1100}).new_page()
            page.set_default_timeout(120_000)
            sizes: dict[str, list[int]] = {}

            def on_response(response):  # noqa: ANN001
                if "/api/tsct/v1/image/" in response.url and response.status == 200:
                    layer = response.url.split("/image/")[1].split("/")[1]
                    sizes.setdefault(layer, []).append(int(response.headers.get("content-length", "0")))

            page.on("response", on_response)

            def settle() -> None:
                time.sleep(0.3)
                page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')")

            page.goto(base + "/")
            page.get_by_label("User name").fill("reader1")
            page.get_by_role("textbox", name="Password").fill(study.password)
            page.get_by_role("button", name="Log in").click()
            page.get_by_role("button", name="Start session 1").click()
            t0 = time.perf_counter()
            page.locator(".tsct-viewer[data-instance]").wait_for()
            results["first_case_on_page_s"] = time.perf_counter() - t0
            page.locator(".vp.main canvas[data-shown]").wait_for()
            results["first_image_cold_s"] = time.perf_counter() - t0
            print(f"  (the first case on the page after {results['first_case_on_page_s']:.2f} s)")
            settle()
            print(f"first image of the first case (volume read from disk): {results['first_image_cold_s']:.2f} s")

            def requests_by_layer(label: str) -> None:
                """Resource Timing of the image requests made during a measurement: per layer, the whole
                request and its server part (request sent -> first byte), p50 / p95 ms (requests
                without timings, e.g. started before the measurement, are left out)."""
                entries = page.evaluate(
                    "() => performance.getEntriesByType('resource').filter(e => e.name.includes('/api/tsct/v1/image/') && e.responseStart > 0)"
                    ".map(e => [e.name.split('/image/')[1].split('/')[1], e.duration, e.responseStart - e.requestStart, e.responseEnd - e.responseStart])"
                )
                out = {}
                for layer in sorted({e[0] for e in entries}):
                    rows = np.array([e[1:] for e in entries if e[0] == layer], dtype=float)
                    out[layer] = {
                        "n": len(rows),
                        **{
                            f"{what}_p{q}_ms": float(np.percentile(rows[:, i], q))
                            for i, what in enumerate(("request", "server", "transfer"))
                            for q in (50, 95)
                        },
                    }
                    r = out[layer]
                    print(
                        f"    {layer:8s} requests n={r['n']:4d}  whole p50 {r['request_p50_ms']:6.1f} / p95 {r['request_p95_ms']:6.1f} ms; "
                        f"until the first byte p50 {r['server_p50_ms']:6.1f} / p95 {r['server_p95_ms']:6.1f} ms; "
                        f"transfer p50 {r['transfer_p50_ms']:5.1f} / p95 {r['transfer_p95_ms']:5.1f} ms"
                    )
                results[f"{label}_requests"] = out

            def measure(label: str, prior: bool = False) -> None:
                time.sleep(1.0)
                page.evaluate("() => { performance.setResourceTimingBufferSize(20000); performance.clearResourceTimings(); }")
                # jumps first, while few slices are in the browser's cache, then scrolling
                jumps = page.evaluate(
                    MEASURE_JS, {"mode": "jump", "steps": args.jumps, "pauseMs": args.pause_ms, "seed": args.seed + 1, "prior": prior}
                )
                scroll = page.evaluate(
                    MEASURE_JS, {"mode": "scroll", "steps": args.steps, "pauseMs": args.pause_ms, "seed": args.seed, "prior": prior}
                )
                results[f"{label}_scroll"] = _stats(scroll)
                results[f"{label}_jump"] = _stats(jumps)
                for kind in ("jump", "scroll"):
                    r = results[f"{label}_{kind}"]
                    print(
                        f"{label:8s} {kind:6s} n={r['n']:4d}  p50 {r['p50_ms']:6.1f} ms  p95 {r['p95_ms']:6.1f} ms  max {r['max_ms']:6.1f} ms  timed out {r['n_timed_out']}"
                    )
                requests_by_layer(label)

            def finish_case() -> float:
                """Finish the case; seconds from the click to the next reading's first image."""
                page.get_by_text("I found no lesion in this case").click()
                settle()
                before = page.locator(".tsct-viewer").get_attribute("data-instance")
                page.get_by_role("button", name="Finish case (no lesion)").click()
                t = time.perf_counter()
                page.locator(f".tsct-viewer:not([data-instance='{before}'])").wait_for()
                t_mounted = time.perf_counter() - t
                page.locator(f".tsct-viewer:not([data-instance='{before}']) .vp.main canvas[data-shown]").wait_for()
                elapsed = time.perf_counter() - t
                print(f"  (new case on the page after {t_mounted:.2f} s; its first image after {elapsed:.2f} s)")
                settle()
                return elapsed

            measure("unaided")
            page.keyboard.press("p")  # the prior beside the current, synced through the registration
            page.locator(".vp.side canvas[data-for]").wait_for()
            measure("prior", prior=True)
            page.keyboard.press("p")
            page.locator(".vp.side").wait_for(state="hidden")
            results["first_image_same_case_aided_s"] = finish_case()
            print(f"first image of the aided reading of the same case: {results['first_image_same_case_aided_s']:.2f} s")
            measure("aided")
            if args.image_format == "raw":
                # the browser's own part of an aided slice: window the raw CT, colour the overlay, draw (main thread)
                draw = page.evaluate(DRAW_JS)
                if draw:
                    results["aided_draw_ms"] = _stats(draw)
                    print(
                        f"  browser: window + colour + draw one aided slice (main thread) p50 {np.percentile(draw, 50):.1f} ms, p95 {np.percentile(draw, 95):.1f} ms"
                    )
            results["first_image_next_case_s"] = finish_case()
            print(f"first image of the next case (prefetched while reading): {results['first_image_next_case_s']:.2f} s")
            results["image_share_of_window"] = image_share(page, ((1280, 720), (1920, 1080)))
            results["bytes_per_image"] = {layer: {"median": float(np.median(v)), "n": len(v)} for layer, v in sizes.items()}
            for layer, v in results["bytes_per_image"].items():
                print(f"image size {layer:12s} median {v['median'] / 1024:6.1f} KiB over {v['n']} images")
            browser.close()
    finally:
        stop_app(server, log)
    print("\nIssue 17 targets (Chromium, clinical-size case):")
    for name, value, target, unit in (
        ("slice change p95 (aided scrolling)", results.get("aided_scroll", {}).get("p95_ms"), 50.0, "ms"),
        ("slice change p95 (unaided scrolling)", results.get("unaided_scroll", {}).get("p95_ms"), 50.0, "ms"),
        ("synced prior p95 (scrolling, prior beside)", results.get("prior_scroll", {}).get("p95_ms"), 80.0, "ms"),
        ("next case (first image)", results.get("first_image_next_case_s"), 1.5, "s"),
    ):
        verdict = "n/a" if value is None else ("met" if value <= target else "MISSED")
        shown = "n/a" if value is None else f"{value:.2f}" if unit == "s" else f"{value:.1f}"
        print(f"  {name:44s} {shown:>8s} {unit}  (target <= {target:g} {unit}) {verdict}")
    write_results(args.json, results)


if __name__ == "__main__":
    main()
