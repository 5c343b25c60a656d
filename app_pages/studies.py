"""Coordinator: studies — list, validate a case list, create a study from it, check the detector outputs."""

from pathlib import Path

import pandas as pd
import streamlit as st

import reader_study
import workstation as ws
from app_pages import common
from cases import CaseListError, read_case_list, validate_case_list

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
    return pd.DataFrame([{"row": p.row, "column": p.column, "what to fix": p.message} for p in problems])


# ------------------------------------------------------------------------------------------------
st.header("Validate a case list")
st.caption("A case list is a CSV on the server (docs/case-list.md): one row per truth lesion and per normal case. "
           "Paths inside it are read relative to its folder.")
path_text = st.text_input("Case list (path on the server)", key="caselist_path", placeholder="/data/studies/ts-2026/caselist.csv")
if st.button("Validate", disabled=not path_text):
    path = Path(path_text).expanduser()
    if not path.is_file():
        st.error(f"{path}: no such file on the server.")
    else:
        problems = validate_case_list(path)
        if problems:
            st.error(f"{len(problems)} problem(s) in {path.name}; nothing was imported.")
            st.dataframe(problems_frame(problems), hide_index=True, width="stretch")
        else:
            cl = read_case_list(path)
            st.success(f"Valid: {cl.summary()}")
            overlays = ("subtraction", "zmap")
            check = ws.check_detector_outputs([c.case_id for c in cl], overlays, rt.settings.detector_dir, current={c.case_id: c.current for c in cl})
            missing = check[~check["present"]]
            if missing.empty:
                st.info(f"Detector outputs found for every case in {rt.settings.detector_dir}.")
            else:
                st.warning(f"{len(missing)} of {len(check)} detector outputs the aided reading needs are missing or unusable in {rt.settings.detector_dir} "
                           f"(run `tsct detect batch {path} --out {rt.settings.detector_dir}`).")
                st.dataframe(missing, hide_index=True, width="stretch")

# ------------------------------------------------------------------------------------------------
st.header("Create a study")
with st.form("create-study"):
    c1, c2 = st.columns(2)
    code = c1.text_input("Study code", placeholder="TS-2026", help="Letters, digits, '-', '_' or '.'; used in exports.")
    title = c2.text_input("Title")
    caselist = st.text_input("Case list (path on the server)", value=st.session_state.get("caselist_path", ""))
    c3, c4 = st.columns(2)
    readers_file = c3.text_input("Readers CSV (optional)", help="Columns: name, group, role, experience_years.")
    training = c4.text_input("Training case list (optional)", help="Read first, with feedback; never analysed.")
    c5, c6, c7 = st.columns(3)
    paradigm = c5.selectbox("Paradigm", ["FROC", "ROC"], help="FROC: each lesion marked with a rating. ROC: one rating per case.")
    scale = c6.selectbox("Rating scale", ["1-5", "0-100"])
    acceptance = c7.selectbox("A mark hits a lesion when", ["radius", "extent"], format_func=lambda r: {"radius": "within a radius of its centre", "extent": "inside the lesion"}[r])
    c8, c9, c10 = st.columns(3)
    radius = c8.number_input("Acceptance radius (mm)", 1.0, 50.0, 10.0)
    washout = c9.number_input("Washout (days)", 0.0, 365.0, 28.0)
    seed = c10.number_input("Seed", 0, 2**31 - 1, 0)
    treatments_text = st.text_input("Treatments, in reading order", value="unaided, aided=subtraction+zmap",
                                    help="CODE or CODE=OVERLAY+OVERLAY; overlays: subtraction, subtraction_vm, warped_prior, zmap.")
    submitted = st.form_submit_button("Create study", type="primary")
if submitted:
    try:
        treatments = tuple(reader_study.parse_treatment(t) for t in treatments_text.split(",") if t.strip())
        specs = reader_study.read_readers_file(readers_file) if readers_file.strip() else []
        with db.transaction() as s:
            study = reader_study.create_study(
                s, code=code.strip(), case_list=Path(caselist).expanduser(), readers=specs, title=title, paradigm=paradigm,
                rating_scale=scale, treatments=treatments, acceptance_rule=acceptance,
                acceptance_radius_mm=radius if acceptance == "radius" else None, washout_days=washout, seed=int(seed),
                training_case_list=Path(training).expanduser() if training.strip() else None, actor=user.actor,
            )
            n_cases = sum(1 for c in study.cases if not c.is_training)
        st.success(f"Study {code} created as a draft with {n_cases} cases and {len(specs)} readers. Next: readers and accounts, then the design.")
    except reader_study.InputFileError as exc:
        st.error(str(exc).splitlines()[0])
        st.dataframe(problems_frame(exc.problems), hide_index=True, width="stretch")
    except CaseListError as exc:
        st.error(str(exc).splitlines()[0])
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
    check = ws.check_detector_outputs(cases, overlays, rt.settings.detector_dir, current=grids)
    if unknown:
        st.warning(f"Treatments name overlays the viewer does not know: {', '.join(unknown)} (shown to no one).")
    if check.empty:
        st.info("No treatment of this study shows detector outputs.")
    elif check["present"].all():
        st.success(f"All {len(check)} detector outputs are present in {rt.settings.detector_dir}.")
    else:
        st.warning(f"{int((~check['present']).sum())} of {len(check)} detector outputs are missing.")
        st.dataframe(check[~check["present"]], hide_index=True, width="stretch")
