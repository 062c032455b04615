"""The rolling-horizon fast path (SPEC 6): plan period by period with the Numba kernels, each
period's problem compiled with the previous period's plan as what runs now (so moves are costed),
work-aware job values (finished jobs stop; deferrable jobs run in the cheapest hours of their
window, urgent ones are boosted) and ramp-aware grid limits (a backward pass lowers each
period's ceiling so later drops, such as demand-response windows, stay reachable; miners fill
up to the floor the ramp sets after a drop)."""
from __future__ import annotations

import dataclasses
import time
from typing import Optional

import numpy as np

from .assignment import Assignment, evaluate
from .horizon_core import Horizon, HorizonResult, WorkState, only_jobs, drop_finished, with_running
from .problem import MINER, Problem
from .solve import SolveOptions, SolveResult


POLISH_MIN_S = 0.1   # the shortest MILP polish of a period (an even share of the budget is ~0.2 s for
                     # 192 periods: it still saves most replica moves the kernels make)
EXACT_LIMIT_S = 2.0  # the longest the MILP may search for a packing of a schedule's period


TARGET_MARGIN = 0.02  # a followed schedule's site power may exceed the model's by this share of the limit


def ramp_ceiling_kw(h: Horizon, targets: Optional[np.ndarray] = None) -> np.ndarray:
    """f8[P,S]: the most each site may draw in period p so that every later grid limit can
    still be reached by ramping down at `max_ramp_kw_per_h`. With `targets` (f8[P,S], the site
    power the horizon MILP planned for a schedule), each period of a site with a ramp limit is
    also held to its target plus TARGET_MARGIN of the limit, so a planned descent (before a
    price spike, say) starts when the plan starts it: a period planned alone sees no reason to
    shed load ahead of time, and the ramp then lets it come down only 2 MW per period, too late."""
    P = h.n_periods
    cap = np.array([pr.site_grid_limit_kw for pr in h.problems], dtype=np.float64)
    ramp = np.where(np.isnan(h.ramp_kw_per_h), np.inf, h.ramp_kw_per_h)
    if targets is not None:
        ramped = ~np.isnan(h.ramp_kw_per_h)          # sites without a ramp keep their own limits
        cap = np.where(ramped, np.minimum(cap, targets + TARGET_MARGIN * cap), cap)
        # targets may descend at the full ramp: a slightly slower descent leaves each period a
        # band between the ramp's floor and its ceiling that whole miners can fill
        ramp = ramp * (1.0 - TARGET_MARGIN)
    for p in range(P - 2, -1, -1):
        cap[p] = np.minimum(cap[p], cap[p + 1] + ramp * h.hours[p + 1])
    return cap


def _site_price(p: Problem, j: int) -> float:
    ok = p.job_site_ok[j]
    return float(np.mean(p.site_price_usd_per_mwh[ok])) if ok.any() else 0.0


def _job_kw(p: Problem, j: int) -> float:
    """Site kW of job j at the top cap on its cheapest allowed model (for deferral savings)."""
    kws = [p.job_gpus[j] * p.gpu_busy_kw[g, p.gpu_n_levels[g] - 1] for g in range(len(p.gpu_model_ids))
           if not np.isnan(p.job_value_per_gpu_h[j, g])]
    return float(min(kws)) * float(np.mean(p.rack_site_factor)) if kws else 0.0


def job_values(h: Horizon, p: int, work: WorkState, running: frozenset[int] = frozenset()) -> tuple[np.ndarray, np.ndarray]:
    """Per-period job values and required flags for the kernels: jobs with no work left cannot
    run; a tracked job runs only in the cheapest periods of its window (enough of them to finish
    its work at full speed, plus one) - a job running now keeps running through an expensive
    stretch unless the energy it would save there is worth more than its move cost - and is
    boosted by its late penalty when time runs short."""
    prob = h.problems[p]
    values = prob.job_value_per_gpu_h.copy()
    required = prob.job_required.copy()
    for j in range(len(prob.job_ids)):
        left = work.left[j]
        if np.isnan(left):
            continue
        if work.finished(j) or left <= 0:
            values[j, :] = np.nan
            required[j] = False
            continue
        deadline = h.deadline_h[j]
        end = h.end_h if np.isnan(deadline) else max(float(deadline), float(h.start_h[p] + h.hours[p]))
        window = [q for q in range(p, h.n_periods) if h.start_h[q] < end - 1e-9]
        need_h = left / float(prob.job_gpus[j])             # at perf 1.0
        window_h = float(sum(h.hours[q] for q in window))
        if window_h <= need_h * 1.25 + 1e-9:
            # urgent: never defer, and rank above work that can wait
            if not np.isnan(deadline):
                values[j, :] += h.late_usd_per_h[j] / float(prob.job_gpus[j])
            continue
        prices = sorted((_site_price(h.problems[q], j), q) for q in window)
        n = 0
        acc = 0.0
        for _, q in prices:
            n += 1
            acc += h.hours[q]
            if acc >= need_h:
                break
        allowed = {q for _, q in prices[:n + 1]}
        if p not in allowed and j in running:
            threshold = prices[min(n, len(prices) - 1)][0]
            saving = 0.0
            for q in window[window.index(p):]:
                if q in allowed:
                    break
                saving += _job_kw(h.problems[q], j) * h.hours[q] * (_site_price(h.problems[q], j) - threshold) / 1000.0
            if saving <= prob.job_move_cost_usd[j]:
                continue
        if p not in allowed:
            values[j, :] = np.nan
            required[j] = False
    return values, required


def raise_to_floor(p: Problem, a: Assignment, floor_kw: np.ndarray) -> Assignment:
    """Add miners (each rack's most efficient mode) until each site draws at least `floor_kw`
    or no miner can be added within rack, feed, loop and site limits (the ramp's floor after a
    drop: miners are the buffer that absorbs power steps)."""
    f = evaluate(p, a)
    short = floor_kw - f.site_kw
    if not (short > 1e-9).any():
        return a
    a = Assignment(a.job_level, a.job_place, a.svc_place, a.miners.copy())
    rack_kw = f.rack_kw.copy()
    feed_kw, loop_kw, site_kw = f.feed_kw.copy(), f.loop_heat_kw.copy(), f.site_kw.copy()
    loop_site_fac = 1.0 + p.loop_kw_per_kw_heat
    for k in np.nonzero(p.rack_kind == MINER)[0].tolist():
        s = int(p.rack_site[k])
        if site_kw[s] >= floor_kw[s] - 1e-9:
            continue
        mm = int(p.rack_model[k])
        nq = int(p.miner_n_modes[mm])
        kw, th = p.miner_kw[mm, :nq], p.miner_th_s[mm, :nq]
        q = int(np.argmax(th / np.maximum(kw, 1e-9)))
        fac = loop_site_fac[p.rack_loop[k]]
        while a.miners[k].sum() < p.rack_count[k] and site_kw[s] < floor_kw[s] - 1e-9:
            add = kw[q]
            if (rack_kw[k] + add > p.rack_limit_kw[k] or feed_kw[p.rack_feed[k]] + add > p.feed_limit_kw[p.rack_feed[k]]
                    or loop_kw[p.rack_loop[k]] + add > p.loop_cap_kw[p.rack_loop[k]]
                    or site_kw[s] + add * fac > p.site_grid_limit_kw[s]):
                break
            a.miners[k, q] += 1
            rack_kw[k] += add
            feed_kw[p.rack_feed[k]] += add
            loop_kw[p.rack_loop[k]] += add
            site_kw[s] += add * fac
    return a


def follow_schedule(h: Horizon, p: int, work: WorkState, chosen: dict[int, tuple[int, int]],
                    exact: bool = True):
    """Job values, required flags and lowest cap levels for period p that make the period's
    solver run exactly the jobs in `chosen` (job -> (domain, level) of the aggregated horizon
    MILP) on that domain's GPU model, while they have work left.

    With `exact`, each runs at the chosen level or the lowest one above it that fits: a job with
    work left earns the same over the horizon whatever its cap (a higher cap only finishes it
    before the schedule's last period for it, and leaves its GPUs idle there), so it is valued
    at a thousandth of its rate, enough to be packed first but not to buy a higher cap. Without,
    (when the chosen levels cannot all be packed into racks) any level the job allows is open
    and it is valued at its rate, so it runs as fast as the racks let it."""
    prob = h.problems[p]
    values = np.full_like(prob.job_value_per_gpu_h, np.nan)
    required = np.zeros_like(prob.job_required)
    min_level = prob.job_min_level.copy()
    for j, (d, c) in chosen.items():
        if work.finished(j):
            continue
        g = int(prob.domain_model[d])
        values[j, g] = prob.job_value_per_gpu_h[j, g]
        if exact:
            if not np.isnan(h.remaining_gpu_h[j]):
                values[j, g] *= 1e-3
            min_level[j, g] = max(int(min_level[j, g]), int(c))
        required[j] = True
    return values, required, min_level


def solve_rolling(h: Horizon, opts: Optional[SolveOptions] = None, polish_s: float = 0.0,
                  schedule: Optional[list[dict[int, tuple[int, int]]]] = None,
                  replicas: Optional[np.ndarray] = None, site_kw: Optional[np.ndarray] = None) -> HorizonResult:
    """Plan the periods in order with the kernels (status `feasible`). With `polish_s`, each
    period's kernel plan is also handed to the single-interval MILP as a MIP start, with an
    equal share of `polish_s` as its time limit, and the better plan of the period is kept.
    With `schedule` (per period: job -> (domain, level)), the periods run those jobs instead of
    choosing them by `job_values` (the disaggregation of `scheduler.horizon_agg`); a period
    whose chosen jobs cannot all be packed keeps those it can. With `replicas` (f8[P, I, M], the
    aggregated model's replicas per period, service and GPU model), a service starts no replica
    on a GPU model that runs none of it and that the schedule gives none, and a service that runs
    more replicas than the schedule and more capacity than its demand stops its least efficient
    spare replicas (see `trim_replicas`). With `site_kw` (f8[P, S], the aggregated model's site
    power per period) and a ramp limit, the ramp ceilings follow it (see `ramp_ceiling_kw`)."""
    from .heuristic import solve_heuristic

    opts = opts or SolveOptions()
    t0 = time.perf_counter()
    ramp = h.ramp_kw_per_h
    ceiling = ramp_ceiling_kw(h, site_kw)
    work = WorkState.start(h)
    prev: Optional[Assignment] = None
    prev_site: Optional[np.ndarray] = None
    out: list[Assignment] = []
    for p in range(h.n_periods):
        base = h.problems[p]
        if schedule is not None:
            values, required, min_level = follow_schedule(h, p, work, schedule[p])
            changes = dict(job_value_per_gpu_h=values, job_required=required, job_min_level=min_level)
        else:
            running_jobs = frozenset(j for j in range(len(base.job_ids))
                                     if (base.job_run_domain[j] if prev is None else prev.job_level[j]) >= 0)
            values, required = job_values(h, p, work, running_jobs)
            changes = dict(job_value_per_gpu_h=values, job_required=required)
        grid = np.minimum(base.site_grid_limit_kw, ceiling[p])
        if prev_site is not None:
            up = np.where(np.isnan(ramp), np.inf, prev_site + ramp * h.hours[p])
            grid = np.minimum(grid, up)
        running = None if prev is None else only_jobs(
            prev, [j for j in range(len(base.job_ids)) if not work.finished(j)])
        changes["site_grid_limit_kw"] = grid
        prob = with_running(base, running, **changes) if prev is not None else dataclasses.replace(base, **changes)
        if replicas is not None:
            # no new replicas on a GPU model the schedule runs none of the service on
            now = np.zeros_like(replicas[p])
            for i in range(len(prob.svc_ids)):
                for k, r in prob.svc_running(i).items():
                    now[i, prob.rack_model[k]] += r
            prob = dataclasses.replace(prob, svc_replica_rps=np.where((replicas[p] < 0.5) & (now == 0), 0.0, prob.svc_replica_rps))
        res = solve_heuristic(prob, SolveOptions(warm_start=prev))
        if res.assignment is None and schedule is not None and required.any():
            # the kernels found no packing of the chosen jobs at the chosen levels (they may
            # fill every GPU of a domain): the single-interval MILP decides whether one exists
            res = _exact(prob, max(0.25, min(EXACT_LIMIT_S, polish_s - (time.perf_counter() - t0))))
        if res.assignment is None and schedule is not None and required.any():
            # the aggregated model's packing does not split into racks at the chosen levels:
            # open every level, then keep what fits
            values, _, min_level = follow_schedule(h, p, work, schedule[p], exact=False)
            prob = dataclasses.replace(prob, job_value_per_gpu_h=values, job_min_level=min_level)
            res = solve_heuristic(prob, SolveOptions(warm_start=prev))
            if res.assignment is None:
                prob = dataclasses.replace(prob, job_required=prob.job_required & base.job_required)
                res = solve_heuristic(prob, SolveOptions(warm_start=prev))
        if res.assignment is None:
            return HorizonResult(None, "rolling", "infeasible", time.perf_counter() - t0,
                                 infeasible=[f"{r}@p{p}" for r in res.infeasible])
        left_s = polish_s - (time.perf_counter() - t0)
        if left_s > 0.05:
            res = _polish(prob, res, min(left_s, max(POLISH_MIN_S, left_s / (h.n_periods - p))))
        a = drop_finished(res.assignment, work)
        if replicas is not None:
            a = trim_replicas(prob, a, replicas[p].sum(axis=1))
        if prev_site is not None and not np.isnan(ramp).all():
            floor = np.where(np.isnan(ramp), -np.inf, prev_site - ramp * h.hours[p])
            a = raise_to_floor(prob, a, floor)
        work.run_period(h, p, base, a)
        out.append(a)
        prev, prev_site = a, evaluate(base, a).site_kw
    return HorizonResult(out, "rolling", "feasible", time.perf_counter() - t0, backend="kernels")


def trim_replicas(p: Problem, a: Assignment, target: np.ndarray) -> Assignment:
    """Stop spare replicas: while service i runs more than `target[i]` replicas and still serves
    its whole demand without one, that one stops, the most kW per request served first. A period
    planned alone keeps a spare replica whose move costs more than one period of its power
    (through a price spike, say); the horizon plan that set `target` has weighed the move
    against every period it saves. Served load is unchanged and power only falls."""
    svc_place = list(a.svc_place)
    trimmed = False
    for i in range(len(p.svc_ids)):
        total = sum(svc_place[i].values())
        if total <= target[i] + 0.5:
            continue
        place = dict(svc_place[i])

        def rps(k: int, c: int) -> float:
            return p.replica_rps(i, p.rack_model[k], c)

        spare = sum(r * rps(k, c) for (k, c), r in place.items()) - float(p.svc_demand_rps[i])
        def kw_per_rps(kc: tuple[int, int]) -> float:
            return p.replica_kw(i, p.rack_model[kc[0]], kc[1]) / max(rps(*kc), 1e-12)

        for k, c in sorted(place, key=kw_per_rps, reverse=True):
            while place.get((k, c), 0) > 0 and total > target[i] + 0.5 and spare - rps(k, c) >= -1e-9:
                place[k, c] -= 1
                if not place[k, c]:
                    del place[k, c]
                total -= 1
                spare -= rps(k, c)
                trimmed = True
        svc_place[i] = place
    return Assignment(a.job_level, a.job_place, svc_place, a.miners) if trimmed else a


def _exact(p: Problem, limit_s: float, start: Optional[Assignment] = None):
    """The single-interval MILP's plan of `p` within `limit_s`, from `start` if given (no plan
    when it finds none)."""
    from .milp import solve_milp

    try:
        return solve_milp(p, SolveOptions(time_limit_s=max(0.05, limit_s), gap=1e-4, warm_start=start,
                                          explain_infeasible=False))
    except TimeoutError:
        return SolveResult(None, "milp", "infeasible", limit_s)


def _polish(p: Problem, res: SolveResult, limit_s: float) -> SolveResult:
    """The better of `res` and the single-interval MILP started from its plan within `limit_s`
    (both solvers report the objective they evaluated)."""
    m = _exact(p, limit_s, res.assignment)
    if m.assignment is not None and m.extra["objective_usd"] > res.extra["objective_usd"] + 1e-9:
        return m
    return res


__all__ = ["solve_rolling", "ramp_ceiling_kw", "job_values", "raise_to_floor", "trim_replicas"]
