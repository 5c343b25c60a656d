"""``tsct detect single-exam`` and ``tsct detect train-single-exam``: the anomaly map without a prior.

Registered on the ``tsct detect`` group by :func:`register_single_exam_commands` (called from
``detector/cli_zscore.py``). Heavy imports (torch, matplotlib) happen inside the commands.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from ._cli_common import console, err_console
from ._cli_common import fail as _fail


def single_exam(
    current: Path = typer.Argument(..., help="The CT to read: a NIfTI file or a DICOM series folder. No prior exam is needed."),
    out: Path = typer.Option(..., "--out", help="Folder for zmap.nii.gz, sigma.nii.gz, candidates.json/.csv and single_exam.json."),
    model: str = typer.Option("default", help="Single-exam weights: 'default' (shipped single-exam-v1) or a .pt path."),
    bone_labels: Optional[Path] = typer.Option(
        None, help="Your own bone label map of this CT (e.g. TotalSegmentator); default: the detector's bone mask of the CT."
    ),
    threshold: float = typer.Option(4.0, help="A candidate must reach |z| >= this."),
    low_threshold: float = typer.Option(3.0, help="Candidates grow over connected voxels with |z| >= this."),
    min_volume: float = typer.Option(20.0, help="Smallest candidate, mm³."),
    force_model: bool = typer.Option(False, help="Use the network even when the CT lies outside its training domain."),
    no_recalibrate: bool = typer.Option(
        False, "--no-recalibrate", help="Do not widen sigma when the exam's z spreads more than the training exams'."
    ),
    device: str = typer.Option("cpu", help="Torch device: 'cpu', 'cuda' or 'auto' (a CUDA GPU when present)."),
) -> None:
    """Single-exam anomaly map of one CT: each bone voxel against what its surroundings predict (no prior needed).

    It flags anything its surroundings do not explain, old or new: it cannot tell a lesion that was
    already there (or a benign bone island) from a new one. Use 'tsct detect run' when a prior exam exists.
    """
    from cases import read_exam, read_volume

    from ._errors import DetectorInputError
    from .bone import bone_mask, dilate_mask
    from .candidates import find_candidates
    from .single_exam import ROI_MARGIN_MM, compute_single_exam_zmap
    from .zscore import ModelBundleError
    from .zscore_outputs import ZScoreOutputs, write_zscore_files

    t0 = time.perf_counter()
    try:
        vol = read_exam(current).volume
        roi = None
        if bone_labels is not None:
            roi = dilate_mask(bone_mask(vol, labels=read_volume(bone_labels, label=True)), ROI_MARGIN_MM)
        zm = compute_single_exam_zmap(vol, roi, model=model, device=device, force=force_model, recalibrate=not no_recalibrate)
        cands = find_candidates(
            zm.z,
            roi=zm.bone_roi,
            threshold=threshold,
            low_threshold=low_threshold,
            min_volume_mm3=min_volume,
            change_hu=vol.like(vol.array.astype("float32") - zm.estimate_hu.array),
            score_name="z",
            case_id=current.name,
        )
        from .candidates import CandidateSet

        cands = CandidateSet(cands.candidates, {**cands.parameters, "z_method": zm.method, "model_version": zm.model_version}, cands.case_id)
        result = ZScoreOutputs(zmap=zm, candidates=cands)
        files = write_zscore_files(result, vol, out)
    except (DetectorInputError, ModelBundleError, FileNotFoundError) as exc:
        _fail(str(exc))
        return
    entry = result.qc_entry()
    entry.update(
        {
            "blind_cube_vox": zm.parameters.get("blind_cube_vox"),
            "noise_hu": zm.parameters.get("noise_hu"),
            "elapsed_s": round(time.perf_counter() - t0, 1),
            "input": str(current),
        }
    )
    summary_path = out / "single_exam.json"
    summary_path.write_text(json.dumps(entry, indent=1, default=str) + "\n", encoding="utf-8")
    roi_arr = zm.bone_roi.array != 0
    console.print(
        f"single-exam map (v{zm.model_version}): {int(roi_arr.sum())} ROI voxels; |z| > 3 in {100 * zm.fraction_above(3.0):.2f} % of them; "
        f"{len(cands)} candidate(s) ({entry['n_blastic']} dense, {entry['n_lytic']} lucent) in {entry['elapsed_s']:.0f} s",
        highlight=False,
    )
    for n in zm.notes:
        console.print(f"note: {n}", highlight=False)
    console.print(f"Files: {', '.join(p.name for p in files.values())}, {summary_path.name} in {out}")


def train_single_exam(
    case_list: Path = typer.Argument(..., help="Case-list CSV; the current AND prior exams of its NORMAL cases (no lesions) are used."),
    out: Path = typer.Option(
        Path("single-exam-model/single-exam.pt"),
        "--out",
        help="Weights file to write; metadata (.metadata.json), model card (.md) and figures go beside it.",
    ),
    work: Optional[Path] = typer.Option(
        None, "--work", help="Folder for the working-grid cache and checkpoints (default: next to --out, 'training-work')."
    ),
    iterations: int = typer.Option(600, help="Training iterations (batches)."),
    batch_size: int = typer.Option(6, help="Patches per batch."),
    patch: int = typer.Option(32, help="Patch edge in voxels of the 1.5 mm working grid."),
    learning_rate: float = typer.Option(2e-3, "--lr", help="Adam learning rate (cosine decay to 5 %)."),
    beta: float = typer.Option(0.5, help="beta of the beta-NLL loss (0 = plain Gaussian NLL)."),
    channels: int = typer.Option(8, help="Feature channels of each half-space branch."),
    layers: int = typer.Option(5, help="Causal convolutions per branch (reach: blind radius + 1 + 2 x layers voxels)."),
    blind_radius: int = typer.Option(2, help="The network never sees the (2r+1)^3 cube around the voxel it predicts (r in working-grid voxels)."),
    priors: bool = typer.Option(True, "--priors/--no-priors", help="Also train on the prior exams of the normal pairs."),
    validation_pairs: int = typer.Option(2, help="Normal cases (both exams) held out for validation and the calibration figures."),
    checkpoint_every: int = typer.Option(100, help="Iterations between checkpoints (and validation passes)."),
    max_pairs: Optional[int] = typer.Option(None, help="Use at most this many normal cases."),
    seed: int = typer.Option(0, help="Seed of patch sampling, validation split and initial weights."),
    device: str = typer.Option("auto", help="'auto' (a CUDA GPU when present, else CPU), 'cpu' or 'cuda'."),
    threads: Optional[int] = typer.Option(None, help="CPU threads for torch (default: torch's choice)."),
    resume: bool = typer.Option(False, help="Continue from the last checkpoint in --work."),
    version: str = typer.Option("1.0.0", help="Version written into the metadata."),
    hardware_note: Optional[str] = typer.Option(
        None, help="A sentence on the training conditions for the model card (e.g. 'CPU shared with other jobs')."
    ),
) -> None:
    """Train the single-exam in-painting network on the lesion-free exams of CASELIST and write a weights bundle with its model card."""
    from cases import CaseListError

    from ._errors import DetectorInputError
    from .single_exam import SingleExamTrainingConfig, prepare_single_exam_exams, train_single_exam_model

    work_dir = work or out.parent / "training-work"
    try:
        config = SingleExamTrainingConfig(
            iterations=iterations,
            batch_size=batch_size,
            patch_vox=patch,
            learning_rate=learning_rate,
            beta=beta,
            channels=channels,
            n_layers=layers,
            blind_radius_vox=blind_radius,
            validation_pairs=validation_pairs,
            checkpoint_every=checkpoint_every,
            seed=seed,
            device=device,
            num_threads=threads,
            version=version,
        )
        console.print(f"Preparing lesion-free exams from {case_list} (working-grid cache in {work_dir}).")
        exams = prepare_single_exam_exams(
            case_list,
            work_dir,
            include_priors=priors,
            max_pairs=max_pairs,
            progress=True,
            on_exam=lambda key, outcome: outcome.startswith("skipped") and err_console.print(f"[yellow]{key}: {outcome}[/]", highlight=False),
        )
        result = train_single_exam_model(
            exams,
            out,
            config=config,
            resume=resume,
            progress=True,
            checkpoint_dir=work_dir,
            training_data={"case_list": str(case_list)},
            hardware_note=hardware_note,
            on_checkpoint=lambda it, v: (
                v
                and console.print(
                    f"iteration {it}: validation |z| > 3 in {100 * v['frac_abs_z_gt3']:.2f} % of bone voxels, z sd {v['z_sd']:.2f}, RMS error {v['rmse_hu']:.0f} HU, sigma median {v['sigma_median_hu']:.0f} HU",
                    highlight=False,
                )
            ),
        )
    except (CaseListError, DetectorInputError, FileNotFoundError) as exc:
        _fail(str(exc))
        return
    console.print(f"[bold green]{result.summary()}[/]", highlight=False)


def register_single_exam_commands(app: typer.Typer) -> None:
    """Add ``single-exam`` and ``train-single-exam`` to the ``tsct detect`` group."""
    app.command("single-exam")(single_exam)
    app.command("train-single-exam")(train_single_exam)
