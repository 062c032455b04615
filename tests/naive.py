"""Slow, obviously correct references for the Numba kernels (`kernels/`).

Each function restates a SPEC formula or a definition in plain Python loops over dicts, with no
shortcut the kernels take: the figures and objective of a kernel plan, headroom, the upper hull
of a set of options, and the exact optimum of tiny scenarios by enumerating every plan.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from scheduler.assignment import Assignment, evaluate, violations
from scheduler.problem import GPU, MINER, Problem


def plan_dicts(pa, st):
    """A kernel PlanState as plain dicts: job -> (domain, level, {rack: gpus}),
    service -> {(rack, level): replicas}, rack -> {mode: miners}."""
    jobs = {}
    for j in range(len(st.job_dom)):
        d = int(st.job_dom[j])
        if d < 0:
            continue
        racks = pa.dom_racks[pa.dom_ptr[d]:pa.dom_ptr[d + 1]]
        jobs[j] = (d, int(st.job_lvl[j]), {int(k): int(st.job_n[j, r]) for r, k in enumerate(racks)
                                          if st.job_n[j, r] > 0})
    svcs: dict[int, dict] = {}
    for x in range(int(st.ng[0])):
        if st.g_n[x] > 0:
            key = (int(st.g_rack[x]), int(st.g_lvl[x]))
            place = svcs.setdefault(int(st.g_svc[x]), {})
            place[key] = place.get(key, 0) + int(st.g_n[x])
    miners = {k: {q: int(st.miners[k, q]) for q in range(st.miners.shape[1]) if st.miners[k, q]}
              for k in range(len(pa.rack_kind))}
    return jobs, svcs, miners


def naive_figures(pa, st) -> dict:
    """SPEC 3-4 from the kernel arrays, term by term: rack/feed/loop/site kW, capacity, objective."""
    jobs, svcs, miners = plan_dicts(pa, st)
    K = len(pa.rack_kind)
    rack_kw = [float(pa.rack_base_kw[k]) for k in range(K)]
    busy = [0] * K
    rate = 0.0
    for j, (d, lvl, place) in jobs.items():
        g = int(pa.dom_model[d])
        for k, n in place.items():
            for _ in range(n):          # one busy GPU at a time
                rack_kw[k] += pa.gpu_busy_kw[g, lvl]
                busy[k] += 1
        rate += pa.job_gpus[j] * pa.job_val[j, g] * pa.gpu_perf[g, lvl]
    cap = [0.0] * len(pa.svc_gpr)
    for i, place in svcs.items():
        for (k, lvl), r in place.items():
            g = int(pa.rack_model[k])
            for _ in range(r * int(pa.svc_gpr[i])):
                rack_kw[k] += pa.gpu_busy_kw[g, lvl]
                busy[k] += 1
            cap[i] += r * pa.svc_rps[i, g] * pa.gpu_perf[g, lvl]
    for k, modes in miners.items():
        for q, n in modes.items():
            rack_kw[k] += n * pa.mm_kw[pa.rack_model[k], q]
            rate += n * pa.mm_th_s[pa.rack_model[k], q] * pa.usd_per_th_h
    feed = [0.0] * len(pa.feed_lim_kw)
    loop = [0.0] * len(pa.loop_cap_kw)
    site = [float(b) for b in pa.site_base_kw]
    for k in range(K):
        feed[pa.rack_feed[k]] += rack_kw[k]
        loop[pa.rack_loop[k]] += rack_kw[k]
        site[pa.rack_site[k]] += rack_kw[k] * pa.rack_fac[k]   # IT kW plus its cooling kW
    for i in range(len(pa.svc_gpr)):
        served = min(pa.svc_demand_rps[i], cap[i])
        rate += 3.6 * served * pa.svc_val[i] - 3.6 * (pa.svc_demand_rps[i] - served) * pa.svc_pen[i]
    for s in range(len(site)):
        rate -= site[s] / 1000.0 * pa.site_price_usd_per_mwh[s]
    moves = 0.0
    for j in range(len(pa.job_gpus)):
        rd = int(pa.job_run_dom[j])
        if rd < 0:
            continue
        racks = pa.dom_racks[pa.dom_ptr[rd]:pa.dom_ptr[rd + 1]]
        running = {int(k): int(pa.job_run_n[j, r]) for r, k in enumerate(racks) if pa.job_run_n[j, r] > 0}
        now = jobs[j][2] if j in jobs else {}
        if now != running:
            moves += pa.job_move_usd[j]
    for i in range(len(pa.svc_gpr)):
        running = {int(pa.svc_run_rack[e]): int(pa.svc_run_reps[e])
                   for e in range(pa.svc_run_ptr[i], pa.svc_run_ptr[i + 1])}
        per_rack: dict[int, int] = {}
        for (k, _), r in svcs.get(i, {}).items():
            per_rack[k] = per_rack.get(k, 0) + r
        moves += pa.svc_move_usd[i] * sum(abs(per_rack.get(k, 0) - running.get(k, 0))
                                          for k in set(per_rack) | set(running))
    return {"rack_kw": rack_kw, "busy": busy, "feed_kw": feed, "loop_kw": loop, "site_kw": site,
            "cap_rps": cap, "objective_usd": pa.interval_h * rate - moves}


def naive_headroom(pa, st, k: int) -> float:
    """Rack kW rack k may add: the least of what its rack, feed, loop and site have left."""
    f = naive_figures(pa, st)
    return min(pa.rack_lim_kw[k] - f["rack_kw"][k],
               pa.feed_lim_kw[pa.rack_feed[k]] - f["feed_kw"][pa.rack_feed[k]],
               pa.loop_cap_kw[pa.rack_loop[k]] - f["loop_kw"][pa.rack_loop[k]],
               (pa.site_lim_kw[pa.rack_site[k]] - f["site_kw"][pa.rack_site[k]]) / pa.rack_fac[k])


def naive_upper_hull(kw: list[float], net: list[float]) -> list[int]:
    """Indices of the vertices of the upper concave envelope of {(0,0)} ∪ {(kw[c], net[c])} from
    the origin up to the best point, by definition: a point is a vertex iff it lies strictly above
    every chord between two other points (or the origin) that spans it, and is not dominated."""
    pts = [(0.0, 0.0, -1)] + [(kw[c], net[c], c) for c in range(len(kw))]
    best_net = max(p[1] for p in pts)
    top_kw = min(p[0] for p in pts if p[1] == best_net)
    out, seen = [], set()
    for x, y, c in pts[1:]:
        if x > top_kw + 1e-12 or y <= 0.0 or (x, y) in seen:
            continue                    # identical options count once
        seen.add((x, y))
        if any(x2 <= x and y2 >= y and (x2, y2) != (x, y) for x2, y2, _ in pts):
            continue            # another option gives at least as much for no more power
        below = False
        for (x1, y1, _), (x2, y2, _) in itertools.combinations(pts, 2):
            lo, hi = ((x1, y1), (x2, y2)) if x1 < x2 else ((x2, y2), (x1, y1))
            if lo[0] < x < hi[0]:
                chord = lo[1] + (hi[1] - lo[1]) * (x - lo[0]) / (hi[0] - lo[0])
                if chord >= y - 1e-12:
                    below = True
                    break
        if not below:
            out.append(c)
    return sorted(out, key=lambda c: kw[c])


# ------------------------------------------------------------------ tiny scenarios


def tiny_scenario(rng: np.random.Generator) -> dict:
    """A scenario small enough to enumerate: one miner rack, a 2-rack training domain, one
    inference rack (all one GPU model, 2 cap levels), 2 jobs, 1 service, tight limits."""
    gpus = int(rng.integers(2, 4))
    jobs = []
    for n in range(2):
        jobs.append({"id": f"j{n}", "gpus": int(rng.integers(1, 2 * gpus + 1)),
                     "value_per_gpu_h": {"H": float(rng.uniform(1.0, 4.0))},
                     "required": bool(n == 0 and rng.random() < 0.2)})
    svc = {"id": "s0", "gpus_per_replica": 1, "replica_rps": {"H": float(rng.uniform(0.5, 2.0))},
           "demand_rps": float(rng.uniform(0.5, 4.0)), "value_per_1k": float(rng.uniform(0.1, 0.6)),
           "unserved_penalty_per_1k": float(rng.uniform(0.0, 0.5))}
    rack_full = 0.3 + gpus * 1.1
    return {
        "version": 1, "name": "tiny", "hashprice_usd_per_ph_day": float(rng.uniform(30, 60)),
        "gpu_models": {"H": {"idle_w": 50, "host_w": 400, "cap_levels": [
            {"cap_w": 400, "perf": float(rng.uniform(0.6, 0.9))}, {"cap_w": 700, "perf": 1.0}]}},
        "miner_models": {"M": {"modes": {"eco": {"th_s": 150, "kw": 2.5}, "normal": {"th_s": 200, "kw": 3.5}}}},
        "sites": [{
            "id": "s", "grid_limit_kw": float(rng.uniform(4, 3 * rack_full + 8)),
            "energy_price_usd_per_mwh": float(rng.uniform(-20, 120)), "ambient_c": 20, "base_kw": 1.0,
            "feeds": [{"id": "F", "limit_kw": float(rng.uniform(3, 3 * rack_full + 8))}],
            "loops": [{"id": "L", "kind": "air", "capacity_kw": float(rng.uniform(3, 3 * rack_full + 8)),
                       "design_ambient_c": 30, "derate_per_c": 0.0, "kw_per_kw_heat": 0.05}],
            "racks": [
                {"id": "M1", "feed": "F", "loop": "L", "limit_kw": 7.5, "miners": {"model": "M", "count": 2}},
                {"id": "G1", "feed": "F", "loop": "L", "limit_kw": float(rng.uniform(1.5, rack_full)),
                 "idle_kw": 0.2, "domain": "d", "gpus": {"model": "H", "count": gpus}},
                {"id": "G2", "feed": "F", "loop": "L", "limit_kw": float(rng.uniform(1.5, rack_full)),
                 "idle_kw": 0.2, "domain": "d", "gpus": {"model": "H", "count": gpus}},
                {"id": "I1", "feed": "F", "loop": "L", "limit_kw": float(rng.uniform(1.0, rack_full)),
                 "idle_kw": 0.1, "gpus": {"model": "H", "count": 2}},
            ]}],
        "training": jobs, "inference": [svc]}


def _splits(total: int, caps: list[int]):
    if len(caps) == 1:
        if total <= caps[0]:
            yield (total,)
        return
    for n in range(min(total, caps[0]) + 1):
        for rest in _splits(total - n, caps[1:]):
            yield (n,) + rest


def brute_force(p: Problem) -> tuple[float, Assignment | None]:
    """The best feasible objective of a tiny problem by enumerating every plan (all job
    placements and levels, every replica count per rack and level, every miner mode mix);
    (-inf, None) when no plan meets every limit and runs every required job."""
    K, C = p.n_racks, p.gpu_perf.shape[1]
    gpu_racks = [k for k in range(K) if p.rack_kind[k] == GPU]
    miner_racks = [k for k in range(K) if p.rack_kind[k] == MINER]
    job_opts = []
    for j in range(len(p.job_ids)):
        opts = [] if p.job_required[j] else [(-1, {})]
        for d in range(len(p.domain_ids)):
            if not p.job_domain_ok(j, d):
                continue
            racks = p.domain_rack_list(d).tolist()
            g = p.domain_model[d]
            for lvl in range(p.job_min_level[j, p.domain_model[d]], p.gpu_n_levels[g]):
                for split in _splits(int(p.job_gpus[j]), [int(p.rack_count[k]) for k in racks]):
                    opts.append((lvl, {k: n for k, n in zip(racks, split) if n}))
        job_opts.append(opts)
    svc_opts = []
    for i in range(len(p.svc_ids)):
        slots = [(k, lvl) for k in gpu_racks if p.svc_rack_ok(i, k)
                 for lvl in range(p.svc_min_level[i, p.rack_model[k]], p.gpu_n_levels[p.rack_model[k]])]
        per_slot = [range(int(p.rack_count[k]) // int(p.svc_gpus_per_replica[i]) + 1) for k, _ in slots]
        svc_opts.append([{s: r for s, r in zip(slots, combo) if r} for combo in itertools.product(*per_slot)])
    miner_opts = []
    for k in miner_racks:
        m = p.rack_model[k]
        nq = int(p.miner_n_modes[m])
        miner_opts.append([c for c in itertools.product(range(int(p.rack_count[k]) + 1), repeat=nq)
                           if sum(c) <= p.rack_count[k]])
    best, best_a = -math.inf, None
    for jobs in itertools.product(*job_opts):
        for svcs in itertools.product(*svc_opts):
            busy = dict.fromkeys(gpu_racks, 0)
            for lvl, place in jobs:
                for k, n in place.items():
                    busy[k] += n
            for i, place in enumerate(svcs):
                for (k, _), r in place.items():
                    busy[k] += r * p.svc_gpus_per_replica[i]
            if any(busy[k] > p.rack_count[k] for k in gpu_racks):
                continue
            for mins in itertools.product(*miner_opts):
                a = Assignment.empty(p)
                for j, (lvl, place) in enumerate(jobs):
                    a.job_level[j] = lvl
                    a.job_place[j] = dict(place)
                for i, place in enumerate(svcs):
                    a.svc_place[i] = dict(place)
                for k, combo in zip(miner_racks, mins):
                    a.miners[k, :len(combo)] = combo
                f = evaluate(p, a)
                if f.objective_usd > best and not violations(p, f):
                    best, best_a = f.objective_usd, a
    return best, best_a
