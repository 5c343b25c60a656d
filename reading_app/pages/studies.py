"""Coordinator: studies — list, validate a case list, create a study from it, check the detector outputs."""

from pathlib import Path

import pandas as pd
import streamlit as st

import reader_study
from cases import CaseListError, read_case_list
from reading_app import workstation as ws
from reading_app.pages import common

db = common.require_database()
user = common.require_role("coordinator")
rt = common.runtime()

st.title("Studies")
with db.snapshot() as s:
    studies = reader_study.list_studies(s)
if studies.empty:
    st.info("No study yet. Validate a case list below, then create the study.")
else:
    st.dataframe(studies, hide_index=True, width="stretch")


def problems_frame(problems) -> pd.DataFrame:  # noqa: ANN001
    """The problems of a case list as a table; a file that is not a case list at all gets one line
    naming the columns it lacks (its own first line is never shown: file contents are not echoed)."""
    from cases.caselist import REQUIRED_COLUMNS

    if any(p.row == 1 and p.column is None and "missing required column" in p.message for p in problems):
        return pd.DataFrame(
            [
                {
                    "row": 1,
                    "column": None,
                    "what to fix": "This is not a case list: its first row must be a header with the columns "
                    + ", ".join(REQUIRED_COLUMNS)
                    + " (docs/case-list.md).",
                }
            ]
        )
    return pd.DataFrame([{"row": p.row, "column": p.column, "what to fix": p.message} for p in problems])


def outside_images(case_list) -> list[str]:  # noqa: ANN001
    """The cases whose prior or current exam lies outside the study data folders (the viewer would read them)."""
    outside = []
    for case in case_list:
        for path in (case.prior, case.current):
            try:
                common.confined_path(str(path), what="exam")
            except ValueError:
                outside.append(case.case_id)
                break
    return outside


def typed_path(value: str, what: str) -> Path | None:
    """A path typed here, confined to the study data folders (shown as an error and ``None`` otherwise)."""
    try:
        path = common.confined_path(value, what=what)
    except ValueError as exc:
        common.show_error(exc)
        return None
    if not path.is_file():
        st.error(f"The {common.text(what)} {common.text(path)} does not exist on the server (or is not a file).")
        return None
    return path


# ------------------------------------------------------------------------------------------------
st.header("Validate a case list")
roots = ", ".join(str(r) for r in common.data_roots())
st.caption(
    "A case list is a CSV on the server (docs/case-list.md): one row per truth lesion and per normal case. "
    f"Paths inside it are read relative to its folder. Only files inside the study data folder(s) can be used: {common.text(roots)} "
    "($TSCT_STUDY_DIRS, default $TSCT_DATA_DIR); a relative path starts there."
)
path_text = st.text_input("Case list (path on the server)", key="caselist_path", placeholder="studies/ts-2026/caselist.csv")
if st.button("Validate", disabled=not path_text):
    path = typed_path(path_text, "case list")
    if path is not None:
        # the same full checks as `tsct cases validate` and study creation: every exam read,
        # truth checked against the current exam (field of view, bone, label-map grid)
        with st.spinner("Reading every exam and label map of the case list…"):
            try:
                cl = read_case_list(path, check_images=True)
                problems, notes = [], list(cl.warnings)
            except CaseListError as exc:
                cl, problems, notes = None, exc.problems, exc.warnings
        if problems:
            st.error(f"{len(problems)} problem(s) in {common.text(path.name)}; nothing was imported.")
            st.dataframe(problems_frame(problems), hide_index=True, width="stretch")
        if notes:
            st.warning(f"{len(notes)} note(s) to check (not blocking):")
            st.dataframe(problems_frame(notes), hide_index=True, width="stretch")
        if cl is not None:
            st.success(f"Valid: {common.text(cl.summary())}")
            away = outside_images(cl)
            if away:
                st.error(
                    f"{len(away)} case(s) have exams outside the study data folders ({common.text(', '.join(away[:10]))}); "
                    "move them inside (or add their folder to $TSCT_STUDY_DIRS) before creating a study."
                )
            overlays = ("subtraction", "zmap")
            folder = rt.settings.detector_dir
            check = ws.check_detector_outputs([c.case_id for c in cl], overlays, folder, current={c.case_id: c.current for c in cl})
            missing = check[~check["present"]]
            if missing.empty:
                st.info(f"Detector outputs found for every case in {common.text(folder)}.")
            else:
                st.warning(
                    f"{len(missing)} of {len(check)} detector outputs the aided reading needs are missing or unusable in {common.text(folder)} "
                    f"(run `tsct detect batch {common.text(path)} --out {common.text(folder)}`)."
                )
                st.dataframe(missing, hide_index=True, width="stretch")

# ------------------------------------------------------------------------------------------------
st.header("Create a study")
with st.form("create-study"):
    c1, c2 = st.columns(2)
    code = c1.text_input("Study code", placeholder="TS-2026", help="Letters, digits, '-', '_' or '.'; used in exports.")
    title = c2.text_input("Title")
    caselist = st.text_input("Case list (path on the server, inside the data folders)", value=st.session_state.get("caselist_path", ""))
    c3, c4 = st.columns(2)
    readers_upload = c3.file_uploader("Readers CSV (optional)", type=["csv"], help="Columns: name, group, role, experience_years.")
    training = c4.text_input("Training case list (optional; a path inside the data folders)", help="Read first, with feedback; never analysed.")
    c5, c6, c7 = st.columns(3)
    paradigm = c5.selectbox("Paradigm", ["FROC", "ROC"], help="FROC: each lesion marked with a rating. ROC: one rating per case.")
    scale = c6.selectbox("Rating scale", ["1-5", "0-100"])
    acceptance = c7.selectbox(
        "A mark hits a lesion when",
        ["radius", "extent"],
        format_func=lambda r: {"radius": "within a radius of its centre", "extent": "inside the lesion"}[r],
    )
    c8, c9, c10 = st.columns(3)
    radius = c8.number_input("Acceptance radius (mm)", 1.0, 50.0, 10.0)
    washout = c9.number_input("Washout (days)", 0.0, 365.0, 28.0)
    seed = c10.number_input("Seed", 0, 2**31 - 1, 0)
    treatments_text = st.text_input(
        "Treatments, in reading order",
        value="unaided, aided=subtraction+zmap",
        help="CODE or CODE=OVERLAY+OVERLAY; overlays: subtraction, subtraction_vm, warped_prior, zmap.",
    )
    submitted = st.form_submit_button("Create study", type="primary")
if submitted:
    try:
        treatments = tuple(reader_study.parse_treatment(t) for t in treatments_text.split(",") if t.strip())
        case_list_path = common.confined_path(caselist, what="case list")
        training_path = common.confined_path(training, what="training case list") if training.strip() else None
        for listed in [case_list_path] + ([training_path] if training_path else []):
            away = outside_images(read_case_list(listed))
            if away:
                raise ValueError(
                    f"{len(away)} case(s) of {listed.name} have exams outside the study data folders "
                    f"({', '.join(away[:10])}); move them inside, or add their folder to $TSCT_STUDY_DIRS."
                )
        specs = []
        if readers_upload is not None:
            import hashlib

            data = readers_upload.getvalue()
            uploads = rt.settings.data_dir / "uploads"
            uploads.mkdir(parents=True, exist_ok=True)
            saved = uploads / f"readers-{hashlib.sha256(data).hexdigest()[:16]}.csv"
            tmp = saved.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(saved)
            specs = reader_study.read_readers_file(saved)
        with db.transaction() as s:
            study = reader_study.create_study(
                s,
                code=code.strip(),
                case_list=case_list_path,
                readers=specs,
                title=title,
                paradigm=paradigm,
                rating_scale=scale,
                treatments=treatments,
                acceptance_rule=acceptance,
                acceptance_radius_mm=radius if acceptance == "radius" else None,
                washout_days=washout,
                seed=int(seed),
                training_case_list=training_path,
                actor=user.actor,
            )
            n_cases = sum(1 for c in study.cases if not c.is_training)
        st.success(
            f"Study {common.text(code)} created as a draft with {n_cases} cases and {len(specs)} readers. Next: readers and accounts, then the design."
        )
    except reader_study.InputFileError as exc:
        st.error(f"{len(exc.problems)} problem(s) in the readers file; nothing was created.")
        st.dataframe(problems_frame(exc.problems), hide_index=True, width="stretch")
    except CaseListError as exc:
        st.error(f"{len(exc.problems)} problem(s) in the case list; nothing was created.")
        st.dataframe(problems_frame(exc.problems), hide_index=True, width="stretch")
    except (reader_study.ReaderStudyError, ValueError, FileNotFoundError) as exc:
        common.show_error(exc)

# ------------------------------------------------------------------------------------------------
st.header("Check a study's images")
code = common.choose_study(db, key="images_study")
if code and st.button("Check detector outputs"):
    with db.snapshot() as s:
        study = reader_study.get_study(s, code)
        cases = [c.code for c in study.cases]
        grids = {c.code: c.grid() for c in study.cases}  # the database's record of each current exam
        overlays = sorted({o for t in study.treatments for o in t.overlay_names})
        unknown = sorted({o for t in study.treatments for o in ws.unknown_overlays(t.overlay_names)})
    folder = common.detector_dir(code)
    check = ws.check_detector_outputs(cases, overlays, folder, current=grids)
    if unknown:
        st.warning(f"Treatments name overlays the viewer does not know: {', '.join(unknown)} (shown to no one).")
    if check.empty:
        st.info("No treatment of this study shows detector outputs.")
    elif check["present"].all():
        st.success(f"All {len(check)} detector outputs are present in {common.text(folder)}.")
    else:
        st.warning(f"{int((~check['present']).sum())} of {len(check)} detector outputs are missing in {common.text(folder)}.")
        st.dataframe(check[~check["present"]], hide_index=True, width="stretch")
