"""`tsct app`: the Streamlit command line it builds (theme), without starting a server."""

from __future__ import annotations

import subprocess

import pytest
from typer.testing import CliRunner

import tsct_cli


def _captured_command(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, list[str]]:
    seen: list[list[str]] = []

    def fake_call(cmd: list[str], env: dict[str, str] | None = None) -> int:
        seen.append(cmd)
        return 0

    monkeypatch.setattr(subprocess, "call", fake_call)
    result = CliRunner().invoke(tsct_cli.app, ["app", *args])
    return result.exit_code, (seen[0] if seen else [])


def test_app_starts_streamlit_in_the_dark_reading_theme_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    code, cmd = _captured_command(monkeypatch)
    assert code == 0
    assert cmd[cmd.index("--theme.base") + 1] == "dark"


def test_app_light_theme_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    code, cmd = _captured_command(monkeypatch, "--theme", "light")
    assert code == 0
    assert cmd[cmd.index("--theme.base") + 1] == "light"


def test_app_unknown_theme_is_refused_before_starting(monkeypatch: pytest.MonkeyPatch) -> None:
    code, cmd = _captured_command(monkeypatch, "--theme", "blue")
    assert code == 2
    assert cmd == []
