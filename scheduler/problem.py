"""Scenario -> `Problem`: the one compiled, numeric form of SPEC sections 1-4 that every solver reads.

Indices are positions in the id tuples. Ragged data (cap levels, miner modes, domain racks,
running placements) is padded or stored as CSR (`*_ptr` offsets into flat arrays).
Power figures are in kW unless the name says W; money in USD.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .model.checks import domains_of
from .model.scenario import Scenario

GPU, MINER = 0, 1


@dataclass(frozen=True, eq=False)
class Problem:
    name: str
    interval_h: float
    hashprice_usd_per_ph_day: float
    # sites (S)
    site_ids: tuple[str, ...]
    site_grid_limit_kw: np.ndarray       # f8[S]
    site_price_usd_per_mwh: np.ndarray   # f8[S]
    site_base_kw: np.ndarray             # f8[S]
    site_ambient_c: np.ndarray           # f8[S]
    # feeds (F)
    feed_ids: tuple[str, ...]
    feed_site: np.ndarray                # i8[F]
    feed_limit_kw: np.ndarray            # f8[F]
    # cooling loops (L)
    loop_ids: tuple[str, ...]
    loop_site: np.ndarray                # i8[L]
    loop_nameplate_kw: np.ndarray        # f8[L] capacity_kw before derating
    loop_cap_kw: np.ndarray              # f8[L] derated capacity at the site's ambient
    loop_kw_per_kw_heat: np.ndarray      # f8[L]
    # GPU models (G) with cap levels padded to C; unused levels have cap_w = inf
    gpu_model_ids: tuple[str, ...]
    gpu_n_levels: np.ndarray             # i8[G]
    gpu_cap_w: np.ndarray                # f8[G,C]
    gpu_perf: np.ndarray                 # f8[G,C]
    gpu_idle_w: np.ndarray               # f8[G]
    gpu_host_w: np.ndarray               # f8[G]
    gpu_busy_kw: np.ndarray              # f8[G,C] extra rack kW of one busy GPU at level c over an idle one
    # miner models with modes padded to Q; unused modes have th_s = 0, kw = inf
    miner_model_ids: tuple[str, ...]
    miner_mode_names: tuple[tuple[str, ...], ...]
    miner_n_modes: np.ndarray            # i8[Mm]
    miner_th_s: np.ndarray               # f8[Mm,Q]
    miner_kw: np.ndarray                 # f8[Mm,Q]
    # racks (K)
    rack_ids: tuple[str, ...]
    rack_site: np.ndarray                # i8[K]
    rack_feed: np.ndarray                # i8[K]
    rack_loop: np.ndarray                # i8[K]
    rack_kind: np.ndarray                # i8[K] GPU or MINER
    rack_limit_kw: np.ndarray            # f8[K]
    rack_base_kw: np.ndarray             # f8[K] power with nothing busy: idle_kw (+ all GPUs idle)
    rack_model: np.ndarray               # i8[K] GPU model index or miner model index, by kind
    rack_count: np.ndarray               # i8[K] GPUs or miners in the rack
    rack_domain: np.ndarray              # i8[K] -1 when none
    rack_site_factor: np.ndarray         # f8[K] site kW per rack kW: 1 + kw_per_kw_heat of its loop
    # domains (D)
    domain_ids: tuple[str, ...]
    domain_site: np.ndarray              # i8[D]
    domain_model: np.ndarray             # i8[D]
    domain_gpus: np.ndarray              # i8[D] total GPUs
    domain_rack_ptr: np.ndarray          # i8[D+1]
    domain_racks: np.ndarray             # i8[...] rack indices
    # training jobs (J)
    job_ids: tuple[str, ...]
    job_gpus: np.ndarray                 # i8[J]
    job_value_per_gpu_h: np.ndarray      # f8[J,G] NaN where the model is not allowed
    job_min_level: np.ndarray            # i8[J,G] lowest allowed cap level index (n_levels if none)
    job_required: np.ndarray             # bool[J]
    job_site_ok: np.ndarray              # bool[J,S]
    job_move_cost_usd: np.ndarray        # f8[J]
    job_run_ptr: np.ndarray              # i8[J+1] CSR of the running placement
    job_run_rack: np.ndarray             # i8[...]
    job_run_gpus: np.ndarray             # i8[...]
    job_run_domain: np.ndarray           # i8[J] -1 when not running
    # inference services (I)
    svc_ids: tuple[str, ...]
    svc_gpus_per_replica: np.ndarray     # i8[I]
    svc_replica_rps: np.ndarray          # f8[I,G] 0 where the model is not allowed
    svc_min_level: np.ndarray            # i8[I,G]
    svc_demand_rps: np.ndarray           # f8[I]
    svc_value_per_1k: np.ndarray         # f8[I]
    svc_penalty_per_1k: np.ndarray       # f8[I]
    svc_site_ok: np.ndarray              # bool[I,S]
    svc_move_cost_usd: np.ndarray        # f8[I]
    svc_run_ptr: np.ndarray              # i8[I+1]
    svc_run_rack: np.ndarray             # i8[...]
    svc_run_replicas: np.ndarray         # i8[...]
    # derived money coefficients
    miner_usd_per_th_h: float = field(default=0.0)   # hashprice per TH/s per hour

    @property
    def n_racks(self) -> int:
        return len(self.rack_ids)

    # kW with nothing busy (every rack at rack_base_kw): the fixed part of each limit
    @cached_property
    def feed_base_kw(self) -> np.ndarray:
        """f8[F]"""
        return np.bincount(self.rack_feed, weights=self.rack_base_kw, minlength=len(self.feed_ids))

    @cached_property
    def loop_base_kw(self) -> np.ndarray:
        """f8[L] heat"""
        return np.bincount(self.rack_loop, weights=self.rack_base_kw, minlength=len(self.loop_ids))

    @cached_property
    def site_idle_kw(self) -> np.ndarray:
        """f8[S] site_base_kw plus every rack's base with its cooling"""
        return self.site_base_kw + np.bincount(self.rack_site, weights=self.rack_base_kw * self.rack_site_factor,
                                               minlength=len(self.site_ids))

    # money over the interval (USD), as the MILP models price their variables
    @cached_property
    def usd_per_site_kw(self) -> np.ndarray:
        """f8[S] energy cost of one site-kW over the interval"""
        return self.interval_h * self.site_price_usd_per_mwh / 1000.0

    @cached_property
    def usd_per_served_rps(self) -> np.ndarray:
        """f8[I] one more rps served over the interval: its value plus the penalty it avoids
        (s rps for an hour is 3.6 thousand requests)"""
        return self.interval_h * 3.6 * (self.svc_value_per_1k + self.svc_penalty_per_1k)

    @cached_property
    def unserved_usd(self) -> np.ndarray:
        """f8[I] the penalty over the interval if nothing is served"""
        return self.interval_h * 3.6 * self.svc_demand_rps * self.svc_penalty_per_1k

    @property
    def usd_per_th(self) -> float:
        """mining revenue of one TH/s over the interval"""
        return self.interval_h * self.miner_usd_per_th_h

    def job_running(self, j: int) -> dict[int, int]:
        a, b = self.job_run_ptr[j], self.job_run_ptr[j + 1]
        return dict(zip(self.job_run_rack[a:b].tolist(), self.job_run_gpus[a:b].tolist()))

    def svc_running(self, i: int) -> dict[int, int]:
        a, b = self.svc_run_ptr[i], self.svc_run_ptr[i + 1]
        return dict(zip(self.svc_run_rack[a:b].tolist(), self.svc_run_replicas[a:b].tolist()))

    def domain_rack_list(self, d: int) -> np.ndarray:
        return self.domain_racks[self.domain_rack_ptr[d]:self.domain_rack_ptr[d + 1]]

    def job_domain_ok(self, j: int, d: int) -> bool:
        """Can job j run in domain d (model allowed, site allowed, enough GPUs, a cap level allowed)?"""
        g = self.domain_model[d]
        return bool(not np.isnan(self.job_value_per_gpu_h[j, g])
                    and self.job_site_ok[j, self.domain_site[d]]
                    and self.domain_gpus[d] >= self.job_gpus[j]
                    and self.job_min_level[j, g] < self.gpu_n_levels[g])

    def job_usd_per_h(self, j: int, g: int, c: int) -> float:
        """SPEC 4: what training job j earns per hour on GPU model g at cap level c."""
        return float(self.job_gpus[j] * self.job_value_per_gpu_h[j, g] * self.gpu_perf[g, c])

    def job_gpu_h_per_h(self, j: int, g: int, c: int) -> float:
        """SPEC 6: the work (GPU-hours at perf 1.0) job j delivers per hour on model g at level c."""
        return float(self.job_gpus[j] * self.gpu_perf[g, c])

    def replica_rps(self, i: int, g: int, c: int) -> float:
        """SPEC 4: the requests per second one replica of service i serves on model g at level c."""
        return float(self.svc_replica_rps[i, g] * self.gpu_perf[g, c])

    def replica_kw(self, i: int, g: int, c: int) -> float:
        """SPEC 3: the kW one replica of service i adds to its rack's idle draw on model g at level c
        (its GPUs busy instead of idle)."""
        return float(self.svc_gpus_per_replica[i] * self.gpu_busy_kw[g, c])

    def rack_holds(self, k: int, c: int) -> int:
        """How many GPUs GPU rack k can run busy at cap level c within its power limit."""
        return units_within(self.rack_count[k], float(self.rack_limit_kw[k] - self.rack_base_kw[k]),
                            float(self.gpu_busy_kw[self.rack_model[k], c]))

    def svc_rack_ok(self, i: int, k: int) -> bool:
        """Can service i place replicas on rack k?"""
        if self.rack_kind[k] != GPU:
            return False
        g = self.rack_model[k]
        return bool(self.svc_replica_rps[i, g] > 0 and self.svc_site_ok[i, self.rack_site[k]]
                    and self.svc_min_level[i, g] < self.gpu_n_levels[g]
                    and self.rack_count[k] >= self.svc_gpus_per_replica[i])


def units_within(count: int, room_kw: float, kw_each: float) -> int:
    """How many of `count` units drawing `kw_each` more than idle fit in `room_kw` (a rack's power
    limit less its base, none when that is negative): all of them when a unit draws nothing more."""
    return int(count) if kw_each <= 0 else max(0, min(int(count), int(np.floor(room_kw / kw_each + 1e-9))))


def loop_capacity_kw(capacity_kw: float, derate_per_c: float, ambient_c: float, design_ambient_c: float) -> float:
    """SPEC 3: capacity_kw * clamp(1 - derate_per_c * (ambient - design), 0, 1)."""
    return capacity_kw * min(1.0, max(0.0, 1.0 - derate_per_c * (ambient_c - design_ambient_c)))


def _csr(rows: list[list[tuple[int, int]]]):
    ptr = np.zeros(len(rows) + 1, dtype=np.int64)
    for n, row in enumerate(rows):
        ptr[n + 1] = ptr[n] + len(row)
    flat = [x for row in rows for x in row]
    a = np.array([x[0] for x in flat], dtype=np.int64)
    b = np.array([x[1] for x in flat], dtype=np.int64)
    return ptr, a, b


def compile_problem(sc: Scenario, period: int | None = None) -> Problem:
    """Compile a validated scenario; with `period`, that period's prices, limits, ambient,
    demand, hashprice and hours replace the base values (SPEC section 6)."""
    per = sc.periods[period] if period is not None else None
    interval_h = per.hours if per is not None else sc.interval_h
    hashprice = (per.hashprice_usd_per_ph_day if per is not None and per.hashprice_usd_per_ph_day is not None
                 else sc.hashprice_usd_per_ph_day)

    site_ids = tuple(s.id for s in sc.sites)
    site_index = {s: n for n, s in enumerate(site_ids)}

    def site_value(field_name: str, site) -> float:
        if per is not None and site.id in getattr(per, field_name):
            return float(getattr(per, field_name)[site.id])
        return float(getattr(site, field_name))

    site_grid = np.array([site_value("grid_limit_kw", s) for s in sc.sites], dtype=np.float64)
    site_price = np.array([site_value("energy_price_usd_per_mwh", s) for s in sc.sites], dtype=np.float64)
    site_ambient = np.array([site_value("ambient_c", s) for s in sc.sites], dtype=np.float64)
    site_base = np.array([s.base_kw for s in sc.sites], dtype=np.float64)

    feed_ids, feed_site, feed_limit, feed_index = [], [], [], {}
    loop_ids, loop_site, loop_plate, loop_cap, loop_kwph, loop_index = [], [], [], [], [], {}
    for si, s in enumerate(sc.sites):
        for f in s.feeds:
            feed_index[(si, f.id)] = len(feed_ids)
            feed_ids.append(f.id)
            feed_site.append(si)
            feed_limit.append(f.limit_kw)
        for lp in s.loops:
            loop_index[(si, lp.id)] = len(loop_ids)
            loop_ids.append(lp.id)
            loop_site.append(si)
            loop_plate.append(lp.capacity_kw)
            loop_cap.append(loop_capacity_kw(lp.capacity_kw, lp.derate_per_c, site_ambient[si], lp.design_ambient_c))
            loop_kwph.append(lp.kw_per_kw_heat)

    gpu_model_ids = tuple(sc.gpu_models)
    gpu_index = {m: n for n, m in enumerate(gpu_model_ids)}
    G = len(gpu_model_ids)
    C = max((len(m.cap_levels) for m in sc.gpu_models.values()), default=1)
    gpu_n_levels = np.zeros(G, dtype=np.int64)
    gpu_cap_w = np.full((G, C), np.inf)
    gpu_perf = np.zeros((G, C))
    gpu_idle_w = np.zeros(G)
    gpu_host_w = np.zeros(G)
    for g, m in enumerate(sc.gpu_models.values()):
        gpu_n_levels[g] = len(m.cap_levels)
        gpu_idle_w[g], gpu_host_w[g] = m.idle_w, m.host_w
        for c, lv in enumerate(m.cap_levels):
            gpu_cap_w[g, c] = lv.cap_w
            gpu_perf[g, c] = lv.perf
    gpu_busy_kw = (gpu_cap_w + gpu_host_w[:, None] - gpu_idle_w[:, None]) / 1000.0

    miner_model_ids = tuple(sc.miner_models)
    miner_index = {m: n for n, m in enumerate(miner_model_ids)}
    Q = max((len(m.modes) for m in sc.miner_models.values()), default=1)
    miner_n_modes = np.zeros(len(miner_model_ids), dtype=np.int64)
    miner_th = np.zeros((len(miner_model_ids), Q))
    miner_kw = np.full((len(miner_model_ids), Q), np.inf)
    mode_names = []
    for mi, m in enumerate(sc.miner_models.values()):
        miner_n_modes[mi] = len(m.modes)
        mode_names.append(tuple(m.modes))
        for q, mode in enumerate(m.modes.values()):
            miner_th[mi, q] = mode.th_s
            miner_kw[mi, q] = mode.kw

    domain_racks_by_id = domains_of(sc)
    domain_ids = tuple(domain_racks_by_id)
    domain_index = {d: n for n, d in enumerate(domain_ids)}

    rack_rows = []
    for si, s in enumerate(sc.sites):
        for r in s.racks:
            fi, li = feed_index[(si, r.feed)], loop_index[(si, r.loop)]
            if r.gpus is not None:
                g = gpu_index[r.gpus.model]
                base = r.idle_kw + r.gpus.count * gpu_idle_w[g] / 1000.0
                rack_rows.append((r.id, si, fi, li, GPU, r.limit_kw, base, g, r.gpus.count,
                                  domain_index.get(r.domain, -1) if r.domain else -1))
            else:
                rack_rows.append((r.id, si, fi, li, MINER, r.limit_kw, r.idle_kw,
                                  miner_index[r.miners.model], r.miners.count, -1))
    rack_ids = tuple(row[0] for row in rack_rows)
    rack_index = {rid: n for n, rid in enumerate(rack_ids)}

    def col(n, dtype):
        return np.array([row[n] for row in rack_rows], dtype=dtype)

    rack_loop = col(3, np.int64)
    rack_domain = col(9, np.int64)
    loop_kwph_arr = np.array(loop_kwph, dtype=np.float64)

    domain_rows = [[(rack_index[rid], 0) for rid in domain_racks_by_id[d]] for d in domain_ids]
    domain_rack_ptr, domain_racks, _ = _csr(domain_rows)
    rack_count = col(8, np.int64)
    rack_model = col(7, np.int64)
    domain_site = np.array([rack_rows[rows[0][0]][1] for rows in domain_rows], dtype=np.int64)
    domain_model = np.array([rack_model[rows[0][0]] for rows in domain_rows], dtype=np.int64)
    domain_gpus = np.array([sum(rack_count[k] for k, _ in rows) for rows in domain_rows], dtype=np.int64)

    def min_level(min_cap_w, g: int) -> int:
        if min_cap_w is None:
            return 0
        levels = gpu_cap_w[g, :gpu_n_levels[g]]
        ok = np.nonzero(levels >= min_cap_w - 1e-9)[0]
        return int(ok[0]) if len(ok) else int(gpu_n_levels[g])

    S, J, I = len(site_ids), len(sc.training), len(sc.inference)
    job_value = np.full((J, G), np.nan)
    job_min_level = np.zeros((J, G), dtype=np.int64)
    job_site_ok = np.zeros((J, S), dtype=bool)
    job_run_rows, job_run_domain = [], np.full(J, -1, dtype=np.int64)
    for j, job in enumerate(sc.training):
        for m, v in job.value_per_gpu_h.items():
            job_value[j, gpu_index[m]] = v
        for g in range(G):
            job_min_level[j, g] = min_level(job.min_cap_w, g)
        for s in (job.sites or site_ids):
            job_site_ok[j, site_index[s]] = True
        row = [(rack_index[rid], n) for rid, n in (job.running or {}).items()]
        job_run_rows.append(row)
        if row:
            job_run_domain[j] = rack_domain[row[0][0]]
    job_run_ptr, job_run_rack, job_run_gpus = _csr(job_run_rows)

    svc_rps = np.zeros((I, G))
    svc_min_level = np.zeros((I, G), dtype=np.int64)
    svc_site_ok = np.zeros((I, S), dtype=bool)
    svc_run_rows = []
    demand = []
    for i, svc in enumerate(sc.inference):
        for m, v in svc.replica_rps.items():
            svc_rps[i, gpu_index[m]] = v
        for g in range(G):
            svc_min_level[i, g] = min_level(svc.min_cap_w, g)
        for s in (svc.sites or site_ids):
            svc_site_ok[i, site_index[s]] = True
        svc_run_rows.append([(rack_index[rid], n) for rid, n in (svc.running or {}).items() if n > 0])
        d = svc.demand_rps
        if per is not None and svc.id in per.demand_rps:
            d = per.demand_rps[svc.id]
        demand.append(d)
    svc_run_ptr, svc_run_rack, svc_run_replicas = _csr(svc_run_rows)

    return Problem(
        name=sc.name or "scenario",
        interval_h=float(interval_h),
        hashprice_usd_per_ph_day=float(hashprice),
        site_ids=site_ids,
        site_grid_limit_kw=site_grid,
        site_price_usd_per_mwh=site_price,
        site_base_kw=site_base,
        site_ambient_c=site_ambient,
        feed_ids=tuple(feed_ids),
        feed_site=np.array(feed_site, dtype=np.int64),
        feed_limit_kw=np.array(feed_limit, dtype=np.float64),
        loop_ids=tuple(loop_ids),
        loop_site=np.array(loop_site, dtype=np.int64),
        loop_nameplate_kw=np.array(loop_plate, dtype=np.float64),
        loop_cap_kw=np.array(loop_cap, dtype=np.float64),
        loop_kw_per_kw_heat=loop_kwph_arr,
        gpu_model_ids=gpu_model_ids,
        gpu_n_levels=gpu_n_levels,
        gpu_cap_w=gpu_cap_w,
        gpu_perf=gpu_perf,
        gpu_idle_w=gpu_idle_w,
        gpu_host_w=gpu_host_w,
        gpu_busy_kw=gpu_busy_kw,
        miner_model_ids=miner_model_ids,
        miner_mode_names=tuple(mode_names),
        miner_n_modes=miner_n_modes,
        miner_th_s=miner_th,
        miner_kw=miner_kw,
        rack_ids=rack_ids,
        rack_site=col(1, np.int64),
        rack_feed=col(2, np.int64),
        rack_loop=rack_loop,
        rack_kind=col(4, np.int64),
        rack_limit_kw=col(5, np.float64),
        rack_base_kw=col(6, np.float64),
        rack_model=rack_model,
        rack_count=rack_count,
        rack_domain=rack_domain,
        rack_site_factor=1.0 + loop_kwph_arr[rack_loop] if len(rack_rows) else np.zeros(0),
        domain_ids=domain_ids,
        domain_site=domain_site,
        domain_model=domain_model,
        domain_gpus=domain_gpus,
        domain_rack_ptr=domain_rack_ptr,
        domain_racks=domain_racks,
        job_ids=tuple(j.id for j in sc.training),
        job_gpus=np.array([j.gpus for j in sc.training], dtype=np.int64),
        job_value_per_gpu_h=job_value,
        job_min_level=job_min_level,
        job_required=np.array([j.required for j in sc.training], dtype=bool),
        job_site_ok=job_site_ok,
        job_move_cost_usd=np.array([j.move_cost_usd for j in sc.training], dtype=np.float64),
        job_run_ptr=job_run_ptr,
        job_run_rack=job_run_rack,
        job_run_gpus=job_run_gpus,
        job_run_domain=job_run_domain,
        svc_ids=tuple(s.id for s in sc.inference),
        svc_gpus_per_replica=np.array([s.gpus_per_replica for s in sc.inference], dtype=np.int64),
        svc_replica_rps=svc_rps,
        svc_min_level=svc_min_level,
        svc_demand_rps=np.array(demand, dtype=np.float64),
        svc_value_per_1k=np.array([s.value_per_1k for s in sc.inference], dtype=np.float64),
        svc_penalty_per_1k=np.array([s.unserved_penalty_per_1k for s in sc.inference], dtype=np.float64),
        svc_site_ok=svc_site_ok,
        svc_move_cost_usd=np.array([s.move_cost_usd for s in sc.inference], dtype=np.float64),
        svc_run_ptr=svc_run_ptr,
        svc_run_rack=svc_run_rack,
        svc_run_replicas=svc_run_replicas,
        miner_usd_per_th_h=float(hashprice) / 1000.0 / 24.0,
    )
