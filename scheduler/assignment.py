"""Decisions (SPEC section 2) in index form, their figures (sections 3-4) and the plan JSON (section 5).

Every solver returns an `Assignment`; `to_plan` turns it into the plan all solvers write.
Served load is never a free choice worth leaving on the table, so it is derived:
s_i = min(demand_i, capacity_i).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .problem import GPU, MINER, Problem


@dataclass
class Assignment:
    job_level: np.ndarray                       # i8[J] cap level index, -1 = not scheduled
    job_place: list[dict[int, int]]             # per job: rack -> GPUs
    svc_place: list[dict[tuple[int, int], int]]  # per service: (rack, level) -> replicas
    miners: np.ndarray                          # i8[K,Q] miners running per mode (0 on GPU racks)

    @classmethod
    def empty(cls, p: Problem) -> "Assignment":
        return cls(job_level=np.full(len(p.job_ids), -1, dtype=np.int64),
                   job_place=[{} for _ in p.job_ids],
                   svc_place=[{} for _ in p.svc_ids],
                   miners=np.zeros((p.n_racks, p.miner_kw.shape[1]), dtype=np.int64))


@dataclass
class Figures:
    rack_busy: np.ndarray        # i8[K] busy GPUs
    rack_kw: np.ndarray          # f8[K]
    feed_kw: np.ndarray          # f8[F]
    loop_heat_kw: np.ndarray     # f8[L]
    site_it_kw: np.ndarray       # f8[S]
    site_cooling_kw: np.ndarray  # f8[S]
    site_kw: np.ndarray          # f8[S]
    site_th_s: np.ndarray        # f8[S]
    served_rps: np.ndarray       # f8[I]
    job_moved: np.ndarray        # bool[J]
    svc_moves: np.ndarray        # i8[I] replicas started or stopped
    rate_usd_per_h: float
    site_rate_usd_per_h: np.ndarray  # f8[S] the rate by site (inference split by capacity there)
    moves_usd: float
    objective_usd: float
    terms: dict = field(default_factory=dict)


def evaluate(p: Problem, a: Assignment) -> Figures:
    K, S = p.n_racks, len(p.site_ids)
    busy_kw = np.zeros(K)
    busy = np.zeros(K, dtype=np.int64)
    capacity = np.zeros(len(p.svc_ids))
    site_cap = np.zeros((len(p.svc_ids), S))
    site_rate = np.zeros(S)
    train_usd = 0.0
    for j, level in enumerate(a.job_level.tolist()):
        if level < 0:
            continue
        g = -1
        for k, n in a.job_place[j].items():
            g = p.rack_model[k]
            busy[k] += n
            busy_kw[k] += n * p.gpu_busy_kw[g, level]
        usd = p.job_usd_per_h(j, g, level)
        train_usd += usd
        site_rate[p.rack_site[k]] += usd
    for i, place in enumerate(a.svc_place):
        gpr = p.svc_gpus_per_replica[i]
        for (k, level), r in place.items():
            g = p.rack_model[k]
            busy[k] += r * gpr
            busy_kw[k] += r * p.replica_kw(i, g, level)
            rps = r * p.replica_rps(i, g, level)
            capacity[i] += rps
            site_cap[i, p.rack_site[k]] += rps
    miner_kw = np.zeros(K)
    th = np.zeros(K)
    is_miner = p.rack_kind == MINER
    if is_miner.any():
        mk = p.rack_model[is_miner]
        kw_tab = np.where(np.isfinite(p.miner_kw[mk]), p.miner_kw[mk], 0.0)
        miner_kw[is_miner] = (a.miners[is_miner] * kw_tab).sum(axis=1)
        th[is_miner] = (a.miners[is_miner] * p.miner_th_s[mk]).sum(axis=1)
    rack_kw = p.rack_base_kw + busy_kw + miner_kw
    feed_kw = np.bincount(p.rack_feed, weights=rack_kw, minlength=len(p.feed_ids))
    loop_heat = np.bincount(p.rack_loop, weights=rack_kw, minlength=len(p.loop_ids))
    site_it = np.bincount(p.rack_site, weights=rack_kw, minlength=S)
    site_cool = np.bincount(p.loop_site, weights=loop_heat * p.loop_kw_per_kw_heat, minlength=S)
    site_kw = p.site_base_kw + site_it + site_cool
    site_th = np.bincount(p.rack_site, weights=th, minlength=S)

    served = np.minimum(p.svc_demand_rps, capacity)
    svc_value = 3.6 * served * p.svc_value_per_1k          # s rps for an hour is 3.6 thousand requests
    svc_unserved = 3.6 * (p.svc_demand_rps - served) * p.svc_penalty_per_1k
    site_mining = site_th * p.miner_usd_per_th_h
    site_energy = site_kw / 1000.0 * p.site_price_usd_per_mwh
    infer_usd = float(np.sum(svc_value))
    unserved_usd = float(np.sum(svc_unserved))
    mining_usd = float(site_th.sum() * p.miner_usd_per_th_h)
    energy_usd = float(np.sum(site_energy))
    rate = train_usd + infer_usd - unserved_usd + mining_usd - energy_usd
    # by site: a service's money goes where its capacity is (evenly when it runs nowhere)
    share = np.where(capacity[:, None] > 0, site_cap / np.maximum(capacity, 1e-300)[:, None], 1.0 / S)
    site_rate += share.T @ (svc_value - svc_unserved) + site_mining - site_energy

    moved = np.zeros(len(p.job_ids), dtype=bool)
    for j in range(len(p.job_ids)):
        running = p.job_running(j)
        if running:
            placed = a.job_place[j] if a.job_level[j] >= 0 else {}
            moved[j] = {k: n for k, n in placed.items() if n} != running
    svc_moves = np.zeros(len(p.svc_ids), dtype=np.int64)
    for i, place in enumerate(a.svc_place):
        per_rack: dict[int, int] = {}
        for (k, _), r in place.items():
            per_rack[k] = per_rack.get(k, 0) + r
        running = p.svc_running(i)
        svc_moves[i] = sum(abs(per_rack.get(k, 0) - running.get(k, 0)) for k in set(per_rack) | set(running))
    moves = float(np.sum(p.job_move_cost_usd[moved]) + np.sum(svc_moves * p.svc_move_cost_usd))
    return Figures(rack_busy=busy, rack_kw=rack_kw, feed_kw=feed_kw, loop_heat_kw=loop_heat,
                   site_it_kw=site_it, site_cooling_kw=site_cool, site_kw=site_kw, site_th_s=site_th,
                   served_rps=served, job_moved=moved, svc_moves=svc_moves, rate_usd_per_h=rate,
                   site_rate_usd_per_h=site_rate,
                   moves_usd=moves, objective_usd=p.interval_h * rate - moves,
                   terms={"training_usd_per_h": train_usd, "inference_usd_per_h": infer_usd,
                          "unserved_usd_per_h": unserved_usd, "mining_usd_per_h": mining_usd,
                          "energy_usd_per_h": energy_usd})


def violations(p: Problem, f: Figures, tol_kw: float = 1e-6) -> list[str]:
    """Hard limits broken by an assignment, judged on the compiled problem (solvers' self-check;
    `scheduler.verify` is the independent judge of written plans)."""
    out = []
    for k in np.nonzero(f.rack_kw > p.rack_limit_kw + tol_kw)[0]:
        out.append(f"rack_power[{p.rack_ids[k]}]: {f.rack_kw[k]:.3f} kW > {p.rack_limit_kw[k]:g} kW")
    gpu = p.rack_kind == GPU
    for k in np.nonzero(gpu & (f.rack_busy > p.rack_count))[0]:
        out.append(f"rack_gpus[{p.rack_ids[k]}]: {f.rack_busy[k]} busy > {p.rack_count[k]} GPUs")
    for n in np.nonzero(f.feed_kw > p.feed_limit_kw + tol_kw)[0]:
        out.append(f"feed_power[{p.site_ids[p.feed_site[n]]}/{p.feed_ids[n]}]: {f.feed_kw[n]:.3f} kW > {p.feed_limit_kw[n]:g} kW")
    for n in np.nonzero(f.loop_heat_kw > p.loop_cap_kw + tol_kw)[0]:
        out.append(f"loop_heat[{p.site_ids[p.loop_site[n]]}/{p.loop_ids[n]}]: {f.loop_heat_kw[n]:.3f} kW > {p.loop_cap_kw[n]:.3f} kW")
    for n in np.nonzero(f.site_kw > p.site_grid_limit_kw + tol_kw)[0]:
        out.append(f"site_power[{p.site_ids[n]}]: {f.site_kw[n]:.3f} kW > {p.site_grid_limit_kw[n]:g} kW")
    return out


def to_plan(p: Problem, a: Assignment, solver: dict, f: Figures | None = None) -> dict:
    """The SPEC section 5 plan. `solver` holds method, backend, status, seconds, bound_usd, gap."""
    f = f if f is not None else evaluate(p, a)
    obj = float(f.objective_usd)
    sites = []
    for s, sid in enumerate(p.site_ids):
        sites.append({"id": sid, "site_kw": float(f.site_kw[s]), "it_kw": float(f.site_it_kw[s]),
                      "cooling_kw": float(f.site_cooling_kw[s]),
                      "grid_limit_kw": float(p.site_grid_limit_kw[s]),
                      "hashrate_th_s": float(f.site_th_s[s])})
    racks = []
    for k, rid in enumerate(p.rack_ids):
        entry = {"id": rid, "kw": float(f.rack_kw[k])}
        if p.rack_kind[k] == MINER:
            mm = p.rack_model[k]
            entry["miners"] = {name: int(a.miners[k, q]) for q, name in enumerate(p.miner_mode_names[mm])
                               if a.miners[k, q] > 0}
        else:
            entry["gpus_busy"] = int(f.rack_busy[k])
        racks.append(entry)
    loops = [{"id": lid, "site": p.site_ids[p.loop_site[n]], "heat_kw": float(f.loop_heat_kw[n]),
              "capacity_kw": float(p.loop_cap_kw[n])} for n, lid in enumerate(p.loop_ids)]
    feeds = [{"id": fid, "site": p.site_ids[p.feed_site[n]], "kw": float(f.feed_kw[n]),
              "limit_kw": float(p.feed_limit_kw[n])} for n, fid in enumerate(p.feed_ids)]
    training = []
    for j, jid in enumerate(p.job_ids):
        level = int(a.job_level[j])
        if level >= 0:
            k0 = next(iter(a.job_place[j]))
            g = p.rack_model[k0]
            training.append({"id": jid, "scheduled": True, "cap_w": float(p.gpu_cap_w[g, level]),
                             "placement": {p.rack_ids[k]: int(n) for k, n in sorted(a.job_place[j].items()) if n},
                             "moved": bool(f.job_moved[j])})
        else:
            training.append({"id": jid, "scheduled": False, "cap_w": None, "placement": {},
                             "moved": bool(f.job_moved[j])})
    inference = []
    for i, sid in enumerate(p.svc_ids):
        place = [{"rack": p.rack_ids[k], "replicas": int(r),
                  "cap_w": float(p.gpu_cap_w[p.rack_model[k], level])}
                 for (k, level), r in sorted(a.svc_place[i].items()) if r > 0]
        inference.append({"id": sid, "served_rps": float(f.served_rps[i]),
                          "demand_rps": float(p.svc_demand_rps[i]), "placement": place})
    solver = {**solver, "objective_usd": obj}
    return {"scenario": p.name, "solver": solver, "objective_usd": obj, "interval_h": p.interval_h,
            "sites": sites, "racks": racks, "loops": loops, "feeds": feeds,
            "training": training, "inference": inference}
