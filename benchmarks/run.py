#!/usr/bin/env python3
"""Run the benchmarks: juicectl and the baselines side by side, alternating, then the goals.

    python3 tasks.py bench [--quick] [--rounds N] [--only SCENARIO[,SCENARIO...]] [--json FILE]
    .venv/bin/python benchmarks/run.py ...          (the same, without the venv check)

Every measurement is a fresh process (``drive_*.py SCENARIO COUNT``, see ``_common.py``).
Round after round, each implementation measures the same scenario, in an order that rotates
every round, so that a burst of load from elsewhere on the machine hits all of them alike.
The table gives each one's median over the rounds (and its spread) and the ratios of the
medians; a second table the medians of each request's latency (p50, p99, p99.9) and of the
CPU time per request on both sides; then each goal of the performance issues with PASS or
FAIL, this round's first and the first round's after them (nothing of it may regress).

Scenarios: seq, c64, t8, big, big64, cold, restart, rest (see ``_common.SCENARIOS``), the
pool group (``pools.py``: pool_echo, pool_cpu, pool_cold, pool_kill, pool_recycle,
pool_orphan; ``--only pool`` runs them all), ``scale`` (``scale.py``: 50 controllers at
once; not part of the default run, it takes a while), and ``remote`` (``remote.py``: workers
through OpenSSH on a loopback sshd, against ``ssh host cat`` and execnet; part of the default
run where sshd is installed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import BENCH, ROOT, SCENARIOS
from benchmarks.pools import (
    POOL_COUNT_FACTOR,
    POOL_COUNTS,
    POOL_DRIVERS,
    POOL_MEASURED,
    pool_goals,
)

PYTHON = sys.executable
#: Scenario groups that run as programs of their own, after the rounds.
GROUPS = ("scale", "remote")

#: Implementation -> the driver command (scenario and count are appended).
DRIVERS: dict[str, list[str]] = {
    "juicectl": [PYTHON, str(BENCH / "drive_juicectl.py")],
    "juicectl (writes via actor)": [PYTHON, str(BENCH / "drive_juicectl.py"), "--via-actor"],
    "juicectl (busy poll off)": [PYTHON, str(BENCH / "drive_juicectl.py"), "--busy-poll=0"],
    "twisted amp": [PYTHON, str(BENCH / "drive_amp.py")],
    "process pool": [PYTHON, str(BENCH / "drive_pool.py")],
    "cat floor": [PYTHON, str(BENCH / "drive_cat.py")],
    "python cat": [PYTHON, str(BENCH / "drive_cat.py"), "--python"],
    **POOL_DRIVERS,
}
_ACTOR = "juicectl (writes via actor)"
_NO_SPIN = "juicectl (busy poll off)"

#: Scenario -> the implementations measured in it.
MEASURED: dict[str, list[str]] = {
    "seq": ["juicectl", "twisted amp", "process pool", "cat floor", "python cat", _ACTOR, _NO_SPIN],
    "c64": ["juicectl", "twisted amp", "process pool", _ACTOR, _NO_SPIN],
    "t8": ["juicectl", "twisted amp", "process pool", _ACTOR, _NO_SPIN],
    "big": ["juicectl", "twisted amp", "process pool", "cat floor", "python cat", _NO_SPIN],
    "big64": ["juicectl", "twisted amp", _NO_SPIN],
    "cold": ["juicectl", "twisted amp", "process pool"],
    "restart": ["juicectl", "twisted amp", "process pool"],
    "rest": ["juicectl", "twisted amp", "process pool"],
    **POOL_MEASURED,
}
#: The pool group, as ``--only pool`` names it.
POOL_GROUP = list(POOL_MEASURED)

#: Scenario -> (count, quick count): requests per measurement, or samples for cold/restart.
COUNTS: dict[str, tuple[int, int]] = {
    "seq": (6000, 2000),
    "c64": (20000, 6000),
    "t8": (20000, 6000),
    "big": (1500, 500),
    "big64": (3000, 1000),
    "cold": (5, 3),
    "restart": (5, 3),
    "rest": (1, 1),
    **POOL_COUNTS,
}
#: The floor answers so fast that it needs more requests to be timed well.
FLOOR_FACTOR = 10

Results = dict[str, dict[str, list[dict[str, Any]]]]


def measure(impl: str, scenario: str, count: int) -> dict[str, Any]:
    """Run one driver process; return its result line."""
    if impl in ("cat floor", "python cat"):
        count *= FLOOR_FACTOR
    count = max(1, int(count * POOL_COUNT_FACTOR.get(impl, 1.0)))
    driver = DRIVERS[impl]
    argv = [driver[0], driver[1], scenario, str(count), *driver[2:]]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        sys.stderr.write(done.stderr[-3000:])
        raise RuntimeError(f"{impl} {scenario}: exit status {done.returncode}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def run_rounds(scenarios: list[str], rounds: int, quick: bool) -> Results:
    """Measure every implementation of every scenario, alternating, ``rounds`` times."""
    results: Results = {}
    for scenario in scenarios:
        impls = MEASURED[scenario]
        count = COUNTS[scenario][1 if quick else 0]
        results[scenario] = {impl: [] for impl in impls}
        for round_no in range(rounds):
            shift = round_no % len(impls)
            for impl in impls[shift:] + impls[:shift]:
                result = measure(impl, scenario, count)
                results[scenario][impl].append(result)
                sys.stderr.write(
                    f"  {scenario:8} round {round_no + 1}/{rounds}  {impl:28} "
                    f"{result['value']:>10.1f} {result['unit']}\n"
                )
    return results


def median(results: Results, scenario: str, impl: str, field: str = "value") -> float | None:
    """The median of one figure (default: the value) of one implementation in one scenario,
    if measured."""
    runs = results.get(scenario, {}).get(impl)
    values = [run[field] for run in runs or () if field in run]
    if not values:
        return None
    return float(statistics.median(values))


def _reference(scenario: str) -> str:
    """The implementation the ratios of a scenario are taken against."""
    return "juicectl pool" if scenario in POOL_MEASURED else "juicectl"


#: The per-request figures of the second table: (result field, column heading).
PER_REQUEST = [
    ("p50_us", "p50 µs"),
    ("p99_us", "p99 µs"),
    ("p999_us", "p99.9 µs"),
    ("parent_cpu_us", "parent CPU µs"),
    ("child_cpu_us", "child CPU µs"),
]


def _fmt(value: float, unit: str) -> str:
    if unit == "req/s":
        return f"{value:,.0f}"
    if unit == "ms":
        return f"{value:,.1f}"
    return f"{value:g}"


def print_table(results: Results) -> None:
    """Medians, spread and ratios, one row per implementation and scenario."""
    print()
    print("| scenario | implementation | median | min - max | unit | juicectl / this |")
    print("|---|---|---:|---:|---|---:|")
    for scenario, by_impl in results.items():
        reference = _reference(scenario)
        mine = median(results, scenario, reference)
        for impl, runs in by_impl.items():
            values = [run["value"] for run in runs]
            unit = runs[0]["unit"]
            med = statistics.median(values)
            ratio = ""
            if impl != reference and mine is not None and med and scenario != "rest":
                ratio = f"{mine / med:.2f}x"
            print(f"| {scenario} | {impl} | {_fmt(med, unit)} | "
                  f"{_fmt(min(values), unit)} - {_fmt(max(values), unit)} | {unit} | {ratio} |")
    print_per_request(results)
    rest = results.get("rest")
    if rest:
        print()
        print("| at rest (one ready child) | parent threads added | parent RSS added | "
              "child RSS | child threads |")
        print("|---|---:|---:|---:|---:|")
        for impl, runs in rest.items():
            last = runs[-1]
            print(f"| {impl} | {last['value']} | {last['parent_rss_delta_kib'] / 1024:.1f} MiB | "
                  f"{last['child_rss_kib'] / 1024:.1f} MiB | {last['child_threads']} |")
        names = rest.get("juicectl", [{}])[-1].get("thread_names")
        if names:
            print(f"\njuicectl threads at rest: {', '.join(names)}")


def print_per_request(results: Results) -> None:
    """Latency percentiles and CPU per request, medians of the rounds (steady scenarios)."""
    rows = []
    for scenario, by_impl in results.items():
        for impl in by_impl:
            cells = [median(results, scenario, impl, field) for field, _ in PER_REQUEST]
            if any(cell is not None for cell in cells):
                rows.append((scenario, impl, cells))
    if not rows:
        return
    print()
    print("| per request (medians of the rounds) | implementation | "
          + " | ".join(heading for _, heading in PER_REQUEST) + " |")
    print("|---|---|" + "---:|" * len(PER_REQUEST))
    for scenario, impl, cells in rows:
        text = " | ".join("-" if cell is None else f"{cell:,.1f}" for cell in cells)
        print(f"| {scenario} | {impl} | {text} |")


#: A goal's text and its check: (the measured ratio, whether it passes; None: only reported).
Goal = tuple[str, Callable[[Results], tuple[float | None, bool | None]]]


def _ratio(results: Results, scenario: str, impl: str, bound: float,
           *, lower_is_better: bool = False, mine_field: str = "value",
           their_field: str = "value") -> tuple[float | None, bool | None]:
    mine = median(results, scenario, "juicectl", mine_field)
    theirs = median(results, scenario, impl, their_field)
    if mine is None or theirs is None:
        return None, None
    ratio = mine / theirs
    return ratio, (ratio <= bound if lower_is_better else ratio >= bound)


def _reported(results: Results, scenario: str, impl: str) -> tuple[float | None, bool | None]:
    return _ratio(results, scenario, impl, 0.0)[0], None


def _restart_vs_cold(results: Results) -> tuple[float | None, bool | None]:
    restart, cold = median(results, "restart", "juicectl"), median(results, "cold", "juicectl")
    if restart is None or cold is None:
        return None, None
    return restart / cold, restart < 2 * cold


def _big64_vs_big(results: Results) -> tuple[float | None, bool | None]:
    pipelined, alone = median(results, "big64", "juicectl"), median(results, "big", "juicectl")
    if pipelined is None or alone is None:
        return None, None
    return pipelined / alone, pipelined >= alone


#: The goals of the second round (issue 15).
GOALS: list[Goal] = [
    ("60,000-byte values, 64 in flight >= 2x Twisted AMP",
     lambda r: _ratio(r, "big64", "twisted amp", 2.0)),
    ("60,000-byte values, 64 in flight >= juicectl one at a time", _big64_vs_big),
    ("sequential echo >= 5x Twisted AMP", lambda r: _ratio(r, "seq", "twisted amp", 5.0)),
    ("sequential echo >= 2x the cat floor", lambda r: _ratio(r, "seq", "cat floor", 2.0)),
    ("64 in flight >= 10x Twisted AMP", lambda r: _ratio(r, "c64", "twisted amp", 10.0)),
    ("64 in flight >= 10x ProcessPoolExecutor",
     lambda r: _ratio(r, "c64", "process pool", 10.0)),
    ("start to first answer <= half the AMP child's (time ratio)",
     lambda r: _ratio(r, "cold", "twisted amp", 0.5, lower_is_better=True)),
    ("p99 at 64 in flight <= Twisted AMP's p50 (time ratio)",
     lambda r: _ratio(r, "c64", "twisted amp", 1.0, lower_is_better=True,
                      mine_field="p99_us", their_field="p50_us")),
    ("8 threads, 8 in flight each, beside Twisted AMP",
     lambda r: _reported(r, "t8", "twisted amp")),
]

#: The goals of the first round: none of them may regress.
FIRST_ROUND: list[Goal] = [
    ("sequential echo >= 1.5x Twisted AMP", lambda r: _ratio(r, "seq", "twisted amp", 1.5)),
    ("sequential echo >= 70% of the cat floor", lambda r: _ratio(r, "seq", "cat floor", 0.7)),
    ("64 in flight >= 4x Twisted AMP", lambda r: _ratio(r, "c64", "twisted amp", 4.0)),
    ("64 in flight >= 4x ProcessPoolExecutor", lambda r: _ratio(r, "c64", "process pool", 4.0)),
    ("60,000-byte values >= 2x Twisted AMP", lambda r: _ratio(r, "big", "twisted amp", 2.0)),
    ("start to first answer <= the AMP child's (time ratio)",
     lambda r: _ratio(r, "cold", "twisted amp", 1.0, lower_is_better=True)),
    ("restart after SIGKILL < 2x a cold start (time ratio)", _restart_vs_cold),
]


def print_goals(results: Results) -> None:
    """Each goal of the issues with the measured ratio and PASS or FAIL."""
    for title, goals in (("goal", GOALS), ("first round's goal", FIRST_ROUND)):
        print()
        print(f"| {title} | measured | result |")
        print("|---|---:|---|")
        for text, check in goals:
            ratio, passed = check(results)
            if ratio is None:
                continue
            verdict = "reported" if passed is None else "PASS" if passed else "FAIL"
            print(f"| {text} | {ratio:.2f}x | {verdict} |")
    print()
    print("| pool goal | measured | result |")
    print("|---|---:|---|")
    for text, measured, passed in pool_goals(
        lambda scenario, impl: median(results, scenario, impl),
        lambda scenario, impl, key: median(results, scenario, impl, key),
    ):
        verdict = "reported" if passed is None else "PASS" if passed else "FAIL"
        print(f"| {text} | {measured} | {verdict} |")
    rest = results.get("rest", {}).get("juicectl")
    if rest:
        last = rest[-1]
        print(f"| per controller at rest: threads and memory | {last['value']} threads, "
              f"{last['parent_rss_delta_kib'] / 1024:.1f} MiB + child "
              f"{last['child_rss_kib'] / 1024:.1f} MiB | reported |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and 3 rounds")
    parser.add_argument("--rounds", type=int, help="rounds per scenario (default 5, quick 3)")
    parser.add_argument("--only", help="comma-separated scenarios: "
                        + ", ".join([*SCENARIOS, "pool", *GROUPS]))
    parser.add_argument("--json", type=Path, help="also write every raw result to this file")
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 5)
    chosen = args.only.split(",") if args.only else [*SCENARIOS, "remote"]
    if "pool" in chosen:
        chosen = [name for name in chosen if name != "pool"]
        chosen += [name for name in POOL_GROUP if name not in chosen]
    unknown = [name for name in chosen if name not in SCENARIOS and name not in GROUPS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    load = os.getloadavg()
    started = time.perf_counter()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {rounds} rounds, alternating"
          f"{', quick' if args.quick else ''}", flush=True)
    results = run_rounds([name for name in chosen if name not in GROUPS], rounds, args.quick)
    if results:
        print_table(results)
        print_goals(results)
    if "scale" in chosen:
        from benchmarks import scale

        scale.main(["--quick"] if args.quick else [])
    if "remote" in chosen:
        from tests.remote.harness import unavailable

        reason = unavailable()
        if reason is not None:
            print(f"\nremote: not measured: {reason}")
        else:
            from benchmarks import remote

            remote.main([*(["--quick"] if args.quick else []), "--rounds", str(rounds)])
    load = os.getloadavg()
    print(f"\n{time.perf_counter() - started:.0f} s; load average now "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
