"""The coordinator's side of the security promises, through the pages (Streamlit AppTest):
failed log-ins stay visible after a success, sessions can be ended, typed paths are confined to
the data folders and file contents are never echoed, user text is escaped."""

from __future__ import annotations

import reader_study
from reading_app.workstation import get_runtime

from .test_pages import _by_label, login, shown


def _failures(env, username: str, n: int) -> None:
    db = get_runtime().database()
    for _ in range(n):
        try:
            reader_study.login(db, username, "not the password!", client="192.0.2.10")
        except reader_study.AuthenticationError:
            pass


def test_the_coordinator_sees_failed_log_ins_after_a_success_and_ends_a_session(app_test, app_env):
    _failures(app_env, "reader1", 2)
    reader = login(app_test(), "reader1", app_env.study.password)  # a success after the failures
    cookie = reader.session_state["tsct_user"].session_token
    assert get_runtime().sessions.lookup(cookie) is not None
    at = login(app_test(), "coordinator", app_env.study.password)
    at.switch_page("reading_app/pages/readers.py").run()
    assert not at.exception, at.exception
    frames = [d.value for d in at.dataframe]
    accounts = next(f for f in frames if "failed_logins_30d" in f.columns).set_index("username")
    assert accounts.loc["reader1", "failed_logins"] == 0 and accounts.loc["reader1", "failed_logins_30d"] == 2
    attempts = next(f for f in frames if "outcome" in f.columns and "client" in f.columns)
    mine = attempts[attempts["username"] == "reader1"]
    assert list(mine["outcome"][:3]) == ["ok", "failed", "failed"] and "192.0.2.10" in set(mine["client"])
    sessions = next(f for f in frames if "session" in f.columns and "last_seen" in f.columns)
    sid = int(sessions.loc[sessions["username"] == "reader1", "session"].iloc[-1])
    _by_label(at.selectbox, "Session").set_value(sid)
    _by_label(at.button, "End this session").click()
    at.run()
    assert not at.exception, at.exception
    assert get_runtime().sessions.lookup(cookie) is None
    reader.run()  # the reader's open tab: logged out at its next action
    assert reader.title[0].value == "TSCT reading workstation"
    assert any("Your log-in has ended" in i.value for i in reader.info)
    # unlocking clears the failures in a row (the record stays)
    _failures(app_env, "reader2", 3)
    _by_label(at.selectbox, "Account").set_value("reader2")
    _by_label(at.radio, "Action").set_value("unlock (after failed log-ins)")
    _by_label(at.button, "Apply").click()
    at.run()
    accounts = next(d.value for d in at.dataframe if "failed_logins_30d" in d.value.columns).set_index("username")
    assert accounts.loc["reader2", "failed_logins"] == 0 and accounts.loc["reader2", "failed_logins_30d"] == 3


def test_a_typed_path_is_confined_to_the_data_folders_and_never_echoed(app_test, app_env):
    secret = app_env.data_dir / "not-a-case-list.csv"
    secret.write_text("SECRET-FIRST-LINE:$argon2id$v=19$abc,more\nsecond line\n")
    outside = app_env.data_dir.parent / "outside-secret.txt"
    outside.write_text("OUTSIDE-SECRET:x:0:0\n")
    at = login(app_test(), "coordinator", app_env.study.password)
    for path, expected in (
        (str(outside), "must be inside the study data folder"),
        ("/etc/passwd", "must be inside the study data folder"),
        (str(app_env.data_dir / ".." / outside.name), "must be inside the study data folder"),
        (str(secret), "This is not a case list"),
    ):
        _by_label(at.text_input, "Case list (path on the server)").input(path)
        at.run()
        _by_label(at.button, "Validate").click()
        at.run()
        assert not at.exception, at.exception
        page = shown("\n".join([e.value for e in at.error] + [str(d.value.to_dict()) for d in at.dataframe]))
        assert expected in page, page
        for leaked in ("SECRET-FIRST-LINE", "argon2id", "OUTSIDE-SECRET", "root:"):
            assert leaked not in page
    # a link inside the data folder pointing outside is refused too
    link = app_env.data_dir / "link.csv"
    link.symlink_to(outside)
    _by_label(at.text_input, "Case list (path on the server)").input(str(link))
    at.run()
    _by_label(at.button, "Validate").click()
    at.run()
    assert any("must be inside the study data folder" in shown(e.value) for e in at.error)


def test_a_markdown_user_name_is_escaped(app_test, app_env):
    name = "![x](http://tracker.example/p.png)**b**"  # user names are printable without spaces; Markdown fits in that
    db = get_runtime().database()
    with db.transaction() as s:
        reader_study.create_account(s, name, "initial-password-1", role="statistician")
    reader_study.change_password(db, name, "initial-password-1", app_env.study.password)
    at = login(app_test(), name, app_env.study.password)
    captions = [c.value for c in at.sidebar.caption]
    logged = next(c for c in captions if c.startswith("Logged in as"))
    assert "![x](" not in logged and "\\!\\[x\\]\\(" in logged  # escaped Markdown source
    assert shown(logged) == f"Logged in as **{name}** (Statistician)"  # the browser shows the name as typed, in bold


def test_a_case_list_whose_exams_lie_outside_the_data_folders_is_refused(app_test, app_env, app_cases, monkeypatch):
    """A case list inside the data folder cannot make the viewer read images from elsewhere on the server."""
    from .conftest import copy_case_list

    monkeypatch.setenv("TSCT_STUDY_DIRS", str(app_env.data_dir))  # only the data folder
    sneaky = copy_case_list(app_cases.case_list, app_env.data_dir / "sneaky.csv")  # absolute paths outside the data folder
    at = login(app_test(), "coordinator", app_env.study.password)
    _by_label(at.text_input, "Case list (path on the server)").input(str(sneaky))
    at.run()
    _by_label(at.button, "Validate").click()
    at.run()
    assert any("exams outside the study data folders" in shown(e.value) for e in at.error)
    _by_label(at.text_input, "Study code").input("SNEAKY")
    _by_label(at.text_input, "Case list (path on the server, inside the data folders)").input(str(sneaky))
    _by_label(at.button, "Create study").click()
    at.run()
    assert any("exams outside the study data folders" in shown(e.value) for e in at.error)
    with get_runtime().database().snapshot() as s:
        assert "SNEAKY" not in set(reader_study.list_studies(s)["code"])
