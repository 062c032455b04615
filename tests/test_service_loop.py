"""The service loop in simulated time: injected clock, SQLite store in a temp dir, explicit ticks."""
from __future__ import annotations


import pytest

from scheduler.model import parse_scenario
from scheduler.service.actuators import RecordingActuator
from scheduler.service.inputs import InputError
from scheduler.service.loop import ServiceLoop
from scheduler.service.planning import GreedyPlanner, default_fast_planner
from scheduler.service.store import SqliteStore
from scheduler.verify import verify_plan


def small_site(grid_limit_kw: float = 200.0) -> dict:
    """One site: 4 GPU racks of 8 GPUs in one domain, 4 miner racks; cheap power, decent hashprice."""
    racks = [{"id": f"G{n}", "feed": "F1", "loop": "dlc", "limit_kw": 12.0, "idle_kw": 0.3, "domain": "pod",
              "gpus": {"model": "H100", "count": 8}} for n in range(4)]
    racks += [{"id": f"M{n}", "feed": "F2", "loop": "air", "limit_kw": 45.0, "idle_kw": 0.2,
               "miners": {"model": "S21", "count": 12}} for n in range(4)]
    return {
        "version": 1, "name": "small", "hashprice_usd_per_ph_day": 50.0,
        "gpu_models": {"H100": {"idle_w": 90, "host_w": 560, "cap_levels": [
            {"cap_w": 350, "perf": 0.62}, {"cap_w": 500, "perf": 0.86}, {"cap_w": 700, "perf": 1.0}]}},
        "miner_models": {"S21": {"modes": {"eco": {"th_s": 170, "kw": 2.8}, "normal": {"th_s": 200, "kw": 3.5}}}},
        "sites": [{"id": "wa", "grid_limit_kw": grid_limit_kw, "energy_price_usd_per_mwh": 30.0, "ambient_c": 20.0,
                   "base_kw": 10.0,
                   "feeds": [{"id": "F1", "limit_kw": 200.0}, {"id": "F2", "limit_kw": 200.0}],
                   "loops": [{"id": "air", "kind": "air", "capacity_kw": 250.0, "design_ambient_c": 30.0,
                              "derate_per_c": 0.02, "kw_per_kw_heat": 0.06},
                             {"id": "dlc", "kind": "liquid", "capacity_kw": 200.0, "design_ambient_c": 35.0,
                              "derate_per_c": 0.01, "kw_per_kw_heat": 0.1}],
                   "racks": racks}],
        "training": [{"id": "ft-a", "gpus": 8, "value_per_gpu_h": {"H100": 2.0}}],
        "inference": [{"id": "chat", "gpus_per_replica": 1, "replica_rps": {"H100": 40.0}, "demand_rps": 200.0,
                       "value_per_1k": 0.4, "unserved_penalty_per_1k": 1.0}],
    }


class FakeClock:
    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


def make_loop(tmp_path, data=None, fast=None, full=None, verifier=None, name="state.db", clock=None):
    sc = parse_scenario(data or small_site())
    act = RecordingActuator()
    loop = ServiceLoop(sc, SqliteStore(tmp_path / name), clock or FakeClock(), fast or GreedyPlanner(),
                       full=full, actuator=act, verifier=verifier or verify_plan, tick_s=60.0)
    return loop, act


def test_first_replan_adopts_a_verified_plan(tmp_path):
    loop, act = make_loop(tmp_path)
    assert loop.start() is True
    out = loop.replan("start")
    assert out.adopted, out
    cur = loop.current()
    assert cur.row.seq == out.seq == act.published[-1]["seq"]
    assert verify_plan(cur.scenario, cur.row.plan) == []
    assert loop.workload("training", "ft-a")["status"] in ("running", "queued")


def site_kw(loop) -> float:
    return loop.current().row.plan["sites"][0]["site_kw"]


@pytest.mark.parametrize("planner", ["greedy", "default"])
def test_demand_response_cut_is_obeyed_by_the_next_plan(tmp_path, planner):
    fast = GreedyPlanner() if planner == "greedy" else default_fast_planner(milp_time_limit_s=10.0)
    loop, act = make_loop(tmp_path, fast=fast)
    loop.start()
    loop.replan("start")
    before = site_kw(loop)
    assert before > 180.0  # the site runs near its 200 kW limit before the cut
    loop.post_signal({"site": "wa", "grid_limit_kw": 120.0})
    out = loop.replan("change")
    assert out.adopted, out
    plan = loop.current().row.plan
    assert plan["sites"][0]["grid_limit_kw"] == 120.0
    assert site_kw(loop) <= 120.0 + 1e-6
    assert verify_plan(loop.current().scenario, plan) == []
    assert act.published[-1]["plan"] is plan


def test_tick_replans_without_events_and_due_follows_the_clock(tmp_path):
    clock = FakeClock()
    loop, _ = make_loop(tmp_path, clock=clock)
    loop.start()
    assert loop.due()
    loop.tick()
    assert not loop.due()
    clock.advance(59.0)
    assert not loop.due()
    clock.advance(1.0)
    assert loop.due()
    seq = loop.current().row.seq
    out = loop.tick()  # same inputs, same planner: the plan is not better, so it is kept
    assert not out.adopted and out.why == "not better"
    assert loop.current().row.seq == seq and not loop.due()


def test_submit_and_cancel_are_stored_and_change_the_plan(tmp_path):
    loop, _ = make_loop(tmp_path)
    loop.start()
    loop.replan()
    view = loop.submit("training", {"id": "ft-b", "gpus": 8, "value_per_gpu_h": {"H100": 9.0}})
    assert view["status"] == "pending" and view["source"] == "api"
    loop.replan()
    assert loop.workload("training", "ft-b")["status"] == "running"
    loop.cancel("training", "ft-b")
    loop.cancel("inference", "chat")  # a workload of the base scenario can be cancelled too
    loop.replan()
    ids = {t["id"] for t in loop.current().row.plan["training"]}
    assert ids == {"ft-a"} and loop.current().row.plan["inference"] == []
    rows = {(r.kind, r.id): r.state for r in loop.store.workloads()}
    assert rows == {("training", "ft-b"): "cancelled", ("inference", "chat"): "cancelled"}


@pytest.mark.parametrize("kind,body,expected", [
    ("training", {"id": "x", "gpus": 0, "value_per_gpu_h": {"H100": 1.0}}, "gpus: input should be greater than or equal to 1"),
    ("training", {"id": "x", "gpus": 8, "value_per_gpu_h": {"B200": 1.0}}, "value_per_gpu_h"),
    ("training", {"id": "x", "gpus": 8, "value_per_gpu_h": {"H100": 1.0}, "colour": "red"}, "colour: unknown key"),
    ("training", {"id": "x", "gpus": 8, "value_per_gpu_h": {"H100": 1.0}, "running": {"G9": 8}}, "running"),
    ("training", {"id": "x", "gpus": 8, "value_per_gpu_h": {"H100": 1.0}, "sites": ["tx"]}, "sites[0]"),
    ("inference", {"id": "y", "gpus_per_replica": 1, "replica_rps": {"H100": 10.0}, "demand_rps": -1,
                   "value_per_1k": 0.1}, "demand_rps"),
    ("inference", {"id": "y"}, "gpus_per_replica: required field is missing"),
    ("training", ["not", "a", "mapping"], "body: must be a JSON object"),
])
def test_invalid_submissions_name_the_field_and_store_nothing(tmp_path, kind, body, expected):
    loop, _ = make_loop(tmp_path)
    loop.start()
    version = loop.version()
    with pytest.raises(InputError) as err:
        loop.submit(kind, body)
    assert err.value.status == 422
    assert any(expected in line for line in err.value.problems), err.value.problems
    assert loop.store.workloads() == [] and loop.version() == version


def test_duplicate_ids_conflict_across_kinds(tmp_path):
    loop, _ = make_loop(tmp_path)
    loop.start()
    with pytest.raises(InputError) as err:
        loop.submit("inference", {"id": "ft-a", "gpus_per_replica": 1, "replica_rps": {"H100": 1.0},
                                  "demand_rps": 1.0, "value_per_1k": 0.1})
    assert err.value.status == 409 and err.value.problems == ["id: a training workload 'ft-a' already exists"]
    with pytest.raises(InputError) as err:
        loop.cancel("training", "nope")
    assert err.value.status == 404


@pytest.mark.parametrize("body,expected", [
    ({"site": "tx", "grid_limit_kw": 100.0}, "site: unknown site 'tx'"),
    ({"grid_limit_kw": -5}, "grid_limit_kw: input should be greater than or equal to 0"),
    ({"grid_limit_kw": "high"}, "grid_limit_kw: input should be a valid number"),
    ({"ambient_c": float("nan")}, "ambient_c"),
    ({"demand_rps": {"search": 10.0}}, "demand_rps.search: unknown inference service 'search'"),
    ({"voltage_v": 400}, "voltage_v: unknown key"),
    ({"site": "wa"}, "body: no signal given"),
    ({}, "body: no signal given"),
])
def test_invalid_signals_name_the_field_and_store_nothing(tmp_path, body, expected):
    loop, _ = make_loop(tmp_path)
    loop.start()
    with pytest.raises(InputError) as err:
        loop.post_signal(body)
    assert any(line.startswith(expected) for line in err.value.problems), err.value.problems
    assert loop.store.signals() == []


def test_signals_override_the_base_scenario(tmp_path):
    loop, _ = make_loop(tmp_path)
    loop.start()
    loop.post_signal({"energy_price_usd_per_mwh": 900.0, "ambient_c": 40.0})
    loop.post_signal({"hashprice_usd_per_ph_day": 10.0, "demand_rps": {"chat": 40.0}})
    loop.replan()
    sc = loop.current().scenario
    assert sc.sites[0].energy_price_usd_per_mwh == 900.0 and sc.sites[0].ambient_c == 40.0
    assert sc.hashprice_usd_per_ph_day == 10.0 and sc.inference[0].demand_rps == 40.0
    plan = loop.current().row.plan
    # at 900 USD/MWh mining loses money: no miner runs
    assert all(not r.get("miners") for r in plan["racks"])
    assert loop.signals()["sites"] == {"wa": {"energy_price_usd_per_mwh": 900.0, "ambient_c": 40.0}}


def test_restart_resumes_from_the_last_adopted_plan(tmp_path):
    loop, _ = make_loop(tmp_path)
    loop.start()
    loop.replan()
    loop.submit("training", {"id": "ft-b", "gpus": 8, "value_per_gpu_h": {"H100": 3.0}})
    loop.post_signal({"grid_limit_kw": 150.0})
    loop.replan()
    last = loop.current().row
    loop.submit("training", {"id": "ft-c", "gpus": 8, "value_per_gpu_h": {"H100": 3.0}})  # acknowledged, not planned
    loop.store.close()

    again, act = make_loop(tmp_path)
    assert again.start() is True  # inputs changed after the last plan: a re-plan is due
    assert again.resumed_from == last.seq and again.current().row.plan == last.plan
    assert act.published[-1]["seq"] == last.seq
    assert {w["id"] for w in again.workloads("training")} == {"ft-a", "ft-b", "ft-c"}
    assert again.signals()["sites"]["wa"]["grid_limit_kw"] == 150.0
    out = again.replan()
    assert out.adopted and again.current().row.seq == last.seq + 1
    assert {t["id"] for t in again.current().row.plan["training"]} == {"ft-a", "ft-b", "ft-c"}
    # running placements carried over from the resumed plan
    running = {j.id: j.running for j in again.current().scenario.training}
    placed = {t["id"]: t["placement"] for t in last.plan["training"] if t["scheduled"]}
    assert {k: v for k, v in running.items() if k in placed} == placed


class BrokenPlanner:
    """Returns the greedy plan with one more miner than the rack has power for."""
    name = "broken"

    def plan(self, problem, start):
        res = GreedyPlanner().plan(problem, start)
        res.method = self.name
        return res


def test_a_plan_failing_verification_is_never_adopted(tmp_path):
    calls = []

    def strict_verifier(scenario, plan):
        calls.append(plan["solver"]["method"])
        return ["site_power[wa]: made-up violation"] if plan["solver"]["method"] == "broken" else []

    loop, act = make_loop(tmp_path, verifier=strict_verifier)
    loop.start()
    loop.replan()
    seq = loop.current().row.seq
    loop.fast = BrokenPlanner()
    loop.post_signal({"ambient_c": 25.0})
    out = loop.replan()
    assert not out.adopted and out.why == "verification failed"
    assert loop.stats.verification_failures == 1 and loop.current().row.seq == seq
    assert [e["kind"] for e in loop.store.events()][-1] == "verification_failed"
    assert len(act.published) == 1


def test_background_plan_adopted_only_when_better(tmp_path):
    from scheduler.solve import SolveResult

    class Idle:
        name = "idle"

        def plan(self, problem, start):
            from scheduler.assignment import Assignment
            return SolveResult(Assignment.empty(problem), "idle", "feasible", 0.0)

    loop, _ = make_loop(tmp_path, fast=Idle(), full=GreedyPlanner())
    loop.start()
    assert loop.replan().adopted
    idle_obj = loop.current().row.objective_usd
    [out] = loop.improve()
    assert out.adopted and out.method == "greedy" and out.objective_usd > idle_obj
    [again] = loop.improve()  # the same plan again is not better
    assert not again.adopted and again.why == "not better"


def test_background_plan_for_old_inputs_is_discarded(tmp_path):
    loop, _ = make_loop(tmp_path, full=GreedyPlanner())
    loop.start()
    loop.replan()

    class Slow:
        """Posts a signal while 'solving', as if the solver ran for a while."""
        name = "slow"

        def plan(self, problem, start):
            loop.post_signal({"grid_limit_kw": 100.0})
            loop.replan()
            return GreedyPlanner().plan(problem, start)

    loop.full = Slow()
    [out] = loop.improve()
    assert not out.adopted and out.why == "stale inputs"
    assert site_kw(loop) <= 100.0


def test_new_workload_keeps_its_submitted_running_until_planned(tmp_path):
    loop, _ = make_loop(tmp_path)
    loop.start()
    loop.replan()
    loop.submit("training", {"id": "live", "gpus": 8, "value_per_gpu_h": {"H100": 0.5},
                             "running": {"G3": 8}, "move_cost_usd": 1000.0})
    loop.replan()
    sc = loop.current().scenario
    live = next(j for j in sc.training if j.id == "live")
    assert live.running == {"G3": 8}  # moving it would cost 1000 USD: the plan counts that
    # once planned, `running` follows the plan in force
    loop.post_signal({"ambient_c": 21.0})
    loop.replan()
    placed = next(t for t in loop.current().row.plan["training"] if t["id"] == "live")
    live = next(j for j in loop.current().scenario.training if j.id == "live")
    planned_before = [t for t in loop.store.plans(2)[1].plan["training"] if t["id"] == "live"][0]
    assert live.running == (planned_before["placement"] or None)
    assert placed["id"] == "live"


def test_cuts_and_heat_are_urgent_other_changes_are_not(tmp_path):
    loop, _ = make_loop(tmp_path)
    loop.start()
    loop.replan()
    assert not loop.urgent
    loop.post_signal({"energy_price_usd_per_mwh": 80.0})
    loop.post_signal({"grid_limit_kw": 250.0})  # a raise
    loop.post_signal({"ambient_c": 15.0})  # cooler
    loop.submit("training", {"id": "z", "gpus": 8, "value_per_gpu_h": {"H100": 1.0}})
    assert not loop.urgent
    loop.post_signal({"grid_limit_kw": 240.0})
    assert loop.urgent
    loop.replan()
    assert not loop.urgent
    loop.post_signal({"ambient_c": 16.0})
    assert loop.urgent


@pytest.mark.parametrize("planner", ["greedy", "default"])
def test_a_cut_below_the_base_load_is_reported_and_the_old_plan_stays(tmp_path, planner):
    loop, _ = make_loop(tmp_path, fast=GreedyPlanner() if planner == "greedy" else default_fast_planner())
    loop.start()
    loop.replan()
    seq = loop.current().row.seq
    loop.post_signal({"grid_limit_kw": 5.0})  # below base_kw + idle racks: nothing can meet it
    out = loop.replan()
    # greedy says infeasible; the Numba heuristic currently raises instead (reported as a solver error)
    assert not out.adopted and out.status in ("infeasible", "error") and out.problems
    assert loop.current().row.seq == seq
    assert loop.store.events()[-1]["kind"] in ("plan_infeasible", "solver_error")
    assert any(st in ("infeasible", "error") for (_, st) in loop.stats.solver_runs)


def test_demand_response_event_ends_at_until_s(tmp_path):
    clock = FakeClock()
    loop, _ = make_loop(tmp_path, clock=clock)
    loop.start()
    loop.post_signal({"grid_limit_kw": 180.0})  # standing limit
    loop.replan()
    loop.post_signal({"grid_limit_kw": 100.0, "until_s": clock.t + 900})
    assert loop.urgent and loop.next_signal_change_s() == clock.t + 900
    loop.replan()
    assert loop.current().row.plan["sites"][0]["grid_limit_kw"] == 100.0 and site_kw(loop) <= 100.0
    during = loop.inputs_hash()
    clock.advance(899.0)
    assert loop.inputs_hash() == during
    clock.advance(1.0)  # the event is over: the standing limit applies again, without any post
    assert loop.inputs_hash() != during and loop.next_signal_change_s() is None
    loop.replan()
    assert loop.current().row.plan["sites"][0]["grid_limit_kw"] == 180.0
    assert loop.signals()["sites"]["wa"]["dr_event"]["grid_limit_kw"] == 100.0  # kept, for the record


def test_demand_response_event_survives_restart_and_expires_by_the_clock(tmp_path):
    clock = FakeClock()
    loop, _ = make_loop(tmp_path, clock=clock)
    loop.start()
    loop.post_signal({"grid_limit_kw": 90.0, "until_s": clock.t + 60})
    loop.store.close()
    again, _ = make_loop(tmp_path, clock=clock)
    again.start()
    again.replan()
    assert again.current().row.plan["sites"][0]["grid_limit_kw"] == 90.0
    clock.advance(61.0)
    again.replan()
    assert again.current().row.plan["sites"][0]["grid_limit_kw"] == 200.0


@pytest.mark.parametrize("body,expected", [
    ({"ambient_c": 30.0, "until_s": 2e9}, "until_s: only with grid_limit_kw"),
    ({"grid_limit_kw": 100.0, "until_s": 1.0}, "until_s: must be in the future"),
])
def test_bad_demand_response_events(tmp_path, body, expected):
    loop, _ = make_loop(tmp_path)
    loop.start()
    with pytest.raises(InputError) as err:
        loop.post_signal(body)
    assert err.value.problems[0].startswith(expected)
    assert loop.store.signals() == []


def test_warming_planner_answers_with_the_fallback_until_the_primary_is_warm(tmp_path):
    import threading

    from scheduler.service.planning import WarmingPlanner
    from scheduler.problem import compile_problem

    release = threading.Event()

    class SlowFirst:
        name = "slow-first"

        def __init__(self):
            self.calls = 0

        def plan(self, problem, start):
            self.calls += 1
            if self.calls == 1:
                release.wait(10)  # the first call stands for a cold JIT compile
            res = GreedyPlanner().plan(problem, start)
            res.method = self.name
            return res

    primary = SlowFirst()
    planner = WarmingPlanner(primary, GreedyPlanner())
    problem = compile_problem(parse_scenario(small_site()))
    assert planner.plan(problem, None).method == "greedy"
    assert planner.plan(problem, None).method == "greedy"
    release.set()
    planner._warm.wait(10)
    assert planner.plan(problem, None).method == "slow-first" and primary.calls == 2


def test_background_plan_of_an_event_that_ended_meanwhile_is_discarded(tmp_path):
    clock = FakeClock()
    loop, _ = make_loop(tmp_path, clock=clock, full=GreedyPlanner())
    loop.start()
    loop.post_signal({"grid_limit_kw": 100.0, "until_s": clock.t + 30})
    loop.replan()

    class Slow:
        """The event ends and the fast path re-plans while this 'solves'."""
        name = "slow"

        def plan(self, problem, start):
            clock.advance(31.0)
            assert loop.replan().adopted
            return GreedyPlanner().plan(problem, start)

    loop.full = Slow()
    [out] = loop.improve()
    assert not out.adopted and out.why == "stale inputs"
    assert loop.current().row.plan["sites"][0]["grid_limit_kw"] == 200.0
