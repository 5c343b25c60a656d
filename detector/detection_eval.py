"""Is the z-map a better detector than plain subtraction? ``tsct detect evaluate``.

Every method is run as a **stand-alone detector** on the same registered pairs and scored against
the truth lesions of the case list (:mod:`detector.froc`):

``plain``
    plain subtraction ``current - warped prior`` in the bone ROI, divided by one robust scale per
    case (1.4826 x MAD of the subtraction in the ROI), so thresholds are in the same "sigmas" as z;
``voxel_matched``
    the voxel-matched subtraction (:func:`detector.temporal_subtraction`), divided by the same scale;
``zscore``
    the network's z-map (:func:`detector.zscore.compute_zmap`); if the network is out of its domain
    for a case, the case falls back to the analytic model and the report says so;
``analytic``
    the z-map of the analytic error model (local noise and edge strength), for reference.

Candidates are connected regions with ``|score| >= seed_threshold`` (hysteresis down to
``low_threshold`` when given) of at least ``min_volume_mm3``, rated by their peak ``|score|``;
the FROC curve sweeps that rating. Calibration: the fraction of unchanged bone voxels (the ROI of
normal cases, and of abnormal cases away from lesions by ``margin_mm``) with ``|score| > 3``;
a calibrated Gaussian gives 0.27 %.

The evaluation must use cases that the network was not trained on: when the case folders hold
synthetic ``params.json`` files, their seeds are compared with the training seeds recorded in the
model's metadata and an overlap is reported.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from cases import Case, CaseList, LabelVolume, Volume, read_case_list, read_exam, read_volume

from ._errors import DetectorInputError
from .candidates import find_candidates, matched_filter_score
from .froc import CaseMarks, DetectionScore, TruthLesion, match_candidates, operating_point, score_detector, wafroc_difference_ci, wafroc_with_ci

__all__ = ["METHODS", "EvaluationSettings", "DetectorEvaluation", "evaluate_detectors", "write_marks_csv", "EVALUATION_JSON_KEYS"]

METHODS: tuple[str, ...] = ("plain", "voxel_matched", "zscore", "analytic")
#: Methods scored only when asked for (``methods=`` / ``--methods``): ``single_exam``, the
#: single-exam in-painting map of the current exam alone (:mod:`detector.single_exam`; about
#: 20-40 s per case on a 2-core CPU, so it is not on by default).
OPTIONAL_METHODS: tuple[str, ...] = ("single_exam",)
METHOD_LABELS = {
    "single_exam": "single-exam map (no prior)",
    "plain": "plain subtraction",
    "voxel_matched": "voxel-matched subtraction",
    "zscore": "z-map (network)",
    "analytic": "z-map (analytic error model)",
}

#: Keys of each method's entry in the evaluation JSON (``--json OUT``), documented in docs/detector-zscore.md.
EVALUATION_JSON_KEYS: dict[str, str] = {
    "method": "method name (plain, voxel_matched, zscore, analytic; single_exam when asked for)",
    "n_cases": "cases scored",
    "n_normal_cases": "normal cases among them",
    "n_lesions": "truth lesions",
    "sensitivity_at_0.5_fp": "lesion sensitivity at <= 0.5 false positives per case (FROC)",
    "sensitivity_at_1_fp": "lesion sensitivity at <= 1 false positive per case",
    "sensitivity_at_3_fp": "lesion sensitivity at <= 3 false positives per case",
    "wafroc": "wAFROC figure of merit (analysis.fom_matrix), detector as one reader",
    "calibration_frac_abs_gt3": "fraction of unchanged bone voxels with |score| > 3 (0.0027 if calibrated)",
    "max_nl_per_case": "false positives per case at the most lenient threshold (end of the FROC curve)",
    "froc": "FROC operating points: nlf (FP per case), llf (sensitivity), thresholds (rating)",
    "subgroups": "sensitivity at the FP rates by lesion_type, location and size (equivalent diameter)",
    "wafroc_ci95": "95 % confidence interval of the wAFROC (case-deletion jackknife)",
    "operating_point": "at the default candidate threshold: threshold, fp_per_case, fp_per_normal_case, max_fp_in_a_case, sensitivity, sensitivity_ge_5mm, n_lesions_ge_5mm",
    "operating_curve": "the same figures at thresholds 3 to 20 in steps of 0.5 (to choose an operating point)",
}


@dataclass(frozen=True)
class EvaluationSettings:
    """How candidates are made and scored.

    Parameters
    ----------
    margin_mm : a candidate's centre may lie this far outside a lesion's extent and still hit it.
    seed_threshold : candidates start at ``|score| >= seed_threshold`` (the FROC's lowest rating).
    low_threshold : hysteresis growth threshold (None: no hysteresis).
    min_volume_mm3 : smallest candidate, mm³.
    matched_filter_mm : candidates are found and rated on the matched-filter score of each
        method's map (:func:`detector.candidates.matched_filter_score`, Gaussian of this sigma,
        mm), the same rule for every method; None: on the voxel-wise map itself (the rule before
        Nov 2026). Calibration is always measured on the voxel-wise map.
    fp_rates : false positives per case at which sensitivity is reported.
    size_edges_mm : equivalent-diameter bins of the size subgroups, mm.
    split_mm : nearby peaks of one polarity become separate candidates
        (:func:`detector.candidates.find_candidates`); None: regions are not split.
    operating_threshold : false positives per case and sensitivity are also reported at this
        candidate threshold; None (default): the operating point of ``tsct detect run`` for each
        z method (:data:`detector.zscore_outputs.OPERATING_THRESHOLDS`: the network's where it
        ran, the analytic model's where it fell back), and the stricter one for the other methods.
    """

    margin_mm: float = 3.0
    seed_threshold: float = 3.0
    low_threshold: float | None = None
    min_volume_mm3: float = 20.0
    matched_filter_mm: float | None = 1.5
    fp_rates: tuple[float, ...] = (0.5, 1.0, 3.0)
    size_edges_mm: tuple[float, ...] = (5.0, 10.0)
    split_mm: float | None = 3.0
    operating_threshold: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DetectorEvaluation:
    """Result of :func:`evaluate_detectors`.

    Attributes
    ----------
    scores : method -> :class:`~detector.froc.DetectionScore`.
    settings : the :class:`EvaluationSettings` used.
    cases : one dict per case (case_id, status, n_lesions, QC status, z method used, candidates
        per method, run time).
    model : the network's name, version, path and SHA-256 (None for the analytic model only).
    notes : warnings in words (out-of-domain cases, overlap with training data, failures).
    case_list : the case list path.
    elapsed_s : wall time, s.
    marks : method -> the scored marks of every case (:class:`~detector.froc.CaseMarks`), for
        :meth:`write_marks` (the detector as a reader of a study, ``tsct analyze report --cad-marks``).
    """

    scores: dict[str, DetectionScore]
    settings: EvaluationSettings
    cases: tuple[dict[str, Any], ...]
    model: dict[str, Any] | None
    notes: tuple[str, ...] = ()
    case_list: str | None = None
    elapsed_s: float = 0.0
    bone_roi: dict[str, Any] | None = None
    marks: dict[str, tuple[CaseMarks, ...]] = field(default_factory=dict)
    wafroc_differences: dict[str, tuple[float, float, float]] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"Stand-alone detection on {len(self.cases)} case(s) ({self.case_list or 'case list'}), hit margin {self.settings.margin_mm:g} mm:"]
        for s in self.scores.values():
            lines.append("  " + s.summary())
            if s.wafroc_ci is not None and all(math.isfinite(v) for v in s.wafroc_ci):
                lines[-1] += f"; wAFROC 95 % CI {s.wafroc_ci[0]:.3f}-{s.wafroc_ci[1]:.3f}"
            op = s.operating_point
            if op:
                big = op.get("sensitivity_ge_5mm")
                thr = op["threshold"] if isinstance(op["threshold"], list) else [op["threshold"]]
                lines[-1] += (
                    f"; at the operating point (score >= {'/'.join(f'{t:g}' for t in thr)}): {op['fp_per_case']:.2f} FP/case"
                    + (f", sensitivity {op['sensitivity']:.2f}" if op.get("sensitivity") is not None else "")
                    + (f" ({big:.2f} for lesions >= 5 mm)" if big is not None else "")
                )
        if self.bone_roi:
            b = self.bone_roi
            lines.append(
                f"  bone ROI: mean volume {b['mean_volume_ml']:.0f} mL; within 3 mm of truth bone {_pct(b.get('mean_precision_3mm'))}; "
                f"vertebral-body voxels inside {_pct(b.get('mean_vertebral_body_inside'))} ({b['n_cases_with_truth']} case(s) with a truth bone map)"
            )
        for name, (d, lo, hi) in self.wafroc_differences.items():
            if all(math.isfinite(v) for v in (d, lo, hi)):
                lines.append(f"  wAFROC {name}: {d:+.3f} (95 % CI {lo:+.3f} to {hi:+.3f}, paired case jackknife)")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_frame(self):  # type: ignore[no-untyped-def]
        """One row per method: sensitivities, wAFROC, calibration fraction, counts."""
        import pandas as pd

        rows = []
        for s in self.scores.values():
            row = {
                "method": s.method,
                "n_cases": s.n_cases,
                "n_lesions": s.n_lesions,
                "wafroc": s.wafroc,
                "calibration_frac_abs_gt3": s.calibration_frac_abs_gt3,
                "max_nl_per_case": s.max_nlf,
            }
            for fp, v in s.sensitivity.items():
                row[f"sensitivity_at_{fp:g}_fp"] = v
            rows.append(row)
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "case_list": self.case_list,
            "settings": self.settings.to_dict(),
            "model": self.model,
            "methods": {m: s.to_dict() for m, s in self.scores.items()},
            "cases": list(self.cases),
            "notes": list(self.notes),
            "elapsed_s": round(self.elapsed_s, 1),
            "bone_roi": self.bone_roi,
            "wafroc_differences": {k: list(v) for k, v in self.wafroc_differences.items()},
            "keys": EVALUATION_JSON_KEYS,
        }

    def write_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_clean(self.to_dict()), indent=1) + "\n", encoding="utf-8")
        return path

    def write_marks(self, folder: str | Path) -> dict[str, Path]:
        """The detector's marks per method, ``marks_<method>.csv`` in ``folder``.

        Columns ``case_id, rating, lesion_id`` (the format of
        :func:`analysis.cad_vs_rad.read_cad_marks`): one row per non-lesion localisation
        (``lesion_id`` empty) and one per hit lesion with its highest rating, sorted by the one
        hit rule of :func:`detector.froc.match_candidates` (candidate centre within
        ``settings.margin_mm`` of the lesion's extent). A case with no candidate has no row.
        Written atomically (temporary name, then rename).
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        out: dict[str, Path] = {}
        for method, case_marks in self.marks.items():
            if method not in self.scores:
                continue
            out[method] = write_marks_csv(case_marks, folder / f"marks_{method}.csv")
        return out

    def plot_froc(self, path: str | Path, *, max_nlf: float = 5.0) -> Path:
        """FROC curves of every method (PNG)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.2, 4.4), dpi=120)
        for i, (m, s) in enumerate(self.scores.items()):
            nlf = np.asarray(s.froc["nlf"], dtype=float)
            llf = np.asarray(s.froc["llf"], dtype=float)
            # step curve, extended flat to the right edge
            x = np.append(nlf, max(max_nlf, float(nlf[-1])))
            y = np.append(llf, llf[-1])
            ax.step(x, y, where="post", color=f"C{i}", lw=1.8, label=f"{METHOD_LABELS.get(m, m)} (wAFROC {s.wafroc:.3f})")
        for f in self.settings.fp_rates:
            ax.axvline(f, color="0.85", lw=0.8, zorder=0)
        ax.set_xlim(0, max_nlf)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("false positives per case (non-lesion localisations)")
        ax.set_ylabel("lesion sensitivity (lesion localisation fraction)")
        n_les = next(iter(self.scores.values())).n_lesions if self.scores else 0
        ax.set_title(f"Stand-alone FROC, {len(self.cases)} held-out cases, {n_les} lesions", fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
        plt.close(fig)
        return path

    def write_report(self, folder: str | Path) -> dict[str, Path]:
        """``evaluation.json``, ``froc.png`` and ``report.md`` in ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {"json": self.write_json(folder / "evaluation.json"), "froc": self.plot_froc(folder / "froc.png")}
        paths.update({f"marks_{m}": p for m, p in self.write_marks(folder).items()})
        paths["markdown"] = folder / "report.md"
        paths["markdown"].write_text(self.to_markdown(froc_image="froc.png"), encoding="utf-8")
        return paths

    def to_markdown(self, froc_image: str | None = None) -> str:
        fps = self.settings.fp_rates
        head = (
            "| method | "
            + " | ".join(f"sens. @ {f:g} FP/case" for f in fps)
            + " | wAFROC (95 % CI) | abs(score) > 3 in normal bone | FP/case at end of curve | FP/case, sens. (>= 5 mm) at the operating point |"
        )
        lines = [
            "# Stand-alone detection: plain subtraction vs voxel matching vs z-map",
            "",
            f"Case list: `{self.case_list}`; {len(self.cases)} cases; hit rule: candidate centre within {self.settings.margin_mm:g} mm of the lesion's voxels; "
            f"candidates: |score| >= {self.settings.seed_threshold:g}"
            + (f" grown to {self.settings.low_threshold:g}" if self.settings.low_threshold else "")
            + f", >= {self.settings.min_volume_mm3:g} mm³, rated by peak |score|"
            + (
                f"; score = matched filter (Gaussian {self.settings.matched_filter_mm:g} mm) of each method's map, in robust sigmas."
                if self.settings.matched_filter_mm
                else "."
            ),
            "",
        ]
        if self.model and self.model.get("name"):
            lines += [
                f"Network: {self.model.get('name')} v{self.model.get('version')} (`{self.model.get('path')}`, SHA-256 {str(self.model.get('sha256'))[:12]}…).",
                "",
            ]
        if self.model and self.model.get("single_exam"):
            se = self.model["single_exam"]
            lines += [
                f"Single-exam network (current exam only): {se.get('name')} v{se.get('version')} (`{se.get('path')}`, SHA-256 {str(se.get('sha256'))[:12]}…).",
                "",
            ]
        lines += [head, "|" + "---|" * (len(fps) + 6)]
        for s in self.scores.values():
            cal = f"{100 * s.calibration_frac_abs_gt3:.2f} %" if math.isfinite(s.calibration_frac_abs_gt3) else "n/a"
            ci = f" ({s.wafroc_ci[0]:.3f}-{s.wafroc_ci[1]:.3f})" if s.wafroc_ci and all(math.isfinite(v) for v in s.wafroc_ci) else ""
            op = s.operating_point or {}
            opc = f"{op['fp_per_case']:.2f}, {_num(op.get('sensitivity'))} ({_num(op.get('sensitivity_ge_5mm'))})" if op else "n/a"
            lines.append(
                f"| {METHOD_LABELS.get(s.method, s.method)} | "
                + " | ".join(f"{s.sensitivity[f]:.2f}" for f in fps)
                + f" | {s.wafroc:.3f}{ci} | {cal} | {s.max_nlf:.1f} | {opc} |"
            )
        lines += [
            "",
            "Operating point: candidates rated at least the default threshold of `tsct detect run` "
            + (f"({self.settings.operating_threshold:g})" if self.settings.operating_threshold is not None else _operating_rule_words())
            + ".",
        ]
        if self.bone_roi:
            b = self.bone_roi
            lines += [
                "",
                f"Bone ROI: mean volume {b['mean_volume_ml']:.0f} mL; share within 3 mm of truth bone {_pct(b.get('mean_precision_3mm'))} (lowest {_pct(b.get('min_precision_3mm'))}); "
                f"vertebral-body voxels inside {_pct(b.get('mean_vertebral_body_inside'))} (lowest {_pct(b.get('min_vertebral_body_inside'))}); {b['n_cases_with_truth']} case(s) with a truth bone map.",
            ]
        lines += ["", "A calibrated Gaussian z gives 0.27 % of voxels with |z| > 3.", ""]
        for key, title in (("size", "By lesion size (equivalent-sphere diameter)"), ("lesion_type", "By lesion type"), ("location", "By location")):
            lines += [f"## {title}: sensitivity at 1 FP per case", ""]
            groups = sorted({g for s in self.scores.values() for g in s.subgroups.get(key, {})})
            lines.append("| group | n lesions | " + " | ".join(METHOD_LABELS.get(m, m) for m in self.scores) + " |")
            lines.append("|" + "---|" * (len(self.scores) + 2))
            for g in groups:
                n = next((s.subgroups[key][g]["n_lesions"] for s in self.scores.values() if g in s.subgroups.get(key, {})), 0)
                cells = []
                for s in self.scores.values():
                    v = s.subgroups.get(key, {}).get(g, {}).get("sensitivity", {}).get("1")
                    cells.append("n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.2f}")
                lines.append(f"| {g} | {n} | " + " | ".join(cells) + " |")
            lines.append("")
        if froc_image:
            lines += [f"![FROC curves]({froc_image})", ""]
        if self.notes:
            lines += ["## Notes", ""] + [f"- {n}" for n in self.notes] + [""]
        lines += [
            "## Cases",
            "",
            "| case | status | lesions | QC | z method | " + " | ".join(f"candidates ({m})" for m in self.scores) + " |",
            "|" + "---|" * (5 + len(self.scores)),
        ]
        for c in self.cases:
            lines.append(
                f"| {c['case_id']} | {c['status']} | {c['n_lesions']} | {c.get('qc_status')} | {c.get('zscore_method', '-')} | "
                + " | ".join(str(c.get("n_candidates", {}).get(m, "-")) for m in self.scores)
                + " |"
            )
        lines.append("")
        return "\n".join(lines)


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


# =============================================================================================
def _synthetic_seed(case: Case) -> int | None:
    folder = case.current if case.current.is_dir() else case.current.parent
    p = folder / "params.json"
    if not p.is_file():
        return None
    try:
        return int(json.loads(p.read_text(encoding="utf-8"))["request"]["seed"])
    except (ValueError, KeyError, TypeError):
        return None


#: Thresholds at which ``operating_curve`` reports FP per case and sensitivity (to choose an operating point).
OPERATING_CURVE_THRESHOLDS: tuple[float, ...] = tuple(float(t) for t in np.arange(3.0, 20.01, 0.5))


def _op_thresholds(method: str, settings: EvaluationSettings, case_rows: Sequence[dict[str, Any]]) -> float | dict[str, float]:
    """The operating threshold of a method: the settings' number, or per case for the z-maps."""
    from .zscore_outputs import operating_threshold_of

    if settings.operating_threshold is not None:
        return float(settings.operating_threshold)
    if method == "zscore":
        return {
            c["case_id"]: operating_threshold_of(c.get("zscore_method") or "analytic", {"operating_threshold": c.get("zscore_operating_threshold")})
            for c in case_rows
        }
    return operating_threshold_of(method, {})


def _operating_rule_words() -> str:
    """The default operating points in words, from :data:`detector.zscore_outputs.OPERATING_THRESHOLDS`."""
    from .zscore_outputs import OPERATING_THRESHOLD, OPERATING_THRESHOLDS

    return (
        f"(per z method: network {OPERATING_THRESHOLDS['network']:g}, analytic model {OPERATING_THRESHOLDS['analytic']:g}; "
        f"the subtraction methods at {OPERATING_THRESHOLD:g} on their own robust scale)"
    )


def _pct(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{100 * float(v):.1f} %"


def _num(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{float(v):.2f}"


def bone_roi_agreement(
    roi: np.ndarray, truth_bone: np.ndarray, spacing_mm: Sequence[float], *, body_value: int | None = 1
) -> dict[str, float | None]:
    """How well a bone ROI matches a truth bone map.

    Returns ``precision_3mm`` (share of ROI voxels within 3 mm of a truth bone voxel) and
    ``vertebral_body_inside`` (share of the truth voxels with value ``body_value``, the vertebral
    body class of the synthetic and real-CT pairs, inside the ROI; None when there are none).
    """
    from scipy import ndimage as ndi

    bone = truth_bone != 0
    if not roi.any() or not bone.any():
        return {"precision_3mm": None, "vertebral_body_inside": None}
    dist = ndi.distance_transform_edt(~bone, sampling=tuple(reversed([float(v) for v in spacing_mm])))
    body = truth_bone == body_value if body_value is not None else bone
    return {"precision_3mm": float((dist[roi] <= 3.0).mean()), "vertebral_body_inside": float(roi[body].mean()) if body.any() else None}


def _truth_bone(case: Case, current: Volume) -> LabelVolume | None:
    """The truth bone map next to the current exam (bone.nii.gz of synthetic / real-CT sets),
    when it is independent of the detector's own mask (phantom truth, or made from labels)."""
    folder = Path(case.current).parent
    path = folder / "bone.nii.gz"
    if not path.is_file():
        return None
    params = folder / "params.json"
    if params.is_file():
        try:
            p = json.loads(params.read_text(encoding="utf-8"))
        except ValueError:
            p = {}
        if p.get("bone_classes", {}).get("from") == "ct":
            return None  # made by the detector's own threshold mask: not an independent truth
    lab = read_volume(path, label=True)
    return lab if lab.same_space(current) else lab.resample_to(current)


def _truth_lesions(case: Case, current: Volume) -> tuple[list[TruthLesion], np.ndarray | None]:
    """Truth lesions with their voxel positions (when label maps exist) and the union mask."""
    out = []
    union = None
    maps: dict[Path, LabelVolume] = {}
    for les in case.lesions:
        points = None
        lesion_map = None
        diameter = 2.0 * les.radius_mm if les.radius_mm is not None else None
        if les.label_map is not None:
            if les.label_map not in maps:
                lab = read_volume(les.label_map, label=True)
                if not lab.same_space(current):
                    lab = lab.resample_to(current)
                maps[les.label_map] = lab  # type: ignore[assignment]
            lab = maps[les.label_map]
            sel = lab.array == les.label_value if les.label_value is not None else lab.array != 0
            if sel.any():
                lesion_map = lab
                points = current.grid.mask_points_mm(sel)
                vol = points.shape[0] * current.voxel_volume_mm3
                diameter = 2.0 * (3.0 * vol / (4.0 * math.pi)) ** (1.0 / 3.0)
                union = sel if union is None else (union | sel)
        out.append(
            TruthLesion(
                case_id=case.case_id,
                lesion_id=les.lesion_id,
                center_mm=les.center_mm,
                radius_mm=les.radius_mm,
                points_mm=points,
                label_map=lesion_map,
                label_value=les.label_value,
                lesion_type=les.lesion_type.value,
                location=les.location.value,
                diameter_mm=diameter,
                weight=les.weight,
            )
        )
    return out, union


def _registered(
    case: Case, work: Path, current: Volume, run_options: dict[str, Any]
) -> tuple[Volume, LabelVolume, np.ndarray, str, tuple[float, ...] | None]:
    """Warped prior, ROI, voxel-matched subtraction, QC status and the prior's own spacing."""
    from .pipeline import OUTPUT_FILES, run_pair

    case_dir = work / case.case_id
    files = [case_dir / OUTPUT_FILES[k] for k in ("qc", "warped_prior", "bone_roi", "subtraction_vm")]
    if all(f.is_file() for f in files):
        report = json.loads(files[0].read_text(encoding="utf-8"))
        status = str(report.get("status", "unknown"))
        prior_spacing = report.get("inputs", {}).get("prior", {}).get("spacing_mm")
        warped = read_volume(files[1])
        roi = read_volume(files[2], label=True)
        vm = read_volume(files[3]).array.astype(np.float32)
    else:
        result = run_pair(case.prior, current, case_dir, case_id=case.case_id, write_dicom=False, **{"zscore": False, **run_options})
        warped, roi, vm, status = result.warped_prior, result.bone_roi, result.subtraction.voxel_matched.array, result.qc.status
        prior_spacing = result.qc.inputs.get("prior", {}).get("spacing_mm")
    return warped, roi, vm, status, (tuple(float(v) for v in prior_spacing) if prior_spacing else None)  # type: ignore[return-value]


def evaluate_detectors(
    case_list: CaseList | str | Path,
    work_dir: str | Path,
    *,
    model: Any = "default",
    methods: Sequence[str] = METHODS,
    settings: EvaluationSettings | None = None,
    force_model: bool = False,
    device: str = "cpu",
    progress: bool = True,
    on_case: Callable[[str, dict[str, Any]], None] | None = None,
    zmap_options: dict[str, Any] | None = None,
    single_exam_model: Any = "default",
    **run_options: Any,
) -> DetectorEvaluation:
    """Score plain subtraction, voxel matching and z-maps as stand-alone detectors on a case list.

    Parameters
    ----------
    case_list : cases with truth lesions (normal and abnormal); a CSV path or a CaseList.
    work_dir : registration outputs are read from (or written to) ``work_dir/<case_id>/``.
    model : the z-score network for ``"zscore"`` (``"default"``, a weights path or a loaded model).
    methods : which of :data:`METHODS` to score.
    settings : candidate and scoring settings.
    force_model : use the network even on out-of-domain cases.
    device : torch device for the network.
    progress : show a progress bar.
    on_case : called as ``on_case(case_id, case_info)`` after each case.
    zmap_options : extra keyword arguments of :func:`detector.zscore.compute_zmap` for the
        network's z-map (e.g. ``{"recalibrate": False}``).
    single_exam_model : the in-painting network for ``"single_exam"`` (``"default"``, a weights
        path or a loaded :class:`detector.single_exam.SingleExamModel`); it reads the current exam
        only, with the ROI derived from that exam (:func:`detector.single_exam.single_exam_roi`).
    **run_options : passed to :func:`detector.run_pair` for cases not yet registered.

    Returns
    -------
    DetectorEvaluation
    """
    import warnings

    from .zscore import ModelBundleError, OutOfDomainWarning, ZScoreModel, compute_zmap, load_zscore_model
    from .zscore_outputs import operating_threshold_of

    settings = settings or EvaluationSettings()
    bad = [m for m in methods if m not in METHODS + OPTIONAL_METHODS]
    if bad:
        raise DetectorInputError(f"Unknown method(s) {bad}; choose among {', '.join(METHODS + OPTIONAL_METHODS)}.")
    if not isinstance(case_list, CaseList):
        case_list = read_case_list(case_list)
    if not case_list.cases:
        raise DetectorInputError("The case list is empty.")
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    notes: list[str] = []
    net_model: ZScoreModel | None = None
    model_info = None
    if "zscore" in methods:
        try:
            net_model = model if isinstance(model, ZScoreModel) else load_zscore_model(None if model == "default" else model, device=device)
        except ModelBundleError as exc:
            raise DetectorInputError(f"The z-score network cannot be loaded: {exc}") from None
        model_info = {"name": net_model.name, "version": net_model.version, "path": str(net_model.path), "sha256": net_model.metadata.get("sha256")}
        train_seeds = set(net_model.metadata.get("training_data", {}).get("synthetic_seeds_train", []))
        overlap = [c.case_id for c in case_list if _synthetic_seed(c) in train_seeds]
        if overlap:
            notes.append(
                f"{len(overlap)} case(s) were generated with seeds the network was trained on ({', '.join(overlap[:10])}); these are not held out."
            )
    se_model = None
    if "single_exam" in methods:
        from .single_exam import SingleExamModel, compute_single_exam_zmap, load_single_exam_model

        try:
            se_model = (
                single_exam_model
                if isinstance(single_exam_model, SingleExamModel)
                else load_single_exam_model(None if single_exam_model == "default" else single_exam_model, device=device)
            )
        except ModelBundleError as exc:
            raise DetectorInputError(f"The single-exam network cannot be loaded: {exc}") from None
        se_info = {"name": se_model.name, "version": se_model.version, "path": str(se_model.path), "sha256": se_model.metadata.get("sha256")}
        model_info = {**(model_info or {}), "single_exam": se_info}
        se_seeds = set(se_model.metadata.get("training_data", {}).get("synthetic_seeds_train", []))
        overlap = [c.case_id for c in case_list if _synthetic_seed(c) in se_seeds]
        if overlap:
            notes.append(
                f"{len(overlap)} case(s) were generated with seeds the single-exam network was trained on ({', '.join(overlap[:10])}); these are not held out."
            )

    marks: dict[str, list[CaseMarks]] = {m: [] for m in methods}
    lesions_by_case: dict[str, list[TruthLesion]] = {}
    weights: dict[str, dict[str, float]] = {}
    cal_counts = {m: [0, 0] for m in methods}
    case_rows: list[dict[str, Any]] = []
    bar = task = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        bar.start()
        task = bar.add_task("evaluating", total=len(case_list))
    try:
        for case in case_list:
            t_case = time.perf_counter()
            if bar is not None:
                bar.update(task, description=f"{case.case_id}")  # type: ignore[arg-type]
            current = read_exam(case.current).volume
            warped, roi_vol, vm, qc_status, prior_spacing = _registered(case, work, current, run_options)
            roi = roi_vol.array != 0
            lesions, lesion_union = _truth_lesions(case, current)
            lesions_by_case[case.case_id] = lesions
            weights[case.case_id] = case.lesion_weights()
            unchanged = roi.copy()
            if lesion_union is not None:
                from scipy import ndimage as ndi

                r_vox = [max(1, int(math.ceil(settings.margin_mm / s))) for s in reversed(current.spacing_mm)]
                grown = ndi.binary_dilation(lesion_union, structure=np.ones([2 * r + 1 for r in r_vox], bool))
                unchanged &= ~grown
            # voxels next to tissue the prior did not image carry no z (see compute_zmap); leave
            # them out of every method's calibration so that the figures compare like with like
            from .zscore import near_missing_prior

            near_missing = near_missing_prior(current.array, warped.array, roi, current.spacing_mm, 3.0)
            unchanged &= ~near_missing
            ts = np.where(roi, current.array.astype(np.float32) - warped.array.astype(np.float32), 0.0).astype(np.float32)
            vals = ts[roi]
            scale = max(1.0, float(1.4826 * np.median(np.abs(vals - np.median(vals))))) if vals.size else 1.0
            change = current.like(ts)
            info: dict[str, Any] = {
                "case_id": case.case_id,
                "status": case.status,
                "n_lesions": len(lesions),
                "qc_status": qc_status,
                "subtraction_scale_hu": scale,
                "n_candidates": {},
                "bone_roi_volume_ml": float(roi.sum() * current.voxel_volume_mm3 / 1000.0),
            }
            truth_bone = _truth_bone(case, current)
            if truth_bone is not None:
                info["bone_roi"] = bone_roi_agreement(roi, truth_bone.array, current.spacing_mm)
            for method in methods:
                regional = None  # the z-maps' candidate z (native voxels) for the matched filter
                if method == "plain":
                    score = ts / scale
                elif method == "voxel_matched":
                    score = np.where(roi, vm, 0.0).astype(np.float32) / scale
                elif method == "single_exam":
                    # the current exam alone: its own bone ROI, no prior, no registration
                    # (no analytic fallback without a prior: an out-of-domain exam is scored anyway, with a note)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", OutOfDomainWarning)
                        se = compute_single_exam_zmap(current, None, model=se_model, device=device, force=True)
                    score = se.z.array
                    info["single_exam_recalibration"] = se.parameters.get("recalibration_factor")
                    if se.domain is not None and not se.domain.in_domain:
                        notes.append(f"{case.case_id}: single-exam network used outside its training domain ({'; '.join(se.domain.reasons)})")
                else:
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always", OutOfDomainWarning)
                        zm = compute_zmap(
                            current,
                            warped,
                            roi_vol,
                            model=net_model if method == "zscore" else "analytic",
                            prior_spacing_mm=prior_spacing,
                            force=force_model,
                            device=device,
                            **((zmap_options or {}) if method == "zscore" else {}),
                        )
                    score = zm.z.array
                    regional = zm.candidate_z.array
                    if method == "zscore":
                        info["zscore_method"] = zm.method
                        info["zscore_operating_threshold"] = operating_threshold_of(zm.method, zm.parameters)
                        if zm.method != "network" or zm.parameters.get("forced"):
                            notes.append(f"{case.case_id}: " + "; ".join(zm.notes))
                        del caught
                score_vol = current.like(np.asarray(score, dtype=np.float32))
                # the z-maps are 0 where the prior had no data around the voxel: not part of their map
                cand_roi = roi & ~near_missing if method in ("zscore", "analytic") else roi
                if settings.matched_filter_mm:
                    base = current.like(np.asarray(regional, dtype=np.float32)) if regional is not None else score_vol
                    score_vol = matched_filter_score(base, cand_roi, sigma_mm=settings.matched_filter_mm)
                cands = find_candidates(
                    score_vol,
                    roi=cand_roi,
                    threshold=settings.seed_threshold,
                    low_threshold=settings.low_threshold,
                    min_volume_mm3=settings.min_volume_mm3,
                    change_hu=change,
                    split_mm=settings.split_mm,
                    score_name="z" if method in ("zscore", "analytic", "single_exam") else "sigma",
                    case_id=case.case_id,
                )
                info["n_candidates"][method] = len(cands)
                marks[method].append(match_candidates(case.case_id, cands, lesions, margin_mm=settings.margin_mm))
                sel = np.abs(score[unchanged])
                cal_counts[method][0] += int(np.count_nonzero(sel > 3.0))
                cal_counts[method][1] += int(sel.size)
            info["elapsed_s"] = round(time.perf_counter() - t_case, 2)
            case_rows.append(info)
            if on_case is not None:
                on_case(case.case_id, info)
            if bar is not None:
                bar.advance(task)  # type: ignore[arg-type]
    finally:
        if bar is not None:
            bar.stop()
    # A method that never ran gets no row: the network row only when the network made at least
    # one case's z-map (otherwise every case fell back to the analytic model, already a row).
    ran = list(methods)
    if "zscore" in ran:
        n_net = sum(1 for c in case_rows if c.get("zscore_method") == "network")
        if n_net == 0:
            ran.remove("zscore")
            notes.append(
                f"The network ran on none of the {len(case_rows)} cases (all out of its training domain; each fell back to the analytic error model, "
                "which has its own row): no network row. --force-model scores it anyway."
            )
        elif n_net < len(case_rows):
            notes.append(
                f"The network ran on {n_net} of {len(case_rows)} cases; the others fell back to the analytic error model inside the network row."
            )
    ran_marks = {m: marks[m] for m in ran}
    waf = wafroc_with_ci(ran_marks, weights) if ran_marks else {}
    diffs = {"zscore - analytic": wafroc_difference_ci(ran_marks, "zscore", "analytic", weights)} if {"zscore", "analytic"} <= set(ran_marks) else {}
    scores = {
        m: replace(
            score_detector(
                m,
                marks[m],
                lesions_by_case,
                fp_rates=settings.fp_rates,
                wafroc=waf.get(m, (float("nan"),) * 3)[0],
                calibration_frac_abs_gt3=cal_counts[m][0] / cal_counts[m][1] if cal_counts[m][1] else float("nan"),
                size_edges_mm=settings.size_edges_mm,
            ),
            wafroc_ci=tuple(waf[m][1:]) if m in waf else None,
            operating_point=operating_point(
                marks[m],
                lesions_by_case,
                _op_thresholds(m, settings, case_rows),
                min_diameter_mm=settings.size_edges_mm[0] if settings.size_edges_mm else 5.0,
            ),
            operating_curve=tuple(
                operating_point(marks[m], lesions_by_case, float(t), min_diameter_mm=settings.size_edges_mm[0] if settings.size_edges_mm else 5.0)
                for t in OPERATING_CURVE_THRESHOLDS
            ),
        )
        for m in ran
    }
    roi_rows = [c["bone_roi"] for c in case_rows if c.get("bone_roi") and c["bone_roi"].get("precision_3mm") is not None]
    vols = [c["bone_roi_volume_ml"] for c in case_rows]
    prec = [r["precision_3mm"] for r in roi_rows]
    vb = [r["vertebral_body_inside"] for r in roi_rows if r.get("vertebral_body_inside") is not None]
    bone_summary = {
        "mean_volume_ml": float(np.mean(vols)) if vols else float("nan"),
        "n_cases_with_truth": len(roi_rows),
        "mean_precision_3mm": float(np.mean(prec)) if prec else None,
        "min_precision_3mm": float(np.min(prec)) if prec else None,
        "mean_vertebral_body_inside": float(np.mean(vb)) if vb else None,
        "min_vertebral_body_inside": float(np.min(vb)) if vb else None,
    }
    failed_qc = [c["case_id"] for c in case_rows if c["qc_status"] == "failed"]
    if failed_qc:
        notes.append(f"registration QC failed for {', '.join(failed_qc)} (scored anyway)")
    return DetectorEvaluation(
        scores=scores,
        settings=settings,
        cases=tuple(case_rows),
        model=model_info,
        notes=tuple(notes),
        case_list=str(case_list.source) if case_list.source else None,
        elapsed_s=time.perf_counter() - start,
        bone_roi=bone_summary,
        marks={m: tuple(marks[m]) for m in ran},
        wafroc_differences=diffs,
    )


def write_marks_csv(case_marks: Sequence[CaseMarks], path: str | Path) -> Path:
    """Write scored marks as ``case_id, rating, lesion_id`` CSV (atomically); returns the path.

    One row per non-lesion localisation (empty ``lesion_id``) and per hit lesion (its rating);
    rows of a case in descending rating. The file is what ``tsct analyze cad-vs-rad --cad-marks``
    and ``tsct analyze report --cad-marks`` read.
    """
    import csv
    import os
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["case_id", "rating", "lesion_id"])
            for cm in case_marks:
                rows = [(r, "") for r in cm.nl_ratings] + [(r, lid) for lid, r in cm.ll_ratings.items() if r is not None]
                for r, lid in sorted(rows, key=lambda x: -x[0]):
                    w.writerow([cm.case_id, repr(float(r)), lid])
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
