"""Account and reader look-ups the reading app needs: find an active account, list accounts, reset a password, list a study's readers."""

import pytest

from reader_study import (
    AuthenticationError,
    NotFoundError,
    audit_frame,
    create_account,
    find_account,
    list_accounts,
    login,
    reset_password,
    set_account_active,
    study_readers,
)


def test_find_account_only_active_accounts_case_insensitive(db, study):
    with db.transaction() as s:
        made = create_account(s, "Ada@Example.org", "initial-pass-1", role="reader", reader_name="Dr Ada")
    with db.snapshot() as s:
        found = find_account(s, "  ada@example.org ")
    assert found == made and found.reader_id == study.reader_ids["Dr Ada"]
    with db.transaction() as s:
        set_account_active(s, "ada@example.org", False)
    with db.snapshot() as s:
        assert find_account(s, "ada@example.org") is None
        assert find_account(s, "nobody") is None


def test_list_accounts_has_no_hashes(db, study):
    with db.transaction() as s:
        create_account(s, "coord", "initial-pass-1", role="coordinator")
        create_account(s, "ben", "initial-pass-1", role="reader", reader_name="Dr Ben")
    with db.snapshot() as s:
        frame = list_accounts(s)
    assert list(frame["username"]) == ["ben", "coord"]
    assert frame["reader"].iloc[0] == "Dr Ben" and frame["reader"].isna().iloc[1]
    assert bool(frame["must_change_password"].all())
    assert "password_hash" not in frame.columns and not frame.astype(str).apply(lambda c: c.str.contains("argon2")).any().any()


def test_reset_password_gives_a_new_initial_password_and_is_audited(db, study):
    with db.transaction() as s:
        create_account(s, "cem", "initial-pass-1", role="reader", reader_name="Dr Cem")
    with pytest.raises(AuthenticationError):
        login(db, "cem", "wrong-password")
    with db.transaction() as s:
        info = reset_password(s, "cem", "second-initial-2", actor="coordinator:x")
    assert info.must_change_password
    assert login(db, "cem", "second-initial-2").username == "cem"
    with pytest.raises(AuthenticationError):
        login(db, "cem", "initial-pass-1")
    with db.snapshot() as s:
        events = audit_frame(s)
        assert "RESET_PASSWORD" in set(events["action"])
        with pytest.raises(NotFoundError):
            reset_password(s, "nobody", "whatever-long-1")


def test_study_readers_lists_codes_groups_and_sequence_groups(db, study):
    with db.snapshot() as s:
        frame = study_readers(s, study.code)
    assert list(frame["code"]) == ["R01", "R02", "R03", "R04"]
    assert list(frame["name"]) == ["Dr Ada", "Dr Ben", "Dr Cem", "Dr Dee"]
    assert set(frame["sequence_group"]) == {1, 2}
    with db.snapshot() as s:
        with pytest.raises(NotFoundError):
            study_readers(s, "NOPE")
