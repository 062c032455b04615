"""`scheduler.verify` on single-interval plans: a hand-computed plan passes, and each broken
limit, misreported figure or malformed entry gives exactly one named line."""
from __future__ import annotations

import copy
import random
import json

import pytest

from scheduler.assignment import Assignment, to_plan
from scheduler.model import ScenarioError, parse_scenario
from scheduler.problem import compile_problem
from scheduler.verify import Index, compute, conditions, load_plan, read_decisions, verify_files, verify_plan


def scenario_dict() -> dict:
    return {
        "version": 1, "name": "small", "interval_h": 1.0, "hashprice_usd_per_ph_day": 48.0,
        "gpu_models": {"H100": {"idle_w": 90, "host_w": 560, "cap_levels": [
            {"cap_w": 350, "perf": 0.62}, {"cap_w": 500, "perf": 0.86},
            {"cap_w": 600, "perf": 0.95}, {"cap_w": 700, "perf": 1.0}]}},
        "miner_models": {"S21": {"modes": {"eco": {"th_s": 170, "kw": 2.8}, "normal": {"th_s": 200, "kw": 3.5}}}},
        "sites": [{
            "id": "wa", "grid_limit_kw": 300, "energy_price_usd_per_mwh": 40, "ambient_c": 21, "base_kw": 10,
            "feeds": [{"id": "F1", "limit_kw": 100}, {"id": "F2", "limit_kw": 150}],
            "loops": [{"id": "air1", "kind": "air", "capacity_kw": 80, "design_ambient_c": 30,
                       "derate_per_c": 0.02, "kw_per_kw_heat": 0.06},
                      {"id": "dlc1", "kind": "liquid", "capacity_kw": 150, "design_ambient_c": 35,
                       "derate_per_c": 0.01, "kw_per_kw_heat": 0.10}],
            "racks": [
                {"id": "A001", "feed": "F1", "loop": "air1", "limit_kw": 42, "idle_kw": 0.2,
                 "miners": {"model": "S21", "count": 12}},
                {"id": "G001", "feed": "F2", "loop": "dlc1", "limit_kw": 85, "idle_kw": 1.5, "domain": "pod1",
                 "gpus": {"model": "H100", "count": 32}},
                {"id": "G002", "feed": "F2", "loop": "dlc1", "limit_kw": 85, "idle_kw": 1.5, "domain": "pod1",
                 "gpus": {"model": "H100", "count": 32}},
                {"id": "G003", "feed": "F1", "loop": "air1", "limit_kw": 60, "idle_kw": 1.5, "domain": "pod2",
                 "gpus": {"model": "H100", "count": 32}},
            ]}],
        "training": [{"id": "llm", "gpus": 40, "value_per_gpu_h": {"H100": 2.4}, "min_cap_w": 500,
                      "running": {"G001": 32, "G002": 8}, "move_cost_usd": 180}],
        "inference": [{"id": "chat", "gpus_per_replica": 1, "replica_rps": {"H100": 40.0}, "demand_rps": 700,
                       "value_per_1k": 0.4, "unserved_penalty_per_1k": 2.0, "running": {"G003": 10},
                       "move_cost_usd": 2}],
    }


def hand_plan() -> dict:
    """Written without the solvers' code; every number worked out by hand:

    A001: 10 normal + 2 eco      0.2 + 10*3.5 + 2*2.8                 = 40.8 kW, 2340 TH/s
    G001: 32 llm GPUs at 600 W   1.5 + 32*(0.6+0.56)                  = 38.62 kW
    G002: 8 llm GPUs at 600 W    1.5 + 8*1.16 + 24*0.09               = 12.94 kW
    G003: 20 chat at 500 W       1.5 + 20*(0.5+0.56) + 12*0.09        = 23.78 kW (SPEC's example)
    F1 = A001 + G003 = 64.58; F2 = G001 + G002 = 51.56
    air1 cap 80*clamp(1 - 0.02*(21-30)) = 80; dlc1 cap 150*clamp(1 - 0.01*(21-35)) = 150
    cooling 64.58*0.06 + 51.56*0.10 = 9.0308; it 116.14; site 10 + 116.14 + 9.0308 = 135.1708
    rate  = 40*2.4*0.95 (91.2) + 3.6*688*0.4 (990.72) - 3.6*12*2.0 (86.4)
          + 2340*48/1000/24 (4.68) - 135.1708/1000*40 (5.406832) = 994.793168
    moves: llm as running (0); chat 10 -> 20 replicas on G003: 10 * 2 USD = 20
    objective = 994.793168 - 20 = 974.793168
    """
    return {
        "scenario": "small",
        "solver": {"method": "hand", "status": "feasible"},
        "objective_usd": 974.793168,
        "sites": [{"id": "wa", "site_kw": 135.1708, "it_kw": 116.14, "cooling_kw": 9.0308,
                   "grid_limit_kw": 300, "hashrate_th_s": 2340}],
        "racks": [{"id": "A001", "kw": 40.8, "miners": {"normal": 10, "eco": 2}},
                  {"id": "G001", "kw": 38.62}, {"id": "G002", "kw": 12.94, "gpus_busy": 8},
                  {"id": "G003", "kw": 23.78}],
        "loops": [{"id": "air1", "heat_kw": 64.58, "capacity_kw": 80},
                  {"id": "dlc1", "heat_kw": 51.56, "capacity_kw": 150}],
        "feeds": [{"id": "F1", "kw": 64.58, "limit_kw": 100}, {"id": "F2", "kw": 51.56, "limit_kw": 150}],
        "training": [{"id": "llm", "scheduled": True, "cap_w": 600, "placement": {"G001": 32, "G002": 8},
                      "moved": False}],
        "inference": [{"id": "chat", "served_rps": 688.0,
                       "placement": [{"rack": "G003", "replicas": 20, "cap_w": 500}]}],
    }


def solver_plan(sc_data: dict, job: dict | None = "default", chat: dict | None = None,
                miners: dict | None = None) -> dict:
    """A plan with consistent figures, written by `to_plan` for decisions given by id:
    job = {rack: gpus} at 600 W (or (placement, level index)), chat = {(rack, level): replicas}."""
    sc = parse_scenario(sc_data)
    p = compile_problem(sc)
    a = Assignment.empty(p)
    rk = {rid: k for k, rid in enumerate(p.rack_ids)}
    if job == "default":
        job = {"G001": 32, "G002": 8}
    if job is not None:
        place, level = job if isinstance(job, tuple) else (job, 2)
        a.job_level[0] = level
        a.job_place[0] = {rk[r]: n for r, n in place.items()}
    chat = {("G003", 1): 20} if chat is None else chat
    a.svc_place[0] = {(rk[r], lv): n for (r, lv), n in chat.items()}
    mm = p.miner_mode_names[0]
    for mode, n in (miners or {"normal": 10, "eco": 2}).items():
        a.miners[rk["A001"], mm.index(mode)] = n
    return json.loads(json.dumps(to_plan(p, a, {"method": "test", "status": "feasible"})))


def check(sc_data: dict, plan: dict) -> list[str]:
    return verify_plan(parse_scenario(sc_data), plan)


# ---------------------------------------------------------------- correct plans


def test_hand_plan_is_correct():
    assert check(scenario_dict(), hand_plan()) == []


def test_solver_plan_agrees_with_the_hand_plan():
    plan = solver_plan(scenario_dict())
    assert check(scenario_dict(), plan) == []
    assert plan["objective_usd"] == pytest.approx(974.793168, abs=1e-9)
    kw = {r["id"]: r["kw"] for r in plan["racks"]}
    assert kw == pytest.approx({"A001": 40.8, "G001": 38.62, "G002": 12.94, "G003": 23.78})


def test_spec_example_rack():
    # SPEC: 32 H100, 20 busy at 500 W: 1.5 + 20*(0.5+0.56) + 12*0.09 = 23.78 kW
    sc = parse_scenario(scenario_dict())
    idx, cond = Index(sc), conditions(sc)
    out: list[str] = []
    dec = read_decisions(idx, hand_plan(), "", out)
    assert out == []
    ph = compute(idx, cond, dec)
    assert ph.rack_kw["G003"] == pytest.approx(1.5 + 20 * (0.5 + 0.56) + 12 * 0.09)
    assert ph.rack_kw["G003"] == pytest.approx(23.78)
    assert ph.rack_busy["G003"] == 20


def test_loop_and_feed_entries_may_carry_their_site():
    plan = hand_plan()
    for e in plan["loops"] + plan["feeds"]:
        e["site"] = "wa"
    assert check(scenario_dict(), plan) == []


def test_infeasible_status_plan_without_decisions_is_still_judged():
    sc = scenario_dict()
    sc["training"][0]["required"] = True
    plan = solver_plan(sc, job=None)
    assert check(sc, plan) == ["required[llm]: the job is required but not scheduled"]


# ---------------------------------------------------------------- hard limits


def test_over_rack_limit():
    plan = solver_plan(scenario_dict(), miners={"normal": 12})   # 0.2 + 12*3.5 = 42.2 kW
    assert check(scenario_dict(), plan) == ["rack_power[A001]: 42.200 kW exceeds the limit 42 kW"]


def test_over_feed_limit():
    sc = scenario_dict()
    sc["sites"][0]["feeds"][0]["limit_kw"] = 60
    assert check(sc, solver_plan(sc)) == ["feed_power[wa/F1]: 64.580 kW exceeds the limit 60 kW"]


def test_over_loop_derated_capacity_on_a_hot_day():
    sc = scenario_dict()
    sc["sites"][0]["ambient_c"] = 45   # air1: 80 * (1 - 0.02*15) = 56 kW; dlc1: 150 * 0.9 = 135 kW
    assert check(sc, solver_plan(sc)) == [
        "loop_heat[wa/air1]: 64.580 kW exceeds the derated capacity 56.000 kW (capacity_kw 80 at 45 °C)"]
    # the hand plan still reports the cool-day capacity
    assert "loops[wa/air1].capacity_kw: reported 80.000000, recomputed 56.000000" in check(sc, hand_plan())


def test_over_grid_limit():
    sc = scenario_dict()
    sc["sites"][0]["grid_limit_kw"] = 130
    assert check(sc, solver_plan(sc)) == ["site_power[wa]: 135.171 kW exceeds grid_limit_kw 130"]


def test_gpus_over_rack_count():
    # 36 chat replicas at 350 W on G003's 32 GPUs
    plan = solver_plan(scenario_dict(), chat={("G003", 0): 36})
    assert check(scenario_dict(), plan) == ["rack_gpus[G003]: 36 GPUs busy, the rack has 32"]


def test_required_job_not_scheduled():
    sc = scenario_dict()
    sc["training"][0]["required"] = True
    plan = solver_plan(sc, job=None)
    assert plan["training"][0]["moved"] is True
    assert check(sc, plan) == ["required[llm]: the job is required but not scheduled"]


def test_training_split_across_domains():
    plan = solver_plan(scenario_dict(), job={"G001": 32, "G003": 8})
    assert check(scenario_dict(), plan) == [
        "training[llm].placement: placement spans domains 'pod1', 'pod2'; it must lie in one"]


def test_served_above_capacity():
    plan = hand_plan()
    plan["inference"][0]["served_rps"] = 700.0   # 20 replicas * 40 rps * 0.86 = 688
    # serving 12 more rps: +3.6*12*0.4 revenue, -3.6*12*2.0 penalty avoided
    assert check(scenario_dict(), plan) == [
        "inference[chat].served_rps: 700.000000 exceeds the capacity 688.000000 rps of its replicas",
        "objective_usd: reported 974.793168, recomputed 1078.473168"]


def test_served_above_demand():
    plan = solver_plan(scenario_dict(), chat={("G003", 3): 20})   # capacity 800, demand 700
    plan["inference"][0]["served_rps"] = 750.0
    plan["objective_usd"] = plan["solver"]["objective_usd"] = plan["objective_usd"] + 3.6 * 50 * (0.4 + 2.0)
    assert check(scenario_dict(), plan) == ["inference[chat].served_rps: 750.000000 exceeds the demand 700 rps"]


# ---------------------------------------------------------------- reported figures


def test_wrong_objective():
    plan = hand_plan()
    plan["objective_usd"] = 1000.0
    assert check(scenario_dict(), plan) == ["objective_usd: reported 1000.000000, recomputed 974.793168"]


def test_wrong_solver_objective():
    plan = solver_plan(scenario_dict())
    plan["solver"]["objective_usd"] += 1.0
    assert check(scenario_dict(), plan) == ["solver.objective_usd: reported 975.793168, recomputed 974.793168"]


def test_solver_block():
    plan = solver_plan(scenario_dict())
    plan["solver"]["status"] = "great"
    plan["solver"]["objective_usd"] = "a lot"
    assert check(scenario_dict(), plan) == [
        "solver.status: must be one of optimal, feasible, infeasible (got 'great')",
        "solver.objective_usd: must be a number (got 'a lot')"]
    plan["solver"] = "milp"
    assert check(scenario_dict(), plan) == ["solver: must be a mapping (got 'milp')"]


def test_wrong_rack_kw():
    plan = hand_plan()
    plan["racks"][1]["kw"] = 40.0
    assert check(scenario_dict(), plan) == ["racks[G001].kw: reported 40.000000, recomputed 38.620000"]


def test_tolerance_on_figures():
    plan = hand_plan()
    plan["racks"][1]["kw"] = 38.62 + 5e-7
    plan["objective_usd"] = 974.793168 * (1 + 5e-10)
    assert check(scenario_dict(), plan) == []


def test_wrong_site_feed_loop_and_busy_figures():
    plan = hand_plan()
    plan["sites"][0]["site_kw"] = 135.0
    plan["sites"][0]["hashrate_th_s"] = 2400
    plan["feeds"][1]["kw"] = 50
    plan["loops"][0]["heat_kw"] = 64.0
    plan["racks"][2]["gpus_busy"] = 9
    assert check(scenario_dict(), plan) == [
        "sites[wa].site_kw: reported 135.000000, recomputed 135.170800",
        "sites[wa].hashrate_th_s: reported 2400.000000, recomputed 2340.000000",
        "racks[G002].gpus_busy: reported 9, recomputed 8",
        "loops[wa/air1].heat_kw: reported 64.000000, recomputed 64.580000",
        "feeds[wa/F2].kw: reported 50.000000, recomputed 51.560000"]


def test_wrong_moved_flag():
    plan = hand_plan()
    plan["training"][0]["moved"] = True
    assert check(scenario_dict(), plan) == ["training[llm].moved: reported true, recomputed false"]


def test_moving_a_job_costs_its_move_cost():
    plan = solver_plan(scenario_dict(), job={"G001": 8, "G002": 32})
    assert plan["training"][0]["moved"] is True
    assert check(scenario_dict(), plan) == []
    plan["objective_usd"] += 180
    assert check(scenario_dict(), plan) == [f"objective_usd: reported {plan['objective_usd']:.6f}, "
                                            f"recomputed {plan['objective_usd'] - 180:.6f}"]


def test_missing_entries():
    plan = hand_plan()
    del plan["racks"][1]
    del plan["loops"][1]
    del plan["sites"][0]
    assert check(scenario_dict(), plan) == ["racks[G001]: missing from the plan",
                                            "sites[wa]: missing from the plan",
                                            "loops[wa/dlc1]: missing from the plan"]
    plan = hand_plan()
    plan["inference"] = []   # no chat replicas at all: the figures move too
    plan["training"] = []
    out = check(scenario_dict(), plan)
    assert out[:2] == ["training[llm]: missing from the plan", "inference[chat]: missing from the plan"]


# ---------------------------------------------------------------- malformed plans


@pytest.mark.parametrize("edit, line", [
    (lambda p: p.pop("racks"), "racks: missing"),
    (lambda p: p.pop("objective_usd"), "objective_usd: missing"),
    (lambda p: p.update(training={"llm": 1}), "training: must be a list (got {'llm': 1})"),
    (lambda p: p["training"][0].update(cap_w="600"), "training[llm].cap_w: must be a number (got '600')"),
    (lambda p: p["training"][0].update(cap_w=550),
     "training[llm].cap_w: 550 W is not a cap level of GPU model 'H100' (350, 500, 600, 700)"),
    (lambda p: p["training"][0].update(scheduled="yes"),
     "training[llm].scheduled: must be true or false (got 'yes')"),
    (lambda p: p["training"][0]["placement"].update(G999=8),
     "training[llm].placement.G999: unknown rack 'G999'"),
    (lambda p: p["training"][0]["placement"].update(A001=8),
     "training[llm].placement.A001: rack 'A001' holds miners, not GPUs"),
    (lambda p: p["training"][0]["placement"].update(G002=-8), "training[llm].placement.G002: -8 is negative"),
    (lambda p: p["training"].append({"id": "nope", "scheduled": False, "moved": False}),
     "training[nope]: unknown training job"),
    (lambda p: p["racks"][0]["miners"].update(turbo=1), "racks[A001].miners.turbo: unknown mode of miner model 'S21'"),
    (lambda p: p["racks"][0].update(miners=None), "racks[A001].miners: must be a mapping of mode to count (got null)"),
    (lambda p: p["racks"].append({"id": "Z9", "kw": 0}), "racks[Z9]: unknown rack"),
    (lambda p: p["racks"].append(dict(p["racks"][1])), "racks[G001]: listed twice"),
    (lambda p: p["racks"].append({"kw": 0}), "racks[4].id: missing"),
    (lambda p: p["inference"][0]["placement"][0].update(rack="A001"),
     "inference[chat].placement[0].rack: rack 'A001' holds miners, not GPUs"),
    (lambda p: p["inference"][0]["placement"][0].pop("cap_w"), "inference[chat].placement[0].cap_w: missing"),
    (lambda p: p["inference"][0]["placement"][0].update(replicas=2.5),
     "inference[chat].placement[0].replicas: must be a whole number (got 2.5)"),
    (lambda p: p["inference"][0].update(served_rps=-1), "inference[chat].served_rps: -1 is negative"),
])
def test_malformed_plan(edit, line):
    plan = hand_plan()
    edit(plan)
    assert check(scenario_dict(), plan) == [line]


def test_plan_not_a_mapping():
    assert check(scenario_dict(), [1, 2]) == ["(plan): must be a mapping (got [1, 2])"]


def test_placement_short_of_the_job():
    plan = solver_plan(scenario_dict(), job={"G001": 30, "G002": 8})
    assert check(scenario_dict(), plan) == ["training[llm].placement: 38 GPUs placed, the job needs 40"]


def test_cap_below_min_cap():
    plan = solver_plan(scenario_dict(), job=({"G001": 32, "G002": 8}, 0))
    assert check(scenario_dict(), plan) == ["training[llm].cap_w: 350 W is below min_cap_w 500"]


def test_unscheduled_job_with_gpus_placed():
    plan = hand_plan()
    plan["training"][0]["scheduled"] = False
    assert check(scenario_dict(), plan) == [
        "training[llm].placement: the job is not scheduled but has GPUs placed"]


def test_miners_over_count():
    plan = solver_plan(scenario_dict(), miners={"eco": 13})   # 0.2 + 13*2.8 = 36.6 kW, within 42
    assert check(scenario_dict(), plan) == ["racks[A001].miners: 13 miners running, the rack has 12"]


def test_wrong_interval():
    plan = hand_plan()
    plan["interval_h"] = 0.5
    assert check(scenario_dict(), plan) == ["interval_h: the plan covers 0.5 h, the scenario's interval_h is 1"]


# ---------------------------------------------------------------- two sites: ids, allowed sites


def two_sites() -> dict:
    sc = scenario_dict()
    tx = copy.deepcopy(sc["sites"][0])
    tx["id"] = "tx"
    for r in tx["racks"]:
        r["id"] = "T" + r["id"]
        if "domain" in r:
            r["domain"] = "tx-" + r["domain"]
    sc["sites"].append(tx)
    sc["training"][0]["sites"] = ["wa"]
    sc["inference"][0]["sites"] = ["wa"]
    return sc


def test_two_sites_need_site_on_shared_loop_ids():
    sc = two_sites()
    plan = solver_plan(sc)
    assert check(sc, plan) == []
    plan["loops"][0].pop("site")
    assert check(sc, plan) == [
        "loops[air1]: loop id 'air1' exists at sites 'wa', 'tx'; the entry needs its 'site'",
        "loops[wa/air1]: missing from the plan"]


def test_job_at_a_site_not_allowed():
    sc = two_sites()
    plan = solver_plan(sc, job={"TG001": 32, "TG002": 8})
    assert check(sc, plan) == [
        "training[llm].placement.TG001: rack 'TG001' is at site 'tx', not an allowed site",
        "training[llm].placement.TG002: rack 'TG002' is at site 'tx', not an allowed site"]


# ---------------------------------------------------------------- files


def test_files(tmp_path):
    import yaml
    sc_path, plan_path = tmp_path / "small.yaml", tmp_path / "plan.json"
    sc_path.write_text(yaml.safe_dump(scenario_dict()))
    plan_path.write_text(json.dumps(hand_plan()))
    assert verify_files(sc_path, plan_path) == []
    assert load_plan(plan_path)["objective_usd"] == 974.793168


def test_load_plan_errors(tmp_path):
    with pytest.raises(ScenarioError) as err:
        load_plan(tmp_path / "none.json")
    assert err.value.problems == [f"{tmp_path / 'none.json'}: no such file"]
    bad = tmp_path / "bad.json"
    bad.write_text('{"objective_usd": 1,,}')
    with pytest.raises(ScenarioError) as err:
        load_plan(bad)
    assert len(err.value.problems) == 1 and err.value.problems[0].startswith(f"{bad}: not valid JSON (plan) at line 1")
    arr = tmp_path / "arr.json"
    arr.write_text("[]")
    with pytest.raises(ScenarioError) as err:
        load_plan(arr)
    assert err.value.problems == [f"{arr}: a plan must be a JSON object (got list)"]


def test_verifier_is_independent_of_the_solvers():
    import ast
    import pathlib
    import scheduler.verify as v
    import scheduler.verify_horizon as vh
    for mod in (v, vh):
        tree = ast.parse(pathlib.Path(mod.__file__).read_text())
        names = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        for name in names:
            assert not any(bad in name for bad in ("problem", "assignment", "milp", "solve", "kernels")), name



JUNK = [None, "x", -1, 1.5, [], {}, True, float("nan"), float("inf"), 10**9, [1], {"a": 1}, 0, "G001", ["G001"]]


def mangle(plan, rng: random.Random) -> None:
    """Delete one random place of a plan or put junk there."""
    places, stack = [], [(plan, ())]
    while stack:
        obj, path = stack.pop()
        items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
        for k, v in items:
            places.append((obj, k))
            stack.append((v, path + (k,)))
    parent, key = rng.choice(places)
    if rng.random() < 0.3:
        parent.pop(key)
    else:
        parent[key] = copy.deepcopy(rng.choice(JUNK))


def test_mangled_plans_give_lines_not_tracebacks():
    sc, rng = parse_scenario(scenario_dict()), random.Random(7)
    for _ in range(400):
        plan = hand_plan()
        for _ in range(rng.randint(1, 3)):
            mangle(plan, rng)
        out = verify_plan(sc, plan)
        assert all(isinstance(line, str) and "\n" not in line for line in out)


def test_agrees_with_the_solvers_figures_on_random_assignments():
    """Two independent implementations of SPEC 3-4: `to_plan` figures must verify, and the broken
    limits must be the ones `assignment.violations` names."""
    from scheduler.assignment import evaluate, violations
    sc_data = scenario_dict()
    site = sc_data["sites"][0]   # tight limits, so that random decisions break each family now and then
    site["grid_limit_kw"], site["feeds"][0]["limit_kw"] = 120, 40
    site["racks"][0]["limit_kw"], site["loops"][1]["capacity_kw"] = 30, 55
    sc = parse_scenario(sc_data)
    p = compile_problem(sc)
    seen = set()
    rng = random.Random(3)
    for _ in range(150):
        a = Assignment.empty(p)
        if rng.random() < 0.8:
            first = rng.randint(8, 32)
            a.job_level[0] = rng.randint(1, 3)
            a.job_place[0] = {1: first, 2: 40 - first} if first < 40 else {1: 40}
        a.svc_place[0] = {(k, rng.randint(0, 3)): rng.randint(1, 12) for k in rng.sample([1, 2, 3], rng.randint(0, 3))}
        a.miners[0, 0], a.miners[0, 1] = rng.randint(0, 6), rng.randint(0, 6)
        plan = json.loads(json.dumps(to_plan(p, a, {"method": "random", "status": "feasible"})))
        out = verify_plan(sc, plan)
        assert not [line for line in out if "reported" in line], out
        assert {line.split(":")[0] for line in out} == {
            line.split(":")[0] for line in violations(p, evaluate(p, a))}
        seen |= {line.split("[")[0] for line in out}
    assert seen == {"rack_power", "rack_gpus", "feed_power", "loop_heat", "site_power"}
