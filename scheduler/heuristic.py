"""The Numba fast path as solvers: `Problem` -> kernel arrays -> kernels -> `Assignment`.

Registers `heuristic` (construction + local search, and a repair of where things run now) and
`auto` (the heuristic, then the MILP warm-started from it; the better verified plan wins).
`repair` and `curtail` are the daemon's low-latency entry points. No limit is derived here:
every number comes from the compiled `Problem`.
"""
from __future__ import annotations

import time
from typing import Optional

import numpy as np

import kernels
from kernels import PlanState, ProblemArrays, Workspace

from .assignment import Assignment, evaluate, violations
from .problem import GPU, Problem
from .solve import SolveOptions, SolveResult, register, relative_gap

_CACHE: dict[int, tuple[Problem, Workspace]] = {}
_CACHE_SIZE = 16


def pack(p: Problem) -> ProblemArrays:
    """The kernels' view of a compiled problem (same numbers, array layout only)."""
    i8 = np.int64
    K, J, D = p.n_racks, len(p.job_ids), len(p.domain_ids)
    sizes = np.diff(p.domain_rack_ptr)
    R = int(sizes.max()) if D else 1
    rack_dpos = np.full(K, -1, i8)
    for d in range(D):
        rack_dpos[p.domain_rack_list(d)] = np.arange(sizes[d])
    job_run_n = np.zeros((J, R), i8)
    for j in range(J):
        for k, n in p.job_running(j).items():
            job_run_n[j, rack_dpos[k]] = n
    G = len(p.gpu_model_ids)
    gpu = p.rack_kind == GPU
    # inference fills racks outside training domains first, then the smallest domains
    dom_size = np.where(p.rack_domain >= 0, p.domain_gpus[np.maximum(p.rack_domain, 0)] if D else 0, -1)
    model_rows = []
    for g in range(G):
        ks = np.nonzero(gpu & (p.rack_model == g))[0]
        order = np.lexsort((p.rack_site_factor[ks], p.rack_domain[ks], dom_size[ks]))
        model_rows.append(ks[order])
    model_ptr = np.zeros(G + 1, i8)
    model_ptr[1:] = np.cumsum([len(r) for r in model_rows])
    site_order = np.argsort(p.rack_site, kind="stable").astype(i8)
    site_ptr = np.zeros(len(p.site_ids) + 1, i8)
    site_ptr[1:] = np.cumsum(np.bincount(p.rack_site, minlength=len(p.site_ids)))
    site_doms = np.argsort(p.domain_site, kind="stable").astype(i8)
    site_dom_ptr = np.zeros(len(p.site_ids) + 1, i8)
    site_dom_ptr[1:] = np.cumsum(np.bincount(p.domain_site, minlength=len(p.site_ids)))
    return ProblemArrays(
        interval_h=float(p.interval_h), usd_per_th_h=float(p.miner_usd_per_th_h),
        site_lim_kw=p.site_grid_limit_kw.astype(float), site_price_usd_per_mwh=p.site_price_usd_per_mwh.astype(float),
        site_base_kw=p.site_base_kw.astype(float),
        feed_lim_kw=p.feed_limit_kw.astype(float), feed_site=p.feed_site.astype(i8),
        loop_cap_kw=p.loop_cap_kw.astype(float), loop_site=p.loop_site.astype(i8),
        gpu_nlev=p.gpu_n_levels.astype(i8), gpu_perf=p.gpu_perf.astype(float),
        gpu_busy_kw=p.gpu_busy_kw.astype(float),
        mm_nmodes=p.miner_n_modes.astype(i8), mm_th_s=p.miner_th_s.astype(float), mm_kw=p.miner_kw.astype(float),
        rack_site=p.rack_site.astype(i8), rack_feed=p.rack_feed.astype(i8), rack_loop=p.rack_loop.astype(i8),
        rack_kind=p.rack_kind.astype(i8), rack_lim_kw=p.rack_limit_kw.astype(float),
        rack_base_kw=p.rack_base_kw.astype(float), rack_model=p.rack_model.astype(i8),
        rack_count=p.rack_count.astype(i8), rack_domain=p.rack_domain.astype(i8), rack_dpos=rack_dpos,
        rack_fac=p.rack_site_factor.astype(float),
        dom_site=p.domain_site.astype(i8), dom_model=p.domain_model.astype(i8), dom_gpus=p.domain_gpus.astype(i8),
        dom_ptr=p.domain_rack_ptr.astype(i8), dom_racks=p.domain_racks.astype(i8),
        job_gpus=p.job_gpus.astype(i8), job_val=np.nan_to_num(p.job_value_per_gpu_h, nan=-1.0),
        job_minlev=p.job_min_level.astype(i8), job_req=p.job_required.astype(bool),
        job_site_ok=p.job_site_ok.astype(bool), job_move_usd=p.job_move_cost_usd.astype(float),
        job_run_dom=p.job_run_domain.astype(i8), job_run_n=job_run_n,
        svc_gpr=p.svc_gpus_per_replica.astype(i8), svc_rps=p.svc_replica_rps.astype(float),
        svc_minlev=p.svc_min_level.astype(i8),
        svc_demand_rps=p.svc_demand_rps.astype(float), svc_val=p.svc_value_per_1k.astype(float),
        svc_pen=p.svc_penalty_per_1k.astype(float), svc_site_ok=p.svc_site_ok.astype(bool),
        svc_move_usd=p.svc_move_cost_usd.astype(float), svc_run_ptr=p.svc_run_ptr.astype(i8),
        svc_run_rack=p.svc_run_rack.astype(i8), svc_run_reps=p.svc_run_replicas.astype(i8),
        model_rack_ptr=model_ptr, model_racks=np.concatenate(model_rows).astype(i8) if G else np.zeros(0, i8),
        site_rack_ptr=site_ptr, site_racks=site_order, site_dom_ptr=site_dom_ptr, site_doms=site_doms)


def workspace(p: Problem) -> Workspace:
    """The problem's kernel workspace, built once and kept while the problem lives."""
    hit = _CACHE.get(id(p))
    if hit is not None and hit[0] is p:
        return hit[1]
    ws = kernels.prepare(pack(p))
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[id(p)] = (p, ws)
    return ws


def state_of(p: Problem, ws: Workspace, a: Assignment) -> PlanState:
    """An Assignment as a kernel plan (a job on racks of several domains is left unscheduled)."""
    st = kernels.alloc_state(ws.pa)
    for j, lvl in enumerate(a.job_level.tolist()):
        place = {k: n for k, n in a.job_place[j].items() if n}
        if lvl < 0 or not place:
            continue
        doms = {int(p.rack_domain[k]) for k in place}
        if len(doms) != 1 or -1 in doms:
            continue
        st.job_dom[j] = doms.pop()
        st.job_lvl[j] = lvl
        for k, n in place.items():
            st.job_n[j, ws.pa.rack_dpos[k]] = n
    x = 0
    for i, place in enumerate(a.svc_place):
        for (k, lvl), r in place.items():
            if r > 0:
                st.g_svc[x], st.g_rack[x], st.g_lvl[x], st.g_n[x] = i, k, lvl, r
                x += 1
    st.ng[0] = x
    st.miners[:, :a.miners.shape[1]] = a.miners
    return st


def assignment_of(p: Problem, st: PlanState) -> Assignment:
    a = Assignment.empty(p)
    a.job_level = st.job_lvl.copy()
    dom_racks = p.domain_racks
    for j in np.nonzero(st.job_dom >= 0)[0].tolist():
        d = int(st.job_dom[j])
        base = int(p.domain_rack_ptr[d])
        a.job_place[j] = {int(dom_racks[base + r]): int(n) for r, n in enumerate(st.job_n[j].tolist()) if n > 0}
    m = int(st.ng[0])
    for i, k, lvl, n in zip(st.g_svc[:m].tolist(), st.g_rack[:m].tolist(), st.g_lvl[:m].tolist(),
                            st.g_n[:m].tolist()):
        if n > 0:
            a.svc_place[i][k, lvl] = a.svc_place[i].get((k, lvl), 0) + n
    a.miners = st.miners.copy()
    return a


def _missing_reasons(p: Problem, missing: list[int]) -> list[str]:
    return [f"required_job[{p.job_ids[j]}]: cannot be scheduled within GPU and power limits" for j in missing]


def _result(p: Problem, st: Optional[PlanState], t0: float, method: str, reasons: list[str],
            fast_check: bool = False) -> SolveResult:
    """The SolveResult of a kernel plan, checked: by `evaluate`/`violations` (the MILP's judge),
    or with `fast_check` (the daemon's sub-millisecond paths) by the kernels' own recomputation
    of every figure from the decisions; `plan_of` judges again when the plan is written."""
    if st is None or reasons:
        return SolveResult(None, method, "infeasible", time.perf_counter() - t0,
                           infeasible=reasons or ["no feasible plan found"])
    ws = workspace(p)
    if fast_check:
        kernels.recheck(ws, st)
        broken = [] if kernels.feasible(ws, st) else ["a limit (kernel recomputation)"]
        objective = kernels.objective(ws, st)
    a = assignment_of(p, st)
    if not fast_check:
        f = evaluate(p, a)
        broken = violations(p, f)
        objective = float(f.objective_usd)
    if broken:
        # with everything off each rack draws its least power: if that breaks a limit too,
        # no plan exists; otherwise the kernels broke a limit, a bug never shown as a plan
        floor = violations(p, evaluate(p, Assignment.empty(p)))
        if floor:
            return SolveResult(None, method, "infeasible", time.perf_counter() - t0,
                               infeasible=[f"{v} even with every GPU idle and every miner off" for v in floor])
        raise RuntimeError(f"{method}: kernel plan breaks limits: {'; '.join(broken[:3])}")
    return SolveResult(a, method, "feasible", time.perf_counter() - t0, extra={"objective_usd": objective})


def _best_plan(p: Problem, ws: Workspace, opts: SolveOptions, max_moves: int):
    """Best of: the greedy from scratch, a repair of where things run now, a repair of the warm
    start; each improved by local search. Returns (state, missing required jobs)."""
    cands = []
    st = kernels.construct(ws)
    cands.append((st, kernels.place_required(ws, st)))
    starts = []
    if (p.job_run_domain >= 0).any() or len(p.svc_run_rack):
        starts.append(kernels.from_running(ws))
    if opts.warm_start is not None:
        starts.append(state_of(p, ws, opts.warm_start))
    for s0 in starts:
        if kernels.repair(ws, s0):
            cands.append((s0, kernels.place_required(ws, s0)))
    def key(c):
        return (-len(c[1]), kernels.objective(ws, c[0]))

    for s, missing in cands:
        if not missing:
            kernels.improve_plan(ws, s, max_moves)
    return max(cands, key=key)


def move_budget(p: Problem) -> int:
    """Local-search moves to try per start: 400 on small problems, fewer as they grow (a move
    costs time proportional to the plan's size), at least 100."""
    return int(max(100, min(400, 4e4 / (p.n_racks + 1), 6e6 / (p.n_racks + 20 * len(p.job_ids) + 1))))


def solve_heuristic(p: Problem, opts: Optional[SolveOptions] = None) -> SolveResult:
    """Construction + local search (and a repair of the running placements); status feasible."""
    opts = opts or SolveOptions()
    t0 = time.perf_counter()
    ws = workspace(p)
    st, missing = _best_plan(p, ws, opts, max_moves=move_budget(p))
    return _result(p, st, t0, "heuristic", _missing_reasons(p, missing))


def repair(p: Problem, start: Assignment, opts: Optional[SolveOptions] = None,
           improve: bool = True) -> SolveResult:
    """From any plan (e.g. the previous interval's) to a feasible one with the least loss,
    honouring move costs against the problem's running placements."""
    t0 = time.perf_counter()
    ws = workspace(p)
    st = state_of(p, ws, start)
    if not kernels.repair(ws, st):
        return _result(p, None, t0, "heuristic-repair", ["the site's base load alone breaks a limit"])
    missing = kernels.place_required(ws, st)
    if improve and not missing:
        kernels.improve_plan(ws, st, 200)
    return _result(p, st, t0, "heuristic-repair", _missing_reasons(p, missing))


def curtail(p: Problem, start: Assignment) -> SolveResult:
    """A feasible plan under p's (new, lower) limits from a plan that was feasible before: shed
    miners and modes, lower caps, stop the least valuable work only when needed."""
    t0 = time.perf_counter()
    ws = workspace(p)
    st = state_of(p, ws, start)
    if not kernels.curtail(ws, st):
        return _result(p, None, t0, "heuristic-curtail", ["the limits cannot be met by shedding load"])
    return _result(p, st, t0, "heuristic-curtail", [], fast_check=True)


def solve_auto(p: Problem, opts: Optional[SolveOptions] = None) -> SolveResult:
    """The heuristic, then the MILP warm-started from it within the time limit; the better wins."""
    from .milp import solve_milp  # the MILP stack is only needed here

    opts = opts or SolveOptions()
    t0 = time.perf_counter()
    h = solve_heuristic(p, opts)
    left = None if opts.time_limit_s is None else max(0.1, opts.time_limit_s - (time.perf_counter() - t0))
    mopts = SolveOptions(backend=opts.backend, time_limit_s=left, gap=opts.gap,
                         warm_start=h.assignment or opts.warm_start, threads=opts.threads,
                         explain_infeasible=opts.explain_infeasible)
    m = solve_milp(p, mopts)
    h_obj = h.extra["objective_usd"] if h.assignment is not None else None     # evaluate's, from _result
    m_obj = m.extra["objective_usd"] if m.assignment is not None else None                # evaluate's, from solve_milp
    extra = {"heuristic_objective_usd": h_obj, "milp_status": m.status, "milp_objective_usd": m_obj}
    use_milp = m_obj is not None and (h_obj is None or m_obj >= h_obj - 1e-9)
    win = m if use_milp else h
    obj = m_obj if use_milp else h_obj
    status = m.status if use_milp else ("infeasible" if h.assignment is None else "feasible")
    bound = m.bound_usd
    if status == "optimal" and not use_milp:
        status = "feasible"
    return SolveResult(win.assignment, "auto", status, time.perf_counter() - t0, backend=m.backend,
                       bound_usd=bound, gap=relative_gap(obj, bound) if obj is not None else None,
                       infeasible=list(win.infeasible), extra=extra)


register("heuristic", solve_heuristic)
register("auto", solve_auto)
