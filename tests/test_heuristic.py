"""The heuristic solvers (`heuristic`, `auto`, repair, curtail) end to end: every plan passes both
the solvers' self-check and the independent verifier; `--from` reading and its errors."""
from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from scheduler.assignment import evaluate, violations
from scheduler.generate import generate_scenario
from scheduler.heuristic import curtail, repair, solve_auto, solve_heuristic
from scheduler.model import ScenarioError, load_scenario, parse_scenario
from scheduler.model.running import with_running_from_plan
from scheduler.plan_io import assignment_from_plan
from scheduler.problem import compile_problem
from scheduler.solve import SOLVERS, SolveOptions, plan_of, solve
from scheduler.verify import verify_plan

ROOT = Path(__file__).resolve().parents[1]


def checked_plan(sc, p, result) -> dict:
    """The result's plan, after both checks: no broken limit, and the verifier agrees."""
    assert result.status in ("feasible", "optimal"), result.infeasible
    assert violations(p, evaluate(p, result.assignment)) == []
    plan = plan_of(p, result)
    assert verify_plan(sc, plan) == []
    return plan


@pytest.fixture(scope="module")
def wa():
    sc = load_scenario(ROOT / "examples" / "wa-18mw.yaml")
    return sc, compile_problem(sc)


def test_registered_and_reachable_through_solve(wa):
    sc, p = wa
    assert "heuristic" in SOLVERS and "auto" in SOLVERS
    plan = checked_plan(sc, p, solve(p, "heuristic"))
    assert plan["solver"]["method"] == "heuristic" and plan["solver"]["status"] == "feasible"


@pytest.mark.parametrize("name", ["small.yaml", "wa-18mw.yaml"])
def test_examples_give_verified_plans(name):
    sc = load_scenario(ROOT / "examples" / name)
    p = compile_problem(sc)
    checked_plan(sc, p, solve_heuristic(p))


@pytest.mark.parametrize("sites,racks,seed", [(1, 40, 0), (1, 40, 1), (2, 30, 2), (1, 80, 3), (3, 20, 4)])
def test_generated_scenarios_give_verified_plans(sites, racks, seed):
    sc = parse_scenario(generate_scenario(sites, racks, seed))
    p = compile_problem(sc)
    checked_plan(sc, p, solve_heuristic(p))


def test_auto_is_never_worse_than_heuristic_or_milp():
    sc = parse_scenario(generate_scenario(1, 30, 5))
    p = compile_problem(sc)
    h = evaluate(p, solve_heuristic(p).assignment).objective_usd
    m = evaluate(p, solve(p, "milp").assignment).objective_usd
    res = solve_auto(p, SolveOptions(time_limit_s=30))
    plan = checked_plan(sc, p, res)
    assert plan["objective_usd"] >= max(h, m) - 1e-6 * max(1.0, abs(m))
    assert res.bound_usd is not None and res.bound_usd >= plan["objective_usd"] - 1e-6 * abs(plan["objective_usd"])


def test_curtail_on_grid_cut_and_heat(wa):
    sc, p = wa
    start = solve_heuristic(p).assignment
    before = evaluate(p, start).objective_usd
    cut = sc.model_copy(update={"sites": [s.model_copy(update={"grid_limit_kw": s.grid_limit_kw * 0.8})
                                          for s in sc.sites]})
    hot = sc.model_copy(update={"sites": [s.model_copy(update={"ambient_c": s.ambient_c + 10})
                                          for s in sc.sites]})
    for scen in (cut, hot):
        q = compile_problem(scen)
        res = curtail(q, start)
        plan = checked_plan(scen, q, res)
        assert plan["objective_usd"] < before


def test_curtail_feed_loss(wa):
    sc, p = wa
    start = solve_heuristic(p).assignment
    site = sc.sites[0]
    feeds = [f.model_copy(update={"limit_kw": f.limit_kw * 0.5}) if n == 0 else f for n, f in enumerate(site.feeds)]
    scen = sc.model_copy(update={"sites": [site.model_copy(update={"feeds": feeds})]})
    q = compile_problem(scen)
    checked_plan(scen, q, curtail(q, start))


def test_repair_from_previous_plan_counts_moves_against_it(wa):
    sc, p = wa
    prev = plan_of(p, solve_heuristic(p))
    # a demand-response cut arrives; the previous plan is where things run now
    cut = sc.model_copy(update={"sites": [s.model_copy(update={"grid_limit_kw": 15000.0}) for s in sc.sites]})
    scen = with_running_from_plan(cut, prev)
    q = compile_problem(scen)
    res = repair(q, assignment_from_plan(q, prev))
    plan = checked_plan(scen, q, res)
    fresh = evaluate(q, solve_heuristic(q).assignment).objective_usd
    assert plan["objective_usd"] >= fresh - 0.02 * abs(fresh)
    # unchanged limits: repairing a feasible plan keeps every job where it is (no moves)
    same = with_running_from_plan(sc, prev)
    q2 = compile_problem(same)
    res2 = repair(q2, assignment_from_plan(q2, prev))
    assert evaluate(q2, res2.assignment).moves_usd == 0.0
    checked_plan(same, q2, res2)


def test_heuristic_honours_running_placements_with_move_costs(wa):
    sc, p = wa
    plan = checked_plan(sc, p, solve_heuristic(p))
    moved = [t["id"] for t in plan["training"] if t["moved"]]
    assert moved == []      # every running job stays put in the 18 MW example


def test_required_job_that_cannot_run_is_reported_infeasible():
    data = generate_scenario(1, 20, 1)
    data["training"].append({"id": "huge", "gpus": 100000, "value_per_gpu_h": {m: 1.0 for m in data["gpu_models"]},
                             "required": True})
    p = compile_problem(parse_scenario(data))
    res = solve_heuristic(p)
    assert res.status == "infeasible" and res.assignment is None
    assert any("huge" in line for line in res.infeasible)


def test_required_job_is_forced_in():
    data = generate_scenario(1, 40, 2)
    job = min(data["training"], key=lambda j: j["gpus"])
    job["required"] = True
    sc = parse_scenario(data)
    p = compile_problem(sc)
    res = solve_heuristic(p)
    plan = checked_plan(sc, p, res)
    assert next(t for t in plan["training"] if t["id"] == job["id"])["scheduled"]


def test_base_load_over_grid_limit_is_infeasible():
    data = generate_scenario(1, 20, 3)
    data["sites"][0]["grid_limit_kw"] = 1.0
    p = compile_problem(parse_scenario(data))
    res = repair(p, solve_heuristic(compile_problem(parse_scenario(generate_scenario(1, 20, 3)))).assignment)
    assert res.status == "infeasible" and res.infeasible


def test_site_without_racks_and_base_over_grid():
    data = {"version": 1, "name": "bare", "sites": [{
        "id": "s", "grid_limit_kw": 10, "energy_price_usd_per_mwh": 30, "ambient_c": 20, "base_kw": 20,
        "feeds": [{"id": "F", "limit_kw": 10}],
        "loops": [{"id": "L", "kind": "air", "capacity_kw": 10, "design_ambient_c": 30,
                   "derate_per_c": 0.02, "kw_per_kw_heat": 0.1}]}]}
    res = solve_heuristic(compile_problem(parse_scenario(data)))
    assert res.status == "infeasible"
    assert res.infeasible == ["site_power[s]: 20.000 kW > 10 kW even with every GPU idle and every miner off"]
    data["sites"][0]["grid_limit_kw"] = 25
    sc = parse_scenario(data)
    p = compile_problem(sc)
    plan = checked_plan(sc, p, solve_heuristic(p))
    assert plan["objective_usd"] == pytest.approx(-20 * 30 / 1000)


# ------------------------------------------------------------------ --from reading and errors


def test_assignment_from_plan_round_trips(wa):
    sc, p = wa
    res = solve_heuristic(p)
    plan = plan_of(p, res)
    back = assignment_from_plan(p, plan)
    assert evaluate(p, back).objective_usd == pytest.approx(evaluate(p, res.assignment).objective_usd)


@pytest.mark.parametrize("edit,expected", [
    (lambda pl: pl["training"][0]["placement"].update({"G9": 4}), "plan.training[moe-pretrain].placement: unknown rack 'G9'"),
    (lambda pl: pl["training"][0].update({"cap_w": 650}), "plan.training[moe-pretrain].cap_w: 650 W is not a cap level"),
    (lambda pl: pl["inference"].append({"id": "nope", "placement": []}), "unknown inference service 'nope'"),
    (lambda pl: pl["training"].append({"id": "ghost", "scheduled": False}), "unknown training job 'ghost'"),
    (lambda pl: pl["racks"][0].update({"miners": {"warp": 3}}), "unknown mode"),
])
def test_plan_errors_are_one_clear_line(wa, edit, expected):
    sc, p = wa
    plan = copy.deepcopy(plan_of(p, solve_heuristic(p)))
    edit(plan)
    with pytest.raises(ScenarioError) as err:
        assignment_from_plan(p, plan)
    assert len(err.value.problems) == 1 and expected in err.value.problems[0]
    if "miners" not in expected and "mode" not in expected and "cap_w" not in expected:
        with pytest.raises(ScenarioError) as err2:
            with_running_from_plan(sc, plan)
        assert len(err2.value.problems) == 1 and expected in err2.value.problems[0]


def test_running_from_plan_replaces_running(wa):
    sc, p = wa
    plan = plan_of(p, solve_heuristic(p))
    new = with_running_from_plan(sc, plan)
    for t, job in zip(plan["training"], new.training):
        assert (job.running or {}) == (t["placement"] if t["scheduled"] else {})
    for e, svc in zip(plan["inference"], new.inference):
        per_rack: dict[str, int] = {}
        for item in e["placement"]:
            per_rack[item["rack"]] = per_rack.get(item["rack"], 0) + item["replicas"]
        assert (svc.running or {}) == per_rack


def test_running_from_plan_keeps_unlisted_workloads_only_when_asked(wa):
    sc, p = wa
    plan = plan_of(p, solve_heuristic(p))
    first = sc.training[0]
    assert first.running          # the example's first job runs now
    partial = {**plan, "training": [t for t in plan["training"] if t["id"] != first.id]}
    assert with_running_from_plan(sc, partial).training[0].running is None
    assert with_running_from_plan(sc, partial, keep_unlisted=True).training[0].running == first.running


def test_running_from_plan_rejects_a_plan_that_no_longer_fits(wa):
    sc, p = wa
    plan = plan_of(p, solve_heuristic(p))
    smaller = sc.model_copy(update={"training": [j.model_copy(update={"gpus": j.gpus // 2}) if n == 0 else j
                                                 for n, j in enumerate(sc.training)]})
    with pytest.raises(ScenarioError) as err:
        with_running_from_plan(smaller, plan)
    assert any("plan (as running)" in line for line in err.value.problems)


def test_not_a_plan():
    with pytest.raises(ScenarioError):
        with_running_from_plan(load_scenario(ROOT / "examples" / "small.yaml"), [1, 2])
