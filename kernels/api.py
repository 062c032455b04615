"""Public wrappers of the kernels: validate inputs, allocate work arrays once per problem
(`Workspace`), and run construction, improvement, repair and curtailment on `PlanState`s."""
from __future__ import annotations

from collections import namedtuple

import numpy as np

from .arrays import PROBLEM_FIELDS, PlanState, ProblemArrays, alloc_state, copy_state
from .construct import JOB_START, SVC_ADD, build_increments, fill, start_job
from .core import all_ok, compact_groups, job_domain_ok, objective_usd, recompute
from .improve import copy_into, evict_replicas, force_place, improve
from .repair import running_state, sanitize
from .shed import shed

Workspace = namedtuple("Workspace", "pa inc start_lvl svc_start_lvl job_order nbuf cand cnt run tmp best")
"""Everything a kernel call needs besides the plan: the problem, its ranked increments, start
levels per (job, model) and (service, model) (-1 = never starts), and scratch arrays."""

_INT_FIELDS = {"rack_site", "rack_feed", "rack_loop", "rack_kind", "rack_model", "rack_count",
               "rack_domain", "rack_dpos", "dom_site", "dom_model", "dom_gpus", "dom_ptr", "dom_racks",
               "job_gpus", "job_minlev", "job_run_dom", "job_run_n", "svc_gpr", "svc_minlev",
               "svc_run_ptr", "svc_run_rack", "svc_run_reps", "model_rack_ptr", "model_racks",
               "site_rack_ptr", "site_racks", "site_dom_ptr", "site_doms", "gpu_nlev", "mm_nmodes", "feed_site", "loop_site"}
_BOOL_FIELDS = {"job_req", "job_site_ok", "svc_site_ok"}


def check_arrays(pa: ProblemArrays) -> None:
    """Raise ValueError naming the first field with the wrong dtype or an inconsistent shape."""
    for name in PROBLEM_FIELDS:
        v = getattr(pa, name)
        if name in ("interval_h", "usd_per_th_h"):
            if not isinstance(v, float):
                raise ValueError(f"{name}: must be a float (got {type(v).__name__})")
            continue
        want = np.int64 if name in _INT_FIELDS else (np.bool_ if name in _BOOL_FIELDS else np.float64)
        if not isinstance(v, np.ndarray) or v.dtype != want:
            raise ValueError(f"{name}: must be a numpy {np.dtype(want).name} array")
    K = len(pa.rack_kind)
    for name in ("rack_site", "rack_feed", "rack_loop", "rack_lim_kw", "rack_base_kw", "rack_model",
                 "rack_count", "rack_domain", "rack_dpos", "rack_fac"):
        if len(getattr(pa, name)) != K:
            raise ValueError(f"{name}: length {len(getattr(pa, name))}, expected {K} racks")
    if pa.job_run_n.shape[0] != len(pa.job_gpus) or pa.job_val.shape[0] != len(pa.job_gpus):
        raise ValueError("job_run_n/job_val: one row per training job expected")
    if not pa.interval_h > 0:
        raise ValueError(f"interval_h: must be positive (got {pa.interval_h})")


def prepare(pa: ProblemArrays) -> Workspace:
    check_arrays(pa)
    inc = build_increments(pa.ref)
    J, G = pa.job_val.shape
    I = len(pa.svc_gpr)
    start_lvl = np.full((J, G), -1, np.int64)
    svc_start_lvl = np.full((I, G), -1, np.int64)
    kind, a, b, c = inc[0], inc[1], inc[2], inc[3]
    m = kind == JOB_START
    start_lvl[a[m], b[m]] = c[m]
    m = kind == SVC_ADD
    svc_start_lvl[a[m], b[m]] = c[m]
    K = len(pa.rack_kind)
    R = max(1, pa.job_run_n.shape[1])
    starts = a[kind == JOB_START]
    _, first = np.unique(starts, return_index=True)
    job_order = starts[np.sort(first)].astype(np.int64)     # by best start slope
    return Workspace(pa, inc, start_lvl, svc_start_lvl, job_order, np.zeros(R, np.int64),
                     np.zeros(max(1, len(pa.dom_gpus)), np.int64), np.zeros(K, np.int64),
                     np.zeros(K, np.int64), alloc_state(pa), alloc_state(pa))


def _fill(ws: Workspace, st: PlanState) -> None:
    i = ws.inc
    fill(ws.pa.ref, st.ref, i[0], i[1], i[2], i[3], i[4], ws.nbuf, ws.cand, ws.cnt, ws.run, -1)


def place_required(ws: Workspace, st: PlanState) -> list[int]:
    """Force every unscheduled required job in (shedding others); returns those that cannot run."""
    pa = ws.pa
    missing = []
    for j in np.nonzero(pa.job_req & (st.job_dom < 0))[0].tolist():
        done = False
        for d in range(len(pa.dom_gpus)):
            if not job_domain_ok(pa.ref, j, d):
                continue
            g = pa.dom_model[d]
            lvl = int(pa.job_minlev[j, g])
            if start_job(pa.ref, st.ref, j, g, lvl, ws.nbuf, ws.cand, lvl, -1):
                done = True
                break
            copy_into(ws.tmp.ref, st.ref)
            if evict_replicas(pa.ref, st.ref, d, pa.job_gpus[j]):
                recompute(pa.ref, st.ref)
                if force_place(pa.ref, st.ref, j, d, lvl, ws.nbuf) and shed(pa.ref, st.ref, j, -1):
                    done = True
                    break
            copy_into(st.ref, ws.tmp.ref)
        if not done:
            missing.append(j)
    if len(missing) < int(pa.job_req.sum()):
        _fill(ws, st)
    return missing


def construct(ws: Workspace) -> PlanState:
    """A fresh plan by the greedy (required jobs forced in)."""
    st = alloc_state(ws.pa)
    recompute(ws.pa.ref, st.ref)
    _fill(ws, st)
    return st


def improve_plan(ws: Workspace, st: PlanState, max_moves: int = 400) -> int:
    """Local search in place; st must be feasible. Returns the number of moves kept."""
    return int(improve(ws.pa.ref, st.ref, ws.tmp.ref, ws.best.ref, ws.inc, ws.start_lvl, ws.job_order, ws.nbuf, ws.cand, ws.cnt, ws.run,
                       max_moves))


def repair(ws: Workspace, st: PlanState) -> bool:
    """Any plan -> a feasible one in place (least loss), topped up; False if no plan exists."""
    sanitize(ws.pa.ref, st.ref)
    if not shed(ws.pa.ref, st.ref, -1, -1):
        return False
    _fill(ws, st)
    return True


def curtail(ws: Workspace, st: PlanState) -> bool:
    """A feasible plan under the problem's (new, lower) limits: shed the least valuable power,
    then refill freed headroom. In place; False if no plan exists."""
    recompute(ws.pa.ref, st.ref)
    if not shed(ws.pa.ref, st.ref, -1, -1):
        return False
    _fill(ws, st)
    return True


def from_running(ws: Workspace) -> PlanState:
    """The plan "as things run now" (unrepaired)."""
    st = alloc_state(ws.pa)
    running_state(ws.pa.ref, st.ref, ws.start_lvl, ws.svc_start_lvl)
    return st


def objective(ws: Workspace, st: PlanState) -> float:
    return float(objective_usd(ws.pa.ref, st.ref))


def recheck(ws: Workspace, st: PlanState) -> None:
    """Recompute every figure of st from its decisions (drops incremental float drift)."""
    recompute(ws.pa.ref, st.ref)


def feasible(ws: Workspace, st: PlanState) -> bool:
    return bool(all_ok(ws.pa.ref, st.ref))


def tidy(st: PlanState) -> None:
    compact_groups(st.ref)


__all__ = ["Workspace", "prepare", "construct", "improve_plan", "repair", "curtail", "from_running",
           "objective", "feasible", "recheck", "place_required", "tidy", "copy_state", "alloc_state"]
