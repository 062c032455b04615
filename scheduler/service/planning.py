"""The daemon's planning ports: a planner (problem -> SolveResult), a verifier (scenario, plan ->
violations) and the helpers that carry the adopted plan into the next scenario.

The defaults use whatever solvers the project has: the Numba fast path (`heuristic`) when it is
importable, else the MILP with a short time limit; `GreedyPlanner` is a dependency-free fallback.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Optional, Protocol

import numpy as np

from .. import plan_io
from ..assignment import Assignment, evaluate, violations
from ..model.scenario import Scenario
from ..problem import GPU, MINER, Problem
from ..solve import SolveOptions, SolveResult, solve


class Planner(Protocol):
    """What plans: one method, so tests and the daemon can swap solvers."""

    name: str

    def plan(self, problem: Problem, start: Optional[Assignment]) -> SolveResult: ...


Verifier = Callable[[Scenario, dict], list]


class SolverPlanner:
    """A planner backed by `scheduler.solve.solve(problem, method, options)`."""

    def __init__(self, method: str, time_limit_s: Optional[float] = None, threads: Optional[int] = None):
        self.method = method
        self.name = method
        self.time_limit_s = time_limit_s
        self.threads = threads

    def options(self, start: Optional[Assignment]) -> SolveOptions:
        return SolveOptions(time_limit_s=self.time_limit_s, warm_start=start, threads=self.threads,
                            explain_infeasible=False)

    def plan(self, problem: Problem, start: Optional[Assignment]) -> SolveResult:
        return solve(problem, self.method, self.options(start))


class GreedyPlanner:
    """Dependency-free fallback: keep what fits, then add work by marginal profit while every limit holds.

    Slow on big sites (it re-evaluates the whole site per step) but always returns a plan that
    `evaluate`/`violations` accept; the daemon uses it only when no other solver is importable.
    """

    name = "greedy"

    def plan(self, problem: Problem, start: Optional[Assignment]) -> SolveResult:
        t0 = time.perf_counter()
        p = problem
        a = Assignment.empty(p)

        def fits(cand: Assignment) -> bool:
            return not violations(p, evaluate(p, cand))

        broken = violations(p, evaluate(p, a))
        if broken:
            return SolveResult(None, self.name, "infeasible", time.perf_counter() - t0, infeasible=broken)
        free = p.rack_count.copy()
        free[p.rack_kind != GPU] = 0
        # training: most valuable first, top allowed cap level first, racks in domain order
        order = sorted(range(len(p.job_ids)), key=lambda j: -np.nanmax(
            np.nan_to_num(p.job_value_per_gpu_h[j], nan=-1.0)) * p.job_gpus[j])
        order.sort(key=lambda j: not p.job_required[j])
        for j in order:
            placed = False
            domains = [d for d in range(len(p.domain_ids)) if p.job_domain_ok(j, d)]
            if p.job_run_domain[j] >= 0 and p.job_run_domain[j] in domains:
                domains.remove(p.job_run_domain[j])
                domains.insert(0, int(p.job_run_domain[j]))
            for d in domains:
                g = p.domain_model[d]
                for level in range(p.gpu_n_levels[g] - 1, p.job_min_level[j, g] - 1, -1):
                    place, need = {}, int(p.job_gpus[j])
                    for k in p.domain_rack_list(d).tolist():
                        take = min(need, int(free[k]))
                        if take:
                            place[k] = take
                            need -= take
                    if need:
                        break
                    a.job_level[j], a.job_place[j] = level, place
                    if fits(a):
                        for k, n in place.items():
                            free[k] -= n
                        placed = True
                        break
                    a.job_level[j], a.job_place[j] = -1, {}
                if placed:
                    break
        # inference: add replicas one at a time at the top allowed level until demand is met
        for i in range(len(p.svc_ids)):
            gpr = int(p.svc_gpus_per_replica[i])
            for k in range(p.n_racks):
                if not p.svc_rack_ok(i, k):
                    continue
                g = p.rack_model[k]
                level = int(p.gpu_n_levels[g] - 1)
                while free[k] >= gpr and evaluate(p, a).served_rps[i] < p.svc_demand_rps[i] - 1e-9:
                    key = (k, level)
                    a.svc_place[i][key] = a.svc_place[i].get(key, 0) + 1
                    if not fits(a):
                        a.svc_place[i][key] -= 1
                        if not a.svc_place[i][key]:
                            del a.svc_place[i][key]
                        break
                    free[k] -= gpr
        # miners: the most profitable mode per rack, as many as fit, only when profitable
        price = p.site_price_usd_per_mwh
        for k in np.nonzero(p.rack_kind == MINER)[0].tolist():
            m = p.rack_model[k]
            kw = p.miner_kw[m]
            usd_h = (p.miner_th_s[m] * p.miner_usd_per_th_h
                     - np.where(np.isfinite(kw), kw, 0.0) * p.rack_site_factor[k] * price[p.rack_site[k]] / 1000.0)
            usd_h[~np.isfinite(kw)] = -np.inf
            q = int(np.argmax(usd_h))
            if usd_h[q] <= 0:
                continue
            lo, hi = 0, int(p.rack_count[k])
            while lo < hi:  # largest count that fits
                mid = (lo + hi + 1) // 2
                a.miners[k, q] = mid
                if fits(a):
                    lo = mid
                else:
                    hi = mid - 1
            a.miners[k, q] = lo
        return SolveResult(a, self.name, "feasible", time.perf_counter() - t0)


class RepairPlanner:
    """The low-latency fast path: repair the previous plan for the new inputs (shed what no longer
    fits, place what is new, short local search) with the Numba kernels; from scratch when there is
    no previous plan or the repair fails. About a millisecond on the 18 MW example."""

    name = "heuristic-repair"

    def plan(self, problem: Problem, start: Optional[Assignment]) -> SolveResult:
        from .. import heuristic
        if start is not None:
            result = heuristic.repair(problem, start, improve=True)
            if result.assignment is not None:
                return result
        return solve(problem, "heuristic", SolveOptions(warm_start=start, explain_infeasible=False))


class WarmingPlanner:
    """Plans with `fallback` until `primary` is warm. The first call starts `primary` on that
    problem in a thread (a cold Numba cache means about a minute of JIT compilation); every call
    made before it finishes is answered by `fallback`, so the daemon is ready in seconds."""

    def __init__(self, primary: Planner, fallback: Planner):
        self.primary, self.fallback = primary, fallback
        self.name = primary.name
        self._warm = threading.Event()
        self._started = False
        self._lock = threading.Lock()

    @property
    def warm(self) -> bool:
        return self._warm.is_set()

    def _warm_up(self, problem: Problem) -> None:
        try:
            self.primary.plan(problem, None)
        except Exception:  # noqa: BLE001 - a failing primary shows itself on its first real call
            pass
        finally:
            self._warm.set()

    def plan(self, problem: Problem, start: Optional[Assignment]) -> SolveResult:
        if self._warm.is_set():
            return self.primary.plan(problem, start)
        with self._lock:
            if not self._started:
                self._started = True
                threading.Thread(target=self._warm_up, args=(problem,), name="wattsched-jit-warm-up",
                                 daemon=True).start()
        if self._warm.wait(timeout=0.5):  # a warm cache answers at once
            return self.primary.plan(problem, start)
        return self.fallback.plan(problem, start)


def heuristic_available() -> bool:
    try:
        from .. import heuristic  # noqa: F401
    except ImportError:
        return False
    return True


def milp_available() -> bool:
    try:
        from .. import milp  # noqa: F401
    except ImportError:
        return False
    return True


def default_fast_planner(milp_time_limit_s: float = 2.0, warm_up: bool = False) -> Planner:
    """The Numba repair when the fast path is importable, else the MILP with a short limit, else greedy.
    With `warm_up`, the MILP (or greedy) answers while the Numba kernels compile."""
    if heuristic_available():
        if warm_up:
            fallback = SolverPlanner("milp", milp_time_limit_s) if milp_available() else GreedyPlanner()
            return WarmingPlanner(RepairPlanner(), fallback)
        return RepairPlanner()
    if milp_available():
        return SolverPlanner("milp", time_limit_s=milp_time_limit_s)
    return GreedyPlanner()


def default_polish_planner() -> Optional[Planner]:
    """Run right after each fast plan: the full heuristic (construction + repairs + local search)."""
    return SolverPlanner("heuristic") if heuristic_available() else None


def default_verifier() -> Verifier:
    """The independent verifier (`scheduler.verify.verify_plan`)."""
    from ..verify import verify_plan
    return verify_plan


def scenario_with_running(data: dict, plan: Optional[dict]) -> dict:
    """The scenario dict with `running` of every workload the plan mentions set to its placement."""
    if not plan or plan.get("objective_usd") is None:
        return data
    train = {t["id"]: t for t in plan.get("training", [])}
    infer = {s["id"]: s for s in plan.get("inference", [])}
    racks = {r.get("id") for s in data.get("sites", []) for r in s.get("racks", [])}
    out = dict(data)
    jobs = []
    for job in data.get("training", []):
        t = train.get(job["id"])
        if t is not None:
            job = dict(job)
            job.pop("running", None)
            place = {k: n for k, n in t["placement"].items() if n}
            if t["scheduled"] and place and set(place) <= racks and sum(place.values()) == job["gpus"]:
                job["running"] = place
        jobs.append(job)
    svcs = []
    for svc in data.get("inference", []):
        s = infer.get(svc["id"])
        if s is not None:
            svc = dict(svc)
            per_rack: dict[str, int] = {}
            for e in s["placement"]:
                per_rack[e["rack"]] = per_rack.get(e["rack"], 0) + int(e["replicas"])
            svc.pop("running", None)
            if per_rack and set(per_rack) <= racks:
                svc["running"] = per_rack
        svcs.append(svc)
    out["training"], out["inference"] = jobs, svcs
    return out


def same_indexing(a: Problem, b: Problem) -> bool:
    """Does an assignment of `a` mean the same decisions on `b`? (Same racks, jobs, services, cap
    levels and miner modes, in the same order: then it need not be read back from its plan JSON.)"""
    return (a.rack_ids == b.rack_ids and a.job_ids == b.job_ids and a.svc_ids == b.svc_ids
            and a.gpu_model_ids == b.gpu_model_ids and a.miner_mode_names == b.miner_mode_names
            and np.array_equal(a.rack_kind, b.rack_kind) and np.array_equal(a.rack_model, b.rack_model)
            and np.array_equal(a.gpu_cap_w, b.gpu_cap_w))


def assignment_from_plan(problem: Problem, plan: dict) -> Optional[Assignment]:
    """An adopted plan back in index form for `problem` (None when it does not fit the problem)."""
    try:
        return plan_io.assignment_from_plan(problem, plan)
    except Exception:  # noqa: BLE001 - a plan of another shape simply cannot be reused
        return None
