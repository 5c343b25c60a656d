"""TSCT reading workstation (Streamlit): a thin router over the pages of each role.

Start it with ``tsct app`` (which serves it through ``reading_app/server.py``, adding the image and
log-in routes). After log-in each role gets its own pages:

* readers: **Worklist** and **Reading** (the viewer; marks saved at once);
* coordinators: **Studies**, **Readers & accounts**, **Design & progress**, **Exports & backups**;
* statisticians: **Analysis** and **Exports**;
* administrators: the coordinators' pages, Analysis, and every kind of account.

Every page has its own address (``/read``, ``/studies``, …). The root address leads to the
role's first page; while nobody is logged in, every address shows the log-in (and, after it, the
page that was asked for). Pages live in ``reading_app/pages/``; the logic they call lives in
:mod:`reader_study` (studies, marks, accounts) and :mod:`reading_app.workstation` (viewer geometry, rendering,
image access).
"""

import streamlit as st

from reading_app.pages import auth_views, common

st.set_page_config(page_title="TSCT reading workstation", page_icon="🦴", layout="wide")

user = common.restore_user()
common.session_bridge()

_P = "reading_app/pages/"
PAGES = {
    "worklist": st.Page(_P + "worklist.py", title="Worklist", icon=":material/list:", url_path="worklist"),
    "read": st.Page(_P + "reading.py", title="Reading", icon=":material/radiology:", url_path="read"),
    "studies": st.Page(_P + "studies.py", title="Studies", icon=":material/folder_open:", url_path="studies"),
    "readers": st.Page(_P + "readers.py", title="Readers & accounts", icon=":material/group:", url_path="readers"),
    "design": st.Page(_P + "design.py", title="Design & progress", icon=":material/table_chart:", url_path="design"),
    "exports": st.Page(_P + "exports.py", title="Exports & backups", icon=":material/download:", url_path="exports"),
    "analysis": st.Page(_P + "analysis.py", title="Analysis", icon=":material/query_stats:", url_path="analysis"),
    "account": st.Page(_P + "me.py", title="My account", icon=":material/person:", url_path="account"),
}
ROLE_SECTIONS = {
    "reader": {"Reading": ["worklist", "read"]},
    "coordinator": {"Study coordination": ["studies", "readers", "design", "exports"]},
    "statistician": {"Statistics": ["analysis", "exports"]},
    "admin": {"Study coordination": ["studies", "readers", "design", "exports"], "Statistics": ["analysis"]},
}


def _stand_in(view, path: str) -> st.Page:  # noqa: ANN001
    """A hidden page at ``path`` that shows ``view`` (the log-in or the password change)."""

    def page() -> None:
        view()

    page.__name__ = f"{view.__name__}_{path}"
    return st.Page(page, title="TSCT", url_path=path, visibility="hidden")


if user is None or (user.account.must_change_password and user.method == "password"):
    view = auth_views.login_view if user is None else auth_views.password_view
    title = "Log in" if user is None else "Choose your password"
    pages = [st.Page(view, title=title, icon=":material/login:", url_path="login" if user is None else "password", default=True)]
    pages += [_stand_in(view, path) for path in PAGES]
else:
    sections = ROLE_SECTIONS.get(user.role, {})
    first = PAGES[next(iter(sections.values()))[0]] if sections else PAGES["account"]

    def home() -> None:
        st.switch_page(first)

    pages = {"": [st.Page(home, title="Home", url_path="home", default=True, visibility="hidden")]}
    pages.update({section: [PAGES[name] for name in names] for section, names in sections.items()})
    pages[" "] = [PAGES["account"]]

navigation = st.navigation(pages)
if user is not None:
    with st.sidebar:
        st.caption(f"Logged in as **{common.text(user.username)}** ({common.ROLE_LABELS.get(user.role, user.role)})")
navigation.run()
