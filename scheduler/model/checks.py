"""Cross-reference rules of SPEC section 1 and 6: each broken rule becomes one message
`path: reason` (e.g. `sites[0].racks[12].feed: unknown feed 'F9'`)."""
from __future__ import annotations

from collections import Counter, defaultdict

from .scenario import Scenario


def _dupes(items, path: str, what: str) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n, item in enumerate(items):
        if item.id in seen:
            out.append(f"{path}[{n}].id: duplicate {what} id '{item.id}' (first at {path}[{seen[item.id]}])")
        else:
            seen[item.id] = n
    return out


def _quote_list(names) -> str:
    return ", ".join(f"'{n}'" for n in sorted(names))


def check_scenario(sc: Scenario) -> list[str]:
    """Every cross-reference problem of a structurally valid scenario, in document order."""
    errs: list[str] = []
    errs += _dupes(sc.sites, "sites", "site")
    site_ids = {s.id for s in sc.sites}

    rack_where: dict[str, tuple[int, int]] = {}  # rack id -> (site index, rack index)
    domain_model: dict[str, tuple[str, str, str]] = {}  # domain -> (gpu model, site, first path)
    for si, site in enumerate(sc.sites):
        sp = f"sites[{si}]"
        errs += _dupes(site.feeds, f"{sp}.feeds", "feed")
        errs += _dupes(site.loops, f"{sp}.loops", "loop")
        feeds = {f.id for f in site.feeds}
        loops = {lp.id for lp in site.loops}
        for ki, rack in enumerate(site.racks):
            rp = f"{sp}.racks[{ki}]"
            if rack.id in rack_where:
                osi, oki = rack_where[rack.id]
                errs.append(f"{rp}.id: duplicate rack id '{rack.id}' (first at sites[{osi}].racks[{oki}])")
            else:
                rack_where[rack.id] = (si, ki)
            if rack.feed not in feeds:
                errs.append(f"{rp}.feed: unknown feed '{rack.feed}'")
            if rack.loop not in loops:
                errs.append(f"{rp}.loop: unknown loop '{rack.loop}'")
            if rack.gpus is not None and rack.gpus.model not in sc.gpu_models:
                errs.append(f"{rp}.gpus.model: unknown GPU model '{rack.gpus.model}'")
            if rack.miners is not None and rack.miners.model not in sc.miner_models:
                errs.append(f"{rp}.miners.model: unknown miner model '{rack.miners.model}'")
            if rack.domain is not None and rack.gpus is not None:
                if rack.domain not in domain_model:
                    domain_model[rack.domain] = (rack.gpus.model, site.id, rp)
                else:
                    model, dsite, first = domain_model[rack.domain]
                    if model != rack.gpus.model:
                        errs.append(f"{rp}.domain: domain '{rack.domain}' mixes GPU models "
                                    f"'{model}' ({first}) and '{rack.gpus.model}'")
                    if dsite != site.id:
                        errs.append(f"{rp}.domain: domain '{rack.domain}' spans sites '{dsite}' and '{site.id}'")

    def rack_of(rid: str):
        where = rack_where.get(rid)
        return None if where is None else (sc.sites[where[0]], sc.sites[where[0]].racks[where[1]])

    used_gpus: Counter[str] = Counter()
    users: dict[str, list[str]] = defaultdict(list)  # rack id -> "'job' n" for the message
    over_alone: set[str] = set()  # racks one placement already overfills: no second message

    def check_models(keys, path: str) -> None:
        for key in keys:
            if key not in sc.gpu_models:
                errs.append(f"{path}: unknown GPU model '{key}'")

    def check_sites(sites, path: str) -> None:
        for n, s in enumerate(sites or []):
            if s not in site_ids:
                errs.append(f"{path}[{n}]: unknown site '{s}'")

    def check_min_cap(min_cap, models, path: str) -> None:
        known = [m for m in models if m in sc.gpu_models]
        if min_cap is not None and known and all(
                sc.gpu_models[m].cap_levels[-1].cap_w < min_cap for m in known):
            errs.append(f"{path}: {min_cap:g} W is above the highest cap level of every allowed GPU model")

    def check_running_rack(rid: str, models, allowed_sites, path: str):
        found = rack_of(rid)
        if found is None:
            errs.append(f"{path}: unknown rack '{rid}'")
            return None
        site, rack = found
        if rack.gpus is None:
            errs.append(f"{path}: rack '{rid}' holds miners, not GPUs")
            return None
        if rack.gpus.model not in models:
            errs.append(f"{path}: rack '{rid}' holds GPU model '{rack.gpus.model}', "
                        f"not one of {_quote_list(models)}")
            return None
        if allowed_sites is not None and site.id not in allowed_sites:
            errs.append(f"{path}: rack '{rid}' is at site '{site.id}', not an allowed site")
            return None
        return rack

    errs += _dupes(sc.training, "training", "training job")
    for ji, job in enumerate(sc.training):
        jp = f"training[{ji}]"
        check_models(job.value_per_gpu_h, f"{jp}.value_per_gpu_h")
        check_sites(job.sites, f"{jp}.sites")
        check_min_cap(job.min_cap_w, job.value_per_gpu_h, f"{jp}.min_cap_w")
        if job.running:
            domains = set()
            for rid, n in job.running.items():
                rack = check_running_rack(rid, job.value_per_gpu_h, job.sites, f"{jp}.running.{rid}")
                if rack is None:
                    continue
                if rack.domain is None:
                    errs.append(f"{jp}.running.{rid}: rack '{rid}' is in no domain")
                else:
                    domains.add(rack.domain)
                if n > rack.gpus.count:
                    errs.append(f"{jp}.running.{rid}: {n} GPUs exceed the rack's {rack.gpus.count}")
                    over_alone.add(rid)
                used_gpus[rid] += n
                users[rid].append(f"'{job.id}' {n}")
            if len(domains) > 1:
                errs.append(f"{jp}.running: placement spans domains {_quote_list(domains)}; it must lie in one")
            total = sum(job.running.values())
            if total != job.gpus:
                errs.append(f"{jp}.running: placement covers {total} GPUs, the job has {job.gpus}")
        if job.remaining_gpu_h is None and job.deadline_h is not None:
            errs.append(f"{jp}.deadline_h: a deadline needs remaining_gpu_h")

    errs += _dupes(sc.inference, "inference", "inference service")
    for ii, svc in enumerate(sc.inference):
        ip = f"inference[{ii}]"
        check_models(svc.replica_rps, f"{ip}.replica_rps")
        check_sites(svc.sites, f"{ip}.sites")
        check_min_cap(svc.min_cap_w, svc.replica_rps, f"{ip}.min_cap_w")
        for rid, n in (svc.running or {}).items():
            rack = check_running_rack(rid, svc.replica_rps, svc.sites, f"{ip}.running.{rid}")
            if rack is None:
                continue
            gpus = n * svc.gpus_per_replica
            if gpus > rack.gpus.count:
                errs.append(f"{ip}.running.{rid}: {n} replicas need {gpus} GPUs, the rack has {rack.gpus.count}")
                over_alone.add(rid)
            used_gpus[rid] += gpus
            users[rid].append(f"'{svc.id}' {gpus}")

    for rid, used in used_gpus.items():
        site, rack = rack_of(rid)
        if used > rack.gpus.count and rid not in over_alone:
            si, ki = rack_where[rid]
            errs.append(f"sites[{si}].racks[{ki}]: running placements use {used} GPUs "
                        f"({', '.join(users[rid])}), the rack '{rid}' has {rack.gpus.count}")

    service_ids = {s.id for s in sc.inference}
    for pi, period in enumerate(sc.periods or []):
        pp = f"periods[{pi}]"
        for field in ("energy_price_usd_per_mwh", "grid_limit_kw", "ambient_c"):
            for key in getattr(period, field):
                if key not in site_ids:
                    errs.append(f"{pp}.{field}.{key}: unknown site '{key}'")
        for key in period.demand_rps:
            if key not in service_ids:
                errs.append(f"{pp}.demand_rps.{key}: unknown inference service '{key}'")
    return errs


def domains_of(sc: Scenario) -> dict[str, list[str]]:
    """Domain id -> its rack ids, in document order."""
    out: dict[str, list[str]] = defaultdict(list)
    for site in sc.sites:
        for rack in site.racks:
            if rack.domain is not None and rack.gpus is not None:
                out[rack.domain].append(rack.id)
    return dict(out)
