"""Reader pages' shared helpers: the reader's studies and their reading service.

The :class:`reader_study.ReadingService` is bound to the reader of the logged-in account (never to
anything the browser sends); it filters every query on that reader, so a reader can reach only
their own worklist and marks, and never the truth of a study case.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import streamlit as st

import reader_study
from reading_app.pages import common


def reader_studies(db: reader_study.Database, reader_id: int) -> pd.DataFrame:
    """The open and closed studies this reader reads in (draft studies are not shown to readers)."""
    with db.snapshot() as s:
        frame = reader_study.list_studies(s)
    keep = []
    for row in frame.itertuples():
        if row.status == "draft":
            continue
        try:
            service(db, reader_id, row.code)
        except reader_study.NotFoundError:
            continue
        keep.append(row.Index)
    return frame.loc[keep]


def service(db: reader_study.Database, reader_id: int, study_code: str) -> reader_study.ReadingService:
    """The reading service of this reader in ``study_code`` (kept for the browser tab)."""
    key = f"svc:{study_code}:{reader_id}"
    svc = st.session_state.get(key)
    if svc is None:
        svc = reader_study.ReadingService(db, reader_id=reader_id, study_code=study_code)
        st.session_state[key] = svc
    return svc


def current_service(db: reader_study.Database, user: common.User) -> reader_study.ReadingService | None:
    """The service of the study this reader works on now (chosen in the sidebar when there are several)."""
    if user.account.reader_id is None:
        st.info("This account is not linked to a reader; reading pages are for reader accounts.")
        return None
    studies = reader_studies(db, user.account.reader_id)
    if studies.empty:
        st.info("You are not a reader of any open study yet. The study coordinator adds you and opens the study.")
        return None
    codes = list(studies["code"])
    open_codes = list(studies.loc[studies["status"] == "open", "code"])
    chosen = st.session_state.get("tsct_study")
    if chosen not in codes:
        chosen = open_codes[0] if open_codes else codes[0]
    if len(codes) > 1:
        labels = {row.code: f"{row.code} ({row.status})" for row in studies.itertuples()}
        with st.sidebar:
            chosen = st.selectbox("Study", codes, index=codes.index(chosen), format_func=lambda c: labels[c])
    st.session_state["tsct_study"] = chosen
    return service(db, user.account.reader_id, chosen)


#: Layers read ahead, most needed first (the prior last: it is shown only on request).
PREFETCH_ORDER = ("ct", "zmap", "subtraction", "subtraction_vm", "warped_prior", "prior")


def case_files(view: reader_study.CaseView, study_code: str) -> dict:
    """The files of the layers this case read's treatment allows (and no others)."""
    from reading_app import workstation as ws

    return ws.layer_files(
        case_code=view.case_code,
        current_path=view.current_path,
        prior_path=view.prior_path or None,
        overlays=view.overlays,
        detector_dir=common.detector_dir(study_code),
    )


def prefetch_cases(svc: reader_study.ReadingService, views: list[reader_study.CaseView]) -> None:
    """Start reading the volumes of these case reads in the background, in order (first image at once when the case opens)."""
    from reading_app import workstation as ws

    shown, beside, grids = [], [], []
    for view in views:
        files = case_files(view, svc.study_code)
        for name in PREFETCH_ORDER:
            if name in files and files[name].exists():
                # what a case shows when it opens (CT, overlay) before any case's side panels: the next
                # case's first image must not wait behind a subtraction or prior nobody has opened yet
                (beside if ws.LAYERS[name].role == "side" else shown).append((files[name], ws.LAYERS[name].volume_kind))
        if "prior" in files and files["prior"].exists():
            grids.append(files["prior"])
    items = shown + beside
    if items or grids:
        common.runtime().volumes.prefetch(items, grids=grids)
    # The prior's slice table through the registration (reading a composite transform and mapping
    # every slice takes a second or more): made now, so the case's page finds it cached.
    detector_dir = common.detector_dir(svc.study_code)
    for view in views:
        if view.prior_path:
            _SYNC_EXECUTOR.submit(_warm_prior_sync, view, detector_dir)


def current_grid(view: reader_study.CaseView):  # -> reading_app.workstation.DisplayGrid
    """The display grid of the case's current exam, from the study database's grid record."""
    from reading_app import workstation as ws

    g = view.grid
    return ws.DisplayGrid.from_geometry(g.size_xyz, g.spacing_mm, g.origin_mm, g.direction)


def _warm_prior_sync(view: reader_study.CaseView, detector_dir) -> None:  # noqa: ANN001
    from reading_app.workstation.layers import registration_prior_sync

    try:
        registration_prior_sync(detector_dir, view.case_code, current_grid(view), common.runtime().volumes.grid_of(view.prior_path))
    except Exception:  # noqa: BLE001 - the page computes it again and reports what is wrong
        pass


_SYNC_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tsct-prior-sync")


def upcoming_cases(svc: reader_study.ReadingService, n: int = 1) -> list[reader_study.CaseView]:
    """The next ``n`` unfinished case reads of the open session, in the reader's order (nothing is opened)."""
    items = [i for i in svc.worklist() if i.status != "finished"][:n]
    return [svc.get_case(i.case_read_id) for i in items]
