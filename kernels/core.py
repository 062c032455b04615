"""Shared `@njit` primitives on (`ProblemArrays`, `PlanState`): keeping power figures in step
with decisions, headroom, and the plan's objective (SPEC sections 3-4).

All functions are pure array code; callers own allocation.
"""
from __future__ import annotations

import numpy as np
from numba import njit

TOL_KW = 1e-7        # a limit counts as met up to this (the verifier allows 1e-6)
MINER_KIND = 1
BIG = 1 << 40        # "unlimited" count


@njit(cache=True, inline="always")
def add_kw(pa, st, k, dkw):
    """Add dkw to rack k and to its feed, loop and site (site kW includes cooling)."""
    st.rack_kw[k] += dkw
    st.feed_kw[pa.rack_feed[k]] += dkw
    st.loop_kw[pa.rack_loop[k]] += dkw
    st.site_kw[pa.rack_site[k]] += dkw * pa.rack_fac[k]


@njit(cache=True, inline="always")
def headroom_kw(pa, st, k):
    """Rack kW that rack k may still add under the tightest of rack, feed, loop and site."""
    h = pa.rack_lim_kw[k] - st.rack_kw[k]
    f = pa.feed_lim_kw[pa.rack_feed[k]] - st.feed_kw[pa.rack_feed[k]]
    if f < h:
        h = f
    lo = pa.loop_cap_kw[pa.rack_loop[k]] - st.loop_kw[pa.rack_loop[k]]
    if lo < h:
        h = lo
    s = (pa.site_lim_kw[pa.rack_site[k]] - st.site_kw[pa.rack_site[k]]) / pa.rack_fac[k]
    if s < h:
        h = s
    return h + TOL_KW * 0.5


@njit(cache=True, inline="always")
def units_fit(pa, st, k, unit_kw):
    """How many units of unit_kw rack k can add now."""
    if unit_kw <= 0.0:
        return BIG
    h = headroom_kw(pa, st, k)
    if h < 0.0:
        return 0
    return int(h / unit_kw)


@njit(cache=True, inline="always")
def rack_usd_per_kwh(pa, k):
    """USD one rack kWh on rack k costs in energy, its cooling included."""
    return pa.rack_fac[k] * pa.site_price_usd_per_mwh[pa.rack_site[k]] / 1000.0


@njit(cache=True, inline="always")
def rack_ok(pa, st, k):
    """Rack k, its feed, loop and site are within their limits."""
    return (st.rack_kw[k] <= pa.rack_lim_kw[k] + TOL_KW
            and st.feed_kw[pa.rack_feed[k]] <= pa.feed_lim_kw[pa.rack_feed[k]] + TOL_KW
            and st.loop_kw[pa.rack_loop[k]] <= pa.loop_cap_kw[pa.rack_loop[k]] + TOL_KW
            and st.site_kw[pa.rack_site[k]] <= pa.site_lim_kw[pa.rack_site[k]] + TOL_KW)


@njit(cache=True)
def all_ok(pa, st):
    for k in range(len(st.rack_kw)):
        if st.rack_kw[k] > pa.rack_lim_kw[k] + TOL_KW:
            return False
        if st.rack_busy[k] > pa.rack_count[k] and pa.rack_kind[k] != MINER_KIND:
            return False
    for f in range(len(st.feed_kw)):
        if st.feed_kw[f] > pa.feed_lim_kw[f] + TOL_KW:
            return False
    for lo in range(len(st.loop_kw)):
        if st.loop_kw[lo] > pa.loop_cap_kw[lo] + TOL_KW:
            return False
    for s in range(len(st.site_kw)):
        if st.site_kw[s] > pa.site_lim_kw[s] + TOL_KW:
            return False
    return True


@njit(cache=True)
def job_domain_ok(pa, j, d):
    """Can job j run in domain d (model allowed, site allowed, enough GPUs, a cap level allowed)?"""
    g = pa.dom_model[d]
    return (pa.job_val[j, g] >= 0 and pa.job_site_ok[j, pa.dom_site[d]]
            and pa.dom_gpus[d] >= pa.job_gpus[j] and pa.job_minlev[j, g] < pa.gpu_nlev[g])


@njit(cache=True)
def job_rack(pa, st, j, r):
    d = st.job_dom[j]
    return pa.dom_racks[pa.dom_ptr[d] + r]


@njit(cache=True)
def job_racks_n(pa, d):
    return pa.dom_ptr[d + 1] - pa.dom_ptr[d]


@njit(cache=True)
def job_unplace(pa, st, j):
    """Stop job j (no-op when not scheduled)."""
    d = st.job_dom[j]
    if d < 0:
        return
    g = pa.dom_model[d]
    bk = pa.gpu_busy_kw[g, st.job_lvl[j]]
    for r in range(pa.dom_ptr[d + 1] - pa.dom_ptr[d]):
        n = st.job_n[j, r]
        if n > 0:
            k = pa.dom_racks[pa.dom_ptr[d] + r]
            st.rack_busy[k] -= n
            add_kw(pa, st, k, -n * bk)
            st.job_n[j, r] = 0
    st.dom_free[d] += pa.job_gpus[j]
    st.job_dom[j] = -1
    st.job_lvl[j] = -1


@njit(cache=True)
def job_place(pa, st, j, d, lvl, n):
    """Schedule job j in domain d at level lvl with n[r] GPUs at domain position r."""
    g = pa.dom_model[d]
    bk = pa.gpu_busy_kw[g, lvl]
    tot = 0
    for r in range(pa.dom_ptr[d + 1] - pa.dom_ptr[d]):
        if n[r] > 0:
            k = pa.dom_racks[pa.dom_ptr[d] + r]
            st.rack_busy[k] += n[r]
            add_kw(pa, st, k, n[r] * bk)
            st.job_n[j, r] = n[r]
            tot += n[r]
    st.dom_free[d] -= tot
    st.job_dom[j] = d
    st.job_lvl[j] = lvl


@njit(cache=True)
def job_relevel(pa, st, j, lvl):
    """Move scheduled job j to cap level lvl."""
    d = st.job_dom[j]
    g = pa.dom_model[d]
    dk = pa.gpu_busy_kw[g, lvl] - pa.gpu_busy_kw[g, st.job_lvl[j]]
    for r in range(pa.dom_ptr[d + 1] - pa.dom_ptr[d]):
        n = st.job_n[j, r]
        if n > 0:
            add_kw(pa, st, pa.dom_racks[pa.dom_ptr[d] + r], n * dk)
    st.job_lvl[j] = lvl


@njit(cache=True)
def job_fits(pa, st, j):
    d = st.job_dom[j]
    for r in range(pa.dom_ptr[d + 1] - pa.dom_ptr[d]):
        if st.job_n[j, r] > 0 and not rack_ok(pa, st, pa.dom_racks[pa.dom_ptr[d] + r]):
            return False
    return True


@njit(cache=True)
def group_change(pa, st, x, dn):
    """Add dn replicas (may be negative) to group x."""
    i, k, lv = st.g_svc[x], st.g_rack[x], st.g_lvl[x]
    g = pa.rack_model[k]
    st.g_n[x] += dn
    st.rack_busy[k] += dn * pa.svc_gpr[i]
    add_kw(pa, st, k, dn * pa.svc_gpr[i] * pa.gpu_busy_kw[g, lv])
    st.svc_cap_rps[i] += dn * pa.svc_rps[i, g] * pa.gpu_perf[g, lv]
    d = pa.rack_domain[k]
    if d >= 0:
        st.dom_free[d] -= dn * pa.svc_gpr[i]


@njit(cache=True)
def compact_groups(st):
    """Drop empty groups (keeps order)."""
    m = 0
    for x in range(st.ng[0]):
        if st.g_n[x] > 0:
            st.g_svc[m], st.g_rack[m], st.g_lvl[m], st.g_n[m] = st.g_svc[x], st.g_rack[x], st.g_lvl[x], st.g_n[x]
            m += 1
    st.ng[0] = m


@njit(cache=True)
def group_new(pa, st, i, k, lv, n):
    """Append a group of n replicas of service i on rack k at level lv; returns its index."""
    if st.ng[0] >= len(st.g_n):
        compact_groups(st)
    x = st.ng[0]
    st.ng[0] += 1
    st.g_svc[x], st.g_rack[x], st.g_lvl[x], st.g_n[x] = i, k, lv, 0
    group_change(pa, st, x, n)
    return x


@njit(cache=True)
def recompute(pa, st):
    """Rebuild every figure of st from its decisions (removes float drift)."""
    # fields bound to locals once: each StructRef field read in a loop costs a refcount pair
    rack_busy, rack_kw, dom_free, svc_cap = st.rack_busy, st.rack_kw, st.dom_free, st.svc_cap_rps
    feed_kw, loop_kw, site_kw = st.feed_kw, st.loop_kw, st.site_kw
    rack_kind, rack_model, rack_domain = pa.rack_kind, pa.rack_model, pa.rack_domain
    busy_kw, dom_racks, dom_ptr, svc_gpr = pa.gpu_busy_kw, pa.dom_racks, pa.dom_ptr, pa.svc_gpr
    rack_busy[:] = 0
    rack_kw[:] = pa.rack_base_kw
    feed_kw[:] = 0.0
    loop_kw[:] = 0.0
    site_kw[:] = pa.site_base_kw
    svc_cap[:] = 0.0
    dom_free[:] = pa.dom_gpus
    K = len(rack_kind)
    miners, mm_nmodes, mm_kw = st.miners, pa.mm_nmodes, pa.mm_kw
    for k in range(K):
        if rack_kind[k] == MINER_KIND:
            mm = rack_model[k]
            for q in range(mm_nmodes[mm]):
                rack_kw[k] += miners[k, q] * mm_kw[mm, q]
    job_dom, job_lvl, job_n, dom_model = st.job_dom, st.job_lvl, st.job_n, pa.dom_model
    for j in range(len(job_dom)):
        d = job_dom[j]
        if d < 0:
            continue
        bk = busy_kw[dom_model[d], job_lvl[j]]
        for r in range(dom_ptr[d + 1] - dom_ptr[d]):
            n = job_n[j, r]
            if n > 0:
                k = dom_racks[dom_ptr[d] + r]
                rack_busy[k] += n
                rack_kw[k] += n * bk
                dom_free[d] -= n
    g_svc, g_rack, g_lvl, g_n = st.g_svc, st.g_rack, st.g_lvl, st.g_n
    svc_rps, gpu_perf = pa.svc_rps, pa.gpu_perf
    si, cap = -1, 0.0       # svc_cap[si] kept in a register while groups of one service follow
    for x in range(st.ng[0]):
        n = g_n[x]
        if n <= 0:
            continue
        i, k, lv = g_svc[x], g_rack[x], g_lvl[x]
        g = rack_model[k]
        rack_busy[k] += n * svc_gpr[i]
        rack_kw[k] += n * svc_gpr[i] * busy_kw[g, lv]
        if i != si:
            if si >= 0:
                svc_cap[si] = cap
            si = i
            cap = svc_cap[i]
        cap += n * svc_rps[i, g] * gpu_perf[g, lv]
        d = rack_domain[k]
        if d >= 0:
            dom_free[d] -= n * svc_gpr[i]
    if si >= 0:
        svc_cap[si] = cap
    rack_feed, rack_loop, rack_site, rack_fac = pa.rack_feed, pa.rack_loop, pa.rack_site, pa.rack_fac
    # the same additions in the same order, kept in registers while consecutive racks share a
    # feed, loop or site (a chain of adds through memory is what made this loop slow)
    f, lo, s = -1, -1, -1
    fsum, lsum, ssum = 0.0, 0.0, 0.0
    for k in range(K):
        if rack_feed[k] != f:
            if f >= 0:
                feed_kw[f] = fsum
            f = rack_feed[k]
            fsum = feed_kw[f]
        if rack_loop[k] != lo:
            if lo >= 0:
                loop_kw[lo] = lsum
            lo = rack_loop[k]
            lsum = loop_kw[lo]
        if rack_site[k] != s:
            if s >= 0:
                site_kw[s] = ssum
            s = rack_site[k]
            ssum = site_kw[s]
        fsum += rack_kw[k]
        lsum += rack_kw[k]
        ssum += rack_kw[k] * rack_fac[k]
    if K > 0:
        feed_kw[f] = fsum
        loop_kw[lo] = lsum
        site_kw[s] = ssum


@njit(cache=True)
def job_rate(pa, j, d, lvl):
    g = pa.dom_model[d]
    return pa.job_gpus[j] * pa.job_val[j, g] * pa.gpu_perf[g, lvl]


@njit(cache=True)
def job_moved(pa, st, j):
    """Does job j's plan differ from where it runs now (SPEC 4 moves)?"""
    rd = pa.job_run_dom[j]
    if rd < 0:
        return False
    if st.job_dom[j] != rd:
        return True
    for r in range(pa.job_run_n.shape[1]):
        if st.job_n[j, r] != pa.job_run_n[j, r]:
            return True
    return False


@njit(cache=True)
def svc_move_replicas(pa, st, out):
    """out[i] = Σ_k |replicas(i,k) − running(i,k)|. Groups are bucketed by service (a counting
    sort) and each service's net replicas per rack summed in a rack-indexed scratch array."""
    K = len(pa.rack_kind)
    I = len(pa.svc_gpr)
    m = st.ng[0]
    g_svc, g_rack, g_n = st.g_svc, st.g_rack, st.g_n
    run_ptr, run_rack, run_reps = pa.svc_run_ptr, pa.svc_run_rack, pa.svc_run_reps
    ptr = np.zeros(I + 1, np.int64)
    for x in range(m):
        ptr[g_svc[x] + 1] += 1
    for i in range(I):
        ptr[i + 1] += ptr[i]
    order = np.empty(m, np.int64)
    pos = ptr[:-1].copy()
    for x in range(m):
        order[pos[g_svc[x]]] = x
        pos[g_svc[x]] += 1
    net = np.zeros(K, np.int64)
    for i in range(I):
        for y in range(ptr[i], ptr[i + 1]):
            net[g_rack[order[y]]] += g_n[order[y]]
        for e in range(run_ptr[i], run_ptr[i + 1]):
            net[run_rack[e]] -= run_reps[e]
        tot = 0
        for y in range(ptr[i], ptr[i + 1]):     # each rack counted once: zeroed when read
            k = g_rack[order[y]]
            tot += abs(net[k])
            net[k] = 0
        for e in range(run_ptr[i], run_ptr[i + 1]):
            k = run_rack[e]
            tot += abs(net[k])
            net[k] = 0
        out[i] = tot


@njit(cache=True)
def objective_usd(pa, st):
    """SPEC 4 objective of st: interval_h * rate − moves."""
    rate = 0.0
    moves = 0.0
    job_dom = st.job_dom
    for j in range(len(job_dom)):
        d = job_dom[j]
        if d >= 0:
            rate += job_rate(pa, j, d, st.job_lvl[j])
        if job_moved(pa, st, j):
            moves += pa.job_move_usd[j]
    demand, cap, val, pen = pa.svc_demand_rps, st.svc_cap_rps, pa.svc_val, pa.svc_pen
    for i in range(len(demand)):
        s = min(demand[i], cap[i])
        rate += 3.6 * s * val[i] - 3.6 * (demand[i] - s) * pen[i]
    rack_kind, rack_model, nmodes, miners, th_s = pa.rack_kind, pa.rack_model, pa.mm_nmodes, st.miners, pa.mm_th_s
    usd_th = pa.usd_per_th_h
    for k in range(len(rack_kind)):
        if rack_kind[k] == MINER_KIND:
            mm = rack_model[k]
            for q in range(nmodes[mm]):
                rate += miners[k, q] * th_s[mm, q] * usd_th
    site_kw, price = st.site_kw, pa.site_price_usd_per_mwh
    for s in range(len(site_kw)):
        rate -= site_kw[s] / 1000.0 * price[s]
    sm = np.zeros(len(pa.svc_gpr), np.int64)
    svc_move_replicas(pa, st, sm)
    for i in range(len(sm)):
        moves += sm[i] * pa.svc_move_usd[i]
    return pa.interval_h * rate - moves
