"""Run the micro-benchmarks: ``python -m bench`` (``make bench``).

Every ``bench/bench_*.py`` module with a ``run(report)`` function is discovered and run in name
order. Options: ``--only NAME`` (repeatable; matches module names, ``tokens`` = ``bench_tokens``),
``--json [PATH]`` (``-`` or no value: JSON on stdout instead of the table), ``--quick`` (fewer,
shorter repeats), ``--check`` (exit 1 when a ratio goal is missed), ``--list``.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
import traceback
from pathlib import Path

from bench._harness import Report


def discover() -> list[str]:
    here = str(Path(__file__).resolve().parent)
    return sorted(name for _, name, _ in pkgutil.iter_modules([here]) if name.startswith("bench_"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", default=[], metavar="NAME")
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--repeat-time", type=float, default=None, metavar="SECONDS")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args(argv)

    names = discover()
    if args.only:
        wanted = [w.removeprefix("bench_") for w in args.only]
        names = [n for n in names if any(w in n.removeprefix("bench_") for w in wanted)]
        if not names:
            parser.error(f"no benchmark matches {args.only}; have: {', '.join(discover())}")
    if args.list:
        print("\n".join(names))
        return 0

    json_to_stdout = args.json == "-"
    report = Report(
        repeats=args.repeats or (7 if args.quick else 21),
        repeat_time=args.repeat_time or (0.01 if args.quick else 0.02),
        quiet=json_to_stdout,
        out=sys.stderr if json_to_stdout else sys.stdout,
    )
    failed = []
    started = time.perf_counter()
    for name in names:
        report.bench = name.removeprefix("bench_")
        if not json_to_stdout:
            print(f"\n# {report.bench}", flush=True)
            print(Report.HEADER)
        try:
            module = importlib.import_module(f"bench.{name}")
            module.run(report)
        except Exception:
            failed.append(name)
            traceback.print_exc()
    elapsed = time.perf_counter() - started

    if args.json is not None:
        report.dump_json(args.json)
    missed = report.missed()
    if not json_to_stdout:
        goals = [m for m in report.results if m.goal_met is not None]
        print(
            f"\n# {len(report.results)} cases in {elapsed:.1f} s (median of {report.repeats} "
            f"repeats); ratio goals met: {len(goals) - len(missed)}/{len(goals)}"
        )
    for m in missed:
        print(
            f"goal missed: {m.bench}/{m.name} {m.ratio:.2f}x {m.vs} (goal {m.goal})",
            file=sys.stderr,
        )
    if failed:
        print(f"benchmarks failed: {', '.join(failed)}", file=sys.stderr)
        return 2
    return 1 if (args.check and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
