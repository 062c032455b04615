"""`--from PREVIOUS_PLAN.json`: the previous plan is where things run now. This module turns a
scenario plus a previous plan into the scenario whose training and inference `running` fields
are that plan's placements, so move costs are counted against it (by every solver and by
`wattsched verify ... --from`)."""
from __future__ import annotations

from typing import Any

from .checks import check_scenario
from .load import ScenarioError
from .scenario import Scenario


def is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def plan_entries(plan: dict, key: str, known, what: str, errs: list[str]):
    """The entries of the plan list `key` that are objects with a string id in `known` (the
    previous plan's readers: here and `scheduler.plan_io`); each other entry is an error line."""
    items = plan.get(key, [])
    if not isinstance(items, list):
        errs.append(f"plan.{key}: must be a list")
        return
    for n, e in enumerate(items):
        if not isinstance(e, dict) or not isinstance(e.get("id"), str):
            errs.append(f"plan.{key}[{n}]: must be an object with a string 'id'")
        elif e["id"] not in known:
            errs.append(f"plan.{key}[{n}].id: unknown {what} '{e['id']}'")
        else:
            yield e


def with_running_from_plan(scenario: Scenario, plan: Any, keep_unlisted: bool = False) -> Scenario:
    """A copy of `scenario` with `running` replaced by the previous plan's placements: a
    scheduled job runs on its placement, an unscheduled (or absent) one runs nowhere; a service
    runs its replicas per rack summed over cap levels. With `keep_unlisted`, a workload the plan
    does not list (e.g. submitted since) keeps the `running` it has. Raises ScenarioError with
    one `plan.<path>: reason` line per problem."""
    if not isinstance(plan, dict):
        raise ScenarioError(["plan: must be a JSON object"])
    errs: list[str] = []
    racks = {r.id: (s, r) for s in scenario.sites for r in s.racks}
    jobs = {j.id: j for j in scenario.training}
    svcs = {s.id: s for s in scenario.inference}

    def gpu_rack(rid: Any, path: str) -> bool:
        if not isinstance(rid, str) or rid not in racks:
            errs.append(f"{path}: unknown rack {rid!r}")
            return False
        if racks[rid][1].gpus is None:
            errs.append(f"{path}: rack '{rid}' holds miners, not GPUs")
            return False
        return True

    job_running: dict[str, dict[str, int]] = {}
    for e in plan_entries(plan, "training", jobs, "training job", errs):
        if not e.get("scheduled"):
            continue
        place = e.get("placement")
        path = f"plan.training[{e['id']}].placement"
        if not isinstance(place, dict):
            errs.append(f"{path}: must be an object {{rack: gpus}}")
            continue
        out = {}
        for rid, cnt in place.items():
            if not gpu_rack(rid, path):
                continue
            if not is_count(cnt):
                errs.append(f"{path}.{rid}: must be a GPU count (got {cnt!r})")
            elif cnt:
                out[rid] = cnt
        job_running[e["id"]] = out

    svc_running: dict[str, dict[str, int]] = {}
    for e in plan_entries(plan, "inference", svcs, "inference service", errs):
        place = e.get("placement", [])
        path = f"plan.inference[{e['id']}].placement"
        if not isinstance(place, list):
            errs.append(f"{path}: must be a list of {{rack, replicas, cap_w}}")
            continue
        out = {}
        for m, item in enumerate(place):
            if not isinstance(item, dict):
                errs.append(f"{path}[{m}]: must be an object {{rack, replicas, cap_w}}")
                continue
            rid, reps = item.get("rack"), item.get("replicas")
            if not gpu_rack(rid, f"{path}[{m}].rack"):
                continue
            if not is_count(reps):
                errs.append(f"{path}[{m}].replicas: must be a count (got {reps!r})")
            elif reps:
                out[rid] = out.get(rid, 0) + reps
        svc_running[e["id"]] = out
    if errs:
        raise ScenarioError(errs)

    def placed(w, listed: dict):
        if keep_unlisted and w.id not in listed:
            return w
        return w.model_copy(update={"running": listed.get(w.id) or None})
    new_training = [placed(j, job_running) for j in scenario.training]
    new_inference = [placed(s, svc_running) for s in scenario.inference]
    out = scenario.model_copy(update={"training": new_training, "inference": new_inference})
    problems = check_scenario(out)
    if problems:  # the previous plan does not fit this scenario (e.g. a job's size changed)
        raise ScenarioError([f"plan (as running): {p}" for p in problems])
    return out
