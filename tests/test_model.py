"""Scenario validation (SPEC sections 1 and 6): every rule gives exactly the expected one-line
`path: reason` problems, several problems are all reported in document order, and files that are
missing, empty, not YAML or not a mapping give one named line instead of a traceback."""
from __future__ import annotations

import copy
import json
import math
import re

import pytest
import yaml

from scheduler.model import Scenario, ScenarioError, load_scenario, parse_scenario, parse_text


def scenario_dict() -> dict:
    """The SPEC section 1 example, completed so that it is valid: two sites (rack ids are unique
    across sites, feed and loop ids only within one), a training domain per site, an inference
    rack without domain, an L40S rack, a running job and a running service."""
    return {
        "version": 1,
        "interval_h": 1.0,
        "hashprice_usd_per_ph_day": 48.0,
        "gpu_models": {
            "H100-SXM": {"idle_w": 90, "host_w": 560, "cap_levels": [
                {"cap_w": 350, "perf": 0.62}, {"cap_w": 500, "perf": 0.86},
                {"cap_w": 600, "perf": 0.95}, {"cap_w": 700, "perf": 1.0}]},
            "L40S": {"idle_w": 35, "host_w": 200, "cap_levels": [
                {"cap_w": 200, "perf": 0.66}, {"cap_w": 350, "perf": 1.0}]},
        },
        "miner_models": {"S21": {"modes": {"eco": {"th_s": 170, "kw": 2.8},
                                           "normal": {"th_s": 200, "kw": 3.5}}}},
        "sites": [
            {"id": "wa", "grid_limit_kw": 18000, "energy_price_usd_per_mwh": 38, "ambient_c": 21,
             "base_kw": 150,
             "feeds": [{"id": "F1", "limit_kw": 9500}, {"id": "F2", "limit_kw": 9500}],
             "loops": [
                 {"id": "air1", "kind": "air", "capacity_kw": 7000, "design_ambient_c": 30,
                  "derate_per_c": 0.02, "kw_per_kw_heat": 0.06},
                 {"id": "dlc1", "kind": "liquid", "capacity_kw": 6000, "design_ambient_c": 35,
                  "derate_per_c": 0.01, "kw_per_kw_heat": 0.10}],
             "racks": [
                 {"id": "A001", "feed": "F1", "loop": "air1", "limit_kw": 42, "idle_kw": 0.2,
                  "miners": {"model": "S21", "count": 12}},
                 {"id": "G001", "feed": "F2", "loop": "dlc1", "limit_kw": 85, "idle_kw": 1.5,
                  "domain": "pod1", "gpus": {"model": "H100-SXM", "count": 32}},
                 {"id": "G002", "feed": "F2", "loop": "dlc1", "limit_kw": 85, "idle_kw": 1.5,
                  "domain": "pod1", "gpus": {"model": "H100-SXM", "count": 32}},
                 {"id": "G003", "feed": "F2", "loop": "dlc1", "limit_kw": 85, "idle_kw": 1.5,
                  "gpus": {"model": "H100-SXM", "count": 32}},
                 {"id": "L001", "feed": "F1", "loop": "air1", "limit_kw": 12, "idle_kw": 0.4,
                  "gpus": {"model": "L40S", "count": 16}},
             ]},
            {"id": "tx", "grid_limit_kw": 5000, "energy_price_usd_per_mwh": 25, "ambient_c": 30,
             "feeds": [{"id": "F1", "limit_kw": 4000}],
             "loops": [{"id": "air1", "kind": "air", "capacity_kw": 4000, "design_ambient_c": 35,
                        "derate_per_c": 0.02, "kw_per_kw_heat": 0.07}],
             "racks": [
                 {"id": "B001", "feed": "F1", "loop": "air1", "limit_kw": 42,
                  "miners": {"model": "S21", "count": 12}},
                 {"id": "H001", "feed": "F1", "loop": "air1", "limit_kw": 85, "domain": "pod2",
                  "gpus": {"model": "H100-SXM", "count": 32}},
             ]},
        ],
        "training": [
            {"id": "llm-70b-ft", "gpus": 64, "value_per_gpu_h": {"H100-SXM": 2.40}, "min_cap_w": 500,
             "required": False, "sites": ["wa"], "running": {"G001": 32, "G002": 32},
             "move_cost_usd": 180},
            {"id": "eval", "gpus": 32, "value_per_gpu_h": {"H100-SXM": 2.0}},
        ],
        "inference": [
            {"id": "chat", "gpus_per_replica": 1, "replica_rps": {"H100-SXM": 40.0, "L40S": 15.0},
             "demand_rps": 900, "value_per_1k": 0.40, "unserved_penalty_per_1k": 2.0,
             "min_cap_w": 200, "sites": ["wa"], "running": {"G003": 10, "L001": 4}, "move_cost_usd": 2},
        ],
    }


# -- small editing helpers: a path is dotted, list indexes are numbers ("sites.0.racks.1") --

def _parts(path: str) -> list:
    return [int(p) if p.isdigit() else p for p in path.split(".")]


def _at(d, path: str):
    for p in _parts(path):
        d = d[p]
    return d


def put(path: str, value):
    def edit(d):
        *head, last = _parts(path)
        node = d
        for p in head:
            node = node[p]
        node[last] = value
    return edit


def drop(path: str):
    def edit(d):
        *head, last = _parts(path)
        node = d
        for p in head:
            node = node[p]
        del node[last]
    return edit


def append(path: str, value):
    return lambda d: _at(d, path).append(value)


def insert(path: str, index: int, value):
    return lambda d: _at(d, path).insert(index, value)


def problems_of(*edits) -> list[str]:
    data = scenario_dict()
    for edit in edits:
        edit(data)
    with pytest.raises(ScenarioError) as err:
        parse_scenario(data)
    return err.value.problems


def accepted(*edits) -> Scenario:
    data = scenario_dict()
    for edit in edits:
        edit(data)
    return parse_scenario(data)


ONE_LINE = re.compile(r"^\S+: \S.*$")

# (test id, edits, exactly the problems expected)
CASES = [
    # -- unknown keys, at every depth --
    ("unknown-key-top", [put("colour", "red")], ["colour: unknown key"]),
    ("unknown-key-rack", [put("sites.0.racks.0.feeed", "F1")], ["sites[0].racks[0].feeed: unknown key"]),
    ("unknown-key-cap-level", [put("gpu_models.L40S.cap_levels.0.watts", 1)],
     ["gpu_models.L40S.cap_levels[0].watts: unknown key"]),
    ("unknown-key-training", [put("training.1.priority", 3)], ["training[1].priority: unknown key"]),
    ("unknown-key-gpus", [put("sites.0.racks.1.gpus.nvlink", True)],
     ["sites[0].racks[1].gpus.nvlink: unknown key"]),
    ("unknown-key-period", [put("periods", [{"hours": 1, "price": 3}])], ["periods[0].price: unknown key"]),
    # -- missing required fields --
    ("missing-version", [drop("version")], ["version: required field is missing"]),
    ("missing-sites", [drop("sites")], ["sites: required field is missing"]),
    ("missing-grid", [drop("sites.0.grid_limit_kw")], ["sites[0].grid_limit_kw: required field is missing"]),
    ("missing-feed", [drop("sites.0.racks.2.feed")], ["sites[0].racks[2].feed: required field is missing"]),
    ("missing-gpu-count", [drop("sites.0.racks.1.gpus.count")],
     ["sites[0].racks[1].gpus.count: required field is missing"]),
    ("missing-job-gpus", [drop("training.1.gpus")], ["training[1].gpus: required field is missing"]),
    ("missing-demand", [drop("inference.0.demand_rps")], ["inference[0].demand_rps: required field is missing"]),
    ("missing-period-hours", [put("periods", [{"grid_limit_kw": {"wa": 1}}])],
     ["periods[0].hours: required field is missing"]),
    # -- wrong types; strings never stand for numbers, numbers never for booleans or strings --
    ("string-number", [put("sites.0.grid_limit_kw", "18000")],
     ["sites[0].grid_limit_kw: input should be a valid number (got '18000')"]),
    ("bool-number", [put("sites.0.grid_limit_kw", True)],
     ["sites[0].grid_limit_kw: input should be a valid number (got True)"]),
    ("null-number", [put("sites.0.base_kw", None)],
     ["sites[0].base_kw: input should be a valid number (got None)"]),
    ("float-count", [put("sites.0.racks.0.miners.count", 12.0)],
     ["sites[0].racks[0].miners.count: input should be a valid integer (got 12.0)"]),
    ("bool-count", [put("sites.0.racks.0.miners.count", True)],
     ["sites[0].racks[0].miners.count: input should be a valid integer (got True)"]),
    ("string-count", [put("training.1.gpus", "32")],
     ["training[1].gpus: input should be a valid integer (got '32')"]),
    ("string-bool", [put("training.0.required", "yes")],
     ["training[0].required: input should be a valid boolean (got 'yes')"]),
    ("int-bool", [put("training.0.required", 1)],
     ["training[0].required: input should be a valid boolean (got 1)"]),
    ("number-id", [put("sites.0.racks.0.id", 1001)],
     ["sites[0].racks[0].id: input should be a valid string (got the number 1001; put it in quotes)"]),
    ("number-key", [put("training.1.running", {1: 32})],
     ["training[1].running.1: key should be a valid string (got the number 1; put it in quotes)"]),
    ("empty-id", [put("sites.0.id", "")], ["sites[0].id: must not be empty"]),
    ("loop-kind", [put("sites.0.loops.0.kind", "water")],
     ["sites[0].loops[0].kind: input should be 'air' or 'liquid' (got 'water')"]),
    ("sites-not-list", [put("training.0.sites", "wa")],
     ["training[0].sites: input should be a list (got a string)"]),
    ("running-not-mapping", [put("training.0.running", ["G001", "G002"])],
     ["training[0].running: input should be a mapping of keys to values (got a list)"]),
    ("miners-not-mapping", [put("sites.0.racks.0.miners", 12)],
     ["sites[0].racks[0].miners: input should be a mapping of keys to values (got a number)"]),
    ("rack-not-mapping", [append("sites.0.racks", "G009")],
     ["sites[0].racks[5]: input should be a mapping of keys to values (got a string)"]),
    ("long-input-shortened", [put("sites.0.grid_limit_kw", "x" * 300)],
     ["sites[0].grid_limit_kw: input should be a valid number (got '" + "x" * 56 + "...)"]),
    # -- empty lists and mappings that need an entry --
    ("no-sites", [put("sites", [])], ["sites: must have at least 1 entry (got none)"]),
    ("no-feeds", [put("sites.1.feeds", [])], ["sites[1].feeds: must have at least 1 entry (got none)"]),
    ("no-cap-levels", [put("gpu_models.L40S.cap_levels", [])],
     ["gpu_models.L40S.cap_levels: must have at least 1 entry (got none)"]),
    ("no-modes", [put("miner_models.S21.modes", {})],
     ["miner_models.S21.modes: must have at least 1 entry (got none)"]),
    ("no-value-models", [put("training.1.value_per_gpu_h", {})],
     ["training[1].value_per_gpu_h: must have at least 1 entry (got none)"]),
    ("no-allowed-sites", [put("training.0.sites", [])], ["training[0].sites: must have at least 1 entry (got none)"]),
    ("no-periods", [put("periods", [])], ["periods: must have at least 1 entry (got none)"]),
    # -- numbers are finite --
    ("nan", [put("sites.0.ambient_c", math.nan)], ["sites[0].ambient_c: input should be a finite number (got nan)"]),
    ("inf", [put("sites.0.grid_limit_kw", math.inf)],
     ["sites[0].grid_limit_kw: input should be a finite number (got inf)"]),
    ("minus-inf-price", [put("sites.0.energy_price_usd_per_mwh", -math.inf)],
     ["sites[0].energy_price_usd_per_mwh: input should be a finite number (got -inf)"]),
    ("nan-perf", [put("gpu_models.L40S.cap_levels.0.perf", math.nan)],
     ["gpu_models.L40S.cap_levels[0].perf: input should be a finite number (got nan)"]),
    ("nan-period-price", [put("periods", [{"hours": 1, "energy_price_usd_per_mwh": {"wa": math.nan}}])],
     ["periods[0].energy_price_usd_per_mwh.wa: input should be a finite number (got nan)"]),
    # -- signs: capacities, limits, counts and prices are non-negative (energy price excepted) --
    ("negative-grid", [put("sites.0.grid_limit_kw", -1)],
     ["sites[0].grid_limit_kw: input should be greater than or equal to 0 (got -1)"]),
    ("negative-feed-limit", [put("sites.0.feeds.1.limit_kw", -0.5)],
     ["sites[0].feeds[1].limit_kw: input should be greater than or equal to 0 (got -0.5)"]),
    ("negative-loop-capacity", [put("sites.0.loops.0.capacity_kw", -1)],
     ["sites[0].loops[0].capacity_kw: input should be greater than or equal to 0 (got -1)"]),
    ("negative-rack-limit", [put("sites.0.racks.0.limit_kw", -1)],
     ["sites[0].racks[0].limit_kw: input should be greater than or equal to 0 (got -1)"]),
    ("negative-base", [put("sites.0.base_kw", -150)],
     ["sites[0].base_kw: input should be greater than or equal to 0 (got -150)"]),
    ("negative-idle-w", [put("gpu_models.L40S.idle_w", -35)],
     ["gpu_models.L40S.idle_w: input should be greater than or equal to 0 (got -35)"]),
    ("negative-mode-kw", [put("miner_models.S21.modes.eco.kw", -2.8)],
     ["miner_models.S21.modes.eco.kw: input should be greater than or equal to 0 (got -2.8)"]),
    ("negative-hashprice", [put("hashprice_usd_per_ph_day", -1)],
     ["hashprice_usd_per_ph_day: input should be greater than or equal to 0 (got -1)"]),
    ("negative-value-per-gpu-h", [put("training.0.value_per_gpu_h.H100-SXM", -2.4)],
     ["training[0].value_per_gpu_h.H100-SXM: input should be greater than or equal to 0 (got -2.4)"]),
    ("negative-value-per-1k", [put("inference.0.value_per_1k", -0.4)],
     ["inference[0].value_per_1k: input should be greater than or equal to 0 (got -0.4)"]),
    ("negative-penalty", [put("inference.0.unserved_penalty_per_1k", -2)],
     ["inference[0].unserved_penalty_per_1k: input should be greater than or equal to 0 (got -2)"]),
    ("negative-move-cost", [put("training.0.move_cost_usd", -180)],
     ["training[0].move_cost_usd: input should be greater than or equal to 0 (got -180)"]),
    ("zero-replica-rps", [put("inference.0.replica_rps.L40S", 0)],
     ["inference[0].replica_rps.L40S: input should be greater than 0 (got 0)"]),
    ("zero-interval", [put("interval_h", 0)], ["interval_h: input should be greater than 0 (got 0)"]),
    ("zero-job-gpus", [put("training.1.gpus", 0)],
     ["training[1].gpus: input should be greater than or equal to 1 (got 0)"]),
    ("zero-rack-gpus", [put("sites.0.racks.4.gpus.count", 0)],
     ["sites[0].racks[4].gpus.count: input should be greater than or equal to 1 (got 0)"]),
    ("zero-running-gpus", [put("training.0.running.G003", 0)],
     ["training[0].running.G003: input should be greater than or equal to 1 (got 0)"]),
    ("negative-running-replicas", [put("inference.0.running.G003", -1)],
     ["inference[0].running.G003: input should be greater than or equal to 0 (got -1)"]),
    ("perf-above-one", [put("gpu_models.L40S.cap_levels.1.perf", 1.1)],
     ["gpu_models.L40S.cap_levels[1].perf: input should be less than or equal to 1 (got 1.1)"]),
    # -- duplicate ids --
    ("duplicate-site", [put("sites.1.id", "wa")], ["sites[1].id: duplicate site id 'wa' (first at sites[0])"]),
    ("duplicate-feed", [put("sites.1.feeds", [{"id": "F1", "limit_kw": 1}, {"id": "F1", "limit_kw": 2}])],
     ["sites[1].feeds[1].id: duplicate feed id 'F1' (first at sites[1].feeds[0])"]),
    ("duplicate-loop", [append("sites.1.loops", {"id": "air1", "kind": "liquid", "capacity_kw": 1,
                                                 "design_ambient_c": 30, "derate_per_c": 0, "kw_per_kw_heat": 0})],
     ["sites[1].loops[1].id: duplicate loop id 'air1' (first at sites[1].loops[0])"]),
    ("duplicate-rack-in-site", [put("sites.1.racks.1.id", "B001")],
     ["sites[1].racks[1].id: duplicate rack id 'B001' (first at sites[1].racks[0])"]),
    ("duplicate-rack-and-its-users", [put("sites.0.racks.4.id", "A001")],   # L001 is gone, so is chat's rack
     ["sites[0].racks[4].id: duplicate rack id 'A001' (first at sites[0].racks[0])",
      "inference[0].running.L001: unknown rack 'L001'"]),
    ("duplicate-rack-across-sites", [put("sites.1.racks.0.id", "A001")],
     ["sites[1].racks[0].id: duplicate rack id 'A001' (first at sites[0].racks[0])"]),
    ("duplicate-training-job", [put("training.1.id", "llm-70b-ft")],
     ["training[1].id: duplicate training job id 'llm-70b-ft' (first at training[0])"]),
    ("duplicate-service", [append("inference", {"id": "chat", "gpus_per_replica": 2, "replica_rps": {"L40S": 9.0},
                                                "demand_rps": 1, "value_per_1k": 0.1})],
     ["inference[1].id: duplicate inference service id 'chat' (first at inference[0])"]),
    # -- dangling references --
    ("unknown-feed", [put("sites.0.racks.0.feed", "F9")], ["sites[0].racks[0].feed: unknown feed 'F9'"]),
    ("feed-of-other-site", [put("sites.1.racks.0.feed", "F2")], ["sites[1].racks[0].feed: unknown feed 'F2'"]),
    ("unknown-loop", [put("sites.1.racks.1.loop", "dlc1")], ["sites[1].racks[1].loop: unknown loop 'dlc1'"]),
    ("unknown-gpu-model", [put("sites.1.racks.1.gpus.model", "A100")],
     ["sites[1].racks[1].gpus.model: unknown GPU model 'A100'"]),
    ("unknown-miner-model", [put("sites.0.racks.0.miners.model", "S19")],
     ["sites[0].racks[0].miners.model: unknown miner model 'S19'"]),
    ("unknown-value-model", [put("training.1.value_per_gpu_h.A100", 1.0)],
     ["training[1].value_per_gpu_h: unknown GPU model 'A100'"]),
    ("unknown-rps-model", [put("inference.0.replica_rps.A100", 10.0)],
     ["inference[0].replica_rps: unknown GPU model 'A100'"]),
    ("unknown-training-site", [put("training.1.sites", ["wa", "ny"])], ["training[1].sites[1]: unknown site 'ny'"]),
    ("unknown-inference-site", [put("inference.0.sites", ["wa", "tx", "ny"])],
     ["inference[0].sites[2]: unknown site 'ny'"]),
    ("unknown-running-rack", [put("training.0.running", {"G001": 32, "G999": 32})],
     ["training[0].running.G999: unknown rack 'G999'"]),
    ("unknown-running-rack-inference", [put("inference.0.running.Z9", 1)],
     ["inference[0].running.Z9: unknown rack 'Z9'"]),
    # -- cap levels --
    ("cap-not-increasing", [insert("gpu_models.L40S.cap_levels", 1, {"cap_w": 200, "perf": 0.7})],
     ["gpu_models.L40S.cap_levels: cap_w must be strictly increasing (200 then 200)"]),
    ("cap-decreasing", [put("gpu_models.H100-SXM.cap_levels.1.cap_w", 300)],
     ["gpu_models.H100-SXM.cap_levels: cap_w must be strictly increasing (350 then 300)"]),
    ("perf-decreasing", [insert("gpu_models.L40S.cap_levels", 1, {"cap_w": 300, "perf": 0.5})],
     ["gpu_models.L40S.cap_levels: perf must be non-decreasing (0.66 then 0.5)"]),
    ("top-perf-not-one", [put("gpu_models.L40S.cap_levels.1.perf", 0.99)],
     ["gpu_models.L40S.cap_levels: the highest cap level must have perf 1.0 (got 0.99)"]),
    # -- rack kinds and domains --
    ("rack-both", [put("sites.0.racks.0.gpus", {"model": "L40S", "count": 8})],
     ["sites[0].racks[0]: a rack holds gpus or miners, not both"]),
    ("rack-neither", [drop("sites.0.racks.0.miners")],
     ["sites[0].racks[0]: a rack needs 'gpus' or 'miners' (it has neither)"]),
    ("miner-rack-domain", [put("sites.0.racks.0.domain", "pod1")],
     ["sites[0].racks[0]: a miner rack cannot belong to a domain"]),
    ("domain-mixes-models", [put("sites.0.racks.4.domain", "pod1")],
     ["sites[0].racks[4].domain: domain 'pod1' mixes GPU models 'H100-SXM' (sites[0].racks[1]) and 'L40S'"]),
    ("domain-spans-sites", [put("sites.1.racks.1.domain", "pod1")],
     ["sites[1].racks[1].domain: domain 'pod1' spans sites 'wa' and 'tx'"]),
    # -- running placements --
    ("running-short", [put("training.0.running.G002", 16)],
     ["training[0].running: placement covers 48 GPUs, the job has 64"]),
    ("running-over", [put("training.0.running.G003", 32), drop("inference.0.running.G003"),
                      put("training.0.running.G002", 16), put("training.0.running.G001", 16)],
     ["training[0].running.G003: rack 'G003' is in no domain"]),
    ("running-two-domains", [drop("training.0.sites"), put("training.0.running", {"G001": 32, "H001": 32})],
     ["training[0].running: placement spans domains 'pod1', 'pod2'; it must lie in one"]),
    ("running-no-domain-and-rack-full", [put("training.0.running", {"G001": 32, "G003": 32})],
     ["training[0].running.G003: rack 'G003' is in no domain",
      "sites[0].racks[3]: running placements use 42 GPUs ('llm-70b-ft' 32, 'chat' 10), the rack 'G003' has 32"]),
    ("running-count-over-rack", [put("training.0.running", {"G001": 40, "G002": 24})],
     ["training[0].running.G001: 40 GPUs exceed the rack's 32"]),
    ("running-total-over-rack", [put("inference.0.running.G001", 5)],
     ["sites[0].racks[1]: running placements use 37 GPUs ('llm-70b-ft' 32, 'chat' 5), the rack 'G001' has 32"]),
    ("two-jobs-share-a-rack", [put("training.1.running", {"G001": 32})],
     ["sites[0].racks[1]: running placements use 64 GPUs ('llm-70b-ft' 32, 'eval' 32), the rack 'G001' has 32"]),
    ("inference-replicas-over-rack", [put("inference.0.running.L001", 17)],
     ["inference[0].running.L001: 17 replicas need 17 GPUs, the rack has 16"]),
    ("inference-multi-gpu-replicas-over-rack", [put("inference.0.gpus_per_replica", 4),
                                                put("inference.0.running", {"L001": 5})],
     ["inference[0].running.L001: 5 replicas need 20 GPUs, the rack has 16"]),
    ("training-on-miner-rack", [put("training.1.running", {"A001": 32})],
     ["training[1].running.A001: rack 'A001' holds miners, not GPUs"]),
    ("inference-on-miner-rack", [put("inference.0.running.A001", 1)],
     ["inference[0].running.A001: rack 'A001' holds miners, not GPUs"]),
    ("running-on-disallowed-model", [put("training.1.running", {"L001": 32})],
     ["training[1].running.L001: rack 'L001' holds GPU model 'L40S', not one of 'H100-SXM'"]),
    ("running-at-disallowed-site", [put("training.0.running", {"H001": 32, "G002": 32})],
     ["training[0].running.H001: rack 'H001' is at site 'tx', not an allowed site"]),
    ("inference-running-at-disallowed-site", [put("inference.0.sites", ["tx"])],
     ["inference[0].running.G003: rack 'G003' is at site 'wa', not an allowed site",
      "inference[0].running.L001: rack 'L001' is at site 'wa', not an allowed site"]),
    # -- min_cap_w --
    ("training-min-cap-above-all", [put("training.1.min_cap_w", 701)],
     ["training[1].min_cap_w: 701 W is above the highest cap level of every allowed GPU model"]),
    ("inference-min-cap-above-all", [put("inference.0.min_cap_w", 800)],
     ["inference[0].min_cap_w: 800 W is above the highest cap level of every allowed GPU model"]),
    # -- section 6: periods and job timing --
    ("period-unknown-site-price", [put("periods", [{"hours": 1, "energy_price_usd_per_mwh": {"ny": 30}}])],
     ["periods[0].energy_price_usd_per_mwh.ny: unknown site 'ny'"]),
    ("period-unknown-site-grid", [put("periods", [{"hours": 1}, {"hours": 1, "grid_limit_kw": {"ny": 1}}])],
     ["periods[1].grid_limit_kw.ny: unknown site 'ny'"]),
    ("period-unknown-site-ambient", [put("periods", [{"hours": 1, "ambient_c": {"wa": 30, "ny": 1}}])],
     ["periods[0].ambient_c.ny: unknown site 'ny'"]),
    ("period-unknown-service", [put("periods", [{"hours": 1, "demand_rps": {"search": 1}}])],
     ["periods[0].demand_rps.search: unknown inference service 'search'"]),
    ("period-zero-hours", [put("periods", [{"hours": 0}])], ["periods[0].hours: input should be greater than 0 (got 0)"]),
    ("period-negative-grid", [put("periods", [{"hours": 1, "grid_limit_kw": {"wa": -1}}])],
     ["periods[0].grid_limit_kw.wa: input should be greater than or equal to 0 (got -1)"]),
    ("period-negative-demand", [put("periods", [{"hours": 1, "demand_rps": {"chat": -1}}])],
     ["periods[0].demand_rps.chat: input should be greater than or equal to 0 (got -1)"]),
    ("period-negative-hashprice", [put("periods", [{"hours": 1, "hashprice_usd_per_ph_day": -1}])],
     ["periods[0].hashprice_usd_per_ph_day: input should be greater than or equal to 0 (got -1)"]),
    ("negative-ramp", [put("sites.0.max_ramp_kw_per_h", -5)],
     ["sites[0].max_ramp_kw_per_h: input should be greater than or equal to 0 (got -5)"]),
    ("negative-remaining", [put("training.1.remaining_gpu_h", -5)],
     ["training[1].remaining_gpu_h: input should be greater than or equal to 0 (got -5)"]),
    ("negative-deadline", [put("training.1.remaining_gpu_h", 5), put("training.1.deadline_h", -1)],
     ["training[1].deadline_h: input should be greater than or equal to 0 (got -1)"]),
    ("negative-late-penalty", [put("training.1.late_penalty_usd_per_h", -1)],
     ["training[1].late_penalty_usd_per_h: input should be greater than or equal to 0 (got -1)"]),
    ("deadline-without-work", [put("training.1.deadline_h", 4)],
     ["training[1].deadline_h: a deadline needs remaining_gpu_h"]),
    # -- version --
    ("version-2", [put("version", 2)], ["version: unsupported scenario version 2; this wattsched reads version 1"]),
    ("version-string", [put("version", "1")],
     ["version: unsupported scenario version '1'; this wattsched reads version 1"]),
    ("version-true", [put("version", True)],
     ["version: unsupported scenario version True; this wattsched reads version 1"]),
    ("version-float", [put("version", 1.0)],
     ["version: unsupported scenario version 1.0; this wattsched reads version 1"]),
]


@pytest.mark.parametrize("edits,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_rule_gives_exactly_its_message(edits, expected):
    assert problems_of(*edits) == expected


def test_case_ids_are_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))


def test_every_problem_is_one_line_naming_a_path():
    for _, edits, _expected in CASES:
        for line in problems_of(*edits):
            assert ONE_LINE.match(line) and "\n" not in line, line


def test_the_base_scenario_is_valid_and_reads_back():
    sc = parse_scenario(scenario_dict())
    assert [s.id for s in sc.sites] == ["wa", "tx"]
    assert sc.training[0].running == {"G001": 32, "G002": 32}
    assert sc.interval_h == 1.0 and sc.training[1].required is False and sc.training[1].min_cap_w is None
    assert sc.sites[1].base_kw == 0.0 and sc.periods is None


@pytest.mark.parametrize("edits", [
    [put("sites.0.energy_price_usd_per_mwh", -12.5)],                 # prices may be negative
    [put("periods", [{"hours": 0.25, "energy_price_usd_per_mwh": {"wa": -40}}])],
    [put("sites.0.ambient_c", -20)],                                   # so may temperatures
    [put("sites.0.loops.0.design_ambient_c", -5)],
    [put("sites.0.grid_limit_kw", 0), put("sites.0.base_kw", 0)],      # zero is not negative
    [put("hashprice_usd_per_ph_day", 0)],
    [put("inference.0.running.G003", 0)],                              # zero replicas: "none here"
    [put("inference.0.demand_rps", 0)],
    [put("training.1.min_cap_w", 700)],                                # exactly the top level
    [put("inference.0.min_cap_w", 351)],                               # above L40S but not H100: allowed
    [put("training.1.remaining_gpu_h", 100), put("training.1.deadline_h", 4),
     put("training.1.late_penalty_usd_per_h", 10)],
    [put("sites.0.max_ramp_kw_per_h", 0)],
    [put("gpu_models.L40S.cap_levels", [{"cap_w": 350, "perf": 1.0}])],  # a single level
    [insert("gpu_models.L40S.cap_levels", 1, {"cap_w": 300, "perf": 0.66})],  # flat perf is fine
    [put("training.1.running", {"H001": 32})],                          # running at any site when unrestricted
    [put("sites.1.racks.1.domain", "pod1"), put("sites.1.racks.1.domain", "pod9")],
    [put("sites.0.racks.3.idle_kw", 0), drop("sites.0.racks.4.idle_kw")],
    [put("name", "wa-example")],
])
def test_allowed_edge_values_are_accepted(edits):
    accepted(*edits)


def test_negative_energy_price_is_kept():
    sc = accepted(put("sites.0.energy_price_usd_per_mwh", -12.5))
    assert sc.sites[0].energy_price_usd_per_mwh == -12.5


def test_several_structural_problems_are_all_reported_in_document_order():
    data = scenario_dict()
    data = {"colour": "red", **data}                      # first key of the document
    data["sites"][0]["grid_limit_kw"] = -1
    data["sites"][0]["racks"][0].pop("loop")
    data["sites"][0]["racks"][1]["zz"] = 1
    data["sites"][0]["racks"][2]["limit_kw"] = "x"
    data["training"][1]["gpus"] = 0
    with pytest.raises(ScenarioError) as err:
        parse_scenario(data)
    assert err.value.problems == [
        "colour: unknown key",
        "sites[0].grid_limit_kw: input should be greater than or equal to 0 (got -1)",
        "sites[0].racks[0].loop: required field is missing",
        "sites[0].racks[1].zz: unknown key",
        "sites[0].racks[2].limit_kw: input should be a valid number (got 'x')",
        "training[1].gpus: input should be greater than or equal to 1 (got 0)",
    ]
    assert str(err.value) == "\n".join(err.value.problems)


def test_document_order_follows_the_file_not_the_model():
    """Keys written in an unusual order are reported in the order they were written."""
    data = scenario_dict()
    site = data["sites"][1]
    data["sites"][1] = {"racks": site.pop("racks"), **site}
    data["sites"][1]["racks"][0]["limit_kw"] = -1
    data["sites"][1]["grid_limit_kw"] = "lots"
    assert problems_of(lambda d: d.update(sites=data["sites"])) == [
        "sites[1].racks[0].limit_kw: input should be greater than or equal to 0 (got -1)",
        "sites[1].grid_limit_kw: input should be a valid number (got 'lots')",
    ]


def test_several_reference_problems_are_all_reported():
    assert problems_of(put("sites.0.racks.0.feed", "F9"), put("sites.0.racks.1.loop", "L9"),
                       put("training.1.sites", ["ny"]), put("inference.0.replica_rps.B200", 1.0),
                       put("periods", [{"hours": 1, "demand_rps": {"search": 1}}])) == [
        "sites[0].racks[0].feed: unknown feed 'F9'",
        "sites[0].racks[1].loop: unknown loop 'L9'",
        "training[1].sites[0]: unknown site 'ny'",
        "inference[0].replica_rps: unknown GPU model 'B200'",
        "periods[0].demand_rps.search: unknown inference service 'search'",
    ]


def test_top_level_that_is_not_a_mapping():
    for value, kind in [([1, 2], "a list"), ("version: 1", "a string"), (None, "nothing (null)"), (3, "a number")]:
        with pytest.raises(ScenarioError) as err:
            parse_scenario(value)
        assert err.value.problems == [f"(scenario): the document must be a mapping of keys to values (got {kind})"]


# -- files --

def _yaml_with(tmp_path, name: str = "s.yaml", **raw) -> str:
    """The base scenario as YAML with placeholders replaced by raw YAML text."""
    data = scenario_dict()
    for key, (path, _) in raw.items():
        put(path, f"@{key}@")(data)
    text = yaml.safe_dump(data, sort_keys=False)
    for key, (_, literal) in raw.items():
        text = text.replace(f"'@{key}@'", literal)
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_yaml_file_loads_and_is_named_after_the_file(tmp_path):
    sc = load_scenario(_yaml_with(tmp_path, "pilot-site.yaml"))
    assert sc.name == "pilot-site"
    named = scenario_dict() | {"name": "wa-example"}
    (tmp_path / "x.yaml").write_text(yaml.safe_dump(named))
    assert load_scenario(tmp_path / "x.yaml").name == "wa-example"


def test_json_file_loads(tmp_path):
    p = tmp_path / "s.json"
    p.write_text(json.dumps(scenario_dict()))
    assert load_scenario(p) == load_scenario(_yaml_with(tmp_path, "s.yaml"))


@pytest.mark.parametrize("path,literal,expected", [
    ("sites.0.ambient_c", ".nan", "sites[0].ambient_c: input should be a finite number (got nan)"),
    ("sites.0.grid_limit_kw", ".inf", "sites[0].grid_limit_kw: input should be a finite number (got inf)"),
    ("sites.0.energy_price_usd_per_mwh", "-.inf",
     "sites[0].energy_price_usd_per_mwh: input should be a finite number (got -inf)"),
    ("training.0.value_per_gpu_h.H100-SXM", ".NaN",
     "training[0].value_per_gpu_h.H100-SXM: input should be a finite number (got nan)"),
    ("sites.0.racks.0.id", "1001",
     "sites[0].racks[0].id: input should be a valid string (got the number 1001; put it in quotes)"),
    ("training.0.required", "'true'", "training[0].required: input should be a valid boolean (got 'true')"),
    ("sites.0.grid_limit_kw", "'18000'", "sites[0].grid_limit_kw: input should be a valid number (got '18000')"),
])
def test_yaml_values(tmp_path, path, literal, expected):
    with pytest.raises(ScenarioError) as err:
        load_scenario(_yaml_with(tmp_path, v=(path, literal)))
    assert err.value.problems == [expected]


def test_yaml_syntax_error_names_line_and_column(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("version: 1\nsites:\n  - {id: wa, grid_limit_kw: 5\n")
    with pytest.raises(ScenarioError) as err:
        load_scenario(p)
    assert err.value.problems == [f"{p}: not valid YAML or JSON at line 4, column 1: "
                                  f"expected ',' or '}}', but got '<stream end>'"]
    p.write_text("version: 1\nsites: a: b\n")
    with pytest.raises(ScenarioError) as err:
        load_scenario(p)
    assert err.value.problems == [f"{p}: not valid YAML or JSON at line 2, column 9: mapping values are not allowed here"]


def test_json_syntax_error_names_line_and_column(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text('{"version": 1,\n "sites": [}')
    with pytest.raises(ScenarioError) as err:
        load_scenario(p)
    assert err.value.problems == [f"{p}: not valid YAML or JSON at line 2, column 12: "
                                  f"expected the node content, but found '}}'"]


def test_duplicate_yaml_key_is_an_error_not_silently_the_last(tmp_path):
    p = tmp_path / "dup.yaml"
    p.write_text("version: 1\nsites: []\ngpu_models:\n  H100: {idle_w: 1}\n  H100: {idle_w: 2}\n")
    with pytest.raises(ScenarioError) as err:
        load_scenario(p)
    assert err.value.problems == [f"{p}: duplicate key 'H100' at line 5, column 3 (each key may appear once)"]


def test_yaml_merge_keys_may_override():
    assert parse_text("a: &x {b: 1, c: 2}\nd:\n  <<: *x\n  b: 3\n") == {"a": {"b": 1, "c": 2}, "d": {"b": 3, "c": 2}}


def test_missing_file(tmp_path):
    with pytest.raises(ScenarioError) as err:
        load_scenario(tmp_path / "nope.yaml")
    assert err.value.problems == [f"{tmp_path / 'nope.yaml'}: no such file"]


def test_directory(tmp_path):
    with pytest.raises(ScenarioError) as err:
        load_scenario(tmp_path)
    assert err.value.problems == [f"{tmp_path}: is a directory, not a scenario file"]


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_empty_file(tmp_path, text):
    p = tmp_path / "empty.yaml"
    p.write_text(text)
    with pytest.raises(ScenarioError) as err:
        load_scenario(p)
    assert err.value.problems == [f"{p}: the file is empty; a scenario is a mapping with at least 'version' and 'sites'"]


@pytest.mark.parametrize("text,kind", [("- 1\n- 2\n", "a list"), ("just text\n", "a string"), ("42\n", "a number")])
def test_top_level_not_a_mapping_in_a_file(tmp_path, text, kind):
    p = tmp_path / "s.yaml"
    p.write_text(text)
    with pytest.raises(ScenarioError) as err:
        load_scenario(p)
    assert err.value.problems == [f"{p}: a scenario must be a mapping of keys to values (got {kind})"]


def test_binary_file(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_bytes(b"\xff\xfe\x00version")
    with pytest.raises(ScenarioError) as err:
        load_scenario(p)
    assert err.value.problems == [f"{p}: not a text file (not valid UTF-8)"]


def test_file_problems_carry_paths_inside_the_scenario(tmp_path):
    data = scenario_dict()
    data["sites"][0]["racks"][0]["feed"] = "F9"
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(ScenarioError) as err:
        load_scenario(p)
    assert err.value.problems == ["sites[0].racks[0].feed: unknown feed 'F9'"]


def test_scenario_is_frozen():
    sc = parse_scenario(scenario_dict())
    with pytest.raises(Exception):
        sc.sites[0].grid_limit_kw = 1  # type: ignore[misc]
    assert copy.deepcopy(sc) == sc
