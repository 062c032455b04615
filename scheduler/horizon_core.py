"""SPEC section 6 shared by every horizon solver: the per-period compiled problems, work and
lateness accounting, and the assembly of per-period `Assignment`s into the horizon plan JSON
(`scheduler.verify_horizon` is the independent judge of what this writes)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .assignment import Assignment, evaluate, to_plan, violations
from .model.scenario import Scenario
from .problem import Problem, compile_problem
from .solve import SolverFigures


def work_tol_gpu_h(remaining_gpu_h: float) -> float:
    """Work left below this counts as none (as in `verify_horizon`)."""
    return 1e-6 + 1e-9 * remaining_gpu_h


@dataclass(frozen=True, eq=False)
class Horizon:
    """A horizon scenario compiled once: one `Problem` per period (running = the scenario's)."""
    scenario: Scenario
    problems: list[Problem]
    start_h: np.ndarray                 # f8[P]
    hours: np.ndarray                   # f8[P]
    remaining_gpu_h: np.ndarray         # f8[J] NaN = not tracked
    deadline_h: np.ndarray              # f8[J] NaN = none
    late_usd_per_h: np.ndarray          # f8[J]
    ramp_kw_per_h: np.ndarray           # f8[S] NaN = no ramp limit

    @property
    def n_periods(self) -> int:
        return len(self.problems)

    @property
    def end_h(self) -> float:
        return float(self.start_h[-1] + self.hours[-1])


def compile_horizon(sc: Scenario) -> Horizon:
    if not sc.periods:
        raise ValueError("periods: the scenario has no periods")
    problems = [compile_problem(sc, p) for p in range(len(sc.periods))]
    hours = np.array([per.hours for per in sc.periods], dtype=np.float64)
    start = np.concatenate([[0.0], np.cumsum(hours)[:-1]])
    nan = float("nan")
    return Horizon(
        scenario=sc, problems=problems, start_h=start, hours=hours,
        remaining_gpu_h=np.array([j.remaining_gpu_h if j.remaining_gpu_h is not None else nan
                                  for j in sc.training], dtype=np.float64),
        deadline_h=np.array([j.deadline_h if j.deadline_h is not None else nan for j in sc.training],
                            dtype=np.float64),
        late_usd_per_h=np.array([j.late_penalty_usd_per_h for j in sc.training], dtype=np.float64),
        ramp_kw_per_h=np.array([s.max_ramp_kw_per_h if s.max_ramp_kw_per_h is not None else nan
                                for s in sc.sites], dtype=np.float64))


def with_running(p: Problem, a: Optional[Assignment], **changes) -> Problem:
    """`p` with its running placements replaced by those of `a` (None: nothing runs), so moves
    are costed against `a`; `changes` replace further fields (e.g. job values, grid limits)."""
    J, I = len(p.job_ids), len(p.svc_ids)
    job_rows = [[] for _ in range(J)]
    svc_rows = [[] for _ in range(I)]
    run_dom = np.full(J, -1, dtype=np.int64)
    if a is not None:
        for j in range(J):
            if a.job_level[j] >= 0:
                job_rows[j] = sorted((k, n) for k, n in a.job_place[j].items() if n > 0)
                if job_rows[j]:
                    run_dom[j] = p.rack_domain[job_rows[j][0][0]]
        for i in range(I):
            per_rack: dict[int, int] = {}
            for (k, _), r in a.svc_place[i].items():
                per_rack[k] = per_rack.get(k, 0) + r
            svc_rows[i] = sorted((k, n) for k, n in per_rack.items() if n > 0)

    def csr(rows):
        ptr = np.zeros(len(rows) + 1, dtype=np.int64)
        ptr[1:] = np.cumsum([len(r) for r in rows])
        flat = [x for r in rows for x in r]
        return ptr, np.array([x[0] for x in flat], dtype=np.int64), np.array([x[1] for x in flat], dtype=np.int64)

    jp, jr, jn = csr(job_rows)
    sp, sr, sn = csr(svc_rows)
    return dataclasses.replace(p, job_run_ptr=jp, job_run_rack=jr, job_run_gpus=jn, job_run_domain=run_dom,
                               svc_run_ptr=sp, svc_run_rack=sr, svc_run_replicas=sn, **changes)


def job_rate_usd_per_h(p: Problem, a: Assignment, j: int) -> float:
    """The training term of SPEC 4's rate for job j (0 when unscheduled)."""
    c = int(a.job_level[j])
    if c < 0 or not a.job_place[j]:
        return 0.0
    g = p.rack_model[next(iter(a.job_place[j]))]
    return p.job_usd_per_h(j, g, c)


def job_work_gpu_h(p: Problem, a: Assignment, j: int) -> float:
    """Work (GPU-hours at perf 1.0) job j delivers in the period if scheduled for all of it."""
    c = int(a.job_level[j])
    if c < 0 or not a.job_place[j]:
        return 0.0
    g = p.rack_model[next(iter(a.job_place[j]))]
    return p.job_gpu_h_per_h(j, g, c) * float(p.interval_h)


@dataclass
class WorkState:
    """Work left and completion per job, carried through the periods (SPEC 6 'Work')."""
    left: np.ndarray                     # f8[J] NaN = untracked
    done: np.ndarray                     # f8[J]
    completed_h: list[Optional[float]]

    @classmethod
    def start(cls, h: Horizon) -> "WorkState":
        left = h.remaining_gpu_h.copy()
        comp = [0.0 if (not np.isnan(r) and r <= work_tol_gpu_h(r)) else None for r in left]
        left = np.where(np.isnan(left), left, np.where(left <= 1e-6, 0.0, left))
        return cls(left=left, done=np.zeros(len(left)), completed_h=comp)

    def finished(self, j: int) -> bool:
        return self.completed_h[j] is not None

    def run(self, h: Horizon, j: int, work_gpu_h: float, p: int) -> float:
        """Account job j scheduled in period p; returns its revenue fraction f_p."""
        left = self.left[j]
        if np.isnan(left):
            self.done[j] += work_gpu_h
            return 1.0
        frac = min(1.0, left / work_gpu_h) if work_gpu_h > 0 else 1.0
        delivered = min(left, work_gpu_h)
        self.done[j] += delivered
        self.left[j] = left - delivered
        if self.left[j] <= work_tol_gpu_h(h.remaining_gpu_h[j]):
            self.left[j] = 0.0
            self.completed_h[j] = float(h.start_h[p] + frac * h.hours[p])
        return frac

    def run_period(self, h: Horizon, p: int, prob: Problem, a: Assignment) -> dict[int, float]:
        """Account every job `a` schedules in period p; returns each one's revenue fraction f_p."""
        return {j: self.run(h, j, job_work_gpu_h(prob, a, j), p)
                for j in range(len(a.job_level)) if a.job_level[j] >= 0}

    def copy(self) -> "WorkState":
        return WorkState(self.left.copy(), self.done.copy(), list(self.completed_h))


def late_h(h: Horizon, j: int, completed_h: Optional[float]) -> float:
    if np.isnan(h.remaining_gpu_h[j]) or np.isnan(h.deadline_h[j]):
        return 0.0
    return max(0.0, (completed_h if completed_h is not None else h.end_h) - float(h.deadline_h[j]))


def drop_finished(a: Assignment, work: WorkState) -> Assignment:
    """A copy of `a` without jobs that have no work left (SPEC 6 forbids scheduling them)."""
    out = Assignment(a.job_level.copy(), [dict(x) for x in a.job_place], [dict(x) for x in a.svc_place],
                     a.miners.copy())
    for j in range(len(out.job_level)):
        if out.job_level[j] >= 0 and work.finished(j):
            out.job_level[j] = -1
            out.job_place[j] = {}
    return out


@dataclass
class HorizonResult(SolverFigures):
    assignments: Optional[list[Assignment]]   # one per period; None when infeasible
    method: str
    status: str                               # optimal | feasible | infeasible
    seconds: float
    backend: Optional[str] = None
    bound_usd: Optional[float] = None
    gap: Optional[float] = None
    infeasible: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


@dataclass
class PeriodFigures:
    """What the report needs of one period besides the plan body."""
    problem: Problem            # with running = the previous period's plan
    assignment: Assignment
    objective_usd: float
    site_kw: np.ndarray


def evaluate_horizon(h: Horizon, assignments: list[Assignment]) -> tuple[float, list[PeriodFigures], WorkState]:
    """The exact SPEC 6 objective of a sequence of assignments (jobs with no work left are
    dropped first), with each period's figures and the final work state."""
    work = WorkState.start(h)
    prev: Optional[Assignment] = None
    total = 0.0
    out: list[PeriodFigures] = []
    for p, a0 in enumerate(assignments):
        a = drop_finished(a0, work)
        base = h.problems[p]
        prob = base if prev is None else with_running(base, prev)
        if prev is not None:
            # a job that completed and is no longer scheduled costs nothing
            keep = [j for j in range(len(prob.job_ids)) if not (work.finished(j) and a.job_level[j] < 0)]
            if len(keep) < len(prob.job_ids):
                prob = with_running(base, only_jobs(prev, keep))
        f = evaluate(prob, a)
        obj = f.objective_usd
        for j, frac in work.run_period(h, p, prob, a).items():
            obj -= prob.interval_h * (1.0 - frac) * job_rate_usd_per_h(prob, a, j)
        total += obj
        out.append(PeriodFigures(prob, a, float(obj), f.site_kw.copy()))
        prev = a
    total -= sum(h.late_usd_per_h[j] * late_h(h, j, work.completed_h[j]) for j in range(len(h.late_usd_per_h)))
    return float(total), out, work


def only_jobs(a: Assignment, keep: list[int]) -> Assignment:
    """`a` with only the training jobs in `keep` scheduled (e.g. running minus finished jobs)."""
    out = Assignment(np.full_like(a.job_level, -1), [{} for _ in a.job_place], a.svc_place, a.miners)
    for j in keep:
        out.job_level[j] = a.job_level[j]
        out.job_place[j] = a.job_place[j]
    return out


def period_violations(h: Horizon, periods: list[PeriodFigures]) -> list[str]:
    """Hard limits and ramps broken (a solver self-check before a plan is written)."""
    out = []
    for p, pf in enumerate(periods):
        out += [f"{v}@p{p}" for v in violations(pf.problem, evaluate(pf.problem, pf.assignment))]
        if p:
            step = np.abs(pf.site_kw - periods[p - 1].site_kw)
            lim = h.ramp_kw_per_h * h.hours[p]
            for s in np.nonzero(~np.isnan(lim) & (step > lim + 1e-6))[0]:
                out.append(f"ramp[{pf.problem.site_ids[s]}@p{p}]: {step[s]:.3f} kW > {lim[s]:.3f} kW")
    return out


def feasible_plans(h: Horizon, candidates: list[tuple[str, Optional[list[Assignment]]]]
                   ) -> list[tuple[float, list[Assignment], str]]:
    """(objective, assignments, source) of each candidate plan that keeps every limit and ramp
    in every period (a solver's self-check before it returns the best)."""
    out = []
    for source, asg in candidates:
        if asg is not None:
            total, periods, _ = evaluate_horizon(h, asg)
            if not period_violations(h, periods):
                out.append((total, asg, source))
    return out


def horizon_plan(h: Horizon, result: HorizonResult) -> dict:
    """The SPEC 6 horizon plan JSON of a result (for an infeasible one, the limits)."""
    if result.assignments is None:
        return {"scenario": h.scenario.name or "scenario", "solver": result.solver_info(),
                "objective_usd": None, "infeasible": list(result.infeasible)}
    total, periods, work = evaluate_horizon(h, result.assignments)
    bodies = []
    for p, pf in enumerate(periods):
        body = to_plan(pf.problem, pf.assignment, {})
        for key in ("scenario", "solver"):
            body.pop(key, None)
        body = {"start_h": float(h.start_h[p]), "hours": float(h.hours[p]), **body,
                "objective_usd": pf.objective_usd}
        bodies.append(body)
    training = []
    for j, jid in enumerate(h.problems[0].job_ids):
        training.append({"id": jid, "work_done_gpu_h": float(work.done[j]), "completed_h": work.completed_h[j],
                         "late_h": late_h(h, j, work.completed_h[j])})
    solver = {**result.solver_info(), "objective_usd": total}
    return {"scenario": h.scenario.name or "scenario", "solver": solver, "objective_usd": total,
            "periods": bodies, "training": training}
