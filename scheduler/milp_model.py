"""The MILP formulation of SPEC sections 2-4, built from a `Problem` (no solving here).

Formulation choices that make it fast (see docs in README "MILP formulation"):
- GPU busy counts are modelled per rack *and cap level* (`t` for training, `r` for inference
  replicas); a training job only chooses a (domain, level) pair with one binary `w`, and a domain
  row ties the busy training GPUs at a level to the jobs placed there. Per-rack GPU counts of a
  job are then any split of those slots, which is exactly what SPEC allows.
- Identical GPU racks whose power limit cannot bind and that run nothing now are merged into one
  *rack class* (a count of racks): this removes the symmetry among interchangeable racks.
  Disaggregation back to racks is exact (replicas are packed largest first; see `extract`).
- Identical miner racks form classes too; a class chooses how many of its racks run each
  Pareto-optimal *pattern* (miners per mode), which is exact because a rack touches every limit
  only through its kW.
Every row is named `family[index]` so an infeasible model can be explained and an LP file read.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from itertools import product

import numpy as np
import pulp

from .problem import GPU, MINER, Problem, units_within

EPS = 1e-9
MAX_PATTERN_VECTORS = 20000


@dataclass
class GpuUnit:
    """One GPU rack, or a class of identical interchangeable racks."""
    racks: list[int]
    model: int
    count: int                      # GPUs per rack
    levels: list[int]               # cap levels any work may use here
    t: dict[int, pulp.LpVariable] = field(default_factory=dict)                 # level -> training GPUs
    r: dict[tuple[int, int], pulp.LpVariable] = field(default_factory=dict)     # (service, level) -> replicas


@dataclass
class MinerClass:
    racks: list[int]
    model: int
    patterns: np.ndarray            # i8[P,Q] miners per mode, non-zero Pareto patterns
    pattern_kw: np.ndarray          # f8[P] kW above the rack's idle
    pattern_th: np.ndarray          # f8[P]
    n: list[pulp.LpVariable] = field(default_factory=list)     # racks running each pattern


@dataclass
class MinerRack:
    """A miner rack modelled on its own (pattern enumeration too large)."""
    rack: int
    model: int
    m: list[pulp.LpVariable] = field(default_factory=list)     # miners per mode


@dataclass
class Model:
    problem: Problem
    lp: pulp.LpProblem
    constant_usd: float                              # objective constant
    obj: dict                                        # variable -> objective coefficient (USD)
    units: list[GpuUnit]
    miner_classes: list[MinerClass]
    miner_racks: list[MinerRack]
    w: dict[tuple[int, int, int], pulp.LpVariable]   # (job, domain, level)
    keep: dict[tuple[int, int], pulp.LpVariable]     # (job, level): job stays exactly where it runs
    dev: dict[tuple[int, int], pulp.LpVariable]      # (service, rack): replicas started or stopped
    served: dict[int, pulp.LpVariable]
    rows: dict[str, str]                             # pulp row name -> family[index] label
    slacks: dict[str, pulp.LpVariable]               # label -> slack (explain mode only)
    unplaceable_required: list[int]                  # required jobs with no eligible domain at all


def miner_patterns(count: int, kw: np.ndarray, th: np.ndarray, room_kw: float, keep_all_kw: bool):
    """Non-zero patterns (miners per mode) that fit `count` and `room_kw`, reduced to those not
    dominated in (kW lower, TH/s higher); with `keep_all_kw` (negative energy price) only equal-kW
    ties are removed. Returns None when there are too many vectors to enumerate."""
    Q = len(kw)
    total = 1
    for q in range(Q):
        total = total * (count + q + 1) // (q + 1)
    if total > MAX_PATTERN_VECTORS:
        return None
    vecs = [v for v in product(range(count + 1), repeat=Q) if 0 < sum(v) <= count] if Q > 0 else []
    if not vecs:
        return np.zeros((0, Q), dtype=np.int64), np.zeros(0), np.zeros(0)
    V = np.array(vecs, dtype=np.int64)
    pkw = V @ kw
    pth = V @ th
    ok = pkw <= room_kw + EPS
    V, pkw, pth = V[ok], pkw[ok], pth[ok]
    kw_key = np.round(pkw, 9)                 # 6 x 0.8 and 2 x 1.2 + 3 x 0.8 are the same kW
    order = np.lexsort((-pth, kw_key))        # by kW ascending, then TH/s descending
    keep, best_th, last_kw = [], -1.0, None
    for n in order:
        if keep_all_kw:
            if last_kw is None or kw_key[n] > last_kw:
                keep.append(n)
                last_kw = kw_key[n]
        elif pth[n] > best_th + EPS:
            keep.append(n)
            best_th = pth[n]
    keep = np.array(keep, dtype=np.int64)
    return V[keep], pkw[keep], pth[keep]


def _levels(p: Problem, g: int, lo: int) -> list[int]:
    return list(range(int(lo), int(p.gpu_n_levels[g])))


def _gpu_units(p: Problem, job_levels_by_domain: dict[int, set[int]],
               svc_levels_by_rack: dict[int, dict[int, list[int]]]) -> tuple[list[GpuUnit], list[list[int]]]:
    """GPU units, and groups of unit indices that are identical racks modelled one by one
    (their power limit binds): the solver orders those by power to cut their symmetry."""
    running_racks = set(p.job_run_rack.tolist()) | set(p.svc_run_rack.tolist())
    groups: dict[tuple, list[int]] = defaultdict(list)
    singles: list[list[int]] = []
    twins: dict[tuple, list[int]] = defaultdict(list)
    levels_of: dict[int, set[int]] = {}     # rack -> cap levels any work may use there
    for k in np.nonzero(p.rack_kind == GPU)[0].tolist():
        g, d = int(p.rack_model[k]), int(p.rack_domain[k])
        levels = set(job_levels_by_domain.get(d, set()))
        gprs = set()
        for i, lv in svc_levels_by_rack.get(k, {}).items():
            levels |= set(lv)
            gprs.add(int(p.svc_gpus_per_replica[i]))
        if not levels:
            continue
        levels_of[k] = levels
        top = max(p.gpu_busy_kw[g, c] for c in levels)
        power_binds = p.rack_base_kw[k] + p.rack_count[k] * top > p.rack_limit_kw[k] + EPS
        sizes = sorted(gprs)
        chain = all(int(p.rack_count[k]) % s == 0 for s in sizes) and all(
            b % a == 0 for a, b in zip(sizes, sizes[1:]))
        key = (d, g, int(p.rack_site[k]), int(p.rack_feed[k]), int(p.rack_loop[k]), int(p.rack_count[k]),
               float(p.rack_limit_kw[k]), float(p.rack_base_kw[k]),
               tuple(sorted((i, tuple(lv)) for i, lv in svc_levels_by_rack.get(k, {}).items())))
        if k in running_racks:
            singles.append([k])
        elif power_binds or not chain:
            twins[key].append(k)
        else:
            groups[key].append(k)
    twin_groups = []
    for racks in twins.values():
        twin_groups.append(list(range(len(singles), len(singles) + len(racks))))
        singles.extend([k] for k in racks)
    units = []
    for racks in singles + list(groups.values()):
        k = racks[0]
        units.append(GpuUnit(racks=racks, model=int(p.rack_model[k]), count=int(p.rack_count[k]),
                             levels=sorted(levels_of[k])))
    return units, [grp for grp in twin_groups if len(grp) > 1]


def build(p: Problem, explain: bool = False, *, lp: pulp.LpProblem | None = None, tag: str = "",
          moves: bool = True) -> Model:
    """Build the MILP. With `explain`, hard limits get penalised slacks and the objective
    becomes 'least total violation' (used to name the limits of an infeasible scenario).

    To compose several periods into one model (horizon planning), pass a shared `lp` and a
    distinct `tag` per period (prefixes variable names, suffixes row labels `@tag`); the
    objective is then left to the caller (`Model.obj`, `Model.constant_usd`), and `moves=False`
    leaves move costs to the caller's linking rows."""
    compose = lp is not None
    if lp is None:
        lp = pulp.LpProblem("wattsched", pulp.LpMinimize if explain else pulp.LpMaximize)
    suffix = f"@{tag.rstrip('_')}" if tag else ""

    def var(name: str, lowBound=None, upBound=None, cat=pulp.LpContinuous) -> pulp.LpVariable:
        return lp.add_variable(name, lowBound, upBound, cat=cat)
    h = p.interval_h
    price_kw = p.usd_per_site_kw
    J, I = len(p.job_ids), len(p.svc_ids)
    rows: dict[str, str] = {}
    slacks: dict[str, pulp.LpVariable] = {}
    obj: dict[pulp.LpVariable, float] = defaultdict(float)   # a variable may collect several terms
    constant = 0.0

    def add_row(expr, sense: str, rhs: float, label: str, slack_kind: str | None = None):
        name = f"{tag}c{len(rows)}"
        label = label + suffix
        if explain and slack_kind is not None:
            s = var(f"{tag}slack{len(slacks)}", lowBound=0)
            slacks[label] = s
            expr = expr - s if sense == "<=" else expr + s
        if sense == "<=":
            lp.addConstraint(expr <= rhs, name)
        elif sense == ">=":
            lp.addConstraint(expr >= rhs, name)
        else:
            lp.addConstraint(expr == rhs, name)
        rows[name] = label

    # --- training: (job, domain, level) binaries --------------------------------------------
    w: dict[tuple[int, int, int], pulp.LpVariable] = {}
    job_levels_by_domain: dict[int, set[int]] = defaultdict(set)
    unplaceable_required = []
    for j in range(J):
        for d in range(len(p.domain_ids)):
            if not p.job_domain_ok(j, d):
                continue
            g = int(p.domain_model[d])
            for c in _levels(p, g, p.job_min_level[j, g]):
                w[j, d, c] = var(f"{tag}w_{j}_{d}_{c}", cat=pulp.LpBinary)
                job_levels_by_domain[d].add(c)
                if not explain:
                    obj[w[j, d, c]] += h * p.job_usd_per_h(j, g, c)
        mine = [v for (jj, _, _), v in w.items() if jj == j]
        if p.job_required[j]:
            if not mine:
                unplaceable_required.append(j)
            else:
                add_row(pulp.lpSum(mine), ">=", 1, f"required[{p.job_ids[j]}]", "required")
        if mine:
            add_row(pulp.lpSum(mine), "<=", 1, f"job_once[{p.job_ids[j]}]")

    # --- inference: eligible (rack, levels) per service -------------------------------------
    svc_levels_by_rack: dict[int, dict[int, list[int]]] = defaultdict(dict)
    for i in range(I):
        for k in np.nonzero(p.rack_kind == GPU)[0].tolist():
            if p.svc_rack_ok(i, k):
                g = int(p.rack_model[k])
                svc_levels_by_rack[k][i] = _levels(p, g, p.svc_min_level[i, g])

    units, twin_groups = _gpu_units(p, job_levels_by_domain, svc_levels_by_rack)
    unit_power: list[list] = []
    unit_of_rack: dict[int, GpuUnit] = {}
    domain_level_t: dict[tuple[int, int], list[pulp.LpVariable]] = defaultdict(list)
    capacity_terms: dict[int, list] = defaultdict(list)
    # per-limit linear terms of the variable part of rack power, and fixed (base) parts
    feed_terms: dict[int, list] = defaultdict(list)
    loop_terms: dict[int, list] = defaultdict(list)
    site_terms: dict[int, list] = defaultdict(list)

    def add_kw(v: pulp.LpVariable, kw: float, k: int, usd: float = 0.0) -> None:
        """v adds `kw` to racks like k (its feed, loop and, with cooling, site); v's objective
        coefficient is `usd` less that site power's energy cost."""
        s_, factor = int(p.rack_site[k]), p.rack_site_factor[k]
        feed_terms[int(p.rack_feed[k])].append((v, kw))
        loop_terms[int(p.rack_loop[k])].append((v, kw))
        site_terms[s_].append((v, kw * factor))
        if not explain:
            obj[v] += usd - price_kw[s_] * factor * kw

    for u_idx, u in enumerate(units):
        k0 = u.racks[0]
        n_racks = len(u.racks)
        for k in u.racks:
            unit_of_rack[k] = u
        g, d = u.model, int(p.rack_domain[k0])
        room = p.rack_limit_kw[k0] - p.rack_base_kw[k0]
        for c in sorted(job_levels_by_domain.get(d, set())):
            ub = units_within(u.count, room, p.gpu_busy_kw[g, c]) * n_racks
            u.t[c] = var(f"{tag}t_{u_idx}_{c}", lowBound=0, upBound=ub, cat=pulp.LpInteger)
            domain_level_t[d, c].append(u.t[c])
        for i, lv in svc_levels_by_rack.get(k0, {}).items():
            gpr = int(p.svc_gpus_per_replica[i])
            for c in lv:
                per = p.replica_kw(i, g, c)
                ub = units_within(u.count // gpr, room, per) * n_racks
                u.r[i, c] = var(f"{tag}r_{i}_{u_idx}_{c}", lowBound=0, upBound=ub, cat=pulp.LpInteger)
                capacity_terms[i].append((u.r[i, c], p.replica_rps(i, g, c)))
        busy = [(v, 1) for v in u.t.values()] + [(v, int(p.svc_gpus_per_replica[i])) for (i, _), v in u.r.items()]
        power = [(v, p.gpu_busy_kw[g, c]) for c, v in u.t.items()] + [
            (v, p.replica_kw(i, g, c)) for (i, c), v in u.r.items()]
        unit_power.append(power)
        label = p.rack_ids[k0] if n_racks == 1 else f"{p.rack_ids[k0]}+{n_racks - 1}"
        if busy:
            max_busy = sum(v.upBound * a for v, a in busy)
            if max_busy > u.count * n_racks:
                add_row(pulp.LpAffineExpression(busy), "<=", u.count * n_racks, f"rack_gpus[{label}]")
            max_kw = sum(v.upBound * a for v, a in power)
            if n_racks == 1 and max_kw > room + EPS:
                add_row(pulp.LpAffineExpression(power), "<=", room, f"rack_power[{label}]", "kw")
        for v, a in power:
            add_kw(v, a, k0)

    # training GPUs at (domain, level) equal the jobs placed there
    w_at: dict[tuple[int, int], list] = defaultdict(list)
    for (j, d, c), v in w.items():
        w_at[d, c].append((v, int(p.job_gpus[j])))
    for (d, c), tvars in domain_level_t.items():
        add_row(pulp.LpAffineExpression([(v, 1) for v in tvars] + [(v, -n) for v, n in w_at[d, c]]), "=", 0,
                f"domain_gpus[{p.domain_ids[d]}@{c}]")
    # implied knapsacks on the job binaries alone (GPUs, then power room of the domain's racks):
    # redundant for the LP, but they let the solver derive cover cuts for gang packing
    for d in range(len(p.domain_ids)):
        levels = sorted(c for (dd, c) in w_at if dd == d)
        if not levels:
            continue
        racks = p.domain_rack_list(d)
        g = int(p.domain_model[d])
        gpus = [(v, n) for c in levels for v, n in w_at[d, c]]
        if sum(n for _, n in gpus) > p.domain_gpus[d]:
            add_row(pulp.LpAffineExpression(gpus), "<=", int(p.domain_gpus[d]), f"domain_fit[{p.domain_ids[d]}]")
        room = float(np.sum(p.rack_limit_kw[racks] - p.rack_base_kw[racks]))
        power = [(v, n * p.gpu_busy_kw[g, c]) for c in levels for v, n in w_at[d, c]]
        if sum(a for _, a in power) > room + EPS:
            add_row(pulp.LpAffineExpression(power), "<=", room, f"domain_power[{p.domain_ids[d]}]")

    # --- moves ----------------------------------------------------------------------------------
    keep: dict[tuple[int, int], pulp.LpVariable] = {}
    keep_room: dict[tuple[int, int], list] = defaultdict(list)
    for j in range(J):
        run = p.job_running(j) if moves else {}
        if not run:
            continue
        cost = p.job_move_cost_usd[j]
        if not explain:
            constant -= cost
        d = int(p.job_run_domain[j])
        for c in range(int(p.gpu_n_levels[p.domain_model[d]])):
            if (j, d, c) not in w or cost <= 0:
                continue
            keep[j, c] = var(f"{tag}keep_{j}_{c}", cat=pulp.LpBinary)
            add_row(keep[j, c] - w[j, d, c], "<=", 0, f"keep[{p.job_ids[j]}@{c}]")
            if not explain:
                obj[keep[j, c]] += cost
            for k, n in run.items():
                keep_room[k, c].append((keep[j, c], -n))
    for (k, c), terms in keep_room.items():
        u = unit_of_rack[k]
        add_row(pulp.LpAffineExpression([(u.t[c], 1)] + terms), ">=", 0,
                f"keep_room[{p.rack_ids[k]}@{c}]")

    devs: dict[tuple[int, int], pulp.LpVariable] = {}
    for i in range(I):
        cost = p.svc_move_cost_usd[i]
        run = p.svc_running(i)
        if cost <= 0 or not moves:
            continue
        racks = set(run) | {k for k in svc_levels_by_rack if i in svc_levels_by_rack[k]}
        for k in sorted(racks):
            u = unit_of_rack.get(k)
            reps = [v for (ii, _), v in (u.r.items() if u is not None else []) if ii == i]
            have = run.get(k, 0)
            if u is not None and len(u.racks) > 1:
                continue  # classes hold no running replicas; every replica there is a start
            if not reps:
                if not explain:
                    constant -= cost * have
                continue
            dev = devs[i, k] = var(f"{tag}dev_{i}_{k}", lowBound=0)
            add_row(pulp.lpSum(reps) - dev, "<=", have, f"moves_up[{p.svc_ids[i]}@{p.rack_ids[k]}]")
            add_row(-pulp.lpSum(reps) - dev, "<=", -have, f"moves_down[{p.svc_ids[i]}@{p.rack_ids[k]}]")
            if not explain:
                obj[dev] += -cost
        # replicas started in rack classes (nothing runs there) cost one move each
        for u in units:
            if len(u.racks) > 1 and not explain:
                for (ii, _), v in u.r.items():
                    if ii == i:
                        obj[v] += -cost

    # --- served load --------------------------------------------------------------------------
    served: dict[int, pulp.LpVariable] = {}
    for i in range(I):
        dem = float(p.svc_demand_rps[i])
        gain = p.usd_per_served_rps[i]
        if not explain:
            constant -= p.unserved_usd[i]
        if capacity_terms[i]:
            served[i] = var(f"{tag}s_{i}", lowBound=0, upBound=dem)
            add_row(pulp.LpAffineExpression([(served[i], 1)] + [(v, -a) for v, a in capacity_terms[i]]),
                    "<=", 0, f"served[{p.svc_ids[i]}]")
            if not explain:
                obj[served[i]] += gain

    # --- miners ---------------------------------------------------------------------------------
    miner_classes: list[MinerClass] = []
    miner_racks: list[MinerRack] = []
    groups: dict[tuple, list[int]] = defaultdict(list)
    for k in np.nonzero(p.rack_kind == MINER)[0].tolist():
        groups[(int(p.rack_model[k]), int(p.rack_site[k]), int(p.rack_feed[k]), int(p.rack_loop[k]),
                int(p.rack_count[k]), float(p.rack_limit_kw[k]), float(p.rack_base_kw[k]))].append(k)
    usd_th = p.usd_per_th
    for key, racks in groups.items():
        mm, s_, _, _, count, limit, base = key
        nq = int(p.miner_n_modes[mm])
        kw, th = p.miner_kw[mm, :nq], p.miner_th_s[mm, :nq]
        pats = miner_patterns(count, kw, th, limit - base, keep_all_kw=p.site_price_usd_per_mwh[s_] < 0)
        if pats is not None:
            V, pkw, pth = pats
            mc = MinerClass(racks=racks, model=mm, patterns=V, pattern_kw=pkw, pattern_th=pth)
            for n in range(len(V)):
                v = var(f"{tag}n_{len(miner_classes)}_{n}", lowBound=0, upBound=len(racks), cat=pulp.LpInteger)
                mc.n.append(v)
                add_kw(v, pkw[n], racks[0], usd_th * pth[n])
            if mc.n:
                add_row(pulp.lpSum(mc.n), "<=", len(racks), f"miner_racks[{p.rack_ids[racks[0]]}+{len(racks) - 1}]")
            miner_classes.append(mc)
            continue
        for k in racks:
            mr = MinerRack(rack=k, model=mm)
            for q in range(nq):
                v = var(f"{tag}m_{k}_{q}", lowBound=0, upBound=count, cat=pulp.LpInteger)
                mr.m.append(v)
                add_kw(v, kw[q], k, usd_th * th[q])
            add_row(pulp.lpSum(mr.m), "<=", count, f"rack_miners[{p.rack_ids[k]}]")
            if count * kw.max() > limit - base + EPS:
                add_row(pulp.LpAffineExpression(list(zip(mr.m, kw))), "<=", limit - base,
                        f"rack_power[{p.rack_ids[k]}]", "kw")
            miner_racks.append(mr)

    # --- feeds, loops, site ---------------------------------------------------------------------
    base_feed, base_loop, base_site = p.feed_base_kw, p.loop_base_kw, p.site_idle_kw
    for f_ in range(len(p.feed_ids)):
        label = f"feed_power[{p.site_ids[p.feed_site[f_]]}/{p.feed_ids[f_]}]"
        terms = feed_terms.get(f_, [])
        if explain or base_feed[f_] + sum(v.upBound * a for v, a in terms) > p.feed_limit_kw[f_] + EPS:
            add_row(pulp.LpAffineExpression(terms), "<=", p.feed_limit_kw[f_] - base_feed[f_], label, "kw")
    for l_ in range(len(p.loop_ids)):
        label = f"loop_heat[{p.site_ids[p.loop_site[l_]]}/{p.loop_ids[l_]}]"
        terms = loop_terms.get(l_, [])
        if explain or base_loop[l_] + sum(v.upBound * a for v, a in terms) > p.loop_cap_kw[l_] + EPS:
            add_row(pulp.LpAffineExpression(terms), "<=", p.loop_cap_kw[l_] - base_loop[l_], label, "kw")
    for s_ in range(len(p.site_ids)):
        label = f"site_power[{p.site_ids[s_]}]"
        add_row(pulp.LpAffineExpression(site_terms.get(s_, [])), "<=", p.site_grid_limit_kw[s_] - base_site[s_],
                label, "kw")
        if not explain:
            constant -= price_kw[s_] * base_site[s_]

    if compose:
        pass
    elif explain:
        lp += pulp.lpSum(s * (1e4 if label.startswith("required") else 1.0) for label, s in slacks.items())
    else:
        lp += pulp.LpAffineExpression(list(obj.items()), constant=constant)
    return Model(problem=p, lp=lp, constant_usd=constant, obj=dict(obj), units=units, miner_classes=miner_classes,
                 miner_racks=miner_racks, w=w, keep=keep, dev=devs, served=served, rows=rows, slacks=slacks,
                 unplaceable_required=unplaceable_required)
