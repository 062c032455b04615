"""The multi-period MILP of SPEC section 6 and the `plan_horizon` entry point.

Each period is `scheduler.milp_model.build` of that period's problem in one shared PuLP model
(tag `p{n}_`; period 0 with its move costs against where things run now, built by `build`
itself); this module adds the rows that link periods:
- work: `earned[j,p,g] <= delivered by j on model g in p`, `sum earned <= remaining_gpu_h`,
  revenue on `earned` (so only work that is left earns, SPEC's f_p); a binary `done[j,p]`
  (all work delivered by the end of p) forbids scheduling j afterwards, is forced once the
  delivered work reaches what was left, and lifts `required` after it;
- lateness: each period after a job's deadline costs `late_penalty * overlap` unless done
  before it starts;
- moves (p >= 1): a job pays move_cost_usd when it leaves a (domain, level group) it ran in
  the period before, unless it finished; a domain's levels at which every rack can hold all
  its GPUs busy form one group (changing between them keeps GPUs per rack), every other level
  is its own group; replicas per GPU unit (matched by racks) pay per replica changed;
- ramp: `|site_kw_p - site_kw_{p-1}| <= max_ramp_kw_per_h * hours_p`.
Extraction keeps placements: class replicas are re-packed where they ran and a job that stays
in its domain keeps its racks where GPUs and rack power allow. Restrictions and
approximations (the written plan is recomputed exactly and verified, so they only cost
profit): per-rack re-splits the rows above do not see can still move a job; lateness is
charged to the end of the completing period; on large horizons miner racks run only patterns
on the upper concave hull of (kW, TH/s). The reported gap is against this model's dual
bound. The rolling-horizon plan is the MIP start, and the better verified plan is returned.

A horizon whose model would exceed MAX_HORIZON_COLUMNS (e.g. 192 periods of the 18 MW
example: its LP relaxation alone takes minutes on two cores) is planned with the aggregated
horizon MILP of `scheduler.horizon_agg` instead (`milp-aggregated`).
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections import defaultdict
from typing import Optional

import highspy
import numpy as np
import pulp

from .assignment import Assignment
from .horizon_agg import upper_hull
from .horizon_core import (Horizon, HorizonResult, WorkState, feasible_plans, job_work_gpu_h,
                           with_running)
from .milp import _Highs, extract, warm_values
from .milp_model import Model, build
from .problem import Problem
from .solve import SolveOptions, relative_gap

_EMPTY = pulp.LpProblem("empty")
HULL_ABOVE_PATTERNS = 20000    # miner pattern columns over the horizon above which only hull patterns run
MAX_HORIZON_COLUMNS = 45000    # above: the aggregated horizon MILP (a 2-core machine reaches 0.5 %
                               # on 24 periods of the 18 MW site (40k columns) in ~30 s, 3.6 % on 48
                               # in 120 s, and needs ~130 s for the LP relaxation of 192)


def _site_kw_expr(m: Model, s: int) -> tuple[pulp.LpAffineExpression, float]:
    """site_kw of site s as (variable part, constant) of model m."""
    p = m.problem
    label_suffix = f"site_power[{p.site_ids[s]}]"
    for name, label in m.rows.items():
        if label.startswith(label_suffix):
            row = m.lp.get_constraint_by_name(name)
            expr = pulp.LpAffineExpression({v: a for v, a in row.items()})
            return expr, float(p.site_idle_kw[s])
    raise KeyError(label_suffix)


class _HorizonModel:
    def __init__(self, h: Horizon, miner_hull: Optional[bool] = None):
        self.h = h
        self.lp = pulp.LpProblem("wattsched_horizon", pulp.LpMaximize)
        self.obj: dict = defaultdict(float)
        self.constant = 0.0
        self.models: list[Model] = []
        self.extra_vars: dict[str, pulp.LpVariable] = {}
        self._n = 0
        self.aux_rows: dict[str, list[str]] = defaultdict(list)   # move variable -> its rows
        P = h.n_periods
        for p in range(P):
            # period 0 is costed against where things run now by build() itself (exact keep
            # rows); later periods against the period before, by the rows of _moves
            prob = h.problems[0] if p == 0 else with_running(h.problems[p], None)
            m = build(prob, lp=self.lp, tag=f"p{p}_", moves=p == 0)
            if m.unplaceable_required:
                raise ValueError(f"required job {prob.job_ids[m.unplaceable_required[0]]} cannot be placed")
            if miner_hull is None:   # restrict only when the patterns would swamp the model
                miner_hull = P * sum(len(mc.n) for mc in m.miner_classes) > HULL_ABOVE_PATTERNS
            if miner_hull:
                for mc in m.miner_classes:
                    keep = set(upper_hull(mc.pattern_kw, mc.pattern_th, rising_only=True))
                    for n, v in enumerate(mc.n):
                        if n not in keep:
                            v.upBound = 0
            for v, a in m.obj.items():
                self.obj[v] += a
            self.constant += m.constant_usd
            self.models.append(m)
            if p == 0:
                for name, label in m.rows.items():
                    if label.startswith("moves_"):
                        dev = next(v for v, a in self.lp.get_constraint_by_name(name).items() if "dev_" in v.name)
                        self.aux_rows[dev.name].append(name)
        self._work()
        self._moves()
        self._ramp()
        self.lp += pulp.LpAffineExpression(list(self.obj.items()), constant=self.constant)

    def row(self, expr, sense: str, rhs: float, label: str, aux: Optional[pulp.LpVariable] = None):
        name = f"h{self._n}"
        self._n += 1
        if aux is not None:
            self.aux_rows[aux.name].append(name)
        if sense == "<=":
            self.lp.addConstraint(expr <= rhs, name)
        elif sense == ">=":
            self.lp.addConstraint(expr >= rhs, name)
        else:
            self.lp.addConstraint(expr == rhs, name)

    def var(self, name: str, lb=0.0, ub=None, cat=pulp.LpContinuous) -> pulp.LpVariable:
        v = self.lp.add_variable(name, lb, ub, cat=cat)
        self.extra_vars[name] = v
        return v

    @staticmethod
    def _full_rack_levels(p: Problem, d: int) -> set[int]:
        """Cap levels at which every rack of domain d can hold all its GPUs busy: a job can
        change between them without changing its GPUs per rack."""
        racks = p.domain_rack_list(d)
        return {c for c in range(int(p.gpu_n_levels[int(p.domain_model[d])]))
                if all(p.rack_holds(k, c) == p.rack_count[k] for k in racks)}

    def _group_key(self, p: Problem, d: int, c: int):
        return ("keep", d) if c in self._full_rack_levels(p, d) else ("level", d, c)

    def _level_groups(self, m: Model, j: int) -> set:
        return {self._group_key(m.problem, d, c) for (jj, d, c) in m.w if jj == j}

    def _group_vars(self, m: Model, j: int, key) -> list:
        return [v for (jj, d, c), v in m.w.items() if jj == j and self._group_key(m.problem, d, c) == key]

    def _x(self, m: Model, j: int, d: Optional[int] = None) -> list:
        return [v for (jj, dd, _), v in m.w.items() if jj == j and (d is None or dd == d)]

    def _work(self):
        h = self.h
        self.done: dict[tuple[int, int], pulp.LpVariable] = {}
        for j in range(len(h.remaining_gpu_h)):
            R = h.remaining_gpu_h[j]
            if np.isnan(R):
                continue
            cum = []
            earned_all = []
            max_cum = 0.0
            for p, m in enumerate(self.models):
                prob = m.problem
                hrs = prob.interval_h
                by_model: dict[int, list] = defaultdict(list)
                for (jj, d, c), v in m.w.items():
                    if jj != j:
                        continue
                    g = int(prob.domain_model[d])
                    # revenue moves from the schedule to the earned work
                    self.obj[v] -= hrs * prob.job_usd_per_h(j, g, c)
                    by_model[g].append((v, prob.job_gpu_h_per_h(j, g, c) * hrs))
                    if R <= 1e-6:
                        v.upBound = 0
                delivered = []
                for g, terms in by_model.items():
                    e = self.var(f"earned_{j}_{p}_{g}", ub=float(R))
                    self.row(pulp.LpAffineExpression([(e, 1)] + [(v, -a) for v, a in terms]), "<=", 0,
                             f"earned[{j}@{p}]")
                    self.obj[e] += float(prob.job_value_per_gpu_h[j, g])
                    earned_all.append(e)
                    delivered += terms
                max_cum += max((a for _, a in delivered), default=0.0)
                cum = cum + delivered
                z = self.var(f"done_{j}_{p}", ub=1, cat=pulp.LpBinary)
                self.done[j, p] = z
                # done only if the work is delivered; forced once it is (up to a small slack)
                self.row(pulp.LpAffineExpression(cum + [(z, -float(R))]), ">=", -1e-6, f"done_if[{j}@{p}]")
                slack = min(1e-2, 1e-3 * float(R)) if R > 0 else 0.0
                self.row(pulp.LpAffineExpression(cum + [(z, -max(max_cum, 1.0))]), "<=", float(R) - slack,
                         f"done_when[{j}@{p}]")
                if p:
                    self.row(self.done[j, p - 1] - z, "<=", 0, f"done_stays[{j}@{p}]")
                    if prob.job_required[j]:    # required only while it has work left
                        label = f"required[{prob.job_ids[j]}]@p{p}"
                        for name, lab in m.rows.items():
                            if lab == label:
                                self.lp.get_constraint_by_name(name).addInPlace(self.done[j, p - 1])
                    xs = self._x(m, j)
                    if xs:
                        self.row(pulp.lpSum(xs) + self.done[j, p - 1], "<=", 1, f"no_work_left[{j}@{p}]")
                # lateness: each period's hours past the deadline unless done before it starts
                # (the completing period is charged in full: at most one period too much)
                dl = h.deadline_h[j]
                if not np.isnan(dl) and h.late_usd_per_h[j] > 0:
                    overlap = max(0.0, h.start_h[p] + hrs - max(dl, h.start_h[p]))
                    if overlap > 0:
                        usd = float(h.late_usd_per_h[j] * overlap)
                        self.constant -= usd
                        if p:
                            self.obj[self.done[j, p - 1]] += usd
            if earned_all:
                self.row(pulp.lpSum(earned_all), "<=", float(R), f"remaining[{j}]")

    def _moves(self):
        h = self.h
        base = h.problems[0]
        J, I = len(base.job_ids), len(base.svc_ids)
        for j in range(J):
            cost = float(base.job_move_cost_usd[j])
            if cost <= 0:
                continue
            # period 0 is costed against the running placement by build() itself
            for p in range(1, len(self.models)):
                m, before = self.models[p], self.models[p - 1]
                for key in self._level_groups(before, j):
                    mv = self.var(f"mv_{j}_{p}_{len(self.aux_rows)}")
                    self.obj[mv] -= cost
                    terms = ([(v, -1) for v in self._group_vars(m, j, key)] + [(mv, -1)]
                             + [(v, 1) for v in self._group_vars(before, j, key)])
                    if (j, p - 1) in self.done:
                        terms.append((self.done[j, p - 1], -1))
                    self.row(pulp.LpAffineExpression(terms), "<=", 0.0, f"move[{j}@{p}]", aux=mv)
        for i in range(I):
            cost = float(base.svc_move_cost_usd[i])
            if cost <= 0:
                continue
            for p in range(1, len(self.models)):
                m, before = self.models[p], self.models[p - 1].units
                for u_idx, u in enumerate(m.units):
                    racks = set(u.racks)
                    now = [v for (ii, _), v in u.r.items() if ii == i]
                    prev = [v for pu in before if set(pu.racks) <= racks for (ii, _), v in pu.r.items() if ii == i]
                    if not now and not prev:
                        continue
                    dev = self.var(f"sdev_{i}_{p}_{u_idx}")
                    self.obj[dev] -= cost
                    e = pulp.LpAffineExpression([(v, 1) for v in now] + [(v, -1) for v in prev])
                    self.row(e - dev, "<=", 0.0, f"svc_up[{i}@{p}/{u_idx}]", aux=dev)
                    self.row(-e - dev, "<=", 0.0, f"svc_down[{i}@{p}/{u_idx}]", aux=dev)

    def _ramp(self):
        h = self.h
        self.site_kw: list[list[tuple]] = [[_site_kw_expr(m, s) for s in range(len(h.ramp_kw_per_h))]
                                           for m in self.models]
        for s, ramp in enumerate(h.ramp_kw_per_h):
            if np.isnan(ramp):
                continue
            for p in range(1, h.n_periods):
                (e1, b1), (e0, b0) = self.site_kw[p][s], self.site_kw[p - 1][s]
                lim = float(ramp * h.hours[p])
                self.row(e1 - e0, "<=", lim - (b1 - b0), f"ramp_up[{s}@{p}]")
                self.row(e0 - e1, "<=", lim + (b1 - b0), f"ramp_down[{s}@{p}]")

    def start_values(self, assignments: list[Assignment]) -> list[float]:
        """A MIP start encoding a horizon plan (e.g. the rolling one)."""
        h = self.h
        vals: dict[str, float] = {}
        work = WorkState.start(h)
        for p, (m, a) in enumerate(zip(self.models, assignments)):
            # the period model alone (its dev_ scan would walk the whole horizon model)
            vals.update(warm_values(dataclasses.replace(m, lp=_EMPTY), a))
            for j in range(len(a.job_level)):
                if a.job_level[j] >= 0 and a.job_place[j]:
                    d = int(m.problem.rack_domain[next(iter(a.job_place[j]))])
                    left = work.left[j]
                    wk = job_work_gpu_h(m.problem, a, j)
                    if not np.isnan(left):
                        vals[f"earned_{j}_{p}_{int(m.problem.domain_model[d])}"] = min(left, wk)
                    work.run(h, j, wk, p)
                if (j, p) in self.done:
                    vals[self.done[j, p].name] = 1.0 if work.finished(j) else 0.0
        # move variables: the least value their rows allow
        for name, rows in self.aux_rows.items():
            need = 0.0
            for rn in rows:
                row = self.lp.get_constraint_by_name(rn)
                coef = 0.0
                lhs = row.constant
                for v, a in row.items():
                    if v.name == name:
                        coef = a
                    else:
                        lhs += a * vals.get(v.name, 0.0)
                if coef < 0:
                    need = max(need, lhs / -coef)
            vals[name] = need
        start = []
        for v in self.lp.variables():
            start.append(vals.get(v.name, 0.0))
        return start


def _resplit(prob: Problem, a: Assignment, prev: list[dict[int, int]]) -> Assignment:
    """`a` with each domain's training GPUs re-split over its racks so a job that ran in the same
    domain before keeps its racks where GPU counts and rack power allow; a domain that cannot be
    re-split keeps the MILP's split."""
    out = Assignment(a.job_level.copy(), [dict(x) for x in a.job_place], a.svc_place, a.miners)
    free = prob.rack_count.astype(np.int64).copy()
    room = prob.rack_limit_kw - prob.rack_base_kw
    for i, place in enumerate(a.svc_place):
        gpr = int(prob.svc_gpus_per_replica[i])
        for (k, c), r in place.items():
            free[k] -= r * gpr
            room[k] -= r * prob.replica_kw(i, prob.rack_model[k], c)
    jobs_in: dict[int, list[int]] = defaultdict(list)
    for j in range(len(a.job_level)):
        if a.job_level[j] >= 0 and a.job_place[j]:
            jobs_in[int(prob.rack_domain[next(iter(a.job_place[j]))])].append(j)
    for d, jobs in jobs_in.items():
        f, r = free.copy(), room.copy()
        placed: dict[int, dict[int, int]] = {}
        level: dict[int, int] = {}

        def fits(j, place):
            kw = prob.gpu_busy_kw[prob.rack_model[next(iter(place))], a.job_level[j]]
            return all(int(prob.rack_domain[k]) == d and f[k] >= n and r[k] >= n * kw - 1e-9
                       for k, n in place.items())

        def take(j, place):
            kw = prob.gpu_busy_kw[prob.rack_model[next(iter(place))], a.job_level[j]]
            for k, n in place.items():
                f[k] -= n
                r[k] -= n * kw
            placed[j] = dict(place)

        for j in jobs:
            if prev[j] and fits(j, prev[j]):
                take(j, prev[j])
        ok = True
        for j in jobs:
            if j in placed:
                continue
            if fits(j, a.job_place[j]):
                take(j, a.job_place[j])
                continue
            # spread it over what is left; a lower cap that fits beats a move of the others
            g = int(prob.domain_model[d])
            for c in range(int(a.job_level[j]), int(prob.job_min_level[j, g]) - 1, -1):
                need, place = int(prob.job_gpus[j]), {}
                kw = prob.gpu_busy_kw[g, c]
                for k in prob.domain_rack_list(d).tolist():
                    n = min(need, int(f[k]), int(np.floor((r[k] + 1e-9) / kw)) if kw > 0 else need)
                    if n > 0:
                        place[k] = n
                        need -= n
                if not need:
                    break
            if need:
                ok = False
                break
            level[j] = c
            for k, n in place.items():
                f[k] -= n
                r[k] -= n * kw
            placed[j] = place
        if ok:
            for j, place in placed.items():
                out.job_place[j] = place
                out.job_level[j] = level.get(j, out.job_level[j])
            free, room = f, r
    return out


def _repack_inference(prob: Problem, m: Model, a: Assignment, prev: list[dict[int, int]]) -> Assignment:
    """In each class of identical racks, re-pack the replicas so each service keeps the racks it
    had (the MILP costs replica moves per class; power cannot bind in a class, GPUs can)."""
    out = Assignment(a.job_level, a.job_place, [dict(x) for x in a.svc_place], a.miners)
    busy = defaultdict(int)
    for j in range(len(a.job_level)):
        if a.job_level[j] >= 0:
            for k, n in a.job_place[j].items():
                busy[k] += n
    for u in m.units:
        if len(u.racks) < 2:
            continue
        racks = set(u.racks)
        todo: dict[int, list[tuple[int, int]]] = defaultdict(list)     # service -> [(level, replicas)]
        for i, place in enumerate(out.svc_place):
            for (k, c), r in list(place.items()):
                if k in racks:
                    todo[i].append((c, r))
                    del place[k, c]
        free = {k: u.count - busy[k] for k in u.racks}
        placed: dict[tuple[int, int, int], int] = defaultdict(int)
        ok = True
        levels = {i: [c for c, r in sorted(todo[i]) for _ in range(r)] for i in todo}
        order = sorted(todo, key=lambda i: -int(prob.svc_gpus_per_replica[i]))
        for first in (True, False):         # first where each service ran, then anywhere
            for i in order:
                gpr = int(prob.svc_gpus_per_replica[i])
                for k in u.racks:
                    want = prev[i].get(k, 0) if first else len(levels[i])
                    n = min(want, len(levels[i]), free[k] // gpr)
                    for _ in range(n):
                        placed[i, k, levels[i].pop()] += 1
                    free[k] -= n * gpr
        ok = not any(levels.values())
        if not ok:
            return a
        for (i, k, c), r in placed.items():
            out.svc_place[i][k, c] = out.svc_place[i].get((k, c), 0) + r
    return out


def _sticky(h: Horizon, assignments: list[Assignment], models: Optional[list[Model]] = None) -> list[Assignment]:
    """Period by period, re-split training so jobs that stay in their domain keep their racks
    (the MILP costs a move only when a job leaves a domain); a period whose re-split would
    break a feed or loop limit keeps the MILP's split."""
    from .assignment import evaluate, violations

    p0 = h.problems[0]
    prev = [dict(p0.job_running(j)) for j in range(len(p0.job_ids))]
    prev_svc = [dict(p0.svc_running(i)) for i in range(len(p0.svc_ids))]
    out = []
    for p, a in enumerate(assignments):
        prob = h.problems[p]
        if models is not None:
            a = _repack_inference(prob, models[p], a, prev_svc)
        b = _resplit(prob, a, prev)
        if violations(prob, evaluate(prob, b)):
            b = a
        prev = [dict(b.job_place[j]) if b.job_level[j] >= 0 else {} for j in range(len(b.job_level))]
        prev_svc = []
        for place in b.svc_place:
            per_rack: dict[int, int] = defaultdict(int)
            for (k, _), r in place.items():
                per_rack[k] += r
            prev_svc.append(dict(per_rack))
        out.append(b)
    return out


def solve_horizon_milp(h: Horizon, opts: Optional[SolveOptions] = None,
                       start: Optional[HorizonResult] = None) -> HorizonResult:
    """The horizon MILP with HiGHS, warm-started from `start` (default: the rolling plan)."""
    from .horizon_rolling import solve_rolling

    opts = opts or SolveOptions()
    t0 = time.perf_counter()
    if start is None:
        start = solve_rolling(h, opts)
    hm = _HorizonModel(h)
    start_vals = hm.start_values(start.assignments) if start.assignments is not None else None
    left = None if opts.time_limit_s is None else max(1.0, opts.time_limit_s - (time.perf_counter() - t0))
    kw = {"msg": False, "gapRel": opts.gap, "timeLimit": left}
    if opts.threads:
        kw["threads"] = opts.threads
    hm.lp.solve(_Highs(start=start_vals, **kw))
    hs = hm.lp.solverModel
    info = hs.getInfo()
    status = hs.getModelStatus()
    has = info.primal_solution_status == 2
    raw = info.mip_dual_bound
    bound = -raw if math.isfinite(raw) else None
    extra = {"rows": len(hm.lp.constraints()), "columns": len(hm.lp.variables()),
             "periods": h.n_periods}
    milp_plan = None
    if has:
        try:
            milp_plan = _sticky(h, [extract(m) for m in hm.models], hm.models)
        except RuntimeError:
            pass
    cands = feasible_plans(h, [("milp", milp_plan), ("rolling", start.assignments)])
    seconds = time.perf_counter() - t0
    if not cands:
        infeasible = status in (highspy.HighsModelStatus.kInfeasible,
                                highspy.HighsModelStatus.kUnboundedOrInfeasible)
        reasons = list(start.infeasible) or (["the limits cannot all hold in every period"] if infeasible else
                                             [f"no feasible horizon plan within {opts.time_limit_s} s"])
        return HorizonResult(None, "milp-horizon", "infeasible", seconds, backend="highs",
                             infeasible=reasons, extra=extra)
    total, asg, source = max(cands, key=lambda x: x[0])
    if bound is not None and bound < total:
        bound = total
    gap = relative_gap(total, bound)
    proven = (status == highspy.HighsModelStatus.kOptimal and source == "milp" and gap is not None
              and gap <= (opts.gap or 0.0) + 1e-9)
    extra["source"] = source
    extra["rolling_objective_usd"] = next((c[0] for c in cands if c[2] == "rolling"), None)
    return HorizonResult(asg, "milp-horizon", "optimal" if proven else "feasible", seconds, backend="highs",
                         bound_usd=bound, gap=gap, extra=extra)


def horizon_columns(h: Horizon) -> int:
    """Columns the horizon MILP would have (period 0's model times the periods)."""
    m = build(with_running(h.problems[0], None), lp=pulp.LpProblem("size", pulp.LpMaximize), tag="s_", moves=False)
    return len(m.lp.variables()) * h.n_periods


def plan_horizon(h: Horizon, method: str = "milp", opts: Optional[SolveOptions] = None) -> HorizonResult:
    """`milp`: the multi-period MILP warm-started from the rolling plan; a horizon whose model
    would exceed MAX_HORIZON_COLUMNS is planned with the aggregated horizon MILP instead
    (`scheduler.horizon_agg`, method `milp-aggregated`: exact plans, gap against a bound of
    that relaxation). `rolling`: the kernels' fast path."""
    from .horizon_agg import solve_horizon_aggregated
    from .horizon_rolling import solve_rolling

    opts = opts or SolveOptions()
    if method == "rolling":
        return solve_rolling(h, opts)
    if method == "milp":
        cols = horizon_columns(h)
        if cols <= MAX_HORIZON_COLUMNS:
            return solve_horizon_milp(h, opts)
        res = solve_horizon_aggregated(h, opts)
        res.extra["why"] = (f"the exact horizon MILP would have {cols} columns (more than {MAX_HORIZON_COLUMNS}); "
                            "planned with the aggregated horizon MILP")
        return res
    raise ValueError(f"--horizon-solver: unknown method '{method}' (known: milp, rolling)")


__all__ = ["plan_horizon", "solve_horizon_milp", "Problem"]
