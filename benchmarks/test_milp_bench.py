"""MILP solve time and gap on generated scenarios (1x40, 1x200, 2x200, 4x400 racks) and the
examples. Each plan is verified by the independent verifier before its time is recorded.

Run: `make bench` or `.venv/bin/python -m pytest benchmarks/test_milp_bench.py --benchmark-only`.
Seeds are fixed; `WATTSCHED_BENCH_SEEDS=1,2,3` runs more of them.
"""
from __future__ import annotations

import os

import pytest

from scheduler.generate import generate_scenario
from scheduler.model import load_scenario, parse_scenario
from scheduler.problem import compile_problem
from scheduler.solve import SolveOptions, plan_of, solve
from scheduler.verify import verify_plan

SEEDS = [int(s) for s in os.environ.get("WATTSCHED_BENCH_SEEDS", "1,2,3").split(",")]
SIZES = [(1, 40, 60.0), (1, 200, 60.0), (2, 200, 60.0), (4, 400, 60.0)]


def _run(sc, time_limit_s: float, gap: float = 1e-4):
    p = compile_problem(sc)
    res = solve(p, "milp", SolveOptions(gap=gap, time_limit_s=time_limit_s))
    plan = plan_of(p, res)
    problems = verify_plan(sc, plan)
    assert problems == [], problems[:5]
    return res


@pytest.mark.parametrize("sites,racks,limit", SIZES, ids=[f"{s}x{r}" for s, r, _ in SIZES])
@pytest.mark.parametrize("seed", SEEDS)
def test_milp_generated(benchmark, sites, racks, limit, seed):
    sc = parse_scenario(generate_scenario(sites, racks, seed))
    res = benchmark.pedantic(_run, args=(sc, limit), rounds=1, iterations=1)
    benchmark.extra_info.update({"status": res.status, "gap": res.gap, "seconds": res.seconds,
                                 "rows": res.extra.get("rows"), "columns": res.extra.get("columns")})
    assert res.status in ("optimal", "feasible")
    if res.status == "optimal":
        assert res.gap <= 1e-4 + 1e-12


@pytest.mark.parametrize("name", ["small", "wa-18mw", "fleet-2site"])
def test_milp_examples(benchmark, name):
    sc = load_scenario(f"examples/{name}.yaml")
    res = benchmark.pedantic(_run, args=(sc, 60.0), rounds=3, iterations=1)
    benchmark.extra_info.update({"status": res.status, "gap": res.gap})
    assert res.status == "optimal"
