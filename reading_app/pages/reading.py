"""Reader: the reading view — the viewer, marking and rating, the case's marks, finishing the case.

Rules this page keeps (the reading service enforces them again on the server):

* The case is the next one in the reader's order; the page opens it (idempotent: a reload shows
  the same case, with its marks, from the database).
* Images come through a ticket that allows only the layers of the case read's treatment: no
  subtraction or z-map in the unaided reading (:func:`reading_app.workstation.allowed_layers`).
* A double click (or a click with the Mark tool) places a *new* mark (shown dashed, "rate it"); choosing its rating saves it through
  :meth:`reader_study.ReadingService.save_mark` with the client key generated for that click,
  and only then is it shown as a saved mark. A repeated save (double click, retry after a lost
  connection) returns the same mark.
* Finishing a case without marks needs the reader's confirmation that it has no lesion; the active
  reading time (pauses left out, :class:`reading_app.workstation.ActiveTimeTracker`) is stored with it.
* After a training case, the reader sees its truth and how the marks scored.
"""

from __future__ import annotations

import uuid

import pandas as pd
import streamlit as st

import reader_study
from reading_app import workstation as ws
from reading_app.pages import common, reader_common
from reading_app.pages.viewer_component import slice_viewer
from reading_app.workstation.layers import registration_file, registration_prior_sync

db = common.require_database()
user = common.require_role("reader")
svc = reader_common.current_service(db, user)
if svc is None:
    st.stop()
rt = common.runtime()
reader_id = int(user.account.reader_id)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# Event handlers (called from widget/viewer callbacks, before the rerun that shows their effect)
def _ctx() -> dict | None:
    return st.session_state.get("tsct_ctx")


def _svc(ctx: dict) -> reader_study.ReadingService:
    return reader_common.service(db, reader_id, ctx["study"])


def _message(kind: str, text: str) -> None:
    st.session_state["tsct_msg"] = (kind, text)


def _remember_view(ctx: dict, view: object) -> None:
    if isinstance(view, dict):
        rt.views[(reader_id, ctx["case_read_id"])] = view


def handle_click(ctx: dict, ev: dict) -> None:
    """A click on the current exam: becomes the new (unsaved) mark, waiting for its rating."""
    st.session_state["tsct_handled_key"] = ev.get("key")
    _remember_view(ctx, ev.get("view"))
    rt.timer.touch((reader_id, ctx["case_read_id"]))
    if not ctx.get("can_mark"):
        return
    try:
        point = ws.click_to_point(
            ctx["grid"],
            plane=str(ev["plane"]),
            slice_index=int(ev["slice"]),
            screen_x=float(ev["x"]),
            screen_y=float(ev["y"]),
            viewport_w_px=float(ev["W"]),
            viewport_h_px=float(ev["H"]),
            zoom=float(ev["zoom"]),
            center_u=float(ev["cu"]),
            center_v=float(ev["cv"]),
        )
    except (ws.ViewError, KeyError, TypeError, ValueError) as exc:
        _message("error", f"That click could not be placed: {exc}")
        return
    if not point.inside:
        _message("warning", "Click on the image to place a mark.")
        return
    key = str(ev.get("key") or uuid.uuid4().hex)[:150]
    st.session_state["tsct_pending"] = {
        "key": key,
        "point_mm": point.point_mm,
        "case_read_id": ctx["case_read_id"],
        "plane": point.plane,
        "slice": point.slice_index,
    }


def save_pending(rating: float) -> None:
    """Save the new mark with ``rating``; it is shown as saved only after the service returned it."""
    ctx = _ctx()
    pending = st.session_state.get("tsct_pending")
    if ctx is None or not pending or pending["case_read_id"] != ctx["case_read_id"]:
        return
    try:
        mark = _svc(ctx).save_mark(ctx["case_read_id"], client_key=pending["key"], rating=rating, point_mm=pending["point_mm"])
    except reader_study.ReaderStudyError as exc:
        _message("error", f"The mark was not saved: {exc}")
        return
    st.session_state["tsct_pending"] = None
    rt.timer.touch((reader_id, ctx["case_read_id"]))
    _message("success", f"Mark saved with rating {mark.rating:g}.")


def save_pending_from_slider() -> None:
    save_pending(float(st.session_state.get("tsct_new_rating", 50.0)))


def discard_pending() -> None:
    st.session_state["tsct_pending"] = None


def handle_rate(ctx: dict, ev: dict) -> None:
    pending = st.session_state.get("tsct_pending")
    _remember_view(ctx, ev.get("view"))
    if pending and pending["key"] == ev.get("key"):
        save_pending(float(ev["rating"]))


def handle_cancel(ctx: dict, ev: dict) -> None:
    pending = st.session_state.get("tsct_pending")
    if pending and pending["key"] == ev.get("key"):
        st.session_state["tsct_pending"] = None
    st.session_state["tsct_handled_key"] = ev.get("key")


def handle_beat(ctx: dict, ev: dict) -> None:
    _remember_view(ctx, ev.get("view"))
    rt.timer.touch((reader_id, ctx["case_read_id"]))


HANDLERS = {"click": handle_click, "rate": handle_rate, "cancel": handle_cancel, "beat": handle_beat}


def _viewer_callback(name: str):
    def callback() -> None:
        ctx = _ctx()
        if ctx is None:
            return
        value = (st.session_state.get(ctx["viewer_key"]) or {}).get(name)
        if isinstance(value, dict):
            HANDLERS[name](ctx, value)

    return callback


def change_rating(mark_id: int, widget_key: str) -> None:
    ctx = _ctx()
    if ctx is None:
        return
    try:
        _svc(ctx).change_rating(mark_id, float(st.session_state[widget_key]))
    except reader_study.ReaderStudyError as exc:
        _message("error", str(exc))
    else:
        rt.timer.touch((reader_id, ctx["case_read_id"]))


def delete_mark(mark_id: int) -> None:
    ctx = _ctx()
    if ctx is None:
        return
    try:
        _svc(ctx).delete_mark(mark_id)
    except reader_study.ReaderStudyError as exc:
        _message("error", str(exc))
    else:
        rt.timer.touch((reader_id, ctx["case_read_id"]))
        _message("info", "Mark deleted.")


def jump_to(mark_id: int | str) -> None:
    st.session_state["tsct_jump"] = {"mark": mark_id, "nonce": uuid.uuid4().hex[:8]}


def set_case_rating(widget_key: str) -> None:
    ctx = _ctx()
    if ctx is None:
        return
    try:
        _svc(ctx).set_case_rating(ctx["case_read_id"], float(st.session_state[widget_key]))
    except reader_study.ReaderStudyError as exc:
        _message("error", str(exc))


def finish(no_lesion: bool) -> None:
    ctx = _ctx()
    if ctx is None:
        return
    key = (reader_id, ctx["case_read_id"])
    active_s = rt.timer.touch(key)
    try:
        view = _svc(ctx).finish_case(ctx["case_read_id"], no_lesion=no_lesion, reading_time_s=active_s if active_s > 0 else None)
    except reader_study.ReaderStudyError as exc:
        _message("error", str(exc))
        return
    rt.timer.pop(key)
    rt.views.pop(key, None)
    rt.forget_case(ctx["case_read_id"])  # its image links die with the reading
    st.session_state["tsct_pending"] = None
    st.session_state["tsct_finished"] = ctx["case_read_id"]
    if view.training:
        st.session_state["tsct_review"] = ctx["case_read_id"]
    _message("success", f"Case {view.case_code} finished.")


# ------------------------------------------------------------------------------------------------
def ensure_ticket(view: reader_study.CaseView, files: dict, *, kind: str = "read") -> str:
    """This tab's image ticket for the case read (layers from the treatment in the database), bound to
    this log-in's browser session; ``kind="review"`` for a finished training case's feedback."""
    key = f"ticket:{kind}:{view.case_read_id}"
    token = st.session_state.get(key)
    if token and rt.tickets.valid(token):
        return token
    token = rt.tickets.issue(
        account_id=user.account.account_id,
        reader_id=reader_id,
        study_code=svc.study_code,
        case_read_id=view.case_read_id,
        case_code=view.case_code,
        layers=ws.allowed_layers(view.overlays),
        files=files,
        session_key=user.session_key,
        kind=kind,
        registration=registration_file(common.detector_dir(svc.study_code), view.case_code),
    )
    st.session_state[key] = token
    return token


def case_files(view: reader_study.CaseView) -> dict:
    return reader_common.case_files(view, svc.study_code)


def prefetch(view: reader_study.CaseView) -> None:
    """Start reading this case's volumes and the next case's in the background (its first image at once)."""
    if st.session_state.get("tsct_prefetched") == view.case_read_id:
        return
    st.session_state["tsct_prefetched"] = view.case_read_id
    following = [v for v in reader_common.upcoming_cases(svc, 2) if v.case_read_id != view.case_read_id][:1]
    reader_common.prefetch_cases(svc, [view, *following])


def grids(view: reader_study.CaseView, files: dict) -> tuple[ws.DisplayGrid, ws.DisplayGrid | None]:
    current = reader_common.current_grid(view)
    prior = None
    if "prior" in files and files["prior"].exists():
        try:
            prior = rt.volumes.grid_of(files["prior"])
        except ValueError as exc:
            st.warning(f"The prior exam cannot be shown: {common.text(exc)}")
    return current, prior


def show_message() -> None:
    msg = st.session_state.pop("tsct_msg", None)
    if msg:
        getattr(st, msg[0] if msg[0] in ("error", "warning", "success", "info") else "info")(msg[1])


def shortcuts_help() -> None:
    with st.expander("Keyboard and mouse"):
        st.table(pd.DataFrame(ws.KEYBOARD_SHORTCUTS, columns=["key", "does"]).set_index("key"))


# ------------------------------------------------------------------------------------------------
#: The reading page's own style: the image takes the window. The page's margins shrink to a few
#: pixels and Streamlit's header band is out of the way; its button that opens the (collapsed)
#: sidebar, with the worklist, the account and the log-out, stays at the top right.
_COMPACT_CSS = """<style>
[data-testid="stMainBlockContainer"] { padding: 0.35rem 0.6rem 0.5rem 0.6rem !important; max-width: none !important; }
[data-testid="stHeader"] { background: transparent !important; height: 0 !important; min-height: 0 !important; }
[data-testid="stToolbar"] { height: 0 !important; pointer-events: none; }
[data-testid="stMainMenu"], [data-testid="stToolbarActions"] { display: none !important; }
[data-testid="stExpandSidebarButton"] { pointer-events: auto; position: fixed; top: 0.3rem; right: 0.5rem; }
.st-key-tsct-case-header { padding-right: 2rem; }
[class*="st-key-rate-new-"] button { padding-left: 0 !important; padding-right: 0 !important; min-width: 0 !important; }
[data-testid="stMainBlockContainer"] [data-testid="stVerticalBlock"] { gap: 0.45rem; }
</style>"""

#: Widths of the viewer's column and the side column (the case, rating, marks, finishing).
READING_COLUMNS = (5.2, 1)


def compact_page() -> None:
    """Give the image the window: the sidebar starts collapsed (its button opens it) and the page's margins shrink."""
    st.set_page_config(initial_sidebar_state="collapsed")
    st.html(_COMPACT_CSS)


def case_header(view: reader_study.CaseView) -> None:
    """Which case this is and its treatment, compact, at the top of the side column."""
    with st.container(key="tsct-case-header"):
        st.markdown(
            f"**{common.text(svc.study_code)}** · session {view.session_index} · case {view.position} of {view.n_in_session} · {common.text(view.case_code)}"
        )
        treatment_banner(view)


@st.fragment
def reading_area(view: reader_study.CaseView, current: ws.DisplayGrid, prior: ws.DisplayGrid | None, files: dict, token: str) -> None:
    """The viewer and the marks panel; reruns alone on every click, rating and heartbeat."""
    if st.session_state.get("tsct_finished") == view.case_read_id:
        st.session_state.pop("tsct_finished", None)
        st.rerun()
    ctx = st.session_state["tsct_ctx"]
    for event in st.session_state.pop("_tsct_test_events", []) or []:  # testing seam (AppTest cannot drive components)
        HANDLERS[event["event"]](ctx, event["value"])
    rt.timer.touch((reader_id, view.case_read_id))

    scale = svc.rating_scale
    froc = svc.paradigm == "FROC"
    marks = svc.marks(view.case_read_id)
    pending = st.session_state.get("tsct_pending")
    if pending and pending.get("case_read_id") != view.case_read_id:
        pending = None
    missing = [name for name, path in files.items() if not path.exists()]
    payload = ws.viewer_payload(
        instance=f"{svc.study_code}:{view.case_read_id}",
        api_base=ws.api_base(st.get_option("server.baseUrlPath") or ""),
        ticket=token,
        current=current,
        prior=prior,
        layers=files.keys(),
        missing_layers=missing,
        marks=[{"id": m.mark_id, "n": n, "rating": m.rating, "point_mm": m.point_mm} for n, m in enumerate(marks, 1)],
        pending=pending,
        image_format=rt.settings.image_format,
        mark_radius_mm=rt.settings.mark_radius_mm,
        can_mark=froc,
        rating_keys=[str(r) for r in range(int(scale.low), int(scale.high) + 1)] if scale.integer and scale.high - scale.low < 10 else [],
        view=rt.views.get((reader_id, view.case_read_id)),
        jump=st.session_state.get("tsct_jump"),
        handled_key=st.session_state.get("tsct_handled_key"),
        prior_sync=registration_prior_sync(common.detector_dir(svc.study_code), view.case_code, current, prior),
    )
    left, right = st.columns(READING_COLUMNS, gap="small")  # the image first, and most of the window
    with left:
        slice_viewer(payload, key=ctx["viewer_key"], callbacks={name: _viewer_callback(name) for name in HANDLERS})
    with right:
        case_header(view)
        show_message()
        if froc:
            if pending:
                with st.container(border=True):
                    st.markdown("**New mark** — how confident are you that this is a lesion?")
                    if scale.integer and scale.high - scale.low < 10:
                        values = list(range(int(scale.low), int(scale.high) + 1))
                        cols = st.columns(len(values), gap="xxsmall")
                        for col, r in zip(cols, values):
                            col.button(str(r), key=f"rate-new-{r}", on_click=save_pending, args=(r,), type="primary", width="stretch")
                        st.caption(f"{values[0]} = least, {values[-1]} = most confident (or press the number key).")
                    else:
                        st.slider("Confidence", scale.low, scale.high, value=(scale.low + scale.high) / 2, key="tsct_new_rating")
                        st.button("Save mark", on_click=save_pending_from_slider, type="primary")
                    st.button("Discard new mark", on_click=discard_pending, key="discard-new")
            else:
                st.caption("Double-click a finding on the current exam to mark it (or click it with the Mark tool, M).")
            st.markdown(f"**Marks on this case: {len(marks)}**")
            for n, m in enumerate(marks, 1):
                axial = ws.mark_positions(current, m.point_mm)["axial"][0]
                with st.container(border=True):
                    a, b = st.columns([1, 1.4])
                    a.markdown(f"**{n}** · slice {int(round(axial)) + 1}")
                    wkey = f"mark-rating-{m.mark_id}"
                    if scale.integer and scale.high - scale.low < 10:
                        options = list(range(int(scale.low), int(scale.high) + 1))
                        b.selectbox(
                            "Rating",
                            options,
                            index=options.index(int(m.rating)),
                            key=wkey,
                            label_visibility="collapsed",
                            on_change=change_rating,
                            args=(m.mark_id, wkey),
                        )
                    else:
                        b.number_input(
                            "Rating",
                            scale.low,
                            scale.high,
                            value=float(m.rating),
                            key=wkey,
                            label_visibility="collapsed",
                            on_change=change_rating,
                            args=(m.mark_id, wkey),
                        )
                    c, d = st.columns(2)
                    c.button("Go to", key=f"go-{m.mark_id}", on_click=jump_to, args=(m.mark_id,), width="stretch")
                    d.button("Delete", key=f"del-{m.mark_id}", on_click=delete_mark, args=(m.mark_id,), width="stretch")
        else:
            wkey = f"case-rating-{view.case_read_id}"
            current_rating = svc.get_case(view.case_read_id).case_rating
            st.markdown("**Your rating of this case** — how confident are you that it has a lesion?")
            if scale.integer and scale.high - scale.low < 10:
                options = list(range(int(scale.low), int(scale.high) + 1))
                st.radio(
                    "Case rating",
                    options,
                    index=None if current_rating is None else options.index(int(current_rating)),
                    key=wkey,
                    horizontal=True,
                    on_change=set_case_rating,
                    args=(wkey,),
                )
            else:
                st.number_input(
                    "Case rating",
                    scale.low,
                    scale.high,
                    value=None if current_rating is None else float(current_rating),
                    key=wkey,
                    on_change=set_case_rating,
                    args=(wkey,),
                )

        st.divider()
        active = rt.timer.total_s((reader_id, view.case_read_id))
        st.caption(f"Active reading time on this case: {common.fmt_seconds(active)}")
        if pending:
            st.button("Finish case", disabled=True, width="stretch", help="Rate or discard the new mark first.")
        elif froc and not marks:
            sure = st.checkbox("I found no lesion in this case", key=f"no-lesion-{view.case_read_id}")
            st.button("Finish case (no lesion)", disabled=not sure, on_click=finish, args=(True,), type="primary", width="stretch")
        else:
            st.button("Finish case", on_click=finish, args=(False,), type="primary", width="stretch")
        shortcuts_help()


def treatment_banner(view: reader_study.CaseView) -> None:
    if view.overlays:
        st.markdown(f":green-badge[Aided reading] {common.text(view.treatment_label)}" + (" :orange-badge[Training case]" if view.training else ""))
    else:
        st.markdown(
            ":gray-badge[Unaided reading] the CT exams only, no subtraction or z-map" + (" :orange-badge[Training case]" if view.training else "")
        )
    unknown = ws.unknown_overlays(view.overlays)
    if unknown:
        st.warning(
            f"This reading names aids the viewer does not know ({common.text(', '.join(unknown))}); they are not shown. Tell the study coordinator."
        )


def set_context(view: reader_study.CaseView, current: ws.DisplayGrid, *, can_mark: bool) -> None:
    st.session_state["tsct_ctx"] = {
        "case_read_id": view.case_read_id,
        "study": svc.study_code,
        "grid": current,
        "can_mark": can_mark,
        "viewer_key": f"viewer-{svc.study_code}-{view.case_read_id}",
    }


# ------------------------------------------------------------------------------------------------
def review(case_read_id: int) -> None:
    """Training feedback: the finished training case with its truth and the scored marks."""
    try:
        feedback = svc.training_feedback(case_read_id)
        view = svc.get_case(case_read_id)
    except reader_study.ReaderStudyError as exc:
        common.show_error(exc)
        st.session_state.pop("tsct_review", None)
        return
    compact_page()
    st.title(f"Training case {common.text(view.case_code)}: the truth")
    treatment_banner(view)
    files = case_files(view)
    current, prior = grids(view, files)
    token = ensure_ticket(view, files, kind="review")
    set_context(view, current, can_mark=False)
    outcome_of = {m["mark_id"]: m for m in feedback.marks}
    marks = svc.marks(case_read_id)
    truth = [
        {"label": f"{les['lesion']} ({les['type']}, {les['location']})", "point_mm": les["center_mm"], "radius_mm": les["radius_mm"]}
        for les in feedback.lesions
    ]
    payload = ws.viewer_payload(
        instance=f"{svc.study_code}:{case_read_id}:review",
        api_base=ws.api_base(st.get_option("server.baseUrlPath") or ""),
        ticket=token,
        current=current,
        prior=prior,
        layers=files.keys(),
        missing_layers=[n for n, p in files.items() if not p.exists()],
        marks=[{"id": m.mark_id, "n": n, "rating": m.rating, "point_mm": m.point_mm} for n, m in enumerate(marks, 1)],
        truth=truth,
        image_format=rt.settings.image_format,
        mark_radius_mm=rt.settings.mark_radius_mm,
        can_mark=False,
        jump=st.session_state.get("tsct_jump"),
    )
    left, right = st.columns(READING_COLUMNS, gap="small")  # the image first, and most of the window
    with left:
        slice_viewer(payload, key=f"review-{case_read_id}", callbacks={})
    with right:
        if not feedback.lesions:
            st.success(
                "This case has no lesion." + (" You marked none: correct." if not marks else f" Your {len(marks)} mark(s) are false positives.")
            )
        else:
            st.markdown("**Lesions** (dashed cyan circles)")
            found = {m["lesion"] for m in feedback.marks if m["outcome"] == "LL"}
            for les in feedback.lesions:
                hit = les["lesion"] in found
                cols = st.columns([3, 1])
                cols[0].markdown(
                    f"{'✅' if hit else '❌'} **{common.text(les['lesion'])}** {common.text(les['type'])}, {common.text(les['location'].replace('_', ' '))}"
                )
                cols[1].button(
                    "Go to", key=f"go-truth-{les['lesion']}", on_click=jump_to, args=(f"{les['lesion']} ({les['type']}, {les['location']})",)
                )
        if marks:
            words = {"LL": "hit a lesion", "NL": "false positive", "dropped": "second mark on a found lesion"}
            st.markdown("**Your marks**")
            for n, m in enumerate(marks, 1):
                o = outcome_of.get(m.mark_id, {})
                st.markdown(
                    f"{n}. rating {m.rating:g}: {words.get(o.get('outcome'), o.get('outcome', ''))}"
                    + (f" ({common.text(o['lesion'])})" if o.get("lesion") else "")
                )
        if st.button("Continue", type="primary", width="stretch"):
            st.session_state.pop("tsct_review", None)
            st.rerun()


# ------------------------------------------------------------------------------------------------
review_id = st.session_state.get("tsct_review")
if review_id is not None:
    review(int(review_id))
    st.stop()

item = svc.next_case()
if item is None:
    sessions = svc.sessions()
    nxt = next((v for v in sessions if v.status == "scheduled"), None)
    st.title("Reading")
    if all(v.status == "closed" for v in sessions) and sessions:
        st.success("You have finished every case of this study. Thank you!")
    elif nxt is not None and nxt.can_open:
        st.info(f"Session {nxt.session_index} is ready.")
        if st.button(f"Start session {nxt.session_index}", type="primary"):
            try:
                svc.open_session(nxt.session_index)
            except reader_study.ReaderStudyError as exc:
                common.show_error(exc)
            else:
                st.rerun()
    elif nxt is not None:
        st.info(f"Session {nxt.session_index} cannot start yet: {common.text(nxt.reason)}.")
    else:
        st.info("There is no case to read now.")
    st.stop()

try:
    view = svc.open_case(item.case_read_id) if item.status == "pending" else svc.get_case(item.case_read_id)
except reader_study.ReaderStudyError as exc:
    common.show_error(exc)
    st.stop()

files = case_files(view)
prefetch(view)
current, prior = grids(view, files)
token = ensure_ticket(view, files)
set_context(view, current, can_mark=svc.paradigm == "FROC")

compact_page()
missing_aids = [ws.LAYERS[n].label for n, p in files.items() if ws.LAYERS[n].aid and not p.exists()]
if missing_aids:
    st.warning(f"{', '.join(missing_aids)} of this case are missing on the server; read it as shown and tell the study coordinator.")
reading_area(view, current, prior, files, token)
