"""The Prometheus collector: each test builds its own registry and reads samples back."""
from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from scheduler.model import parse_scenario
from scheduler.service.loop import ServiceLoop
from scheduler.service.metrics import make_registry
from scheduler.service.planning import GreedyPlanner
from scheduler.service.store import SqliteStore
from scheduler.verify import verify_plan

from test_service_loop import FakeClock, small_site


def setup(tmp_path):
    clock = FakeClock()
    loop = ServiceLoop(parse_scenario(small_site()), SqliteStore(tmp_path / "m.db"), clock, GreedyPlanner(),
                       verifier=verify_plan)
    loop.start()
    registry, api = make_registry(loop)
    return loop, registry, clock


def test_no_plan_exports_only_counters(tmp_path):
    loop, reg, _ = setup(tmp_path)
    assert reg.get_sample_value("wattsched_verification_failures_total") == 0.0
    assert reg.get_sample_value("wattsched_site_power_watts", {"site": "wa"}) is None


def test_plan_figures_in_base_units(tmp_path):
    loop, reg, clock = setup(tmp_path)
    loop.replan()
    clock.advance(42.0)
    plan = loop.current().row.plan
    site = plan["sites"][0]
    v = lambda name, **labels: reg.get_sample_value(name, labels)  # noqa: E731
    assert v("wattsched_site_power_watts", site="wa") == site["site_kw"] * 1000
    assert v("wattsched_site_grid_limit_watts", site="wa") == 200_000.0
    assert abs(v("wattsched_site_grid_headroom_watts", site="wa") - (200.0 - site["site_kw"]) * 1000) < 1e-6
    assert v("wattsched_site_it_power_watts", site="wa") == site["it_kw"] * 1000
    assert v("wattsched_site_cooling_power_watts", site="wa") == site["cooling_kw"] * 1000
    assert v("wattsched_site_hashrate_hashes_per_second", site="wa") == site["hashrate_th_s"] * 1e12
    for r in plan["racks"]:
        assert v("wattsched_rack_power_watts", site="wa", rack=r["id"]) == r["kw"] * 1000
    assert v("wattsched_rack_limit_watts", site="wa", rack="G0") == 12_000.0
    for lp in plan["loops"]:
        assert v("wattsched_loop_heat_watts", site="wa", loop=lp["id"]) == lp["heat_kw"] * 1000
        assert v("wattsched_loop_capacity_watts", site="wa", loop=lp["id"]) == lp["capacity_kw"] * 1000
    for f in plan["feeds"]:
        assert v("wattsched_feed_power_watts", site="wa", feed=f["id"]) == f["kw"] * 1000
        assert v("wattsched_feed_limit_watts", site="wa", feed=f["id"]) == f["limit_kw"] * 1000
    busy = sum(r.get("gpus_busy", 0) for r in plan["racks"])
    assert v("wattsched_gpus", site="wa", model="H100", state="busy") == busy
    assert v("wattsched_gpus", site="wa", model="H100", state="idle") == 32 - busy
    running = sum(t["scheduled"] for t in plan["training"])
    assert v("wattsched_training_jobs", state="running") == running
    assert v("wattsched_training_jobs", state="queued") == len(plan["training"]) - running
    assert v("wattsched_plan_age_seconds") == 42.0
    assert v("wattsched_plan_confirmed_age_seconds") == 42.0 and v("wattsched_plan_up_to_date") == 1.0
    loop.tick()  # same inputs: the plan is re-confirmed, not replaced
    assert v("wattsched_plan_age_seconds") == 42.0 and v("wattsched_plan_confirmed_age_seconds") == 0.0
    loop.post_signal({"ambient_c": 31.0})
    assert v("wattsched_plan_up_to_date") == 0.0
    assert abs(v("wattsched_profit_rate_usd_per_hour") - plan["objective_usd"] / plan["interval_h"]) < 1e-6
    assert v("wattsched_solver_runs_total", method="greedy", status="feasible") == 2.0
    assert v("wattsched_solver_duration_seconds_count", method="greedy") == 2.0
    assert v("wattsched_replan_duration_seconds_count", path="fast") == 2.0
    assert v("wattsched_plans_not_better_total") == 1.0
    assert v("wattsched_plans_adopted_total", method="greedy") == 1.0
    assert v("wattsched_verification_failures_total") == 0.0


def test_exposition_parses_and_names_follow_conventions(tmp_path):
    loop, reg, _ = setup(tmp_path)
    loop.replan()
    fams = list(text_string_to_metric_families(generate_latest(reg).decode()))
    names = {f.name for f in fams}
    assert len(names) == len(fams)
    for f in fams:
        assert f.name.startswith("wattsched_")
        if f.type == "counter":
            assert not f.name.endswith("_total")  # the parser strips it; the samples carry it
            assert all(s.name.endswith(("_total", "_created")) for s in f.samples)
        if "duration" in f.name:
            assert f.name.endswith("_seconds") and f.type == "histogram"
