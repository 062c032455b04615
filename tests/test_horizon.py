"""Horizon planning (SPEC 6) on scenarios whose optimum is known by construction: the MILP
finds it, the rolling fast path stays feasible, every plan passes `verify_plan`, DR windows and
ramps hold in every period, and the baselines are computed with the same objective."""
from __future__ import annotations

import numpy as np
import pytest
from test_horizon_cases import tiny

from scheduler.horizon import plan_horizon
from scheduler.horizon_baselines import breakeven_usd_per_mwh, fixed_plan, miner_switch
from scheduler.horizon_core import compile_horizon, evaluate_horizon, horizon_plan
from scheduler.solve import SolveOptions
from scheduler.verify import verify_plan

OPTS = SolveOptions(time_limit_s=60, gap=1e-6)


def solved(sc, method):
    h = compile_horizon(sc)
    res = plan_horizon(h, method, OPTS)
    plan = horizon_plan(h, res)
    assert verify_plan(sc, plan) == []
    if method == "milp":    # the MILP's own plan, proven optimal (not the rolling fallback)
        assert (res.extra["source"], res.status) == ("milp", "optimal")
    return h, res, plan


def site_kw(plan):
    return [body["sites"][0]["site_kw"] for body in plan["periods"]]


def scheduled(plan):
    return [body["training"][0]["scheduled"] if body["training"] else False for body in plan["periods"]]


def test_job_runs_in_a_cheap_hour_and_miners_only_below_breakeven():
    # the job needs one hour of its 8 GPUs: 80 USD of work for 8 kWh; miners earn 0.10 USD/kWh
    sc = tiny([300, 50, 300, 50], job={"remaining_gpu_h": 8})
    h, res, plan = solved(sc, "milp")
    assert sum(scheduled(plan)) == 1 and not scheduled(plan)[0] and not scheduled(plan)[2]
    # 80 - 8 kWh at 50 + two cheap hours of 10 miners at (0.10 - 0.05)
    assert plan["objective_usd"] == pytest.approx(80 - 0.4 + 2 * 10 * 0.05)
    assert [b["sites"][0]["hashrate_th_s"] for b in plan["periods"]] == [0, 1000, 0, 1000]
    assert plan["training"][0]["work_done_gpu_h"] == pytest.approx(8)
    assert plan["training"][0]["completed_h"] in (2.0, 4.0)


def test_rolling_finds_the_same_plan_on_the_easy_case():
    sc = tiny([300, 50, 300, 50], job={"remaining_gpu_h": 8})
    _, _, plan = solved(sc, "rolling")
    assert plan["objective_usd"] == pytest.approx(80 - 0.4 + 2 * 10 * 0.05)


def test_partial_last_period_earns_only_the_work_left():
    # 12 GPU-h: one full hour plus half of another; the second hour's power counts in full
    sc = tiny([50, 50, 50], job={"remaining_gpu_h": 12})
    h, res, plan = solved(sc, "milp")
    assert plan["training"][0]["work_done_gpu_h"] == pytest.approx(12)
    assert sum(scheduled(plan)) == 2
    assert plan["objective_usd"] == pytest.approx(120 - 2 * 0.4 + 3 * 10 * 0.05)


def test_lateness_is_charged_from_the_deadline_to_completion():
    # 16 GPU-h take two hours; the deadline is at 1 h: one hour late at 1000 USD/h
    sc = tiny([50, 50, 50], job={"remaining_gpu_h": 16, "deadline_h": 1.0, "late_penalty_usd_per_h": 1000})
    for method in ("milp", "rolling"):
        _, _, plan = solved(sc, method)
        assert plan["training"][0]["completed_h"] == pytest.approx(2.0)
        assert plan["training"][0]["late_h"] == pytest.approx(1.0)
        assert plan["objective_usd"] == pytest.approx(160 - 2 * 0.4 + 3 * 10 * 0.05 - 1000)


def test_demand_response_window_holds_in_every_period():
    sc = tiny([40, 40, 40, 40], job={"remaining_gpu_h": 32}, grid=[20, 5, 5, 20])
    for method in ("milp", "rolling"):
        _, _, plan = solved(sc, method)
        kw = site_kw(plan)
        assert all(k <= lim + 1e-6 for k, lim in zip(kw, [20, 5, 5, 20]))
        assert kw[1] <= 5 + 1e-6 and kw[2] <= 5 + 1e-6


def test_ramp_limit_bounds_every_step_and_miners_buffer():
    # price spike in period 2: without a ramp limit the site would drop 10 kW of miners at once
    sc = tiny([40, 40, 2000, 40, 40], ramp=4.0)
    for method in ("milp", "rolling"):
        _, _, plan = solved(sc, method)
        kw = site_kw(plan)
        assert all(abs(b - a) <= 4.0 + 1e-6 for a, b in zip(kw, kw[1:]))
        assert kw[2] < kw[0]      # miners still shed as far as the ramp allows


def test_ramp_with_a_demand_response_window_pre_ramps_down():
    sc = tiny([40, 40, 40, 40, 40], grid=[100, 100, 100, 2, 100], ramp=4.0)
    for method in ("milp", "rolling"):
        _, _, plan = solved(sc, method)
        kw = site_kw(plan)
        assert kw[3] <= 2 + 1e-6
        assert all(abs(b - a) <= 4.0 + 1e-6 for a, b in zip(kw, kw[1:]))


def test_running_job_that_stops_pays_its_move_cost_once():
    job = {"remaining_gpu_h": 8, "running": {"G1": 8}, "move_cost_usd": 5}
    sc = tiny([50, 50, 50], job=job)
    _, _, plan = solved(sc, "milp")
    # it runs in period 0 where it already is, finishes, and stops for free
    assert scheduled(plan) == [True, False, False]
    assert [b["training"][0]["moved"] for b in plan["periods"]] == [False, False, False]


def test_no_work_left_means_never_scheduled():
    sc = tiny([50, 50], job={"remaining_gpu_h": 0})
    for method in ("milp", "rolling"):
        _, _, plan = solved(sc, method)
        assert scheduled(plan) == [False, False]


def test_baselines_fixed_and_miner_switch():
    sc = tiny([300, 50, 300, 50], job={"remaining_gpu_h": 8})
    h = compile_horizon(sc)
    assert breakeven_usd_per_mwh(h.problems[0]) == pytest.approx(100.0)
    fixed = fixed_plan(h)
    # period 0's plan (job on, miners off at 300 USD/MWh) held: the job finishes in period 0
    assert fixed.objective_usd == pytest.approx(80 - 8 * 0.3)
    switch = miner_switch(h)
    assert switch.objective_usd == pytest.approx(80 - 8 * 0.3 + 2 * 10 * 0.05)
    best = evaluate_horizon(h, plan_horizon(h, "milp", OPTS).assignments)[0]
    assert best > switch.objective_usd > fixed.objective_usd


def test_infeasible_window_names_the_period():
    # a required job needs 8 kW but the limit is 5 kW in period 1
    sc = tiny([40, 40], job={"required": True}, grid=[20, 5])
    h = compile_horizon(sc)
    res = plan_horizon(h, "rolling", OPTS)
    assert res.assignments is None and res.status == "infeasible"
    assert any("@p1" in r for r in res.infeasible)


def test_miner_hull_keeps_the_upper_concave_envelope():
    import random

    from scheduler.horizon_agg import upper_hull
    rng = random.Random(7)
    for _ in range(50):
        n = rng.randint(1, 12)
        kw = [rng.uniform(0.5, 10) for _ in range(n)]
        th = [rng.uniform(0, 100) for _ in range(n)]
        keep = upper_hull(kw, th, rising_only=True)
        pts = [(0.0, 0.0)] + [(kw[i], th[i]) for i in keep]

        def envelope(x):       # the best mix of two kept points (or the origin) at x kW
            best = 0.0
            for x1, y1 in pts:
                for x2, y2 in pts:
                    if x1 <= x <= x2 and x2 > x1:
                        best = max(best, y1 + (y2 - y1) * (x - x1) / (x2 - x1))
                    elif x1 <= x and x2 <= x:
                        best = max(best, y1, y2)
            return best
        for i in range(n):     # no pattern rises above what the kept ones reach
            assert th[i] <= envelope(kw[i]) + 1e-6


def test_required_job_with_work_left_is_required_only_until_done():
    sc = tiny([50, 300, 50], job={"remaining_gpu_h": 8, "required": True})
    h = compile_horizon(sc)
    res = plan_horizon(h, "milp", OPTS)
    assert res.extra["source"] == "milp" and res.status == "optimal"
    plan = horizon_plan(h, res)
    assert verify_plan(sc, plan) == []
    assert scheduled(plan) == [True, False, False]


def test_ramp_ceilings_follow_planned_site_power():
    # a followed schedule: each period at most its planned kW plus 2% of the 100 kW limit, and
    # the descent to a later low target a little slower than the 4 kW/h ramp (3.92 kW/h), so
    # whole miners can fill the band between the ramp's floor and the ceiling
    from scheduler.horizon_rolling import ramp_ceiling_kw
    h = compile_horizon(tiny([40] * 5, grid=[100] * 5, ramp=4.0))
    targets = np.array([[20.0], [30.0], [10.0], [50.0], [50.0]])
    assert ramp_ceiling_kw(h, targets)[:, 0].tolist() == pytest.approx([19.84, 15.92, 12.0, 52.0, 52.0])
    assert ramp_ceiling_kw(h)[:, 0].tolist() == [100.0] * 5


def test_period_rows_add_up_to_site_power_and_ceiling_looks_ahead():
    from scheduler.horizon_report import period_rows, summary_lines
    from scheduler.horizon_rolling import ramp_ceiling_kw
    sc = tiny([40, 40, 40, 40, 40], grid=[100, 100, 100, 2, 100], ramp=4.0)
    h = compile_horizon(sc)
    # 2 kW in period 3 means at most 6, 10, 14 kW before it (4 kW per hour down)
    assert ramp_ceiling_kw(h)[:, 0].tolist() == [14.0, 10.0, 6.0, 2.0, 100.0]
    res = plan_horizon(h, "rolling", OPTS)
    total, periods, _ = evaluate_horizon(h, res.assignments)
    rows = period_rows(h, periods)
    for r in rows:
        assert r.gpus_kw + r.miners_kw + r.cooling_kw + r.base_kw == pytest.approx(r.site_kw)
    assert [r.grid_limit_kw for r in rows] == [100, 100, 100, 2, 100]
    assert sum(r.profit_usd for r in rows) == pytest.approx(total)
    text = summary_lines(h, rows, total, {"method": "rolling", "status": "feasible", "seconds": 0.1})
    assert text[0].startswith("tiny: 5 periods over 5 h") and any("miners shed" in t for t in text)
    assert all(r.site_kw <= cap + 1e-6 for r, cap in zip(rows, [14, 10, 6, 2, 100]))
