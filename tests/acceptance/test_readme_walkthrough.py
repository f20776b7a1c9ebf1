"""The README's offline walkthrough ("Try the whole flow offline: the sandbox"), run as it is
written: its shell blocks are read from README.md and run with bash in a fresh folder that
holds what a clone has after the quick start (``etc/rps.ini`` and ``.venv/bin/rps-service``),
the sandbox and the daemon as subprocesses. Only the ports are changed (to free ones), so
the test breaks when the README's commands or the output they promise stop being true.

A command's expected output is the text after ``# →`` at the end of its line, or on a
comment line of its own right after it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import SECRETS, free_port

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Try the whole flow offline: the sandbox"
#: The ports the README uses, and the environment variables that move the daemon's.
PORTS = {"8900": "sandbox", "15777": "api", "15780": "ztp"}
SECRETS.add("s3cret")  # the walkthrough's tenant password

if shutil.which("curl") is None or shutil.which("bash") is None:
    pytest.skip("the README's walkthrough needs bash and curl", allow_module_level=True)


@dataclass
class Command:
    text: str
    expected: list[str] = field(default_factory=list)


def shell_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index(SECTION)
    end = readme.index("\n## ", start + len(SECTION))
    return re.findall(r"```sh\n(.*?)```", readme[start:end], re.S)


def commands(block: str) -> list[Command]:
    """The block's commands (continuation lines joined), each with its ``# →`` outputs."""
    found: list[Command] = []
    pending = ""
    for line in block.splitlines():
        stripped = line.strip()
        if not pending and stripped.startswith("#"):
            if stripped.startswith("# →") and found:
                found[-1].expected.append(stripped.removeprefix("# →").strip())
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = pending + line
        pending = ""
        if not text.strip():
            continue
        command, _, expected = text.partition("# →")
        found.append(Command(command.rstrip(), [expected.strip()] if expected else []))
    return found


@dataclass
class Folder:
    path: Path
    env: dict[str, str]
    ports: dict[str, int]

    def localise(self, text: str) -> str:
        """The README's text with this run's ports."""
        for port, name in PORTS.items():
            text = re.sub(rf"\b{port}\b", str(self.ports[name]), text)
        return text


@pytest.fixture
def clone(tmp_path: Path) -> Folder:
    """A folder as the quick start leaves a clone: etc/rps.ini and .venv/bin/rps-service."""
    (tmp_path / "etc").mkdir()
    shutil.copy(ROOT / "etc" / "rps.ini", tmp_path / "etc" / "rps.ini")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    installed = Path(sys.executable).parent / "rps-service"
    script = bin_dir / "rps-service"
    if installed.exists():
        script.symlink_to(installed)
    else:  # pragma: no cover - a test run without the console script installed
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m rps_service "$@"\n')
        script.chmod(0o755)
    ports = {name: free_port() for name in PORTS.values()}
    env = {k: v for k, v in os.environ.items() if not k.startswith("RPS_")}
    # The daemon's ports come from etc/rps.ini; these move them for the daemon and the CLI.
    env |= {"RPS_GENERAL_PORT": str(ports["api"]), "RPS_ZTP_PORT": str(ports["ztp"])}
    return Folder(tmp_path, env, ports)


@pytest.fixture
def background(clone: Folder) -> Iterator[list[subprocess.Popen[bytes]]]:
    """The long-running terminals (sandbox, daemon), stopped at the end."""
    running: list[subprocess.Popen[bytes]] = []
    yield running
    for proc in reversed(running):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def start(clone: Folder, block: str, name: str,
          running: list[subprocess.Popen[bytes]]) -> Path:
    output = clone.path / f"{name}.out"
    with output.open("wb") as out:
        running.append(subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", clone.localise(block)], cwd=clone.path,
            env=clone.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
    return output


def wait_until(check: str, url: str, proc: subprocess.Popen[bytes], output: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{check} exited: {output.read_text()}"
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{check} did not start: {output.read_text()}")


def test_the_readme_walkthrough_runs_as_written(
    clone: Folder, background: list[subprocess.Popen[bytes]]
) -> None:
    sandbox_block, daemon_block, operator_block = shell_blocks()
    assert "rps-service sandbox" in sandbox_block and "rps-service run" in daemon_block
    out = start(clone, sandbox_block, "sandbox", background)
    wait_until("the sandbox", f"http://127.0.0.1:{clone.ports['sandbox']}/_sandbox/state",
               background[0], out)
    out = start(clone, daemon_block, "daemon", background)
    wait_until("the daemon", f"http://127.0.0.1:{clone.ports['api']}/health",
               background[1], out)

    steps = commands(operator_block)
    assert len(steps) >= 10 and sum(len(s.expected) for s in steps) >= 8
    script = "\n".join(f"{clone.localise(step.text)}\necho '@@@ step {i} done'"
                       for i, step in enumerate(steps))
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=clone.path,
                            env=clone.env, capture_output=True, text=True, timeout=90)
    transcript = result.stdout + result.stderr
    assert result.returncode == 0, transcript
    outputs = re.split(r"^@@@ step \d+ done$\n?", result.stdout, flags=re.M)
    assert len(outputs) == len(steps) + 1, transcript
    for step, output in zip(steps, outputs, strict=False):
        for expected in step.expected:
            assert clone.localise(expected) in output, (step.text, output)
    # What the daemon said on its terminal, as the README says.
    said = (clone.path / "daemon.out").read_text()
    api, ztp = clone.ports["api"], clone.ports["ztp"]
    assert f"rps-service: listening on 127.0.0.1:{api} (web console " \
           f"http://127.0.0.1:{api}/ui/); log in log/rps.log" in said
    assert f"phones' listener on 127.0.0.1:{ztp}, path /ztprov/" in said
    assert "WARNING" not in said
