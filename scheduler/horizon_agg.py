"""The aggregated horizon MILP: a relaxation of SPEC 6 small enough for 192 periods.

The exact multi-period model (`scheduler.horizon`) keeps every GPU rack and every miner
pattern of every period; for two days of 15-minute periods of an 18 MW site that is
~260k columns and its LP relaxation alone takes minutes. This model keeps every decision
that links periods exactly - which training job runs in which domain at which cap level
in every period, the work it earns, when it completes, its lateness and its moves - and
aggregates what only matters within a period:

- identical GPU racks (same domain, model, feed, loop, GPUs, limit, base) form one group
  with continuous busy-GPU counts per level (training) and replicas per (service, level);
  the group's GPU and power rows are the sums of its racks' rows;
- identical miner racks form one group running a continuous number of racks per pattern on
  the upper concave hull of (kW, TH/s) - the convex hull of every pattern, since the limits
  see a rack only through its kW;
- inference replica moves are counted per rack group (|sum of changes| <= sum of |changes|);
  a job pays its move cost when it leaves a domain it ran in unless its work completed in the
  period before (it cannot be complete before it could have done all of it at full speed);
- a job running now at a placement some rack cannot hold at a higher cap has moved by the
  first period it runs at that cap in its domain (a level change within a domain is otherwise
  free here);
- lateness is bounded below by the work left at the deadline over the job's full-speed rate
  (a job delivers at most `gpus` GPU-hours per hour), or the whole overrun when it never
  completes.

Every feasible SPEC 6 plan maps to a feasible point of this model with at least its
objective, so a bound on the model's optimum is a valid upper bound on the best horizon plan. Its
solution is disaggregated into an exact plan by the rolling horizon restricted to the chosen
(job, GPU model, cap level) per period (`solve_rolling(schedule=...)`), with replicas kept
on their twin racks between periods (`stick_replicas`); that plan is evaluated and verified
exactly, and the gap reported is against this model's bound (`solve_horizon_aggregated`).
"""
from __future__ import annotations

import concurrent.futures
import functools
import heapq
import logging
import math
import multiprocessing
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Optional

import highspy
import numpy as np
from scipy.optimize import linear_sum_assignment

from .assignment import Assignment
from .horizon_core import Horizon, HorizonResult, WorkState, evaluate_horizon, feasible_plans, work_tol_gpu_h
from .horizon_rolling import solve_rolling
from .milp_model import miner_patterns
from .problem import GPU, Problem, units_within
from .solve import SolveOptions, relative_gap

INF = math.inf
log = logging.getLogger("wattsched.horizon")


class LinearModel:
    """Columns and rows collected in arrays, passed to HiGHS in one call."""

    def __init__(self):
        self.lb: list[float] = []
        self.ub: list[float] = []
        self.cost: list[float] = []
        self.integer: list[bool] = []
        self.rlo: list[float] = []
        self.rhi: list[float] = []
        self.rstart: list[int] = [0]
        self.ridx: list[int] = []
        self.rval: list[float] = []
        self.constant = 0.0

    def col(self, lb: float = 0.0, ub: float = INF, cost: float = 0.0, integer: bool = False) -> int:
        self.lb.append(lb)
        self.ub.append(ub)
        self.cost.append(cost)
        self.integer.append(integer)
        return len(self.lb) - 1

    def row(self, terms, lo: float = -INF, hi: float = INF) -> int:
        acc: dict[int, float] = {}
        for c, a in terms:
            acc[c] = acc.get(c, 0.0) + a
        for c, a in acc.items():
            if a != 0.0:
                self.ridx.append(c)
                self.rval.append(a)
        self.rstart.append(len(self.ridx))
        self.rlo.append(lo)
        self.rhi.append(hi)
        return len(self.rlo) - 1

    @property
    def n_cols(self) -> int:
        return len(self.lb)

    @property
    def n_rows(self) -> int:
        return len(self.rlo)

    def highs(self, relax: bool = False) -> highspy.Highs:
        lp = highspy.HighsLp()
        lp.num_col_ = self.n_cols
        lp.num_row_ = self.n_rows
        lp.col_cost_ = np.array(self.cost, dtype=np.float64)
        lp.col_lower_ = np.array(self.lb, dtype=np.float64)
        lp.col_upper_ = np.array(self.ub, dtype=np.float64)
        lp.row_lower_ = np.array(self.rlo, dtype=np.float64)
        lp.row_upper_ = np.array(self.rhi, dtype=np.float64)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
        lp.a_matrix_.num_col_ = self.n_cols
        lp.a_matrix_.num_row_ = self.n_rows
        lp.a_matrix_.start_ = np.array(self.rstart, dtype=np.int32)
        lp.a_matrix_.index_ = np.array(self.ridx, dtype=np.int32)
        lp.a_matrix_.value_ = np.array(self.rval, dtype=np.float64)
        lp.sense_ = highspy.ObjSense.kMaximize
        lp.offset_ = self.constant
        if not relax:
            lp.integrality_ = [highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous
                               for i in self.integer]
        hs = highspy.Highs()
        hs.setOptionValue("output_flag", False)
        hs.passModel(lp)
        return hs


@dataclass
class _GpuGroup:
    racks: list[int]
    domain: int
    model: int
    site: int
    feed: int
    loop: int
    count: int
    room_kw: float            # per rack: limit - base
    factor: float
    services: dict[int, list[int]] = field(default_factory=dict)   # service -> allowed levels


@dataclass
class _MinerGroup:
    racks: list[int]
    model: int
    site: int
    feed: int
    loop: int
    count: int
    room_kw: float
    factor: float
    pattern_kw: np.ndarray
    pattern_th: np.ndarray
    patterns: np.ndarray      # [n, Q] miners per mode (fractional for LP vertices)


def upper_hull(pkw: np.ndarray, pth: np.ndarray, rising_only: bool = False) -> list[int]:
    """Indices of the patterns on the upper concave hull of (kW, TH/s) with the origin, in kW
    order; with `rising_only`, only its rising part (more kW must buy more TH/s)."""
    pts = sorted([(0.0, 0.0, -1)] + [(float(pkw[n]), float(pth[n]), n) for n in range(len(pkw))])
    hull: list[tuple[float, float, int]] = []
    for pt in pts:
        while len(hull) >= 2:
            (x1, y1, _), (x2, y2, _) = hull[-2], hull[-1]
            if (x2 - x1) * (pt[1] - y1) - (y2 - y1) * (pt[0] - x1) > 1e-9:
                hull.pop()
            else:
                break
        hull.append(pt)
    out, best = [], -1.0
    for _, y, n in hull:
        if n >= 0 and (not rising_only or y > best + 1e-9):
            out.append(n)
        best = max(best, y)
    return out


def _lp_vertices(count: int, kw: np.ndarray, th: np.ndarray, room_kw: float):
    """Vertices of {miners per mode >= 0, sum <= count, kW <= room}: one mode alone, or two
    modes filling both the count and the room (fractional miners: a relaxation)."""
    Q = len(kw)
    vecs = []
    for q in range(Q):
        v = np.zeros(Q)
        v[q] = min(float(count), room_kw / kw[q]) if kw[q] > 0 else float(count)
        vecs.append(v)
        for r in range(q + 1, Q):
            if abs(kw[q] - kw[r]) <= 1e-12:
                continue
            a = (room_kw - kw[r] * count) / (kw[q] - kw[r])     # miners in mode q
            if 0.0 <= a <= count:
                v = np.zeros(Q)
                v[q], v[r] = a, count - a
                vecs.append(v)
    V = np.array(vecs).reshape(-1, Q)
    return V, V @ kw, V @ th


def _groups(p: Problem) -> tuple[list[_GpuGroup], list[_MinerGroup]]:
    gpu: dict[tuple, list[int]] = defaultdict(list)
    miner: dict[tuple, list[int]] = defaultdict(list)
    for k in range(p.n_racks):
        key = (int(p.rack_model[k]), int(p.rack_site[k]), int(p.rack_feed[k]), int(p.rack_loop[k]),
               int(p.rack_count[k]), float(p.rack_limit_kw[k]), float(p.rack_base_kw[k]))
        if p.rack_kind[k] == GPU:
            svc = tuple(i for i in range(len(p.svc_ids)) if p.svc_rack_ok(i, k))
            gpu[(int(p.rack_domain[k]),) + key + (svc,)].append(k)
        else:
            miner[key].append(k)
    groups = []
    for (d, g, s, f, l, count, limit, base, svc), racks in gpu.items():
        gg = _GpuGroup(racks, d, g, s, f, l, count, limit - base, float(p.rack_site_factor[racks[0]]))
        for i in svc:
            gg.services[i] = list(range(int(p.svc_min_level[i, g]), int(p.gpu_n_levels[g])))
        groups.append(gg)
    mgroups = []
    for (mm, s, f, l, count, limit, base), racks in miner.items():
        nq = int(p.miner_n_modes[mm])
        kw, th = p.miner_kw[mm, :nq], p.miner_th_s[mm, :nq]
        pats = miner_patterns(count, kw, th, limit - base, keep_all_kw=True)
        if pats is None:      # too many to enumerate: the vertices of the rack's LP relaxation
            pats = _lp_vertices(count, kw, th, limit - base)
        V, pkw, pth = pats
        keep = upper_hull(pkw, pth)
        mgroups.append(_MinerGroup(racks, mm, s, f, l, count, limit - base, float(p.rack_site_factor[racks[0]]),
                                   pkw[keep], pth[keep], V[keep]))
    return groups, mgroups


class AggregatedHorizon:
    """The aggregated horizon MILP of `h` (see the module docstring)."""

    def __init__(self, h: Horizon, block: int = 1, stop_rows: bool = True):
        self.h = h
        self.block = block          # periods that share one training decision (1: exact model)
        self.stop_rows = stop_rows  # the 'one free stop per job' rows (tighter bound; the coarse
                                    # search finds better schedules on wa-48h without them)
        self._xcol: dict[tuple[int, int, int, int], int] = {}
        self.m = LinearModel()
        p0 = h.problems[0]
        self.groups, self.mgroups = _groups(p0)
        J = len(p0.job_ids)
        P = h.n_periods
        start = WorkState.start(h)
        self.tracked = [not np.isnan(h.remaining_gpu_h[j]) for j in range(J)]
        self.finished0 = [start.finished(j) for j in range(J)]
        self.x: dict[tuple[int, int, int, int], int] = {}      # (p, j, d, c)
        self.z: dict[tuple[int, int], int] = {}                # (p, j): work complete before p
        self.earned: dict[tuple[int, int], list[int]] = {}     # (p, j) -> work earned per GPU model
        self.bound_rows: list[tuple[list, float, float]] = []   # valid rows only the bound's copy gets
        self.moves_of: dict[int, list[int]] = {}               # job -> its move columns (each costs one move)
        self.x_of: dict[tuple[int, int, int], list[int]] = defaultdict(list)   # (p, j, d) -> x columns
        self.r_of: dict[tuple[int, int, int], list[int]] = defaultdict(list)   # (p, service, group) -> replicas
        self.site_kw: list[dict[int, tuple[list, float]]] = []
        m = self.m
        # --- completion indicators (tracked jobs) ----------------------------------------------
        for j in range(J):
            if self.tracked[j] and not self.finished0[j]:
                # the job cannot be complete before it could have delivered its work at full
                # speed: z is 0 there (without this the relaxation forgives the move cost of any
                # stop in proportion to the share of the work done so far)
                fastest = max(p0.job_gpu_h_per_h(j, g, c) for g in range(len(p0.gpu_model_ids))
                              if not np.isnan(p0.job_value_per_gpu_h[j, g]) for c in range(int(p0.gpu_n_levels[g])))
                most = np.concatenate([[0.0], np.cumsum(h.hours)]) * fastest
                R = float(h.remaining_gpu_h[j])
                for p in range(1, P + 1):
                    possible = most[p] >= R - work_tol_gpu_h(R)
                    self.z[p, j] = m.col(0, 1 if possible else 0, integer=True)
                    if p > 1:
                        m.row([(self.z[p - 1, j], 1), (self.z[p, j], -1)], hi=0)
        for p in range(P):
            self._period(p)
        self._work_and_lateness()
        self._moves()
        self._ramp()

    # --- one period ---------------------------------------------------------------------------
    def _period(self, p: int):
        h, m = self.h, self.m
        prob = h.problems[p]
        hrs = float(prob.interval_h)
        price_kw = prob.usd_per_site_kw
        J, I = len(prob.job_ids), len(prob.svc_ids)
        site_terms: dict[int, list] = defaultdict(list)
        feed_terms: dict[int, list] = defaultdict(list)
        loop_terms: dict[int, list] = defaultdict(list)
        # training: (job, domain, level) binaries
        at: dict[tuple[int, int], list] = defaultdict(list)          # (d, c) -> [(x, gpus)]
        for j in range(J):
            if self.finished0[j]:
                continue
            job_x = []
            for d in range(len(prob.domain_ids)):
                if not prob.job_domain_ok(j, d):
                    continue
                g = int(prob.domain_model[d])
                for c in range(int(prob.job_min_level[j, g]), int(prob.gpu_n_levels[g])):
                    if prob.job_gpus[j] > self._level_room(prob, d, c):
                        continue      # the domain's racks cannot hold all its GPUs at this cap
                    rev = 0.0 if self.tracked[j] else hrs * prob.job_usd_per_h(j, g, c)
                    key = (p // self.block, j, d, c)
                    if key in self._xcol:
                        v = self._xcol[key]
                        m.cost[v] += rev
                    else:
                        v = self._xcol[key] = m.col(0, 1, rev, integer=True)
                    self.x[p, j, d, c] = v
                    at[d, c].append((v, int(prob.job_gpus[j])))
                    job_x.append((v, d, c))
                    self.x_of[p, j, d].append(v)
            if not job_x:
                continue
            z = self.z.get((p, j)) if p > 0 else None
            once = [(v, 1) for v, _, _ in job_x] + ([(z, 1)] if z is not None else [])
            m.row(once, hi=1)
            if prob.job_required[j]:
                m.row(once, lo=1)       # runs until its work is complete (untracked: always)
            if self.tracked[j]:
                # (x, GPU model, work it earns in the period)
                rates = [(v, int(prob.domain_model[d]), hrs * prob.job_gpu_h_per_h(j, int(prob.domain_model[d]), c))
                         for v, d, c in job_x]
                cols = []
                for g in sorted({g for _, g, _ in rates}):
                    e = m.col(0, INF, float(prob.job_value_per_gpu_h[j, g]))
                    m.row([(e, 1.0)] + [(v, -a) for v, gg, a in rates if gg == g], hi=0)
                    cols.append(e)
                self.earned[p, j] = cols
                # a job that runs and is not complete by the end of the period earns its full
                # rate there (only its completion period earns less). Valid, but only the
                # bound's copy gets it: the coarse search and RINS do worse with it
                self.bound_rows.append(([(e, 1.0) for e in cols] + [(v, -a) for v, _, a in rates]
                                        + [(self.z[p + 1, j], max(a for _, _, a in rates))], 0.0, INF))
        # GPU groups: training GPUs per level, replicas per (service, level)
        dom_t: dict[tuple[int, int], list] = defaultdict(list)
        cap_terms: dict[int, list] = defaultdict(list)
        for gi, gg in enumerate(self.groups):
            n = len(gg.racks)
            g = gg.model
            busy, power = [], []
            for c in sorted({c for (d, c) in at if d == gg.domain}):
                kw = float(prob.gpu_busy_kw[g, c])
                per = units_within(gg.count, gg.room_kw, kw)
                v = m.col(0, per * n, -price_kw[gg.site] * gg.factor * kw)
                dom_t[gg.domain, c].append(v)
                busy.append((v, 1.0))
                power.append((v, kw))
            for i, levels in gg.services.items():
                gpr = int(prob.svc_gpus_per_replica[i])
                for c in levels:
                    kw = prob.replica_kw(i, g, c)
                    per = units_within(gg.count // gpr, gg.room_kw, kw)
                    v = m.col(0, per * n, -price_kw[gg.site] * gg.factor * kw)
                    self.r_of[p, i, gi].append(v)
                    cap_terms[i].append((v, prob.replica_rps(i, g, c)))
                    busy.append((v, float(gpr)))
                    power.append((v, kw))
            if busy:
                m.row(busy, hi=gg.count * n)
                m.row(power, hi=gg.room_kw * n)
            for v, a in power:
                feed_terms[gg.feed].append((v, a))
                loop_terms[gg.loop].append((v, a))
                site_terms[gg.site].append((v, a * gg.factor))
        for (d, c), xs in at.items():
            m.row([(v, 1.0) for v in dom_t[d, c]] + [(v, -n) for v, n in xs], lo=0, hi=0)
        for d in range(len(prob.domain_ids)):
            xs = [(v, n) for (dd, c), lst in at.items() if dd == d for v, n in lst]
            if not xs:
                continue
            m.row(xs, hi=int(prob.domain_gpus[d]))
            self._cliques(int(prob.domain_gpus[d]), {j: (int(prob.job_gpus[j]), self.x_of[p, j, d])
                                                     for j in range(J) if (p, j, d) in self.x_of})
            racks = prob.domain_rack_list(d)
            room = float(np.sum(prob.rack_limit_kw[racks] - prob.rack_base_kw[racks]))
            g = int(prob.domain_model[d])
            m.row([(v, n * float(prob.gpu_busy_kw[g, c])) for (dd, c), lst in at.items() if dd == d
                   for v, n in lst], hi=room)
        # served load
        for i in range(I):
            dem = float(prob.svc_demand_rps[i])
            m.constant -= float(prob.unserved_usd[i])
            if cap_terms[i]:
                s = m.col(0, dem, float(prob.usd_per_served_rps[i]))
                m.row([(s, 1.0)] + [(v, -a) for v, a in cap_terms[i]], hi=0)
        # miners
        usd_th = prob.usd_per_th
        for mg in self.mgroups:
            ns = []
            for kw, th in zip(mg.pattern_kw, mg.pattern_th):
                v = m.col(0, len(mg.racks), usd_th * th - price_kw[mg.site] * mg.factor * kw)
                ns.append((v, 1.0))
                feed_terms[mg.feed].append((v, float(kw)))
                loop_terms[mg.loop].append((v, float(kw)))
                site_terms[mg.site].append((v, float(kw) * mg.factor))
            if ns:
                m.row(ns, hi=len(mg.racks))
        # feeds, loops, site
        base_feed, base_loop, base_site = prob.feed_base_kw, prob.loop_base_kw, prob.site_idle_kw
        for f in range(len(prob.feed_ids)):
            m.row(feed_terms[f], hi=float(prob.feed_limit_kw[f] - base_feed[f]))
        for l in range(len(prob.loop_ids)):
            m.row(loop_terms[l], hi=float(prob.loop_cap_kw[l] - base_loop[l]))
        sites = {}
        for s in range(len(prob.site_ids)):
            m.row(site_terms[s], hi=float(prob.site_grid_limit_kw[s] - base_site[s]))
            m.constant -= float(price_kw[s] * base_site[s])
            sites[s] = (site_terms[s], float(base_site[s]))
        self.site_kw.append(sites)

    @staticmethod
    def _level_room(prob: Problem, d: int, c: int) -> int:
        """GPUs domain d can run at cap level c within its racks' power limits."""
        return sum(prob.rack_holds(k, c) for k in prob.domain_rack_list(d))

    def _cliques(self, gpus: int, jobs: dict[int, tuple[int, list[int]]]):
        """Jobs that cannot share a domain of `gpus` GPUs (together they need more): at most one
        of each maximal such set runs there (the LP alone would run halves of two big jobs).
        `jobs`: job -> (its GPUs, its columns in this domain)."""
        seen = set()
        for a, (na, _) in jobs.items():
            clique = frozenset([a] + [b for b, (nb, _) in jobs.items() if b != a and na + nb > gpus])
            if len(clique) < 2 or clique in seen:
                continue
            # keep it only if its members conflict pairwise (true when all but a are big)
            if all(jobs[b][0] + jobs[c][0] > gpus for b in clique for c in clique if b < c):
                seen.add(clique)
                self.m.row([(v, 1.0) for b in clique for v in jobs[b][1]], hi=1.0)
        for ext, rhs in self._covers(gpus, tuple(sorted((j, n) for j, (n, _) in jobs.items()))):
            self.m.row([(v, 1.0) for b in ext for v in jobs[b][1]], hi=float(rhs))

    @staticmethod
    @functools.lru_cache(maxsize=None)
    def _covers(gpus: int, sizes: tuple[tuple[int, int], ...]) -> list[tuple[tuple[int, ...], int]]:
        """Extended minimal covers of a domain of `gpus` GPUs over jobs (job, GPUs): sets C
        whose GPUs exceed the domain but every C minus one job fits, extended by every other job at
        least as big as C's biggest; at most |C| - 1 of them run there at once."""
        out = []
        n = len(sizes)
        if n > 16:
            return out
        for mask in range(1, 1 << n):
            members = [sizes[i] for i in range(n) if mask >> i & 1]
            if len(members) < 3:
                continue          # pairs are the cliques above
            total = sum(s for _, s in members)
            if total <= gpus or total - min(s for _, s in members) > gpus:
                continue
            big = max(s for _, s in members)
            ext = tuple(j for j, s in sizes if (j, s) in members or s >= big)
            out.append((ext, len(members) - 1))
        return out

    # --- links between periods ----------------------------------------------------------------
    def _work_and_lateness(self):
        h, m = self.h, self.m
        P = h.n_periods
        p0 = h.problems[0]
        for j in range(len(p0.job_ids)):
            if not self.tracked[j] or self.finished0[j]:
                continue
            R = float(h.remaining_gpu_h[j])
            # cum[p]: work earned before period p (a chain keeps the rows short)
            cum = [None]
            for p in range(1, P + 1):
                c = m.col(0, R)
                prev = [] if cum[-1] is None else [(cum[-1], -1.0)]
                m.row([(c, 1.0)] + prev + [(e, -1.0) for e in self.earned.get((p - 1, j), [])], lo=0.0, hi=0.0)
                m.row([(self.z[p, j], R), (c, -1.0)], hi=0)
                cum.append(c)
            D, pen = float(h.deadline_h[j]), float(h.late_usd_per_h[j])
            if np.isnan(D) or pen <= 0 or D >= h.end_h:
                continue
            u = self.z[P, j]
            late = m.col(0, INF, -pen)
            gpus = float(p0.job_gpus[j])
            m.row([(late, 1.0), (u, h.end_h - D)], lo=h.end_h - D)          # never completes: C = end
            n_before = int(np.sum(h.start_h < D - 1e-9))          # periods that start before D
            before = [] if n_before == 0 else [(cum[n_before], 1.0 / gpus)]
            m.row([(late, 1.0), (u, -R / gpus)] + before, lo=0.0)

    def _moves(self):
        h, m = self.h, self.m
        P = h.n_periods
        p0 = h.problems[0]
        for j in range(len(p0.job_ids)):
            cost = float(p0.job_move_cost_usd[j])
            if cost <= 0 or self.finished0[j]:
                continue
            doms = sorted({d for (pp, jj, d) in self.x_of if jj == j})
            y = {(p, d): self.x_of.get((p, j, d), []) for p in range(P) for d in doms}
            d0 = int(p0.job_run_domain[j])
            # a tracked job's moves are forgiven at completion (z); but only one stop can be its
            # completion, so every other stop (or change of domain) pays: sum(moves) >= stops - 1
            count_stops = self.stop_rows and self.tracked[j]
            paid, stops = [], []
            repacked: list[list[int]] = []     # per period: its columns in d0 at caps its racks cannot hold
            if d0 >= 0:
                # it stays free only in d0 at a cap at which every rack still holds the GPUs it
                # runs there now (else its GPUs per rack change: a move); never forgiven (no z)
                g0 = int(p0.domain_model[d0])
                run = p0.job_running(j)
                fits = [all(n <= p0.rack_holds(k, c) for k, n in run.items()) for c in range(int(p0.gpu_n_levels[g0]))]
                stay = [self.x[0, j, d0, c] for c in range(int(p0.gpu_n_levels[g0])) if (0, j, d0, c) in self.x and fits[c]]
                repacked = [[self.x[p, j, d0, c] for c in range(len(fits)) if not fits[c] and (p, j, d0, c) in self.x]
                            for p in range(P)]
                mv0 = m.col(0, INF, -cost)
                m.row([(mv0, 1.0)] + [(v, 1.0) for v in stay], lo=1.0)
            for p in range(1, P):
                mv = m.col(0, INF, -cost)
                paid.append(mv)
                # forgiven only where the work completes: in period p - 1 (z rises from p - 1 to p)
                z = self.z.get((p, j))
                done = [] if z is None else [(z, 1.0)] + ([(self.z[p - 1, j], -1.0)] if (p - 1, j) in self.z else [])
                for d in doms:
                    left = [(v, -1.0) for v in y[p - 1, d]] + [(v, 1.0) for v in y[p, d]]
                    if count_stops:
                        stop = m.col(0, INF)
                        m.row([(stop, 1.0)] + left, lo=0.0)
                        stops.append(stop)
                    m.row([(mv, 1.0)] + left + done, lo=0.0)
            if count_stops:
                m.row([(v, 1.0) for v in paid] + [(v, -1.0) for v in stops], lo=-1.0)
            self.moves_of[j] = ([mv0] if d0 >= 0 else []) + paid
            if any(repacked):
                # a cap its racks cannot hold in d0 means its placement has changed by then: at
                # least one move was paid in a period up to that one (a level change within a
                # domain costs nothing on its own in this model)
                moved = None
                for p, mv in enumerate([mv0] + paid):
                    c = m.col(0, INF)
                    m.row([(c, 1.0), (mv, -1.0)] + ([] if moved is None else [(moved, -1.0)]), lo=0.0, hi=0.0)
                    moved = c
                    if repacked[p]:
                        m.row([(moved, 1.0)] + [(v, -1.0) for v in repacked[p]], lo=0.0)
        for i in range(len(p0.svc_ids)):
            cost = float(p0.svc_move_cost_usd[i])
            if cost <= 0:
                continue
            run = p0.svc_running(i)
            for gi, gg in enumerate(self.groups):
                if i not in gg.services:
                    continue
                prev = None
                have = float(sum(run.get(k, 0) for k in gg.racks))
                for p in range(P):
                    cur = [(v, 1.0) for v in self.r_of.get((p, i, gi), [])]
                    dev = m.col(0, INF, -cost)
                    if prev is None:
                        m.row([(dev, 1.0)] + [(v, -1.0) for v, _ in cur], lo=-have)
                        m.row([(dev, 1.0)] + cur, lo=have)
                    else:
                        m.row([(dev, 1.0)] + [(v, -1.0) for v, _ in cur] + prev, lo=0.0)
                        m.row([(dev, 1.0)] + cur + [(v, -1.0) for v, _ in prev], lo=0.0)
                    prev = cur
            # replicas on racks outside every group cannot exist: every GPU rack is in a group

    def _ramp(self):
        h, m = self.h, self.m
        for s, lim in enumerate(h.ramp_kw_per_h):
            if np.isnan(lim):
                continue
            for p in range(1, h.n_periods):
                cur, cb = self.site_kw[p][s]
                prev, pb = self.site_kw[p - 1][s]
                step = float(lim * h.hours[p])
                terms = cur + [(v, -a) for v, a in prev]
                m.row(terms, lo=-step - (cb - pb), hi=step - (cb - pb))

    def bound_model(self) -> LinearModel:
        """A copy of the model with `bound_rows`: a tighter relaxation (every SPEC 6 plan still maps
        into it), for the bound only."""
        b = LinearModel()
        for name in ("lb", "ub", "cost", "integer", "rlo", "rhi", "rstart", "ridx", "rval"):
            setattr(b, name, list(getattr(self.m, name)))
        b.constant = self.m.constant
        for terms, lo, hi in self.bound_rows:
            b.row(terms, lo, hi)
        return b

    # --- MIP start and solution -------------------------------------------------------------
    def start_from(self, assignments: list[Assignment]) -> tuple[np.ndarray, np.ndarray]:
        """Sparse values of the binaries for a horizon plan (HiGHS completes the rest); with
        blocks, each block follows the plan's first period in it."""
        h = self.h
        _, _, work = evaluate_horizon(h, assignments)
        values: dict[int, float] = {}
        for (p, j, d, c), v in self.x.items():
            if v in values:
                continue
            a = assignments[p]
            on = (a.job_level[j] == c and bool(a.job_place[j])
                  and int(h.problems[p].rack_domain[next(iter(a.job_place[j]))]) == d)
            values[v] = 1.0 if on else 0.0
        runs = defaultdict(bool)
        for (p, j, d, c), v in self.x.items():
            runs[p, j] |= values[v] > 0.5
        for (p, j), v in self.z.items():
            comp = work.completed_h[j]
            done = comp is not None and (p >= h.n_periods or comp <= h.start_h[p] + 1e-9)
            values[v] = 1.0 if done and not runs[p, j] else 0.0
        return np.array(list(values), dtype=np.int32), np.array(list(values.values()), dtype=np.float64)

    def site_kw_of(self, values: np.ndarray) -> np.ndarray:
        """f8[P, S]: each site's power per period in a solution."""
        out = np.zeros((self.h.n_periods, len(self.site_kw[0])))
        for p, sites in enumerate(self.site_kw):
            for s, (terms, base) in sites.items():
                out[p, s] = base + sum(a * float(values[c]) for c, a in terms)
        return out

    def replicas(self, values: np.ndarray) -> np.ndarray:
        """f8[P, I, M]: replicas per period, service and GPU model (summed over rack groups and
        levels)."""
        p0 = self.h.problems[0]
        out = np.zeros((self.h.n_periods, len(p0.svc_ids), len(p0.gpu_model_ids)))
        for (p, i, g), cols in self.r_of.items():
            out[p, i, self.groups[g].model] += float(np.sum(values[cols]))
        return out

    def schedule(self, values: np.ndarray) -> list[dict[int, tuple[int, int]]]:
        """Per period: job -> (domain, level) chosen."""
        out: list[dict[int, tuple[int, int]]] = [dict() for _ in range(self.h.n_periods)]
        for (p, j, d, c), v in self.x.items():
            if values[v] > 0.5:
                out[p][j] = (d, c)
        return out


DEFAULT_BUDGET_S = 120.0   # when no time limit is given
POLISH_RESERVE_S = 38.0    # what the MILPs leave for disaggregating and polishing (192 periods of
                           # the 18 MW site take ~35 s with an even share of MILP polish each)
SEQUENTIAL_SHARE = 0.35    # on one core: coarse MILP, then polish, then the bound (the last 30 %)
COARSE_BINARIES = 4500     # training binaries the coarse model aims at (periods share decisions)
BOUND_MARGIN_S = 6.0      # the bound's process stops this long before the budget ends
RINS_RESERVE_S = 30.0     # of the search, for the full model's LP and the RINS search from the coarse plan
PARALLEL_ABOVE_COLUMNS = 20000   # smaller models prove their bound in-process (a process costs ~2 s)


@dataclass
class _Bound:
    """What the bound's branch and bound reached: its bound and, when it solved the model
    outright, the optimum and its values."""
    bound: Optional[float]
    objective: Optional[float]
    values: Optional[np.ndarray]


def _milp_bound(m: LinearModel, time_limit_s: float) -> Optional[float]:
    """The dual bound HiGHS proves for `m` within the time limit (the bound on one core)."""
    hs = m.highs()
    hs.setOptionValue("time_limit", max(1.0, time_limit_s))
    hs.setOptionValue("mip_rel_gap", 0.0)
    hs.run()
    b = hs.getInfo().mip_dual_bound
    return float(b) if math.isfinite(b) else None


def _rins(full: AggregatedHorizon, binaries: dict[int, float], time_limit_s: float):
    """RINS on the full-resolution model from a coarse schedule (`binaries`: full column ->
    value): the binaries on which the schedule and the model's LP relaxation agree (within 0.5)
    are fixed and HiGHS searches the rest from the schedule. Returns (the schedule's objective in
    the full model, the best objective, its values), or None when time runs out first."""
    t0 = time.perf_counter()
    m = full.m
    ints = np.nonzero(m.integer)[0].astype(np.int32)
    x = np.zeros(m.n_cols)
    for c, v in binaries.items():
        x[c] = round(v)
    lp = m.highs(relax=True)
    lp.setOptionValue("time_limit", max(1.0, time_limit_s - 3.0))
    lp.run()
    if lp.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    relaxed = np.array(lp.getSolution().col_value)
    # the schedule's continuous values: the LP with its binaries fixed
    lp.changeColsBounds(len(ints), ints, x[ints], x[ints])
    lp.run()
    if lp.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    start = highspy.HighsSolution()
    start.col_value = lp.getSolution().col_value
    start.value_valid = True
    base = float(lp.getInfo().objective_function_value)
    left = time_limit_s - (time.perf_counter() - t0)
    if left < 2.0:
        return base, base, np.array(start.col_value)
    agree = ints[np.abs(relaxed[ints] - x[ints]) < 0.5]
    hs = m.highs()
    hs.changeColsBounds(len(agree), agree, x[agree], x[agree])
    hs.setSolution(start)
    hs.setOptionValue("time_limit", left)
    hs.setOptionValue("mip_rel_gap", 1e-4)
    hs.setOptionValue("mip_heuristic_effort", 0.3)
    hs.run()
    # (a second round around the new incumbent found nothing more on wa-48h: the first is
    # usually solved to optimality, ~900 free binaries in ~17 s)
    if hs.getInfo().primal_solution_status != 2 or hs.getInfo().objective_function_value < base:
        return base, base, np.array(start.col_value)
    return base, float(hs.getInfo().objective_function_value), np.array(hs.getSolution().col_value)


@dataclass
class BranchObjects:
    """What the bound's branch and bound branches on, in this order: each job's number of moves
    up to a period (an integer in every optimal solution, nondecreasing in time: the whole
    horizon first, then the middle of the stretch where it is fractional, which halves it),
    each job's completion chain (z, monotone too: the middle of its fractional stretch) and the
    training binaries. `moves`: per job, its move columns in period order and the USD a move
    costs (which ranks candidates)."""
    moves: list[tuple[list[int], float]]
    chains: list[list[int]]
    binaries: list[int]


def branch_objects(agg: AggregatedHorizon) -> BranchObjects:
    """The branching objects of `agg`'s model (see `BranchObjects`)."""
    p0 = agg.h.problems[0]
    moves = [(cols, float(p0.job_move_cost_usd[j])) for j, cols in sorted(agg.moves_of.items())]
    chains = []
    for j in range(len(p0.job_ids)):
        chain = [agg.z[p, j] for p in range(1, agg.h.n_periods + 1) if (p, j) in agg.z]
        if chain:
            chains.append(chain)
    return BranchObjects(moves, chains, sorted(set(agg.x.values())))


def _branch_bound(m: LinearModel, objs: BranchObjects, time_limit_s: float) -> _Bound:
    """An upper bound on the model's optimum by best-first branch and bound on its LP
    relaxation over `objs` until the time limit: the largest LP value of the open nodes (every
    optimal solution lies in one of them). HiGHS's own search spends the first minute of this
    model on cut rounds at the root (-$110 on wa-48h); branching on move counts goes further in
    the same time, because the LP pays fractions of moves (a job 56% stopped through a price
    spike) and, branch by branch, shifts a fractional stop a period later (hence the halving)."""
    t0 = time.perf_counter()
    lp = m.highs(relax=True)
    lp.setOptionValue("time_limit", max(1.0, time_limit_s))   # HiGHS counts every run of the object
    lb0, ub0 = np.array(m.lb), np.array(m.ub)
    prefix_row: dict[tuple[int, int], int] = {}        # (job, last period) -> row of its move count
    touched_rows: set[int] = set()
    touched_cols: set[int] = set()
    tol = 1e-6

    def row_of(j: int, q: int) -> int:
        if (j, q) not in prefix_row:
            cols = objs.moves[j][0][:q + 1]
            lp.addRow(-INF, INF, len(cols), np.array(cols, dtype=np.int32), np.ones(len(cols)))
            prefix_row[j, q] = lp.getNumRow() - 1
        return prefix_row[j, q]

    def solve(node: tuple[dict, dict]) -> Optional[np.ndarray]:
        rows, cols = node
        for r in touched_rows | set(rows):
            lo, hi = rows.get(r, (-INF, INF))
            lp.changeRowBounds(r, lo, hi)
        for c in touched_cols | set(cols):
            lo, hi = cols.get(c, (lb0[c], ub0[c]))
            lp.changeColBounds(c, lo, hi)
        touched_rows.update(rows)
        touched_cols.update(cols)
        lp.run()
        status = lp.getModelStatus()
        if status == highspy.HighsModelStatus.kUnknown:
            # numerical trouble from the warm start (seen once in ~100 nodes on wa-48h): solve
            # this node again from scratch
            lp.clearSolver()
            lp.run()
            status = lp.getModelStatus()
        if status == highspy.HighsModelStatus.kInfeasible:
            return None
        if status != highspy.HighsModelStatus.kOptimal:
            raise TimeoutError
        return np.array(lp.getSolution().col_value)

    def frac(v: float) -> float:
        return min(v - math.floor(v), math.ceil(v) - v)

    def pick(x: np.ndarray):
        """('row', (job, period), value) or ('col', column, value) to branch on next; None
        when every object is integral."""
        best = (tol, None)
        for j, (cols, w) in enumerate(objs.moves):
            run = np.cumsum(x[cols])
            if frac(run[-1]) * w > best[0]:
                best = (frac(run[-1]) * w, ("row", (j, len(cols) - 1), float(run[-1])))
        if best[1] is None:
            for j, (cols, w) in enumerate(objs.moves):
                run = np.cumsum(x[cols])
                fr = [q for q in range(len(cols)) if frac(run[q]) > tol]
                if fr and max(frac(run[q]) for q in fr) * w > best[0]:
                    q = fr[len(fr) // 2]
                    best = (max(frac(run[q]) for q in fr) * w, ("row", (j, q), float(run[q])))
        if best[1] is not None:
            return best[1]
        for chain in objs.chains:
            fr = [c for c in chain if frac(x[c]) > tol]
            if fr:
                c = fr[len(fr) // 2]
                return "col", c, float(x[c])
        fr = [(frac(x[c]), c) for c in objs.binaries if frac(x[c]) > tol]
        if fr:
            c = max(fr)[1]
            return "col", c, float(x[c])
        return None

    def entry(value: float, tie: int, node: tuple[dict, dict], x: np.ndarray):
        """A heap entry: (-LP value, tie-break, node, its branching, its values when integral)."""
        what = pick(x)
        return -value, tie, node, what, x if what is None else None

    try:
        x = solve(({}, {}))
    except TimeoutError:
        return _Bound(None, None, None)
    if x is None:
        return _Bound(None, None, None)
    heap = [entry(float(lp.getInfo().objective_function_value), 0, ({}, {}), x)]
    n = 0
    while heap and time.perf_counter() - t0 < time_limit_s:
        top = heapq.heappop(heap)
        negv, _, node, what, integral = top
        if what is None:       # integral: the best open node is a solution, so optimal
            return _Bound(-negv, -negv, integral)
        kind, key, v = what
        children = []
        try:
            for lo, hi in ((-INF, math.floor(v)), (math.ceil(v), INF)):
                rows, cols = dict(node[0]), dict(node[1])
                if kind == "row":
                    r = row_of(*key)
                    plo, phi = rows.get(r, (-INF, INF))
                    rows[r] = (max(lo, plo), min(hi, phi))
                else:
                    plo, phi = cols.get(key, (lb0[key], ub0[key]))
                    cols[key] = (max(lo, plo), min(hi, phi))
                got = solve((rows, cols))
                if got is not None:
                    n += 1      # a child's LP value never exceeds its parent's (up to round-off)
                    children.append(entry(min(float(lp.getInfo().objective_function_value), -negv), n, (rows, cols), got))
        except TimeoutError:       # the node stays open whole
            heapq.heappush(heap, top)
            break
        log.debug("bound %.1f s: %s %s at %.2f -> %s, %d open", time.perf_counter() - t0, kind, key, v,
                  [round(-c[0], 1) for c in children], len(heap) + len(children))
        for child in children:
            heapq.heappush(heap, child)
    if not heap:
        return _Bound(None, None, None)
    return _Bound(-heap[0][0], None, None)


def _result(future, timeout_s: float, extra: dict) -> Optional[_Bound]:
    try:
        return future.result(timeout=timeout_s)
    except Exception as exc:     # the bound is optional; the plan stands on its own
        extra["bound_error"] = f"{type(exc).__name__}: {exc}"
        return None


def solve_horizon_aggregated(h: Horizon, opts: Optional[SolveOptions] = None,
                             start: Optional[HorizonResult] = None) -> HorizonResult:
    """Plan a long horizon with the aggregated MILP (see the module docstring):
    1. the rolling horizon gives a first exact plan and the MIP start;
    2. until only the time the polish needs is left, HiGHS searches a coarse copy of the
       aggregated model, in which consecutive periods (about an hour) share their training
       decisions, then RINS improves its schedule on the full-resolution model (`_rins`, the
       last RINS_RESERVE_S);
    3. that schedule is disaggregated into an exact plan by the rolling horizon restricted to
       it, each period polished by the single-interval MILP in the time left.
    Meanwhile a second process proves the upper bound on the full-resolution model by branch
    and bound on its LP (`_branch_bound`) until just before the budget ends (a small model may
    be solved there outright: its schedule is then used if better). On one core (or for small
    models) the coarse search, the polish and then HiGHS on the full model for the bound run
    one after the other. The better exact plan (this or the rolling one) is returned with its
    gap to the bound."""
    opts = opts or SolveOptions()
    t0 = time.perf_counter()
    budget = opts.time_limit_s if opts.time_limit_s else DEFAULT_BUDGET_S
    deadline = t0 + budget
    if start is None:
        start = solve_rolling(h, opts)
    full = AggregatedHorizon(h)
    parallel = ((opts.threads or 2) > 1 and (os.cpu_count() or 1) > 1
                and full.m.n_cols > PARALLEL_ABOVE_COLUMNS)
    pool = future = None
    bound = None
    search_s = budget - POLISH_RESERVE_S      # the search for a schedule stops here (parallel)
    if parallel:
        # the bound needs no schedule: it runs on the second core until the plan is ready
        pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        future = pool.submit(_branch_bound, full.bound_model(), branch_objects(full),
                             budget - (time.perf_counter() - t0) - BOUND_MARGIN_S)
    block = max(1, math.ceil(len(full._xcol) / COARSE_BINARIES))
    coarse = AggregatedHorizon(h, block=block, stop_rows=False) if block > 1 else full
    extra = {"periods": h.n_periods, "columns": full.m.n_cols, "rows": full.m.n_rows,
             "block_periods": block, "coarse_binaries": int(sum(coarse.m.integer))}
    try:
        hs = coarse.m.highs()
        if start.assignments is not None:
            idx, val = coarse.start_from(start.assignments)
            hs.setSolution(len(idx), idx, val)
        limit = (search_s if parallel else SEQUENTIAL_SHARE * budget) - (time.perf_counter() - t0)
        rins = parallel and coarse is not full
        if rins:
            limit -= RINS_RESERVE_S
        hs.setOptionValue("time_limit", max(1.0, limit))
        hs.setOptionValue("mip_rel_gap", max(opts.gap or 0.0, 1e-4))
        hs.setOptionValue("mip_heuristic_effort", 0.3)
        hs.run()
        best = None      # (objective in the aggregated model, the model, its values, where from)
        if hs.getInfo().primal_solution_status == 2:
            obj = float(hs.getInfo().objective_function_value)
            vals = np.array(hs.getSolution().col_value)
            best = (obj, coarse, vals, "coarse")
            extra["coarse_objective_usd"] = obj
            if rins:
                improved = _rins(full, {full.x[k]: vals[v] for k, v in coarse.x.items()}
                                 | {full.z[k]: vals[v] for k, v in coarse.z.items()}, t0 + search_s - time.perf_counter())
                if improved is not None:
                    extra["rins_from_usd"], extra["rins_objective_usd"] = improved[0], improved[1]
                    best = (improved[1], full, improved[2], "rins")
        proved = None
        if future is not None and future.done():      # a small model: the bound may be its optimum
            proved = _result(future, 0.0, extra)
            if proved is not None and proved.objective is not None:
                extra["full_objective_usd"] = proved.objective
                if best is None or proved.objective > best[0] + 1e-6:
                    best = (proved.objective, full, proved.values, "full")
        disaggregated = None
        if best is not None:
            extra["aggregated_objective_usd"], model, vals, extra["schedule_from"] = best
            left = (deadline if parallel else t0 + 2 * SEQUENTIAL_SHARE * budget) - time.perf_counter() - 5.0
            dis = solve_rolling(h, opts, polish_s=max(0.0, left), schedule=model.schedule(vals),
                                replicas=model.replicas(vals), site_kw=model.site_kw_of(vals))
            if dis.assignments is not None:
                disaggregated = stick_replicas(h, dis.assignments)
        cands = feasible_plans(h, [("aggregated", disaggregated), ("rolling", start.assignments)])
        if future is not None:
            proved = proved or _result(future, max(5.0, deadline - time.perf_counter()), extra)
            bound = proved.bound if proved is not None else None
        if not parallel:
            bound = _milp_bound(full.bound_model(), deadline - time.perf_counter() - 1.0)
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
    seconds = time.perf_counter() - t0
    if not cands:
        return HorizonResult(None, "milp-aggregated", "infeasible", seconds, backend="highs",
                             infeasible=list(start.infeasible) or [f"no feasible horizon plan within {budget} s"],
                             extra=extra)
    total, asg, source = max(cands, key=lambda c: c[0])
    extra["source"] = source
    extra["rolling_objective_usd"] = next((c[0] for c in cands if c[2] == "rolling"), None)
    if bound is not None and bound < total:
        bound = total
    gap = relative_gap(total, bound)
    status = "optimal" if gap is not None and gap <= (opts.gap or 0.0) + 1e-9 else "feasible"
    return HorizonResult(asg, "milp-aggregated", status, seconds, backend="highs", bound_usd=bound, gap=gap,
                         extra=extra)


def _assignment_min_cost(cost: np.ndarray) -> list[int]:
    """The column of each row in a minimum-cost assignment of a square cost matrix."""
    return linear_sum_assignment(cost)[1].tolist()


def stick_replicas(h: Horizon, assignments: list[Assignment]) -> list[Assignment]:
    """Period by period, swap the whole contents (replicas per service and level) of identical
    GPU racks outside every training domain so that each rack keeps as many of the replicas it
    ran in the period before as it can: limits and the period's rate are unchanged (the racks
    are interchangeable), only replica moves are saved. The disaggregated plan's per-period
    solver does not see that a replica started on a twin rack is a move the aggregated model
    never paid."""
    p0 = h.problems[0]
    groups: dict[tuple, list[int]] = defaultdict(list)
    for k in range(p0.n_racks):
        if p0.rack_kind[k] == GPU and p0.rack_domain[k] < 0:
            groups[(int(p0.rack_site[k]), int(p0.rack_feed[k]), int(p0.rack_loop[k]), int(p0.rack_model[k]),
                    int(p0.rack_count[k]), float(p0.rack_limit_kw[k]), float(p0.rack_base_kw[k]))].append(k)
    groups = {key: racks for key, racks in groups.items() if len(racks) > 1}
    if not groups:
        return assignments
    cost = p0.svc_move_cost_usd
    I = len(p0.svc_ids)
    prev = [p0.svc_running(i) for i in range(I)]
    out = []
    for a in assignments:
        content: dict[int, list[dict[int, int]]] = {}       # rack -> per service: level -> replicas
        for racks in groups.values():
            for k in racks:
                content[k] = [dict() for _ in range(I)]
        for i in range(I):
            for (k, c), r in a.svc_place[i].items():
                if k in content:
                    content[k][i][c] = r
        move_to: dict[int, int] = {}
        for racks in groups.values():
            n = len(racks)
            m = np.zeros((n, n))
            for x, k in enumerate(racks):                # where the contents of rack k go
                have = [sum(content[k][i].values()) for i in range(I)]
                for y, k2 in enumerate(racks):
                    m[x, y] = sum(cost[i] * abs(have[i] - prev[i].get(k2, 0)) for i in range(I))
            for x, y in enumerate(_assignment_min_cost(m)):
                move_to[racks[x]] = racks[y]
        b = Assignment(a.job_level, a.job_place, [dict() for _ in range(I)], a.miners)
        for i in range(I):
            for (k, c), r in a.svc_place[i].items():
                b.svc_place[i][(move_to.get(k, k), c)] = r
        out.append(b)
        prev = []
        for i in range(I):
            per_rack: dict[int, int] = defaultdict(int)
            for (k, _), r in b.svc_place[i].items():
                per_rack[k] += r
            prev.append(dict(per_rack))
    return out
