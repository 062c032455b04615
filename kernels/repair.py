"""Repair: make any plan (e.g. the previous interval's, or one read from a file) structurally
valid for the problem (allowed models, sites, cap levels, GPU and miner counts), then feasible by
shedding, then top it up with the greedy fill. Also builds the plan "as things run now"."""
from __future__ import annotations

from numba import njit

from .core import MINER_KIND, group_change, job_domain_ok, job_unplace, recompute


@njit(cache=True)
def sanitize(pa, st):
    """Drop or clamp every decision the problem does not allow; recompute the figures."""
    J = len(st.job_dom)
    for j in range(J):
        d = st.job_dom[j]
        if d < 0:
            st.job_lvl[j] = -1
            st.job_n[j, :] = 0
            continue
        g = pa.dom_model[d]
        ok = job_domain_ok(pa, j, d)    # (enough GPUs in d is also implied by the counts below)
        tot = 0
        R = pa.dom_ptr[d + 1] - pa.dom_ptr[d]
        for r in range(st.job_n.shape[1]):
            n = st.job_n[j, r]
            if n < 0 or (r >= R and n != 0):
                ok = False
            elif r < R and n > pa.rack_count[pa.dom_racks[pa.dom_ptr[d] + r]]:
                ok = False
            tot += n
        if tot != pa.job_gpus[j]:
            ok = False
        if not ok:
            st.job_dom[j] = -1
            st.job_lvl[j] = -1
            st.job_n[j, :] = 0
            continue
        if st.job_lvl[j] < pa.job_minlev[j, g]:
            st.job_lvl[j] = pa.job_minlev[j, g]
        if st.job_lvl[j] >= pa.gpu_nlev[g]:
            st.job_lvl[j] = pa.gpu_nlev[g] - 1
    for x in range(st.ng[0]):
        k, i = st.g_rack[x], st.g_svc[x]
        if st.g_n[x] <= 0 or pa.rack_kind[k] == MINER_KIND:
            st.g_n[x] = 0
            continue
        g = pa.rack_model[k]
        if pa.svc_rps[i, g] <= 0 or not pa.svc_site_ok[i, pa.rack_site[k]] or \
                pa.svc_minlev[i, g] >= pa.gpu_nlev[g]:
            st.g_n[x] = 0
            continue
        if st.g_lvl[x] < pa.svc_minlev[i, g]:
            st.g_lvl[x] = pa.svc_minlev[i, g]
        if st.g_lvl[x] >= pa.gpu_nlev[g]:
            st.g_lvl[x] = pa.gpu_nlev[g] - 1
    for k in range(len(pa.rack_kind)):
        if pa.rack_kind[k] != MINER_KIND:
            st.miners[k, :] = 0
            continue
        mm = pa.rack_model[k]
        left = pa.rack_count[k]
        for q in range(st.miners.shape[1]):
            if q >= pa.mm_nmodes[mm] or st.miners[k, q] < 0:
                st.miners[k, q] = 0
            elif st.miners[k, q] > left:
                st.miners[k, q] = left
            left -= st.miners[k, q]
    recompute(pa, st)
    # more GPUs busy than a rack holds: remove replicas there, then jobs
    for k in range(len(pa.rack_kind)):
        if pa.rack_kind[k] == MINER_KIND:
            continue
        for x in range(st.ng[0]):
            if st.rack_busy[k] <= pa.rack_count[k]:
                break
            if st.g_rack[x] == k and st.g_n[x] > 0:
                over = st.rack_busy[k] - pa.rack_count[k]
                gpr = pa.svc_gpr[st.g_svc[x]]
                group_change(pa, st, x, -min(st.g_n[x], (over + gpr - 1) // gpr))
        for j in range(J):
            if st.rack_busy[k] <= pa.rack_count[k]:
                break
            d = st.job_dom[j]
            if d >= 0 and d == pa.rack_domain[k] and st.job_n[j, pa.rack_dpos[k]] > 0:
                job_unplace(pa, st, j)


@njit(cache=True)
def running_state(pa, st, start_lvl, svc_start_lvl):
    """st := where things run now (problem's running placements), jobs and replicas at their
    start levels, miners off (the fill decides them)."""
    st.job_dom[:] = -1
    st.job_lvl[:] = -1
    st.job_n[:, :] = 0
    st.miners[:, :] = 0
    st.ng[0] = 0
    for j in range(len(st.job_dom)):
        d = pa.job_run_dom[j]
        if d >= 0:
            g = pa.dom_model[d]
            lv = start_lvl[j, g]
            st.job_dom[j] = d
            st.job_lvl[j] = lv if lv >= 0 else pa.gpu_nlev[g] - 1
            st.job_n[j, :] = pa.job_run_n[j]
    for i in range(len(pa.svc_gpr)):
        for e in range(pa.svc_run_ptr[i], pa.svc_run_ptr[i + 1]):
            k = pa.svc_run_rack[e]
            g = pa.rack_model[k]
            lv = svc_start_lvl[i, g]
            x = st.ng[0]
            st.ng[0] += 1
            st.g_svc[x], st.g_rack[x] = i, k
            st.g_lvl[x] = lv if lv >= 0 else pa.gpu_nlev[g] - 1
            st.g_n[x] = pa.svc_run_reps[e]
    sanitize(pa, st)
