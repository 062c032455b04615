"""Local search on a feasible plan: every move is tried on the plan, made feasible by shedding,
topped up by the greedy fill, and kept only when the objective rises.

Moves: insert an unscheduled job into a domain (evicting replicas, one other job, or every job
there, which the fill may re-place elsewhere); start the replicas a service short of demand lacks
(shedding cheaper load to make room), or move its replicas out of training domains; raise a job's cap by one level (shedding cheaper load) or
lower it (so the freed power can go to better uses); put all of a service's replicas at their top
level and drop the started ones no longer needed, or restart its started replicas on one GPU model
at its top level, training-domain racks allowed (replica starts cost money: fewer, faster replicas
often beat many cheap ones).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .construct import add_replicas, fill, force_services
from .core import (compact_groups, group_change, job_domain_ok, job_place, job_relevel, job_unplace,
                   objective_usd, recompute)
from .shed import shed

PAIR_MAX_JOBS = 16   # two-job inserts are tried on problems with at most this many jobs


@njit(cache=True)
def copy_into(dst, src):
    """dst := src (only the used prefix of the group list)."""
    dst.job_dom[:] = src.job_dom
    dst.job_lvl[:] = src.job_lvl
    dst.job_n.reshape(-1)[:] = src.job_n.reshape(-1)      # 2-D arrays as flat copies (faster)
    m = src.ng[0]
    dst.g_svc[:m] = src.g_svc[:m]
    dst.g_rack[:m] = src.g_rack[:m]
    dst.g_lvl[:m] = src.g_lvl[:m]
    dst.g_n[:m] = src.g_n[:m]
    dst.ng[0] = m
    dst.miners.reshape(-1)[:] = src.miners.reshape(-1)
    dst.rack_busy[:] = src.rack_busy
    dst.rack_kw[:] = src.rack_kw
    dst.feed_kw[:] = src.feed_kw
    dst.loop_kw[:] = src.loop_kw
    dst.site_kw[:] = src.site_kw
    dst.svc_cap_rps[:] = src.svc_cap_rps
    dst.dom_free[:] = src.dom_free


@njit(cache=True)
def force_place(pa, st, j, d, lvl, nbuf):
    """Place job j in domain d at lvl on free GPUs, ignoring power (shedding follows): on the
    racks it runs on now if it runs in d and they have the GPUs free, else spread over the racks
    with the most headroom first. Returns False when GPUs are short."""
    g = pa.dom_model[d]
    bk = pa.gpu_busy_kw[g, lvl]
    R = pa.dom_ptr[d + 1] - pa.dom_ptr[d]
    if d == pa.job_run_dom[j]:      # a running job keeps its racks when their GPUs are free
        ok = True
        for r in range(R):
            k = pa.dom_racks[pa.dom_ptr[d] + r]
            if pa.job_run_n[j, r] > pa.rack_count[k] - st.rack_busy[k]:
                ok = False
                break
        if ok:
            for r in range(R):
                nbuf[r] = pa.job_run_n[j, r]
            job_place(pa, st, j, d, lvl, nbuf)
            return True
    left = pa.job_gpus[j]
    for r in range(R):
        nbuf[r] = 0
    while left > 0:
        best, bh = -1, -np.inf
        for r in range(R):
            k = pa.dom_racks[pa.dom_ptr[d] + r]
            if pa.rack_count[k] - st.rack_busy[k] - nbuf[r] <= 0:
                continue
            h = pa.rack_lim_kw[k] - st.rack_kw[k] - nbuf[r] * bk
            if h > bh:
                best, bh = r, h
        if best < 0:
            return False
        k = pa.dom_racks[pa.dom_ptr[d] + best]
        # take a chunk: as many as keep this rack the roomiest, at least one
        t = max(1, min(left, pa.rack_count[k] - st.rack_busy[k] - nbuf[best], 8))
        nbuf[best] += t
        left -= t
    job_place(pa, st, j, d, lvl, nbuf)
    return True


@njit(cache=True)
def evict_replicas(pa, st, d, need):
    """Remove replica groups from domain d's racks until it has `need` free GPUs."""
    for x in range(st.ng[0]):
        if st.dom_free[d] >= need:
            return True
        if st.g_n[x] > 0 and pa.rack_domain[st.g_rack[x]] == d:
            group_change(pa, st, x, -st.g_n[x])
    return st.dom_free[d] >= need


@njit(cache=True)
def _in_domains(pa, st, i):
    for x in range(st.ng[0]):
        if st.g_svc[x] == i and st.g_n[x] > 0 and pa.rack_domain[st.g_rack[x]] >= 0:
            return True
    return False


@njit(cache=True)
def _free_gpus(pa, st, d):
    tot = 0
    for r in range(pa.dom_ptr[d + 1] - pa.dom_ptr[d]):
        k = pa.dom_racks[pa.dom_ptr[d] + r]
        tot += pa.rack_count[k] - st.rack_busy[k]
    return tot


@njit(cache=True)
def required_placed(pa, st):
    for j in range(len(st.job_dom)):
        if pa.job_req[j] and st.job_dom[j] < 0:
            return False
    return True


@njit(cache=True)
def _settle(pa, st, keep_job, keep_level, inc, nbuf, cand, cnt, run, site):
    """After a move: shed to the limits, top up with the fill; False when that fails or a
    required job is left out."""
    if not shed(pa, st, keep_job, keep_level):
        return False
    fill(pa, st, inc[0], inc[1], inc[2], inc[3], inc[4], nbuf, cand, cnt, run, site)
    return required_placed(pa, st)


@njit(cache=True)
def _keep_if_better(pa, st, tmp, base, ok):
    """After a move on st (tmp holds the state before it): the new objective when the move left a
    feasible plan (`ok`) that earns more than `base`; otherwise st is restored and NaN returned."""
    if ok:
        recompute(pa, st)
        v = objective_usd(pa, st)
        if v > base + 1e-7 * max(1.0, abs(base)):
            return v
    copy_into(st, tmp)
    return np.nan


@njit(cache=True)
def _try_insert(pa, st, j, d, ev, relocate, start_lvl, job_order, was_dom, inc, nbuf, cand, cnt, run, j2):
    """Evict (ev: -1 nothing, -2 every job in d, else that job; with `relocate` also every
    replica on the site's training-domain racks), force job j into d at its start level, force
    evicted jobs back into d where GPUs remain (most valuable first) and evicted replicas
    elsewhere (outside domains first), then shed and fill. False when the move cannot be made
    feasible. was_dom[e] is each job's domain before the move."""
    J = len(st.job_dom)
    g = pa.dom_model[d]
    lvl = start_lvl[j, g]
    if relocate:
        for x in range(st.ng[0]):
            k = st.g_rack[x]
            if st.g_n[x] > 0 and pa.rack_domain[k] >= 0 and pa.rack_site[k] == pa.dom_site[d]:
                group_change(pa, st, x, -st.g_n[x])
    if ev >= 0:
        job_unplace(pa, st, ev)
    elif ev == -2:
        for e2 in range(J):
            if st.job_dom[e2] == d:
                job_unplace(pa, st, e2)
    if _free_gpus(pa, st, d) < pa.job_gpus[j]:
        if not evict_replicas(pa, st, d, pa.job_gpus[j]) or _free_gpus(pa, st, d) < pa.job_gpus[j]:
            return False
    recompute(pa, st)
    if not force_place(pa, st, j, d, lvl, nbuf):
        return False
    if j2 >= 0 and (st.dom_free[d] < pa.job_gpus[j2] or not force_place(pa, st, j2, d, start_lvl[j2, g], nbuf)):
        return False
    for x in range(len(job_order)):   # evicted jobs: back into d, else the best-fitting domain
        e = job_order[x]
        if e == j or was_dom[e] != d or st.job_dom[e] >= 0:
            continue
        if start_lvl[e, g] >= 0 and st.dom_free[d] >= pa.job_gpus[e]:
            force_place(pa, st, e, d, start_lvl[e, g], nbuf)
            continue
        bd = -1
        for d2 in range(len(pa.dom_gpus)):
            g2 = pa.dom_model[d2]
            if (d2 != d and pa.job_val[e, g2] >= 0 and start_lvl[e, g2] >= 0 and pa.job_site_ok[e, pa.dom_site[d2]]
                    and st.dom_free[d2] >= pa.job_gpus[e] and (bd < 0 or st.dom_free[d2] < st.dom_free[bd])):
                bd = d2
        if bd >= 0:
            force_place(pa, st, e, bd, start_lvl[e, pa.dom_model[bd]], nbuf)
    force_services(pa, st, inc[0], inc[1], inc[2], inc[3], cnt, run, pa.dom_site[d], -1)
    if not _settle(pa, st, j, -1, inc, nbuf, cand, cnt, run, pa.dom_site[d]):
        return False
    recompute(pa, st)
    return True


@njit(cache=True)
def _jobs_by_domain(st, ptr, lst):
    """CSR of scheduled jobs per domain (ptr[D+1], lst[J])."""
    ptr[:] = 0
    for j in range(len(st.job_dom)):
        if st.job_dom[j] >= 0:
            ptr[st.job_dom[j] + 1] += 1
    for d in range(len(ptr) - 1):
        ptr[d + 1] += ptr[d]
    fillp = ptr[:-1].copy()
    for j in range(len(st.job_dom)):
        d = st.job_dom[j]
        if d >= 0:
            lst[fillp[d]] = j
            fillp[d] += 1


@njit(cache=True)
def improve(pa, st, tmp, best, inc, start_lvl, job_order, nbuf, cand, cnt, run, max_moves):
    """Hill-climb; st must be feasible. Each unscheduled job (most valuable first) takes its best
    insert move if it raises the objective; then cap raises and cuts. start_lvl[j, g] is the level
    a job starts at (best profit per kW). At most max_moves moves are tried. Returns moves kept."""
    J = len(st.job_dom)
    D = len(pa.dom_gpus)
    dptr = np.zeros(D + 1, np.int64)
    dlst = np.zeros(max(J, 1), np.int64)
    kept = 0
    tried = 0
    pairs = J <= PAIR_MAX_JOBS
    while tried < max_moves:
        kept0 = kept            # a round that keeps no move ends the search
        compact_groups(st)
        base = objective_usd(pa, st)
        for jj in range(len(job_order)):
            j = job_order[jj]
            if st.job_dom[j] >= 0:
                continue
            if tried >= max_moves:
                break
            copy_into(tmp, st)
            _jobs_by_domain(tmp, dptr, dlst)
            relocs = False          # any replica on a training-domain rack?
            for x in range(st.ng[0]):
                if st.g_n[x] > 0 and pa.rack_domain[st.g_rack[x]] >= 0:
                    relocs = True
                    break
            bval = base + 1e-7 * max(1.0, abs(base))
            found = False
            for d in range(D):
                g = pa.dom_model[d]
                if not job_domain_ok(pa, j, d) or start_lvl[j, g] < 0:
                    continue
                nd = dptr[d + 1] - dptr[d]
                for xr in range(-4, 2 * nd):
                    # evict nothing, everything, or one job of the domain; each without and with
                    # moving the site's replicas out of training domains
                    if tried >= max_moves:
                        break
                    x = xr // 2 if xr >= 0 else (xr + 4) // 2 - 2
                    relocate = ((xr + 4) % 2) == 1
                    if x == -2 and nd == 0:
                        continue
                    if relocate and not relocs:
                        continue
                    ev = dlst[dptr[d] + x] if x >= 0 else x
                    for y in range(-1, len(job_order) if (pairs and not relocate) else 0):
                        # alone, or with a second waiting job in the same domain (two smaller
                        # jobs can beat one large one there)
                        j2 = -1 if y < 0 else job_order[y]
                        if j2 >= 0 and (j2 == j or st.job_dom[j2] >= 0 or pa.job_val[j2, g] < 0
                                        or not pa.job_site_ok[j2, pa.dom_site[d]] or start_lvl[j2, g] < 0
                                        or pa.job_gpus[j] + pa.job_gpus[j2] > pa.dom_gpus[d]):
                            continue
                        if tried >= max_moves:
                            break
                        tried += 1
                        if x == 0 and nd == 1:
                            continue    # evicting d's only job: the evict-all move just tried
                        if _try_insert(pa, st, j, d, ev, relocate, start_lvl, job_order, tmp.job_dom, inc, nbuf,
                                       cand, cnt, run, j2):
                            v = objective_usd(pa, st)
                            if v > bval:
                                bval = v
                                found = True
                                copy_into(best, st)
                        copy_into(st, tmp)
            if found:
                copy_into(st, best)
                base, kept = bval, kept + 1
        for mv in range(2 * len(pa.svc_gpr)):
            # (a) a service short of demand takes power from cheaper load;
            # (b) a service's replicas leave training domains (freeing GPUs and power there)
            i = mv // 2
            if tried >= max_moves:
                break
            if mv % 2 == 0:
                if st.svc_cap_rps[i] >= pa.svc_demand_rps[i] - 1e-9:
                    continue
            elif not _in_domains(pa, st, i):
                continue
            tried += 1
            copy_into(tmp, st)
            if mv % 2 == 1:
                for x in range(st.ng[0]):
                    if st.g_svc[x] == i and st.g_n[x] > 0 and pa.rack_domain[st.g_rack[x]] >= 0:
                        group_change(pa, st, x, -st.g_n[x])
            force_services(pa, st, inc[0], inc[1], inc[2], inc[3], cnt, run, -1, i)
            v = _keep_if_better(pa, st, tmp, base, _settle(pa, st, -1, -1, inc, nbuf, cand, cnt, run, -1))
            if v == v:
                base, kept = v, kept + 1
        for j in range(J):
            for step in (1, -1):   # raise a cap (shedding cheaper load), or lower it
                d = st.job_dom[j]
                if d < 0 or tried >= max_moves:
                    continue
                g = pa.dom_model[d]
                lv = st.job_lvl[j] + step
                if lv < pa.job_minlev[j, g] or lv >= pa.gpu_nlev[g]:
                    continue
                tried += 1
                copy_into(tmp, st)
                job_relevel(pa, st, j, lv)
                keep = j if step > 0 else -1
                v = _keep_if_better(pa, st, tmp, base, _settle(pa, st, keep, keep, inc, nbuf, cand, cnt, run,
                                                               pa.dom_site[d]))
                if v == v:
                    base, kept = v, kept + 1
        for i in range(len(pa.svc_gpr) if kept == kept0 else 0):
            # (only when nothing else helped this round) a service's replicas all at their top
            # level, the started ones no longer needed dropped
            if tried >= max_moves or n_started(pa, st, i) <= 0:
                continue
            tried += 1
            copy_into(tmp, st)
            svc_relevel(pa, st, i, pa.gpu_perf.shape[1] - 1)
            v = _keep_if_better(pa, st, tmp, base, _settle(pa, st, -1, -1, inc, nbuf, cand, cnt, run, -1))
            if v == v:
                base, kept = v, kept + 1
        G = pa.gpu_perf.shape[0]
        for mv in range(len(pa.svc_gpr) * G if kept == kept0 else 0):
            # a service's started replicas restarted on one GPU model at its top level (training-
            # domain racks allowed: fewer, faster replicas, fewer starts), the rest topped up
            if tried >= max_moves:
                break
            i, g = mv // G, mv % G
            lv = pa.gpu_nlev[g] - 1
            if pa.svc_rps[i, g] <= 0 or lv < pa.svc_minlev[i, g] or n_started(pa, st, i) <= 0:
                continue
            tried += 1
            copy_into(tmp, st)
            drop_started(pa, st, i)
            add_replicas(pa, st, i, g, lv, cnt, run, True, True)
            force_services(pa, st, inc[0], inc[1], inc[2], inc[3], cnt, run, -1, i)
            v = _keep_if_better(pa, st, tmp, base, _settle(pa, st, -1, -1, inc, nbuf, cand, cnt, run, -1))
            if v == v:
                base, kept = v, kept + 1
        if kept == kept0:
            break
    return kept


@njit(cache=True)
def _svc_on_rack(st, i, k):
    tot = 0
    for x in range(st.ng[0]):
        if st.g_svc[x] == i and st.g_rack[x] == k:
            tot += st.g_n[x]
    return tot


@njit(cache=True)
def svc_relevel(pa, st, i, top):
    """Every replica of service i to level `top` (clamped to its model's allowed levels), then
    drop the started replicas no longer needed to serve what was served before (fewer, faster
    replicas: fewer starts)."""
    need = min(pa.svc_demand_rps[i], st.svc_cap_rps[i])
    for x in range(st.ng[0]):
        if st.g_svc[x] != i or st.g_n[x] <= 0:
            continue
        g = pa.rack_model[st.g_rack[x]]
        lv = max(min(top, pa.gpu_nlev[g] - 1), pa.svc_minlev[i, g])
        if lv != st.g_lvl[x]:
            n = st.g_n[x]
            group_change(pa, st, x, -n)
            st.g_lvl[x] = lv
            group_change(pa, st, x, n)
    for x in range(st.ng[0] - 1, -1, -1):
        if st.g_svc[x] != i or st.g_n[x] <= 0:
            continue
        k = st.g_rack[x]
        g = pa.rack_model[k]
        rps = pa.svc_rps[i, g] * pa.gpu_perf[g, st.g_lvl[x]]
        extra = _svc_on_rack(st, i, k)
        for e in range(pa.svc_run_ptr[i], pa.svc_run_ptr[i + 1]):
            if pa.svc_run_rack[e] == k:
                extra -= pa.svc_run_reps[e]
        while st.g_n[x] > 0 and extra > 0 and st.svc_cap_rps[i] - rps >= need - 1e-9:
            group_change(pa, st, x, -1)
            extra -= 1


@njit(cache=True)
def drop_started(pa, st, i):
    """Remove every replica of service i beyond what runs now on its rack."""
    for x in range(st.ng[0] - 1, -1, -1):
        if st.g_svc[x] != i or st.g_n[x] <= 0:
            continue
        k = st.g_rack[x]
        extra = _svc_on_rack(st, i, k)
        for e in range(pa.svc_run_ptr[i], pa.svc_run_ptr[i + 1]):
            if pa.svc_run_rack[e] == k:
                extra -= pa.svc_run_reps[e]
        if extra > 0:
            group_change(pa, st, x, -min(extra, st.g_n[x]))


@njit(cache=True)
def n_started(pa, st, i):
    """Replicas of service i started on racks beyond what runs there now."""
    tot = 0
    for x in range(st.ng[0]):
        if st.g_svc[x] == i and st.g_n[x] > 0:
            tot += st.g_n[x]
    for e in range(pa.svc_run_ptr[i], pa.svc_run_ptr[i + 1]):
        tot -= min(pa.svc_run_reps[e], _svc_on_rack(st, i, pa.svc_run_rack[e]))
    return tot
