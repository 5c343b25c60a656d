"""My account: who is logged in, change password, log out."""

import streamlit as st

import reader_study
from reading_app.pages import common

db = common.require_database()
user = common.current_user()
if user is None:
    st.stop()

st.title("My account")
st.write(
    f"User name **{common.text(user.username)}**, role **{common.ROLE_LABELS.get(user.role, user.role)}**"
    + (", logged in with single sign-on." if user.method == "oidc" else ".")
)
if user.method == "password":
    with st.form("change-password", clear_on_submit=True):
        st.subheader("Change password")
        old = st.text_input("Current password", type="password", autocomplete="current-password")
        new = st.text_input("New password", type="password", autocomplete="new-password")
        again = st.text_input("New password again", type="password", autocomplete="new-password")
        if st.form_submit_button("Change password"):
            if new != again:
                st.error("The two new passwords differ.")
            else:
                try:
                    account = reader_study.change_password(db, user.username, old, new, client=common.client_address())
                except reader_study.ReaderStudyError as exc:
                    common.show_error(exc)
                else:
                    st.session_state["tsct_user"] = common.User(account, user.session_token, user.method)
                    st.success("Password changed.")
st.divider()
if st.button("Log out", type="primary"):
    common.sign_out()
    st.rerun()
