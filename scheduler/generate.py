"""Random but realistic scenarios of any size (tests, benchmarks, `wattsched generate`).

A generated site looks like a real converted mining site: halls of identical miner racks,
training domains of identical GPU racks, groups of inference racks, several feeds and cooling
loops whose limits bind (75-95 % of what their racks could draw flat out) and a grid limit
below the site's nameplate. Output is a plain scenario dict that `parse_scenario` accepts,
identical for identical arguments (all randomness comes from `numpy.random.default_rng(seed)`).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import yaml

from .model.load import ScenarioError
from .problem import loop_capacity_kw

# --- catalogs: public spec-sheet figures, per GPU or per miner ---------------------------------

GPU_CATALOG: dict[str, dict[str, Any]] = {
    "H100-SXM": {"idle_w": 75, "host_w": 560,
                 "cap_levels": [(350, 0.62), (500, 0.86), (600, 0.95), (700, 1.0)]},
    "H200-SXM": {"idle_w": 80, "host_w": 580,
                 "cap_levels": [(350, 0.62), (500, 0.86), (600, 0.95), (700, 1.0)]},
    "B200": {"idle_w": 120, "host_w": 700,
             "cap_levels": [(600, 0.66), (800, 0.88), (900, 0.95), (1000, 1.0)]},
    "L40S": {"idle_w": 35, "host_w": 200,
             "cap_levels": [(200, 0.66), (275, 0.88), (325, 0.96), (350, 1.0)]},
}
TRAIN_MODELS = ("H100-SXM", "H200-SXM", "B200")
INFER_MODELS = ("L40S", "H200-SXM", "H100-SXM")
GPU_USD_PER_H = {"H100-SXM": 2.40, "H200-SXM": 2.90, "B200": 3.80, "L40S": 1.10}

# model -> (modes {name: (th_s, kw)}, units per rack, cooling kind)
MINER_CATALOG: dict[str, tuple[dict[str, tuple[float, float]], int, str]] = {
    "S19jPro": ({"eco": (88, 2.45), "normal": (104, 3.07), "turbo": (112, 3.45)}, 20, "air"),
    "S19XP": ({"eco": (120, 2.45), "normal": (140, 3.01), "turbo": (152, 3.45)}, 20, "air"),
    "S21": ({"eco": (160, 2.60), "normal": (200, 3.50), "turbo": (225, 4.10)}, 16, "air"),
    "S21Hydro": ({"eco": (280, 4.20), "normal": (335, 5.36), "turbo": (370, 6.30)}, 16, "liquid"),
    "S19XPHyd": ({"eco": (215, 4.20), "normal": (255, 5.30)}, 16, "liquid"),
}

# name -> (gpus per replica, replica_rps per model at perf 1.0, value_per_1k, penalty_per_1k)
SERVICE_CATALOG: dict[str, tuple[int, dict[str, float], float, float]] = {
    "chat70b": (4, {"H200-SXM": 11.0, "H100-SXM": 8.0}, 0.45, 0.90),
    "code": (2, {"H200-SXM": 6.5, "H100-SXM": 4.5}, 0.55, 1.00),
    "chat8b": (1, {"L40S": 4.5, "H200-SXM": 16.0, "H100-SXM": 13.0}, 0.15, 0.30),
    "embed": (1, {"L40S": 80.0, "H200-SXM": 220.0, "H100-SXM": 200.0}, 0.008, 0.02),
    "image": (1, {"L40S": 0.30, "H200-SXM": 0.80, "H100-SXM": 0.70}, 2.50, 4.00),
}

MAX_TOTAL_RACKS = 1_000_000
MAX_JOBS_PER_SITE = 60
MAX_SERVICES_PER_SITE = 25


@dataclass
class _Group:
    """Identical racks: a miner hall, a training domain or an inference group."""
    kind: str                  # miner | train | infer
    model: str
    count: int                 # miners or GPUs per rack
    n: int                     # racks
    limit_kw: float
    idle_kw: float
    cooling: str               # air | liquid
    full_kw: float             # one rack at its highest draw, capped at its limit
    base_kw: float             # one rack with nothing running
    domain: Optional[str] = None
    feed: str = ""
    loop: str = ""
    rack_ids: tuple[str, ...] = ()


def _gpu_full_w(model: str) -> float:
    spec = GPU_CATALOG[model]
    return spec["cap_levels"][-1][0] + spec["host_w"]


def _split(rng: np.random.Generator, total: int, lo: int, hi: int) -> list[int]:
    """Random chunk sizes in [lo, hi] summing to total; a remainder below lo joins the last chunk."""
    sizes: list[int] = []
    rest = total
    while rest > 0:
        size = int(rng.integers(lo, hi + 1))
        if rest - size < lo:
            size = rest
        sizes.append(size)
        rest -= size
    return sizes


def _rack_mix(rng: np.random.Generator, racks: int) -> tuple[int, int, int]:
    """(miner, training, inference) rack counts summing to `racks`."""
    if racks < 3:
        return racks, 0, 0
    if racks < 12:
        n_train = max(2, racks // 3)
        n_inf = 1
    else:
        n_train = max(4, round(racks * rng.uniform(0.15, 0.35)))
        n_inf = max(1, round(racks * rng.uniform(0.08, 0.20)))
    return racks - n_train - n_inf, n_train, n_inf


def _miner_group(rng, model: str, n: int) -> _Group:
    modes, per_rack, cooling = MINER_CATALOG[model]
    idle = 0.3 if cooling == "air" else 1.2
    normal = idle + per_rack * modes["normal"][1]
    top = idle + per_rack * max(kw for _, kw in modes.values())
    limit = float(math.ceil(normal * rng.uniform(1.03, 1.12)))
    return _Group("miner", model, per_rack, n, limit, idle, cooling, min(top, limit), idle)


def _gpu_group(rng, kind: str, model: str, gpus: int, n: int, cooling: str, domain=None) -> _Group:
    spec = GPU_CATALOG[model]
    idle = round(0.25 * gpus / 8, 2)
    top = idle + gpus * _gpu_full_w(model) / 1000.0
    limit = float(math.ceil(top * rng.uniform(0.94, 1.04)))
    base = idle + gpus * spec["idle_w"] / 1000.0
    return _Group(kind, model, gpus, n, limit, idle, cooling, min(top, limit), base, domain)


def _pod_sizes(rng: np.random.Generator, racks: int) -> tuple[list[int], int]:
    """Training pods of 4, 8 or 16 racks (a DGX SuperPOD scalable unit is 256 GPUs: 8 racks of
    32 or 16 of 16), so pods hold a power-of-two number of GPUs; left-over racks (< 4) are returned."""
    sizes: list[int] = []
    rest = racks
    while rest >= 4:
        size = int(rng.choice([s for s in (4, 8, 8, 16) if s <= rest]))
        sizes.append(size)
        rest -= size
    return sizes, rest


def _job_gpus(rng: np.random.Generator, pod_gpus: int) -> int:
    """Training jobs come in whole 8-GPU servers, mostly powers of two (as in the Philly, Helios
    and Acme traces), sometimes three times one; sized 25-100% of a pod, at most 512."""
    top = min(pod_gpus, 512)
    sizes = sorted({s for k in range(3, 10) for s in (2 ** k, 3 * 2 ** k) if 8 <= s <= top} or {8})
    target = pod_gpus * rng.uniform(0.25, 1.0)
    return int(min(sizes, key=lambda s: (abs(s - target), s)))


def _site_groups(rng, prefix: str, racks: int) -> list[_Group]:
    n_miner, n_train, n_inf = _rack_mix(rng, racks)
    groups: list[_Group] = []
    miner_models = list(MINER_CATALOG)
    site_miners = rng.choice(len(miner_models), size=min(3, len(miner_models)), replace=False)
    for size in _split(rng, n_miner, 10, 60) if n_miner else []:
        groups.append(_miner_group(rng, miner_models[int(rng.choice(site_miners))], size))
    pods, spare = _pod_sizes(rng, n_train)
    n_inf += spare
    for d, size in enumerate(pods, start=1):
        model = TRAIN_MODELS[int(rng.integers(len(TRAIN_MODELS)))]
        gpus = int(rng.choice([8, 16, 32, 32]))
        groups.append(_gpu_group(rng, "train", model, gpus, size, "liquid", f"{prefix}-pod{d}"))
    for size in _split(rng, n_inf, 4, 24) if n_inf else []:
        model = INFER_MODELS[int(rng.integers(len(INFER_MODELS)))]
        gpus = int(rng.choice([16, 32])) if model == "L40S" else int(rng.choice([8, 16]))
        groups.append(_gpu_group(rng, "infer", model, gpus, size, "air"))
    return groups


def _assign(groups: list[_Group], bins: list[str], attr: str) -> dict[str, list[_Group]]:
    """Largest group first onto the least loaded bin (a hall sits on one feed / one loop)."""
    load = {b: 0.0 for b in bins}
    members: dict[str, list[_Group]] = {b: [] for b in bins}
    for g in sorted(groups, key=lambda g: -g.n * g.full_kw):
        b = min(bins, key=lambda b: load[b])
        setattr(g, attr, b)
        load[b] += g.n * g.full_kw
        members[b].append(g)
    return members


def _draw_kw(members: list[_Group]) -> tuple[float, float]:
    return sum(g.n * g.full_kw for g in members), sum(g.n * g.base_kw for g in members)


def _build_site(rng, si: int, racks: int) -> tuple[dict, list[_Group]]:
    prefix = f"s{si}"
    ambient = round(float(rng.uniform(5, 38)), 1)
    groups = _site_groups(rng, prefix, racks)
    total_kw = sum(g.n * g.full_kw for g in groups)

    n_feeds = max(2, math.ceil(total_kw / rng.uniform(4000, 8000)))
    feed_ids = [f"{prefix}-F{n}" for n in range(1, n_feeds + 1)]
    feeds = []
    for fid, members in _assign(groups, feed_ids, "feed").items():
        full, base = _draw_kw(members)
        limit = max(full * rng.uniform(0.75, 0.95), base * 1.05 + 1.0)
        feeds.append({"id": fid, "limit_kw": float(math.ceil(limit))})

    loops, site_factor = [], {}
    for kind in ("air", "liquid"):
        of_kind = [g for g in groups if g.cooling == kind]
        if not of_kind:
            continue
        kind_kw = sum(g.n * g.full_kw for g in of_kind)
        n_loops = max(1, math.ceil(kind_kw / rng.uniform(5000, 9000)))
        loop_ids = [f"{prefix}-{kind}{n}" for n in range(1, n_loops + 1)]
        for lid, members in _assign(of_kind, loop_ids, "loop").items():
            full, base = _draw_kw(members)
            derate = round(float(rng.uniform(0.01, 0.025)), 4)
            design = round(ambient + float(rng.uniform(-8, 10)), 1)
            factor = loop_capacity_kw(1.0, derate, ambient, design)   # derated kW per kW of capacity
            cap = max(full * rng.uniform(0.75, 0.95), base * 1.05 + 1.0) / factor
            kwph = round(float(rng.uniform(0.03, 0.06) if kind == "air" else rng.uniform(0.05, 0.10)), 3)
            site_factor[lid] = 1.0 + kwph
            loops.append({"id": lid, "kind": kind, "capacity_kw": float(math.ceil(cap)),
                          "design_ambient_c": design, "derate_per_c": derate, "kw_per_kw_heat": kwph})

    rack_list, n_miner, n_gpu = [], 0, 0
    for g in groups:
        ids = []
        for _ in range(g.n):
            if g.kind == "miner":
                n_miner += 1
                rid = f"{prefix}-M{n_miner:04d}"
                rack = {"id": rid, "feed": g.feed, "loop": g.loop, "limit_kw": g.limit_kw,
                        "idle_kw": g.idle_kw, "miners": {"model": g.model, "count": g.count}}
            else:
                n_gpu += 1
                rid = f"{prefix}-G{n_gpu:04d}"
                rack = {"id": rid, "feed": g.feed, "loop": g.loop, "limit_kw": g.limit_kw,
                        "idle_kw": g.idle_kw}
                if g.domain is not None:
                    rack["domain"] = g.domain
                rack["gpus"] = {"model": g.model, "count": g.count}
            ids.append(rid)
            rack_list.append(rack)
        g.rack_ids = tuple(ids)

    base_kw = float(round(max(20.0, 0.012 * total_kw)))
    nameplate = base_kw + sum(g.n * g.full_kw * site_factor[g.loop] for g in groups)
    idle_site = base_kw + sum(g.n * g.base_kw * site_factor[g.loop] for g in groups)
    grid = max(nameplate * rng.uniform(0.80, 0.95), idle_site * 1.05 + 1.0)
    site = {"id": prefix, "grid_limit_kw": float(math.ceil(grid)),
            "energy_price_usd_per_mwh": round(float(rng.uniform(20, 80)), 1),
            "ambient_c": ambient, "base_kw": base_kw,
            "feeds": feeds, "loops": loops, "racks": rack_list}
    return site, groups


def _training_jobs(rng, si: int, n_sites: int, groups: list[_Group], free: dict[str, int]) -> list[dict]:
    domains = [g for g in groups if g.kind == "train"]
    if not domains:
        return []
    n_gpu_racks = sum(g.n for g in groups if g.kind != "miner")
    n_jobs = int(min(MAX_JOBS_PER_SITE, max(1, round(n_gpu_racks / 9))))
    # keep adding jobs until they ask for ~20 % more GPUs than the domains hold: jobs compete
    want_gpus = 1.2 * sum(g.n * g.count for g in domains)
    jobs: list[dict] = []
    asked = 0
    while len(jobs) < MAX_JOBS_PER_SITE and (len(jobs) < n_jobs or asked < want_gpus):
        n = len(jobs) + 1
        home = domains[int(rng.integers(len(domains)))]
        dom_gpus = home.n * home.count
        models = [home.model] + [m for m in TRAIN_MODELS if m != home.model and rng.random() < 0.4]
        gpus = _job_gpus(rng, dom_gpus)
        job: dict[str, Any] = {
            "id": f"s{si}-job{n:03d}", "gpus": gpus,
            "value_per_gpu_h": {m: round(GPU_USD_PER_H[m] * float(rng.uniform(0.85, 1.15)), 2)
                                for m in sorted(models)}}
        if rng.random() < 0.3:
            job["min_cap_w"] = float(GPU_CATALOG[home.model]["cap_levels"][1][0])
        if n_sites > 1:
            job["sites"] = [f"s{si}"] + ([f"s{(si + 1) % n_sites}"] if rng.random() < 0.25 else [])
        if rng.random() < 0.4 and sum(free[r] for r in home.rack_ids) >= gpus:
            start = int(rng.integers(home.n))
            running, need = {}, gpus
            for r in home.rack_ids[start:] + home.rack_ids[:start]:
                take = min(free[r], need)
                if take > 0:
                    running[r] = take
                    free[r] -= take
                    need -= take
                if need == 0:
                    break
            job["running"] = running
            job["move_cost_usd"] = float(round(gpus * GPU_USD_PER_H[home.model] * rng.uniform(0.2, 0.6)))
        jobs.append(job)
        asked += gpus
    return jobs


def _services(rng, si: int, n_sites: int, groups: list[_Group], free: dict[str, int]) -> list[dict]:
    infer = [g for g in groups if g.kind == "infer"]
    if not infer:
        return []
    n_svc = int(min(MAX_SERVICES_PER_SITE, max(1, round(sum(g.n for g in infer) / 15))))
    site_models = {g.model for g in infer}
    fitting = [name for name, (_, rps, _, _) in SERVICE_CATALOG.items() if site_models & set(rps)]
    gpus_by_model = {m: sum(g.n * g.count for g in infer if g.model == m) for m in site_models}
    out = []
    for n in range(1, n_svc + 1):
        name = fitting[int(rng.integers(len(fitting)))]
        gpr, rps, value, penalty = SERVICE_CATALOG[name]
        replica_rps = {m: round(r * float(rng.uniform(0.9, 1.1)), 3) for m, r in sorted(rps.items())}
        local = [m for m in replica_rps if m in site_models]
        share_gpus = sum(gpus_by_model[m] for m in local) / n_svc
        best = max(replica_rps[m] for m in local)
        demand = round(share_gpus / gpr * best * float(rng.uniform(0.7, 1.4)), 2)
        svc: dict[str, Any] = {
            "id": f"s{si}-{name}-{n}", "gpus_per_replica": gpr, "replica_rps": replica_rps,
            "demand_rps": demand, "value_per_1k": value, "unserved_penalty_per_1k": penalty}
        if gpr >= 2 and rng.random() < 0.3:
            svc["min_cap_w"] = 500.0
        if n_sites > 1:
            svc["sites"] = [f"s{si}"] + ([f"s{(si + 1) % n_sites}"] if rng.random() < 0.3 else [])
        if rng.random() < 0.5:
            want = int(demand * rng.uniform(0.5, 0.9) / best)
            running = {}
            for g in infer:
                if g.model not in replica_rps:
                    continue
                for r in g.rack_ids:
                    k = min(free[r] // gpr, want)
                    if k > 0:
                        running[r] = k
                        free[r] -= k * gpr
                        want -= k
                    if want == 0:
                        break
                if want == 0:
                    break
            if running:
                svc["running"] = running
                svc["move_cost_usd"] = float(2 * gpr)
        out.append(svc)
    return out


def generate_scenario(sites: int, racks_per_site: int, seed: int) -> dict:
    """A random, valid scenario dict with `sites` sites of exactly `racks_per_site` racks each."""
    for name, value, low in (("sites", sites, 1), ("racks_per_site", racks_per_site, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name}: must be an integer >= {low} (got {value!r})")
    if sites * racks_per_site > MAX_TOTAL_RACKS:
        raise ValueError(f"sites x racks_per_site: at most {MAX_TOTAL_RACKS:,} racks (got {sites * racks_per_site:,})")
    rng = np.random.default_rng(seed)
    site_dicts, training, inference = [], [], []
    for si in range(sites):
        site, groups = _build_site(rng, si, racks_per_site)
        free = {r: g.count for g in groups if g.kind != "miner" for r in g.rack_ids}
        training += _training_jobs(rng, si, sites, groups, free)
        inference += _services(rng, si, sites, groups, free)
        site_dicts.append(site)
    used_gpu = {r["gpus"]["model"] for s in site_dicts for r in s["racks"] if "gpus" in r}
    used_gpu |= {m for j in training for m in j["value_per_gpu_h"]}
    used_gpu |= {m for s in inference for m in s["replica_rps"]}
    used_miner = {r["miners"]["model"] for s in site_dicts for r in s["racks"] if "miners" in r}
    return {
        "version": 1,
        "name": f"generated-{sites}x{racks_per_site}-seed{seed}",
        "interval_h": 1.0,
        "hashprice_usd_per_ph_day": round(float(rng.uniform(35, 60)), 2),
        "gpu_models": {m: {"idle_w": float(GPU_CATALOG[m]["idle_w"]), "host_w": float(GPU_CATALOG[m]["host_w"]),
                           "cap_levels": [{"cap_w": float(c), "perf": p} for c, p in GPU_CATALOG[m]["cap_levels"]]}
                       for m in GPU_CATALOG if m in used_gpu},
        "miner_models": {m: {"modes": {q: {"th_s": float(th), "kw": kw} for q, (th, kw) in MINER_CATALOG[m][0].items()}}
                         for m in MINER_CATALOG if m in used_miner},
        "sites": site_dicts,
        "training": training,
        "inference": inference,
    }


class _FlowDict(dict):
    """A mapping written on one line (a rack), so a 400-rack site stays readable."""


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    pass


_Dumper.add_representer(_FlowDict, lambda d, m: d.represent_mapping("tag:yaml.org,2002:map", m, flow_style=True))


def scenario_text(data: dict, as_json: bool = False) -> str:
    """The scenario as YAML (one line per rack), or as JSON."""
    if as_json:
        return json.dumps(data, indent=1) + "\n"
    sites = [{**s, "racks": [_FlowDict(r) for r in s.get("racks", [])]} for s in data.get("sites", [])]
    return yaml.dump({**data, "sites": sites}, Dumper=_Dumper, sort_keys=False,
                     default_flow_style=None, width=200)


def write_scenario(data: dict, path: str | Path) -> None:
    """Write a scenario dict as YAML, or as JSON when the path ends with `.json`."""
    p = Path(path)
    p.write_text(scenario_text(data, as_json=p.suffix.lower() == ".json"), encoding="utf-8")


# --- `wattsched generate` ----------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sites", type=int, default=1, help="number of sites (default 1)")
    parser.add_argument("--racks-per-site", type=int, default=40, help="racks at each site (default 40)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; equal seeds give equal scenarios")
    parser.add_argument("-o", "--output", default=None,
                        help="file to write (.json for JSON, else YAML); default: YAML to stdout")


def run(args: argparse.Namespace) -> int:
    try:
        data = generate_scenario(args.sites, args.racks_per_site, args.seed)
    except ValueError as err:
        field, _, reason = str(err).partition(": ")
        raise ScenarioError([f"--{field.replace('_', '-')}: {reason}"]) from None
    if args.output:
        try:
            write_scenario(data, args.output)
        except OSError as err:
            raise ScenarioError([f"{args.output}: cannot be written ({err.strerror or err.__class__.__name__})"]) from None
    else:
        sys.stdout.write(scenario_text(data))
    return 0
