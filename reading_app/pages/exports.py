"""Coordinators and statisticians: export a study for analysis (JAFROC Excel, iMRMC, CSV) and back up the database."""

import datetime as dt
from pathlib import Path

import streamlit as st

import reader_study
from reading_app.pages import common

db = common.require_database()
user = common.require_role("coordinator", "statistician")
rt = common.runtime()

st.title("Exports and backups")
code = common.choose_study(db, statuses=("open", "closed"))


if code:
    st.header("Export a study")
    st.caption(
        "Scores every finished reading against the truth (one consistent snapshot; readers may keep working) and writes "
        "the RJafroc workbook, the iMRMC file, tidy CSV tables and provenance.json with each file's SHA-256."
    )
    with st.form("export"):
        formats = st.multiselect("Formats", ["jafroc", "imrmc", "csv"], default=["jafroc", "imrmc", "csv"])
        allow_incomplete = st.checkbox("Export the readers who have finished and leave out the others")
        submitted = st.form_submit_button("Export", type="primary")
    if submitted:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        out = rt.settings.data_dir / "exports" / code / stamp
        try:
            result = reader_study.export_study(db, code, out, formats=tuple(formats), allow_incomplete=allow_incomplete, actor=user.actor)
        except (reader_study.ReaderStudyError, ValueError) as exc:
            common.show_error(exc)
        else:
            st.session_state["tsct_export"] = (code, str(out), result.summary())
    done = st.session_state.get("tsct_export")
    if done and done[0] == code:
        st.success(done[2].splitlines()[0])
        st.code("\n".join(done[2].splitlines()[1:]), language=None)
        folder = Path(done[1])
        # served by the app's download route: only to this browser session, while the account may see this page
        common.offer_download(user, "Download the export (zip)", folder, f"{code}-export-{folder.name}.zip", roles=("coordinator", "statistician"))

if user.role in ("coordinator", "admin"):
    st.header("Back up the database")
    st.caption("A consistent copy while readers keep working (SQLite online backup, checked; PostgreSQL: pg_dump). Keep copies off this machine.")
    if st.button("Write a backup now"):
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        suffix = ".sqlite3" if db.dialect == "sqlite" else ".dump"
        try:
            result = reader_study.backup_database(db, rt.settings.data_dir / "backups" / f"reader-study-{stamp}{suffix}", actor=user.actor)
        except (reader_study.ReaderStudyError, OSError) as exc:
            common.show_error(exc)
        else:
            st.success(result.summary())
