"""``tsct detect …``: register prior onto current CT and make temporal subtraction images.

Commands for imaging scientists and study coordinators:

* ``run PRIOR CURRENT --out DIR``: one pair, outputs and QC in DIR;
* ``batch CASELIST --out DIR``: every case of a case list into DIR/<case_id>/;
* ``check-registration CASELIST --json OUT``: accuracy against the known deformation of
  synthetic pairs (TRE in bone, artifact level, lesion contrast kept, run time);
* ``train CASELIST --out WEIGHTS``: train the z-score network on the normal pairs of a case list;
* ``evaluate CASELIST --work DIR``: plain subtraction vs voxel matching vs z-map as stand-alone
  detectors (FROC, sensitivity at 0.5/1/3 FP per case, wAFROC, calibration).

``run`` and ``batch`` also make the z-score map, its sigma, the lesion candidates and (for DICOM
input) the colour overlay series unless ``--no-zscore`` is given (docs/detector-zscore.md).

Bad input ends with one red line naming the file and what to fix, and exit code 2. A
registration whose QC failed prints a red warning and exits with code 1 (outputs are written).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Optional

import typer

from ._cli_common import console, err_console
from ._cli_common import fail as _fail

app = typer.Typer(
    help="Register prior onto current CT, make temporal subtraction images and check registration quality.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _parse_values(text: Optional[str]) -> Optional[list[int]]:
    if not text:
        return None
    try:
        return [int(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        _fail(f"--bone-label-values must be integers separated by commas (e.g. 25,26,27), got {text!r}.")
    return None


def _config(deformable: str):  # type: ignore[no-untyped-def]
    from .registration import RegistrationConfig

    return RegistrationConfig(deformable=deformable)  # type: ignore[arg-type]


def _print_qc(qc, where: str = "") -> None:  # type: ignore[no-untyped-def]
    colour = {"ok": "green", "warning": "yellow", "failed": "red"}.get(qc.status, "white")
    console.print(f"[bold {colour}]{qc.summary().splitlines()[0]}[/]{where}", highlight=False)
    for msg in qc.messages:
        console.print(f"  [{colour}]- {msg}[/]", highlight=False)
    if qc.status == "failed":
        console.print("[bold red]Do not read this subtraction: registration QC failed.[/]")


def _zscore_settings(
    model: str,
    force_model: bool,
    device: str,
    threshold: Optional[float] = None,
    low_threshold: Optional[float] = None,
    min_volume: float = 20.0,
    palette: str = "green-orange",
    recalibrate: bool = True,
):  # type: ignore[no-untyped-def]
    from ._errors import DetectorInputError
    from .overlay import OverlayStyle
    from .zscore_outputs import OPERATING_LOW_THRESHOLD, OPERATING_THRESHOLD, ZScoreSettings

    if low_threshold is None:
        low_threshold = OPERATING_LOW_THRESHOLD if threshold is None else min(OPERATING_LOW_THRESHOLD, threshold)
    if threshold is not None and low_threshold > threshold:
        _fail(f"--low-threshold ({low_threshold:g}) must not be above --threshold ({threshold:g}).")
    shown = OPERATING_THRESHOLD if threshold is None else threshold

    if model not in ("default", "analytic") and not Path(model).is_file():
        _fail(
            f"--model {model}: no such weights file. Use 'default' (the shipped network), 'analytic' or the path of a .pt file written by 'tsct detect train'."
        )
    try:
        style = OverlayStyle(threshold=shown, z_max=max(10.0, 2.5 * shown), palette=palette)
    except DetectorInputError as exc:
        _fail(str(exc))
    return ZScoreSettings(
        model=model,
        force_model=force_model,
        device=device,
        recalibrate=recalibrate,
        threshold=threshold,
        low_threshold=low_threshold,
        min_volume_mm3=min_volume,
        style=style,
    )


class _Progress:
    """A rich progress display driven by run_pair's stage and iteration callbacks."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=console
        )
        self.task = self.bar.add_task("starting", total=None, detail="")

    def stage(self, name: str) -> None:
        self.bar.update(self.task, description=name, total=None, completed=0, detail="")

    def iteration(self, info) -> None:  # type: ignore[no-untyped-def]
        self.bar.update(
            self.task,
            description=f"{info.stage} level {info.level + 1}/{info.n_levels}",
            total=info.n_iterations_max,
            completed=info.iteration,
            detail=f"metric {info.metric:.4g}",
        )


@app.command("run")
def run(
    prior: Path = typer.Argument(..., help="The prior (older) CT: a DICOM series folder or a .nii/.nii.gz/.nrrd/.mha file."),
    current: Path = typer.Argument(..., help="The current (newer) CT of the same patient, same formats."),
    out: Path = typer.Option(..., "--out", help="Folder for the outputs (created if needed)."),
    bone_labels: Optional[Path] = typer.Option(
        None,
        "--bone-labels",
        help="Your own label map of the current exam (e.g. TotalSegmentator output) to use as bone instead of the threshold mask.",
    ),
    bone_label_values: Optional[str] = typer.Option(
        None, "--bone-label-values", help="Which values of --bone-labels are bone, comma-separated (default: every non-zero label)."
    ),
    series_uid_prior: Optional[str] = typer.Option(
        None, "--series-uid-prior", help="SeriesInstanceUID of the prior series, when its folder holds several."
    ),
    series_uid_current: Optional[str] = typer.Option(
        None, "--series-uid-current", help="SeriesInstanceUID of the current series, when its folder holds several."
    ),
    kernel: str = typer.Option(
        "adaptive",
        help="Voxel-matching kernel: 'adaptive' (from the slice spacings), 'none', or half-widths in voxels 'rx,ry,rz' (e.g. 1,1,0 = 3x3x1).",
    ),
    deformable: str = typer.Option(
        "bspline",
        help="Deformable stage: 'bspline' (default: B-spline fitted in bone), 'demons', 'diffeomorphic_demons' (dense, slower) or 'none' (rigid only).",
    ),
    dicom: Optional[bool] = typer.Option(None, "--dicom/--no-dicom", help="Write derived DICOM series (default: when the current exam is DICOM)."),
    save_transform: bool = typer.Option(True, "--transform/--no-transform", help="Write transform.h5 (the deformation, ~25 bytes per 1.5 mm voxel)."),
    case_id: Optional[str] = typer.Option(None, help="Case identifier written into qc.json."),
    zscore: bool = typer.Option(
        True, "--zscore/--no-zscore", help="Also make the z-score map, its sigma, lesion candidates and (DICOM input) the colour overlay series."
    ),
    model: str = typer.Option(
        "default", help="z-score model: 'default' (the shipped network), the path of your own weights (.pt), or 'analytic' (no network)."
    ),
    force_model: bool = typer.Option(
        False, help="Use the network even when the pair is outside its training domain (otherwise the analytic error model is used, with a warning)."
    ),
    threshold: Optional[float] = typer.Option(
        None,
        help="Operating point: the candidate threshold on the matched-filter score (z smoothed over 1.5 mm and rescaled by its spread in the exam); the overlay colours the same score from the same threshold. Default: the calibrated operating point of the z method that runs (network 5.0, analytic model 7.5; docs/detector-zscore.md).",
    ),
    low_threshold: Optional[float] = typer.Option(
        None, help="Candidates grow over connected voxels with a score >= this (hysteresis). Default: the calibrated value."
    ),
    min_volume: float = typer.Option(20.0, help="Smallest lesion candidate, mm³."),
    palette: str = typer.Option(
        "green-orange", help="Overlay colours: 'green-orange' (increase green, decrease orange) or 'blue-red' (Hoshiai et al.)."
    ),
    device: str = typer.Option("cpu", help="Torch device for the network: 'cpu', 'cuda' or 'auto'."),
    recalibrate: bool = typer.Option(
        True,
        "--recalibrate/--no-recalibrate",
        help="Widen the network's sigma for a pair whose z spreads more than the training pairs' (e.g. a sharper kernel); see docs/detector-zscore.md.",
    ),
) -> None:
    """Register PRIOR onto CURRENT and write the warped prior, the subtraction images, the bone ROI, the z-score map with lesion candidates, and qc.json."""
    from cases import ExamReadError

    from ._errors import DetectorInputError
    from .pipeline import run_pair

    values = _parse_values(bone_label_values)
    settings = _zscore_settings(model, force_model, device, threshold, low_threshold, min_volume, palette, recalibrate) if zscore else None
    kernel_spec: object = kernel
    if kernel not in ("adaptive", "none"):
        try:
            kernel_spec = tuple(int(v) for v in kernel.split(","))
        except ValueError:
            _fail(f"--kernel must be 'adaptive', 'none' or three integers 'rx,ry,rz', got {kernel!r}.")
    progress = _Progress()
    start = time.perf_counter()
    try:
        with progress.bar:
            progress.stage("reading exams")
            result = run_pair(
                prior,
                current,
                out,
                case_id=case_id,
                config=_config(deformable),
                bone_labels=bone_labels,
                bone_label_values=values,
                kernel=kernel_spec,  # type: ignore[arg-type]
                write_dicom=dicom,
                save_transform=save_transform,
                prior_series_uid=series_uid_prior,
                current_series_uid=series_uid_current,
                on_iteration=progress.iteration,
                on_stage=progress.stage,
                zscore=zscore,
                zscore_settings=settings,
            )
    except (ExamReadError, DetectorInputError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
        return
    console.print(result.registration.summary(), highlight=False)
    console.print(result.subtraction.summary(), highlight=False)
    if result.zscore is not None:
        colour = "yellow" if result.zscore.zmap.notes else "white"
        console.print(f"[{colour}]{result.zscore.summary()}[/]", highlight=False)
    _print_qc(result.qc)
    console.print(f"Outputs in [bold]{out}[/] ({time.perf_counter() - start:.1f} s): " + ", ".join(p.name for p in result.outputs.values()))
    if result.qc.status == "failed":
        raise typer.Exit(1)


@app.command("batch")
def batch(
    case_list: Path = typer.Argument(..., help="Case-list CSV (schema: docs/case-list.md)."),
    out: Path = typer.Option(..., "--out", help="Output folder; each case goes to OUT/<case_id>/."),
    overwrite: bool = typer.Option(False, help="Re-run cases that are already finished (qc.json present)."),
    deformable: str = typer.Option("bspline", help="Deformable stage: 'bspline' (default), 'demons', 'diffeomorphic_demons' or 'none'."),
    zscore: bool = typer.Option(
        True, "--zscore/--no-zscore", help="Also make each case's z-score map, sigma, lesion candidates and (DICOM input) colour overlay series."
    ),
    model: str = typer.Option("default", help="z-score model: 'default' (the shipped network), the path of your own weights (.pt), or 'analytic'."),
    force_model: bool = typer.Option(False, help="Use the network even on pairs outside its training domain."),
    device: str = typer.Option("cpu", help="Torch device for the network: 'cpu', 'cuda' or 'auto'."),
    cluster: Optional[str] = typer.Option(
        None,
        "--cluster",
        help="Run the cases on Dask workers: 'local' (a local cluster), a scheduler address tcp://HOST:PORT, 'slurm' or 'pbs' (dask-jobqueue). Default: one case after the other in this process. See docs/cluster.md.",
    ),
    workers: int = typer.Option(2, "--workers", help="With --cluster local/slurm/pbs: number of workers (one case at a time each)."),
    retries: int = typer.Option(
        2, "--retries", help="With --cluster: times a failing case is retried (a case whose worker dies is re-run on another)."
    ),
    worker_memory: str = typer.Option(
        "auto", "--worker-memory", help="With --cluster: memory per worker, e.g. 12GB; 'auto' sizes it from the largest exam grid."
    ),
) -> None:
    """Run every case of a case list; finished cases are skipped, failed cases are reported at the end."""
    import warnings

    from cases import CaseListError

    from ._errors import DetectorInputError
    from .pipeline import run_case_list
    from .zscore import OutOfDomainWarning

    settings = _zscore_settings(model, force_model, device) if zscore else None
    try:
        config = _config(deformable)
        with warnings.catch_warnings():
            # out-of-domain pairs are recorded per case in qc.json ("zscore" notes); one line each would flood the bar
            warnings.simplefilter("ignore", OutOfDomainWarning)
            if cluster is None:
                result = run_case_list(case_list, out, overwrite=overwrite, progress=True, config=config, zscore=zscore, zscore_settings=settings)
            else:
                from .cluster import run_case_list_on_cluster

                result = run_case_list_on_cluster(
                    case_list,
                    out,
                    cluster=cluster,
                    n_workers=workers,
                    retries=retries,
                    worker_memory=worker_memory,
                    overwrite=overwrite,
                    progress=True,
                    console=console,
                    config=config,
                    zscore=zscore,
                    zscore_settings=settings,
                )
    except CaseListError as exc:
        _fail(str(exc))
        return
    except (ValueError, FileNotFoundError, DetectorInputError) as exc:
        _fail(str(exc))
        return
    colour = "red" if result.failed or result.qc_failed else "green"
    console.print(f"[bold {colour}]{result.summary()}[/]", highlight=False)
    if result.failed or result.qc_failed:
        raise typer.Exit(1)


def _nanmean(values: list[float]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(sum(finite) / len(finite)) if finite else None


def _summarise(rows: list[dict]) -> dict:
    keys = (
        "tre_initial_mean_mm",
        "tre_rigid_mean_mm",
        "tre_mean_mm",
        "tre_p95_mm",
        "tre_max_mm",
        "artifact_plain_hu",
        "artifact_vm_hu",
        "lesion_contrast_kept_plain_pct",
        "lesion_contrast_kept_vm_pct",
        "run_time_s",
    )
    out: dict = {"n_cases": len(rows)}
    for key in keys:
        vals = [r[key] for r in rows if r.get(key) is not None]
        out[f"mean_{key}"] = _nanmean(vals)
        out[f"max_{key}"] = max(vals) if vals else None
    lesions = [les for r in rows for les in r.get("lesions", [])]
    kept = [les["kept_plain_pct"] for les in lesions if les.get("kept_plain_pct") is not None]
    out["n_lesions"] = len(lesions)
    out["lesion_contrast_kept_plain_pct_min"] = min(kept) if kept else None
    out["qc_status_counts"] = {
        s: sum(1 for r in rows if r.get("qc_status") == s) for s in sorted({r.get("qc_status") for r in rows if r.get("qc_status")})
    }
    return out


@app.command("check-registration")
def check_registration(
    case_list: Path = typer.Argument(..., help="Case-list CSV whose cases have a true_transform (synthetic pairs from 'tsct cases synth')."),
    json_out: Path = typer.Option(..., "--json", help="Where to write the per-case and summary figures (JSON)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write each case's outputs to OUT/<case_id>/."),
    bone_truth: str = typer.Option(
        "bone.nii.gz",
        help="File name of a truth bone mask next to each current exam (synthetic sets write bone.nii.gz); a threshold mask is used where it is missing.",
    ),
    max_cases: Optional[int] = typer.Option(None, help="Measure at most this many cases."),
    deformable: str = typer.Option("bspline", help="Deformable stage: 'bspline' (default), 'demons', 'diffeomorphic_demons' or 'none'."),
) -> None:
    """Measure TRE in bone, artifact level, lesion contrast kept and run time on cases with a known transform."""
    import SimpleITK as sitk

    import cases as cases_pkg
    from cases import CaseListError, read_case_list, read_exam, read_volume

    from .evaluation import measure_registration
    from .pipeline import run_pair

    try:
        cl = read_case_list(case_list)
    except CaseListError as exc:
        _fail(str(exc))
        return
    todo = [c for c in cl if c.true_transform is not None]
    if not todo:
        _fail(f"{case_list}: no case has a true_transform, so registration error cannot be measured. Use a synthetic case list ('tsct cases synth').")
    if max_cases is not None:
        todo = todo[:max_cases]
    loader = getattr(cases_pkg, "load_true_transform", None) or (lambda p: sitk.ReadTransform(str(p)))
    config = _config(deformable)
    rows: list[dict] = []
    errors: dict[str, str] = {}
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("cases", total=len(todo))
        for case in todo:
            bar.update(task, description=f"{case.case_id}: reading")
            try:
                prior = read_exam(case.prior)
                current = read_exam(case.current)
                true_t = loader(case.true_transform)
                start = time.perf_counter()
                result = run_pair(
                    prior,
                    current,
                    (out / case.case_id) if out else None,
                    case_id=case.case_id,
                    config=config,
                    zscore=False,
                    on_stage=lambda name, cid=case.case_id: bar.update(task, description=f"{cid}: {name}"),
                )
                run_time = time.perf_counter() - start
                bar.update(task, description=f"{case.case_id}: measuring")
                truth_path = Path(case.current).parent / bone_truth
                bone = read_volume(truth_path, label=True) if truth_path.is_file() else None
                if bone is not None and not bone.same_space(current.volume):
                    bone = bone.resample_to(current.volume)
                labels = None
                values: list[int] = []
                types: list[str] = []
                for lesion in case.lesions:
                    if lesion.label_map is None:
                        continue
                    if labels is None:
                        labels = read_volume(lesion.label_map, label=True)
                        if not labels.same_space(current.volume):
                            labels = labels.resample_to(current.volume)
                    if lesion.label_value is not None:
                        values.append(int(lesion.label_value))
                        types.append(lesion.lesion_type.value)
                m = measure_registration(
                    result.registration,
                    true_t,
                    current.volume,
                    prior=prior.volume,
                    subtraction=result.subtraction,
                    bone=bone,
                    lesion_labels=labels,
                    lesion_values=values or None,
                    lesion_types=types or None,
                    case_id=case.case_id,
                    run_time_s=run_time,
                    qc_status=result.qc.status,
                )
                rows.append(m.to_dict())
                console.print(m.summary(), highlight=False)
                del result, prior, current
            except Exception as exc:  # noqa: BLE001 - report and go on with the next case
                errors[case.case_id] = f"{type(exc).__name__}: {exc}"
                err_console.print(f"[red]{case.case_id}: {errors[case.case_id]}[/]", highlight=False)
            bar.advance(task)
    report = {"case_list": str(case_list), "cases": rows, "summary": _summarise(rows), "errors": errors}
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    s = report["summary"]

    def fmt(v: float | None, spec: str) -> str:
        return "n/a" if v is None or not math.isfinite(v) else format(v, spec)

    console.print(
        f"[bold]{s['n_cases']} case(s)[/]: TRE in bone mean {fmt(s['mean_tre_mean_mm'], '.2f')} mm, "
        f"p95 {fmt(s['mean_tre_p95_mm'], '.2f')} mm, max {fmt(s['max_tre_max_mm'], '.2f')} mm; artifact "
        f"{fmt(s['mean_artifact_plain_hu'], '.1f')} HU (plain), {fmt(s['mean_artifact_vm_hu'], '.1f')} HU (VM); lesion contrast kept "
        f"{fmt(s['mean_lesion_contrast_kept_plain_pct'], '.0f')}% (plain); {fmt(s['mean_run_time_s'], '.1f')} s per case. Written to {json_out}.",
        highlight=False,
    )
    if errors:
        _fail(f"{len(errors)} case(s) could not be measured: " + "; ".join(f"{k}: {v}" for k, v in errors.items()), code=1)


# The z-score network's commands (train, evaluate) live in cli_zscore.py.
from .cli_zscore import register_commands as _register_zscore_commands  # noqa: E402

_register_zscore_commands(app)


# Standard DICOM objects (SEG, Parametric Map, SR, overlay) of a case: _dicom_cli.py.
from ._dicom_cli import register_dicom_commands as _register_dicom_commands  # noqa: E402

_register_dicom_commands(app)
