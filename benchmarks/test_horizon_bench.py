"""Horizon planning on the 18 MW example over 48 h in 15-minute periods (192 periods, real ERCOT
prices and weather, GenAI-shaped demand; `examples/wa-48h.yaml`): the rolling-horizon fast path
and the `milp` method with a 120 s limit (at this size: the aggregated horizon MILP of
`scheduler.horizon_agg`, whose gap is against the bound of the full-resolution relaxation; the
exact monolithic model's LP relaxation alone takes longer). Each plan is verified with
`verify_plan` before its time is reported; the figures (profit, bound, gap, baselines) are
printed with `-s`.

Run: `.venv/bin/python -m pytest benchmarks/test_horizon_bench.py --benchmark-only -s`.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from scheduler.horizon import plan_horizon
from scheduler.horizon_baselines import baselines
from scheduler.horizon_core import compile_horizon, horizon_plan
from scheduler.horizon_io import with_series
from scheduler.model import load_scenario
from scheduler.solve import SolveOptions
from scheduler.verify import verify_plan

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data"


def scenario(name: str = "wa-48h"):
    return with_series(load_scenario(ROOT / "examples" / f"{name}.yaml"), prices=DATA / "wa-48h-prices.csv",
                       demand=DATA / "wa-48h-demand.csv", weather=DATA / "wa-48h-weather.csv",
                       periods=192, period_h=0.25)


@pytest.fixture(scope="module")
def horizon():
    sc = scenario()
    h = compile_horizon(sc)
    plan_horizon(h, "rolling")          # JIT warm-up (kernels load from the Numba cache)
    return sc, h


@pytest.mark.parametrize("name", ["wa-48h", "wa-48h-ramp"])
def test_rolling_192_periods(benchmark, name):
    sc = scenario(name)
    h = compile_horizon(sc)
    plan_horizon(h, "rolling")
    res = benchmark.pedantic(lambda: plan_horizon(h, "rolling"), rounds=1, iterations=1)
    plan = horizon_plan(h, res)
    assert verify_plan(sc, plan) == []
    print(f"\n{name} rolling: {res.seconds:.2f} s, profit ${plan['objective_usd']:,.2f}")


def test_milp_192_periods(benchmark, horizon):
    sc, h = horizon
    opts = SolveOptions(time_limit_s=120, gap=0.005)
    res = benchmark.pedantic(lambda: plan_horizon(h, "milp", opts), rounds=1, iterations=1)
    plan = horizon_plan(h, res)
    assert verify_plan(sc, plan) == []
    gap = res.gap
    bound = res.bound_usd
    print(f"\nmilp ({res.method}): {res.seconds:.1f} s, status {res.status}, profit ${plan['objective_usd']:,.2f}, "
          f"bound {'n/a' if bound is None else f'${bound:,.2f}'}, gap {'n/a' if gap is None else f'{gap * 100:.2f}%'}"
          f" (target 0.5%); rolling ${res.extra.get('rolling_objective_usd', float('nan')):,.2f}, "
          f"aggregated model ${res.extra.get('aggregated_objective_usd', float('nan')):,.2f}"
          f"{'; ' + res.extra['why'] if 'why' in res.extra else ''}")
    assert bound is not None and bound >= plan["objective_usd"] - 1e-6


def test_baselines_on_real_prices(benchmark, horizon):
    sc, h = horizon
    res = plan_horizon(h, "rolling")
    ours = horizon_plan(h, res)["objective_usd"]
    base = benchmark.pedantic(lambda: baselines(h), rounds=1, iterations=1)
    for b in base:
        print(f"\n{b.name}: ${b.objective_usd:,.2f}; wattsched ${ours:,.2f} "
              f"({(ours - b.objective_usd) / abs(b.objective_usd) * 100:+.2f}%)")
        assert ours > b.objective_usd


def test_rolling_demand_response_window(benchmark):
    sc = with_series(load_scenario(ROOT / "examples" / "wa-48h-ramp.yaml"), prices=DATA / "wa-48h-prices.csv",
                     demand=DATA / "wa-48h-demand.csv", weather=DATA / "wa-48h-weather.csv",
                     limits=DATA / "wa-48h-dr-limits.csv", periods=192, period_h=0.25)
    h = compile_horizon(sc)
    plan_horizon(h, "rolling")
    res = benchmark.pedantic(lambda: plan_horizon(h, "rolling"), rounds=1, iterations=1)
    plan = horizon_plan(h, res)
    assert verify_plan(sc, plan) == []
    kw = [b["sites"][0]["site_kw"] for b in plan["periods"]]
    limit = [b["sites"][0]["grid_limit_kw"] for b in plan["periods"]]
    assert all(k <= lim + 1e-6 for k, lim in zip(kw, limit))
    assert all(abs(b - a) <= 8000 * 0.25 + 1e-6 for a, b in zip(kw, kw[1:]))
    print(f"\nDR window + ramp rolling: {res.seconds:.2f} s, max {max(kw[160:172]):,.0f} kW in the 12,000 kW "
          f"window, largest step {max(abs(b - a) for a, b in zip(kw, kw[1:])):,.0f} kW (limit 2,000)")
