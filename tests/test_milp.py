"""The exact MILP: optima known by construction or by exhaustive search, backends agree,
every plan passes the independent verifier, and no single obvious improvement is left."""
from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.assignment import Assignment, evaluate, to_plan, violations
from scheduler.generate import generate_scenario
from scheduler.milp import explain_infeasible, solve_milp
from scheduler.model import parse_scenario
from scheduler.problem import GPU, MINER, compile_problem
from scheduler.solve import SolveOptions, plan_of
from scheduler.verify import verify_plan

from naive import brute_force  # the exhaustive reference the kernel tests use too

EXACT = SolveOptions(gap=0.0)


def scenario(**over) -> dict:
    """A tiny site: 2 miner racks, a 2-rack H100 domain, one L40S inference rack whose 1.8 kW
    limit holds both replicas only below the top cap."""
    sc = {
        "version": 1, "name": "tiny", "interval_h": 1.0, "hashprice_usd_per_ph_day": 48.0,
        "gpu_models": {"H100": {"idle_w": 90, "host_w": 560, "cap_levels": [
            {"cap_w": 350, "perf": 0.62}, {"cap_w": 500, "perf": 0.86}, {"cap_w": 700, "perf": 1.0}]},
            "L40S": {"idle_w": 35, "host_w": 200, "cap_levels": [
                {"cap_w": 250, "perf": 0.8}, {"cap_w": 300, "perf": 0.93}, {"cap_w": 350, "perf": 1.0}]}},
        "miner_models": {"S21": {"modes": {"eco": {"th_s": 170, "kw": 2.8}, "normal": {"th_s": 200, "kw": 3.5}}}},
        "sites": [{
            "id": "wa", "grid_limit_kw": 60, "energy_price_usd_per_mwh": 40, "ambient_c": 20, "base_kw": 2,
            "feeds": [{"id": "F1", "limit_kw": 100}],
            "loops": [{"id": "air", "kind": "air", "capacity_kw": 100, "design_ambient_c": 30,
                       "derate_per_c": 0.02, "kw_per_kw_heat": 0.05}],
            "racks": [
                {"id": "M1", "feed": "F1", "loop": "air", "limit_kw": 10, "idle_kw": 0.1,
                 "miners": {"model": "S21", "count": 3}},
                {"id": "M2", "feed": "F1", "loop": "air", "limit_kw": 10, "idle_kw": 0.1,
                 "miners": {"model": "S21", "count": 3}},
                {"id": "G1", "feed": "F1", "loop": "air", "limit_kw": 12, "idle_kw": 0.5, "domain": "pod",
                 "gpus": {"model": "H100", "count": 8}},
                {"id": "G2", "feed": "F1", "loop": "air", "limit_kw": 12, "idle_kw": 0.5, "domain": "pod",
                 "gpus": {"model": "H100", "count": 8}},
                {"id": "I1", "feed": "F1", "loop": "air", "limit_kw": 1.8, "idle_kw": 0.3,
                 "gpus": {"model": "L40S", "count": 4}},
            ]}],
        "training": [{"id": "ft", "gpus": 16, "value_per_gpu_h": {"H100": 2.4}}],
        "inference": [{"id": "chat", "gpus_per_replica": 2, "replica_rps": {"L40S": 20.0}, "demand_rps": 30,
                       "value_per_1k": 0.4, "unserved_penalty_per_1k": 1.0}],
    }
    for path, value in over.items():
        node = sc
        keys = path.split(".")
        for key in keys[:-1]:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(keys[-1]) if keys[-1].isdigit() else keys[-1]] = value
    return sc


def solved(sc_dict: dict, opts: SolveOptions = EXACT):
    sc = parse_scenario(sc_dict)
    p = compile_problem(sc)
    res = solve_milp(p, opts)
    return sc, p, res


def assert_verified(sc, p, res):
    plan = plan_of(p, res)
    assert verify_plan(sc, plan) == []
    return plan


def test_tiny_site_matches_exhaustive_search():
    sc, p, res = solved(scenario())
    assert res.status == "optimal"
    assert_verified(sc, p, res)
    assert evaluate(p, res.assignment).objective_usd == pytest.approx(brute_force(p)[0], abs=1e-6)


@pytest.mark.parametrize("grid_kw, price", [(25, 40), (40, 90), (14, 20), (60, -15)])
def test_exhaustive_search_under_other_limits_and_prices(grid_kw, price):
    sc_dict = scenario(**{"sites.0.grid_limit_kw": grid_kw, "sites.0.energy_price_usd_per_mwh": price})
    sc, p, res = solved(sc_dict)
    assert res.status == "optimal"
    assert_verified(sc, p, res)
    assert evaluate(p, res.assignment).objective_usd == pytest.approx(brute_force(p)[0], abs=1e-6)


def test_planted_miner_optimum():
    # Two racks of 3 S21: one rack fits 2 normal + 1 eco (9.9 kW) under its 10 kW limit, not 3 normal
    # (10.6 kW). The grid (60 kW, only miners) never binds, so the optimum is 2x(2 normal + 1 eco).
    sc_dict = scenario(training=[], inference=[])
    sc_dict["sites"][0]["racks"] = sc_dict["sites"][0]["racks"][:2]
    sc, p, res = solved(sc_dict)
    f = evaluate(p, res.assignment)
    th = 2 * (2 * 200 + 170)
    kw_racks = 2 * (0.1 + 2 * 3.5 + 2.8)
    site_kw = 2 + kw_racks * 1.05
    expected = th * 48 / 1000 / 24 - site_kw / 1000 * 40
    assert f.objective_usd == pytest.approx(expected, abs=1e-9)
    assert res.assignment.miners[:2].tolist() == [[1, 2], [1, 2]]
    assert_verified(sc, p, res)


def test_planted_training_cap_level_under_rack_limit():
    # 16 GPUs over two 12 kW racks (0.5 kW idle + 8 x 0.09 kW idle GPUs = 1.22 kW base):
    # 8 GPUs at 700 W add 8 x 1.17 = 9.36 kW -> 10.58 kW fits; so the job runs at the top cap.
    # With the rack limit at 9 kW, 700 W (10.58) and 500 W (8 x 0.97 + 1.22 = 8.98) -> 500 W.
    for limit, cap in [(12, 700.0), (9, 500.0)]:
        sc_dict = scenario(inference=[], **{"sites.0.racks.2.limit_kw": limit, "sites.0.racks.3.limit_kw": limit})
        sc, p, res = solved(sc_dict)
        plan = assert_verified(sc, p, res)
        job = plan["training"][0]
        assert job["scheduled"] and job["cap_w"] == cap
        assert sorted(job["placement"].values()) == [8, 8]


def test_required_job_that_cannot_fit_is_explained():
    sc_dict = scenario(**{"training.0.required": True, "sites.0.grid_limit_kw": 10})
    sc, p, res = solved(sc_dict)
    assert res.status == "infeasible" and res.assignment is None
    assert any(r.startswith("site_power[wa]: needs") for r in res.infeasible), res.infeasible


def test_required_job_larger_than_any_domain_is_explained():
    sc_dict = scenario(**{"training.0.required": True, "training.0.gpus": 24})
    _, p, res = solved(sc_dict)
    assert res.status == "infeasible"
    assert res.infeasible[0].startswith("required[ft]: no domain can hold it")


def test_base_load_over_grid_is_explained():
    _, p, _ = solved(scenario())
    p2 = compile_problem(parse_scenario(scenario(**{"sites.0.grid_limit_kw": 3})))
    reasons = explain_infeasible(p2)
    assert any(r.startswith("site_power[wa]: needs") for r in reasons), reasons


def test_backends_agree_and_report_bounds():
    sc = parse_scenario(scenario())
    p = compile_problem(sc)
    highs = solve_milp(p, SolveOptions(backend="highs", gap=1e-6))
    cbc = solve_milp(p, SolveOptions(backend="cbc", gap=1e-6))
    oh = evaluate(p, highs.assignment).objective_usd
    oc = evaluate(p, cbc.assignment).objective_usd
    assert oc == pytest.approx(oh, rel=1e-5)
    for res in (highs, cbc):
        assert res.status == "optimal"
        assert res.bound_usd >= evaluate(p, res.assignment).objective_usd - 1e-6
        assert res.gap <= 1e-5
        assert_verified(sc, p, res)


def test_warm_start_from_optimum_keeps_optimum():
    sc, p, res = solved(scenario())
    again = solve_milp(p, SolveOptions(gap=0.0, warm_start=res.assignment))
    assert evaluate(p, again.assignment).objective_usd == pytest.approx(
        evaluate(p, res.assignment).objective_usd, abs=1e-6)


def test_running_job_kept_in_place_when_moving_costs():
    # the job runs split 4/8 (a fresh placement would fill G1 first); staying costs nothing
    sc_dict = scenario(inference=[], **{"training.0.gpus": 12, "training.0.running": {"G1": 4, "G2": 8},
                                        "training.0.move_cost_usd": 500})
    sc, p, res = solved(sc_dict)
    plan = assert_verified(sc, p, res)
    assert plan["training"][0]["placement"] == {"G1": 4, "G2": 8}
    assert plan["training"][0]["moved"] is False


def test_stopping_a_running_job_pays_its_move_cost():
    # a 10 kW grid leaves no room for the job: it stops and pays its move cost once
    sc_dict = scenario(inference=[], **{"training.0.running": {"G1": 8, "G2": 8}, "training.0.move_cost_usd": 300,
                                        "sites.0.grid_limit_kw": 10})
    sc, p, res = solved(sc_dict)
    plan = assert_verified(sc, p, res)
    f = evaluate(p, res.assignment)
    assert not plan["training"][0]["scheduled"] and plan["training"][0]["moved"]
    assert f.moves_usd == 300


def test_identical_inference_racks_class_disaggregates_exactly():
    # 6 identical racks of 8 GPUs, services of 1, 2 and 4 GPUs per replica: merged into one class
    sc_dict = scenario(training=[])
    racks = sc_dict["sites"][0]["racks"]
    racks[:] = [{"id": f"I{n}", "feed": "F1", "loop": "air", "limit_kw": 20, "idle_kw": 0.3,
                 "gpus": {"model": "H100", "count": 8}} for n in range(6)]
    sc_dict["sites"][0]["grid_limit_kw"] = 70
    sc_dict["inference"] = [
        {"id": f"s{gpr}", "gpus_per_replica": gpr, "replica_rps": {"H100": 10.0 * gpr}, "demand_rps": 100.0 * gpr,
         "value_per_1k": 1.0 + gpr, "unserved_penalty_per_1k": 0.5} for gpr in (1, 2, 4)]
    sc, p, res = solved(sc_dict)
    assert_verified(sc, p, res)
    assert res.extra["columns"] < 40   # one class, not 6 racks x 3 services x 3 levels


def _improvements(p, a: Assignment) -> list[str]:
    """Single obvious changes that keep every limit and raise the objective."""
    base = evaluate(p, a).objective_usd
    tol = 1e-7 * max(1.0, abs(base))
    found = []

    def check(b: Assignment, what: str):
        f = evaluate(p, b)
        if not violations(p, f) and f.objective_usd > base + tol:
            found.append(f"{what}: {f.objective_usd - base:+.6f}")

    f0 = evaluate(p, a)
    for k in np.nonzero(p.rack_kind == MINER)[0]:
        nq = int(p.miner_n_modes[p.rack_model[k]])
        for q in range(nq):
            if a.miners[k].sum() < p.rack_count[k]:
                b = copy.deepcopy(a)
                b.miners[k, q] += 1
                check(b, f"start a miner on {p.rack_ids[k]} mode {q}")
            for q2 in range(nq):
                if q2 != q and a.miners[k, q] > 0:
                    b = copy.deepcopy(a)
                    b.miners[k, q] -= 1
                    b.miners[k, q2] += 1
                    check(b, f"re-mode a miner on {p.rack_ids[k]} {q}->{q2}")
    for j in range(len(p.job_ids)):
        if a.job_level[j] >= 0:
            g = p.rack_model[next(iter(a.job_place[j]))]
            for c in range(int(p.job_min_level[j, g]), int(p.gpu_n_levels[g])):
                if c != a.job_level[j]:
                    b = copy.deepcopy(a)
                    b.job_level[j] = c
                    check(b, f"re-cap {p.job_ids[j]} to level {c}")
            continue
        for d in range(len(p.domain_ids)):
            if not p.job_domain_ok(j, d):
                continue
            free = {int(k): int(p.rack_count[k] - f0.rack_busy[k]) for k in p.domain_rack_list(d)}
            if sum(free.values()) < p.job_gpus[j]:
                continue
            place, need = {}, int(p.job_gpus[j])
            for k, n in free.items():
                if need and n:
                    place[k] = min(n, need)
                    need -= place[k]
            g = int(p.domain_model[d])
            for c in range(int(p.job_min_level[j, g]), int(p.gpu_n_levels[g])):
                b = copy.deepcopy(a)
                b.job_level[j], b.job_place[j] = c, place
                check(b, f"start {p.job_ids[j]} in {p.domain_ids[d]} at level {c}")
    for i in range(len(p.svc_ids)):
        if f0.served_rps[i] >= p.svc_demand_rps[i]:
            continue
        for k in np.nonzero(p.rack_kind == GPU)[0]:
            if not p.svc_rack_ok(i, k) or p.rack_count[k] - f0.rack_busy[k] < p.svc_gpus_per_replica[i]:
                continue
            g = p.rack_model[k]
            for c in range(int(p.svc_min_level[i, g]), int(p.gpu_n_levels[g])):
                b = copy.deepcopy(a)
                b.svc_place[i][int(k), c] = b.svc_place[i].get((int(k), c), 0) + 1
                check(b, f"add a {p.svc_ids[i]} replica on {p.rack_ids[k]} level {c}")
    return found


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(seed=st.integers(min_value=0, max_value=10_000))
def test_generated_plans_verify_and_leave_no_obvious_improvement(seed):
    sc = parse_scenario(generate_scenario(1, 40, seed))
    p = compile_problem(sc)
    res = solve_milp(p, SolveOptions(gap=0.0, time_limit_s=60))
    assert res.status == "optimal"
    plan = assert_verified(sc, p, res)
    assert plan["objective_usd"] <= res.bound_usd + 1e-6
    assert _improvements(p, res.assignment) == []


@pytest.mark.parametrize("seed", [11, 12])
def test_two_site_generated_plan_verifies(seed):
    sc = parse_scenario(generate_scenario(2, 60, seed))
    p = compile_problem(sc)
    res = solve_milp(p, SolveOptions(gap=1e-4, time_limit_s=60))
    plan = assert_verified(sc, p, res)
    assert res.gap is not None and res.gap <= 1e-4 + 1e-12
    assert to_plan(p, res.assignment, res.solver_info())["objective_usd"] == plan["objective_usd"]
    f = evaluate(p, res.assignment)   # the per-site rates the summary prints add up to the rate
    assert f.site_rate_usd_per_h.sum() == pytest.approx(f.rate_usd_per_h, abs=1e-6)


def test_miner_patterns_at_negative_price_keep_the_best_pattern_of_each_kw():
    # 6 eco miners and 3 eco + 2 on draw the same 4.8 kW (up to float rounding): the first,
    # with more TH/s, must be the one kept when every kW level is kept (negative energy price)
    from scheduler.milp_model import miner_patterns
    V, kw, th = miner_patterns(6, np.array([0.8, 1.2]), np.array([80.0, 100.0]), 7.0, keep_all_kw=True)
    at = {round(float(k), 6): float(t) for k, t in zip(kw, th)}
    assert at[4.8] == 480.0 and at[5.2] == 500.0
    assert len(at) == len(kw)
