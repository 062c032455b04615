"""`wattsched plan` for horizon scenarios (SPEC 6): the extra options, and the run that loads
CSV series, plans (MILP or rolling horizon), verifies, writes the plan JSON (and optionally the
CSV, the chart and the expanded scenario) and prints a summary. `scheduler.cli` calls this
when the scenario has `periods` or `--prices` is given."""
from __future__ import annotations

import argparse

from .jsonio import write_json as _write_json
from .summary import print_infeasible
from .model import ScenarioError
from .model.scenario import Scenario

EXIT_OK, EXIT_FAIL = 0, 1
DEFAULT_TIME_LIMIT_S = 120.0
DEFAULT_GAP = 0.005


def add_plan_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("horizon planning (SPEC section 6)")
    g.add_argument("--prices", metavar="CSV", help="energy prices per site (USD/MWh), one row per period")
    g.add_argument("--demand", metavar="CSV", help="inference demand per service (rps), one row per period")
    g.add_argument("--weather", metavar="CSV", help="ambient temperature per site (°C), one row per period")
    g.add_argument("--limits", metavar="CSV", help="grid limit per site (kW), e.g. demand-response windows")
    g.add_argument("--periods", type=int, metavar="N", help="number of periods (default: the scenario's or the CSV's)")
    g.add_argument("--period-h", type=float, metavar="H", help="period length in hours (default 1, or the scenario's)")
    g.add_argument("--horizon-solver", default="milp", choices=["milp", "rolling"],
                   help="milp: multi-period MILP warm-started from the rolling plan, the better "
                        "verified plan wins (default); rolling: rolling-horizon fast path "
                        "(also chosen by --solver heuristic)")
    g.add_argument("--csv", metavar="OUT.csv", help="write per-period site power by component, price, limit, profit")
    g.add_argument("--chart", metavar="OUT.png", help="write a chart of stacked site power, grid limit and price")
    g.add_argument("--baselines", action="store_true",
                   help="also compute the fixed-plan and miner on/off baselines and report their profit")
    g.add_argument("--save-scenario", metavar="OUT.json",
                   help="write the scenario with its periods (what `wattsched verify` needs for this plan)")


def horizon_scenario(args, sc: Scenario) -> Scenario:
    """The scenario with its periods from the CSVs given on the command line."""
    from .horizon_io import with_series

    if any(getattr(args, k, None) is not None for k in ("prices", "demand", "weather", "limits", "periods",
                                                        "period_h")):
        sc = with_series(sc, prices=args.prices, demand=args.demand, weather=args.weather,
                         limits=getattr(args, "limits", None), periods=args.periods, period_h=args.period_h)
    if not sc.periods:
        raise ScenarioError(["periods: the scenario has none; give --prices (and --periods, --period-h)"])
    return sc


def run_plan(args, sc: Scenario) -> int:
    from .horizon import plan_horizon
    from .horizon_core import compile_horizon, evaluate_horizon, horizon_plan
    from .horizon_report import period_rows, summary_lines, write_chart, write_csv
    from .solve import SolveOptions
    from .verify import verify_plan

    gap = getattr(args, "gap", None)
    time_limit = getattr(args, "time_limit", None)
    if gap is not None and not (0 <= gap < 1):
        raise ScenarioError([f"--gap: must be in [0, 1) (got {gap})"])
    if time_limit is not None and time_limit <= 0:
        raise ScenarioError([f"--time-limit: must be positive (got {time_limit})"])
    if getattr(args, "backend", "highs") != "highs":
        raise ScenarioError([f"--backend: horizon planning uses highs (got {args.backend})"])
    sc = horizon_scenario(args, sc)
    h = compile_horizon(sc)
    opts = SolveOptions(time_limit_s=DEFAULT_TIME_LIMIT_S if time_limit is None else time_limit,
                        gap=DEFAULT_GAP if gap is None else gap)
    method = getattr(args, "horizon_solver", None) or "milp"
    if getattr(args, "solver", None) == "heuristic":
        method = "rolling"      # the fast path asked for by its single-interval name
    result = plan_horizon(h, method, opts)
    plan = horizon_plan(h, result)
    out = args.output or f"plan-{h.scenario.name or 'scenario'}.json"
    if getattr(args, "save_scenario", None):
        _write_json(args.save_scenario, sc.model_dump(mode="json", exclude_none=True))
    if result.assignments is None:
        _write_json(out, plan)
        print_infeasible(plan["scenario"], result.method, result.seconds, result.infeasible, "horizon plan")
        return EXIT_FAIL
    problems = verify_plan(sc, plan)
    if problems:  # a solver bug must never reach an operator as a plan
        raise RuntimeError(f"{result.method} produced a horizon plan that fails verification: {problems[0]}")
    _write_json(out, plan)
    _, periods, _ = evaluate_horizon(h, result.assignments)
    rows = period_rows(h, periods)
    if getattr(args, "csv", None):
        write_csv(args.csv, rows)
    if getattr(args, "chart", None):
        write_chart(args.chart, rows, title=f"{plan['scenario']}: site power and energy price")
    base = None
    if getattr(args, "baselines", False):
        from .horizon_baselines import baselines
        base = baselines(h)
    if not getattr(args, "quiet", False):
        for line in summary_lines(h, rows, plan["objective_usd"], plan["solver"], base, plan["training"]):
            print(line)
        for what, path in (("plan", out), ("csv", getattr(args, "csv", None)), ("chart", getattr(args, "chart", None))):
            if path and path != "-":
                print(f"{what} written to {path}")
    return EXIT_OK
