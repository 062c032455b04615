"""The aggregated horizon MILP (`scheduler.horizon_agg`): its bound is never below a plan any
solver finds (the exact multi-period MILP to a 1e-7 gap, the rolling horizon), its
plans are exact and pass `verify_plan`, it finds the known optima of the constructed cases,
and its pieces (miner hulls, LP vertices, schedule-following disaggregation) are what they
claim."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from test_horizon_cases import tiny

from scheduler import horizon, horizon_agg
from scheduler.horizon import plan_horizon, solve_horizon_milp
from scheduler.horizon_agg import AggregatedHorizon, _lp_vertices, solve_horizon_aggregated, upper_hull
from scheduler.horizon_core import HorizonResult, compile_horizon, evaluate_horizon, horizon_plan
from scheduler.horizon_rolling import solve_rolling
from scheduler.milp_model import miner_patterns
from scheduler.model import parse_scenario
from scheduler.solve import SolveOptions
from scheduler.verify import verify_plan

SEQ = SolveOptions(time_limit_s=30, gap=1e-6, threads=1)     # bound proven in-process (no worker)


def mixed(prices: list[float], *, grid: float = 60.0, late: float = 50.0, big_runs: dict | None = None) -> object:
    """Two 16-GPU domains (two 8-GPU racks each; a rack holds 7 GPUs at the top cap), three
    tracked jobs with deadlines and move costs (one running now), an inference service with
    running replicas, and two miner racks with two modes; the grid binds."""
    def rack(rid, dom, limit=8.0):
        return {"id": rid, "feed": "F1", "loop": "L1", "limit_kw": limit, "domain": dom,
                "gpus": {"model": "GPU", "count": 8}}
    site = {"id": "wa", "grid_limit_kw": grid, "energy_price_usd_per_mwh": 40, "ambient_c": 20,
            "base_kw": 1.0,
            "feeds": [{"id": "F1", "limit_kw": 1000}],
            "loops": [{"id": "L1", "kind": "liquid", "capacity_kw": 1000, "design_ambient_c": 35,
                       "derate_per_c": 0.0, "kw_per_kw_heat": 0.05}],
            "racks": [rack("A1", "a"), rack("A2", "a"), rack("B1", "b"), rack("B2", "b"),
                      {"id": "I1", "feed": "F1", "loop": "L1", "limit_kw": 10, "gpus": {"model": "GPU", "count": 4}},
                      {"id": "M1", "feed": "F1", "loop": "L1", "limit_kw": 9,
                       "miners": {"model": "ASIC", "count": 6}},
                      {"id": "M2", "feed": "F1", "loop": "L1", "limit_kw": 9,
                       "miners": {"model": "ASIC", "count": 6}}]}
    periods = [{"hours": 1.0, "energy_price_usd_per_mwh": {"wa": p}} for p in prices]
    data = {"version": 1, "name": "mixed", "hashprice_usd_per_ph_day": 24.0,
            "gpu_models": {"GPU": {"idle_w": 50, "host_w": 100,
                                   "cap_levels": [{"cap_w": 700, "perf": 0.8}, {"cap_w": 1000, "perf": 1.0}]}},
            "miner_models": {"ASIC": {"modes": {"eco": {"th_s": 80, "kw": 0.8}, "on": {"th_s": 100, "kw": 1.2}}}},
            "sites": [site],
            "training": [
                {"id": "big", "gpus": 12, "value_per_gpu_h": {"GPU": 3.0}, "remaining_gpu_h": 30,
                 "deadline_h": 3.0, "late_penalty_usd_per_h": late, "running": big_runs or {"A1": 6, "A2": 6},
                 "move_cost_usd": 5},
                {"id": "mid", "gpus": 8, "value_per_gpu_h": {"GPU": 2.5}, "remaining_gpu_h": 20,
                 "deadline_h": 4.0, "late_penalty_usd_per_h": late, "move_cost_usd": 3},
                {"id": "small", "gpus": 6, "value_per_gpu_h": {"GPU": 2.0}, "remaining_gpu_h": 12,
                 "move_cost_usd": 2}],
            "inference": [{"id": "chat", "gpus_per_replica": 2, "replica_rps": {"GPU": 10.0}, "demand_rps": 25,
                           "value_per_1k": 0.5, "unserved_penalty_per_1k": 1.0, "running": {"I1": 2},
                           "move_cost_usd": 1}],
            "periods": periods}
    return parse_scenario(data)


def best_known(h) -> float:
    """The best objective of the exact horizon MILP's and the rolling horizon's plans."""
    exact = solve_horizon_milp(h, SolveOptions(time_limit_s=60, gap=1e-7))
    return max(evaluate_horizon(h, exact.assignments)[0], evaluate_horizon(h, solve_rolling(h).assignments)[0])


PRICE_SETS = [[40, 40, 40, 40, 40], [30, 900, 30, 200, 30], [500, 20, 20, 700, 20], [-20, 60, 2000, 60, 40]]


@pytest.mark.parametrize("prices", PRICE_SETS)
def test_bound_is_never_below_the_exact_optimum(prices):
    sc = mixed(prices)
    h = compile_horizon(sc)
    best = best_known(h)
    agg = AggregatedHorizon(h)
    relaxed = agg.m.highs(relax=True)
    relaxed.run()
    lp = relaxed.getInfo().objective_function_value
    hs = agg.m.highs()
    hs.setOptionValue("mip_rel_gap", 0.0)
    hs.run()
    milp = hs.getInfo().objective_function_value
    # the relaxation's optimum and its LP are upper bounds on every exact plan
    assert milp >= best - 1e-6
    assert lp >= milp - 1e-6
    res = solve_horizon_aggregated(h, SEQ)
    plan = horizon_plan(h, res)
    assert verify_plan(sc, plan) == []
    assert res.bound_usd >= best - 1e-6 and res.bound_usd >= plan["objective_usd"] - 1e-9
    assert res.gap == pytest.approx((res.bound_usd - plan["objective_usd"]) / abs(plan["objective_usd"]))


def test_bound_holds_when_a_job_must_be_late():
    # 30 GPU-h of `big` cannot be done by its 3 h deadline at <= 12 GPU-h per hour... and the
    # grid is tight: lateness is paid; the relaxation must not under-charge it below the optimum
    sc = mixed([40, 40, 40, 40, 40], grid=30.0, late=500.0)
    h = compile_horizon(sc)
    best = best_known(h)
    res = solve_horizon_aggregated(h, SEQ)
    assert res.bound_usd >= best - 1e-6
    assert verify_plan(sc, horizon_plan(h, res)) == []


def test_known_optimum_cheap_hour():
    # the tiny case of tests/test_horizon.py: the job runs in one cheap hour, miners below breakeven
    sc = tiny([300, 50, 300, 50], job={"remaining_gpu_h": 8})
    h = compile_horizon(sc)
    res = solve_horizon_aggregated(h, SEQ)
    plan = horizon_plan(h, res)
    assert verify_plan(sc, plan) == []
    assert plan["objective_usd"] == pytest.approx(80 - 0.4 + 2 * 10 * 0.05)
    assert res.bound_usd == pytest.approx(plan["objective_usd"], abs=1e-6)
    assert res.status == "optimal" and res.extra["source"] == "aggregated"


def test_known_optimum_lateness():
    sc = tiny([50, 50, 50], job={"remaining_gpu_h": 16, "deadline_h": 1.0, "late_penalty_usd_per_h": 1000})
    h = compile_horizon(sc)
    res = solve_horizon_aggregated(h, SEQ)
    plan = horizon_plan(h, res)
    assert verify_plan(sc, plan) == []
    assert plan["objective_usd"] == pytest.approx(160 - 2 * 0.4 + 3 * 10 * 0.05 - 1000)
    assert res.bound_usd == pytest.approx(plan["objective_usd"], abs=1e-6)


def test_a_stop_before_the_work_can_be_done_pays_its_move():
    # the job runs now and stops through the 5,000 USD/MWh hour (paying its 20 USD move), then
    # finishes in two of the four cheap hours left. After one hour a third of its work is done,
    # which let the relaxation forgive a third of that move as if the job were complete
    # (LP 228.71); it cannot be complete before 3 h, so the LP is now the optimum itself
    sc = tiny([40, 5000, 40, 40, 40, 40], job={"remaining_gpu_h": 24, "running": {"G1": 8}, "move_cost_usd": 20})
    h = compile_horizon(sc)
    best = best_known(h)
    assert best == pytest.approx(240 - 20 - 3 * 8 * 0.04 + 5 * 10 * 0.1 - 5 * 10 * 0.04)
    agg = AggregatedHorizon(h)
    relaxed = agg.m.highs(relax=True)
    relaxed.run()
    assert relaxed.getInfo().objective_function_value == pytest.approx(best, abs=1e-6)


def test_a_repack_at_a_higher_cap_pays_its_move():
    # 'big' runs 8 + 4 GPUs on the racks of domain a, and a rack there holds only 7 at the top
    # cap: running at that cap in a means its placement changed, so a move was paid by then
    # (before, a level change within a domain was free and the model valued this start like 6 + 6)
    def optimum(runs):
        h = compile_horizon(mixed([40, 40, 40], big_runs=runs))
        hs = AggregatedHorizon(h).m.highs()
        hs.run()
        return h, hs.getInfo().objective_function_value

    _, fits = optimum({"A1": 6, "A2": 6})
    h, repack = optimum({"A1": 8, "A2": 4})
    assert repack < fits - 1.0
    assert repack >= best_known(h) - 1e-6          # still a bound


def test_rins_improves_a_schedule_within_the_full_model():
    # from the rolling plan's binaries, RINS on the full model: the start is valued in that model
    # (its continuous part solved as an LP), the search never returns worse, and its schedule
    # disaggregates into a verified plan
    sc = mixed([30, 900, 30, 200, 30])
    h = compile_horizon(sc)
    full = AggregatedHorizon(h)
    idx, val = full.start_from(solve_rolling(h).assignments)
    base, best, values = horizon_agg._rins(full, dict(zip(idx.tolist(), val.tolist())), 20.0)
    hs = full.m.highs()
    hs.run()
    assert base <= best <= hs.getInfo().objective_function_value + 1e-6
    assert best > base + 1.0         # the rolling plan is not the model's optimum here
    dis = solve_rolling(h, schedule=full.schedule(values), replicas=full.replicas(values))
    assert verify_plan(sc, horizon_plan(h, dis)) == []


@pytest.mark.parametrize("prices", PRICE_SETS)
def test_branch_and_bound_gives_a_valid_bound_below_the_lp(prices):
    # the bound's branch and bound (move counts, completion chains, binaries) on the model with
    # its full-rate rows: never below the best plan the exact horizon MILP finds, never above
    # the LP relaxation it starts from; these small models it solves to an integral node
    sc = mixed(prices)
    h = compile_horizon(sc)
    agg = AggregatedHorizon(h)
    relaxed = agg.m.highs(relax=True)
    relaxed.run()
    res = horizon_agg._branch_bound(agg.bound_model(), horizon_agg.branch_objects(agg), 30.0)
    assert best_known(h) - 1e-6 <= res.bound <= relaxed.getInfo().objective_function_value + 1e-6
    assert res.objective == pytest.approx(res.bound) and res.values is not None


def test_branch_and_bound_keeps_the_best_open_node_when_time_runs_out():
    # stopped after its root LP, the bound is that LP (an unfinished branching is never dropped)
    h = compile_horizon(mixed([30, 900, 30, 200, 30]))
    agg = AggregatedHorizon(h)
    model = agg.bound_model()
    relaxed = model.highs(relax=True)
    relaxed.run()
    res = horizon_agg._branch_bound(model, horizon_agg.branch_objects(agg), 1e-3)
    assert res.bound is None or res.bound == pytest.approx(relaxed.getInfo().objective_function_value)


def test_demand_response_window_and_ramp_hold():
    sc = tiny([40, 40, 40, 40], job={"remaining_gpu_h": 32}, grid=[20, 5, 5, 20], ramp=8.0)
    h = compile_horizon(sc)
    res = solve_horizon_aggregated(h, SEQ)
    plan = horizon_plan(h, res)
    assert verify_plan(sc, plan) == []
    kw = [b["sites"][0]["site_kw"] for b in plan["periods"]]
    assert all(k <= g + 1e-6 for k, g in zip(kw, [20, 5, 5, 20]))
    assert all(abs(b - a) <= 8.0 + 1e-6 for a, b in zip(kw, kw[1:]))


def test_plan_horizon_uses_the_aggregated_model_above_the_column_limit(monkeypatch):
    sc = mixed([30, 900, 30, 200, 30])
    h = compile_horizon(sc)
    monkeypatch.setattr(horizon, "MAX_HORIZON_COLUMNS", 10)
    monkeypatch.setattr(horizon_agg, "PARALLEL_ABOVE_COLUMNS", 10)
    res = plan_horizon(h, "milp", SolveOptions(time_limit_s=20, gap=1e-6))    # bound in a second process
    plan = horizon_plan(h, res)
    assert res.method == "milp-aggregated" and "aggregated horizon MILP" in res.extra["why"]
    assert verify_plan(sc, plan) == []
    assert "bound_error" not in res.extra and res.bound_usd >= plan["objective_usd"] - 1e-9
    rolling, _, _ = evaluate_horizon(h, solve_rolling(h).assignments)
    assert plan["objective_usd"] >= rolling - 1e-6


@pytest.mark.parametrize("kernels_pack", [True, False])
def test_disaggregation_follows_the_schedule(monkeypatch, kernels_pack):
    sc = mixed([30, 900, 30, 200, 30])
    h = compile_horizon(sc)
    if not kernels_pack:
        # the kernels find no packing of the chosen jobs: the single-interval MILP finds it
        from scheduler import heuristic
        from scheduler.solve import SolveResult
        real = heuristic.solve_heuristic

        def failing(prob, opts=None):
            if prob.job_required.any():
                return SolveResult(None, "heuristic", "infeasible", 0.0, infeasible=["no packing"])
            return real(prob, opts)
        monkeypatch.setattr(heuristic, "solve_heuristic", failing)
    # big at the low cap for two hours, then mid at the top cap; small alongside for three hours
    big, mid, small = 0, 1, 2
    a, b = h.problems[0].domain_ids.index("a"), h.problems[0].domain_ids.index("b")
    sched = [{big: (b, 0), small: (a, 0)}, {big: (b, 0), small: (a, 0)}, {mid: (b, 1), small: (a, 0)},
             {mid: (b, 1)}, {mid: (b, 1)}]
    res = solve_rolling(h, schedule=sched)
    total, periods, work = evaluate_horizon(h, res.assignments)
    for p, pf in enumerate(periods):
        on = {j for j in range(3) if pf.assignment.job_level[j] >= 0}
        want = {j for j in sched[p] if not (work.completed_h[j] is not None and work.completed_h[j] <= h.start_h[p])}
        assert on == want, p
        for j in on:
            d, c = sched[p][j]
            # at the chosen cap, not above: a higher one would finish the job before the
            # schedule's last period for it and leave its GPUs idle there
            assert pf.assignment.job_level[j] == c
            # on the chosen domain's GPU model (the period's solver picks among such domains)
            models = {int(h.problems[p].rack_model[k]) for k in pf.assignment.job_place[j]}
            assert models == {int(h.problems[p].domain_model[d])}
    assert verify_plan(sc, horizon_plan(h, res)) == []


def test_disaggregation_starts_replicas_only_where_the_schedule_has_them():
    data = mixed([30, 900, 30, 200, 30]).model_dump(mode="json", exclude_none=True)
    data["inference"][0].pop("running")
    h = compile_horizon(parse_scenario(data))
    none = [{} for _ in range(h.n_periods)]             # no training job: all GPUs are free
    shape = (h.n_periods, len(h.problems[0].svc_ids), len(h.problems[0].gpu_model_ids))
    for target, served in ((np.zeros(shape), False), (np.full(shape, 3.0), True)):
        res = solve_rolling(h, schedule=none, replicas=target)
        _, periods, _ = evaluate_horizon(h, res.assignments)
        assert all((sum(pf.assignment.svc_place[0].values()) > 0) == served for pf in periods)


def test_trim_replicas_stops_only_spare_replicas():
    from scheduler.assignment import Assignment, evaluate, violations
    from scheduler.horizon_rolling import trim_replicas

    h = compile_horizon(mixed([30, 900, 30, 200, 30]))
    p = h.problems[4]
    a = solve_rolling(h).assignments[4]          # no training job runs in the last hour
    assert not any(a.job_place)
    chat = 0
    A1 = p.rack_ids.index("A1")
    place = dict(a.svc_place[chat])
    place[A1, 0] = place.get((A1, 0), 0) + 2     # two spare replicas at the low cap
    a = Assignment(a.job_level, a.job_place, [place], a.miners)
    before = evaluate(p, a)
    total = sum(place.values())
    demand = float(p.svc_demand_rps[chat])

    def rps(k, c):
        return float(p.svc_replica_rps[chat, p.rack_model[k]] * p.gpu_perf[p.rack_model[k], c])

    assert trim_replicas(p, a, np.array([total])) is a            # at the target: untouched
    one = trim_replicas(p, a, np.array([total - 1.0]))
    assert sum(one.svc_place[chat].values()) == total - 1
    bare = trim_replicas(p, a, np.array([0.0]))
    for b in (one, bare):
        f = evaluate(p, b)
        assert violations(p, f) == []
        assert f.served_rps[chat] == pytest.approx(demand) == pytest.approx(before.served_rps[chat])
        assert f.site_kw[0] < before.site_kw[0]
    # with no target left, every replica still running is needed to serve the demand
    cap = sum(r * rps(k, c) for (k, c), r in bare.svc_place[chat].items())
    assert all(cap - rps(k, c) < demand - 1e-9 for (k, c) in bare.svc_place[chat])


@pytest.mark.parametrize("count,kw,th,room", [
    (6, [0.8, 1.2], [80, 100], 7.0),
    (20, [2.45, 3.07, 3.45], [88, 104, 112], 65.7),
    (12, [4.2, 5.36, 6.3], [280, 335, 370], 70.0),
])
def test_miner_hull_and_lp_vertices_cover_every_pattern(count, kw, th, room):
    kw, th = np.array(kw), np.array(th, dtype=float)

    def hull_th(pkw, pth, at):
        """The most TH/s a convex combination of the patterns (and the origin) reaches at `at` kW."""
        pts = [(0.0, 0.0)] + list(zip(pkw, pth))
        best = 0.0 if at <= 1e-12 else -1.0
        for (x1, y1), (x2, y2) in itertools.combinations(pts, 2):
            if min(x1, x2) - 1e-9 <= at <= max(x1, x2) + 1e-9:
                y = y1 if abs(x2 - x1) < 1e-12 else y1 + (y2 - y1) * (at - x1) / (x2 - x1)
                best = max(best, y)
        for x, y in pts:
            if abs(x - at) <= 1e-9:
                best = max(best, y)
        return best

    V, pkw, pth = miner_patterns(count, kw, th, room, keep_all_kw=True)
    keep = upper_hull(pkw, pth)
    LV, lkw, lth = _lp_vertices(count, kw, th, room)
    assert (LV >= -1e-9).all() and (LV.sum(axis=1) <= count + 1e-9).all() and (lkw <= room + 1e-9).all()
    for q in itertools.product(range(count + 1), repeat=len(kw)):
        if sum(q) > count or np.dot(q, kw) > room + 1e-9:
            continue
        at, want = float(np.dot(q, kw)), float(np.dot(q, th))
        assert hull_th(pkw[keep], pth[keep], at) >= want - 1e-6      # hull patterns lose nothing
        assert hull_th(lkw, lth, at) >= want - 1e-6                  # nor do the LP vertices


def test_hungarian_matches_brute_force():
    from scheduler.horizon_agg import _assignment_min_cost
    rng = np.random.default_rng(7)
    for n in range(1, 7):
        for _ in range(15):
            cost = rng.integers(0, 20, (n, n)).astype(float)
            sol = _assignment_min_cost(cost)
            best = min(sum(cost[r, perm[r]] for r in range(n)) for perm in itertools.permutations(range(n)))
            assert sorted(sol) == list(range(n))
            assert sum(cost[r, sol[r]] for r in range(n)) == pytest.approx(best)


def test_stick_replicas_keeps_replicas_on_their_twin_racks():
    from scheduler.assignment import Assignment, evaluate
    from scheduler.horizon_agg import stick_replicas

    def rack(rid):
        return {"id": rid, "feed": "F1", "loop": "L1", "limit_kw": 10, "gpus": {"model": "GPU", "count": 4}}
    data = {"version": 1, "name": "twins", "hashprice_usd_per_ph_day": 24.0,
            "gpu_models": {"GPU": {"idle_w": 50, "host_w": 100, "cap_levels": [{"cap_w": 700, "perf": 1.0}]}},
            "sites": [{"id": "wa", "grid_limit_kw": 100, "energy_price_usd_per_mwh": 40, "ambient_c": 20,
                       "feeds": [{"id": "F1", "limit_kw": 100}],
                       "loops": [{"id": "L1", "kind": "air", "capacity_kw": 100, "design_ambient_c": 35,
                                  "derate_per_c": 0.0, "kw_per_kw_heat": 0.1}],
                       "racks": [rack("R1"), rack("R2"), rack("R3")]}],
            "inference": [{"id": "chat", "gpus_per_replica": 1, "replica_rps": {"GPU": 10.0}, "demand_rps": 20,
                           "value_per_1k": 0.5, "unserved_penalty_per_1k": 1.0, "running": {"R1": 2},
                           "move_cost_usd": 3}],
            "periods": [{"hours": 1.0}, {"hours": 1.0}, {"hours": 1.0}]}
    sc = parse_scenario(data)
    h = compile_horizon(sc)
    p = h.problems[0]
    r1, r2, r3 = (p.rack_ids.index(r) for r in ("R1", "R2", "R3"))

    def on(k, n):
        a = Assignment.empty(p)
        a.svc_place[0] = {(k, 0): n}
        return a
    hopping = [on(r2, 2), on(r3, 2), on(r1, 2)]        # the same two replicas on another twin each hour
    before, periods, _ = evaluate_horizon(h, hopping)
    stuck = stick_replicas(h, hopping)
    after, periods2, _ = evaluate_horizon(h, stuck)
    assert [dict(a.svc_place[0]) for a in stuck] == [{(r1, 0): 2}] * 3
    assert after - before == pytest.approx(3 * 2 * 2 * 3)        # 3 boundaries x (2 stopped + 2 started) x 3 USD
    for pf, pf2 in zip(periods, periods2):                        # same power and rate in every period
        f, f2 = evaluate(pf.problem, pf.assignment), evaluate(pf2.problem, pf2.assignment)
        assert f.rate_usd_per_h == pytest.approx(f2.rate_usd_per_h)
        assert np.allclose(f.site_kw, f2.site_kw)
    assert verify_plan(sc, horizon_plan(h, HorizonResult(stuck, "test", "feasible", 0.0))) == []


def test_two_site_fleet_with_negative_prices():
    # examples/fleet-2site.yaml over six hours of per-site prices from -10 to 1,500 USD/MWh
    from pathlib import Path
    from scheduler.model import load_scenario
    base = load_scenario(Path(__file__).resolve().parents[1] / "examples" / "fleet-2site.yaml")
    prices = [[-10, 1500], [20, 40], [300, -10], [40, 20], [1500, 300], [20, 20]]
    data = base.model_dump(mode="json", exclude_none=True)
    data["periods"] = [{"hours": 1.0, "energy_price_usd_per_mwh": dict(zip([s.id for s in base.sites], row))}
                       for row in prices]
    sc = parse_scenario(data)
    h = compile_horizon(sc)
    res = solve_horizon_aggregated(h, SEQ)
    plan = horizon_plan(h, res)
    assert verify_plan(sc, plan) == []
    assert res.bound_usd >= max(plan["objective_usd"], evaluate_horizon(h, solve_rolling(h).assignments)[0]) - 1e-6
