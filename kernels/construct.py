"""Construction heuristic: a list of increments (start a job, raise a cap, add replicas, switch
miners up a mode) ranked by marginal profit per site kW, applied greedily wherever the tightest
of rack, feed, loop and site headroom allows.

Each item's options (cap levels, miner modes) are reduced to the upper convex hull of
(kW, net USD/h) from "off", so the greedy walks the hull: the first step has the best profit per
kW, later steps are upgrades with decreasing marginal profit per kW.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .core import (MINER_KIND, add_kw, group_change, group_new, job_fits, job_place, job_relevel,
                   job_unplace, rack_usd_per_kwh, units_fit)

JOB_START, JOB_UP, SVC_ADD, SVC_UP, MINER_UP, SVC_ADD_DOM = 0, 1, 2, 3, 4, 5
REQUIRED_SLOPE = 1e30


@njit(cache=True)
def energy_usd_per_kwh(pa):
    """e[g, s]: mean energy cost (USD per rack kWh, cooling included) of model g's racks at site s;
    e[G, s] for miner racks is not needed (they use their own rack)."""
    G = pa.gpu_busy_kw.shape[0]
    S = len(pa.site_lim_kw)
    tot = np.zeros((G, S))
    cnt = np.zeros((G, S))
    for k in range(len(pa.rack_kind)):
        if pa.rack_kind[k] != MINER_KIND:
            g, s = pa.rack_model[k], pa.rack_site[k]
            tot[g, s] += rack_usd_per_kwh(pa, k)
            cnt[g, s] += 1.0
    out = np.full((G, S), np.nan)
    for g in range(G):
        for s in range(S):
            if cnt[g, s] > 0:
                out[g, s] = tot[g, s] / cnt[g, s]
    return out


@njit(cache=True)
def hull(kw, net, lo, hi, out_from, out_to, out_slope):
    """Upper hull from (0, 0) over points lo..hi-1 (kw increasing in index is not assumed);
    writes steps (from, to, slope) with positive slope; returns the number of steps.
    `from` is -1 for the first step (from off)."""
    m = 0
    cur = -1
    ckw, cnet = 0.0, 0.0
    while True:
        best, bslope = -1, 0.0
        for c in range(lo, hi):
            dk = kw[c] - ckw
            if dk <= 1e-12:
                continue
            sl = (net[c] - cnet) / dk
            if sl > bslope + 1e-15 or (best >= 0 and abs(sl - bslope) <= 1e-15 and kw[c] > kw[best]):
                best, bslope = c, sl
        if best < 0:
            return m
        out_from[m], out_to[m], out_slope[m] = cur, best, bslope
        m += 1
        cur, ckw, cnet = best, kw[best], net[best]


@njit(cache=True)
def build_increments(pa):
    """All increments of the problem: (kind, a, b, c, slope), sorted by slope descending."""
    J, G = pa.job_val.shape
    I = len(pa.svc_gpr)
    K = len(pa.rack_kind)
    C = pa.gpu_perf.shape[1]
    Q = pa.mm_kw.shape[1]
    S = len(pa.site_lim_kw)
    cap = J * G * (C + 1) + I * G * (C + 1) + K * (Q + 1) + 1
    kind = np.empty(cap, np.int64)
    a = np.empty(cap, np.int64)
    b = np.empty(cap, np.int64)
    c_ = np.empty(cap, np.int64)
    slope = np.empty(cap, np.float64)
    n = 0
    e = energy_usd_per_kwh(pa)
    kw = np.zeros(max(C, Q))
    net = np.zeros(max(C, Q))
    hf = np.zeros(max(C, Q) + 1, np.int64)
    ht = np.zeros(max(C, Q) + 1, np.int64)
    hs = np.zeros(max(C, Q) + 1)
    has_dom = np.zeros((G, S), np.bool_)
    dom_max = np.zeros((G, S), np.int64)
    for d in range(len(pa.dom_gpus)):
        g, s = pa.dom_model[d], pa.dom_site[d]
        has_dom[g, s] = True
        if pa.dom_gpus[d] > dom_max[g, s]:
            dom_max[g, s] = pa.dom_gpus[d]
    for j in range(J):
        for g in range(G):
            if pa.job_val[j, g] < 0:
                continue
            ej = np.inf
            for s in range(S):
                if pa.job_site_ok[j, s] and has_dom[g, s] and dom_max[g, s] >= pa.job_gpus[j]:
                    if e[g, s] < ej:
                        ej = e[g, s]
            if ej == np.inf:
                continue
            lo, hi = pa.job_minlev[j, g], pa.gpu_nlev[g]
            if lo >= hi:
                continue
            bonus = 0.0
            rd = pa.job_run_dom[j]
            if rd >= 0 and pa.dom_model[rd] == g:
                bonus = pa.job_move_usd[j] / pa.interval_h
            for c in range(lo, hi):
                kw[c] = pa.job_gpus[j] * pa.gpu_busy_kw[g, c]
                net[c] = pa.job_gpus[j] * pa.job_val[j, g] * pa.gpu_perf[g, c] - kw[c] * ej + bonus
            m = hull(kw, net, lo, hi, hf, ht, hs)
            if pa.job_req[j] and m == 0:
                kind[n], a[n], b[n], c_[n], slope[n] = JOB_START, j, g, lo, REQUIRED_SLOPE
                n += 1
            for t in range(m):
                kind[n] = JOB_START if t == 0 else JOB_UP
                a[n], b[n], c_[n] = j, g, ht[t]
                slope[n] = REQUIRED_SLOPE + hs[t] if (t == 0 and pa.job_req[j]) else hs[t]
                n += 1
    for i in range(I):
        for g in range(G):
            if pa.svc_rps[i, g] <= 0:
                continue
            ei = np.inf
            for s in range(S):
                if pa.svc_site_ok[i, s] and e[g, s] < ei:
                    ei = e[g, s]
            if not ei < np.inf:
                continue
            lo, hi = pa.svc_minlev[i, g], pa.gpu_nlev[g]
            for c in range(lo, hi):
                kw[c] = pa.svc_gpr[i] * pa.gpu_busy_kw[g, c]
                net[c] = 3.6 * (pa.svc_val[i] + pa.svc_pen[i]) * pa.svc_rps[i, g] * pa.gpu_perf[g, c] - kw[c] * ei
            m = hull(kw, net, lo, hi, hf, ht, hs)
            for t in range(m):
                kind[n] = SVC_ADD if t == 0 else SVC_UP
                a[n], b[n], c_[n], slope[n] = i, g, ht[t], hs[t]
                n += 1
            if m > 0:
                # replicas on training-domain racks: the GPUs' training value is an opportunity cost
                opp = 0.0      # none when every job that may use model g fits its domains anyway
                want = 0
                for j in range(J):
                    if pa.job_val[j, g] >= 0:
                        want += pa.job_gpus[j]
                        if pa.job_val[j, g] > opp:
                            opp = pa.job_val[j, g]
                have = 0
                for d in range(len(pa.dom_gpus)):
                    if pa.dom_model[d] == g:
                        have += pa.dom_gpus[d]
                if want <= have:
                    opp = 0.0
                c = ht[0]
                kind[n], a[n], b[n], c_[n] = SVC_ADD_DOM, i, g, c
                slope[n] = max((net[c] - pa.svc_gpr[i] * opp) / kw[c], 1e-9)
                n += 1
    for k in range(K):
        if pa.rack_kind[k] != MINER_KIND:
            continue
        mm = pa.rack_model[k]
        ek = rack_usd_per_kwh(pa, k)
        nq = pa.mm_nmodes[mm]
        for q in range(nq):
            kw[q] = pa.mm_kw[mm, q]
            net[q] = pa.mm_th_s[mm, q] * pa.usd_per_th_h - kw[q] * ek
        m = hull(kw, net, 0, nq, hf, ht, hs)
        for t in range(m):
            kind[n], a[n], b[n], c_[n], slope[n] = MINER_UP, k, hf[t], ht[t], hs[t]
            n += 1
    order = np.argsort(-slope[:n], kind="mergesort")
    return kind[:n][order], a[:n][order], b[:n][order], c_[:n][order], slope[:n][order]


@njit(cache=True)
def _try_place_in(pa, st, j, d, lvl, nbuf):
    """Spread job j over domain d's racks at level lvl as far as GPUs and headroom allow;
    keep it and return True when all its GPUs fit."""
    g = pa.dom_model[d]
    bk = pa.gpu_busy_kw[g, lvl]
    need = pa.job_gpus[j]
    R = pa.dom_ptr[d + 1] - pa.dom_ptr[d]
    for r in range(R):
        nbuf[r] = 0
    for r in range(R):
        if need == 0:
            break
        k = pa.dom_racks[pa.dom_ptr[d] + r]
        t = min(pa.rack_count[k] - st.rack_busy[k], need, units_fit(pa, st, k, bk))
        if t > 0:
            nbuf[r] = t
            need -= t
            st.rack_busy[k] += t
            add_kw(pa, st, k, t * bk)
    for r in range(R):  # undo the trial; job_place applies it properly
        if nbuf[r] > 0:
            k = pa.dom_racks[pa.dom_ptr[d] + r]
            st.rack_busy[k] -= nbuf[r]
            add_kw(pa, st, k, -nbuf[r] * bk)
    if need > 0:
        return False
    job_place(pa, st, j, d, lvl, nbuf)
    return True


@njit(cache=True)
def try_run_placement(pa, st, j, lvl):
    """Put job j back exactly where it runs now, at level lvl, if GPUs and limits allow."""
    d = pa.job_run_dom[j]
    for r in range(pa.dom_ptr[d + 1] - pa.dom_ptr[d]):
        k = pa.dom_racks[pa.dom_ptr[d] + r]
        if pa.job_run_n[j, r] > pa.rack_count[k] - st.rack_busy[k]:
            return False
    job_place(pa, st, j, d, lvl, pa.job_run_n[j])
    if job_fits(pa, st, j):
        return True
    job_unplace(pa, st, j)
    return False


@njit(cache=True)
def start_job(pa, st, j, g, lvl, nbuf, cand, min_lvl, site):
    """Schedule job j on a model-g domain at level lvl, or the highest level >= min_lvl that fits:
    where it runs now first, then domains by fewest free GPUs (best fit); site >= 0: only there."""
    rd = pa.job_run_dom[j]
    for lv in range(lvl, min_lvl - 1, -1):
        if rd >= 0 and pa.dom_model[rd] == g and try_run_placement(pa, st, j, lv):
            return True
        nc = 0
        d0, d1 = (pa.site_dom_ptr[site], pa.site_dom_ptr[site + 1]) if site >= 0 else (0, len(pa.dom_gpus))
        for dd in range(d0, d1):
            d = pa.site_doms[dd] if site >= 0 else dd
            if (pa.dom_model[d] == g and pa.job_site_ok[j, pa.dom_site[d]]
                    and st.dom_free[d] >= pa.job_gpus[j] and (site < 0 or pa.dom_site[d] == site)):
                cand[nc] = d
                nc += 1
        # insertion sort by free GPUs (few domains)
        for x in range(1, nc):
            y = x
            while y > 0 and st.dom_free[cand[y - 1]] > st.dom_free[cand[y]]:
                cand[y - 1], cand[y] = cand[y], cand[y - 1]
                y -= 1
        for x in range(nc):
            if _try_place_in(pa, st, j, cand[x], lv, nbuf):
                return True
    return False


@njit(cache=True)
def raise_job(pa, st, j, lvl):
    """Raise scheduled job j towards lvl, to the highest level that keeps all limits."""
    cur = st.job_lvl[j]
    for lv in range(lvl, cur, -1):
        job_relevel(pa, st, j, lv)
        if job_fits(pa, st, j):
            return True
        job_relevel(pa, st, j, cur)
    return False


@njit(cache=True)
def replica_gain_usd(pa, i, k, lv, need_rps, cnt_k, run_k):
    """USD gained over the interval by one more replica of i at (k, lv)."""
    g = pa.rack_model[k]
    rps = pa.svc_rps[i, g] * pa.gpu_perf[g, lv]
    kwr = pa.svc_gpr[i] * pa.gpu_busy_kw[g, lv]
    gain = pa.interval_h * (3.6 * (pa.svc_val[i] + pa.svc_pen[i]) * min(rps, need_rps)
                            - kwr * pa.rack_fac[k] * pa.site_price_usd_per_mwh[pa.rack_site[k]] / 1000.0)
    return gain + (pa.svc_move_usd[i] if cnt_k < run_k else -pa.svc_move_usd[i])


@njit(cache=True)
def _add_on_rack(pa, st, i, k, lv, cnt, run, force, domains):
    """Replicas of i at (k, lv) while they pay: into headroom, or ignoring power with `force`;
    never on a training-domain rack unless `domains`."""
    g = pa.rack_model[k]
    if not pa.svc_site_ok[i, pa.rack_site[k]] or (not domains and pa.rack_domain[k] >= 0):
        return
    free = (pa.rack_count[k] - st.rack_busy[k]) // pa.svc_gpr[i]
    if free <= 0:
        return
    kwr = pa.svc_gpr[i] * pa.gpu_busy_kw[g, lv]
    rps = pa.svc_rps[i, g] * pa.gpu_perf[g, lv]
    nmax = free if force else min(free, units_fit(pa, st, k, kwr))
    need = pa.svc_demand_rps[i] - st.svc_cap_rps[i]
    t = 0
    while t < nmax and need > 1e-9:
        if replica_gain_usd(pa, i, k, lv, need, cnt[k] + t, run[k]) <= 0.0:
            break
        t += 1
        need -= rps
    if t > 0:
        group_new(pa, st, i, k, lv, t)
        cnt[k] += t


@njit(cache=True)
def gpu_opportunity_usd_h(pa, st, g):
    """What a model-g GPU could earn in training: the best value per GPU-h of a waiting job."""
    best = 0.0
    for j in range(len(st.job_dom)):
        if st.job_dom[j] < 0 and pa.job_val[j, g] > best:
            best = pa.job_val[j, g]
    return best


@njit(cache=True)
def _upgrade_all(pa, st, i, g, lv, extra_usd_h, k_ref):
    """Raise replicas of i (any model) while that costs less per rps than a new replica at
    (model g, level lv) whose hourly cost is its energy on rack k_ref plus extra_usd_h."""
    e = rack_usd_per_kwh(pa, k_ref)
    add_cost = (pa.svc_gpr[i] * pa.gpu_busy_kw[g, lv] * e + extra_usd_h) / (pa.svc_rps[i, g] * pa.gpu_perf[g, lv])
    for g2 in range(pa.svc_rps.shape[1]):
        if pa.svc_rps[i, g2] > 0 and _below_top(pa, st, i, g2):
            for up in range(pa.svc_minlev[i, g2] + 1, pa.gpu_nlev[g2]):
                upgrade_replicas(pa, st, i, g2, up, add_cost)


@njit(cache=True)
def _below_top(pa, st, i, g):
    """Does service i have replicas on model-g racks below the model's top level? (If not, no
    upgrade of i on model g can apply: upgrades only create model-g replicas.)"""
    top = pa.gpu_nlev[g] - 1
    g_svc, g_n, g_lvl, g_rack, rack_model = st.g_svc, st.g_n, st.g_lvl, st.g_rack, pa.rack_model
    for x in range(st.ng[0]):
        if g_svc[x] == i and g_n[x] > 0 and g_lvl[x] < top and rack_model[g_rack[x]] == g:
            return True
    return False


@njit(cache=True)
def add_replicas(pa, st, i, g, lv, cnt, run, force, domains):
    """Add replicas of service i at level lv on model-g racks while they pay and fit (with
    `force`, while they pay and GPUs are free: shedding follows); training-domain racks only
    with `domains`. Order: racks where it runs now; then, unless raising caps of its replicas is
    cheaper per rps than starting new ones (energy + move cost), racks outside training domains;
    then, unless raising caps is cheaper than also taking GPUs a waiting job could use, domain
    racks."""
    if pa.svc_demand_rps[i] - st.svc_cap_rps[i] <= 1e-9:
        return
    for x in range(st.ng[0]):
        if st.g_svc[x] == i:
            cnt[st.g_rack[x]] += st.g_n[x]
    for e in range(pa.svc_run_ptr[i], pa.svc_run_ptr[i + 1]):
        run[pa.svc_run_rack[e]] = pa.svc_run_reps[e]
    for e in range(pa.svc_run_ptr[i], pa.svc_run_ptr[i + 1]):
        k = pa.svc_run_rack[e]
        if pa.rack_model[k] == g and cnt[k] < run[k] and lv >= pa.svc_minlev[i, g]:
            _add_on_rack(pa, st, i, k, lv, cnt, run, force, domains)
    x0, x1 = pa.model_rack_ptr[g], pa.model_rack_ptr[g + 1]
    if x1 > x0 and not force and pa.svc_move_usd[i] > 0:
        _upgrade_all(pa, st, i, g, lv, pa.svc_move_usd[i] / pa.interval_h, pa.model_racks[x0])
    opp = -1.0
    demand, cap, model_racks, rack_domain = pa.svc_demand_rps[i], st.svc_cap_rps, pa.model_racks, pa.rack_domain
    rack_count, rack_busy, rack_site, site_ok, gpr = pa.rack_count, st.rack_busy, pa.rack_site, pa.svc_site_ok, pa.svc_gpr[i]
    for x in range(x0, x1):
        if demand - cap[i] <= 1e-9:
            break
        k = model_racks[x]
        if rack_domain[k] >= 0:
            if not domains:
                break           # domain racks come last in the model's rack order
            if opp < 0 and not force:
                opp = gpu_opportunity_usd_h(pa, st, g)
                _upgrade_all(pa, st, i, g, lv, pa.svc_move_usd[i] / pa.interval_h + pa.svc_gpr[i] * opp, k)
        if rack_count[k] - rack_busy[k] < gpr or not site_ok[i, rack_site[k]]:
            continue            # no replica fits (what _add_on_rack checks first), without the call
        _add_on_rack(pa, st, i, k, lv, cnt, run, force, domains)
    for x in range(st.ng[0]):
        cnt[st.g_rack[x]] = 0
    for e in range(pa.svc_run_ptr[i], pa.svc_run_ptr[i + 1]):
        run[pa.svc_run_rack[e]] = 0


@njit(cache=True)
def upgrade_replicas(pa, st, i, g, lv, max_usd_per_rps):
    """Raise replicas of service i on model-g racks to level lv while demand is unmet and the
    upgrade pays, and (when finite) costs less than max_usd_per_rps (USD/h per rps gained)."""
    demand, cap, rack_model = pa.svc_demand_rps[i], st.svc_cap_rps, pa.rack_model
    g_svc, g_n, g_lvl, g_rack = st.g_svc, st.g_n, st.g_lvl, st.g_rack
    for x in range(st.ng[0]):
        need = demand - cap[i]
        if need <= 1e-9:
            return
        if g_svc[x] != i or g_n[x] <= 0 or g_lvl[x] >= lv:
            continue
        k = g_rack[x]
        if rack_model[k] != g:
            continue
        cur = st.g_lvl[x]
        dk = pa.svc_gpr[i] * (pa.gpu_busy_kw[g, lv] - pa.gpu_busy_kw[g, cur])
        drps = pa.svc_rps[i, g] * (pa.gpu_perf[g, lv] - pa.gpu_perf[g, cur])
        if drps <= 0:
            continue
        e = rack_usd_per_kwh(pa, k)
        gain = 3.6 * (pa.svc_val[i] + pa.svc_pen[i]) * min(drps, need) - dk * e
        if gain <= 0 or dk * e / drps >= max_usd_per_rps:
            continue
        u = min(st.g_n[x], units_fit(pa, st, k, dk), int(np.ceil(need / drps - 1e-9)))
        if u <= 0:
            continue
        group_change(pa, st, x, -u)
        group_new(pa, st, i, k, lv, u)


@njit(cache=True)
def miner_up(pa, st, k, qf, qt):
    """Move as many miners of rack k from mode qf (-1 = off) to qt as headroom allows."""
    mm = pa.rack_model[k]
    if qf < 0:
        on = 0
        for q in range(pa.mm_nmodes[mm]):
            on += st.miners[k, q]
        avail = pa.rack_count[k] - on
        dk = pa.mm_kw[mm, qt]
    else:
        avail = st.miners[k, qf]
        dk = pa.mm_kw[mm, qt] - pa.mm_kw[mm, qf]
    if avail <= 0:
        return
    t = min(avail, units_fit(pa, st, k, dk))
    if t > 0:
        if qf >= 0:
            st.miners[k, qf] -= t
        st.miners[k, qt] += t
        add_kw(pa, st, k, t * dk)


@njit(cache=True)
def fill(pa, st, kind, a, b, c, slope, nbuf, cand, cnt, run, site):
    """Apply every increment, in order, that fits the current headroom (the greedy). With
    site >= 0, miner increments of other sites are skipped (their headroom did not change)."""
    for x in range(len(kind)):
        t = kind[x]
        if t == MINER_UP and site >= 0 and pa.rack_site[a[x]] != site:
            continue
        if t == JOB_START:
            j = a[x]
            if st.job_dom[j] < 0 and (site < 0 or pa.job_site_ok[j, site]):
                start_job(pa, st, j, b[x], c[x], nbuf, cand, pa.job_minlev[j, b[x]], site)
        elif t == JOB_UP:
            j = a[x]
            d = st.job_dom[j]
            if d >= 0 and pa.dom_model[d] == b[x] and st.job_lvl[j] < c[x] and (site < 0 or pa.dom_site[d] == site):
                raise_job(pa, st, j, c[x])
        elif t == SVC_ADD or t == SVC_ADD_DOM:
            if site < 0 or pa.svc_site_ok[a[x], site]:
                add_replicas(pa, st, a[x], b[x], c[x], cnt, run, False, t == SVC_ADD_DOM)
        elif t == SVC_UP:
            if site < 0 or pa.svc_site_ok[a[x], site]:
                upgrade_replicas(pa, st, a[x], b[x], c[x], np.inf)
        elif t == MINER_UP:
            miner_up(pa, st, a[x], b[x], c[x])


@njit(cache=True)
def force_services(pa, st, kind, a, b, c, cnt, run, site, only):
    """Re-add replicas of every service (allowed at `site` if >= 0; only service `only` if >= 0)
    short of demand on free GPUs, ignoring power headroom (the caller sheds afterwards), racks
    outside training domains first: what an eviction or a full loop took away gets a chance."""
    for domains in (False, True):
        for x in range(len(kind)):
            if kind[x] == SVC_ADD and (site < 0 or pa.svc_site_ok[a[x], site]) and (only < 0 or a[x] == only):
                add_replicas(pa, st, a[x], b[x], c[x], cnt, run, True, domains)
