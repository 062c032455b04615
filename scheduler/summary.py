"""The readable summary `wattsched plan` prints: per site power vs limit, cooling headroom per
loop, hashrate, GPUs busy, jobs scheduled/queued and profit per hour."""
from __future__ import annotations

import sys

import numpy as np

from .assignment import Assignment, Figures
from .problem import GPU, Problem
from .solve import SolveResult


def print_infeasible(name: str, method: str, seconds: float, reasons: list[str], what: str = "plan") -> None:
    """What `wattsched plan` prints on stderr when no plan exists: the limits that cannot all hold."""
    print(f"{name}: no feasible {what} ({method}, {seconds:.2f} s); these limits cannot all hold:",
          file=sys.stderr)
    for reason in reasons:
        print(f"  {reason}", file=sys.stderr)


def _usd(x: float) -> str:
    return f"-${-x:,.2f}" if x < 0 else f"${x:,.2f}"


def summarize(p: Problem, result: SolveResult, a: Assignment, f: Figures) -> str:
    lines = []
    gap = "" if result.gap is None else f", gap {100 * result.gap:.3f}%"
    bound = "" if result.bound_usd is None else f", bound {_usd(result.bound_usd)}"
    backend = f"/{result.backend}" if result.backend else ""
    lines.append(f"{p.name}: {result.method}{backend} {result.status} in {result.seconds:.2f} s; "
                 f"objective {_usd(f.objective_usd)} over {p.interval_h:g} h{bound}{gap}")
    profit = f.site_rate_usd_per_h
    for s, sid in enumerate(p.site_ids):
        gpu = (p.rack_kind == GPU) & (p.rack_site == s)
        busy, total = int(f.rack_busy[gpu].sum()), int(p.rack_count[gpu].sum())
        limit = p.site_grid_limit_kw[s]
        pct = 100 * f.site_kw[s] / limit if limit > 0 else 0.0
        lines.append(f"site {sid}: power {f.site_kw[s]:,.1f} / {limit:,.1f} kW ({pct:.1f}%), "
                     f"IT {f.site_it_kw[s]:,.1f} kW, cooling {f.site_cooling_kw[s]:,.1f} kW, "
                     f"base {p.site_base_kw[s]:,.1f} kW")
        lines.append(f"  hashrate {f.site_th_s[s] / 1000:,.2f} PH/s; GPUs busy {busy:,} / {total:,}; "
                     f"profit {_usd(profit[s])}/h")
        for n in np.nonzero(p.loop_site == s)[0]:
            head = p.loop_cap_kw[n] - f.loop_heat_kw[n]
            lines.append(f"  loop {p.loop_ids[n]}: heat {f.loop_heat_kw[n]:,.1f} / {p.loop_cap_kw[n]:,.1f} kW "
                         f"(headroom {head:,.1f} kW)")
        for n in np.nonzero(p.feed_site == s)[0]:
            lines.append(f"  feed {p.feed_ids[n]}: {f.feed_kw[n]:,.1f} / {p.feed_limit_kw[n]:,.1f} kW")
    scheduled = int((a.job_level >= 0).sum())
    moved = int(f.job_moved.sum())
    lines.append(f"training: {scheduled} scheduled, {len(p.job_ids) - scheduled} queued, {moved} moved")
    for j, jid in enumerate(p.job_ids):
        c = int(a.job_level[j])
        if c >= 0:
            k = next(iter(a.job_place[j]))
            g = p.rack_model[k]
            dom = p.domain_ids[p.rack_domain[k]]
            lines.append(f"  {jid}: {int(p.job_gpus[j])} GPUs in {dom} at {p.gpu_cap_w[g, c]:g} W")
        else:
            lines.append(f"  {jid}: queued ({int(p.job_gpus[j])} GPUs)")
    if len(p.svc_ids):
        lines.append("inference:")
        for i, sid in enumerate(p.svc_ids):
            reps = sum(a.svc_place[i].values())
            lines.append(f"  {sid}: {f.served_rps[i]:,.1f} / {p.svc_demand_rps[i]:,.1f} rps served "
                         f"with {reps} replicas")
    lines.append(f"profit {_usd(f.rate_usd_per_h)}/h; moves {_usd(f.moves_usd)}")
    return "\n".join(lines)
