"""Coordinator: the reading design (make, check balance), lock, open and close, and progress per reader and session."""

import streamlit as st

import reader_study
from reading_app.pages import common

db = common.require_database()
user = common.require_role("coordinator")

st.title("Design and progress")
code = common.choose_study(db)
if not code:
    st.stop()

with db.snapshot() as s:
    study = reader_study.get_study(s, code)
    status, locked, washout_days, design_kind = study.status, study.is_locked, study.washout_days, study.design
    content_hash = study.content_hash

st.markdown(
    f"Status **{status}**"
    + (f", locked (content hash `{content_hash[:16]}…`)" if locked else ", not locked")
    + (f", design **{design_kind}**" if design_kind else "")
)


def show_plan(plan: reader_study.DesignPlan) -> None:
    st.text(plan.summary())
    st.dataframe(plan.schedule_frame(), hide_index=True, width="stretch")
    report = plan.check_balance(washout_days=washout_days)
    verdict = "balanced" if report.balanced else ("usable, with warnings" if report.ok else "NOT usable")
    (st.success if report.balanced else st.warning if report.ok else st.error)(f"Balance check: {verdict}")
    st.dataframe(report.to_frame(), hide_index=True, width="stretch")


tab_design, tab_state, tab_progress = st.tabs(["Design", "Lock, open, close", "Progress"])

with tab_design:
    if not locked:
        with st.form("design"):
            c1, c2, c3 = st.columns(3)
            kind = c1.selectbox(
                "Design",
                ["crossover", "sequential"],
                help="crossover: sessions separated by the washout, counterbalanced; sequential: each case unaided then aided in one session.",
            )
            blocks = c2.selectbox("Case blocks (crossover)", ["treatments mixed in each session", "1 (AB/BA)"])
            seed = c3.number_input("Seed (empty: the study's)", 0, 2**31 - 1, value=None)
            if st.form_submit_button("Make the design", type="primary"):
                try:
                    with db.transaction() as s:
                        plan = reader_study.make_design(
                            s,
                            code,
                            kind=kind,
                            case_blocks=1 if blocks.startswith("1") else None,
                            seed=None if seed is None else int(seed),
                            actor=user.actor,
                        )
                    st.session_state["tsct_plan_made"] = code
                except reader_study.ReaderStudyError as exc:
                    common.show_error(exc)
    try:
        with db.snapshot() as s:
            plan = reader_study.load_design(s, code)
        show_plan(plan)
    except reader_study.ReaderStudyError as exc:
        st.info(f"No design yet ({common.text(exc)}).")

with tab_state:
    c1, c2, c3 = st.columns(3)
    if c1.button("Lock truth and design", disabled=locked, help="Freezes truth, design and settings; stores their SHA-256 content hash."):
        try:
            with db.transaction() as s:
                digest = reader_study.lock_study(s, code, actor=user.actor)
            st.success(f"Locked; content hash {digest}.")
            st.rerun()
        except reader_study.ReaderStudyError as exc:
            common.show_error(exc)
    if c2.button("Open for reading", disabled=not locked or status == "open"):
        try:
            with db.transaction() as s:
                reader_study.open_study(s, code, actor=user.actor)
            st.rerun()
        except reader_study.ReaderStudyError as exc:
            common.show_error(exc)
    confirm_close = c3.checkbox("I want to close the study (no more reading)", disabled=status != "open")
    if c3.button("Close study", disabled=status != "open" or not confirm_close):
        try:
            with db.transaction() as s:
                reader_study.close_study(s, code, actor=user.actor)
            st.rerun()
        except reader_study.ReaderStudyError as exc:
            common.show_error(exc)
    if locked and st.button("Verify the lock (recompute the content hash)"):
        with db.snapshot() as s:
            ok, stored, now = reader_study.verify_lock(s, code)
        (st.success if ok else st.error)("Truth and design unchanged since the lock." if ok else f"Content hash differs: stored {stored}, now {now}.")

    st.subheader("Waive the washout for one reader")
    with st.form("waive"):
        with db.snapshot() as s:
            names = list(reader_study.study_readers(s, code)["name"])
        c1, c2 = st.columns([2, 1])
        name = c1.selectbox("Reader", names) if names else None
        session_index = c2.number_input("Session", 2, 20, 2)
        reason = st.text_input("Reason (kept in the audit log)")
        if st.form_submit_button("Waive washout", disabled=not names):
            try:
                with db.transaction() as s:
                    reader_study.waive_washout(s, code, str(name), int(session_index), reason=reason, actor=user.actor)
                st.success(f"Washout waived for {common.text(name)}, session {session_index}.")
            except reader_study.ReaderStudyError as exc:
                common.show_error(exc)

with tab_progress:
    with db.snapshot() as s:
        progress = reader_study.study_status(s, code)
    st.text(progress.summary())
    frame = progress.to_frame()
    if frame.empty:
        st.info("No reading sessions yet (make the design first).")
    else:
        table = frame[["reader", "name", "group", "session", "status", "reads", "finished"]].copy()
        table["progress"] = [f / n if n else 0.0 for f, n in zip(frame["finished"], frame["reads"])]
        table["median time per case"] = [common.fmt_seconds(v) for v in frame["median_time_s"]]
        table["total time"] = [common.fmt_seconds(v) for v in frame["total_time_s"]]
        table["next session from"] = ["waived" if w else common.fmt_time(t) for t, w in zip(frame["not_before"], frame["washout_waived"])]
        st.dataframe(
            table,
            hide_index=True,
            width="stretch",
            column_config={"progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent")},
        )
        st.caption("Times are active reading time per case (pauses left out) as recorded when each case was finished.")
        times = progress.times.copy()
        times["median_time_s"] = [common.fmt_seconds(v) for v in times["median_time_s"]]
        st.dataframe(times.rename(columns={"n_reads": "finished study reads", "median_time_s": "median time per case"}), hide_index=True)
    st.button("Refresh")
