"""Benchmarks of the Numba fast path (pytest-benchmark): heuristic vs MILP on the generated sizes,
the heuristic alone at fleet scale, curtailment on the 18 MW example and at fleet scale, the
quality distribution over 200 random scenarios, and Numba's compile time (cold and cached).

Every plan is verified before it is timed; JIT compilation is done (and measured) before timing.
Speed-ups are ratios within one run: the MILP's median time over up to MILP_RUNS solves (repeated
only while a solve is optimal and quick, and spread around the heuristic's timing) over the
heuristic's median time on the same instance. With `-s` the README's table is printed at the end.
Run: `make bench`, or `.venv/bin/python -m pytest benchmarks/test_heuristic_bench.py --benchmark-only -s`.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from scheduler.assignment import evaluate, violations
from scheduler.generate import generate_scenario
from scheduler.heuristic import curtail, solve_heuristic, workspace
from scheduler.milp import solve_milp
from scheduler.model import load_scenario, parse_scenario
from scheduler.problem import compile_problem
from scheduler.solve import SolveOptions, plan_of
from scheduler.verify import verify_plan

ROOT = Path(__file__).resolve().parents[1]
MILP_LIMIT_S = float(os.environ.get("WATTSCHED_BENCH_MILP_LIMIT_S", "600"))
MILP_RUNS = 3           # MILP solves timed per instance when the first is optimal within MILP_REPEAT_S
MILP_REPEAT_S = 20.0
TABLE: dict[str, str] = {}      # README table rows, printed when the module's tests are done


@pytest.fixture(scope="module", autouse=True)
def readme_table():
    yield
    if TABLE:
        print("\n\n| case | heuristic | MILP (same run) | speed-up | heuristic / MILP objective |\n"
              "| --- | --- | --- | --- | --- |")
        for row in TABLE.values():
            print(row)


def _ms(s: float) -> str:
    return f"{s * 1e3:.3g} ms" if s < 0.1 else f"{s:.3g} s"


def timed_milp(p):
    t0 = time.perf_counter()
    m = solve_milp(p, SolveOptions(time_limit_s=MILP_LIMIT_S))
    return m, [time.perf_counter() - t0]


def more_milp_times(p, m, times: list) -> list:
    """After the heuristic's rounds: the MILP solved again, up to MILP_RUNS solves in all, when its
    first solve was optimal within MILP_REPEAT_S (a time-limited solve is not repeated)."""
    while m.status == "optimal" and len(times) < MILP_RUNS and times[0] <= MILP_REPEAT_S:
        times = times + timed_milp(p)[1]
    return times


def speedup_row(name, h_s, m, milp_times, ratio):
    """A README row and its figures: MILP median time / heuristic median time."""
    milp_s = float(np.median(milp_times))
    limit = m.status != "optimal" and milp_s >= MILP_LIMIT_S * 0.95
    when = f"{MILP_LIMIT_S:g} s limit" if limit else f"{milp_s:.3g} s"
    runs = f" (median of {len(milp_times)})" if len(milp_times) > 1 else ""
    TABLE[name] = (f"| {name} | {_ms(h_s)} | {when}{runs}, {m.status} | {milp_s / h_s:,.0f}x | {ratio:.4f} |")
    return {"milp_s": milp_s, "milp_runs_s": milp_times, "speedup": milp_s / h_s}


def verified(sc, p, result) -> float:
    """Objective of a result whose plan passes the self-check and the independent verifier."""
    assert result.assignment is not None, result.infeasible
    f = evaluate(p, result.assignment)
    assert violations(p, f) == []
    assert verify_plan(sc, plan_of(p, result)) == []
    return float(f.objective_usd)


def generated(sites: int, racks: int, seed: int = 0):
    sc = parse_scenario(generate_scenario(sites, racks, seed))
    return sc, compile_problem(sc)


def cut_scenario(sc, grid_factor: float = 1.0, ambient_up_c: float = 0.0):
    return sc.model_copy(update={"sites": [s.model_copy(update={
        "grid_limit_kw": s.grid_limit_kw * grid_factor, "ambient_c": s.ambient_c + ambient_up_c})
        for s in sc.sites]})


def test_compile_time(benchmark):
    """Numba compile time of a first run with an empty cache, and of a run loading the cache."""
    script = ("import time; t = time.perf_counter()\n"
              "from scheduler.model import load_scenario\n"
              "from scheduler.problem import compile_problem\n"
              "from scheduler.heuristic import solve_heuristic, curtail\n"
              f"p = compile_problem(load_scenario({str(ROOT / 'examples' / 'wa-18mw.yaml')!r}))\n"
              "t0 = time.perf_counter(); r = solve_heuristic(p); curtail(p, r.assignment)\n"
              "print(time.perf_counter() - t0)\n")
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        runs = []
        for _ in range(2):
            out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                                 check=True, timeout=1800)
            runs.append(float(out.stdout.strip().splitlines()[-1]))
    benchmark.extra_info.update({"compile_cold_s": runs[0], "cached_first_call_s": runs[1]})
    print(f"\nNumba: first run (empty cache) {runs[0]:.1f} s; next run (cache loaded) {runs[1]:.2f} s")
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)


def test_heuristic_wa_18mw(benchmark):
    sc = load_scenario(ROOT / "examples" / "wa-18mw.yaml")
    p = compile_problem(sc)
    obj = verified(sc, p, solve_heuristic(p))          # also compiles
    m, milp_times = timed_milp(p)
    opt = verified(sc, p, m)
    benchmark(solve_heuristic, p)
    h_s = benchmark.stats.stats.median
    info = speedup_row("`wa-18mw` example", h_s, m, more_milp_times(p, m, milp_times), obj / opt)
    benchmark.extra_info.update({"objective_usd": obj, "milp_objective_usd": opt, "ratio": obj / opt, **info})
    print(f"\nwa-18mw: heuristic {h_s * 1e3:.2f} ms, MILP ({m.status}) {info['milp_s']:.2f} s, "
          f"speed-up {info['speedup']:,.0f}x, heuristic/MILP objective {obj / opt:.4f}")


@pytest.mark.parametrize("sites,racks", [(1, 40), (1, 200), (2, 200), (4, 400)])
def test_heuristic_vs_milp(benchmark, sites, racks):
    """Seed 0 of each size. The MILP is timed before and (when quick and optimal) after the
    heuristic's rounds, so both medians come from the same stretch of the run."""
    sc, p = generated(sites, racks)
    obj = verified(sc, p, solve_heuristic(p))
    m, milp_times = timed_milp(p)
    opt = verified(sc, p, m)
    benchmark(solve_heuristic, p)
    h_s = benchmark.stats.stats.median
    milp_times = more_milp_times(p, m, milp_times)
    info = speedup_row(f"generated {sites} x {racks}", h_s, m, milp_times, obj / opt)
    benchmark.extra_info.update({"objective_usd": obj, "milp_objective_usd": opt, "ratio": obj / opt,
                                 "milp_status": m.status, **info})
    runs = f" (median {info['milp_s']:.2f} s)" if len(milp_times) > 1 else ""
    print(f"\n{sites}x{racks}: heuristic {h_s * 1e3:.2f} ms, MILP ({m.status}) "
          f"{' / '.join(f'{t:.2f}' for t in milp_times)} s{runs}, "
          f"speed-up {info['speedup']:,.0f}x, objective ratio {obj / opt:.4f}")


def test_heuristic_fleet(benchmark):
    sc, p = generated(50, 400)
    obj = verified(sc, p, solve_heuristic(p))
    benchmark.extra_info["objective_usd"] = obj
    benchmark.pedantic(solve_heuristic, args=(p,), rounds=5, iterations=1)
    print(f"\n50x400: heuristic median {benchmark.stats.stats.median:.3f} s")
    TABLE["fleet"] = f"| generated 50 x 400 (fleet) | {_ms(benchmark.stats.stats.median)} | - | - | - |"


@pytest.mark.parametrize("arrays", ["warm", "cold"])
@pytest.mark.parametrize("event", ["grid-20%", "ambient+10C"])
def test_curtail_wa_18mw(benchmark, event, arrays):
    """From the MILP optimum, a curtailed plan for the new limits. `warm`: the new problem's
    kernel arrays already exist; `cold`: each round packs them too (a freshly compiled Problem)."""
    sc = load_scenario(ROOT / "examples" / "wa-18mw.yaml")
    p = compile_problem(sc)
    start = solve_milp(p, SolveOptions(time_limit_s=MILP_LIMIT_S)).assignment   # the optimal plan
    new = cut_scenario(sc, 0.8) if event == "grid-20%" else cut_scenario(sc, 1.0, 10.0)
    q = compile_problem(new)
    obj = verified(new, q, curtail(q, start))
    opt = verified(new, q, solve_milp(q, SolveOptions(time_limit_s=MILP_LIMIT_S)))
    if arrays == "warm":
        workspace(q)
        benchmark(curtail, q, start)
    else:
        benchmark(lambda: curtail(replace(q), start))     # a new Problem object: no cached arrays
    benchmark.extra_info.update({"objective_usd": obj, "milp_objective_usd": opt, "ratio": obj / opt})
    print(f"\ncurtail {event} ({arrays}): {benchmark.stats.stats.median * 1e6:.0f} us, "
          f"objective / MILP optimum {obj / opt:.4f}")


def test_curtail_fleet(benchmark):
    sc, p = generated(50, 400)
    start = solve_heuristic(p).assignment
    new = cut_scenario(sc, 0.8)
    q = compile_problem(new)
    workspace(q)
    verified(new, q, curtail(q, start))
    benchmark.pedantic(curtail, args=(q, start), rounds=5, iterations=1)
    print(f"\ncurtail 50x400 grid-20%: median {benchmark.stats.stats.median * 1e3:.1f} ms")


def test_quality_distribution_200(benchmark):
    """Heuristic / MILP objective over 200 random generated scenarios (1 site, 20-60 racks)."""
    ratios = []
    for seed in range(200):
        racks = 20 + (seed * 7) % 41
        sc, p = generated(1, racks, 1000 + seed)
        h = solve_heuristic(p)
        m = solve_milp(p, SolveOptions(time_limit_s=60))
        if m.assignment is None:
            assert h.assignment is None
            continue
        opt = evaluate(p, m.assignment).objective_usd
        obj = verified(sc, p, h)
        ratios.append(obj / opt if opt > 0 else 1.0 + (obj - opt) / max(1.0, abs(opt)))
    r = np.array(ratios)
    stats = {"n": len(r), "median": float(np.median(r)), "p5": float(np.percentile(r, 5)),
             "min": float(r.min()), "within_1pct": float(np.mean(r >= 0.99)),
             "within_3pct": float(np.mean(r >= 0.97))}
    benchmark.extra_info.update(stats)
    print("\nheuristic/MILP over {n} scenarios: median {median:.4f}, p5 {p5:.4f}, min {min:.4f}, "
          "within 1%: {within_1pct:.1%}, within 3%: {within_3pct:.1%}".format(**stats))
    TABLE["quality"] = ("| 200 random 1-site scenarios (20-60 racks) | | | | median {median:.4f}, p5 {p5:.4f}, "
                        "min {min:.4f}; {within_1pct:.1%} within 1%, {within_3pct:.1%} within 3% |".format(**stats))
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    assert stats["median"] >= 0.99 and stats["within_3pct"] >= 0.95
