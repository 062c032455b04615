"""The daemon's inputs as pure data: signal and workload validation, the folded signal state, and
the scenario built from base scenario + live workloads + latest signals.

Every function here is pure; errors are `InputError` with one `field: reason` line per problem.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..model.load import ScenarioError, format_validation_error, parse_scenario
from ..model.scenario import InferenceService, Scenario, TrainingJob

KINDS = ("training", "inference")
KIND_MODELS = {"training": TrainingJob, "inference": InferenceService}

Float = Annotated[float, Field(strict=True, allow_inf_nan=False)]
NonNeg = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0)]


class InputError(ValueError):
    """A request that cannot be used; `problems` holds `field: reason` lines; `status` the HTTP code."""

    def __init__(self, problems: list[str], status: int = 422):
        self.problems = list(problems)
        self.status = status
        super().__init__("; ".join(self.problems))


class Signal(BaseModel):
    """One signal post: any subset of the live inputs. Site fields need `site` unless there is one site."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    site: Optional[Annotated[str, Field(strict=True, min_length=1)]] = None
    grid_limit_kw: Optional[NonNeg] = None
    energy_price_usd_per_mwh: Optional[Float] = None
    ambient_c: Optional[Float] = None
    hashprice_usd_per_ph_day: Optional[NonNeg] = None
    demand_rps: Optional[dict[Annotated[str, Field(strict=True, min_length=1)], NonNeg]] = None
    until_s: Optional[Float] = None   # with grid_limit_kw: a demand-response event ending at this Unix time


SITE_FIELDS = ("grid_limit_kw", "energy_price_usd_per_mwh", "ambient_c")


@dataclass(frozen=True)
class SignalState:
    """The latest value of every signal ever posted (absent = as in the base scenario).

    A site's grid limit is either standing (`grid_limit_kw`) or a demand-response event
    (`dr_event`: {grid_limit_kw, until_s}) that overrides it until `until_s`, after which the
    standing limit (or the scenario's) applies again.
    """

    sites: dict = field(default_factory=dict)     # site id -> {field: value, "dr_event": {...}}
    hashprice_usd_per_ph_day: Optional[float] = None
    demand_rps: dict = field(default_factory=dict)  # service id -> rps

    def as_dict(self) -> dict:
        return {"sites": self.sites, "hashprice_usd_per_ph_day": self.hashprice_usd_per_ph_day,
                "demand_rps": self.demand_rps}

    def active_events(self, now_s: float) -> tuple:
        return tuple(sorted(site for site, v in self.sites.items()
                            if "dr_event" in v and now_s < v["dr_event"]["until_s"]))

    def next_change_s(self, now_s: float) -> Optional[float]:
        """When the next active demand-response event ends (None if none is active)."""
        ends = [v["dr_event"]["until_s"] for v in self.sites.values()
                if "dr_event" in v and now_s < v["dr_event"]["until_s"]]
        return min(ends) if ends else None

    def effective(self, now_s: float) -> "SignalState":
        """The plain overrides in force at `now_s` (events resolved, ended ones dropped)."""
        if not any("dr_event" in v for v in self.sites.values()):
            return self
        sites = {}
        for site, v in self.sites.items():
            plain = {k: x for k, x in v.items() if k != "dr_event"}
            ev = v.get("dr_event")
            if ev is not None and now_s < ev["until_s"]:
                plain["grid_limit_kw"] = ev["grid_limit_kw"]
            if plain:
                sites[site] = plain
        return SignalState(sites, self.hashprice_usd_per_ph_day, self.demand_rps)


def fold_signal(state: SignalState, body: dict) -> SignalState:
    """Apply one already-normalised signal (see `normalise_signal`)."""
    sites = {k: dict(v) for k, v in state.sites.items()}
    site = body.get("site")
    for f in SITE_FIELDS:
        if body.get(f) is None:
            continue
        entry = sites.setdefault(site, {})
        if f == "grid_limit_kw" and body.get("until_s") is not None:
            entry["dr_event"] = {"grid_limit_kw": body[f], "until_s": body["until_s"]}
        else:
            entry[f] = body[f]
            if f == "grid_limit_kw":
                entry.pop("dr_event", None)  # a standing limit replaces any event
    hashprice = body.get("hashprice_usd_per_ph_day", state.hashprice_usd_per_ph_day)
    if hashprice is None:
        hashprice = state.hashprice_usd_per_ph_day
    demand = {**state.demand_rps, **(body.get("demand_rps") or {})}
    return SignalState(sites, hashprice, demand)


def tightens(base: dict, state: SignalState, body: dict, now_s: float) -> bool:
    """Does this (normalised) signal lower a grid limit or raise an ambient temperature (which
    derates cooling)? Such a change may make the plan in force unsafe, so it is planned at once."""
    site = body.get("site")
    if site is None:
        return False
    base_site = next(s for s in base["sites"] if s["id"] == site)
    now = {**{f: base_site[f] for f in SITE_FIELDS}, **state.effective(now_s).sites.get(site, {})}
    return (("grid_limit_kw" in body and body["grid_limit_kw"] < now["grid_limit_kw"])
            or ("ambient_c" in body and body["ambient_c"] > now["ambient_c"]))


def pydantic_problems(err: ValidationError, prefix: str = "") -> list[str]:
    lines = format_validation_error(err)
    return [f"{prefix}{line}" if prefix and not line.startswith("(scenario)") else
            line.replace("(scenario)", prefix.rstrip(".") or "body") for line in lines]


def normalise_signal(body: Any, scenario: Scenario, services: set[str], now_s: float) -> dict:
    """Validate a signal post against the site's ids; return it with `site` filled in, None dropped."""
    if not isinstance(body, dict):
        raise InputError(["body: must be a JSON object"])
    try:
        sig = Signal.model_validate(body)
    except ValidationError as err:
        raise InputError(pydantic_problems(err)) from None
    data = sig.model_dump(exclude_none=True)
    if "until_s" in data and "grid_limit_kw" not in data:
        raise InputError(["until_s: only with grid_limit_kw (the end of a demand-response event)"])
    if "until_s" in data and data["until_s"] <= now_s:
        raise InputError([f"until_s: must be in the future (got {data['until_s']:.3f}, now {now_s:.3f})"])
    if len(data) == (1 if "site" in data else 0):
        raise InputError(["body: no signal given (expected one of " + ", ".join(
            (*SITE_FIELDS, "hashprice_usd_per_ph_day", "demand_rps")) + ")"])
    site_ids = [s.id for s in scenario.sites]
    problems = []
    if "site" in data and data["site"] not in site_ids:
        problems.append(f"site: unknown site '{data['site']}' (known: {', '.join(site_ids)})")
    if any(f in data for f in SITE_FIELDS) and "site" not in data:
        if len(site_ids) == 1:
            data["site"] = site_ids[0]
        else:
            problems.append("site: required for grid_limit_kw, energy_price_usd_per_mwh and ambient_c "
                            "when the scenario has several sites")
    for svc in data.get("demand_rps", {}):
        if svc not in services:
            problems.append(f"demand_rps.{svc}: unknown inference service '{svc}'")
    if problems:
        raise InputError(problems)
    return data


def workload_id(kind: str, body: Any) -> str:
    if kind not in KINDS:
        raise InputError([f"kind: unknown workload kind '{kind}' (known: training, inference)"], 404)
    if not isinstance(body, dict):
        raise InputError(["body: must be a JSON object"])
    try:
        return KIND_MODELS[kind].model_validate(body).id
    except ValidationError as err:
        raise InputError(pydantic_problems(err)) from None


_ITEM_PATH = re.compile(r"^(training|inference)\[(\d+)\]\.?")


def scenario_problems_for_item(problems: list[str], kind: str, index: int) -> list[str]:
    """Map `training[7].running.G001: ...` to `running.G001: ...` for the item being submitted."""
    out = []
    for line in problems:
        m = _ITEM_PATH.match(line)
        if m and m.group(1) == kind and int(m.group(2)) == index:
            rest = line[m.end():]
            out.append(rest if not rest.startswith(":") else "body" + rest)
        else:
            out.append(line)
    return out


def build_scenario_dict(base: dict, workloads: dict, signals: SignalState) -> dict:
    """Base scenario (periods dropped) with the live workloads and the latest signals applied."""
    data = {k: v for k, v in base.items() if k not in ("periods", "training", "inference")}
    if signals.hashprice_usd_per_ph_day is not None:
        data["hashprice_usd_per_ph_day"] = signals.hashprice_usd_per_ph_day
    sites = []
    for s in base["sites"]:
        over = signals.sites.get(s["id"])
        sites.append({**s, **over} if over else s)
    data["sites"] = sites
    data["training"] = list(workloads["training"].values())
    inference = []
    for svc in workloads["inference"].values():
        if svc["id"] in signals.demand_rps:
            svc = {**svc, "demand_rps": signals.demand_rps[svc["id"]]}
        inference.append(svc)
    data["inference"] = inference
    return data


def inputs_hash(data: dict) -> str:
    """sha256 of the canonical JSON of the planned inputs (before `running` is carried over)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def validate_candidate(base: dict, workloads: dict, signals: SignalState, kind: Optional[str] = None,
                       index: int = -1) -> Scenario:
    """Parse the scenario the inputs would make; map problems of a new item to its own fields."""
    try:
        return parse_scenario(build_scenario_dict(base, workloads, signals))
    except ScenarioError as err:
        problems = err.problems
        if kind is not None:
            problems = scenario_problems_for_item(problems, kind, index)
        raise InputError(problems) from None


def scenario_base_dict(scenario: Scenario) -> dict:
    """A validated scenario as plain data (None fields dropped, so it parses back identically)."""
    return scenario.model_dump(mode="json", exclude_none=True)
