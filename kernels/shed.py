"""Shedding: from a plan that breaks limits (a lower grid limit, a derated loop, a lost feed, a
previous interval's plan), take away the least valuable power until every limit holds.

Each step fixes the narrowest broken limit (rack, then feed and loop, then site) with the action
losing the least USD per useful kW it frees there (kW beyond the deficit do not count, so a big
action is not preferred just because it frees much): switching miners down a mode or off, lowering a GPU
cap level (a training job, or replicas), removing replicas, stopping a job (required jobs never).
Losses include move costs against where things run now.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .core import (MINER_KIND, TOL_KW, add_kw, group_change, group_new, job_moved, job_relevel,
                   job_unplace)

R_RACK, R_FEED, R_LOOP, R_SITE = 0, 1, 2, 3
A_MINER, A_JOB_LVL, A_JOB_STOP, A_GRP_LVL, A_GRP_DEL = 0, 1, 2, 3, 4


@njit(cache=True)
def worst_violation(pa, st):
    """(resource kind, index, deficit in that resource's kW); kind -1 when all limits hold."""
    rack_kw, rack_lim = st.rack_kw, pa.rack_lim_kw
    for k in range(len(rack_kw)):
        dv = rack_kw[k] - rack_lim[k]
        if dv > TOL_KW:
            return R_RACK, k, dv
    bt, bi, bd = -1, -1, 0.0
    feed_kw, feed_lim = st.feed_kw, pa.feed_lim_kw
    for f in range(len(feed_kw)):
        dv = feed_kw[f] - feed_lim[f]
        if dv > TOL_KW and dv > bd:
            bt, bi, bd = R_FEED, f, dv
    loop_kw, loop_cap = st.loop_kw, pa.loop_cap_kw
    for lo in range(len(loop_kw)):
        dv = loop_kw[lo] - loop_cap[lo]
        if dv > TOL_KW and dv > bd:
            bt, bi, bd = R_LOOP, lo, dv
    if bt >= 0:
        return bt, bi, bd
    site_kw, site_lim = st.site_kw, pa.site_lim_kw
    for s in range(len(site_kw)):
        dv = site_kw[s] - site_lim[s]
        if dv > TOL_KW and dv > bd:
            bt, bi, bd = R_SITE, s, dv
    return bt, bi, bd


@njit(cache=True, inline="always")
def _weight(rt, ri, k, rack_feed, rack_loop, rack_site, rack_fac):
    """kW freed on resource (rt, ri) per rack kW freed on rack k (0 when k is not on it); the
    rack arrays are bound by the caller (no StructRef reads in a scan's inner loop)."""
    if rt == R_RACK:
        return 1.0 if k == ri else 0.0
    if rt == R_FEED:
        return 1.0 if rack_feed[k] == ri else 0.0
    if rt == R_LOOP:
        return 1.0 if rack_loop[k] == ri else 0.0
    return rack_fac[k] if rack_site[k] == ri else 0.0


@njit(cache=True, inline="always")
def _energy(interval_h, dkw, fac, price):
    """USD over the interval that dkw rack kW cost in energy (cooling included), from the rack's
    factor and its site's price."""
    return interval_h * dkw * fac * price / 1000.0


@njit(cache=True)
def served_loss_usd(pa, st, i, dcap):
    """USD lost over the interval when service i's capacity drops by dcap rps."""
    cap = st.svc_cap_rps[i]
    d = pa.svc_demand_rps[i]
    lost = min(d, cap) - min(d, max(cap - dcap, 0.0))
    return pa.interval_h * 3.6 * (pa.svc_val[i] + pa.svc_pen[i]) * lost


@njit(cache=True)
def running_on(pa, i, k):
    for e in range(pa.svc_run_ptr[i], pa.svc_run_ptr[i + 1]):
        if pa.svc_run_rack[e] == k:
            return pa.svc_run_reps[e]
    return 0


@njit(cache=True)
def shed(pa, st, keep_job, keep_level):
    """Shed until all power limits hold; returns False when nothing more can be shed.
    Job `keep_job` is never stopped, job `keep_level` never lowered (-1: none)."""
    J = len(st.job_dom)
    # fields read in the scans bound once (each StructRef field read costs a refcount pair)
    ih, usd_th, price = pa.interval_h, pa.usd_per_th_h, pa.site_price_usd_per_mwh
    rack_kind, rack_model, rack_site, rack_fac, site_racks = (pa.rack_kind, pa.rack_model, pa.rack_site,
                                                              pa.rack_fac, pa.site_racks)
    rack_feed, rack_loop = pa.rack_feed, pa.rack_loop
    mm_nmodes, mm_kw, mm_th_s, miners = pa.mm_nmodes, pa.mm_kw, pa.mm_th_s, st.miners
    job_dom, job_lvl, job_n = st.job_dom, st.job_lvl, st.job_n
    dom_site, dom_model, dom_ptr, dom_racks = pa.dom_site, pa.dom_model, pa.dom_ptr, pa.dom_racks
    busy_kw, gpu_perf = pa.gpu_busy_kw, pa.gpu_perf
    g_svc, g_lvl, g_rack, g_n = st.g_svc, st.g_lvl, st.g_rack, st.g_n
    svc_gpr, svc_rps, svc_minlev = pa.svc_gpr, pa.svc_rps, pa.svc_minlev
    while True:
        rt, ri, deficit = worst_violation(pa, st)
        if rt < 0:
            return True
        best_ratio = np.inf
        bact, bx, by, bz, bunits = -1, -1, -1, -1, 0
        # miners on the broken resource
        if rt == R_RACK:
            rl0, rl1 = ri, ri + 1
            site = pa.rack_site[ri]
        else:
            site = ri if rt == R_SITE else (pa.feed_site[ri] if rt == R_FEED else pa.loop_site[ri])
            rl0, rl1 = pa.site_rack_ptr[site], pa.site_rack_ptr[site + 1]
        for xx in range(rl0, rl1):
            k = ri if rt == R_RACK else site_racks[xx]
            if rack_kind[k] != MINER_KIND:
                continue
            w = _weight(rt, ri, k, rack_feed, rack_loop, rack_site, rack_fac)
            if w <= 0.0:
                continue
            mm = rack_model[k]
            nq = mm_nmodes[mm]
            for qf in range(nq):
                if miners[k, qf] <= 0:
                    continue
                for qt in range(-1, nq):
                    kt = 0.0 if qt < 0 else mm_kw[mm, qt]
                    tt = 0.0 if qt < 0 else mm_th_s[mm, qt]
                    dk = mm_kw[mm, qf] - kt
                    if dk <= 1e-12:
                        continue
                    loss = ih * (mm_th_s[mm, qf] - tt) * usd_th - _energy(ih, dk, rack_fac[k], price[rack_site[k]])
                    ratio = loss / min(dk * w, deficit)
                    if ratio < best_ratio:
                        best_ratio = ratio
                        bact, bx, by, bz = A_MINER, k, qf, qt
                        bunits = min(miners[k, qf], int(np.ceil(deficit / (dk * w) - 1e-12)))
        # training jobs
        for j in range(J):
            d = job_dom[j]
            if d < 0 or dom_site[d] != site:
                continue
            g = dom_model[d]
            lv = job_lvl[j]
            wkw = 0.0   # busy GPU count weighted by the resource
            ekw = 0.0   # energy USD per busy kW... accumulated per rack
            for r in range(dom_ptr[d + 1] - dom_ptr[d]):
                n = job_n[j, r]
                if n > 0:
                    k = dom_racks[dom_ptr[d] + r]
                    wkw += n * _weight(rt, ri, k, rack_feed, rack_loop, rack_site, rack_fac)
                    ekw += _energy(ih, n, rack_fac[k], price[rack_site[k]])
            if wkw <= 0.0:
                continue
            val = pa.job_gpus[j] * pa.job_val[j, g]
            for lt in range(pa.job_minlev[j, g], lv if j != keep_level else 0):
                dbk = busy_kw[g, lv] - busy_kw[g, lt]
                if dbk <= 1e-12:
                    continue
                loss = ih * val * (gpu_perf[g, lv] - gpu_perf[g, lt]) - ekw * dbk
                ratio = loss / min(wkw * dbk, deficit)
                if ratio < best_ratio:
                    best_ratio = ratio
                    bact, bx, by, bz, bunits = A_JOB_LVL, j, lt, 0, 1
            if not pa.job_req[j] and j != keep_job:
                bk = busy_kw[g, lv]
                loss = ih * val * gpu_perf[g, lv] - ekw * bk
                if pa.job_run_dom[j] >= 0 and not job_moved(pa, st, j):
                    loss += pa.job_move_usd[j]
                ratio = loss / min(wkw * bk, deficit)
                if ratio < best_ratio:
                    best_ratio = ratio
                    bact, bx, by, bz, bunits = A_JOB_STOP, j, 0, 0, 1
        # inference groups
        for x in range(st.ng[0]):
            n = g_n[x]
            if n <= 0:
                continue
            k = g_rack[x]
            if rack_site[k] != site:
                continue
            w = _weight(rt, ri, k, rack_feed, rack_loop, rack_site, rack_fac)
            if w <= 0.0:
                continue
            i, lv = g_svc[x], g_lvl[x]
            g = rack_model[k]
            gpr = svc_gpr[i]
            rps = svc_rps[i, g]
            for lt in range(svc_minlev[i, g], lv):
                dk = gpr * (busy_kw[g, lv] - busy_kw[g, lt])
                if dk <= 1e-12:
                    continue
                u = min(n, int(np.ceil(deficit / (dk * w) - 1e-12)))
                loss = served_loss_usd(pa, st, i, u * rps * (gpu_perf[g, lv] - gpu_perf[g, lt])) \
                    - _energy(ih, u * dk, rack_fac[k], price[rack_site[k]])
                ratio = loss / min(u * dk * w, deficit)
                if ratio < best_ratio:
                    best_ratio = ratio
                    bact, bx, by, bz, bunits = A_GRP_LVL, x, lt, 0, u
            dk = gpr * busy_kw[g, lv]
            u = min(n, int(np.ceil(deficit / (dk * w) - 1e-12)))
            loss = served_loss_usd(pa, st, i, u * rps * gpu_perf[g, lv]) - _energy(ih, u * dk, rack_fac[k],
                                                                                 price[rack_site[k]])
            if running_on(pa, i, k) > 0:
                loss += u * pa.svc_move_usd[i]
            ratio = loss / min(u * dk * w, deficit)
            if ratio < best_ratio:
                best_ratio = ratio
                bact, bx, by, bz, bunits = A_GRP_DEL, x, 0, 0, u
        if bact < 0:
            return False
        if bact == A_MINER:
            # the same switch on every rack that loses as little per kW (same model, cooling and
            # price) and sits on the broken resource, until the deficit is covered
            k0, qf, qt = bx, by, bz
            mm = pa.rack_model[k0]
            dk = pa.mm_kw[mm, qf] - (0.0 if qt < 0 else pa.mm_kw[mm, qt])
            left = deficit
            for xx in range(rl0, rl1):
                k = ri if rt == R_RACK else pa.site_racks[xx]
                if k != k0 and (pa.rack_kind[k] != MINER_KIND or pa.rack_model[k] != mm
                                or pa.rack_fac[k] != pa.rack_fac[k0] or st.miners[k, qf] <= 0):
                    continue
                w = _weight(rt, ri, k, rack_feed, rack_loop, rack_site, rack_fac)
                if w <= 0.0:
                    continue
                u = min(st.miners[k, qf], int(np.ceil(left / (dk * w) - 1e-12)))
                st.miners[k, qf] -= u
                if qt >= 0:
                    st.miners[k, qt] += u
                add_kw(pa, st, k, -u * dk)
                left -= u * dk * w
                if left <= TOL_KW:
                    break
        elif bact == A_JOB_LVL:
            job_relevel(pa, st, bx, by)
        elif bact == A_JOB_STOP:
            job_unplace(pa, st, bx)
        elif bact == A_GRP_LVL:
            x = bx
            group_change(pa, st, x, -bunits)
            if st.g_n[x] == 0:
                st.g_lvl[x] = by
                group_change(pa, st, x, bunits)
            else:
                group_new(pa, st, st.g_svc[x], st.g_rack[x], by, bunits)
        else:
            group_change(pa, st, bx, -bunits)
