"""The benchmark harness: medians, paired ratios, goals, discovery and the CLI (tiny budgets)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `bench` lives at the repository root, next to `tests`

from bench import __main__ as bench_main  # noqa: E402
from bench._harness import Case, Report, format_seconds, time_per_op  # noqa: E402


class FakeTimer:
    """A clock where each call of the timed function costs a set number of seconds."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def cost(self, seconds: float):  # type: ignore[no-untyped-def]
        def fn() -> None:
            self.now += seconds

        return fn


def test_time_per_op_reports_the_median() -> None:
    clock = FakeTimer()
    med, samples, n = time_per_op(clock.cost(2e-6), repeats=5, repeat_time=0.001, timer=clock)
    assert abs(med - 2e-6) < 1e-12 and len(samples) == 5 and n >= 400


def test_group_ratios_goals_and_table() -> None:
    clock = FakeTimer()
    report = Report(repeats=3, repeat_time=0.001, out=io.StringIO(), timer=clock, bench="t")
    floor, fast, slow = report.group(
        [
            Case("floor", clock.cost(10e-6), floor=True),
            Case("fast", clock.cost(12e-6), vs="floor", max_ratio=1.5),
            Case("slow", clock.cost(20e-6), vs="floor", max_ratio=1.5),
        ]
    )
    assert floor.ratio is None and floor.goal_met is None
    assert abs(fast.ratio - 1.2) < 1e-9 and fast.goal_met is True  # type: ignore[operator]
    assert abs(slow.ratio - 2.0) < 1e-9 and slow.goal_met is False  # type: ignore[operator]
    assert report.missed() == [slow]
    later = report.measure("later", clock.cost(5e-6), vs="floor", min_ratio=0.6)
    assert abs(later.ratio - 0.5) < 1e-9 and later.goal_met is False  # type: ignore[operator]
    table = report.table()
    assert "MISS" in table and "floor" in table and "12.00 µs" in table
    assert format_seconds(1.5e-9) == "1.5 ns" and format_seconds(0.25) == "250.00 ms"
    data = report.as_json()
    assert [r["name"] for r in data["results"]] == ["floor", "fast", "slow", "later"]


def test_cli_discovers_and_runs_tokens_json(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert "bench_tokens" in bench_main.discover()
    out = tmp_path / "bench.json"
    rc = bench_main.main(
        ["--only", "tokens", "--repeats", "3", "--repeat-time", "0.002", "--json", str(out)]
    )
    assert rc == 0
    data = json.loads(out.read_text())
    names = {r["name"]: r for r in data["results"]}
    for alg in ("EdDSA", "ES256"):
        ours = names[f"{alg} verify (verify_elevated_token)"]
        assert ours["vs"] == f"{alg} raw verify (cryptography)" and ours["ratio"] > 0
        assert names[f"{alg} raw verify (cryptography)"]["floor"] is True
    assert "EdDSA raw verify (PyNaCl/libsodium)" in names
    printed = capsys.readouterr().out
    assert "verify (verify_elevated_token)" in printed and "ratio goals met" in printed


def test_cli_rejects_unknown_only(capsys) -> None:  # type: ignore[no-untyped-def]
    import pytest

    with pytest.raises(SystemExit):
        bench_main.main(["--only", "no-such-bench"])
    assert "no benchmark matches" in capsys.readouterr().err
