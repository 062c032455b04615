"""The independent judge of plans: `verify_plan(scenario, plan)` recomputes every figure of a SPEC
section 5 plan (section 6 for horizon plans, in `scheduler.verify_horizon`) from the scenario alone
and returns one line per broken limit, invalid decision or misreported number.

It shares no code with the solvers (`scheduler.problem`, `scheduler.assignment`, the MILP, the
kernels): it reads the scenario's own fields, so a bug there cannot hide itself here. Limits are
named like the MILP's rows (`rack_power[A001]`, `feed_power[wa/F1]`), figures by their place in the
plan (`racks[A001].kw`, `sites[wa].site_kw`).
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .model import Scenario, ScenarioError, load_scenario
from .model.load import load_json_file

TOL_KW = 1e-6      # a hard limit is broken by more than this
ABS_TOL = 1e-6     # reported figures: abs + rel * magnitude
REL_TOL = 1e-9
BODY_LISTS = ("sites", "racks", "loops", "feeds", "training", "inference")
STATUSES = ("optimal", "feasible", "infeasible")


# ---------------------------------------------------------------- small readers


def close(a: float, b: float) -> bool:
    return abs(a - b) <= ABS_TOL + REL_TOL * max(abs(a), abs(b))


def fmt(x: float) -> str:
    """A scenario number as its author wrote it: 42, 9500, 0.25."""
    return format(float(x), ".15g")


def show(v: Any) -> str:
    text = "null" if v is None else "true" if v is True else "false" if v is False else repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read_number(obj: dict, key: str, path: str, out: list[str], required: bool = True) -> Optional[float]:
    """obj[key] as a float; `path` is the place of `obj` ("" at the top of a plan)."""
    where = f"{path}.{key}" if path else key
    if key not in obj or (obj[key] is None and not required):
        if required:
            out.append(f"{where}: missing")
        return None
    if not is_number(obj[key]):
        out.append(f"{where}: must be a number (got {show(obj[key])})")
        return None
    return float(obj[key])


def read_count(v: Any, path: str, out: list[str]) -> Optional[int]:
    if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, float) and v.is_integer())):
        out.append(f"{path}: must be a whole number (got {show(v)})")
        return None
    if v < 0:
        out.append(f"{path}: {int(v)} is negative")
        return None
    return int(v)


def compare(path: str, reported: float, recomputed: float, out: list[str]) -> None:
    if not close(reported, recomputed):
        out.append(f"{path}: reported {reported:.6f}, recomputed {recomputed:.6f}")


def entries(body: dict, key: str, prefix: str, out: list[str]) -> list[tuple[str, dict]]:
    """(id, entry) of a plan list whose items are mappings with a string id."""
    res = []
    for n, e in enumerate(body[key]):
        if not isinstance(e, dict):
            out.append(f"{prefix}{key}[{n}]: must be a mapping (got {show(e)})")
        elif not isinstance(e.get("id"), str) or not e["id"]:
            out.append(f"{prefix}{key}[{n}].id: " + ("missing" if "id" not in e else
                                                     f"must be a non-empty string (got {show(e['id'])})"))
        else:
            res.append((e["id"], e))
    return res


def known_entries(body: dict, key: str, prefix: str, out: list[str], known, what: str):
    """(id, entry, path) of the plan list `key` whose ids are in `known`, each once; an unknown id
    or a second entry for one id is a problem in `out`."""
    seen = set()
    for eid, e in entries(body, key, prefix, out):
        path = f"{prefix}{key}[{eid}]"
        if eid not in known:
            out.append(f"{path}: unknown {what}")
        elif eid in seen:
            out.append(f"{path}: listed twice")
        else:
            seen.add(eid)
            yield eid, e, path


def body_structure(body: Any, prefix: str) -> list[str]:
    """Problems that make a section-5 body unreadable (then nothing else is checked)."""
    if not isinstance(body, dict):
        return [f"{prefix or '(plan)'}: must be a mapping (got {show(body)})"]
    out = []
    for key in BODY_LISTS:
        if key not in body:
            out.append(f"{prefix}{key}: missing")
        elif not isinstance(body[key], list):
            out.append(f"{prefix}{key}: must be a list (got {show(body[key])})")
    read_number(body, "objective_usd", prefix.rstrip("."), out)
    return out


# ---------------------------------------------------------------- the scenario, indexed


class Index:
    """Lookups into a scenario by id."""

    def __init__(self, sc: Scenario):
        self.sc = sc
        self.site = {s.id: s for s in sc.sites}
        self.rack = {r.id: (s, r) for s in sc.sites for r in s.racks}
        self.job = {j.id: j for j in sc.training}
        self.svc = {i.id: i for i in sc.inference}
        self.loop_sites: dict[str, list[str]] = defaultdict(list)
        self.feed_sites: dict[str, list[str]] = defaultdict(list)
        for s in sc.sites:
            for lp in s.loops:
                self.loop_sites[lp.id].append(s.id)
            for f in s.feeds:
                self.feed_sites[f.id].append(s.id)

    def perf(self, model: str, cap_w: float) -> Optional[float]:
        """Perf of cap level `cap_w` of a GPU model; None when it is not one of its levels."""
        for lv in self.sc.gpu_models[model].cap_levels:
            if abs(lv.cap_w - cap_w) <= 1e-9:
                return lv.perf
        return None

    def levels_text(self, model: str) -> str:
        return ", ".join(fmt(lv.cap_w) for lv in self.sc.gpu_models[model].cap_levels)


@dataclass(frozen=True)
class Conditions:
    """The values one interval is judged with: the base scenario's, or one period's (SPEC 6)."""
    hours: float
    hashprice_usd_per_ph_day: float
    grid_limit_kw: dict[str, float]
    price_usd_per_mwh: dict[str, float]
    ambient_c: dict[str, float]
    demand_rps: dict[str, float]


def conditions(sc: Scenario, period: Optional[int] = None) -> Conditions:
    per = sc.periods[period] if period is not None else None

    def by_site(name: str) -> dict[str, float]:
        over = getattr(per, name) if per is not None else {}
        return {s.id: float(over.get(s.id, getattr(s, name))) for s in sc.sites}

    hashprice = sc.hashprice_usd_per_ph_day
    if per is not None and per.hashprice_usd_per_ph_day is not None:
        hashprice = per.hashprice_usd_per_ph_day
    demand_over = per.demand_rps if per is not None else {}
    return Conditions(hours=float(per.hours if per is not None else sc.interval_h),
                      hashprice_usd_per_ph_day=float(hashprice),
                      grid_limit_kw=by_site("grid_limit_kw"),
                      price_usd_per_mwh=by_site("energy_price_usd_per_mwh"),
                      ambient_c=by_site("ambient_c"),
                      demand_rps={i.id: float(demand_over.get(i.id, i.demand_rps)) for i in sc.inference})


# ---------------------------------------------------------------- decisions


@dataclass
class Decisions:
    """What a plan decided, read from its racks, training and inference entries."""
    miners: dict[str, dict[str, int]] = field(default_factory=dict)     # miner rack -> mode -> running
    scheduled: set[str] = field(default_factory=set)
    job_place: dict[str, dict[str, int]] = field(default_factory=dict)  # scheduled job -> rack -> GPUs
    job_cap_w: dict[str, float] = field(default_factory=dict)
    job_moved: dict[str, Any] = field(default_factory=dict)             # reported flags
    svc_place: dict[str, list[tuple[str, float, int]]] = field(default_factory=dict)  # (rack, cap_w, replicas)
    served_rps: dict[str, float] = field(default_factory=dict)
    racks: dict[str, dict] = field(default_factory=dict)                # rack entries by id
    svcs: dict[str, dict] = field(default_factory=dict)                 # inference entries by id
    usable: bool = True     # False: some decision could not be read; figures are not recomputed

    def svc_per_rack(self, i: str) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for rid, _, r in self.svc_place.get(i, []):
            out[rid] += r
        return {k: v for k, v in out.items() if v}


def _gpu_rack(idx: Index, rid: Any, models, path: str, out: list[str]):
    """The rack a job or service may use, or None (with the reason in `out`)."""
    if not isinstance(rid, str) or rid not in idx.rack:
        out.append(f"{path}: unknown rack {show(rid)}")
        return None
    site, rack = idx.rack[rid]
    if rack.gpus is None:
        out.append(f"{path}: rack '{rid}' holds miners, not GPUs")
        return None
    if rack.gpus.model not in models:
        out.append(f"{path}: rack '{rid}' holds GPU model '{rack.gpus.model}', not one of "
                   + ", ".join(f"'{m}'" for m in sorted(models)))
        return None
    return rack


def _cap(idx: Index, cap: Any, model: str, min_cap_w: Optional[float], path: str,
         bad: list[str], out: list[str]) -> Optional[float]:
    """A cap level of `model`; one it is not (unknown perf) goes to `bad`, one below the minimum to `out`."""
    if not is_number(cap):
        bad.append(f"{path}: must be a number (got {show(cap)})")
        return None
    if idx.perf(model, cap) is None:
        bad.append(f"{path}: {fmt(cap)} W is not a cap level of GPU model '{model}' ({idx.levels_text(model)})")
        return None
    if min_cap_w is not None and cap < min_cap_w - 1e-9:
        out.append(f"{path}: {fmt(cap)} W is below min_cap_w {fmt(min_cap_w)}")
    return float(cap)


def _site_ok(idx: Index, allowed, rid: str, path: str, out: list[str]) -> None:
    site = idx.rack[rid][0].id
    if allowed is not None and site not in allowed:
        out.append(f"{path}: rack '{rid}' is at site '{site}', not an allowed site")


def read_decisions(idx: Index, body: dict, prefix: str, out: list[str]) -> Decisions:
    """Read and validate a body's decisions; problems that leave them unreadable clear `usable`."""
    dec = Decisions()
    bad: list[str] = []      # unreadable decisions
    _read_racks(idx, body, prefix, dec, bad, out)
    _read_training(idx, body, prefix, dec, bad, out)
    _read_inference(idx, body, prefix, dec, bad, out)
    dec.usable = not bad
    out.extend(bad)
    return dec


def _read_racks(idx: Index, body: dict, prefix: str, dec: Decisions, bad: list[str], out: list[str]) -> None:
    for rid, e, path in known_entries(body, "racks", prefix, bad, idx.rack, "rack"):
        dec.racks[rid] = e
        rack = idx.rack[rid][1]
        if rack.gpus is not None:
            if e.get("miners"):
                out.append(f"{path}.miners: rack '{rid}' holds GPUs, not miners")
            continue
        if "gpus_busy" in e:
            out.append(f"{path}.gpus_busy: rack '{rid}' holds miners, not GPUs")
        miners = e.get("miners")
        if not isinstance(miners, dict):
            bad.append(f"{path}.miners: " + ("missing" if "miners" not in e else
                                             f"must be a mapping of mode to count (got {show(miners)})"))
            continue
        modes = idx.sc.miner_models[rack.miners.model].modes
        running = {}
        for mode, n in miners.items():
            if mode not in modes:
                bad.append(f"{path}.miners.{mode}: unknown mode of miner model '{rack.miners.model}'")
                continue
            n = read_count(n, f"{path}.miners.{mode}", bad)
            if n:
                running[mode] = n
        if sum(running.values()) > rack.miners.count:
            out.append(f"{path}.miners: {sum(running.values())} miners running, the rack has {rack.miners.count}")
        dec.miners[rid] = running
    for rid, (_, rack) in idx.rack.items():
        if rid not in dec.racks:
            (bad if rack.miners is not None else out).append(f"{prefix}racks[{rid}]: missing from the plan")


def _read_training(idx: Index, body: dict, prefix: str, dec: Decisions, bad: list[str], out: list[str]) -> None:
    seen = set()
    for jid, e, path in known_entries(body, "training", prefix, bad, idx.job, "training job"):
        seen.add(jid)
        job = idx.job[jid]
        if "moved" not in e:
            out.append(f"{path}.moved: missing")
        elif not isinstance(e["moved"], bool):
            out.append(f"{path}.moved: must be true or false (got {show(e['moved'])})")
        else:
            dec.job_moved[jid] = e["moved"]
        sched = e.get("scheduled")
        if not isinstance(sched, bool):
            bad.append(f"{path}.scheduled: " + ("missing" if "scheduled" not in e else
                                                f"must be true or false (got {show(sched)})"))
            continue
        place = e.get("placement")
        if not sched:
            if place:
                bad.append(f"{path}.placement: the job is not scheduled but has GPUs placed")
            continue
        dec.scheduled.add(jid)
        if not isinstance(place, dict):
            bad.append(f"{path}.placement: " + ("missing" if "placement" not in e else
                                                f"must be a mapping of rack to GPUs (got {show(place)})"))
            continue
        placed: dict[str, int] = {}
        for rid, n in place.items():
            n = read_count(n, f"{path}.placement.{rid}", bad)
            rack = _gpu_rack(idx, rid, job.value_per_gpu_h, f"{path}.placement.{rid}", bad)
            if n and rack is not None:
                _site_ok(idx, job.sites, rid, f"{path}.placement.{rid}", out)
                if rack.domain is None:
                    out.append(f"{path}.placement.{rid}: rack '{rid}' is in no domain")
                placed[rid] = n
        domains = {idx.rack[rid][1].domain for rid in placed if idx.rack[rid][1].domain is not None}
        if len(domains) > 1:
            out.append(f"{path}.placement: placement spans domains "
                       + ", ".join(f"'{d}'" for d in sorted(domains)) + "; it must lie in one")
        total = sum(placed.values())
        if len(placed) == len([1 for n in place.values() if n]) and total != job.gpus:  # all racks readable
            out.append(f"{path}.placement: {total} GPUs placed, the job needs {job.gpus}")
        dec.job_place[jid] = placed
        models = {idx.rack[rid][1].gpus.model for rid in placed}
        if "cap_w" not in e:
            bad.append(f"{path}.cap_w: missing")
        for model in sorted(models):
            cap = _cap(idx, e.get("cap_w"), model, job.min_cap_w, f"{path}.cap_w", bad, out) if "cap_w" in e else None
            if cap is not None:
                dec.job_cap_w[jid] = cap
    for jid in idx.job:
        if jid not in seen:
            out.append(f"{prefix}training[{jid}]: missing from the plan")


def _read_inference(idx: Index, body: dict, prefix: str, dec: Decisions, bad: list[str], out: list[str]) -> None:
    for sid, e, path in known_entries(body, "inference", prefix, bad, idx.svc, "inference service"):
        dec.svcs[sid] = e
        svc = idx.svc[sid]
        served = read_number(e, "served_rps", path, bad)
        if served is not None and served < 0:
            bad.append(f"{path}.served_rps: {fmt(served)} is negative")
        elif served is not None:
            dec.served_rps[sid] = served
        place = e.get("placement")
        if not isinstance(place, list):
            bad.append(f"{path}.placement: " + ("missing" if "placement" not in e else
                                                f"must be a list (got {show(place)})"))
            continue
        rows = []
        for n, row in enumerate(place):
            rp = f"{path}.placement[{n}]"
            if not isinstance(row, dict):
                bad.append(f"{rp}: must be a mapping with rack, replicas, cap_w (got {show(row)})")
                continue
            missing = [key for key in ("rack", "replicas", "cap_w") if key not in row]
            bad += [f"{rp}.{key}: missing" for key in missing]
            if missing:
                continue
            r = read_count(row["replicas"], f"{rp}.replicas", bad)
            rack = _gpu_rack(idx, row["rack"], svc.replica_rps, f"{rp}.rack", bad)
            if rack is None or r is None:
                continue
            _site_ok(idx, svc.sites, row["rack"], f"{rp}.rack", out)
            cap = _cap(idx, row["cap_w"], rack.gpus.model, svc.min_cap_w, f"{rp}.cap_w", bad, out)
            if cap is not None and r:
                rows.append((row["rack"], cap, r))
        dec.svc_place[sid] = rows
    for sid in idx.svc:
        if sid not in dec.svcs:
            out.append(f"{prefix}inference[{sid}]: missing from the plan")


# ---------------------------------------------------------------- physics and money (SPEC 3-4)


@dataclass
class Physics:
    rack_kw: dict[str, float]
    rack_busy: dict[str, int]
    feed_kw: dict[tuple[str, str], float]         # (site, feed)
    loop_heat_kw: dict[tuple[str, str], float]    # (site, loop)
    loop_cap_kw: dict[tuple[str, str], float]
    site_it_kw: dict[str, float]
    site_cooling_kw: dict[str, float]
    site_kw: dict[str, float]
    site_th_s: dict[str, float]
    capacity_rps: dict[str, float]
    job_usd_per_h: dict[str, float]     # a scheduled job's training term of `rate`
    job_work_per_h: dict[str, float]    # GPU-hours of work at perf 1.0 it does per hour
    other_usd_per_h: float              # the rest of `rate`: inference, unserved, mining, energy


def loop_capacity_kw(capacity_kw: float, derate_per_c: float, ambient_c: float, design_ambient_c: float) -> float:
    return capacity_kw * min(1.0, max(0.0, 1.0 - derate_per_c * (ambient_c - design_ambient_c)))


def compute(idx: Index, cond: Conditions, dec: Decisions) -> Physics:
    sc = idx.sc
    busy: dict[str, int] = defaultdict(int)
    busy_w: dict[str, float] = defaultdict(float)   # Σ (cap_w + host_w) over busy GPUs
    job_usd, job_work = {}, {}
    for jid, place in dec.job_place.items():
        job, cap = idx.job[jid], dec.job_cap_w.get(jid)
        for rid, n in place.items():
            model = idx.rack[rid][1].gpus.model
            busy[rid] += n
            busy_w[rid] += n * (cap + sc.gpu_models[model].host_w)
        if place:   # SPEC 4 counts the job's `gpus` at the model of its (first) rack
            model = idx.rack[next(iter(place))][1].gpus.model
            perf = idx.perf(model, cap)
            job_usd[jid], job_work[jid] = job.gpus * job.value_per_gpu_h[model] * perf, job.gpus * perf
    capacity = {}
    for sid, rows in dec.svc_place.items():
        svc, rps = idx.svc[sid], 0.0
        for rid, cap, r in rows:
            model = idx.rack[rid][1].gpus.model
            gpus = r * svc.gpus_per_replica
            busy[rid] += gpus
            busy_w[rid] += gpus * (cap + sc.gpu_models[model].host_w)
            rps += r * svc.replica_rps[model] * idx.perf(model, cap)
        capacity[sid] = rps

    rack_kw: dict[str, float] = {}
    feed_kw, heat, loop_cap = {}, {}, {}
    it, cool, site_kw, th_s = {}, {}, {}, {}
    for site in sc.sites:
        th_s[site.id] = 0.0
        for f in site.feeds:
            feed_kw[(site.id, f.id)] = 0.0
        for lp in site.loops:
            heat[(site.id, lp.id)] = 0.0
            loop_cap[(site.id, lp.id)] = loop_capacity_kw(lp.capacity_kw, lp.derate_per_c,
                                                          cond.ambient_c[site.id], lp.design_ambient_c)
        for rack in site.racks:
            if rack.gpus is not None:
                idle_w = sc.gpu_models[rack.gpus.model].idle_w
                kw = rack.idle_kw + busy_w[rack.id] / 1000.0 + (rack.gpus.count - busy[rack.id]) * idle_w / 1000.0
            else:
                modes = sc.miner_models[rack.miners.model].modes
                running = dec.miners.get(rack.id, {})
                kw = rack.idle_kw + sum(n * modes[m].kw for m, n in running.items())
                th_s[site.id] += sum(n * modes[m].th_s for m, n in running.items())
            rack_kw[rack.id] = kw
            feed_kw[(site.id, rack.feed)] += kw
            heat[(site.id, rack.loop)] += kw
        it[site.id] = sum(rack_kw[r.id] for r in site.racks)
        cool[site.id] = sum(heat[(site.id, lp.id)] * lp.kw_per_kw_heat for lp in site.loops)
        site_kw[site.id] = site.base_kw + it[site.id] + cool[site.id]

    other = 0.0
    for svc in sc.inference:
        s = dec.served_rps.get(svc.id, 0.0)
        other += 3.6 * s * svc.value_per_1k
        other -= 3.6 * (cond.demand_rps[svc.id] - s) * svc.unserved_penalty_per_1k
    other += sum(th_s.values()) * cond.hashprice_usd_per_ph_day / 1000.0 / 24.0
    other -= sum(site_kw[s.id] / 1000.0 * cond.price_usd_per_mwh[s.id] for s in sc.sites)
    return Physics(rack_kw=rack_kw, rack_busy=dict(busy), feed_kw=feed_kw, loop_heat_kw=heat, loop_cap_kw=loop_cap,
                   site_it_kw=it, site_cooling_kw=cool, site_kw=site_kw, site_th_s=th_s, capacity_rps=capacity,
                   job_usd_per_h=job_usd, job_work_per_h=job_work, other_usd_per_h=other)


def check_limits(idx: Index, cond: Conditions, dec: Decisions, ph: Physics, must_run, at: str = "",
                 prefix: str = "") -> list[str]:
    """SPEC 3's hard limits, the jobs in `must_run` scheduled, and served load within demand and capacity."""
    out = []
    for site in idx.sc.sites:
        for rack in site.racks:
            kw = ph.rack_kw[rack.id]
            if kw > rack.limit_kw + TOL_KW:
                out.append(f"rack_power[{rack.id}{at}]: {kw:.3f} kW exceeds the limit {fmt(rack.limit_kw)} kW")
            if rack.gpus is not None and ph.rack_busy.get(rack.id, 0) > rack.gpus.count:
                out.append(f"rack_gpus[{rack.id}{at}]: {ph.rack_busy[rack.id]} GPUs busy, the rack has {rack.gpus.count}")
        for f in site.feeds:
            kw = ph.feed_kw[(site.id, f.id)]
            if kw > f.limit_kw + TOL_KW:
                out.append(f"feed_power[{site.id}/{f.id}{at}]: {kw:.3f} kW exceeds the limit {fmt(f.limit_kw)} kW")
        for lp in site.loops:
            heat, cap = ph.loop_heat_kw[(site.id, lp.id)], ph.loop_cap_kw[(site.id, lp.id)]
            if heat > cap + TOL_KW:
                out.append(f"loop_heat[{site.id}/{lp.id}{at}]: {heat:.3f} kW exceeds the derated capacity {cap:.3f} kW "
                           f"(capacity_kw {fmt(lp.capacity_kw)} at {fmt(cond.ambient_c[site.id])} °C)")
        if ph.site_kw[site.id] > cond.grid_limit_kw[site.id] + TOL_KW:
            out.append(f"site_power[{site.id}{at}]: {ph.site_kw[site.id]:.3f} kW exceeds grid_limit_kw "
                       f"{fmt(cond.grid_limit_kw[site.id])}")
    for job in idx.sc.training:
        if job.required and job.id in must_run and job.id not in dec.scheduled:
            out.append(f"required[{job.id}{at}]: the job is required but not scheduled")
    for svc in idx.sc.inference:
        s, demand = dec.served_rps.get(svc.id, 0.0), cond.demand_rps[svc.id]
        if s > demand + ABS_TOL + REL_TOL * demand:
            out.append(f"{prefix}inference[{svc.id}].served_rps: {s:.6f} exceeds the demand {fmt(demand)} rps")
        cap = ph.capacity_rps.get(svc.id, 0.0)
        if s > cap + ABS_TOL + REL_TOL * cap:
            out.append(f"{prefix}inference[{svc.id}].served_rps: {s:.6f} exceeds the capacity {cap:.6f} rps "
                       "of its replicas")
    return out


def _keyed(idx_sites: dict[str, list[str]], sid: Any, eid: str, what: str, path: str,
           out: list[str]) -> Optional[str]:
    """The site of a loop or feed entry (given, or unambiguous by id)."""
    if sid is not None:
        if sid not in idx_sites.get(eid, []):
            out.append(f"{path}[{sid}/{eid}]: unknown {what}")
            return None
        return sid
    sites = idx_sites.get(eid, [])
    if len(sites) != 1:
        out.append(f"{path}[{eid}]: " + (f"unknown {what}" if not sites else
                                         f"{what} id '{eid}' exists at sites " + ", ".join(
                                             f"'{s}'" for s in sites) + "; the entry needs its 'site'"))
        return None
    return sites[0]


def check_figures(idx: Index, cond: Conditions, body: dict, dec: Decisions, ph: Physics,
                  prefix: str = "") -> list[str]:
    """Every reported kW, heat, capacity, limit, hashrate, busy-GPU and demand figure of a body."""
    out: list[str] = []
    seen = set()
    for sid, e, path in known_entries(body, "sites", prefix, out, idx.site, "site"):
        seen.add(sid)
        want = {"site_kw": ph.site_kw[sid], "it_kw": ph.site_it_kw[sid], "cooling_kw": ph.site_cooling_kw[sid],
                "grid_limit_kw": cond.grid_limit_kw[sid], "hashrate_th_s": ph.site_th_s[sid]}
        for key, recomputed in want.items():
            v = read_number(e, key, path, out)
            if v is not None:
                compare(f"{path}.{key}", v, recomputed, out)
    out += [f"{prefix}sites[{s.id}]: missing from the plan" for s in idx.sc.sites if s.id not in seen]

    for rid, e in dec.racks.items():
        path = f"{prefix}racks[{rid}]"
        v = read_number(e, "kw", path, out)
        if v is not None:
            compare(f"{path}.kw", v, ph.rack_kw[rid], out)
        if idx.rack[rid][1].gpus is not None and "gpus_busy" in e:
            n, want = e["gpus_busy"], ph.rack_busy.get(rid, 0)
            if not is_number(n):
                out.append(f"{path}.gpus_busy: must be a number (got {show(n)})")
            elif n != want:
                out.append(f"{path}.gpus_busy: reported {show(n)}, recomputed {want}")

    for key, what, sites_of, figs in (
            ("loops", "loop", idx.loop_sites, (("heat_kw", ph.loop_heat_kw), ("capacity_kw", ph.loop_cap_kw))),
            ("feeds", "feed", idx.feed_sites, (("kw", ph.feed_kw), ("limit_kw", None)))):
        seen = set()
        for eid, e in entries(body, key, prefix, out):
            sid = _keyed(sites_of, e.get("site"), eid, what, prefix + key, out)
            if sid is None:
                continue
            path = f"{prefix}{key}[{sid}/{eid}]"
            if (sid, eid) in seen:
                out.append(f"{path}: listed twice")
                continue
            seen.add((sid, eid))
            for name, table in figs:
                v = read_number(e, name, path, out)
                if v is None:
                    continue
                want = table[(sid, eid)] if table is not None else next(
                    f.limit_kw for f in idx.site[sid].feeds if f.id == eid)
                compare(f"{path}.{name}", v, want, out)
        for site in idx.sc.sites:
            for item in (site.loops if key == "loops" else site.feeds):
                if (site.id, item.id) not in seen:
                    out.append(f"{prefix}{key}[{site.id}/{item.id}]: missing from the plan")

    for sid, e in dec.svcs.items():
        if "demand_rps" in e:
            v = read_number(e, "demand_rps", f"{prefix}inference[{sid}]", out)
            if v is not None:
                compare(f"{prefix}inference[{sid}].demand_rps", v, cond.demand_rps[sid], out)
    return out


def job_moved(before: dict[str, int], now: Optional[dict[str, int]]) -> bool:
    """SPEC 4: a job placed `before` that is not scheduled `now` (None) or placed differently."""
    return bool(before) and (now or {}) != before


def svc_moves(before: dict[str, int], now: dict[str, int]) -> int:
    return sum(abs(now.get(k, 0) - before.get(k, 0)) for k in set(now) | set(before))


def running_before(sc: Scenario) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """Where each job (rack -> GPUs) and service (rack -> replicas) runs before the plan."""
    return ({j.id: dict(j.running or {}) for j in sc.training},
            {i.id: {k: n for k, n in (i.running or {}).items() if n} for i in sc.inference})


def check_moves(idx: Index, dec: Decisions, job_before: dict[str, dict[str, int]],
                svc_before: dict[str, dict[str, int]], free: set[str], prefix: str,
                out: list[str]) -> float:
    """Compare each reported `moved` flag; return the move costs (jobs in `free` cost nothing)."""
    usd = 0.0
    for job in idx.sc.training:
        now = dec.job_place.get(job.id) if job.id in dec.scheduled else None
        moved = job.id not in free and job_moved(job_before.get(job.id, {}), now)
        usd += job.move_cost_usd if moved else 0.0
        if job.id in dec.job_moved and dec.job_moved[job.id] != moved:
            out.append(f"{prefix}training[{job.id}].moved: reported {show(dec.job_moved[job.id])}, "
                       f"recomputed {show(moved)}")
    for svc in idx.sc.inference:
        usd += svc.move_cost_usd * svc_moves(svc_before.get(svc.id, {}), dec.svc_per_rack(svc.id))
    return usd


# ---------------------------------------------------------------- entry points


def verify_plan(scenario: Scenario, plan: Any) -> list[str]:
    """Every broken limit, invalid decision and misreported figure of `plan`, one line each;
    an empty list means the plan is feasible and every number in it is right."""
    if isinstance(plan, dict) and "periods" in plan:
        from .verify_horizon import verify_horizon  # builds on this module's period checks
        return verify_horizon(scenario, plan)
    out = body_structure(plan, "")
    if out:
        return out
    idx, cond = Index(scenario), conditions(scenario)
    if "interval_h" in plan:
        v = read_number(plan, "interval_h", "", out)
        if v is not None and not close(v, cond.hours):
            out.append(f"interval_h: the plan covers {fmt(v)} h, the scenario's interval_h is {fmt(cond.hours)}")
    dec = read_decisions(idx, plan, "", out)
    if not dec.usable:
        return out
    ph = compute(idx, cond, dec)
    out += check_limits(idx, cond, dec, ph, must_run=set(idx.job))
    out += check_figures(idx, cond, plan, dec, ph)
    moves_usd = check_moves(idx, dec, *running_before(scenario), set(), "", out)
    rate = ph.other_usd_per_h + sum(ph.job_usd_per_h.values())
    objective = cond.hours * rate - moves_usd
    check_objective(plan, objective, out)
    return out


def check_objective(plan: dict, objective: float, out: list[str]) -> None:
    """The plan's objective, and the solver block's status and objective where given."""
    compare("objective_usd", float(plan["objective_usd"]), objective, out)
    solver = plan.get("solver", {})
    if not isinstance(solver, dict):
        out.append(f"solver: must be a mapping (got {show(solver)})")
        return
    if "status" in solver and solver["status"] not in STATUSES:
        out.append(f"solver.status: must be one of {', '.join(STATUSES)} (got {show(solver['status'])})")
    reported = read_number(solver, "objective_usd", "solver", out, required=False)
    if reported is not None:
        compare("solver.objective_usd", reported, objective, out)


def load_plan(path: str | Path) -> dict:
    """Read a plan JSON file; a missing file, bad JSON or a non-object raises ScenarioError."""
    data = load_json_file(path, "plan")
    if not isinstance(data, dict):
        raise ScenarioError([f"{path}: a plan must be a JSON object (got {type(data).__name__})"])
    return data


def verify_files(scenario_path: str | Path, plan_path: str | Path) -> list[str]:
    """`verify_plan` on files; unreadable input raises ScenarioError."""
    return verify_plan(load_scenario(scenario_path), load_plan(plan_path))
