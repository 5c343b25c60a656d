"""Coordinator: a study's readers, and log-in accounts (initial passwords, resets, disabling, unlocking),
the browser sessions that are logged in (revocable), and the log-in attempts.

Passwords are stored only as argon2 hashes (reader_study). A new account gets an initial password
shown here once; the user must replace it at first log-in. Coordinators issue reader and
statistician accounts; administrators issue every kind. Failed log-ins stay visible after a later
success (failures in the last 30 days, last failure, the attempts table).
"""

import secrets

import streamlit as st

import reader_study
from reading_app.pages import common

db = common.require_database()
user = common.require_role("coordinator")

st.title("Readers and accounts")

# ------------------------------------------------------------------------------------------------
st.header("Readers of a study")
code = common.choose_study(db)
if code:
    with db.snapshot() as s:
        readers = reader_study.study_readers(s, code)
        locked = reader_study.get_study(s, code).is_locked
    if readers.empty:
        st.info("No readers yet.")
    else:
        st.dataframe(readers, hide_index=True, width="stretch")
    if locked:
        st.caption("The study is locked: its readers are frozen.")
    else:
        with st.form("add-reader", clear_on_submit=True):
            st.markdown("**Add a reader**")
            c1, c2, c3 = st.columns([2, 1.5, 1])
            name = c1.text_input("Name (unique)")
            group = c2.text_input("Group", help="e.g. board-certified or resident: balances the design, used for subgroup analyses.")
            years = c3.number_input("Years of experience", 0.0, 60.0, value=None)
            if st.form_submit_button("Add reader"):
                try:
                    with db.transaction() as s:
                        added = reader_study.add_readers(
                            s, code, [reader_study.ReaderSpec(name.strip(), group.strip(), "radiologist", years)], actor=user.actor
                        )
                        new_code = added[0].reader_code
                    st.success(f"Added {common.text(name)} as {common.text(new_code)}.")
                    st.rerun()
                except reader_study.ReaderStudyError as exc:
                    common.show_error(exc)

# ------------------------------------------------------------------------------------------------
st.header("Accounts")
with db.snapshot() as s:
    accounts = reader_study.list_accounts(s)
if accounts.empty:
    st.info("No accounts yet.")
else:
    st.dataframe(accounts, hide_index=True, width="stretch")

roles = ["reader", "statistician"] + (["coordinator", "admin"] if user.role == "admin" else [])
with st.form("create-account", clear_on_submit=True):
    st.markdown("**Create an account**")
    c1, c2, c3 = st.columns(3)
    username = c1.text_input("User name", help="For single sign-on, the person's e-mail address.")
    role = c2.selectbox("Role", roles)
    reader_name = c3.text_input("Reader's name (reader accounts)", help="Exactly as in the study's readers list.")
    if st.form_submit_button("Create account"):
        initial = secrets.token_urlsafe(9)
        try:
            with db.transaction() as s:
                info = reader_study.create_account(s, username, initial, role=role, reader_name=reader_name.strip() or None, actor=user.actor)
        except reader_study.ReaderStudyError as exc:
            common.show_error(exc)
        else:
            st.session_state["tsct_new_password"] = (info.username, initial)
            st.rerun()

issued = st.session_state.pop("tsct_new_password", None)
if issued:
    st.success(f"Account **{common.text(issued[0])}** created. Initial password (shown once; hand it over in person or by phone): ")
    st.code(issued[1], language=None)
    st.caption("The user must choose their own password at first log-in.")

if not accounts.empty:
    with st.form("manage-account"):
        st.markdown("**Manage an account**")
        c1, c2 = st.columns([2, 1])
        who = c1.selectbox("Account", list(accounts["username"]))
        action = c2.radio("Action", ["new initial password", "unlock (after failed log-ins)", "disable", "enable"], horizontal=False)
        if st.form_submit_button("Apply"):
            target = accounts.loc[accounts["username"] == who].iloc[0]
            if target["role"] in ("coordinator", "admin") and user.role != "admin":
                st.error("Only an administrator manages coordinator and administrator accounts.")
            else:
                try:
                    if action == "new initial password":
                        initial = secrets.token_urlsafe(9)
                        with db.transaction() as s:
                            reader_study.reset_password(s, who, initial, actor=user.actor)
                        st.session_state["tsct_new_password"] = (who, initial)
                    elif action.startswith("unlock"):
                        with db.transaction() as s:
                            reader_study.unlock_account(s, who, actor=user.actor)
                    else:
                        with db.transaction() as s:
                            info = reader_study.set_account_active(s, who, action == "enable", actor=user.actor)
                        if action == "disable":
                            rt = common.runtime()
                            rt.sessions.end_account(info.account_id)
                            rt.tickets.revoke(account_id=info.account_id)
                            rt.downloads.revoke(account_id=info.account_id)
                except reader_study.ReaderStudyError as exc:
                    common.show_error(exc)
                else:
                    st.rerun()

# ------------------------------------------------------------------------------------------------
st.header("Logged-in browsers")
st.caption(
    "Every browser session that is logged in now (kept in the database: a restart of the server keeps them). "
    "Ending one logs that browser out at once and closes its image links."
)
with db.snapshot() as s:
    live = reader_study.list_web_sessions(s)
if live.empty:
    st.info("Nobody is logged in.")
else:
    st.dataframe(live, hide_index=True, width="stretch")
    with st.form("revoke-session"):
        c1, c2 = st.columns([3, 1])
        labels = {
            int(r.session): f"{r.session}: {r.username} ({r.role}, {r.method}, from {r.client or 'unknown'}, since {common.fmt_time(r.started)})"
            for r in live.itertuples()
        }
        chosen = c1.selectbox("Session", list(labels), format_func=lambda k: labels[k])
        if c2.form_submit_button("End this session"):
            target = live.loc[live["session"] == chosen].iloc[0]
            if target["role"] in ("coordinator", "admin") and user.role != "admin" and target["username"] != user.username:
                st.error("Only an administrator ends coordinator and administrator sessions.")
            else:
                with db.transaction() as s:
                    account_id, digest = reader_study.revoke_web_session(s, int(chosen), actor=user.actor)
                rt = common.runtime()
                key = digest[:32]  # the session key image tickets and downloads are bound to
                rt.tickets.revoke(session_key=key)
                rt.downloads.revoke(session_key=key)
                rt.sessions.forget(token_digest=digest)
                st.rerun()

st.header("Log-in attempts")
st.caption(
    "The latest attempts, newest first (user names as typed). Failed attempts slow further tries and lock an account "
    "for 15 minutes after 10 in a row; unlock it above once you know who it was."
)
with db.snapshot() as s:
    attempts = reader_study.recent_login_attempts(s, limit=200)
if attempts.empty:
    st.info("No log-in attempts yet.")
else:
    st.dataframe(attempts, hide_index=True, width="stretch")
