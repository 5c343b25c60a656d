"""``tsct detect train`` and ``tsct detect evaluate``: the z-score network's commands.

Registered on the ``tsct detect`` group by :func:`register_commands` (called from
``detector/cli.py``). Heavy imports (torch, matplotlib) happen inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._cli_common import console, err_console
from ._cli_common import fail as _fail


def train(
    case_list: Path = typer.Argument(
        ..., help="Case-list CSV; its NORMAL cases (no new lesions) are used for training. Yours or a synthetic set from 'tsct cases synth'."
    ),
    out: Path = typer.Option(
        Path("zscore-model/zscore.pt"), "--out", help="Weights file to write; metadata (.metadata.json), model card (.md) and figures go beside it."
    ),
    work: Optional[Path] = typer.Option(
        None, "--work", help="Folder for registration outputs, the training cache and checkpoints (default: next to --out, 'training-work')."
    ),
    iterations: int = typer.Option(1500, help="Training iterations (batches)."),
    batch_size: int = typer.Option(8, help="Patches per batch."),
    patch: int = typer.Option(32, help="Patch edge in voxels of the 1.5 mm working grid."),
    learning_rate: float = typer.Option(1e-3, "--lr", help="Adam learning rate (cosine decay to 5 %)."),
    beta: float = typer.Option(0.5, help="beta of the beta-NLL loss (0 = plain Gaussian NLL)."),
    channels: int = typer.Option(16, help="Feature channels of the network."),
    blocks: int = typer.Option(4, help="Residual blocks of the network."),
    validation_pairs: int = typer.Option(2, help="Normal pairs held out for validation and the calibration figures."),
    checkpoint_every: int = typer.Option(100, help="Iterations between checkpoints (and validation passes)."),
    max_pairs: Optional[int] = typer.Option(None, help="Use at most this many normal pairs."),
    seed: int = typer.Option(0, help="Seed of patch sampling, validation split and initial weights."),
    device: str = typer.Option("auto", help="'auto' (a CUDA GPU when present, else CPU), 'cpu' or 'cuda'."),
    threads: Optional[int] = typer.Option(None, help="CPU threads for torch (default: torch's choice)."),
    resume: bool = typer.Option(False, help="Continue from the last checkpoint in --work."),
    version: str = typer.Option("1.0.0", help="Version written into the metadata."),
    augment: int = typer.Option(
        0, "--augment", min=0, help="Re-acquired variants per pair (thicker slices up to 5 mm, extra noise), added to the training data."
    ),
    init_weights: Optional[Path] = typer.Option(
        None,
        "--init-weights",
        help="Start from this bundle's weights (same architecture) instead of random ones: a warm start, recorded in the metadata.",
    ),
    spacing_floor: bool = typer.Option(
        True,
        "--spacing-floor/--no-spacing-floor",
        help="Give spacings finer than the working grid to the network as the working spacing (the v2 contract; --no-spacing-floor: v1).",
    ),
    resolution_match: bool = typer.Option(
        False,
        "--resolution-match/--no-resolution-match",
        help="Input contract 3: the network sees the warped prior matched to the current exam's resolution (the fit the analytic model uses), in training and at inference.",
    ),
) -> None:
    """Train the z-score network on the normal pairs of CASELIST and write a weights bundle with its model card."""
    from cases import CaseListError, read_case_list

    from ._errors import DetectorInputError
    from .train import TrainingConfig, prepare_training_pairs, train_zscore_model

    work_dir = work or out.parent / "training-work"
    try:
        config = TrainingConfig(
            iterations=iterations,
            batch_size=batch_size,
            patch_vox=patch,
            learning_rate=learning_rate,
            beta=beta,
            channels=channels,
            n_blocks=blocks,
            validation_pairs=validation_pairs,
            checkpoint_every=checkpoint_every,
            seed=seed,
            device=device,
            num_threads=threads,
            version=version,
            augment_variants=augment,
            spacing_floor=spacing_floor,
            resolution_match=resolution_match,
            init_weights=str(init_weights) if init_weights else None,
        )
        cl = read_case_list(case_list)
        console.print(f"Preparing training pairs from {case_list}: {len(cl.normal_cases)} normal case(s); registration outputs in {work_dir}.")
        pairs = prepare_training_pairs(
            cl,
            work_dir,
            max_pairs=max_pairs,
            progress=True,
            on_pair=lambda cid, outcome: outcome.startswith("skipped") and err_console.print(f"[yellow]{cid}: {outcome}[/]", highlight=False),
        )
        result = train_zscore_model(
            pairs,
            out,
            config=config,
            resume=resume,
            progress=True,
            checkpoint_dir=work_dir,
            training_data={"case_list": str(case_list)},
            on_checkpoint=lambda it, v: (
                v
                and console.print(
                    f"iteration {it}: validation |z| > 3 in {100 * v['frac_abs_z_gt3']:.2f} % of bone voxels, z sd {v['z_sd']:.2f}, sigma median {v['sigma_median_hu']:.0f} HU",
                    highlight=False,
                )
            ),
        )
    except (CaseListError, DetectorInputError, FileNotFoundError) as exc:
        _fail(str(exc))
        return
    console.print(f"[bold green]{result.summary()}[/]", highlight=False)


def evaluate(
    case_list: Path = typer.Argument(
        ..., help="Case-list CSV with truth lesions (normal and abnormal cases) NOT used in training, e.g. a synthetic set made with another seed."
    ),
    work: Path = typer.Option(
        ...,
        "--work",
        help="Folder of the cases' registration outputs (<work>/<case_id>/, as written by 'tsct detect batch'); missing cases are registered there.",
    ),
    model: str = typer.Option("default", help="z-score weights: 'default' (shipped), a .pt path, or 'analytic'."),
    report: Path = typer.Option(
        Path("reports/zscore-evaluation"),
        "--report",
        help="Folder for report.md, froc.png, evaluation.json and the detector's marks per method (marks_<method>.csv: case_id, rating, lesion_id).",
    ),
    json_out: Optional[Path] = typer.Option(
        None,
        "--json",
        help="Also write the figures per method to this JSON file (keys in docs/detector-zscore.md), with marks_<method>.csv beside it.",
    ),
    methods: str = typer.Option(
        "plain,voxel_matched,zscore,analytic",
        help="Methods to compare, comma-separated. Add 'single_exam' for the single-exam map of the current exam alone (no prior; 20-40 s per case on 2 CPU cores, so not on by default).",
    ),
    single_exam_model: str = typer.Option("default", help="Weights of the 'single_exam' method: 'default' (shipped single-exam-v1) or a .pt path."),
    margin_mm: float = typer.Option(3.0, help="A candidate hits a lesion when its centre lies within this distance of the lesion's voxels (mm)."),
    seed_threshold: float = typer.Option(3.0, help="Candidates start at |score| >= this (the lowest rating of the FROC curve)."),
    min_volume: float = typer.Option(20.0, help="Smallest candidate, mm³."),
    matched_filter_mm: float = typer.Option(
        1.5,
        "--matched-filter-mm",
        help="Candidates are found and rated on a Gaussian matched filter of each method's map (this sigma, mm; in robust sigmas), the same rule for every method; 0 rates them on the voxel-wise map.",
    ),
    force_model: bool = typer.Option(False, help="Use the network even on cases outside its training domain."),
    device: str = typer.Option("cpu", help="Torch device for the network: 'cpu', 'cuda' or 'auto'."),
    record_in_bundle: bool = typer.Option(
        False, help="Write the z-map's figures into the model's metadata and model card (with this case list named as the split)."
    ),
) -> None:
    """Compare plain subtraction, voxel matching and the z-map as stand-alone lesion detectors: FROC, sensitivity at 0.5/1/3 FP per case, wAFROC, calibration."""
    from cases import CaseListError

    from ._errors import DetectorInputError
    from .detection_eval import EvaluationSettings, evaluate_detectors

    method_list = [m.strip() for m in methods.split(",") if m.strip()]
    if model == "analytic" and "zscore" in method_list:
        method_list.remove("zscore")
    try:
        ev = evaluate_detectors(
            case_list,
            work,
            model=model,
            methods=method_list,
            settings=EvaluationSettings(
                margin_mm=margin_mm,
                seed_threshold=seed_threshold,
                min_volume_mm3=min_volume,
                matched_filter_mm=matched_filter_mm if matched_filter_mm > 0 else None,
            ),
            force_model=force_model,
            device=device,
            progress=True,
            single_exam_model=single_exam_model,
        )
    except (CaseListError, DetectorInputError, FileNotFoundError) as exc:
        _fail(str(exc))
        return
    paths = ev.write_report(report)
    if json_out is not None:
        ev.write_json(json_out)
        ev.write_marks(json_out.parent)
    console.print(ev.summary(), highlight=False)
    console.print(f"Report: {paths['markdown']} (FROC curves {paths['froc'].name})" + (f"; JSON {json_out}" if json_out else ""))
    console.print(
        f"Detector marks per method (marks_<method>.csv, for 'tsct analyze report --cad-marks'): {report}"
        + (f" and {json_out.parent}" if json_out else ""),
        highlight=False,
    )
    if record_in_bundle and "zscore" in ev.scores and ev.model and ev.model.get("path"):
        from .train import record_evaluation

        s = ev.scores["zscore"].to_dict()
        metrics = {k: s[k] for k in s if k.startswith("sensitivity_at_") or k in ("wafroc", "calibration_frac_abs_gt3", "n_cases", "n_lesions")}
        for base in ("plain", "voxel_matched"):
            if base in ev.scores:
                metrics[f"wafroc_{base}"] = ev.scores[base].wafroc
        record_evaluation(ev.model["path"], metrics, f"held-out case list {case_list} ({len(ev.cases)} cases), hit margin {margin_mm:g} mm")
        console.print(f"Figures recorded in the bundle metadata of {ev.model['path']}.")
    se_info = (ev.model or {}).get("single_exam")
    if record_in_bundle and "single_exam" in ev.scores and se_info and se_info.get("path"):
        from .single_exam import record_single_exam_evaluation

        s = ev.scores["single_exam"].to_dict()
        metrics = {k: s[k] for k in s if k.startswith("sensitivity_at_") or k in ("wafroc", "calibration_frac_abs_gt3", "n_cases", "n_lesions")}
        for other in ("zscore", "plain"):
            if other in ev.scores:
                metrics[f"wafroc_{other}"] = ev.scores[other].wafroc
        record_single_exam_evaluation(
            se_info["path"], metrics, f"held-out case list {case_list} ({len(ev.cases)} cases, current exams only), hit margin {margin_mm:g} mm"
        )
        console.print(f"Single-exam figures recorded in the bundle metadata of {se_info['path']}.")


def register_commands(app: typer.Typer) -> None:
    """Add ``train``, ``evaluate``, ``single-exam`` and ``train-single-exam`` to the ``tsct detect`` group."""
    from ._inpaint_cli import register_single_exam_commands

    app.command("train")(train)
    app.command("evaluate")(evaluate)
    register_single_exam_commands(app)
