"""What a newcomer sees typing the command: help rather than a daemon, defaults in help."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from rps_service.cli import main
from rps_service.sandbox.cli import build_parser


def test_no_command_prints_help_and_starts_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a daemon would create data/ and log/ here
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: rps-service")
    assert "run the daemon" in out and "sandbox" in out and "devices" in out
    assert list(tmp_path.iterdir()) == []


def test_help_flag_matches_no_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    bare = capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == bare


def test_every_sandbox_option_has_help_with_its_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    options = [a for a in build_parser()._actions
               if a.option_strings and not isinstance(a, argparse._HelpAction)]
    assert len(options) == 8
    for action in options:
        assert action.help and "(default: %(default)s)" in action.help, action.dest
    assert main(["sandbox", "--help"]) == 0
    out = capsys.readouterr().out
    for shown in ("(default: 127.0.0.1)", "(default: 8900)", "(default: 1200)",
                  "answered 503", "answered 429", "Retry-After"):
        assert shown in " ".join(out.split()), shown
