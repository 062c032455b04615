"""SPEC section 6: judging a horizon plan. Each period is checked as a section-5 body with
`scheduler.verify`'s checks under that period's values; this module adds what links the periods:
consecutive start times, work done and completion, lateness, moves at period boundaries, ramps
and the total objective. Like `scheduler.verify`, it reads only the scenario."""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Optional

from .model import Scenario
from .verify import (Decisions, Index, body_structure, check_figures, check_limits, check_moves,
                     check_objective, close, compare, compute, conditions, fmt, known_entries,
                     read_decisions, read_number, running_before, show)


def _work_tol(remaining_gpu_h: float) -> float:
    """Work left below this (GPU-hours) counts as none: sums of floats rarely land on 0 exactly."""
    return 1e-6 + 1e-9 * remaining_gpu_h


def verify_horizon(sc: Scenario, plan: dict) -> list[str]:
    """Every problem of a horizon plan (a plan with `periods`), one line each."""
    if not sc.periods:
        return ["periods: the plan has periods but the scenario has none"]
    out: list[str] = []
    periods = plan["periods"]
    if not isinstance(periods, list) or not periods:
        out.append(f"periods: must be a non-empty list (got {show(periods)})")
    if "training" not in plan:
        out.append("training: missing")
    elif not isinstance(plan["training"], list):
        out.append(f"training: must be a list (got {show(plan['training'])})")
    read_number(plan, "objective_usd", "", out)
    if out:
        return out
    if len(periods) != len(sc.periods):
        return [f"periods: the plan has {len(periods)} periods, the scenario {len(sc.periods)}"]
    for p, body in enumerate(periods):
        problems = body_structure(body, f"periods[{p}].")
        if not problems:
            for key in ("start_h", "hours"):
                read_number(body, key, f"periods[{p}]", problems)
        out += problems
    if out:
        return out

    idx = Index(sc)
    decs = [read_decisions(idx, body, f"periods[{p}].", out) for p, body in enumerate(periods)]
    if not all(d.usable for d in decs):
        return out

    start_h = 0.0
    starts = []
    for p, body in enumerate(periods):
        hours = sc.periods[p].hours
        compare(f"periods[{p}].start_h", float(body["start_h"]), start_h, out)
        compare(f"periods[{p}].hours", float(body["hours"]), hours, out)
        interval_h = read_number(body, "interval_h", f"periods[{p}]", out, required=False)
        if interval_h is not None:
            compare(f"periods[{p}].interval_h", interval_h, hours, out)
        starts.append(start_h)
        start_h += hours
    end_h = start_h
    state = _Work(sc)
    total_usd = _periods(sc, idx, periods, decs, starts, state, out)
    penalties_usd = _totals(sc, idx, plan, state, end_h, out)
    check_objective(plan, total_usd - penalties_usd, out)
    return out


class _Work:
    """Work left, done and completion time of each training job, carried across periods."""

    def __init__(self, sc: Scenario):
        self.left = {j.id: j.remaining_gpu_h for j in sc.training if j.remaining_gpu_h is not None}
        self.done_gpu_h: dict[str, float] = defaultdict(float)
        self.completed_h: dict[str, float] = {j: 0.0 for j, r in self.left.items() if r <= _work_tol(r)}
        self.tol = {j.id: _work_tol(j.remaining_gpu_h) for j in sc.training if j.remaining_gpu_h is not None}

    def finished(self) -> set[str]:
        return set(self.completed_h)

    def run(self, jid: str, work_gpu_h: float, start_h: float, hours: float) -> float:
        """Account one scheduled period; return the fraction f_p of it that earns revenue."""
        if jid not in self.left:
            self.done_gpu_h[jid] += work_gpu_h
            return 1.0
        left = self.left[jid]
        frac = min(1.0, left / work_gpu_h) if work_gpu_h > 0 else 1.0
        delivered = min(left, work_gpu_h)
        self.done_gpu_h[jid] += delivered
        self.left[jid] = left - delivered
        if self.left[jid] <= self.tol[jid]:
            self.left[jid] = 0.0
            self.completed_h[jid] = start_h + frac * hours
        return frac


def _periods(sc: Scenario, idx: Index, periods: list, decs: list[Decisions], starts: list[float],
             work: _Work, out: list[str]) -> float:
    """Check every period in order; return the sum of recomputed period objectives."""
    job_before, svc_before = running_before(sc)
    prev_site_kw: Optional[dict[str, float]] = None
    total_usd = 0.0
    for p, (body, dec) in enumerate(zip(periods, decs)):
        prefix, at = f"periods[{p}].", f"@p{p}"
        cond = conditions(sc, p)
        ph = compute(idx, cond, dec)
        finished = work.finished()
        out += check_limits(idx, cond, dec, ph, must_run={j.id for j in sc.training} - finished,
                            at=at, prefix=prefix)
        out += check_figures(idx, cond, body, dec, ph, prefix)
        moves_usd = check_moves(idx, dec, job_before, svc_before, finished - dec.scheduled, prefix, out)
        rate = ph.other_usd_per_h
        for job in sc.training:
            if job.id not in dec.scheduled:
                continue
            if job.id in finished:
                out.append(f"{prefix}training[{job.id}].scheduled: the job has no work left "
                           f"(done at {fmt(work.completed_h[job.id])} h)")
                continue
            frac = work.run(job.id, ph.job_work_per_h.get(job.id, 0.0) * cond.hours, starts[p], cond.hours)
            rate += frac * ph.job_usd_per_h.get(job.id, 0.0)
        objective = cond.hours * rate - moves_usd
        compare(f"{prefix}objective_usd", float(body["objective_usd"]), objective, out)
        total_usd += objective
        if prev_site_kw is not None:
            for site in sc.sites:
                if site.max_ramp_kw_per_h is None:
                    continue
                step = abs(ph.site_kw[site.id] - prev_site_kw[site.id])
                limit = site.max_ramp_kw_per_h * cond.hours
                if step > limit + 1e-6:
                    out.append(f"ramp[{site.id}{at}]: site_kw moves {step:.3f} kW from period {p - 1}, more than "
                               f"{fmt(limit)} kW (max_ramp_kw_per_h {fmt(site.max_ramp_kw_per_h)} × "
                               f"{fmt(cond.hours)} h)")
        prev_site_kw = ph.site_kw
        job_before = {j.id: dict(dec.job_place.get(j.id, {})) if j.id in dec.scheduled else {} for j in sc.training}
        svc_before = {i.id: dec.svc_per_rack(i.id) for i in sc.inference}
    return total_usd


def _totals(sc: Scenario, idx: Index, plan: dict, work: _Work, end_h: float, out: list[str]) -> float:
    """Check the top-level training entries; return the recomputed late penalties."""
    penalties_usd = 0.0
    seen = set()
    for jid, e, path in known_entries(plan, "training", "", out, idx.job, "training job"):
        seen.add(jid)
        tracked = idx.job[jid].remaining_gpu_h is not None
        completed = work.completed_h.get(jid)
        want: dict[str, Any] = {"work_done_gpu_h": work.done_gpu_h.get(jid, 0.0), "completed_h": completed,
                                "late_h": _late_h(idx.job[jid], completed, end_h)}
        for key, recomputed in want.items():
            if key not in e:
                if tracked:
                    out.append(f"{path}.{key}: missing")
                continue
            _compare_optional(f"{path}.{key}", e[key], recomputed, key == "completed_h", out)
    for job in sc.training:
        if job.remaining_gpu_h is not None and job.id not in seen:
            out.append(f"training[{job.id}]: missing from the plan")
        penalties_usd += job.late_penalty_usd_per_h * _late_h(job, work.completed_h.get(job.id), end_h)
    return penalties_usd


def _late_h(job, completed_h: Optional[float], end_h: float) -> float:
    if job.remaining_gpu_h is None or job.deadline_h is None:
        return 0.0
    return max(0.0, (completed_h if completed_h is not None else end_h) - job.deadline_h)


def _compare_optional(path: str, reported: Any, recomputed: Optional[float], nullable: bool,
                      out: list[str]) -> None:
    if reported is None and nullable:
        if recomputed is not None:
            out.append(f"{path}: reported null, recomputed {recomputed:.6f}")
        return
    if isinstance(reported, bool) or not isinstance(reported, (int, float)):
        out.append(f"{path}: must be a number{' or null' if nullable else ''} (got {show(reported)})")
    elif recomputed is None:
        out.append(f"{path}: reported {reported:.6f}, recomputed null (the job never completes)")
    elif not close(float(reported), recomputed):
        out.append(f"{path}: reported {reported:.6f}, recomputed {recomputed:.6f}")
