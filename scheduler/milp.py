"""Solve the MILP of `milp_model` with HiGHS (default) or CBC, and turn its values into an
`Assignment`; when no plan exists, re-solve with slacks to name the limits that cannot all hold."""
from __future__ import annotations

import math
import re
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

import highspy
import numpy as np
import pulp

from .assignment import Assignment, evaluate
from .milp_model import Model, build
from .problem import Problem
from .solve import SolveOptions, SolveResult, relative_gap

BACKENDS = ("highs", "cbc")


class _Highs(pulp.HiGHS):
    """PuLP's HiGHS API plus a MIP start and access to the dual bound."""

    def __init__(self, start: list[float] | None = None, **kw):
        super().__init__(**kw)
        self.start = start

    def callSolver(self, lp):
        # PuLP leaves the objective constant out; HiGHS needs it for a true relative gap
        sign = -1.0 if lp.sense == pulp.LpMaximize else 1.0
        lp.solverModel.changeObjectiveOffset(sign * lp.objective.constant)
        if self.start is not None:
            sol = highspy.HighsSolution()
            sol.col_value = self.start
            sol.value_valid = True
            lp.solverModel.setSolution(sol)
        lp.solverModel.run()


def _round(x) -> int:
    return int(round(x or 0.0))


def extract(m: Model) -> Assignment:
    """The assignment encoded by the model's current variable values."""
    p = m.problem
    a = Assignment.empty(p)
    slots: dict[tuple[int, int], int] = defaultdict(int)        # (rack, level) -> training GPUs
    for u in m.units:
        t = {c: _round(v.varValue) for c, v in u.t.items()}
        r = {ic: _round(v.varValue) for ic, v in u.r.items()}
        if len(u.racks) == 1:
            k = u.racks[0]
            for (i, c), n in r.items():
                if n:
                    a.svc_place[i][k, c] = n
            for c, n in t.items():
                if n:
                    slots[k, c] += n
            continue
        # a class of identical racks: pack replicas largest first, then training GPUs
        fill = [0] * len(u.racks)
        pos = 0
        for (i, c), n in sorted(r.items(), key=lambda x: -int(p.svc_gpus_per_replica[x[0][0]])):
            gpr = int(p.svc_gpus_per_replica[i])
            for _ in range(n):
                while fill[pos] + gpr > u.count:
                    pos += 1
                k = u.racks[pos]
                a.svc_place[i][k, c] = a.svc_place[i].get((k, c), 0) + 1
                fill[pos] += gpr
        for c, n in t.items():
            while n > 0:
                while fill[pos] >= u.count:
                    pos += 1
                take = min(n, u.count - fill[pos])
                slots[u.racks[pos], c] += take
                fill[pos] += take
                n -= take

    chosen = [(j, d, c) for (j, d, c), v in m.w.items() if _round(v.varValue) == 1]
    by_domain_level: dict[tuple[int, int], list[int]] = defaultdict(list)
    for j, d, c in chosen:
        a.job_level[j] = c
        by_domain_level[d, c].append(j)
    kept = {j for (j, c), v in m.keep.items() if _round(v.varValue) == 1}
    for (d, c), jobs in by_domain_level.items():
        racks = p.domain_rack_list(d).tolist()
        for j in jobs:
            if j in kept:
                for k, n in p.job_running(j).items():
                    a.job_place[j][k] = n
                    slots[k, c] -= n
        for j in jobs:
            if j in kept:
                continue
            need = int(p.job_gpus[j])
            for k in racks:
                if need == 0:
                    break
                take = min(need, slots[k, c])
                if take > 0:
                    a.job_place[j][k] = take
                    slots[k, c] -= take
                    need -= take
            if need:
                raise RuntimeError(f"MILP extraction: domain {p.domain_ids[d]} lacks {need} GPUs for {p.job_ids[j]}")

    for mc in m.miner_classes:
        pos = 0
        for n_var, pattern in zip(mc.n, mc.patterns):
            for _ in range(_round(n_var.varValue)):
                a.miners[mc.racks[pos], :len(pattern)] = pattern
                pos += 1
    for mr in m.miner_racks:
        for q, v in enumerate(mr.m):
            a.miners[mr.rack, q] = _round(v.varValue)
    return a


def warm_values(m: Model, a: Assignment) -> dict[str, float]:
    """Variable values (by name) that encode assignment `a` in model `m` (a MIP start)."""
    p = m.problem
    vals: dict[str, float] = {}
    busy_t: dict[tuple[int, int], int] = defaultdict(int)
    for j, c in enumerate(a.job_level.tolist()):
        if c < 0 or not a.job_place[j]:
            continue
        d = int(p.rack_domain[next(iter(a.job_place[j]))])
        if (j, d, c) in m.w:
            vals[m.w[j, d, c].name] = 1.0
        for k, n in a.job_place[j].items():
            busy_t[k, c] += n
        if (j, c) in m.keep and {k: n for k, n in a.job_place[j].items() if n} == p.job_running(j):
            vals[m.keep[j, c].name] = 1.0
    reps: dict[tuple[int, int, int], int] = defaultdict(int)
    for i, place in enumerate(a.svc_place):
        for (k, c), n in place.items():
            reps[i, k, c] += n
    for u in m.units:
        for c, v in u.t.items():
            vals[v.name] = float(sum(busy_t.get((k, c), 0) for k in u.racks))
        for (i, c), v in u.r.items():
            vals[v.name] = float(sum(reps.get((i, k, c), 0) for k in u.racks))
    for mc in m.miner_classes:
        counts = np.zeros(len(mc.n))
        for k in mc.racks:
            vec = a.miners[k, :mc.patterns.shape[1]]
            kw = float(vec @ p.miner_kw[mc.model, :mc.patterns.shape[1]])
            ok = np.nonzero(mc.pattern_kw <= kw + 1e-9)[0]
            if len(ok) and vec.sum() > 0:
                counts[ok[np.argmax(mc.pattern_th[ok])]] += 1
        for v, n in zip(mc.n, counts):
            vals[v.name] = float(n)
    for mr in m.miner_racks:
        for q, v in enumerate(mr.m):
            vals[v.name] = float(a.miners[mr.rack, q])
    f = evaluate(p, a)
    for i, v in m.served.items():
        vals[v.name] = float(f.served_rps[i])
    for (i, k), v in m.dev.items():
        have = p.svc_running(i).get(k, 0)
        now = sum(n for (kk, _), n in a.svc_place[i].items() if kk == k)
        vals[v.name] = float(abs(now - have))
    return vals


def _solver(opts: SolveOptions, start: list[float] | None, explain: bool = False):
    gap = None if explain else opts.gap
    if opts.backend == "highs":
        kw = {"msg": False, "gapRel": gap, "timeLimit": opts.time_limit_s}
        if opts.threads:
            kw["threads"] = opts.threads
        return _Highs(start=start, **kw)
    if opts.backend == "cbc":
        # the CBC binary bundled with PuLP 3 (PuLP 4 drops it: pyproject pins pulp<4)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return pulp.PULP_CBC_CMD(msg=False, gapRel=gap, timeLimit=opts.time_limit_s,
                                     warmStart=start is not None, threads=opts.threads)
    raise ValueError(f"backend: unknown MILP backend '{opts.backend}' (known: {', '.join(BACKENDS)})")


def _apply_start(m: Model, opts: SolveOptions) -> list[float] | None:
    if opts.warm_start is None:
        return None
    vals = warm_values(m, opts.warm_start)
    start = []
    for v in m.lp.variables():
        x = vals.get(v.name, 0.0)
        v.setInitialValue(x)
        start.append(x)
    return start


def _cbc_objective(log: str) -> float | None:
    """CBC's own objective value (without PuLP's constant) from its log."""
    match = re.findall(r"Objective value:\s*(-?[0-9.eE+-]+)", log)
    return float(match[-1]) if match else None


def solve_milp(p: Problem, opts: SolveOptions | None = None) -> SolveResult:
    opts = opts or SolveOptions()
    if opts.backend not in BACKENDS:
        raise ValueError(f"backend: unknown MILP backend '{opts.backend}' (known: {', '.join(BACKENDS)})")
    t0 = time.perf_counter()
    m = build(p)
    if m.unplaceable_required:
        return _infeasible(p, opts, t0, m)
    start = _apply_start(m, opts)
    if opts.time_limit_s is not None:  # the limit covers building the model too
        remaining = max(0.5, opts.time_limit_s - (time.perf_counter() - t0))
        opts = SolveOptions(**{**opts.__dict__, "time_limit_s": remaining})
    solver = _solver(opts, start)
    log_text = ""
    if opts.backend == "cbc":
        with tempfile.TemporaryDirectory() as tmp:
            solver.optionsDict["logPath"] = str(Path(tmp) / "cbc.log")
            status = m.lp.solve(solver)
            log_path = Path(tmp) / "cbc.log"
            log_text = log_path.read_text() if log_path.exists() else ""
    else:
        status = m.lp.solve(solver)
    sol_status = m.lp.sol_status
    has_solution = sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible)
    if opts.backend == "highs":
        h = m.lp.solverModel
        info = h.getInfo()
        has_solution = info.primal_solution_status == 2
        model_status = h.getModelStatus()
        proven = model_status == highspy.HighsModelStatus.kOptimal
        infeasible = model_status in (highspy.HighsModelStatus.kInfeasible,
                                      highspy.HighsModelStatus.kUnboundedOrInfeasible)
        is_mip = any(v.cat == pulp.LpInteger for v in m.lp.variables())
        raw = info.mip_dual_bound if is_mip else info.objective_function_value
        # HiGHS minimises the negated objective (constant included as an offset)
        bound = -raw if math.isfinite(raw) else None
    else:
        proven = status == pulp.LpStatusOptimal and sol_status == pulp.LpSolutionOptimal
        infeasible = status == pulp.LpStatusInfeasible
        # CBC stops at relative gap `gapRel` of its own objective (the constant left out), so a
        # proven stop bounds the true objective by objective + gapRel * |CBC objective|
        raw = _cbc_objective(log_text)
        bound = None
    if infeasible or not has_solution:
        if infeasible:
            return _infeasible(p, opts, t0, m)
        raise TimeoutError(f"no feasible plan found within the time limit of {opts.time_limit_s} s")
    a = extract(m)
    obj = evaluate(p, a).objective_usd
    if bound is not None and bound < obj:
        bound = obj  # numerical noise of the solver's bound
    if opts.backend == "cbc" and proven:
        bound = obj + (opts.gap or 0.0) * abs(raw if raw is not None else obj)
    seconds = time.perf_counter() - t0
    return SolveResult(assignment=a, method="milp", backend=opts.backend,
                       status="optimal" if proven else "feasible", seconds=seconds,
                       bound_usd=bound, gap=relative_gap(obj, bound),
                       extra={"rows": len(m.rows), "columns": len(m.lp.variables()), "objective_usd": float(obj)})


def explain_infeasible(p: Problem, opts: SolveOptions | None = None, m: Model | None = None) -> list[str]:
    """Names the limits that cannot all hold: re-solves with a slack on every hard limit and
    reports each slack that had to be used, with the amount."""
    opts = opts or SolveOptions()
    m = m or build(p)
    reasons = [f"required[{p.job_ids[j]}]: no domain can hold it ({int(p.job_gpus[j])} GPUs of an allowed "
               f"model at an allowed site, at or above its min_cap_w)" for j in m.unplaceable_required]
    xm = build(p, explain=True)
    xm.lp.solve(_solver(SolveOptions(backend=opts.backend, time_limit_s=opts.time_limit_s), None, explain=True))
    for label, s in xm.slacks.items():
        amount = s.varValue or 0.0
        if amount > 1e-6:
            if label.startswith("required"):
                reasons.append(f"{label}: cannot be scheduled within the other limits")
            else:
                reasons.append(f"{label}: needs {amount:.3f} kW more than its limit")
    if not reasons:
        reasons.append("the GPU counts of racks cannot hold the required work")
    return reasons


def _infeasible(p: Problem, opts: SolveOptions, t0: float, m: Model) -> SolveResult:
    reasons = explain_infeasible(p, opts, m) if opts.explain_infeasible else []
    return SolveResult(assignment=None, method="milp", backend=opts.backend, status="infeasible",
                       seconds=time.perf_counter() - t0, infeasible=reasons)


def lp_bound(p: Problem) -> float:
    """Upper bound on the objective from the LP relaxation (cheap; used to report heuristic gaps)."""
    m = build(p)
    m.lp.solve(_Highs(msg=False, mip=False))
    info = m.lp.solverModel.getInfo()
    return -info.objective_function_value if m.lp.status == pulp.LpStatusOptimal else math.inf
