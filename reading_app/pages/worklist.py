"""Reader: sessions, progress and the cases in order; start or continue reading; training feedback."""

import pandas as pd
import streamlit as st

import reader_study
from reading_app.pages import common, reader_common

db = common.require_database()
user = common.require_role("reader")
svc = reader_common.current_service(db, user)
if svc is None:
    st.stop()

st.title(f"Worklist — {svc.study_code}")
st.caption(f"Reader {common.text(svc.reader_name)} · {svc.paradigm} study · ratings {svc.rating_scale.describe()}.")

sessions = svc.sessions()
if not sessions:
    st.info("The coordinator has not made the reading design yet.")
    st.stop()

total = sum(v.n_reads for v in sessions)
done = sum(v.n_finished for v in sessions)
st.progress(done / total if total else 0.0, text=f"{done} of {total} cases read over {len(sessions)} session(s)")

rows = []
for v in sessions:
    if v.status == "open":
        when = "open now"
    elif v.status == "closed":
        when = f"finished {common.fmt_time(v.closed_at)}"
    elif v.can_open:
        when = "can start now"
    else:
        when = v.reason
    rows.append({"session": v.session_index, "status": v.status, "read": f"{v.n_finished} / {v.n_reads}", "when": when})
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def prefetch_next(case_read_id: int) -> None:
    """Read the next case's volumes in the background while the reader is on this page (its first image then appears at once)."""
    if st.session_state.get("tsct_worklist_prefetched") != case_read_id:
        st.session_state["tsct_worklist_prefetched"] = case_read_id
        reader_common.prefetch_cases(svc, [svc.get_case(case_read_id)])


open_session = next((v for v in sessions if v.status == "open"), None)
next_session = next((v for v in sessions if v.status == "scheduled"), None)

if open_session is None:
    if next_session is None:
        st.success("You have finished every session of this study. Thank you!")
    elif next_session.can_open:
        first = next((i for i in svc.worklist(next_session.session_index) if i.status != "finished"), None)
        if first is not None:
            prefetch_next(first.case_read_id)
        if st.button(f"Start session {next_session.session_index}", type="primary"):
            try:
                svc.open_session(next_session.session_index)
            except reader_study.ReaderStudyError as exc:
                common.show_error(exc)
            else:
                st.switch_page("reading_app/pages/reading.py")
    else:
        st.info(f"Session {next_session.session_index} cannot start yet: {common.text(next_session.reason)}.")
else:
    nxt = svc.next_case()
    if nxt is not None:
        prefetch_next(nxt.case_read_id)
        label = "Continue reading" if nxt.position > 1 or nxt.status == "open" else "Start reading"
        if st.button(f"{label}: case {nxt.position} of {nxt.n_in_session}", type="primary"):
            st.switch_page("reading_app/pages/reading.py")

    items = svc.worklist()
    st.subheader(f"Session {open_session.session_index}")
    table = pd.DataFrame(
        [
            {"#": i.position, "case": i.case_code, "reading": i.treatment_label, "training": "yes" if i.training else "", "status": i.status}
            for i in items
        ]
    )
    st.dataframe(table, hide_index=True, width="stretch")
    finished_training = [i for i in items if i.training and i.status == "finished"]
    if finished_training:
        st.caption("Training cases: after you finish one, you may review its truth and how your marks scored.")
        cols = st.columns(min(4, len(finished_training)))
        for col, item in zip(cols * (len(finished_training) // len(cols) + 1), finished_training):
            if col.button(f"Review training case {item.case_code} ({item.treatment})", key=f"review-{item.case_read_id}"):
                st.session_state["tsct_review"] = item.case_read_id
                st.switch_page("reading_app/pages/reading.py")
