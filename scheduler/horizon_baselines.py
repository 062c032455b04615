"""Baselines a horizon plan is compared with in the same run (SPEC 6 issue, item 5):
- `fixed`: the single-interval plan of period 0 held for every period (curtailed by the kernels
  where a period's limits are lower; jobs stop once their work is done);
- `miner-switch`: the common miner practice: all miners off while the energy price is above the
  fleet's breakeven, on below it; GPUs (and miner modes when on) planned period by period, each
  period on its own (no look-ahead, no deferral).
Both are evaluated with the exact SPEC 6 objective; ramps are not enforced on them, their
breaks are counted."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .assignment import Assignment, evaluate, violations
from .horizon_core import Horizon, WorkState, only_jobs, drop_finished, evaluate_horizon, period_violations, \
    with_running
from .problem import MINER, Problem
from .solve import SolveOptions


@dataclass
class Baseline:
    name: str
    objective_usd: float
    assignments: list[Assignment]
    ramp_breaks: int            # periods whose site power step exceeds the ramp limit
    note: str


def breakeven_usd_per_mwh(p: Problem) -> float:
    """The fleet's breakeven energy price: hashing revenue per MWh of all miners at their
    most efficient mode (the figure miners compare the price with)."""
    th = kw = 0.0
    for k in np.nonzero(p.rack_kind == MINER)[0].tolist():
        mm = int(p.rack_model[k])
        nq = int(p.miner_n_modes[mm])
        eff = p.miner_th_s[mm, :nq] / p.miner_kw[mm, :nq]
        q = int(np.argmax(eff))
        th += p.rack_count[k] * p.miner_th_s[mm, q]
        kw += p.rack_count[k] * p.miner_kw[mm, q]
    return float(th * p.miner_usd_per_th_h / kw * 1000.0) if kw > 0 else 0.0


def _baseline(h: Horizon, name: str, assignments: list[Assignment], note: str) -> Baseline:
    """The baseline's exact SPEC 6 objective, with the periods whose site power step exceeds the ramp."""
    total, periods, _ = evaluate_horizon(h, assignments)
    breaks = sum(1 for v in period_violations(h, periods) if v.startswith("ramp["))
    return Baseline(name, total, assignments, breaks, note)


def fixed_plan(h: Horizon, opts: SolveOptions | None = None) -> Baseline:
    """Period 0's single-interval plan (the MILP) held fixed."""
    from .heuristic import curtail
    from .solve import solve

    res = solve(h.problems[0], "milp", opts or SolveOptions(time_limit_s=30, gap=1e-3))
    if res.assignment is None:
        raise ValueError("fixed baseline: period 0 has no feasible plan")
    held = res.assignment
    out = []
    work = WorkState.start(h)
    for p, prob in enumerate(h.problems):
        a = drop_finished(held, work)
        if violations(prob, evaluate(prob, a)):
            cut = curtail(prob, a)
            a = drop_finished(cut.assignment, work) if cut.assignment is not None else Assignment.empty(prob)
        work.run_period(h, p, prob, a)
        out.append(a)
    return _baseline(h, "fixed", out, "the period-0 plan held all horizon (curtailed where a period's limits are lower)")


def miner_switch(h: Horizon) -> Baseline:
    """Miners all off above the fleet breakeven price, on below; GPUs planned per period."""
    from .heuristic import solve_heuristic

    be = breakeven_usd_per_mwh(h.problems[0])
    out: list[Assignment] = []
    work = WorkState.start(h)
    prev = None
    for p, base in enumerate(h.problems):
        on = bool(np.all(base.site_price_usd_per_mwh <= be))
        values = base.job_value_per_gpu_h.copy()
        required = base.job_required.copy()
        for j in range(len(values)):
            if work.finished(j):
                values[j, :] = np.nan
                required[j] = False
        changes = dict(job_value_per_gpu_h=values, job_required=required)
        if not on:
            changes.update(miner_usd_per_th_h=0.0, hashprice_usd_per_ph_day=0.0)
        running = None if prev is None else only_jobs(prev, [j for j in range(len(values)) if not work.finished(j)])
        prob = with_running(base, running, **changes) if prev is not None else dataclasses.replace(base, **changes)
        res = solve_heuristic(prob, SolveOptions(warm_start=prev))
        a = res.assignment if res.assignment is not None else Assignment.empty(base)
        if not on:
            a.miners[:] = 0
        a = drop_finished(a, work)
        work.run_period(h, p, base, a)
        out.append(a)
        prev = a
    return _baseline(h, "miner-switch", out,
                     f"miners off above the fleet breakeven of {be:.2f} USD/MWh, GPUs planned per period")


def baselines(h: Horizon) -> list[Baseline]:
    return [fixed_plan(h), miner_switch(h)]
