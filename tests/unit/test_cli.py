"""What a newcomer sees typing the command: help rather than a daemon, defaults in help."""

from __future__ import annotations

import argparse
import re
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


class _Jobs:
    """Answers ``GET /jobs/{id}`` with one job, as the daemon would."""

    def __init__(self, job: dict[str, object]) -> None:
        self.job = job

    def call(self, method: str, path: str) -> dict[str, object]:
        assert (method, path) == ("GET", f"/jobs/{self.job['id']}")
        return self.job


def test_job_shows_which_phones_of_a_repoint_fetched(capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    from rps_service.cli.fleet import follow

    macs = [f"0004130000{i:02X}" for i in range(12)]
    job = {"id": 7, "kind": "repoint", "provider": "snom", "server": 8, "state": "done",
           "error": None, "result": {"counts": {"devices": 15, "queued": 15}},
           "events": {"done": 15}, "fetched": 3, "not_fetched_total": 12,
           "not_fetched": macs}
    assert follow(_Jobs(job), 7, True, False) == 0  # type: ignore[arg-type]
    rows = dict(re.split(r"\s{2,}", line, maxsplit=1)
                for line in capsys.readouterr().out.splitlines()[1:])
    assert rows["phones fetched since start"] == "3"
    assert rows["phones not fetched yet"] == "12: " + " ".join(macs[:10]) + " …"
