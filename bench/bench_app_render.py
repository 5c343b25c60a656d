"""Where an aided slice change spends its time: the server's work per image, per layer and format.

Loads the first case of the reading-app bench's clinical-size case set (``bench_app_scroll.py``
makes it: 512 x 512 voxels per slice; detector outputs or the same timing-only stand-ins) into the
app's volume cache and times, over many axial slices, what the image route does after the ticket
check: take the slice, window it, colour the overlay, encode. Grey layers: windowed and encoded as
PNG or JPEG (the server-side path), or copied out as raw ``int16`` bytes (the browser windows
them). The z-map overlay: the RGBA image as PNG, the indexed (paletted) PNG, or the raw palette
indices and palette (what rides with a raw CT slice in the aided reading).

Usage::

    .venv/bin/python bench/bench_app_render.py                       # uses ./tsct-data/bench-app (run bench_app_scroll.py once first)
    .venv/bin/python bench/bench_app_render.py --cases DIR --detector-dir DIR --slices 100

Prints per path: median and p95 milliseconds per image and median bytes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _timed(fn, slices: list[int]) -> tuple[list[float], list[int]]:  # noqa: ANN001
    times, sizes = [], []
    for k in slices:
        t = time.perf_counter()
        data = fn(k)
        times.append((time.perf_counter() - t) * 1000.0)
        sizes.append(len(data))
    return times, sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("tsct-data/bench-app"), help="the scroll bench's working folder")
    parser.add_argument("--cases", type=Path, default=None, help="a case list (or its folder); default <work>/cases")
    parser.add_argument("--detector-dir", type=Path, default=None, help="detector outputs; default <work>/detector")
    parser.add_argument("--slices", type=int, default=100, help="axial slices timed per path (spread over the volume)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    from bench.bench_app_scroll import _ensure_layers
    from cases import read_case_list
    from reading_app.workstation.layers import layer_files, overlay_style_for
    from reading_app.workstation.render import (
        DEFAULT_PALETTE,
        WINDOW_PRESETS,
        encode_image,
        encode_paletted_png,
        overlay_palette_rgba,
        raw_slice_bytes,
        window_to_uint8,
        zmap_overlay_indexed,
        zmap_overlay_rgba,
    )
    from reading_app.workstation.volumes import VolumeCache

    work = args.work.resolve()
    case_list = args.cases or work / "cases"
    case_list = case_list / "caselist.csv" if case_list.is_dir() else case_list
    if not case_list.exists():
        sys.exit(f"No case list at {case_list}: run bench/bench_app_scroll.py once (it generates the cases) or give --cases.")
    detector_dir = (args.detector_dir or work / "detector").resolve()
    stand_ins = _ensure_layers(case_list, detector_dir, args.seed)
    case = next(iter(read_case_list(case_list)))
    files = layer_files(case_code=case.case_id, current_path=case.current, prior_path=case.prior, overlays=("zmap",), detector_dir=detector_dir)
    cache = VolumeCache()
    t = time.perf_counter()
    ct = cache.get(files["ct"], "ct")
    cache.get(files["zmap"], "z")
    print(
        f"case {case.case_id}: CT {ct.array.shape} and its {'stand-in ' if case.case_id in stand_ins else ''}z-map read in {time.perf_counter() - t:.1f} s"
    )
    n = ct.array.shape[0]
    slices = [int(round(i)) for i in np.linspace(0, n - 1, min(args.slices, n))]
    bone = WINDOW_PRESETS[0]
    threshold, saturation = overlay_style_for(files["zmap"], 4.0, 10.0)
    palette = overlay_palette_rgba(DEFAULT_PALETTE)

    def ct_slice(k: int) -> np.ndarray:
        return cache.slice_of(files["ct"], "ct", "axial", k)

    def z_slice(k: int) -> np.ndarray:
        return cache.slice_of(files["zmap"], "z", "axial", k)

    paths = {
        "CT slice, windowed, PNG": lambda k: encode_image(window_to_uint8(ct_slice(k), bone.level_hu, bone.width_hu), "png"),
        "CT slice, windowed, JPEG q90": lambda k: encode_image(window_to_uint8(ct_slice(k), bone.level_hu, bone.width_hu), "jpeg"),
        "CT slice, raw int16": lambda k: raw_slice_bytes(ct_slice(k)),
        "z-map overlay, RGBA PNG": lambda k: encode_image(zmap_overlay_rgba(z_slice(k), threshold=threshold, saturation=saturation), "png"),
        "z-map overlay, paletted PNG": lambda k: encode_paletted_png(
            zmap_overlay_indexed(z_slice(k), threshold=threshold, saturation=saturation), palette
        ),
        "z-map overlay, raw indices": lambda k: (
            zmap_overlay_indexed(z_slice(k), threshold=threshold, saturation=saturation).tobytes() + palette.tobytes()
        ),
    }
    print(f"server work per image over {len(slices)} axial slices (slice taken from memory, ticket check not included):")
    for name, fn in paths.items():
        fn(slices[0])  # warm-up
        times, sizes = _timed(fn, slices)
        print(
            f"  {name:30s} median {np.median(times):6.2f} ms  p95 {np.percentile(times, 95):6.2f} ms  median size {np.median(sizes) / 1024:7.1f} KiB"
        )


if __name__ == "__main__":
    main()
