"""Plan JSON (SPEC 5) -> `Assignment` on a compiled `Problem`: the inverse of `to_plan`, so a
previous interval's plan can be the starting point of a repair. Every problem with the plan is
one `plan.<path>: reason` line of a `ScenarioError`."""
from __future__ import annotations

from typing import Any

import numpy as np

from .assignment import Assignment
from .model.load import ScenarioError
from .model.running import is_count, plan_entries
from .problem import GPU, MINER, Problem


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)


def _level(p: Problem, g: int, cap_w: Any, path: str, errs: list[str]) -> int:
    if not _is_number(cap_w):
        errs.append(f"{path}: must be a number of watts (got {cap_w!r})")
        return -1
    n = int(p.gpu_n_levels[g])
    hits = np.nonzero(np.abs(p.gpu_cap_w[g, :n] - float(cap_w)) <= 1e-6)[0]
    if len(hits) == 0:
        levels = ", ".join(f"{c:g}" for c in p.gpu_cap_w[g, :n])
        errs.append(f"{path}: {float(cap_w):g} W is not a cap level of {p.gpu_model_ids[g]} ({levels})")
        return -1
    return int(hits[0])


def assignment_from_plan(p: Problem, plan: Any) -> Assignment:
    """Read a SPEC 5 plan's decisions (placements, cap levels, miner modes) for problem p.
    Unknown ids, racks of the wrong kind and unknown cap levels or modes are errors; jobs,
    services and racks the plan leaves out are unscheduled, empty and off."""
    if not isinstance(plan, dict):
        raise ScenarioError(["plan: must be a JSON object"])
    errs: list[str] = []
    a = Assignment.empty(p)
    racks = {rid: k for k, rid in enumerate(p.rack_ids)}
    jobs = {jid: j for j, jid in enumerate(p.job_ids)}
    svcs = {sid: i for i, sid in enumerate(p.svc_ids)}

    def gpu_rack(rid: Any, path: str):
        if not isinstance(rid, str) or rid not in racks:
            errs.append(f"{path}: unknown rack {rid!r}")
            return None
        k = racks[rid]
        if p.rack_kind[k] != GPU:
            errs.append(f"{path}: rack '{rid}' holds miners, not GPUs")
            return None
        return k

    for e in plan_entries(plan, "training", jobs, "training job", errs):
        path = f"plan.training[{e['id']}]"
        j = jobs[e["id"]]
        if not e.get("scheduled"):
            continue
        place = e.get("placement")
        if not isinstance(place, dict) or not place:
            errs.append(f"{path}.placement: a scheduled job needs a placement {{rack: gpus}}")
            continue
        out: dict[int, int] = {}
        for rid, cnt in place.items():
            k = gpu_rack(rid, f"{path}.placement")
            if k is None:
                continue
            if not is_count(cnt):
                errs.append(f"{path}.placement.{rid}: must be a GPU count (got {cnt!r})")
                continue
            if cnt:
                out[k] = cnt
        if not out:
            continue
        g = int(p.rack_model[next(iter(out))])
        if any(p.rack_model[k] != g for k in out):
            errs.append(f"{path}.placement: racks hold different GPU models")
            continue
        lvl = _level(p, g, e.get("cap_w"), f"{path}.cap_w", errs)
        if lvl >= 0:
            a.job_level[j] = lvl
            a.job_place[j] = out

    for e in plan_entries(plan, "inference", svcs, "inference service", errs):
        i = svcs[e["id"]]
        path = f"plan.inference[{e['id']}].placement"
        place = e.get("placement", [])
        if not isinstance(place, list):
            errs.append(f"{path}: must be a list of {{rack, replicas, cap_w}}")
            continue
        for m, item in enumerate(place):
            if not isinstance(item, dict):
                errs.append(f"{path}[{m}]: must be an object {{rack, replicas, cap_w}}")
                continue
            k = gpu_rack(item.get("rack"), f"{path}[{m}].rack")
            if k is None:
                continue
            reps = item.get("replicas")
            if not is_count(reps):
                errs.append(f"{path}[{m}].replicas: must be a count (got {reps!r})")
                continue
            lvl = _level(p, int(p.rack_model[k]), item.get("cap_w"), f"{path}[{m}].cap_w", errs)
            if lvl >= 0 and reps:
                a.svc_place[i][k, lvl] = a.svc_place[i].get((k, lvl), 0) + reps

    for e in plan_entries(plan, "racks", racks, "rack", errs):
        k = racks[e["id"]]
        modes = e.get("miners")
        if modes is None:
            continue
        if p.rack_kind[k] != MINER:
            errs.append(f"plan.racks[{e['id']}].miners: rack '{e['id']}' holds GPUs, not miners")
            continue
        if not isinstance(modes, dict):
            errs.append(f"plan.racks[{e['id']}].miners: must be an object {{mode: count}}")
            continue
        names = p.miner_mode_names[p.rack_model[k]]
        for mode, cnt in modes.items():
            if mode not in names:
                errs.append(f"plan.racks[{e['id']}].miners.{mode}: unknown mode "
                            f"(known: {', '.join(names)})")
            elif not is_count(cnt):
                errs.append(f"plan.racks[{e['id']}].miners.{mode}: must be a count (got {cnt!r})")
            else:
                a.miners[k, names.index(mode)] = cnt
    if errs:
        raise ScenarioError(errs)
    return a
