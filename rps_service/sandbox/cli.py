"""``rps-service sandbox``: serve every vendor's emulator until SIGINT/SIGTERM (exit 0).

Prints ``SRAPS sandbox listening on http://HOST:PORT/api/v1/``, one line per seeded SRAPS key,
then each other vendor's ``api_url`` and demo credentials (fake, so printing secrets is fine).
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from .. import loop
from .runner import start_sandbox
from .state import DEFAULT_SETTINGS_COUNT, SandboxState


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _catalogue_size(text: str) -> int:
    value = int(text)
    if value < 4:
        raise argparse.ArgumentTypeError("must be at least 4")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The sandbox's command-line options."""
    parser = argparse.ArgumentParser(
        prog="rps-service sandbox",
        description="Every vendor's redirection API emulated on one local port, for trials, "
                    "tests and benchmarks: Snom SRAPS at /api/v1/, each other vendor under "
                    "/<provider>/ (it prints each one's api_url and demo credentials). The "
                    "fault switches apply to all.",
    )
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8900,
                        help="port to listen on (default: %(default)s)")
    parser.add_argument("--latency-ms", type=_non_negative, default=0.0,
                        help="each answer leaves this long after its request arrived "
                             "(on average), in milliseconds (default: %(default)s)")
    parser.add_argument("--error-rate", type=_fraction, default=0.0,
                        help="fraction of requests answered 503, 0 to 1 (default: %(default)s)")
    parser.add_argument("--rate-limit-rate", type=_fraction, default=0.0,
                        help="fraction of requests answered 429, 0 to 1 (default: %(default)s)")
    parser.add_argument("--retry-after", type=int, default=1,
                        help="Retry-After of the 429s, in seconds (default: %(default)s)")
    parser.add_argument("--settings-count", type=_catalogue_size, default=DEFAULT_SETTINGS_COUNT,
                        help="entries in the settings catalogue, at least 4 "
                             "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the random fault rates (default: %(default)s)")
    return parser


def state_from_args(args: argparse.Namespace) -> SandboxState:
    """A seeded state with the switches from the command line."""
    state = SandboxState(args.settings_count, seed=args.seed)
    state.latency = args.latency_ms / 1000
    state.error_rate = args.error_rate
    state.rate_limit_rate = args.rate_limit_rate
    state.retry_after = max(0, args.retry_after)
    return state


async def _serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    sandbox = await start_sandbox(state_from_args(args), args.host, args.port)
    try:
        print(f"SRAPS sandbox listening on {sandbox.url}", flush=True)
        for key in sandbox.state.keys.values():
            role = key.role or "none"
            print(
                f"  key id={key.id} secret={key.secret} company={key.company_id} role={role}",
                flush=True,
            )
        for name, emulator in sandbox.state.emulators.items():
            if name != "snom":
                for line in emulator.describe(sandbox.base_url):
                    print(f"  {line}", flush=True)
        await stop.wait()
    finally:
        await sandbox.close()


def main(argv: list[str] | None = None) -> int:
    """Run the sandbox; 0 on a clean stop, 2 on bad options, 1 when it cannot serve."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help (0) and on bad options (2)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        loop.run(_serve(args))
    except OSError as exc:  # e.g. the port is in use
        print(f"sandbox: cannot serve on {args.host}:{args.port}: {exc.strerror or exc}")
        return 1
    return 0
