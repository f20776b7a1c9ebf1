"""``python -m bench [BENCHMARK ...] [--db mysql|sqlite|both] [--quick] [--profile DIR]``.

Runs the named benchmarks (all by default, in the order below), then prints the machine,
one table of every figure, and notes (per-run details, kept folders, profiles). Exit code
0 when everything was measured, whether or not the targets were met (a FAIL is a finding,
not a crash); 1 when a benchmark could not run (an ERROR row); 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
import time
from pathlib import Path

from bench.common import Options, Row, busy_elsewhere, error_row, machine, table

BENCHMARKS = ("intake", "pipeline", "memory", "latency", "startstop", "throttle", "fairness",
              "vendors", "reconcile", "ui", "timeline", "instances")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench",
                                     description="rps-service benchmarks.")
    parser.add_argument("benchmarks", nargs="*", metavar="BENCHMARK",
                        help=f"any of {', '.join(BENCHMARKS)} (default: all)")
    parser.add_argument("--db", choices=("mysql", "sqlite", "both"), default="both",
                        help="database(s) to run against (default: both)")
    parser.add_argument("--quick", action="store_true",
                        help="a short smoke run (under a minute): the harness works")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="record the daemon with py-spy while measuring; stacks and "
                             "summaries go to DIR (the figures are then lower)")
    parser.add_argument("--variant", default="", metavar="SWAPS",
                        help="'trace': run the daemon with a wall-clock breakdown per "
                             "event in the notes (see bench/variant.py)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="experiment: override an rps.ini key of every daemon started, "
                             "e.g. --set general.log_level=WARNING (repeatable)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the rows here")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary folders (rps.ini, rps.log, outputs)")
    return parser


async def _run(names: list[str], opts: Options) -> list[Row]:
    rows: list[Row] = []
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        began = time.monotonic()
        try:
            rows += await module.run(opts)
        except Exception as exc:  # one broken benchmark must not hide the others
            rows.append(error_row(name, "-", exc))
        opts.note(f"{name}: {time.monotonic() - began:.0f}s")
    return rows


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    unknown = [b for b in args.benchmarks if b not in BENCHMARKS]
    if unknown:
        print(f"python -m bench: unknown benchmark {unknown[0]!r}; choose from "
              f"{', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    variant = ",".join(sorted({v.strip() for v in args.variant.split(",") if v.strip()}))
    if any(v != "trace" for v in variant.split(",") if v):
        print(f"python -m bench: unknown variant {args.variant!r}", file=sys.stderr)
        return 2
    overrides: dict[str, dict[str, str]] = {}
    for item in args.set:
        key, eq, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not (eq and dot and section and name):
            print(f"python -m bench: --set wants SECTION.KEY=VALUE, got {item!r}",
                  file=sys.stderr)
            return 2
        overrides.setdefault(section, {})[name] = value
    dbs = ["mysql", "sqlite"] if args.db == "both" else [args.db]
    opts = Options(dbs=dbs, quick=args.quick, profile=args.profile, variant=variant,
                   keep=args.keep, overrides=overrides)
    names = args.benchmarks or list(BENCHMARKS)
    if "mysql" in dbs and not opts.quick:
        opts.note("MariaDB: InnoDB's dirty pages are flushed before each benchmark (see "
                  "settle_mysql in bench/common.py)")
    busy = busy_elsewhere()
    began = time.monotonic()
    rows = asyncio.run(_run(names, opts))
    for line in machine():
        print(line)
    mode = "quick" if opts.quick else "full"
    print(f"run: {mode}, {', '.join(names)}, db {'+'.join(dbs)}"
          f"{', variant ' + variant if variant else ''}"
          f"{', set ' + ' '.join(args.set) if args.set else ''}"
          f"{', PROFILED (figures lowered by py-spy)' if opts.profile else ''}; "
          f"{time.monotonic() - began:.0f}s")
    if busy > 0.15:
        print(f"WARNING: {busy:.0%} of the CPUs were busy before the run: other processes "
              "skew these figures")
    print()
    print(table(rows))
    if opts.notes:
        print()
        print("notes:")
        for note in opts.notes:
            print(f"  {note}")
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ | {"result": r.result} for r in rows],
                                        indent=1, default=str), encoding="utf-8")
    return 1 if any(r.status == "ERROR" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
