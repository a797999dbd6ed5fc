"""Micro-benchmark helpers: median per-op time over repeats, and ratios to a floor from the same run.

The machines are shared and noisy, so nothing here trusts one number: each case is calibrated to
``repeat_time`` seconds per repeat, run ``repeats`` times, and reported as the median per-op time.
Cases measured together (:meth:`Report.group`) are interleaved repeat by repeat, so a noisy
moment hits the floor and the thing measured against it alike and their ratio stays honest.
Absolute figures do not carry across machines; the ratios (and the goals in
``shared/reference/performance.md`` §3, expressed as ratios) do.
"""

from __future__ import annotations

import gc
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

__all__ = ["Case", "Measurement", "Report", "format_seconds", "time_per_op"]

Timer = Callable[[], float]


@dataclass(slots=True)
class Case:
    """One thing to time. ``vs`` names the floor its ratio is taken against; ``max_ratio`` and
    ``min_ratio`` are goals on that ratio (a missed goal is flagged, and fails ``--check``)."""

    name: str
    fn: Callable[[], object]
    vs: str | None = None
    max_ratio: float | None = None
    min_ratio: float | None = None
    floor: bool = False
    note: str = ""


@dataclass(slots=True)
class Measurement:
    bench: str
    name: str
    median_s: float
    ops_per_s: float
    spread: float  # (max - min) / median over the repeats: a noise indicator, not a result
    repeats: int
    number: int
    floor: bool = False
    vs: str | None = None
    ratio: float | None = None
    max_ratio: float | None = None
    min_ratio: float | None = None
    note: str = ""

    @property
    def goal_met(self) -> bool | None:
        if self.ratio is None or (self.max_ratio is None and self.min_ratio is None):
            return None
        if self.max_ratio is not None and self.ratio > self.max_ratio:
            return False
        return not (self.min_ratio is not None and self.ratio < self.min_ratio)

    @property
    def goal(self) -> str:
        parts = []
        if self.max_ratio is not None:
            parts.append(f"<={self.max_ratio:g}x")
        if self.min_ratio is not None:
            parts.append(f">={self.min_ratio:g}x")
        return " ".join(parts)


def _loop(fn: Callable[[], object], number: int, timer: Timer) -> float:
    it = range(number)
    start = timer()
    for _ in it:
        fn()
    return timer() - start


def calibrate(
    fn: Callable[[], object], repeat_time: float, timer: Timer = time.perf_counter
) -> int:
    """Iterations per repeat so that one repeat takes about ``repeat_time`` seconds."""
    number = 1
    while True:
        elapsed = _loop(fn, number, timer)
        if elapsed >= repeat_time / 5 or number >= 10_000_000:
            break
        number *= 10 if elapsed < repeat_time / 100 else 2
    return max(1, math.ceil(number * repeat_time / max(elapsed, 1e-9)))


def time_per_op(
    fn: Callable[[], object],
    *,
    repeats: int = 7,
    repeat_time: float = 0.05,
    number: int | None = None,
    timer: Timer = time.perf_counter,
) -> tuple[float, list[float], int]:
    """Median seconds per call of ``fn``, all per-repeat figures, and the iterations per repeat."""
    fn()  # warm caches and lazy imports outside the timing
    n = number or calibrate(fn, repeat_time, timer)
    samples = _timed_repeats([(fn, n)], repeats, timer)[0]
    return statistics.median(samples), samples, n


def _timed_repeats(
    items: list[tuple[Callable[[], object], int]], repeats: int, timer: Timer
) -> list[list[float]]:
    out: list[list[float]] = [[] for _ in items]
    gc_was_enabled = gc.isenabled()
    gc.collect()  # once: a full collection per repeat would cost more than the repeats
    try:
        for _ in range(repeats):
            for idx, (fn, n) in enumerate(items):  # interleaved: noise hits every case alike
                gc.disable()  # as timeit: no collector pauses inside a timed loop
                out[idx].append(_loop(fn, n, timer) / n)
                if gc_was_enabled:
                    gc.enable()
    finally:
        if gc_was_enabled:
            gc.enable()
    return out


def format_seconds(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:,.2f} {unit}"
    return f"{seconds / 1e-9:,.1f} ns"


def _format_rate(ops: float) -> str:
    if ops >= 1e6:
        return f"{ops / 1e6:.2f}M"
    if ops >= 1e3:
        return f"{ops / 1e3:.1f}k"
    return f"{ops:.1f}"


@dataclass
class Report:
    """Collects measurements from the ``bench_*`` modules and prints them.

    A module's ``run(report)`` calls :meth:`measure` or :meth:`group`; floors are looked up by name
    in the same module first, then in any module measured earlier in the run.
    """

    repeats: int = 7
    repeat_time: float = 0.05
    out: TextIO = field(default_factory=lambda: sys.stdout)
    quiet: bool = False
    bench: str = ""
    results: list[Measurement] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)
    timer: Timer = time.perf_counter

    def section(self, title: str) -> None:
        if not self.quiet:
            print(f"\n## {self.bench}: {title}", file=self.out)

    def note(self, text: str) -> None:
        """A line of context printed after the module's table (and kept in the JSON)."""
        self.notes.append((self.bench, text))
        if not self.quiet:
            print(f"   note: {text}", file=self.out)

    def measure(self, name: str, fn: Callable[[], object], **kw: Any) -> Measurement:
        """Time one callable (see :class:`Case` for the keyword arguments)."""
        return self.group([Case(name, fn, **kw)])[0]

    def group(self, cases: Iterable[Case]) -> list[Measurement]:
        """Time several callables interleaved repeat by repeat; floors come first in the list."""
        cases = list(cases)
        for case in cases:
            case.fn()  # warm-up, and fail fast before any timing
        numbers = [calibrate(c.fn, self.repeat_time, self.timer) for c in cases]
        samples = _timed_repeats(
            [(c.fn, n) for c, n in zip(cases, numbers, strict=True)], self.repeats, self.timer
        )
        made = []
        for case, n, xs in zip(cases, numbers, samples, strict=True):
            med = statistics.median(xs)
            m = Measurement(
                bench=self.bench,
                name=case.name,
                median_s=med,
                ops_per_s=1.0 / med if med > 0 else math.inf,
                spread=(max(xs) - min(xs)) / med if med > 0 else 0.0,
                repeats=len(xs),
                number=n,
                floor=case.floor,
                vs=case.vs,
                max_ratio=case.max_ratio,
                min_ratio=case.min_ratio,
                note=case.note,
            )
            self.results.append(m)
            if case.vs is not None:
                m.ratio = self._ratio(xs, case.vs, cases, samples)
            made.append(m)
            if not self.quiet:
                print(self._row(m), file=self.out, flush=True)
        return made

    def _ratio(
        self, xs: list[float], vs: str, cases: list[Case], samples: list[list[float]]
    ) -> float:
        # A floor timed in the same group ran in the same rounds: the median of the per-round
        # ratios cancels slow drifts in machine load better than a ratio of two medians.
        for case, floor_xs in zip(cases, samples, strict=True):
            if case.name == vs:
                return statistics.median(x / f for x, f in zip(xs, floor_xs, strict=True))
        return statistics.median(xs) / self.find(vs).median_s

    def find(self, name: str) -> Measurement:
        """The latest measurement called ``name``, preferring the current module."""
        for m in reversed(self.results):
            if m.name == name and m.bench == self.bench:
                return m
        for m in reversed(self.results):
            if m.name == name:
                return m
        raise KeyError(f"no measurement named {name!r} in this run (measure the floor first)")

    # -------------------------------------------------------------------------------- output

    HEADER = (
        f"{'case':<44} {'median':>11} {'ops/s':>8} {'ratio':>7} {'goal':>11} {'±':>5}  vs (floor)"
    )

    @staticmethod
    def _row(m: Measurement) -> str:
        ratio = "floor" if m.floor else (f"{m.ratio:.2f}x" if m.ratio is not None else "")
        met = m.goal_met
        goal = m.goal + ("" if met is None else (" ok" if met else " MISS"))
        return (
            f"{m.name[:44]:<44} {format_seconds(m.median_s):>11} {_format_rate(m.ops_per_s):>8} "
            f"{ratio:>7} {goal:>11} {m.spread * 100:>4.0f}%  {m.vs or ''}"
        ).rstrip()

    def table(self) -> str:
        lines = []
        bench = None
        for m in self.results:
            if m.bench != bench:
                bench = m.bench
                lines.append(f"[{bench}]")
                lines.append(self.HEADER)
            lines.append(self._row(m))
        for bench_name, text in self.notes:
            lines.append(f"note ({bench_name}): {text}")
        return "\n".join(lines)

    def missed(self) -> list[Measurement]:
        return [m for m in self.results if m.goal_met is False]

    def as_json(self) -> dict[str, Any]:
        return {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "repeats": self.repeats,
            "repeat_time_s": self.repeat_time,
            "results": [
                {**asdict(m), "goal_met": m.goal_met, "median_us": m.median_s * 1e6}
                for m in self.results
            ],
            "notes": [{"bench": b, "text": t} for b, t in self.notes],
        }

    def dump_json(self, path: str) -> None:
        data = json.dumps(self.as_json(), indent=2, sort_keys=True)
        if path == "-":
            print(data, file=sys.stdout)
        else:
            with open(path, "w", encoding="utf-8") as f:
                f.write(data + "\n")
