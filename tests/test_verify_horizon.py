"""`scheduler.verify` on horizon plans (SPEC section 6): a 3-period plan worked out by hand passes,
and broken ramps, lateness, work, moves and timing are each named exactly."""
from __future__ import annotations

import copy
import json
import random

from scheduler.assignment import Assignment, to_plan
from scheduler.model import parse_scenario
from scheduler.problem import compile_problem
from scheduler.verify import verify_plan


def scenario_dict(**job) -> dict:
    ft = {"id": "ft", "gpus": 32, "value_per_gpu_h": {"H100": 2.0}, "remaining_gpu_h": 48, "deadline_h": 1.5,
          "late_penalty_usd_per_h": 100, "running": {"G001": 32}, "move_cost_usd": 50}
    ft.update(job)
    ft = {k: v for k, v in ft.items() if v is not None}
    rack = {"feed": "F1", "loop": "dlc1", "limit_kw": 85, "idle_kw": 0, "domain": "pod1",
            "gpus": {"model": "H100", "count": 32}}
    return {
        "version": 1, "name": "h3",
        "gpu_models": {"H100": {"idle_w": 90, "host_w": 560, "cap_levels": [
            {"cap_w": 350, "perf": 0.62}, {"cap_w": 700, "perf": 1.0}]}},
        "sites": [{"id": "wa", "grid_limit_kw": 500, "energy_price_usd_per_mwh": 40, "ambient_c": 20,
                   "max_ramp_kw_per_h": 30,
                   "feeds": [{"id": "F1", "limit_kw": 400}],
                   "loops": [{"id": "dlc1", "kind": "liquid", "capacity_kw": 400, "design_ambient_c": 35,
                              "derate_per_c": 0.01, "kw_per_kw_heat": 0.0}],
                   "racks": [{"id": "G001", **rack}, {"id": "G002", **rack}]}],
        "training": [ft],
        "inference": [{"id": "chat", "gpus_per_replica": 1, "replica_rps": {"H100": 40.0}, "demand_rps": 400,
                       "value_per_1k": 0.5, "running": {"G002": 10}, "move_cost_usd": 1}],
        "periods": [{"hours": 1}, {"hours": 1},
                    {"hours": 2, "energy_price_usd_per_mwh": {"wa": 50}, "demand_rps": {"chat": 200}}],
    }


def build(sc_data: dict, ft_on: list[bool], chat: list[int], objectives: list[float], total: float,
          training: list[dict], moved: list[bool]) -> dict:
    """A horizon plan whose period bodies (racks, sites, ... at 700 W) come from `to_plan`; the
    period-linking numbers (objectives, moved flags, work) are given by hand."""
    sc = parse_scenario(sc_data)
    periods, start = [], 0.0
    for p, per in enumerate(sc.periods):
        prob = compile_problem(sc, p)
        a = Assignment.empty(prob)
        if ft_on[p]:
            a.job_level[0] = 1
            a.job_place[0] = {0: 32}
        a.svc_place[0] = {(1, 1): chat[p]}
        body = json.loads(json.dumps(to_plan(prob, a, {"method": "test", "status": "feasible"})))
        for key in ("scenario", "solver", "interval_h"):
            body.pop(key)
        body["training"][0]["moved"] = moved[p]
        body.update(start_h=start, hours=per.hours, objective_usd=objectives[p])
        periods.append(body)
        start += per.hours
    return {"scenario": "h3", "solver": {"method": "test", "status": "feasible"}, "objective_usd": total,
            "periods": periods, "training": training}


def good_plan(sc_data: dict | None = None) -> dict:
    """ft runs on G001 at 700 W in periods 0 and 1, chat keeps 10 replicas on G002, then 5.

    p0 (1 h): G001 32*(0.7+0.56) = 40.32 kW; G002 10*1.26 + 22*0.09 = 14.58 kW; site 54.9 kW
        ft does 32 GPU-h of its 48 (f = 1); rate 32*2.0 + 3.6*400*0.5 - 54.9/1000*40 = 781.804
    p1 (1 h): the same power; ft has 16 GPU-h left of 32: f = 0.5, done at 1 + 0.5 = 1.5 h = deadline
        rate 0.5*64 + 720 - 2.196 = 749.804
    p2 (2 h, 50 USD/MWh, chat demand 200): ft done and stopped (free); chat 5 replicas (5 moves, 5 USD)
        G001 32*0.09 = 2.88 kW; G002 5*1.26 + 27*0.09 = 8.73 kW; site 11.61 kW (ramp 43.29 <= 30*2)
        objective 2*(3.6*200*0.5 - 11.61/1000*50) - 5 = 713.839
    total 781.804 + 749.804 + 713.839 = 2245.447, no lateness
    """
    return build(sc_data or scenario_dict(), ft_on=[True, True, False], chat=[10, 10, 5],
                 objectives=[781.804, 749.804, 713.839], total=2245.447,
                 training=[{"id": "ft", "work_done_gpu_h": 48.0, "completed_h": 1.5, "late_h": 0.0}],
                 moved=[False, False, False])


def check(sc_data: dict, plan: dict) -> list[str]:
    return verify_plan(parse_scenario(sc_data), plan)


def test_correct_three_period_plan():
    assert check(scenario_dict(), good_plan()) == []


def test_required_job_need_not_run_once_done():
    sc = scenario_dict(required=True)
    assert check(sc, good_plan(sc)) == []


def test_ramp_exceeded():
    sc = scenario_dict()
    sc["sites"][0]["max_ramp_kw_per_h"] = 20
    assert check(sc, good_plan(sc)) == [
        "ramp[wa@p2]: site_kw moves 43.290 kW from period 1, more than 40 kW (max_ramp_kw_per_h 20 × 2 h)"]


def test_lateness_misreported():
    sc = scenario_dict(deadline_h=1.2)   # done at 1.5 h: 0.3 h late, 30 USD
    assert check(sc, good_plan(sc)) == ["training[ft].late_h: reported 0.000000, recomputed 0.300000",
                                        "objective_usd: reported 2245.447000, recomputed 2215.447000"]
    plan = good_plan(sc)
    plan["training"][0]["late_h"] = 0.3
    plan["objective_usd"] = 2215.447
    assert check(sc, plan) == []


def test_completion_time_misreported():
    plan = good_plan()
    plan["training"][0]["completed_h"] = None
    assert check(scenario_dict(), plan) == ["training[ft].completed_h: reported null, recomputed 1.500000"]


def test_work_over_delivered():
    plan = good_plan()
    plan["training"][0]["work_done_gpu_h"] = 64.0
    assert check(scenario_dict(), plan) == ["training[ft].work_done_gpu_h: reported 64.000000, recomputed 48.000000"]


def test_scheduling_a_finished_job():
    # p2 keeps ft on G001 (not moved): G001 40.32 + G002 8.73 = 49.05 kW (ramp 5.85 kW),
    # no revenue for ft: 2*(360 - 49.05/1000*50) - 5 = 710.095
    plan = build(scenario_dict(), ft_on=[True, True, True], chat=[10, 10, 5],
                 objectives=[781.804, 749.804, 710.095], total=2241.703,
                 training=[{"id": "ft", "work_done_gpu_h": 48.0, "completed_h": 1.5, "late_h": 0.0}],
                 moved=[False, False, False])
    assert check(scenario_dict(), plan) == [
        "periods[2].training[ft].scheduled: the job has no work left (done at 1.5 h)"]


def test_move_costs_between_periods():
    plan = good_plan()
    plan["periods"][2]["objective_usd"] = 718.839     # forgot chat's 5 replica moves
    plan["objective_usd"] = 2250.447
    assert check(scenario_dict(), plan) == ["periods[2].objective_usd: reported 718.839000, recomputed 713.839000",
                                            "objective_usd: reported 2250.447000, recomputed 2245.447000"]
    plan = good_plan()
    plan["periods"][2]["training"][0]["moved"] = True   # done and stopped: free
    assert check(scenario_dict(), plan) == ["periods[2].training[ft].moved: reported true, recomputed false"]


def test_stop_and_restart():
    """ft stops in p1 (50 USD, it was running) and restarts in p2 (free: nothing ran in p1).

    p1: G001 2.88 + G002 14.58 = 17.46 kW; 720 - 0.6984 - 50 = 669.3016
    p2: 16 GPU-h left of 64: f = 0.25, done at 2 + 0.25*2 = 2.5 h, 1 h late (100 USD)
        G001 40.32 + G002 8.73 = 49.05 kW; 2*(0.25*64 + 360 - 2.4525) - 5 = 742.095
    total 781.804 + 669.3016 + 742.095 - 100 = 2093.2006
    """
    sc = scenario_dict()
    del sc["sites"][0]["max_ramp_kw_per_h"]
    plan = build(sc, ft_on=[True, False, True], chat=[10, 10, 5],
                 objectives=[781.804, 669.3016, 742.095], total=2093.2006,
                 training=[{"id": "ft", "work_done_gpu_h": 48.0, "completed_h": 2.5, "late_h": 1.0}],
                 moved=[False, True, False])
    assert check(sc, plan) == []
    plan["periods"][1]["training"][0]["moved"] = False
    assert check(sc, plan) == ["periods[1].training[ft].moved: reported false, recomputed true"]


def test_job_without_remaining_work_earns_every_period():
    # no work accounting: p1 earns the full 64; stopping ft in p2 costs 50
    sc = scenario_dict(remaining_gpu_h=None, deadline_h=None)
    plan = build(sc, ft_on=[True, True, False], chat=[10, 10, 5],
                 objectives=[781.804, 781.804, 663.839], total=2227.447, training=[],
                 moved=[False, False, True])
    assert check(sc, plan) == []


def test_period_overrides_apply():
    sc = scenario_dict()
    sc["periods"][0]["grid_limit_kw"] = {"wa": 50}
    assert check(sc, good_plan(sc)) == ["site_power[wa@p0]: 54.900 kW exceeds grid_limit_kw 50"]
    plan = good_plan(sc)
    plan["periods"][0]["sites"][0]["grid_limit_kw"] = 500
    assert "periods[0].sites[wa].grid_limit_kw: reported 500.000000, recomputed 50.000000" in check(sc, plan)


def test_timing():
    plan = good_plan()
    plan["periods"][2]["start_h"] = 1.5
    assert check(scenario_dict(), plan) == ["periods[2].start_h: reported 1.500000, recomputed 2.000000"]
    plan = good_plan()
    plan["periods"].pop()
    assert check(scenario_dict(), plan) == ["periods: the plan has 2 periods, the scenario 3"]


def test_malformed_horizon_plans():
    plan = good_plan()
    del plan["periods"][1]["start_h"]
    del plan["training"]
    assert check(scenario_dict(), plan) == ["training: missing"]
    plan = good_plan()
    del plan["periods"][1]["start_h"]
    del plan["periods"][2]["racks"]
    assert check(scenario_dict(), plan) == ["periods[1].start_h: missing", "periods[2].racks: missing"]
    plan = good_plan()
    plan["periods"][0]["training"][0]["cap_w"] = 500
    assert check(scenario_dict(), plan) == [
        "periods[0].training[ft].cap_w: 500 W is not a cap level of GPU model 'H100' (350, 700)"]
    plan = good_plan()
    plan["training"].append({"id": "nope"})
    del plan["training"][0]
    assert check(scenario_dict(), plan) == ["training[nope]: unknown training job", "training[ft]: missing from the plan"]


def test_horizon_plan_for_a_scenario_without_periods():
    sc = scenario_dict()
    del sc["periods"]
    assert check(sc, good_plan()) == ["periods: the plan has periods but the scenario has none"]


def test_mangled_horizon_plans_give_lines_not_tracebacks():
    junk = [None, "x", -1, 1.5, [], {}, True, float("nan"), 10**9, [1], {"a": 1}, 0, "G001"]
    sc, rng = parse_scenario(scenario_dict()), random.Random(11)
    base = good_plan()
    for _ in range(300):
        plan = copy.deepcopy(base)
        places, stack = [], [plan]
        while stack:
            obj = stack.pop()
            for k, v in (obj.items() if isinstance(obj, dict) else enumerate(obj)):
                places.append((obj, k))
                if isinstance(v, (dict, list)):
                    stack.append(v)
        parent, key = rng.choice(places)
        if rng.random() < 0.3:
            parent.pop(key)
        else:
            parent[key] = copy.deepcopy(rng.choice(junk))
        out = verify_plan(sc, plan)
        assert all(isinstance(line, str) and "\n" not in line for line in out)
