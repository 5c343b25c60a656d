"""Statistician: run the analysis of a closed study, view the report here (tables, plots), download it.

The study's finished readings are scored from one database snapshot
(:func:`reader_study.study_records`), turned into :class:`analysis.ObserverData` and analysed by
:func:`analysis.write_report` (Obuchowski-Rockette or DBM, RRRC/FRRC/RRFC, subgroups), which
writes ``report.html``, ``results.json`` and the CSV files into ``$TSCT_DATA_DIR/reports/<study>/``.
"""

from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st
import streamlit.components.v1 as components

import reader_study
from reading_app.pages import common

db = common.require_database()
user = common.require_role("statistician")
rt = common.runtime()

st.title("Analysis")
code = common.choose_study(db, key="analysis_study", statuses=("closed", "open"))
if not code:
    st.stop()
with db.snapshot() as s:
    status = reader_study.get_study(s, code).status
if status != "closed":
    st.info(f"Study {code} is still {status}. The analysis of record is run on a closed study; an interim look uses the readers who have finished.")

with st.form("analysis"):
    import analysis

    c1, c2, c3 = st.columns(3)
    foms = list(analysis.FOMS)
    fom = c1.selectbox("Figure of merit", foms, index=foms.index("wAFROC") if "wAFROC" in foms else 0)
    method = c2.selectbox("Method", ["OR", "DBM"], format_func=lambda m: {"OR": "Obuchowski-Rockette", "DBM": "Dorfman-Berbaum-Metz"}[m])
    alpha = c3.number_input("α", 0.001, 0.5, 0.05, format="%.3f")
    c4, c5 = st.columns(2)
    subgroups = c4.selectbox("Subgroups", ["auto", "none"], help="auto: reader groups, lesion types and locations the data supports.")
    pdf = c5.checkbox("Also write a PDF", value=False)
    allow_incomplete = st.checkbox("Use only the readers who have finished (interim look)", value=status != "closed", disabled=status == "closed")
    run = st.form_submit_button("Run the analysis", type="primary")

if run:
    from analysis import write_report

    progress = st.status("Running the analysis…", expanded=False)
    try:
        with db.snapshot() as s:
            records = reader_study.study_records(s, code, allow_incomplete=allow_incomplete)
        progress.write(records.summary())
        data = records.to_observer_data()
        paths = write_report(
            data,
            rt.settings.data_dir / "reports",
            study_name=code,
            fom=fom,
            method=method,
            alpha=float(alpha),
            subgroups=None if subgroups == "none" else "auto",
            pdf=pdf,
            progress=progress.write,
        )
    except Exception as exc:  # noqa: BLE001 - every analysis refusal is shown with its message
        progress.update(label="The analysis could not be run", state="error")
        st.error(f"{type(exc).__name__}: {common.text(exc)}")
    else:
        progress.update(label="Analysis finished", state="complete")
        st.session_state["tsct_report"] = (code, str(paths.directory))

report = st.session_state.get("tsct_report")
if not report or report[0] != code:
    st.stop()
folder = Path(report[1])
st.caption(f"Report files in {common.text(folder)}")

foms_csv, diffs_csv, curves_csv = folder / "foms.csv", folder / "differences.csv", folder / "curves.csv"
tab_summary, tab_plots, tab_report = st.tabs(["Tables", "Plots", "Full report"])
with tab_summary:
    if foms_csv.exists():
        st.subheader("Figures of merit")
        st.dataframe(pd.read_csv(foms_csv), hide_index=True, width="stretch")
    if diffs_csv.exists():
        st.subheader("Treatment differences")
        st.dataframe(pd.read_csv(diffs_csv), hide_index=True, width="stretch")
with tab_plots:
    if curves_csv.exists():
        curves = pd.read_csv(curves_csv)
        averaged = curves[curves["average"].notna()] if "average" in curves else curves
        for name, frame in averaged.groupby("curve"):
            chart = (
                alt.Chart(frame)
                .mark_line(interpolate="step-after")
                .encode(x=alt.X("x:Q", title="x"), y=alt.Y("y:Q", title="y", scale=alt.Scale(domain=[0, 1])), color="treatment:N")
                .properties(title=f"{name} (reader-averaged)", height=320)
            )
            st.altair_chart(chart, width="stretch")
with tab_report:
    html = folder / "report.html"
    if html.exists():
        components.html(html.read_text(encoding="utf-8"), height=1400, scrolling=True)

# served by the app's download route: only to this browser session, while the account may see this page
common.offer_download(user, "Download the report (zip)", folder, f"{code}-report.zip", roles=("statistician",))
