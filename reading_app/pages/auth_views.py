"""The log-in and password views, as functions: the app shows them at any address while nobody is logged in.

``app.py`` routes every page address to :func:`login_view` while the browser is not logged in (so
a link to, say, the reading page leads there right after the log-in), and to
:func:`password_view` until a new account has replaced its initial password.
"""

import streamlit as st

import reader_study
from reading_app.pages import common


def login_view() -> None:
    """User name and password (argon2-checked by reader_study), or single sign-on when configured."""
    db = common.require_database()
    st.title("TSCT reading workstation")
    st.caption("Temporal-subtraction CT reader studies: reading, study coordination and analysis. Research use only; not for diagnosis.")
    left, _ = st.columns([1, 1])
    with left:
        if st.session_state.pop("tsct_ended", None):
            st.info("Your log-in has ended (logged out elsewhere, or ended by the study coordinator). Log in again to continue.")
        with st.form("login", clear_on_submit=False):
            username = st.text_input("User name", autocomplete="username")
            password = st.text_input("Password", type="password", autocomplete="current-password")
            submitted = st.form_submit_button("Log in", type="primary")
        if submitted:
            try:
                account = reader_study.login(db, username, password, client=common.client_address())
            except reader_study.AuthenticationError as exc:
                common.show_error(exc)
            else:
                common.sign_in(account, "password")
                st.rerun()
        if common.oidc_available():
            st.divider()
            unknown = st.session_state.pop("tsct_oidc_unknown", None)
            if unknown:
                st.error(
                    f"The identity {common.text(unknown)} has no TSCT account; ask the study coordinator to create one with this e-mail as user name."
                )
            st.button("Log in with single sign-on", on_click=st.login)
        st.caption("Accounts are issued by the study coordinator. Forgot your password? Ask them for a new initial password.")


def password_view() -> None:
    """First log-in (or after a reset): the user replaces the initial password before anything else."""
    db = common.require_database()
    user = common.current_user()
    if user is None:
        st.stop()
    st.title("Choose your password")
    st.write(
        f"Welcome, **{common.text(user.username)}**. Replace the initial password you were given with one only you know (at least 10 characters)."
    )
    with st.form("password"):
        old = st.text_input("Initial password", type="password", autocomplete="current-password")
        new = st.text_input("New password", type="password", autocomplete="new-password")
        again = st.text_input("New password again", type="password", autocomplete="new-password")
        submitted = st.form_submit_button("Save password", type="primary")
    if submitted:
        if new != again:
            st.error("The two new passwords differ.")
        else:
            try:
                account = reader_study.change_password(db, user.username, old, new, client=common.client_address())
            except reader_study.ReaderStudyError as exc:
                common.show_error(exc)
            else:
                st.session_state["tsct_user"] = common.User(account, user.session_token, user.method)
                st.success("Password saved.")
                st.rerun()
    if st.button("Log out"):
        common.sign_out()
        st.rerun()
